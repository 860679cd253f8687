//! Per-device fairness: one device's flood must not delay everybody else's data.
//!
//! Every device has a token-bucket budget of messages/s and samples/s with a burst of
//! `device_burst_s` seconds (`[ingest] device_max_messages_per_s`, `device_max_samples_per_s`).
//! The budget is checked where a message enters ingest, before the processor queue that all
//! devices share, from the device id in the topic and a byte count of the payload, so a
//! flooder's excess never waits in that queue ahead of others.
//!
//! A message over budget is dropped *unacknowledged*: the device still holds it and resends it
//! later (the edge agent after `resend_after_s`), so nothing is lost, and a device that keeps
//! sending faster than its budget only gets its excess delayed. HJ 212 loggers are paced instead:
//! their connection stops being read until the budget allows the packet, which slows that one
//! logger's TCP stream and nobody else's. Either way the excess is counted in
//! `offsite_ingest_throttled_total` and the device gets one open orange warning
//! `health|<device>||flooding`, resolved once it has stayed within budget for `device_calm_s`.
//!
//! The budget is per ingest process: with N replicas sharing a subscription a device may send up to
//! N times its budget before it is throttled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use offsite_store::{Level, NewWarning, Store, WarningChange, WarningFilter};
use serde_json::json;
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::{metrics, CancellationToken, IngestConfig};

/// Where a message came from, as the `source` label of the throttling counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Mqtt,
    Hj212,
}

impl Path {
    fn as_str(self) -> &'static str {
        match self {
            Path::Mqtt => "mqtt",
            Path::Hj212 => "hj212",
        }
    }
}

/// A device's allowance, from `[ingest]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceBudget {
    pub messages_per_s: f64,
    pub samples_per_s: f64,
    /// How many seconds of budget a device may spend at once.
    pub burst_s: f64,
    /// How long a flooding device must stay within budget before its warning is resolved.
    pub calm: Duration,
}

impl DeviceBudget {
    /// `None` when the configuration turns the budget off (a rate of 0).
    pub fn from_config(cfg: &IngestConfig) -> Option<Self> {
        if cfg.device_max_messages_per_s <= 0.0 || cfg.device_max_samples_per_s <= 0.0 {
            return None;
        }
        Some(Self {
            messages_per_s: cfg.device_max_messages_per_s,
            samples_per_s: cfg.device_max_samples_per_s,
            burst_s: cfg.device_burst_s.max(0.1),
            calm: Duration::from_secs_f64(cfg.device_calm_s.max(0.1)),
        })
    }

    fn message_capacity(&self) -> f64 {
        (self.messages_per_s * self.burst_s).max(1.0)
    }

    fn sample_capacity(&self) -> f64 {
        (self.samples_per_s * self.burst_s).max(1.0)
    }
}

/// One device's buckets and what it has offered lately.
struct Bucket {
    messages: f64,
    samples: f64,
    refilled: Instant,
    /// Offered (admitted or not) in the current one-second window, and the last full window's rate.
    window_start: Instant,
    window_messages: u64,
    window_samples: u64,
    rate: (f64, f64),
    /// Set while the device is known to be flooding; the last time it went over budget.
    flooding_since: Option<Instant>,
    last_over: Instant,
    device_key: Option<i32>,
}

impl Bucket {
    fn new(b: &DeviceBudget, now: Instant) -> Self {
        Self {
            messages: b.message_capacity(),
            samples: b.sample_capacity(),
            refilled: now,
            window_start: now,
            window_messages: 0,
            window_samples: 0,
            rate: (0.0, 0.0),
            flooding_since: None,
            last_over: now,
            device_key: None,
        }
    }

    fn refill(&mut self, b: &DeviceBudget, now: Instant) {
        let dt = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.messages = (self.messages + dt * b.messages_per_s).min(b.message_capacity());
        self.samples = (self.samples + dt * b.samples_per_s).min(b.sample_capacity());
    }

    fn offer(&mut self, samples: u64, now: Instant) {
        let w = now.duration_since(self.window_start).as_secs_f64();
        if w >= 1.0 {
            self.rate = (
                self.window_messages as f64 / w,
                self.window_samples as f64 / w,
            );
            self.window_start = now;
            self.window_messages = 0;
            self.window_samples = 0;
        }
        self.window_messages += 1;
        self.window_samples += samples;
    }

    /// The offered rate (messages/s, samples/s): the last full second, or the current partial one
    /// when that is higher (a flood is often seen within its first second).
    fn offered_rate(&self, now: Instant) -> (f64, f64) {
        let w = now
            .duration_since(self.window_start)
            .as_secs_f64()
            .max(0.05);
        let partial = (
            self.window_messages as f64 / w,
            self.window_samples as f64 / w,
        );
        (self.rate.0.max(partial.0), self.rate.1.max(partial.1))
    }
}

/// A change in a device's flooding state, for the warden that keeps its warning.
#[derive(Debug, Clone)]
pub(crate) enum FloodEvent {
    Started {
        device_id: String,
        device_key: Option<i32>,
        at: DateTime<Utc>,
        messages_per_s: f64,
        samples_per_s: f64,
    },
    Ended {
        device_id: String,
        at: DateTime<Utc>,
        flooded_for: Duration,
    },
}

struct Inner {
    budget: DeviceBudget,
    buckets: Mutex<HashMap<String, Bucket>>,
    events: flume::Sender<FloodEvent>,
    events_rx: flume::Receiver<FloodEvent>,
}

/// The per-device budget check shared by the MQTT source, the HJ 212 gateway and the warden.
/// Cloning shares the buckets.
#[derive(Clone)]
pub struct DeviceGate(Option<Arc<Inner>>);

/// Buckets of devices silent this long (and not flooding) are forgotten, so topics with made-up
/// device ids cannot grow the map for ever.
const IDLE_EVICT: Duration = Duration::from_secs(600);

impl DeviceGate {
    pub fn new(cfg: &IngestConfig) -> Self {
        Self::with_budget(DeviceBudget::from_config(cfg))
    }

    /// A gate with no budget: admits everything (benchmarks of the unthrottled path).
    pub fn unlimited() -> Self {
        Self(None)
    }

    pub fn with_budget(budget: Option<DeviceBudget>) -> Self {
        metrics::register_fairness();
        Self(budget.map(|budget| {
            let (events, events_rx) = flume::unbounded();
            Arc::new(Inner {
                budget,
                buckets: Mutex::new(HashMap::new()),
                events,
                events_rx,
            })
        }))
    }

    pub fn budget(&self) -> Option<DeviceBudget> {
        self.0.as_ref().map(|i| i.budget)
    }

    /// Whether an MQTT message of `device` carrying about `samples` samples may go on; charges
    /// the budget when it may. A refused message is counted and must not be acknowledged.
    pub fn admit(&self, device: &str, samples: u64) -> bool {
        let Some(inner) = &self.0 else { return true };
        let now = Instant::now();
        let b = &inner.budget;
        let mut map = inner.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(device) {
            map.insert(device.to_owned(), Bucket::new(b, now));
        }
        let bucket = map.get_mut(device).expect("just inserted");
        bucket.refill(b, now);
        bucket.offer(samples, now);
        // A message bigger than the whole burst is admitted from a full bucket (and leaves a debt),
        // or a large but legal batch could never pass.
        let need = (samples as f64).min(b.sample_capacity());
        if bucket.messages >= 1.0 && bucket.samples >= need {
            bucket.messages -= 1.0;
            bucket.samples -= samples as f64;
            return true;
        }
        metrics::THROTTLED
            .with_label_values(&[Path::Mqtt.as_str(), "messages"])
            .inc();
        metrics::THROTTLED
            .with_label_values(&[Path::Mqtt.as_str(), "samples"])
            .inc_by(samples);
        over_budget(inner, device, bucket, None, now);
        false
    }

    /// How long an HJ 212 connection of `device` must wait before its packet of `samples` values
    /// goes on. Charges the budget now (a debt, paid back by the wait). Zero when within budget.
    pub fn pace(&self, device: &str, device_key: i32, samples: u64) -> Duration {
        let Some(inner) = &self.0 else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let b = &inner.budget;
        let mut map = inner.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(device) {
            map.insert(device.to_owned(), Bucket::new(b, now));
        }
        let bucket = map.get_mut(device).expect("just inserted");
        bucket.refill(b, now);
        bucket.offer(samples, now);
        bucket.messages -= 1.0;
        bucket.samples -= samples as f64;
        let wait_m = if bucket.messages < 0.0 {
            -bucket.messages / b.messages_per_s
        } else {
            0.0
        };
        let wait_s = if bucket.samples < 0.0 {
            -bucket.samples / b.samples_per_s
        } else {
            0.0
        };
        let wait = wait_m.max(wait_s);
        if wait <= 0.0 {
            return Duration::ZERO;
        }
        metrics::THROTTLED
            .with_label_values(&[Path::Hj212.as_str(), "messages"])
            .inc();
        metrics::THROTTLED
            .with_label_values(&[Path::Hj212.as_str(), "samples"])
            .inc_by(samples);
        over_budget(inner, device, bucket, Some(device_key), now);
        Duration::from_secs_f64(wait)
    }

    /// Takes over a flooding warning left open by an earlier process (whose buckets are gone): the
    /// device counts as flooding from now, so its warning resolves once it has been calm long enough.
    fn adopt(&self, device: &str, device_key: i32) {
        let Some(inner) = &self.0 else { return };
        let now = Instant::now();
        let mut map = inner.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = map
            .entry(device.to_owned())
            .or_insert_with(|| Bucket::new(&inner.budget, now));
        if bucket.flooding_since.is_none() {
            bucket.flooding_since = Some(now);
            bucket.last_over = now;
            bucket.device_key = Some(device_key);
            metrics::FLOODING_DEVICES.inc();
        }
    }

    /// Ends the flooding state of devices calm for long enough, and forgets idle buckets.
    fn sweep(&self) {
        let Some(inner) = &self.0 else { return };
        let now = Instant::now();
        let calm = inner.budget.calm;
        let mut map = inner.buckets.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|device, bucket| {
            if let Some(since) = bucket.flooding_since {
                if now.duration_since(bucket.last_over) >= calm {
                    bucket.flooding_since = None;
                    metrics::FLOODING_DEVICES.dec();
                    info!(device, "device back within its ingest budget");
                    let _ = inner.events.send(FloodEvent::Ended {
                        device_id: device.clone(),
                        at: Utc::now(),
                        flooded_for: bucket.last_over.duration_since(since),
                    });
                }
                return true;
            }
            now.duration_since(bucket.refilled) < IDLE_EVICT
        });
    }
}

fn over_budget(
    inner: &Inner,
    device: &str,
    bucket: &mut Bucket,
    device_key: Option<i32>,
    now: Instant,
) {
    bucket.last_over = now;
    if device_key.is_some() {
        bucket.device_key = device_key;
    }
    if bucket.flooding_since.is_none() {
        bucket.flooding_since = Some(now);
        metrics::FLOODING_DEVICES.inc();
        let (messages_per_s, samples_per_s) = bucket.offered_rate(now);
        warn!(
            device,
            messages_per_s, samples_per_s, "device over its ingest budget: excess not accepted"
        );
        let _ = inner.events.send(FloodEvent::Started {
            device_id: device.to_owned(),
            device_key: bucket.device_key,
            at: Utc::now(),
            messages_per_s,
            samples_per_s,
        });
    }
}

/// Cheap upper bound on the samples in a data message, without parsing it: every sample is a JSON
/// object, so it brings at least one `{` (besides the batch's own). Escapes cannot hide a brace.
pub fn estimate_samples(payload: &[u8]) -> u64 {
    let braces = payload.iter().filter(|&&b| b == b'{').count() as u64;
    braces.saturating_sub(1).max(1)
}

/// The device id in `/tenants/<id>/...`, without allocating; `None` for any other topic (the
/// processor refuses those as `bad_topic`).
pub fn topic_device(topic: &[u8]) -> Option<&str> {
    let rest = topic.strip_prefix(b"/tenants/")?;
    let end = rest.iter().position(|&b| b == b'/')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// Who raises the flooding warnings.
const SOURCE: &str = "health";
const DETECTOR: &str = "fairness";
const DETECTOR_VERSION: &str = "1";

/// One open warning per flooding device.
pub fn flooding_key(device_id: &str) -> String {
    format!("health|{device_id}||flooding")
}

/// Adopts every open flooding warning, page by page (open health warnings also include every
/// offline device's, so there may be many).
async fn take_over_open_warnings(gate: &DeviceGate, store: &Store) {
    const PAGE: i64 = 1000;
    let mut f = WarningFilter {
        open: Some(true),
        source: Some(SOURCE.into()),
        limit: PAGE,
        ..Default::default()
    };
    loop {
        match store.warnings(&f).await {
            Ok((list, _)) => {
                for w in list
                    .iter()
                    .filter(|w| w.dedup_key == flooding_key(&w.device_id))
                {
                    gate.adopt(&w.device_id, w.device_key);
                }
                if (list.len() as i64) < PAGE {
                    return;
                }
                f.offset += PAGE;
            }
            Err(e) => {
                return warn!(error = %format!("{e:#}"), "open flooding warnings not taken over")
            }
        }
    }
}

/// Keeps the flooding warnings: opens one when a device starts flooding, resolves it when the
/// device has been calm for long enough.
pub(crate) async fn warden(
    gate: DeviceGate,
    store: Store,
    live: Option<broadcast::Sender<WarningChange>>,
    stop: CancellationToken,
) {
    let Some(inner) = gate.0.clone() else { return };
    take_over_open_warnings(&gate, &store).await;
    let tick = (inner.budget.calm / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut timer = tokio::time::interval(tick);
    loop {
        tokio::select! {
            e = inner.events_rx.recv_async() => match e {
                Ok(e) => apply(&store, &inner.budget, live.as_ref(), e).await,
                Err(_) => return,
            },
            _ = timer.tick() => gate.sweep(),
            _ = stop.cancelled() => return,
        }
    }
}

async fn apply(
    store: &Store,
    budget: &DeviceBudget,
    live: Option<&broadcast::Sender<WarningChange>>,
    e: FloodEvent,
) {
    match e {
        FloodEvent::Started {
            device_id,
            device_key,
            at,
            messages_per_s,
            samples_per_s,
        } => {
            let key = match device_key {
                Some(k) => k,
                None => match store.device_auth(&device_id).await {
                    Ok(Some(a)) => a.key,
                    // Made-up ids are refused by the processor anyway; counted, no warning.
                    Ok(None) => return,
                    Err(e) => {
                        return warn!(device = device_id, error = %format!("{e:#}"), "flooding warning not recorded")
                    }
                },
            };
            let w = NewWarning {
                dedup_key: flooding_key(&device_id),
                source: SOURCE.into(),
                source_version: DETECTOR_VERSION.into(),
                event: "flooding".into(),
                level: Level::ORANGE,
                device_key: key,
                metric_id: None,
                object_id: None,
                detail: format!(
                    "设备发送超出接入配额，超出部分未确认（设备稍后重发）/ device sends beyond its ingest budget; the excess is not acknowledged (the device resends it later): {samples_per_s:.0} samples/s, {messages_per_s:.0} messages/s offered"
                ),
                score: 1.0,
                at,
                evidence: json!({
                    "detector": DETECTOR,
                    "version": DETECTOR_VERSION,
                    "at": at,
                    "offered_messages_per_s": round1(messages_per_s),
                    "offered_samples_per_s": round1(samples_per_s),
                    "budget_messages_per_s": budget.messages_per_s,
                    "budget_samples_per_s": budget.samples_per_s,
                    "burst_s": budget.burst_s,
                }),
                group_window: chrono::Duration::seconds(30),
            };
            match store.upsert_warning(&w).await {
                Ok(u) => {
                    if let Some(live) = live {
                        let kind = if u.is_opened() { "opened" } else { "repeated" };
                        let _ = live.send(WarningChange {
                            id: u.record().id,
                            kind: kind.into(),
                        });
                    }
                }
                Err(e) => {
                    warn!(device = device_id, error = %format!("{e:#}"), "flooding warning not recorded")
                }
            }
        }
        FloodEvent::Ended {
            device_id,
            at,
            flooded_for,
        } => {
            match store
                .resolve_warning(&flooding_key(&device_id), at, "cleared")
                .await
            {
                Ok(Some(r)) => {
                    info!(
                        device = device_id,
                        flooded_s = flooded_for.as_secs_f64(),
                        "flooding warning resolved"
                    );
                    if let Some(live) = live {
                        let _ = live.send(WarningChange {
                            id: r.id,
                            kind: "resolved".into(),
                        });
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(device = device_id, error = %format!("{e:#}"), "flooding warning not resolved")
                }
            }
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(messages: f64, samples: f64, burst: f64) -> DeviceGate {
        DeviceGate::with_budget(Some(DeviceBudget {
            messages_per_s: messages,
            samples_per_s: samples,
            burst_s: burst,
            calm: Duration::from_secs(1),
        }))
    }

    #[test]
    fn a_burst_passes_then_the_excess_is_refused_per_device() {
        let g = gate(10.0, 1000.0, 1.0);
        let admitted = (0..50).filter(|_| g.admit("flood", 1)).count();
        // Ten messages of burst (plus at most a token refilled while the loop ran).
        assert!((10..=11).contains(&admitted), "admitted {admitted}");
        // Another device's budget is its own.
        assert!(g.admit("calm", 1));
    }

    #[test]
    fn samples_are_budgeted_and_a_huge_batch_passes_from_a_full_bucket() {
        let g = gate(1000.0, 100.0, 1.0);
        assert!(
            g.admit("d", 5000),
            "a batch larger than the burst passes once"
        );
        assert!(!g.admit("d", 1), "and leaves a debt");
    }

    #[test]
    fn pacing_asks_a_logger_to_wait_once_over_budget() {
        let g = gate(1000.0, 100.0, 1.0);
        assert_eq!(g.pace("mn", 1, 100), Duration::ZERO);
        let w = g.pace("mn", 1, 50);
        assert!(w >= Duration::from_millis(400), "{w:?}");
    }

    #[test]
    fn no_budget_admits_everything() {
        let g = DeviceGate::unlimited();
        assert!((0..10_000).all(|_| g.admit("d", 10_000)));
    }

    #[test]
    fn sample_estimate_never_undercounts() {
        let b = offsite_wire::encode_batch(&offsite_wire::Batch {
            seq: 1,
            samples: (0..7)
                .map(|i| offsite_wire::Sample {
                    ts: Utc::now(),
                    metric: offsite_wire::MetricKey::parse("flow").unwrap(),
                    value: i as f64,
                })
                .collect(),
        });
        assert_eq!(estimate_samples(&b), 7);
        assert_eq!(topic_device(b"/tenants/d1/v1/data"), Some("d1"));
        assert_eq!(topic_device(b"/other/d1"), None);
    }
}
