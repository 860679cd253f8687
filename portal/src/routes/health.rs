//! `GET /healthz`: liveness plus a database round trip, for load balancers and the operator.
//! `GET /readyz`: the same verdict under the name orchestrators probe for readiness (Kubernetes,
//! the ops servers of the other tiers in `cli/src/ops_http.rs` use the same path).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::AppState;

/// Well under the request timeout, so a stuck pool reports "degraded" rather than timing out.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn healthz(State(state): State<AppState>) -> Response {
    let database = match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = format!("{e:#}"), "health check: database ping failed");
            // A coarse class only: the driver's message can name hosts and users.
            Err("error")
        }
        Err(_) => {
            tracing::warn!(?PING_TIMEOUT, "health check: database ping timed out");
            Err("timeout")
        }
    };
    let (status, body) = match (database, state.is_ready()) {
        (Ok(()), true) => (StatusCode::OK, json!({"status": "ok", "database": "ok"})),
        // Draining: tell load balancers to stop sending traffic while in-flight requests finish.
        (Ok(()), false) => (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "shutting_down", "database": "ok"})),
        (Err(e), _) => (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "degraded", "database": e})),
    };
    (status, Json(body)).into_response()
}

/// Readiness: 200 while the database answers `SELECT 1` and the portal is not draining; 503 with
/// the reason otherwise (a replica taken out of rotation, not restarted).
pub async fn readyz(state: State<AppState>) -> Response {
    healthz(state).await
}
