//! Tasks (任务): the inbox (`GET /api/v1/tasks`), one task with its timeline, manual dispatch, and
//! one `POST /api/v1/tasks/{id}/<action>` per transition of the state machine in
//! `offsite_store::tasks` (a forbidden one answers 409 with the reason), comments and attachments.
//!
//! Who may do what: the monitoring center (monitor, system admin) dispatches, redispatches,
//! decides extensions and archives; the lead department's handlers and leaders sign, start,
//! return, report feedback and ask for extensions; a co-handling department reports its part; the
//! reviewer (the item's reviewer department if its policy names one, else the monitoring center or
//! a reviewer) approves or rejects; a leader of the department or the monitoring center transfers.
//! Re-supervision reads everything and changes nothing.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use offsite_store::auth::Role;
use offsite_store::tasks::{
    Action, NewTask, Refusal, TaskAttachment, TaskCheckpoint, TaskDepartment, TaskEvent, TaskExtension, TaskFilter,
    TaskRecord, TaskSource, TaskState,
};
use offsite_store::{AccessScope, Level};
use serde::{Deserialize, Serialize};

use crate::auth::{forbidden, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{int_param, ApiJson, ApiPath, ApiQuery};
use crate::routes::devices::Page;
use crate::AppState;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 500;
/// One attachment; the route's body limit allows a little more for the form around it.
pub const ATTACHMENT_MAX_BYTES: usize = 20 << 20;
pub const UPLOAD_BODY_LIMIT: usize = ATTACHMENT_MAX_BYTES + (64 << 10);

/// The monitoring center's side.
const DISPATCHERS: [Role; 2] = [Role::Monitor, Role::SystemAdmin];
const READ_ALL: [Role; 3] = [Role::SystemAdmin, Role::Reviewer, Role::Resupervision];

/// A task as the API shows it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    #[serde(flatten)]
    pub task: TaskRecord,
    pub state_name_zh: &'static str,
    pub source_name_zh: &'static str,
    pub level_name_zh: &'static str,
    /// Deadline of the clock now running (sign-for while dispatched, handling after).
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub due: Option<DateTime<Utc>>,
    pub overdue: bool,
}

impl TaskView {
    pub fn new(task: TaskRecord, now: DateTime<Utc>) -> Self {
        Self {
            state_name_zh: task.state().name_zh(),
            source_name_zh: task.source().name_zh(),
            level_name_zh: task.level.name_zh(),
            due: task.due(),
            overdue: task.is_overdue(now),
            task,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub view: TaskView,
    pub departments: Vec<TaskDepartment>,
    pub events: Vec<TaskEvent>,
    pub attachments: Vec<TaskAttachment>,
    pub extensions: Vec<TaskExtension>,
    pub checkpoints: Vec<TaskCheckpoint>,
}

/// 409 for the state machine's refusals, 400 for bad input.
pub fn refusal(r: Refusal) -> ApiError {
    let status = if matches!(r.code, "invalid" | "no_department") { StatusCode::BAD_REQUEST } else { StatusCode::CONFLICT };
    ApiError::new(status, r.code, r.message, r.message_zh)
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("task {id} not found"), format!("任务 {id} 不存在"))
}

/// Which tasks the caller sees: administrators, reviewers and re-supervision all; the monitoring
/// center those in the regions on its account (all when none are set); a department the tasks it
/// leads or co-handles.
pub async fn task_scope(state: &AppState, who: &Principal) -> ApiResult<AccessScope> {
    if who.has_any(&READ_ALL) {
        return Ok(AccessScope::all());
    }
    if who.has(Role::Monitor) {
        let regions = &who.session.user.region_codes;
        return Ok(if regions.is_empty() { AccessScope::all() } else { AccessScope::regions(regions.clone()) });
    }
    crate::access::scope(state, who).await
}

async fn visible_task(state: &AppState, who: &Principal, id: i64) -> ApiResult<TaskRecord> {
    Ok(visible_task_in(state, who, id).await?.0)
}

/// The task if the caller may see it, with the caller's scope.
async fn visible_task_in(state: &AppState, who: &Principal, id: i64) -> ApiResult<(TaskRecord, AccessScope)> {
    let scope = task_scope(state, who).await?;
    let task = state.store.task(id).await?.ok_or_else(|| not_found(id))?;
    // Led or co-handled by one of the caller's departments: decided here; regions need the tree.
    let mine = |d: &i64| scope.department_ids.contains(d);
    let visible = scope.all
        || mine(&task.department_id)
        || task.co_department_ids.iter().any(mine)
        || (!scope.region_codes.is_empty() && state.store.task_visible(id, &scope).await?);
    if visible {
        Ok((task, scope))
    } else {
        Err(not_found(id))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    pub state: Option<String>,
    pub department_id: Option<String>,
    pub source: Option<String>,
    pub level: Option<String>,
    pub overdue: Option<String>,
    pub object_id: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse_level(raw: Option<&str>) -> ApiResult<Option<Level>> {
    match int_param("level", raw)? {
        None => Ok(None),
        Some(n) => u8::try_from(n)
            .ok()
            .and_then(|n| Level::new(n).ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("level must be 1, 2, 3 or 4", "参数 level 必须是 1、2、3 或 4")),
    }
}

fn parse_filter(p: &ListParams) -> ApiResult<TaskFilter> {
    let state = match given(&p.state) {
        None => None,
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            let all: Vec<_> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::bad_request(format!("state must be one of {}", all.join(", ")), format!("参数 state 必须是 {}", all.join("、")))
        })?),
    };
    let source = match given(&p.source) {
        None => None,
        Some(s) => Some(TaskSource::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "source must be warning, complaint, province or manual",
                "参数 source 必须是 warning、complaint、province 或 manual",
            )
        })?),
    };
    let overdue = match given(&p.overdue) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::bad_request("overdue must be true or false", "参数 overdue 必须是 true 或 false")),
    };
    let (limit, offset) = crate::extract::page_params(p.limit.as_deref(), p.offset.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    Ok(TaskFilter {
        state,
        department_id: int_param("department_id", p.department_id.as_deref())?,
        source,
        level: parse_level(p.level.as_deref())?,
        overdue,
        object_id: given(&p.object_id).map(str::to_owned),
        limit,
        offset,
    })
}

pub async fn list(State(state): State<AppState>, who: Principal, ApiQuery(p): ApiQuery<ListParams>) -> ApiResult<Json<Page<TaskView>>> {
    let filter = parse_filter(&p)?;
    let scope = task_scope(&state, &who).await?;
    let now = Utc::now();
    let (items, total) = state.store.list_tasks(&filter, &scope, now).await?;
    Ok(Json(Page { items: items.into_iter().map(|t| TaskView::new(t, now)).collect(), total }))
}

pub async fn get(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<TaskDetail>> {
    let task = visible_task(&state, &who, id).await?;
    let s = &state.store;
    let (departments, events, attachments, extensions, checkpoints) = tokio::try_join!(
        s.task_departments(id),
        s.task_events(id),
        s.task_attachments(id),
        s.task_extensions(id),
        s.task_checkpoints(id)
    )?;
    Ok(Json(TaskDetail { view: TaskView::new(task, Utc::now()), departments, events, attachments, extensions, checkpoints }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub level: u8,
    pub department_id: i64,
    #[serde(default)]
    pub co_department_ids: Vec<i64>,
    pub item: Option<String>,
    pub object_id: Option<String>,
    /// `manual` (default) or `province` (a clue the provincial platform sent down).
    pub source: Option<String>,
    pub source_ref: Option<String>,
}

/// Manual dispatch by the monitoring center (source `manual` or `province`).
pub async fn create(State(state): State<AppState>, who: Principal, ApiJson(b): ApiJson<CreateBody>) -> ApiResult<Response> {
    who.require(&DISPATCHERS)?;
    let level = Level::new(b.level).map_err(|_| ApiError::unprocessable("level must be 1 to 4", "级别 level 必须是 1 至 4"))?;
    let source = match b.source.as_deref().unwrap_or("manual") {
        "manual" => TaskSource::Manual,
        "province" => TaskSource::Province,
        _ => {
            return Err(ApiError::unprocessable(
                "source must be manual or province (warnings and complaints are dispatched from themselves)",
                "来源 source 必须是 manual 或 province（预警和投诉请从其本身派发）",
            ))
        }
    };
    if let Some(o) = &b.object_id {
        if state.store.object(o).await?.is_none() {
            return Err(ApiError::unprocessable(format!("object {o} does not exist"), format!("监管对象 {o} 不存在")));
        }
    }
    let t = NewTask {
        title: b.title,
        description: b.description,
        source,
        source_ref: b.source_ref.filter(|s| !s.trim().is_empty()),
        level,
        item: b.item.filter(|s| !s.trim().is_empty()),
        object_id: b.object_id,
        department_id: b.department_id,
        co_department_ids: b.co_department_ids,
        dispatched_by: who.username().to_owned(),
        at: Utc::now(),
    };
    let task = state.store.dispatch_task(&t).await?.map_err(refusal)?;
    audit(&state, &who, "task.dispatch", &task, serde_json::json!({"department_id": task.department_id})).await;
    Ok((StatusCode::CREATED, Json(TaskView::new(task, Utc::now()))).into_response())
}

pub(crate) async fn audit(state: &AppState, who: &Principal, action: &str, task: &TaskRecord, after: serde_json::Value) {
    state
        .audit(offsite_store::AuditEvent::new(who.username(), action, "task").id(task.id.to_string()).after(after))
        .await;
}

/// The departments the caller works for (its own and those under it).
async fn own_departments(state: &AppState, who: &Principal) -> ApiResult<Vec<i64>> {
    match who.session.user.department_id {
        Some(d) if who.has_any(&[Role::Handler, Role::Leader, Role::Reviewer]) => Ok(state.store.department_subtree(d).await?),
        _ => Ok(vec![]),
    }
}

/// Who may do `action` to `task`; 403 otherwise.
async fn authorize(state: &AppState, who: &Principal, scope: &AccessScope, task: &TaskRecord, action: &Action) -> ApiResult<()> {
    // A department user's scope is already their department's subtree.
    let mine = if !scope.all && who.has_any(&[Role::Handler, Role::Leader]) {
        scope.department_ids.clone()
    } else {
        own_departments(state, who).await?
    };
    let leads = mine.contains(&task.department_id) && who.has_any(&[Role::Handler, Role::Leader]);
    let co = task.co_department_ids.iter().any(|d| mine.contains(d)) && who.has_any(&[Role::Handler, Role::Leader]);
    let dispatcher = who.has_any(&DISPATCHERS);
    let ok = match action {
        Action::Sign | Action::Start | Action::Return { .. } | Action::Feedback { .. } | Action::RequestExtension { .. } => {
            leads
        }
        Action::CoFeedback { .. } => co,
        Action::Transfer { .. } => dispatcher || (leads && who.has(Role::Leader)),
        Action::Redispatch { .. } | Action::DecideExtension { .. } | Action::Archive => dispatcher,
        Action::Approve { .. } | Action::Reject { .. } => match task.reviewer_department_id {
            Some(d) => mine.contains(&d) && who.has_any(&[Role::Reviewer, Role::Leader]),
            None => who.has_any(&[Role::Monitor, Role::Reviewer, Role::SystemAdmin]),
        },
    };
    if ok {
        Ok(())
    } else {
        Err(forbidden())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    pub reason: Option<String>,
    pub text: Option<String>,
    pub note: Option<String>,
    pub department_id: Option<i64>,
    #[serde(default)]
    pub co_department_ids: Vec<i64>,
    /// RFC 3339: the new deadline an extension asks for.
    pub until: Option<String>,
}

fn required(v: Option<String>, field: &'static str, zh: &'static str) -> ApiResult<String> {
    v.filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::unprocessable(format!("{field} is required"), format!("须填写{zh}（{field}）")))
}

fn parse_action(name: &str, b: ActionBody) -> ApiResult<Action> {
    Ok(match name {
        "sign" => Action::Sign,
        "start" => Action::Start,
        "return" => Action::Return { reason: required(b.reason, "reason", "退回理由")? },
        "redispatch" => Action::Redispatch {
            department_id: b.department_id.ok_or_else(|| ApiError::unprocessable("department_id is required", "须指定部门 department_id"))?,
            co_department_ids: b.co_department_ids,
            reason: b.reason,
        },
        "transfer" => Action::Transfer {
            department_id: b.department_id.ok_or_else(|| ApiError::unprocessable("department_id is required", "须指定部门 department_id"))?,
            reason: required(b.reason, "reason", "转办理由")?,
        },
        "extension" => {
            let until = required(b.until, "until", "延期至")?;
            let until = crate::time::parse(&until).ok_or_else(|| {
                ApiError::unprocessable("until must be an RFC 3339 time", "延期至 until 必须是 RFC 3339 时间")
            })?;
            Action::RequestExtension { until, reason: required(b.reason, "reason", "延期理由")? }
        }
        "extension/approve" => Action::DecideExtension { approve: true, note: b.note },
        "extension/refuse" => Action::DecideExtension { approve: false, note: b.note },
        "feedback" => Action::Feedback { text: required(b.text, "text", "反馈内容")? },
        "co-feedback" => Action::CoFeedback { text: required(b.text, "text", "反馈内容")? },
        "approve" => Action::Approve { note: b.note },
        "reject" => Action::Reject { reason: required(b.reason, "reason", "驳回理由")? },
        "archive" => Action::Archive,
        _ => return Err(ApiError::not_found("no such action", "不支持该操作")),
    })
}

async fn act(state: AppState, who: Principal, id: i64, name: &str, body: Option<ActionBody>) -> ApiResult<Json<TaskView>> {
    let (task, scope) = visible_task_in(&state, &who, id).await?;
    let action = parse_action(name, body.unwrap_or_default())?;
    authorize(&state, &who, &scope, &task, &action).await?;
    let at = Utc::now();
    let done = state.store.act_on_task(id, who.username(), &action, at).await?.ok_or_else(|| not_found(id))?;
    let task = done.map_err(refusal)?;
    audit(&state, &who, &format!("task.{}", action.event_name()), &task, serde_json::json!({"state": task.state()})).await;
    Ok(Json(TaskView::new(task, at)))
}

macro_rules! action_route {
    ($fn:ident, $name:literal) => {
        pub async fn $fn(
            State(state): State<AppState>,
            who: Principal,
            ApiPath(id): ApiPath<i64>,
            body: Option<ApiJson<ActionBody>>,
        ) -> ApiResult<Json<TaskView>> {
            act(state, who, id, $name, body.map(|b| b.0)).await
        }
    };
}

action_route!(sign, "sign");
action_route!(start, "start");
action_route!(return_task, "return");
action_route!(redispatch, "redispatch");
action_route!(transfer, "transfer");
action_route!(request_extension, "extension");
action_route!(approve_extension, "extension/approve");
action_route!(refuse_extension, "extension/refuse");
action_route!(feedback, "feedback");
action_route!(co_feedback, "co-feedback");
action_route!(approve, "approve");
action_route!(reject, "reject");
action_route!(archive, "archive");

/// Who may write on a task's timeline: anyone who sees it, except re-supervision (reads only).
fn may_write(who: &Principal) -> ApiResult<()> {
    if who.has_any(&[Role::Monitor, Role::SystemAdmin, Role::Handler, Role::Leader, Role::Reviewer]) {
        Ok(())
    } else {
        Err(forbidden())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    pub text: String,
}

pub async fn comment(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<CommentBody>,
) -> ApiResult<Response> {
    visible_task(&state, &who, id).await?;
    may_write(&who)?;
    let text = b.text.trim();
    if text.is_empty() || text.chars().count() > 5000 {
        return Err(ApiError::unprocessable("text must be 1 to 5000 characters", "内容须为 1 至 5000 个字符"));
    }
    let ev = state.store.comment_task(id, who.username(), text, Utc::now()).await?.ok_or_else(|| not_found(id))?;
    Ok((StatusCode::CREATED, Json(ev)).into_response())
}

/// `multipart/form-data` with one `file` field: a JPEG, PNG, PDF or Office (docx/xlsx) document
/// of at most 20 MiB, recognised by its content; stored once per content hash.
pub async fn upload(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    mp: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    visible_task(&state, &who, id).await?;
    may_write(&who)?;
    let mut mp = mp.map_err(|_| ApiError::bad_request("the body must be a multipart/form-data form", "请求体必须是 multipart/form-data 表单"))?;
    let bad_form = |_| ApiError::bad_request("malformed multipart form", "表单格式错误");
    let mut file: Option<(String, Vec<u8>)> = None;
    while let Some(mut field) = mp.next_field().await.map_err(bad_form)? {
        if field.name() != Some("file") {
            continue;
        }
        let name = clean_filename(field.file_name().unwrap_or(""));
        let mut data = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request("malformed multipart form", "表单格式错误")
            }
        })? {
            if data.len() + chunk.len() > ATTACHMENT_MAX_BYTES {
                return Err(too_large());
            }
            data.extend_from_slice(&chunk);
        }
        file = Some((name, data));
        break;
    }
    let Some((name, data)) = file else {
        return Err(ApiError::unprocessable("a file field is required", "须上传文件（字段 file）"));
    };
    let Some((content_type, _)) = offsite_store::files::document_type(&data, Some(&name)) else {
        return Err(unsupported());
    };
    let name = if name.is_empty() { "attachment".to_owned() } else { name };
    let sha = state.files().put(&data).await?;
    let a = state
        .store
        .attach_to_task(id, who.username(), &name, content_type, data.len() as i64, &sha, Utc::now())
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok((StatusCode::CREATED, Json(a)).into_response())
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("an attachment is at most {} MiB", ATTACHMENT_MAX_BYTES >> 20),
        format!("附件不超过 {} MiB", ATTACHMENT_MAX_BYTES >> 20),
    )
}

fn unsupported() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "attachments must be JPEG, PNG, PDF, DOCX or XLSX files",
        "附件须为 JPEG、PNG、PDF、DOCX 或 XLSX 文件",
    )
}

fn clean_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String =
        base.chars().filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | ':' | '|' | '?' | '*')).take(120).collect();
    cleaned.trim().trim_start_matches('.').to_owned()
}

pub async fn download(
    State(state): State<AppState>,
    who: Principal,
    ApiPath((id, attachment_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Response> {
    visible_task(&state, &who, id).await?;
    let missing = || ApiError::not_found("attachment not found", "附件不存在");
    let a = state.store.task_attachment(id, attachment_id).await?.ok_or_else(missing)?;
    let data = state.files().get(&a.sha256).await?.ok_or_else(missing)?;
    crate::routes::complaints::file_response(&a.filename, &a.content_type, data)
}
