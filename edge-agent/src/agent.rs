//! The running agent: per device, sources -> batcher -> disk queue -> link, plus health samples
//! and remote configuration.
//!
//! ```text
//! source tasks (poll every interval) --readings--> device task --publish--> DeviceLink (outbox = DiskQueue)
//!                                          ^   \--health samples every health_interval_s
//!                     commands (cmd topic) /    \--checkpoints, applied settings -> state.json
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use offsite_wire::{Command, CommandAck, CommandAction, DeviceId, MetricKey, Sample, SourceSettings};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{AgentConfig, DeviceConfig, DeviceProtocol};
use crate::metrics as m;
use crate::publisher::{DeviceLink, LinkHooks, LinkStats};
use crate::queue::DiskQueue;
use crate::sources::{Source, SourceConfig};
use crate::state::StateFile;

/// Shortest and longest interval a command may set.
const INTERVAL_RANGE_MS: std::ops::RangeInclusive<u64> = 10..=86_400_000;

/// A running agent serving one or more devices.
pub struct Agent {
    devices: Vec<RunningDevice>,
    /// Devices in HJ 212 client mode (data-logger emulation over TCP).
    loggers: Vec<crate::hj212::RunningLogger>,
    http: Option<(std::net::SocketAddr, JoinHandle<()>)>,
}

struct RunningDevice {
    link: Arc<DeviceLink>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    sources: Vec<JoinHandle<()>>,
    /// Forwards what the cameras produce to the link; ends when the cameras have stopped.
    camera_pump: Option<JoinHandle<()>>,
}

impl Agent {
    /// Opens every device's queue and state, connects, and starts the sources. Relative paths in
    /// the configuration resolve against `base`.
    pub async fn start(cfg: &AgentConfig, base: &Path) -> Result<Self> {
        cfg.validate()?;
        let data_dir = base.join(&cfg.data_dir);
        let mut devices = Vec::new();
        let mut loggers = Vec::new();
        for d in &cfg.devices {
            match (d.protocol, &d.hj212) {
                (DeviceProtocol::Hj212, Some(h)) => loggers.push(crate::hj212::start(cfg, d, h, base, &data_dir)?),
                _ => devices.push(start_device(cfg, d, base, &data_dir).await?),
            }
        }
        let http = match cfg.metrics_listen {
            Some(addr) => {
                let (bound, task) = m::serve(addr).await.with_context(|| format!("metrics endpoint on {addr}"))?;
                info!(%bound, "agent metrics at /metrics");
                Some((bound, task))
            }
            None => None,
        };
        info!(devices = devices.len(), hj212_loggers = loggers.len(), "edge agent running");
        Ok(Self { devices, loggers, http })
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().map(|(a, _)| *a)
    }

    pub fn stats(&self) -> Vec<(DeviceId, LinkStats)> {
        self.devices.iter().map(|d| (d.link.device_id().clone(), d.link.stats())).collect()
    }

    /// Stops the sources, queues what they read, saves state, says offline and disconnects.
    pub async fn stop(self) {
        for d in &self.devices {
            let _ = d.stop.send(true);
        }
        for l in self.loggers {
            l.stop().await;
        }
        for d in self.devices {
            for s in d.sources {
                let _ = s.await;
            }
            let _ = d.task.await;
            if let Some(p) = d.camera_pump {
                let _ = p.await;
            }
            if let Ok(link) = Arc::try_unwrap(d.link) {
                link.close().await;
            }
        }
        if let Some((_, t)) = self.http {
            t.abort();
        }
    }
}

/// One reading of one source, with where the source stood afterwards.
pub(crate) struct Reading {
    pub(crate) source: usize,
    pub(crate) samples: Vec<Sample>,
    pub(crate) checkpoint: Option<u64>,
}

pub(crate) struct SourceSlot {
    pub(crate) name: String,
    pub(crate) settings: watch::Sender<SourceSettings>,
    pub(crate) errors: Arc<AtomicU64>,
}

async fn start_device(cfg: &AgentConfig, d: &DeviceConfig, base: &Path, data_dir: &Path) -> Result<RunningDevice> {
    if !d.cameras.is_empty() && !cfg!(feature = "camera") {
        anyhow::bail!("cameras are configured but this agent was built without camera mode (cargo feature `camera`)");
    }
    let creds = d.mqtt_credentials(base)?;
    let id = creds.device_id.clone();
    let dir = data_dir.join(id.as_str());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let queue = DiskQueue::open(&dir.join("queue"), cfg.queue.queue_config()?)
        .with_context(|| format!("opening the queue of {id}"))?;
    let recovered = queue.pending();
    let state = StateFile::load(&dir)?;
    let (cmd_tx, cmd_rx) = flume::bounded(16);
    let link = Arc::new(DeviceLink::start(
        &creds,
        &cfg.broker.endpoint(),
        cfg.broker.link_options(),
        Box::new(queue),
        LinkHooks { latency_ms: None, commands: Some(cmd_tx) },
    )?);
    if recovered > 0 {
        info!(device = %id, batches = recovered, "unacknowledged batches from before the restart will be sent");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (read_tx, read_rx) = tokio::sync::mpsc::channel::<Reading>(64);
    let dev = id.as_str().to_owned();
    let (slots, tasks) = spawn_sources(&d.sources, None, base, &dev, &state, &read_tx, &stop_rx)?;
    drop(read_tx);
    #[cfg(feature = "camera")]
    let (cameras, camera_pump) = start_cameras(d, base, &dir, &dev, &state, &link)?;
    #[cfg(not(feature = "camera"))]
    let camera_pump = None;
    let stats = link.stats();
    m::QUEUE_DEPTH.with_label_values(&[&dev]).set(stats.unacked as i64);
    m::DROPPED.with_label_values(&[&dev]).inc_by(stats.dropped_total);
    m::ACKED.with_label_values(&[&dev]);
    let runner = DeviceRunner {
        dev,
        link: link.clone(),
        state,
        slots,
        batch_interval: Duration::from_millis(cfg.batch_interval_ms.max(10)),
        health_interval: Duration::from_secs(cfg.health_interval_s.max(1)),
        max_batch_samples: cfg.max_batch_samples.clamp(1, offsite_wire::MAX_SAMPLES_PER_BATCH),
        last_dropped: stats.dropped_total,
        last_acked: 0,
        last_connect_failures: 0,
        #[cfg(feature = "camera")]
        cameras,
    };
    let task = tokio::spawn(runner.run(read_rx, cmd_rx, stop_rx));
    Ok(RunningDevice { link, stop: stop_tx, task, sources: tasks, camera_pump })
}

/// Starts the device's cameras (zones pushed by the platform win over the file's) and the task
/// that forwards their output: counts through the queue like any sample, events through their
/// own disk queue (`<device dir>/events`), status and pictures straight on `event`.
#[cfg(feature = "camera")]
fn start_cameras(
    d: &DeviceConfig,
    base: &Path,
    dir: &Path,
    dev: &str,
    state: &StateFile,
    link: &Arc<DeviceLink>,
) -> Result<(Vec<crate::camera::RunningCamera>, Option<JoinHandle<()>>)> {
    use crate::camera::CameraOutput;
    if d.cameras.is_empty() {
        return Ok((Vec::new(), None));
    }
    let (tx, rx) = flume::bounded::<CameraOutput>(64);
    // Numbered from the link's counter: batches and camera messages never share a number.
    let seq = link.seq_counter();
    let mut cameras = Vec::new();
    for c in &d.cameras {
        let zones = state.state.camera_zones.get(c.id.as_str()).cloned().unwrap_or_else(|| c.zones.clone());
        cameras.push(
            crate::camera::start(dev, c, zones, base, tx.clone(), seq.clone())
                .with_context(|| format!("device {dev}, camera {}", c.id))?,
        );
    }
    drop(tx);
    let (events, events_task) = crate::camera::event_outbox::EventOutbox::start(&dir.join("events"), dev, link.clone())?;
    let link = link.clone();
    let dev = dev.to_owned();
    let pump = tokio::spawn(async move {
        while let Ok(o) = rx.recv_async().await {
            let r = match o {
                CameraOutput::Samples(samples) => link.publish(samples).await.map(|_| ()),
                CameraOutput::Message(m @ offsite_wire::CameraMessage::Event { .. }) => events.push(m.seq(), &m.encode()),
                // Status and pictures are about now and repeated: never let a broker outage
                // stall the cameras behind this task for them.
                CameraOutput::Message(m) => match tokio::time::timeout(Duration::from_secs(2), link.publish_event(&m)).await {
                    Ok(r) => r,
                    Err(_) => Err(anyhow::anyhow!("MQTT client busy; camera status dropped (the next one follows)")),
                },
            };
            if let Err(e) = r {
                warn!(device = %dev, error = %format!("{e:#}"), "forwarding camera output");
            }
        }
        events_task.abort();
    });
    Ok((cameras, Some(pump)))
}

/// Starts one task per source of a device (MQTT or HJ 212 alike), each reading at its interval
/// (`interval_ms` overrides the configured one; settings pushed by the platform win over both)
/// and resuming from its saved position.
pub(crate) fn spawn_sources(
    sources: &[SourceConfig],
    interval_ms: Option<u64>,
    base: &Path,
    dev: &str,
    state: &StateFile,
    read_tx: &tokio::sync::mpsc::Sender<Reading>,
    stop_rx: &watch::Receiver<bool>,
) -> Result<(Vec<SourceSlot>, Vec<JoinHandle<()>>)> {
    let mut slots = Vec::new();
    let mut tasks = Vec::new();
    for (i, sc) in sources.iter().enumerate() {
        let mut settings =
            SourceSettings { interval_ms: Some(interval_ms.unwrap_or(sc.interval_ms)), enabled: Some(sc.enabled) };
        if let Some(o) = state.state.sources.get(&sc.name) {
            settings = merge(settings, *o);
        }
        let mut source = Source::build(sc, base).with_context(|| format!("device {dev}, source {}", sc.name))?;
        if let Some(cp) = state.state.checkpoints.get(&sc.name) {
            source.restore(*cp);
        }
        let (tx, rx) = watch::channel(settings);
        let errors = Arc::new(AtomicU64::new(0));
        publish_settings(dev, &sc.name, settings);
        m::SOURCE_ERRORS.with_label_values(&[dev, &sc.name]);
        m::SAMPLES.with_label_values(&[dev, &sc.name]);
        tasks.push(tokio::spawn(run_source(
            dev.to_owned(),
            sc.clone(),
            source,
            i,
            rx,
            read_tx.clone(),
            errors.clone(),
            stop_rx.clone(),
        )));
        slots.push(SourceSlot { name: sc.name.clone(), settings: tx, errors });
    }
    Ok((slots, tasks))
}

pub(crate) fn merge(base: SourceSettings, over: SourceSettings) -> SourceSettings {
    SourceSettings { interval_ms: over.interval_ms.or(base.interval_ms), enabled: over.enabled.or(base.enabled) }
}

pub(crate) fn publish_settings(dev: &str, source: &str, s: SourceSettings) {
    m::SOURCE_ENABLED.with_label_values(&[dev, source]).set(s.enabled.unwrap_or(true) as i64);
    m::SOURCE_INTERVAL.with_label_values(&[dev, source]).set(s.interval_ms.unwrap_or(1000) as f64 / 1000.0);
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_source(
    dev: String,
    cfg: SourceConfig,
    mut source: Source,
    index: usize,
    mut settings: watch::Receiver<SourceSettings>,
    out: tokio::sync::mpsc::Sender<Reading>,
    errors: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut logged_at: Option<std::time::Instant> = None;
    loop {
        let s = *settings.borrow_and_update();
        if !s.enabled.unwrap_or(true) {
            tokio::select! {
                _ = settings.changed() => continue,
                _ = stopped(&mut stop) => return,
            }
        }
        let every = Duration::from_millis(s.interval_ms.unwrap_or(cfg.interval_ms).max(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                // A new interval or an off switch takes effect at once.
                _ = settings.changed() => break,
                _ = stopped(&mut stop) => return,
            }
            match source.poll(Utc::now()).await {
                Ok(samples) if samples.is_empty() => {}
                Ok(samples) => {
                    m::SAMPLES.with_label_values(&[&dev, &cfg.name]).inc_by(samples.len() as u64);
                    let r = Reading { source: index, samples, checkpoint: source.checkpoint() };
                    if out.send(r).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    m::SOURCE_ERRORS.with_label_values(&[&dev, &cfg.name]).inc();
                    // A dead sensor must not flood the log: one line a minute.
                    if logged_at.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        warn!(device = %dev, source = %cfg.name, error = %e, "source read failed");
                        logged_at = Some(std::time::Instant::now());
                    }
                }
            }
            if source.finished() {
                info!(device = %dev, source = %cfg.name, "source finished");
                stopped(&mut stop).await;
                return;
            }
        }
    }
}

struct DeviceRunner {
    dev: String,
    link: Arc<DeviceLink>,
    state: StateFile,
    slots: Vec<SourceSlot>,
    batch_interval: Duration,
    health_interval: Duration,
    max_batch_samples: usize,
    last_dropped: u64,
    last_acked: u64,
    last_connect_failures: u64,
    #[cfg(feature = "camera")]
    cameras: Vec<crate::camera::RunningCamera>,
}

impl DeviceRunner {
    async fn run(
        mut self,
        mut readings: tokio::sync::mpsc::Receiver<Reading>,
        commands: flume::Receiver<Command>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut pending: Vec<Sample> = Vec::new();
        let mut checkpoints: BTreeMap<usize, u64> = BTreeMap::new();
        let mut flush_tick = tokio::time::interval(self.batch_interval);
        let mut health_tick = tokio::time::interval(self.health_interval);
        health_tick.tick().await;
        let mut stopping = false;
        // A device may have cameras only: then its sources are done at once, and it runs until stopped.
        let mut sources_done = false;
        loop {
            tokio::select! {
                r = readings.recv(), if !sources_done => match r {
                    Some(r) => {
                        pending.extend(r.samples);
                        if let Some(cp) = r.checkpoint {
                            checkpoints.insert(r.source, cp);
                        }
                        if pending.len() >= self.max_batch_samples {
                            self.flush(&mut pending, &mut checkpoints).await;
                        }
                    }
                    // Every source has stopped (after the stop signal, or none configured).
                    None => {
                        sources_done = true;
                        if stopping {
                            return self.finish(&mut pending, &mut checkpoints).await;
                        }
                    }
                },
                _ = flush_tick.tick() => {
                    self.flush(&mut pending, &mut checkpoints).await;
                    if let Err(e) = self.link.sync_outbox() {
                        warn!(device = %self.dev, error = %e, "syncing the queue");
                    }
                    self.update_gauges();
                }
                _ = health_tick.tick() => self.health().await,
                c = commands.recv_async() => {
                    if let Ok(c) = c {
                        self.command(c).await;
                    }
                }
                _ = stopped(&mut stop), if !stopping => {
                    // Sources see the same signal; keep draining readings until they are gone.
                    stopping = true;
                    if sources_done {
                        return self.finish(&mut pending, &mut checkpoints).await;
                    }
                }
            }
        }
    }

    /// Queues what is left, stops the cameras, saves the state.
    async fn finish(mut self, pending: &mut Vec<Sample>, checkpoints: &mut BTreeMap<usize, u64>) {
        self.flush(pending, checkpoints).await;
        #[cfg(feature = "camera")]
        {
            let cams = std::mem::take(&mut self.cameras);
            let _ = tokio::task::spawn_blocking(move || cams.into_iter().for_each(|c| c.stop())).await;
        }
        if let Err(e) = self.state.save(true) {
            warn!(device = %self.dev, error = %format!("{e:#}"), "saving agent state");
        }
    }

    /// Cuts batches from what the sources read, queues them, then records the sources' positions.
    async fn flush(&mut self, pending: &mut Vec<Sample>, checkpoints: &mut BTreeMap<usize, u64>) {
        while !pending.is_empty() {
            let n = pending.len().min(self.max_batch_samples);
            let chunk: Vec<Sample> = pending.drain(..n).collect();
            if let Err(e) = self.link.publish(chunk.clone()).await {
                warn!(device = %self.dev, error = %format!("{e:#}"), "queueing a batch failed; retrying");
                // Put it back and try on the next tick (a full or failing disk).
                pending.splice(0..0, chunk);
                return;
            }
        }
        if !checkpoints.is_empty() {
            for (i, cp) in std::mem::take(checkpoints) {
                self.state.state.checkpoints.insert(self.slots[i].name.clone(), cp);
            }
            if let Err(e) = self.state.save(false) {
                warn!(device = %self.dev, error = %format!("{e:#}"), "saving source positions");
            }
        }
    }

    fn update_gauges(&mut self) {
        let s = self.link.stats();
        m::QUEUE_DEPTH.with_label_values(&[&self.dev]).set(s.unacked as i64);
        m::QUEUE_BYTES.with_label_values(&[&self.dev]).set(s.outbox_bytes as i64);
        m::UNACKED_OLDEST.with_label_values(&[&self.dev]).set(oldest_age_s(&s));
        m::CONNECTED.with_label_values(&[&self.dev]).set(s.connected as i64);
        m::RECONNECT_DELAY.with_label_values(&[&self.dev]).set(s.backoff_ms as f64 / 1000.0);
        m::CONNECT_FAILURES.with_label_values(&[&self.dev]).inc_by(s.connect_failures.saturating_sub(self.last_connect_failures));
        self.last_connect_failures = self.last_connect_failures.max(s.connect_failures);
        m::DROPPED.with_label_values(&[&self.dev]).inc_by(s.dropped_total.saturating_sub(self.last_dropped));
        self.last_dropped = self.last_dropped.max(s.dropped_total);
        m::ACKED.with_label_values(&[&self.dev]).inc_by(s.acked.saturating_sub(self.last_acked));
        self.last_acked = self.last_acked.max(s.acked);
    }

    /// The agent's own figures as samples of the device, so the platform sees a struggling gateway.
    async fn health(&mut self) {
        let s = self.link.stats();
        let errors: u64 = self.slots.iter().map(|s| s.errors.load(Ordering::Relaxed)).sum();
        let ts = Utc::now();
        let sample = |k: &str, v: f64| Sample { ts, metric: MetricKey::parse(k).expect("valid key"), value: v };
        let samples = vec![
            sample("agent.queue_depth", s.unacked as f64),
            sample("agent.unacked_oldest_s", oldest_age_s(&s)),
            sample("agent.dropped", s.dropped_total as f64),
            sample("agent.source_errors", errors as f64),
        ];
        if let Err(e) = self.link.publish(samples).await {
            warn!(device = %self.dev, error = %format!("{e:#}"), "queueing the health sample");
        }
    }

    async fn command(&mut self, c: Command) {
        let ack = if self.state.state.applied(&c.id) {
            // Redelivered: answer again, change nothing.
            CommandAck { id: c.id.clone(), ok: true, error: None, state: Some(self.state_json(&c.action)) }
        } else {
            match self.apply(&c) {
                Ok(()) => CommandAck { id: c.id.clone(), ok: true, error: None, state: Some(self.state_json(&c.action)) },
                Err(e) => CommandAck { id: c.id.clone(), ok: false, error: Some(e), state: Some(self.state_json(&c.action)) },
            }
        };
        let outcome = if ack.ok { "applied" } else { "refused" };
        m::COMMANDS.with_label_values(&[&self.dev, outcome]).inc();
        info!(device = %self.dev, command = %c.id, outcome, "command");
        if let Err(e) = self.link.answer(&ack).await {
            warn!(device = %self.dev, error = %e, "answering a command");
        }
    }

    /// Checks the whole command first, so it applies completely or not at all; persists before
    /// the answer goes out.
    fn apply(&mut self, c: &Command) -> Result<(), String> {
        let sources = match &c.action {
            CommandAction::Configure { sources } => sources,
            CommandAction::SetZones { camera, zones } => return self.set_zones(&c.id, camera, zones),
            CommandAction::SyncClock | CommandAction::SetInterval { .. } => {
                return Err("HJ 212 数采仪命令，边缘代理不执行 / an HJ 212 logger command, not for an edge agent".into())
            }
        };
        for (name, s) in sources {
            if !self.slots.iter().any(|slot| &slot.name == name) {
                return Err(format!("unknown source {name:?} / 未知数据源"));
            }
            if let Some(ms) = s.interval_ms {
                if !INTERVAL_RANGE_MS.contains(&ms) {
                    return Err(format!("interval {ms} ms out of range 10 ms .. 1 day / 采样间隔超出范围"));
                }
            }
        }
        let before = self.state.state.clone();
        for (name, s) in sources {
            let o = self.state.state.sources.entry(name.clone()).or_default();
            *o = merge(*o, *s);
        }
        self.state.state.remember(&c.id);
        if let Err(e) = self.state.save(true) {
            self.state.state = before;
            return Err(format!("cannot persist the change: {e:#}"));
        }
        for (name, s) in sources {
            let slot = self.slots.iter().find(|slot| &slot.name == name).expect("checked above");
            let new = merge(*slot.settings.borrow(), *s);
            slot.settings.send_replace(new);
            publish_settings(&self.dev, name, new);
        }
        Ok(())
    }

    /// Checks the zones, persists them, then hands them to the camera.
    fn set_zones(&mut self, command_id: &str, camera: &offsite_wire::CameraId, zones: &[offsite_wire::Zone]) -> Result<(), String> {
        #[cfg(feature = "camera")]
        {
            let Some(cam) = self.cameras.iter().find(|c| &c.id == camera) else {
                return Err(format!("本设备没有摄像头 {camera} / no camera {camera} on this agent"));
            };
            let mut ids = std::collections::HashSet::new();
            for z in zones {
                z.check().map_err(|e| format!("区域无效 / bad zone: {e}"))?;
                if !ids.insert(&z.id) {
                    return Err(format!("区域 {} 重复 / zone {} given twice", z.id, z.id));
                }
            }
            let before = self.state.state.clone();
            self.state.state.camera_zones.insert(camera.to_string(), zones.to_vec());
            self.state.state.remember(command_id);
            if let Err(e) = self.state.save(true) {
                self.state.state = before;
                return Err(format!("cannot persist the change: {e:#}"));
            }
            cam.set_zones(zones.to_vec());
            Ok(())
        }
        #[cfg(not(feature = "camera"))]
        {
            let _ = (command_id, zones);
            Err(format!("本设备未启用摄像头模式，没有摄像头 {camera} / no camera {camera}: built without camera mode"))
        }
    }

    /// What a command's answer reports: every source's settings, or the camera's zones now used.
    fn state_json(&self, action: &CommandAction) -> serde_json::Value {
        match action {
            CommandAction::Configure { .. } => self.settings_json(),
            CommandAction::SyncClock | CommandAction::SetInterval { .. } => serde_json::Value::Null,
            CommandAction::SetZones { camera, .. } => {
                #[cfg(feature = "camera")]
                let zones = self.state.state.camera_zones.get(camera.as_str()).cloned().or_else(|| {
                    self.cameras.iter().any(|c| &c.id == camera).then(Vec::new)
                });
                #[cfg(not(feature = "camera"))]
                let zones: Option<Vec<offsite_wire::Zone>> = None;
                serde_json::json!({ "camera": camera, "zones": zones })
            }
        }
    }

    fn settings_json(&self) -> serde_json::Value {
        let map: BTreeMap<&str, SourceSettings> =
            self.slots.iter().map(|s| (s.name.as_str(), *s.settings.borrow())).collect();
        serde_json::to_value(map).unwrap_or_default()
    }
}

fn oldest_age_s(s: &LinkStats) -> f64 {
    s.oldest_unacked_ms.map_or(0.0, |t| ((Utc::now().timestamp_millis() - t).max(0)) as f64 / 1000.0)
}

/// Resolves once the stop signal is set (without holding the watch's read guard across awaits).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}
