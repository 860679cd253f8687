//! Dispatching tasks, acting on them, and reading them back.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::policy::{calendar_in, due, policy_in};
use super::triage::follow_complaint;
use super::{
    transition, Action, Refusal, TaskAttachment, TaskCheckpoint, TaskDepartment, TaskEvent, TaskExtension, TaskRecord,
    TaskSource, TaskState,
};
use crate::calendar::{Limit, WorkingCalendar};
use crate::rules::Level;
use crate::{AccessScope, Store};

/// A task to dispatch.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub title: String,
    pub description: String,
    pub source: TaskSource,
    pub source_ref: Option<String>,
    pub level: Level,
    /// Regulatory item (catalog code): picks the time limits.
    pub item: Option<String>,
    pub object_id: Option<String>,
    /// The lead (or only) department.
    pub department_id: i64,
    /// Co-handlers of a joint task.
    pub co_department_ids: Vec<i64>,
    pub dispatched_by: String,
    pub at: DateTime<Utc>,
}

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<TaskState>,
    pub department_id: Option<i64>,
    pub source: Option<TaskSource>,
    pub level: Option<Level>,
    /// Open tasks past the deadline of the clock now running (as of `now`).
    pub overdue: Option<bool>,
    pub object_id: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

pub(super) const TASK_SELECT: &str = "SELECT t.id, t.task_no, t.title, t.description, t.source, t.source_ref, t.level, \
     t.item, t.object_id, t.region_code, t.department_id, d.name AS department_name, t.reviewer_department_id, t.state, \
     t.sign_limit, t.handle_limit, t.dispatched_at, t.dispatched_by, t.sign_due, t.signed_at, t.handle_due, \
     t.feedback_at, t.closed_at, t.archived_at, t.extension_pending, t.return_count, t.transfer_count, t.redo_count, \
     t.extension_count, t.review_count, t.first_review_rejected, t.updated_at, \
     coalesce((SELECT array_agg(td.department_id ORDER BY td.department_id) FROM task_departments td \
               WHERE td.task_id = t.id AND td.role = 'co'), '{}') AS co_department_ids \
     FROM tasks t JOIN departments d ON d.id = t.department_id";

const STAGES: [&str; 3] = ["remind", "supervise", "escalate"];

impl NewTask {
    fn check(&self) -> Result<(), Refusal> {
        let bad = |en: &str, zh: &str| Err(Refusal::new("invalid", en, zh));
        let title = self.title.trim();
        if title.is_empty() || title.chars().count() > 200 {
            return bad("title must be 1 to 200 characters", "标题须为 1 至 200 个字符");
        }
        if self.description.chars().count() > 5000 {
            return bad("description is at most 5000 characters", "描述不超过 5000 个字符");
        }
        if self.co_department_ids.contains(&self.department_id) {
            return Err(lead_is_co_handler());
        }
        Ok(())
    }
}

impl Store {
    /// Dispatches a task: the sign-for clock starts at `t.at`. Refused when the input is invalid
    /// or a department does not exist.
    pub async fn dispatch_task(&self, t: &NewTask) -> Result<Result<TaskRecord, Refusal>> {
        let mut tx = self.pool.begin().await?;
        let r = dispatch_in(&mut tx, t).await?;
        if r.is_ok() {
            tx.commit().await?;
        }
        Ok(r)
    }

    pub async fn task(&self, id: i64) -> Result<Option<TaskRecord>> {
        let mut conn = self.pool.acquire().await?;
        task_in(&mut conn, id).await
    }

    /// Does an action; `Ok(Err(refusal))` when the state machine or the input forbids it.
    pub async fn act_on_task(
        &self,
        id: i64,
        actor: &str,
        action: &Action,
        at: DateTime<Utc>,
    ) -> Result<Option<Result<TaskRecord, Refusal>>> {
        let mut tx = self.pool.begin().await?;
        let Some(cur) = lock_task(&mut tx, id).await? else { return Ok(None) };
        let next = match transition(cur.state(), cur.extension_pending, action) {
            Ok(n) => n,
            Err(r) => return Ok(Some(Err(r))),
        };
        if let Err(r) = apply(&mut tx, &cur, next, actor, action, at).await? {
            return Ok(Some(Err(r)));
        }
        let rec = task_in(&mut tx, id).await?.context("task vanished")?;
        tx.commit().await?;
        Ok(Some(Ok(rec)))
    }

    /// A comment on the timeline (any state).
    pub async fn comment_task(&self, id: i64, actor: &str, text: &str, at: DateTime<Utc>) -> Result<Option<TaskEvent>> {
        let mut tx = self.pool.begin().await?;
        let Some(cur) = lock_task(&mut tx, id).await? else { return Ok(None) };
        let ev = event(&mut tx, &cur, actor, "comment", None, None, Some(text), json!({}), at).await?;
        tx.commit().await?;
        Ok(Some(ev))
    }

    /// Attaches a stored file (see `files`) to a task; the timeline gets an `attachment` event.
    #[allow(clippy::too_many_arguments)]
    pub async fn attach_to_task(
        &self,
        id: i64,
        actor: &str,
        filename: &str,
        content_type: &str,
        size: i64,
        sha256: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<TaskAttachment>> {
        let mut tx = self.pool.begin().await?;
        let Some(cur) = lock_task(&mut tx, id).await? else { return Ok(None) };
crate::files::record_file_in(&mut tx, sha256, size, content_type).await?;
        let ev = event(
            &mut tx,
            &cur,
            actor,
            "attachment",
            None,
            None,
            None,
            json!({"filename": filename, "sha256": sha256, "size": size}),
            at,
        )
        .await?;
        let a: TaskAttachment = sqlx::query_as(
            "INSERT INTO task_attachments (task_id, event_id, filename, content_type, size, sha256, uploaded_by, uploaded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        )
        .bind(id)
        .bind(ev.id)
        .bind(filename)
        .bind(content_type)
        .bind(size)
        .bind(sha256)
        .bind(actor)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(a))
    }

    pub async fn task_events(&self, id: i64) -> Result<Vec<TaskEvent>> {
        Ok(sqlx::query_as("SELECT * FROM task_events WHERE task_id = $1 ORDER BY id").bind(id).fetch_all(&self.pool).await?)
    }

    pub async fn task_attachments(&self, id: i64) -> Result<Vec<TaskAttachment>> {
        Ok(sqlx::query_as("SELECT * FROM task_attachments WHERE task_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn task_attachment(&self, task_id: i64, id: i64) -> Result<Option<TaskAttachment>> {
        Ok(sqlx::query_as("SELECT * FROM task_attachments WHERE task_id = $1 AND id = $2")
            .bind(task_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn task_extensions(&self, id: i64) -> Result<Vec<TaskExtension>> {
        Ok(sqlx::query_as("SELECT * FROM task_extensions WHERE task_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn task_checkpoints(&self, id: i64) -> Result<Vec<TaskCheckpoint>> {
        Ok(sqlx::query_as(
            "SELECT clock, stage, due_at, fired_at, cancelled_at FROM task_checkpoints WHERE task_id = $1 \
             ORDER BY clock = 'handle', due_at",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn task_departments(&self, id: i64) -> Result<Vec<TaskDepartment>> {
        Ok(sqlx::query_as(
            "SELECT td.department_id, d.name, td.role FROM task_departments td JOIN departments d ON d.id = td.department_id \
             WHERE td.task_id = $1 ORDER BY td.role DESC, td.department_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Tasks in `scope` (a department sees the tasks it leads or co-handles, and those of objects in
    /// its regions), newest first, with the total.
    pub async fn list_tasks(&self, f: &TaskFilter, scope: &AccessScope, now: DateTime<Utc>) -> Result<(Vec<TaskRecord>, i64)> {
        if let Some(page) = self.department_inbox(f, scope).await? {
            return Ok(page);
        }
        let mut b = QueryBuilder::<Postgres>::new(TASK_SELECT);
        push_filter(&mut b, f, scope, now);
        b.push(" ORDER BY t.id DESC LIMIT ").push_bind(f.limit.clamp(1, 500)).push(" OFFSET ").push_bind(f.offset.max(0));
        let items: Vec<TaskRecord> = b.build_query_as().fetch_all(&self.pool).await?;
        let total = if f.offset == 0 && (items.len() as i64) < f.limit.clamp(1, 500) {
            items.len() as i64
        } else {
            let mut c = QueryBuilder::<Postgres>::new("SELECT count(*) FROM tasks t");
            push_filter(&mut c, f, scope, now);
            c.build_query_scalar().fetch_one(&self.pool).await?
        };
        Ok((items, total))
    }

    /// A department's inbox (its own tasks, by state or all), read from the (department, state,
    /// task) index instead of the tasks table; `None` when the filter asks for more than that.
    async fn department_inbox(&self, f: &TaskFilter, scope: &AccessScope) -> Result<Option<(Vec<TaskRecord>, i64)>> {
        let simple = !scope.all
            && scope.region_codes.is_empty()
            && f.department_id.is_none()
            && f.source.is_none()
            && f.level.is_none()
            && f.overdue.is_none()
            && f.object_id.is_none();
        if !simple {
            return Ok(None);
        }
        let (limit, offset) = (f.limit.clamp(1, 500), f.offset.max(0));
        let departments = &scope.department_ids;
        let (ids, total): (Vec<i64>, i64) = match f.state {
            Some(state) => {
                let ids = sqlx::query_scalar(
                    "SELECT DISTINCT task_id FROM task_departments WHERE department_id = ANY($1) AND state = $2 \
                     ORDER BY task_id DESC LIMIT $3 OFFSET $4",
                )
                .bind(departments)
                .bind(state.as_str())
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?;
                let total = sqlx::query_scalar(
                    "SELECT count(DISTINCT task_id) FROM task_departments WHERE department_id = ANY($1) AND state = $2",
                )
                .bind(departments)
                .bind(state.as_str())
                .fetch_one(&self.pool)
                .await?;
                (ids, total)
            }
            None => {
                let ids = sqlx::query_scalar(
                    "SELECT DISTINCT task_id FROM task_departments WHERE department_id = ANY($1) \
                     ORDER BY task_id DESC LIMIT $2 OFFSET $3",
                )
                .bind(departments)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?;
                let total = sqlx::query_scalar("SELECT count(DISTINCT task_id) FROM task_departments WHERE department_id = ANY($1)")
                    .bind(departments)
                    .fetch_one(&self.pool)
                    .await?;
                (ids, total)
            }
        };
        let items = sqlx::query_as(&format!("{TASK_SELECT} WHERE t.id = ANY($1) ORDER BY t.id DESC"))
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?;
        Ok(Some((items, total)))
    }

    /// Whether a task is visible in `scope` (404 otherwise).
    pub async fn task_visible(&self, id: i64, scope: &AccessScope) -> Result<bool> {
        if scope.all {
            return Ok(true);
        }
        let mut b = QueryBuilder::<Postgres>::new("SELECT EXISTS (SELECT 1 FROM tasks t WHERE t.id = ");
        b.push_bind(id).push(" AND ");
        push_scope(&mut b, scope);
        b.push(")");
        Ok(b.build_query_scalar().fetch_one(&self.pool).await?)
    }
}

fn push_scope(b: &mut QueryBuilder<'_, Postgres>, scope: &AccessScope) {
    if scope.all {
        b.push(" TRUE ");
        return;
    }
    // task_departments holds the lead too, so one indexed probe covers led and co-handled tasks.
    b.push(" (EXISTS (SELECT 1 FROM task_departments td WHERE td.task_id = t.id AND td.department_id = ANY(")
        .push_bind(scope.department_ids.clone())
        .push("))");
    if !scope.region_codes.is_empty() {
        b.push(" OR t.region_code IN (WITH RECURSIVE sub AS (SELECT code FROM regions WHERE code = ANY(")
            .push_bind(scope.region_codes.clone())
            .push(") UNION SELECT r.code FROM regions r JOIN sub ON r.parent_code = sub.code) SELECT code FROM sub)");
    }
    b.push(") ");
}

fn push_filter(b: &mut QueryBuilder<'_, Postgres>, f: &TaskFilter, scope: &AccessScope, now: DateTime<Utc>) {
    b.push(" WHERE ");
    push_scope(b, scope);
    if let Some(s) = f.state {
        b.push(" AND t.state = ").push_bind(s.as_str());
    }
    if let Some(d) = f.department_id {
        b.push(" AND (t.department_id = ")
            .push_bind(d)
            .push(" OR EXISTS (SELECT 1 FROM task_departments td2 WHERE td2.task_id = t.id AND td2.department_id = ")
            .push_bind(d)
            .push("))");
    }
    if let Some(s) = f.source {
        b.push(" AND t.source = ").push_bind(s.as_str());
    }
    if let Some(l) = f.level {
        b.push(" AND t.level = ").push_bind(l);
    }
    if let Some(o) = &f.object_id {
        b.push(" AND t.object_id = ").push_bind(o.clone());
    }
    if let Some(overdue) = f.overdue {
        b.push(if overdue { " AND " } else { " AND NOT " })
            .push("((t.state = 'dispatched' AND t.sign_due < ")
            .push_bind(now)
            .push(") OR (t.state IN ('signed', 'in_progress', 'feedback') AND t.handle_due < ")
            .push_bind(now)
            .push("))");
    }
}

pub(super) async fn task_in(conn: &mut PgConnection, id: i64) -> Result<Option<TaskRecord>> {
    Ok(sqlx::query_as(&format!("{TASK_SELECT} WHERE t.id = $1")).bind(id).fetch_optional(&mut *conn).await?)
}

/// The task, its row locked until the transaction ends.
async fn lock_task(conn: &mut PgConnection, id: i64) -> Result<Option<TaskRecord>> {
    Ok(sqlx::query_as(&format!("{TASK_SELECT} WHERE t.id = $1 FOR UPDATE OF t")).bind(id).fetch_optional(&mut *conn).await?)
}

async fn department_exists(conn: &mut PgConnection, id: i64) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM departments WHERE id = $1)").bind(id).fetch_one(&mut *conn).await?)
}

fn no_department(id: i64) -> Refusal {
    Refusal::new("invalid", format!("department {id} does not exist"), format!("部门 {id} 不存在"))
}

fn lead_is_co_handler() -> Refusal {
    Refusal::new("invalid", "the lead department cannot also be a co-handler", "牵头部门不能同时为协办部门")
}

pub(super) async fn dispatch_in(conn: &mut PgConnection, t: &NewTask) -> Result<Result<TaskRecord, Refusal>> {
    if let Err(r) = t.check() {
        return Ok(Err(r));
    }
    for d in std::iter::once(&t.department_id).chain(&t.co_department_ids) {
        if !department_exists(conn, *d).await? {
            return Ok(Err(no_department(*d)));
        }
    }
    let policy = policy_in(conn, t.item.as_deref(), t.level).await?;
    let cal = calendar_in(conn).await?;
    let (sign, sign_due) = due(&cal, t.at, &policy.sign_limit)?;
    let region: Option<String> = match &t.object_id {
        Some(o) => sqlx::query_scalar("SELECT region_code FROM objects WHERE id = $1").bind(o).fetch_optional(&mut *conn).await?.flatten(),
        None => None,
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO tasks (task_no, title, description, source, source_ref, level, item, object_id, region_code, \
         department_id, reviewer_department_id, state, sign_limit, handle_limit, dispatched_at, dispatched_by, sign_due) \
         VALUES ('RW' || to_char($14 AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD') || lpad(nextval('task_no_seq')::text, 6, '0'), \
         $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'dispatched', $11, $12, $14, $13, $15) RETURNING id",
    )
    .bind(t.title.trim())
    .bind(&t.description)
    .bind(t.source.as_str())
    .bind(&t.source_ref)
    .bind(t.level)
    .bind(&t.item)
    .bind(&t.object_id)
    .bind(&region)
    .bind(t.department_id)
    .bind(policy.reviewer_department_id)
    .bind(&policy.sign_limit)
    .bind(&policy.handle_limit)
    .bind(&t.dispatched_by)
    .bind(t.at)
    .bind(sign_due)
    .fetch_one(&mut *conn)
    .await?;
    set_departments(conn, id, t.department_id, &t.co_department_ids).await?;
    let rec = task_in(conn, id).await?.context("task just inserted")?;
    event(
        conn,
        &rec,
        &t.dispatched_by,
        "dispatched",
        None,
        Some(TaskState::Dispatched),
        None,
        json!({"department_id": t.department_id, "co_department_ids": t.co_department_ids, "sign_due": sign_due,
               "source": t.source, "source_ref": t.source_ref, "level": t.level}),
        t.at,
    )
    .await?;
    set_checkpoints(conn, id, "sign", &cal, t.at, sign).await?;
    Ok(Ok(rec))
}

async fn set_departments(conn: &mut PgConnection, id: i64, lead: i64, co: &[i64]) -> Result<()> {
    sqlx::query("DELETE FROM task_departments WHERE task_id = $1").bind(id).execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO task_departments (task_id, department_id, role) \
         SELECT $1, d, CASE WHEN d = $2 THEN 'lead' ELSE 'co' END FROM unnest($3::bigint[]) AS d ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(lead)
    .bind(std::iter::once(lead).chain(co.iter().copied().filter(|c| *c != lead)).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// (Re)arms a clock's three checkpoints; fired ones stay fired.
async fn set_checkpoints(
    conn: &mut PgConnection,
    id: i64,
    clock: &str,
    cal: &WorkingCalendar,
    from: DateTime<Utc>,
    limit: Limit,
) -> Result<()> {
    let points = cal.checkpoints(from, limit);
    arm(conn, id, clock, &points).await
}

async fn arm(conn: &mut PgConnection, id: i64, clock: &str, points: &[DateTime<Utc>; 3]) -> Result<()> {
    sqlx::query(
        "INSERT INTO task_checkpoints (task_id, clock, stage, due_at) SELECT $1, $2, s, d FROM unnest($3::text[], $4::timestamptz[]) AS x(s, d) \
         ON CONFLICT (task_id, clock, stage) DO UPDATE SET due_at = EXCLUDED.due_at, fired_at = NULL, cancelled_at = NULL",
    )
    .bind(id)
    .bind(clock)
    .bind(STAGES.to_vec())
    .bind(points.to_vec())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn cancel_clock(conn: &mut PgConnection, id: i64, clock: &str, at: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "UPDATE task_checkpoints SET cancelled_at = $3 WHERE task_id = $1 AND clock = $2 AND fired_at IS NULL \
         AND cancelled_at IS NULL",
    )
    .bind(id)
    .bind(clock)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn event(
    conn: &mut PgConnection,
    task: &TaskRecord,
    actor: &str,
    action: &str,
    from: Option<TaskState>,
    to: Option<TaskState>,
    reason: Option<&str>,
    detail: serde_json::Value,
    at: DateTime<Utc>,
) -> Result<TaskEvent> {
    let department = detail.get("department_id").and_then(|v| v.as_i64()).unwrap_or(task.department_id);
    Ok(sqlx::query_as(
        "INSERT INTO task_events (task_id, at, actor, action, from_state, to_state, department_id, reason, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
    )
    .bind(task.id)
    .bind(at)
    .bind(actor)
    .bind(action)
    .bind(from.map(|s| s.as_str()))
    .bind(to.map(|s| s.as_str()))
    .bind(department)
    .bind(reason)
    .bind(detail)
    .fetch_one(&mut *conn)
    .await?)
}

fn refuse(code: &'static str, en: impl Into<String>, zh: impl Into<String>) -> Result<Result<(), Refusal>> {
    Ok(Err(Refusal::new(code, en, zh)))
}

fn nonempty(s: &str, max: usize) -> bool {
    let n = s.trim().chars().count();
    n >= 1 && n <= max
}

/// The effects of an allowed action on the row, its clocks and its timeline.
async fn apply(
    conn: &mut PgConnection,
    cur: &TaskRecord,
    next: TaskState,
    actor: &str,
    action: &Action,
    at: DateTime<Utc>,
) -> Result<Result<(), Refusal>> {
    let id = cur.id;
    let mut reason: Option<&str> = None;
    let mut detail = json!({});
    match action {
        Action::Sign => {
            let cal = calendar_in(conn).await?;
            let (limit, handle_due) = due(&cal, at, &cur.handle_limit)?;
            sqlx::query("UPDATE tasks SET signed_at = $2, handle_due = $3 WHERE id = $1")
                .bind(id)
                .bind(at)
                .bind(handle_due)
                .execute(&mut *conn)
                .await?;
            cancel_clock(conn, id, "sign", at).await?;
            set_checkpoints(conn, id, "handle", &cal, at, limit).await?;
            detail = json!({"handle_due": handle_due, "on_time": at <= cur.sign_due});
        }
        Action::Start => {}
        Action::Return { reason: r } => {
            if !nonempty(r, 2000) {
                return refuse("invalid", "a reason is required to return a task", "退回须填写理由");
            }
            reason = Some(r);
            sqlx::query("UPDATE tasks SET return_count = return_count + 1 WHERE id = $1").bind(id).execute(&mut *conn).await?;
            cancel_clock(conn, id, "sign", at).await?;
        }
        Action::Redispatch { department_id, co_department_ids, reason: r } => {
            reason = r.as_deref();
            if let Err(e) = redirect(conn, cur, *department_id, Some(co_department_ids), at).await? {
                return Ok(Err(e));
            }
            detail = json!({"department_id": department_id, "co_department_ids": co_department_ids,
                            "from_department_id": cur.department_id});
        }
        Action::Transfer { department_id, reason: r } => {
            if !nonempty(r, 2000) {
                return refuse("invalid", "a reason is required to transfer a task", "转办须填写理由");
            }
            if *department_id == cur.department_id {
                return refuse("invalid", "the task is already with that department", "任务已在该部门");
            }
            reason = Some(r);
            if let Err(e) = redirect(conn, cur, *department_id, None, at).await? {
                return Ok(Err(e));
            }
            sqlx::query("UPDATE tasks SET transfer_count = transfer_count + 1 WHERE id = $1").bind(id).execute(&mut *conn).await?;
            detail = json!({"department_id": department_id, "from_department_id": cur.department_id});
        }
        Action::RequestExtension { until, reason: r } => {
            if !nonempty(r, 2000) {
                return refuse("invalid", "a reason is required to ask for more time", "延期申请须填写理由");
            }
            let current = cur.handle_due.unwrap_or(at);
            if *until <= current || *until <= at {
                return refuse("invalid", "the new deadline must be later than the current one", "新的期限须晚于当前期限");
            }
            reason = Some(r);
            sqlx::query(
                "INSERT INTO task_extensions (task_id, requested_by, requested_at, reason, requested_due) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(actor)
            .bind(at)
            .bind(r.trim())
            .bind(until)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE tasks SET extension_pending = true WHERE id = $1").bind(id).execute(&mut *conn).await?;
            detail = json!({"until": until, "current_due": cur.handle_due});
        }
        Action::DecideExtension { approve, note } => {
            reason = note.as_deref();
            let until: DateTime<Utc> = sqlx::query_scalar(
                "UPDATE task_extensions SET decision = $2, decided_by = $3, decided_at = $4, note = $5 \
                 WHERE task_id = $1 AND decision IS NULL RETURNING requested_due",
            )
            .bind(id)
            .bind(if *approve { "approved" } else { "refused" })
            .bind(actor)
            .bind(at)
            .bind(note)
            .fetch_one(&mut *conn)
            .await?;
            sqlx::query("UPDATE tasks SET extension_pending = false WHERE id = $1").bind(id).execute(&mut *conn).await?;
            if *approve {
                sqlx::query("UPDATE tasks SET handle_due = $2, extension_count = extension_count + 1 WHERE id = $1")
                    .bind(id)
                    .bind(until)
                    .execute(&mut *conn)
                    .await?;
                // The clock now runs from signing to the new deadline; checkpoints already fired stay.
                let start = cur.signed_at.unwrap_or(at);
                let span = until - start;
                let points = [start + span / 2, until, until + span / 2];
                sqlx::query(
                    "UPDATE task_checkpoints c SET due_at = x.d FROM unnest($2::text[], $3::timestamptz[]) AS x(s, d) \
                     WHERE c.task_id = $1 AND c.clock = 'handle' AND c.stage = x.s AND c.fired_at IS NULL",
                )
                .bind(id)
                .bind(STAGES.to_vec())
                .bind(points.to_vec())
                .execute(&mut *conn)
                .await?;
            }
            detail = json!({"until": until, "approved": approve});
        }
        Action::Feedback { text } | Action::CoFeedback { text } => {
            if !nonempty(text, 5000) {
                return refuse("invalid", "feedback text is required", "须填写反馈内容");
            }
            reason = Some(text);
            if matches!(action, Action::Feedback { .. }) {
                sqlx::query("UPDATE tasks SET feedback_at = $2 WHERE id = $1").bind(id).bind(at).execute(&mut *conn).await?;
            }
        }
        Action::Approve { note } => {
            reason = note.as_deref();
            sqlx::query(
                "UPDATE tasks SET closed_at = $2, review_count = review_count + 1, \
                 first_review_rejected = coalesce(first_review_rejected, false) WHERE id = $1",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            cancel_clock(conn, id, "handle", at).await?;
            detail = json!({"on_time": cur.handle_due.is_none_or(|d| at <= d)});
        }
        Action::Reject { reason: r } => {
            if !nonempty(r, 2000) {
                return refuse("invalid", "a reason is required to reject feedback", "驳回须填写理由");
            }
            reason = Some(r);
            sqlx::query(
                "UPDATE tasks SET review_count = review_count + 1, redo_count = redo_count + 1, \
                 first_review_rejected = coalesce(first_review_rejected, true) WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        Action::Archive => {
            sqlx::query("UPDATE tasks SET archived_at = $2 WHERE id = $1").bind(id).bind(at).execute(&mut *conn).await?;
        }
    }
    sqlx::query("UPDATE tasks SET state = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(next.as_str())
        .bind(at)
        .execute(&mut *conn)
        .await?;
    let name = action.event_name();
    event(conn, cur, actor, name, Some(cur.state()), Some(next), reason.map(str::trim), detail, at).await?;
    if cur.source() == TaskSource::Complaint {
        follow_complaint(conn, cur, name, reason, at).await?;
    }
    Ok(Ok(()))
}

/// Sends the task to another department (transfer, redispatch): the sign-for clock restarts and
/// the handling clock stops.
async fn redirect(
    conn: &mut PgConnection,
    cur: &TaskRecord,
    department_id: i64,
    co: Option<&Vec<i64>>,
    at: DateTime<Utc>,
) -> Result<Result<(), Refusal>> {
    for d in std::iter::once(&department_id).chain(co.into_iter().flatten()) {
        if !department_exists(conn, *d).await? {
            return Ok(Err(no_department(*d)));
        }
    }
    if co.is_some_and(|c| c.contains(&department_id)) {
        return Ok(Err(lead_is_co_handler()));
    }
    let cal = calendar_in(conn).await?;
    let (limit, sign_due) = due(&cal, at, &cur.sign_limit)?;
    sqlx::query(
        "UPDATE tasks SET department_id = $2, dispatched_at = $3, sign_due = $4, signed_at = NULL, handle_due = NULL \
         WHERE id = $1",
    )
    .bind(cur.id)
    .bind(department_id)
    .bind(at)
    .bind(sign_due)
    .execute(&mut *conn)
    .await?;
    let co = match co {
        Some(c) => c.clone(),
        None => cur.co_department_ids.iter().copied().filter(|c| *c != department_id).collect(),
    };
    set_departments(conn, cur.id, department_id, &co).await?;
    cancel_clock(conn, cur.id, "handle", at).await?;
    set_checkpoints(conn, cur.id, "sign", &cal, at, limit).await?;
    Ok(Ok(()))
}
