//! What the administrator maintains for the task workflow: time limits per item and level
//! (`/api/v1/task-policies`), the working calendar's holidays and make-up working days
//! (`/api/v1/calendar`), and which department handles an item in a region
//! (`/api/v1/responsibilities`). Reading is open to every business role; changing is the system
//! administrator's, audited.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Datelike, NaiveDate, Utc};
use offsite_store::calendar::Limit;
use offsite_store::tasks::{CalendarDay, CalendarDayKind, TaskPolicy};
use offsite_store::Level;
use serde::{Deserialize, Serialize};

use crate::access::CONFIGURE;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{int_param, ApiJson, ApiPath, ApiQuery};
use crate::AppState;

#[derive(Debug, Serialize)]
pub struct Items<T> {
    pub items: Vec<T>,
}

pub async fn policies(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Items<TaskPolicy>>> {
    crate::access::scope(&state, &who).await?;
    Ok(Json(Items { items: state.store.task_policies().await? }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// A catalog code, or `*` for the level's default.
    pub item: String,
    pub level: u8,
    pub sign_limit: String,
    pub handle_limit: String,
    #[serde(default)]
    pub auto_dispatch: bool,
    pub reviewer_department_id: Option<i64>,
}

pub async fn put_policy(State(state): State<AppState>, who: Principal, ApiJson(b): ApiJson<PolicyBody>) -> ApiResult<Json<TaskPolicy>> {
    who.require(&CONFIGURE)?;
    let level = Level::new(b.level).map_err(|_| ApiError::unprocessable("level must be 1 to 4", "级别 level 必须是 1 至 4"))?;
    let valid_item = b.item == "*"
        || (!b.item.is_empty() && b.item.len() <= 64 && b.item.bytes().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c)));
    if !valid_item {
        return Err(ApiError::unprocessable("item must be a catalog code or *", "事项 item 必须是事项编码或 *"));
    }
    for (name, v) in [("sign_limit", &b.sign_limit), ("handle_limit", &b.handle_limit)] {
        if Limit::parse(v).is_none() {
            return Err(ApiError::unprocessable(
                format!("{name} must be like 30m, 24h or 3wd (working days)"),
                format!("{name} 格式应为 30m（分钟）、24h（小时）或 3wd（工作日）"),
            ));
        }
    }
    if let Some(d) = b.reviewer_department_id {
        if state.store.department(d).await?.is_none() {
            return Err(ApiError::unprocessable(format!("department {d} does not exist"), format!("部门 {d} 不存在")));
        }
    }
    let p = TaskPolicy {
        item: b.item,
        level,
        sign_limit: b.sign_limit,
        handle_limit: b.handle_limit,
        auto_dispatch: b.auto_dispatch,
        reviewer_department_id: b.reviewer_department_id,
    };
    state.store.set_task_policy(&p, who.username()).await?;
    state
        .audit(
            offsite_store::AuditEvent::new(who.username(), "task_policy.set", "task_policy")
                .id(format!("{}/{}", p.item, level.get()))
                .after(serde_json::to_value(&p).unwrap_or_default()),
        )
        .await;
    Ok(Json(p))
}

pub async fn delete_policy(
    State(state): State<AppState>,
    who: Principal,
    ApiPath((item, level)): ApiPath<(String, u8)>,
) -> ApiResult<Response> {
    who.require(&CONFIGURE)?;
    let level = Level::new(level).map_err(|_| ApiError::unprocessable("level must be 1 to 4", "级别必须是 1 至 4"))?;
    if item == "*" {
        return Err(ApiError::conflict("the default policies cannot be removed", "默认时限不能删除"));
    }
    if !state.store.delete_task_policy(&item, level).await? {
        return Err(ApiError::not_found("no such policy", "该时限配置不存在"));
    }
    state
        .audit(
            offsite_store::AuditEvent::new(who.username(), "task_policy.delete", "task_policy").id(format!("{item}/{}", level.get())),
        )
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct CalendarParams {
    pub year: Option<String>,
}

/// `?year=2026` (default: this year in Asia/Shanghai).
pub async fn calendar(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(p): ApiQuery<CalendarParams>,
) -> ApiResult<Json<Items<CalendarDay>>> {
    crate::access::scope(&state, &who).await?;
    let year = match int_param("year", p.year.as_deref())? {
        Some(y) if (1970..=2200).contains(&y) => y as i32,
        Some(_) => return Err(ApiError::bad_request("year must be between 1970 and 2200", "年份须在 1970 至 2200 之间")),
        None => Utc::now().with_timezone(&offsite_store::calendar::china()).year(),
    };
    let from = NaiveDate::from_ymd_opt(year, 1, 1).expect("valid");
    let to = NaiveDate::from_ymd_opt(year, 12, 31).expect("valid");
    Ok(Json(Items { items: state.store.calendar_days(from, to).await? }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayBody {
    /// `holiday` (a day off) or `workday` (a make-up working day, 调休).
    pub kind: CalendarDayKind,
    pub name: Option<String>,
}

fn parse_day(s: &str) -> ApiResult<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| ApiError::bad_request("the day must be written YYYY-MM-DD", "日期格式应为 YYYY-MM-DD"))
}

pub async fn put_day(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(day): ApiPath<String>,
    ApiJson(b): ApiJson<DayBody>,
) -> ApiResult<Json<CalendarDay>> {
    who.require(&CONFIGURE)?;
    let day = parse_day(&day)?;
    if b.name.as_ref().is_some_and(|n| n.chars().count() > 100) {
        return Err(ApiError::unprocessable("name is at most 100 characters", "名称不超过 100 个字符"));
    }
    let d = CalendarDay { day, kind: b.kind, name: b.name.filter(|n| !n.trim().is_empty()) };
    state.store.set_calendar_day(&d, who.username()).await?;
    state
        .audit(
            offsite_store::AuditEvent::new(who.username(), "calendar.set", "calendar_day")
                .id(day.to_string())
                .after(serde_json::to_value(&d).unwrap_or_default()),
        )
        .await;
    Ok(Json(d))
}

pub async fn delete_day(State(state): State<AppState>, who: Principal, ApiPath(day): ApiPath<String>) -> ApiResult<Response> {
    who.require(&CONFIGURE)?;
    let day = parse_day(&day)?;
    if !state.store.delete_calendar_day(day).await? {
        return Err(ApiError::not_found("that day is an ordinary day", "该日期没有特别设置"));
    }
    state.audit(offsite_store::AuditEvent::new(who.username(), "calendar.delete", "calendar_day").id(day.to_string())).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Responsibility {
    pub item: String,
    pub region_code: String,
    pub department_id: i64,
}

pub async fn responsibilities(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Items<Responsibility>>> {
    crate::access::scope(&state, &who).await?;
    let items = state
        .store
        .responsibilities()
        .await?
        .into_iter()
        .map(|(item, region_code, department_id)| Responsibility { item, region_code, department_id })
        .collect();
    Ok(Json(Items { items }))
}

pub async fn put_responsibility(
    State(state): State<AppState>,
    who: Principal,
    ApiJson(b): ApiJson<Responsibility>,
) -> ApiResult<Json<Responsibility>> {
    who.require(&CONFIGURE)?;
    if state.store.department(b.department_id).await?.is_none() {
        return Err(ApiError::unprocessable(format!("department {} does not exist", b.department_id), "部门不存在"));
    }
    if state.store.region(&b.region_code).await?.is_none() {
        return Err(ApiError::unprocessable(format!("region {} does not exist", b.region_code), "行政区划不存在"));
    }
    if b.item.is_empty() || b.item.len() > 64 || !b.item.bytes().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c)) {
        return Err(ApiError::unprocessable("item must be a catalog code", "事项 item 必须是事项编码"));
    }
    state.store.set_responsibility(&b.item, &b.region_code, b.department_id).await?;
    state
        .audit(
            offsite_store::AuditEvent::new(who.username(), "responsibility.set", "responsibility")
                .id(format!("{}/{}", b.item, b.region_code))
                .after(serde_json::json!({"department_id": b.department_id})),
        )
        .await;
    Ok(Json(b))
}

pub async fn delete_responsibility(
    State(state): State<AppState>,
    who: Principal,
    ApiPath((item, region_code)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    who.require(&CONFIGURE)?;
    if !state.store.delete_responsibility(&item, &region_code).await? {
        return Err(ApiError::not_found("no department is set for that item and region", "该事项在该区划没有设置责任部门"));
    }
    state
        .audit(
            offsite_store::AuditEvent::new(who.username(), "responsibility.delete", "responsibility")
                .id(format!("{item}/{region_code}")),
        )
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
