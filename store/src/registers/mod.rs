//! The registers (基础信息): administrative regions, departments and the regions they cover, regulated
//! objects (监管对象) with their devices, the regulatory item catalog (监管事项目录清单) and the unified
//! social credit code.
//!
//! Validation failures are [`FieldError`]s (English and Chinese message, the field at fault) inside
//! the `anyhow::Error`, so a caller can `downcast_ref::<FieldError>()` to answer 400 rather than 500.
//! Lists of objects take an [`AccessScope`], so a department's users see only their objects.

pub mod catalog;
pub mod credit_code;
pub mod departments;
pub mod objects;
pub mod regions;
mod seed;

use std::fmt;

use sqlx::{Postgres, QueryBuilder};

pub use catalog::{CatalogFields, CatalogItem, CatalogStatus};
pub use credit_code::{CreditCode, CreditCodeError};
pub use departments::{Department, NewDepartment};
pub use objects::{DeviceMetadata, NewObject, ObjectFilter, ObjectRecord, OrphanObject};
pub use regions::{Region, RegionLevel, RegionNode};
pub use seed::{demo_credit_code, SeedReport};

/// Which regulated objects (and so which devices, warnings and series) a user may see.
///
/// An object is visible when `all` is set, or its responsible department is one of
/// `department_ids`, or its region is one of `region_codes` or lies under one of them (a city covers
/// its counties). The default sees nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessScope {
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub department_ids: Vec<i64>,
    #[serde(default)]
    pub region_codes: Vec<String>,
}

impl AccessScope {
    /// Everything (administrators, the monitoring center).
    pub fn all() -> Self {
        Self { all: true, ..Default::default() }
    }

    /// Nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// The objects these departments are responsible for.
    pub fn departments(ids: impl IntoIterator<Item = i64>) -> Self {
        Self { all: false, department_ids: ids.into_iter().collect(), region_codes: vec![] }
    }

    /// The objects in these regions and their sub-regions.
    pub fn regions<S: Into<String>>(codes: impl IntoIterator<Item = S>) -> Self {
        Self { all: false, department_ids: vec![], region_codes: codes.into_iter().map(Into::into).collect() }
    }

    /// Pushes a SQL condition on an object's department and region columns (e.g. `o.department_id`,
    /// `o.region_code`).
    pub(crate) fn push_condition(&self, b: &mut QueryBuilder<'_, Postgres>, department_col: &str, region_col: &str) {
        if self.all {
            b.push(" TRUE ");
            return;
        }
        b.push(format!(" ({department_col} = ANY("))
            .push_bind(self.department_ids.clone())
            .push(format!(") OR {region_col} IN (WITH RECURSIVE sub AS (SELECT code FROM regions WHERE code = ANY("))
            .push_bind(self.region_codes.clone())
            .push(") UNION SELECT r.code FROM regions r JOIN sub ON r.parent_code = sub.code) SELECT code FROM sub)) ");
    }
}

/// A value refused, with the field at fault and what is wrong, in English and Chinese.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message_en: String,
    pub message_zh: String,
}

impl FieldError {
    pub fn new(field: &str, message_en: impl Into<String>, message_zh: impl Into<String>) -> Self {
        Self { field: field.to_owned(), message_en: message_en.into(), message_zh: message_zh.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message_en)
    }
}

impl std::error::Error for FieldError {}

/// How an import runs.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Validate and count, store nothing.
    pub dry_run: bool,
    /// Catalog only: publish the imported versions at once instead of leaving them as drafts.
    pub publish: bool,
    /// Who imports (recorded as the catalog versions' author).
    pub actor: Option<String>,
}

/// What an import did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Rows that created a new object (catalog: a new code).
    pub inserted: usize,
    /// Rows that changed an existing one (catalog: a new or edited draft, or a publication).
    pub updated: usize,
    /// Valid rows identical to what is stored.
    pub unchanged: usize,
    /// Data rows refused (each has at least one entry in `errors`).
    pub skipped: usize,
    pub errors: Vec<RowError>,
}

/// One problem with one row of an imported file. Rows count from 1, the header being row 1.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    pub row: usize,
    pub field: String,
    pub message_en: String,
    pub message_zh: String,
}

impl RowError {
    pub(crate) fn new(row: usize, e: FieldError) -> Self {
        Self { row, field: e.field, message_en: e.message_en, message_zh: e.message_zh }
    }
}

impl ImportReport {
    /// Sorts the errors by row and counts the data rows that have one.
    pub(crate) fn finish_errors(&mut self) {
        self.errors.sort_by_key(|e| e.row);
        let mut rows: Vec<usize> = self.errors.iter().map(|e| e.row).filter(|&r| r > 1).collect();
        rows.dedup();
        self.skipped = rows.len();
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}, {}: {}", self.row, self.field, self.message_en)
    }
}

/// The columns of a CSV file, matched by name (English key or a Chinese header) in any order.
pub(crate) struct CsvColumns {
    /// Field name -> column index.
    index: Vec<(&'static str, usize)>,
}

impl CsvColumns {
    /// Matches `headers` against `known` (field, aliases); unknown and repeated columns and missing
    /// required ones are reported against row 1. `None` when a required column is missing.
    pub(crate) fn match_headers(
        headers: &csv::StringRecord,
        known: &[(&'static str, &[&str])],
        required: &[&str],
        errors: &mut Vec<RowError>,
    ) -> Option<Self> {
        let mut index = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            let h = h.trim_start_matches('\u{feff}').trim();
            let found = known.iter().find(|(f, aliases)| f.eq_ignore_ascii_case(h) || aliases.contains(&h));
            match found {
                Some((f, _)) if index.iter().any(|(g, _)| g == f) => errors.push(RowError::new(
                    1,
                    FieldError::new(f, format!("column '{h}' repeats column {f}"), format!("列“{h}”与列 {f} 重复")),
                )),
                Some((f, _)) => index.push((*f, i)),
                None if h.is_empty() => {}
                None => errors.push(RowError::new(
                    1,
                    FieldError::new(h, format!("unknown column '{h}', ignored"), format!("未知列“{h}”，已忽略")),
                )),
            }
        }
        let mut ok = true;
        for r in required {
            if !index.iter().any(|(f, _)| f == r) {
                errors.push(RowError::new(
                    1,
                    FieldError::new(r, format!("required column {r} is missing"), format!("缺少必需的列 {r}")),
                ));
                ok = false;
            }
        }
        ok.then_some(Self { index })
    }

    pub(crate) fn has(&self, field: &str) -> bool {
        self.index.iter().any(|(f, _)| *f == field)
    }

    /// The trimmed cell of `field`; `None` when the column is absent or the cell empty.
    pub(crate) fn get<'r>(&self, rec: &'r csv::StringRecord, field: &str) -> Option<&'r str> {
        let i = self.index.iter().find(|(f, _)| *f == field)?.1;
        rec.get(i).map(str::trim).filter(|s| !s.is_empty())
    }
}

/// Data rows with their row numbers (the header is row 1).
pub(crate) type CsvRows = Vec<(usize, csv::StringRecord)>;

/// Reads every record of a CSV file; a record that cannot be read is reported against its row.
pub(crate) fn read_csv<R: std::io::Read>(
    reader: R,
    known: &[(&'static str, &[&str])],
    required: &[&str],
    errors: &mut Vec<RowError>,
) -> anyhow::Result<Option<(CsvColumns, CsvRows)>> {
    let mut r = csv::ReaderBuilder::new().flexible(true).has_headers(true).from_reader(reader);
    let headers = match r.headers() {
        Ok(h) => h.clone(),
        Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => return Err(e.into()),
        Err(e) => {
            errors.push(RowError::new(1, FieldError::new("", e.to_string(), format!("无法读取表头：{e}"))));
            return Ok(None);
        }
    };
    let Some(cols) = CsvColumns::match_headers(&headers, known, required, errors) else {
        return Ok(None);
    };
    let mut rows = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let row = i + 2;
        match rec {
            Ok(rec) if rec.iter().all(|c| c.trim().is_empty()) => {}
            Ok(rec) => rows.push((row, rec)),
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => return Err(e.into()),
            Err(e) => errors.push(RowError::new(
                row,
                FieldError::new("", format!("unreadable row: {e}"), format!("无法读取此行：{e}")),
            )),
        }
    }
    Ok(Some((cols, rows)))
}

/// Turns a constraint violation of an insert or update into a [`FieldError`]; other errors pass through.
pub(crate) fn db_error(e: sqlx::Error) -> anyhow::Error {
    let Some(db) = e.as_database_error() else {
        return e.into();
    };
    let field_error = match db.constraint() {
        Some("objects_pkey") => FieldError::new("id", "an object with this id already exists", "该对象编码已存在"),
        Some("objects_credit_code_key") => FieldError::new(
            "credit_code",
            "another object already has this unified social credit code",
            "该统一社会信用代码已被其他监管对象使用",
        ),
        Some("objects_region_fk") => FieldError::new("region_code", "unknown region", "行政区划不存在"),
        Some("objects_department_fk") => FieldError::new("department_id", "unknown department", "部门不存在"),
        Some("departments_code_key") => {
            FieldError::new("code", "a department with this code already exists", "该部门编码已存在")
        }
        Some("departments_parent_fk") => FieldError::new("parent_id", "unknown parent department", "上级部门不存在"),
        Some("regions_parent_fk") => FieldError::new("parent_code", "unknown parent region", "上级行政区划不存在"),
        Some("department_regions_region_fk") => FieldError::new("region_codes", "unknown region", "行政区划不存在"),
        _ => return e.into(),
    };
    field_error.into()
}

/// Turns a foreign key violation of a delete into "still in use"; other errors pass through.
pub(crate) fn delete_error(e: sqlx::Error, what_en: &str, what_zh: &str) -> anyhow::Error {
    if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("23503") {
        return FieldError::new("id", format!("{what_en} is still in use"), format!("{what_zh}仍在使用中，不能删除"))
            .into();
    }
    e.into()
}

/// Checks a text field's length in characters (after trimming); `None` for an empty optional value.
pub(crate) fn text(field: &str, v: Option<&str>, required: bool, max: usize) -> Result<Option<String>, FieldError> {
    let v = v.map(str::trim).filter(|s| !s.is_empty());
    match v {
        None if required => Err(FieldError::new(field, format!("{field} is required"), format!("{field} 为必填项"))),
        None => Ok(None),
        Some(s) if s.chars().count() > max => Err(FieldError::new(
            field,
            format!("{field} is longer than {max} characters"),
            format!("{field} 超过 {max} 个字符"),
        )),
        Some(s) => Ok(Some(s.to_owned())),
    }
}

/// Checks a code-like value against `[A-Za-z0-9_.-]{1,max}` (objects: no dot).
pub(crate) fn code(field: &str, v: &str, max: usize, dot: bool) -> Result<(), FieldError> {
    let ok = !v.is_empty()
        && v.len() <= max
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dot && c == '.'));
    if ok {
        return Ok(());
    }
    let allowed = if dot { "letters, digits, '_', '-', '.'" } else { "letters, digits, '_', '-'" };
    let allowed_zh =
        if dot { "字母、数字、“_”、“-”、“.”" } else { "字母、数字、“_”、“-”" };
    Err(FieldError::new(
        field,
        format!("{field} must be 1 to {max} characters of {allowed}, got '{v}'"),
        format!("{field} 应为 1 到 {max} 个{allowed_zh}，实际为“{v}”"),
    ))
}

/// Checks a point: both or neither coordinate, each finite and in range.
pub(crate) fn point(lon: Option<f64>, lat: Option<f64>) -> Result<(), FieldError> {
    if let Some(x) = lon {
        if !(x.is_finite() && (-180.0..=180.0).contains(&x)) {
            return Err(FieldError::new(
                "lon",
                format!("longitude must be between -180 and 180, got {x}"),
                format!("经度应在 -180 到 180 之间，实际为 {x}"),
            ));
        }
    }
    if let Some(y) = lat {
        if !(y.is_finite() && (-90.0..=90.0).contains(&y)) {
            return Err(FieldError::new(
                "lat",
                format!("latitude must be between -90 and 90, got {y}"),
                format!("纬度应在 -90 到 90 之间，实际为 {y}"),
            ));
        }
    }
    match (lon, lat) {
        (Some(_), None) => Err(FieldError::new("lat", "a longitude needs a latitude", "填写经度时须同时填写纬度")),
        (None, Some(_)) => Err(FieldError::new("lon", "a latitude needs a longitude", "填写纬度时须同时填写经度")),
        _ => Ok(()),
    }
}

/// Parses an optional number cell.
pub(crate) fn number(field: &str, v: Option<&str>) -> Result<Option<f64>, FieldError> {
    match v {
        None => Ok(None),
        Some(s) => match s.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(FieldError::new(
                field,
                format!("{field} is not a number: '{s}'"),
                format!("{field} 不是数字：“{s}”"),
            )),
        },
    }
}
