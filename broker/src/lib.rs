//! The MQTT broker of the platform: an embedded rumqttd with a device path (TLS with client
//! certificates issued by the installation's own CA, plus a registry token per device) and an
//! internal plain path for the platform's own services, and the PKI and provisioning around it.
//!
//! Topic confinement comes from rumqttd's `validate-tenant-prefix` feature: the tenant is the
//! client certificate's O, which is the device id, so a device can only publish and subscribe
//! under `/tenants/<its id>/`.

pub mod allocator;
mod auth;
mod config;
mod front;
mod front_process;
mod links;
mod listener_watch;
pub mod metrics;
pub mod mosquitto;
pub mod pki;
mod provision;
mod server;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

pub use auth::INTERNAL_USERNAME;
pub use config::BrokerConfig;
pub use front_process::{run_front_process, FRONT_SUBCOMMAND};
pub use links::next_publish;
pub use listener_watch::{listener_panicked, listener_panics};
pub use pki::{new_token, token_digest, IssuedCert, Pki};
pub use provision::{new_device_id, provision, rotate, DEVICE_CERT_DAYS};
pub use server::{BrokerBuilder, BrokerHandle};

/// Re-exported so callers of [`BrokerBuilder::link`] need no direct rumqttd dependency.
pub use rumqttd;

/// Installs rustls' aws-lc-rs provider as the process default unless one is installed already.
///
/// rustls 0.23 refuses to pick a provider itself when more than one is compiled in (aws-lc-rs
/// comes with rumqttc, ring may come with other crates), and then panics with "no process-level
/// CryptoProvider available" at the first TLS connection. Idempotent and cheap.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race against another installer is fine: some provider is installed either way.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// The password of the internal service account (`offsite-internal`) on the plain listener.
///
/// Kept in `<data_dir>/secrets/mqtt-internal.pass` (mode 0600), created randomly on first use,
/// so every process of one installation reads the same value.
pub fn internal_password(data_dir: &Path) -> Result<String> {
    let dir = data_dir.join("secrets");
    let path = dir.join("mqtt-internal.pass");
    match fs::read_to_string(&path) {
        Ok(s) => return non_empty(s, &path),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let password = new_token();
    // Written under a temporary name and hard-linked into place: link(2) fails if the name
    // exists, so when two processes start at once both end up with the winner's password.
    let tmp = dir.join(format!(".mqtt-internal.pass.tmp-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    pki::write_file(&tmp, format!("{password}\n").as_bytes(), 0o600)?;
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(password),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let s = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            non_empty(s, &path)
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

fn non_empty(s: String, path: &Path) -> Result<String> {
    let s = s.trim();
    if s.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn internal_password_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = internal_password(dir.path()).unwrap();
        let b = internal_password(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        let mode = fs::metadata(dir.path().join("secrets/mqtt-internal.pass")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("secrets")).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }
}
