//! Probes of the scaled-out tiers (`[ops] listen` for `offsite broker` and `offsite ingest`, the
//! portal's own `/readyz`): they answer while the tiers are well, and readiness turns 503 with a
//! reason when what a tier needs goes away (the broker for ingest, the database for all).
//!
//! The database-stop part runs its own PostgreSQL cluster in a temporary directory, so stopping
//! it disturbs no other test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use offsite_store::embedded::{EmbeddedOptions, EmbeddedPostgres};
use offsite_tests::*;
use serde_json::Value;

/// The ports of one scaled-out installation on this machine.
struct Ports {
    tls: u16,
    plain: u16,
    portal: u16,
    broker_ops: u16,
    ingest_ops: u16,
}

impl Ports {
    fn new() -> Self {
        Self {
            tls: free_port(),
            plain: free_port(),
            portal: free_port(),
            broker_ops: free_port(),
            ingest_ops: free_port(),
        }
    }
}

/// `offsite <tier>` against `database_url`, its ops server on `ops_port`.
fn tier(dir: &Path, database_url: &str, p: &Ports, tier: &str, ops_port: u16) -> Result<Proc> {
    let mut c = Command::new(offsite_bin());
    c.arg("--data-dir")
        .arg(dir)
        .arg("--database-url")
        .arg(database_url)
        .arg(tier);
    c.env("OFFSITE_BROKER__TLS_LISTEN", format!("127.0.0.1:{}", p.tls))
        .env(
            "OFFSITE_BROKER__PLAIN_LISTEN",
            format!("127.0.0.1:{}", p.plain),
        )
        .env("OFFSITE_INTERNAL_MQTT__PORT", p.plain.to_string())
        .env("OFFSITE_PORTAL__LISTEN", format!("127.0.0.1:{}", p.portal))
        .env("OFFSITE_PORTAL__HTTPS_LISTEN", "off")
        .env("OFFSITE_HJ212__ENABLED", "false")
        .env("OFFSITE_OPS__LISTEN", format!("127.0.0.1:{ops_port}"))
        .env("OFFSITE_AUTH__INITIAL_ADMIN_PASSWORD", "Ops-Probe#2026")
        .env("RUST_LOG", "info,rumqttd=warn,sqlx=warn")
        .stdin(Stdio::null());
    if std::env::var_os("OFFSITE_TEST_VERBOSE").is_none() {
        c.stdout(Stdio::null()).stderr(Stdio::null());
    }
    Ok(Proc(
        c.spawn()
            .with_context(|| format!("spawning offsite {tier}"))?,
    ))
}

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.unwrap_or_default()))
}

/// Waits until `path` answers `status`; returns the JSON body of that answer.
async fn wait_status(port: u16, path: &str, status: u16, timeout: Duration) -> Result<Value> {
    let mut last = None;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < timeout {
        if let Some((s, body)) = get(port, path).await {
            if s == status {
                return Ok(serde_json::from_str(&body).unwrap_or(Value::String(body)));
            }
            last = Some((s, body));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "{path} on port {port} did not answer {status} within {timeout:?}; last answer {last:?}"
    )
}

#[tokio::test]
async fn tiers_answer_probes_and_turn_unready_without_broker_or_database() -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("offsite-ops-")
        .tempdir_in("/tmp")?;
    let pg_port = free_port();
    let pg = EmbeddedPostgres::ensure(
        &dir.path().join("pg"),
        &EmbeddedOptions {
            port: pg_port,
            ..Default::default()
        },
    )
    .await?;
    let stop_pg = scopeguard(&pg);
    pg.ensure_database("offsite").await?;
    let url = pg.url("offsite");
    let data = dir.path().join("data");
    let p = Ports::new();

    let mut broker = tier(&data, &url, &p, "broker", p.broker_ops)?;
    let broker_ready = wait_status(p.broker_ops, "/readyz", 200, Duration::from_secs(60)).await?;
    assert_eq!(broker_ready["checks"]["database"], "ok", "{broker_ready}");
    assert_eq!(
        broker_ready["checks"]["tls_listener"], "ok",
        "{broker_ready}"
    );
    assert_eq!(
        broker_ready["checks"]["plain_listener"], "ok",
        "{broker_ready}"
    );
    let _ingest = tier(&data, &url, &p, "ingest", p.ingest_ops)?;
    let _portal = tier(&data, &url, &p, "portal", free_port())?;

    // Every tier: alive, ready, and its metrics.
    for (port, name) in [(p.broker_ops, "broker"), (p.ingest_ops, "ingest")] {
        let alive = wait_status(port, "/healthz", 200, Duration::from_secs(60)).await?;
        assert_eq!(alive["tier"], name);
        let ready = wait_status(port, "/readyz", 200, Duration::from_secs(60)).await?;
        assert_eq!(ready["status"], "ready", "{ready}");
    }
    let (status, metrics) = get(p.ingest_ops, "/metrics")
        .await
        .context("ingest /metrics")?;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("offsite_ingest_broker_connected 1"),
        "ingest metrics: {metrics}"
    );
    let (status, metrics) = get(p.broker_ops, "/metrics")
        .await
        .context("broker /metrics")?;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("offsite_broker_"),
        "broker metrics lack the broker's own: {metrics}"
    );
    let portal_ready = wait_status(p.portal, "/readyz", 200, Duration::from_secs(60)).await?;
    assert_eq!(portal_ready["database"], "ok", "{portal_ready}");

    // Ingest without its broker: alive but not ready, and says why.
    broker.kill9();
    let not_ready = wait_status(p.ingest_ops, "/readyz", 503, Duration::from_secs(30)).await?;
    assert_eq!(not_ready["checks"]["broker"], "disconnected", "{not_ready}");
    assert_eq!(not_ready["checks"]["database"], "ok", "{not_ready}");
    assert_eq!(
        wait_status(p.ingest_ops, "/healthz", 200, Duration::from_secs(5)).await?["status"],
        "ok"
    );
    let _broker = tier(&data, &url, &p, "broker", p.broker_ops)?;
    wait_status(p.ingest_ops, "/readyz", 200, Duration::from_secs(60)).await?;

    // The database stops: every tier turns 503 naming it, and stays alive.
    drop(stop_pg);
    for port in [p.broker_ops, p.ingest_ops] {
        let body = wait_status(port, "/readyz", 503, Duration::from_secs(30)).await?;
        assert_ne!(body["checks"]["database"], "ok", "{body}");
        assert!(
            body["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("database"),
            "{body}"
        );
        wait_status(port, "/healthz", 200, Duration::from_secs(5)).await?;
    }
    let body = wait_status(p.portal, "/readyz", 503, Duration::from_secs(30)).await?;
    assert_ne!(body["database"], "ok", "{body}");
    Ok(())
}

/// Stops the private cluster when dropped (at the database-stop step, or when the test fails).
struct StopCluster<'a>(&'a EmbeddedPostgres);

impl Drop for StopCluster<'_> {
    fn drop(&mut self) {
        let _ = self.0.stop_now();
    }
}

fn scopeguard(pg: &EmbeddedPostgres) -> StopCluster<'_> {
    StopCluster(pg)
}
