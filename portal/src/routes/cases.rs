//! Enforcement cases (案件) and the credit register (信用记录).
//!
//! Logged in:
//! - `POST /api/v1/tasks/{id}/case`: open a case from a task the department has signed for; the
//!   handlers and leaders of the task's department (or the system administrator).
//! - `GET  /api/v1/cases` (`?stage&department_id&object_id&limit&offset`), `GET /api/v1/cases/{id}`
//!   (with its stages and documents): departments see their own cases; the monitoring center,
//!   reviewers, re-supervision and the system administrator see all; anything else answers 404.
//! - `POST /api/v1/cases/{id}/advance`: to the next stage only (anything else is a 409 with the
//!   reason); `decided` carries the decision (legal basis, penalty, amount, disclosure).
//! - `POST /api/v1/cases/{id}/documents` (multipart, one `file`, optional `stage`) and
//!   `GET /api/v1/cases/{id}/documents/{doc_id}`: documents checked by content, kept in the file store.
//! - `GET  /api/v1/objects/{id}/credit`: an object's credit records, points and risk class.
//!
//! Public, no login: `GET /api/public/v1/disclosures`, the decisions marked for disclosure
//! (行政处罚信息公示), with nothing about people.
//!
//! Every change is audited.

use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use offsite_store::auth::Role;
use offsite_store::calendar::china;
use offsite_store::cases::{
    Advanced, CaseDocument, CaseFilter, CaseRecord, CaseStage, DecisionInput, DocumentAdded, Fen, NewCaseDocument,
    Opened, PenaltyType, StageRecord,
};
use offsite_store::credit::CreditRecord;
use offsite_store::{AuditEvent, FieldError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::scope;
use crate::auth::{forbidden, ClientIp, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::complaints::clean_filename;
use crate::time;
use crate::AppState;

/// A case document is at most this large (scanned decisions run to a few MiB).
pub const DOCUMENT_MAX_BYTES: usize = 20 * 1024 * 1024;
/// The upload route's body limit: the document plus the form fields and multipart framing.
pub const UPLOAD_BODY_LIMIT: usize = DOCUMENT_MAX_BYTES + 64 * 1024;
/// Public pages are at most this long.
const PUBLIC_PAGE_MAX: i64 = 100;

/// Who changes cases: the system administrator and, in their own department, handlers and leaders.
const CASE_WORKERS: [Role; 3] = [Role::SystemAdmin, Role::Handler, Role::Leader];

/// Whether `path` is a case's document upload (`/api/v1/cases/{id}/documents`), the body limit
/// middleware's exception.
pub fn is_upload_path(path: &str) -> bool {
    path.strip_prefix("/api/v1/cases/")
        .and_then(|rest| rest.strip_suffix("/documents"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

// --- helpers ---

fn case_not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("case {id} not found"), format!("案件 {id} 不存在"))
}

fn task_not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("task {id} not found"), format!("任务 {id} 不存在"))
}

/// A value the store refused is the caller's mistake: 400 `invalid`, naming the field.
fn store_error(e: anyhow::Error) -> ApiError {
    match e.downcast::<FieldError>() {
        Ok(f) => invalid(&f),
        Err(e) => e.into(),
    }
}

fn invalid(f: &FieldError) -> ApiError {
    ApiError::unprocessable(format!("{}: {}", f.field, f.message_en), format!("{}：{}", f.field, f.message_zh))
}

fn audited(ev: AuditEvent, ip: Option<String>) -> AuditEvent {
    match ip {
        Some(ip) => ev.ip(ip),
        None => ev,
    }
}

/// The Shanghai calendar date of a moment (what a decision document is dated).
fn shanghai_date(t: &DateTime<Utc>) -> String {
    t.with_timezone(&china()).format("%Y-%m-%d").to_string()
}

/// Whether the caller may change a case or task of `department_id`: the system administrator, or a
/// handler or leader of that department (or one above it).
async fn may_work_on(state: &AppState, who: &Principal, department_id: i64) -> ApiResult<bool> {
    if who.has(Role::SystemAdmin) {
        return Ok(true);
    }
    if !who.has_any(&CASE_WORKERS) {
        return Ok(false);
    }
    match who.session.user.department_id {
        Some(d) => Ok(state.store.department_subtree(d).await?.contains(&department_id)),
        None => Ok(false),
    }
}

async fn visible(state: &AppState, who: &Principal, id: i64) -> ApiResult<CaseRecord> {
    let s = scope(state, who).await?;
    state.store.visible_case(id, &s).await?.ok_or_else(|| case_not_found(id))
}

/// A visible case the caller may change: 404 outside the caller's scope, 403 for a role that only reads.
async fn workable(state: &AppState, who: &Principal, id: i64) -> ApiResult<CaseRecord> {
    let c = visible(state, who, id).await?;
    if !may_work_on(state, who, c.department_id).await? {
        return Err(forbidden());
    }
    Ok(c)
}

// --- views ---

fn decision_view(c: &CaseRecord) -> Value {
    let Some(d) = c.decision() else { return Value::Null };
    let decided_at = c.decided_at.expect("a decision has its time");
    json!({
        "legal_basis": d.legal_basis(),
        "penalty": d.penalty(),
        "penalty_zh": d.penalty().name_zh(),
        "amount_fen": d.amount().get(),
        "amount_yuan": d.amount().yuan(),
        "disclose": d.disclose(),
        "decided_at": time::format(&decided_at),
        "decision_date": shanghai_date(&decided_at),
        "credit_severity": d.severity(),
        "credit_severity_zh": d.severity().map(|s| s.name_zh()),
    })
}

fn case_view(c: &CaseRecord) -> Value {
    json!({
        "id": c.id,
        "case_no": c.case_no,
        "task_id": c.task_id,
        "task_no": c.task_no,
        "task_title": c.task_title,
        "object_id": c.object_id,
        "object_name": c.object_name,
        "credit_code": c.credit_code,
        "item": c.item,
        "department_id": c.department_id,
        "department_name": c.department_name,
        "stage": c.stage,
        "stage_zh": c.stage.name_zh(),
        "next_stage": c.stage.next(),
        "opened_at": time::format(&c.opened_at),
        "opened_by": c.opened_by,
        "updated_at": time::format(&c.updated_at),
        "closed_at": c.closed_at.as_ref().map(time::format),
        "decision": decision_view(c),
    })
}

fn document_view(d: &CaseDocument) -> Value {
    json!({
        "id": d.id,
        "stage": d.stage,
        "stage_zh": d.stage.name_zh(),
        "filename": d.filename,
        "content_type": d.content_type,
        "size": d.size,
        "sha256": d.sha256,
        "uploaded_by": d.uploaded_by,
        "uploaded_at": time::format(&d.uploaded_at),
        "url": format!("/api/v1/cases/{}/documents/{}", d.case_id, d.id),
    })
}

fn stage_view(s: &StageRecord, documents: &[CaseDocument]) -> Value {
    let docs: Vec<Value> = documents.iter().filter(|d| d.stage == s.stage).map(document_view).collect();
    json!({
        "stage": s.stage,
        "stage_zh": s.stage.name_zh(),
        "reached_at": time::format(&s.reached_at),
        "date": shanghai_date(&s.reached_at),
        "handler": s.handler,
        "note": s.note,
        "documents": docs,
    })
}

/// A case with its stages (each with its documents) and all its documents.
async fn detail(state: &AppState, c: &CaseRecord) -> ApiResult<Value> {
    let stages = state.store.case_stages(c.id).await?;
    let documents = state.store.case_documents(c.id).await?;
    let mut v = case_view(c);
    v["stages"] = stages.iter().map(|s| stage_view(s, &documents)).collect();
    v["documents"] = documents.iter().map(document_view).collect();
    Ok(v)
}

fn credit_record_view(r: &CreditRecord, now: DateTime<Utc>) -> Value {
    json!({
        "id": r.id,
        "source": r.source,
        "case_id": r.case_id,
        "case_no": r.case_no,
        "severity": r.severity,
        "severity_zh": r.severity.name_zh(),
        "deduction": r.deduction,
        "note": r.note,
        "recorded_at": time::format(&r.recorded_at),
        "recorded_by": r.recorded_by,
        "expires_at": time::format(&r.expires_at),
        "in_force": r.in_force(now),
    })
}

/// Adds `credit_class` and `credit_points` to objects (JSON with an `id`), in one query.
pub async fn add_credit_class(state: &AppState, objects: &mut [Value]) -> ApiResult<()> {
    let ids: Vec<String> = objects.iter().filter_map(|o| o["id"].as_str().map(str::to_owned)).collect();
    let standings = state.store.credit_standings(&ids, Utc::now()).await?;
    for o in objects.iter_mut() {
        let Some(s) = o["id"].as_str().and_then(|id| standings.get(id)).copied() else { continue };
        o["credit_class"] = json!(s.class);
        o["credit_points"] = json!(s.points);
    }
    Ok(())
}

// --- opening ---

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    #[serde(default)]
    note: Option<String>,
}

pub async fn open(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    who: Principal,
    ApiPath(task_id): ApiPath<i64>,
    body: Option<ApiJson<OpenBody>>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let s = scope(&state, &who).await?;
    let task = state.store.case_task(task_id).await?.ok_or_else(|| task_not_found(task_id))?;
    if !s.all && !s.department_ids.contains(&task.department_id) {
        return Err(task_not_found(task_id));
    }
    if !may_work_on(&state, &who, task.department_id).await? {
        return Err(forbidden());
    }
    let b = body.map(|b| b.0).unwrap_or_default();
    let opened = state.store.open_case(task_id, who.username(), b.note.as_deref(), Utc::now()).await;
    match opened.map_err(store_error)? {
        Opened::Ok(c) => {
            let ev = AuditEvent::new(who.username(), "case.open", "case").id(c.id.to_string()).after(json!({
                "case_no": c.case_no, "task_id": c.task_id, "object_id": c.object_id, "item": c.item,
                "department_id": c.department_id, "stage": c.stage, "note": b.note,
            }));
            state.audit(audited(ev, ip)).await;
            Ok((StatusCode::CREATED, Json(detail(&state, &c).await?)))
        }
        Opened::TaskNotFound => Err(task_not_found(task_id)),
        Opened::AlreadyOpen { case_no, .. } => Err(ApiError::conflict(
            format!("task {task_id} already has case {case_no}"),
            format!("任务 {task_id} 已立案，案件编号 {case_no}"),
        )),
        Opened::TaskNotSigned(st) => Err(ApiError::conflict(
            format!("task {task_id} is {st}: a case can be opened once the department has signed for the task"),
            format!("任务 {task_id} 尚未签收（当前状态 {st}），签收后才能立案"),
        )),
        Opened::NoObject => Err(ApiError::conflict(
            format!("task {task_id} names no registered regulated object, so a case has no party"),
            format!("任务 {task_id} 未关联已登记的监管对象，无法确定案件当事人"),
        )),
    }
}

// --- reading ---

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    stage: Option<String>,
    department_id: Option<i64>,
    object_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

fn parse_stage(field: &str, v: &str) -> ApiResult<CaseStage> {
    CaseStage::parse(v.trim()).ok_or_else(|| {
        let all: Vec<&str> = CaseStage::ALL.iter().map(|s| s.as_str()).collect();
        let zh: Vec<String> = CaseStage::ALL.iter().map(|s| format!("{}（{}）", s.as_str(), s.name_zh())).collect();
        ApiError::unprocessable(
            format!("{field}: one of {}, got '{v}'", all.join(", ")),
            format!("{field}：只能是 {}", zh.join("、")),
        )
    })
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let s = scope(&state, &who).await?;
    let stage = match q.stage.as_deref().filter(|v| !v.trim().is_empty()) {
        Some(v) => Some(parse_stage("stage", v)?),
        None => None,
    };
    let f = CaseFilter {
        stage,
        department_id: q.department_id,
        object_id: q.object_id.filter(|o| !o.trim().is_empty()),
        limit: q.limit.unwrap_or(100),
        offset: q.offset.unwrap_or(0),
    };
    let (items, total) = state.store.list_cases(&f, &s).await?;
    let items: Vec<Value> = items.iter().map(case_view).collect();
    Ok(Json(json!({ "items": items, "total": total })))
}

pub async fn get(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<i64>) -> ApiResult<Json<Value>> {
    let c = visible(&state, &who, id).await?;
    Ok(Json(detail(&state, &c).await?))
}

// --- advancing ---

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvanceBody {
    stage: String,
    #[serde(default)]
    note: Option<String>,
    /// Decision fields (stage `decided` only).
    #[serde(default)]
    legal_basis: Option<String>,
    #[serde(default)]
    penalty: Option<String>,
    /// Yuan, a number or a string with at most two decimals.
    #[serde(default)]
    amount_yuan: Option<Value>,
    #[serde(default)]
    disclose: Option<bool>,
}

fn parse_amount(v: &Value) -> ApiResult<Option<Fen>> {
    let text = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    Fen::parse_yuan(&text).map(Some).ok_or_else(|| {
        ApiError::unprocessable(
            format!("amount_yuan: an amount in yuan with at most two decimals, got {v}"),
            "amount_yuan：金额应为以元为单位、最多两位小数的非负数",
        )
    })
}

impl AdvanceBody {
    /// The decision, if any decision field was given.
    fn decision(&self, to: CaseStage) -> ApiResult<Option<DecisionInput>> {
        let given = self.legal_basis.is_some()
            || self.penalty.is_some()
            || self.amount_yuan.as_ref().is_some_and(|v| !v.is_null())
            || self.disclose.is_some();
        if !given {
            return Ok(None);
        }
        if to != CaseStage::Decided {
            return Err(ApiError::unprocessable(
                format!("penalty: legal_basis, penalty, amount_yuan and disclose belong to stage decided, not {to}"),
                format!(
                    "penalty：法律依据、处罚种类、金额和公示只能在“处罚决定”阶段填写，不能在“{}”阶段填写",
                    to.name_zh()
                ),
            ));
        }
        let penalty = match self.penalty.as_deref().map(str::trim) {
            Some(p) => PenaltyType::parse(p).ok_or_else(|| {
                let all: Vec<&str> = PenaltyType::ALL.iter().map(|p| p.as_str()).collect();
                let zh: Vec<String> =
                    PenaltyType::ALL.iter().map(|p| format!("{}（{}）", p.as_str(), p.name_zh())).collect();
                ApiError::unprocessable(
                    format!("penalty: one of {}, got '{p}'", all.join(", ")),
                    format!("penalty：处罚种类只能是 {}", zh.join("、")),
                )
            })?,
            None => {
                return Err(ApiError::unprocessable(
                    "penalty: a decision needs its penalty type",
                    "penalty：处罚决定须填写处罚种类",
                ))
            }
        };
        Ok(Some(DecisionInput {
            legal_basis: self.legal_basis.clone(),
            penalty,
            amount: self.amount_yuan.as_ref().map(parse_amount).transpose()?.flatten(),
            disclose: self.disclose.unwrap_or(false),
        }))
    }
}

pub async fn advance(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<AdvanceBody>,
) -> ApiResult<Json<Value>> {
    let before = workable(&state, &who, id).await?;
    let to = parse_stage("stage", &b.stage)?;
    let decision = b.decision(to)?;
    let advanced = state.store.advance_case(id, to, who.username(), b.note.as_deref(), decision, Utc::now()).await;
    match advanced.map_err(store_error)? {
        Advanced::Ok(c) => {
            let ev = AuditEvent::new(who.username(), "case.advance", "case")
                .id(id.to_string())
                .before(json!({ "stage": before.stage }))
                .after(json!({ "stage": c.stage, "note": b.note, "decision": decision_view(&c) }));
            state.audit(audited(ev, ip)).await;
            Ok(Json(detail(&state, &c).await?))
        }
        Advanced::NotFound => Err(case_not_found(id)),
        Advanced::Refused(r) => Err(ApiError::conflict(r.message_en(), r.message_zh())),
    }
}

// --- documents ---

fn multipart_error(e: MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return document_too_large();
    }
    let detail = e.body_text();
    ApiError::bad_request(format!("malformed multipart form: {detail}"), "表单格式错误（应为 multipart/form-data）")
}

fn document_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("a document is at most {} MiB", DOCUMENT_MAX_BYTES >> 20),
        format!("文书文件不能超过 {} MiB", DOCUMENT_MAX_BYTES >> 20),
    )
}

/// The type of a document by its content: PDF, JPEG, PNG, or (a zip named so) DOCX/XLSX.
fn document_type(data: &[u8], filename: Option<&str>) -> ApiResult<(&'static str, &'static str)> {
    let refused = || {
        ApiError::unprocessable(
            "file: only PDF, JPEG, PNG, DOCX and XLSX documents are accepted (checked by content)",
            "file：文书只能是 PDF、JPEG、PNG、DOCX 或 XLSX 文件（按文件内容判断）",
        )
    };
    offsite_store::files::document_type(data, filename).ok_or_else(refused)
}

/// The upload form: one `file`, optionally the `stage` it belongs to.
struct Upload {
    filename: Option<String>,
    data: Vec<u8>,
    stage: Option<CaseStage>,
}

async fn read_upload(mut mp: Multipart) -> ApiResult<Upload> {
    let mut file: Option<(Option<String>, Vec<u8>)> = None;
    let mut stage = None;
    while let Some(mut field) = mp.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or("") {
            "file" => {
                if file.is_some() {
                    return Err(ApiError::unprocessable(
                        "file: one document per request",
                        "file：每次只能上传一个文件",
                    ));
                }
                let name = field.file_name().map(str::to_owned);
                let mut data = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if data.len() + chunk.len() > DOCUMENT_MAX_BYTES {
                        return Err(document_too_large());
                    }
                    data.extend_from_slice(&chunk);
                }
                file = Some((name, data));
            }
            "stage" => {
                let text = field.text().await.map_err(multipart_error)?;
                if !text.trim().is_empty() {
                    stage = Some(parse_stage("stage", &text)?);
                }
            }
            other => {
                return Err(ApiError::unprocessable(
                    format!("unknown form field '{other}' (expected file and stage)"),
                    format!("未知的表单字段“{other}”（应为 file 和 stage）"),
                ))
            }
        }
    }
    match file {
        Some((_, data)) if data.is_empty() => {
            Err(ApiError::unprocessable("file: the document is empty", "file：文件内容为空"))
        }
        Some((filename, data)) => Ok(Upload { filename, data, stage }),
        None => Err(ApiError::unprocessable("file: attach the document as 'file'", "file：请以 file 字段上传文书")),
    }
}

pub async fn upload(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    mp: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    workable(&state, &who, id).await?;
    let mp = mp.map_err(|e| {
        ApiError::bad_request(
            format!("the body must be a multipart/form-data form: {}", e.body_text()),
            "请求体必须是 multipart/form-data 表单",
        )
    })?;
    let up = read_upload(mp).await?;
    let (content_type, ext) = document_type(&up.data, up.filename.as_deref())?;
    // The bytes first: a row never points at a file that is not there.
    let sha256 = state.files().put(&up.data).await?;
    let doc = NewCaseDocument {
        stage: up.stage,
        filename: clean_filename(up.filename.as_deref(), ext, 1),
        content_type: content_type.to_owned(),
        size: up.data.len() as i64,
        sha256,
    };
    match state.store.add_case_document(id, &doc, who.username()).await.map_err(store_error)? {
        DocumentAdded::Ok(d) => {
            let ev = AuditEvent::new(who.username(), "case.document", "case").id(id.to_string()).after(json!({
                "document_id": d.id, "stage": d.stage, "filename": d.filename, "content_type": d.content_type,
                "size": d.size, "sha256": d.sha256,
            }));
            state.audit(audited(ev, ip)).await;
            Ok((StatusCode::CREATED, Json(document_view(&d))))
        }
        DocumentAdded::CaseNotFound => Err(case_not_found(id)),
        DocumentAdded::StageNotReached(s) => Err(ApiError::conflict(
            format!("the case has not reached stage {s} yet"),
            format!("案件尚未进入“{}”阶段", s.name_zh()),
        )),
    }
}

pub async fn download(
    State(state): State<AppState>,
    who: Principal,
    ApiPath((id, doc_id)): ApiPath<(i64, i64)>,
) -> ApiResult<Response> {
    visible(&state, &who, id).await?;
    let Some(d) = state.store.case_document(id, doc_id).await? else {
        return Err(ApiError::not_found(format!("document {doc_id} not found"), format!("文书 {doc_id} 不存在")));
    };
    let Some(data) = state.files().get(&d.sha256).await? else {
        return Err(
            anyhow::anyhow!("case {id} document {doc_id}: file {} missing from the file store", d.sha256).into()
        );
    };
    crate::routes::complaints::file_response(&d.filename, &d.content_type, data)
}

// --- credit ---

pub async fn credit(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let s = scope(&state, &who).await?;
    if state.store.visible_object(&id, &s).await?.is_none() {
        return Err(ApiError::not_found(format!("object {id} not found"), format!("监管对象 {id} 不存在")));
    }
    let now = Utc::now();
    let standing = state.store.credit_standing(&id, now).await?;
    let records: Vec<Value> =
        state.store.credit_records(&id).await?.iter().map(|r| credit_record_view(r, now)).collect();
    Ok(Json(json!({
        "object_id": id,
        "credit_class": standing.class,
        "credit_class_zh": standing.class.name_zh(),
        "credit_points": standing.points,
        "records_in_force": standing.records_in_force,
        "records": records,
    })))
}

// --- public disclosures ---

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn disclosures(State(state): State<AppState>, ApiQuery(q): ApiQuery<PageQuery>) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(20).clamp(1, PUBLIC_PAGE_MAX);
    let (items, total) = state.store.disclosures(limit, q.offset.unwrap_or(0)).await?;
    let items: Vec<Value> = items
        .iter()
        .map(|d| {
            let amount = Fen::new(d.amount_fen).unwrap_or(Fen::ZERO);
            json!({
                "case_no": d.case_no,
                "object_name": d.object_name,
                "credit_code": d.credit_code,
                "item": d.item,
                "item_name": d.item_name,
                "legal_basis": d.legal_basis,
                "penalty": d.penalty,
                "penalty_zh": d.penalty.name_zh(),
                "amount_fen": amount.get(),
                "amount_yuan": amount.yuan(),
                "decision_date": shanghai_date(&d.decided_at),
            })
        })
        .collect();
    let mut resp = Json(json!({ "items": items, "total": total })).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_paths() {
        assert!(is_upload_path("/api/v1/cases/12/documents"));
        assert!(!is_upload_path("/api/v1/cases/12/documents/3"));
        assert!(!is_upload_path("/api/v1/cases//documents"));
        assert!(!is_upload_path("/api/v1/cases/1/2/documents"));
        assert!(!is_upload_path("/api/v1/complaints"));
    }

    #[test]
    fn amounts_from_json() {
        assert_eq!(parse_amount(&json!(50000)).unwrap(), Some(Fen::from_yuan(50_000)));
        assert_eq!(parse_amount(&json!(1234.5)).unwrap().map(Fen::get), Some(123_450));
        assert_eq!(parse_amount(&json!("88.08")).unwrap().map(Fen::get), Some(8_808));
        assert_eq!(parse_amount(&json!(null)).unwrap(), None);
        assert!(parse_amount(&json!(-1)).is_err());
        assert!(parse_amount(&json!(0.001)).is_err());
        assert!(parse_amount(&json!(true)).is_err());
    }
}
