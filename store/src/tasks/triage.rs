//! Triage (研判): what the monitoring center does with a warning or a complaint — acknowledge,
//! dispatch as a task, merge into an open task, close as a false positive — and how a complaint's
//! public status follows the task made from it.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::types::Json;
use sqlx::PgConnection;

use super::ops::{dispatch_in, event, task_in};
use super::{NewTask, Refusal, TaskRecord, TaskSource};
use crate::complaints::StatusNote;
use crate::rules::Level;
use crate::Store;

/// How a department is to receive a warning or complaint as a task.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// `None`: the department responsible for the object and item (see `responsible_department`).
    pub department_id: Option<i64>,
    pub co_department_ids: Vec<i64>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Complaints have no level of their own: the default is blue (4).
    pub level: Option<Level>,
    pub item: Option<String>,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Per rule or model: how many of its warnings people triaged, and how many were false positives.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Precision {
    pub source: String,
    pub event: String,
    pub warnings: i64,
    pub triaged: i64,
    pub false_positives: i64,
    /// 1 - false positives / triaged; null before anything was triaged.
    pub precision: Option<f64>,
}

fn no_department() -> Refusal {
    Refusal::new(
        "no_department",
        "no department is responsible for this object and item; name one",
        "未找到负责该对象和事项的部门，请指定部门",
    )
}

impl Store {
    /// Someone has seen the warning (stops the unacknowledged escalation). Idempotent.
    pub async fn acknowledge_warning(&self, id: i64, by: &str, at: DateTime<Utc>) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE warnings SET acknowledged_at = coalesce(acknowledged_at, $2), \
             acknowledged_by = coalesce(acknowledged_by, $3) WHERE id = $1",
        )
        .bind(id)
        .bind(at)
        .bind(by)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() > 0 {
            self.notify_warning(id, "acknowledged").await?;
        }
        Ok(r.rows_affected() > 0)
    }

    /// Makes a task of a warning. Refused when it already has one or was closed as a false positive.
    pub async fn dispatch_warning(&self, id: i64, d: &Dispatch) -> Result<Option<Result<TaskRecord, Refusal>>> {
        let mut tx = self.pool.begin().await?;
        let r = dispatch_warning_in(&mut tx, id, d).await?;
        if matches!(r, Some(Ok(_))) {
            tx.commit().await?;
            self.notify_warning(id, "dispatched").await?;
        }
        Ok(r)
    }

    /// Adds a warning to an open task (the task's timeline records it). `via_case`: merged into
    /// an open enforcement case, whose task may already be closed.
    pub async fn merge_warning(
        &self,
        id: i64,
        task_id: i64,
        via_case: bool,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Result<TaskRecord, Refusal>>> {
        let mut tx = self.pool.begin().await?;
        let w: Option<(Option<i64>, bool, String)> =
            sqlx::query_as("SELECT task_id, false_positive, detail FROM warnings WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((current, fp, detail)) = w else { return Ok(None) };
        if current.is_some() {
            return Ok(Some(Err(Refusal::new("already_dispatched", "the warning already belongs to a task", "该预警已关联任务"))));
        }
        if fp {
            return Ok(Some(Err(Refusal::new("false_positive", "the warning was closed as a false positive", "该预警已判定为误报"))));
        }
        let Some(task) = task_in(&mut tx, task_id).await? else {
            return Ok(Some(Err(Refusal::new("invalid", "no such task", "任务不存在"))));
        };
        if !task.state().is_open() && !via_case {
            return Ok(Some(Err(Refusal::new("task_closed", "the task is closed", "任务已办结"))));
        }
        sqlx::query(
            "UPDATE warnings SET task_id = $2, acknowledged_at = coalesce(acknowledged_at, $3), \
             acknowledged_by = coalesce(acknowledged_by, $4) WHERE id = $1",
        )
        .bind(id)
        .bind(task_id)
        .bind(at)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        event(&mut tx, &task, by, "warning_merged", None, None, Some(&detail), json!({"warning_id": id, "via_case": via_case}), at)
            .await?;
        tx.commit().await?;
        self.notify_warning(id, "merged").await?;
        Ok(Some(Ok(task)))
    }

    /// Closes a warning as a false positive (counts against its rule's or model's precision). A
    /// warning already resolved can still be marked.
    pub async fn mark_false_positive(&self, id: i64, by: &str, note: Option<&str>, at: DateTime<Utc>) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE warnings SET false_positive = true, acknowledged_at = coalesce(acknowledged_at, $2), \
             acknowledged_by = coalesce(acknowledged_by, $3), \
             resolution = CASE WHEN resolved_at IS NULL THEN 'false_positive' ELSE resolution END, \
             resolved_by = CASE WHEN resolved_at IS NULL THEN $3 ELSE resolved_by END, \
             resolution_note = CASE WHEN resolved_at IS NULL THEN $4 ELSE resolution_note END, \
             resolved_at = coalesce(resolved_at, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(at)
        .bind(by)
        .bind(note)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() > 0 {
            self.notify_warning(id, "resolved").await?;
        }
        Ok(r.rows_affected() > 0)
    }

    /// Precision per rule (`source` = the rule engine, `event` = `rule:<id>`) and per model.
    pub async fn warning_precision(&self) -> Result<Vec<Precision>> {
        Ok(sqlx::query_as(
            "SELECT source, event, count(*) AS warnings, \
             count(*) FILTER (WHERE task_id IS NOT NULL OR false_positive) AS triaged, \
             count(*) FILTER (WHERE false_positive) AS false_positives, \
             CASE WHEN count(*) FILTER (WHERE task_id IS NOT NULL OR false_positive) = 0 THEN NULL \
                  ELSE 1.0 - (count(*) FILTER (WHERE false_positive))::float8 \
                       / (count(*) FILTER (WHERE task_id IS NOT NULL OR false_positive)) END AS precision \
             FROM warnings GROUP BY source, event ORDER BY source, event",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes a task of a complaint; the complaint's public status follows it from now on.
    pub async fn dispatch_complaint(&self, id: i64, d: &Dispatch) -> Result<Option<Result<TaskRecord, Refusal>>> {
        let mut tx = self.pool.begin().await?;
        let c: Option<(String, String, String, Option<String>, Option<i64>, String)> = sqlx::query_as(
            "SELECT tracking_no, service_code, description, object_id, task_id, status FROM complaints WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((tracking_no, service, description, object_id, task_id, status)) = c else { return Ok(None) };
        if task_id.is_some() {
            return Ok(Some(Err(Refusal::new("already_dispatched", "the complaint already has a task", "该投诉已派发任务"))));
        }
        if status != "open" {
            return Ok(Some(Err(Refusal::new("complaint_closed", "the complaint is closed", "该投诉已办结"))));
        }
        let department = match (d.department_id, &object_id) {
            (Some(dep), _) => Some(dep),
            (None, Some(o)) => super::policy::responsible_in(&mut tx, d.item.as_deref(), o).await?,
            (None, None) => None,
        };
        let Some(department_id) = department else { return Ok(Some(Err(no_department()))) };
        let service_name = crate::complaints::service(&service).map(|s| s.service_name_zh).unwrap_or("投诉举报");
        let excerpt: String = description.chars().take(60).collect();
        let t = NewTask {
            title: d.title.clone().unwrap_or_else(|| format!("{service_name}：{excerpt}")),
            description: d.description.clone().unwrap_or(description),
            source: TaskSource::Complaint,
            source_ref: Some(tracking_no),
            level: d.level.unwrap_or(Level::BLUE),
            item: d.item.clone(),
            object_id,
            department_id,
            co_department_ids: d.co_department_ids.clone(),
            dispatched_by: d.by.clone(),
            at: d.at,
        };
        let task = match dispatch_in(&mut tx, &t).await? {
            Ok(t) => t,
            Err(r) => return Ok(Some(Err(r))),
        };
        sqlx::query("UPDATE complaints SET task_id = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(task.id)
            .bind(d.at)
            .execute(&mut *tx)
            .await?;
        add_note(&mut tx, id, &format!("已受理，已转交{}办理（任务编号 {}）", task.department_name, task.task_no), &d.by, d.at)
            .await?;
        tx.commit().await?;
        Ok(Some(Ok(task)))
    }

    /// The complainant's answer when called back (回访); counts in the department's satisfaction.
    pub async fn record_callback(&self, complaint_id: i64, result: &str, by: &str, at: DateTime<Utc>) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE complaints SET callback_result = $2, callback_at = $3, callback_by = $4, updated_at = $3 WHERE id = $1",
        )
        .bind(complaint_id)
        .bind(result)
        .bind(at)
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }
}

pub(super) async fn dispatch_warning_in(
    conn: &mut PgConnection,
    id: i64,
    d: &Dispatch,
) -> Result<Option<Result<TaskRecord, Refusal>>> {
    let w: Option<(Option<i64>, bool, i16, Option<String>, Option<String>, String, String)> = sqlx::query_as(
        "SELECT w.task_id, w.false_positive, w.level, w.item, w.object_id, w.detail, dv.id FROM warnings w \
         JOIN devices dv ON dv.key = w.device_key WHERE w.id = $1 FOR UPDATE OF w",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((task_id, fp, level, item, object_id, detail, device_id)) = w else { return Ok(None) };
    if task_id.is_some() {
        return Ok(Some(Err(Refusal::new("already_dispatched", "the warning already belongs to a task", "该预警已关联任务"))));
    }
    if fp {
        return Ok(Some(Err(Refusal::new("false_positive", "the warning was closed as a false positive", "该预警已判定为误报"))));
    }
    let item = d.item.clone().or(item);
    let department = match (d.department_id, &object_id) {
        (Some(dep), _) => Some(dep),
        (None, Some(o)) => super::policy::responsible_in(conn, item.as_deref(), o).await?,
        (None, None) => None,
    };
    let Some(department_id) = department else { return Ok(Some(Err(no_department()))) };
    let place: Option<String> = match &object_id {
        Some(o) => sqlx::query_scalar("SELECT name FROM objects WHERE id = $1").bind(o).fetch_optional(&mut *conn).await?,
        None => None,
    };
    let level = d.level.or_else(|| Level::new(level as u8).ok()).context("warning level")?;
    let t = NewTask {
        title: d.title.clone().unwrap_or_else(|| {
            let t: String = format!("{}：{}", place.unwrap_or(device_id), detail).chars().take(200).collect();
            t
        }),
        description: d.description.clone().unwrap_or_else(|| detail.clone()),
        source: TaskSource::Warning,
        source_ref: Some(id.to_string()),
        level,
        item,
        object_id,
        department_id,
        co_department_ids: d.co_department_ids.clone(),
        dispatched_by: d.by.clone(),
        at: d.at,
    };
    let task = match dispatch_in(conn, &t).await? {
        Ok(t) => t,
        Err(r) => return Ok(Some(Err(r))),
    };
    sqlx::query(
        "UPDATE warnings SET task_id = $2, acknowledged_at = coalesce(acknowledged_at, $3), \
         acknowledged_by = coalesce(acknowledged_by, $4) WHERE id = $1",
    )
    .bind(id)
    .bind(task.id)
    .bind(d.at)
    .bind(&d.by)
    .execute(&mut *conn)
    .await?;
    Ok(Some(Ok(task)))
}

async fn add_note(conn: &mut PgConnection, complaint_id: i64, note: &str, by: &str, at: DateTime<Utc>) -> Result<()> {
    let n = [StatusNote { at, note: note.to_owned(), public: true, by: by.to_owned() }];
    sqlx::query("UPDATE complaints SET status_notes = status_notes || $2, updated_at = $3 WHERE id = $1")
        .bind(complaint_id)
        .bind(Json(&n))
        .bind(at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Keeps the public status of the complaint a task came from in step with the task.
pub(super) async fn follow_complaint(
    conn: &mut PgConnection,
    task: &TaskRecord,
    action: &str,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> Result<()> {
    let complaint: Option<i64> =
        sqlx::query_scalar("SELECT id FROM complaints WHERE task_id = $1").bind(task.id).fetch_optional(&mut *conn).await?;
    let Some(cid) = complaint else { return Ok(()) };
    let now = task_in(conn, task.id).await?.context("task")?;
    match action {
        "signed" => add_note(conn, cid, &format!("{}已签收，正在办理", now.department_name), "system", at).await?,
        "transferred" | "redispatched" => {
            add_note(conn, cid, &format!("已转交{}办理", now.department_name), "system", at).await?
        }
        "closed" => {
            let feedback: Option<String> = sqlx::query_scalar(
                "SELECT reason FROM task_events WHERE task_id = $1 AND action = 'feedback' ORDER BY id DESC LIMIT 1",
            )
            .bind(task.id)
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
            let public = format!("办结：{}", feedback.as_deref().or(reason).unwrap_or("已办理完毕"));
            let notes = [StatusNote { at, note: public, public: true, by: "system".into() }];
            sqlx::query(
                "UPDATE complaints SET status = 'closed', closed_at = $2, closed_by = 'system', \
                 close_reason = $3, status_notes = status_notes || $4, updated_at = $2 WHERE id = $1 AND status = 'open'",
            )
            .bind(cid)
            .bind(at)
            .bind(format!("任务 {} 办结", task.task_no))
            .bind(Json(&notes))
            .execute(&mut *conn)
            .await?;
        }
        _ => {}
    }
    Ok(())
}
