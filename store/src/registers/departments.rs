//! Departments (职能部门), their hierarchy and the regions they cover.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::regions::check_region_code;
use super::{code, db_error, delete_error, text, AccessScope, FieldError};
use crate::Store;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDepartment {
    /// Stable code, `[A-Za-z0-9_.-]{1,64}` (e.g. `housing-construction`).
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub parent_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Department {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub parent_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// The regions it covers, by code.
    pub region_codes: Vec<String>,
}

const SELECT: &str = "SELECT d.id, d.code, d.name, d.parent_id, d.created_at, \
     coalesce((SELECT array_agg(dr.region_code ORDER BY dr.region_code) FROM department_regions dr \
       WHERE dr.department_id = d.id), '{}') AS region_codes \
     FROM departments d";

impl NewDepartment {
    fn checked(&self) -> Result<(String, String), FieldError> {
        let c = self.code.trim();
        code("code", c, 64, true)?;
        let name = text("name", Some(&self.name), true, 200)?.expect("required");
        Ok((c.to_owned(), name))
    }
}

impl Store {
    pub async fn insert_department(&self, d: &NewDepartment) -> Result<Department> {
        let (code, name) = d.checked()?;
        let id: i64 =
            sqlx::query_scalar("INSERT INTO departments (code, name, parent_id) VALUES ($1, $2, $3) RETURNING id")
                .bind(code)
                .bind(name)
                .bind(d.parent_id)
                .fetch_one(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(self.department(id).await?.expect("just inserted"))
    }

    /// Replaces a department's code, name and parent; `None` if there is no such department. A
    /// department cannot be put under itself or one of its sub-departments.
    pub async fn update_department(&self, id: i64, d: &NewDepartment) -> Result<Option<Department>> {
        let (code, name) = d.checked()?;
        let mut tx = self.pool.begin().await?;
        if let Some(p) = d.parent_id {
            let cycle: bool = sqlx::query_scalar(
                "WITH RECURSIVE up AS (SELECT id, parent_id FROM departments WHERE id = $1 \
                 UNION SELECT d.id, d.parent_id FROM departments d JOIN up ON d.id = up.parent_id) \
                 SELECT EXISTS (SELECT 1 FROM up WHERE id = $2)",
            )
            .bind(p)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if cycle {
                return Err(FieldError::new(
                    "parent_id",
                    "a department cannot be under itself or one of its sub-departments",
                    "部门不能隶属于自身或其下级部门",
                )
                .into());
            }
        }
        let r = sqlx::query("UPDATE departments SET code = $2, name = $3, parent_id = $4 WHERE id = $1")
            .bind(id)
            .bind(code)
            .bind(name)
            .bind(d.parent_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        self.department(id).await
    }

    pub async fn department(&self, id: i64) -> Result<Option<Department>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE d.id = $1")).bind(id).fetch_optional(&self.pool).await?)
    }

    pub async fn department_by_code(&self, code: &str) -> Result<Option<Department>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE d.code = $1")).bind(code).fetch_optional(&self.pool).await?)
    }

    /// Every department, by code.
    pub async fn departments(&self) -> Result<Vec<Department>> {
        Ok(sqlx::query_as(&format!("{SELECT} ORDER BY d.code")).fetch_all(&self.pool).await?)
    }

    /// Deletes a department (and its region coverage); refused while it has sub-departments or
    /// objects.
    pub async fn delete_department(&self, id: i64) -> Result<bool> {
        let r = sqlx::query("DELETE FROM departments WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| delete_error(e, "the department", "该部门"))?;
        Ok(r.rows_affected() == 1)
    }

    /// Replaces the set of regions a department covers; false if there is no such department.
    pub async fn set_department_regions(&self, id: i64, region_codes: &[String]) -> Result<bool> {
        for c in region_codes {
            check_region_code("region_codes", c)?;
        }
        let mut tx = self.pool.begin().await?;
        let locked: Option<i64> = sqlx::query_scalar("SELECT id FROM departments WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if locked.is_none() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM department_regions WHERE department_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO department_regions (department_id, region_code) SELECT $1, c FROM unnest($2::text[]) c \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(region_codes)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await?;
        Ok(true)
    }

    /// Departments covering a region: those covering it or a region above it, by code.
    pub async fn departments_covering(&self, region_code: &str) -> Result<Vec<Department>> {
        Ok(sqlx::query_as(&format!(
            "WITH RECURSIVE up AS (SELECT code, parent_code FROM regions WHERE code = $1 \
             UNION SELECT r.code, r.parent_code FROM regions r JOIN up ON r.code = up.parent_code) \
             {SELECT} WHERE EXISTS (SELECT 1 FROM department_regions dr JOIN up ON up.code = dr.region_code \
             WHERE dr.department_id = d.id) ORDER BY d.code"
        ))
        .bind(region_code)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A department and all its sub-departments, by id (empty if there is no such department).
    pub async fn department_subtree(&self, id: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "WITH RECURSIVE sub AS (SELECT id FROM departments WHERE id = $1 \
             UNION SELECT d.id FROM departments d JOIN sub ON d.parent_id = sub.id) SELECT id FROM sub ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// What a department's users may see: the objects it or its sub-departments are responsible for
    /// and, with `with_regions`, every object in the regions they cover.
    pub async fn department_access_scope(&self, id: i64, with_regions: bool) -> Result<AccessScope> {
        let department_ids = self.department_subtree(id).await?;
        let region_codes = if with_regions {
            sqlx::query_scalar(
                "SELECT DISTINCT region_code FROM department_regions WHERE department_id = ANY($1) ORDER BY 1",
            )
            .bind(&department_ids)
            .fetch_all(&self.pool)
            .await?
        } else {
            vec![]
        };
        Ok(AccessScope { all: false, department_ids, region_codes })
    }
}
