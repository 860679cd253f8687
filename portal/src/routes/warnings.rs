//! Warnings (风险预警): `GET /api/v1/warnings` (filtered page), `GET /api/v1/warnings/{id}`,
//! `POST /api/v1/warnings/{id}/resolve` and `GET /api/v1/warnings/stream` (Server-Sent Events).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use offsite_store::{Level, Store, WarningChange, WarningFilter, WarningRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{int_param, ApiJson, ApiPath, ApiQuery};
use crate::routes::devices::{parse_device_id, Page};
use crate::AppState;

pub const DEFAULT_LIMIT: i64 = 100;
/// The store's own clamp.
pub const MAX_LIMIT: i64 = 1000;
/// Comment lines keep proxies from closing an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
pub const MAX_REASON_CHARS: usize = 1000;
/// The change kinds the stream forwards, as SSE event names.
pub const KINDS: [&str; 3] = ["opened", "repeated", "resolved"];

/// A warning as the API shows it: the stored record (without the internal device key) plus the
/// level's names. Times are RFC 3339 UTC.
#[derive(Debug, Serialize)]
pub struct WarningView {
    pub id: i64,
    pub dedup_key: String,
    pub source: String,
    pub source_version: String,
    pub event: String,
    pub level: Level,
    pub level_name_zh: &'static str,
    pub level_name_en: &'static str,
    pub device_id: String,
    pub metric_id: Option<i32>,
    pub metric_key: Option<String>,
    pub object_id: Option<String>,
    pub group_id: i64,
    pub detail: String,
    pub score: f64,
    #[serde(serialize_with = "crate::time::serialize")]
    pub first_seen: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub last_seen: DateTime<Utc>,
    pub count: i32,
    pub open: bool,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
    /// Why a person resolved it.
    pub resolution_note: Option<String>,
    pub silenced_by: Option<i64>,
    pub evidence: serde_json::Value,
}

impl From<WarningRecord> for WarningView {
    fn from(w: WarningRecord) -> Self {
        Self {
            open: w.is_open(),
            level_name_zh: w.level.name_zh(),
            level_name_en: w.level.name_en(),
            id: w.id,
            dedup_key: w.dedup_key,
            source: w.source,
            source_version: w.source_version,
            event: w.event,
            level: w.level,
            device_id: w.device_id,
            metric_id: w.metric_id,
            metric_key: w.metric_key,
            object_id: w.object_id,
            group_id: w.group_id,
            detail: w.detail,
            score: w.score,
            first_seen: w.first_seen,
            last_seen: w.last_seen,
            count: w.count,
            resolved_at: w.resolved_at,
            resolution: w.resolution,
            resolved_by: w.resolved_by,
            resolution_note: w.resolution_note,
            silenced_by: w.silenced_by,
            evidence: w.evidence,
        }
    }
}

/// Every field is a string so each problem gets its own bilingual message and an empty value
/// (`&level=`) reads as "not given".
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    pub open: Option<String>,
    pub level: Option<String>,
    pub device: Option<String>,
    pub object: Option<String>,
    pub source: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub group: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `level=N`: at most this severe a number, 1 (only red) to 4 (everything).
fn parse_level(raw: Option<&str>) -> ApiResult<Option<Level>> {
    let bad = || {
        ApiError::bad_request(
            "level must be 1 (red only), 2, 3 or 4 (all levels)",
            "参数 level 必须是 1（仅红色）、2、3 或 4（全部级别）",
        )
    };
    match int_param("level", raw)? {
        None => Ok(None),
        Some(n) => Ok(Some(u8::try_from(n).ok().and_then(|n| Level::new(n).ok()).ok_or_else(bad)?)),
    }
}

fn parse_filter(p: &ListParams) -> ApiResult<WarningFilter> {
    let open = match non_empty(&p.open) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return Err(ApiError::bad_request("open must be true or false", "参数 open 必须是 true 或 false"));
        }
    };
    let time = |name: &str, v: &Option<String>| -> ApiResult<Option<DateTime<Utc>>> {
        match non_empty(v) {
            None => Ok(None),
            Some(s) => crate::time::parse(s).map(Some).ok_or_else(|| {
                ApiError::bad_request(
                    format!("{name} must be an RFC 3339 time such as 2024-05-01T08:00:00+08:00"),
                    format!("参数 {name} 必须是 RFC 3339 时间，例如 2024-05-01T08:00:00+08:00"),
                )
            }),
        }
    };
    let since = time("since", &p.since)?;
    let until = time("until", &p.until)?;
    if let (Some(s), Some(u)) = (since, until) {
        if s >= u {
            return Err(ApiError::bad_request(
                "since must be earlier than until",
                "开始时间 since 必须早于结束时间 until",
            ));
        }
    }
    let device_id = match non_empty(&p.device) {
        Some(d) => Some(parse_device_id(d)?.as_str().to_owned()),
        None => None,
    };
    let (limit, offset) = crate::extract::page_params(p.limit.as_deref(), p.offset.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    Ok(WarningFilter {
        open,
        level_at_most: parse_level(p.level.as_deref())?,
        device_id,
        object_id: non_empty(&p.object).map(str::to_owned),
        source: non_empty(&p.source).map(str::to_owned),
        since,
        until,
        group_id: int_param("group", p.group.as_deref())?,
        device_keys: None,
        limit,
        offset,
    })
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<Page<WarningView>>> {
    let mut filter = parse_filter(&p)?;
    filter.device_keys = crate::access::visible_devices(&state, &who).await?.map(|v| v.into_iter().collect());
    let (items, total) = state.store.warnings(&filter).await?;
    Ok(Json(Page { items: items.into_iter().map(WarningView::from).collect(), total }))
}

fn warning_not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("warning {id} not found"), format!("预警 {id} 不存在"))
}

pub async fn get(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<WarningView>> {
    Ok(Json(visible_warning(&state, &who, id).await?.into()))
}

/// The warning if the caller may see its device; 404 otherwise, as if it did not exist.
async fn visible_warning(state: &AppState, who: &Principal, id: i64) -> ApiResult<offsite_store::WarningRecord> {
    let visible = crate::access::visible_devices(state, who).await?;
    match state.store.warning(id).await? {
        Some(w) if visible.as_ref().is_none_or(|v| v.contains(&w.device_key)) => Ok(w),
        _ => Err(warning_not_found(id)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    pub reason: String,
}

/// Closes an open warning by hand (resolution `manual`).
///
/// The store has no column for the reason yet, so it goes to the log (with the warning id) until
/// it does; `resolved_by` stays empty until the API knows its users.
pub async fn resolve(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ResolveBody>,
) -> ApiResult<Json<WarningView>> {
    // Out of scope is "not found" even for the permission check, so nothing leaks.
    visible_warning(&state, &who, id).await?;
    who.require(&crate::access::OPERATE)?;
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::unprocessable("a reason is required", "必须填写处理原因 reason"));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::unprocessable(
            format!("reason must be at most {MAX_REASON_CHARS} characters"),
            format!("处理原因 reason 最多 {MAX_REASON_CHARS} 个字符"),
        ));
    }
    match state.store.resolve_warning_by_id(id, Utc::now(), "manual", Some(who.username()), Some(reason)).await? {
        Some(w) => {
            tracing::info!(warning = id, reason, "warning resolved manually");
            state
                .audit(
                    offsite_store::AuditEvent::new(who.username(), "warning.resolve", "warning")
                        .id(id.to_string())
                        .after(serde_json::json!({"resolution": "manual", "reason": reason})),
                )
                .await;
            Ok(Json(w.into()))
        }
        None => match state.store.warning(id).await? {
            None => Err(warning_not_found(id)),
            Some(w) => {
                let at = w.resolved_at.as_ref().map(crate::time::format).unwrap_or_default();
                Err(ApiError::conflict(
                    format!("warning {id} is already resolved (at {at})"),
                    format!("预警 {id} 已于 {at} 处理，不能重复处理"),
                ))
            }
        },
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamParams {
    pub level: Option<String>,
}

/// Server-Sent Events: one event per change (`event: opened|repeated|resolved`, `id: <warning id>`,
/// `data: <warning JSON>`), a keep-alive comment every [`KEEP_ALIVE`], and `event: lagged` when
/// changes were missed (the client should refetch). The stream ends when the server shuts down.
pub async fn stream(State(state): State<AppState>, who: Principal, ApiQuery(p): ApiQuery<StreamParams>) -> ApiResult<Response> {
    let level = parse_level(p.level.as_deref())?;
    let visible = crate::access::visible_devices(&state, &who).await?;
    let rx = state
        .subscribe_changes()
        .ok_or_else(|| ApiError::unavailable("live warning updates are not available", "实时预警推送暂不可用"))?;
    let feed = Feed { rx, closing: state.closing(), store: state.store.clone(), level, visible };
    let events = futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next_event().await?;
        Some((Ok::<_, Infallible>(event), feed))
    });
    let mut resp = Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response();
    // Tell nginx-style proxies not to buffer the stream.
    resp.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// One client's subscription. It holds no database connection while waiting: a change borrows one
/// from the pool for the single fetch of its record.
struct Feed {
    rx: broadcast::Receiver<WarningChange>,
    closing: watch::Receiver<bool>,
    store: Store,
    level: Option<Level>,
    /// Devices the client may see (`None`: all), fixed when the stream opens.
    visible: Option<std::collections::HashSet<i32>>,
}

impl Feed {
    /// The next event to send; `None` ends the stream.
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            let msg = tokio::select! {
                biased;
                // Also fires if the state is gone (the sender dropped): end either way.
                _ = self.closing.wait_for(|closing| *closing) => return None,
                msg = self.rx.recv() => msg,
            };
            match msg {
                Ok(change) => {
                    if let Some(event) = self.event_for(change).await {
                        return Some(event);
                    }
                }
                Err(RecvError::Lagged(missed)) => return Some(lagged_event(Some(missed))),
                Err(RecvError::Closed) => return None,
            }
        }
    }

    async fn event_for(&self, change: WarningChange) -> Option<Event> {
        if change.kind == crate::live::LAGGED_KIND {
            return Some(lagged_event(None));
        }
        if !KINDS.contains(&change.kind.as_str()) {
            tracing::debug!(?change, "ignoring unknown warning change kind");
            return None;
        }
        let w = match self.store.warning(change.id).await {
            Ok(Some(w)) => w,
            // Gone (a test database reset, a deleted row): nothing to show.
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), warning = change.id, "stream: cannot fetch warning");
                // The client missed this change; tell it to refetch.
                return Some(lagged_event(None));
            }
        };
        if self.level.is_some_and(|max| w.level > max) {
            return None;
        }
        if self.visible.as_ref().is_some_and(|v| !v.contains(&w.device_key)) {
            return None;
        }
        match Event::default().event(change.kind.as_str()).id(w.id.to_string()).json_data(WarningView::from(w)) {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::error!(error = %e, warning = change.id, "stream: cannot encode warning");
                None
            }
        }
    }
}

fn lagged_event(missed: Option<u64>) -> Event {
    Event::default().event("lagged").data(serde_json::json!({ "missed": missed }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> ListParams {
        let get = |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        ListParams {
            open: get("open"),
            level: get("level"),
            device: get("device"),
            object: get("object"),
            source: get("source"),
            since: get("since"),
            until: get("until"),
            group: get("group"),
            limit: get("limit"),
            offset: get("offset"),
        }
    }

    #[test]
    fn filters_parse_and_refuse() {
        let f = parse_filter(&params(&[])).unwrap();
        assert_eq!((f.open, f.level_at_most, f.limit, f.offset), (None, None, DEFAULT_LIMIT, 0));
        let f = parse_filter(&params(&[
            ("open", "true"),
            ("level", "2"),
            ("device", "d1"),
            ("object", "o1"),
            ("source", "rules"),
            ("since", "2024-05-01T08:00:00+08:00"),
            ("until", "2024-05-02T00:00:00Z"),
            ("group", "7"),
            ("limit", "1000"),
            ("offset", "5"),
        ]))
        .unwrap();
        assert_eq!(f.open, Some(true));
        assert_eq!(f.level_at_most, Some(Level::ORANGE));
        assert_eq!(f.device_id.as_deref(), Some("d1"));
        assert_eq!(f.since.map(|t| crate::time::format(&t)).as_deref(), Some("2024-05-01T00:00:00Z"));
        assert_eq!((f.group_id, f.limit, f.offset), (Some(7), 1000, 5));
        assert_eq!(parse_filter(&params(&[("open", "false"), ("level", "")])).unwrap().open, Some(false));

        for bad in [
            vec![("open", "yes")],
            vec![("level", "0")],
            vec![("level", "5")],
            vec![("level", "300")],
            vec![("level", "red")],
            vec![("device", "bad-id")],
            vec![("since", "yesterday")],
            vec![("since", "2024-05-02T00:00:00Z"), ("until", "2024-05-01T00:00:00Z")],
            vec![("group", "x")],
            vec![("limit", "0")],
            vec![("limit", "1001")],
            vec![("offset", "-1")],
        ] {
            let e = parse_filter(&params(&bad)).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(!e.message_zh.is_empty());
        }
    }
}
