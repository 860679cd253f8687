//! One camera's GStreamer pipeline:
//!
//! ```text
//! source (rtspsrc | filesrc | videotestsrc) -> decodebin -> videorate (analysis fps) -> tee
//!    tee -> queue -> videoscale/videoconvert -> RGB, 640 px wide       -> appsink "view"   (motion, health, snapshots)
//!    tee -> queue -> videoscale/videoconvert -> BGR, model input width -> appsink "detect" (the detector; only with a model)
//! ```
//!
//! The frame rate is cut before any conversion, so decoding is the only full-rate work. Frames
//! reach Rust as mapped GStreamer buffers ([`Frame`]): the pixels are read in place, not copied.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use offsite_vision::{FrameRef, PixelFormat};

use crate::camera_config::{CameraSource, RtspTransport};

/// Width of the view frames (health, motion, snapshots).
pub const VIEW_WIDTH: u32 = 640;

/// Initialises GStreamer once per process.
pub fn init() -> Result<()> {
    gst::init().context("initialising GStreamer")
}

#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub source: CameraSource,
    pub transport: RtspTransport,
    pub fps: f64,
    /// The detector's input width; `None` without a detector (no detect branch at all).
    pub detect_width: Option<u32>,
}

impl PipelineSpec {
    /// The pipeline in gst-launch syntax. Locations are set as properties afterwards (never
    /// spliced into the text), so a path or URL cannot change the pipeline.
    pub fn describe(&self) -> String {
        let (num, den) = fps_fraction(self.fps);
        let source = match &self.source {
            CameraSource::Rtsp(_) => {
                let proto = match self.transport {
                    RtspTransport::Tcp => "tcp",
                    RtspTransport::Udp => "udp",
                };
                format!("rtspsrc name=src protocols={proto} latency=200 ! decodebin")
            }
            // Paced to the clock right after decoding, so a file behaves like a live camera (and
            // the leaky queues below do not throw away what a fast decoder delivers early).
            CameraSource::File(_) => "filesrc name=src ! decodebin ! identity sync=true".to_owned(),
            CameraSource::Test(p) => {
                format!(
                    "videotestsrc name=src is-live=true pattern={p} ! video/x-raw,width=640,height=360,framerate=25/1"
                )
            }
        };
        let sink = |name: &str| format!("appsink name={name} sync=false max-buffers=2 drop=true emit-signals=false");
        let mut d = format!(
            "{source} ! videorate drop-only=true ! video/x-raw,framerate={num}/{den} ! tee name=t \
             t. ! queue max-size-buffers=2 leaky=downstream ! videoscale ! videoconvert ! \
             video/x-raw,format=RGB,width={VIEW_WIDTH},pixel-aspect-ratio=1/1 ! {}",
            sink("view")
        );
        if let Some(w) = self.detect_width {
            d.push_str(&format!(
                " t. ! queue max-size-buffers=2 leaky=downstream ! videoscale ! videoconvert ! \
                 video/x-raw,format=BGR,width={w},pixel-aspect-ratio=1/1 ! {}",
                sink("detect")
            ));
        }
        d
    }
}

/// `fps` as a fraction GStreamer caps accept.
fn fps_fraction(fps: f64) -> (i32, i32) {
    if (fps - fps.round()).abs() < 1e-6 {
        (fps.round() as i32, 1)
    } else {
        ((fps * 1000.0).round() as i32, 1000)
    }
}

/// A decoded frame, mapped for reading (holds the GStreamer buffer).
pub struct Frame {
    frame: gst_video::VideoFrame<gst_video::video_frame::Readable>,
    format: PixelFormat,
    pub pts: Option<gst::ClockTime>,
}

impl Frame {
    fn from_sample(sample: gst::Sample, format: PixelFormat) -> Result<Self> {
        let caps = sample.caps().ok_or_else(|| anyhow!("sample without caps"))?;
        let info = gst_video::VideoInfo::from_caps(caps).context("video caps")?;
        let buffer = sample.buffer_owned().ok_or_else(|| anyhow!("sample without buffer"))?;
        let pts = buffer.pts();
        let frame =
            gst_video::VideoFrame::from_buffer_readable(buffer, &info).map_err(|_| anyhow!("cannot map frame"))?;
        Ok(Self { frame, format, pts })
    }

    pub fn as_ref(&self) -> FrameRef<'_> {
        FrameRef {
            width: self.frame.width(),
            height: self.frame.height(),
            stride: self.frame.plane_stride()[0] as usize,
            format: self.format,
            data: self.frame.plane_data(0).unwrap_or(&[]),
        }
    }
}

/// What the bus said since the last look.
#[derive(Debug, PartialEq)]
pub enum BusNews {
    Nothing,
    EndOfStream,
    Error(String),
}

pub struct Pipeline {
    pipeline: gst::Pipeline,
    view: gst_app::AppSink,
    detect: Option<gst_app::AppSink>,
    bus: gst::Bus,
    loops: bool,
}

impl Pipeline {
    /// Builds the pipeline and sets it playing.
    pub fn start(spec: &PipelineSpec) -> Result<Self> {
        let pipeline = gst::parse::launch(&spec.describe())
            .context("building the camera pipeline")?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("not a pipeline"))?;
        let src = pipeline.by_name("src").ok_or_else(|| anyhow!("no source element"))?;
        match &spec.source {
            CameraSource::Rtsp(url) => src.set_property("location", url),
            CameraSource::File(p) => src.set_property("location", p.to_string_lossy().as_ref()),
            CameraSource::Test(_) => {}
        }
        let sink = |name: &str| -> Result<gst_app::AppSink> {
            pipeline
                .by_name(name)
                .ok_or_else(|| anyhow!("no {name} sink"))?
                .downcast::<gst_app::AppSink>()
                .map_err(|_| anyhow!("{name} is not an appsink"))
        };
        let view = sink("view")?;
        let detect = if spec.detect_width.is_some() { Some(sink("detect")?) } else { None };
        let bus = pipeline.bus().ok_or_else(|| anyhow!("pipeline without bus"))?;
        pipeline.set_state(gst::State::Playing).context("starting the camera pipeline")?;
        Ok(Self { pipeline, view, detect, bus, loops: matches!(spec.source, CameraSource::File(_)) })
    }

    /// The next view frame and, with a detector, the detect frame of the same instant; `None`
    /// when nothing arrived within `wait`.
    pub fn next(&self, wait: Duration) -> Result<Option<(Frame, Option<Frame>)>> {
        let Some(sample) = self.view.try_pull_sample(gst::ClockTime::from_nseconds(wait.as_nanos() as u64)) else {
            return Ok(None);
        };
        let view = Frame::from_sample(sample, PixelFormat::Rgb)?;
        let Some(detect_sink) = &self.detect else {
            return Ok(Some((view, None)));
        };
        // The two branches carry the same timestamps; a frame one branch dropped is skipped.
        let mut detect = None;
        for _ in 0..4 {
            let Some(s) = detect_sink.try_pull_sample(gst::ClockTime::from_mseconds(500)) else { break };
            let f = Frame::from_sample(s, PixelFormat::Bgr)?;
            match (f.pts, view.pts) {
                (Some(a), Some(b)) if a < b => continue,
                (Some(a), Some(b)) if a > b => break,
                _ => {
                    detect = Some(f);
                    break;
                }
            }
        }
        Ok(Some((view, detect)))
    }

    /// Errors and end of stream; a file is rewound (if that fails, the caller reopens it).
    pub fn poll_bus(&self) -> BusNews {
        while let Some(msg) = self.bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos]) {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let debug = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                    return BusNews::Error(format!("{}{debug}", e.error()));
                }
                // Seen after a rewind too; the sink's own state below decides.
                gst::MessageView::Eos(_) if self.loops => {}
                gst::MessageView::Eos(_) => return BusNews::EndOfStream,
                _ => {}
            }
        }
        // The pipeline posts EOS only once every sink has it; the view sink knows first. A file
        // is rewound (its loop); reopening it instead would lose a second or two each time.
        if self.view.is_eos() {
            let rewound = self.loops
                && self
                    .pipeline
                    .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT, gst::ClockTime::ZERO)
                    .is_ok();
            if !rewound {
                return BusNews::EndOfStream;
            }
        }
        BusNews::Nothing
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_cuts_the_rate_first_and_keeps_locations_out() {
        let spec = PipelineSpec {
            source: CameraSource::Rtsp("rtsp://h/x\" ! filesink location=/etc/passwd".into()),
            transport: RtspTransport::Udp,
            fps: 5.0,
            detect_width: Some(416),
        };
        let d = spec.describe();
        assert!(d.starts_with("rtspsrc name=src protocols=udp"), "{d}");
        assert!(!d.contains("filesink"), "{d}");
        assert!(d.find("videorate").unwrap() < d.find("videoscale").unwrap());
        assert!(d.contains("format=BGR,width=416") && d.contains("format=RGB,width=640"));
        let spec = PipelineSpec { detect_width: None, fps: 2.5, ..spec };
        let d = spec.describe();
        assert!(!d.contains("detect") && d.contains("framerate=2500/1000"), "{d}");
    }

    #[test]
    fn a_test_source_delivers_frames_at_the_analysis_rate() {
        init().unwrap();
        let spec = PipelineSpec {
            source: CameraSource::Test("ball".into()),
            transport: RtspTransport::Tcp,
            fps: 5.0,
            detect_width: Some(416),
        };
        let p = Pipeline::start(&spec).unwrap();
        let t0 = std::time::Instant::now();
        let mut n = 0;
        let mut sizes = None;
        while t0.elapsed() < Duration::from_secs(2) {
            if let Some((v, d)) = p.next(Duration::from_millis(300)).unwrap() {
                n += 1;
                let d = d.expect("a detect frame with the view frame");
                sizes = Some(((v.as_ref().width, v.as_ref().height), (d.as_ref().width, d.as_ref().height)));
                assert!(v.as_ref().data.len() >= v.as_ref().stride * v.as_ref().height as usize);
            }
            assert_eq!(p.poll_bus(), BusNews::Nothing);
        }
        assert!((8..=12).contains(&n), "{n} frames in 2 s at 5 fps");
        assert_eq!(sizes, Some(((640, 360), (416, 234))));
    }
}
