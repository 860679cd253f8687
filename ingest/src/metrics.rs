//! Prometheus metrics of the ingest tier (default registry, served by the portal's `/metrics`).

use std::sync::LazyLock;

use offsite_wire::RejectReason;
use prometheus::{register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge};
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

pub static SAMPLES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offsite_ingest_samples_total", "Samples committed to the database").unwrap()
});
pub static DUPLICATES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offsite_ingest_duplicates_total", "Redelivered samples already stored, skipped").unwrap()
});
pub static MESSAGES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offsite_ingest_messages_total", "Data messages received").unwrap()
});
pub static REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_ingest_rejected_total", "Messages dead-lettered, by reason", &["reason"])
        .unwrap()
});
pub static FLAGGED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offsite_ingest_out_of_range_total", "Samples stored flagged as outside the valid range")
        .unwrap()
});
pub static BATCH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "offsite_ingest_batch_seconds",
        "Time to commit one batch",
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
    )
    .unwrap()
});
pub static BATCH_ROWS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "offsite_ingest_batch_rows",
        "Rows per committed batch",
        vec![1.0, 10.0, 100.0, 1000.0, 5000.0, 10000.0, 20000.0, 50000.0]
    )
    .unwrap()
});
pub static WRITE_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offsite_ingest_write_errors_total", "Failed batch writes (retried)").unwrap()
});
pub static QUEUE_DEPTH: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("offsite_ingest_queue_depth", "Messages waiting between source and processor").unwrap()
});
pub static STATUS_UPDATES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offsite_ingest_status_updates_total", "Online/offline reports recorded").unwrap()
});

pub static COMMAND_ACKS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offsite_ingest_command_acks_total", "Devices' answers to commands recorded").unwrap()
});

pub static TAP_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offsite_ingest_analytics_dropped_total", "Committed samples not analysed because the analytics queue was full").unwrap()
});
pub static CAMERA_MESSAGES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offsite_ingest_camera_messages_total", "Camera messages applied (status, snapshots, events)").unwrap()
});
pub static CAMERA_DUPLICATES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offsite_ingest_camera_duplicates_total", "Redelivered camera messages already applied, skipped").unwrap()
});
pub static CAMERA_INHIBITED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offsite_ingest_camera_inhibited_total", "Camera events that opened no warning: the camera is offline").unwrap()
});

pub static THROTTLED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offsite_ingest_throttled_total",
        "Device input over its per-device budget (MQTT: not acknowledged, resent later; HJ 212: paced), by path and unit",
        &["source", "unit"]
    )
    .unwrap()
});
pub static FLOODING_DEVICES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("offsite_ingest_flooding_devices", "Devices over their ingest budget now").unwrap()
});

/// Registers the fairness metrics (a gate can exist before the rest of ingest starts).
pub fn register_fairness() {
    for source in ["mqtt", "hj212"] {
        for unit in ["messages", "samples"] {
            THROTTLED.with_label_values(&[source, unit]);
        }
    }
    LazyLock::force(&FLOODING_DEVICES);
}

/// Registers every metric so they show (at zero) before the first message.
pub fn register() {
    LazyLock::force(&SAMPLES);
    LazyLock::force(&DUPLICATES);
    LazyLock::force(&MESSAGES);
    for r in RejectReason::ALL {
        REJECTED.with_label_values(&[r.as_str()]);
    }
    LazyLock::force(&FLAGGED);
    LazyLock::force(&BATCH_SECONDS);
    LazyLock::force(&BATCH_ROWS);
    LazyLock::force(&WRITE_ERRORS);
    LazyLock::force(&QUEUE_DEPTH);
    LazyLock::force(&STATUS_UPDATES);
    LazyLock::force(&COMMAND_ACKS);
    LazyLock::force(&TAP_DROPPED);
    LazyLock::force(&CAMERA_MESSAGES);
    LazyLock::force(&CAMERA_DUPLICATES);
    LazyLock::force(&CAMERA_INHIBITED);
    register_fairness();
}
/// 1 while the MQTT source of `offsite ingest` holds a connection to the broker (readiness reads it).
pub static BROKER_CONNECTED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("offsite_ingest_broker_connected", "1 while ingest's MQTT source is connected to the broker, else 0").unwrap()
});
