//! Broker settings an operator may change. Everything else about rumqttd is fixed in code
//! (see `BrokerBuilder`), because most of its knobs only make sense in one combination here.

use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Listener addresses and connection limits.
///
/// A listener is switched off with `"off"` (TOML has no null); JSON `null` works too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerConfig {
    /// Device path: MQTT 3.1.1 over TLS with client certificates, always authenticated.
    #[serde(with = "offsite_wire::listen")]
    pub tls_listen: Option<SocketAddr>,
    /// Internal path: plain MQTT 3.1.1; only the internal service account may connect. Keep it on
    /// loopback or a private network: it is not confined to any topic prefix.
    #[serde(with = "offsite_wire::listen")]
    pub plain_listen: Option<SocketAddr>,
    /// Optional MQTT 5 device path (TLS and authentication as `tls_listen`).
    #[serde(with = "offsite_wire::listen")]
    pub v5_listen: Option<SocketAddr>,
    /// Largest MQTT packet accepted from a client. Larger than ingest's own payload limit on
    /// purpose, so an oversized batch reaches ingest and is dead-lettered and counted rather than
    /// only cutting the connection.
    pub max_payload_bytes: usize,
    /// Remote connections the router accepts (a few in-process links are added on top).
    pub max_connections: usize,
    /// Unacknowledged QoS 1/2 messages per connection.
    pub max_inflight: usize,
    /// How long a new connection may take to send CONNECT; also the limit for the registry
    /// lookup that authenticates it. rumqttd holds this in a u16, so it is capped at 65535.
    pub connection_timeout_ms: u64,
    /// The device front (the relay in front of rumqttd's TLS listeners) runs in this many
    /// processes of its own (`offsite broker-front`, sharing the device ports with SO_REUSEPORT)
    /// instead of in the broker's process; 0 keeps it in the broker. In the broker each device
    /// holds three file descriptors (its socket, the relay's and rumqttd's), so use this where
    /// the open-files limit is below about 3 x `max_connections`: each front process needs 2 per
    /// device it admits (`max_connections / front_processes`), the broker 1.
    pub front_processes: usize,
    /// MiB of messages rumqttd keeps for the platform's consumers (ingest) on each
    /// device-to-platform channel (data, status, command acks), delivered or not: the backlog a
    /// stalled ingest can still read from the broker; devices resend what ingest never
    /// acknowledged, so a smaller buffer loses nothing, it only makes them resend sooner. rumqttd
    /// counts a message as its topic and payload; its memory per message is several times that
    /// (RELIABILITY.md "Soak"), so the broker's RSS is several times this figure once it is full.
    /// 200 MiB holds about 100 s of 60,000 samples/s in batches of 10; devices resend what is
    /// unacknowledged after 30 s anyway.
    pub ingest_buffer_mib: usize,
    /// Every this many milliseconds the broker hands the free pages of its heap back to the
    /// system (`malloc_trim`; glibc only); 0 turns it off. Without it a reconnect storm of 10,000
    /// devices left the broker about 500 MiB larger (RELIABILITY.md "Soak"). In the
    /// all-in-one process it trims the whole process's heap.
    pub heap_trim_interval_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            tls_listen: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8883))),
            plain_listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 1883))),
            v5_listen: None,
            max_payload_bytes: 1_048_576,
            max_connections: 20_000,
            max_inflight: 100,
            connection_timeout_ms: 5_000,
            front_processes: 0,
            ingest_buffer_mib: 200,
            heap_trim_interval_ms: 10_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_round_trip() {
        let c = BrokerConfig::default();
        assert_eq!(c.tls_listen, Some("0.0.0.0:8883".parse().unwrap()));
        assert_eq!(c.plain_listen, Some("127.0.0.1:1883".parse().unwrap()));
        assert_eq!(c.v5_listen, None);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<BrokerConfig>(&json).unwrap(), c);
    }

    #[test]
    fn partial_and_off() {
        let c: BrokerConfig =
            serde_json::from_str(r#"{"plain_listen":"off","v5_listen":"127.0.0.1:8884","max_inflight":5}"#).unwrap();
        assert_eq!(c.plain_listen, None);
        assert_eq!(c.v5_listen, Some("127.0.0.1:8884".parse().unwrap()));
        assert_eq!(c.max_inflight, 5);
        assert_eq!(c.max_connections, 20_000);
        let c: BrokerConfig = serde_json::from_str(r#"{"tls_listen":null}"#).unwrap();
        assert_eq!(c.tls_listen, None);
        assert!(serde_json::from_str::<BrokerConfig>(r#"{"tls_listen":"nonsense"}"#).is_err());
    }
}
