//! Camera mode: one thread per camera runs its GStreamer pipeline and analyses what comes out.
//!
//! ```text
//! pipeline (reconnect with backoff) -> view frame -> health (black, frozen, covered, moved)
//!                                   \             -> motion in any zone? (else re-check every motion_recheck_ms)
//!                                    -> detect frame -> vision: persons -> per-zone counts -> hall events
//! out (to the device task): counts as data samples (people.<camera>.<zone>), CameraMessages on the event channel
//! ```
//!
//! The thread does its own blocking work (decoding waits, inference) and hands results to the
//! device's async side over a bounded channel; zone changes come back the other way.

pub mod event_outbox;
pub mod health;
pub mod media;
pub mod pipeline;
pub mod rtsp_server;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use offsite_vision::detect::{DetectorConfig, Yolox};
use offsite_vision::events::{HallEvents, HallRules};
use offsite_vision::FrameRef;
use offsite_wire::{
    zone_metric, BoxN, CameraEventKind, CameraId, CameraMessage, Detection, MetricKey, Sample, Snapshot, Zone, ZoneId,
};
use sha2::Digest;
use tracing::{info, warn};

use crate::camera_config::CameraConfig;
use crate::metrics as m;
use health::{Grey, HealthTracker};
use pipeline::{BusNews, Frame, Pipeline, PipelineSpec};

/// What a camera thread hands to its device.
#[derive(Debug)]
pub enum CameraOutput {
    /// Per-zone person counts: ordinary data samples, through the device's queue.
    Samples(Vec<Sample>),
    /// Events, status, pictures: the `event` channel.
    Message(CameraMessage),
}

/// A running camera.
pub struct RunningCamera {
    pub id: CameraId,
    zones: flume::Sender<Vec<Zone>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RunningCamera {
    /// Replaces the zones the camera counts in (already checked and persisted by the caller).
    pub fn set_zones(&self, zones: Vec<Zone>) -> bool {
        self.zones.send(zones).is_ok()
    }

    /// Stops the pipeline and waits for the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningCamera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Where ONNX Runtime is loaded from: `ORT_DYLIB_PATH`, else `libonnxruntime.so` beside the executable.
pub fn onnx_runtime_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("libonnxruntime.so")))
        .unwrap_or_else(|| PathBuf::from("libonnxruntime.so"))
}

/// Starts a camera's thread. `zones` are those to use (the configuration's, or the last ones
/// pushed by the platform); relative paths resolve against `base`.
pub fn start(
    device: &str,
    cfg: &CameraConfig,
    zones: Vec<Zone>,
    base: &Path,
    out: flume::Sender<CameraOutput>,
    seq: Arc<AtomicU64>,
) -> anyhow::Result<RunningCamera> {
    pipeline::init()?;
    let mut cfg = cfg.clone();
    if let crate::camera_config::CameraSource::File(p) = &cfg.source {
        cfg.source = crate::camera_config::CameraSource::File(base.join(p));
    }
    let model = cfg.model.as_ref().map(|m| base.join(m));
    let (zones_tx, zones_rx) = flume::unbounded();
    let stop = Arc::new(AtomicBool::new(false));
    let id = cfg.id.clone();
    let device = device.to_owned();
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new().name(format!("camera-{}", cfg.id)).spawn(move || {
        let mut cam = Camera::new(device, cfg, zones, model, out, seq);
        cam.run(&zones_rx, &stop2);
    })?;
    Ok(RunningCamera { id, zones: zones_tx, stop, thread: Some(thread) })
}

/// Loads the detector, or says why person detection is off.
fn load_detector(model: Option<&Path>) -> (Option<Yolox>, Detection) {
    let Some(model) = model else {
        return (None, Detection::Off { reason: "未配置人员检测模型 / no person detection model configured".into() });
    };
    let loaded = offsite_vision::detect::init_runtime(&onnx_runtime_library())
        .and_then(|()| Yolox::load(&DetectorConfig::new(model)));
    match loaded {
        Ok(y) => {
            let name = y.model_name();
            (Some(y), Detection::On { model: name })
        }
        Err(e) => (None, Detection::Off { reason: format!("人员检测未启用 / person detection off: {e:#}") }),
    }
}

/// Mean change (0..255) in a zone between two analysed frames above which something moved there.
const MOTION_CHANGE: f32 = 1.5;
/// Counts go out at most this often (the latest), whatever the analysis rate.
const COUNT_EVERY: Duration = Duration::from_secs(1);
/// The longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct Camera {
    device: String,
    cfg: CameraConfig,
    zones: Vec<Zone>,
    out: flume::Sender<CameraOutput>,
    seq: Arc<AtomicU64>,
    detector: Option<Yolox>,
    detection: Detection,
    hall: Option<HallEvents>,
    health: HealthTracker,
    /// Frame clock: when the last frame arrived.
    last_frame: Option<(Instant, DateTime<Utc>)>,
    /// Since when the camera has had no frame (start or last frame).
    waiting_since: Instant,
    offline: bool,
    frames_in_period: u32,
    period_start: Instant,
    last_status: Option<Instant>,
    last_snapshot: Option<Instant>,
    last_inference: Option<Instant>,
    last_counts_sent: Option<Instant>,
    previous_grey: Option<Grey>,
    boxes: Vec<BoxN>,
    counts: Vec<(ZoneId, u32)>,
    snapshot_error_logged: bool,
    fps: f32,
}

impl Camera {
    fn new(
        device: String,
        cfg: CameraConfig,
        zones: Vec<Zone>,
        model: Option<PathBuf>,
        out: flume::Sender<CameraOutput>,
        seq: Arc<AtomicU64>,
    ) -> Self {
        let (detector, detection) = load_detector(model.as_deref());
        match &detection {
            Detection::On { model } => info!(device = %device, camera = %cfg.id, model, "person detection on"),
            Detection::Off { reason } => {
                warn!(device = %device, camera = %cfg.id, reason, "person detection is OFF: health checks only, no people counted")
            }
        }
        let hall = detector.as_ref().map(|_| {
            HallEvents::new(HallRules {
                unattended_after: Duration::from_secs(cfg.hall.unattended_after_s),
                working_hours: cfg.hall.working_hours.iter().map(|r| (r.start, r.end)).collect(),
                weekdays_only: cfg.hall.weekdays_only,
                crowding_above: cfg.hall.crowding_above,
                crowding_for: Duration::from_secs(cfg.hall.crowding_for_s),
            })
        });
        let health = HealthTracker::new(cfg.health.clone());
        let now = Instant::now();
        Self {
            device,
            cfg,
            zones,
            out,
            seq,
            detector,
            detection,
            hall,
            health,
            last_frame: None,
            waiting_since: now,
            offline: false,
            frames_in_period: 0,
            period_start: now,
            last_status: None,
            last_snapshot: None,
            last_inference: None,
            last_counts_sent: None,
            previous_grey: None,
            boxes: Vec::new(),
            counts: Vec::new(),
            snapshot_error_logged: false,
            fps: 0.0,
        }
    }

    fn spec(&self) -> PipelineSpec {
        PipelineSpec {
            source: self.cfg.source.clone(),
            transport: self.cfg.transport,
            fps: self.cfg.analysis_fps,
            detect_width: self.detector.as_ref().map(|d| d.input_size().0),
        }
    }

    fn run(&mut self, zones: &flume::Receiver<Vec<Zone>>, stop: &AtomicBool) {
        let mut backoff = Duration::from_secs(1);
        // A pipeline that delivers nothing for this long is rebuilt (a stalled RTSP session may
        // never post an error).
        let stall = Duration::from_secs(self.cfg.offline_after_s.clamp(2, 10));
        let is_file = matches!(self.cfg.source, crate::camera_config::CameraSource::File(_));
        while !stop.load(Ordering::Relaxed) {
            // A file that ended is reopened at once: that is its loop.
            let mut reopen_now = false;
            match Pipeline::start(&self.spec()) {
                Ok(p) => {
                    let started = Instant::now();
                    let mut got_frame = false;
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        self.take_zones(zones);
                        match p.next(Duration::from_millis(200)) {
                            Ok(Some((view, detect))) => {
                                got_frame = true;
                                backoff = Duration::from_secs(1);
                                self.on_frame(&view, detect.as_ref());
                            }
                            Ok(None) => {}
                            Err(e) => warn!(camera = %self.cfg.id, error = %format!("{e:#}"), "bad frame"),
                        }
                        match p.poll_bus() {
                            BusNews::Nothing => {}
                            BusNews::EndOfStream if is_file && got_frame => {
                                reopen_now = true;
                                break;
                            }
                            BusNews::EndOfStream => {
                                info!(camera = %self.cfg.id, "stream ended; reconnecting");
                                break;
                            }
                            BusNews::Error(e) => {
                                warn!(camera = %self.cfg.id, error = %e, "stream error; reconnecting");
                                break;
                            }
                        }
                        let since = self.last_frame.map_or(started, |(t, _)| t.max(started));
                        if since.elapsed() > stall {
                            warn!(camera = %self.cfg.id, "no frames; reconnecting");
                            break;
                        }
                        self.tick();
                    }
                    if got_frame {
                        backoff = Duration::from_secs(1);
                    }
                    m::CAMERA_RECONNECTS.with_label_values(&[&self.device, self.cfg.id.as_str()]).inc();
                }
                Err(e) => warn!(camera = %self.cfg.id, error = %format!("{e:#}"), "cannot start the camera pipeline"),
            }
            self.health.forget_previous();
            self.previous_grey = None;
            if reopen_now {
                continue;
            }
            // Wait before the next attempt, still keeping time (offline, status) and zones.
            let until = Instant::now() + backoff;
            while Instant::now() < until {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                self.take_zones(zones);
                self.tick();
                std::thread::sleep(Duration::from_millis(100));
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn take_zones(&mut self, rx: &flume::Receiver<Vec<Zone>>) {
        while let Ok(z) = rx.try_recv() {
            info!(camera = %self.cfg.id, zones = z.len(), "zones replaced");
            self.zones = z;
            self.counts.clear();
            self.send_status();
        }
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn send(&self, o: CameraOutput) {
        // Blocks when the device side lags: better a slower camera than unbounded memory.
        let _ = self.out.send(o);
    }

    /// Time-driven work: offline after `offline_after_s` without frames, status every period.
    fn tick(&mut self) {
        let since = self.last_frame.map_or(self.waiting_since, |(t, _)| t);
        if !self.offline && since.elapsed() >= Duration::from_secs(self.cfg.offline_after_s) {
            self.offline = true;
            warn!(device = %self.device, camera = %self.cfg.id, "camera offline");
            let detail = format!(
                "{} 无画面超过 {} 秒 / no picture for {} s",
                self.cfg.name, self.cfg.offline_after_s, self.cfg.offline_after_s
            );
            self.event(CameraEventKind::Offline, true, None, detail, None);
            self.send_status();
        }
        if self.period_start.elapsed() >= Duration::from_secs(5) {
            self.fps = self.frames_in_period as f32 / self.period_start.elapsed().as_secs_f32();
            self.frames_in_period = 0;
            self.period_start = Instant::now();
        }
        if self.last_status.is_none_or(|t| t.elapsed() >= Duration::from_secs(self.cfg.status_interval_s.max(1))) {
            self.send_status();
        }
    }

    fn on_frame(&mut self, view: &Frame, detect: Option<&Frame>) {
        let now = Instant::now();
        let at = Utc::now();
        self.last_frame = Some((now, at));
        self.frames_in_period += 1;
        m::CAMERA_FRAMES.with_label_values(&[&self.device, self.cfg.id.as_str()]).inc();
        let v = view.as_ref();
        if self.offline {
            self.offline = false;
            info!(device = %self.device, camera = %self.cfg.id, "camera back online");
            self.event(
                CameraEventKind::Offline,
                false,
                None,
                format!("{} 画面恢复 / picture back", self.cfg.name),
                Some(&v),
            );
            self.send_status();
        }

        let grey = Grey::from_frame(&v);
        let (measures, transitions) = self.health.observe(grey.clone(), now);
        tracing::trace!(camera = %self.cfg.id, ?measures, "frame measures");
        for (kind, raised) in &transitions {
            let detail = health_detail(&self.cfg.name, *kind, *raised);
            self.event(*kind, *raised, None, detail, Some(&v));
        }
        if !transitions.is_empty() {
            self.send_status();
        }

        // Motion gating: the detector runs when something moved in a zone (or anywhere, without
        // zones), and at least every motion_recheck_ms so a person sitting still stays counted.
        let moved = self.previous_grey.as_ref().is_none_or(|p| motion_in_zones(&grey, p, &self.zones));
        self.previous_grey = Some(grey);
        let due = self.last_inference.is_none_or(|t| t.elapsed() >= Duration::from_millis(self.cfg.motion_recheck_ms));
        let run = !self.cfg.motion_gating || moved || due;
        if let (Some(det), Some(d), true) = (self.detector.as_mut(), detect, run) {
            self.last_inference = Some(now);
            m::CAMERA_INFERENCES.with_label_values(&[&self.device, self.cfg.id.as_str()]).inc();
            match detect_timed(det, &d.as_ref()) {
                Ok(b) => {
                    self.counts = offsite_vision::zones::count_per_zone(&b, &self.zones);
                    self.boxes = b;
                }
                Err(e) => warn!(camera = %self.cfg.id, error = %format!("{e:#}"), "person detection failed"),
            }
        }
        if self.detector.is_some() && !self.counts.is_empty() {
            self.hall_events(at, &v);
            if self.last_counts_sent.is_none_or(|t| t.elapsed() >= COUNT_EVERY) {
                self.last_counts_sent = Some(now);
                let samples = self
                    .counts
                    .iter()
                    .filter_map(|(z, n)| {
                        MetricKey::parse(&zone_metric(&self.cfg.id, z)).ok().map(|metric| Sample {
                            ts: at,
                            metric,
                            value: *n as f64,
                        })
                    })
                    .collect::<Vec<_>>();
                if !samples.is_empty() {
                    self.send(CameraOutput::Samples(samples));
                }
            }
        }

        if self.last_snapshot.is_none_or(|t| t.elapsed() >= Duration::from_secs(self.cfg.snapshot_interval_s.max(1))) {
            self.last_snapshot = Some(now);
            if let Some(snapshot) = self.snapshot(&v, at) {
                let seq = self.next_seq();
                self.send(CameraOutput::Message(CameraMessage::Snapshot {
                    seq,
                    camera: self.cfg.id.clone(),
                    snapshot,
                }));
            }
        }
        self.tick();
    }

    fn hall_events(&mut self, at: DateTime<Utc>, v: &FrameRef) {
        let Some(hall) = self.hall.as_mut() else { return };
        let counts: Vec<_> = self
            .counts
            .iter()
            .filter_map(|(id, n)| {
                self.zones.iter().find(|z| &z.id == id).map(|z| (id.clone(), z.kind, z.name.clone(), *n))
            })
            .collect();
        for t in hall.observe(at, &counts) {
            self.event(t.kind, t.raised, Some(t.zone), t.detail, Some(v));
        }
    }

    fn event(
        &mut self,
        kind: CameraEventKind,
        raised: bool,
        zone: Option<ZoneId>,
        detail: String,
        frame: Option<&FrameRef>,
    ) {
        let at = Utc::now();
        let snapshot = frame.and_then(|f| self.snapshot(f, at));
        info!(device = %self.device, camera = %self.cfg.id, kind = kind.as_str(), raised, %detail, "camera event");
        let seq = self.next_seq();
        self.send(CameraOutput::Message(CameraMessage::Event {
            seq,
            camera: self.cfg.id.clone(),
            kind,
            raised,
            at,
            zone,
            detail,
            snapshot,
        }));
    }

    fn snapshot(&mut self, f: &FrameRef, at: DateTime<Utc>) -> Option<Snapshot> {
        match offsite_vision::draw::snapshot_jpeg(f, &self.boxes, &self.zones, 80) {
            Ok(jpeg) => Some(Snapshot {
                at,
                width: f.width,
                height: f.height,
                sha256: hex_lower(&sha2::Sha256::digest(&jpeg)),
                jpeg_base64: base64::engine::general_purpose::STANDARD.encode(&jpeg),
                boxes: self.boxes.clone(),
                zones: self.zones.clone(),
            }),
            Err(e) => {
                if !self.snapshot_error_logged {
                    self.snapshot_error_logged = true;
                    warn!(camera = %self.cfg.id, error = %format!("{e:#}"), "no snapshots: events go without a picture");
                }
                None
            }
        }
    }

    fn send_status(&mut self) {
        self.last_status = Some(Instant::now());
        m::CAMERA_ONLINE.with_label_values(&[&self.device, self.cfg.id.as_str()]).set(!self.offline as i64);
        let mut health = self.health.raised();
        if self.offline {
            health.insert(0, CameraEventKind::Offline);
        }
        let seq = self.next_seq();
        self.send(CameraOutput::Message(CameraMessage::Status {
            seq,
            camera: self.cfg.id.clone(),
            at: Utc::now(),
            name: self.cfg.name.clone(),
            online: !self.offline,
            fps: self.fps,
            last_frame_at: self.last_frame.map(|(_, at)| at),
            detection: self.detection.clone(),
            zones: self.zones.clone(),
            health,
        }));
    }
}

/// [`Yolox::detect`] with each stage's time on `offsite_edge_camera_stage_seconds` (what
/// `offsite bench video` reports, and what an operator looks at when a camera falls behind).
fn detect_timed(det: &mut Yolox, frame: &FrameRef) -> anyhow::Result<Vec<BoxN>> {
    let stage = |name: &str, since: Instant| {
        m::CAMERA_STAGE_SECONDS.with_label_values(&[name]).observe(since.elapsed().as_secs_f64());
    };
    let t = Instant::now();
    let lb = det.preprocess(frame)?;
    stage("preprocess", t);
    let t = Instant::now();
    let raw = det.infer()?;
    stage("inference", t);
    let t = Instant::now();
    let boxes = det.postprocess(&raw, &lb, frame.width, frame.height)?;
    stage("postprocess", t);
    Ok(boxes)
}

/// Whether something moved in any zone between two frames (anywhere, without zones). Inside a
/// zone is decided by the polygon itself, so motion next to a window seat does not wake the detector.
pub fn motion_in_zones(now: &Grey, before: &Grey, zones: &[Zone]) -> bool {
    if zones.is_empty() {
        return now.change(before).is_none_or(|c| c > MOTION_CHANGE);
    }
    zones.iter().any(|z| {
        let inside = |x: f32, y: f32| point_in(&z.polygon, x, y);
        now.change_in(before, &inside).is_none_or(|c| c > MOTION_CHANGE)
    })
}

/// Even-odd rule (kept here rather than borrowed from the vision crate, whose body may not be
/// there yet: gating must work without a model too).
fn point_in(poly: &[offsite_wire::Point], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = poly.len().wrapping_sub(1);
    for i in 0..poly.len() {
        let ([xi, yi], [xj, yj]) = (poly[i], poly[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// For people, zh-CN first.
fn health_detail(camera: &str, kind: CameraEventKind, raised: bool) -> String {
    let (zh, en) = match kind {
        CameraEventKind::Black => ("画面黑屏", "black picture"),
        CameraEventKind::Frozen => ("画面冻结", "frozen picture"),
        CameraEventKind::Covered => ("画面遮挡或失焦", "covered or out of focus"),
        CameraEventKind::Moved => ("摄像头被移动", "camera moved"),
        CameraEventKind::Offline => ("无画面", "no picture"),
        CameraEventKind::Unattended => ("脱岗", "post unattended"),
        CameraEventKind::Crowding => ("人员聚集", "crowding"),
    };
    if raised {
        format!("{camera} {zh} / {en}")
    } else {
        format!("{camera} 已恢复：{zh} / recovered: {en}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offsite_wire::ZoneKind;

    fn grey_with_block(x0: usize, y0: usize) -> Grey {
        let (w, h) = (160, 90);
        let mut pixels = vec![100f32; w * h];
        for y in y0..y0 + 20 {
            for x in x0..x0 + 20 {
                pixels[y * w + x] = 250.0;
            }
        }
        Grey { width: w, height: h, pixels }
    }

    #[test]
    fn motion_gating_looks_inside_the_zones_only() {
        let left: Zone = serde_json::from_value(serde_json::json!({
            "id": "w1", "name": "1号窗口", "kind": ZoneKind::Window,
            "polygon": [[0.0, 0.0], [0.4, 0.0], [0.4, 1.0], [0.0, 1.0]]
        }))
        .unwrap();
        let still = grey_with_block(120, 30);
        // Something moved on the right, outside the zone: no reason to run the detector.
        let right_moved = grey_with_block(130, 40);
        assert!(!motion_in_zones(&right_moved, &still, std::slice::from_ref(&left)));
        // Without zones, any motion counts.
        assert!(motion_in_zones(&right_moved, &still, &[]));
        // Inside the zone: run it.
        let inside_before = grey_with_block(10, 30);
        let inside_after = grey_with_block(25, 40);
        assert!(motion_in_zones(&inside_after, &inside_before, &[left]));
        assert!(!motion_in_zones(&still, &still, &[]));
    }
}
