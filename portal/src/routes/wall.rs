//! `GET /api/v1/wall/summary`: the monitoring wall's figures in one request (open warnings by level
//! and by region, device online rate), over what the caller may see.

use axum::extract::State;
use axum::Json;
use offsite_store::wall::WallSummary;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::AppState;

pub async fn summary(State(state): State<AppState>, who: Principal) -> ApiResult<Json<WallSummary>> {
    let visible = crate::access::visible_devices(&state, &who).await?;
    let keys: Option<Vec<i32>> = visible.map(|v| v.into_iter().collect());
    Ok(Json(state.store.wall_summary(keys.as_deref()).await?))
}
