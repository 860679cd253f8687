//! `offsite bench hj212`: many HJ 212 data loggers on their own TCP connections, each uploading
//! real-time data (CN 2011, Flag=5) at a fixed interval; figures are packets answered with 9014
//! (sent only after the commit), samples committed to PostgreSQL, and the send -> 9014 time.
//!
//! The load generator is this binary again (`offsite bench hj212-load`, hidden), so its CPU and
//! file descriptors are its own: the platform's figures are not inflated by sharing a runtime with
//! 2,000 client sockets, and the CPU each side uses can be read from `/proc` separately.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use offsite_hj212::{utc_to_beijing, Flag, Framer, Packet, MAX_DATA_LEN};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::support::{free_port, percentile, round, scratch_dir};
use crate::configuration::Config;
use crate::startup::AllInOne;

/// Pollutant and weather codes of an air/dust station (hj212.md), the first `--metrics` are sent.
const CODES: &[&str] = &[
    "a34002", "a34004", "a01001", "a01002", "a01007", "a01008", "a34001", "a01006", "a21026",
    "a21004",
];
const PW: &str = "bench212";
const MN_PREFIX: &str = "BENCH212";

#[derive(clap::Args)]
pub struct Args {
    /// Loggers, each its own TCP connection.
    #[arg(long, default_value_t = 2000)]
    loggers: usize,
    /// Each logger uploads one real-time packet this often.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Pollutants per packet (each `<code>-Rtd` with `<code>-Flag=N`), at most 10.
    #[arg(long, default_value_t = 4)]
    metrics: usize,
    /// Halve the interval round after round until the gateway no longer answers what is offered.
    #[arg(long)]
    find_max: bool,
    /// Accepted for symmetry; the JSON line is always printed last.
    #[arg(long)]
    json: bool,
}

/// What the load generator is told (also its hidden command line).
#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    #[arg(long)]
    pub addr: SocketAddr,
    #[arg(long)]
    pub loggers: usize,
    #[arg(long)]
    pub interval_ms: u64,
    #[arg(long)]
    pub warmup: u64,
    #[arg(long)]
    pub seconds: u64,
    #[arg(long)]
    pub metrics: usize,
}

pub fn mn(i: usize) -> String {
    format!("{MN_PREFIX}{i:08}")
}

pub async fn run(base: Config, a: Args) -> Result<()> {
    if a.metrics == 0 || a.metrics > CODES.len() {
        bail!("--metrics must be 1..={}", CODES.len());
    }
    if a.interval_ms == 0 || a.loggers == 0 {
        bail!("--interval-ms and --loggers must be positive");
    }
    let dir = scratch_dir("hj212")?;
    let mut cfg = base;
    cfg.data_dir = dir.path().to_path_buf();
    cfg.database.url = None;
    // The all-in-one platform as `offsite up` runs it; the broker only serves its own (idle) ports.
    cfg.broker.tls_listen = Some(format!("127.0.0.1:{}", free_port()?).parse()?);
    cfg.broker.plain_listen = Some(format!("127.0.0.1:{}", free_port()?).parse()?);
    cfg.portal.listen = Some("127.0.0.1:0".parse()?);
    cfg.portal.https_listen = None;
    cfg.hj212.enabled = true;
    cfg.hj212.listen = "127.0.0.1:0".into();
    cfg.hj212.max_connections = cfg.hj212.max_connections.max(a.loggers + 100);
    let p = AllInOne::start(&cfg).await?;
    let r = measure(&cfg, &p, &a).await;
    p.stop().await?;
    let out = r?;
    println!("{out}");
    Ok(())
}

async fn measure(cfg: &Config, p: &AllInOne, a: &Args) -> Result<serde_json::Value> {
    let store = p.db.store.clone();
    let addr = p
        .hj212
        .as_ref()
        .context("the HJ 212 gateway is off")?
        .local_addr();
    eprintln!("bench hj212: registering {} loggers", a.loggers);
    let t = Instant::now();
    // Through the same store call as `offsite device add --hj212` (same PW digest), 16 at a time.
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (store, next, n) = (store.clone(), next.clone(), a.loggers as u64);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                store
                    .insert_hj212_logger(&format!("压测数采仪 {i}"), None, &mn(i as usize), PW)
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    eprintln!(
        "bench hj212: registered in {:.1} s; gateway on {addr}",
        t.elapsed().as_secs_f64()
    );

    let mut rounds = Vec::new();
    let mut interval_ms = a.interval_ms;
    loop {
        let load = LoadArgs {
            addr,
            loggers: a.loggers,
            interval_ms,
            warmup: a.warmup,
            seconds: a.seconds,
            metrics: a.metrics,
        };
        let r = round_with_child(
            &store,
            &cfg.data_dir.join("postgres").join("postmaster.pid"),
            &load,
        )
        .await?;
        let keeps_up = keeps_up(&r);
        rounds.push(r);
        if !a.find_max || !keeps_up || interval_ms <= 10 {
            break;
        }
        interval_ms /= 2;
    }
    // The figure is the fastest round that kept up (or the only one).
    let best = rounds
        .iter()
        .filter(|r| keeps_up(r))
        .max_by(|x, y| {
            x["packets_per_sec"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&y["packets_per_sec"].as_f64().unwrap_or(0.0))
        })
        .unwrap_or(&rounds[0])
        .clone();
    let stored = store.sample_count().await? as usize;
    eprintln!("bench hj212: measuring the COPY ceiling on {stored} rows");
    let ceiling = super::ingest::copy_ceiling(
        cfg,
        &store,
        stored,
        cfg.ingest.batch_max_rows,
        cfg.ingest.writers,
    )
    .await?;
    let mut out = best;
    let samples = out["samples_per_sec"].as_f64().unwrap_or(0.0);
    out["copy_ceiling_samples_per_sec"] = json!(round(ceiling, 0));
    out["ratio_to_copy_ceiling"] = json!(round(samples / ceiling, 4));
    if a.find_max {
        out["rounds"] = json!(rounds);
    }
    out["writers"] = json!(cfg.ingest.writers);
    out["batch_max_rows"] = json!(cfg.ingest.batch_max_rows);
    out["batch_max_delay_ms"] = json!(cfg.ingest.batch_max_delay_ms);
    Ok(out)
}

/// Whether the gateway kept up with a round's offered load: (almost) every packet answered, the
/// answered rate within 5% of the offered one, and 99% of replies within a second. The batch timer
/// (100 ms) puts a floor under reply times, so they are not compared with the interval.
fn keeps_up(r: &serde_json::Value) -> bool {
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    f("answered_ratio") >= 0.98
        && f("packets_per_sec") >= 0.95 * f("offered_packets_per_sec")
        && f("reply_p99_ms") < 1000.0
}

/// One measured round: the load generator as a child process, the database counted by this one.
async fn round_with_child(
    store: &offsite_store::Store,
    postmaster_pid: &Path,
    l: &LoadArgs,
) -> Result<serde_json::Value> {
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(["bench", "hj212-load", "--addr", &l.addr.to_string()])
        .args([
            "--loggers",
            &l.loggers.to_string(),
            "--interval-ms",
            &l.interval_ms.to_string(),
        ])
        .args([
            "--warmup",
            &l.warmup.to_string(),
            "--seconds",
            &l.seconds.to_string(),
        ])
        .args(["--metrics", &l.metrics.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the load generator")?;
    let child_pid = child.id().unwrap_or(0);
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut window: Option<Snapshot> = None;
    let mut measured: Option<(Snapshot, Snapshot)> = None;
    let mut report: Option<serde_json::Value> = None;
    while let Some(line) = lines.next_line().await? {
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("load generator said {line:?}"))?;
        match v["phase"].as_str() {
            Some("measuring") => {
                window = Some(Snapshot::take(store, child_pid, postmaster_pid).await?)
            }
            Some("ended") => {
                let from = window
                    .take()
                    .context("load generator ended before measuring")?;
                let to = Snapshot::take(store, child_pid, postmaster_pid).await?;
                measured = Some((from, to));
            }
            _ => report = Some(v),
        }
    }
    let status = child.wait().await?;
    if !status.success() {
        bail!("load generator failed: {status}");
    }
    let (from, to) = measured.context("load generator never ended its window")?;
    let secs = (to.at - from.at).as_secs_f64();
    let per_sec = |a: f64, b: f64| round((b - a) / secs, 2);
    let rows = to.rows - from.rows;
    let batches = to.batches - from.batches;
    let mut r = report.context("load generator printed no report")?;
    // Rows committed while the window was open: what the database sustained.
    r["samples_per_sec"] = json!(round(rows as f64 / secs, 0));
    r["samples_committed_in_window"] = json!(rows);
    r["cpu_cores_platform"] = json!(per_sec(from.platform, to.platform));
    r["cpu_cores_postgres"] = json!(per_sec(from.postgres, to.postgres));
    r["cpu_cores_load_generator"] = json!(per_sec(from.generator, to.generator));
    r["cpu_cores_machine"] = json!(per_sec(from.machine, to.machine));
    r["commits_per_sec"] = json!(round(batches as f64 / secs, 1));
    if batches > 0 {
        r["rows_per_commit"] = json!(round((to.batch_rows - from.batch_rows) / batches as f64, 1));
        r["commit_ms_mean"] = json!(round(
            (to.batch_secs - from.batch_secs) * 1000.0 / batches as f64,
            2
        ));
    }
    r["duplicates_skipped"] = json!(offsite_ingest::metrics::DUPLICATES.get());
    eprintln!(
        "bench hj212: interval {} ms: {} packets/s answered, {} samples/s committed, p99 {} ms",
        l.interval_ms, r["packets_per_sec"], r["samples_per_sec"], r["reply_p99_ms"]
    );
    Ok(r)
}

/// Counters at one instant: committed rows and ingest's batch histograms (per-stage figures), and
/// CPU seconds used by this process (gateway, ingest, the idle rest of the platform), by the load
/// generator, by PostgreSQL (postmaster and its backends) and by the whole machine (which adds
/// whatever else runs on it).
struct Snapshot {
    at: Instant,
    rows: i64,
    batches: u64,
    batch_rows: f64,
    batch_secs: f64,
    platform: f64,
    generator: f64,
    postgres: f64,
    machine: f64,
}

impl Snapshot {
    async fn take(
        store: &offsite_store::Store,
        child: u32,
        postmaster_pid: &Path,
    ) -> Result<Snapshot> {
        let at = Instant::now();
        let rows = store.sample_count().await?;
        let pm: Option<u32> = std::fs::read_to_string(postmaster_pid)
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse().ok());
        let postgres = pm.map_or(0.0, |pm| {
            let mut sum = 0.0;
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                if let Some((ppid, cpu)) = proc_stat(&pid.to_string()) {
                    if pid == pm || ppid == pm {
                        sum += cpu;
                    }
                }
            }
            sum
        });
        use offsite_ingest::metrics::{BATCH_ROWS, BATCH_SECONDS};
        Ok(Snapshot {
            at,
            rows,
            batches: BATCH_ROWS.get_sample_count(),
            batch_rows: BATCH_ROWS.get_sample_sum(),
            batch_secs: BATCH_SECONDS.get_sample_sum(),
            platform: proc_stat("self").map_or(0.0, |x| x.1),
            generator: proc_stat(&child.to_string()).map_or(0.0, |x| x.1),
            postgres,
            machine: machine_cpu(),
        })
    }
}

/// USER_HZ on Linux.
const TICKS: f64 = 100.0;

/// (parent pid, CPU seconds) of a process from `/proc/<pid>/stat`.
fn proc_stat(pid: &str) -> Option<(u32, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that ends the command name: ppid is the 2nd, utime the 12th, stime the 13th.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((f.get(1)?.parse().ok()?, (t(11)? + t(12)?) / TICKS))
}

/// CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq, steal).
fn machine_cpu() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let v: Vec<f64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse::<f64>().unwrap_or(0.0))
        .collect();
    [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| v.get(i))
        .sum::<f64>()
        / TICKS
}

/// `offsite bench hj212-load`: prints `{"phase":"measuring"}`, `{"phase":"ended"}` and the report
/// as JSON lines on stdout.
pub async fn load_main(l: LoadArgs) -> Result<()> {
    let emit = |v: serde_json::Value| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    };
    let report = drive(&l, |phase| emit(json!({ "phase": phase }))).await?;
    emit(report.to_json(&l));
    Ok(())
}

/// What the load generator observed.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub connected: usize,
    /// Loggers whose connection was open at the end and answered a last packet with 9014.
    pub answering_at_end: usize,
    pub sent_in_window: u64,
    /// Packets sent in the measured window that got their 9014.
    pub answered_in_window: u64,
    pub answered_total: u64,
    pub sent_total: u64,
    /// 9011 refusals (login or data).
    pub refused: u64,
    /// Connect, read and write failures, closed connections, unexpected frames.
    pub errors: u64,
    pub window_s: f64,
    pub latencies_ms: Vec<f64>,
}

impl LoadReport {
    fn to_json(&self, l: &LoadArgs) -> serde_json::Value {
        let mut lat = self.latencies_ms.clone();
        let offered = l.loggers as f64 * 1000.0 / l.interval_ms as f64;
        let pps = self.answered_in_window as f64 / self.window_s.max(1e-9);
        json!({
            "connections": self.answering_at_end,
            "loggers": l.loggers,
            "connected": self.connected,
            "interval_ms": l.interval_ms,
            "metrics_per_packet": l.metrics,
            "offered_packets_per_sec": round(offered, 0),
            "packets_per_sec": round(pps, 0),
            "answered_ratio": round(if self.sent_in_window == 0 { 0.0 } else { self.answered_in_window as f64 / self.sent_in_window as f64 }, 4),
            "reply_p50_ms": round(percentile(&mut lat, 50.0), 2),
            "reply_p99_ms": round(percentile(&mut lat, 99.0), 2),
            "reply_max_ms": round(percentile(&mut lat, 100.0), 2),
            "packets_sent_in_window": self.sent_in_window,
            "packets_answered_in_window": self.answered_in_window,
            "packets_sent": self.sent_total,
            "packets_answered": self.answered_total,
            "refused": self.refused,
            "errors": self.errors,
            "duration_s": round(self.window_s, 1),
        })
    }
}

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    answering_at_end: AtomicU64,
    sent_in_window: AtomicU64,
    answered_in_window: AtomicU64,
    sent_total: AtomicU64,
    answered_total: AtomicU64,
    refused: AtomicU64,
    errors: AtomicU64,
}

/// Phases shared by every logger task (instants fixed before the first packet).
#[derive(Clone, Copy)]
struct Schedule {
    measure_from: Instant,
    measure_to: Instant,
    interval: Duration,
}

/// Connects `l.loggers` loggers, lets them upload through warm-up and the measured window, then has
/// each send one last packet and wait for its 9014. `phase` is called with "measuring" and "ended".
pub async fn drive(l: &LoadArgs, phase: impl Fn(&'static str)) -> Result<LoadReport> {
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    // Connecting 2,000 at once would overflow the listen backlog; a few hundred in flight is plenty.
    let connecting = Arc::new(Semaphore::new(256));
    let interval = Duration::from_millis(l.interval_ms);
    let start = Instant::now();
    // Every logger connects and logs in during the warm-up; the warm-up is at least long enough for that.
    let measure_from = start + Duration::from_secs(l.warmup.max(1));
    let sched = Schedule {
        measure_from,
        measure_to: measure_from + Duration::from_secs(l.seconds.max(1)),
        interval,
    };
    let mut tasks = Vec::with_capacity(l.loggers);
    for i in 0..l.loggers {
        let (counters, latencies, connecting, l) = (
            counters.clone(),
            latencies.clone(),
            connecting.clone(),
            l.clone(),
        );
        // Spread the loggers evenly over one interval, as real loggers' clocks are.
        let phase_offset = interval.mul_f64(i as f64 / l.loggers as f64);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = logger(
                i,
                &l,
                sched,
                phase_offset,
                &counters,
                &latencies,
                &connecting,
            )
            .await
            {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("bench hj212-load: logger {i}: {e:#}");
            }
        }));
    }
    tokio::time::sleep_until(sched.measure_from.into()).await;
    phase("measuring");
    let mut next_report = Instant::now() + Duration::from_secs(5);
    while Instant::now() < sched.measure_to {
        tokio::time::sleep(
            Duration::from_millis(100)
                .min(sched.measure_to.saturating_duration_since(Instant::now())),
        )
        .await;
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(5);
            let secs = sched.measure_from.elapsed().as_secs_f64();
            eprintln!(
                "  {:>3.0} s  {} connected  {:>8.0} packets/s answered",
                secs,
                counters.connected.load(Ordering::Relaxed),
                counters.answered_in_window.load(Ordering::Relaxed) as f64 / secs
            );
        }
    }
    phase("ended");
    for t in tasks {
        let _ = t.await;
    }
    let c = &counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let latencies_ms = std::mem::take(&mut *latencies.lock().unwrap());
    Ok(LoadReport {
        connected: get(&c.connected) as usize,
        answering_at_end: get(&c.answering_at_end) as usize,
        sent_in_window: get(&c.sent_in_window),
        answered_in_window: get(&c.answered_in_window),
        answered_total: get(&c.answered_total),
        sent_total: get(&c.sent_total),
        refused: get(&c.refused),
        errors: get(&c.errors),
        window_s: (sched.measure_to - sched.measure_from).as_secs_f64(),
        latencies_ms,
    })
}

/// One logger: connect, upload on its schedule, match each 9014 to its packet by QN.
async fn logger(
    i: usize,
    l: &LoadArgs,
    sched: Schedule,
    phase_offset: Duration,
    c: &Counters,
    latencies: &Mutex<Vec<f64>>,
    connecting: &Semaphore,
) -> Result<()> {
    let stream = {
        let _slot = connecting.acquire().await?;
        TcpStream::connect(l.addr).await.context("connecting")?
    };
    stream.set_nodelay(true)?;
    c.connected.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = stream.into_split();
    let mn = mn(i);
    // QN -> (sent at, sent inside the measured window).
    let pending: Mutex<HashMap<String, (Instant, bool)>> = Mutex::new(HashMap::new());
    let final_qn: Mutex<Option<String>> = Mutex::new(None);
    let (final_answered_tx, final_answered_rx) = tokio::sync::oneshot::channel::<()>();

    let reader = async {
        let mut final_answered_tx = Some(final_answered_tx);
        let mut framer = Framer::new(MAX_DATA_LEN);
        let mut buf = vec![0u8; 4096];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                bail!("the gateway closed the connection");
            }
            framer.push(&buf[..n]);
            while let Some(frame) = framer.next_frame() {
                let p = Packet::parse(&frame.context("bad frame from the gateway")?)
                    .context("bad packet from the gateway")?;
                let qn = p.qn.clone().unwrap_or_default();
                match p.cn.as_str() {
                    "9014" => {
                        let Some((at, in_window)) = pending.lock().unwrap().remove(&qn) else {
                            bail!("9014 for a QN never sent: {qn}");
                        };
                        c.answered_total.fetch_add(1, Ordering::Relaxed);
                        if in_window {
                            c.answered_in_window.fetch_add(1, Ordering::Relaxed);
                            latencies
                                .lock()
                                .unwrap()
                                .push(at.elapsed().as_secs_f64() * 1000.0);
                        }
                        if final_qn.lock().unwrap().as_deref() == Some(qn.as_str()) {
                            if let Some(tx) = final_answered_tx.take() {
                                let _ = tx.send(());
                            }
                            return Ok(());
                        }
                    }
                    "9011" => {
                        c.refused.fetch_add(1, Ordering::Relaxed);
                        bail!("refused: {}", p.cp);
                    }
                    other => bail!("unexpected CN {other} from the gateway"),
                }
            }
        }
    };
    let writer = async {
        let mut tick =
            tokio::time::interval_at((Instant::now() + phase_offset).into(), sched.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_ms = 0i64;
        let mut n = 0u64;
        loop {
            tick.tick().await;
            let now = Instant::now();
            let last = now >= sched.measure_to;
            // DataTime with milliseconds: intervals under a second must not collide on (device, metric, ts).
            last_ms = Utc::now().timestamp_millis().max(last_ms + 1);
            let t = chrono::DateTime::from_timestamp_millis(last_ms).expect("now is representable");
            let qn = utc_to_beijing(t, true);
            let bytes = upload(&qn, &mn, t, l.metrics, n)?;
            n += 1;
            let in_window = now >= sched.measure_from && now < sched.measure_to;
            if last {
                *final_qn.lock().unwrap() = Some(qn.clone());
            }
            pending
                .lock()
                .unwrap()
                .insert(qn, (Instant::now(), in_window));
            wr.write_all(&bytes).await.context("writing")?;
            c.sent_total.fetch_add(1, Ordering::Relaxed);
            if in_window {
                c.sent_in_window.fetch_add(1, Ordering::Relaxed);
            }
            if last {
                return Ok::<_, anyhow::Error>(());
            }
        }
    };
    let both = async {
        tokio::try_join!(reader, writer)?;
        Ok::<_, anyhow::Error>(())
    };
    // The last packet's answer must come within 30 s (the standard's timeout x 3).
    let end_by = sched.measure_to + sched.interval + Duration::from_secs(30);
    match tokio::time::timeout_at(end_by.into(), both).await {
        Ok(r) => r?,
        Err(_) => bail!("no 9014 for the last packet within 30 s"),
    }
    if final_answered_rx.await.is_ok() {
        c.answering_at_end.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// One CN 2011 upload with `metrics` values, each flagged N.
fn upload(qn: &str, mn: &str, t: chrono::DateTime<Utc>, metrics: usize, n: u64) -> Result<Vec<u8>> {
    let mut cp = format!("DataTime={}", utc_to_beijing(t, true));
    for (k, code) in CODES.iter().take(metrics).enumerate() {
        // Values that vary, so nothing can be answered from a cache.
        let v = 10.0 + k as f64 + (n % 100) as f64 / 10.0;
        cp.push_str(&format!(";{code}-Rtd={v:.1},{code}-Flag=N"));
    }
    let p = Packet {
        qn: Some(qn.to_owned()),
        st: Some("22".into()),
        cn: "2011".into(),
        pw: Some(PW.into()),
        mn: mn.to_owned(),
        flag: Some(Flag(5)),
        pnum: None,
        pno: None,
        cp,
    };
    Ok(p.encode()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use offsite_ingest::hj212::{Hj212Config, Hj212Gateway};
    use offsite_ingest::{AckSink, CameraSink, Ingest, IngestConfig};
    use offsite_store::testing::TestDb;

    /// Ingest and the gateway on the test cluster, with `registered` of the bench's loggers known.
    async fn platform(
        registered: usize,
    ) -> (
        TestDb,
        Ingest,
        Hj212Gateway,
        flume::Sender<offsite_ingest::Incoming>,
    ) {
        let db = TestDb::new().await.unwrap();
        let (source, rx) = flume::bounded(16);
        let (acks, _) = flume::unbounded();
        let icfg = IngestConfig {
            batch_max_delay_ms: 20,
            ..IngestConfig::default()
        };
        let cameras = CameraSink {
            files: None,
            live: None,
        };
        let gate = offsite_ingest::DeviceGate::new(&icfg);
        let ingest = Ingest::start(
            db.store.clone(),
            icfg,
            rx,
            AckSink::Link(acks),
            None,
            cameras,
            gate,
        )
        .await
        .unwrap();
        let gcfg = Hj212Config {
            listen: "127.0.0.1:0".into(),
            ..Hj212Config::default()
        };
        let gateway = Hj212Gateway::start(db.store.clone(), gcfg, ingest.gateway_sink())
            .await
            .unwrap();
        for i in 0..registered {
            db.store
                .insert_hj212_logger(&format!("压测数采仪 {i}"), None, &mn(i), PW)
                .await
                .unwrap();
        }
        (db, ingest, gateway, source)
    }

    fn plan(addr: SocketAddr, loggers: usize) -> LoadArgs {
        LoadArgs {
            addr,
            loggers,
            interval_ms: 200,
            warmup: 1,
            seconds: 2,
            metrics: 3,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_packet_gets_its_9014_and_its_rows() {
        let (db, ingest, gateway, _source) = platform(4).await;
        let phases = Mutex::new(Vec::new());
        let r = drive(&plan(gateway.local_addr(), 4), |p| {
            phases.lock().unwrap().push(p)
        })
        .await
        .unwrap();
        assert_eq!(*phases.lock().unwrap(), ["measuring", "ended"]);
        assert_eq!(
            (r.connected, r.answering_at_end, r.refused, r.errors),
            (4, 4, 0, 0),
            "{r:?}"
        );
        assert!(r.sent_in_window >= 4 * 5, "{r:?}");
        assert_eq!(r.answered_total, r.sent_total, "{r:?}");
        assert_eq!(r.answered_in_window, r.sent_in_window, "{r:?}");
        assert_eq!(r.latencies_ms.len() as u64, r.answered_in_window);
        // 9014 comes after the commit: every answered packet's values are in the table, once.
        let stored = db.store.sample_count().await.unwrap() as u64;
        assert_eq!(stored, r.answered_total * 3);
        let key = db.store.hj212_logger(&mn(0)).await.unwrap().unwrap().key;
        let latest: Vec<String> = db
            .store
            .device_latest(key)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.metric.to_string())
            .collect();
        for m in ["a34002-Rtd", "a34004-Rtd", "a01001-Rtd"] {
            assert!(latest.iter().any(|l| l == m), "{m} not among {latest:?}");
        }
        gateway.shutdown().await;
        ingest.shutdown().await;
    }

    #[test]
    fn uploads_parse_back_as_real_time_data_wanting_a_reply() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-27T02:00:00.123Z")
            .unwrap()
            .to_utc();
        let bytes = upload("20261127100000123", &mn(7), t, 4, 3).unwrap();
        let mut f = Framer::new(MAX_DATA_LEN);
        f.push(&bytes);
        let p = Packet::parse(&f.next_frame().unwrap().unwrap()).unwrap();
        assert_eq!(
            (p.cn.as_str(), p.mn.as_str(), p.reply_wanted()),
            ("2011", "BENCH21200000007", true)
        );
        let cp = p.parse_cp().unwrap();
        assert_eq!(cp.data_time, Some(t));
        let names: Vec<String> = cp
            .values
            .iter()
            .map(|v| format!("{}-{}", v.code, v.suffix))
            .collect();
        assert_eq!(
            names,
            ["a34002-Rtd", "a34004-Rtd", "a01001-Rtd", "a01002-Rtd"]
        );
        assert!(cp
            .values
            .iter()
            .all(|v| v.flag == Some(offsite_hj212::DataFlag::Normal)));
    }

    #[test]
    fn keeping_up_needs_answers_rate_and_reply_time() {
        let r = |ratio: f64, pps: f64, p99: f64| json!({"answered_ratio": ratio, "packets_per_sec": pps, "offered_packets_per_sec": 8000.0, "reply_p99_ms": p99});
        assert!(keeps_up(&r(1.0, 7818.0, 587.0)));
        assert!(!keeps_up(&r(0.97, 7818.0, 587.0)));
        assert!(!keeps_up(&r(1.0, 7000.0, 587.0)));
        assert!(!keeps_up(&r(1.0, 7818.0, 1500.0)));
        assert!(!keeps_up(&json!({})));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unregistered_logger_counts_as_refused_not_answering() {
        let (_db, ingest, gateway, _source) = platform(2).await;
        let r = drive(&plan(gateway.local_addr(), 3), |_| {}).await.unwrap();
        assert_eq!(
            (r.connected, r.answering_at_end, r.refused, r.errors),
            (3, 2, 1, 1),
            "{r:?}"
        );
        gateway.shutdown().await;
        ingest.shutdown().await;
    }
}
