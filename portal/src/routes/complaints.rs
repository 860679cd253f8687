//! `/api/v1/complaints`: complaints (投诉举报) from the public, mappable to Open311 GeoReport v2.
//!
//! Public, no login (each rate-limited per client address, counted in the database so every replica
//! agrees):
//! - `GET  /api/v1/complaints/services`: the services (Open311 service list).
//! - `GET  /api/v1/complaints/captcha`: a CAPTCHA image and its id, or `{"required": false}` when
//!   the operator turned the CAPTCHA off (`[complaints] captcha = false`; the form then hides it).
//! - `POST /api/v1/complaints`: multipart form with the complaint, the CAPTCHA answer and up to three
//!   JPEG/PNG/PDF attachments (types recognised by content); answers the tracking number.
//! - `GET  /api/v1/complaints/track/{tracking_no}`: status, service, times and public notes only.
//!
//! Logged in (business roles; departments see complaints about their objects, others answer 404):
//! - `GET  /api/v1/complaints`, `GET /api/v1/complaints/{id}`: phone, ID number and name masked for
//!   every role; each complaint carries its `open311` form.
//! - `GET  /api/v1/complaints/{id}/attachments/{attachment_id}`: an attachment's file.
//! - `GET  /api/v1/complaints/{id}/contact`: the monitoring center's call-back view, unmasked, audited.
//! - `POST /api/v1/complaints/{id}/close`: the monitoring center closes a complaint with a reason.
//!
//! Phone and ID numbers are encrypted with AES-256-GCM ([`ContactCipher`]) before they reach the
//! store; the key is the portal's ([`crate::AppState::with_secret_key`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use axum::body::Body;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{Multipart, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use offsite_store::auth::Role;
use offsite_store::complaints::{
    self, mask_name, normalize_id_number, normalize_phone, service, Closed, Filed, SERVICES,
};
use offsite_store::{
    AuditEvent, ComplaintFilter, ComplaintRecord, ComplaintStatus, FieldError, NewAttachment, NewComplaint, RateLimit,
};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::scope;
use crate::auth::{ClientIp, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;

/// The path of the public intake, the one route allowed a body larger than [`crate::BODY_LIMIT_BYTES`].
pub const SUBMIT_PATH: &str = "/api/v1/complaints";
/// At most this many attachments...
pub const MAX_FILES: usize = 3;
/// ...each at most this large...
pub const FILE_MAX_BYTES: usize = 5 * 1024 * 1024;
/// ...and together at most this large.
pub const FILES_MAX_BYTES: usize = 10 * 1024 * 1024;
/// The intake's body limit: the attachments plus the form fields and multipart framing.
pub const UPLOAD_BODY_LIMIT: usize = FILES_MAX_BYTES + 1024 * 1024;
/// A text field of the form (the description is 2000 characters, up to 4 bytes each).
const TEXT_FIELD_MAX_BYTES: usize = 16 * 1024;

const TEN_MINUTES: Duration = Duration::from_secs(600);
/// Complaints filed per address.
pub const SUBMIT_LIMIT: RateLimit = RateLimit { max: 5, window: TEN_MINUTES };
/// Submission attempts per address, failed ones included.
pub const ATTEMPT_LIMIT: RateLimit = RateLimit { max: 30, window: TEN_MINUTES };
/// Tracking-number lookups per address.
pub const TRACK_LIMIT: RateLimit = RateLimit { max: 60, window: TEN_MINUTES };
/// CAPTCHAs drawn per address.
pub const CAPTCHA_LIMIT: RateLimit = RateLimit { max: 60, window: TEN_MINUTES };

/// Who reads a complainant's contact details in clear (to call back).
const CONTACT_READERS: [Role; 1] = [Role::Monitor];
/// Who closes complaints.
const CLOSERS: [Role; 1] = [Role::Monitor];

// --- encryption of contact details ---

/// AES-256-GCM for the phone and ID number columns. A sealed value is a version byte (1), a
/// random 96-bit nonce, then ciphertext and tag; the column name is bound in as associated data,
/// so a value copied into another column does not decrypt.
#[derive(Clone)]
pub struct ContactCipher(Arc<Aes256Gcm>);

impl fmt::Debug for ContactCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContactCipher(..)")
    }
}

const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const PHONE_AAD: &[u8] = b"complaints.phone_enc";
const ID_NUMBER_AAD: &[u8] = b"complaints.id_number_enc";

impl ContactCipher {
    pub fn new(key: [u8; 32]) -> Self {
        Self(Arc::new(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key))))
    }

    /// A random key: what [`AppState::new`] uses until a key is configured.
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Self::new(k)
    }

    pub fn seal(&self, aad: &[u8], plain: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .0
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad })
            .expect("AES-GCM encryption of a short value cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> anyhow::Result<String> {
        anyhow::ensure!(sealed.len() > 1 + NONCE_LEN && sealed[0] == SEALED_V1, "not a sealed value");
        let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| anyhow::anyhow!("cannot decrypt a complaint's contact details: wrong key?"))?;
        Ok(String::from_utf8(plain)?)
    }
}

// --- body limit ---

/// The request body limit of every route: [`crate::BODY_LIMIT_BYTES`], except the complaint intake
/// (`POST` [`SUBMIT_PATH`]), which takes [`UPLOAD_BODY_LIMIT`], and case document uploads, which take
/// [`crate::routes::cases::UPLOAD_BODY_LIMIT`]. Like tower-http's
/// `RequestBodyLimitLayer`: a declared length over the limit is a 413 at once, and the body is
/// wrapped so reading past the limit fails (extractors answer 413).
pub async fn body_limit(req: Request, next: Next) -> Response {
    let limit = if req.method() == Method::POST && req.uri().path() == SUBMIT_PATH {
        UPLOAD_BODY_LIMIT
    } else if req.method() == Method::POST && crate::routes::cases::is_upload_path(req.uri().path()) {
        crate::routes::cases::UPLOAD_BODY_LIMIT
    } else {
        crate::BODY_LIMIT_BYTES
    };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE).into_response();
    }
    next.run(req.map(|b| Body::new(http_body_util::Limited::new(b, limit)))).await
}

// --- helpers ---

fn field_error(e: FieldError) -> ApiError {
    ApiError::bad_request(format!("{}: {}", e.field, e.message_en), format!("{}：{}", e.field, e.message_zh))
}

fn throttled(retry_after_s: i64) -> Response {
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "throttled",
        format!("too many requests from this address; try again in {retry_after_s} s"),
        format!("请求过于频繁，请 {retry_after_s} 秒后再试"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("complaint {id} not found"), format!("投诉 {id} 不存在"))
}

fn client(ip: Option<String>) -> String {
    ip.unwrap_or_else(|| "unknown".to_owned())
}

/// Counts a request against a public bucket; `Some(429)` when over the limit.
pub(crate) async fn rate(state: &AppState, bucket: &str, ip: &str, limit: RateLimit) -> ApiResult<Option<Response>> {
    Ok(state.store.rate_hit(bucket, ip, limit).await?.map(throttled))
}

fn status_zh(s: ComplaintStatus) -> &'static str {
    s.name_zh()
}

/// The Open311 GeoReport v2 form of a complaint (a service request).
fn open311(c: &ComplaintRecord) -> Value {
    let svc = service(&c.service_code);
    json!({
        "service_request_id": c.tracking_no,
        "service_code": c.service_code,
        "service_name": svc.map(|s| s.service_name),
        "description": c.description,
        "lat": c.lat,
        "long": c.lon,
        "address_string": c.address,
        "status": c.status().as_str(),
        "status_notes": c.public_notes().last().map(|n| n.note.clone()),
        "requested_datetime": c.created_at,
        "updated_datetime": c.updated_at,
    })
}

/// What staff see: contact details masked for every role.
fn staff_view(c: &ComplaintRecord) -> Value {
    let svc = service(&c.service_code);
    json!({
        "id": c.id,
        "tracking_no": c.tracking_no,
        "service_code": c.service_code,
        "service_name": svc.map(|s| s.service_name),
        "service_name_zh": svc.map(|s| s.service_name_zh),
        "description": c.description,
        "address": c.address,
        "lon": c.lon,
        "lat": c.lat,
        "object_id": c.object_id,
        "status": c.status().as_str(),
        "status_zh": status_zh(c.status()),
        "status_notes": c.notes(),
        "contact_name": c.contact_name.as_deref().map(mask_name),
        "phone": c.phone_masked,
        "id_number": c.id_number_masked,
        "attachment_count": c.attachment_count,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "closed_at": c.closed_at,
        "closed_by": c.closed_by,
        "close_reason": c.close_reason,
        "open311": open311(c),
    })
}

/// What anyone holding the tracking number sees: nothing the complainant wrote, nothing internal.
fn public_view(c: &ComplaintRecord) -> Value {
    let svc = service(&c.service_code);
    let notes: Vec<Value> = c.public_notes().map(|n| json!({ "at": n.at, "note": n.note })).collect();
    json!({
        "tracking_no": c.tracking_no,
        "service_code": c.service_code,
        "service_name": svc.map(|s| s.service_name),
        "service_name_zh": svc.map(|s| s.service_name_zh),
        "status": c.status().as_str(),
        "status_zh": status_zh(c.status()),
        "created_at": c.created_at,
        "closed_at": c.closed_at,
        "notes": notes,
    })
}

// --- public endpoints ---

pub async fn services() -> Json<Value> {
    let items: Vec<Value> = SERVICES
        .iter()
        .map(|s| {
            json!({
                "service_code": s.service_code,
                "service_name": s.service_name,
                "service_name_zh": s.service_name_zh,
                "description": s.description,
                "group": s.group,
                "metadata": false,
                "type": "realtime",
                "keywords": "",
            })
        })
        .collect();
    Json(json!({ "items": items }))
}

pub async fn captcha(State(state): State<AppState>, ClientIp(ip): ClientIp) -> ApiResult<Response> {
    if let Some(r) = rate(&state, "captcha", &client(ip), CAPTCHA_LIMIT).await? {
        return Ok(r);
    }
    if !state.captcha_required() {
        return Ok(no_store(Json(json!({ "required": false })).into_response()));
    }
    let c = state.captchas().issue().await?;
    let body = json!({ "required": true, "id": c.id, "image": c.image, "expires_in_s": crate::captcha::TTL.as_secs() });
    Ok(no_store(Json(body).into_response()))
}

/// The form as sent.
#[derive(Default)]
struct Form {
    service_code: Option<String>,
    description: Option<String>,
    address: Option<String>,
    lon: Option<String>,
    lat: Option<String>,
    object_id: Option<String>,
    contact_name: Option<String>,
    phone: Option<String>,
    id_number: Option<String>,
    captcha_id: Option<String>,
    captcha_answer: Option<String>,
    files: Vec<NewAttachment>,
}

impl Form {
    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "service_code" => &mut self.service_code,
            "description" => &mut self.description,
            "address" => &mut self.address,
            "lon" => &mut self.lon,
            "lat" => &mut self.lat,
            "object_id" => &mut self.object_id,
            "contact_name" => &mut self.contact_name,
            "phone" => &mut self.phone,
            "id_number" => &mut self.id_number,
            "captcha_id" => &mut self.captcha_id,
            "captcha_answer" => &mut self.captcha_answer,
            _ => return None,
        })
    }
}

fn multipart_error(e: MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large("request body", "请求体");
    }
    let detail = e.body_text();
    ApiError::bad_request(format!("malformed multipart form: {detail}"), "表单格式错误（应为 multipart/form-data）")
}

fn too_large(what: &str, what_zh: &str) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "{what} too large: at most {MAX_FILES} attachments of at most {} MiB each, {} MiB together",
            FILE_MAX_BYTES >> 20,
            FILES_MAX_BYTES >> 20
        ),
        format!(
            "{what_zh}过大：最多 {MAX_FILES} 个附件，每个不超过 {} MiB，合计不超过 {} MiB",
            FILE_MAX_BYTES >> 20,
            FILES_MAX_BYTES >> 20
        ),
    )
}

/// Reads a field's bytes, refusing more than `max`.
async fn read_field(field: &mut Field<'_>, max: usize, on_too_large: impl Fn() -> ApiError) -> ApiResult<Vec<u8>> {
    let mut data = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if data.len() + chunk.len() > max {
            return Err(on_too_large());
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// The type of a file by its first bytes: JPEG, PNG or PDF; anything else is refused whatever
/// its name or declared type.
pub fn sniff(data: &[u8]) -> Option<(&'static str, &'static str)> {
    offsite_store::files::sniff(data).filter(|(t, _)| matches!(*t, "image/jpeg" | "image/png" | "application/pdf"))
}

/// A file name safe to store and show: no directories, no control characters, at most 100 characters.
pub(crate) fn clean_filename(name: Option<&str>, ext: &str, n: usize) -> String {
    let base = name.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | ':' | '|' | '?' | '*'))
        .take(100)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        format!("attachment-{n}.{ext}")
    } else {
        cleaned
    }
}

async fn read_form(mut mp: Multipart) -> ApiResult<Form> {
    let mut form = Form::default();
    let mut total = 0usize;
    while let Some(mut field) = mp.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_owned();
        if matches!(name.as_str(), "attachment" | "attachments" | "attachment[]") {
            let filename = field.file_name().map(str::to_owned);
            let data = read_field(&mut field, FILE_MAX_BYTES, || too_large("attachment", "附件")).await?;
            if data.is_empty() && filename.as_deref().unwrap_or("").is_empty() {
                continue; // A file input left empty.
            }
            if form.files.len() >= MAX_FILES {
                return Err(ApiError::bad_request(
                    format!("attachment: at most {MAX_FILES} files"),
                    format!("attachment：最多 {MAX_FILES} 个附件"),
                ));
            }
            total += data.len();
            if total > FILES_MAX_BYTES {
                return Err(too_large("attachments", "附件"));
            }
            let Some((content_type, ext)) = sniff(&data) else {
                return Err(ApiError::bad_request(
                    "attachment: only JPEG, PNG and PDF files are accepted (checked by content, not by name)",
                    "attachment：附件只能是 JPEG、PNG 或 PDF 文件（按文件内容判断）",
                ));
            };
            let filename = clean_filename(filename.as_deref(), ext, form.files.len() + 1);
            form.files.push(NewAttachment { filename, content_type: content_type.to_owned(), data });
            continue;
        }
        let Some(slot) = form.slot(&name) else {
            return Err(ApiError::bad_request(
                format!("unknown form field '{name}'"),
                format!("未知的表单字段“{name}”"),
            ));
        };
        if slot.is_some() {
            return Err(ApiError::bad_request(format!("{name}: given twice"), format!("{name}：重复提交")));
        }
        let too_long = || ApiError::bad_request(format!("{name}: too long"), format!("{name}：内容过长"));
        let bytes = read_field(&mut field, TEXT_FIELD_MAX_BYTES, too_long).await?;
        let text = String::from_utf8(bytes).map_err(|_| {
            ApiError::bad_request(format!("{name}: not UTF-8 text"), format!("{name}：不是 UTF-8 文本"))
        })?;
        // PostgreSQL text cannot hold NUL: refuse it here rather than fail in the database.
        if text.contains('\0') {
            return Err(crate::extract::nul_refused());
        }
        *slot = Some(text);
    }
    Ok(form)
}

fn number(field: &str, v: Option<&str>) -> ApiResult<Option<f64>> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s.parse::<f64>().ok().filter(|x| x.is_finite()).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("{field}: not a number: '{s}'"), format!("{field}：不是数字：“{s}”"))
        }),
    }
}

fn present(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

pub async fn submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    mp: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let ip = client(ip);
    // Refuse before reading what may be 10 MiB of attachments.
    if let Some(r) = rate(&state, "complaint_attempt", &ip, ATTEMPT_LIMIT).await? {
        return Ok(r);
    }
    if let Some(s) = state.store.complaint_quota_exhausted(&ip, SUBMIT_LIMIT).await? {
        return Ok(throttled(s));
    }
    let mp = mp.map_err(|e| {
        ApiError::bad_request(
            format!("the body must be a multipart/form-data form: {}", e.body_text()),
            "请求体必须是 multipart/form-data 表单",
        )
    })?;
    let form = read_form(mp).await?;

    // The CAPTCHA first: it is used up whatever follows.
    if state.captcha_required() {
        check_captcha(&state, &form).await?;
    }

    let phone = present(form.phone).map(|p| normalize_phone(&p)).transpose().map_err(field_error)?;
    let id_number = present(form.id_number).map(|p| normalize_id_number(&p)).transpose().map_err(field_error)?;
    let cipher = state.contact_cipher();
    let new = NewComplaint {
        service_code: form.service_code.unwrap_or_default(),
        description: form.description.unwrap_or_default(),
        address: form.address,
        lon: number("lon", form.lon.as_deref())?,
        lat: number("lat", form.lat.as_deref())?,
        object_id: form.object_id,
        contact_name: form.contact_name,
        phone: phone.map(|p| (cipher.seal(PHONE_AAD, &p), complaints::mask_phone(&p))),
        id_number: id_number.map(|n| (cipher.seal(ID_NUMBER_AAD, &n), complaints::mask_id_number(&n))),
        submitter_ip: ip.clone(),
        attachments: form.files,
    };
    let attachments = new.attachments.len();
    match state.store.file_complaint_with(&new, SUBMIT_LIMIT, Some(state.files().as_ref())).await? {
        Filed::Throttled { retry_after_s } => Ok(throttled(retry_after_s)),
        Filed::Ok { id, tracking_no } => {
            state
                .audit(AuditEvent::new("anonymous", "complaint.create", "complaint").id(id.to_string()).ip(ip).after(
                    json!({
                        "tracking_no": tracking_no, "service_code": new.service_code.trim(), "attachments": attachments,
                    }),
                ))
                .await;
            let body = json!({ "tracking_no": tracking_no, "status": ComplaintStatus::Open.as_str() });
            Ok(no_store((StatusCode::CREATED, Json(body)).into_response()))
        }
    }
}

pub async fn track(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiPath(no): ApiPath<String>,
) -> ApiResult<Response> {
    if let Some(r) = rate(&state, "complaint_track", &client(ip), TRACK_LIMIT).await? {
        return Ok(r);
    }
    // One answer for malformed and unknown numbers alike.
    let Some(c) = state.store.complaint_by_tracking_no(&no).await? else {
        return Err(ApiError::not_found("no complaint with this tracking number", "未找到该受理编号的投诉"));
    };
    Ok(no_store(Json(public_view(&c)).into_response()))
}

// --- staff endpoints ---

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    service_code: Option<String>,
    object_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let s = scope(&state, &who).await?;
    let status = match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(v) => Some(
            ComplaintStatus::parse(v)
                .ok_or_else(|| ApiError::bad_request("status: one of open, closed", "status：只能是 open 或 closed"))?,
        ),
    };
    let f = ComplaintFilter {
        status,
        service_code: q.service_code.filter(|s| !s.is_empty()),
        object_id: q.object_id.filter(|s| !s.is_empty()),
        limit: q.limit.unwrap_or(100),
        offset: q.offset.unwrap_or(0),
    };
    let (items, total) = state.store.list_complaints(&f, &s).await?;
    let items: Vec<Value> = items.iter().map(staff_view).collect();
    Ok(Json(json!({ "items": items, "total": total })))
}

async fn visible(state: &AppState, who: &Principal, id: i64) -> ApiResult<ComplaintRecord> {
    let s = scope(state, who).await?;
    state.store.visible_complaint(id, &s).await?.ok_or_else(|| not_found(&id.to_string()))
}

pub async fn get(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<i64>) -> ApiResult<Response> {
    let c = visible(&state, &who, id).await?;
    let mut v = staff_view(&c);
    v["attachments"] = json!(state.store.complaint_attachments(id).await?);
    Ok(no_store(Json(v).into_response()))
}

pub async fn attachment(
    State(state): State<AppState>,
    who: Principal,
    ApiPath((id, aid)): ApiPath<(i64, i64)>,
) -> ApiResult<Response> {
    visible(&state, &who, id).await?;
    let missing = || ApiError::not_found(format!("attachment {aid} not found"), format!("附件 {aid} 不存在"));
    let Some((meta, data)) = state.store.complaint_attachment(id, aid).await? else {
        return Err(missing());
    };
    // Attachments filed before migration 0018 carry their bytes in the row.
    let data = match data {
        Some(d) => d,
        None => state.files().get(&meta.sha256).await?.ok_or_else(missing)?,
    };
    file_response(&meta.filename, &meta.content_type, data)
}

/// A stored file as a download: its type, an ASCII and a UTF-8 file name, never sniffed or cached
/// (complaint attachments, task attachments, case documents).
pub(crate) fn file_response(filename: &str, content_type: &str, data: Vec<u8>) -> ApiResult<Response> {
    let mut resp = data.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).map_err(|_| ApiError::internal())?);
    let ascii: String =
        filename.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{}", percent_encode(filename));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(resp)
}

pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn contact(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    who.require(&CONTACT_READERS)?;
    let c = visible(&state, &who, id).await?;
    let cipher = state.contact_cipher();
    let phone = c.phone_enc.as_deref().map(|b| cipher.open(PHONE_AAD, b)).transpose()?;
    let id_number = c.id_number_enc.as_deref().map(|b| cipher.open(ID_NUMBER_AAD, b)).transpose()?;
    let mut ev = AuditEvent::new(who.username(), "complaint.contact_viewed", "complaint").id(id.to_string());
    if let Some(ip) = ip {
        ev = ev.ip(ip);
    }
    state.audit(ev).await;
    let body = json!({
        "id": c.id,
        "tracking_no": c.tracking_no,
        "contact_name": c.contact_name,
        "phone": phone,
        "id_number": id_number,
    });
    Ok(no_store(Json(body).into_response()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    reason: String,
    #[serde(default)]
    public_note: Option<String>,
}

pub async fn close(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<CloseBody>,
) -> ApiResult<Json<Value>> {
    who.require(&CLOSERS)?;
    visible(&state, &who, id).await?;
    match state.store.close_complaint(id, who.username(), &b.reason, b.public_note.as_deref()).await? {
        Closed::Ok(c) => {
            let mut ev = AuditEvent::new(who.username(), "complaint.close", "complaint")
                .id(id.to_string())
                .before(json!({ "status": "open" }))
                .after(json!({ "status": "closed", "reason": c.close_reason, "public_note": b.public_note }));
            if let Some(ip) = ip {
                ev = ev.ip(ip);
            }
            state.audit(ev).await;
            Ok(Json(staff_view(&c)))
        }
        Closed::AlreadyClosed => {
            Err(ApiError::conflict(format!("complaint {id} is already closed"), format!("投诉 {id} 已办结")))
        }
        Closed::NotFound => Err(not_found(&id.to_string())),
    }
}

/// Uses up the form's CAPTCHA; a missing, wrong, expired or used one refuses the submission.
async fn check_captcha(state: &AppState, form: &Form) -> ApiResult<()> {
    let (Some(cid), Some(answer)) = (present(form.captcha_id.clone()), present(form.captcha_answer.clone())) else {
        return Err(ApiError::bad_request(
            "captcha_answer: solve the CAPTCHA (captcha_id and captcha_answer are required)",
            "captcha_answer：请填写图形验证码",
        ));
    };
    match state.captchas().check(&cid, &answer).await? {
        crate::captcha::Check::Ok => {}
        crate::captcha::Check::Wrong => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "captcha",
                "captcha_answer: wrong answer; get a new CAPTCHA and try again",
                "captcha_answer：验证码错误，请刷新验证码后重试",
            ))
        }
        crate::captcha::Check::Unknown => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "captcha",
                "captcha_id: the CAPTCHA has expired or was already used; get a new one",
                "captcha_id：验证码已过期或已使用，请刷新验证码",
            ))
        }
    }
    Ok(())
}
