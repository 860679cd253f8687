//! Issuing device credentials from the portal. The certificate authority is the broker's, and the
//! portal does not link the broker: the process that has both (the CLI) hands the portal a
//! [`DeviceProvisioner`] with [`crate::AppState::with_provisioner`]. A portal without one (no access
//! to the CA) still lists and revokes devices; registering and rotating answer 503.

use async_trait::async_trait;
use offsite_store::{DeviceRecord, Store};
use offsite_wire::{DeviceCredentials, DeviceId};

/// Creates devices and replaces their credentials, signing certificates with the device CA.
#[async_trait]
pub trait DeviceProvisioner: Send + Sync + 'static {
    /// Registers a new device (a fresh id) and returns its credentials, which exist only here.
    async fn provision(
        &self,
        store: &Store,
        name: &str,
        object_id: Option<String>,
    ) -> anyhow::Result<(DeviceRecord, DeviceCredentials)>;

    /// New token and certificate for a device; `None` if it does not exist or is revoked.
    async fn rotate(
        &self,
        store: &Store,
        id: &DeviceId,
    ) -> anyhow::Result<Option<DeviceCredentials>>;
}
