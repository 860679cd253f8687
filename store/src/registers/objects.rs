//! Regulated objects (监管对象): CRUD with access scopes, their devices and device metadata, and CSV
//! import/export with a per-row error report.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use chrono::{DateTime, Utc};
use offsite_wire::DeviceId;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};

use super::regions::check_region_code;
use super::{
    code, db_error, number, point, read_csv, text, AccessScope, CreditCode, FieldError, ImportOptions, ImportReport,
    RowError,
};
use crate::Store;

/// An object as entered (form, API, import row).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewObject {
    /// `[A-Za-z0-9_-]{1,64}`; what `devices.object_id` holds.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub credit_code: Option<CreditCode>,
    /// Kind of object, e.g. `construction-site`.
    #[serde(default, rename = "type")]
    pub object_type: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub lon: Option<f64>,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub region_code: Option<String>,
    /// The responsible department.
    #[serde(default)]
    pub department_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ObjectRecord {
    pub id: String,
    pub name: String,
    pub credit_code: Option<CreditCode>,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub object_type: Option<String>,
    pub address: Option<String>,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub region_code: Option<String>,
    pub region_name: Option<String>,
    pub department_id: Option<i64>,
    pub department_code: Option<String>,
    pub department_name: Option<String>,
    /// Devices whose `object_id` is this object.
    pub device_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of objects; unset fields do not filter.
#[derive(Debug, Clone)]
pub struct ObjectFilter {
    /// Substring of the id, name, address or credit code (case-insensitive).
    pub q: Option<String>,
    pub object_type: Option<String>,
    /// This region or any region under it.
    pub region_code: Option<String>,
    pub department_id: Option<i64>,
    /// Clamped to 1..=1000.
    pub limit: i64,
    pub offset: i64,
}

impl Default for ObjectFilter {
    fn default() -> Self {
        Self { q: None, object_type: None, region_code: None, department_id: None, limit: 100, offset: 0 }
    }
}

/// Where a device is and what it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct DeviceMetadata {
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub lon: Option<f64>,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub installed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub model: Option<String>,
    /// Metric keys the device is expected to report.
    #[serde(default)]
    pub metric_list: Option<Vec<String>>,
}

/// An object id that devices use but that has no record in the register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OrphanObject {
    pub object_id: String,
    pub device_ids: Vec<String>,
}

const SELECT: &str = "SELECT o.id, o.name, o.credit_code, o.type, o.address, o.lon, o.lat, o.region_code, \
     r.name AS region_name, o.department_id, d.code AS department_code, d.name AS department_name, \
     (SELECT count(*) FROM devices dv WHERE dv.object_id = o.id) AS device_count, o.created_at, o.updated_at \
     FROM objects o LEFT JOIN regions r ON r.code = o.region_code LEFT JOIN departments d ON d.id = o.department_id";

impl NewObject {
    /// Trims text, turns empty optional text into `None` and checks every field that needs no
    /// database; every problem is reported.
    pub fn normalized(&self) -> Result<NewObject, Vec<FieldError>> {
        let mut errors = Vec::new();
        let id = self.id.trim().to_owned();
        if let Err(e) = code("id", &id, 64, false) {
            errors.push(e);
        }
        let mut ok = |r: Result<Option<String>, FieldError>| r.map_err(|e| errors.push(e)).ok().flatten();
        let name = ok(text("name", Some(&self.name), true, 200)).unwrap_or_default();
        let object_type = ok(text("type", self.object_type.as_deref(), false, 64));
        let address = ok(text("address", self.address.as_deref(), false, 500));
        let region_code = ok(text("region_code", self.region_code.as_deref(), false, 6));
        if let Some(r) = &region_code {
            if let Err(e) = check_region_code("region_code", r) {
                errors.push(e);
            }
        }
        if let Err(e) = point(self.lon, self.lat) {
            errors.push(e);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(NewObject {
            id,
            name,
            credit_code: self.credit_code.clone(),
            object_type,
            address,
            lon: self.lon,
            lat: self.lat,
            region_code,
            department_id: self.department_id,
        })
    }

    fn checked(&self) -> Result<NewObject> {
        self.normalized().map_err(|mut e| e.swap_remove(0).into())
    }
}

fn like_pattern(q: &str) -> String {
    let escaped = q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

fn push_filters(b: &mut QueryBuilder<'_, Postgres>, f: &ObjectFilter, scope: &AccessScope) {
    b.push(" WHERE ");
    scope.push_condition(b, "o.department_id", "o.region_code");
    if let Some(q) = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let p = like_pattern(q);
        b.push(" AND (o.id ILIKE ")
            .push_bind(p.clone())
            .push(" OR o.name ILIKE ")
            .push_bind(p.clone())
            .push(" OR o.address ILIKE ")
            .push_bind(p.clone())
            .push(" OR o.credit_code ILIKE ")
            .push_bind(p)
            .push(")");
    }
    if let Some(t) = &f.object_type {
        b.push(" AND o.type = ").push_bind(t.clone());
    }
    if let Some(r) = &f.region_code {
        b.push(" AND o.region_code IN (WITH RECURSIVE sub AS (SELECT code FROM regions WHERE code = ")
            .push_bind(r.clone())
            .push(" UNION SELECT x.code FROM regions x JOIN sub ON x.parent_code = sub.code) SELECT code FROM sub)");
    }
    if let Some(d) = f.department_id {
        b.push(" AND o.department_id = ").push_bind(d);
    }
}

impl Store {
    pub async fn insert_object(&self, o: &NewObject) -> Result<ObjectRecord> {
        let o = o.checked()?;
        sqlx::query(
            "INSERT INTO objects (id, name, credit_code, type, address, lon, lat, region_code, department_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&o.id)
        .bind(&o.name)
        .bind(&o.credit_code)
        .bind(&o.object_type)
        .bind(&o.address)
        .bind(o.lon)
        .bind(o.lat)
        .bind(&o.region_code)
        .bind(o.department_id)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(self.object(&o.id).await?.expect("just inserted"))
    }

    /// Replaces every field of object `o.id`; `None` if there is no such object.
    pub async fn update_object(&self, o: &NewObject) -> Result<Option<ObjectRecord>> {
        let o = o.checked()?;
        let r = sqlx::query(
            "UPDATE objects SET name = $2, credit_code = $3, type = $4, address = $5, lon = $6, lat = $7, \
             region_code = $8, department_id = $9, updated_at = now() WHERE id = $1",
        )
        .bind(&o.id)
        .bind(&o.name)
        .bind(&o.credit_code)
        .bind(&o.object_type)
        .bind(&o.address)
        .bind(o.lon)
        .bind(o.lat)
        .bind(&o.region_code)
        .bind(o.department_id)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        self.object(&o.id).await
    }

    pub async fn object(&self, id: &str) -> Result<Option<ObjectRecord>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE o.id = $1")).bind(id).fetch_optional(&self.pool).await?)
    }

    /// An object if `scope` may see it.
    pub async fn visible_object(&self, id: &str, scope: &AccessScope) -> Result<Option<ObjectRecord>> {
        let mut b = QueryBuilder::new(SELECT);
        b.push(" WHERE o.id = ").push_bind(id.to_owned()).push(" AND ");
        scope.push_condition(&mut b, "o.department_id", "o.region_code");
        Ok(b.build_query_as().fetch_optional(&self.pool).await?)
    }

    pub async fn object_by_credit_code(&self, code: &CreditCode) -> Result<Option<ObjectRecord>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE o.credit_code = $1")).bind(code).fetch_optional(&self.pool).await?)
    }

    /// A page of the objects `scope` may see that match `f`, by id, with the total count of matches.
    pub async fn list_objects(&self, f: &ObjectFilter, scope: &AccessScope) -> Result<(Vec<ObjectRecord>, i64)> {
        let mut b = QueryBuilder::new(SELECT);
        push_filters(&mut b, f, scope);
        b.push(" ORDER BY o.id LIMIT ").push_bind(f.limit.clamp(1, 1000)).push(" OFFSET ").push_bind(f.offset.max(0));
        let items = b.build_query_as().fetch_all(&self.pool).await?;
        let mut c = QueryBuilder::new("SELECT count(*) FROM objects o");
        push_filters(&mut c, f, scope);
        let total: i64 = c.build_query_scalar().fetch_one(&self.pool).await?;
        Ok((items, total))
    }

    /// Deletes an object; refused while devices are attached to it (detach them with
    /// [`Store::set_device_object`] first).
    pub async fn delete_object(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let devices: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE object_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if devices > 0 {
            return Err(FieldError::new(
                "id",
                format!("object {id} still has {devices} device(s); detach them first"),
                format!("监管对象 {id} 仍关联 {devices} 台设备，请先解除关联"),
            )
            .into());
        }
        // Cases and credit records keep their object: deleting it is refused as "in use".
        let r = sqlx::query("DELETE FROM objects WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| super::delete_error(e, "the object", "监管对象"))?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Attaches a device to an object (or detaches it with `None`); false if there is no such device.
    /// The object need not be registered yet (see [`Store::objects_without_record`]).
    pub async fn set_device_object(&self, device: &DeviceId, object_id: Option<&str>) -> Result<bool> {
        if let Some(o) = object_id {
            code("object_id", o, 64, false)?;
        }
        let r = sqlx::query("UPDATE devices SET object_id = $2 WHERE id = $1")
            .bind(device.as_str())
            .bind(object_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The ids of an object's devices.
    pub async fn object_device_ids(&self, object_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM devices WHERE object_id = $1 ORDER BY id")
            .bind(object_id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Object ids that devices refer to but that are not in the register, with those devices.
    pub async fn objects_without_record(&self) -> Result<Vec<OrphanObject>> {
        Ok(sqlx::query_as(
            "SELECT d.object_id, array_agg(d.id ORDER BY d.id) AS device_ids FROM devices d \
             WHERE d.object_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.id = d.object_id) \
             GROUP BY d.object_id ORDER BY d.object_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The keys of the devices `scope` may see: those whose object it may see (with `all`, every
    /// device, attached or not).
    pub async fn device_keys_visible(&self, scope: &AccessScope) -> Result<Vec<i32>> {
        if scope.all {
            return Ok(sqlx::query_scalar("SELECT key FROM devices ORDER BY key").fetch_all(&self.pool).await?);
        }
        let mut b = QueryBuilder::new("SELECT d.key FROM devices d JOIN objects o ON o.id = d.object_id WHERE ");
        scope.push_condition(&mut b, "o.department_id", "o.region_code");
        b.push(" ORDER BY d.key");
        Ok(b.build_query_scalar().fetch_all(&self.pool).await?)
    }

    /// Sets a device's location, position, installation time, model and expected metrics (every
    /// field, unset ones cleared); false if there is no such device.
    pub async fn set_device_metadata(&self, device: &DeviceId, m: &DeviceMetadata) -> Result<bool> {
        let location = text("location", m.location.as_deref(), false, 500)?;
        let model = text("model", m.model.as_deref(), false, 200)?;
        point(m.lon, m.lat)?;
        if let Some(keys) = &m.metric_list {
            for k in keys {
                code("metric_list", k, 64, true)?;
            }
        }
        let r = sqlx::query(
            "UPDATE devices SET location = $2, lon = $3, lat = $4, installed_at = $5, model = $6, metric_list = $7 \
             WHERE id = $1",
        )
        .bind(device.as_str())
        .bind(location)
        .bind(m.lon)
        .bind(m.lat)
        .bind(m.installed_at)
        .bind(model)
        .bind(&m.metric_list)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Every device's metadata by device id, in one query (for exports).
    pub async fn all_device_metadata(&self) -> Result<std::collections::HashMap<String, DeviceMetadata>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: String,
            #[sqlx(flatten)]
            m: DeviceMetadata,
        }
        let rows: Vec<Row> =
            sqlx::query_as("SELECT id, location, lon, lat, installed_at, model, metric_list FROM devices").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| (r.id, r.m)).collect())
    }

    pub async fn device_metadata(&self, device: &DeviceId) -> Result<Option<DeviceMetadata>> {
        Ok(sqlx::query_as("SELECT location, lon, lat, installed_at, model, metric_list FROM devices WHERE id = $1")
            .bind(device.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Imports objects from CSV (UTF-8, header row; columns by English key or Chinese header, in any
    /// order: `id`, `name`, `credit_code`, `type`, `address`, `lon`, `lat`, `region_code`,
    /// `department_code`). Only `id` and `name` are required; a column left out of the file keeps
    /// the stored value, an empty cell clears it. Every row is checked; valid rows are inserted or
    /// updated in one transaction, invalid ones are reported (row number, field, message) and skipped.
    pub async fn import_objects_csv<R: std::io::Read>(&self, reader: R, opts: &ImportOptions) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let Some((cols, records)) = read_csv(reader, OBJECT_COLUMNS, &["id", "name"], &mut report.errors)? else {
            return Ok(report);
        };
        let has_point = cols.has("lon") && cols.has("lat");
        if cols.has("lon") != cols.has("lat") {
            report.errors.push(RowError::new(
                1,
                FieldError::new(
                    if cols.has("lon") { "lat" } else { "lon" },
                    "lon and lat go together: both columns ignored",
                    "经度和纬度列须同时提供，已忽略这两列",
                ),
            ));
        }
        let present = Present {
            credit_code: cols.has("credit_code"),
            object_type: cols.has("type"),
            address: cols.has("address"),
            point: has_point,
            region: cols.has("region_code"),
            department: cols.has("department_code"),
        };

        // Check each row on its own.
        let mut rows: Vec<(usize, NewObject, Option<String>)> = Vec::new();
        let mut seen_ids: HashMap<String, usize> = HashMap::new();
        let mut seen_codes: HashMap<CreditCode, usize> = HashMap::new();
        for (row, rec) in &records {
            let mut errs = Vec::new();
            let credit_code = match cols.get(rec, "credit_code") {
                None => None,
                Some(s) => CreditCode::parse(s)
                    .map_err(|e| errs.push(FieldError::new("credit_code", e.message_en(), e.message_zh())))
                    .ok(),
            };
            let (lon, lat) = if has_point {
                let lon = number("lon", cols.get(rec, "lon")).map_err(|e| errs.push(e)).ok().flatten();
                let lat = number("lat", cols.get(rec, "lat")).map_err(|e| errs.push(e)).ok().flatten();
                (lon, lat)
            } else {
                (None, None)
            };
            let raw = NewObject {
                id: cols.get(rec, "id").unwrap_or_default().to_owned(),
                name: cols.get(rec, "name").unwrap_or_default().to_owned(),
                credit_code: credit_code.clone(),
                object_type: cols.get(rec, "type").map(Into::into),
                address: cols.get(rec, "address").map(Into::into),
                lon,
                lat,
                region_code: cols.get(rec, "region_code").map(Into::into),
                department_id: None,
            };
            let department_code = cols.get(rec, "department_code").map(str::to_owned);
            let o = match raw.normalized() {
                Ok(o) => Some(o),
                // A field that did not even parse (a number, the credit code) is reported once.
                Err(e) => {
                    for e in e {
                        if !errs_has_field(&errs, &e.field) {
                            errs.push(e);
                        }
                    }
                    None
                }
            };
            if !raw.id.trim().is_empty() {
                if let Some(first) = seen_ids.get(raw.id.trim()) {
                    errs.push(FieldError::new(
                        "id",
                        format!("id {} already appears at row {first}", raw.id.trim()),
                        format!("对象编码 {} 与第 {first} 行重复", raw.id.trim()),
                    ));
                } else {
                    seen_ids.insert(raw.id.trim().to_owned(), *row);
                }
            }
            if let Some(c) = &credit_code {
                if let Some(first) = seen_codes.get(c) {
                    errs.push(FieldError::new(
                        "credit_code",
                        format!("credit code {c} already appears at row {first}"),
                        format!("统一社会信用代码 {c} 与第 {first} 行重复"),
                    ));
                } else {
                    seen_codes.insert(c.clone(), *row);
                }
            }
            match (o, errs.is_empty()) {
                (Some(o), true) => rows.push((*row, o, department_code)),
                _ => {
                    report.errors.extend(errs.into_iter().map(|e| RowError::new(*row, e)));
                }
            }
        }

        // Check references: regions and departments exist.
        let region_codes: Vec<String> = rows.iter().filter_map(|(_, o, _)| o.region_code.clone()).collect();
        let known_regions: HashSet<String> = sqlx::query_scalar("SELECT code FROM regions WHERE code = ANY($1)")
            .bind(&region_codes)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .collect();
        let department_codes: Vec<String> = rows.iter().filter_map(|(_, _, d)| d.clone()).collect();
        let departments: HashMap<String, i64> =
            sqlx::query_as::<_, (String, i64)>("SELECT code, id FROM departments WHERE code = ANY($1)")
                .bind(&department_codes)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
        let mut valid: Vec<(usize, NewObject)> = Vec::new();
        for (row, mut o, department_code) in rows {
            let mut errs = Vec::new();
            if let Some(r) = &o.region_code {
                if !known_regions.contains(r) {
                    errs.push(FieldError::new(
                        "region_code",
                        format!("unknown region {r}"),
                        format!("行政区划 {r} 不存在"),
                    ));
                }
            }
            if let Some(d) = &department_code {
                match departments.get(d) {
                    Some(&id) => o.department_id = Some(id),
                    None => errs.push(FieldError::new(
                        "department_code",
                        format!("unknown department {d}"),
                        format!("部门 {d} 不存在"),
                    )),
                }
            }
            if errs.is_empty() {
                valid.push((row, o));
            } else {
                report.errors.extend(errs.into_iter().map(|e| RowError::new(row, e)));
            }
        }

        // Credit codes held by objects that keep them.
        if present.credit_code {
            let codes: Vec<String> =
                valid.iter().filter_map(|(_, o)| o.credit_code.as_ref().map(|c| c.as_str().to_owned())).collect();
            let holders: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
                "SELECT credit_code, id FROM objects WHERE credit_code = ANY($1)",
            )
            .bind(&codes)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .collect();
            loop {
                let finals: HashMap<&str, Option<&CreditCode>> =
                    valid.iter().map(|(_, o)| (o.id.as_str(), o.credit_code.as_ref())).collect();
                let conflicting: Vec<usize> = valid
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, o))| {
                        let Some(c) = &o.credit_code else { return false };
                        let Some(holder) = holders.get(c.as_str()) else { return false };
                        holder != &o.id && finals.get(holder.as_str()).is_none_or(|f| *f == Some(c))
                    })
                    .map(|(i, _)| i)
                    .collect();
                if conflicting.is_empty() {
                    break;
                }
                for i in conflicting.into_iter().rev() {
                    let (row, o) = valid.remove(i);
                    let c = o.credit_code.expect("conflicting rows have a code");
                    let holder = &holders[c.as_str()];
                    report.errors.push(RowError::new(
                        row,
                        FieldError::new(
                            "credit_code",
                            format!("credit code {c} belongs to object {holder}"),
                            format!("统一社会信用代码 {c} 已属于监管对象 {holder}"),
                        ),
                    ));
                }
            }
        }
        report.finish_errors();

        // Store the valid rows in one transaction.
        let mut tx = self.pool.begin().await?;
        if present.credit_code {
            let ids: Vec<&str> = valid.iter().map(|(_, o)| o.id.as_str()).collect();
            let codes: Vec<Option<&str>> =
                valid.iter().map(|(_, o)| o.credit_code.as_ref().map(|c| c.as_str())).collect();
            // Free the codes that move, so that two objects can swap theirs.
            sqlx::query(
                "UPDATE objects o SET credit_code = NULL FROM unnest($1::text[], $2::text[]) AS n(id, cc) \
                 WHERE o.id = n.id AND o.credit_code IS NOT NULL AND o.credit_code IS DISTINCT FROM n.cc",
            )
            .bind(&ids)
            .bind(&codes)
            .execute(&mut *tx)
            .await?;
        }
        for (_, o) in &valid {
            let inserted: Option<bool> = sqlx::query_scalar(UPSERT)
                .bind(&o.id)
                .bind(&o.name)
                .bind(&o.credit_code)
                .bind(&o.object_type)
                .bind(&o.address)
                .bind(o.lon)
                .bind(o.lat)
                .bind(&o.region_code)
                .bind(o.department_id)
                .bind(present.credit_code)
                .bind(present.object_type)
                .bind(present.address)
                .bind(present.point)
                .bind(present.region)
                .bind(present.department)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
            match inserted {
                Some(true) => report.inserted += 1,
                Some(false) => report.updated += 1,
                None => report.unchanged += 1,
            }
        }
        if opts.dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(report)
    }

    /// Writes the objects `scope` may see as CSV, by id, in the columns
    /// [`Store::import_objects_csv`] reads. The file starts with a UTF-8 byte order mark, so that
    /// spreadsheet programs read the Chinese text right; the import skips it.
    pub async fn export_objects_csv<W: std::io::Write>(&self, writer: W, scope: &AccessScope) -> Result<usize> {
        let mut b = QueryBuilder::new(
            "SELECT o.id, o.name, o.credit_code, o.type, o.address, o.lon, o.lat, o.region_code, d.code \
             FROM objects o LEFT JOIN departments d ON d.id = o.department_id WHERE ",
        );
        scope.push_condition(&mut b, "o.department_id", "o.region_code");
        b.push(" ORDER BY o.id");
        type Row = (
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<f64>,
            Option<f64>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = b.build_query_as().fetch_all(&self.pool).await?;
        let mut writer = writer;
        writer.write_all("\u{feff}".as_bytes())?;
        let mut w = csv::Writer::from_writer(writer);
        w.write_record(OBJECT_COLUMNS.iter().map(|c| c.0))?;
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        for r in &rows {
            w.write_record([
                r.0.clone(),
                r.1.clone(),
                opt(&r.2),
                opt(&r.3),
                opt(&r.4),
                num(r.5),
                num(r.6),
                opt(&r.7),
                opt(&r.8),
            ])?;
        }
        w.flush()?;
        Ok(rows.len())
    }
}

fn errs_has_field(errs: &[FieldError], field: &str) -> bool {
    errs.iter().any(|e| e.field == field)
}

/// Which optional columns an import file has (an absent column keeps the stored value).
struct Present {
    credit_code: bool,
    object_type: bool,
    address: bool,
    point: bool,
    region: bool,
    department: bool,
}

/// The object CSV columns (in export order) and the Chinese headers accepted for them.
const OBJECT_COLUMNS: &[(&str, &[&str])] = &[
    ("id", &["对象编码", "编码", "对象ID", "object_id"]),
    ("name", &["名称", "对象名称", "监管对象名称"]),
    ("credit_code", &["统一社会信用代码", "信用代码"]),
    ("type", &["类型", "对象类型"]),
    ("address", &["地址"]),
    ("lon", &["经度", "longitude"]),
    ("lat", &["纬度", "latitude"]),
    ("region_code", &["行政区划代码", "区划代码"]),
    ("department_code", &["部门编码", "责任部门编码"]),
];

// $1..$9 the values; $10..$15 whether the file has the credit code, type, address, point, region
// and department columns. Returns whether the row was inserted; no row when nothing changed.
const UPSERT: &str =
    "INSERT INTO objects AS o (id, name, credit_code, type, address, lon, lat, region_code, department_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
       credit_code = CASE WHEN $10 THEN excluded.credit_code ELSE o.credit_code END, \
       type = CASE WHEN $11 THEN excluded.type ELSE o.type END, \
       address = CASE WHEN $12 THEN excluded.address ELSE o.address END, \
       lon = CASE WHEN $13 THEN excluded.lon ELSE o.lon END, \
       lat = CASE WHEN $13 THEN excluded.lat ELSE o.lat END, \
       region_code = CASE WHEN $14 THEN excluded.region_code ELSE o.region_code END, \
       department_id = CASE WHEN $15 THEN excluded.department_id ELSE o.department_id END, \
       updated_at = now() \
     WHERE (o.name, o.credit_code, o.type, o.address, o.lon, o.lat, o.region_code, o.department_id) IS DISTINCT FROM \
       (excluded.name, CASE WHEN $10 THEN excluded.credit_code ELSE o.credit_code END, \
        CASE WHEN $11 THEN excluded.type ELSE o.type END, CASE WHEN $12 THEN excluded.address ELSE o.address END, \
        CASE WHEN $13 THEN excluded.lon ELSE o.lon END, CASE WHEN $13 THEN excluded.lat ELSE o.lat END, \
        CASE WHEN $14 THEN excluded.region_code ELSE o.region_code END, \
        CASE WHEN $15 THEN excluded.department_id ELSE o.department_id END) \
     RETURNING (xmax = 0)";
