//! Triage (研判) by the monitoring center: acknowledge a warning, dispatch it as a task (one
//! department or a joint task), merge it into an open task, close it as a false positive; turn a
//! complaint into a task and record the callback. Per-rule and per-model precision.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use offsite_store::tasks::{Dispatch, Precision};
use offsite_store::Level;
use serde::Deserialize;

use crate::access::OPERATE;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::tasks::{audit, refusal, TaskView};
use crate::AppState;

fn warning_not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("warning {id} not found"), format!("预警 {id} 不存在"))
}

/// The warning if the caller may see it (404 otherwise), then the role check.
async fn triageable(state: &AppState, who: &Principal, id: i64) -> ApiResult<()> {
    let visible = crate::access::visible_devices(state, who).await?;
    match state.store.warning(id).await? {
        Some(w) if visible.as_ref().is_none_or(|v| v.contains(&w.device_key)) => {}
        _ => return Err(warning_not_found(id)),
    }
    who.require(&OPERATE)
}

pub async fn acknowledge(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<i64>) -> ApiResult<Response> {
    triageable(&state, &who, id).await?;
    state.store.acknowledge_warning(id, who.username(), Utc::now()).await?;
    state
        .audit(offsite_store::AuditEvent::new(who.username(), "warning.acknowledge", "warning").id(id.to_string()))
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchBody {
    /// Omitted: the department responsible for the object and item.
    pub department_id: Option<i64>,
    #[serde(default)]
    pub co_department_ids: Vec<i64>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub level: Option<u8>,
    pub item: Option<String>,
}

fn dispatch_of(b: DispatchBody, who: &Principal) -> ApiResult<Dispatch> {
    let level = match b.level {
        None => None,
        Some(n) => Some(Level::new(n).map_err(|_| ApiError::unprocessable("level must be 1 to 4", "级别 level 必须是 1 至 4"))?),
    };
    Ok(Dispatch {
        department_id: b.department_id,
        co_department_ids: b.co_department_ids,
        title: b.title.filter(|s| !s.trim().is_empty()),
        description: b.description,
        level,
        item: b.item.filter(|s| !s.trim().is_empty()),
        by: who.username().to_owned(),
        at: Utc::now(),
    })
}

pub async fn dispatch(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    body: Option<ApiJson<DispatchBody>>,
) -> ApiResult<Response> {
    triageable(&state, &who, id).await?;
    let d = dispatch_of(body.map(|b| b.0).unwrap_or_default(), &who)?;
    let task = state.store.dispatch_warning(id, &d).await?.ok_or_else(|| warning_not_found(id))?.map_err(refusal)?;
    audit(&state, &who, "task.dispatch", &task, serde_json::json!({"warning_id": id, "department_id": task.department_id}))
        .await;
    Ok((StatusCode::CREATED, Json(TaskView::new(task, Utc::now()))).into_response())
}

/// Into an open task, or into an enforcement case (the case's task).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    pub task_id: Option<i64>,
    pub case_id: Option<i64>,
}

pub async fn merge(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<MergeBody>,
) -> ApiResult<Json<TaskView>> {
    triageable(&state, &who, id).await?;
    let (task_id, via_case) = match (b.task_id, b.case_id) {
        (Some(t), None) => (t, false),
        (None, Some(c)) => {
            let case = state.store.case(c).await?.ok_or_else(|| {
                ApiError::unprocessable(format!("case {c} does not exist"), format!("案件 {c} 不存在"))
            })?;
            if case.stage == offsite_store::cases::CaseStage::Closed {
                return Err(ApiError::conflict("the case is closed", "案件已结案"));
            }
            (case.task_id, true)
        }
        _ => return Err(ApiError::unprocessable("give task_id or case_id", "须指定 task_id 或 case_id 之一")),
    };
    let task =
        state.store.merge_warning(id, task_id, via_case, who.username(), Utc::now()).await?.ok_or_else(|| warning_not_found(id))?.map_err(refusal)?;
    audit(&state, &who, "warning.merge", &task, serde_json::json!({"warning_id": id})).await;
    Ok(Json(TaskView::new(task, Utc::now())))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FalsePositiveBody {
    pub note: Option<String>,
}

pub async fn false_positive(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    body: Option<ApiJson<FalsePositiveBody>>,
) -> ApiResult<Response> {
    triageable(&state, &who, id).await?;
    let note = body.and_then(|b| b.0.note).filter(|s| !s.trim().is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > 1000) {
        return Err(ApiError::unprocessable("note is at most 1000 characters", "说明不超过 1000 个字符"));
    }
    state.store.mark_false_positive(id, who.username(), note.as_deref(), Utc::now()).await?;
    state
        .audit(
            offsite_store::AuditEvent::new(who.username(), "warning.false_positive", "warning")
                .id(id.to_string())
                .after(serde_json::json!({"note": note})),
        )
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, serde::Serialize)]
pub struct PrecisionPage {
    pub items: Vec<Precision>,
}

/// Precision per rule and per model (1 - false positives / triaged).
pub async fn precision(State(state): State<AppState>, who: Principal) -> ApiResult<Json<PrecisionPage>> {
    let scope = crate::access::scope(&state, &who).await?;
    if !scope.all {
        return Err(crate::auth::forbidden());
    }
    Ok(Json(PrecisionPage { items: state.store.warning_precision().await? }))
}

fn complaint_not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("complaint {id} not found"), format!("投诉 {id} 不存在"))
}

async fn complaint_for_operator(state: &AppState, who: &Principal, id: i64) -> ApiResult<()> {
    let scope = crate::access::scope(state, who).await?;
    if state.store.visible_complaint(id, &scope).await?.is_none() {
        return Err(complaint_not_found(id));
    }
    who.require(&OPERATE)
}

/// Turns a complaint into a task; its public status follows the task from then on.
pub async fn complaint_task(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    body: Option<ApiJson<DispatchBody>>,
) -> ApiResult<Response> {
    complaint_for_operator(&state, &who, id).await?;
    let d = dispatch_of(body.map(|b| b.0).unwrap_or_default(), &who)?;
    let task = state.store.dispatch_complaint(id, &d).await?.ok_or_else(|| complaint_not_found(id))?.map_err(refusal)?;
    audit(&state, &who, "task.dispatch", &task, serde_json::json!({"complaint_id": id, "department_id": task.department_id}))
        .await;
    Ok((StatusCode::CREATED, Json(TaskView::new(task, Utc::now()))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackBody {
    /// `satisfied`, `basically_satisfied` or `dissatisfied`.
    pub result: String,
}

/// The complainant's answer when called back (回访).
pub async fn callback(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<CallbackBody>,
) -> ApiResult<Response> {
    complaint_for_operator(&state, &who, id).await?;
    if !matches!(b.result.as_str(), "satisfied" | "basically_satisfied" | "dissatisfied") {
        return Err(ApiError::unprocessable(
            "result must be satisfied, basically_satisfied or dissatisfied",
            "回访结果 result 必须是 satisfied（满意）、basically_satisfied（基本满意）或 dissatisfied（不满意）",
        ));
    }
    state.store.record_callback(id, &b.result, who.username(), Utc::now()).await?;
    state
        .audit(
            offsite_store::AuditEvent::new(who.username(), "complaint.callback", "complaint")
                .id(id.to_string())
                .after(serde_json::json!({"result": b.result})),
        )
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
