//! What the administrator configures for tasks: time limits and dispatch policy per item and
//! level, who is responsible for an item in a region, and the working calendar's exceptions.

use anyhow::{bail, Result};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::calendar::{Limit, WorkingCalendar};
use crate::rules::Level;
use crate::Store;

/// Limits and policy for one item and level (`item` = `*`: the level's default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TaskPolicy {
    pub item: String,
    pub level: Level,
    pub sign_limit: String,
    pub handle_limit: String,
    pub auto_dispatch: bool,
    pub reviewer_department_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarDayKind {
    /// A day off although a weekday (法定节假日).
    Holiday,
    /// A working day although a weekend (调休上班).
    Workday,
}

impl CalendarDayKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CalendarDayKind::Holiday => "holiday",
            CalendarDayKind::Workday => "workday",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalendarDay {
    pub day: NaiveDate,
    pub kind: CalendarDayKind,
    pub name: Option<String>,
}

impl Store {
    /// The policy for an item and level: the item's own row, else the level's default.
    pub async fn task_policy(&self, item: Option<&str>, level: Level) -> Result<TaskPolicy> {
        let mut conn = self.pool.acquire().await?;
        policy_in(&mut conn, item, level).await
    }

    pub async fn task_policies(&self) -> Result<Vec<TaskPolicy>> {
        Ok(sqlx::query_as(
            "SELECT item, level, sign_limit, handle_limit, auto_dispatch, reviewer_department_id FROM task_policies \
             ORDER BY item = '*' DESC, item, level",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Creates or replaces a policy row. Limits must parse (`30m`, `24h`, `3wd`).
    pub async fn set_task_policy(&self, p: &TaskPolicy, by: &str) -> Result<()> {
        if Limit::parse(&p.sign_limit).is_none() || Limit::parse(&p.handle_limit).is_none() {
            bail!("limits are written like 30m, 24h or 3wd");
        }
        sqlx::query(
            "INSERT INTO task_policies (item, level, sign_limit, handle_limit, auto_dispatch, reviewer_department_id, \
             updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
             ON CONFLICT (item, level) DO UPDATE SET sign_limit = EXCLUDED.sign_limit, \
             handle_limit = EXCLUDED.handle_limit, auto_dispatch = EXCLUDED.auto_dispatch, \
             reviewer_department_id = EXCLUDED.reviewer_department_id, updated_by = EXCLUDED.updated_by, updated_at = now()",
        )
        .bind(&p.item)
        .bind(p.level)
        .bind(&p.sign_limit)
        .bind(&p.handle_limit)
        .bind(p.auto_dispatch)
        .bind(p.reviewer_department_id)
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes an item's own policy (the level's default applies again). The defaults stay.
    pub async fn delete_task_policy(&self, item: &str, level: Level) -> Result<bool> {
        if item == "*" {
            bail!("the default policies cannot be removed");
        }
        let r = sqlx::query("DELETE FROM task_policies WHERE item = $1 AND level = $2")
            .bind(item)
            .bind(level)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Says which department handles `item` in `region_code` (and the regions under it).
    pub async fn set_responsibility(&self, item: &str, region_code: &str, department_id: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO responsibilities (item, region_code, department_id) VALUES ($1, $2, $3) \
             ON CONFLICT (item, region_code) DO UPDATE SET department_id = EXCLUDED.department_id",
        )
        .bind(item)
        .bind(region_code)
        .bind(department_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes what `set_responsibility` set; false if nothing was set.
    pub async fn delete_responsibility(&self, item: &str, region_code: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM responsibilities WHERE item = $1 AND region_code = $2")
            .bind(item)
            .bind(region_code)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// `(item, region_code, department_id)` rows.
    pub async fn responsibilities(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as("SELECT item, region_code, department_id FROM responsibilities ORDER BY 1, 2")
            .fetch_all(&self.pool)
            .await?)
    }

    /// The department responsible for `item` at `object_id`: the responsibility of the object's
    /// region or its nearest ancestor, else the object's own department.
    pub async fn responsible_department(&self, item: Option<&str>, object_id: &str) -> Result<Option<i64>> {
        let mut conn = self.pool.acquire().await?;
        responsible_in(&mut conn, item, object_id).await
    }

    /// The administrator's exceptions to the weekday/weekend rule.
    pub async fn working_calendar(&self) -> Result<WorkingCalendar> {
        let mut conn = self.pool.acquire().await?;
        calendar_in(&mut conn).await
    }

    pub async fn calendar_days(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<CalendarDay>> {
        let rows: Vec<(NaiveDate, String, Option<String>)> =
            sqlx::query_as("SELECT day, kind, name FROM calendar_days WHERE day >= $1 AND day <= $2 ORDER BY day")
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(day, kind, name)| CalendarDay {
                day,
                kind: if kind == "holiday" { CalendarDayKind::Holiday } else { CalendarDayKind::Workday },
                name,
            })
            .collect())
    }

    pub async fn set_calendar_day(&self, d: &CalendarDay, by: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO calendar_days (day, kind, name, updated_by, updated_at) VALUES ($1, $2, $3, $4, now()) \
             ON CONFLICT (day) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name, \
             updated_by = EXCLUDED.updated_by, updated_at = now()",
        )
        .bind(d.day)
        .bind(d.kind.as_str())
        .bind(&d.name)
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_calendar_day(&self, day: NaiveDate) -> Result<bool> {
        let r = sqlx::query("DELETE FROM calendar_days WHERE day = $1").bind(day).execute(&self.pool).await?;
        Ok(r.rows_affected() > 0)
    }
}

pub(super) async fn policy_in(conn: &mut PgConnection, item: Option<&str>, level: Level) -> Result<TaskPolicy> {
    let row: Option<TaskPolicy> = sqlx::query_as(
        "SELECT item, level, sign_limit, handle_limit, auto_dispatch, reviewer_department_id FROM task_policies \
         WHERE level = $2 AND (item = $1 OR item = '*') ORDER BY item = '*' LIMIT 1",
    )
    .bind(item.unwrap_or("*"))
    .bind(level)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(p) => Ok(p),
        None => bail!("no task policy for level {} (the defaults were removed?)", level.get()),
    }
}

pub(super) async fn calendar_in(conn: &mut PgConnection) -> Result<WorkingCalendar> {
    let rows: Vec<(NaiveDate, String)> = sqlx::query_as("SELECT day, kind FROM calendar_days").fetch_all(&mut *conn).await?;
    let mut cal = WorkingCalendar::default();
    for (day, kind) in rows {
        if kind == "holiday" {
            cal.holidays.insert(day);
        } else {
            cal.workdays.insert(day);
        }
    }
    Ok(cal)
}

pub(super) async fn responsible_in(conn: &mut PgConnection, item: Option<&str>, object_id: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "WITH RECURSIVE up AS ( \
             SELECT r.code, r.parent_code, 0 AS depth FROM objects o JOIN regions r ON r.code = o.region_code \
             WHERE o.id = $2 \
             UNION ALL SELECT r.code, r.parent_code, up.depth + 1 FROM regions r JOIN up ON r.code = up.parent_code \
             WHERE up.depth < 10) \
         SELECT coalesce( \
             (SELECT rs.department_id FROM up JOIN responsibilities rs ON rs.region_code = up.code AND rs.item = $1 \
              ORDER BY up.depth LIMIT 1), \
             (SELECT department_id FROM objects WHERE id = $2))",
    )
    .bind(item)
    .bind(object_id)
    .fetch_one(&mut *conn)
    .await?)
}

/// Deadlines of a limit started at `from`.
pub(super) fn due(cal: &WorkingCalendar, from: DateTime<Utc>, limit: &str) -> Result<(Limit, DateTime<Utc>)> {
    let Some(l) = Limit::parse(limit) else { bail!("bad limit {limit:?}") };
    Ok((l, cal.deadline(from, l)))
}
