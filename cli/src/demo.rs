//! `offsite demo`: all tiers plus a simulated fleet of construction-site monitors, each a real
//! MQTT/TLS client with its own certificate, publishing through the edge agent's publisher.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use offsite_edge_agent::{DeviceLink, Endpoint, LinkOptions, MetricProfile, SignalGenerator};
use offsite_store::Store;
use offsite_wire::DeviceCredentials;
use tracing::{info, warn};

use crate::configuration::Config;
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
}

pub async fn run(mut cfg: Config, args: DemoArgs) -> Result<()> {
    if let Some(n) = args.devices {
        cfg.demo.devices = n;
    }
    let p = AllInOne::start(&cfg).await?;
    let r = run_fleet(&cfg, &p, args.duration).await;
    let stop = p.stop().await;
    r.and(stop)
}

async fn run_fleet(cfg: &Config, p: &AllInOne, duration: Option<u64>) -> Result<()> {
    let fleet = load_or_provision(&p.db.store, p, &cfg.data_dir.join("demo"), cfg.demo.devices).await?;
    let port = p.broker.tls_addr().context("the demo needs the TLS device listener (broker.tls_listen)")?.port();
    let endpoint = Endpoint { host: "localhost".into(), port };
    let mut links = Vec::new();
    let mut tasks = Vec::new();
    for (i, creds) in fleet.iter().enumerate() {
        let link = std::sync::Arc::new(DeviceLink::connect(creds, &endpoint, LinkOptions::default(), None)?);
        let mut gen = SignalGenerator::new(MetricProfile::construction_site(), i as u64 + 1, cfg.demo.anomaly_rate);
        let interval = Duration::from_millis(cfg.demo.interval_ms.max(10));
        let l = link.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let samples = gen.sample_all(chrono::Utc::now());
                if let Err(e) = l.publish(samples).await {
                    warn!(error = %e, "demo device publish failed");
                }
            }
        }));
        links.push(link);
    }
    print_banner(cfg, p);
    eprintln!("demo: {} simulated devices publishing every {} ms", fleet.len(), cfg.demo.interval_ms);
    let progress = async {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        loop {
            tick.tick().await;
            let online = p.db.store.online_count().await.unwrap_or(-1);
            let committed = offsite_ingest::metrics::SAMPLES.get();
            info!(online, committed, "demo progress");
        }
    };
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = async { tokio::time::sleep(Duration::from_secs(duration.unwrap_or(u64::MAX / 4))).await } => {
            info!("demo duration reached");
        }
        _ = progress => {}
    }
    for t in tasks {
        t.abort();
        let _ = t.await;
    }
    for l in links {
        if let Ok(l) = std::sync::Arc::try_unwrap(l) {
            l.close().await;
        }
    }
    Ok(())
}

/// Reuses the fleet's credentials from earlier runs while the registry still knows the devices.
async fn load_or_provision(store: &Store, p: &AllInOne, dir: &Path, n: usize) -> Result<Vec<DeviceCredentials>> {
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
        let name = format!("演示工地监测仪 {:03}", kept.len() + 1);
        let (_, creds) = offsite_broker::provision(store, &p.pki, &name, Some(format!("demo-site-{:02}", kept.len() % 10 + 1))).await?;
        kept.push(creds);
    }
    kept.truncate(n);
    if kept.len() != before {
        write_secret(&file, serde_json::to_vec(&kept)?.as_slice())?;
        info!(provisioned = kept.len() - before.min(kept.len()), "demo fleet provisioned");
    }
    Ok(kept)
}
