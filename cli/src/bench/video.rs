//! `offsite bench video`: how many camera streams one machine analyses in real time.
//!
//! The clip is transcoded once into what an IP camera sends (640x360 H.264, 25 fps) and served
//! over RTSP by the in-process server without re-encoding, so the server costs next to nothing and
//! the machine's time goes to the cameras. Each trial runs N cameras exactly as the edge agent runs
//! them (`camera::start`: rtspsrc -> decode -> 5 fps -> health, motion, person detection, zones,
//! hall events, snapshots), with the demo's vtest.avi zones; a trial is sustained when every
//! stream keeps >= 90% of the analysis rate, all together >= 95%, and (gating off) >= 95% of
//! the analysed frames also went through person detection. N grows until a trial fails,
//! then the gap is bisected; once with motion gating off (every analysed frame goes to the
//! detector) and once on. The per-frame stages come from the cameras' own histogram
//! (`offsite_edge_camera_stage_seconds`) in the one-stream ungated trial; decoding is timed
//! on its own (one decoder thread, the whole stream); Python onnxruntime runs the same model on the
//! same GStreamer-decoded frames in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use offsite_edge_agent::camera::media;
use offsite_edge_agent::camera::rtsp_server::{RtspServer, Served};
use offsite_edge_agent::camera::{self, CameraOutput};
use offsite_edge_agent::metrics as m;
use offsite_vision::detect::{DetectorConfig, Yolox};
use offsite_wire::CameraId;
use serde_json::json;

use super::support::{round, scratch_dir};

#[derive(clap::Args)]
pub struct Args {
    /// The person detector (a YOLOX-style ONNX model); default: the one setup installed.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The clip every stream plays; default: vtest.avi, placed by setup in demo-media/.
    #[arg(long)]
    clip: Option<PathBuf>,
    /// Seconds each trial is measured, after the warm-up.
    #[arg(long, default_value_t = 12)]
    seconds: u64,
    /// Seconds each trial runs before it is measured (connecting, loading the model).
    #[arg(long, default_value_t = 4)]
    warmup: u64,
    /// The most streams tried.
    #[arg(long, default_value_t = 48)]
    max: usize,
    /// Analysis rate per stream (frames per second).
    #[arg(long, default_value_t = 5.0)]
    fps: f64,
    /// A Python with onnxruntime, numpy and OpenCV; default: the venv setup makes
    /// (vision/reference/.venv).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Accepted for symmetry; the JSON line is always printed last.
    #[arg(long)]
    json: bool,
}

/// What the streams are: 640x360 H.264 at 25 fps (the camera).
const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;
const STREAM_FPS: u32 = 25;

pub async fn run(_cfg: crate::configuration::Config, a: Args) -> Result<()> {
    let out = tokio::task::spawn_blocking(move || measure(&a)).await??;
    println!("{out}");
    Ok(())
}

fn measure(a: &Args) -> Result<serde_json::Value> {
    let model = a
        .model
        .clone()
        .or_else(crate::assets::yolox_model)
        .context("no person detection model: run scripts/setup.sh, or pass --model")?;
    let clip = a
        .clip
        .clone()
        .or_else(|| crate::assets::demo_media("vtest.avi"))
        .context(
            "no clip: run scripts/setup.sh (it places vtest.avi in demo-media/), or pass --clip",
        )?;
    let ort = crate::assets::onnxruntime_library()
        .context("ONNX Runtime library not found beside the executable")?;
    offsite_vision::detect::init_runtime(&ort)?;

    let dir = scratch_dir("video")?;
    let stream = dir.path().join("stream.mp4");
    eprintln!(
        "transcoding {} into {WIDTH}x{HEIGHT} H.264 at {STREAM_FPS} fps ...",
        clip.display()
    );
    media::transcode_h264(&clip, &stream, WIDTH, HEIGHT, STREAM_FPS)?;

    let (decoded, took) = media::time_decoding(&stream)?;
    let decode_ms = took.as_secs_f64() * 1000.0 / decoded as f64;
    eprintln!("decoding: {decoded} frames in {took:.2?} on one thread ({decode_ms:.2} ms/frame)");

    let same_frames = same_frame_inference(&stream, &model, dir.path(), a.python.as_deref())?;

    let server = RtspServer::start(0, &[("/cam", Served::H264File(stream.clone()))])?;
    let url = server.url("/cam");
    let ungated = search(a, &url, &model, false)?;
    let gated = search(a, &url, &model, true)?;
    server.stop();

    let best = ungated.best.as_ref();
    let stage_of = |t: Option<&Trial>, name: &str| {
        t.and_then(|t| t.stage_ms.iter().find(|(s, _)| s == name).map(|(_, v)| round(*v, 3)))
    };
    // The split is each stage's own cost: measured with one stream, so no time waiting for a core
    // is counted. At the maximum the same stages take longer in wall time, because N streams
    // share the two cores; that figure is reported apart.
    let stage = |name: &str| stage_of(ungated.single.as_ref(), name);
    let per_analysed = STREAM_FPS as f64 / a.fps;
    Ok(json!({
        "bench": "video",
        "stream": format!("{WIDTH}x{HEIGHT} H.264 {STREAM_FPS} fps over RTSP (TCP)"),
        "analysis_fps": a.fps,
        "model": model.file_name().map(|f| f.to_string_lossy().into_owned()),
        "clip": clip.file_name().map(|f| f.to_string_lossy().into_owned()),
        "max_streams": ungated.best.as_ref().map_or(0, |t| t.streams),
        "max_streams_gated": gated.best.as_ref().map_or(0, |t| t.streams),
        "goal_streams": 16,
        "decode_ms": round(decode_ms, 3),
        "decode_ms_per_analysed_frame": round(decode_ms * per_analysed, 3),
        "preprocess_ms": stage("preprocess"),
        "inference_ms": stage("inference"),
        "postprocess_ms": stage("postprocess"),
        "inference_wall_ms_at_max": stage_of(best, "inference"),
        "rust_inference_ms_same_frames": round(same_frames.rust_ms, 3),
        "python_ort_inference_ms": same_frames.python_ms.map(|v| round(v, 3)),
        "python_over_rust": same_frames.python_ms.map(|p| round(p / same_frames.rust_ms, 2)),
        "cpu_cores_used_at_max": best.map(|t| round(t.cpu_cores, 2)),
        "inferences_per_s_at_max": best.map(|t| round(t.inferences_per_s, 1)),
        "gated_inference_share_at_max": gated.best.as_ref().map(|t| round(t.inferences_per_s / t.frames_per_s.max(1e-9), 3)),
        "first_failed_streams": ungated.first_failed,
        "first_failed_streams_gated": gated.first_failed,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    }))
}

struct SameFrames {
    rust_ms: f64,
    python_ms: Option<f64>,
}

/// The model's run time on the same GStreamer-decoded frames, from Rust and from Python.
fn same_frame_inference(
    stream: &Path,
    model: &Path,
    dir: &Path,
    python: Option<&Path>,
) -> Result<SameFrames> {
    const RUNS: usize = 5;
    let mut yolox = Yolox::load(&DetectorConfig::new(model))?;
    let (input_w, _) = yolox.input_size();
    // One frame a second, as the detect branch scales them.
    let frames = media::decode_frames(stream, input_w, |i| i % STREAM_FPS as u64 == 0, 16)?;
    if frames.is_empty() {
        bail!("no frames decoded from {}", stream.display());
    }
    let frames_dir = dir.join("frames");
    media::write_frames(&frames_dir, &frames)?;
    let mut times = Vec::new();
    for f in &frames {
        yolox.preprocess(&f.as_ref())?;
        yolox.infer()?; // warm
        for _ in 0..RUNS {
            let t = Instant::now();
            yolox.infer()?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let rust_ms = super::support::percentile(&mut times, 50.0);
    eprintln!(
        "Rust (ort, 1 thread): {rust_ms:.2} ms per inference, median of {} on {} frames",
        times.len(),
        frames.len()
    );

    let checkout = std::env::current_exe()?
        .parent()
        .map(|d| d.join("../.."))
        .unwrap_or_default();
    let script = checkout.join("vision/reference/yolox_reference.py");
    let python = python
        .map(Path::to_path_buf)
        .unwrap_or_else(|| checkout.join("vision/reference/.venv/bin/python"));
    if !python.is_file() || !script.is_file() {
        eprintln!(
            "note: no Python reference ({} / {}): python_ort_inference_ms is null",
            python.display(),
            script.display()
        );
        return Ok(SameFrames {
            rust_ms,
            python_ms: None,
        });
    }
    let status = Command::new(&python)
        .arg(&script)
        .arg("--frames-dir")
        .arg(&frames_dir)
        .arg("--out")
        .arg(&frames_dir)
        .arg("--model")
        .arg(model)
        .args(["--time-runs", &RUNS.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .context("running the Python reference")?;
    if !status.success() {
        bail!("the Python reference failed: {status}");
    }
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(frames_dir.join("reference.json"))?)?;
    let python_ms = reference["inference_ms_median"].as_f64();
    eprintln!(
        "Python onnxruntime {} (1 thread): {:.2} ms per inference on the same frames",
        reference["onnxruntime"].as_str().unwrap_or("?"),
        python_ms.unwrap_or(f64::NAN)
    );
    Ok(SameFrames { rust_ms, python_ms })
}

/// One trial's figures.
#[derive(Debug, Clone)]
struct Trial {
    streams: usize,
    sustained: bool,
    /// Analysed frames per second, all streams together, and the slowest stream's.
    frames_per_s: f64,
    slowest_fps: f64,
    inferences_per_s: f64,
    /// Mean milliseconds per inference in each stage.
    stage_ms: Vec<(String, f64)>,
    cpu_cores: f64,
}

struct Search {
    /// The one-stream trial: the stages' own cost, with no other stream waiting for a core.
    single: Option<Trial>,
    best: Option<Trial>,
    first_failed: Option<usize>,
}

/// Grows N until a trial falls behind, then bisects between the last good and the first bad N.
fn search(a: &Args, url: &str, model: &Path, gating: bool) -> Result<Search> {
    let mode = if gating {
        "motion gating on"
    } else {
        "motion gating off"
    };
    let ladder = [1usize, 2, 4, 8, 12, 16, 20, 24, 32, 40, 48, 64];
    let mut best: Option<Trial> = None;
    let mut single: Option<Trial> = None;
    let mut failed: Option<usize> = None;
    for &n in ladder.iter().filter(|&&n| n <= a.max) {
        let t = trial(a, url, model, gating, n)?;
        report(mode, &t);
        if n == 1 {
            single = Some(t.clone());
        }
        if t.sustained {
            best = Some(t);
        } else {
            failed = Some(n);
            break;
        }
    }
    if let Some(mut bad) = failed {
        let mut good = best.as_ref().map_or(0, |t| t.streams);
        while bad - good > 1 {
            let n = (good + bad) / 2;
            let t = trial(a, url, model, gating, n)?;
            report(mode, &t);
            if t.sustained {
                good = n;
                best = Some(t);
            } else {
                bad = n;
            }
        }
        failed = Some(bad);
    }
    Ok(Search { single, best, first_failed: failed })
}

fn report(mode: &str, t: &Trial) {
    eprintln!(
        "{mode}: {:>2} streams: {:6.1} frames/s analysed (slowest stream {:.2} fps), {:6.1} inferences/s, {:.2} cores busy -> {}",
        t.streams,
        t.frames_per_s,
        t.slowest_fps,
        t.inferences_per_s,
        t.cpu_cores,
        if t.sustained { "sustained" } else { "FALLS BEHIND" }
    );
}

fn trial(a: &Args, url: &str, model: &Path, gating: bool, n: usize) -> Result<Trial> {
    const DEVICE: &str = "bench";
    let template = crate::demo_cameras::CAMERAS
        .iter()
        .find(|c| c.clip == "vtest.avi")
        .context("the demo's vtest.avi camera")?
        .config(url, Some(model))?;
    let (tx, rx) = flume::bounded::<CameraOutput>(1024);
    // The device side, reduced to counting: the bench measures the cameras, not the link.
    let drained = Arc::new(AtomicU64::new(0));
    let d2 = drained.clone();
    let drain = std::thread::spawn(move || {
        while rx.recv().is_ok() {
            d2.fetch_add(1, Ordering::Relaxed);
        }
    });
    let seq = Arc::new(AtomicU64::new(0));
    let mut cams = Vec::with_capacity(n);
    for i in 0..n {
        let mut cfg = template.clone();
        cfg.id = CameraId::parse(&format!("bench-{gating}-{n}-{i}")).map_err(anyhow::Error::msg)?;
        cfg.motion_gating = gating;
        cfg.analysis_fps = a.fps;
        cams.push(camera::start(
            DEVICE,
            &cfg,
            cfg.zones.clone(),
            Path::new("."),
            tx.clone(),
            seq.clone(),
        )?);
    }
    drop(tx);
    std::thread::sleep(Duration::from_secs(a.warmup));

    let counters = |cams: &[camera::RunningCamera]| -> Vec<(u64, u64)> {
        cams.iter()
            .map(|c| {
                let l = [DEVICE, c.id.as_str()];
                (
                    m::CAMERA_FRAMES.with_label_values(&l).get(),
                    m::CAMERA_INFERENCES.with_label_values(&l).get(),
                )
            })
            .collect()
    };
    let stages = || -> Vec<(String, f64, u64)> {
        ["preprocess", "inference", "postprocess"]
            .iter()
            .map(|s| {
                let h = m::CAMERA_STAGE_SECONDS.with_label_values(&[s]);
                (s.to_string(), h.get_sample_sum(), h.get_sample_count())
            })
            .collect()
    };
    let before = counters(&cams);
    let stages_before = stages();
    let cpu_before = process_cpu_seconds();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(a.seconds));
    let secs = t0.elapsed().as_secs_f64();
    let after = counters(&cams);
    let stages_after = stages();
    let cpu = (process_cpu_seconds() - cpu_before) / secs;
    for c in cams {
        c.stop();
    }
    let _ = drain.join();

    let per_stream: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.0 - b.0) as f64 / secs)
        .collect();
    let frames_per_s: f64 = per_stream.iter().sum();
    let inferences_per_s = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.1 - b.1) as f64)
        .sum::<f64>()
        / secs;
    let slowest_fps = per_stream.iter().copied().fold(f64::INFINITY, f64::min);
    let stage_ms = stages_before
        .iter()
        .zip(&stages_after)
        .map(|((name, s0, c0), (_, s1, c1))| {
            let count = c1 - c0;
            (
                name.clone(),
                if count == 0 {
                    f64::NAN
                } else {
                    (s1 - s0) * 1000.0 / count as f64
                },
            )
        })
        .collect();
    // Falling behind shows as frames the leaky queues dropped: fewer analysed than the streams
    // deliver, or (the detect branch being the heavier one) analysed frames without their
    // detection, which with gating off must be every one.
    let wanted = a.fps * n as f64;
    let sustained = slowest_fps >= 0.9 * a.fps
        && frames_per_s >= 0.95 * wanted
        && (gating || inferences_per_s >= 0.95 * wanted);
    Ok(Trial {
        streams: n,
        sustained,
        frames_per_s,
        slowest_fps,
        inferences_per_s,
        stage_ms,
        cpu_cores: cpu,
    })
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`, clock ticks of 1/100 s).
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}
