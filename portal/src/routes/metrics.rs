//! `GET /metrics` (Prometheus text format) and the HTTP request counter middleware.

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, TextEncoder};

use crate::error::ApiError;

/// Label used for requests no route matched; the raw path would let any client create series.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Registered once per process in the default registry (several apps may run in one test binary).
static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new("offsite_http_requests_total", "HTTP requests served by the portal, by route template and status"),
        &["route", "status"],
    )
    .expect("valid metric");
    register(Box::new(c.clone()));
    c
});

static HTTP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    let h = HistogramVec::new(
        HistogramOpts::new("offsite_http_request_duration_seconds", "Portal request latency by route template"),
        &["route"],
    )
    .expect("valid metric");
    register(Box::new(h.clone()));
    h
});

fn register(c: Box<dyn prometheus::core::Collector>) {
    // A clash means someone else registered the name; keep serving and say so rather than panic.
    if let Err(e) = prometheus::default_registry().register(c) {
        tracing::warn!(error = %e, "could not register portal metric");
    }
}

/// Registers the portal's metrics now, so `/metrics` lists them before the first request.
pub fn init() {
    LazyLock::force(&HTTP_REQUESTS);
    LazyLock::force(&HTTP_DURATION);
}

/// Counts every response by route template and final status.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let started = Instant::now();
    let resp = next.run(req).await;
    let route = route.as_deref().unwrap_or(UNMATCHED_ROUTE);
    HTTP_REQUESTS.with_label_values(&[route, resp.status().as_str()]).inc();
    HTTP_DURATION.with_label_values(&[route]).observe(started.elapsed().as_secs_f64());
    resp
}

pub async fn metrics() -> Response {
    let encoder = TextEncoder::new();
    let families = prometheus::default_registry().gather();
    let mut buf = Vec::with_capacity(16 * 1024);
    if let Err(e) = encoder.encode(&families, &mut buf) {
        return ApiError::from(anyhow::Error::new(e).context("encoding metrics")).into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(prometheus::TEXT_FORMAT))], buf).into_response()
}
