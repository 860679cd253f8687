//! Client ids of the platform's own MQTT connections (ingest, analytics, the CLI).
//!
//! Every *connection* gets an id no earlier connection had, and the platform's clients leave by
//! closing the connection, never with a DISCONNECT packet. Both keep clear of a defect of
//! rumqttd 0.20 (RELIABILITY.md, "Transport"): a connection that says DISCONNECT and then closes
//! makes the router handle two Disconnects for its slot; a connection from another listener
//! thread that takes the slot in between is removed by the second one before its CONNACK, which
//! leaves a stale last-will entry under *its* client id, and the next CONNECT with that id panics
//! the listener. With no goodbye, our clients never remove anyone else's connection; with a
//! fresh id per connection, a stale entry left under one of their ids is never met again.
//! Clean sessions make the id carry no state, so changing it costs nothing, on any broker.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// `base`, a nonce of this process and a counter: unique per connection of this process, and
/// across processes that share a base.
pub fn for_connection(base: &str) -> String {
    static NONCE: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // std's hasher keys are random per process: a nonce without a random-number crate.
    let nonce = *NONCE.get_or_init(|| RandomState::new().build_hasher().finish() as u32);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{base}-{nonce:08x}-{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_gets_a_new_id() {
        let a = for_connection("offsite-ingest");
        let b = for_connection("offsite-ingest");
        assert_ne!(a, b);
        assert!(a.starts_with("offsite-ingest-") && b.starts_with("offsite-ingest-"));
        // rumqttd refuses ids with these; MQTT topics use them as wildcards.
        assert!(!a.contains(['+', '#', '/', '$']));
    }
}
