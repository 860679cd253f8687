//! `offsite bench ingest --external-broker mosquitto`: the same device load through Debian's
//! mosquitto (started with the shipped configuration, `offsite_broker::mosquitto`) into one, then
//! two `offsite ingest` child processes sharing the stream (`$share`), next to the COPY ceiling
//! measured in the same run. CPU per process comes from /proc, so what bounds the figure shows.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{TimeZone, Utc};
use offsite_broker::mosquitto::{write_dir, Layout, CONF_FILE};
use offsite_edge_agent::{DeviceLink, Endpoint, LinkOptions};
use offsite_wire::{MetricKey, Sample};
use serde_json::json;

use super::{copy_ceiling, Args, METRICS};
use crate::bench::support::{free_port, round, scratch_dir};
use crate::configuration::Config;
use crate::startup::{self, Database};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ExternalBroker {
    /// Debian's mosquitto (single-threaded), with `deploy/mosquitto`'s configuration.
    Mosquitto,
}

/// A child process killed when dropped.
struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn run(base: Config, a: Args) -> Result<()> {
    let dir = scratch_dir("ingest-external")?;
    let mut cfg = base;
    cfg.data_dir = dir.path().to_path_buf();
    cfg.database.url = None;
    let db = Database::open(&cfg).await?;
    let r = measure(&cfg, &db, &a, dir.path()).await;
    db.close().await?;
    let out = r?;
    println!("{out}");
    Ok(())
}

async fn measure(cfg: &Config, db: &Database, a: &Args, dir: &Path) -> Result<serde_json::Value> {
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let pki = startup::pki(cfg)?;
    let internal = offsite_broker::internal_password(&cfg.data_dir)?;
    let (tls_port, internal_port) = (free_port()?, free_port()?);
    let conf_dir = dir.join("mosquitto");
    let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?
        .trim()
        .to_owned();
    let layout = Layout {
        device_bind: Some("127.0.0.1".into()),
        device_port: tls_port,
        internal_bind: "127.0.0.1".into(),
        internal_port,
        persistence_dir: conf_dir.join("data/"),
        conf_dir: conf_dir.clone(),
        run_as: Some(user),
    };
    write_dir(&pki, &layout, &conf_dir, &internal)?;
    std::fs::create_dir_all(&layout.persistence_dir)?;
    let mosquitto = KilledOnDrop(
        Command::new("mosquitto")
            .arg("-c")
            .arg(conf_dir.join(CONF_FILE))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto (install the mosquitto package)")?,
    );
    wait_port(internal_port).await?;
    wait_port(tls_port).await?;
    eprintln!("bench ingest: mosquitto on {tls_port} (TLS) / {internal_port} (internal)");

    let store = &db.store;
    let per_ts = a.samples_per_message.div_ceil(METRICS).max(1);
    let spm = per_ts * METRICS;
    eprintln!("bench ingest: provisioning {} devices", a.devices);
    let mut creds = Vec::new();
    for i in 0..a.devices {
        creds.push(
            offsite_broker::provision(store, &pki, &format!("bench-{i}"), None)
                .await?
                .1,
        );
    }
    let metrics: Vec<MetricKey> = (0..METRICS)
        .map(|m| MetricKey::parse(&format!("bench{m}")).unwrap())
        .collect();
    for m in &metrics {
        store.ensure_metric(m.as_str()).await?;
    }
    let endpoint = Endpoint {
        host: "localhost".into(),
        port: tls_port,
    };
    // Batches published before a replica subscribes are resent after this.
    let opts = LinkOptions {
        resend_after: Duration::from_secs(5),
        ..LinkOptions::default()
    };
    let mut links = Vec::new();
    for c in &creds {
        links.push((
            Arc::new(DeviceLink::connect(c, &endpoint, opts.clone(), None)?),
            Arc::new(AtomicI64::new(0)),
        ));
    }
    let t0 = Instant::now();
    while links.iter().any(|(l, _)| !l.stats().connected) {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("devices did not connect within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let postmaster = postmaster_pid(&cfg.data_dir);
    let mut phases = Vec::new();
    for replicas in [1usize, 2] {
        let replicas_running: Vec<KilledOnDrop> = (0..replicas)
            .map(|i| spawn_ingest(cfg, internal_port, dir, replicas, i))
            .collect::<Result<_>>()?;
        for i in 0..replicas {
            wait_connected(&dir.join(format!("ingest-{replicas}-{i}.log"))).await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut pids: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        pids.insert("mosquitto".into(), vec![mosquitto.0.id()]);
        pids.insert(
            "ingest".into(),
            replicas_running.iter().map(|k| k.0.id()).collect(),
        );
        pids.insert("load_generator".into(), vec![std::process::id()]);
        eprintln!(
            "bench ingest: {replicas} ingest replica(s); warm-up {} s, then {} s",
            a.warmup, a.duration
        );
        let (rate, cpu) = drive(&links, &metrics, per_ts, a, &pids, postmaster).await;
        eprintln!("bench ingest: {replicas} replica(s): {rate:.0} samples/s; CPU % {cpu}");
        for (l, _) in &links {
            l.flush(Duration::from_secs(60)).await;
        }
        drop(replicas_running);
        phases.push((rate, cpu));
    }
    let acked: u64 = links.iter().map(|(l, _)| l.stats().acked).sum();
    let unacked: u64 = links.iter().map(|(l, _)| l.stats().unacked).sum();
    let stored = store.sample_count().await? as u64;
    for (l, _) in links {
        if let Ok(l) = Arc::try_unwrap(l) {
            l.abort();
        }
    }
    drop(mosquitto);
    eprintln!("bench ingest: measuring the COPY ceiling on {stored} rows");
    let ceiling = copy_ceiling(
        cfg,
        store,
        stored as usize,
        cfg.ingest.batch_max_rows,
        cfg.ingest.writers,
    )
    .await?;
    let (one, two) = (phases[0].0, phases[1].0);
    Ok(json!({
        "external_broker": "mosquitto",
        "samples_per_sec_1_replica": round(one, 0),
        "samples_per_sec_2_replicas": round(two, 0),
        "scaling": round(two / one, 3),
        "copy_ceiling_samples_per_sec": round(ceiling, 0),
        "cpu_pct_1_replica": phases[0].1,
        "cpu_pct_2_replicas": phases[1].1,
        "devices": a.devices,
        "samples_per_message": spm,
        "duration_s": a.duration,
        "samples_acked": acked * spm as u64,
        "samples_stored": stored,
        "batches_unacked_at_end": unacked,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadavg_before": load_before.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "analytics_in_ingest": false,
    }))
}

/// One `offsite ingest` on the bench's data directory (so its embedded PostgreSQL) and mosquitto.
fn spawn_ingest(
    cfg: &Config,
    internal_port: u16,
    dir: &Path,
    replicas: usize,
    i: usize,
) -> Result<KilledOnDrop> {
    let log = std::fs::File::create(dir.join(format!("ingest-{replicas}-{i}.log")))?;
    let child = Command::new(std::env::current_exe()?)
        .arg("--data-dir")
        .arg(&cfg.data_dir)
        .arg("ingest")
        .env("OFFSITE_INTERNAL_MQTT__HOST", "127.0.0.1")
        .env("OFFSITE_INTERNAL_MQTT__PORT", internal_port.to_string())
        .env("OFFSITE_HJ212__ENABLED", "false")
        // Ingest alone: this measures the ingest pipeline (two replicas with in-process analytics
        // would also leave one of them analysing nothing: one in-process claimant per database).
        .env("OFFSITE_ANALYTICS__ENABLED", "false")
        .env("OFFSITE_INGEST__WRITERS", cfg.ingest.writers.to_string())
        // As in the default mode: this measures the pipeline's capacity, and each simulated device
        // sends more than the per-device budget would let a real one.
        .env("OFFSITE_INGEST__DEVICE_MAX_SAMPLES_PER_S", "0")
        .env(
            "OFFSITE_INGEST__BATCH_MAX_ROWS",
            cfg.ingest.batch_max_rows.to_string(),
        )
        .env("OFFSITE_LOG__FORMAT", "json")
        .env("RUST_LOG", "info,sqlx=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting offsite ingest")?;
    Ok(KilledOnDrop(child))
}

async fn wait_connected(log: &Path) -> Result<()> {
    let t0 = Instant::now();
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("ingest connected to broker")
    {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!(
                "offsite ingest did not connect to mosquitto within 60 s (see {})",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn wait_port(port: u16) -> Result<()> {
    let t0 = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("mosquitto did not listen on {port}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Every device sends as fast as its window allows; returns acknowledged samples per second over
/// the measured window and the CPU each group of processes used meanwhile (% of one core).
async fn drive(
    links: &[(Arc<DeviceLink>, Arc<AtomicI64>)],
    metrics: &[MetricKey],
    per_ts: usize,
    a: &Args,
    pids: &BTreeMap<String, Vec<u32>>,
    postmaster: Option<u32>,
) -> (f64, serde_json::Value) {
    let running = Arc::new(AtomicBool::new(true));
    let mut tasks = Vec::new();
    for (l, last) in links {
        let (l, last, running, metrics, window) = (
            l.clone(),
            last.clone(),
            running.clone(),
            metrics.to_vec(),
            a.window,
        );
        tasks.push(tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                if l.stats().unacked >= window {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let mut samples = Vec::with_capacity(per_ts * METRICS);
                for _ in 0..per_ts {
                    // Unique, increasing device times across both phases.
                    let ms = Utc::now()
                        .timestamp_millis()
                        .max(last.load(Ordering::Relaxed) + 1);
                    last.store(ms, Ordering::Relaxed);
                    let ts = Utc.timestamp_millis_opt(ms).unwrap();
                    for (k, m) in metrics.iter().enumerate() {
                        samples.push(Sample {
                            ts,
                            metric: m.clone(),
                            value: (ms % 1000) as f64 + k as f64,
                        });
                    }
                }
                if l.publish(samples).await.is_err() {
                    break;
                }
            }
        }));
    }
    let acked = || links.iter().map(|(l, _)| l.stats().acked).sum::<u64>();
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    let spm = (per_ts * METRICS) as u64;
    let (start_acked, start) = (acked(), Instant::now());
    let cpu0 = cpu_ticks(pids, postmaster);
    tokio::time::sleep(Duration::from_secs(a.duration)).await;
    let cpu1 = cpu_ticks(pids, postmaster);
    let elapsed = start.elapsed().as_secs_f64();
    let rate = ((acked() - start_acked) * spm) as f64 / elapsed;
    running.store(false, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let hz = clock_ticks_per_sec();
    let cpu: serde_json::Map<String, serde_json::Value> = cpu1
        .iter()
        .map(|(k, t1)| {
            let t0 = cpu0.get(k).copied().unwrap_or(0);
            (
                k.clone(),
                json!(round(
                    t1.saturating_sub(t0) as f64 / hz / elapsed * 100.0,
                    0
                )),
            )
        })
        .collect();
    (rate, serde_json::Value::Object(cpu))
}

/// User + system CPU ticks per group (and the embedded PostgreSQL's processes, found as the
/// postmaster and its children).
fn cpu_ticks(pids: &BTreeMap<String, Vec<u32>>, postmaster: Option<u32>) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = pids
        .iter()
        .map(|(k, ps)| {
            (
                k.clone(),
                ps.iter().filter_map(|p| stat(*p).map(|s| s.1)).sum(),
            )
        })
        .collect();
    if let Some(pm) = postmaster {
        let mut total = 0;
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if let Some((ppid, ticks)) = stat(pid) {
                    if pid == pm || ppid == pm {
                        total += ticks;
                    }
                }
            }
        }
        out.insert("postgres".into(), total);
    }
    out
}

/// (parent pid, utime + stime) from /proc/<pid>/stat.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((
        f.get(1)?.parse().ok()?,
        f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
    ))
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("postgres/postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}
