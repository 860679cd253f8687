//! Device metadata and its bulk import/export (CSV or XLSX): where a device is, when it was
//! installed, its model and expected metrics, its object and class. Devices themselves are
//! provisioned with their credentials (`offsite device add`, or `POST /api/v1/devices` where the
//! process holds the device CA); the import updates what describes them.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
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

/// `POST /api/v1/devices` as sent; [`Registration::parse`] turns it into something to act on.
#[derive(Debug, Deserialize)]
pub struct RegisterBody {
    name: String,
    #[serde(default)]
    object_id: Option<String>,
    #[serde(default)]
    class: Option<String>,
    /// Present for an HJ 212 data logger: it is identified by MN and PW, not given credentials.
    #[serde(default)]
    hj212: Option<LoggerLogin>,
}

/// An HJ 212 logger's MN and PW as sent.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggerLogin {
    mn: String,
    pw: String,
}

/// A device to register: a display name of 1 to 200 characters, and optionally the regulated object
/// it belongs to and its class (what class-scoped rules match).
#[derive(Debug, PartialEq)]
struct Registration {
    name: String,
    object_id: Option<String>,
    class: Option<String>,
    hj212: Option<LoggerLogin>,
}

impl Registration {
    fn parse(b: RegisterBody) -> ApiResult<Self> {
        let name = b.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ApiError::bad_request("name: 1 to 200 characters", "name：设备名称须为 1 至 200 个字符"));
        }
        let present = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let object_id = present(b.object_id);
        if let Some(o) = &object_id {
            if o.len() > 64 || !o.bytes().all(|c| c.is_ascii_alphanumeric() || b"_-".contains(&c)) {
                return Err(ApiError::bad_request(
                    "object_id: 1-64 characters of A-Z a-z 0-9 _ -",
                    "object_id：监管对象编号须为 1 至 64 个字母、数字、_ 或 -",
                ));
            }
        }
        let class = present(b.class);
        if let Some(c) = &class {
            if c.len() > 64 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
                return Err(ApiError::bad_request(
                    "class: 1-64 characters of A-Z a-z 0-9 _ . -",
                    "class：设备类别须为 1 至 64 个字母、数字或 _ . -",
                ));
            }
        }
        if let Some(l) = &b.hj212 {
            if !offsite_store::hj212::valid_mn(&l.mn) {
                return Err(ApiError::bad_request("hj212.mn: 1-64 characters of A-Z a-z 0-9 _ -", "hj212.mn：MN 须为 1 至 64 个字母、数字、_ 或 -"));
            }
            // The PW travels in every packet: no separator of the packet may be in it.
            if l.pw.is_empty() || l.pw.len() > 64 || !l.pw.bytes().all(|c| c.is_ascii_graphic() && !b";,=&".contains(&c)) {
                return Err(ApiError::bad_request(
                    "hj212.pw: 1-64 printable ASCII characters other than ; , = &",
                    "hj212.pw：访问密码须为 1 至 64 个可见 ASCII 字符，且不含 ; , = &",
                ));
            }
        }
        Ok(Self { name, object_id, class, hj212: b.hj212 })
    }
}

fn no_provisioner() -> ApiError {
    ApiError::unavailable(
        "this portal cannot issue device credentials: it has no access to the device certificate authority (run the all-in-one, or `offsite portal` on the broker's data directory, or use `offsite device add`)",
        "本门户无法签发设备凭据：无法访问设备证书颁发机构（请使用一体化部署，或在与消息代理相同的数据目录上运行 offsite portal，或使用 offsite device add 命令）",
    )
}

/// Credentials leave the server once; nothing between it and the browser may keep a copy.
fn credentials_response(status: StatusCode, creds: &offsite_wire::DeviceCredentials) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(json!(creds))).into_response()
}

/// Registers a device and answers its credentials (token, certificate, key, CA) — the only time
/// they are shown; the registry keeps the token's digest only.
pub async fn register(State(state): State<AppState>, who: Principal, ApiJson(body): ApiJson<RegisterBody>) -> ApiResult<Response> {
    who.require(&CONFIGURE)?;
    let r = Registration::parse(body)?;
    if let Some(o) = &r.object_id {
        if state.store.object(o).await?.is_none() {
            return Err(ApiError::bad_request(format!("object_id: no object {o}"), format!("object_id：监管对象 {o} 不存在")));
        }
    }
    if let Some(l) = &r.hj212 {
        return register_logger(&state, &who, &r, l).await;
    }
    let provisioner = state.provisioner().cloned().ok_or_else(no_provisioner)?;
    let (record, creds) = provisioner.provision(&state.store, &r.name, r.object_id.clone()).await?;
    if r.class.is_some() {
        state.store.set_device_class(&creds.device_id, r.class.as_deref()).await?;
    }
    state
        .audit(
            AuditEvent::new(who.username(), "device.provision", "device")
                .id(record.id.clone())
                .after(json!({"name": record.name, "object_id": record.object_id, "class": r.class})),
        )
        .await;
    Ok(credentials_response(StatusCode::CREATED, &creds))
}

/// An HJ 212 logger: no credentials to issue (it logs in with its MN and PW), so no certificate
/// authority is needed. Answers 201 with its device id and MN.
async fn register_logger(state: &AppState, who: &Principal, r: &Registration, l: &LoggerLogin) -> ApiResult<Response> {
    if state.store.hj212_logger(&l.mn).await?.is_some()
        || state.store.device(&offsite_store::hj212::device_id_for_mn(&l.mn)).await?.is_some()
    {
        return Err(ApiError::conflict(format!("MN {} is already registered", l.mn), format!("MN {} 已登记", l.mn)));
    }
    let record = state.store.insert_hj212_logger(&r.name, r.object_id.clone(), &l.mn, &l.pw).await?;
    let id = parse_device_id(&record.id)?;
    if r.class.is_some() {
        state.store.set_device_class(&id, r.class.as_deref()).await?;
    }
    let class = r.class.clone().unwrap_or_else(|| offsite_store::hj212::LOGGER_CLASS.into());
    state
        .audit(
            AuditEvent::new(who.username(), "device.provision", "device")
                .id(record.id.clone())
                .after(json!({"name": record.name, "object_id": record.object_id, "class": class, "hj212_mn": l.mn})),
        )
        .await;
    Ok((StatusCode::CREATED, Json(json!({"device_id": record.id, "hj212_mn": l.mn}))).into_response())
}

/// New token and certificate for a device; the old token stops working at its next connection.
pub async fn rotate(State(state): State<AppState>, who: Principal, ApiPath(id): ApiPath<String>) -> ApiResult<Response> {
    who.require(&CONFIGURE)?;
    let id = parse_device_id(&id)?;
    let device = visible_device(&state, &who, &id).await?;
    let provisioner = state.provisioner().cloned().ok_or_else(no_provisioner)?;
    if device.revoked_at.is_some() {
        return Err(revoked(&id));
    }
    // `None` only if it was revoked between the two reads.
    let creds = provisioner.rotate(&state.store, &id).await?.ok_or_else(|| revoked(&id))?;
    state.audit(AuditEvent::new(who.username(), "device.rotate", "device").id(id.to_string())).await;
    Ok(credentials_response(StatusCode::OK, &creds))
}

/// Refuses the device from its next connection attempt on (and its data). Revoking a revoked
/// device changes nothing and records nothing.
pub async fn revoke(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<super::devices::DeviceView>> {
    who.require(&CONFIGURE)?;
    let id = parse_device_id(&id)?;
    let before = visible_device(&state, &who, &id).await?;
    if before.revoked_at.is_none() {
        state.store.revoke_device(&id).await?;
        state.audit(AuditEvent::new(who.username(), "device.revoke", "device").id(id.to_string())).await;
    }
    Ok(Json(visible_device(&state, &who, &id).await?.into()))
}

fn revoked(id: &DeviceId) -> ApiError {
    ApiError::conflict(
        format!("device {id} is revoked; register a new device instead"),
        format!("设备 {id} 已吊销，请重新登记新设备"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(name: &str, object_id: Option<&str>, class: Option<&str>) -> RegisterBody {
        RegisterBody { name: name.into(), object_id: object_id.map(Into::into), class: class.map(Into::into), hj212: None }
    }

    fn logger(mn: &str, pw: &str) -> RegisterBody {
        RegisterBody { hj212: Some(LoggerLogin { mn: mn.into(), pw: pw.into() }), ..body("数采仪", None, None) }
    }

    #[test]
    fn registrations_are_trimmed_and_checked() {
        assert!(Registration::parse(logger("SQ0000000000000000000001", "123456")).is_ok_and(|r| r.hj212.is_some()));
        let r = Registration::parse(body("  扬尘监测仪 3号 ", Some(" site-1 "), Some(""))).unwrap();
        assert_eq!(r, Registration { name: "扬尘监测仪 3号".into(), object_id: Some("site-1".into()), class: None, hj212: None });
        // 200 Chinese characters are 600 bytes and still allowed: the limit is in characters.
        assert!(Registration::parse(body(&"仪".repeat(200), None, None)).is_ok());
        for bad in [
            body("   ", None, None),
            body(&"仪".repeat(201), None, None),
            body("ok", Some("site 1"), None),
            body("ok", Some(&"a".repeat(65)), None),
            body("ok", None, Some("dust monitor")),
            logger("has space", "123456"),
            logger("", "123456"),
            logger("SQ01", ""),
            logger("SQ01", "a;b"),
            logger("SQ01", "密码"),
        ] {
            let e = Registration::parse(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(!e.message_zh.is_empty());
        }
    }
}
