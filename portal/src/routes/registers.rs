//! The registers: regions, departments, regulated objects (with CSV import/export) and the
//! regulatory item catalog. Reading follows the caller's scope; changing is the system
//! administrator's.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use offsite_store::{AuditEvent, CatalogFields, ImportOptions, NewDepartment, NewObject, ObjectFilter, Region};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::{scope, CONFIGURE};
use offsite_store::auth::Role;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::AppState;

fn page<T: serde::Serialize>(items: Vec<T>, total: i64) -> Json<Value> {
    Json(json!({ "items": items, "total": total }))
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("{what} {id} not found"), format!("{what} {id} 不存在"))
}

// --- regions ---

/// The organisation (regions, departments) is read by everyone with business data and also by the
/// security administrator, who assigns accounts to departments and regions but sees no business data.
async fn may_read_organisation(state: &AppState, who: &Principal) -> ApiResult<()> {
    if who.has_any(&[Role::SecurityAdmin]) {
        return Ok(());
    }
    scope(state, who).await.map(|_| ())
}

pub async fn regions(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    may_read_organisation(&state, &who).await?;
    let tree = state.store.region_tree().await?;
    Ok(Json(json!({ "items": tree })))
}

pub async fn upsert_region(State(state): State<AppState>, who: Principal, ApiJson(r): ApiJson<Region>) -> ApiResult<Json<Region>> {
    who.require(&CONFIGURE)?;
    let saved = state.store.upsert_region(&r).await?;
    state.audit(AuditEvent::new(who.username(), "region.upsert", "region").id(saved.code.clone()).after(json!(saved))).await;
    Ok(Json(saved))
}

// --- departments ---

pub async fn departments(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    may_read_organisation(&state, &who).await?;
    let items = state.store.departments().await?;
    let total = items.len() as i64;
    Ok(page(items, total))
}

pub async fn create_department(State(state): State<AppState>, who: Principal, ApiJson(d): ApiJson<NewDepartment>) -> ApiResult<(StatusCode, Json<Value>)> {
    who.require(&CONFIGURE)?;
    let saved = state.store.insert_department(&d).await?;
    state.audit(AuditEvent::new(who.username(), "department.create", "department").id(saved.id.to_string()).after(json!(saved))).await;
    Ok((StatusCode::CREATED, Json(json!(saved))))
}

pub async fn delete_region(State(state): State<AppState>, who: Principal, ApiPath(code): ApiPath<String>) -> ApiResult<StatusCode> {
    who.require(&CONFIGURE)?;
    if !state.store.delete_region(&code).await? {
        return Err(not_found("region", &code));
    }
    state.audit(AuditEvent::new(who.username(), "region.delete", "region").id(code)).await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn update_department(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(d): ApiJson<NewDepartment>,
) -> ApiResult<Json<Value>> {
    who.require(&CONFIGURE)?;
    let before = state.store.department(id).await?;
    let Some(saved) = state.store.update_department(id, &d).await? else {
        return Err(not_found("department", &id.to_string()));
    };
    state
        .audit(AuditEvent::new(who.username(), "department.update", "department").id(id.to_string()).before(json!(before)).after(json!(saved)))
        .await;
    Ok(Json(json!(saved)))
}

pub async fn delete_department(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<i64>) -> ApiResult<StatusCode> {
    who.require(&CONFIGURE)?;
    if !state.store.delete_department(id).await? {
        return Err(not_found("department", &id.to_string()));
    }
    state.audit(AuditEvent::new(who.username(), "department.delete", "department").id(id.to_string())).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionsBody {
    region_codes: Vec<String>,
}

pub async fn set_department_regions(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<RegionsBody>,
) -> ApiResult<StatusCode> {
    who.require(&CONFIGURE)?;
    if !state.store.set_department_regions(id, &b.region_codes).await? {
        return Err(not_found("department", &id.to_string()));
    }
    state.audit(AuditEvent::new(who.username(), "department.regions", "department").id(id.to_string()).after(json!(b.region_codes))).await;
    Ok(StatusCode::NO_CONTENT)
}

// --- objects ---

#[derive(Debug, Default, Deserialize)]
pub struct ObjectQuery {
    q: Option<String>,
    #[serde(rename = "type")]
    object_type: Option<String>,
    region: Option<String>,
    department: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn objects(State(state): State<AppState>, who: Principal, ApiQuery(q): ApiQuery<ObjectQuery>) -> ApiResult<Json<Value>> {
    let s = scope(&state, &who).await?;
    let f = ObjectFilter {
        q: q.q,
        object_type: q.object_type,
        region_code: q.region,
        department_id: q.department,
        limit: q.limit.unwrap_or(100),
        offset: q.offset.unwrap_or(0).max(0),
    };
    let (items, total) = state.store.list_objects(&f, &s).await?;
    let mut items: Vec<Value> = items.iter().map(|o| json!(o)).collect();
    crate::routes::cases::add_credit_class(&state, &mut items).await?;
    Ok(page(items, total))
}

pub async fn object(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Value>> {
    let s = scope(&state, &who).await?;
    match state.store.visible_object(&id, &s).await? {
        Some(o) => {
            let mut v = [json!(o)];
            crate::routes::cases::add_credit_class(&state, &mut v).await?;
            Ok(Json(v[0].take()))
        }
        None => Err(not_found("object", &id)),
    }
}

pub async fn create_object(State(state): State<AppState>, who: Principal, ApiJson(o): ApiJson<NewObject>) -> ApiResult<(StatusCode, Json<Value>)> {
    who.require(&CONFIGURE)?;
    let saved = state.store.insert_object(&o).await?;
    state.audit(AuditEvent::new(who.username(), "object.create", "object").id(saved.id.clone()).after(json!(saved))).await;
    Ok((StatusCode::CREATED, Json(json!(saved))))
}

pub async fn update_object(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(mut o): ApiJson<NewObject>,
) -> ApiResult<Json<Value>> {
    who.require(&CONFIGURE)?;
    o.id = id.clone();
    let before = state.store.object(&id).await?;
    let saved = state.store.update_object(&o).await?.ok_or_else(|| not_found("object", &id))?;
    state
        .audit(AuditEvent::new(who.username(), "object.update", "object").id(id).before(json!(before)).after(json!(saved)))
        .await;
    Ok(Json(json!(saved)))
}

pub async fn delete_object(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    who.require(&CONFIGURE)?;
    let before = state.store.object(&id).await?;
    if !state.store.delete_object(&id).await? {
        return Err(not_found("object", &id));
    }
    state.audit(AuditEvent::new(who.username(), "object.delete", "object").id(id).before(json!(before))).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    publish: bool,
}

/// An upload as CSV bytes: XLSX (recognised by its content) is converted, CSV passes through.
pub(crate) fn upload_as_csv(body: &[u8]) -> ApiResult<std::borrow::Cow<'_, [u8]>> {
    as_csv(body)
}

fn as_csv(body: &[u8]) -> ApiResult<std::borrow::Cow<'_, [u8]>> {
    if crate::xlsx::is_xlsx(body) {
        crate::xlsx::xlsx_to_csv(body)
            .map(std::borrow::Cow::Owned)
            .map_err(|e| ApiError::bad_request(format!("file: {e:#}"), format!("file：无法读取 XLSX 文件（{e:#}）")))
    } else {
        Ok(std::borrow::Cow::Borrowed(body))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ExportQuery {
    /// `csv` (default) or `xlsx`.
    #[serde(default)]
    format: Option<String>,
}

/// A CSV export as the format asked for (`csv` or `xlsx`).
pub(crate) fn export_as(csv: Vec<u8>, stem: &str, format: Option<&str>) -> ApiResult<Response> {
    export_response(csv, stem, &ExportQuery { format: format.map(str::to_owned) })
}

fn export_response(csv: Vec<u8>, stem: &str, q: &ExportQuery) -> ApiResult<Response> {
    match q.format.as_deref() {
        None | Some("csv") => Ok(csv_response(csv, &format!("{stem}.csv"))),
        Some("xlsx") => {
            let x = crate::xlsx::csv_to_xlsx(&csv, stem)?;
            let mut resp = x.into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{stem}.xlsx\"")) {
                resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(resp)
        }
        Some(other) => Err(ApiError::bad_request(format!("format: {other:?} is not csv or xlsx"), "format：只支持 csv 或 xlsx")),
    }
}

/// CSV in the body; answers the per-row report (rows with errors are skipped, the rest stored).
pub async fn import_objects(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    who.require(&CONFIGURE)?;
    let opts = ImportOptions { dry_run: q.dry_run, publish: false, actor: Some(who.username().to_owned()) };
    let csv = as_csv(&body)?;
    let report = state.store.import_objects_csv(&csv[..], &opts).await?;
    if !q.dry_run {
        state
            .audit(AuditEvent::new(who.username(), "object.import", "object").after(json!({
                "inserted": report.inserted, "updated": report.updated, "errors": report.errors.len()
            })))
            .await;
    }
    Ok(Json(json!(report)))
}

fn csv_response(body: Vec<u8>, name: &str) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

pub async fn export_objects(State(state): State<AppState>, who: Principal, ApiQuery(q): ApiQuery<ExportQuery>) -> ApiResult<Response> {
    let s = scope(&state, &who).await?;
    let mut out = Vec::new();
    state.store.export_objects_csv(&mut out, &s).await?;
    export_response(out, "objects", &q)
}

// --- catalog ---

pub async fn catalog(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    scope(&state, &who).await?;
    let items = state.store.catalog_current().await?;
    let total = items.len() as i64;
    Ok(page(items, total))
}

/// Drafts not yet published (new items and pending changes), for the administrators who edit them.
pub async fn catalog_drafts(State(state): State<AppState>, who: Principal) -> ApiResult<Json<Value>> {
    who.require(&CONFIGURE)?;
    let items = state.store.catalog_drafts().await?;
    let total = items.len() as i64;
    Ok(page(items, total))
}

pub async fn catalog_history(State(state): State<AppState>, who: Principal, ApiPath(code): ApiPath<String>) -> ApiResult<Json<Value>> {
    scope(&state, &who).await?;
    let items = state.store.catalog_history(&code).await?;
    if items.is_empty() {
        return Err(not_found("catalog item", &code));
    }
    let total = items.len() as i64;
    Ok(page(items, total))
}

pub async fn catalog_draft(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(code): ApiPath<String>,
    ApiJson(fields): ApiJson<CatalogFields>,
) -> ApiResult<Json<Value>> {
    who.require(&CONFIGURE)?;
    let item = state.store.catalog_save_draft(&code, &fields, Some(who.username())).await?;
    state.audit(AuditEvent::new(who.username(), "catalog.draft", "catalog_item").id(code).after(json!(item))).await;
    Ok(Json(json!(item)))
}

pub async fn catalog_publish(State(state): State<AppState>, who: Principal, ApiPath(code): ApiPath<String>) -> ApiResult<Json<Value>> {
    who.require(&CONFIGURE)?;
    let item = state.store.catalog_publish(&code, Some(who.username())).await?.ok_or_else(|| not_found("catalog draft", &code))?;
    state.audit(AuditEvent::new(who.username(), "catalog.publish", "catalog_item").id(code).after(json!(item))).await;
    Ok(Json(json!(item)))
}

pub async fn import_catalog(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    who.require(&CONFIGURE)?;
    let opts = ImportOptions { dry_run: q.dry_run, publish: q.publish, actor: Some(who.username().to_owned()) };
    let csv = as_csv(&body)?;
    let report = state.store.import_catalog_csv(&csv[..], &opts).await?;
    if !q.dry_run {
        state.audit(AuditEvent::new(who.username(), "catalog.import", "catalog_item").after(json!({"inserted": report.inserted}))).await;
    }
    Ok(Json(json!(report)))
}

pub async fn export_catalog(State(state): State<AppState>, who: Principal, ApiQuery(q): ApiQuery<ExportQuery>) -> ApiResult<Response> {
    scope(&state, &who).await?;
    let mut out = Vec::new();
    state.store.export_catalog_csv(&mut out).await?;
    export_response(out, "catalog", &q)
}
