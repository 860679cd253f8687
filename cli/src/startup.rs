//! Composes the tiers: the database (embedded or external), the broker with its in-process link,
//! ingest and the portal, and stops them in the reverse order.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use offsite_analytics::live::{Analytics, LiveConfig};
use offsite_broker::{BrokerBuilder, BrokerHandle, Pki};
use offsite_ingest::{Incoming, Ingest, LinkSource};
use offsite_store::embedded::{EmbeddedOptions, EmbeddedPostgres, DATABASE};
use offsite_store::audit::{anchors_path, DEFAULT_ANCHOR_EVERY};
use offsite_store::{AuditLog, Store};
use tokio::sync::{broadcast, watch};
use tracing::info;

use crate::configuration::Config;

/// The database of this installation: an external server, or the embedded cluster.
pub struct Database {
    pub store: Store,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    pub async fn open(cfg: &Config) -> Result<Self> {
        match &cfg.database.url {
            Some(url) if !url.is_empty() => {
                info!("using the configured PostgreSQL server");
                Ok(Self { store: Store::connect_url(url, cfg.database.max_connections).await?, embedded: None })
            }
            _ => {
                let opts = EmbeddedOptions {
                    bin_dir: cfg.database.pg_bin_dir.clone(),
                    port: cfg.database.embedded_port,
                    tcp_listen: cfg.database.embedded_tcp_listen.clone(),
                    extra_conf: Vec::new(),
                };
                let pg = EmbeddedPostgres::ensure(&cfg.data_dir, &opts).await?;
                pg.ensure_database(DATABASE).await?;
                let store = match Store::connect(pg.connect_options(DATABASE), cfg.database.max_connections).await {
                    Ok(s) => s,
                    Err(e) => {
                        pg.stop().await.ok();
                        return Err(e);
                    }
                };
                Ok(Self { store, embedded: Some(pg) })
            }
        }
    }

    /// Closes the pool and stops the embedded cluster if this process started it.
    pub async fn close(self) -> Result<()> {
        self.store.pool().close().await;
        if let Some(pg) = self.embedded {
            pg.stop().await?;
        }
        Ok(())
    }
}

/// Whether the complaint form's CAPTCHA is on; turning it off is said loudly at start.
pub fn complaint_captcha(cfg: &Config) -> bool {
    if !cfg.complaints.captcha {
        tracing::warn!("the public complaint form's CAPTCHA is OFF ([complaints] captcha = false): only rate limits stand between the form and bots");
    }
    cfg.complaints.captcha
}

/// The key that encrypts complainants' phone and ID numbers: `<data_dir>/secrets/complaints.key`,
/// 32 random bytes made on first start (mode 0600). Every portal of one installation must read the
/// same file; losing it makes the stored contact details unreadable.
pub fn complaints_key(data_dir: &std::path::Path) -> Result<[u8; 32]> {
    let path = data_dir.join("secrets").join("complaints.key");
    if !path.exists() {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        // Written aside, then linked into place (which never replaces): processes starting at once
        // all end up with the first one's key.
        let tmp = path.with_extension(format!("key.{}.tmp", std::process::id()));
        crate::device_cmd::write_secret(&tmp, &key)?;
        let linked = std::fs::hard_link(&tmp, &path);
        std::fs::remove_file(&tmp).ok();
        match linked {
            Ok(()) => info!(path = %path.display(), "generated the complaints contact key"),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("{} must hold exactly 32 bytes", path.display()))
}

/// The portal's sockets, bound now (so a taken port fails the start): plain HTTP and HTTPS as
/// `[portal]` says. HTTPS without `tls_cert`/`tls_key` uses the installation's server
/// certificate in `<data_dir>/pki` (see `offsite certs init`).
pub async fn portal_listeners(cfg: &Config) -> Result<offsite_portal::Listeners> {
    let p = &cfg.portal;
    let http = match p.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the portal to {addr}"))?,
        ),
        None => None,
    };
    let https = match p.https_listen {
        Some(addr) => {
            let pki = cfg.data_dir.join("pki");
            let cert = p.tls_cert.clone().unwrap_or_else(|| pki.join("server.pem"));
            let key = p.tls_key.clone().unwrap_or_else(|| pki.join("server.key"));
            let config = offsite_portal::tls::server_config(&cert, &key)
                .context("portal HTTPS (run `offsite certs init`, set portal.tls_cert/tls_key, or portal.https_listen = \"off\")")?;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the portal's HTTPS to {addr}"))?;
            Some((l, config))
        }
        None => None,
    };
    if p.redirect_http && https.is_none() {
        anyhow::bail!("portal.redirect_http needs portal.https_listen");
    }
    Ok(offsite_portal::Listeners { http, https, redirect_http: p.redirect_http })
}

pub fn pki(cfg: &Config) -> Result<Pki> {
    Pki::load_or_create(&cfg.data_dir.join("pki")).context("loading the device CA")
}

/// Every tier in one process.
pub struct AllInOne {
    pub db: Database,
    pub broker: BrokerHandle,
    pub pki: Pki,
    /// The portal's plain HTTP address, if that listener is on.
    pub portal_addr: Option<SocketAddr>,
    /// The portal's HTTPS address, if that listener is on.
    pub portal_https_addr: Option<SocketAddr>,
    pub audit: AuditLog,
    ingest: Ingest,
    /// The HJ 212 gateway, when `hj212.enabled`.
    pub hj212: Option<offsite_ingest::hj212::Hj212Gateway>,
    analytics: Option<Analytics>,
    portal: tokio::task::JoinHandle<Result<()>>,
    scheduler: Option<tokio::task::JoinHandle<()>>,
    stop_portal: watch::Sender<bool>,
    notify: Option<offsite_workflow::notify::NotifyWorker>,
}

/// What `start_tiers` brings up besides the database.
struct Tiers {
    audit: AuditLog,
    broker: BrokerHandle,
    pki: Pki,
    ingest: Ingest,
    hj212: Option<offsite_ingest::hj212::Hj212Gateway>,
    analytics: Option<Analytics>,
    portal: tokio::task::JoinHandle<Result<()>>,
    scheduler: Option<tokio::task::JoinHandle<()>>,
    stop_portal: watch::Sender<bool>,
    portal_addr: Option<SocketAddr>,
    portal_https_addr: Option<SocketAddr>,
    notify: Option<offsite_workflow::notify::NotifyWorker>,
}

/// Optional instruments for benchmarks.
#[derive(Default)]
pub struct Hooks {
    /// Commit-to-warning latency of every warning opened from a sample.
    pub warning_latency: Option<flume::Sender<Duration>>,
}

impl AllInOne {
    pub async fn start(cfg: &Config) -> Result<Self> {
        Self::start_with(cfg, Hooks::default()).await
    }

    pub async fn start_with(cfg: &Config, hooks: Hooks) -> Result<Self> {
        crate::assets::report();
        let db = Database::open(cfg).await?;
        if let Err(e) = crate::accounts::ensure_first_admin(cfg, &db.store).await {
            db.close().await.ok();
            return Err(e);
        }
        match Self::start_tiers(cfg, &db, hooks).await {
            Ok(t) => Ok(Self {
                db,
                broker: t.broker,
                pki: t.pki,
                portal_addr: t.portal_addr,
                portal_https_addr: t.portal_https_addr,
                audit: t.audit,
                ingest: t.ingest,
                hj212: t.hj212,
                analytics: t.analytics,
                portal: t.portal,
                scheduler: t.scheduler,
                stop_portal: t.stop_portal,
                notify: t.notify,
            }),
            Err(e) => {
                db.close().await.ok();
                Err(e)
            }
        }
    }

    async fn start_tiers(cfg: &Config, db: &Database, hooks: Hooks) -> Result<Tiers> {
        let store = db.store.clone();
        // Writes the start anchor of the audit chain.
        let audit = AuditLog::start(store.clone(), Some(anchors_path(&cfg.data_dir)), DEFAULT_ANCHOR_EVERY);
        let pki = pki(cfg)?;
        let internal = offsite_broker::internal_password(&cfg.data_dir)?;
        let complaints_key = complaints_key(&cfg.data_dir)?;
        let notify = spawn_notify(cfg, &store)?;
        let mut builder = BrokerBuilder::new(&cfg.broker, &pki, store.clone(), internal)?;
        let (link_tx, link_rx) = builder.link("offsite-ingest")?;
        // A fresh broker knows no sessions: every device is offline until it says otherwise.
        store.mark_all_offline().await?;
        // Ingest subscribes before the listeners open, so no device's first batches go to a broker
        // with nobody listening (they would only come back after the device's resend timeout).
        let (queue_tx, queue_rx) = flume::bounded::<Incoming>(cfg.ingest.queue_capacity);
        let gate = offsite_ingest::DeviceGate::new(&cfg.ingest);
        let acks = LinkSource::start(link_tx, link_rx, queue_tx, gate.clone())?;
        let link_out = match &acks {
            offsite_ingest::AckSink::Link(tx) => tx.clone(),
            offsite_ingest::AckSink::Mqtt(_) => unreachable!("LinkSource acknowledges over the link"),
        };
        let files = crate::tiers::file_store(cfg).await?;
        let broker = builder.spawn()?;
        let (live, _) = broadcast::channel(1024);
        let (tap, analytics) = if cfg.analytics.enabled {
            let (tap_tx, tap_rx) = flume::bounded(cfg.analytics.queue_capacity.max(1));
            let live_cfg = LiveConfig {
                group_window: Duration::from_secs(cfg.analytics.group_window_s),
                evidence_samples: cfg.analytics.evidence_samples,
                latency_probe: hooks.warning_latency,
                audit: Some(audit.clone()),
                ..LiveConfig::default()
            };
            // One replica fed in-process: it owns every shard and replays them from their
            // checkpoints in the background while ingest runs (a restart after a kill analyses
            // what it missed without holding devices up).
            let a = crate::analytics_cmd::start_in_process(cfg, &store, live_cfg, tap_rx, live.clone()).await?;
            (Some(offsite_ingest::Tap::BestEffort(tap_tx)), Some(a))
        } else {
            (None, None)
        };
        let cameras = offsite_ingest::CameraSink { files: Some(files.clone()), live: Some(live.clone()) };
        let ingest = Ingest::start(store.clone(), cfg.ingest.clone(), queue_rx, acks, tap, cameras, gate).await?;
        // Loggers can connect before /healthz answers.
        let hj212 = start_hj212(cfg, &store, &ingest).await?;
        let listeners = portal_listeners(cfg).await?;
        let portal_addr = listeners.http.as_ref().map(|l| l.local_addr()).transpose()?;
        let portal_https_addr = listeners.https.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
        let (stop_portal, mut stop_rx) = watch::channel(false);
        let scheduler = cfg
            .workflow
            .enabled
            .then(|| offsite_workflow::scheduler::spawn(store.clone(), cfg.workflow.clone(), stop_portal.subscribe()));
        if cfg.workflow.enabled {
            let (files, days) = (files.clone(), cfg.workflow.snapshot_retention_days);
            offsite_workflow::retention::spawn(store.clone(), files, days, Duration::from_secs(3600), stop_portal.subscribe());
        }
        let state = offsite_portal::AppState::new(store)
            .with_live(live.clone())
            .with_audit(audit.clone())
            .with_secret_key(complaints_key)
            .with_captcha(complaint_captcha(cfg))
            .with_files(files)
            .with_provisioner(std::sync::Arc::new(crate::provisioner::PkiProvisioner(pki.clone())))
            .with_commands(std::sync::Arc::new(crate::internal_mqtt::LinkCommands(link_out)));
        let portal = tokio::spawn(offsite_portal::serve_all(listeners, state, async move {
            let _ = stop_rx.wait_for(|v| *v).await;
        }));
        Ok(Tiers { audit, broker, pki, ingest, hj212, analytics, portal, scheduler, stop_portal, portal_addr, portal_https_addr, notify })
    }

    pub async fn stop(self) -> Result<()> {
        info!("stopping");
        let _ = self.stop_portal.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.portal).await;
        if let Some(s) = self.scheduler {
            let _ = tokio::time::timeout(Duration::from_secs(10), s).await;
        }
        if let Some(n) = self.notify {
            let _ = tokio::time::timeout(Duration::from_secs(15), n.shutdown()).await;
        }
        if let Some(g) = self.hj212 {
            let _ = tokio::time::timeout(Duration::from_secs(10), g.shutdown()).await;
        }
        // Ingest drains what it has and acknowledges it; the broker thread ends with the process.
        let _ = tokio::time::timeout(Duration::from_secs(10), self.ingest.shutdown()).await;
        if let Some(a) = self.analytics {
            let _ = tokio::time::timeout(Duration::from_secs(10), a.shutdown()).await;
        }
        // Commits what is queued and writes the last anchor, while the database is still there.
        let _ = tokio::time::timeout(Duration::from_secs(10), self.audit.shutdown()).await;
        // The broker goes with this process, and every device connection with it.
        self.db.store.mark_all_offline().await.ok();
        self.db.close().await
    }
}

/// The HJ 212 gateway feeding this process's ingest, unless `hj212.enabled` is off.
pub async fn start_hj212(cfg: &Config, store: &Store, ingest: &Ingest) -> Result<Option<offsite_ingest::hj212::Hj212Gateway>> {
    if !cfg.hj212.enabled {
        return Ok(None);
    }
    let g = offsite_ingest::hj212::Hj212Gateway::start(store.clone(), cfg.hj212.clone(), ingest.gateway_sink()).await?;
    Ok(Some(g))
}

/// The notify worker (notifications and channel deliveries), unless `notifications.enabled` is off.
pub fn spawn_notify(cfg: &Config, store: &Store) -> Result<Option<offsite_workflow::notify::NotifyWorker>> {
    if !cfg.notifications.enabled {
        return Ok(None);
    }
    Ok(Some(offsite_workflow::notify::NotifyWorker::spawn(store.clone(), &cfg.notifications)?))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("Ctrl-C received"),
        _ = term.recv() => info!("SIGTERM received"),
    }
}
