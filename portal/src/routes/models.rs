//! Detector models: `GET /api/v1/models`, which model files the analytics tier loaded and when
//! (the `detector_models` log the tier appends to at start and on every reload).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use offsite_store::detector_models::DetectorModelRecord;
use serde::Serialize;
use serde_json::Value;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::AppState;

/// How many loads the list shows: enough history for a page, newest first.
const HISTORY: i64 = 100;

#[derive(Debug, Serialize)]
pub struct ModelView {
    pub id: i64,
    /// The detector that loaded it, as warnings name it (`anomaly-onnx`).
    pub detector: String,
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// The model card (`model.json`) as loaded.
    pub metadata: Value,
    #[serde(serialize_with = "crate::time::serialize")]
    pub loaded_at: DateTime<Utc>,
    /// The detector's latest load: the model it runs now.
    pub current: bool,
}

impl From<DetectorModelRecord> for ModelView {
    fn from(m: DetectorModelRecord) -> Self {
        Self {
            id: m.id,
            detector: m.detector,
            name: m.name,
            version: m.version,
            sha256: m.sha256,
            metadata: m.metadata,
            loaded_at: m.loaded_at,
            current: m.current,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Models {
    /// Newest first.
    pub items: Vec<ModelView>,
}

pub async fn list(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Models>> {
    crate::access::scope(&state, &who).await?;
    let items = state
        .store
        .model_loads(HISTORY)
        .await?
        .into_iter()
        .map(ModelView::from)
        .collect();
    Ok(Json(Models { items }))
}
