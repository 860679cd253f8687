//! The edge agent: runs next to sensors, turns readings into batches, and keeps every batch until
//! the platform acknowledges that it is committed.
//!
//! `agent` composes the parts: `sources` read sensors (simulated, CSV replay, Modbus TCP), the
//! device task cuts batches into the `queue` (on disk, bounded), the `publisher` drains it over
//! MQTT/TLS and forgets a batch only when the platform acknowledges it; `state` keeps remote
//! settings and source positions; `metrics` exposes the figures.

pub mod agent;
#[cfg(feature = "camera")]
pub mod camera;
pub mod camera_config;
pub mod config;
pub mod hj212;
pub mod metrics;
pub mod outbox;
pub mod publisher;
pub mod queue;
pub mod state;
pub mod sources;

pub use agent::Agent;
pub use config::AgentConfig;
pub use publisher::{DeviceLink, Endpoint, LinkHooks, LinkOptions, LinkStats};
pub use sources::sim::{Anomaly, MetricProfile, SignalGenerator};
