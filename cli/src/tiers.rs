//! `up` and the one-tier-per-process subcommands.

use anyhow::{bail, Result};
use offsite_broker::BrokerBuilder;
use offsite_ingest::{Incoming, Ingest, MqttSource, MqttSourceConfig};
use tracing::info;

use crate::configuration::Config;
use crate::startup::{self, shutdown_signal, AllInOne, Database};

pub async fn up(mut cfg: Config) -> Result<()> {
    // Every tier is in this process (ingest and commands use the in-process link): the plain
    // MQTT listener is only opened when configured.
    if !cfg.plain_listen_given {
        cfg.broker.plain_listen = None;
    }
    let p = AllInOne::start(&cfg).await?;
    print_banner(&cfg, &p);
    let listener_panicked = tokio::select! {
        _ = shutdown_signal() => false,
        _ = offsite_broker::listener_panicked() => true,
    };
    if listener_panicked {
        tracing::error!("{LISTENER_PANIC}");
    }
    p.stop().await?;
    if listener_panicked {
        bail!("{LISTENER_PANIC}");
    }
    Ok(())
}

pub fn print_banner(cfg: &Config, p: &AllInOne) {
    let listen = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
    eprintln!("offsite is running / 平台已启动");
    if let Some(a) = p.portal_https_addr {
        eprintln!("  portal  门户      https://{a}/");
    }
    match (p.portal_addr, cfg.portal.redirect_http) {
        (Some(a), true) => eprintln!("  HTTP -> HTTPS     http://{a}/ (redirect / 跳转)"),
        (Some(a), false) => {
            eprintln!("  portal  门户      http://{a}/");
            eprintln!("  health  健康检查  http://{a}/healthz");
        }
        (None, _) => eprintln!("  plain HTTP        off"),
    }
    eprintln!("  MQTT/TLS devices  {}", listen(cfg.broker.tls_listen));
    eprintln!("  MQTT internal     {}", listen(cfg.broker.plain_listen));
    eprintln!("  data directory    {}", cfg.data_dir.display());
    eprintln!("Stop with Ctrl-C. 按 Ctrl-C 停止。");
}

pub async fn broker(cfg: Config) -> Result<()> {
    let db = Database::open(&cfg).await?;
    let pki = startup::pki(&cfg)?;
    let internal = offsite_broker::internal_password(&cfg.data_dir)?;
    let builder = BrokerBuilder::new(&cfg.broker, &pki, db.store.clone(), internal)?;
    db.store.mark_all_offline().await?;
    let _handle = builder.spawn()?;
    let mut readiness = crate::ops_http::Readiness::new().database(db.store.clone());
    for (name, addr) in [("tls_listener", cfg.broker.tls_listen), ("plain_listener", cfg.broker.plain_listen)] {
        if let Some(addr) = addr {
            readiness = readiness.listener(name, addr);
        }
    }
    let ops = crate::ops_http::spawn(&cfg.ops, "broker", readiness).await?;
    info!("broker running");
    let listener_panicked = tokio::select! {
        _ = shutdown_signal() => false,
        _ = offsite_broker::listener_panicked() => true,
    };
    if listener_panicked {
        tracing::error!("{LISTENER_PANIC}");
    }
    if let Some(o) = ops {
        o.stop();
    }
    db.close().await?;
    if listener_panicked {
        bail!("{LISTENER_PANIC}");
    }
    Ok(())
}

/// Why `offsite broker` / `offsite up` stop on their own (offsite_broker's `listener_watch`).
pub(crate) const LISTENER_PANIC: &str = "an MQTT listener of the embedded broker (rumqttd) panicked and admits no new \
     connection until the process restarts; stopping so the supervisor restarts it (devices keep their data) / \
     内置 MQTT 代理的监听线程崩溃，进程退出以便由守护进程重启（设备数据不会丢失）";

pub async fn ingest(cfg: Config) -> Result<()> {
    let db = Database::open(&cfg).await?;
    let m = &cfg.internal_mqtt;
    let password = crate::internal_mqtt::password(&cfg)?;
    let (queue_tx, queue_rx) = flume::bounded::<Incoming>(cfg.ingest.queue_capacity);
    let gate = offsite_ingest::DeviceGate::new(&cfg.ingest);
    let acks = MqttSource::start(
        MqttSourceConfig {
            host: m.host.clone(),
            port: m.port,
            username: m.username.clone(),
            password,
            group: m.group.clone(),
            client_id: format!("offsite-ingest-{}", rand::random::<u32>()),
        },
        queue_tx,
        gate.clone(),
    );
    // feed = "in_process": the analytics tier runs beside ingest on what it commits (one ingest
    // replica only). feed = "shards": committed rows go to the broker per shard for `offsite
    // analytics` replicas. Either way warnings reach portals through PostgreSQL NOTIFY.
    let audit = audit_log(&cfg, &db.store);
    let mut feed = None;
    let (tap, analytics) = if !cfg.analytics.enabled {
        (None, None)
    } else if cfg.analytics.feed == crate::configuration::AnalyticsFeed::Shards {
        let shards = offsite_store::analytics_shards::ShardCount::new(cfg.analytics.shards)?;
        let (f, tap) = offsite_ingest::analytics_feed::AnalyticsFeed::start(
            MqttSourceConfig {
                host: m.host.clone(),
                port: m.port,
                username: m.username.clone(),
                password: crate::internal_mqtt::password(&cfg)?,
                group: String::new(),
                client_id: format!("offsite-ingest-feed-{}", rand::random::<u32>()),
            },
            shards,
            cfg.analytics.queue_capacity,
        );
        feed = Some(f);
        (Some(tap), None)
    } else {
        let (tap_tx, tap_rx) = flume::bounded(cfg.analytics.queue_capacity.max(1));
        let (live, _) = tokio::sync::broadcast::channel(1024);
        let live_cfg = crate::analytics_cmd::live_config(&cfg, Some(audit.clone()));
        let a = crate::analytics_cmd::start_in_process(&cfg, &db.store, live_cfg, tap_rx, live).await?;
        (Some(offsite_ingest::Tap::BestEffort(tap_tx)), Some(a))
    };
    // Split mode: portals learn of camera warnings through pg_notify.
    let cameras = offsite_ingest::CameraSink { files: Some(file_store(&cfg).await?), live: None };
    let ingest = Ingest::start(db.store.clone(), cfg.ingest.clone(), queue_rx, acks, tap, cameras, gate).await?;
    let hj212 = startup::start_hj212(&cfg, &db.store, &ingest).await?;
    let readiness = crate::ops_http::Readiness::new().database(db.store.clone()).ingest_broker_connection();
    let ops = crate::ops_http::spawn(&cfg.ops, "ingest", readiness).await?;
    let _progress = offsite_ingest::progress::spawn_log(std::time::Duration::from_secs(2));
    info!(broker = %format!("{}:{}", m.host, m.port), analytics = analytics.is_some(), "ingest running");
    shutdown_signal().await;
    if let Some(o) = &ops {
        o.begin_shutdown();
    }
    if let Some(g) = hj212 {
        g.shutdown().await;
    }
    ingest.shutdown().await;
    if let Some(f) = feed {
        f.shutdown().await;
    }
    if let Some(a) = analytics {
        a.shutdown().await;
    }
    if let Err(e) = audit.shutdown().await {
        tracing::warn!(error = %format!("{e:#}"), "closing the audit trail");
    }
    db.close().await
}

pub async fn portal(cfg: Config) -> Result<()> {
    let db = Database::open(&cfg).await?;
    let store = db.store.clone();
    let audit = audit_log(&cfg, &store);
    let notify = match startup::spawn_notify(&cfg, &store) {
        Ok(n) => n,
        Err(e) => {
            audit.shutdown().await.ok();
            db.close().await?;
            return Err(e);
        }
    };
    let r = async {
        let complaints_key = startup::complaints_key(&cfg.data_dir)?;
        let listeners = startup::portal_listeners(&cfg).await?;
        let files = file_store(&cfg).await?;
        // The scheduler runs beside the portal; with several portal replicas one works per pass.
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let scheduler =
            cfg.workflow.enabled.then(|| offsite_workflow::scheduler::spawn(store.clone(), cfg.workflow.clone(), stop_rx.clone()));
        if cfg.workflow.enabled {
            let days = cfg.workflow.snapshot_retention_days;
            offsite_workflow::retention::spawn(store.clone(), files.clone(), days, std::time::Duration::from_secs(3600), stop_rx);
        }
        let state = offsite_portal::AppState::new(store)
            .with_audit(audit.clone())
            .with_secret_key(complaints_key)
            .with_captcha(startup::complaint_captcha(&cfg))
            .with_files(files)
            .with_commands(std::sync::Arc::new(crate::internal_mqtt::InternalCommands(cfg.clone())));
        let state = match crate::provisioner::for_portal(&cfg) {
            Some(p) => state.with_provisioner(p),
            None => state,
        };
        let served = offsite_portal::serve_all(listeners, state, shutdown_signal()).await;
        let _ = stop.send(true);
        if let Some(s) = scheduler {
            let _ = s.await;
        }
        served
    }
    .await;
    if let Some(n) = notify {
        n.shutdown().await;
    }
    if let Err(e) = audit.shutdown().await {
        tracing::warn!(error = %format!("{e:#}"), "closing the audit trail");
    }
    db.close().await?;
    r
}

/// Attachments, documents and snapshots: the configured backend (`[files]`), checked at start.
pub async fn file_store(cfg: &Config) -> Result<std::sync::Arc<dyn offsite_store::files::FileStore>> {
    crate::files::open(cfg).await
}

/// This process's writer of the audit chain (several processes may share one chain).
fn audit_log(cfg: &Config, store: &offsite_store::Store) -> offsite_store::AuditLog {
    use offsite_store::audit::{anchors_path, DEFAULT_ANCHOR_EVERY};
    offsite_store::AuditLog::start(store.clone(), Some(anchors_path(&cfg.data_dir)), DEFAULT_ANCHOR_EVERY)
}
