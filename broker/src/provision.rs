//! Creating devices and replacing their credentials.
//!
//! The registry keeps only the SHA-256 of a token; the token itself exists once, in the
//! [`DeviceCredentials`] returned here, which the operator hands to the device.

use anyhow::{Context, Result};
use offsite_store::{DeviceRecord, NewDevice, Store};
use offsite_wire::{DeviceCredentials, DeviceId};
use rand::Rng;
use tracing::info;

use crate::pki::{new_token, token_digest, Pki};

/// Validity of device certificates (about 27 months). The token, not the certificate, is what
/// revocation acts on, so a long validity costs little; rotation issues a fresh one.
pub const DEVICE_CERT_DAYS: u32 = 825;

/// A new random device id: `d` and 11 lowercase letters or digits (about 57 bits).
pub fn new_device_id() -> DeviceId {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut s = String::with_capacity(12);
    s.push('d');
    for _ in 0..11 {
        s.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    DeviceId::parse(&s).expect("generated ids use the DeviceId alphabet")
}

/// Registers a new device and returns its full credentials (token, certificate, key, CA).
pub async fn provision(
    store: &Store,
    pki: &Pki,
    name: &str,
    object_id: Option<String>,
) -> Result<(DeviceRecord, DeviceCredentials)> {
    let id = new_device_id();
    let token = new_token();
    let cert = pki.issue_device(&id, DEVICE_CERT_DAYS)?;
    let record = store
        .insert_device(&NewDevice {
            id: id.clone(),
            name: name.to_owned(),
            object_id,
            token_sha256: token_digest(&token),
            cert_serial: Some(cert.serial_hex.clone()),
            cert_not_after: Some(cert.not_after),
        })
        .await
        .with_context(|| format!("registering device {id}"))?;
    info!(device = %id, name, serial = %cert.serial_hex, "device provisioned");
    let creds = DeviceCredentials {
        device_id: id,
        token,
        cert_pem: cert.cert_pem,
        key_pem: cert.key_pem,
        ca_pem: pki.ca_pem().to_owned(),
    };
    Ok((record, creds))
}

/// Issues a new token and certificate for a device; the old token stops working at the next
/// connection (the old certificate stays valid until it expires, which is harmless without the
/// token). `None` if there is no such device or it is revoked.
pub async fn rotate(store: &Store, pki: &Pki, id: &DeviceId) -> Result<Option<DeviceCredentials>> {
    let token = new_token();
    let cert = pki.issue_device(id, DEVICE_CERT_DAYS)?;
    let updated = store
        .rotate_device(id, token_digest(&token), Some(cert.serial_hex.clone()), Some(cert.not_after))
        .await
        .with_context(|| format!("rotating device {id}"))?;
    if !updated {
        return Ok(None);
    }
    info!(device = %id, serial = %cert.serial_hex, "device credentials rotated");
    Ok(Some(DeviceCredentials {
        device_id: id.clone(),
        token,
        cert_pem: cert.cert_pem,
        key_pem: cert.key_pem,
        ca_pem: pki.ca_pem().to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shape() {
        for _ in 0..100 {
            let id = new_device_id();
            let s = id.as_str();
            assert_eq!(s.len(), 12);
            assert!(s.starts_with('d'));
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        }
        assert_ne!(new_device_id(), new_device_id());
    }
}
