use serde::{Deserialize, Serialize};

/// `[ingest]` in the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestConfig {
    /// A batch is written when it has this many rows...
    pub batch_max_rows: usize,
    /// ...or when its first message is this old.
    pub batch_max_delay_ms: u64,
    /// Concurrent database writers (each one commit at a time).
    pub writers: usize,
    /// Messages larger than this are dead-lettered as `too_large`.
    pub max_payload_bytes: usize,
    pub max_samples_per_message: usize,
    /// How far ahead of the platform clock a device timestamp may be.
    pub max_future_skew_secs: i64,
    /// Samples older than this are refused as `bad_timestamp`, and partitions older are dropped.
    pub retention_days: i64,
    pub partitions_ahead_days: i64,
    /// Whether this replica creates and drops partitions (one replica is enough; it is idempotent).
    pub maintain_partitions: bool,
    /// Messages buffered between the source and the processor.
    pub queue_capacity: usize,
    /// Per-device budget (fairness.rs): messages and samples per second, 0 turns it off. Far
    /// above any real sensor; a device beyond it has its excess left unacknowledged.
    pub device_max_messages_per_s: f64,
    pub device_max_samples_per_s: f64,
    /// How many seconds of budget a device may spend at once.
    pub device_burst_s: f64,
    /// A flooding device's warning is resolved after it stays within budget this long.
    pub device_calm_s: f64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            batch_max_rows: 20_000,
            batch_max_delay_ms: 100,
            writers: 2,
            max_payload_bytes: 256 * 1024,
            max_samples_per_message: 10_000,
            max_future_skew_secs: 600,
            retention_days: 400,
            partitions_ahead_days: 7,
            maintain_partitions: true,
            queue_capacity: 20_000,
            device_max_messages_per_s: 1_000.0,
            device_max_samples_per_s: 5_000.0,
            device_burst_s: 10.0,
            device_calm_s: 60.0,
        }
    }
}
