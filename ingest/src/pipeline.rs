//! The processor: parses messages, resolves ids, and cuts batches by size and age.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use offsite_store::{samples::quality, DeadLetter, MetricDef, SampleRow, Store};
use offsite_wire::{decode_batch, Ack, Channel, CommandAck, Limits, RejectReason, RejectedSeq, Rejection, Status, Topic};
use tracing::{debug, warn};

use crate::camera::{self, CameraWork};
use crate::source::Incoming;
use crate::{metrics, CancellationToken, IngestConfig};

/// In-memory view of the registry: device ids -> keys, metric keys -> catalog entries.
pub struct Registry {
    store: Store,
    devices: HashMap<String, (i32, bool)>,
    /// Ids looked up and not found, with when, so a flood of unknown ids costs one query each per period.
    unknown: HashMap<String, Instant>,
    metrics: HashMap<String, MetricDef>,
    loaded_at: Instant,
}

const REFRESH: Duration = Duration::from_secs(10);

impl Registry {
    pub async fn load(store: Store) -> anyhow::Result<Self> {
        let mut r = Self {
            store,
            devices: HashMap::new(),
            unknown: HashMap::new(),
            metrics: HashMap::new(),
            loaded_at: Instant::now(),
        };
        r.reload().await?;
        Ok(r)
    }

    async fn reload(&mut self) -> anyhow::Result<()> {
        self.devices = self.store.device_keys().await?.into_iter().map(|(id, k, rev)| (id, (k, rev))).collect();
        self.metrics = self.store.metrics().await?.into_iter().map(|m| (m.key.clone(), m)).collect();
        self.unknown.clear();
        self.loaded_at = Instant::now();
        Ok(())
    }

    /// Refreshes periodically so revocations and catalog edits made elsewhere take effect.
    async fn maybe_reload(&mut self) {
        if self.loaded_at.elapsed() > REFRESH {
            if let Err(e) = self.reload().await {
                warn!(error = %e, "reloading device registry");
                self.loaded_at = Instant::now();
            }
        }
    }

    /// `Ok(Some((key, revoked)))`, `Ok(None)` if unknown.
    async fn device(&mut self, id: &str) -> anyhow::Result<Option<(i32, bool)>> {
        if let Some(d) = self.devices.get(id) {
            return Ok(Some(*d));
        }
        if self.unknown.get(id).is_some_and(|t| t.elapsed() < REFRESH) {
            return Ok(None);
        }
        match self.store.device_auth(id).await? {
            Some(a) => {
                self.devices.insert(id.to_owned(), (a.key, a.revoked));
                Ok(Some((a.key, a.revoked)))
            }
            None => {
                self.unknown.insert(id.to_owned(), Instant::now());
                Ok(None)
            }
        }
    }

    async fn metric(&mut self, key: &str) -> anyhow::Result<&MetricDef> {
        if !self.metrics.contains_key(key) {
            let m = self.store.ensure_metric(key).await?;
            self.metrics.insert(key.to_owned(), m);
        }
        Ok(&self.metrics[key])
    }
}

/// What a writer commits in one go, and who to tell afterwards.
#[derive(Default)]
pub struct Flush {
    pub rows: Vec<SampleRow>,
    pub dead: Vec<DeadLetter>,
    pub acks: HashMap<String, Ack>,
    pub status: Vec<(i32, String, bool, DateTime<Utc>)>,
    /// Devices' answers to commands.
    pub command_acks: Vec<(i32, CommandAck, DateTime<Utc>)>,
    /// Messages that make up this flush.
    pub messages: u64,
    /// Told once this flush is committed (the HJ 212 gateway sends its 9014 replies then).
    pub committed: Vec<tokio::sync::oneshot::Sender<()>>,
}

/// Samples from a gateway that authenticates its own devices (HJ 212): the device is resolved,
/// the metric keys are not yet. They take the same path as MQTT batches (batching, one COPY,
/// dedup, dead letters, last_seen, the analytics tap).
pub struct GatewayWork {
    pub device_key: i32,
    pub device_id: String,
    pub received_at: DateTime<Utc>,
    /// (metric key, device time, value, quality bits from the device's data flag)
    pub samples: Vec<(String, DateTime<Utc>, f64, i16)>,
    /// Refused input of this device, kept with its reason.
    pub dead: Vec<DeadLetter>,
    /// A connection opened (true) or closed (false).
    pub online: Option<bool>,
    /// Told after the commit that holds these samples (or their dead letters).
    pub committed: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Flush {
    fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.dead.is_empty()
            && self.acks.is_empty()
            && self.status.is_empty()
            && self.command_acks.is_empty()
            && self.committed.is_empty()
    }
}

pub async fn run(
    cfg: IngestConfig,
    mut reg: Registry,
    rx: flume::Receiver<Incoming>,
    out: flume::Sender<Flush>,
    cameras: flume::Sender<CameraWork>,
    gateway: flume::Receiver<GatewayWork>,
    stop: CancellationToken,
) {
    let max_delay = Duration::from_millis(cfg.batch_max_delay_ms);
    let mut cur = Flush::default();
    let mut started: Option<tokio::time::Instant> = None;
    loop {
        let deadline = started.map(|s| s + max_delay);
        let msg = tokio::select! {
            m = rx.recv_async() => m.ok(),
            Ok(w) = gateway.recv_async() => {
                reg.maybe_reload().await;
                process_gateway(&cfg, &mut reg, &mut cur, w).await;
                if started.is_none() && !cur.is_empty() {
                    started = Some(tokio::time::Instant::now());
                }
                if cur.rows.len() >= cfg.batch_max_rows {
                    started = None;
                    if out.send_async(std::mem::take(&mut cur)).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap()).await }, if deadline.is_some() => None,
            _ = stop.cancelled() => {
                // Drain what has already arrived, then finish.
                while let Ok(m) = rx.try_recv() {
                    process(&cfg, &mut reg, &mut cur, &cameras, m).await;
                }
                while let Ok(w) = gateway.try_recv() {
                    process_gateway(&cfg, &mut reg, &mut cur, w).await;
                }
                if !cur.is_empty() {
                    let _ = out.send_async(std::mem::take(&mut cur)).await;
                }
                return;
            }
        };
        match msg {
            Some(m) => {
                reg.maybe_reload().await;
                process(&cfg, &mut reg, &mut cur, &cameras, m).await;
                metrics::QUEUE_DEPTH.set(rx.len() as i64);
                if started.is_none() && !cur.is_empty() {
                    started = Some(tokio::time::Instant::now());
                }
                if cur.rows.len() >= cfg.batch_max_rows {
                    started = None;
                    if out.send_async(std::mem::take(&mut cur)).await.is_err() {
                        return;
                    }
                }
            }
            None if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) => {
                started = None;
                if out.send_async(std::mem::take(&mut cur)).await.is_err() {
                    return;
                }
            }
            None => {
                if rx.is_disconnected() {
                    if !cur.is_empty() {
                        let _ = out.send_async(std::mem::take(&mut cur)).await;
                    }
                    return;
                }
            }
        }
    }
}

async fn process(cfg: &IngestConfig, reg: &mut Registry, cur: &mut Flush, cameras: &flume::Sender<CameraWork>, m: Incoming) {
    let topic_str = String::from_utf8_lossy(&m.topic).into_owned();
    let topic = match Topic::parse(&topic_str) {
        Ok(t) => t,
        Err(e) => return dead(cur, None, topic_str, Rejection::new(RejectReason::BadTopic, e.to_string()), m.payload.to_vec()),
    };
    let device = topic.device.as_str().to_owned();
    let known = match reg.device(&device).await {
        Ok(k) => k,
        Err(e) => {
            // The database is unreachable: the message is not acknowledged, the device resends it.
            warn!(error = %e, "device lookup failed; message left unacknowledged");
            return;
        }
    };
    match topic.channel {
        Channel::Data => {
            cur.messages += 1;
            metrics::MESSAGES.inc();
            let Some((key, revoked)) = known else {
                return dead(cur, Some(device), topic_str, Rejection::new(RejectReason::UnknownDevice, "not in the registry"), m.payload.to_vec());
            };
            if revoked {
                let seq = seq_of(&m.payload);
                dead(cur, Some(device.clone()), topic_str, Rejection::new(RejectReason::Revoked, "device is revoked"), m.payload.to_vec());
                if let Some(seq) = seq {
                    cur.acks.entry(device).or_default().rejected.push(RejectedSeq { seq, reason: RejectReason::Revoked });
                }
                return;
            }
            let limits = limits(cfg, m.received_at);
            match decode_batch(&m.payload, &limits) {
                Ok(batch) => {
                    cur.rows.reserve(batch.samples.len());
                    for s in batch.samples {
                        let metric = match reg.metric(s.metric.as_str()).await {
                            Ok(d) => d,
                            Err(e) => {
                                warn!(error = %e, "metric lookup failed; message left unacknowledged");
                                return;
                            }
                        };
                        let mut q = 0;
                        if !metric.in_range(s.value) {
                            q |= quality::OUT_OF_RANGE;
                            metrics::FLAGGED.inc();
                        }
                        cur.rows.push(SampleRow {
                            device_key: key,
                            metric_id: metric.id,
                            ts: s.ts,
                            received_at: m.received_at,
                            value: s.value,
                            quality: q,
                        });
                    }
                    cur.acks.entry(device).or_default().seqs.push(batch.seq);
                }
                Err(rej) => {
                    let seq = seq_of(&m.payload);
                    let reason = rej.reason;
                    dead(cur, Some(device.clone()), topic_str, rej, m.payload.to_vec());
                    if let Some(seq) = seq {
                        cur.acks.entry(device).or_default().rejected.push(RejectedSeq { seq, reason });
                    }
                }
            }
        }
        Channel::Status => {
            let Some((key, _)) = known else { return };
            match Status::decode(&m.payload) {
                Ok(s) => cur.status.push((key, device, s.online, m.received_at)),
                Err(e) => debug!(device, error = %e, "ignoring malformed status"),
            }
        }
        Channel::CmdAck => {
            let Some((key, _)) = known else { return };
            match CommandAck::decode(&m.payload) {
                Ok(a) => cur.command_acks.push((key, a, m.received_at)),
                Err(e) => {
                    dead(cur, Some(device), topic_str, Rejection::new(RejectReason::Malformed, e), m.payload.to_vec())
                }
            }
        }
        // Ingest subscribes only to what devices send.
        Channel::Ack | Channel::Cmd => {}
        Channel::Event => {
            let Some((key, revoked)) = known else {
                return dead(cur, Some(device), topic_str, Rejection::new(RejectReason::UnknownDevice, "not in the registry"), m.payload.to_vec());
            };
            let refuse = |cur: &mut Flush, rej: Rejection| {
                let seq = seq_of(&m.payload);
                let reason = rej.reason;
                dead(cur, Some(device.clone()), topic_str.clone(), rej, m.payload.to_vec());
                if let Some(seq) = seq {
                    cur.acks.entry(device.clone()).or_default().rejected.push(RejectedSeq { seq, reason });
                }
            };
            if revoked {
                return refuse(cur, Rejection::new(RejectReason::Revoked, "device is revoked"));
            }
            match camera::check(&m.payload) {
                // Applied in order by the camera worker, which acknowledges after it commits.
                Ok((message, jpeg)) => {
                    let _ = cameras.send_async(CameraWork { device_key: key, device_id: device.clone(), message, jpeg }).await;
                }
                Err(rej) => refuse(cur, rej),
            }
        }
    }
}

async fn process_gateway(cfg: &IngestConfig, reg: &mut Registry, cur: &mut Flush, w: GatewayWork) {
    let limits = limits(cfg, w.received_at);
    let mut too_old_or_new = 0usize;
    cur.rows.reserve(w.samples.len());
    for (key, ts, value, flag_bits) in w.samples {
        if ts < limits.not_before || ts > limits.not_after {
            too_old_or_new += 1;
            continue;
        }
        let metric = match reg.metric(&key).await {
            Ok(d) => d,
            Err(e) => {
                // The logger gets no 9014 and resends (if it keeps history); nothing is committed.
                warn!(error = %e, metric = key, "metric lookup failed; HJ 212 packet left unanswered");
                return;
            }
        };
        let mut q = flag_bits;
        if !metric.in_range(value) {
            q |= quality::OUT_OF_RANGE;
            metrics::FLAGGED.inc();
        }
        cur.rows.push(SampleRow { device_key: w.device_key, metric_id: metric.id, ts, received_at: w.received_at, value, quality: q });
    }
    if too_old_or_new > 0 {
        let detail = format!("{too_old_or_new} value(s) with a DataTime outside the accepted window");
        metrics::REJECTED.with_label_values(&[RejectReason::BadTimestamp.as_str()]).inc();
        cur.dead.push(DeadLetter {
            device_id: Some(w.device_id.clone()),
            topic: format!("hj212/{}", w.device_id),
            reason: RejectReason::BadTimestamp.as_str(),
            detail,
            payload: Vec::new(),
        });
    }
    cur.dead.extend(w.dead);
    if let Some(online) = w.online {
        cur.status.push((w.device_key, w.device_id, online, w.received_at));
    }
    if let Some(c) = w.committed {
        cur.committed.push(c);
    }
}

fn limits(cfg: &IngestConfig, now: DateTime<Utc>) -> Limits {
    Limits {
        max_bytes: cfg.max_payload_bytes,
        max_samples: cfg.max_samples_per_message,
        not_before: now - chrono::Duration::days(cfg.retention_days),
        not_after: now + chrono::Duration::seconds(cfg.max_future_skew_secs),
    }
}

fn dead(cur: &mut Flush, device_id: Option<String>, topic: String, rej: Rejection, payload: Vec<u8>) {
    metrics::REJECTED.with_label_values(&[rej.reason.as_str()]).inc();
    debug!(?device_id, reason = %rej.reason, detail = %rej.detail, "dead-lettered");
    cur.dead.push(DeadLetter { device_id, topic, reason: rej.reason.as_str(), detail: rej.detail, payload });
}

/// The sequence number of a refused message, if it has one, so the device can stop resending it.
fn seq_of(payload: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct SeqOnly {
        seq: u64,
    }
    serde_json::from_slice::<SeqOnly>(payload).ok().map(|s| s.seq)
}
