//! Silences and maintenance windows: `GET|POST /api/v1/silences`, `DELETE /api/v1/silences/{id}`,
//! `GET|POST /api/v1/maintenance`.
//!
//! Bodies refuse unknown fields: a silence with every matcher unset silences everything, so a
//! misspelt `"device_id"` must not quietly turn into that.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use offsite_store::{MaintenanceRecord, NewMaintenance, NewSilence, SilenceRecord};
use offsite_wire::{DeviceId, MetricKey};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::devices::Page;
use crate::AppState;

/// The longest silence or maintenance window one request may create.
pub const MAX_WINDOW: TimeDelta = TimeDelta::days(366);
pub const MAX_REASON_CHARS: usize = 1000;
/// For object ids and event names, which have no stricter format.
pub const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default)]
    pub duration_s: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceBody {
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default)]
    pub duration_s: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// When and why: `starts_at` (default now), `ends_at` or `duration_s`, and a reason. (Spelt out in
/// each body rather than flattened: serde cannot refuse unknown fields through `flatten`.)
#[derive(Debug)]
struct WindowBody<'a> {
    starts_at: &'a Option<String>,
    ends_at: &'a Option<String>,
    duration_s: Option<i64>,
    reason: &'a Option<String>,
}

/// A silence as the API shows it; field names as in the request.
#[derive(Debug, Serialize)]
pub struct SilenceView {
    pub id: i64,
    pub device: Option<String>,
    pub object: Option<String>,
    pub metric: Option<String>,
    pub event: Option<String>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub starts_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub created_by: Option<String>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: DateTime<Utc>,
}

impl From<SilenceRecord> for SilenceView {
    fn from(s: SilenceRecord) -> Self {
        Self {
            id: s.id,
            device: s.device_id,
            object: s.object_id,
            metric: s.metric_key,
            event: s.event,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            reason: s.reason,
            created_by: s.created_by,
            created_at: s.created_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct MaintenanceView {
    pub id: i64,
    pub device: Option<String>,
    pub object: Option<String>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub starts_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub created_by: Option<String>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: DateTime<Utc>,
}

impl From<MaintenanceRecord> for MaintenanceView {
    fn from(m: MaintenanceRecord) -> Self {
        Self {
            id: m.id,
            device: m.device_id,
            object: m.object_id,
            starts_at: m.starts_at,
            ends_at: m.ends_at,
            reason: m.reason,
            created_by: m.created_by,
            created_at: m.created_at,
        }
    }
}

fn invalid(en: impl Into<String>, zh: impl Into<String>) -> ApiError {
    ApiError::unprocessable(en.into(), zh.into())
}

/// A validated window: start, end and the trimmed reason.
#[derive(Debug, PartialEq)]
struct Window {
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    reason: String,
}

fn parse_window(w: &WindowBody<'_>, now: DateTime<Utc>) -> ApiResult<Window> {
    let reason = w.reason.as_deref().map(str::trim).unwrap_or_default();
    if reason.is_empty() {
        return Err(invalid("a reason is required", "必须填写原因 reason"));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(invalid(
            format!("reason must be at most {MAX_REASON_CHARS} characters"),
            format!("原因 reason 最多 {MAX_REASON_CHARS} 个字符"),
        ));
    }
    let time = |name: &str, v: &Option<String>| -> ApiResult<Option<DateTime<Utc>>> {
        match v.as_deref().map(str::trim) {
            None => Ok(None),
            Some(s) => crate::time::parse(s).map(Some).ok_or_else(|| {
                invalid(
                    format!("{name} must be an RFC 3339 time such as 2024-05-01T08:00:00+08:00"),
                    format!("{name} 必须是 RFC 3339 时间，例如 2024-05-01T08:00:00+08:00"),
                )
            }),
        }
    };
    let starts_at = time("starts_at", w.starts_at)?.unwrap_or(now);
    let ends_at = match (time("ends_at", w.ends_at)?, w.duration_s) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give ends_at or duration_s, not both",
                "结束时间 ends_at 与时长 duration_s 只能填一个",
            ));
        }
        (None, None) => {
            return Err(invalid("ends_at or duration_s is required", "必须填写结束时间 ends_at 或时长 duration_s"))
        }
        (Some(end), None) => end,
        (None, Some(secs)) => {
            if secs <= 0 {
                return Err(invalid("duration_s must be positive", "时长 duration_s 必须大于 0"));
            }
            TimeDelta::try_seconds(secs)
                .filter(|d| *d <= MAX_WINDOW)
                .and_then(|d| starts_at.checked_add_signed(d))
                .ok_or_else(|| {
                    invalid(
                        format!("duration_s must be at most {}", MAX_WINDOW.num_seconds()),
                        format!("时长 duration_s 最多 {} 秒", MAX_WINDOW.num_seconds()),
                    )
                })?
        }
    };
    if ends_at <= starts_at {
        return Err(invalid("ends_at must be after starts_at", "结束时间 ends_at 必须晚于开始时间 starts_at"));
    }
    if ends_at - starts_at > MAX_WINDOW {
        return Err(invalid(
            format!("the window may last at most {} days", MAX_WINDOW.num_days()),
            format!("时间窗口最长 {} 天", MAX_WINDOW.num_days()),
        ));
    }
    if ends_at <= now {
        return Err(invalid("ends_at must be in the future", "结束时间 ends_at 必须晚于当前时间"));
    }
    Ok(Window { starts_at, ends_at, reason: reason.to_owned() })
}

/// An optional matcher: absent or null is "any"; an empty string is refused rather than read as
/// either.
fn matcher(name: &str, v: &Option<String>, check: impl Fn(&str) -> bool, hint_zh: &str) -> ApiResult<Option<String>> {
    match v.as_deref().map(str::trim) {
        None => Ok(None),
        Some("") => Err(invalid(
            format!("{name} must not be empty; leave it out to match any"),
            format!("{name} 不能为空字符串；不限制时请省略该字段"),
        )),
        Some(s) if check(s) => Ok(Some(s.to_owned())),
        Some(s) => Err(invalid(format!("invalid {name}: {s:?}"), format!("{name} 无效：{hint_zh}"))),
    }
}

fn device(v: &Option<String>) -> ApiResult<Option<String>> {
    matcher("device", v, |s| DeviceId::parse(s).is_ok(), "设备编号只能包含 1 到 32 个英文字母或数字")
}

fn name(field: &str, v: &Option<String>) -> ApiResult<Option<String>> {
    matcher(field, v, |s| s.chars().count() <= MAX_NAME_CHARS, "最多 200 个字符")
}

fn silence(body: &SilenceBody, now: DateTime<Utc>) -> ApiResult<NewSilence> {
    let metric = matcher(
        "metric",
        &body.metric,
        |s| MetricKey::parse(s).is_ok(),
        "指标名只能包含 1 到 64 个英文字母、数字、'_'、'.' 或 '-'",
    )?;
    let device_id = device(&body.device)?;
    let object_id = name("object", &body.object)?;
    let event = name("event", &body.event)?;
    let w = parse_window(
        &WindowBody {
            starts_at: &body.starts_at,
            ends_at: &body.ends_at,
            duration_s: body.duration_s,
            reason: &body.reason,
        },
        now,
    )?;
    Ok(NewSilence {
        device_id,
        object_id,
        metric_key: metric,
        event,
        starts_at: w.starts_at,
        ends_at: w.ends_at,
        reason: w.reason,
        // Set from the authenticated user once the API has users.
        created_by: None,
    })
}

fn maintenance(body: &MaintenanceBody, now: DateTime<Utc>) -> ApiResult<NewMaintenance> {
    let device_id = device(&body.device)?;
    let object_id = name("object", &body.object)?;
    if device_id.is_none() && object_id.is_none() {
        return Err(invalid(
            "a maintenance window needs a device or an object",
            "维护窗口必须指定设备 device 或监管对象 object",
        ));
    }
    let w = parse_window(
        &WindowBody {
            starts_at: &body.starts_at,
            ends_at: &body.ends_at,
            duration_s: body.duration_s,
            reason: &body.reason,
        },
        now,
    )?;
    Ok(NewMaintenance {
        device_id,
        object_id,
        starts_at: w.starts_at,
        ends_at: w.ends_at,
        reason: w.reason,
        created_by: None,
    })
}

/// Silences in force now.
pub async fn list_silences(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Page<SilenceView>>> {
    crate::access::scope(&state, &who).await?;
    let items: Vec<SilenceView> =
        state.store.active_silences(Utc::now()).await?.into_iter().map(SilenceView::from).collect();
    Ok(Json(Page { total: items.len() as i64, items }))
}

pub async fn create_silence(State(state): State<AppState>, who: Principal, ApiJson(body): ApiJson<SilenceBody>) -> ApiResult<Response> {
    who.require(&crate::access::OPERATE)?;
    let mut new = silence(&body, Utc::now())?;
    new.created_by = Some(who.username().to_owned());
    let rec = state.store.insert_silence(&new).await?;
    tracing::info!(silence = rec.id, reason = %rec.reason, "silence created");
    state
        .audit(
            offsite_store::AuditEvent::new(who.username(), "silence.create", "silence")
                .id(rec.id.to_string())
                .after(serde_json::to_value(SilenceView::from(rec.clone())).unwrap_or_default()),
        )
        .await;
    Ok((StatusCode::CREATED, Json(SilenceView::from(rec))).into_response())
}

/// Ends a silence now (one not started yet is cancelled); 404 if there is none or it is over.
pub async fn expire_silence(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<i64>) -> ApiResult<StatusCode> {
    who.require(&crate::access::OPERATE)?;
    if !state.store.expire_silence(id, Utc::now()).await? {
        return Err(ApiError::not_found(
            format!("no active or pending silence {id}"),
            format!("静默 {id} 不存在或已结束"),
        ));
    }
    tracing::info!(silence = id, "silence expired");
    state.audit(offsite_store::AuditEvent::new(who.username(), "silence.expire", "silence").id(id.to_string())).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Maintenance windows in force now.
pub async fn list_maintenance(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Page<MaintenanceView>>> {
    crate::access::scope(&state, &who).await?;
    let items: Vec<MaintenanceView> =
        state.store.active_maintenance(Utc::now()).await?.into_iter().map(MaintenanceView::from).collect();
    Ok(Json(Page { total: items.len() as i64, items }))
}

pub async fn create_maintenance(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(body): ApiJson<MaintenanceBody>,
) -> ApiResult<Response> {
    who.require(&crate::access::OPERATE)?;
    let mut new = maintenance(&body, Utc::now())?;
    new.created_by = Some(who.username().to_owned());
    let rec = state.store.insert_maintenance(&new).await?;
    tracing::info!(maintenance = rec.id, reason = %rec.reason, "maintenance window created");
    state
        .audit(
            offsite_store::AuditEvent::new(who.username(), "maintenance.create", "maintenance")
                .id(rec.id.to_string())
                .after(serde_json::to_value(MaintenanceView::from(rec.clone())).unwrap_or_default()),
        )
        .await;
    Ok((StatusCode::CREATED, Json(MaintenanceView::from(rec))).into_response())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    type Owned = (Option<String>, Option<String>, Option<i64>, Option<String>);

    fn window(starts: Option<&str>, ends: Option<&str>, dur: Option<i64>, reason: Option<&str>) -> Owned {
        (starts.map(Into::into), ends.map(Into::into), dur, reason.map(Into::into))
    }

    fn parse(w: &Owned, now: DateTime<Utc>) -> ApiResult<Window> {
        parse_window(&WindowBody { starts_at: &w.0, ends_at: &w.1, duration_s: w.2, reason: &w.3 }, now)
    }

    #[test]
    fn windows_parse_and_refuse() {
        let now = Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap();
        let w = parse(&window(None, None, Some(3600), Some(" 检修 ")), now).unwrap();
        assert_eq!(w, Window { starts_at: now, ends_at: now + TimeDelta::hours(1), reason: "检修".into() });
        let w = parse(&window(Some("2024-05-01T09:00:00+08:00"), Some("2024-05-01T02:00:00Z"), None, Some("r")), now)
            .unwrap();
        assert_eq!(w.starts_at, now + TimeDelta::hours(1));

        for (bad, what) in [
            (window(None, None, Some(60), None), "no reason"),
            (window(None, None, Some(60), Some("  ")), "blank reason"),
            (window(None, None, None, Some("r")), "no end"),
            (window(None, Some("2024-05-01T01:00:00Z"), Some(60), Some("r")), "both"),
            (window(None, None, Some(0), Some("r")), "zero duration"),
            (window(None, None, Some(-5), Some("r")), "negative duration"),
            (window(None, None, Some(i64::MAX), Some("r")), "huge duration"),
            (window(Some("2024-05-01T01:00:00Z"), Some("2024-05-01T01:00:00Z"), None, Some("r")), "ends = starts"),
            (window(Some("2024-05-01T02:00:00Z"), Some("2024-05-01T01:00:00Z"), None, Some("r")), "ends < starts"),
            (window(Some("2024-04-01T00:00:00Z"), Some("2024-04-02T00:00:00Z"), None, Some("r")), "in the past"),
            (window(None, Some("2030-01-01T00:00:00Z"), None, Some("r")), "too long"),
            (window(Some("soon"), None, Some(60), Some("r")), "bad time"),
        ] {
            let e = parse(&bad, now).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{what}");
            assert!(!e.message_zh.is_empty(), "{what}");
        }
    }
}
