//! Writers: commit a flush, then acknowledge. Failed writes are retried, never dropped.

use std::time::{Duration, Instant};

use offsite_store::Store;
use offsite_wire::{Channel, DeviceId, Topic};
use tracing::{error, info, warn};

use crate::pipeline::Flush;
use crate::source::AckSink;
use crate::{metrics, CancellationToken, IngestConfig};

/// Committed rows handed on to analytics: when they were committed, and the rows.
pub type Committed = (std::time::Instant, Vec<offsite_store::SampleRow>);

/// Where committed rows go on to analytics.
#[derive(Clone)]
pub enum Tap {
    /// The in-process analytics queue: when full, rows are stored but not analysed, and counted
    /// (analytics must never slow ingest down).
    BestEffort(flume::Sender<Committed>),
    /// The analytics shard feed (see `AnalyticsFeed`): before devices are acknowledged, the writer
    /// waits until the broker has acknowledged the rows on the feed (the second half: a signal
    /// when it has). A kill before that leaves the batch unacknowledged, so the device sends it
    /// again and it is published again. Its publisher has a connection of its own, so waiting
    /// here cannot block the source that feeds ingest.
    Lossless(flume::Sender<(Committed, tokio::sync::oneshot::Sender<()>)>),
}

pub async fn run(id: usize, store: Store, rx: flume::Receiver<Flush>, acks: AckSink, tap: Option<Tap>) {
    while let Ok(mut flush) = rx.recv_async().await {
        let mut backoff = Duration::from_millis(100);
        loop {
            match write(&store, &flush).await {
                Ok(()) => break,
                Err(e) => {
                    metrics::WRITE_ERRORS.inc();
                    error!(writer = id, error = %format!("{e:#}"), rows = flush.rows.len(), "batch write failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if let (Some(Tap::Lossless(tx)), false) = (&tap, flush.rows.is_empty()) {
            let rows = std::mem::take(&mut flush.rows);
            let (done, published) = tokio::sync::oneshot::channel();
            if tx.send_async(((Instant::now(), rows), done)).await.is_err() || published.await.is_err() {
                // The feed has stopped (shutdown): the rows are stored; an analytics replica
                // replays them from its checkpoint.
                warn!(writer = id, "analytics feed closed; committed rows not published");
            }
        }
        for c in flush.committed.drain(..) {
            let _ = c.send(());
        }
        for (device, ack) in flush.acks {
            let Ok(device) = DeviceId::parse(&device) else { continue };
            acks.publish(Topic::new(device, Channel::Ack).render(), ack.encode()).await;
        }
        for (key, device, online, _) in &flush.status {
            if *online {
                redeliver_commands(&store, &acks, *key, device).await;
            }
        }
        // Analytics must never slow ingest down: if its queue is full the rows are stored but not
        // analysed, and counted.
        if let (Some(Tap::BestEffort(tx)), false) = (&tap, flush.rows.is_empty()) {
            let rows = std::mem::take(&mut flush.rows);
            let n = rows.len() as u64;
            if tx.try_send((Instant::now(), rows)).is_err() {
                metrics::TAP_DROPPED.inc_by(n);
            }
        }
    }
}

/// Sends a device that has just come online the commands it has not answered yet: a command sent
/// while it was away would otherwise be lost (the broker keeps no session for it).
async fn redeliver_commands(store: &Store, out: &AckSink, key: i32, device: &str) {
    let Ok(device) = DeviceId::parse(device) else { return };
    match store.pending_commands(key, chrono::Duration::days(COMMAND_TTL_DAYS)).await {
        Ok(pending) => {
            for (id, body) in pending {
                info!(%device, command = %id, "redelivering unanswered command");
                out.publish(Topic::new(device.clone(), Channel::Cmd).render(), body.to_string().into_bytes()).await;
            }
        }
        Err(e) => warn!(%device, error = %format!("{e:#}"), "looking up unanswered commands"),
    }
}

/// Commands older than this are not redelivered.
const COMMAND_TTL_DAYS: i64 = 7;

async fn write(store: &Store, f: &Flush) -> anyhow::Result<()> {
    // Dead letters first: a refused message is acknowledged only once its payload is kept.
    store.insert_dead_letters(&f.dead).await?;
    for (key, _, online, at) in &f.status {
        store.set_device_online(*key, *online, *at).await?;
        metrics::STATUS_UPDATES.inc();
    }
    for (key, ack, at) in &f.command_acks {
        if store.record_command_ack(*key, ack, *at).await? {
            metrics::COMMAND_ACKS.inc();
        } else {
            warn!(command = %ack.id, "answer to an unknown, foreign or already answered command ignored");
        }
    }
    if !f.rows.is_empty() {
        let t = Instant::now();
        let o = store.write_samples(&f.rows).await?;
        metrics::BATCH_SECONDS.observe(t.elapsed().as_secs_f64());
        metrics::BATCH_ROWS.observe(f.rows.len() as f64);
        metrics::SAMPLES.inc_by(o.inserted);
        metrics::DUPLICATES.inc_by(o.duplicates);
    }
    Ok(())
}

/// Creates partitions ahead and drops expired ones, at start and then hourly.
pub async fn maintain(store: Store, cfg: IngestConfig, stop: CancellationToken) {
    loop {
        match store.maintain_partitions(cfg.partitions_ahead_days, cfg.retention_days).await {
            Ok(dropped) if !dropped.is_empty() => info!(?dropped, "partition maintenance"),
            // Said at every pass, so an operator (and the scale-out test) sees each replica's ran.
            Ok(_) => info!(ahead_days = cfg.partitions_ahead_days, "partitions maintained"),
            Err(e) => warn!(error = %format!("{e:#}"), "partition maintenance failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.cancelled() => return,
        }
    }
}
