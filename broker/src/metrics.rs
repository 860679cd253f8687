//! Prometheus metrics of the broker, registered on `prometheus::default_registry()` so the
//! process's one `/metrics` endpoint exports them.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};
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
    /// A client id with `+ $ # /` in it, which rumqttd's router would refuse only after its
    /// last-will bookkeeping (see `auth::client_id_problem`).
    BadClientId,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 7] = [
        Self::BadUsername,
        Self::UnknownDevice,
        Self::Revoked,
        Self::BadToken,
        Self::StoreError,
        Self::BadInternal,
        Self::BadClientId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadUsername => "bad_username",
            Self::UnknownDevice => "unknown_device",
            Self::Revoked => "revoked",
            Self::BadToken => "bad_token",
            Self::StoreError => "store_error",
            Self::BadInternal => "bad_internal",
            Self::BadClientId => "bad_client_id",
        }
    }
}

struct Metrics {
    auth_failures: IntCounterVec,
    auth_success: IntCounter,
    connections: IntGauge,
    heap_trim: Histogram,
    heap_trim_released: IntCounter,
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
    let heap_trim = Histogram::with_opts(
        HistogramOpts::new(
            "offsite_broker_heap_trim_seconds",
            "Time each periodic trim of the heap took (malloc_trim; see [broker] heap_trim_interval_ms)",
        )
        .buckets(vec![0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]),
    )
    .expect("static metric definition is valid");
    let heap_trim_released = IntCounter::new(
        "offsite_broker_heap_trims_released_total",
        "Periodic heap trims that handed pages back to the system",
    )
    .expect("static metric definition is valid");
    let registry = prometheus::default_registry();
    for m in [
        Box::new(auth_failures.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(auth_success.clone()),
        Box::new(connections.clone()),
        Box::new(heap_trim.clone()),
        Box::new(heap_trim_released.clone()),
    ] {
        // Only a name clash with another collector can fail; the metric still counts, it is just
        // not exported, which is not worth refusing to start over.
        if let Err(e) = registry.register(m) {
            warn!(error = %e, "registering a broker metric");
        }
    }
    Metrics { auth_failures, auth_success, connections, heap_trim, heap_trim_released }
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

pub(crate) fn heap_trimmed(took: std::time::Duration, released: bool) {
    METRICS.heap_trim.observe(took.as_secs_f64());
    if released {
        METRICS.heap_trim_released.inc();
    }
}

/// Makes sure the metrics exist in the default registry (they are otherwise created lazily, on
/// the first connection).
pub fn register() {
    LazyLock::force(&METRICS);
    LazyLock::force(&FRONT);
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

/// Why the device front closed a connection before or during its TLS handshake; the label of
/// `offsite_broker_front_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontRefusal {
    /// `max_connections` device connections were already open.
    Full,
    /// The first bytes were not a TLS handshake record.
    NotTls,
    /// The device closed before sending a whole first record.
    ClosedEarly,
    /// No whole first record within `connection_timeout_ms`.
    HelloTimeout,
    /// The TLS handshake did not progress within its deadline.
    HandshakeTimeout,
    /// No handshake slot free within 60 s (a connection storm beyond what rumqttd keeps up with).
    Busy,
}

impl FrontRefusal {
    pub const ALL: [FrontRefusal; 6] =
        [Self::Full, Self::NotTls, Self::ClosedEarly, Self::HelloTimeout, Self::HandshakeTimeout, Self::Busy];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::NotTls => "not_tls",
            Self::ClosedEarly => "closed_early",
            Self::HelloTimeout => "hello_timeout",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::Busy => "busy",
        }
    }
}

struct FrontMetrics {
    open: IntGauge,
    accepted: IntCounter,
    refused: IntCounterVec,
    bytes: IntCounterVec,
    /// The two `bytes` children, resolved once: they are counted on every read.
    from_device: IntCounter,
    to_device: IntCounter,
    upstream_failures: IntCounter,
    accept_failures: IntCounter,
}

static FRONT: LazyLock<FrontMetrics> = LazyLock::new(|| {
    let open = IntGauge::new("offsite_broker_front_connections", "Device connections open in the device front")
        .expect("static metric definition is valid");
    let accepted = IntCounter::new(
        "offsite_broker_front_accepted_total",
        "Device connections the front accepted (within the connection limit)",
    )
    .expect("static metric definition is valid");
    let refused = IntCounterVec::new(
        Opts::new(
            "offsite_broker_front_refused_total",
            "Device connections the front closed before their TLS handshake was over, by reason",
        ),
        &["reason"],
    )
    .expect("static metric definition is valid");
    for r in FrontRefusal::ALL {
        refused.with_label_values(&[r.as_str()]);
    }
    let bytes = IntCounterVec::new(
        Opts::new("offsite_broker_front_bytes_total", "Bytes the device front relayed, by direction"),
        &["direction"],
    )
    .expect("static metric definition is valid");
    for d in ["from_device", "to_device"] {
        bytes.with_label_values(&[d]);
    }
    let upstream_failures = IntCounter::new(
        "offsite_broker_front_upstream_failures_total",
        "Device connections the front could not relay because rumqttd's loopback listener failed",
    )
    .expect("static metric definition is valid");
    let accept_failures = IntCounter::new(
        "offsite_broker_front_accept_failures_total",
        "Failed accepts on a public device listener (e.g. out of file descriptors)",
    )
    .expect("static metric definition is valid");
    let registry = prometheus::default_registry();
    for m in [
        Box::new(open.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(accepted.clone()),
        Box::new(refused.clone()),
        Box::new(bytes.clone()),
        Box::new(upstream_failures.clone()),
        Box::new(accept_failures.clone()),
    ] {
        if let Err(e) = registry.register(m) {
            warn!(error = %e, "registering a device front metric");
        }
    }
    let from_device = bytes.with_label_values(&["from_device"]);
    let to_device = bytes.with_label_values(&["to_device"]);
    FrontMetrics { open, accepted, refused, bytes, from_device, to_device, upstream_failures, accept_failures }
});

/// Counts a connection open in the device front while it lives.
pub(crate) struct FrontOpen(());

impl FrontOpen {
    pub(crate) fn new() -> Self {
        FRONT.open.inc();
        Self(())
    }
}

impl Drop for FrontOpen {
    fn drop(&mut self) {
        FRONT.open.dec();
    }
}

pub(crate) fn front_accepted() {
    FRONT.accepted.inc();
}

pub(crate) fn front_refused(reason: FrontRefusal) {
    FRONT.refused.with_label_values(&[reason.as_str()]).inc();
}

pub(crate) fn front_bytes_from_device(n: usize) {
    FRONT.from_device.inc_by(n as u64);
}

pub(crate) fn front_bytes_to_device(n: usize) {
    FRONT.to_device.inc_by(n as u64);
}

pub(crate) fn front_upstream_failed() {
    FRONT.upstream_failures.inc();
}

pub(crate) fn front_accept_failed() {
    FRONT.accept_failures.inc();
}

/// Current value of `offsite_broker_front_refused_total{reason}`.
pub fn front_refusals(reason: FrontRefusal) -> u64 {
    FRONT.refused.with_label_values(&[reason.as_str()]).get()
}

/// Current value of `offsite_broker_front_accepted_total`.
pub fn front_accepts() -> u64 {
    FRONT.accepted.get()
}

/// Current value of `offsite_broker_front_connections`.
pub fn front_open() -> i64 {
    FRONT.open.get()
}

/// The device front's counters in one process, as a front process reports them to the broker
/// (one JSON line a second) so that the broker's `/metrics` covers every front process.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct FrontSnapshot {
    pub open: i64,
    pub accepted: u64,
    /// In the order of [`FrontRefusal::ALL`].
    pub refused: Vec<u64>,
    pub from_device: u64,
    pub to_device: u64,
    pub upstream_failures: u64,
    pub accept_failures: u64,
}

pub(crate) fn front_snapshot() -> FrontSnapshot {
    FrontSnapshot {
        open: FRONT.open.get(),
        accepted: FRONT.accepted.get(),
        refused: FrontRefusal::ALL.iter().map(|r| front_refusals(*r)).collect(),
        from_device: FRONT.bytes.with_label_values(&["from_device"]).get(),
        to_device: FRONT.bytes.with_label_values(&["to_device"]).get(),
        upstream_failures: FRONT.upstream_failures.get(),
        accept_failures: FRONT.accept_failures.get(),
    }
}

/// Adds what a front process counted since its previous report (`prev`) to this process's metrics.
pub(crate) fn front_add(prev: &FrontSnapshot, now: &FrontSnapshot) {
    let delta = |a: u64, b: u64| b.saturating_sub(a);
    FRONT.open.add(now.open - prev.open);
    FRONT.accepted.inc_by(delta(prev.accepted, now.accepted));
    for (i, r) in FrontRefusal::ALL.iter().enumerate() {
        let (a, b) = (prev.refused.get(i).copied().unwrap_or(0), now.refused.get(i).copied().unwrap_or(0));
        FRONT.refused.with_label_values(&[r.as_str()]).inc_by(delta(a, b));
    }
    FRONT.bytes.with_label_values(&["from_device"]).inc_by(delta(prev.from_device, now.from_device));
    FRONT.bytes.with_label_values(&["to_device"]).inc_by(delta(prev.to_device, now.to_device));
    FRONT.upstream_failures.inc_by(delta(prev.upstream_failures, now.upstream_failures));
    FRONT.accept_failures.inc_by(delta(prev.accept_failures, now.accept_failures));
}

/// A front process ended: its connections are no longer open.
pub(crate) fn front_process_ended(last: &FrontSnapshot) {
    FRONT.open.sub(last.open);
}
