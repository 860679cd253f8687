//! `POST /api/v1/devices/{id}/commands` (clock sync or real-time interval of an HJ 212 logger) and
//! `GET /api/v1/devices/{id}/commands` (a device's recent commands with their answers).
//!
//! A command is recorded in `device_commands`; the HJ 212 gateway holding the logger's connection
//! picks it up and records the logger's 9011/9012 answers on it, as for `offsite device hj212`.
//! Who may manage devices may command them; whoever may see a device sees its command history.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use offsite_store::commands::CommandRecord;
use offsite_wire::{Command, CommandAction};
use serde::{Deserialize, Serialize};

use crate::access::CONFIGURE;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::devices::{parse_device_id, visible_device};
use crate::AppState;

/// How many commands the history shows.
const HISTORY: i64 = 50;

/// The standard's bounds of the real-time data interval (CN 1062 RtdInterval).
const INTERVAL_S: std::ops::RangeInclusive<u32> = 30..=3600;

/// What the caller asks of the logger.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum LoggerCommand {
    /// CN 1012: set the logger's clock to the platform's. (A struct variant: unknown fields are
    /// refused only there.)
    SyncClock {},
    /// CN 1062: real-time data every `seconds`.
    SetInterval { seconds: u32 },
}

impl LoggerCommand {
    /// The command as recorded, or a 400 when the interval is outside the standard's bounds.
    fn into_action(self) -> ApiResult<(&'static str, CommandAction)> {
        match self {
            LoggerCommand::SyncClock {} => Ok(("sync_clock", CommandAction::SyncClock)),
            LoggerCommand::SetInterval { seconds } if INTERVAL_S.contains(&seconds) => {
                Ok(("set_interval", CommandAction::SetInterval { seconds }))
            }
            LoggerCommand::SetInterval { seconds } => Err(ApiError::bad_request(
                format!("seconds {seconds}: the real-time interval is 30..=3600 s"),
                format!("上报间隔 {seconds} 秒无效：应为 30 到 3600 秒"),
            )),
        }
    }
}

/// One command and the device's answer (for a logger: `state` holds its 9011/9012 replies).
#[derive(Debug, Serialize)]
pub struct CommandView {
    pub id: String,
    pub kind: String,
    pub body: serde_json::Value,
    pub created_by: Option<String>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub acked_at: Option<DateTime<Utc>>,
    pub ok: Option<bool>,
    pub error: Option<String>,
    pub state: Option<serde_json::Value>,
}

impl From<CommandRecord> for CommandView {
    fn from(c: CommandRecord) -> Self {
        Self {
            id: c.id,
            kind: c.kind,
            body: c.body,
            created_by: c.created_by,
            created_at: c.created_at,
            acked_at: c.acked_at,
            ok: c.ok,
            error: c.error,
            state: c.state,
        }
    }
}

/// The history: newest first, with the logger's MN (`null` for devices that are no logger).
#[derive(Debug, Serialize)]
pub struct CommandHistory {
    pub hj212_mn: Option<String>,
    pub items: Vec<CommandView>,
}

pub async fn list(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<String>) -> ApiResult<Json<CommandHistory>> {
    let id = parse_device_id(&id)?;
    let d = visible_device(&state, &who, &id).await?;
    let hj212_mn = state.store.hj212_mn_of(d.key).await?;
    let items = state.store.device_commands(d.key, HISTORY).await?.into_iter().map(CommandView::from).collect();
    Ok(Json(CommandHistory { hj212_mn, items }))
}

#[derive(Debug, Serialize)]
pub struct CommandRecorded {
    pub command_id: String,
}

pub async fn send(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<LoggerCommand>,
) -> ApiResult<Response> {
    who.require(&CONFIGURE)?;
    let device = parse_device_id(&id)?;
    let d = visible_device(&state, &who, &device).await?;
    if d.revoked_at.is_some() {
        return Err(ApiError::conflict(format!("device {device} is revoked"), format!("设备 {device} 已吊销")));
    }
    let Some(mn) = state.store.hj212_mn_of(d.key).await? else {
        return Err(ApiError::conflict(
            format!("device {device} is no HJ 212 logger: clock sync and interval are logger commands"),
            format!("设备 {device} 不是 HJ 212 数采仪，不能校时或设置上报间隔"),
        ));
    };
    let (kind, action) = body.into_action()?;
    let cmd = Command { id: new_command_id(), action };
    let json = serde_json::to_value(&cmd).map_err(|_| ApiError::internal())?;
    // Recorded first: the gateway sends it over the logger's connection (now, or when it connects).
    state.store.insert_command(&cmd.id, d.key, kind, &json, Some(who.username())).await?;
    state
        .audit(
            offsite_store::AuditEvent::new(who.username(), "device.command", "device")
                .id(device.to_string())
                .after(serde_json::json!({"command": json, "hj212_mn": mn})),
        )
        .await;
    Ok((StatusCode::ACCEPTED, Json(CommandRecorded { command_id: cmd.id })).into_response())
}

/// Time-ordered and unique enough: `h` + ms since the epoch + a random suffix.
fn new_command_id() -> String {
    format!("h{}-{:08x}", Utc::now().timestamp_millis(), rand::random::<u32>())
}
