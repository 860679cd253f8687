//! The analytics tier as its own process (`offsite analytics`, N replicas sharing the shards), and
//! how the other processes start it in-process or feed it.

use std::time::Duration;

use anyhow::Result;
use offsite_analytics::live::{Analytics, LiveConfig};
use offsite_analytics::shards::{FeedControl, MqttFeed, MqttFeedConfig, ShardConfig};
use offsite_store::analytics_shards::ShardCount;
use offsite_store::Store;
use tracing::info;

use crate::configuration::Config;
use crate::startup::{shutdown_signal, Database};

/// The shard lease settings of `[analytics]`. `exclusive`: fed in-process, so it owns every shard.
pub fn shard_config(
    cfg: &Config,
    exclusive: bool,
    default_replica: impl FnOnce() -> String,
) -> Result<ShardConfig> {
    let a = &cfg.analytics;
    Ok(ShardConfig {
        shards: ShardCount::new(a.shards)?,
        replica: a.replica.clone().unwrap_or_else(default_replica),
        exclusive,
        lease: Duration::from_secs(a.lease_s.max(1)),
        renew_every: Duration::from_secs(a.renew_s.clamp(1, a.lease_s.max(2) - 1)),
        checkpoint_margin: Duration::from_secs(a.checkpoint_margin_s),
        max_replay: Duration::from_secs(a.max_replay_s),
    })
}

/// A replica name unique among processes: the host name and a random suffix.
fn unique_replica() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "analytics".into());
    format!("{host}-{:08x}", rand::random::<u32>())
}

pub fn live_config(cfg: &Config, audit: Option<offsite_store::AuditLog>) -> LiveConfig {
    LiveConfig {
        group_window: Duration::from_secs(cfg.analytics.group_window_s),
        evidence_samples: cfg.analytics.evidence_samples,
        audit,
        ..LiveConfig::default()
    }
}

/// Analytics fed by this process's ingest (the all-in-one, or `offsite ingest` with
/// `feed = "in_process"`): one replica that owns every shard (unless another process's in-process
/// analytics holds them), replaying from the checkpoints in the background.
pub async fn start_in_process(
    cfg: &Config,
    store: &Store,
    live_cfg: LiveConfig,
    rx: flume::Receiver<offsite_analytics::live::Committed>,
    live: tokio::sync::broadcast::Sender<offsite_store::WarningChange>,
) -> Result<Analytics> {
    let shards = shard_config(cfg, true, offsite_analytics::shards::in_process_replica)?;
    Analytics::start_sharded(
        store.clone(),
        crate::detectors::live_chain(),
        live_cfg,
        shards,
        FeedControl::InProcess,
        rx,
        live,
    )
    .await
}

/// `offsite analytics`: a replica reading the shard feed from the broker's internal listener.
pub async fn run(cfg: Config) -> Result<()> {
    let db = Database::open(&cfg).await?;
    let shards = shard_config(&cfg, false, unique_replica)?;
    let m = &cfg.internal_mqtt;
    let (tx, rx) = flume::bounded(cfg.analytics.queue_capacity.max(1));
    let feed = MqttFeed::start(
        MqttFeedConfig {
            host: m.host.clone(),
            port: m.port,
            username: m.username.clone(),
            password: crate::internal_mqtt::password(&cfg)?,
            client_id: format!("offsite-analytics-{}", rand::random::<u32>()),
            shards: shards.shards,
        },
        tx,
    );
    let audit = offsite_store::AuditLog::start(
        db.store.clone(),
        Some(offsite_store::audit::anchors_path(&cfg.data_dir)),
        offsite_store::audit::DEFAULT_ANCHOR_EVERY,
    );
    // Portals in other processes learn of warnings through PostgreSQL NOTIFY; nobody reads this one.
    let (live, _) = tokio::sync::broadcast::channel(1024);
    let replica = shards.replica.clone();
    let a = Analytics::start_sharded(
        db.store.clone(),
        crate::detectors::live_chain(),
        live_config(&cfg, Some(audit.clone())),
        shards,
        FeedControl::Mqtt(feed),
        rx,
        live,
    )
    .await?;
    // Probes and the offsite_analytics_* metrics of this process (`[ops] listen`).
    let ops = crate::ops_http::spawn(&cfg.ops, "analytics", crate::ops_http::Readiness::new().database(db.store.clone())).await?;
    info!(%replica, broker = %format!("{}:{}", m.host, m.port), "analytics running");
    shutdown_signal().await;
    if let Some(o) = &ops {
        o.begin_shutdown();
    }
    a.shutdown().await;
    if let Err(e) = audit.shutdown().await {
        tracing::warn!(error = %format!("{e:#}"), "closing the audit trail");
    }
    db.close().await
}
