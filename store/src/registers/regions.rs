//! Administrative regions (行政区划): 6-digit codes in a province -> city -> county tree.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{db_error, delete_error, text, FieldError};
use crate::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum RegionLevel {
    Province,
    City,
    /// County or district (县/区).
    County,
}

impl RegionLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Province => "province",
            Self::City => "city",
            Self::County => "county",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            Self::Province => "省级",
            Self::City => "市级",
            Self::County => "县级",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Region {
    /// The 6-digit administrative division code, e.g. `330106`.
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub parent_code: Option<String>,
    pub level: RegionLevel,
}

/// A region with its sub-regions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionNode {
    #[serde(flatten)]
    pub region: Region,
    pub children: Vec<RegionNode>,
}

pub(crate) fn check_region_code(field: &str, code: &str) -> Result<(), FieldError> {
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("a region code has 6 digits, got '{code}'"),
            format!("行政区划代码应为6位数字，实际为“{code}”"),
        ))
    }
}

const SELECT: &str = "SELECT code, name, parent_code, level FROM regions";

impl Store {
    /// Adds a region or replaces its name, parent and level. A parent must be of a higher level than
    /// its children (province > city > county), and a province has no parent.
    pub async fn upsert_region(&self, r: &Region) -> Result<Region> {
        check_region_code("code", &r.code)?;
        let name = text("name", Some(&r.name), true, 100)?.expect("required");
        if r.level == RegionLevel::Province && r.parent_code.is_some() {
            bail_field("parent_code", "a province has no parent region", "省级行政区划没有上级")?;
        }
        let mut tx = self.pool.begin().await?;
        if let Some(p) = &r.parent_code {
            check_region_code("parent_code", p)?;
            let parent: Option<RegionLevel> = sqlx::query_scalar("SELECT level FROM regions WHERE code = $1")
                .bind(p)
                .fetch_optional(&mut *tx)
                .await?;
            match parent {
                None => bail_field("parent_code", "unknown parent region", "上级行政区划不存在")?,
                Some(pl) if pl >= r.level => bail_field(
                    "level",
                    &format!("a {} region cannot be under a {} region", r.level.as_str(), pl.as_str()),
                    &format!("{}行政区划不能隶属于{}行政区划", r.level.name_zh(), pl.name_zh()),
                )?,
                Some(_) => {}
            }
        }
        let children: Vec<RegionLevel> = sqlx::query_scalar("SELECT level FROM regions WHERE parent_code = $1")
            .bind(&r.code)
            .fetch_all(&mut *tx)
            .await?;
        if children.iter().any(|&c| c <= r.level) {
            bail_field(
                "level",
                &format!("region {} has sub-regions of level {} or higher", r.code, r.level.as_str()),
                &format!("行政区划 {} 下有不低于{}的下级区划", r.code, r.level.name_zh()),
            )?;
        }
        let rec = sqlx::query_as(
            "INSERT INTO regions (code, name, parent_code, level) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (code) DO UPDATE SET name = excluded.name, parent_code = excluded.parent_code, \
             level = excluded.level RETURNING code, name, parent_code, level",
        )
        .bind(&r.code)
        .bind(name)
        .bind(&r.parent_code)
        .bind(r.level)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await?;
        Ok(rec)
    }

    pub async fn region(&self, code: &str) -> Result<Option<Region>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE code = $1")).bind(code).fetch_optional(&self.pool).await?)
    }

    /// Every region, by code.
    pub async fn regions(&self) -> Result<Vec<Region>> {
        Ok(sqlx::query_as(&format!("{SELECT} ORDER BY code")).fetch_all(&self.pool).await?)
    }

    /// The direct sub-regions of `parent`, or the top-level regions with `None`.
    pub async fn region_children(&self, parent: Option<&str>) -> Result<Vec<Region>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE parent_code IS NOT DISTINCT FROM $1 ORDER BY code"))
            .bind(parent)
            .fetch_all(&self.pool)
            .await?)
    }

    /// A region and everything under it, by code (empty if there is no such region).
    pub async fn region_subtree(&self, code: &str) -> Result<Vec<Region>> {
        Ok(sqlx::query_as(
            "WITH RECURSIVE sub AS (SELECT code, name, parent_code, level FROM regions WHERE code = $1 \
             UNION ALL SELECT r.code, r.name, r.parent_code, r.level FROM regions r JOIN sub ON r.parent_code = sub.code) \
             SELECT * FROM sub ORDER BY code",
        )
        .bind(code)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A region and its ancestors, the region first (empty if there is no such region).
    pub async fn region_path(&self, code: &str) -> Result<Vec<Region>> {
        Ok(sqlx::query_as(
            "WITH RECURSIVE up AS (SELECT code, name, parent_code, level, 0 AS depth FROM regions WHERE code = $1 \
             UNION ALL SELECT r.code, r.name, r.parent_code, r.level, up.depth + 1 FROM regions r \
             JOIN up ON r.code = up.parent_code) SELECT code, name, parent_code, level FROM up ORDER BY depth",
        )
        .bind(code)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The whole tree: top-level regions with their sub-regions, by code.
    pub async fn region_tree(&self) -> Result<Vec<RegionNode>> {
        let all = self.regions().await?;
        fn build(parent: Option<&str>, all: &[Region]) -> Vec<RegionNode> {
            all.iter()
                .filter(|r| r.parent_code.as_deref() == parent)
                .map(|r| RegionNode { region: r.clone(), children: build(Some(&r.code), all) })
                .collect()
        }
        Ok(build(None, &all))
    }

    /// Deletes a region; refused while it has sub-regions, objects or departments covering it.
    pub async fn delete_region(&self, code: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM regions WHERE code = $1")
            .bind(code)
            .execute(&self.pool)
            .await
            .map_err(|e| delete_error(e, "the region", "该行政区划"))?;
        Ok(r.rows_affected() == 1)
    }
}

fn bail_field(field: &str, en: &str, zh: &str) -> Result<()> {
    Err(FieldError::new(field, en, zh).into())
}
