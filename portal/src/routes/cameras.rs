//! `GET /api/v1/cameras`, `GET /api/v1/snapshots/{id}` and
//! `PUT /api/v1/cameras/{device}/{camera}/zones` (the zone editor).
//!
//! Cameras and snapshots are scoped by their device, like devices: what the caller may not see
//! answers 404. Zones are sent to the agent as a `set_zones` command, recorded in
//! `device_commands` first (so the answer is never for an unknown command) and audited.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use offsite_store::cameras::CameraRecord;
use offsite_wire::{CameraId, Channel, Command, CommandAction, Topic, Zone};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::devices::{parse_device_id, visible_device, Page};
use crate::AppState;

/// Most zones one camera may have (the agent tests every person against every zone).
pub const MAX_ZONES: usize = 32;

/// A camera as the API shows it.
#[derive(Debug, Serialize)]
pub struct CameraView {
    pub device_id: String,
    pub device_name: String,
    pub object_id: Option<String>,
    pub camera_id: String,
    pub name: String,
    pub online: bool,
    pub fps: f32,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub last_frame_at: Option<DateTime<Utc>>,
    /// `{"state":"on","model":..}` or `{"state":"off","reason":..}`.
    pub detection: serde_json::Value,
    pub zones: serde_json::Value,
    /// Health conditions raised now (`offline`, `black`, `frozen`, `covered`, `moved`).
    pub health: Vec<String>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub updated_at: DateTime<Utc>,
    pub latest_snapshot_id: Option<i64>,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub latest_snapshot_at: Option<DateTime<Utc>>,
}

impl From<CameraRecord> for CameraView {
    fn from(c: CameraRecord) -> Self {
        Self {
            device_id: c.device_id,
            device_name: c.device_name,
            object_id: c.object_id,
            camera_id: c.camera_id,
            name: c.name,
            online: c.online && !c.health.iter().any(|h| h == "offline"),
            fps: c.fps,
            last_frame_at: c.last_frame_at,
            detection: c.detection,
            zones: c.zones,
            health: c.health,
            updated_at: c.updated_at,
            latest_snapshot_id: c.latest_snapshot_id,
            latest_snapshot_at: c.latest_snapshot_at,
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Page<CameraView>>> {
    let visible = crate::access::visible_devices(&state, &who).await?;
    let keys: Option<Vec<i32>> = visible.map(|v| v.into_iter().collect());
    let items: Vec<CameraView> = state
        .store
        .cameras_among(keys.as_deref())
        .await?
        .into_iter()
        .map(CameraView::from)
        .collect();
    Ok(Json(Page {
        total: items.len() as i64,
        items,
    }))
}

fn snapshot_not_found(id: i64) -> ApiError {
    ApiError::not_found(
        format!("snapshot {id} not found"),
        format!("快照 {id} 不存在"),
    )
}

/// The JPEG of a snapshot. Its bytes never change (content-addressed), so it is cached for good
/// (privately: it is evidence) and revalidated by its hash.
pub async fn snapshot(
    State(state): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    let visible = crate::access::visible_devices(&state, &who).await?;
    let s = match state.store.snapshot(id).await? {
        Some(s) if visible.as_ref().is_none_or(|v| v.contains(&s.device_key)) => s,
        _ => return Err(snapshot_not_found(id)),
    };
    let etag = format!("\"{}\"", s.sha256);
    let cache = HeaderValue::from_static("private, max-age=31536000, immutable");
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| ApiError::internal())?;
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    let data = state
        .files()
        .get(&s.sha256)
        .await?
        .ok_or_else(|| snapshot_not_found(id))?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, cache),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        data,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZonesBody {
    pub zones: Vec<Zone>,
}

#[derive(Debug, Serialize)]
pub struct ZonesSent {
    /// The `set_zones` command as recorded (its answer shows in the device's commands).
    pub command_id: String,
    /// False when no broker connection was available now: the command goes out when the device
    /// next comes online.
    pub sent: bool,
}

/// Checks a zone layout: each zone valid (wire `Zone::check`), ids unique, not too many.
pub fn check_zones(zones: &[Zone]) -> Result<(), ApiError> {
    if zones.len() > MAX_ZONES {
        return Err(ApiError::bad_request(
            format!("at most {MAX_ZONES} zones"),
            format!("每个摄像头最多 {MAX_ZONES} 个区域"),
        ));
    }
    let mut ids = HashSet::new();
    for z in zones {
        z.check()
            .map_err(|e| ApiError::bad_request(e.clone(), format!("区域无效：{e}")))?;
        if z.polygon.len() > 64 {
            return Err(ApiError::bad_request(
                format!("zone {}: at most 64 points", z.id),
                format!("区域 {}：最多 64 个点", z.id),
            ));
        }
        if !ids.insert(z.id.as_str()) {
            return Err(ApiError::bad_request(
                format!("zone id {} used twice", z.id),
                format!("区域编号 {} 重复", z.id),
            ));
        }
    }
    Ok(())
}

fn new_command_id() -> String {
    format!(
        "z{}-{:08x}",
        Utc::now().timestamp_millis(),
        rand::random::<u32>()
    )
}

/// Replaces a camera's zones: records a `set_zones` command and sends it to the agent.
pub async fn put_zones(
    State(state): State<AppState>,
    who: Principal,
    ApiPath((device, camera)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ZonesBody>,
) -> ApiResult<Response> {
    who.require(&crate::access::OPERATE)?;
    let device = parse_device_id(&device)?;
    let d = visible_device(&state, &who, &device).await?;
    let not_found = || {
        ApiError::not_found(
            format!("camera {device}/{camera} not found"),
            format!("摄像头 {device}/{camera} 不存在"),
        )
    };
    let camera_id = CameraId::parse(&camera).map_err(|_| not_found())?;
    let before = state
        .store
        .camera(d.key, camera_id.as_str())
        .await?
        .ok_or_else(not_found)?;
    if d.revoked_at.is_some() {
        return Err(ApiError::conflict(
            format!("device {device} is revoked"),
            format!("设备 {device} 已吊销"),
        ));
    }
    check_zones(&body.zones)?;
    let cmd = Command {
        id: new_command_id(),
        action: CommandAction::SetZones {
            camera: camera_id.clone(),
            zones: body.zones.clone(),
        },
    };
    // Through the text form: `to_value` would widen the f32 coordinates (0.1 -> 0.10000000149011612).
    let json: serde_json::Value =
        serde_json::from_slice(&cmd.encode()).map_err(|_| ApiError::internal())?;
    state
        .store
        .insert_command(&cmd.id, d.key, "set_zones", &json, Some(who.username()))
        .await?;
    let sent = match state.commands() {
        Some(p) => match p
            .publish(
                &Topic::new(device.clone(), Channel::Cmd).render(),
                cmd.encode(),
            )
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%device, command = %cmd.id, error = %format!("{e:#}"), "set_zones recorded, not sent now");
                false
            }
        },
        None => false,
    };
    state
        .audit(
            offsite_store::AuditEvent::new(who.username(), "camera.set_zones", "camera")
                .id(format!("{device}/{camera_id}"))
                .before(before.zones.clone())
                .after(json["zones"].clone()),
        )
        .await;
    Ok((
        StatusCode::ACCEPTED,
        Json(ZonesSent {
            command_id: cmd.id,
            sent,
        }),
    )
        .into_response())
}
