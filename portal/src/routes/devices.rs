//! `GET /api/v1/devices`, `GET /api/v1/devices/{id}`, `GET /api/v1/devices/{id}/latest` and
//! `GET /api/v1/metrics` (the catalog).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use offsite_store::{DeviceRecord, MetricDef};
use offsite_wire::DeviceId;
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{int_param, ApiPath, ApiQuery};
use crate::AppState;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 500;

/// A device as the API shows it. A separate type from the store's record so the wire format
/// (field names, time format, `revoked` flag) does not change when the table does; the token hash
/// and the internal surrogate key are never exposed.
#[derive(Debug, Serialize)]
pub struct DeviceView {
    pub id: String,
    pub name: String,
    pub object_id: Option<String>,
    pub online: bool,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: DateTime<Utc>,
    pub revoked: bool,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub rotated_at: Option<DateTime<Utc>>,
    pub cert_serial: Option<String>,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub cert_not_after: Option<DateTime<Utc>>,
}

impl From<DeviceRecord> for DeviceView {
    fn from(d: DeviceRecord) -> Self {
        Self {
            id: d.id,
            name: d.name,
            object_id: d.object_id,
            online: d.online,
            last_seen: d.last_seen,
            created_at: d.created_at,
            revoked: d.revoked_at.is_some(),
            revoked_at: d.revoked_at,
            rotated_at: d.rotated_at,
            cert_serial: d.cert_serial,
            cert_not_after: d.cert_not_after,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    pub limit: Option<String>,
    pub offset: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<DeviceView>>> {
    let visible = crate::access::visible_devices(&state, &who).await?;
    let limit = int_param("limit", p.limit.as_deref())?.unwrap_or(DEFAULT_LIMIT);
    if !(0..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            format!("limit must be between 0 and {MAX_LIMIT}"),
            format!("limit 必须在 0 到 {MAX_LIMIT} 之间"),
        ));
    }
    let offset = int_param("offset", p.offset.as_deref())?.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request("offset must not be negative", "offset 不能为负数"));
    }
    let keys: Option<Vec<i32>> = visible.map(|v| v.into_iter().collect());
    let (items, total) = state.store.list_devices_among(keys.as_deref(), limit, offset).await?;
    Ok(Json(Page { items: items.into_iter().map(DeviceView::from).collect(), total }))
}

pub async fn get(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<String>) -> ApiResult<Json<DeviceView>> {
    let id = parse_device_id(&id)?;
    Ok(Json(visible_device(&state, &who, &id).await?.into()))
}

/// The device if the caller may see it; 404 otherwise, as if it did not exist.
pub(crate) async fn visible_device(state: &AppState, who: &Principal, id: &DeviceId) -> ApiResult<offsite_store::DeviceRecord> {
    let visible = crate::access::visible_devices(state, who).await?;
    match state.store.device(id).await? {
        Some(d) if visible.as_ref().is_none_or(|v| v.contains(&d.key)) => Ok(d),
        _ => Err(device_not_found(id)),
    }
}

/// One metric's newest value; `quality` 0 is good (see `offsite_store::samples::quality`).
#[derive(Debug, Serialize)]
pub struct LatestView {
    pub metric: String,
    #[serde(serialize_with = "crate::time::serialize")]
    pub ts: DateTime<Utc>,
    pub value: f64,
    pub quality: i16,
}

/// The newest value of every metric the device has sent: what its page charts first.
pub async fn latest(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Page<LatestView>>> {
    let id = parse_device_id(&id)?;
    let d = visible_device(&state, &who, &id).await?;
    let items: Vec<LatestView> = state
        .store
        .device_latest(d.key)
        .await?
        .into_iter()
        .map(|l| LatestView { metric: l.metric, ts: l.ts, value: l.value, quality: l.quality })
        .collect();
    let total = items.len() as i64;
    Ok(Json(Page { items, total }))
}

pub async fn metric_catalog(State(state): State<AppState>, _who: Principal) -> ApiResult<Json<Page<MetricDef>>> {
    let items = state.store.metrics().await?;
    let total = items.len() as i64;
    Ok(Json(Page { items, total }))
}

pub(crate) fn parse_device_id(s: &str) -> ApiResult<DeviceId> {
    DeviceId::parse(s).map_err(|e| {
        ApiError::bad_request(format!("invalid device id: {e}"), "设备编号无效：只能包含 1 到 32 个英文字母或数字")
    })
}

pub(crate) fn device_not_found(id: &DeviceId) -> ApiError {
    ApiError::not_found(format!("device {id} not found"), format!("设备 {id} 不存在"))
}
