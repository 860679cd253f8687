//! The agent's Prometheus metrics (default registry) and its small HTTP endpoint.
//!
//! In the all-in-one demo the agent runs inside the platform process, so the same series appear
//! on the platform's `/metrics`.

use std::net::SocketAddr;
use std::sync::LazyLock;

use prometheus::{
    register_gauge_vec, register_histogram_vec, register_int_counter_vec, register_int_gauge_vec, GaugeVec,
    HistogramVec, IntCounterVec, IntGaugeVec,
};

pub static QUEUE_DEPTH: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("offsite_edge_queue_depth", "Batches in the device's disk queue awaiting acknowledgement", &["device"]).unwrap()
});
pub static QUEUE_BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("offsite_edge_queue_bytes", "Bytes of the device's disk queue", &["device"]).unwrap()
});
pub static UNACKED_OLDEST: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!("offsite_edge_unacked_oldest_seconds", "Age of the oldest unacknowledged batch", &["device"]).unwrap()
});
pub static DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_edge_dropped_total", "Batches dropped because the disk budget was full", &["device"]).unwrap()
});
pub static SOURCE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_edge_source_errors_total", "Failed source reads", &["device", "source"]).unwrap()
});
pub static SAMPLES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_edge_samples_total", "Samples read from sources and queued", &["device", "source"]).unwrap()
});
pub static ACKED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_edge_batches_acked_total", "Batches the platform acknowledged", &["device"]).unwrap()
});
pub static CONNECTED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("offsite_edge_connected", "1 while connected to the broker", &["device"]).unwrap()
});
pub static CONNECT_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_edge_connect_failures_total", "Broker connection attempts that failed and connections lost", &["device"]).unwrap()
});
pub static RECONNECT_DELAY: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!("offsite_edge_reconnect_delay_seconds", "Ceiling of the current reconnect wait (0 while connected); doubles per failure", &["device"]).unwrap()
});
pub static SOURCE_ENABLED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("offsite_edge_source_enabled", "1 while a source is switched on", &["device", "source"]).unwrap()
});
pub static SOURCE_INTERVAL: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!("offsite_edge_source_interval_seconds", "Polling interval of a source", &["device", "source"]).unwrap()
});
pub static COMMANDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_edge_commands_total", "Commands received, by outcome", &["device", "outcome"]).unwrap()
});

pub static HJ212_RESENDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_edge_hj212_resends_total", "HJ 212 packets sent again because no 9014 came in time", &["device"]).unwrap()
});
pub static HJ212_BAD_INPUT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_edge_hj212_bad_input_total", "Bytes or packets from the HJ 212 server that were not understood, by reason", &["device", "reason"]).unwrap()
});
pub static HJ212_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_edge_hj212_requests_total", "Requests from the HJ 212 server, by command code and outcome", &["device", "cn", "outcome"]).unwrap()
});
pub static HJ212_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_edge_hj212_refused_total", "Uploads the HJ 212 server refused with a 9011 other than ready, by QnRtn", &["device", "qn_rtn"]).unwrap()
});

pub static CAMERA_FRAMES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_edge_camera_frames_total", "Camera frames analysed (health checks ran)", &["device", "camera"]).unwrap()
});
pub static CAMERA_INFERENCES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offsite_edge_camera_inferences_total",
        "Camera frames given to person detection (the rest were skipped by motion gating)",
        &["device", "camera"]
    )
    .unwrap()
});
pub static CAMERA_ONLINE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("offsite_edge_camera_online", "1 while a camera delivers pictures", &["device", "camera"]).unwrap()
});
pub static CAMERA_RECONNECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_edge_camera_reconnects_total", "Camera pipelines rebuilt after an error, end or stall", &["device", "camera"]).unwrap()
});
pub static CAMERA_EVENTS_PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("offsite_edge_camera_events_pending", "Camera events on disk awaiting the platform's acknowledgement", &["device"]).unwrap()
});
/// Per-frame cost of person detection by stage (`preprocess`: letterbox into the model input,
/// `inference`: the ONNX Runtime run, `postprocess`: grid decoding, threshold and NMS). No camera
/// label: the cost is the model's, and a histogram per camera would be many series for little.
pub static CAMERA_STAGE_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "offsite_edge_camera_stage_seconds",
        "Time per analysed frame in each person-detection stage",
        &["stage"],
        vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
    )
    .unwrap()
});

/// Serves `/metrics` and `/healthz` until the task is aborted.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/metrics", get(|| async { render() }))
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok((bound, task))
}

fn render() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let mut out = String::new();
    let enc = prometheus::TextEncoder::new();
    let _ = enc.encode_utf8(&prometheus::gather(), &mut out);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
