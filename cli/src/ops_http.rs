//! The operations HTTP server of tiers that serve no HTTP of their own (`offsite broker`,
//! `offsite ingest`, and any other tier process): `/healthz`, `/readyz` and `/metrics` on
//! `[ops] listen` (off unless set; `OFFSITE_OPS__LISTEN`).
//!
//! - `/healthz` answers 200 while the process runs: a liveness probe must not restart a replica
//!   because a dependency is down (a restart would not bring the database back).
//! - `/readyz` runs every [`Readiness`] check (database `SELECT 1`, broker connection or listener)
//!   and answers 200, or 503 with a JSON body naming what failed; 503 too once shutdown began.
//! - `/metrics` is the process's Prometheus default registry, where every crate registers.
//!
//! Wiring a tier is one call: `ops_http::spawn(&cfg.ops, "analytics", Readiness::new().database(store))`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Each check's deadline: a stuck dependency reports "timeout" well within a probe's own timeout.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// `[ops]`: where a tier process without a portal serves its probes and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpsConfig {
    /// e.g. `0.0.0.0:9100`; `"off"` (the default) serves nothing.
    #[serde(with = "offsite_wire::listen")]
    pub listen: Option<SocketAddr>,
}

type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// What a tier needs before it can do its work; each check is named in `/readyz`'s answer.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Any check; `Err` carries a short reason class (never a driver message that may name hosts).
    pub fn check<F>(mut self, name: &'static str, f: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
    {
        self.checks.push((name, Arc::new(f)));
        self
    }

    /// The database answers `SELECT 1`.
    pub fn database(self, store: offsite_store::Store) -> Self {
        self.check("database", move || {
            let store = store.clone();
            Box::pin(async move {
                store.ping().await.map_err(|e| {
                    tracing::warn!(error = format!("{e:#}"), "readiness: database ping failed");
                    "error".to_owned()
                })
            })
        })
    }

    /// A listener of this process accepts TCP connections (an unspecified address is probed on
    /// loopback).
    pub fn listener(self, name: &'static str, addr: SocketAddr) -> Self {
        let addr = probe_address(addr);
        self.check(name, move || {
            Box::pin(async move {
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(|_| "not_accepting".to_owned())
            })
        })
    }

    /// The tier's own MQTT connection to the broker is up (`offsite_ingest_broker_connected`).
    pub fn ingest_broker_connection(self) -> Self {
        self.check("broker", || {
            Box::pin(async {
                match offsite_ingest::metrics::BROKER_CONNECTED.get() {
                    1 => Ok(()),
                    _ => Err("disconnected".to_owned()),
                }
            })
        })
    }

    /// Runs every check concurrently; a map of name -> "ok" or the reason, and whether all passed.
    async fn run(&self) -> (bool, Map<String, Value>) {
        let results = futures::future::join_all(self.checks.iter().map(|(name, check)| {
            let fut = check();
            async move {
                let r = match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
                    Ok(r) => r,
                    Err(_) => Err("timeout".to_owned()),
                };
                (*name, r)
            }
        }))
        .await;
        let ok = results.iter().all(|(_, r)| r.is_ok());
        let map = results
            .into_iter()
            .map(|(name, r)| {
                (
                    name.to_owned(),
                    Value::String(r.err().unwrap_or_else(|| "ok".to_owned())),
                )
            })
            .collect();
        (ok, map)
    }
}

fn probe_address(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

#[derive(Clone)]
struct OpsState {
    tier: &'static str,
    readiness: Readiness,
    draining: Arc<AtomicBool>,
}

/// A running ops server; [`OpsServer::stop`] (or dropping it) ends it.
pub struct OpsServer {
    draining: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl OpsServer {
    /// `/readyz` answers 503 `shutting_down` from now on, so load balancers drain this replica.
    pub fn begin_shutdown(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn stop(self) {
        self.begin_shutdown();
        self.task.abort();
    }
}

impl Drop for OpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the ops server for `tier` when `[ops] listen` is set; `None` when it is off.
pub async fn spawn(
    cfg: &OpsConfig,
    tier: &'static str,
    readiness: Readiness,
) -> Result<Option<OpsServer>> {
    let Some(listen) = cfg.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the ops listener {listen} (ops.listen)"))?;
    let addr = listener.local_addr()?;
    let draining = Arc::new(AtomicBool::new(false));
    let state = OpsState {
        tier,
        readiness,
        draining: draining.clone(),
    };
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "ops server stopped");
        }
    });
    tracing::info!(%addr, tier, "ops server listening (/healthz, /readyz, /metrics)");
    Ok(Some(OpsServer { draining, task }))
}

async fn healthz(State(s): State<OpsState>) -> Json<Value> {
    Json(json!({"status": "ok", "tier": s.tier}))
}

async fn readyz(State(s): State<OpsState>) -> Response {
    let (ok, checks) = s.readiness.run().await;
    let draining = s.draining.load(Ordering::Relaxed);
    let (code, status, message) = match (ok, draining) {
        (_, true) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "正在停止 / shutting down",
        ),
        (true, false) => (StatusCode::OK, "ready", "就绪 / ready"),
        (false, false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "未就绪：依赖不可用 / not ready: a dependency is unavailable",
        ),
    };
    let reason: Vec<String> = checks
        .iter()
        .filter(|(_, v)| v.as_str() != Some("ok"))
        .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or("?")))
        .collect();
    let mut body = json!({"status": status, "tier": s.tier, "message": message, "checks": checks});
    if !reason.is_empty() {
        body["reason"] = Value::String(reason.join(", "));
    }
    (code, Json(body)).into_response()
}

async fn metrics() -> Response {
    use prometheus::Encoder;
    let encoder = prometheus::TextEncoder::new();
    let mut buf = Vec::new();
    match encoder.encode(&prometheus::gather(), &mut buf) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            buf,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "encoding metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_is_off_unless_set() {
        let c: OpsConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c.listen, None);
        let c: OpsConfig = serde_json::from_str(r#"{"listen":"off"}"#).unwrap();
        assert_eq!(c.listen, None);
        let c: OpsConfig = serde_json::from_str(r#"{"listen":"0.0.0.0:9100"}"#).unwrap();
        assert_eq!(c.listen, Some("0.0.0.0:9100".parse().unwrap()));
        assert!(serde_json::from_str::<OpsConfig>(r#"{"listen":"nine"}"#).is_err());
    }

    #[test]
    fn unspecified_addresses_are_probed_on_loopback() {
        assert_eq!(
            probe_address("0.0.0.0:8883".parse().unwrap()),
            "127.0.0.1:8883".parse().unwrap()
        );
        assert_eq!(
            probe_address("[::]:1883".parse().unwrap()),
            "[::1]:1883".parse().unwrap()
        );
        assert_eq!(
            probe_address("10.0.0.5:1883".parse().unwrap()),
            "10.0.0.5:1883".parse().unwrap()
        );
    }

    #[tokio::test]
    async fn readiness_names_the_failed_check() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Readiness::new()
            .listener("open", open.local_addr().unwrap())
            .listener("closed", closed_addr);
        let (ok, checks) = r.run().await;
        assert!(!ok);
        assert_eq!(checks["open"], "ok");
        assert_eq!(checks["closed"], "not_accepting");
    }
}
