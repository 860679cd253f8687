//! `offsite bench ingest`: sustained, committed and acknowledged samples per second from many
//! MQTT/TLS devices through broker -> ingest -> PostgreSQL, next to the raw binary COPY ceiling
//! measured on the same machine in the same run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chrono::{TimeZone, Utc};
use offsite_edge_agent::{DeviceLink, Endpoint, LinkOptions};
use offsite_store::samples::encode_copy;
use offsite_store::SampleRow;
use offsite_wire::{MetricKey, Sample};
use serde_json::json;
use sqlx::Executor;

use super::support::{free_port, percentile, round, scratch_dir};
use crate::configuration::Config;
use crate::startup::AllInOne;

mod external;

#[derive(clap::Args)]
pub struct Args {
    /// Simulated devices, each its own MQTT/TLS connection.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Samples per message (10 metrics x N timestamps).
    #[arg(long, default_value_t = 200)]
    samples_per_message: usize,
    /// Unacknowledged messages a device may have outstanding.
    #[arg(long, default_value_t = 8)]
    window: u64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Accepted for symmetry; the JSON line is always printed last.
    #[arg(long)]
    json: bool,
    /// Through an external broker instead of ours: `mosquitto` starts Debian's mosquitto with the
    /// shipped configuration and measures 1, then 2 `offsite ingest` processes on it.
    #[arg(long, value_enum)]
    external_broker: Option<external::ExternalBroker>,
}

const METRICS: usize = 10;

pub async fn run(base: Config, a: Args) -> Result<()> {
    if a.external_broker.is_some() {
        return external::run(base, a).await;
    }
    let dir = scratch_dir("ingest")?;
    let mut cfg = base;
    cfg.data_dir = dir.path().to_path_buf();
    cfg.database.url = None;
    cfg.broker.tls_listen = Some(format!("127.0.0.1:{}", free_port()?).parse()?);
    cfg.broker.plain_listen = Some(format!("127.0.0.1:{}", free_port()?).parse()?);
    cfg.portal.listen = Some("127.0.0.1:0".parse()?);
    cfg.portal.https_listen = None;
    cfg.hj212.listen = "127.0.0.1:0".into();
    // This measures the pipeline's capacity: each simulated device sends more than a real one
    // (5,500 samples/s at the usual figure), which the per-device budget would rightly throttle.
    cfg.ingest.device_max_samples_per_s = 0.0;
    let p = AllInOne::start(&cfg).await?;
    let r = measure(&cfg, &p, &a).await;
    p.stop().await?;
    let out = r?;
    println!("{out}");
    Ok(())
}

async fn measure(cfg: &Config, p: &AllInOne, a: &Args) -> Result<serde_json::Value> {
    let store = &p.db.store;
    let per_ts = a.samples_per_message.div_ceil(METRICS).max(1);
    let spm = per_ts * METRICS;
    eprintln!("bench ingest: provisioning {} devices", a.devices);
    let mut creds = Vec::new();
    for i in 0..a.devices {
        creds.push(offsite_broker::provision(store, &p.pki, &format!("bench-{i}"), None).await?.1);
    }
    let metrics: Vec<MetricKey> = (0..METRICS).map(|m| MetricKey::parse(&format!("bench{m}")).unwrap()).collect();
    for m in &metrics {
        store.ensure_metric(m.as_str()).await?;
    }
    let endpoint = Endpoint { host: "localhost".into(), port: p.broker.tls_addr().expect("tls on").port() };
    let (lat_tx, lat_rx) = flume::unbounded::<f64>();
    let mut links = Vec::new();
    for c in &creds {
        links.push(Arc::new(DeviceLink::connect(c, &endpoint, LinkOptions::default(), Some(lat_tx.clone()))?));
    }
    let t0 = Instant::now();
    while links.iter().any(|l| !l.stats().connected) {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("devices did not connect within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("bench ingest: {} devices connected; {} samples/message; warm-up {} s", links.len(), spm, a.warmup);

    let running = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for l in &links {
        let (l, running, metrics, window) = (l.clone(), running.clone(), metrics.clone(), a.window);
        tasks.push(tokio::spawn(async move {
            let mut last_ms = 0i64;
            while running.load(Ordering::Relaxed) {
                if l.stats().unacked >= window {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let mut samples = Vec::with_capacity(per_ts * METRICS);
                for _ in 0..per_ts {
                    // Unique, increasing device times (ms resolution on the wire).
                    last_ms = Utc::now().timestamp_millis().max(last_ms + 1);
                    let ts = Utc.timestamp_millis_opt(last_ms).unwrap();
                    for (k, m) in metrics.iter().enumerate() {
                        samples.push(Sample { ts, metric: m.clone(), value: (last_ms % 1000) as f64 + k as f64 });
                    }
                }
                if l.publish(samples).await.is_err() {
                    break;
                }
            }
        }));
    }
    let acked = |links: &[Arc<DeviceLink>]| links.iter().map(|l| l.stats().acked).sum::<u64>();
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    while lat_rx.try_recv().is_ok() {}
    let start_acked = acked(&links);
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut next_report = Instant::now() + Duration::from_secs(5);
    while start.elapsed() < Duration::from_secs(a.duration) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        latencies.extend(lat_rx.try_iter());
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(5);
            let n = (acked(&links) - start_acked) * spm as u64;
            eprintln!(
                "  {:>3.0} s  {:>10} samples acknowledged  {:>9.0} samples/s",
                start.elapsed().as_secs_f64(),
                n,
                n as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let measured = (acked(&links) - start_acked) * spm as u64;
    running.store(false, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    for l in &links {
        l.flush(Duration::from_secs(30)).await;
    }
    let sent_batches: u64 = links.iter().map(|l| l.stats().sent).sum();
    let acked_batches: u64 = acked(&links);
    let stored = store.sample_count().await? as u64;
    let samples_per_sec = measured as f64 / elapsed;
    let (p50, p99) = (percentile(&mut latencies, 50.0), percentile(&mut latencies, 99.0));
    for l in links {
        if let Ok(l) = Arc::try_unwrap(l) {
            l.abort();
        }
    }
    eprintln!("bench ingest: pipeline {samples_per_sec:.0} samples/s; measuring the COPY ceiling on {stored} rows");

    let ceiling = copy_ceiling(cfg, store, stored as usize, cfg.ingest.batch_max_rows, cfg.ingest.writers).await?;
    eprintln!("bench ingest: COPY ceiling {ceiling:.0} samples/s");
    Ok(json!({
        "samples_per_sec": round(samples_per_sec, 0),
        "latency_p50_ms": round(p50, 1),
        "latency_p99_ms": round(p99, 1),
        "copy_ceiling_samples_per_sec": round(ceiling, 0),
        "ratio": round(samples_per_sec / ceiling, 3),
        "devices": a.devices,
        "samples_per_message": spm,
        "duration_s": round(elapsed, 1),
        "batches_sent": sent_batches,
        "batches_acked": acked_batches,
        "samples_stored": stored,
        "samples_acked": acked_batches * spm as u64,
        "duplicates_skipped": offsite_ingest::metrics::DUPLICATES.get(),
        "writers": cfg.ingest.writers,
        "batch_max_rows": cfg.ingest.batch_max_rows,
    }))
}

/// Binary COPY of `n` rows shaped like the pipeline's (same devices, metrics, time pattern) into an
/// empty table with the samples table's definition, indexes and partitioning, in chunks of the
/// pipeline's batch size over the same number of connections, each chunk its own commit.
pub(super) async fn copy_ceiling(
    _cfg: &Config,
    store: &offsite_store::Store,
    n: usize,
    chunk: usize,
    conns: usize,
) -> Result<f64> {
    let pool = store.pool();
    pool.execute("DROP TABLE IF EXISTS bench_ceiling").await?;
    pool.execute("CREATE TABLE bench_ceiling (LIKE samples INCLUDING ALL) PARTITION BY RANGE (ts)").await?;
    let (lo, hi): (Option<chrono::DateTime<Utc>>, Option<chrono::DateTime<Utc>>) =
        sqlx::query_as("SELECT min(ts), max(ts) FROM samples").fetch_one(pool).await?;
    let lo = lo.unwrap_or_else(Utc::now).date_naive();
    let hi = hi.unwrap_or_else(Utc::now).date_naive();
    let mut d = lo;
    while d <= hi {
        let next = d + chrono::Duration::days(1);
        pool.execute(
            format!(
                "CREATE TABLE bench_ceiling_{} PARTITION OF bench_ceiling FOR VALUES FROM ('{d} 00:00:00+00') TO ('{next} 00:00:00+00')",
                d.format("%Y%m%d")
            )
            .as_str(),
        )
        .await?;
        d = next;
    }
    // The stored rows themselves, so the ceiling loads exactly what the pipeline loaded.
    let rows: Vec<(i32, i32, chrono::DateTime<Utc>, chrono::DateTime<Utc>, f64, i16)> = sqlx::query_as(
        "SELECT device_key, metric_id, ts, received_at, value, quality FROM samples ORDER BY received_at LIMIT $1",
    )
    .bind(n as i64)
    .fetch_all(pool)
    .await?;
    let rows: Vec<SampleRow> = rows
        .into_iter()
        .map(|(device_key, metric_id, ts, received_at, value, quality)| SampleRow {
            device_key,
            metric_id,
            ts,
            received_at,
            value,
            quality,
        })
        .collect();
    let chunks: Vec<Vec<u8>> = rows.chunks(chunk.max(1)).map(encode_copy).collect();
    let queue = Arc::new(std::sync::Mutex::new(chunks.into_iter()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns.max(1) {
        let (pool, queue) = (pool.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            loop {
                let Some(buf) = queue.lock().unwrap().next() else { break };
                conn.execute("BEGIN").await?;
                let mut c = conn
                    .copy_in_raw(
                        "COPY bench_ceiling (device_key, metric_id, ts, received_at, value, quality) FROM STDIN (FORMAT binary)",
                    )
                    .await?;
                c.send(buf).await?;
                c.finish().await?;
                conn.execute("COMMIT").await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    pool.execute("DROP TABLE bench_ceiling").await?;
    Ok(rows.len() as f64 / secs)
}
