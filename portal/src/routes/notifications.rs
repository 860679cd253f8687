//! The notification center and the departments' outbound channels.
//!
//! - `GET  /api/v1/notifications` (`?unread=true&limit&offset`): the caller's own notifications,
//!   newest first, as `{"items", "total", "unread"}`.
//! - `GET  /api/v1/notifications/unread-count`, `POST /api/v1/notifications/{id}/read`,
//!   `POST /api/v1/notifications/read-all`. Any logged-in user, own notifications only: someone
//!   else's id answers 404 like one that does not exist.
//! - Channels (system administrator, audited): `GET|POST /api/v1/departments/{id}/channels`,
//!   `PUT|DELETE /api/v1/channels/{id}`, `POST /api/v1/channels/{id}/test` (queues a test
//!   delivery), `GET /api/v1/channels/{id}/deliveries` (with every attempt).
//!
//! A channel's secret is write-only: responses say whether one is set (`secret_set`). Robot URLs
//! carry their keys in the query string, so responses show query values masked; `PUT` changes
//! only the fields it names, so a client never needs the full URL back.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use offsite_store::notifications::{
    ChannelKind, ChannelRecord, ChannelSettings, DeliveryRecord, NoticeContent, NotificationRecord, SecretChange,
};
use offsite_store::{AuditEvent, FieldError};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use crate::access::CONFIGURE;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

fn invalid(e: FieldError) -> ApiError {
    ApiError::unprocessable(format!("{}: {}", e.field, e.message_en), format!("{}：{}", e.field, e.message_zh))
}

fn page(limit: Option<i64>, offset: Option<i64>) -> ApiResult<(i64, i64)> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::unprocessable(
            format!("limit: must be 1 to {MAX_LIMIT}"),
            format!("limit：须为 1 至 {MAX_LIMIT}"),
        ));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::unprocessable("offset: must not be negative", "offset：不能为负数"));
    }
    Ok((limit, offset))
}

// --- the notification center ---

#[derive(Debug, Serialize)]
pub struct NotificationView {
    pub id: i64,
    pub kind: &'static str,
    pub kind_name_zh: &'static str,
    pub kind_name: &'static str,
    pub title_zh: String,
    pub title_en: String,
    pub body_zh: String,
    pub body_en: String,
    pub link: Option<String>,
    pub task_id: Option<i64>,
    pub warning_id: Option<i64>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: DateTime<Utc>,
    pub read: bool,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub read_at: Option<DateTime<Utc>>,
}

impl From<NotificationRecord> for NotificationView {
    fn from(n: NotificationRecord) -> Self {
        Self {
            id: n.id,
            kind: n.kind.as_str(),
            kind_name_zh: n.kind.name_zh(),
            kind_name: n.kind.name_en(),
            title_zh: n.title_zh,
            title_en: n.title_en,
            body_zh: n.body_zh,
            body_en: n.body_en,
            link: n.link,
            task_id: n.task_id,
            warning_id: n.warning_id,
            created_at: n.created_at,
            read: n.read_at.is_some(),
            read_at: n.read_at,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    unread: Option<bool>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = page(q.limit, q.offset)?;
    let p = state.store.list_notifications(who.user_id(), q.unread.unwrap_or(false), limit, offset).await?;
    let items: Vec<NotificationView> = p.items.into_iter().map(NotificationView::from).collect();
    Ok(Json(json!({ "items": items, "total": p.total, "unread": p.unread })))
}

pub async fn unread_count(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "unread": state.store.unread_notification_count(who.user_id()).await? })))
}

pub async fn mark_read(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    if !state.store.mark_notification_read(who.user_id(), id).await? {
        return Err(ApiError::not_found(format!("notification {id} not found"), format!("通知 {id} 不存在")));
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn mark_all_read(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    let marked = state.store.mark_all_notifications_read(who.user_id()).await?;
    Ok(Json(json!({ "marked": marked, "unread": 0 })))
}

// --- channels ---

/// A channel as administrators see it: no secret, robot keys masked.
#[derive(Debug, Serialize)]
pub struct ChannelView {
    pub id: i64,
    pub department_id: i64,
    pub kind: &'static str,
    pub kind_name_zh: &'static str,
    pub name: String,
    /// Query values masked (robot keys live there).
    pub url: Option<String>,
    pub secret_set: bool,
    pub recipients: Vec<String>,
    pub events: Vec<String>,
    pub enabled: bool,
    pub created_by: Option<String>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub updated_at: DateTime<Utc>,
}

/// `https://h/p?key=abc&x=1` -> `https://h/p?key=***&x=***`.
pub fn mask_query(url: &str) -> String {
    let (base, rest) = match url.split_once('?') {
        Some(p) => p,
        None => return url.to_owned(),
    };
    let (query, fragment) = match rest.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (rest, None),
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !v.is_empty() => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{base}?{}", masked.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

impl From<&ChannelRecord> for ChannelView {
    fn from(c: &ChannelRecord) -> Self {
        Self {
            id: c.id,
            department_id: c.department_id,
            kind: c.kind.as_str(),
            kind_name_zh: c.kind.name_zh(),
            name: c.name.clone(),
            url: c.url.as_deref().map(mask_query),
            secret_set: c.secret_set,
            recipients: c.recipients.clone(),
            events: c.events.clone(),
            enabled: c.enabled,
            created_by: c.created_by.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// Absent stays `None`; `null` becomes `Some(None)`: "leave it" and "clear it" differ.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewChannelBody {
    kind: String,
    name: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    recipients: Vec<String>,
    /// Unset: new tasks, reminders, supervision, escalations and red warnings.
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default = "yes")]
    enabled: bool,
}

/// Every field optional: what is left out stays as it is. `"secret": null` removes the secret.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelChangeBody {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    secret: Option<Option<String>>,
    #[serde(default)]
    recipients: Option<Vec<String>>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    enabled: Option<bool>,
}

fn department_not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("department {id} not found"), format!("部门 {id} 不存在"))
}

fn channel_not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("channel {id} not found"), format!("通知通道 {id} 不存在"))
}

async fn channel(state: &AppState, id: i64) -> ApiResult<ChannelRecord> {
    state.store.channel(id).await?.ok_or_else(|| channel_not_found(id))
}

pub async fn list_channels(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    who.require(&CONFIGURE)?;
    let items = state.store.department_channels(id).await?.ok_or_else(|| department_not_found(id))?;
    let items: Vec<ChannelView> = items.iter().map(ChannelView::from).collect();
    Ok(Json(json!({ "total": items.len(), "items": items })))
}

pub async fn create_channel(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<NewChannelBody>,
) -> ApiResult<Response> {
    who.require(&CONFIGURE)?;
    let settings =
        ChannelSettings::parse(&b.kind, &b.name, b.url.as_deref(), &b.recipients, b.events.as_deref(), b.enabled)
            .map_err(invalid)?;
    let secret = match b.secret {
        Some(s) => SecretChange::Set(s),
        None => SecretChange::Clear,
    };
    settings.check_secret(&secret).map_err(invalid)?;
    let secret = match &secret {
        SecretChange::Set(s) => Some(s.as_str()),
        _ => None,
    };
    let rec = state
        .store
        .insert_channel(id, &settings, secret, who.username())
        .await?
        .ok_or_else(|| department_not_found(id))?;
    let view = ChannelView::from(&rec);
    tracing::info!(channel = rec.id, department = id, kind = %rec.kind, "notification channel created");
    state
        .audit(
            AuditEvent::new(who.username(), "channel.create", "notification_channel")
                .id(rec.id.to_string())
                .after(json!(view)),
        )
        .await;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub async fn update_channel(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<ChannelChangeBody>,
) -> ApiResult<Json<ChannelView>> {
    who.require(&CONFIGURE)?;
    let old = channel(&state, id).await?;
    let kind = b.kind.unwrap_or_else(|| old.kind.as_str().to_owned());
    let kind_changed = kind.trim() != old.kind.as_str();
    // Switching between a URL and e-mail drops what the other kind used, unless sent again.
    let to_email = kind.trim() == ChannelKind::Email.as_str();
    let url = match (b.url, kind_changed && to_email) {
        (Some(u), _) => Some(u),
        (None, true) => None,
        (None, false) => old.url.clone(),
    };
    let recipients = match (b.recipients, kind_changed && !to_email) {
        (Some(r), _) => r,
        (None, true) => Vec::new(),
        (None, false) => old.recipients.clone(),
    };
    let events = b.events.unwrap_or_else(|| old.events.clone());
    let settings = ChannelSettings::parse(
        &kind,
        b.name.as_deref().unwrap_or(&old.name),
        url.as_deref(),
        &recipients,
        Some(&events),
        b.enabled.unwrap_or(old.enabled),
    )
    .map_err(invalid)?;
    let mut secret = match b.secret {
        None => SecretChange::Keep,
        Some(None) => SecretChange::Clear,
        Some(Some(s)) => SecretChange::Set(s),
    };
    settings.check_secret(&secret).map_err(invalid)?;
    if secret == SecretChange::Keep && !matches!(settings.kind, ChannelKind::Webhook | ChannelKind::Dingtalk) {
        // A kind without a secret keeps none.
        secret = SecretChange::Clear;
    }
    let rec = state.store.update_channel(id, &settings, &secret).await?.ok_or_else(|| channel_not_found(id))?;
    let view = ChannelView::from(&rec);
    tracing::info!(channel = id, "notification channel updated");
    state
        .audit(
            AuditEvent::new(who.username(), "channel.update", "notification_channel")
                .id(id.to_string())
                .before(json!(ChannelView::from(&old)))
                .after(json!(view)),
        )
        .await;
    Ok(Json(view))
}

pub async fn delete_channel(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    who.require(&CONFIGURE)?;
    let old = channel(&state, id).await?;
    if !state.store.delete_channel(id).await? {
        return Err(channel_not_found(id));
    }
    tracing::info!(channel = id, "notification channel deleted");
    state
        .audit(
            AuditEvent::new(who.username(), "channel.delete", "notification_channel")
                .id(id.to_string())
                .before(json!(ChannelView::from(&old))),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a test message; the notify worker sends it like any other (see its deliveries).
pub async fn test_channel(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    who.require(&CONFIGURE)?;
    let c = channel(&state, id).await?;
    if !c.enabled {
        return Err(ApiError::conflict("the channel is disabled; enable it first", "通道已停用，请先启用"));
    }
    let delivery_id =
        state.store.queue_delivery(id, &NoticeContent::channel_test(&c.name, who.username(), Utc::now())).await?;
    state
        .audit(
            AuditEvent::new(who.username(), "channel.test", "notification_channel")
                .id(id.to_string())
                .after(json!({ "delivery_id": delivery_id })),
        )
        .await;
    Ok((StatusCode::ACCEPTED, Json(json!({ "delivery_id": delivery_id, "state": "pending" }))).into_response())
}

#[derive(Debug, Serialize)]
pub struct AttemptView {
    pub attempt: i32,
    #[serde(serialize_with = "crate::time::serialize")]
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub status: Option<i32>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DeliveryView {
    pub id: i64,
    pub kind: &'static str,
    pub title_zh: String,
    /// pending, delivered or failed.
    pub state: offsite_store::notifications::DeliveryState,
    pub attempts: i32,
    /// When the next attempt is due (pending only).
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub delivered_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub failed_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: DateTime<Utc>,
    pub attempt_log: Vec<AttemptView>,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> Self {
        let state = d.state();
        Self {
            id: d.id,
            kind: d.kind.as_str(),
            title_zh: d.payload.0.title_zh.clone(),
            state,
            attempts: d.attempts,
            next_attempt_at: (state == offsite_store::notifications::DeliveryState::Pending)
                .then_some(d.next_attempt_at),
            delivered_at: d.delivered_at,
            failed_at: d.failed_at,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            attempt_log: d
                .attempt_log
                .into_iter()
                .map(|a| AttemptView { attempt: a.attempt, at: a.at, ok: a.ok, status: a.status, error: a.error })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

pub async fn deliveries(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult<Json<Value>> {
    who.require(&CONFIGURE)?;
    channel(&state, id).await?;
    let (limit, offset) = page(q.limit, q.offset)?;
    let (items, total) = state.store.channel_deliveries(id, limit, offset).await?;
    let items: Vec<DeliveryView> = items.into_iter().map(DeliveryView::from).collect();
    Ok(Json(json!({ "items": items, "total": total })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robot_keys_are_masked() {
        assert_eq!(
            mask_query("https://qyapi.example/cgi-bin/webhook/send?key=693a91f6-7xxx"),
            "https://qyapi.example/cgi-bin/webhook/send?key=***"
        );
        assert_eq!(
            mask_query("https://o.example/robot/send?access_token=abc&x="),
            "https://o.example/robot/send?access_token=***&x="
        );
        assert_eq!(mask_query("http://127.0.0.1:9000/hook"), "http://127.0.0.1:9000/hook");
    }
}
