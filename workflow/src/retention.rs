//! Snapshot retention as a service: camera snapshots older than the configured age are deleted
//! (rows, then the bytes nothing else refers to) unless a task or case holds the warning they
//! support. Idempotent, so several replicas may run it; hourly is plenty for a limit in days.

use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use offsite_store::cameras::SnapshotRetention;
use offsite_store::files::FileStore;
use offsite_store::Store;
use prometheus::{register_int_counter, IntCounter};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

static EXPIRED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "offsite_snapshots_expired_total",
        "Camera snapshots deleted by retention"
    )
    .expect("metric registers once")
});

/// One pass at `now`: deletes what is older than `retention_days`.
pub async fn run_once(
    store: &Store,
    files: &dyn FileStore,
    now: DateTime<Utc>,
    retention_days: u32,
) -> anyhow::Result<SnapshotRetention> {
    let r = store
        .expire_snapshots(
            now - chrono::Duration::days(i64::from(retention_days)),
            files,
        )
        .await?;
    EXPIRED.inc_by(r.snapshots);
    Ok(r)
}

/// Runs a pass at start and then every `every` until `stop` turns true.
pub fn spawn(
    store: Store,
    files: Arc<dyn FileStore>,
    retention_days: u32,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tick.tick() => {}
            }
            match run_once(&store, files.as_ref(), Utc::now(), retention_days).await {
                Ok(r) if r.snapshots > 0 => info!(
                    snapshots = r.snapshots,
                    files = r.files,
                    "snapshot retention"
                ),
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "snapshot retention failed; retrying next time")
                }
            }
        }
    })
}
