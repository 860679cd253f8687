//! The edge agent: runs next to sensors, turns readings into batches, and keeps every batch until
//! the platform acknowledges that it is committed.
//!
//! This first cut has the simulated source and the publisher with an in-memory unacknowledged set;
//! the disk queue, CSV and Modbus sources and remote configuration build on the same seams.

pub mod publisher;
pub mod sim;

pub use publisher::{DeviceLink, Endpoint, LinkOptions, LinkStats};
pub use sim::{Anomaly, MetricProfile, SignalGenerator};
