//! `offsite bench soak`: 10,000 devices, each its own MQTT/TLS connection, sending at half the
//! measured maximum ingest rate for N minutes, with a reconnect storm in the middle (every device
//! drops its connection at once and reconnects at once; `--storms K` spreads K of them evenly).
//! Proves that nothing is lost and nothing is stored twice, and watches each tier's memory.
//!
//! Every part runs in a process of its own: the broker (`offsite broker`), ingest with analytics
//! beside it (`offsite ingest`), an idle portal (`offsite portal`), the embedded PostgreSQL, and
//! the load generator (this binary again, `offsite bench soak-load`, hidden). 10,000 client
//! sockets and 10,000 server sockets do not fit under one process's open-files limit, and each
//! tier's resident memory can only be read apart when it is a process apart.
//!
//! Devices send like the edge agent (`DeviceLink`: batches with sequence numbers, resent until
//! acknowledged). Each sample's value is a function of its timestamp and metric, so the final
//! check can tell a stored value that was never sent from one that was.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{TimeZone, Utc};
use offsite_edge_agent::outbox::{MemoryOutbox, Outbox};
use offsite_edge_agent::queue::{Dropped, PendingInfo};
use offsite_edge_agent::{DeviceLink, Endpoint, LinkHooks, LinkOptions};
use offsite_store::{NewDevice, Store};
use offsite_wire::{DeviceCredentials, MetricKey, Sample};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{watch, Semaphore};

use super::support::{free_port, round, scratch_dir};
use crate::configuration::Config;
use crate::startup::{self, Database};

/// Metric keys are `soak0`, `soak1`, ...; a sample's value is `ts_ms % VALUE_MODULUS + k`.
const METRIC_PREFIX: &str = "soak";
const VALUE_MODULUS: i64 = 1_000_000;

#[derive(clap::Args)]
pub struct Args {
    /// Minutes at the steady rate (the reconnect storms fall inside it); fractions allowed.
    #[arg(long, default_value_t = 3.0)]
    minutes: f64,
    /// Reconnect storms, evenly spaced over the steady phase (with 3, at a quarter, half and three
    /// quarters of it). Memory is recorded just before each, to show whether it levels off.
    #[arg(long, default_value_t = 1)]
    storms: u32,
    /// Devices, each its own MQTT/TLS connection.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Steady rate in samples/s; default: half the maximum measured in the calibration phase.
    #[arg(long)]
    rate: Option<f64>,
    /// Calibration: seconds of sending as fast as the devices' windows allow, measured once a first
    /// full window of every device has been acknowledged. Skipped when `--rate` is given.
    #[arg(long, default_value_t = 20)]
    calibrate_seconds: u64,
    /// Samples per batch (one timestamp, this many metrics).
    #[arg(long, default_value_t = 10)]
    metrics: usize,
    /// Accepted for symmetry; the JSON line is always printed last.
    #[arg(long)]
    json: bool,
}

/// Device front processes for a broker admitting `connections` devices: none (the front runs in
/// the broker) while three descriptors per device stay well under 20,000, else enough processes
/// for two per device in each with room to spare.
fn front_processes(connections: usize) -> usize {
    const ROOM: usize = 16_000;
    if connections * 3 <= ROOM {
        0
    } else {
        (connections * 2).div_ceil(ROOM)
    }
}

/// What the load generator is told (also its hidden command line).
#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    /// JSON lines of `DeviceCredentials`.
    #[arg(long)]
    pub credentials: PathBuf,
    /// Where to write `{device id: samples sent}` after the drain.
    #[arg(long)]
    pub sent_out: PathBuf,
    /// The broker's MQTT/TLS port on localhost.
    #[arg(long)]
    pub port: u16,
    #[arg(long)]
    pub metrics: usize,
    /// Steady phase, seconds.
    #[arg(long)]
    pub seconds: f64,
    /// Warm-up inside the steady phase, seconds (memory growth is measured from its end).
    #[arg(long)]
    pub warmup_seconds: f64,
    #[arg(long)]
    pub calibrate_seconds: u64,
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub storms: u32,
}

pub async fn run(base: Config, a: Args) -> Result<()> {
    if a.devices == 0 || a.metrics == 0 || a.metrics > 64 || !(a.minutes > 0.0) {
        bail!("--devices and --minutes must be positive, --metrics 1..=64");
    }
    if a.rate.is_some_and(|r| !(r > 0.0)) {
        bail!("--rate must be positive");
    }
    if !(1..=100).contains(&a.storms) {
        bail!("--storms must be 1..=100");
    }
    let dir = scratch_dir("soak")?;
    let mut cfg = base;
    cfg.data_dir = dir.path().to_path_buf();
    cfg.database.url = None;
    // The parent starts the embedded cluster; the tier processes find it running and share it.
    let db = Database::open(&cfg).await?;
    let r = soak(&cfg, &db.store, &a).await;
    db.close().await?;
    if r.is_err() {
        // The tiers' logs are there.
        eprintln!("bench soak: keeping {}", dir.keep().display());
    }
    let out = r?;
    println!("{out}");
    let failed = out["samples_lost"].as_u64() != Some(0)
        || out["duplicates"].as_u64() != Some(0)
        || out["connections"].as_u64() != Some(a.devices as u64)
        || out["reconnects"].as_u64() != Some(a.devices as u64)
        || out["tier_panics"].as_u64() != Some(0);
    if failed {
        bail!("soak failed: samples lost, stored twice or never sent, devices not (re)connected, or a tier panicked");
    }
    Ok(())
}

/// The tier processes of one soak; killed when dropped.
struct Tiers {
    children: Vec<(&'static str, tokio::process::Child)>,
    /// Where each tier's `<tier>.log` is.
    logs: PathBuf,
}

impl Tiers {
    fn pid(&self, tier: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|(t, _)| *t == tier)
            .and_then(|(_, c)| c.id())
    }

    /// SIGTERM, then SIGKILL after 15 s; returns the tiers that had to be killed.
    async fn stop(mut self) -> Vec<&'static str> {
        for (_, c) in &self.children {
            if let Some(pid) = c.id() {
                let _ = tokio::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
        }
        let mut killed = Vec::new();
        for (tier, c) in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(15), c.wait())
                .await
                .is_err()
            {
                // What it was doing is the only clue: the scratch directory goes at the end.
                eprintln!(
                    "bench soak: {tier} did not stop within 15 s of SIGTERM; killing it. Its log ends:\n{}",
                    tail(&self.logs.join(format!("{tier}.log")))
                );
                let _ = c.kill().await;
                killed.push(*tier);
            }
        }
        killed
    }
}

async fn soak(cfg: &Config, store: &Store, a: &Args) -> Result<serde_json::Value> {
    let dir = &cfg.data_dir;
    let pki = startup::pki(cfg)?;
    let t = Instant::now();
    let metric_ids = ensure_metrics(store, a.metrics).await?;
    let creds_path = dir.join("soak-credentials.jsonl");
    provision(store, &pki, a.devices, &creds_path).await?;
    eprintln!(
        "bench soak: provisioned {} devices in {:.1} s",
        a.devices,
        t.elapsed().as_secs_f64()
    );

    let tls_port = free_port()?;
    let plain_port = free_port()?;
    let http_port = free_port()?;
    let env = [
        (
            "OFFSITE_BROKER__TLS_LISTEN",
            format!("127.0.0.1:{tls_port}"),
        ),
        (
            "OFFSITE_BROKER__PLAIN_LISTEN",
            format!("127.0.0.1:{plain_port}"),
        ),
        ("OFFSITE_BROKER__V5_LISTEN", "off".into()),
        (
            "OFFSITE_BROKER__MAX_CONNECTIONS",
            (a.devices + 1000).to_string(),
        ),
        // The broker's device front relays each device over a socket of its own to rumqttd: three
        // file descriptors per device in one process, more than the 20,000 allowed here for 10,000
        // devices. In front processes of their own each needs two per device it admits.
        ("OFFSITE_BROKER__FRONT_PROCESSES", front_processes(a.devices + 1000).to_string()),
        ("OFFSITE_INTERNAL_MQTT__PORT", plain_port.to_string()),
        ("OFFSITE_PORTAL__LISTEN", format!("127.0.0.1:{http_port}")),
        ("OFFSITE_PORTAL__HTTPS_LISTEN", "off".into()),
        ("OFFSITE_HJ212__ENABLED", "false".into()),
    ];
    let mut tiers = Tiers {
        children: Vec::new(),
        logs: dir.to_path_buf(),
    };
    let started = async {
        for tier in ["broker", "ingest", "portal"] {
            let log = std::fs::File::create(dir.join(format!("{tier}.log")))?;
            let child = tokio::process::Command::new(std::env::current_exe()?)
                .arg("--data-dir")
                .arg(dir)
                .arg(tier)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .env_remove("OFFSITE_DATABASE_URL")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting `offsite {tier}`"))?;
            tiers.children.push((tier, child));
            match tier {
                "broker" => wait_for_port(tls_port, &dir.join("broker.log")).await?,
                "ingest" => wait_for_log(&dir.join("ingest.log"), "ingest running").await?,
                _ => wait_for_port(http_port, &dir.join("portal.log")).await?,
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = started {
        tiers.stop().await;
        return Err(e);
    }
    eprintln!("bench soak: broker, ingest and portal running as processes of their own");
    let r = drive_generator(cfg, store, a, &tiers, &creds_path, tls_port, &metric_ids).await;
    let killed = tiers.stop().await;
    // A panic in a tier is a failure even when the figures look right (a broker listener that
    // panicked accepts no device again).
    let mut r = r?;
    let mut panics = 0;
    for tier in ["broker", "ingest", "portal"] {
        let n = std::fs::read_to_string(dir.join(format!("{tier}.log")))
            .unwrap_or_default()
            .matches("panicked at")
            .count();
        if n > 0 {
            eprintln!(
                "bench soak: {tier} panicked {n} times:\n{}",
                tail(&dir.join(format!("{tier}.log")))
            );
        }
        panics += n;
    }
    r["tier_panics"] = json!(panics);
    r["tiers_killed"] = json!(killed);
    // What analytics ran beside ingest: the ONNX anomaly detector more than triples ingest's
    // memory (RELIABILITY.md "What the anomaly detector costs") and is off when its model or ONNX
    // Runtime is not found beside the binary, so ingest's figures compare only with this alike.
    let models = store.model_loads(100).await?;
    let current: Vec<&str> = models.iter().filter(|m| m.current).map(|m| m.detector.as_str()).collect();
    r["detector_models"] = json!(current);
    Ok(r)
}

async fn ensure_metrics(store: &Store, n: usize) -> Result<Vec<i32>> {
    let mut ids = Vec::with_capacity(n);
    for k in 0..n {
        ids.push(
            store
                .ensure_metric(&format!("{METRIC_PREFIX}{k}"))
                .await?
                .id,
        );
    }
    Ok(ids)
}

/// Registers `n` devices the way `offsite device add` does (certificate from the installation's
/// CA, token kept as its SHA-256) and writes their credentials as JSON lines. Certificates are
/// signed on the blocking pool, registrations go 16 at a time.
async fn provision(store: &Store, pki: &offsite_broker::Pki, n: usize, out: &Path) -> Result<()> {
    let (tx, rx) = flume::bounded::<(DeviceCredentials, offsite_broker::IssuedCert)>(1024);
    let signers = 4;
    let mut signing = Vec::new();
    for s in 0..signers {
        let (pki, tx) = (pki.clone(), tx.clone());
        signing.push(tokio::task::spawn_blocking(move || {
            for _ in (s..n).step_by(signers) {
                let id = offsite_broker::new_device_id();
                let cert = pki.issue_device(&id, offsite_broker::DEVICE_CERT_DAYS)?;
                let creds = DeviceCredentials {
                    device_id: id,
                    token: offsite_broker::new_token(),
                    cert_pem: cert.cert_pem.clone(),
                    key_pem: cert.key_pem.clone(),
                    ca_pem: pki.ca_pem().to_owned(),
                };
                if tx.send((creds, cert)).is_err() {
                    break;
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    drop(tx);
    let written = Arc::new(Mutex::new(std::io::BufWriter::new(std::fs::File::create(
        out,
    )?)));
    let mut registering = Vec::new();
    for _ in 0..16 {
        let (rx, store, written) = (rx.clone(), store.clone(), written.clone());
        registering.push(tokio::spawn(async move {
            while let Ok((c, cert)) = rx.recv_async().await {
                store
                    .insert_device(&NewDevice {
                        id: c.device_id.clone(),
                        name: format!("压测设备 soak {}", c.device_id),
                        object_id: None,
                        token_sha256: offsite_broker::token_digest(&c.token),
                        cert_serial: Some(cert.serial_hex),
                        cert_not_after: Some(cert.not_after),
                    })
                    .await?;
                let line = serde_json::to_string(&c)?;
                writeln!(written.lock().unwrap(), "{line}")?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for s in signing {
        s.await??;
    }
    for r in registering {
        r.await??;
    }
    written.lock().unwrap().flush()?;
    Ok(())
}

async fn wait_for_port(port: u16, log: &Path) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "nothing listens on port {port} after 60 s; log:\n{}",
        tail(log)
    )
}

async fn wait_for_log(log: &Path, needle: &str) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        if std::fs::read_to_string(log).is_ok_and(|s| s.contains(needle)) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{} never said {needle:?} within 60 s:\n{}",
        log.display(),
        tail(log)
    )
}

fn tail(log: &Path) -> String {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Resident memory of each tier, in MiB: VmRSS of the tier processes; for PostgreSQL the sum of
/// PSS over the postmaster and its backends (RSS would count shared buffers once per backend).
fn memory(
    tiers: &Tiers,
    postmaster_pid: &Path,
    generator: Option<u32>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for t in ["broker", "ingest", "portal"] {
        let v = tiers
            .pid(t)
            .and_then(|p| status_kib(p, "VmRSS:"))
            .map(|k| round(k as f64 / 1024.0, 1));
        m.insert(t.into(), json!(v));
    }
    let pm: Option<u32> = std::fs::read_to_string(postmaster_pid)
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse().ok());
    let pss = pm.map(|pm| {
        let mut sum = 0u64;
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid == pm || parent_pid(pid) == Some(pm) {
                sum += smaps_pss_kib(pid).unwrap_or(0);
            }
        }
        round(sum as f64 / 1024.0, 1)
    });
    m.insert("postgres".into(), json!(pss));
    if let Some(g) = generator {
        m.insert(
            "load_generator".into(),
            json!(status_kib(g, "VmRSS:").map(|k| round(k as f64 / 1024.0, 1))),
        );
    }
    m
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn smaps_pss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn parent_pid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Growth in percent from `from` to `to` per tier.
fn growth(
    from: &serde_json::Map<String, serde_json::Value>,
    to: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut g = serde_json::Map::new();
    for (k, v) in from {
        let (Some(a), Some(b)) = (v.as_f64(), to.get(k).and_then(|v| v.as_f64())) else {
            continue;
        };
        if a > 0.0 {
            g.insert(k.clone(), json!(round((b - a) / a * 100.0, 1)));
        }
    }
    g
}

async fn drive_generator(
    cfg: &Config,
    store: &Store,
    a: &Args,
    tiers: &Tiers,
    creds: &Path,
    tls_port: u16,
    metric_ids: &[i32],
) -> Result<serde_json::Value> {
    let seconds = a.minutes * 60.0;
    // Memory is compared from the end of the warm-up: a fifth of the run, at most a minute.
    let warmup = (seconds / 5.0).min(60.0);
    let sent_path = cfg.data_dir.join("soak-sent.json");
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.args(["bench", "soak-load", "--port", &tls_port.to_string()])
        .arg("--credentials")
        .arg(creds)
        .arg("--sent-out")
        .arg(&sent_path)
        .args([
            "--metrics",
            &a.metrics.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .args([
            "--warmup-seconds",
            &warmup.to_string(),
            "--calibrate-seconds",
            &a.calibrate_seconds.to_string(),
            "--storms",
            &a.storms.to_string(),
        ]);
    if let Some(r) = a.rate {
        cmd.args(["--rate", &r.to_string()]);
    }
    // Ten thousand "connected" lines say nothing; the generator's own progress goes to stderr.
    cmd.env("OFFSITE_LOG__FILTER", "warn");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the load generator")?;
    let gen_pid = child.id();
    let postmaster = cfg.data_dir.join("postgres").join("postmaster.pid");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let (mut warm, mut end, mut peak) = (None, None, serde_json::Map::new());
    let mut before_storms = Vec::new();
    let mut report: Option<serde_json::Value> = None;
    while let Some(line) = lines.next_line().await? {
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("load generator said {line:?}"))?;
        match v["phase"].as_str() {
            Some("progress") => {
                let m = memory(tiers, &postmaster, gen_pid);
                for (k, x) in &m {
                    let x = x.as_f64().unwrap_or(0.0);
                    if peak
                        .get(k)
                        .and_then(|p: &serde_json::Value| p.as_f64())
                        .is_none_or(|p| x > p)
                    {
                        peak.insert(k.clone(), json!(x));
                    }
                }
                eprintln!("  memory MiB: {}", serde_json::Value::Object(m));
            }
            Some("warm") => warm = Some(memory(tiers, &postmaster, gen_pid)),
            Some("storm_begin") => {
                let m = memory(tiers, &postmaster, gen_pid);
                eprintln!("  memory MiB before storm {}: {}", v["storm"], serde_json::Value::Object(m.clone()));
                before_storms.push(serde_json::Value::Object(m));
            }
            Some("steady_end") => end = Some(memory(tiers, &postmaster, gen_pid)),
            Some(_) => {}
            None => report = Some(v),
        }
    }
    let status = child.wait().await?;
    if !status.success() {
        bail!("load generator failed: {status}");
    }
    let mut r = report.context("load generator printed no report")?;
    let (warm, end) = (
        warm.context("no warm-up mark")?,
        end.context("no end mark")?,
    );
    let sent: HashMap<String, u64> = serde_json::from_slice(&std::fs::read(&sent_path)?)?;
    eprintln!("bench soak: checking every stored sample against what was sent");
    let check = verify(store, &sent, metric_ids).await?;
    let g = growth(&warm, &end);
    for (k, v) in &g {
        r[format!("rss_growth_pct_{k}")] = v.clone();
    }
    r["samples_stored"] = json!(check.stored);
    r["samples_lost"] = json!(check.lost);
    r["duplicates"] = json!(check.duplicates);
    r["never_sent_values"] = json!(check.bad_values);
    r["rss_mib_warm"] = json!(warm);
    r["rss_mib_end"] = json!(end);
    r["rss_mib_peak"] = json!(peak);
    r["rss_mib_before_storms"] = json!(before_storms);
    r["rss_growth_pct"] = json!(g);
    r["minutes"] = json!(a.minutes);
    r["warmup_s"] = json!(round(warmup, 1));
    Ok(r)
}

/// Rows of `samples` per device from the devices the generator drove, compared with what each
/// sent. A device with more rows than it sent, or a value that is not its timestamp's, counts as
/// duplicates (the primary key makes a literal second copy impossible; this catches the rest).
#[derive(Debug, Default, PartialEq)]
struct Check {
    stored: u64,
    lost: u64,
    duplicates: u64,
    bad_values: u64,
}

async fn verify(store: &Store, sent: &HashMap<String, u64>, metric_ids: &[i32]) -> Result<Check> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT d.id, s.n, s.bad FROM devices d JOIN (
             SELECT device_key, count(*) AS n,
                    count(*) FILTER (WHERE value <> (((extract(epoch FROM ts) * 1000)::bigint % $2)
                                     + array_position($1::int[], metric_id) - 1)::float8) AS bad
             FROM samples WHERE metric_id = ANY($1) GROUP BY device_key) s ON s.device_key = d.key",
    )
    .bind(metric_ids)
    .bind(VALUE_MODULUS)
    .fetch_all(store.pool())
    .await?;
    Ok(compare(sent, &rows))
}

fn compare(sent: &HashMap<String, u64>, stored: &[(String, i64, i64)]) -> Check {
    let mut c = Check::default();
    let mut seen = HashMap::new();
    for (id, n, bad) in stored {
        let (n, bad) = (*n as u64, *bad as u64);
        c.stored += n;
        c.bad_values += bad;
        let good = n - bad;
        let s = sent.get(id).copied().unwrap_or(0);
        c.lost += s.saturating_sub(good);
        c.duplicates += good.saturating_sub(s) + bad;
        seen.insert(id.as_str(), ());
    }
    for (id, s) in sent {
        if !seen.contains_key(id.as_str()) {
            c.lost += s;
        }
    }
    c
}

// ---------------------------------------------------------------------------------------------
// The load generator.

/// An outbox kept across connections: a reconnect-storm replaces a device's link, not its pending
/// batches, as an edge agent restarting its connection keeps its disk queue.
#[derive(Clone, Default)]
struct SharedOutbox(Arc<Mutex<MemoryOutbox>>);

impl Outbox for SharedOutbox {
    fn append(&mut self, seq: u64, appended_ms: i64, payload: &[u8]) -> std::io::Result<Dropped> {
        self.0.lock().unwrap().append(seq, appended_ms, payload)
    }
    fn ack(&mut self, seq: u64) -> std::io::Result<bool> {
        self.0.lock().unwrap().ack(seq)
    }
    fn pending(&self) -> usize {
        self.0.lock().unwrap().pending()
    }
    fn bytes(&self) -> u64 {
        self.0.lock().unwrap().bytes()
    }
    fn oldest_pending(&self) -> Option<PendingInfo> {
        self.0.lock().unwrap().oldest_pending()
    }
    fn pending_after(&self, after: Option<u64>, limit: usize) -> Vec<u64> {
        self.0.lock().unwrap().pending_after(after, limit)
    }
    fn read(&mut self, seq: u64) -> std::io::Result<Option<Vec<u8>>> {
        self.0.lock().unwrap().read(seq)
    }
    fn last_seq(&self) -> Option<u64> {
        self.0.lock().unwrap().last_seq()
    }
    fn dropped_total(&self) -> Dropped {
        self.0.lock().unwrap().dropped_total()
    }
    fn sync_if_due(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What every device task is told to do.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Connected, sending nothing (until a given `--rate` applies).
    Idle,
    /// Keep `WINDOW` batches unacknowledged at all times.
    Flood,
    /// One batch every this long.
    Paced(Duration),
    /// Stop sending; wait for every acknowledgement.
    Drain,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Control {
    mode: Mode,
    /// Bumped to make every device drop its connection and reconnect at once.
    storm: u32,
}

/// Batches a device keeps unacknowledged while flooding.
const WINDOW: u64 = 4;

/// One device's state, readable by the generator's monitor.
struct DeviceState {
    outbox: SharedOutbox,
    batches: AtomicU64,
    connected_once: AtomicBool,
    /// The storm this device has reconnected after (0: none yet).
    reconnected_after: AtomicU64,
    reconnected_at: Mutex<Option<Instant>>,
}

impl DeviceState {
    fn acked_batches(&self) -> u64 {
        // A batch enters the outbox a moment before it is counted as sent.
        self.batches
            .load(Ordering::Relaxed)
            .saturating_sub(self.outbox.pending() as u64)
    }
}

/// `offsite bench soak-load`: phases as JSON lines on stdout (`connected`, `calibrated`, `warm`,
/// `storm`, `steady_end`, `progress`), then the report (a line without `phase`).
pub async fn load_main(l: LoadArgs) -> Result<()> {
    let emit = |v: serde_json::Value| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    };
    let text = std::fs::read_to_string(&l.credentials).context("reading the credentials")?;
    let creds: Vec<DeviceCredentials> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("parsing the credentials")?;
    let (report, sent) = generate(&l, creds, emit).await?;
    std::fs::write(&l.sent_out, serde_json::to_vec(&sent)?)?;
    emit(report);
    Ok(())
}

fn link_options() -> LinkOptions {
    LinkOptions {
        window: WINDOW as usize,
        inflight: WINDOW as u16,
        ..LinkOptions::default()
    }
}

/// Runs the whole schedule against the broker on localhost:`l.port`; returns the report and the
/// samples each device sent.
async fn generate(
    l: &LoadArgs,
    creds: Vec<DeviceCredentials>,
    emit: impl Fn(serde_json::Value),
) -> Result<(serde_json::Value, HashMap<String, u64>)> {
    let n = creds.len();
    let metrics: Arc<Vec<MetricKey>> = Arc::new(
        (0..l.metrics)
            .map(|k| MetricKey::parse(&format!("{METRIC_PREFIX}{k}")).expect("valid metric key"))
            .collect(),
    );
    let endpoint = Endpoint {
        host: "localhost".into(),
        port: l.port,
    };
    // Nobody sends until everyone is connected: devices flooding early would starve the
    // handshakes of the rest on a small machine.
    let (ctl_tx, ctl_rx) = watch::channel(Control {
        mode: Mode::Idle,
        storm: 0,
    });
    // The first connections are spread out (the storm later is not): 500 handshakes in flight.
    let connecting = Arc::new(Semaphore::new(500));
    let start = Instant::now();
    let mut states = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for (i, c) in creds.into_iter().enumerate() {
        let st = Arc::new(DeviceState {
            outbox: SharedOutbox::default(),
            batches: AtomicU64::new(0),
            connected_once: AtomicBool::new(false),
            reconnected_after: AtomicU64::new(0),
            reconnected_at: Mutex::new(None),
        });
        states.push((c.device_id.to_string(), st.clone()));
        let (endpoint, ctl, metrics, connecting) = (
            endpoint.clone(),
            ctl_rx.clone(),
            metrics.clone(),
            connecting.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = device(i, c, endpoint, ctl, st, metrics, connecting).await;
            if let Err(e) = &r {
                eprintln!("bench soak-load: device {i}: {e:#}");
            }
            r
        }));
    }
    let count = |f: &dyn Fn(&DeviceState) -> bool| states.iter().filter(|(_, s)| f(s)).count();
    let acked = || states.iter().map(|(_, s)| s.acked_batches()).sum::<u64>() * l.metrics as u64;
    while count(&|s| s.connected_once.load(Ordering::Relaxed)) < n {
        if start.elapsed() > Duration::from_secs(600) {
            bail!(
                "only {} of {n} devices connected within 600 s",
                count(&|s| s.connected_once.load(Ordering::Relaxed))
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connect_s = start.elapsed().as_secs_f64();
    eprintln!("bench soak-load: {n} devices connected in {connect_s:.1} s");
    emit(json!({"phase": "connected", "connections": n}));

    let (max_rate, rate) = match l.rate {
        Some(r) => (None, r),
        None => {
            ctl_tx.send_replace(Control {
                mode: Mode::Flood,
                storm: 0,
            });
            // The pipes fill first (every device's window at once: with 10,000 devices, many
            // seconds of work): measure only once a whole first round has been acknowledged.
            let first_round = (n as u64 * WINDOW * l.metrics as u64) as f64;
            let ramp_end = Instant::now() + Duration::from_secs(180);
            while (acked() as f64) < first_round && Instant::now() < ramp_end {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            eprintln!(
                "bench soak-load: pipes full after {:.1} s; measuring for {} s",
                start.elapsed().as_secs_f64() - connect_s,
                l.calibrate_seconds
            );
            let (from, t0) = (acked(), Instant::now());
            tokio::time::sleep(Duration::from_secs(l.calibrate_seconds)).await;
            let max = (acked() - from) as f64 / t0.elapsed().as_secs_f64();
            eprintln!("bench soak-load: calibration: {max:.0} samples/s committed at most; soaking at half");
            (Some(max), max / 2.0)
        }
    };
    if !(rate > 0.0) {
        bail!("calibration measured no committed samples");
    }
    emit(json!({"phase": "calibrated", "max_rate": max_rate, "rate": rate}));
    // Each device sends one batch every `interval`: n * metrics / interval = rate.
    let interval = Duration::from_secs_f64(n as f64 * l.metrics as f64 / rate);
    let steady_from = Instant::now();
    ctl_tx.send_replace(Control {
        mode: Mode::Paced(interval),
        storm: 0,
    });
    let steady = Duration::from_secs_f64(l.seconds);
    let warm_at = steady_from + Duration::from_secs_f64(l.warmup_seconds);
    let storms = l.storms.max(1) as usize;
    let storm_at: Vec<Instant> = (1..=storms)
        .map(|k| steady_from + steady.mul_f64(k as f64 / (storms + 1) as f64))
        .collect();
    let end_at = steady_from + steady;
    let mut warm_sent = false;
    // Storms begun so far; storm k (1-based) is over when every device has reconnected after it.
    let mut stormed = 0usize;
    let mut storm_s: Vec<Option<f64>> = vec![None; storms];
    // Devices back after storm k; none before the first storm.
    let reconnected = |k: usize| {
        if k == 0 {
            0
        } else {
            count(&|s| s.reconnected_after.load(Ordering::Relaxed) == k as u64)
        }
    };
    let steady_acked_from = acked();
    let mut next_progress = Instant::now() + Duration::from_secs(10);
    let mut last = (Instant::now(), acked());
    while Instant::now() < end_at {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        if !warm_sent && now >= warm_at {
            warm_sent = true;
            emit(json!({"phase": "warm"}));
        }
        if stormed < storms && now >= storm_at[stormed] {
            stormed += 1;
            // First, so that the parent reads memory before the devices drop.
            emit(json!({"phase": "storm_begin", "storm": stormed}));
            eprintln!(
                "bench soak-load: reconnect storm {stormed} of {storms}: every device drops its connection now"
            );
            ctl_tx.send_modify(|c| c.storm = stormed as u32);
        }
        if stormed > 0 && storm_s[stormed - 1].is_none() && reconnected(stormed) == n {
            let last_at = states
                .iter()
                .filter_map(|(_, s)| *s.reconnected_at.lock().unwrap())
                .max()
                .unwrap_or(now);
            let secs = (last_at - storm_at[stormed - 1]).as_secs_f64();
            storm_s[stormed - 1] = Some(secs);
            eprintln!("bench soak-load: all {n} devices reconnected {secs:.1} s after storm {stormed}");
            emit(json!({"phase": "storm", "storm": stormed, "reconnects": n, "storm_s": secs}));
        }
        if now >= next_progress {
            next_progress += Duration::from_secs(10);
            let a = acked();
            let pending: u64 = states.iter().map(|(_, s)| s.outbox.pending() as u64).sum();
            eprintln!(
                "  {:>5.0} s  {:>11} samples acknowledged  {:>8.0} samples/s (target {:.0})  {} batches pending  {} reconnected",
                steady_from.elapsed().as_secs_f64(),
                a,
                (a - last.1) as f64 / last.0.elapsed().as_secs_f64(),
                rate,
                pending,
                reconnected(stormed),
            );
            last = (Instant::now(), a);
            emit(json!({"phase": "progress"}));
        }
    }
    let steady_secs = steady_from.elapsed().as_secs_f64();
    let steady_acked = acked() - steady_acked_from;
    emit(json!({"phase": "steady_end"}));
    eprintln!("bench soak-load: steady phase over; draining");
    ctl_tx.send_modify(|c| c.mode = Mode::Drain);
    let mut unacked_at_end = 0u64;
    let mut errors = 0u64;
    for t in tasks {
        match t.await {
            Ok(Ok(left)) => unacked_at_end += left,
            _ => errors += 1,
        }
    }
    // Every device must have come back after the last storm (one still away from an earlier
    // storm would have been told of the later one, and counts there).
    let reconnects = reconnected(stormed);
    if stormed > 0 && storm_s[stormed - 1].is_none() {
        // The last devices came back only during the drain.
        storm_s[stormed - 1] = states
            .iter()
            .filter_map(|(_, s)| *s.reconnected_at.lock().unwrap())
            .max()
            .map(|last| (last - storm_at[stormed - 1]).as_secs_f64());
    }
    let batches: u64 = states
        .iter()
        .map(|(_, s)| s.batches.load(Ordering::Relaxed))
        .sum();
    let sent: HashMap<String, u64> = states
        .iter()
        .map(|(id, s)| {
            (
                id.clone(),
                s.batches.load(Ordering::Relaxed) * l.metrics as u64,
            )
        })
        .collect();
    let report = json!({
        "connections": n,
        "reconnects": reconnects,
        "storms": stormed,
        // The slowest recovery; each storm's in `storms_s` (null: the next storm came first).
        "storm_s": storm_s.iter().flatten().copied().reduce(f64::max).map(|s| round(s, 1)),
        "storms_s": storm_s.iter().map(|s| s.map(|s| round(s, 1))).collect::<Vec<_>>(),
        "samples_sent": batches * l.metrics as u64,
        "samples_acked": acked(),
        "batches_unacked_at_end": unacked_at_end,
        "device_errors": errors,
        "max_rate": max_rate.map(|r| round(r, 0)),
        "rate": round(rate, 0),
        "achieved_rate": round(steady_acked as f64 / steady_secs, 0),
        "steady_s": round(steady_secs, 1),
        "connect_s": round(connect_s, 1),
        "samples_per_batch": l.metrics,
        "batch_interval_ms": round(interval.as_secs_f64() * 1000.0, 1),
    });
    Ok((report, sent))
}

/// Waits until `link` is connected; true if it did within `limit`.
async fn wait_connected(link: &DeviceLink, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while !link.stats().connected {
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// One device: connect, send as `Control` says, drop and reopen its connection on a storm, drain.
/// Returns the batches still unacknowledged after the drain.
async fn device(
    i: usize,
    creds: DeviceCredentials,
    endpoint: Endpoint,
    mut ctl: watch::Receiver<Control>,
    st: Arc<DeviceState>,
    metrics: Arc<Vec<MetricKey>>,
    connecting: Arc<Semaphore>,
) -> Result<u64> {
    let open = |st: &DeviceState| {
        DeviceLink::start(
            &creds,
            &endpoint,
            link_options(),
            Box::new(st.outbox.clone()),
            LinkHooks::default(),
        )
    };
    let mut link = {
        let _slot = connecting.acquire().await?;
        let link = open(&st)?;
        // Still counted if slow: the semaphore only spreads the first handshakes out.
        wait_connected(&link, Duration::from_secs(10)).await;
        link
    };
    if !wait_connected(&link, Duration::from_secs(600)).await {
        bail!("never connected");
    }
    st.connected_once.store(true, Ordering::Relaxed);
    let mut storm_seen = 0u32;
    let mut awaiting_reconnect = false;
    let mut last_ms = 0i64;
    // Devices' clocks are spread over one interval, as real devices' are.
    let spread = (i as f64 * 0.618_034).fract();
    let mut next_send: Option<Instant> = None;
    let batch = |last_ms: &mut i64| {
        // Unique, increasing device times (ms on the wire); the value encodes time and metric.
        *last_ms = Utc::now().timestamp_millis().max(*last_ms + 1);
        let ts = Utc.timestamp_millis_opt(*last_ms).unwrap();
        let base = (*last_ms % VALUE_MODULUS) as f64;
        metrics
            .iter()
            .enumerate()
            .map(|(k, m)| Sample {
                ts,
                metric: m.clone(),
                value: base + k as f64,
            })
            .collect::<Vec<_>>()
    };
    loop {
        let c = *ctl.borrow_and_update();
        if c.storm != storm_seen {
            storm_seen = c.storm;
            // Dropped without a goodbye (the broker sees the socket close and publishes the will);
            // the pending batches stay in the outbox and the new connection resends them.
            link.abort();
            link = open(&st)?;
            awaiting_reconnect = true;
        }
        if awaiting_reconnect && link.stats().connected {
            awaiting_reconnect = false;
            *st.reconnected_at.lock().unwrap() = Some(Instant::now());
            st.reconnected_after
                .store(storm_seen as u64, Ordering::Relaxed);
        }
        // Polling 10,000 links often would cost the machine more than the storm itself.
        let poll = if awaiting_reconnect {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(3600)
        };
        match c.mode {
            Mode::Drain => break,
            Mode::Idle => {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    r = ctl.changed() => if r.is_err() { break },
                }
            }
            Mode::Flood => {
                while st.outbox.pending() < WINDOW as usize {
                    link.publish(batch(&mut last_ms)).await?;
                    st.batches.fetch_add(1, Ordering::Relaxed);
                }
                // WINDOW batches per 250 ms per device is far above what the platform takes.
                let wait = poll.min(Duration::from_millis(250));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    r = ctl.changed() => if r.is_err() { break },
                }
            }
            Mode::Paced(interval) => {
                let now = Instant::now();
                let due = *next_send.get_or_insert_with(|| now + interval.mul_f64(spread));
                if now >= due {
                    link.publish(batch(&mut last_ms)).await?;
                    st.batches.fetch_add(1, Ordering::Relaxed);
                    // Keep the schedule, but do not burst to catch up after a long stall.
                    let next = due + interval;
                    next_send = Some(if next + interval * 5 < now {
                        now + interval
                    } else {
                        next
                    });
                    continue;
                }
                let wait = (due - now).min(poll);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    r = ctl.changed() => if r.is_err() { break },
                }
            }
        }
    }
    // rumqttd 0.20 accepts TLS connections one handshake at a time: a storm of 10,000 can outlast
    // a short steady phase.
    if awaiting_reconnect && wait_connected(&link, Duration::from_secs(600)).await {
        *st.reconnected_at.lock().unwrap() = Some(Instant::now());
        st.reconnected_after
            .store(storm_seen as u64, Ordering::Relaxed);
    }
    link.flush(Duration::from_secs(180)).await;
    let left = st.outbox.pending() as u64;
    link.abort();
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(v: &[(&str, u64)]) -> HashMap<String, u64> {
        v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    #[test]
    fn everything_sent_and_stored_once_is_clean() {
        let c = compare(
            &sent(&[("a", 10), ("b", 20)]),
            &[("a".into(), 10, 0), ("b".into(), 20, 0)],
        );
        assert_eq!(
            c,
            Check {
                stored: 30,
                lost: 0,
                duplicates: 0,
                bad_values: 0
            }
        );
    }

    #[test]
    fn missing_rows_and_missing_devices_are_lost() {
        let c = compare(&sent(&[("a", 10), ("b", 20)]), &[("a".into(), 7, 0)]);
        assert_eq!((c.lost, c.duplicates), (23, 0));
    }

    #[test]
    fn extra_rows_and_values_never_sent_are_duplicates() {
        // b: 22 rows for 20 sent; c: never sent at all; a: one value that is not its timestamp's.
        let c = compare(
            &sent(&[("a", 10), ("b", 20)]),
            &[("a".into(), 10, 1), ("b".into(), 22, 0), ("c".into(), 3, 0)],
        );
        assert_eq!(
            c,
            Check {
                stored: 35,
                lost: 1,
                duplicates: 1 + 2 + 3,
                bad_values: 1
            }
        );
    }

    /// The check's SQL on a real database: a device with every row, and one with a row missing
    /// per metric and a value that is not its timestamp's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_database_check_finds_missing_rows_and_values_never_sent() {
        use offsite_store::SampleRow;
        let db = offsite_store::testing::TestDb::new().await.unwrap();
        let ids = ensure_metrics(&db.store, 2).await.unwrap();
        let mut devices = Vec::new();
        for _ in 0..2 {
            let id = offsite_broker::new_device_id();
            let rec = db
                .store
                .insert_device(&NewDevice {
                    id: id.clone(),
                    name: "soak check".into(),
                    object_id: None,
                    token_sha256: [0; 32],
                    cert_serial: None,
                    cert_not_after: None,
                })
                .await
                .unwrap();
            devices.push((id.to_string(), rec.key));
        }
        let now = Utc::now().timestamp_millis() - 10;
        db.store
            .ensure_partition(Utc::now().date_naive())
            .await
            .unwrap();
        let row = |key: i32, k: usize, ms: i64, value: f64| SampleRow {
            device_key: key,
            metric_id: ids[k],
            ts: Utc.timestamp_millis_opt(ms).unwrap(),
            received_at: Utc::now(),
            value,
            quality: 0,
        };
        let sent_value = |ms: i64, k: usize| (ms % VALUE_MODULUS) as f64 + k as f64;
        let mut rows = Vec::new();
        for t in 0..3 {
            for k in 0..2 {
                let ms = now - t;
                rows.push(row(devices[0].1, k, ms, sent_value(ms, k)));
                if t < 2 {
                    let v = if (t, k) == (1, 1) {
                        0.5
                    } else {
                        sent_value(ms, k)
                    };
                    rows.push(row(devices[1].1, k, ms, v));
                }
            }
        }
        db.store.write_samples(&rows).await.unwrap();
        let sent = sent(&[(&devices[0].0, 6), (&devices[1].0, 6)]);
        let c = verify(&db.store, &sent, &ids).await.unwrap();
        assert_eq!(
            c,
            Check {
                stored: 10,
                lost: 3,
                duplicates: 1,
                bad_values: 1
            }
        );
    }

    #[test]
    fn growth_is_per_tier_in_percent() {
        let a = json!({"broker": 100.0, "ingest": 50.0, "portal": null})
            .as_object()
            .unwrap()
            .clone();
        let b = json!({"broker": 110.0, "ingest": 45.0, "portal": 30.0})
            .as_object()
            .unwrap()
            .clone();
        let g = growth(&a, &b);
        assert_eq!(
            serde_json::Value::Object(g),
            json!({"broker": 10.0, "ingest": -10.0})
        );
    }
}
