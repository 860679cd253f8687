//! The portal's [`DeviceProvisioner`], backed by the broker's device CA: the CLI is the one crate
//! that links both, so it joins them here.

use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use offsite_broker::Pki;
use offsite_portal::provision::DeviceProvisioner;
use offsite_store::{DeviceRecord, Store};
use offsite_wire::{DeviceCredentials, DeviceId};
use tracing::{info, warn};

use crate::configuration::Config;

pub struct PkiProvisioner(pub Pki);

#[async_trait]
impl DeviceProvisioner for PkiProvisioner {
    async fn provision(
        &self,
        store: &Store,
        name: &str,
        object_id: Option<String>,
    ) -> Result<(DeviceRecord, DeviceCredentials)> {
        offsite_broker::provision(store, &self.0, name, object_id).await
    }

    async fn rotate(&self, store: &Store, id: &DeviceId) -> Result<Option<DeviceCredentials>> {
        offsite_broker::rotate(store, &self.0, id).await
    }
}

/// For a portal running on its own: the broker's CA if this data directory holds it (never a new
/// one, which no broker would trust); `None` otherwise, and the portal's registration answers 503.
pub fn for_portal(cfg: &Config) -> Option<Arc<dyn DeviceProvisioner>> {
    let dir = cfg.data_dir.join("pki");
    if !Pki::has_ca(&dir) {
        info!(dir = %dir.display(), "no device CA here; registering devices from the portal is off");
        return None;
    }
    match crate::startup::pki(cfg) {
        Ok(pki) => Some(Arc::new(PkiProvisioner(pki))),
        Err(e) => {
            warn!(error = %format!("{e:#}"), "device CA unreadable; registering devices from the portal is off");
            None
        }
    }
}
