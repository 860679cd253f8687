//! Prometheus metrics of the HJ 212 gateway (default registry, served by the portal's `/metrics`).

use std::sync::LazyLock;

use prometheus::{register_int_counter, register_int_counter_vec, register_int_gauge};
use prometheus::{IntCounter, IntCounterVec, IntGauge};

pub static CONNECTIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "offsite_hj212_connections",
        "HJ 212 logger connections open"
    )
    .unwrap()
});
pub static PACKETS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "offsite_hj212_packets_total",
        "HJ 212 packets framed, CRC-checked and parsed"
    )
    .unwrap()
});
pub static SAMPLES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "offsite_hj212_samples_total",
        "Values from HJ 212 packets handed to the writers"
    )
    .unwrap()
});
pub static REPLIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offsite_hj212_replies_total",
        "HJ 212 replies and requests sent, by CN",
        &["cn"]
    )
    .unwrap()
});
pub static AUTH_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offsite_hj212_auth_failures_total",
        "HJ 212 logins refused, by reason",
        &["reason"]
    )
    .unwrap()
});
pub static REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offsite_hj212_rejected_total",
        "HJ 212 input refused, by reason",
        &["reason"]
    )
    .unwrap()
});
pub static COMMANDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offsite_hj212_commands_total",
        "Platform commands to HJ 212 loggers, by outcome (sent, ok, failed, timeout)",
        &["outcome"]
    )
    .unwrap()
});

/// Reasons counted in `offsite_hj212_rejected_total` besides the framer's and parser's own.
pub const GATEWAY_REASONS: &[&str] = &[
    "idle",
    "partial_timeout",
    "truncated",
    "too_many_connections",
    "not_logged_in",
    "mn_mismatch",
    "bad_password",
    "missing_data_time",
    "bad_metric",
    "unsupported_cn",
    "split_expired",
];

/// Registers every metric so they show (at zero) before the first connection.
pub fn register() {
    LazyLock::force(&CONNECTIONS);
    LazyLock::force(&PACKETS);
    LazyLock::force(&SAMPLES);
    for cn in ["9011", "9012", "9014", "1012", "1062"] {
        REPLIES.with_label_values(&[cn]);
    }
    for r in ["unknown_mn", "bad_password", "revoked"] {
        AUTH_FAILURES.with_label_values(&[r]);
    }
    for r in GATEWAY_REASONS {
        REJECTED.with_label_values(&[r]);
    }
    for r in [
        "garbage",
        "bad_length",
        "oversized",
        "bad_crc",
        "no_terminator",
    ] {
        REJECTED.with_label_values(&[r]);
    }
    for o in ["sent", "ok", "failed", "timeout"] {
        COMMANDS.with_label_values(&[o]);
    }
}
