//! Device metadata and its bulk import/export (CSV or XLSX): where a device is, when it was
//! installed, its model and expected metrics, its object and class. Devices themselves are
//! provisioned with their credentials (`offsite device add`); the import updates what describes them.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use offsite_store::{AuditEvent, DeviceMetadata, RowError};
use offsite_wire::DeviceId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::CONFIGURE;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::devices::{parse_device_id, visible_device};
use crate::AppState;

const COLUMNS: [&str; 10] = ["id", "name", "object_id", "class", "location", "lon", "lat", "installed_at", "model", "metrics"];

pub async fn get_metadata(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Value>> {
    let id = parse_device_id(&id)?;
    visible_device(&state, &who, &id).await?;
    let m = state.store.device_metadata(&id).await?.unwrap_or_default();
    Ok(Json(json!(m)))
}

pub async fn put_metadata(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(m): ApiJson<DeviceMetadata>,
) -> ApiResult<Json<Value>> {
    let id = parse_device_id(&id)?;
    visible_device(&state, &who, &id).await?;
    who.require(&CONFIGURE)?;
    let before = state.store.device_metadata(&id).await?;
    state.store.set_device_metadata(&id, &m).await?;
    state
        .audit(AuditEvent::new(who.username(), "device.metadata", "device").id(id.to_string()).before(json!(before)).after(json!(m)))
        .await;
    Ok(Json(json!(m)))
}

#[derive(Debug, Default, Deserialize)]
pub struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
}

pub async fn export(State(state): State<AppState>, who: Principal, ApiQuery(q): ApiQuery<ExportQuery>) -> ApiResult<Response> {
    let visible = crate::access::visible_devices(&state, &who).await?;
    let keys: Option<Vec<i32>> = visible.map(|v| v.into_iter().collect());
    let (devices, _) = state.store.list_devices_among(keys.as_deref(), i64::MAX, 0).await?;
    let mut metadata = state.store.all_device_metadata().await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS).map_err(anyhow::Error::from)?;
    for d in &devices {
        let m = metadata.remove(&d.id).unwrap_or_default();
        let num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        w.write_record([
            d.id.clone(),
            d.name.clone(),
            d.object_id.clone().unwrap_or_default(),
            d.class.clone().unwrap_or_default(),
            m.location.clone().unwrap_or_default(),
            num(m.lon),
            num(m.lat),
            m.installed_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            m.model.clone().unwrap_or_default(),
            m.metric_list.clone().unwrap_or_default().join(" "),
        ])
        .map_err(anyhow::Error::from)?;
    }
    let mut csv = "\u{feff}".as_bytes().to_vec();
    csv.extend(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?);
    super::registers::export_as(csv, "devices", q.format.as_deref())
}

#[derive(Debug, Default, Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
}

/// Updates existing devices' object, class and metadata from a CSV or XLSX table; rows with an
/// error are reported (row, field, message in both languages) and skipped.
pub async fn import(State(state): State<AppState>, who: Principal, ApiQuery(q): ApiQuery<ImportQuery>, body: Bytes) -> ApiResult<Json<Value>> {
    who.require(&CONFIGURE)?;
    let csv = super::registers::upload_as_csv(&body)?;
    let text = csv.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&csv);
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(text);
    let headers: Vec<String> = rdr.headers().map_err(|e| ApiError::bad_request(format!("file: {e}"), format!("file：{e}")))?.iter().map(|h| h.trim().to_owned()).collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let Some(id_col) = col("id") else {
        return Err(ApiError::bad_request("file: the header has no `id` column", "file：表头缺少 id 列"));
    };
    let mut errors: Vec<RowError> = Vec::new();
    let mut updated = 0u64;
    let err = |row: usize, field: &str, en: String, zh: String| RowError { row, field: field.into(), message_en: en, message_zh: zh };
    for (i, rec) in rdr.records().enumerate() {
        let row = i + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                errors.push(err(row, "row", e.to_string(), format!("无法读取该行：{e}")));
                continue;
            }
        };
        let get = |name: &str| col(name).and_then(|c| rec.get(c)).map(str::trim).filter(|s| !s.is_empty());
        let Some(id) = rec.get(id_col).map(str::trim).and_then(|s| DeviceId::parse(s).ok()) else {
            errors.push(err(row, "id", "not a device id".into(), "设备编号无效".into()));
            continue;
        };
        if state.store.device(&id).await?.is_none() {
            errors.push(err(row, "id", format!("no device {id}"), format!("设备 {id} 不存在")));
            continue;
        }
        let mut bad = false;
        let mut num = |field: &str, range: std::ops::RangeInclusive<f64>| match get(field).map(str::parse::<f64>) {
            None => None,
            Some(Ok(v)) if range.contains(&v) => Some(v),
            _ => {
                errors.push(err(row, field, format!("{field} must be a number in {range:?}"), format!("{field} 须为 {range:?} 范围内的数字")));
                bad = true;
                None
            }
        };
        let lon = num("lon", -180.0..=180.0);
        let lat = num("lat", -90.0..=90.0);
        let installed_at = match get("installed_at") {
            None => None,
            Some(s) => match DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
            }) {
                Some(t) => Some(t),
                None => {
                    errors.push(err(row, "installed_at", "a date (YYYY-MM-DD) or RFC 3339 time".into(), "安装时间须为日期（YYYY-MM-DD）或 RFC 3339 时间".into()));
                    bad = true;
                    None
                }
            },
        };
        if let Some(o) = get("object_id") {
            if state.store.object(o).await?.is_none() {
                errors.push(err(row, "object_id", format!("no object {o}"), format!("监管对象 {o} 不存在")));
                bad = true;
            }
        }
        if let Some(c) = get("class") {
            if c.len() > 64 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
                errors.push(err(row, "class", "1-64 characters of A-Z a-z 0-9 _ . -".into(), "设备类别须为 1 至 64 个字母、数字或 _ . -".into()));
                bad = true;
            }
        }
        if bad || q.dry_run {
            continue;
        }
        let m = DeviceMetadata {
            location: get("location").map(str::to_owned),
            lon,
            lat,
            installed_at,
            model: get("model").map(str::to_owned),
            metric_list: get("metrics").map(|s| s.split_whitespace().map(str::to_owned).collect()),
        };
        state.store.set_device_metadata(&id, &m).await?;
        if let Some(o) = get("object_id") {
            state.store.set_device_object(&id, Some(o)).await?;
        }
        if let Some(c) = get("class") {
            state.store.set_device_class(&id, Some(c)).await?;
        }
        updated += 1;
    }
    if !q.dry_run {
        state.audit(AuditEvent::new(who.username(), "device.import", "device").after(json!({"updated": updated, "errors": errors.len()}))).await;
    }
    Ok(Json(json!({ "updated": updated, "errors": errors, "dry_run": q.dry_run })))
}
