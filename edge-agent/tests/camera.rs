//! Camera mode end to end: the in-process RTSP server serves synthetic streams, the agent reads
//! them over RTSP and publishes camera messages through the real broker (TLS, device
//! certificate), where an in-process subscriber reads them off the `event` channel.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use offsite_broker::rumqttd::local::LinkTx;
use offsite_broker::{next_publish, BrokerBuilder, BrokerConfig, BrokerHandle, Pki};
use offsite_edge_agent::camera::rtsp_server::{RtspServer, Served};
use offsite_edge_agent::{Agent, AgentConfig};
use offsite_store::testing::TestDb;
use offsite_wire::{
    Ack, CameraEventKind, CameraMessage, Channel, Command, CommandAck, CommandAction, DeviceCredentials, Topic, Zone,
};
use tokio::sync::mpsc;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A still, sharp, bright scene where something moves (a small bouncing ball over colour bars):
/// healthy in every respect. (A scrolling pattern would be a camera that moves.)
fn healthy() -> Served {
    Served::Raw(
        "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=640,height=360,framerate=25/1 ! m. \
         videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate=25/1 ! m. \
         compositor name=m"
            .into(),
    )
}

struct Env {
    dir: tempfile::TempDir,
    _db: TestDb,
    broker: BrokerHandle,
    creds: DeviceCredentials,
    /// Every camera message published by any device.
    messages: mpsc::UnboundedReceiver<CameraMessage>,
    /// Every command answer.
    answers: mpsc::UnboundedReceiver<CommandAck>,
    /// The platform's side: sends commands.
    platform: LinkTx,
    /// Whether events are acknowledged on arrival, as ingest does once it has stored them (on
    /// by default: an agent sends its events one at a time, each after the last is acknowledged).
    auto_ack: Arc<AtomicBool>,
}

impl Env {
    async fn new() -> Result<Env> {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ =
                tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
        }
        offsite_broker::install_crypto_provider();
        let dir = tempfile::tempdir()?;
        let pki = Pki::load_or_create(&dir.path().join("pki"))?;
        let db = TestDb::new().await?;
        let cfg = BrokerConfig {
            tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], free_port()))),
            plain_listen: Some(SocketAddr::from(([127, 0, 0, 1], free_port()))),
            ..BrokerConfig::default()
        };
        let mut builder =
            BrokerBuilder::new(&cfg, &pki, db.store.clone(), offsite_broker::internal_password(dir.path())?)?;
        let (mut sub_tx, mut sub_rx) = builder.link("test-cameras")?;
        sub_tx.subscribe(Channel::Event.all_devices_filter())?;
        sub_tx.subscribe(Channel::CmdAck.all_devices_filter())?;
        let (platform, _platform_rx) = builder.link("test-platform")?;
        let broker = builder.spawn()?;
        let (tx, messages) = mpsc::unbounded_channel();
        let (ack_tx, answers) = mpsc::unbounded_channel();
        let auto_ack = Arc::new(AtomicBool::new(true));
        let acking = auto_ack.clone();
        tokio::spawn(async move {
            let mut sub_tx = sub_tx;
            let _keep = _platform_rx;
            while let Ok(Some(p)) = next_publish(&mut sub_rx).await {
                if p.topic.ends_with(b"/cmd/ack") {
                    let _ = ack_tx.send(CommandAck::decode(&p.payload).expect("a well-formed answer"));
                    continue;
                }
                match CameraMessage::decode(&p.payload) {
                    Ok(m) => {
                        if let (CameraMessage::Event { seq, .. }, true) = (&m, acking.load(Ordering::Relaxed)) {
                            let topic = Topic::parse(std::str::from_utf8(&p.topic).expect("a UTF-8 topic"))
                                .expect("a device topic");
                            let ack = Topic::new(topic.device, Channel::Ack).render();
                            let _ = sub_tx.publish(ack, Ack { seqs: vec![*seq], rejected: vec![] }.encode());
                        }
                        if tx.send(m).is_err() {
                            break;
                        }
                    }
                    Err(e) => panic!("the agent published a bad camera message: {e}"),
                }
            }
        });
        let creds = offsite_broker::provision(&db.store, &pki, "hall", None).await?.1;
        Ok(Env { dir, _db: db, broker, creds, messages, answers, platform, auto_ack })
    }

    /// Starts an agent for the device with `cameras` (TOML of `[[devices.cameras]]` tables).
    async fn agent(&self, cameras: &str) -> Result<Agent> {
        let base = self.dir.path();
        std::fs::write(base.join("device.json"), serde_json::to_vec(&self.creds)?)?;
        let text = format!(
            r#"data_dir = "agent-data"
batch_interval_ms = 100
[broker]
host = "localhost"
port = {port}
reconnect_delay_ms = 200
reconnect_jitter_ms = 0
[[devices]]
credentials = "device.json"
{cameras}
"#,
            port = self.broker.tls_addr().unwrap().port()
        );
        let path = base.join("agent.toml");
        std::fs::write(&path, text)?;
        let (cfg, base) = AgentConfig::load(&path)?;
        Agent::start(&cfg, &base).await
    }

    /// Sends a command to the device and waits for its answer.
    async fn command(&mut self, c: &Command) -> Result<CommandAck> {
        let topic = Topic::new(self.creds.device_id.clone(), Channel::Cmd).render();
        self.platform.publish(topic, c.encode())?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.answers.recv()).await {
                Ok(Some(a)) if a.id == c.id => return Ok(a),
                Ok(Some(_)) => {}
                _ => bail!("no answer to {}", c.id),
            }
        }
    }

    /// Acknowledges camera messages as the platform does once it has stored them.
    fn acknowledge(&mut self, seqs: &[u64]) -> Result<()> {
        let topic = Topic::new(self.creds.device_id.clone(), Channel::Ack).render();
        self.platform.publish(topic, Ack { seqs: seqs.to_vec(), rejected: vec![] }.encode())?;
        Ok(())
    }

    /// Waits for a message `want` accepts; fails after `timeout`, saying what came instead.
    async fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        want: impl Fn(&CameraMessage) -> bool,
    ) -> Result<CameraMessage> {
        let end = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.messages.recv()).await {
                Ok(Some(m)) if want(&m) => return Ok(m),
                Ok(Some(m)) => seen.push(summary(&m)),
                Ok(None) => bail!("subscriber ended waiting for {what}"),
                Err(_) => bail!("no {what} within {timeout:?}; seen: {}", seen.join(", ")),
            }
        }
    }
}

fn summary(m: &CameraMessage) -> String {
    match m {
        CameraMessage::Event { camera, kind, raised, .. } => format!("{camera}:{}:{raised}", kind.as_str()),
        CameraMessage::Status { camera, online, fps, health, .. } => {
            format!("{camera}:status(online={online},fps={fps},{health:?})")
        }
        CameraMessage::Snapshot { camera, .. } => format!("{camera}:snapshot"),
    }
}

fn camera(id: &str, url: &str, extra: &str) -> String {
    format!(
        r#"
[[devices.cameras]]
id = "{id}"
name = "测试 {id}"
source = "{url}"
analysis_fps = 5
offline_after_s = 3
status_interval_s = 1
{extra}
[devices.cameras.health]
hold_s = 1
frozen_after_s = 3
reference_after_s = 2
"#
    )
}

fn is_event(m: &CameraMessage, cam: &str, want: CameraEventKind, up: bool) -> bool {
    matches!(m, CameraMessage::Event { camera, kind, raised, .. } if camera.as_str() == cam && *kind == want && *raised == up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_arrive_at_the_analysis_rate_and_detection_off_is_said() -> Result<()> {
    let mut env = Env::new().await?;
    let server = RtspServer::start(0, &[("/hall", healthy())])?;
    // The same stream over RTSP's TCP (the default) and UDP transports.
    let cams = camera("hall", &server.url("/hall"), "") + &camera("hall-udp", &server.url("/hall"), "transport = \"udp\"");
    let agent = env.agent(&cams).await?;
    // fps is measured over 5 s periods.
    let status_of = |cam: &'static str| {
        move |m: &CameraMessage| {
            matches!(m, CameraMessage::Status { camera, online: true, fps, .. } if camera.as_str() == cam && *fps > 0.0)
        }
    };
    let m = env.wait("a status at about 5 fps", Duration::from_secs(30), status_of("hall")).await?;
    let udp = env.wait("a UDP status at about 5 fps", Duration::from_secs(10), status_of("hall-udp")).await?;
    let CameraMessage::Status { fps: udp_fps, .. } = udp else { unreachable!() };
    assert!((4.0..=6.0).contains(&udp_fps), "analysed {udp_fps} fps over UDP, configured 5");
    let CameraMessage::Status { fps, detection, health, last_frame_at, .. } = m else { unreachable!() };
    assert!((4.0..=6.0).contains(&fps), "analysed {fps} fps, configured 5");
    assert!(last_frame_at.is_some());
    assert!(health.is_empty(), "a healthy stream raised {health:?}");
    // No model configured: the status says so, plainly.
    match detection {
        offsite_wire::Detection::Off { reason } => assert!(reason.contains("person detection"), "{reason}"),
        other => panic!("detection should be off without a model: {other:?}"),
    }
    agent.stop().await;
    server.stop();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_frozen_and_covered_streams_raise_their_health_events() -> Result<()> {
    let mut env = Env::new().await?;
    let server = RtspServer::start(
        0,
        &[
            ("/black", Served::TestPattern("black".into())),
            // A still picture: the same frame over and over.
            ("/still", Served::TestPattern("pinwheel".into())),
            // No detail at all: a cloth over the lens.
            (
                "/blurred",
                Served::Raw("videotestsrc is-live=true pattern=solid-color foreground-color=0xff808080".into()),
            ),
        ],
    )?;
    let cams = [("black", "/black"), ("still", "/still"), ("blurred", "/blurred")]
        .iter()
        .map(|(id, mount)| camera(id, &server.url(mount), ""))
        .collect::<String>();
    let agent = env.agent(&cams).await?;
    let mut missing = vec![
        ("black", CameraEventKind::Black),
        ("still", CameraEventKind::Frozen),
        ("blurred", CameraEventKind::Covered),
    ];
    let end = Instant::now() + Duration::from_secs(40);
    while !missing.is_empty() {
        let left = end.saturating_duration_since(Instant::now());
        let m =
            env.wait(&format!("{missing:?}"), left, |m| matches!(m, CameraMessage::Event { raised: true, .. })).await?;
        let CameraMessage::Event { camera, kind, .. } = &m else { unreachable!() };
        // A fault must be reported on its own camera only, and the right one.
        match (camera.as_str(), kind) {
            ("black", CameraEventKind::Black | CameraEventKind::Frozen) => {}
            ("still", CameraEventKind::Frozen) => {}
            // A covered lens shows a still picture too.
            ("blurred", CameraEventKind::Covered | CameraEventKind::Frozen) => {}
            other => panic!("unexpected event {other:?}"),
        }
        missing.retain(|(c, k)| !(c == &camera.as_str() && k == kind));
    }
    agent.stop().await;
    server.stop();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_rtsp_server_raises_offline_and_recovery_clears_it() -> Result<()> {
    let mut env = Env::new().await?;
    let server = RtspServer::start(0, &[("/hall", healthy())])?;
    let port = server.port();
    let url = server.url("/hall");
    let agent = env.agent(&camera("hall", &url, "")).await?;
    env.wait("the camera online", Duration::from_secs(20), |m| {
        matches!(m, CameraMessage::Status { online: true, last_frame_at: Some(_), .. })
    })
    .await?;
    server.stop();
    env.wait("offline raised", Duration::from_secs(20), |m| is_event(m, "hall", CameraEventKind::Offline, true))
        .await?;
    env.wait("a status saying offline", Duration::from_secs(5), |m| {
        matches!(m, CameraMessage::Status { online: false, health, .. } if health.contains(&CameraEventKind::Offline))
    })
    .await?;
    let server = RtspServer::start(port, &[("/hall", healthy())])?;
    env.wait("offline cleared", Duration::from_secs(40), |m| is_event(m, "hall", CameraEventKind::Offline, false))
        .await?;
    agent.stop().await;
    server.stop();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_zones_is_checked_kept_across_restarts_and_answered_with_the_zones_used() -> Result<()> {
    let mut env = Env::new().await?;
    let cam = camera("hall", "test:ball", "");
    let agent = env.agent(&cam).await?;
    env.wait("a status", Duration::from_secs(20), |m| matches!(m, CameraMessage::Status { .. })).await?;
    let zone = |id: &str, poly: Vec<[f32; 2]>| -> Zone {
        serde_json::from_value(serde_json::json!({"id": id, "name": "1号窗口", "kind": "window", "polygon": poly}))
            .unwrap()
    };
    let camera_id = offsite_wire::CameraId::parse("hall").unwrap();
    // A point outside the frame: refused, nothing changes.
    let bad = Command {
        id: "z-bad".into(),
        action: CommandAction::SetZones {
            camera: camera_id.clone(),
            zones: vec![zone("w1", vec![[0.1, 0.1], [1.5, 0.1], [0.5, 0.9]])],
        },
    };
    let a = env.command(&bad).await?;
    assert!(!a.ok, "{a:?}");
    let unknown = Command {
        id: "z-unknown".into(),
        action: CommandAction::SetZones { camera: offsite_wire::CameraId::parse("nosuch").unwrap(), zones: vec![] },
    };
    assert!(!env.command(&unknown).await?.ok);
    let good_zones = vec![zone("w1", vec![[0.1, 0.1], [0.5, 0.1], [0.5, 0.9]])];
    let good = Command {
        id: "z-good".into(),
        action: CommandAction::SetZones { camera: camera_id.clone(), zones: good_zones.clone() },
    };
    let a = env.command(&good).await?;
    assert!(a.ok, "{a:?}");
    let used: Vec<Zone> = serde_json::from_value(a.state.unwrap()["zones"].clone())?;
    assert_eq!(used, good_zones);
    env.wait(
        "a status with the new zones",
        Duration::from_secs(10),
        |m| matches!(m, CameraMessage::Status { zones, .. } if *zones == good_zones),
    )
    .await?;
    agent.stop().await;
    // Restarted, the agent keeps the pushed zones rather than the file's (none).
    let agent = env.agent(&cam).await?;
    env.wait(
        "a status with the kept zones",
        Duration::from_secs(20),
        |m| matches!(m, CameraMessage::Status { zones, .. } if *zones == good_zones),
    )
    .await?;
    agent.stop().await;
    Ok(())
}

/// Writes a short H.264 MP4 (`seconds` of a moving test pattern) with GStreamer.
fn write_clip(path: &std::path::Path, seconds: u32) -> Result<()> {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init()?;
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers={} pattern=smpte ! video/x-raw,width=320,height=180,framerate=25/1 ! x264enc ! mp4mux ! filesink name=out",
        seconds * 25
    ))?
    .downcast::<gst::Pipeline>()
    .unwrap();
    p.by_name("out").unwrap().set_property("location", path.to_str().unwrap());
    p.set_state(gst::State::Playing)?;
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Eos, gst::MessageType::Error]);
    p.set_state(gst::State::Null)?;
    match msg.map(|m| m.type_()) {
        Some(gst::MessageType::Eos) => Ok(()),
        other => bail!("writing the clip: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_file_plays_in_a_loop_directly_and_over_rtsp() -> Result<()> {
    use offsite_edge_agent::camera::media;
    let mut env = Env::new().await?;
    let clip = env.dir.path().join("two-seconds.mp4");
    write_clip(&clip, 2)?;
    // As the video bench prepares its streams: transcoded once into a camera's H.264, then served
    // without re-encoding.
    let camera_stream = env.dir.path().join("camera-stream.mp4");
    media::transcode_h264(&clip, &camera_stream, 640, 360, 25)?;
    let (frames, _) = media::time_decoding(&camera_stream)?;
    assert_eq!(frames, 50, "two seconds at 25 fps");
    let server = RtspServer::start(
        0,
        &[("/clip", Served::File(clip.clone())), ("/h264", Served::H264File(camera_stream.clone()))],
    )?;
    let cams = camera("direct", clip.to_str().unwrap(), "")
        + &camera("served", &server.url("/clip"), "")
        + &camera("pre-encoded", &server.url("/h264"), "");
    let agent = env.agent(&cams).await?;
    // Long enough for several passes through the clip and two fps periods.
    let end = Instant::now() + Duration::from_secs(11);
    let mut last_fps = std::collections::BTreeMap::new();
    while let Ok(Some(m)) =
        tokio::time::timeout(end.saturating_duration_since(Instant::now()), env.messages.recv()).await
    {
        match &m {
            CameraMessage::Event { kind: CameraEventKind::Offline, .. } => {
                panic!("a looped file went offline: {}", summary(&m))
            }
            CameraMessage::Status { camera, fps, .. } => {
                last_fps.insert(camera.to_string(), *fps);
            }
            _ => {}
        }
    }
    for cam in ["direct", "served", "pre-encoded"] {
        let fps = last_fps.get(cam).copied().unwrap_or(0.0);
        assert!((4.0..=6.0).contains(&fps), "{cam}: {fps} fps over the last period, 5 expected: {last_fps:?}");
    }
    agent.stop().await;
    server.stop();
    Ok(())
}

/// The shared indoor clip (people arrive one at a time), beside the checkout.
fn shared_clip() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/video/one-by-one-person-detection.mp4")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_indoor_clip_over_rtsp_is_analysed_and_raises_no_false_health_events() -> Result<()> {
    let clip = shared_clip();
    assert!(clip.is_file(), "test material missing: {} (see ../shared/README.md)", clip.display());
    let mut env = Env::new().await?;
    let server = RtspServer::start(0, &[("/hall", Served::File(clip))])?;
    let agent = env.agent(&camera("hall", &server.url("/hall"), "")).await?;
    let end = Instant::now() + Duration::from_secs(16);
    let mut statuses = Vec::new();
    while let Ok(Some(m)) =
        tokio::time::timeout(end.saturating_duration_since(Instant::now()), env.messages.recv()).await
    {
        match &m {
            CameraMessage::Event { raised: true, .. } => panic!("a real, healthy scene raised {}", summary(&m)),
            CameraMessage::Status { fps, health, online, .. } => {
                assert!(health.is_empty() && *online, "{}", summary(&m));
                statuses.push(*fps);
            }
            _ => {}
        }
    }
    let fps = statuses.last().copied().unwrap_or(0.0);
    assert!((4.0..=6.0).contains(&fps), "{fps} fps analysed, 5 configured ({statuses:?})");
    agent.stop().await;
    server.stop();
    Ok(())
}

/// The installed person detector (scripts/setup.sh copies it from the shared material).
fn yolox_model() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/yolox-nano/yolox_nano.onnx")
}

/// With the model, the shared clip's hall: the window zone is empty at first (a person sits down a
/// few seconds in), so post unattended is raised with its snapshot, the counts say people are
/// there once someone is, and the status says detection is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_in_the_shared_clip_are_counted_and_an_empty_window_raises_unattended_with_a_snapshot() -> Result<()> {
    let clip = shared_clip();
    assert!(clip.is_file(), "test material missing: {} (see ../shared/README.md)", clip.display());
    let model = yolox_model();
    assert!(model.is_file(), "person detection model missing: {} (run scripts/setup.sh)", model.display());
    let mut env = Env::new().await?;
    let server = RtspServer::start(0, &[("/hall", Served::File(clip))])?;
    let extra = format!(
        r#"model = "{model}"
motion_gating = false
[[devices.cameras.zones]]
id = "seat"
name = "1号窗口"
kind = "window"
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
[devices.cameras.hall]
unattended_after_s = 1
working_hours = ["00:00-23:59"]
weekdays_only = false
crowding_above = 20
crowding_for_s = 60
"#,
        model = model.display()
    );
    let agent = env.agent(&camera("hall", &server.url("/hall"), &extra)).await?;
    let on = env
        .wait("a status with detection on", Duration::from_secs(30), |m| {
            matches!(m, CameraMessage::Status { detection: offsite_wire::Detection::On { .. }, .. })
        })
        .await?;
    let CameraMessage::Status { zones, .. } = &on else { unreachable!() };
    assert_eq!(zones.len(), 1);
    let raised = env
        .wait("post unattended raised", Duration::from_secs(30), |m| is_event(m, "hall", CameraEventKind::Unattended, true))
        .await?;
    let CameraMessage::Event { snapshot: Some(s), zone, .. } = &raised else { panic!("no snapshot: {}", summary(&raised)) };
    assert_eq!(zone.as_ref().map(|z| z.as_str()), Some("seat"));
    use base64::Engine as _;
    let jpeg = base64::engine::general_purpose::STANDARD.decode(&s.jpeg_base64)?;
    assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.len() > 1000, "a JPEG snapshot");
    use sha2::Digest as _;
    assert_eq!(format!("{:x}", sha2::Sha256::digest(&jpeg)), s.sha256);
    // Someone sits down (about five seconds into the clip): the window is attended again.
    env.wait("post unattended cleared", Duration::from_secs(40), |m| is_event(m, "hall", CameraEventKind::Unattended, false))
        .await?;
    agent.stop().await;
    server.stop();
    Ok(())
}

/// An event is kept on the agent's disk until the platform acknowledges it: unacknowledged, it is
/// sent again, and again after the agent restarts; acknowledged, it is gone for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_event_stays_on_disk_until_acknowledged_even_across_a_restart() -> Result<()> {
    use offsite_edge_agent::metrics::CAMERA_EVENTS_PENDING;
    let mut env = Env::new().await?;
    env.auto_ack.store(false, Ordering::Relaxed);
    let server = RtspServer::start(
        0,
        &[
            ("/black", Served::TestPattern("black".into())),
            ("/ok", healthy()),
        ],
    )?;
    let device = env.creds.device_id.as_str().to_owned();
    let pending = || CAMERA_EVENTS_PENDING.with_label_values(&[&device]).get();

    let agent = env.agent(&camera("cam", &server.url("/black"), "")).await?;
    let first = env
        .wait("black raised", Duration::from_secs(30), |m| {
            is_event(m, "cam", CameraEventKind::Black, true)
        })
        .await?;
    let seq = first.seq();
    assert!(pending() >= 1, "the event is on disk until acknowledged");
    env.wait("the same event sent again", Duration::from_secs(25), |m| {
        is_event(m, "cam", CameraEventKind::Black, true) && m.seq() == seq
    })
    .await?;
    agent.stop().await;

    // Restarted on a healthy picture: what it raised before still goes out. The test acknowledges
    // every event as the platform would, until nothing is left on disk.
    let agent = env.agent(&camera("cam", &server.url("/ok"), "")).await?;
    assert!(pending() >= 1, "recovered from disk after the restart");
    let end = Instant::now() + Duration::from_secs(40);
    let mut old_one_came = false;
    while !(old_one_came && pending() == 0) {
        assert!(Instant::now() < end, "old event resent: {old_one_came}; {} events still pending", pending());
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), env.messages.recv()).await {
            if let CameraMessage::Event { seq: s, .. } = m {
                old_one_came |= s == seq;
                env.acknowledge(&[s])?;
            }
        }
    }
    agent.stop().await;

    // The acknowledgement was kept too: nothing is recovered at the next start.
    let agent = env.agent(&camera("cam", &server.url("/ok"), "")).await?;
    assert_eq!(
        pending(),
        0,
        "an acknowledged event came back after a restart"
    );
    agent.stop().await;
    server.stop();
    Ok(())
}
