//! Offline GStreamer work on video files, for the video benchmark and the detection tests:
//! transcoding a clip into the stream a camera would send, timing the decoder, and taking decoded
//! frames exactly as the camera pipeline's detect branch hands them to the detector.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

/// A decoded frame with its rows packed (no stride padding).
#[derive(Debug, Clone)]
pub struct PackedFrame {
    /// Position in the file, counting from 0.
    pub index: u64,
    pub width: u32,
    pub height: u32,
    /// BGR, 3 bytes per pixel, `3 * width` per row.
    pub bgr: Vec<u8>,
}

impl PackedFrame {
    pub fn as_ref(&self) -> offsite_vision::FrameRef<'_> {
        offsite_vision::FrameRef {
            width: self.width,
            height: self.height,
            stride: 3 * self.width as usize,
            format: offsite_vision::PixelFormat::Bgr,
            data: &self.bgr,
        }
    }
}

/// Writes `frames` into `dir` as raw BGR files listed in `frames.json`: what
/// vision/reference/yolox_reference.py reads with `--frames-dir`.
pub fn write_frames(dir: &Path, frames: &[PackedFrame]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut listed = Vec::with_capacity(frames.len());
    for f in frames {
        let file = format!("frame_{:05}.bgr", f.index);
        std::fs::write(dir.join(&file), &f.bgr)?;
        listed.push(serde_json::json!({"index": f.index, "file": file, "width": f.width, "height": f.height}));
    }
    std::fs::write(dir.join("frames.json"), serde_json::to_vec(&listed)?)?;
    Ok(())
}

fn launch(description: &str, location: &Path) -> Result<gst::Pipeline> {
    super::pipeline::init()?;
    let p = gst::parse::launch(description)
        .with_context(|| format!("building `{description}`"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline"))?;
    p.by_name("src")
        .ok_or_else(|| anyhow!("no src element"))?
        .set_property("location", location.to_string_lossy().as_ref());
    Ok(p)
}

/// Waits for the end of stream (or the first error) for at most `limit`.
fn wait_eos(p: &gst::Pipeline, limit: Duration) -> Result<()> {
    let bus = p.bus().ok_or_else(|| anyhow!("pipeline without bus"))?;
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_nseconds(limit.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .ok_or_else(|| anyhow!("no end of stream within {limit:?}"))?;
    if let gst::MessageView::Error(e) = msg.view() {
        bail!("{} ({:?})", e.error(), e.debug());
    }
    Ok(())
}

/// Transcodes `input` (any format GStreamer decodes) into `output`, an MP4 holding H.264 at
/// `width`x`height` (letterboxed, square pixels) and `fps`, as an IP camera would send it:
/// baseline-like (no B-frames), a key frame every 2 s.
pub fn transcode_h264(
    input: &Path,
    output: &Path,
    width: u32,
    height: u32,
    fps: u32,
) -> Result<()> {
    let p = launch(
        &format!(
            "filesrc name=src ! decodebin ! videoconvert ! videoscale add-borders=true ! videorate ! \
             video/x-raw,format=I420,width={width},height={height},framerate={fps}/1,pixel-aspect-ratio=1/1 ! \
             x264enc tune=zerolatency speed-preset=fast key-int-max={} bitrate=1200 ! h264parse ! mp4mux ! \
             filesink name=out",
            2 * fps
        ),
        input,
    )?;
    p.by_name("out")
        .ok_or_else(|| anyhow!("no sink"))?
        .set_property("location", output.to_string_lossy().as_ref());
    p.set_state(gst::State::Playing).context("transcoding")?;
    let done = wait_eos(&p, Duration::from_secs(300));
    p.set_state(gst::State::Null)?;
    done.with_context(|| format!("transcoding {}", input.display()))
}

/// Decodes the whole H.264 `file` as fast as one decoder thread can; (frames, time taken).
pub fn time_decoding(file: &Path) -> Result<(u64, Duration)> {
    let p = launch(
        "filesrc name=src ! parsebin ! avdec_h264 max-threads=1 ! appsink name=out sync=false max-buffers=4",
        file,
    )?;
    let out = appsink(&p)?;
    let t0 = Instant::now();
    p.set_state(gst::State::Playing)?;
    let mut frames = 0u64;
    while let Some(_s) = out.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        frames += 1;
    }
    let took = t0.elapsed();
    let eos = out.is_eos();
    p.set_state(gst::State::Null)?;
    if !eos || frames == 0 {
        bail!("decoding {} stopped after {frames} frames", file.display());
    }
    Ok((frames, took))
}

/// The frames of `file` whose index `pick` accepts (at most `max`), decoded and scaled to
/// `width` pixels wide in BGR with GStreamer's own elements, as the camera pipeline's detect
/// branch does.
pub fn decode_frames(
    file: &Path,
    width: u32,
    pick: impl Fn(u64) -> bool,
    max: usize,
) -> Result<Vec<PackedFrame>> {
    let p = launch(
        &format!(
            "filesrc name=src ! decodebin ! videoconvert ! videoscale ! \
             video/x-raw,format=BGR,width={width},pixel-aspect-ratio=1/1 ! appsink name=out sync=false max-buffers=4"
        ),
        file,
    )?;
    let out = appsink(&p)?;
    p.set_state(gst::State::Playing)?;
    let mut frames = Vec::new();
    let mut index = 0u64;
    while frames.len() < max {
        let Some(sample) = out.try_pull_sample(gst::ClockTime::from_seconds(10)) else {
            break;
        };
        if pick(index) {
            frames.push(pack(&sample, index)?);
        }
        index += 1;
    }
    p.set_state(gst::State::Null)?;
    Ok(frames)
}

fn appsink(p: &gst::Pipeline) -> Result<gst_app::AppSink> {
    p.by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| anyhow!("no appsink"))
}

fn pack(sample: &gst::Sample, index: u64) -> Result<PackedFrame> {
    let info = gst_video::VideoInfo::from_caps(sample.caps().ok_or_else(|| anyhow!("no caps"))?)?;
    let buffer = sample.buffer().ok_or_else(|| anyhow!("no buffer"))?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|_| anyhow!("cannot map frame"))?;
    let (w, h) = (frame.width(), frame.height());
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).map_err(|_| anyhow!("no plane"))?;
    let row = 3 * w as usize;
    let mut bgr = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        bgr.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok(PackedFrame {
        index,
        width: w,
        height: h,
        bgr,
    })
}
