//! The edge agent as a separate process against the real platform: store and forward through
//! broker, ingest and agent failures, the disk budget, remote configuration, CSV replay.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use offsite_tests::*;
use offsite_wire::DeviceCredentials;

/// An agent configuration in the site's directory serving one device.
struct AgentSetup {
    config: PathBuf,
    metrics_port: u16,
}

impl AgentSetup {
    /// `sources`: TOML of `[[devices.sources]]` tables; `extra`: top-level keys and sections.
    fn new(site: &Site, creds: &DeviceCredentials, sources: &str, extra: &str) -> Result<Self> {
        let dir = site.dir.path().join(format!("agent-{}", creds.device_id));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("device.json"), serde_json::to_vec(creds)?)?;
        let metrics_port = free_port();
        let config = dir.join("agent.toml");
        let (top, sections) = extra.split_once("---").unwrap_or((extra, ""));
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "data"
metrics_listen = "127.0.0.1:{metrics_port}"
batch_interval_ms = 100
{top}

[broker]
host = "localhost"
port = {tls}
resend_after_s = 2
reconnect_delay_ms = 200
reconnect_jitter_ms = 0
max_batches_per_second = 200

{sections}

[[devices]]
credentials = "device.json"
{sources}
"#,
                tls = site.tls_port
            ),
        )?;
        Ok(Self { config, metrics_port })
    }

    fn spawn(&self, site: &Site) -> Result<Proc> {
        site.spawn(&["edge-agent", "--config", self.config.to_str().unwrap()])
    }

    /// One series of the agent's own /metrics (sum over label sets containing `labels`); None if unreachable.
    async fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port)).await.ok()?.text().await.ok()?;
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

    fn dir(&self) -> &Path {
        self.config.parent().unwrap()
    }
}

/// A CSV of `n` rows one second apart ending a few minutes ago, values with fractions; returns
/// the expected (ts ms, value) rows.
fn write_csv(path: &Path, n: usize) -> Result<Vec<(i64, f64)>> {
    let end = chrono::Utc::now().timestamp() - 300;
    let start = end - n as i64;
    let mut text = String::from("timestamp,value\n");
    let mut rows = Vec::new();
    for i in 0..n {
        let t = start + i as i64;
        let v = (i as f64) * 0.25 + 10.0;
        text.push_str(&format!("{},{}\n", chrono::DateTime::from_timestamp(t, 0).unwrap().format("%Y-%m-%d %H:%M:%S"), v));
        rows.push((t * 1000, v));
    }
    std::fs::write(path, text)?;
    Ok(rows)
}

/// A CSV source replaying `file` with its own timestamps into metric `pm10`.
fn csv_source(file: &Path, speed: f64) -> String {
    format!(
        r#"[[devices.sources]]
name = "replay"
kind = "csv"
interval_ms = 100
path = "{}"
timestamps = "original"
speed = {speed}
metrics = ["pm10"]
"#,
        file.display()
    )
}

/// Stored (ts ms, value) of one metric of a device.
async fn series(site: &Site, device: &str, metric: &str) -> Result<Vec<(i64, f64)>> {
    Ok(stored_rows(site, device).await?.into_iter().filter(|r| r.0 == metric).map(|r| (r.1, r.2)).collect())
}

async fn wait_rows(site: &Site, device: &str, metric: &str, n: usize, timeout: Duration) -> Result<()> {
    wait_for(&format!("{n} {metric} rows"), timeout, || async {
        series(site, device, metric).await.map(|r| r.len() >= n).unwrap_or(false)
    })
    .await
}

/// A 400-row CSV replayed by an agent through broker and ingest running as separate processes
/// (as in a scaled-out install), once the first rows are stored.
struct SplitReplay {
    // Processes first: fields drop in order, and they must stop before the site goes.
    agent_proc: Proc,
    broker: Proc,
    ingest: Proc,
    agent: AgentSetup,
    site: Site,
    id: String,
    expected: Vec<(i64, f64)>,
}

impl SplitReplay {
    async fn start(name: &str, speed: f64) -> Result<Self> {
        let site = Site::new().await?;
        let d = site.provision(name).await?;
        let file = site.dir.path().join("series.csv");
        let expected = write_csv(&file, 400)?;
        let agent = AgentSetup::new(&site, &d, &csv_source(&file, speed), "health_interval_s = 3600")?;
        let broker = site.spawn(&["broker"])?;
        let ingest = site.spawn(&["ingest"])?;
        wait_port(site.tls_port, Duration::from_secs(60)).await?;
        let agent_proc = agent.spawn(&site)?;
        let id = d.device_id.to_string();
        wait_rows(&site, &id, "pm10", 40, Duration::from_secs(60))
            .await
            .with_context(|| format!("the first rows never arrived; the tiers' output:\n{}", site.log_tails(40)))?;
        Ok(Self { site, id, expected, agent, agent_proc, broker, ingest })
    }

    async fn queue_depth(&self) -> f64 {
        self.agent.metric("offsite_edge_queue_depth", &self.id).await.unwrap_or(-1.0)
    }

    /// Waits for every row, then checks each is stored exactly once with its own timestamp.
    async fn assert_complete(&self) -> Result<()> {
        wait_rows(&self.site, &self.id, "pm10", self.expected.len(), Duration::from_secs(120))
            .await
            .with_context(|| format!("the tiers' output:\n{}", self.site.log_tails(40)))?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(series(&self.site, &self.id, "pm10").await?, self.expected, "every row exactly once");
        Ok(())
    }
}

#[tokio::test]
async fn broker_outage_loses_nothing_and_duplicates_nothing() -> Result<()> {
    let mut r = SplitReplay::start("网关 1", 20.0).await?;
    r.broker.kill9();
    // The agent keeps reading and queues on disk while the broker is away.
    wait_for("queue to grow", Duration::from_secs(30), || async { r.queue_depth().await >= 10.0 }).await?;
    r.broker = r.site.spawn(&["broker"])?;
    r.assert_complete().await?;
    wait_for("queue drained", Duration::from_secs(30), || async { r.queue_depth().await == 0.0 }).await?;
    Ok(())
}

#[tokio::test]
async fn agent_killed_with_unacknowledged_batches_resumes_from_disk() -> Result<()> {
    let mut r = SplitReplay::start("网关 2", 20.0).await?;
    // Without ingest nothing is acknowledged: batches pile up unacknowledged in the agent's queue.
    r.ingest.kill9();
    wait_for("unacknowledged batches", Duration::from_secs(30), || async { r.queue_depth().await >= 10.0 }).await?;
    r.agent_proc.kill9();
    let stored_before = series(&r.site, &r.id, "pm10").await?.len();
    assert!(stored_before < r.expected.len(), "the test must kill the agent mid-replay");
    r.ingest = r.site.spawn(&["ingest"])?;
    r.agent_proc = r.agent.spawn(&r.site)?;
    r.assert_complete().await
}

#[tokio::test]
async fn ingest_killed_mid_stream_loses_nothing() -> Result<()> {
    let mut r = SplitReplay::start("网关 3", 25.0).await?;
    r.ingest.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    r.ingest = r.site.spawn(&["ingest"])?;
    r.assert_complete().await
}

#[tokio::test]
async fn full_disk_budget_drops_the_oldest_and_reports_it() -> Result<()> {
    let site = Site::new().await?;
    let d = site.provision("网关 4").await?;
    let file = site.dir.path().join("series.csv");
    let expected = write_csv(&file, 3000)?;
    // No platform yet: everything stays in a 64 KiB queue.
    let agent = AgentSetup::new(
        &site,
        &d,
        &csv_source(&file, 0.0),
        "health_interval_s = 1\nmax_batch_samples = 20\n---\n[queue]\nmax_bytes = 65536\nsegment_bytes = 4096\n",
    )?;
    let _a = agent.spawn(&site)?;
    let id = d.device_id.as_str();
    wait_for("the replay to be read", Duration::from_secs(60), || async {
        agent.metric("offsite_edge_samples_total", "source=\"replay\"").await.unwrap_or(0.0) >= expected.len() as f64
    })
    .await?;
    wait_for("drops to be counted", Duration::from_secs(30), || async {
        agent.metric("offsite_edge_dropped_total", id).await.unwrap_or(0.0) > 0.0
    })
    .await?;
    let bytes = agent.metric("offsite_edge_queue_bytes", id).await.unwrap_or(f64::MAX);
    assert!(bytes <= 65536.0, "queue holds {bytes} bytes, budget 65536");
    let on_disk: u64 = std::fs::read_dir(agent.dir().join("data").join(id).join("queue"))?
        .map(|e| e.map(|e| e.metadata().map(|m| m.len()).unwrap_or(0)).unwrap_or(0))
        .sum();
    assert!(on_disk <= 65536 + 4096, "queue directory holds {on_disk} bytes");

    let _up = site.spawn(&["up"])?;
    wait_for("the newest row", Duration::from_secs(90), || async {
        series(&site, id, "pm10").await.map(|r| r.last() == expected.last()).unwrap_or(false)
    })
    .await?;
    wait_for("the drop reported as a health sample", Duration::from_secs(30), || async {
        series(&site, id, "agent.dropped").await.map(|r| r.iter().any(|(_, v)| *v > 0.0)).unwrap_or(false)
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored = series(&site, id, "pm10").await?;
    assert!(stored.len() < expected.len(), "something had to be dropped");
    // What survives is the newest data, without gaps.
    assert_eq!(stored[..], expected[expected.len() - stored.len()..], "the oldest rows are the ones dropped");
    // The backlog went out oldest first: in device-time order, the platform received it in order.
    let received: Vec<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT s.received_at FROM samples s JOIN devices d ON d.key = s.device_key JOIN metrics m ON m.id = s.metric_id \
         WHERE d.id = $1 AND m.key = 'pm10' ORDER BY s.ts",
    )
    .bind(id)
    .fetch_all(site.db.store.pool())
    .await?;
    assert!(received.windows(2).all(|w| w[0] <= w[1]), "the backlog was received out of order");
    Ok(())
}

#[tokio::test]
async fn configuration_command_is_applied_kept_and_acknowledged() -> Result<()> {
    let site = Site::new().await?;
    let d = site.provision("网关 5").await?;
    let id = d.device_id.as_str().to_owned();
    let sources = r#"
[[devices.sources]]
name = "dust"
kind = "sim"
interval_ms = 1000

[[devices.sources]]
name = "spare"
kind = "sim"
interval_ms = 1000
seed = 2
"#;
    let agent = AgentSetup::new(&site, &d, sources, "health_interval_s = 3600")?;
    let _up = site.spawn(&["up"])?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let mut a = agent.spawn(&site)?;
    wait_for("device online", Duration::from_secs(30), || async {
        site.db.store.device(&d.device_id).await.ok().flatten().is_some_and(|r| r.online)
    })
    .await?;

    let out = site.output(&["device", "config", &id, "--interval", "dust=200", "--disable", "spare", "--wait", "20"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "device config failed: {}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_str(stdout.trim()).context("device config prints the recorded answer")?;
    assert_eq!(answer["ok"], true);
    assert_eq!(answer["state"]["dust"]["interval_ms"], 200);
    assert_eq!(answer["state"]["spare"]["enabled"], false);
    let dust = format!("device=\"{id}\",source=\"dust\"");
    let spare = format!("device=\"{id}\",source=\"spare\"");
    assert_eq!(agent.metric("offsite_edge_source_interval_seconds", &dust).await, Some(0.2));
    assert_eq!(agent.metric("offsite_edge_source_enabled", &spare).await, Some(0.0));
    // The new interval is in force: about five readings a second from now on.
    let before = agent.metric("offsite_edge_samples_total", &dust).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = agent.metric("offsite_edge_samples_total", &dust).await.unwrap();
    assert!(after - before >= 40.0, "4 metrics x ~15 polls expected in 3 s, got {}", after - before);

    // A refused command is answered and recorded as refused, and changes nothing.
    let out = site.output(&["device", "config", &id, "--interval", "nosuch=500", "--wait", "20"])?;
    assert!(!out.status.success());
    let refused: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())?;
    assert_eq!(refused["ok"], false);
    assert!(refused["error"].as_str().unwrap().contains("nosuch"));

    // Kept across a restart.
    assert_eq!(a.terminate(Duration::from_secs(20))?, Some(0));
    // Sent while the agent is away: delivered when it is back.
    let out = site.output(&["device", "config", &id, "--enable", "spare", "--wait", "0"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _a = agent.spawn(&site)?;
    wait_for("offline command delivered and applied", Duration::from_secs(30), || async {
        agent.metric("offsite_edge_source_enabled", &spare).await == Some(1.0)
    })
    .await?;
    assert_eq!(agent.metric("offsite_edge_source_interval_seconds", &dust).await, Some(0.2), "setting kept on disk");
    let key = site.db.store.device(&d.device_id).await?.unwrap().key;
    wait_for("every command answered", Duration::from_secs(20), || async {
        site.db.store.device_commands(key, 10).await.map(|c| c.iter().all(|c| c.acked_at.is_some())).unwrap_or(false)
    })
    .await?;
    let cmds = site.db.store.device_commands(key, 10).await?;
    assert_eq!(cmds.iter().map(|c| c.ok).collect::<Vec<_>>(), vec![Some(true), Some(false), Some(true)]);
    Ok(())
}

#[tokio::test]
async fn csv_replay_of_a_nab_file_stores_exactly_its_rows() -> Result<()> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/nab/data/artificialWithAnomaly/art_daily_jumpsup.csv");
    if !file.exists() {
        eprintln!("skipped: {} not present", file.display());
        return Ok(());
    }
    let mut expected = Vec::new();
    for line in std::fs::read_to_string(&file)?.lines().skip(1) {
        let (ts, v) = line.split_once(',').context("two columns")?;
        let t = chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S")?.and_utc().timestamp_millis();
        expected.push((t, v.parse::<f64>()?));
    }
    let site = Site::new().await?;
    let d = site.provision("NAB 回放").await?;
    let agent = AgentSetup::new(&site, &d, &csv_source(&file, 0.0), "health_interval_s = 3600")?;
    // The NAB files are from 2014: accept data that old.
    let mut up = site.command(&["up"]);
    up.env("OFFSITE_INGEST__RETENTION_DAYS", "20000");
    let _up = Proc(up.spawn()?);
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let _a = agent.spawn(&site)?;
    let id = d.device_id.as_str();
    wait_rows(&site, id, "pm10", expected.len(), Duration::from_secs(120)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(series(&site, id, "pm10").await?, expected);
    Ok(())
}
