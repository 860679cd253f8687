//! An in-process RTSP server (gstreamer-rtsp-server) for tests, the demo and the video bench:
//! serves test patterns or video files as H.264 on a local port. It runs on its own thread with
//! its own GLib main context, so it needs nothing from the caller's runtime.
//!
//! A file is played in a loop: a feeder pipeline of its own decodes it at its real pace into the
//! media's appsrc and rewinds at the end, so a client sees one endless stream.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

/// What one mount point serves.
#[derive(Debug, Clone)]
pub enum Served {
    /// `videotestsrc pattern=…`, 640x360 at 25 fps, e.g. "ball", "black", "snow".
    TestPattern(String),
    /// A custom raw-video source (gst-launch syntax, e.g. "videotestsrc pattern=snow !
    /// video/x-raw,width=16,height=9 ! videoscale"), for synthetic faults; it is scaled to 640x360.
    Raw(String),
    /// A video file, decoded, looped and re-encoded.
    File(PathBuf),
    /// A file that already holds H.264 (any container GStreamer parses), looped and served as it
    /// is: no decoding or encoding on the server side, so a benchmark measures only its clients.
    H264File(PathBuf),
}

/// The raw format every mount encodes from.
const RAW_CAPS: &str = "video/x-raw,format=I420,width=640,height=360,framerate=25/1";

impl Served {
    fn launch(&self) -> Result<String> {
        if let Served::H264File(_) = self {
            return Ok("( appsrc name=feed is-live=true format=time do-timestamp=true \
                 caps=video/x-h264,stream-format=byte-stream,alignment=au ! h264parse ! \
                 rtph264pay name=pay0 pt=96 config-interval=1 )"
                .to_owned());
        }
        if let Served::File(_) = self {
            return Ok(format!(
                "( appsrc name=feed is-live=true format=time do-timestamp=true caps={RAW_CAPS} ! videoconvert ! \
                 x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=1500 ! rtph264pay name=pay0 pt=96 config-interval=1 )"
            ));
        }
        let raw = match self {
            Served::TestPattern(p) => {
                if !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    bail!("bad test pattern {p:?}");
                }
                format!("videotestsrc is-live=true pattern={p}")
            }
            Served::Raw(d) => d.clone(),
            Served::File(_) | Served::H264File(_) => unreachable!("served through a feeder"),
        };
        Ok(format!(
            "( {raw} ! videoconvert ! videoscale ! videorate ! {RAW_CAPS} ! \
             x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate=1500 ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        ))
    }
}

pub struct RtspServer {
    port: u16,
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
}

impl RtspServer {
    /// Serves `mounts` (path such as "/cam1", what) on 127.0.0.1:`port` (0: a free port).
    pub fn start(port: u16, mounts: &[(&str, Served)]) -> Result<Self> {
        super::pipeline::init()?;
        let mounts: Vec<(String, String, Option<(PathBuf, bool)>)> = mounts
            .iter()
            .map(|(p, s)| {
                let file = match s {
                    Served::File(f) | Served::H264File(f) if f.is_file() => {
                        Some((f.clone(), matches!(s, Served::H264File(_))))
                    }
                    Served::File(f) | Served::H264File(f) => bail!("no video file {}", f.display()),
                    _ => None,
                };
                Ok((p.to_string(), s.launch()?, file))
            })
            .collect::<Result<_>>()?;
        let ctx = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&ctx), false);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<u16, String>>();
        let ml = main_loop.clone();
        let thread = std::thread::Builder::new().name("rtsp-server".into()).spawn(move || {
            let outcome = ctx.with_thread_default(|| -> Result<(), String> {
                let server = rtsp::RTSPServer::new();
                server.set_address("127.0.0.1");
                server.set_service(&port.to_string());
                let points = server.mount_points().ok_or("no mount points")?;
                for (path, launch, file) in &mounts {
                    let f = rtsp::RTSPMediaFactory::new();
                    f.set_launch(launch);
                    // Each client gets its own media, from the start.
                    f.set_shared(false);
                    if let Some((file, encoded)) = file.clone() {
                        f.connect_media_configure(move |_, media| {
                            let feed = media
                                .element()
                                .downcast::<gst::Bin>()
                                .ok()
                                .and_then(|b| b.by_name("feed"))
                                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok());
                            if let Some(feed) = feed {
                                let file = file.clone();
                                let _ = std::thread::Builder::new()
                                    .name("rtsp-feeder".into())
                                    .spawn(move || feed_looped(&file, encoded, &feed));
                            }
                        });
                    }
                    points.add_factory(path, f);
                }
                let source = server.attach(Some(&ctx)).map_err(|e| e.to_string())?;
                let _ = ready_tx.send(Ok(server.bound_port() as u16));
                ml.run();
                // Stopping: close every client, so they see the server go away at once.
                server.client_filter(Some(&mut |_, _| rtsp::RTSPFilterResult::Remove));
                // Attached to this thread's context, not the default one: destroy it there.
                if let Some(s) = ctx.find_source_by_id(&source) {
                    s.destroy();
                }
                Ok(())
            });
            match outcome {
                Ok(Err(e)) => {
                    let _ = ready_tx.send(Err(e));
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                }
                Ok(Ok(())) => {}
            }
        })?;
        let port = ready_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .context("RTSP server did not start")?
            .map_err(|e| anyhow!("RTSP server: {e}"))?;
        Ok(Self { port, main_loop, thread: Some(thread) })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of a mount point.
    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://127.0.0.1:{}{mount}", self.port)
    }

    /// Stops serving and closes every client.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            // A quit before the loop runs is lost: repeat it until the thread is done.
            while !t.is_finished() {
                self.main_loop.quit();
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = t.join();
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Plays `file` at its real pace into `feed` (decoded to raw video, or with `encoded` its H.264
/// access units as they are), rewinding at the end, until the media goes away (the push is refused).
fn feed_looped(file: &std::path::Path, encoded: bool, feed: &gst_app::AppSrc) {
    let run = || -> Result<()> {
        let launch = if encoded {
            "filesrc name=src ! parsebin ! h264parse config-interval=-1 ! \
             video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=out sync=true max-buffers=4"
                .to_owned()
        } else {
            format!(
                "filesrc name=src ! decodebin ! videoconvert ! videoscale ! videorate ! {RAW_CAPS} ! appsink name=out sync=true max-buffers=4"
            )
        };
        let p = gst::parse::launch(&launch)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline"))?;
        let stop = scopeguard(&p);
        p.by_name("src").ok_or_else(|| anyhow!("no src"))?.set_property("location", file.to_string_lossy().as_ref());
        let out =
            p.by_name("out").and_then(|e| e.downcast::<gst_app::AppSink>().ok()).ok_or_else(|| anyhow!("no sink"))?;
        p.set_state(gst::State::Playing)?;
        loop {
            match out.try_pull_sample(gst::ClockTime::from_mseconds(500)) {
                Some(sample) => {
                    let Some(mut buf) = sample.buffer_owned() else { continue };
                    {
                        // The media's appsrc stamps buffers with its own clock as they arrive.
                        let b = buf.make_mut();
                        b.set_pts(gst::ClockTime::NONE);
                        b.set_dts(gst::ClockTime::NONE);
                    }
                    if feed.push_buffer(buf).is_err() {
                        break;
                    }
                }
                None if out.is_eos() => {
                    p.seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT, gst::ClockTime::ZERO)?;
                }
                None => {
                    if let Some(m) = p.bus().and_then(|b| b.pop_filtered(&[gst::MessageType::Error])) {
                        bail!("{m:?}");
                    }
                    // Nothing decoded and the media gone: stop.
                    if feed.current_state() == gst::State::Null {
                        break;
                    }
                }
            }
        }
        drop(stop);
        Ok(())
    };
    if let Err(e) = run() {
        tracing::warn!(file = %file.display(), error = %format!("{e:#}"), "RTSP server: feeding the file failed");
        let _ = feed.end_of_stream();
    }
}

/// Sets the pipeline to Null when dropped, whichever way the feeder ends.
fn scopeguard(p: &gst::Pipeline) -> impl Drop + '_ {
    struct Guard<'a>(&'a gst::Pipeline);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            let _ = self.0.set_state(gst::State::Null);
        }
    }
    Guard(p)
}
