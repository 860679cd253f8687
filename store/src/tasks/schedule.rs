//! The scheduler's one pass: fire due checkpoints (remind / supervise / escalate at 50 / 100 /
//! 150% of a limit), auto-dispatch red warnings of items configured for it, and escalate warnings
//! nobody acknowledged in time.
//!
//! A pass runs in one transaction holding a transaction-level advisory lock, so with several
//! replicas one works and the others skip; everything it does is marked in the same transaction
//! (`fired_at`, `task_id`, `ack_escalated_at`), so a crash repeats nothing and loses nothing.
//! `now` is a parameter: the service passes the wall clock, tests pass any moment.

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use tracing::warn;

use super::ops::{event, task_in};
use super::triage::{dispatch_warning_in, Dispatch};
use super::TaskState;
use crate::rules::Level;
use crate::Store;

/// `pg_try_advisory_xact_lock` key of the scheduler ("offsite" + 1).
pub const SCHEDULER_LOCK: i64 = 0x6f66_6673_6974_6501;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiredCheckpoint {
    pub task_id: i64,
    pub clock: String,
    pub stage: String,
    pub due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SchedulerReport {
    /// Another replica held the lock; nothing was done.
    pub skipped: bool,
    pub fired: Vec<FiredCheckpoint>,
    /// (warning id, task id).
    pub auto_dispatched: Vec<(i64, i64)>,
    pub escalated_warnings: Vec<i64>,
}

/// What one pass does besides checkpoints.
#[derive(Debug, Clone)]
pub struct SchedulerPolicy {
    /// Escalate open warnings of this level or more severe that nobody acknowledged for this long;
    /// `None` turns it off.
    pub ack_escalate_after: Option<Duration>,
    pub ack_escalate_level: Level,
    /// At most this many of each kind of work per pass.
    pub batch: i64,
}

impl Default for SchedulerPolicy {
    fn default() -> Self {
        Self { ack_escalate_after: Some(Duration::minutes(15)), ack_escalate_level: Level::ORANGE, batch: 500 }
    }
}

impl Store {
    /// One scheduler pass as of `now`.
    pub async fn run_scheduler(&self, now: DateTime<Utc>, policy: &SchedulerPolicy) -> Result<SchedulerReport> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(SCHEDULER_LOCK).fetch_one(&mut *tx).await?;
        if !locked {
            return Ok(SchedulerReport { skipped: true, ..Default::default() });
        }
        let mut report = SchedulerReport::default();

        // Checkpoints, oldest first; remind before supervise before escalate when several are due.
        let due: Vec<(i64, String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT task_id, clock, stage, due_at FROM task_checkpoints WHERE fired_at IS NULL AND cancelled_at IS NULL \
             AND due_at <= $1 ORDER BY due_at, task_id, array_position(ARRAY['remind','supervise','escalate'], stage) \
             LIMIT $2",
        )
        .bind(now)
        .bind(policy.batch)
        .fetch_all(&mut *tx)
        .await?;
        for (task_id, clock, stage, due_at) in due {
            let Some(task) = task_in(&mut tx, task_id).await? else { continue };
            let running = match clock.as_str() {
                "sign" => task.state() == TaskState::Dispatched,
                _ => matches!(task.state(), TaskState::Signed | TaskState::InProgress | TaskState::Feedback),
            };
            if !running {
                sqlx::query("UPDATE task_checkpoints SET cancelled_at = $4 WHERE task_id = $1 AND clock = $2 AND stage = $3")
                    .bind(task_id)
                    .bind(&clock)
                    .bind(&stage)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                continue;
            }
            let deadline = if clock == "sign" { Some(task.sign_due) } else { task.handle_due };
            let limit = if clock == "sign" { &task.sign_limit } else { &task.handle_limit };
            event(
                &mut tx,
                &task,
                "system:scheduler",
                &stage,
                None,
                None,
                None,
                json!({"clock": clock, "due_at": due_at, "deadline": deadline, "limit": limit}),
                now,
            )
            .await?;
            sqlx::query("UPDATE task_checkpoints SET fired_at = $4 WHERE task_id = $1 AND clock = $2 AND stage = $3")
                .bind(task_id)
                .bind(&clock)
                .bind(&stage)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            report.fired.push(FiredCheckpoint { task_id, clock, stage, due_at });
        }

        // Red warnings of items whose policy says so become tasks for the responsible department.
        let red: Vec<i64> = sqlx::query_scalar(
            "SELECT w.id FROM warnings w WHERE w.level = 1 AND w.resolved_at IS NULL AND w.task_id IS NULL \
             AND NOT w.false_positive AND w.silenced_by IS NULL AND w.auto_dispatch_failed_at IS NULL \
             AND w.object_id IS NOT NULL \
             AND coalesce((SELECT p.auto_dispatch FROM task_policies p WHERE p.level = 1 AND p.item = w.item), \
                          (SELECT p.auto_dispatch FROM task_policies p WHERE p.level = 1 AND p.item = '*'), false) \
             ORDER BY w.id LIMIT $1 FOR UPDATE OF w SKIP LOCKED",
        )
        .bind(policy.batch)
        .fetch_all(&mut *tx)
        .await?;
        for id in red {
            let d = Dispatch {
                department_id: None,
                co_department_ids: vec![],
                title: None,
                description: None,
                level: None,
                item: None,
                by: "system:auto-dispatch".into(),
                at: now,
            };
            match dispatch_warning_in(&mut tx, id, &d).await? {
                Some(Ok(t)) => report.auto_dispatched.push((id, t.id)),
                Some(Err(r)) => {
                    warn!(warning = id, reason = %r.message, "automatic dispatch refused; the warning waits for a person");
                    sqlx::query("UPDATE warnings SET auto_dispatch_failed_at = $2 WHERE id = $1")
                        .bind(id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                None => {}
            }
        }

        // Warnings nobody acknowledged in time: once each, to the monitoring center's leader.
        if let Some(after) = policy.ack_escalate_after {
            let ids: Vec<i64> = sqlx::query_scalar(
                "UPDATE warnings SET ack_escalated_at = $1 WHERE id IN ( \
                   SELECT id FROM warnings WHERE resolved_at IS NULL AND acknowledged_at IS NULL \
                   AND ack_escalated_at IS NULL AND task_id IS NULL AND silenced_by IS NULL \
                   AND level <= $2 AND first_seen <= $3 ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING id",
            )
            .bind(now)
            .bind(policy.ack_escalate_level)
            .bind(now - after)
            .bind(policy.batch)
            .fetch_all(&mut *tx)
            .await?;
            for id in &ids {
                sqlx::query("INSERT INTO warning_escalations (warning_id, at, reason) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(now)
                    .bind(format!("无人确认超过 {} 分钟 / not acknowledged for {} min", after.num_minutes(), after.num_minutes()))
                    .execute(&mut *tx)
                    .await?;
            }
            report.escalated_warnings = ids;
        }
        tx.commit().await?;
        for (w, _) in &report.auto_dispatched {
            self.notify_warning(*w, "dispatched").await?;
        }
        Ok(report)
    }
}
