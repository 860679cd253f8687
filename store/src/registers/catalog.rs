//! The regulatory item catalog (监管事项目录清单): items by unified code, each edit a new version.
//!
//! A code has at most one draft, always newer than its published versions; publishing the draft
//! makes it the code's current item. Published versions never change (a trigger refuses it), so
//! the history of a code is the list of its versions.

use std::collections::HashMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use super::{code, read_csv, text, FieldError, ImportOptions, ImportReport, RowError};
use crate::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum CatalogStatus {
    Draft,
    Published,
}

/// The ten fields of a catalog item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct CatalogFields {
    /// Implementing department (实施部门).
    pub department: String,
    /// Main item (主项).
    pub main_item: String,
    /// Sub item (子项).
    #[serde(default)]
    pub sub_item: Option<String>,
    /// Supervision method (监管方式), e.g. 日常检查, 非现场监管.
    pub method: String,
    /// Measures (监管措施).
    #[serde(default)]
    pub measures: Option<String>,
    /// Type of regulated object (监管对象类型).
    #[serde(default)]
    pub object_type: Option<String>,
    /// Legal basis (设定依据).
    #[serde(default)]
    pub legal_basis: Option<String>,
    /// Process (监管流程).
    #[serde(default)]
    pub process: Option<String>,
    /// Result handling (监管结果).
    #[serde(default)]
    pub result: Option<String>,
    /// Level (事项层级), e.g. 省级, 市级, 县级.
    #[serde(default)]
    pub level: Option<String>,
}

/// One version of a catalog item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CatalogItem {
    /// Unified item code, `[A-Za-z0-9_.-]{1,64}`.
    pub code: String,
    pub version: i32,
    pub status: CatalogStatus,
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub fields: CatalogFields,
    /// When and by whom this version's content was last written.
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub published_by: Option<String>,
}

const OPTIONAL: [&str; 7] = ["sub_item", "measures", "object_type", "legal_basis", "process", "result", "level"];

impl CatalogFields {
    /// Trims text, turns empty optional text into `None` and checks lengths; every problem is reported.
    pub fn normalized(&self) -> Result<CatalogFields, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut req = |f: &str, v: &str, max: usize| {
            text(f, Some(v), true, max).map_err(|e| errors.push(e)).ok().flatten().unwrap_or_default()
        };
        let department = req("department", &self.department, 200);
        let main_item = req("main_item", &self.main_item, 500);
        let method = req("method", &self.method, 200);
        let mut opt = |f: &str, v: &Option<String>| {
            text(f, v.as_deref(), false, 10_000).map_err(|e| errors.push(e)).ok().flatten()
        };
        let out = CatalogFields {
            department,
            main_item,
            sub_item: opt("sub_item", &self.sub_item),
            method,
            measures: opt("measures", &self.measures),
            object_type: opt("object_type", &self.object_type),
            legal_basis: opt("legal_basis", &self.legal_basis),
            process: opt("process", &self.process),
            result: opt("result", &self.result),
            level: opt("level", &self.level),
        };
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    fn optional_mut(&mut self, field: &str) -> &mut Option<String> {
        match field {
            "sub_item" => &mut self.sub_item,
            "measures" => &mut self.measures,
            "object_type" => &mut self.object_type,
            "legal_basis" => &mut self.legal_basis,
            "process" => &mut self.process,
            "result" => &mut self.result,
            "level" => &mut self.level,
            _ => unreachable!("not an optional catalog field: {field}"),
        }
    }
}

/// What saving a version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Saved {
    /// The code's first version.
    Inserted,
    /// A new version, an edited draft or a publication.
    Updated,
    Unchanged,
}

const SELECT: &str = "SELECT code, version, status, department, main_item, sub_item, method, measures, object_type, \
     legal_basis, process, result, level, created_at, created_by, published_at, published_by FROM catalog_items";

/// Saves `f` as the draft of `code` (a new version after the published ones, or the existing draft
/// edited), publishing it with `publish`. Fields named in `keep` take the latest version's value.
/// Content identical to the latest version makes no new version.
async fn save_on(
    conn: &mut PgConnection,
    code: &str,
    f: &CatalogFields,
    keep: &[&str],
    by: Option<&str>,
    publish: bool,
) -> Result<(Saved, CatalogItem)> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('offsite.catalog'), hashtext($1))")
        .bind(code)
        .execute(&mut *conn)
        .await?;
    let latest: Option<CatalogItem> =
        sqlx::query_as(&format!("{SELECT} WHERE code = $1 ORDER BY version DESC LIMIT 1"))
            .bind(code)
            .fetch_optional(&mut *conn)
            .await?;
    let mut f = f.clone();
    if let Some(l) = &latest {
        let mut old = l.fields.clone();
        for k in keep {
            *f.optional_mut(k) = old.optional_mut(k).take();
        }
    }
    let status = if publish { CatalogStatus::Published } else { CatalogStatus::Draft };
    let (saved, version) = match &latest {
        None => (Saved::Inserted, 1),
        Some(l) if l.fields == f => {
            if l.status == CatalogStatus::Draft && publish {
                return Ok((Saved::Updated, publish_on(conn, code, by).await?.expect("the draft is locked")));
            }
            return Ok((Saved::Unchanged, l.clone()));
        }
        Some(l) if l.status == CatalogStatus::Draft => {
            sqlx::query(
                "UPDATE catalog_items SET department = $3, main_item = $4, sub_item = $5, method = $6, measures = $7, \
                 object_type = $8, legal_basis = $9, process = $10, result = $11, level = $12, created_at = now(), \
                 created_by = $13 WHERE code = $1 AND version = $2",
            )
            .bind(code)
            .bind(l.version)
            .bind(&f.department)
            .bind(&f.main_item)
            .bind(&f.sub_item)
            .bind(&f.method)
            .bind(&f.measures)
            .bind(&f.object_type)
            .bind(&f.legal_basis)
            .bind(&f.process)
            .bind(&f.result)
            .bind(&f.level)
            .bind(by)
            .execute(&mut *conn)
            .await?;
            if publish {
                return Ok((Saved::Updated, publish_on(conn, code, by).await?.expect("the draft is locked")));
            }
            let item = fetch_on(conn, code, l.version).await?.expect("locked");
            return Ok((Saved::Updated, item));
        }
        Some(l) => (Saved::Updated, l.version + 1),
    };
    let item = sqlx::query_as(&format!(
        "INSERT INTO catalog_items (code, version, status, department, main_item, sub_item, method, measures, \
         object_type, legal_basis, process, result, level, created_by, published_at, published_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
         CASE WHEN $3 = 'published' THEN now() END, CASE WHEN $3 = 'published' THEN $14 END) \
         RETURNING {}",
        SELECT.trim_start_matches("SELECT ").trim_end_matches(" FROM catalog_items")
    ))
    .bind(code)
    .bind(version)
    .bind(status)
    .bind(&f.department)
    .bind(&f.main_item)
    .bind(&f.sub_item)
    .bind(&f.method)
    .bind(&f.measures)
    .bind(&f.object_type)
    .bind(&f.legal_basis)
    .bind(&f.process)
    .bind(&f.result)
    .bind(&f.level)
    .bind(by)
    .fetch_one(&mut *conn)
    .await?;
    Ok((saved, item))
}

async fn publish_on(conn: &mut PgConnection, code: &str, by: Option<&str>) -> Result<Option<CatalogItem>> {
    let version: Option<i32> = sqlx::query_scalar(
        "UPDATE catalog_items SET status = 'published', published_at = now(), published_by = $2 \
         WHERE code = $1 AND status = 'draft' RETURNING version",
    )
    .bind(code)
    .bind(by)
    .fetch_optional(&mut *conn)
    .await?;
    match version {
        Some(v) => fetch_on(conn, code, v).await,
        None => Ok(None),
    }
}

async fn fetch_on(conn: &mut PgConnection, code: &str, version: i32) -> Result<Option<CatalogItem>> {
    Ok(sqlx::query_as(&format!("{SELECT} WHERE code = $1 AND version = $2"))
        .bind(code)
        .bind(version)
        .fetch_optional(&mut *conn)
        .await?)
}

fn check_code(c: &str) -> Result<(), FieldError> {
    code("code", c, 64, true)
}

impl Store {
    /// Saves the draft of item `code`: a new version after the published ones, or the existing draft
    /// edited. Content identical to the latest version changes nothing and returns that version.
    pub async fn catalog_save_draft(
        &self,
        code: &str,
        fields: &CatalogFields,
        by: Option<&str>,
    ) -> Result<CatalogItem> {
        let code = code.trim();
        check_code(code)?;
        let f = fields.normalized().map_err(|mut e| e.swap_remove(0))?;
        let mut tx = self.pool.begin().await?;
        let (_, item) = save_on(&mut tx, code, &f, &[], by, false).await?;
        tx.commit().await?;
        Ok(item)
    }

    /// Publishes the draft of `code`, which becomes its current item; `None` if it has no draft.
    pub async fn catalog_publish(&self, code: &str, by: Option<&str>) -> Result<Option<CatalogItem>> {
        let mut tx = self.pool.begin().await?;
        let item = publish_on(&mut tx, code, by).await?;
        tx.commit().await?;
        Ok(item)
    }

    /// Drops the draft of `code`; false if it has none.
    pub async fn catalog_discard_draft(&self, code: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM catalog_items WHERE code = $1 AND status = 'draft'")
            .bind(code)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn catalog_item(&self, code: &str, version: i32) -> Result<Option<CatalogItem>> {
        let mut conn = self.pool.acquire().await?;
        fetch_on(&mut conn, code, version).await
    }

    /// The current item of `code`: its latest published version.
    pub async fn catalog_published(&self, code: &str) -> Result<Option<CatalogItem>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE code = $1 AND status = 'published' ORDER BY version DESC LIMIT 1"))
            .bind(code)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The draft of `code`, if any.
    pub async fn catalog_draft(&self, code: &str) -> Result<Option<CatalogItem>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE code = $1 AND status = 'draft'"))
            .bind(code)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The catalog in force: the latest published version of every code, by code.
    pub async fn catalog_current(&self) -> Result<Vec<CatalogItem>> {
        Ok(sqlx::query_as(&format!(
            "SELECT DISTINCT ON (code) * FROM ({SELECT} WHERE status = 'published') c ORDER BY code, version DESC"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every draft, by code.
    pub async fn catalog_drafts(&self) -> Result<Vec<CatalogItem>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE status = 'draft' ORDER BY code")).fetch_all(&self.pool).await?)
    }

    /// Every version of `code`, newest first (a draft, if any, comes first).
    pub async fn catalog_history(&self, code: &str) -> Result<Vec<CatalogItem>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE code = $1 ORDER BY version DESC"))
            .bind(code)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Imports catalog items from CSV (UTF-8, header row; columns by English key or Chinese header:
    /// `code`, `department`, `main_item`, `sub_item`, `method`, `measures`, `object_type`,
    /// `legal_basis`, `process`, `result`, `level`; `version` and `status` are ignored). Each valid
    /// row becomes the code's draft (published at once with [`ImportOptions::publish`]); a row
    /// identical to the code's latest version changes nothing; an optional column left out of the
    /// file keeps the latest version's value. All valid rows are saved in one transaction.
    pub async fn import_catalog_csv<R: std::io::Read>(&self, reader: R, opts: &ImportOptions) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let required = ["code", "department", "main_item", "method"];
        let Some((cols, records)) = read_csv(reader, CATALOG_COLUMNS, &required, &mut report.errors)? else {
            return Ok(report);
        };
        let keep: Vec<&str> = OPTIONAL.iter().copied().filter(|f| !cols.has(f)).collect();
        let mut valid: Vec<(String, CatalogFields)> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (row, rec) in &records {
            let mut errs = Vec::new();
            let c = cols.get(rec, "code").unwrap_or_default().to_owned();
            if let Err(e) = check_code(&c) {
                errs.push(e);
            } else if let Some(first) = seen.get(&c) {
                errs.push(FieldError::new(
                    "code",
                    format!("code {c} already appears at row {first}"),
                    format!("事项编码 {c} 与第 {first} 行重复"),
                ));
            } else {
                seen.insert(c.clone(), *row);
            }
            let get = |f: &str| cols.get(rec, f).map(str::to_owned);
            let raw = CatalogFields {
                department: get("department").unwrap_or_default(),
                main_item: get("main_item").unwrap_or_default(),
                sub_item: get("sub_item"),
                method: get("method").unwrap_or_default(),
                measures: get("measures"),
                object_type: get("object_type"),
                legal_basis: get("legal_basis"),
                process: get("process"),
                result: get("result"),
                level: get("level"),
            };
            match raw.normalized() {
                Ok(f) if errs.is_empty() => valid.push((c, f)),
                Ok(_) => {}
                Err(e) => errs.extend(e),
            }
            if !errs.is_empty() {
                report.errors.extend(errs.into_iter().map(|e| RowError::new(*row, e)));
            }
        }
        report.finish_errors();
        let mut tx = self.pool.begin().await?;
        for (c, f) in &valid {
            match save_on(&mut tx, c, f, &keep, opts.actor.as_deref(), opts.publish).await?.0 {
                Saved::Inserted => report.inserted += 1,
                Saved::Updated => report.updated += 1,
                Saved::Unchanged => report.unchanged += 1,
            }
        }
        if opts.dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(report)
    }

    /// Writes the catalog in force (the latest published version of every code) as CSV, by code, in
    /// the columns [`Store::import_catalog_csv`] reads, with a UTF-8 byte order mark first.
    pub async fn export_catalog_csv<W: std::io::Write>(&self, writer: W) -> Result<usize> {
        let items = self.catalog_current().await?;
        let mut writer = writer;
        writer.write_all("\u{feff}".as_bytes())?;
        let mut w = csv::Writer::from_writer(writer);
        w.write_record(CATALOG_COLUMNS.iter().map(|c| c.0))?;
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        for i in &items {
            let f = &i.fields;
            w.write_record([
                i.code.clone(),
                f.department.clone(),
                f.main_item.clone(),
                o(&f.sub_item),
                f.method.clone(),
                o(&f.measures),
                o(&f.object_type),
                o(&f.legal_basis),
                o(&f.process),
                o(&f.result),
                o(&f.level),
                i.version.to_string(),
                "published".into(),
            ])?;
        }
        w.flush()?;
        Ok(items.len())
    }
}

/// The catalog CSV columns (in export order) and the Chinese headers accepted for them.
const CATALOG_COLUMNS: &[(&str, &[&str])] = &[
    ("code", &["事项编码", "统一编码", "编码"]),
    ("department", &["部门", "实施部门", "监管部门"]),
    ("main_item", &["主项", "主项名称", "监管事项主项"]),
    ("sub_item", &["子项", "子项名称", "监管事项子项"]),
    ("method", &["监管方式"]),
    ("measures", &["措施", "监管措施"]),
    ("object_type", &["对象类型", "监管对象类型"]),
    ("legal_basis", &["设定依据"]),
    ("process", &["流程", "监管流程"]),
    ("result", &["结果", "监管结果"]),
    ("level", &["层级", "事项层级"]),
    ("version", &["版本"]),
    ("status", &["状态"]),
];
