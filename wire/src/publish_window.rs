//! How many messages the platform's own clients may have on their way into the broker at once.
//!
//! rumqttd 0.20 queues what a connection sends in a buffer of 200 packets; its router empties it
//! by swapping it with one spare buffer it keeps and hands on from connection to connection. A
//! buffer that overflows grows, and it never shrinks: passed on through the spare, every grown
//! buffer ends up with some device connection, and with ingest acknowledging about 7,000 batches
//! a second up to 1,000 at a time the broker held a 400- to 1,600-packet buffer (157-627 KB)
//! for more and more of 10,000 devices. That was the broker's RSS creeping by 35-90 MiB a minute
//! through the 30-minute soak (RELIABILITY.md "Soak"). So a platform connection that publishes a
//! lot subscribes to nothing (nothing else comes in on it) and keeps at most [`PUBLISH_WINDOW`]
//! unacknowledged messages (QoS 1) in flight: its buffer never overflows.

/// Unacknowledged QoS 1 publishes a publishing-only platform connection keeps in flight
/// (`MqttOptions::set_inflight`): rumqttd's 200, less room for a ping.
pub const PUBLISH_WINDOW: u16 = 190;

/// For an in-process rumqttd link, where nothing acknowledges a publish and nothing else comes in:
/// wait before publishing while the link's buffer holds this many packets or more.
pub const LINK_BACKLOG: usize = 150;
