//! Helpers for fault tests: an edge agent replaying a CSV of known rows (so "sent" is exact), a
//! TCP proxy that can cut the network between agent and broker, and the exactly-once checks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use offsite_wire::DeviceCredentials;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::{free_port, stored_rows, wait_for, Proc, Site};

/// A CSV of `n` rows one second apart ending five minutes ago; returns the (ts ms, value) rows.
pub fn write_csv(path: &Path, n: usize) -> Result<Vec<(i64, f64)>> {
    let end = chrono::Utc::now().timestamp() - 300;
    let start = end - n as i64;
    let mut text = String::from("timestamp,value\n");
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let t = start + i as i64;
        let v = i as f64 * 0.5 + 1.25;
        text.push_str(&format!(
            "{},{v}\n",
            chrono::DateTime::from_timestamp(t, 0)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S")
        ));
        rows.push((t * 1000, v));
    }
    std::fs::write(path, text)?;
    Ok(rows)
}

/// An edge agent (`offsite edge-agent`) serving one device whose only source replays a CSV into
/// metric `pm10` at `speed` times real time.
pub struct ReplayAgent {
    pub config: PathBuf,
    pub metrics_port: u16,
    pub device: String,
    pub expected: Vec<(i64, f64)>,
}

impl ReplayAgent {
    /// `broker_port`: where the agent connects (the broker, or a proxy in front of it); `extra`:
    /// top-level keys, then `---`, then whole sections.
    pub fn new(
        site: &Site,
        creds: &DeviceCredentials,
        rows: usize,
        speed: f64,
        broker_port: u16,
        extra: &str,
    ) -> Result<Self> {
        let dir = site.dir.path().join(format!("agent-{}", creds.device_id));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("device.json"), serde_json::to_vec(creds)?)?;
        let csv = dir.join("series.csv");
        let expected = write_csv(&csv, rows)?;
        let metrics_port = free_port();
        let (top, sections) = extra.split_once("---").unwrap_or((extra, ""));
        let config = dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "data"
metrics_listen = "127.0.0.1:{metrics_port}"
batch_interval_ms = 100
{top}

[broker]
host = "localhost"
port = {broker_port}
resend_after_s = 2
reconnect_delay_ms = 200
max_reconnect_delay_ms = 2000
reconnect_jitter_ms = 0
max_batches_per_second = 200

{sections}

[[devices]]
credentials = "device.json"

[[devices.sources]]
name = "replay"
kind = "csv"
interval_ms = 100
path = "{}"
timestamps = "original"
speed = {speed}
metrics = ["pm10"]
"#,
                csv.display()
            ),
        )?;
        Ok(Self {
            config,
            metrics_port,
            device: creds.device_id.to_string(),
            expected,
        })
    }

    pub fn spawn(&self, site: &Site) -> Result<Proc> {
        site.spawn(&["edge-agent", "--config", self.config.to_str().unwrap()])
    }

    /// One series of the agent's /metrics (sum over label sets containing `labels`); None if unreachable.
    pub async fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let text = reqwest::get(url).await.ok()?.text().await.ok()?;
        let mut total = 0.0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(name) {
                if rest.starts_with('{') && rest.contains(labels) {
                    total += rest.rsplit(' ').next()?.parse::<f64>().ok()?;
                }
            }
        }
        Some(total)
    }

    /// Rows the CSV source has read so far.
    pub async fn read_so_far(&self) -> f64 {
        self.metric("offsite_edge_samples_total", "source=\"replay\"")
            .await
            .unwrap_or(0.0)
    }
}

/// Stored (ts ms, value) of one metric of a device, in time order.
pub async fn series(site: &Site, device: &str, metric: &str) -> Result<Vec<(i64, f64)>> {
    Ok(stored_rows(site, device)
        .await?
        .into_iter()
        .filter(|r| r.0 == metric)
        .map(|r| (r.1, r.2))
        .collect())
}

/// Samples stored more than once for the same (device, metric, ts) anywhere in the database.
pub async fn duplicate_samples(pool: &sqlx::PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(n - 1), 0)::int8 FROM \
         (SELECT count(*) AS n FROM samples GROUP BY device_key, metric_id, ts HAVING count(*) > 1) d",
    )
    .fetch_one(pool)
    .await?)
}

/// Dead letters by reason.
pub async fn dead_letters(pool: &sqlx::PgPool) -> Result<Vec<(String, i64)>> {
    Ok(
        sqlx::query_as("SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason")
            .fetch_all(pool)
            .await?,
    )
}

/// Waits until `metric` of `device` holds `expected.len()` rows in `pool`, then checks they are
/// exactly `expected` (each once, own timestamp and value), that no sample anywhere is stored
/// twice and that nothing went to the dead letters. Returns how long the wait took.
pub async fn assert_exactly_once(
    pool: &sqlx::PgPool,
    device: &str,
    metric: &str,
    expected: &[(i64, f64)],
    timeout: Duration,
) -> Result<Duration> {
    let t0 = Instant::now();
    let query = || async {
        sqlx::query_as::<_, (i64, f64)>(
            "SELECT (extract(epoch FROM s.ts) * 1000)::int8, s.value FROM samples s \
             JOIN devices d ON d.key = s.device_key JOIN metrics m ON m.id = s.metric_id \
             WHERE d.id = $1 AND m.key = $2 ORDER BY s.ts",
        )
        .bind(device)
        .bind(metric)
        .fetch_all(pool)
        .await
    };
    let mut last = 0;
    while t0.elapsed() < timeout {
        match query().await {
            Ok(rows) if rows.len() >= expected.len() => break,
            Ok(rows) => last = rows.len(),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = t0.elapsed();
    // A moment more, so a late duplicate would show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rows = query().await?;
    if rows.len() < expected.len() {
        bail!(
            "after {timeout:?} only {} of {} rows stored (last poll {last})",
            rows.len(),
            expected.len()
        );
    }
    assert_eq!(rows.len(), expected.len(), "stored count equals sent count");
    assert_eq!(
        rows, expected,
        "every row exactly once with its own time and value"
    );
    assert_eq!(
        duplicate_samples(pool).await?,
        0,
        "no (device, metric, ts) stored twice"
    );
    assert_eq!(dead_letters(pool).await?, vec![], "nothing dead-lettered");
    Ok(waited)
}

/// How the proxy treats the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Forwards both ways.
    Up,
    /// Closes every connection and resets new ones at once (a refused port).
    Refuse,
    /// Closes every connection; new ones are accepted and then hear nothing (a dropped route).
    Blackhole,
    /// Open connections keep carrying the broker's packets to the device, but the device's are
    /// swallowed; new ones hear nothing. Set before a cut, it lets every batch that already
    /// reached the broker be acknowledged, so none is both stored and still queued.
    OneWay,
}

/// A TCP proxy on 127.0.0.1 in front of `target`, which the test can cut and restore. It records
/// when each connection attempt arrived, so a test can see the client's backoff from outside.
pub struct CutProxy {
    pub port: u16,
    state: Arc<AtomicU8>,
    cut_tx: watch::Sender<u64>,
    attempts: Arc<Mutex<Vec<Instant>>>,
    open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(target: u16) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(AtomicU8::new(Link::Up as u8));
        let (cut_tx, cut_rx) = watch::channel(0u64);
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicUsize::new(0));
        let (st, at, op) = (state.clone(), attempts.clone(), open.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                at.lock().unwrap().push(Instant::now());
                match st.load(Ordering::SeqCst) {
                    s if s == Link::Refuse as u8 => {
                        // Linger 0: the close is a reset, as from a refused port.
                        let _ = client.set_zero_linger();
                        drop(client);
                    }
                    s if s == Link::Blackhole as u8 || s == Link::OneWay as u8 => {
                        let mut cut = cut_rx.clone();
                        tokio::spawn(async move {
                            // Silent until the link changes again, then gone.
                            let _ = cut.changed().await;
                            drop(client);
                        });
                    }
                    _ => {
                        let (cut, op, st) = (cut_rx.clone(), op.clone(), st.clone());
                        tokio::spawn(async move {
                            let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                                return;
                            };
                            op.fetch_add(1, Ordering::SeqCst);
                            forward(client, server, st, cut).await;
                            op.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                }
            }
        });
        Ok(Self {
            port,
            state,
            cut_tx,
            attempts,
            open,
            task,
        })
    }

    /// Switches the link; open connections close unless it is `Up` or `OneWay`.
    pub fn set(&self, link: Link) {
        self.state.store(link as u8, Ordering::SeqCst);
        self.cut_tx.send_modify(|g| *g += 1);
    }

    /// When connection attempts arrived, since `from`.
    pub fn attempts_since(&self, from: Instant) -> Vec<Instant> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|t| *t >= from)
            .collect()
    }

    /// Connections being forwarded now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Carries one connection both ways until the link is cut; in `OneWay` the device's bytes are
/// read and dropped.
async fn forward(
    client: TcpStream,
    server: TcpStream,
    state: Arc<AtomicU8>,
    mut cut: watch::Receiver<u64>,
) {
    use tokio::io::AsyncReadExt;
    // Closing with linger 0 resets the connection, as a failed route or a dead peer would.
    let _ = client.set_zero_linger();
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let st = state.clone();
    let upstream = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            if st.load(Ordering::SeqCst) == Link::Up as u8 {
                sw.write_all(&buf[..n]).await?;
            }
        }
    };
    let downstream = tokio::io::copy(&mut sr, &mut cw);
    let stays_open = async move {
        loop {
            if cut.changed().await.is_err() {
                return;
            }
            let s = state.load(Ordering::SeqCst);
            if s != Link::Up as u8 && s != Link::OneWay as u8 {
                return;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = stays_open => {}
    }
}

/// Waits until the agent has read at least `n` rows of its CSV.
pub async fn wait_read(agent: &ReplayAgent, n: usize, timeout: Duration) -> Result<()> {
    wait_for(&format!("{n} rows read by the agent"), timeout, || async {
        agent.read_so_far().await >= n as f64
    })
    .await
}

/// `offsite <args>` for `site` on the embedded PostgreSQL in its data directory (no database URL).
pub fn embedded_command(site: &Site, args: &[&str]) -> std::process::Command {
    use std::process::Stdio;
    let mut c = std::process::Command::new(crate::offsite_bin());
    c.arg("--data-dir").arg(site.dir.path()).args(args);
    c.env_remove("OFFSITE_DATABASE__URL")
        .env_remove("OFFSITE_DATABASE_URL")
        .env(
            "OFFSITE_BROKER__TLS_LISTEN",
            format!("127.0.0.1:{}", site.tls_port),
        )
        .env(
            "OFFSITE_BROKER__PLAIN_LISTEN",
            format!("127.0.0.1:{}", site.plain_port),
        )
        .env(
            "OFFSITE_PORTAL__LISTEN",
            format!("127.0.0.1:{}", site.http_port),
        )
        .env(
            "OFFSITE_PORTAL__HTTPS_LISTEN",
            format!("127.0.0.1:{}", site.https_port),
        )
        .env(
            "OFFSITE_HJ212__LISTEN",
            format!("127.0.0.1:{}", site.hj212_port),
        )
        .env("OFFSITE_INTERNAL_MQTT__PORT", site.plain_port.to_string())
        .env("OFFSITE_INGEST__BATCH_MAX_DELAY_MS", "20")
        .env("RUST_LOG", "info,rumqttd=warn,sqlx=warn")
        .stdin(Stdio::null());
    if std::env::var_os("OFFSITE_TEST_VERBOSE").is_none() {
        c.stdout(Stdio::null()).stderr(Stdio::null());
    }
    c
}

/// The pid in the embedded cluster's `postmaster.pid`, if the file is there.
pub fn postmaster_pid(site: &Site) -> Option<u32> {
    let text = std::fs::read_to_string(site.dir.path().join("postgres/postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// Rows of `pm10` stored for the agent's device (0 while the database is unreachable).
pub async fn stored_count(pool: &sqlx::PgPool, agent: &ReplayAgent) -> usize {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM samples s JOIN devices d ON d.key = s.device_key JOIN metrics m ON m.id = s.metric_id \
         WHERE d.id = $1 AND m.key = 'pm10'",
    )
    .bind(&agent.device)
    .fetch_one(pool)
    .await
    .map(|n| n as usize)
    .unwrap_or(0)
}

/// From now, how long until every row the agent has read so far is stored: the time a recovered
/// platform needs to take in the backlog (the replay may still be running after that).
pub async fn backlog_drain_time(
    pool: &sqlx::PgPool,
    agent: &ReplayAgent,
    timeout: Duration,
) -> Result<Duration> {
    let t0 = Instant::now();
    let read = agent.read_so_far().await as usize;
    wait_for(&format!("the backlog of {read} rows"), timeout, || async {
        stored_count(pool, agent).await >= read
    })
    .await?;
    Ok(t0.elapsed())
}

/// Stops (immediate shutdown) whatever embedded cluster runs in the site's data directory when
/// dropped, so a failing test leaves no PostgreSQL behind. Declare it after the `Site`.
pub struct EmbeddedClusterGuard<'a>(pub &'a Site);

impl Drop for EmbeddedClusterGuard<'_> {
    fn drop(&mut self) {
        if let Some(pid) = postmaster_pid(self.0).filter(|p| alive(*p)) {
            let _ = std::process::Command::new("kill")
                .arg("-QUIT")
                .arg(pid.to_string())
                .status();
        }
    }
}
