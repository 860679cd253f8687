//! An in-process RTSP server (gstreamer-rtsp-server) for tests, the demo and the video bench:
//! serves test patterns or video files as H.264 on a local port. It runs on its own thread with
//! its own GLib main context, so it needs nothing from the caller's runtime.
//!
//! A file is served from its start to each new session; when it ends the client sees the end of
//! the stream and reconnects (the agent does), which plays it again: a loop without seeking
//! inside the server's media.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use gstreamer::glib;
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
    /// A video file, decoded and re-encoded.
    File(PathBuf),
}

impl Served {
    fn launch(&self) -> Result<String> {
        let raw = match self {
            Served::TestPattern(p) => {
                if !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    bail!("bad test pattern {p:?}");
                }
                format!("videotestsrc is-live=true pattern={p}")
            }
            Served::Raw(d) => d.clone(),
            Served::File(p) => {
                let s = p.to_str().ok_or_else(|| anyhow!("path {} is not UTF-8", p.display()))?;
                if s.contains(['"', '\\']) {
                    bail!("path {s:?}: quotes and backslashes are not supported");
                }
                format!("filesrc location=\"{s}\" ! decodebin")
            }
        };
        Ok(format!(
            "( {raw} ! videoconvert ! videoscale ! videorate ! video/x-raw,format=I420,width=640,height=360,framerate=25/1 ! \
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
        let mounts: Vec<(String, String)> =
            mounts.iter().map(|(p, s)| Ok((p.to_string(), s.launch()?))).collect::<Result<_>>()?;
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
                for (path, launch) in &mounts {
                    let f = rtsp::RTSPMediaFactory::new();
                    f.set_launch(launch);
                    // Each client gets its own media, from the start (files replay per session).
                    f.set_shared(false);
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
