//! `offsite bench edge`: resident memory and CPU of the edge agent (a child process, as on a
//! gateway) serving N simulated devices at a given rate against the all-in-one platform.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::support::{free_port, round, scratch_dir};
use crate::configuration::Config;
use crate::startup::AllInOne;

#[derive(clap::Args)]
pub struct Args {
    /// Devices served by the one agent.
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// Sampling interval of each device's simulated sensor (4 metrics per reading).
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    #[arg(long, default_value_t = 10)]
    warmup: u64,
}

pub async fn run(base: Config, a: Args) -> Result<()> {
    let dir = scratch_dir("edge")?;
    let mut cfg = base;
    cfg.data_dir = dir.path().join("platform");
    cfg.database.url = None;
    cfg.broker.tls_listen = Some(format!("127.0.0.1:{}", free_port()?).parse()?);
    cfg.broker.plain_listen = Some(format!("127.0.0.1:{}", free_port()?).parse()?);
    cfg.portal.listen = Some("127.0.0.1:0".parse()?);
    cfg.portal.https_listen = None;
    cfg.hj212.listen = "127.0.0.1:0".into();
    let p = AllInOne::start(&cfg).await?;
    let r = measure(&p, &a, dir.path()).await;
    p.stop().await?;
    println!("{}", r?);
    Ok(())
}

async fn measure(p: &AllInOne, a: &Args, dir: &std::path::Path) -> Result<serde_json::Value> {
    let agent_dir = dir.join("agent");
    std::fs::create_dir_all(&agent_dir)?;
    let port = p.broker.tls_addr().context("TLS listener")?.port();
    let metrics_port = free_port()?;
    let mut toml = format!(
        "data_dir = \"data\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\n[broker]\nhost = \"localhost\"\nport = {port}\n"
    );
    let mut ids = Vec::new();
    for i in 0..a.devices {
        let (_, creds) = offsite_broker::provision(&p.db.store, &p.pki, &format!("bench-edge-{i}"), None).await?;
        let file = agent_dir.join(format!("device-{i}.json"));
        std::fs::write(&file, serde_json::to_vec(&creds)?)?;
        toml.push_str(&format!(
            "\n[[devices]]\ncredentials = \"device-{i}.json\"\n[[devices.sources]]\nname = \"dust\"\nkind = \"sim\"\ninterval_ms = {}\nseed = {}\n",
            a.interval_ms,
            i + 1
        ));
        ids.push(creds.device_id.to_string());
    }
    let config = agent_dir.join("agent.toml");
    std::fs::write(&config, toml)?;
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .arg("edge-agent")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting the edge agent")?;
    let pid = child.id();
    let r = sample(p, a, pid, &ids).await;
    let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    r
}

async fn sample(p: &AllInOne, a: &Args, pid: u32, ids: &[String]) -> Result<serde_json::Value> {
    eprintln!("bench edge: agent pid {pid}, {} devices every {} ms; warm-up {} s", a.devices, a.interval_ms, a.warmup);
    let t0 = Instant::now();
    while p.db.store.online_count().await? < a.devices as i64 {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("devices did not come online within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    let stored = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM samples s JOIN devices d ON d.key = s.device_key WHERE d.id = ANY($1)",
        )
        .bind(ids)
        .fetch_one(p.db.store.pool())
        .await?;
        anyhow::Ok(n)
    };
    let (rows0, cpu0) = (stored().await?, cpu_ticks(pid)?);
    let start = Instant::now();
    let mut rss = Vec::new();
    while start.elapsed() < Duration::from_secs(a.duration) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(status_kib(pid, "VmRSS:")? as f64 / 1024.0);
        if rss.len() % 10 == 0 {
            eprintln!("  {:>3} s  RSS {:.1} MiB", rss.len(), rss.last().unwrap());
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_s = (cpu_ticks(pid)? - cpu0) as f64 / clock_ticks() as f64;
    let hwm = status_kib(pid, "VmHWM:")? as f64 / 1024.0;
    let rows = stored().await? - rows0;
    let expected = a.devices as f64 * 4.0 * elapsed * 1000.0 / a.interval_ms as f64;
    let max = rss.iter().copied().fold(0.0, f64::max);
    let avg = rss.iter().sum::<f64>() / rss.len().max(1) as f64;
    Ok(json!({
        "bench": "edge",
        "devices": a.devices,
        "interval_ms": a.interval_ms,
        "duration_s": round(elapsed, 1),
        "rss_mib_max": round(max, 1),
        "rss_mib_avg": round(avg, 1),
        "rss_mib_peak_hwm": round(hwm, 1),
        "cpu_percent": round(cpu_s / elapsed * 100.0, 2),
        "samples_stored_per_s": round(rows as f64 / elapsed, 1),
        "samples_generated_per_s": round(expected / elapsed, 1),
        "budget_mib": 30,
        "within_budget": hwm < 30.0,
    }))
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).context("the agent exited")?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/{pid}/status"))
}

/// User + system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th overall.
    let rest = s.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
}

/// /proc reports CPU times in USER_HZ, which Linux fixes at 100 for user space.
fn clock_ticks() -> u64 {
    100
}
