//! Prometheus metrics of the broker, registered on `prometheus::default_registry()` so the
//! process's one `/metrics` endpoint exports them.

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use tracing::warn;

/// Why a connection was refused; the label of `offsite_broker_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The user name is not a syntactically valid device id.
    BadUsername,
    /// No device with that id in the registry.
    UnknownDevice,
    /// The device was revoked.
    Revoked,
    /// The password is not the device's current token.
    BadToken,
    /// The registry could not be asked in time; the connection is refused, the device retries.
    StoreError,
    /// Plain listener: not the internal service account or a wrong password.
    BadInternal,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 6] = [
        Self::BadUsername,
        Self::UnknownDevice,
        Self::Revoked,
        Self::BadToken,
        Self::StoreError,
        Self::BadInternal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadUsername => "bad_username",
            Self::UnknownDevice => "unknown_device",
            Self::Revoked => "revoked",
            Self::BadToken => "bad_token",
            Self::StoreError => "store_error",
            Self::BadInternal => "bad_internal",
        }
    }
}

struct Metrics {
    auth_failures: IntCounterVec,
    auth_success: IntCounter,
    connections: IntGauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let auth_failures = IntCounterVec::new(
        Opts::new("offsite_broker_auth_failures_total", "MQTT connections refused by the broker, by reason"),
        &["reason"],
    )
    .expect("static metric definition is valid");
    // Every label exists from the start, so a rate() over it is defined before the first refusal.
    for r in AuthFailure::ALL {
        auth_failures.with_label_values(&[r.as_str()]);
    }
    let auth_success =
        IntCounter::new("offsite_broker_auth_success_total", "MQTT connections the broker authenticated")
            .expect("static metric definition is valid");
    let connections = IntGauge::new(
        "offsite_broker_connections",
        "Remote MQTT connections open in the broker (router count, in-process links excluded)",
    )
    .expect("static metric definition is valid");
    let registry = prometheus::default_registry();
    for m in [
        Box::new(auth_failures.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(auth_success.clone()),
        Box::new(connections.clone()),
    ] {
        // Only a name clash with another collector can fail; the metric still counts, it is just
        // not exported, which is not worth refusing to start over.
        if let Err(e) = registry.register(m) {
            warn!(error = %e, "registering a broker metric");
        }
    }
    Metrics { auth_failures, auth_success, connections }
});

pub(crate) fn auth_failed(reason: AuthFailure) {
    METRICS.auth_failures.with_label_values(&[reason.as_str()]).inc();
}

pub(crate) fn auth_succeeded() {
    METRICS.auth_success.inc();
}

pub(crate) fn set_connections(n: i64) {
    METRICS.connections.set(n);
}

/// Makes sure the metrics exist in the default registry (they are otherwise created lazily, on
/// the first connection).
pub fn register() {
    LazyLock::force(&METRICS);
}

/// Current value of `offsite_broker_auth_failures_total{reason}`.
pub fn auth_failures(reason: AuthFailure) -> u64 {
    METRICS.auth_failures.with_label_values(&[reason.as_str()]).get()
}

/// Current value of `offsite_broker_auth_success_total`.
pub fn auth_successes() -> u64 {
    METRICS.auth_success.get()
}

/// Current value of `offsite_broker_connections`.
pub fn connections() -> i64 {
    METRICS.connections.get()
}
