//! `offsite bench storage`: bytes on disk per stored sample, measured from our own tables.
//!
//! Loads N samples of a simulated fleet (devices x metrics at a fixed interval, random-walk
//! values) through the store's real write path (`write_samples`: binary COPY into the daily
//! partitions, the latest-value upsert, last-seen) into a fresh embedded cluster, then reads
//! `pg_total_relation_size` of every `samples` partition (heap, TOAST, primary key index) and of
//! `sample_latest`. The JSON line gives bytes per sample and what a day of a given fleet costs,
//! which is what docs/operations.md sizes disks with.

use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{Duration as ChronoDuration, Utc};
use offsite_store::samples::Partitioning;
use offsite_store::SampleRow;
use rand::Rng;
use serde_json::json;

use super::support::{free_port, round, scratch_dir};
use crate::configuration::Config;
use crate::startup::Database;

#[derive(clap::Args)]
pub struct Args {
    /// Samples to load (more gives a steadier figure; 1M takes seconds).
    #[arg(long, default_value_t = 1_000_000)]
    samples: usize,
    /// Devices in the simulated fleet.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Metrics per device.
    #[arg(long, default_value_t = 10)]
    metrics: usize,
    /// Seconds between two samples of one series.
    #[arg(long, default_value_t = 10)]
    interval_s: i64,
    /// Rows per committed batch (ingest's `batch_max_rows` is 20,000).
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Fleet to project a day's storage for: devices x metrics at one sample per `interval_s`.
    #[arg(long, default_value_t = 10_000)]
    project_devices: u64,
    /// Accepted for symmetry; the JSON line is always printed last.
    #[arg(long)]
    json: bool,
}

pub async fn run(base: Config, a: Args) -> Result<()> {
    anyhow::ensure!(
        a.devices > 0 && a.metrics > 0 && a.samples > 0 && a.batch > 0,
        "counts must be positive"
    );
    anyhow::ensure!(a.interval_s > 0, "--interval-s must be positive");
    let dir = scratch_dir("storage")?;
    let mut cfg = base;
    cfg.data_dir = dir.path().to_path_buf();
    cfg.database.url = None;
    cfg.database.embedded_port = free_port()?;
    let db = Database::open(&cfg).await?;
    let r = measure(&db.store, &dir.path().join("pki"), &a).await;
    db.close().await?;
    println!("{}", r?);
    Ok(())
}

async fn measure(
    store: &offsite_store::Store,
    pki_dir: &std::path::Path,
    a: &Args,
) -> Result<serde_json::Value> {
    let pki = offsite_broker::Pki::load_or_create(pki_dir)?;
    let mut device_keys = Vec::with_capacity(a.devices);
    for i in 0..a.devices {
        let (d, _) = offsite_broker::provision(store, &pki, &format!("存储测算-{i}"), None).await?;
        device_keys.push(d.key);
    }
    let mut metric_ids = Vec::with_capacity(a.metrics);
    for m in 0..a.metrics {
        metric_ids.push(store.ensure_metric(&format!("bench.storage_{m}")).await?.id);
    }
    let series = a.devices * a.metrics;
    // Walk time forward one interval per round of all series, ending now (inside retention).
    let rounds = a.samples.div_ceil(series) as i64;
    let t0 = Utc::now() - ChronoDuration::seconds(rounds * a.interval_s);
    let mut rng = rand::rng();
    let mut level: Vec<f64> = (0..series).map(|_| rng.random_range(10.0..100.0)).collect();
    let mut batch = Vec::with_capacity(a.batch);
    let started = Instant::now();
    let mut written = 0usize;
    'outer: for round_no in 0..rounds {
        let ts = t0 + ChronoDuration::seconds(round_no * a.interval_s);
        for (s, lvl) in level.iter_mut().enumerate() {
            if written + batch.len() == a.samples {
                break 'outer;
            }
            *lvl += rng.random_range(-0.5..0.5);
            // Sensors report a few decimals, not full-precision noise.
            let value = (*lvl * 100.0).round() / 100.0;
            batch.push(SampleRow {
                device_key: device_keys[s / a.metrics],
                metric_id: metric_ids[s % a.metrics],
                ts,
                received_at: ts + ChronoDuration::milliseconds(rng.random_range(50..1500)),
                value,
                quality: 0,
            });
            if batch.len() == a.batch {
                written += store.write_samples(&batch).await?.inserted as usize;
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        written += store.write_samples(&batch).await?.inserted as usize;
    }
    let load_s = started.elapsed().as_secs_f64();
    let pool = store.pool();
    sqlx::query("VACUUM ANALYZE")
        .execute(pool)
        .await
        .context("VACUUM ANALYZE")?;
    sqlx::query("CHECKPOINT")
        .execute(pool)
        .await
        .context("CHECKPOINT")?;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM samples")
        .fetch_one(pool)
        .await?;
    let timescale = store.partitioning().await? == Partitioning::Timescale;
    let (heap, index): (i64, i64) = if timescale {
        // Chunks (compressed ones included) as TimescaleDB accounts for them.
        sqlx::query_as("SELECT (table_bytes + toast_bytes)::bigint, index_bytes::bigint FROM hypertable_detailed_size('samples')")
            .fetch_one(pool)
            .await?
    } else {
        // Every partition of samples (the parent holds nothing): heap + TOAST + indexes.
        sqlx::query_as(
            "SELECT COALESCE(sum(pg_table_size(relid)), 0)::bigint, COALESCE(sum(pg_indexes_size(relid)), 0)::bigint \
             FROM pg_partition_tree('samples') WHERE isleaf",
        )
        .fetch_one(pool)
        .await?
    };
    let latest: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('sample_latest')")
        .fetch_one(pool)
        .await?;
    let latest_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sample_latest")
        .fetch_one(pool)
        .await?;
    let partitions: i64 = if timescale {
        0
    } else {
        sqlx::query_scalar("SELECT count(*) FROM pg_partition_tree('samples') WHERE isleaf")
            .fetch_one(pool)
            .await?
    };
    anyhow::ensure!(
        stored as usize == written,
        "stored {stored} rows but the writes reported {written}"
    );
    let per_sample = (heap + index) as f64 / stored as f64;
    let per_day_samples =
        a.project_devices as f64 * a.metrics as f64 * 86_400.0 / a.interval_s as f64;
    // Empty partitions made ahead of time cost a few pages each; they are counted in the total but
    // spread over the samples loaded, so load enough that they do not matter (the default does).
    Ok(json!({
        "bench": "storage",
        "samples": stored,
        "series": series,
        "interval_s": a.interval_s,
        "partitions": partitions,
        "load_samples_per_s": round(stored as f64 / load_s, 0),
        "samples_heap_bytes": heap,
        "samples_index_bytes": index,
        "bytes_per_sample": round(per_sample, 1),
        "heap_bytes_per_sample": round(heap as f64 / stored as f64, 1),
        "index_bytes_per_sample": round(index as f64 / stored as f64, 1),
        "sample_latest_bytes_per_series": round(latest as f64 / latest_rows.max(1) as f64, 1),
        "projection": {
            "devices": a.project_devices,
            "metrics_per_device": a.metrics,
            "interval_s": a.interval_s,
            "samples_per_s": round(per_day_samples / 86_400.0, 1),
            "gib_per_day": round(per_day_samples * per_sample / (1u64 << 30) as f64, 2),
        },
        "timescaledb": timescale,
    }))
}
