//! `offsite demo`: all tiers, the demo city (see `demo_city`), and a simulated fleet of monitors
//! served by the real edge agent (in-process): sim sources, disk queues, MQTT/TLS with each
//! device's certificate. Two service halls also get a camera each (`demo_cameras`): the clips
//! setup placed, looped over RTSP by the in-process server and analysed by the same agent.
//! Two HJ 212 data loggers (`demo_loggers`) are emulated by the same agent against the demo gateway.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use offsite_edge_agent::config::{BrokerSection, Credentials, DeviceConfig, QueueSection};
use offsite_edge_agent::sources::SourceConfig;
use offsite_edge_agent::{Agent, AgentConfig};
use offsite_store::Store;
use offsite_wire::DeviceCredentials;
use tracing::info;

use crate::configuration::Config;
use crate::demo_city::CityObject;
use crate::device_cmd::write_secret;
use crate::startup::{shutdown_signal, AllInOne};
use crate::tiers::print_banner;

#[derive(Args)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long)]
    duration: Option<u64>,
    /// Number of simulated devices (default from config, 50).
    #[arg(long)]
    devices: Option<usize>,
    /// Leave the hall cameras out (no RTSP server, no video analysis).
    #[arg(long)]
    no_cameras: bool,
}

pub async fn run(mut cfg: Config, args: DemoArgs) -> Result<()> {
    if let Some(n) = args.devices {
        cfg.demo.devices = n;
    }
    // Every demo account, the first administrator included, has the published demo password.
    if cfg.auth.initial_admin_password.is_none() {
        cfg.auth.initial_admin_password = Some(crate::accounts::DEMO_PASSWORD.into());
    }
    // The demo is for one machine: plain HTTP on loopback (unless configured elsewhere), never a
    // redirect, so a browser on this machine needs no certificate.
    if cfg.portal.listen.is_none() {
        cfg.portal.listen = Some(std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 8080)));
    }
    cfg.portal.redirect_http = false;
    let p = AllInOne::start(&cfg).await?;
    let r = run_fleet(&cfg, &p, args.duration, !args.no_cameras).await;
    let stop = p.stop().await;
    r.and(stop)
}

async fn run_fleet(cfg: &Config, p: &AllInOne, duration: Option<u64>, with_cameras: bool) -> Result<()> {
    let city = crate::demo_city::seed(&p.db.store).await?;
    let accounts = crate::accounts::seed_demo_accounts(&p.db.store).await?;
    let fleet = load_or_provision(&p.db.store, p, &cfg.data_dir.join("demo"), &city, cfg.demo.devices).await?;
    let port = p.broker.tls_addr().context("the demo needs the TLS device listener (broker.tls_listen)")?.port();
    let mut agent_cfg = fleet_agent(cfg, &fleet, &city, port)?;
    let cameras = if with_cameras { start_cameras(&p.db.store, p, &cfg.data_dir.join("demo")).await? } else { None };
    if let Some(c) = &cameras {
        agent_cfg.devices.extend(c.devices.iter().cloned());
    }
    // The HJ 212 loggers talk to the demo's own gateway, like a logger on site would.
    let gateway = p.hj212.as_ref().map(|g| g.local_addr());
    if let Some(addr) = gateway {
        crate::demo_loggers::provision(&p.db.store).await?;
        agent_cfg.devices.extend(crate::demo_loggers::devices(addr)?);
    }
    // In-process: the agent's metrics land in the platform's registry, so /metrics on the portal
    // shows every demo device's queue.
    let agent = Agent::start(&agent_cfg, &cfg.data_dir).await?;
    print_banner(cfg, p);
    eprintln!("demo: {} simulated devices publishing every {} ms through the edge agent", fleet.len(), cfg.demo.interval_ms);
    match (&cameras, with_cameras) {
        (Some(c), _) => {
            for line in &c.summary {
                eprintln!("demo: {line}");
            }
        }
        (None, true) => eprintln!(
            "demo: 没有演示视频，不启用摄像头 / no demo clips in demo-media/ (run scripts/setup.sh): running without cameras"
        ),
        (None, false) => eprintln!("demo: cameras left out (--no-cameras)"),
    }
    match gateway {
        Some(addr) => {
            for line in crate::demo_loggers::summary(addr) {
                eprintln!("demo: {line}");
            }
        }
        None => eprintln!("demo: HJ 212 网关未启用 / the HJ 212 gateway is off (hj212.enabled = false): no demo loggers"),
    }
    eprintln!("demo accounts / 演示账号 (password / 密码 {}):", crate::accounts::DEMO_PASSWORD);
    for (name, role, dept) in &accounts {
        eprintln!("  {name:<10} {:<14} {}{}", role.as_str(), role.name_zh(), dept.as_ref().map(|d| format!(" · {d}")).unwrap_or_default());
    }
    let progress = async {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        loop {
            tick.tick().await;
            let online = p.db.store.online_count().await.unwrap_or(-1);
            let committed = offsite_ingest::metrics::SAMPLES.get();
            let queued: u64 = agent.stats().iter().map(|(_, s)| s.unacked).sum();
            info!(online, committed, queued, "demo progress");
        }
    };
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = async { tokio::time::sleep(Duration::from_secs(duration.unwrap_or(u64::MAX / 4))).await } => {
            info!("demo duration reached");
        }
        _ = progress => {}
    }
    agent.stop().await;
    if let Some(c) = cameras {
        c.server.stop();
    }
    Ok(())
}

/// The running demo cameras: their devices for the agent, the RTSP server feeding them.
struct DemoCameras {
    devices: Vec<DeviceConfig>,
    server: offsite_edge_agent::camera::rtsp_server::RtspServer,
    /// What to tell the person at the terminal.
    summary: Vec<String>,
}

/// Serves every demo clip that is present over RTSP and configures a camera device for each;
/// `None` when no clip is there.
async fn start_cameras(store: &Store, p: &AllInOne, dir: &Path) -> Result<Option<DemoCameras>> {
    use offsite_edge_agent::camera::rtsp_server::{RtspServer, Served};
    let present: Vec<(&crate::demo_cameras::DemoCamera, PathBuf)> =
        crate::demo_cameras::CAMERAS.iter().filter_map(|c| c.clip_path().map(|p| (c, p))).collect();
    if present.is_empty() {
        return Ok(None);
    }
    let mounts: Vec<(String, Served)> = present.iter().map(|(c, path)| (c.mount(), Served::File(path.clone()))).collect();
    let server = tokio::task::spawn_blocking(move || {
        let mounts: Vec<(&str, Served)> = mounts.iter().map(|(m, s)| (m.as_str(), s.clone())).collect();
        RtspServer::start(0, &mounts)
    })
    .await??;
    // The agent loads ONNX Runtime from beside the executable; in a checkout's debug build it is
    // in third_party/, so load it here from where the binary's assets are found (once per process).
    if let Some(lib) = crate::assets::onnxruntime_library() {
        if let Err(e) = offsite_analytics::onnx::init_runtime(&lib) {
            tracing::warn!(error = %format!("{e:#}"), "ONNX Runtime could not be loaded; camera person detection will be off");
        }
    }
    let model = crate::assets::yolox_model();
    let creds = load_or_provision_cameras(store, p, dir, &present.iter().map(|(c, _)| *c).collect::<Vec<_>>()).await?;
    let mut devices = Vec::new();
    let mut summary = Vec::new();
    for ((cam, path), creds) in present.iter().zip(creds) {
        let camera = cam.config(&server.url(&cam.mount()), model.as_deref())?;
        summary.push(format!("camera {} ({}) plays {} over {}", cam.camera_id, cam.name, path.display(), server.url(&cam.mount())));
        devices.push(DeviceConfig::mqtt(Credentials::Inline(creds), vec![], vec![camera]));
    }
    match &model {
        Some(m) => summary.push(format!("person detection: {}", m.display())),
        None => summary.push(
            "人员检测未启用：未找到 YOLOX 模型 / person detection off: models/yolox-nano/yolox_nano.onnx not found (see README); \
             cameras run their health checks only"
                .into(),
        ),
    }
    Ok(Some(DemoCameras { devices, server, summary }))
}

/// One device per demo camera, kept in `cameras.json` (by camera id) while the registry knows it.
async fn load_or_provision_cameras(
    store: &Store,
    p: &AllInOne,
    dir: &Path,
    cameras: &[&crate::demo_cameras::DemoCamera],
) -> Result<Vec<DeviceCredentials>> {
    let file = dir.join("cameras.json");
    let mut known: std::collections::BTreeMap<String, DeviceCredentials> = match std::fs::read(&file) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
        Err(_) => Default::default(),
    };
    let mut changed = false;
    let mut out = Vec::new();
    for cam in cameras {
        let reusable = match known.get(cam.camera_id) {
            Some(c) => store.device(&c.device_id).await?.is_some_and(|d| d.revoked_at.is_none()),
            None => false,
        };
        if !reusable {
            let (_, creds) = offsite_broker::provision(store, &p.pki, cam.name, None).await?;
            known.insert(cam.camera_id.to_owned(), creds);
            changed = true;
        }
        let creds = known[cam.camera_id].clone();
        store.set_device_object(&creds.device_id, Some(cam.object_id)).await?;
        store.set_device_class(&creds.device_id, Some("hall-camera")).await?;
        out.push(creds);
    }
    if changed {
        write_secret(&file, serde_json::to_vec(&known)?.as_slice())?;
        info!(cameras = out.len(), "demo camera devices provisioned");
    }
    Ok(out)
}

/// The demo fleet as an edge agent configuration: one simulated monitor per device, of its
/// object's kind (dust, cold chain, wastewater, service hall), queues under `<data_dir>/demo/agent`.
fn fleet_agent(cfg: &Config, fleet: &[DeviceCredentials], city: &[CityObject], port: u16) -> Result<AgentConfig> {
    let mut devices = Vec::new();
    for (i, creds) in fleet.iter().enumerate() {
        let object = &city[i % city.len()];
        let mut source = serde_json::json!({
            "name": object.class,
            "kind": "sim",
            "interval_ms": cfg.demo.interval_ms.max(10),
            "seed": i as u64 + 1,
            "anomaly_rate": (cfg.demo.anomaly_rate * object.anomaly_factor).min(1.0),
        });
        if object.metrics.as_array().is_some_and(|m| !m.is_empty()) {
            source["metrics"] = object.metrics.clone();
        }
        let source: SourceConfig = serde_json::from_value(source)?;
        devices.push(DeviceConfig::mqtt(Credentials::Inline(creds.clone()), vec![source], vec![]));
    }
    Ok(AgentConfig {
        data_dir: PathBuf::from("demo").join("agent"),
        metrics_listen: None,
        health_interval_s: 60,
        batch_interval_ms: 1000,
        max_batch_samples: 1000,
        broker: BrokerSection { host: "localhost".into(), port, ..BrokerSection::default() },
        queue: QueueSection { max_bytes: 8 << 20, ..QueueSection::default() },
        devices,
    })
}

/// Reuses the fleet's credentials from earlier runs while the registry still knows the devices.
async fn load_or_provision(
    store: &Store,
    p: &AllInOne,
    dir: &Path,
    city: &[CityObject],
    n: usize,
) -> Result<Vec<DeviceCredentials>> {
    let file = dir.join("fleet.json");
    let mut fleet: Vec<DeviceCredentials> = match std::fs::read(&file) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let mut kept = Vec::new();
    for c in fleet.drain(..) {
        if store.device(&c.device_id).await?.is_some_and(|d| d.revoked_at.is_none()) {
            kept.push(c);
        }
    }
    let before = kept.len();
    while kept.len() < n {
        let name = format!("演示监测设备 {:03}", kept.len() + 1);
        let (_, creds) = offsite_broker::provision(store, &p.pki, &name, None).await?;
        kept.push(creds);
    }
    kept.truncate(n);
    // Device i watches object i (fleets from older demos are re-pointed).
    for (i, c) in kept.iter().enumerate() {
        let object = &city[i % city.len()];
        store.set_device_object(&c.device_id, Some(&object.id)).await?;
        store.set_device_class(&c.device_id, Some(object.class)).await?;
    }
    if kept.len() != before {
        write_secret(&file, serde_json::to_vec(&kept)?.as_slice())?;
        info!(provisioned = kept.len() - before.min(kept.len()), "demo fleet provisioned");
    }
    Ok(kept)
}
