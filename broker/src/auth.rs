//! Connect-time authentication hooks for rumqttd.
//!
//! Two factors bind a device, each for its own purpose:
//! - the TLS client certificate binds the *topics*: rumqttd takes the tenant from the
//!   certificate's O and refuses anything outside `/tenants/<O>/`. That check happens in the TLS
//!   handshake, before these hooks run, and the hooks never see the tenant;
//! - the token (MQTT password, user name = device id) binds the *registry state*: it is looked
//!   up in the database on every connection, with no cache, so `revoke` and `rotate` take effect
//!   at the device's next connection attempt.
//!
//! Because the hook cannot see the certificate, it cannot check that the user name is the
//! certificate's device. A revoked device that also holds another live device's token could
//! still connect, confined to its own (revoked) topics; the platform's consumers should therefore
//! also drop data of revoked devices (`RejectReason::Revoked`). Short-lived certificates or a
//! CRL-aware verifier would close the gap fully; rumqttd 0.20 builds its verifier without CRLs.

use std::sync::Arc;
use std::time::Duration;

use offsite_store::{DeviceAuth, Store};
use offsite_wire::DeviceId;
use tokio::runtime::Handle;
use tracing::{debug, warn};

use crate::metrics::{self, AuthFailure};
use crate::pki::token_digest;

/// The user name of the internal service account on the plain listener.
pub const INTERNAL_USERNAME: &str = "offsite-internal";

/// Compares without an early exit, so the time taken does not tell how many leading bytes
/// matched. Lengths are not secret (digests are always 32 bytes).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Refuses a client id that rumqttd's router would refuse (`+ $ # /` in it).
///
/// rumqttd checks client ids only in its router, after the listener has recorded a last-will
/// entry for the connection; the refused link leaves that entry behind, and the next CONNECT with
/// the same id panicked the listener (and, through the poisoned lock, every later connection).
/// This hook runs before that bookkeeping, so refusing here ends the connection cleanly (rumqttd
/// closes it without a CONNACK, as for any failed authentication).
pub(crate) fn client_id_problem(client_id: &str) -> Option<AuthFailure> {
    client_id.contains(['+', '$', '#', '/']).then_some(AuthFailure::BadClientId)
}

/// Decides a device connection from its registry row. Pure, so it is tested without a broker.
pub(crate) fn decide(row: Option<&DeviceAuth>, password: &str) -> Result<(), AuthFailure> {
    let digest = token_digest(password);
    let Some(row) = row else {
        return Err(AuthFailure::UnknownDevice);
    };
    if row.revoked {
        return Err(AuthFailure::Revoked);
    }
    if !ct_eq(&digest, &row.token_sha256) {
        return Err(AuthFailure::BadToken);
    }
    Ok(())
}

/// Authenticates device connections against the registry.
#[derive(Clone)]
pub(crate) struct DeviceAuthenticator {
    store: Store,
    /// Where the lookups run: the runtime that created the broker, which normally owns the
    /// Store's connection pool. rumqttd calls the hook on its listeners' own single-thread
    /// runtimes; doing sqlx I/O there would tie pool connections to those runtimes.
    runtime: Handle,
    timeout: Duration,
}

impl DeviceAuthenticator {
    pub(crate) fn new(store: Store, runtime: Handle, timeout: Duration) -> Self {
        Self { store, runtime, timeout }
    }

    pub(crate) async fn check(self: Arc<Self>, client_id: String, username: String, password: String) -> bool {
        let outcome = match client_id_problem(&client_id) {
            Some(refused) => Err(refused),
            None => self.outcome(&username, &password).await,
        };
        match outcome {
            Ok(()) => {
                metrics::auth_succeeded();
                debug!(%client_id, device = %username, "device authenticated");
                true
            }
            Err(reason) => {
                metrics::auth_failed(reason);
                warn!(%client_id, username = %username.escape_debug(), reason = reason.as_str(), "device refused");
                false
            }
        }
    }

    async fn outcome(&self, username: &str, password: &str) -> Result<(), AuthFailure> {
        let id = DeviceId::parse(username).map_err(|_| AuthFailure::BadUsername)?;
        let store = self.store.clone();
        let lookup = self.runtime.spawn(async move { store.device_auth(id.as_str()).await });
        let row = match tokio::time::timeout(self.timeout, lookup).await {
            Ok(Ok(Ok(row))) => row,
            Ok(Ok(Err(e))) => {
                warn!(error = %format!("{e:#}"), "device lookup failed");
                return Err(AuthFailure::StoreError);
            }
            Ok(Err(e)) => {
                warn!(error = %e, "device lookup task failed");
                return Err(AuthFailure::StoreError);
            }
            Err(_) => {
                warn!(timeout_ms = self.timeout.as_millis() as u64, "device lookup timed out");
                return Err(AuthFailure::StoreError);
            }
        };
        decide(row.as_ref(), password)
    }
}

/// Accepts only the internal service account on the plain listener.
pub(crate) fn check_internal(expected_password: &str, client_id: &str, username: &str, password: &str) -> bool {
    // Both comparisons always run, so timing does not reveal which one failed.
    let user_ok = ct_eq(username.as_bytes(), INTERNAL_USERNAME.as_bytes());
    let pass_ok = ct_eq(&token_digest(password), &token_digest(expected_password));
    if let Some(refused) = client_id_problem(client_id) {
        metrics::auth_failed(refused);
        warn!(client_id = %client_id.escape_debug(), "internal listener refused a client id rumqttd cannot take");
        return false;
    }
    if user_ok & pass_ok {
        metrics::auth_succeeded();
        debug!(%client_id, "internal client authenticated");
        true
    } else {
        metrics::auth_failed(AuthFailure::BadInternal);
        warn!(%client_id, username = %username.escape_debug(), "internal listener refused a client");
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(token: &str, revoked: bool) -> DeviceAuth {
        DeviceAuth { key: 1, token_sha256: token_digest(token).to_vec(), revoked }
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(Some(&row("t", false)), "t"), Ok(()));
        assert_eq!(decide(Some(&row("t", false)), "u"), Err(AuthFailure::BadToken));
        assert_eq!(decide(Some(&row("t", false)), ""), Err(AuthFailure::BadToken));
        assert_eq!(decide(Some(&row("t", true)), "t"), Err(AuthFailure::Revoked));
        assert_eq!(decide(None, "t"), Err(AuthFailure::UnknownDevice));
        // A malformed stored digest never matches.
        let bad = DeviceAuth { key: 1, token_sha256: vec![0; 31], revoked: false };
        assert_eq!(decide(Some(&bad), "t"), Err(AuthFailure::BadToken));
    }

    #[test]
    fn client_ids_the_router_refuses() {
        for bad in ["a/b", "a+b", "#", "$sys", "x/"] {
            assert_eq!(client_id_problem(bad), Some(AuthFailure::BadClientId), "{bad}");
        }
        for good in ["d12ab", "offsite-ingest-1-2", "a.b_c:d", ""] {
            assert_eq!(client_id_problem(good), None, "{good}");
        }
        assert!(!check_internal("secret", "in/valid", INTERNAL_USERNAME, "secret"));
    }

    #[test]
    fn internal_account() {
        assert!(check_internal("secret", "c", INTERNAL_USERNAME, "secret"));
        assert!(!check_internal("secret", "c", INTERNAL_USERNAME, "secreT"));
        assert!(!check_internal("secret", "c", "someone", "secret"));
    }
}
