//! A synthetic workload for `offsite bench api`: departments, regulated objects with devices, a
//! year of tasks (with their lead-department rows and, for a fraction, their timeline), warnings
//! (some dispatched into tasks, some false positives) and complaints called back, written with
//! set-based `INSERT .. SELECT generate_series` statements so a million tasks take seconds, not
//! minutes. Only for an empty scratch database: it drops and rebuilds secondary indexes around
//! the load.
//!
//! Shapes (chosen to look like a city's year, not measured from one):
//! - tasks dispatched evenly over the last year, in id order (as they would have been created);
//!   those of the last 10 days: 30% dispatched, 10% signed, 30% in progress, 10% feedback, 5%
//!   returned, 15% closed; older ones: 1.2% never signed and 0.3% still in progress (the overdue
//!   backlog), 34% closed, 65% archived;
//! - levels 1/2/3/4: 5/15/40/40%, with the default limits of workflow.md (working days counted as
//!   calendar days here); sources: 60% warning, 15% complaint, 10% province, 15% manual;
//! - about 23% of signings and of completions late; 10% of reviewed feedback rejected once; 10% of
//!   handled tasks extended;
//! - timeline rows for every tenth task (dispatched, signed) and every returned one;
//! - warnings over the last year in id order, 5% open; 30% dispatched or merged into a task, 8% of those and 5%
//!   of the others false positives.

use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::Store;

/// How much to seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadSize {
    pub tasks: i64,
    pub warnings: i64,
    pub departments: i64,
    /// Regulated objects (each with one device) the warnings are spread over.
    pub objects: i64,
    /// Complaints turned into tasks and called back.
    pub complaints: i64,
}

/// What was seeded, and how long each step took (seconds).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeedReport {
    /// The departments, by code (`bench-01`, ...).
    pub department_ids: Vec<i64>,
    pub tasks: i64,
    pub task_events: i64,
    pub warnings: i64,
    pub complaints: i64,
    pub steps_s: Vec<(String, f64)>,
}

/// The tables loaded in bulk: their secondary indexes are dropped before and rebuilt after.
const BULK_TABLES: [&str; 5] = ["tasks", "task_departments", "task_events", "warnings", "complaints"];

const DEPARTMENTS_SQL: &str = "INSERT INTO departments (code, name) \
     SELECT 'bench-' || lpad(g::text, 2, '0'), '压测部门 ' || g FROM generate_series(1, $1) g";

const OBJECTS_SQL: &str = "INSERT INTO objects (id, name, type, department_id) \
     SELECT 'bench-obj-' || g, '压测对象 ' || g, 'construction-site', \
            (SELECT array_agg(id ORDER BY code) FROM departments WHERE code LIKE 'bench-%')[1 + g % $2] \
     FROM generate_series(1, $1) g";

const DEVICES_SQL: &str = "INSERT INTO devices (id, name, object_id, token_sha256) \
     SELECT 'bench' || g, '压测设备 ' || g, 'bench-obj-' || g, sha256(g::text::bytea) \
     FROM generate_series(1, $1) g";

/// `$1` tasks, `$2` now. Random draws per row, then the state, level and source they pick, then the
/// times those imply.
const TASKS_SQL: &str = r#"
INSERT INTO tasks (task_no, title, source, source_ref, level, object_id, department_id, state, sign_limit,
    handle_limit, dispatched_at, dispatched_by, sign_due, signed_at, handle_due, feedback_at, closed_at,
    archived_at, return_count, redo_count, extension_count, review_count, first_review_rejected, updated_at)
WITH d AS (
    SELECT array_agg(id ORDER BY code) AS ids, count(*)::int AS n FROM departments WHERE code LIKE 'bench-%'
), draws AS (
    SELECT g, d.ids[1 + g % d.n] AS department_id, random() AS r_state, random() AS r_level,
        random() AS r_source, random() AS r_sign, random() AS r_handle, random() AS r_misc,
        -- Created in dispatch order over the year, as the workflow would have.
        $2::timestamptz - interval '365 days' * (($1 - g)::float8 / $1) - interval '1 minute' * random() AS dispatched_at
    FROM generate_series(1, $1) g, d
), shaped AS (
    SELECT *,
        CASE WHEN dispatched_at > $2::timestamptz - interval '10 days' THEN
            CASE WHEN r_state < 0.30 THEN 'dispatched' WHEN r_state < 0.40 THEN 'signed'
                 WHEN r_state < 0.70 THEN 'in_progress' WHEN r_state < 0.80 THEN 'feedback'
                 WHEN r_state < 0.85 THEN 'returned' ELSE 'closed' END
        ELSE
            CASE WHEN r_state < 0.012 THEN 'dispatched' WHEN r_state < 0.015 THEN 'in_progress'
                 WHEN r_state < 0.35 THEN 'closed' ELSE 'archived' END
        END AS state,
        CASE WHEN r_level < 0.05 THEN 1 WHEN r_level < 0.20 THEN 2 WHEN r_level < 0.60 THEN 3 ELSE 4 END AS level,
        CASE WHEN r_source < 0.60 THEN 'warning' WHEN r_source < 0.75 THEN 'complaint'
             WHEN r_source < 0.85 THEN 'province' ELSE 'manual' END AS source
    FROM draws
), limits AS (
    SELECT *,
        CASE level WHEN 1 THEN 30 WHEN 2 THEN 120 WHEN 3 THEN 120 ELSE 1440 END AS sign_min,
        CASE level WHEN 1 THEN 1440 WHEN 2 THEN 4320 WHEN 3 THEN 7200 ELSE 14400 END AS handle_min,
        state NOT IN ('dispatched', 'returned') AS is_signed,
        state IN ('feedback', 'closed', 'archived') AS has_feedback,
        state IN ('closed', 'archived') AS is_closed
    FROM shaped
), signed AS (
    SELECT *,
        CASE WHEN is_signed THEN least($2::timestamptz, dispatched_at + make_interval(mins => (sign_min * 1.3 * r_sign)::int))
        END AS signed_at
    FROM limits
), handled AS (
    SELECT *,
        CASE WHEN has_feedback THEN least($2::timestamptz, signed_at + make_interval(mins => (handle_min * 1.3 * r_handle)::int))
        END AS feedback_at
    FROM signed
)
SELECT 'RW' || to_char(dispatched_at AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD') || lpad(g::text, 7, '0'),
    '压测任务 ' || g, source, CASE WHEN source <> 'manual' THEN 'bench-' || g END, level,
    'bench-obj-' || (1 + g % 1000), department_id, state,
    CASE level WHEN 1 THEN '30m' WHEN 2 THEN '2h' WHEN 3 THEN '2h' ELSE '1wd' END,
    CASE level WHEN 1 THEN '24h' WHEN 2 THEN '3wd' WHEN 3 THEN '5wd' ELSE '10wd' END,
    dispatched_at, 'monitor', dispatched_at + make_interval(mins => sign_min), signed_at,
    signed_at + make_interval(mins => handle_min), feedback_at,
    CASE WHEN is_closed THEN least($2::timestamptz, feedback_at + make_interval(mins => (120 * r_misc)::int)) END,
    CASE WHEN state = 'archived' THEN least($2::timestamptz, feedback_at + interval '1 day') END,
    CASE WHEN state = 'returned' THEN 1 ELSE 0 END,
    CASE WHEN has_feedback AND r_misc < 0.1 THEN 1 ELSE 0 END,
    CASE WHEN is_signed AND r_handle > 0.9 THEN 1 ELSE 0 END,
    CASE WHEN is_closed THEN 1 + (r_misc < 0.1)::int WHEN state = 'feedback' AND r_misc < 0.1 THEN 1 ELSE 0 END,
    CASE WHEN is_closed OR (state = 'feedback' AND r_misc < 0.1) THEN r_misc < 0.1 END,
    $2::timestamptz
FROM handled
"#;

const TASK_DEPARTMENTS_SQL: &str =
    "INSERT INTO task_departments (task_id, department_id, role, state) SELECT id, department_id, 'lead', state FROM tasks";

/// Timelines for every tenth task, and the return of every returned task.
const TASK_EVENTS_SQL: &str = r#"
INSERT INTO task_events (task_id, at, actor, action, from_state, to_state, department_id)
SELECT id, dispatched_at, 'monitor', 'dispatched', NULL, 'dispatched', department_id FROM tasks WHERE id % 10 = 0
UNION ALL
SELECT id, signed_at, 'bench-handler', 'signed', 'dispatched', 'signed', department_id FROM tasks
    WHERE id % 10 = 0 AND signed_at IS NOT NULL
UNION ALL
SELECT id, least(sign_due, updated_at), 'bench-handler', 'returned', 'dispatched', 'returned', department_id
    FROM tasks WHERE state = 'returned'
"#;

/// `$1` warnings, `$2` now. A warning dispatched into a task points at a task from a warning.
const WARNINGS_SQL: &str = r#"
INSERT INTO warnings (dedup_key, source, source_version, event, level, device_key, object_id, group_id, detail,
    score, first_seen, last_seen, count, resolved_at, resolution, task_id, false_positive)
WITH devs AS (
    SELECT array_agg(key ORDER BY key) AS keys, count(*)::int AS n FROM devices WHERE id LIKE 'bench%'
), tasks_range AS (
    SELECT min(id) AS lo, max(id) - min(id) + 1 AS n FROM tasks
), draws AS (
    SELECT g, devs.keys[1 + g % devs.n] AS device_key, 1 + g % devs.n AS object_no, random() AS r_open,
        random() AS r_level, random() AS r_task, random() AS r_fp,
        tasks_range.lo + (g::bigint * 7919) % tasks_range.n AS task_guess
    FROM generate_series(1, $1) g, devs, tasks_range
), shaped AS (
    SELECT *, $2::timestamptz - interval '365 days' * (($1 - g)::float8 / $1) AS first_seen, r_open < 0.05 AS is_open,
        r_task < 0.30 AS dispatched
    FROM draws
)
SELECT 'bench|' || g, CASE WHEN g % 10 < 7 THEN 'rules' ELSE 'anomaly' END, '1', 'bench:threshold',
    CASE WHEN r_level < 0.05 THEN 1 WHEN r_level < 0.20 THEN 2 WHEN r_level < 0.60 THEN 3 ELSE 4 END,
    device_key, 'bench-obj-' || object_no, g, '压测预警 ' || g, r_level, first_seen,
    first_seen + interval '5 minutes', 1 + g % 5,
    CASE WHEN NOT is_open THEN first_seen + interval '2 hours' END,
    CASE WHEN is_open THEN NULL
         WHEN (dispatched AND r_fp < 0.08) OR (NOT dispatched AND r_fp < 0.05) THEN 'false_positive'
         ELSE 'cleared' END,
    CASE WHEN dispatched THEN task_guess END,
    NOT is_open AND ((dispatched AND r_fp < 0.08) OR (NOT dispatched AND r_fp < 0.05))
FROM shaped
"#;

/// `$1` complaints: on closed tasks from complaints, called back (80% satisfied or basically
/// satisfied).
const COMPLAINTS_SQL: &str = r#"
INSERT INTO complaints (tracking_no, service_code, description, submitter_ip, status, created_at, updated_at,
    closed_at, task_id, callback_result, callback_at, callback_by)
SELECT 'TS' || to_char(dispatched_at AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD') || lpad(id::text, 10, '0'),
    'noise', '压测投诉 ' || id, '127.0.0.1', 'closed', dispatched_at, closed_at, closed_at, id,
    CASE WHEN id % 10 < 5 THEN 'satisfied' WHEN id % 10 < 8 THEN 'basically_satisfied' ELSE 'dissatisfied' END,
    closed_at, 'monitor'
FROM tasks WHERE source = 'complaint' AND closed_at IS NOT NULL
-- A scattered pick over the whole year, the same every run.
ORDER BY (id * 7919) % 1000003 LIMIT $1
"#;

impl Store {
    /// Seeds the workload into an empty database; `progress` hears about each step.
    pub async fn seed_bench_workload(
        &self,
        size: WorkloadSize,
        now: DateTime<Utc>,
        progress: impl Fn(&str),
    ) -> Result<SeedReport> {
        let mut conn = self.pool.acquire().await?;
        let c: &mut PgConnection = &mut conn;
        // Bulk-load settings for this session only; a fixed seed makes every run draw the same
        // workload (the same shares, the same rare cases), so figures and tests are repeatable.
        sqlx::raw_sql(
            "SET maintenance_work_mem = '512MB'; SET work_mem = '256MB'; SET synchronous_commit = off; \
             SELECT setseed(0.2026)",
        )
            .execute(&mut *c)
            .await?;
        let mut steps = Vec::new();
        let mut step = |name: &str, t: Instant| {
            let s = t.elapsed().as_secs_f64();
            progress(&format!("{name}: {s:.1} s"));
            steps.push((name.to_owned(), s));
        };

        let t = Instant::now();
        sqlx::query(DEPARTMENTS_SQL).bind(size.departments).execute(&mut *c).await.context("departments")?;
        sqlx::query(OBJECTS_SQL).bind(size.objects).bind(size.departments).execute(&mut *c).await.context("objects")?;
        sqlx::query(DEVICES_SQL).bind(size.objects).execute(&mut *c).await.context("devices")?;
        step("departments, objects, devices", t);

        let t = Instant::now();
        let mut indexes: Vec<(String, String)> = Vec::new();
        for table in BULK_TABLES {
            // Indexes that back a constraint (primary keys, unique) stay.
            let defs: Vec<(String, String)> = sqlx::query_as(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
                 WHERE i.indrelid = $1::regclass \
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
            )
            .bind(table)
            .fetch_all(&mut *c)
            .await?;
            for (name, _) in &defs {
                sqlx::raw_sql(&format!("DROP INDEX {name}")).execute(&mut *c).await?;
            }
            indexes.extend(defs);
        }
        step("drop secondary indexes", t);

        let t = Instant::now();
        let tasks = sqlx::query(TASKS_SQL).bind(size.tasks).bind(now).execute(&mut *c).await.context("tasks")?;
        step("tasks", t);
        let t = Instant::now();
        sqlx::query(TASK_DEPARTMENTS_SQL).execute(&mut *c).await.context("task departments")?;
        let events = sqlx::query(TASK_EVENTS_SQL).execute(&mut *c).await.context("task events")?;
        step("task departments and events", t);
        let t = Instant::now();
        let warnings =
            sqlx::query(WARNINGS_SQL).bind(size.warnings).bind(now).execute(&mut *c).await.context("warnings")?;
        let complaints =
            sqlx::query(COMPLAINTS_SQL).bind(size.complaints).execute(&mut *c).await.context("complaints")?;
        step("warnings and complaints", t);

        let t = Instant::now();
        for (name, def) in &indexes {
            sqlx::raw_sql(def).execute(&mut *c).await.with_context(|| format!("rebuilding {name}"))?;
        }
        step("rebuild indexes", t);
        let t = Instant::now();
        // Fresh statistics and visibility maps, as a database that has lived with these rows would have.
        for table in BULK_TABLES {
            sqlx::raw_sql(&format!("VACUUM (ANALYZE) {table}")).execute(&mut *c).await?;
        }
        step("vacuum and analyze", t);
        // The seeded history is the past of a living installation, not news: notifications start
        // after it (as migration 0010 does for an existing database).
        sqlx::raw_sql(
            "UPDATE notification_cursors c SET last_id = m.last_id, updated_at = now() FROM ( \
               SELECT 'task_events' AS source, coalesce(max(id), 0) AS last_id FROM task_events \
               UNION ALL SELECT 'warnings', coalesce(max(id), 0) FROM warnings \
               UNION ALL SELECT 'warning_escalations', coalesce(max(id), 0) FROM warning_escalations) m \
             WHERE c.source = m.source",
        )
        .execute(&mut *c)
        .await?;

        let department_ids = sqlx::query_scalar("SELECT id FROM departments WHERE code LIKE 'bench-%' ORDER BY code")
            .fetch_all(&mut *c)
            .await?;
        Ok(SeedReport {
            department_ids,
            tasks: tasks.rows_affected() as i64,
            task_events: events.rows_affected() as i64,
            warnings: warnings.rows_affected() as i64,
            complaints: complaints.rows_affected() as i64,
            steps_s: steps,
        })
    }

    /// The ids of every task in state `dispatched`, per lead department (for transitions to drive).
    pub async fn dispatched_task_ids(&self, department_id: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar("SELECT id FROM tasks WHERE department_id = $1 AND state = 'dispatched' ORDER BY id")
            .bind(department_id)
            .fetch_all(&self.pool)
            .await?)
    }
}
