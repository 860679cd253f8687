//! The analytics tier on the live stream: committed samples in (a bounded queue fed by ingest),
//! the detector chain over them, warnings out (database + live notifications).
//!
//! Warnings: one open warning per dedup key (source, device, metric, event); repeats bump its
//! counter; a clearing condition resolves it; an offline device's data warnings and warnings during
//! maintenance are inhibited (counted, not stored); silences are applied by the store. Each new
//! warning carries its evidence: the series' recent values, the detector and its version, the score.
//!
//! Data flags (HJ 212, in the sample's quality bits): a flagged value reaches no detector as a
//! reading (see `Observation::measured`). D, T, B and F open a device-health warning per device and
//! flag (`FlagKind`), resolved once every metric that carried the flag has sent a value without
//! it. While any metric of a device carries M or C, the device's data warnings are inhibited, as
//! in a maintenance window.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Utc};
use offsite_store::analytics_shards::{Shard, ShardCount};
use offsite_store::warnings::{NewWarning, Upserted, WarningChange};
use offsite_store::{SampleRow, Store};
use prometheus::{register_histogram, register_int_counter_vec, register_int_gauge, Histogram, IntCounterVec, IntGauge};
use serde_json::json;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::chain::Chain;
use crate::detector::{Level, Observation, SeriesKey, SeriesMeta, Transition};
use crate::replay::{PageRequest, ShardReplay};
use crate::shards::{
    FeedControl, ShardConfig, IN_PROCESS_WAITING, LEASE_CHANGES, OWNED, REPLAYED, REPLAYING, REPLAY_HELD_DROPPED, SKIPPED,
};

/// Committed rows from ingest, with when they were committed (for the latency figure).
pub type Committed = (Instant, Vec<SampleRow>);

/// A replay page read in the background: shard, replay generation, what was asked, the rows.
type PageAnswer = (Shard, u64, PageRequest, Result<Vec<SampleRow>>);

#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Warnings of one regulated object within this window form a group.
    pub group_window: Duration,
    /// Recent values kept per series as evidence.
    pub evidence_samples: usize,
    /// How often data gaps, offline devices and rule changes are checked.
    pub idle_every: Duration,
    /// Receives, for every warning opened from a sample, the time from that sample's commit to
    /// the warning being published (benchmarks).
    pub latency_probe: Option<flume::Sender<Duration>>,
    /// Where warnings opened and resolved are recorded as system changes.
    pub audit: Option<offsite_store::AuditLog>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            group_window: Duration::from_secs(30),
            evidence_samples: 30,
            idle_every: Duration::from_secs(5),
            latency_probe: None,
            audit: None,
        }
    }
}

pub static WARNINGS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_warnings_total", "Warnings opened, by level and source", &["level", "source"]).unwrap()
});
pub static INHIBITED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_warnings_inhibited_total", "Warnings not opened: device offline or in maintenance", &["reason"])
        .unwrap()
});
pub static DETECT_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "offsite_detect_seconds",
        "Time to run the detector chain over one batch",
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
    )
    .unwrap()
});
pub static WARNING_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "offsite_warning_latency_seconds",
        "From the commit of a sample to its warning being published",
        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5]
    )
    .unwrap()
});
pub static QUEUE_DEPTH: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("offsite_analytics_queue_depth", "Committed batches waiting for the detectors").unwrap()
});
pub static SAMPLES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_analytics_samples_total", "Samples run through the detectors", &["outcome"]).unwrap()
});

/// A device-health condition a device reports through the data flags of its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlagKind {
    /// D: instrument fault.
    Fault,
    /// T: over the instrument's range.
    OverRange,
    /// B: the logger cannot talk to the instrument.
    CommFault,
    /// F: the monitored equipment is stopped.
    Stopped,
}

impl FlagKind {
    pub const ALL: [FlagKind; 4] = [FlagKind::Fault, FlagKind::OverRange, FlagKind::CommFault, FlagKind::Stopped];

    fn bit(self) -> i16 {
        use offsite_store::samples::quality::*;
        match self {
            FlagKind::Fault => FLAG_FAULT,
            FlagKind::OverRange => FLAG_OVER_RANGE,
            FlagKind::CommFault => FLAG_COMM_FAULT,
            FlagKind::Stopped => FLAG_STOPPED,
        }
    }

    /// The warning's event (its dedup key is `health|<device>||<event>`).
    pub fn event(self) -> &'static str {
        match self {
            FlagKind::Fault => "flag-fault",
            FlagKind::OverRange => "flag-over-range",
            FlagKind::CommFault => "flag-comm-fault",
            FlagKind::Stopped => "flag-stopped",
        }
    }

    fn from_event(event: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.event() == event)
    }

    /// Over range hides how high the real value is, so it ranks above a plain fault; a stopped
    /// plant is information, not a defect.
    pub fn level(self) -> Level {
        match self {
            FlagKind::OverRange => Level::ORANGE,
            FlagKind::Fault | FlagKind::CommFault => Level::YELLOW,
            FlagKind::Stopped => Level::BLUE,
        }
    }

    fn detail(self) -> &'static str {
        match self {
            FlagKind::Fault => "仪器故障（数据标记 D） / instrument fault (data flag D)",
            FlagKind::OverRange => "超仪器量程（数据标记 T） / over the instrument's range (data flag T)",
            FlagKind::CommFault => "数采仪与仪器通信异常（数据标记 B） / logger cannot reach the instrument (data flag B)",
            FlagKind::Stopped => "监测设备停运（数据标记 F） / monitored equipment stopped (data flag F)",
        }
    }
}

/// A running analytics tier.
pub struct Analytics {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl Analytics {
    /// Starts analysing what arrives on `rx`; warning changes go to `live` (and, through the
    /// store, to PostgreSQL NOTIFY for other processes).
    pub async fn start(
        store: Store,
        chain: Chain,
        cfg: LiveConfig,
        rx: flume::Receiver<Committed>,
        live: broadcast::Sender<WarningChange>,
    ) -> Result<Self> {
        // For callers without a configuration (benchmarks): the default 16 shards, fed
        // in-process. An installation configured with another count uses `start_sharded`.
        let shards = ShardConfig::in_process(ShardCount::new(16)?, crate::shards::in_process_replica());
        Self::start_sharded(store, chain, cfg, shards, FeedControl::InProcess, rx, live).await
    }

    /// Starts a replica that owns the shards its lease rounds give it. Returns once the first
    /// lease round is done; the shards it acquired replay from their checkpoints in the
    /// background while live rows flow (see `replay.rs`), so ingest can start at once.
    pub async fn start_sharded(
        store: Store,
        chain: Chain,
        cfg: LiveConfig,
        shards: ShardConfig,
        feed: FeedControl,
        rx: flume::Receiver<Committed>,
        live: broadcast::Sender<WarningChange>,
    ) -> Result<Self> {
        crate::shards::register();
        store.ensure_analytics_shards(shards.shards).await?;
        LazyLock::force(&WARNINGS);
        LazyLock::force(&INHIBITED);
        LazyLock::force(&SAMPLES);
        LazyLock::force(&DETECT_SECONDS);
        LazyLock::force(&WARNING_LATENCY);
        LazyLock::force(&QUEUE_DEPTH);
        let (pages_tx, pages_rx) = flume::unbounded::<PageAnswer>();
        let mut engine = Engine::new(store, chain, cfg, live, shards, feed, pages_tx).await?;
        engine.lease_round().await;
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut idle = tokio::time::interval(engine.cfg.idle_every);
            let every = engine.shards.renew_every;
            let mut lease = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                // One task for live rows and replay pages: the page queries run in the
                // background, so the queue from ingest is drained while a shard catches up.
                engine.pump_replay().await;
                tokio::select! {
                    m = rx.recv_async() => match m {
                        Ok((at, rows)) => {
                            QUEUE_DEPTH.set(rx.len() as i64);
                            if engine.feed.take_reconnected() {
                                engine.replay_owned().await;
                            }
                            engine.live_rows(at, rows).await;
                        }
                        Err(_) => break,
                    },
                    Ok(answer) = pages_rx.recv_async() => engine.page_answered(answer).await,
                    _ = lease.tick() => engine.lease_round().await,
                    _ = idle.tick() => engine.idle().await,
                    _ = async { let _ = stop_rx.wait_for(|v| *v).await; } => {
                        while let Ok((at, rows)) = rx.try_recv() {
                            engine.live_rows(at, rows).await;
                        }
                        break;
                    }
                }
            }
            engine.checkpoint().await;
            match engine.store.release_analytics_shards(&engine.shards.replica).await {
                Ok(n) => info!(released = n, "analytics shards released"),
                Err(e) => warn!(error = %format!("{e:#}"), "releasing analytics shards"),
            }
        });
        Ok(Self { task, stop })
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What the engine keeps of a device.
#[derive(Debug, Clone)]
struct DeviceInfo {
    id: String,
    object: Option<String>,
    class: Option<String>,
}

impl From<offsite_store::DeviceRecord> for DeviceInfo {
    fn from(d: offsite_store::DeviceRecord) -> Self {
        Self { id: d.id, object: d.object_id, class: d.class }
    }
}

struct Engine {
    store: Store,
    chain: Chain,
    cfg: LiveConfig,
    live: broadcast::Sender<WarningChange>,
    devices: HashMap<i32, DeviceInfo>,
    metrics: HashMap<i32, String>,
    metas: HashMap<SeriesKey, Arc<SeriesMeta>>,
    recent: HashMap<SeriesKey, VecDeque<(DateTime<Utc>, f64)>>,
    offline: HashSet<i32>,
    /// Devices online at the last check.
    online: HashSet<i32>,
    /// Offline status has been read once (devices offline at start raise nothing).
    status_known: bool,
    rules_seen: Option<Vec<offsite_store::rules::Rule>>,
    registry_loaded: Instant,
    /// Device keys looked up and not found, with when.
    missing: HashMap<i32, Instant>,
    /// Model loads already written to `detector_models` (detector, load time).
    models_recorded: HashSet<(String, DateTime<Utc>)>,
    /// Per device and health flag, the metrics whose latest value carries it.
    flagged: HashMap<(i32, FlagKind), HashSet<i32>>,
    /// Flag warnings found open at start: no metric is known to carry them, so the device's
    /// first value without the flag resolves them.
    flagged_at_start: HashSet<(i32, FlagKind)>,
    /// Per device, the metrics whose latest value is flagged M or C (maintenance, calibration).
    maintaining: HashMap<i32, HashSet<i32>>,
    shards: ShardConfig,
    feed: FeedControl,
    /// The shards this replica owns and analyses (rows of others are skipped).
    owned: HashSet<Shard>,
    /// Per owned shard, the newest `received_at` analysed (the checkpoint trails it by a margin).
    analysed_upto: HashMap<Shard, DateTime<Utc>>,
    /// Per series, the device times analysed most recently: a sample with one of them is a replay
    /// overlap or a redelivery, and is skipped.
    last_ts: HashMap<SeriesKey, RecentTimes>,
    /// When a lease round last succeeded: without one for a whole lease time, others may own our
    /// shards, so this replica stops analysing them.
    lease_ok: Instant,
    /// Owned shards still catching up from their checkpoints (their live rows are held).
    replays: BTreeMap<Shard, ShardReplay>,
    replay_generation: u64,
    /// The shard whose replay read the last page: the next page is the next shard's.
    last_paged: Option<Shard>,
    /// Where replay pages read in the background are answered; one page at a time.
    pages: flume::Sender<PageAnswer>,
    page_in_flight: bool,
    /// New replays began: the BRIN index's new ranges are summarised before their next page.
    summarize_first: bool,
    /// After a failed page read: the next try waits until then.
    replay_retry_at: Option<Instant>,
    /// Other in-process replicas holding shards, as last logged.
    in_process_rivals: Vec<String>,
}

impl Engine {
    async fn new(
        store: Store,
        chain: Chain,
        cfg: LiveConfig,
        live: broadcast::Sender<WarningChange>,
        shards: ShardConfig,
        feed: FeedControl,
        pages: flume::Sender<PageAnswer>,
    ) -> Result<Self> {
        let mut e = Self {
            store,
            chain,
            cfg,
            live,
            devices: HashMap::new(),
            metrics: HashMap::new(),
            metas: HashMap::new(),
            recent: HashMap::new(),
            offline: HashSet::new(),
            online: HashSet::new(),
            status_known: false,
            rules_seen: None,
            registry_loaded: Instant::now(),
            missing: HashMap::new(),
            models_recorded: HashSet::new(),
            flagged: HashMap::new(),
            flagged_at_start: HashSet::new(),
            maintaining: HashMap::new(),
            shards,
            feed,
            owned: HashSet::new(),
            analysed_upto: HashMap::new(),
            last_ts: HashMap::new(),
            lease_ok: Instant::now(),
            replays: BTreeMap::new(),
            replay_generation: 0,
            last_paged: None,
            pages,
            page_in_flight: false,
            summarize_first: false,
            replay_retry_at: None,
            in_process_rivals: Vec::new(),
        };
        e.load_registry().await?;
        e.load_open_flags().await;
        e.reload_rules().await;
        e.record_models().await;
        Ok(e)
    }

    async fn load_registry(&mut self) -> Result<()> {
        let (devices, _) = self.store.list_devices(1_000_000, 0).await?;
        self.devices = devices.into_iter().map(|d| (d.key, DeviceInfo::from(d))).collect();
        self.metrics = self.store.metrics().await?.into_iter().map(|m| (m.id, m.key)).collect();
        self.registry_loaded = Instant::now();
        Ok(())
    }

    /// Rules are data: re-read them and hand them to the detectors when they changed.
    async fn reload_rules(&mut self) {
        match self.store.list_rules().await {
            Ok(rules) => {
                if self.rules_seen.as_ref() != Some(&rules) {
                    info!(rules = rules.len(), "rules loaded");
                    self.chain.set_rules(&rules);
                    self.rules_seen = Some(rules);
                }
            }
            Err(e) => warn!(error = %format!("{e:#}"), "loading rules"),
        }
    }

    async fn load_open_flags(&mut self) {
        let filter = offsite_store::warnings::WarningFilter {
            open: Some(true),
            source: Some("health".into()),
            limit: 1000,
            ..Default::default()
        };
        match self.store.warnings(&filter).await {
            Ok((open, _)) => {
                self.flagged_at_start =
                    open.iter().filter_map(|w| Some((w.device_key, FlagKind::from_event(&w.event)?))).collect();
            }
            Err(e) => warn!(error = %format!("{e:#}"), "reading open flag warnings"),
        }
    }

    /// Follows the data flags of one value: opens and resolves flag warnings, tracks M/C.
    async fn track_flags(&mut self, o: &Observation) {
        let (device, metric) = (o.key.device, o.key.metric);
        for kind in FlagKind::ALL {
            if o.quality & kind.bit() != 0 {
                let metrics = self.flagged.entry((device, kind)).or_default();
                let first = metrics.is_empty();
                if metrics.insert(metric) && first && !self.flagged_at_start.contains(&(device, kind)) {
                    self.flag_raised(o, kind).await;
                }
            } else {
                let cleared = match self.flagged.get_mut(&(device, kind)) {
                    Some(m) => m.remove(&metric) && m.is_empty(),
                    None => false,
                };
                let left_from_start = !self.flagged_at_start.is_empty()
                    && self.flagged.get(&(device, kind)).is_none_or(|m| m.is_empty())
                    && self.flagged_at_start.remove(&(device, kind));
                if cleared || left_from_start {
                    self.flagged.remove(&(device, kind));
                    self.resolve(&format!("health|{}||{}", o.meta.device_id, kind.event()), o.ts).await;
                }
            }
        }
        let maintenance = offsite_store::samples::quality::FLAG_MAINTENANCE | offsite_store::samples::quality::FLAG_CALIBRATION;
        if o.quality & maintenance != 0 {
            self.maintaining.entry(device).or_default().insert(metric);
        } else if let Some(m) = self.maintaining.get_mut(&device) {
            m.remove(&metric);
            if m.is_empty() {
                self.maintaining.remove(&device);
            }
        }
    }

    async fn flag_raised(&mut self, o: &Observation, kind: FlagKind) {
        let w = NewWarning {
            dedup_key: format!("health|{}||{}", o.meta.device_id, kind.event()),
            source: "health".into(),
            source_version: "1".into(),
            event: kind.event().into(),
            level: kind.level(),
            device_key: o.key.device,
            metric_id: None,
            object_id: o.meta.object_id.clone(),
            detail: kind.detail().into(),
            score: 1.0,
            at: o.ts,
            evidence: json!({ "detector": "health", "version": "1", "at": o.ts, "metric": o.meta.metric_key, "value": o.value, "quality": o.quality }),
            group_window: chrono::Duration::from_std(self.cfg.group_window).unwrap_or_default(),
        };
        self.upsert(w, None, true).await;
    }

    async fn meta(&mut self, key: SeriesKey) -> Option<Arc<SeriesMeta>> {
        if let Some(m) = self.metas.get(&key) {
            return Some(m.clone());
        }
        // Something added since the registry was loaded: look it up (a device by its key, the
        // metric catalog whole), remembering misses for a while so unknown rows cannot turn into
        // a query each.
        if !self.devices.contains_key(&key.device) && self.missing.get(&key.device).is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            match self.store.device_by_key(key.device).await {
                Ok(Some(d)) => {
                    self.devices.insert(d.key, DeviceInfo::from(d));
                }
                Ok(None) => {
                    self.missing.insert(key.device, Instant::now());
                }
                Err(e) => warn!(error = %format!("{e:#}"), "looking up a device"),
            }
        }
        if !self.metrics.contains_key(&key.metric) && self.registry_loaded.elapsed() > Duration::from_secs(1) {
            if let Err(e) = self.load_registry().await {
                warn!(error = %format!("{e:#}"), "loading the registry");
            }
        }
        let DeviceInfo { id: device_id, object: object_id, class } = self.devices.get(&key.device)?.clone();
        let metric_key = self.metrics.get(&key.metric)?.clone();
        let m = Arc::new(SeriesMeta { device_id, metric_key, object_id, class });
        self.metas.insert(key, m.clone());
        Some(m)
    }

    async fn process(&mut self, committed_at: Instant, rows: Vec<SampleRow>) {
        let rows = self.admit(rows);
        if rows.is_empty() {
            return;
        }
        // A committed row's metric exists (ingest creates it first), so one new since the catalog
        // was read is fetched now rather than skipped: the first values of a new pollutant (its M
        // flag, say) must count. New metrics are rare, so this is a query per batch that has one.
        if rows.iter().any(|r| !self.metrics.contains_key(&r.metric_id)) {
            match self.store.metrics().await {
                Ok(ms) => self.metrics = ms.into_iter().map(|m| (m.id, m.key)).collect(),
                Err(e) => warn!(error = %format!("{e:#}"), "loading the metric catalog"),
            }
        }
        let mut batch = Vec::with_capacity(rows.len());
        for r in &rows {
            let key = SeriesKey { device: r.device_key, metric: r.metric_id };
            let Some(meta) = self.meta(key).await else {
                SAMPLES.with_label_values(&["unknown_series"]).inc();
                continue;
            };
            batch.push(Observation { key, meta, ts: r.ts, value: r.value, quality: r.quality });
        }
        let t = Instant::now();
        let outcomes = self.chain.observe(&batch);
        DETECT_SECONDS.observe(t.elapsed().as_secs_f64());
        SAMPLES.with_label_values(&["analysed"]).inc_by(batch.len() as u64);
        for (o, out) in batch.iter().zip(outcomes) {
            self.track_flags(o).await;
            let recent = self.recent.entry(o.key).or_default();
            recent.push_back((o.ts, o.value));
            while recent.len() > self.cfg.evidence_samples {
                recent.pop_front();
            }
            for (source, t) in out.transitions {
                self.apply(&source, o, out.score, t, committed_at).await;
            }
        }
    }

    async fn apply(&mut self, source: &str, o: &Observation, score: f64, t: Transition, committed_at: Instant) {
        let version = self.chain.detectors().find(|d| d.name() == source).map(|d| d.version().to_owned()).unwrap_or_default();
        match t {
            Transition::Raise { event, level, detail, limits } => {
                if self.offline.contains(&o.key.device) {
                    // The set is refreshed on the idle tick; a device that has just come back may
                    // already be online: ask before inhibiting.
                    match self.store.device_by_key(o.key.device).await {
                        Ok(Some(d)) if d.online => {
                            self.offline.remove(&o.key.device);
                        }
                        _ => {
                            INHIBITED.with_label_values(&["offline"]).inc();
                            tracing::debug!(device = %o.meta.device_id, "raise inhibited: device offline");
                            return;
                        }
                    }
                }
                if self.maintaining.contains_key(&o.key.device) {
                    // The device itself says it is being maintained or calibrated (M / C flags).
                    INHIBITED.with_label_values(&["flag_maintenance"]).inc();
                    return;
                }
                match self.store.in_maintenance(&o.meta.device_id, o.meta.object_id.as_deref(), o.ts).await {
                    Ok(true) => {
                        INHIBITED.with_label_values(&["maintenance"]).inc();
                        return;
                    }
                    Ok(false) => {}
                    Err(e) => warn!(error = %format!("{e:#}"), "checking maintenance"),
                }
                let series: Vec<_> = self.recent.get(&o.key).map(|r| r.iter().map(|(t, v)| json!([t, v])).collect()).unwrap_or_default();
                let evidence = json!({
                    "detector": source,
                    "version": version,
                    "score": score,
                    "value": o.value,
                    "at": o.ts,
                    "series": series,
                    "limits": limits,
                });
                let w = NewWarning {
                    dedup_key: format!("{source}|{}|{}|{event}", o.meta.device_id, o.meta.metric_key),
                    source: source.to_owned(),
                    source_version: version,
                    event,
                    level,
                    device_key: o.key.device,
                    metric_id: Some(o.key.metric),
                    object_id: o.meta.object_id.clone(),
                    detail,
                    score,
                    at: o.ts,
                    evidence,
                    group_window: chrono::Duration::from_std(self.cfg.group_window).unwrap_or_default(),
                };
                self.upsert(w, Some(committed_at), true).await;
            }
            Transition::Clear { event } => {
                let key = format!("{source}|{}|{}|{event}", o.meta.device_id, o.meta.metric_key);
                self.resolve(&key, o.ts).await;
            }
        }
    }


    /// Opens or repeats a warning. `from_sample`: raised by a sample, which a replay or redelivery
    /// may bring again, so an episode that already saw its time is left alone.
    async fn upsert(&mut self, w: NewWarning, committed_at: Option<Instant>, from_sample: bool) {
        let r = if from_sample {
            self.store.upsert_warning_unless_covered(&w).await
        } else {
            self.store.upsert_warning(&w).await.map(Some)
        };
        match r {
            Ok(None) => {
                SKIPPED.with_label_values(&["covered_raise"]).inc();
                tracing::debug!(key = %w.dedup_key, at = %w.at, "raise covered by its episode");
            }
            Ok(Some(u)) => {
                let kind = if u.is_opened() { "opened" } else { "repeated" };
                if let Upserted::Opened(rec) = &u {
                    WARNINGS.with_label_values(&[&rec.level.get().to_string(), &rec.source]).inc();
                    record_audit(
                        self.cfg.audit.clone(),
                        offsite_store::AuditEvent::system("analytics", "warning.open", "warning")
                            .id(rec.id.to_string())
                            .after(json!({"dedup_key": rec.dedup_key, "level": rec.level, "detail": rec.detail})),
                    )
                    .await;
                }
                let _ = self.live.send(WarningChange { id: u.record().id, kind: kind.into() });
                if let (Some(t), true) = (committed_at, u.is_opened()) {
                    WARNING_LATENCY.observe(t.elapsed().as_secs_f64());
                    if let Some(p) = &self.cfg.latency_probe {
                        let _ = p.try_send(t.elapsed());
                    }
                }
            }
            Err(e) => warn!(error = %format!("{e:#}"), key = %w.dedup_key, "storing a warning"),
        }
    }

    async fn resolve(&mut self, key: &str, at: DateTime<Utc>) {
        match self.store.resolve_warning(key, at, "cleared").await {
            Ok(Some(rec)) => {
                let _ = self.live.send(WarningChange { id: rec.id, kind: "resolved".into() });
                record_audit(
                        self.cfg.audit.clone(),
                    offsite_store::AuditEvent::system("analytics", "warning.resolve", "warning")
                        .id(rec.id.to_string())
                        .after(json!({"resolution": rec.resolution})),
                )
                .await;
            }
            Ok(None) => {}
            Err(e) => warn!(error = %format!("{e:#}"), key, "resolving a warning"),
        }
    }

    fn owns_device(&self, device_key: i32) -> bool {
        self.owned.contains(&self.shards.shards.shard_of(device_key))
    }

    /// The rows this replica analyses: in a shard it owns, and newer than what its series has
    /// already been through (a replay overlapping the feed, a redelivery).
    fn admit(&mut self, rows: Vec<SampleRow>) -> Vec<SampleRow> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let shard = self.shards.shards.shard_of(r.device_key);
            if !self.owned.contains(&shard) {
                SKIPPED.with_label_values(&["not_owned"]).inc();
                continue;
            }
            let upto = self.analysed_upto.entry(shard).or_insert(r.received_at);
            *upto = (*upto).max(r.received_at);
            let key = SeriesKey { device: r.device_key, metric: r.metric_id };
            if !self.last_ts.entry(key).or_default().insert(r.ts) {
                SKIPPED.with_label_values(&["duplicate_sample"]).inc();
                continue;
            }
            out.push(r);
        }
        if !out.is_empty() {
            tracing::debug!(rows = out.len(), shards = ?out.iter().map(|r| self.shards.shards.shard_of(r.device_key).get()).collect::<std::collections::BTreeSet<_>>(), "analysing");
        }
        out
    }

    /// Heartbeat and leases: gives up what was lost or released, replays what was acquired,
    /// moves checkpoints forward.
    async fn lease_round(&mut self) {
        let lease = chrono::Duration::from_std(self.shards.lease).unwrap_or(chrono::Duration::seconds(15));
        let round = match self
            .store
            .analytics_lease_round(&self.shards.replica, self.shards.shards, lease, self.shards.exclusive)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "analytics lease round failed");
                if self.lease_ok.elapsed() > self.shards.lease && !self.owned.is_empty() {
                    // Our leases have lapsed: another replica may analyse these shards now.
                    let gone: Vec<Shard> = self.owned.drain().collect();
                    self.replays.clear();
                    REPLAYING.set(0);
                    LEASE_CHANGES.with_label_values(&["lost"]).inc_by(gone.len() as u64);
                    self.feed.unsubscribe(&gone).await;
                    OWNED.set(0);
                    warn!(shards = gone.len(), "analytics shards dropped: leases lapsed");
                }
                return;
            }
        };
        self.lease_ok = Instant::now();
        tracing::debug!(owned = round.owned.len(), live_replicas = round.live_replicas, "lease round");
        if self.shards.exclusive {
            IN_PROCESS_WAITING.set(i64::from(!round.in_process_rivals.is_empty()));
            if round.in_process_rivals != self.in_process_rivals {
                if round.in_process_rivals.is_empty() {
                    info!("no other in-process analytics holds shards any more");
                } else {
                    warn!(
                        holders = ?round.in_process_rivals,
                        owned = round.owned.len(),
                        "another process with in-process analytics (feed = \"in_process\") holds analytics shards on this database, \
                         or held them when it died: this one analyses only the shards it holds and takes the others when their leases \
                         lapse (lease_s after that process stopped; the samples meanwhile are replayed then). For good, run a single \
                         ingest with feed = \"in_process\", or feed = \"shards\" with `offsite analytics` replicas"
                    );
                }
                self.in_process_rivals = round.in_process_rivals.clone();
            }
        }
        let now_owned: HashSet<Shard> = round.owned.iter().copied().collect();
        let gone: Vec<Shard> = self.owned.difference(&now_owned).copied().collect();
        if !gone.is_empty() {
            for s in &gone {
                let change = if round.released.contains(s) { "released" } else { "lost" };
                LEASE_CHANGES.with_label_values(&[change]).inc();
                self.owned.remove(s);
                self.replays.remove(s);
            }
            REPLAYING.set(self.replays.len() as i64);
            self.feed.unsubscribe(&gone).await;
            info!(shards = ?gone.iter().map(|s| s.get()).collect::<Vec<_>>(), owned = self.owned.len(), live_replicas = round.live_replicas, "analytics shards given up");
        }
        // Acquired now, or still ours in the table but not here (renewed after a restart under
        // the same replica name, or a subscription that failed last round).
        let mut acquire = round.acquired.clone();
        let renewed_here: Vec<Shard> =
            round.owned.iter().filter(|s| !self.owned.contains(s) && !acquire.iter().any(|(a, _)| a == *s)).copied().collect();
        if !renewed_here.is_empty() {
            match self.store.analytics_shards().await {
                Ok(table) => {
                    for s in renewed_here {
                        let cp = table.iter().find(|(n, _, _)| *n == s.get() as i32).and_then(|(_, _, c)| *c);
                        acquire.push((s, cp));
                    }
                }
                Err(e) => warn!(error = %format!("{e:#}"), "reading analytics checkpoints"),
            }
        }
        if !acquire.is_empty() {
            let shards: Vec<Shard> = acquire.iter().map(|(s, _)| *s).collect();
            // Subscribed (SUBACK) before the replay reads: anything committed after it is on the feed.
            if let Err(e) = self.feed.subscribe(&shards).await {
                warn!(error = %format!("{e:#}"), "subscribing the analytics feed; retrying next round");
                return;
            }
            for (s, _) in &acquire {
                self.owned.insert(*s);
                LEASE_CHANGES.with_label_values(&["acquired"]).inc();
            }
            self.begin_replays(acquire).await;
            info!(shards = ?shards.iter().map(|s| s.get()).collect::<Vec<_>>(), owned = self.owned.len(), live_replicas = round.live_replicas, "analytics shards acquired");
        }
        OWNED.set(self.owned.len() as i64);
        self.checkpoint().await;
    }

    /// Starts catching shards up from their checkpoints (at most `max_replay` back) to a point
    /// past now, after their feed was attached; a replay already running starts over.
    async fn begin_replays(&mut self, shards: Vec<(Shard, Option<DateTime<Utc>>)>) {
        if shards.is_empty() {
            return;
        }
        let now = self.store.db_now().await.unwrap_or_else(|_| Utc::now());
        let floor = now - chrono::Duration::from_std(self.shards.max_replay).unwrap_or(chrono::Duration::hours(1));
        // The margin covers ingest clocks a little ahead of the database's: a row stamped later
        // than `now` but received before the feed was attached is still replayed.
        let upto = now + chrono::Duration::from_std(self.shards.checkpoint_margin).unwrap_or(chrono::Duration::seconds(10));
        for (s, checkpoint) in shards {
            self.replay_generation += 1;
            let after = checkpoint.map_or(floor, |c| c.max(floor));
            // Rows held by a replay started over are committed and received before `upto`:
            // the new replay reads them.
            self.replays.insert(s, ShardReplay::new(self.replay_generation, after, upto));
        }
        self.summarize_first = true;
        REPLAYING.set(self.replays.len() as i64);
    }

    /// Sends the next replay page query, unless one is under way; finishes replays that are done.
    /// Replaying shards take turns, a page each: a shard with little to catch up goes live after
    /// a few pages however large another shard's backlog is.
    async fn pump_replay(&mut self) {
        if self.page_in_flight || self.replay_retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        loop {
            use std::ops::Bound::{Excluded, Unbounded};
            let after = self.last_paged.map_or(Unbounded, Excluded);
            let Some((&shard, r)) = self.replays.range((after, Unbounded)).next().or_else(|| self.replays.iter().next())
            else {
                return;
            };
            let Some(req) = r.next_page() else {
                self.finish_replay(shard).await;
                continue;
            };
            let (store, count, generation, pages) = (self.store.clone(), self.shards.shards, r.generation, self.pages.clone());
            let summarize = std::mem::take(&mut self.summarize_first);
            self.page_in_flight = true;
            self.last_paged = Some(shard);
            tokio::spawn(async move {
                if summarize {
                    // Without it every page would scan all rows since the last vacuum.
                    let t = Instant::now();
                    match store.summarize_received_index().await {
                        Ok(n) => info!(ranges = n, seconds = t.elapsed().as_secs_f64(), "samples BRIN index summarised for the replay"),
                        Err(e) => warn!(error = %format!("{e:#}"), "summarising the samples BRIN index; the replay reads more blocks"),
                    }
                }
                let rows = store.replay_page(count, shard, req.from, req.upto, req.limit).await;
                let _ = pages.send((shard, generation, req, rows));
            });
            return;
        }
    }

    /// The replay reached its end: the shard goes live, first with the rows held meanwhile (the
    /// recent-times guard skips those the replay already analysed).
    async fn finish_replay(&mut self, shard: Shard) {
        if let Some(r) = self.replays.remove(&shard) {
            REPLAYING.set(self.replays.len() as i64);
            info!(shard = shard.get(), replayed = r.replayed, held = r.held(), since = %r.since, "analytics shard replayed");
            for chunk in r.into_held().chunks(crate::replay::PAGE_ROWS as usize) {
                self.process(Instant::now(), chunk.to_vec()).await;
            }
        }
    }

    /// A replay page came back: analyse it; at the replay's end, the live rows held meanwhile.
    async fn page_answered(&mut self, (shard, generation, req, rows): PageAnswer) {
        self.page_in_flight = false;
        let Some(r) = self.replays.get_mut(&shard).filter(|r| r.generation == generation) else {
            return; // the shard was lost, or its replay started over
        };
        let mut rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                warn!(error = %format!("{e:#}"), shard = shard.get(), "reading a replay page failed; retrying");
                self.replay_retry_at = Some(Instant::now() + Duration::from_secs(1));
                return;
            }
        };
        self.replay_retry_at = None;
        r.page_read(&req, &rows);
        let done = r.next_page().is_none();
        REPLAYED.inc_by(rows.len() as u64);
        // Commit order; within the page, device time order (a resent older batch first).
        rows.sort_by_key(|r| r.ts);
        self.process(Instant::now(), rows).await;
        if done {
            self.finish_replay(shard).await;
        }
    }

    /// Rows from the live feed: analysed now, or held while their shard replays.
    async fn live_rows(&mut self, at: Instant, rows: Vec<SampleRow>) {
        if self.replays.is_empty() {
            return self.process(at, rows).await;
        }
        let mut now = Vec::with_capacity(rows.len());
        let mut held: BTreeMap<Shard, Vec<SampleRow>> = BTreeMap::new();
        for r in rows {
            let s = self.shards.shards.shard_of(r.device_key);
            if self.replays.contains_key(&s) {
                held.entry(s).or_default().push(r);
            } else {
                now.push(r);
            }
        }
        for (s, rows) in held {
            if let Some(r) = self.replays.get_mut(&s) {
                let h = r.hold(rows);
                if h.dropped > 0 {
                    REPLAY_HELD_DROPPED.inc_by(h.dropped as u64);
                    warn!(shard = s.get(), dropped = h.dropped, "live rows of a replaying shard over the bound: dropped, the replay reads them from the table");
                }
            }
        }
        if !now.is_empty() {
            self.process(at, now).await;
        }
    }

    /// After the feed's connection came back: every owned shard again from its checkpoint.
    async fn replay_owned(&mut self) {
        match self.store.analytics_shards().await {
            Ok(table) => {
                let owned: Vec<(Shard, Option<DateTime<Utc>>)> = self
                    .owned
                    .iter()
                    .map(|s| (*s, table.iter().find(|(n, _, _)| *n == s.get() as i32).and_then(|(_, _, c)| *c)))
                    .collect();
                self.begin_replays(owned).await;
            }
            Err(e) => warn!(error = %format!("{e:#}"), "reading analytics checkpoints"),
        }
    }

    /// Moves each owned shard's checkpoint to the newest analysed `received_at` minus the margin.
    async fn checkpoint(&mut self) {
        let margin = chrono::Duration::from_std(self.shards.checkpoint_margin).unwrap_or(chrono::Duration::seconds(10));
        let to: Vec<(Shard, DateTime<Utc>)> =
            self.analysed_upto.iter().filter(|(s, _)| self.owned.contains(s)).map(|(s, t)| (*s, *t - margin)).collect();
        match self.store.advance_analytics_checkpoints(&self.shards.replica, &to).await {
            Ok(n) => tracing::debug!(shards = n, "analytics checkpoints advanced"),
            Err(e) => warn!(error = %format!("{e:#}"), "advancing analytics checkpoints"),
        }
    }

    /// Time-driven checks: data gaps, devices going offline or coming back, rule changes.
    async fn idle(&mut self) {
        let now = Utc::now();
        for (source, key, meta, t) in self.chain.idle(now) {
            if !self.owns_device(key.device) {
                continue;
            }
            let o = Observation { key, meta, ts: now, value: f64::NAN, quality: 0 };
            self.apply(&source, &o, 1.0, t, Instant::now()).await;
        }
        match self.store.offline_devices().await {
            Ok(list) => {
                let now_offline: HashSet<i32> = list.iter().map(|(k, _)| *k).collect();
                if self.status_known {
                    // Only a device seen online goes offline (a newly provisioned one has never been).
                    for (k, id) in &list {
                        if self.online.contains(k) && self.owns_device(*k) {
                            self.device_offline(*k, id, now).await;
                        }
                    }
                    for k in self.offline.difference(&now_offline).copied().collect::<Vec<_>>() {
                        if !self.owns_device(k) {
                            continue;
                        }
                        let id = self.devices.get(&k).map(|d| d.id.clone()).unwrap_or_default();
                        self.resolve(&format!("health|{id}||offline"), now).await;
                    }
                }
                match self.store.device_keys().await {
                    Ok(keys) => {
                        self.online = keys.iter().filter(|(_, k, revoked)| !revoked && !now_offline.contains(k)).map(|(_, k, _)| *k).collect();
                    }
                    Err(e) => warn!(error = %format!("{e:#}"), "reading device keys"),
                }
                self.offline = now_offline;
                self.status_known = true;
            }
            Err(e) => warn!(error = %format!("{e:#}"), "reading device status"),
        }
        self.reload_rules().await;
        self.record_models().await;
    }

    /// Writes each model load not yet recorded (a new one after a reload); a failed write is
    /// retried on the next tick.
    async fn record_models(&mut self) {
        for m in self.chain.models() {
            let key = (m.detector.clone(), m.loaded_at);
            if self.models_recorded.contains(&key) {
                continue;
            }
            match self.store.record_model_load(&m).await {
                Ok(_) => {
                    info!(detector = %m.detector, model = %m.name, version = %m.version, "model load recorded");
                    self.models_recorded.insert(key);
                }
                Err(e) => warn!(error = %format!("{e:#}"), "recording a model load"),
            }
        }
    }

    async fn device_offline(&mut self, key: i32, id: &str, now: DateTime<Utc>) {
        if !self.devices.contains_key(&key) {
            if let Ok(Some(d)) = self.store.device_by_key(key).await {
                self.devices.insert(d.key, DeviceInfo::from(d));
            }
        }
        let object_id = self.devices.get(&key).and_then(|d| d.object.clone());
        let w = NewWarning {
            dedup_key: format!("health|{id}||offline"),
            source: "health".into(),
            source_version: "1".into(),
            event: "offline".into(),
            level: Level::BLUE,
            device_key: key,
            metric_id: None,
            object_id,
            detail: "设备离线 / device offline".into(),
            score: 1.0,
            at: now,
            evidence: json!({ "detector": "health", "version": "1", "at": now }),
            group_window: chrono::Duration::from_std(self.cfg.group_window).unwrap_or_default(),
        };
        self.upsert(w, None, false).await;
    }
}

/// The device times of a series' most recently analysed samples, oldest first. Exact times, not
/// just the newest: after an outage a device resends (go-back-N) older batches behind newer ones,
/// and those were never analysed. A sample older than everything remembered may be analysed a
/// second time; the covered-episode check keeps that from doubling a warning.
#[derive(Debug, Default)]
struct RecentTimes(VecDeque<DateTime<Utc>>);

impl RecentTimes {
    /// Per series: 64 times (512 bytes) cover a replay's overlap at one sample a second.
    const KEEP: usize = 64;

    /// Remembers `ts`; false if it was already there.
    fn insert(&mut self, ts: DateTime<Utc>) -> bool {
        // Usually the newest: search from the back.
        let at = match self.0.back() {
            Some(last) if *last < ts => self.0.len(),
            _ => match self.0.binary_search(&ts) {
                Ok(_) => return false,
                Err(i) => i,
            },
        };
        self.0.insert(at, ts);
        if self.0.len() > Self::KEEP {
            self.0.pop_front();
        }
        true
    }
}

/// Appends a system change to the audit trail, if there is one. (A free function: the engine
/// itself is not `Sync`, so it must not be borrowed across the await.)
async fn record_audit(audit: Option<offsite_store::AuditLog>, ev: offsite_store::AuditEvent) {
    if let Some(a) = audit {
        if let Err(e) = a.record_nowait(ev).await {
            warn!(error = %format!("{e:#}"), "audit trail unavailable");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_times_skip_repeats_but_admit_late_new_samples() {
        let t = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
        let mut r = RecentTimes::default();
        assert!(r.insert(t(10)) && r.insert(t(20)));
        assert!(!r.insert(t(20)), "the same sample again");
        assert!(r.insert(t(15)), "older but never analysed (a resent batch behind newer ones)");
        assert!(!r.insert(t(15)));
        for s in 100..100 + RecentTimes::KEEP as i64 {
            assert!(r.insert(t(s)));
        }
        assert_eq!(r.0.len(), RecentTimes::KEEP);
        assert!(!r.insert(t(100 + RecentTimes::KEEP as i64 - 1)));
    }
}
