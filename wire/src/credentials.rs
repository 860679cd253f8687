//! The credential bundle a device receives once, at provisioning or rotation.

use serde::{Deserialize, Serialize};

use crate::DeviceId;

/// Everything a device needs to connect: its id (MQTT user name), its random token (MQTT password),
/// its client certificate and key (subject O and CN are the device id) and the platform CA.
#[derive(Clone, Serialize, Deserialize)]
pub struct DeviceCredentials {
    pub device_id: DeviceId,
    pub token: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for DeviceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCredentials").field("device_id", &self.device_id).finish_non_exhaustive()
    }
}
