//! Re-supervision figures (对监管的监管): how well each department responds to the tasks it is given,
//! over a period `[from, to)`, computed in one set-based query over `tasks`, `task_events`,
//! `warnings` and `complaints`.
//!
//! # Which tasks count
//!
//! The **cohort** of a department for a period is the tasks whose `dispatched_at` lies in
//! `[from, to)` and whose lead department (`tasks.department_id`) is that department now, except
//! tasks in state `returned` (given back and waiting for the monitoring center to re-dispatch
//! them: nobody handles them, and the return itself is counted, see below). A task transferred or
//! re-dispatched counts for the department that holds it now. Joint tasks count for their lead
//! department only. Every figure below except `returns` and `open_overdue_now` is over the cohort.
//!
//! # Figures (counts are whole numbers; a rate is `null` when its denominator is 0)
//!
//! - `tasks`: the cohort's size.
//! - `signed`: tasks with `signed_at`; `signed_on_time`: those with `signed_at <= sign_due`.
//!   **on-time sign-for rate** = `signed_on_time / signed`.
//! - `closed`: tasks with `closed_at`; `closed_on_time`: those with `closed_at <= handle_due`.
//!   **on-time completion rate** = `closed_on_time / closed`.
//! - **sign-for overdue** `sign_overdue`: signed late (`signed_at > sign_due`), or still unsigned
//!   and not closed with `sign_due` before the moment of the query.
//! - **handling overdue** `handle_overdue`: closed late (`closed_at > handle_due`), or still open
//!   (not closed, feedback awaiting review included) with `handle_due` before the moment of the
//!   query. A task never signed has no handling clock yet: it can only be sign-for overdue.
//! - **open and overdue now** `open_overdue_now`: a snapshot at the moment of the query, whatever
//!   the period: tasks the department holds now in state dispatched, signed, in_progress or
//!   feedback whose running clock is past due (unsigned and past `sign_due`, or signed and past
//!   `handle_due`).
//! - **mean time to sign** `mean_sign_minutes` = mean of `signed_at - dispatched_at` over signed
//!   tasks, in minutes; **mean time to close** `mean_close_minutes` = mean of
//!   `closed_at - signed_at` over closed tasks (the handling time, which is what the handling limit
//!   measures; `dispatched_at` stands in for a task closed without ever being signed), in minutes.
//!   `null` when there is nothing to average.
//! - `returns`: `returned` events in `[from, to)` whose `department_id` is the department (the
//!   department that gave the task back, whoever holds the task now); `received` =
//!   `tasks + returns` (every task it holds from the period, plus every task it received and gave
//!   back). **return rate** = `returns / received`.
//! - `reviewed`: tasks with `review_count > 0`; `redone`: those whose first review rejected the
//!   feedback (`first_review_rejected`). **redo rate** = `redone / reviewed`.
//! - `extended`: tasks with `extension_count > 0` (at least one extension approved).
//!   **extension rate** = `extended / tasks`.
//! - `warnings_received`: warnings dispatched or merged into a cohort task (`warnings.task_id`);
//!   `warnings_false_positive`: those closed as false positive. **false-positive rate** =
//!   `warnings_false_positive / warnings_received`. Warnings the monitoring center closed as false
//!   positive without making a task never reached a department, so they count for no department
//!   (they show up in the per-rule and per-model precision instead).
//! - `callbacks`: complaints turned into a cohort task that were called back (`callback_result`
//!   set); `callbacks_satisfied`: those `satisfied` or `basically_satisfied`. **complaint callback
//!   satisfaction** = `callbacks_satisfied / callbacks`.
//!
//! Every department in scope gets an entry, idle ones included (counts 0, rates and means `null`).

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::registers::FieldError;
use crate::Store;

/// A period `[from, to)`; `from` is always earlier than `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Period {
    /// Refuses an empty or reversed period.
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, FieldError> {
        if from >= to {
            return Err(FieldError::new("from", "from must be earlier than to", "开始时间 from 必须早于结束时间 to"));
        }
        Ok(Self { from, to })
    }

    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }

    pub fn to(&self) -> DateTime<Utc> {
        self.to
    }
}

/// Which departments get an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepartmentSet {
    /// Every department (administrators, monitoring center, reviewers, re-supervision).
    All,
    /// These departments only (a leader's subtree, a handler's own department).
    Only(Vec<i64>),
}

/// One department's figures over a period; see the module documentation for each formula.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepartmentFigures {
    pub department_id: i64,
    pub department_code: String,
    pub department_name: String,
    pub tasks: i64,
    pub received: i64,
    pub returns: i64,
    pub return_rate: Option<f64>,
    pub signed: i64,
    pub signed_on_time: i64,
    pub on_time_sign_rate: Option<f64>,
    pub closed: i64,
    pub closed_on_time: i64,
    pub on_time_completion_rate: Option<f64>,
    pub sign_overdue: i64,
    pub handle_overdue: i64,
    pub open_overdue_now: i64,
    pub mean_sign_minutes: Option<f64>,
    pub mean_close_minutes: Option<f64>,
    pub reviewed: i64,
    pub redone: i64,
    pub redo_rate: Option<f64>,
    pub extended: i64,
    pub extension_rate: Option<f64>,
    pub warnings_received: i64,
    pub warnings_false_positive: i64,
    pub false_positive_rate: Option<f64>,
    pub callbacks: i64,
    pub callbacks_satisfied: i64,
    pub callback_satisfaction: Option<f64>,
}

/// `part / whole`, or `None` when there is nothing to divide by.
pub fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

#[derive(sqlx::FromRow)]
struct Row {
    department_id: i64,
    department_code: String,
    department_name: String,
    tasks: i64,
    returns: i64,
    signed: i64,
    signed_on_time: i64,
    closed: i64,
    closed_on_time: i64,
    sign_overdue: i64,
    handle_overdue: i64,
    open_overdue_now: i64,
    mean_sign_minutes: Option<f64>,
    mean_close_minutes: Option<f64>,
    reviewed: i64,
    redone: i64,
    extended: i64,
    warnings_received: i64,
    warnings_false_positive: i64,
    callbacks: i64,
    callbacks_satisfied: i64,
}

impl From<Row> for DepartmentFigures {
    fn from(r: Row) -> Self {
        let received = r.tasks + r.returns;
        Self {
            department_id: r.department_id,
            department_code: r.department_code,
            department_name: r.department_name,
            tasks: r.tasks,
            received,
            returns: r.returns,
            return_rate: rate(r.returns, received),
            signed: r.signed,
            signed_on_time: r.signed_on_time,
            on_time_sign_rate: rate(r.signed_on_time, r.signed),
            closed: r.closed,
            closed_on_time: r.closed_on_time,
            on_time_completion_rate: rate(r.closed_on_time, r.closed),
            sign_overdue: r.sign_overdue,
            handle_overdue: r.handle_overdue,
            open_overdue_now: r.open_overdue_now,
            mean_sign_minutes: r.mean_sign_minutes,
            mean_close_minutes: r.mean_close_minutes,
            reviewed: r.reviewed,
            redone: r.redone,
            redo_rate: rate(r.redone, r.reviewed),
            extended: r.extended,
            extension_rate: rate(r.extended, r.tasks),
            warnings_received: r.warnings_received,
            warnings_false_positive: r.warnings_false_positive,
            false_positive_rate: rate(r.warnings_false_positive, r.warnings_received),
            callbacks: r.callbacks,
            callbacks_satisfied: r.callbacks_satisfied,
            callback_satisfaction: rate(r.callbacks_satisfied, r.callbacks),
        }
    }
}

/// One statement: each source is aggregated per department once (the cohort through
/// `tasks_dispatched_idx`, returns through `task_events_action_idx`, the snapshot through
/// `tasks_state_idx`, warnings and complaints through their `task_id` indexes joined to the cohort),
/// then joined onto the departments in scope, so idle departments get a row. The cohort's
/// conditions are repeated rather than shared through a CTE: a CTE read three times would be
/// materialised (spilling to disk at a month of a big city's tasks) and gain nothing.
/// `$1` from, `$2` to, `$3` now, `$4` every department?, `$5` the departments otherwise.
const FIGURES_SQL: &str = r#"
WITH scope AS (
    SELECT id, code, name FROM departments WHERE $4 OR id = ANY($5)
), task_figures AS (
    SELECT department_id,
        count(*) AS tasks,
        count(signed_at) AS signed,
        count(*) FILTER (WHERE signed_at <= sign_due) AS signed_on_time,
        count(closed_at) AS closed,
        count(*) FILTER (WHERE closed_at <= handle_due) AS closed_on_time,
        count(*) FILTER (WHERE signed_at > sign_due
                            OR (signed_at IS NULL AND closed_at IS NULL AND sign_due < $3)) AS sign_overdue,
        count(*) FILTER (WHERE closed_at > handle_due
                            OR (closed_at IS NULL AND handle_due < $3)) AS handle_overdue,
        -- date_part is double precision; extract() would go through numeric, several times slower.
        avg(date_part('epoch', signed_at - dispatched_at)) / 60 AS mean_sign_minutes,
        avg(date_part('epoch', closed_at - coalesce(signed_at, dispatched_at))) / 60 AS mean_close_minutes,
        count(*) FILTER (WHERE review_count > 0) AS reviewed,
        count(*) FILTER (WHERE review_count > 0 AND first_review_rejected) AS redone,
        count(*) FILTER (WHERE extension_count > 0) AS extended
    FROM tasks
    WHERE dispatched_at >= $1 AND dispatched_at < $2 AND state <> 'returned'
      AND ($4 OR department_id = ANY($5))
    GROUP BY department_id
), warning_figures AS (
    SELECT t.department_id, count(*) AS received, count(*) FILTER (WHERE w.false_positive) AS false_positive
    FROM warnings w JOIN tasks t ON t.id = w.task_id
    WHERE t.dispatched_at >= $1 AND t.dispatched_at < $2 AND t.state <> 'returned'
      AND ($4 OR t.department_id = ANY($5))
    GROUP BY t.department_id
), callback_figures AS (
    SELECT t.department_id, count(*) AS callbacks,
        count(*) FILTER (WHERE k.callback_result IN ('satisfied', 'basically_satisfied')) AS satisfied
    FROM complaints k JOIN tasks t ON t.id = k.task_id
    WHERE k.callback_result IS NOT NULL
      AND t.dispatched_at >= $1 AND t.dispatched_at < $2 AND t.state <> 'returned'
      AND ($4 OR t.department_id = ANY($5))
    GROUP BY t.department_id
), return_figures AS (
    SELECT department_id, count(*) AS returns FROM task_events
    WHERE action = 'returned' AND at >= $1 AND at < $2 AND department_id IS NOT NULL
      AND ($4 OR department_id = ANY($5))
    GROUP BY department_id
), open_figures AS (
    SELECT department_id, count(*) AS open_overdue_now FROM tasks
    WHERE state IN ('dispatched', 'signed', 'in_progress', 'feedback')
      AND CASE WHEN signed_at IS NULL THEN sign_due < $3 ELSE handle_due < $3 END
      AND ($4 OR department_id = ANY($5))
    GROUP BY department_id
)
SELECT s.id AS department_id, s.code AS department_code, s.name AS department_name,
    coalesce(t.tasks, 0) AS tasks,
    coalesce(r.returns, 0) AS returns,
    coalesce(t.signed, 0) AS signed,
    coalesce(t.signed_on_time, 0) AS signed_on_time,
    coalesce(t.closed, 0) AS closed,
    coalesce(t.closed_on_time, 0) AS closed_on_time,
    coalesce(t.sign_overdue, 0) AS sign_overdue,
    coalesce(t.handle_overdue, 0) AS handle_overdue,
    coalesce(o.open_overdue_now, 0) AS open_overdue_now,
    t.mean_sign_minutes,
    t.mean_close_minutes,
    coalesce(t.reviewed, 0) AS reviewed,
    coalesce(t.redone, 0) AS redone,
    coalesce(t.extended, 0) AS extended,
    coalesce(w.received, 0) AS warnings_received,
    coalesce(w.false_positive, 0) AS warnings_false_positive,
    coalesce(k.callbacks, 0) AS callbacks,
    coalesce(k.satisfied, 0) AS callbacks_satisfied
FROM scope s
LEFT JOIN task_figures t ON t.department_id = s.id
LEFT JOIN return_figures r ON r.department_id = s.id
LEFT JOIN open_figures o ON o.department_id = s.id
LEFT JOIN warning_figures w ON w.department_id = s.id
LEFT JOIN callback_figures k ON k.department_id = s.id
ORDER BY s.code
"#;

impl Store {
    /// The re-supervision figures of every department in `departments` over `period`, by
    /// department code; `now` is the moment "still unsigned/open past due" is judged at.
    pub async fn department_figures(
        &self,
        departments: &DepartmentSet,
        period: Period,
        now: DateTime<Utc>,
    ) -> Result<Vec<DepartmentFigures>> {
        let (all, ids) = match departments {
            DepartmentSet::All => (true, Vec::new()),
            DepartmentSet::Only(ids) => (false, ids.clone()),
        };
        let rows: Vec<Row> = sqlx::query_as(FIGURES_SQL)
            .bind(period.from)
            .bind(period.to)
            .bind(now)
            .bind(all)
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(DepartmentFigures::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_none_without_a_denominator() {
        assert_eq!(rate(0, 0), None);
        assert_eq!(rate(3, 0), None);
        assert_eq!(rate(0, 4), Some(0.0));
        assert_eq!(rate(1, 3), Some(1.0 / 3.0));
    }

    #[test]
    fn a_period_must_not_be_empty() {
        let t = Utc::now();
        assert!(Period::new(t, t).is_err());
        assert!(Period::new(t, t - chrono::Duration::seconds(1)).is_err());
        let p = Period::new(t - chrono::Duration::days(1), t).unwrap();
        assert_eq!(p.to(), t);
    }
}
