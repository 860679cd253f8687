//! Re-supervision figures (对监管的监管): `GET /api/v1/metrics/departments?from=&to=`, one entry per
//! department in the caller's view, idle ones included. The formulas are those of
//! `offsite_store::dept_metrics`; [`DESCRIPTION`] repeats them for the API docs.
//!
//! Who reads what: the system administrator, the monitoring center, reviewers and re-supervision
//! see every department; a leader sees their department and its sub-departments; a handler their
//! own department. The security and audit administrators see no business data (403).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use offsite_store::auth::Role;
use offsite_store::calendar::china;
use offsite_store::dept_metrics::{DepartmentFigures, DepartmentSet, Period};
use serde::{Deserialize, Serialize};

use crate::auth::{forbidden, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::AppState;

/// The period when `from` is not given: the 30 days before `to`.
pub const DEFAULT_DAYS: i64 = 30;

/// Roles that see every department's figures.
const SEE_ALL: [Role; 4] = [Role::SystemAdmin, Role::Monitor, Role::Reviewer, Role::Resupervision];

/// The operation's description in the OpenAPI document: the period and every formula.
pub const DESCRIPTION: &str = "\
Period: `from` (inclusive) and `to` (exclusive), each an RFC 3339 time or a date `YYYY-MM-DD` of \
Asia/Shanghai (as `from`, that day's start; as `to`, that day's end, so `from=2026-06-01&to=2026-06-30` \
is all of June). Both optional: `to` defaults to now, `from` to 30 days before `to`; `from` must be \
earlier than `to` (400 otherwise). The response echoes the period in UTC and `as_of`, the moment \
overdue-ness was judged.\n\n\
Which tasks count (the cohort): tasks dispatched in the period whose lead department is the \
department now, except tasks in state `returned` (waiting for re-dispatch). Transferred and \
re-dispatched tasks count for the department holding them; joint tasks for their lead. A rate is \
`null` when its denominator is 0.\n\n\
- on_time_sign_rate = signed_on_time / signed (signed: tasks with signed_at; on time: signed_at <= sign_due)\n\
- on_time_completion_rate = closed_on_time / closed (closed: tasks with closed_at; on time: closed_at <= handle_due)\n\
- sign_overdue = tasks signed late (signed_at > sign_due) + tasks not signed, not closed, with sign_due before as_of\n\
- handle_overdue = tasks closed late (closed_at > handle_due) + tasks not closed (feedback included) with handle_due before as_of\n\
- open_overdue_now = tasks the department holds now (dispatched, signed, in_progress or feedback; any dispatch date) \
whose running clock is past due: unsigned and sign_due before as_of, or signed and handle_due before as_of\n\
- mean_sign_minutes = mean of (signed_at - dispatched_at) over signed tasks, in minutes\n\
- mean_close_minutes = mean of (closed_at - signed_at) over closed tasks, in minutes (the handling time; \
dispatched_at for a task closed without being signed)\n\
- return_rate = returns / received, where returns = `returned` events in the period made by the department \
(whoever holds the task now) and received = tasks + returns\n\
- redo_rate = redone / reviewed (reviewed: review_count > 0; redone: the first review rejected the feedback)\n\
- extension_rate = extended / tasks (extended: at least one extension approved)\n\
- false_positive_rate = warnings_false_positive / warnings_received (warnings dispatched or merged into the \
department's cohort tasks; warnings closed as false positive without a task reach no department)\n\
- callback_satisfaction = callbacks_satisfied / callbacks (complaints turned into cohort tasks and called back; \
satisfied = satisfied + basically_satisfied)\n\n\
每个部门一条（含无任务的部门）：按时签收率 = 按时签收数 / 签收数；按时办结率 = 按时办结数 / 办结数；签收超期、办理超期、当前在办超期数；\
平均签收时长（签收 - 派发）与平均办理时长（办结 - 签收），单位分钟；退回率 = 退回次数 /（任务数 + 退回次数）；\
返工率 = 首次审核被驳回数 / 已审核数；延期率 = 有延期的任务数 / 任务数；误报率 = 误报预警数 / 派至该部门的预警数；\
回访满意率 =（满意 + 基本满意）/ 已回访数。分母为 0 时比率为 null。";

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Figures {
    pub items: Vec<DepartmentFigures>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub from: DateTime<Utc>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub to: DateTime<Utc>,
    /// When "still unsigned/open past due" was judged.
    #[serde(serialize_with = "crate::time::serialize")]
    pub as_of: DateTime<Utc>,
}

/// Which end of the period a parameter gives: a bare date means the start of that day as `from`
/// and its end as `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    From,
    To,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::From => "from",
            End::To => "to",
        }
    }
}

/// An RFC 3339 time, or a date of Asia/Shanghai; `None` when not given.
fn parse_bound(raw: Option<&str>, end: End) -> ApiResult<Option<DateTime<Utc>>> {
    let Some(s) = raw.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(None) };
    if let Some(t) = crate::time::parse(s) {
        return Ok(Some(t));
    }
    let day = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| match end {
        End::From => Some(d),
        End::To => d.succ_opt(),
    });
    let start = day.and_then(|d| china().from_local_datetime(&d.and_hms_opt(0, 0, 0)?).single());
    match start {
        Some(t) => Ok(Some(t.with_timezone(&Utc))),
        None => {
            let name = end.name();
            Err(ApiError::bad_request(
                format!(
                    "{name} must be an RFC 3339 time (2026-06-01T08:00:00+08:00) or a date (2026-06-01), got {s:?}"
                ),
                format!("参数 {name} 必须是 RFC 3339 时间（如 2026-06-01T08:00:00+08:00）或日期（如 2026-06-01）"),
            ))
        }
    }
}

/// The period asked for, defaults filled in, judged at `now`.
fn period(p: &Params, now: DateTime<Utc>) -> ApiResult<Period> {
    let to = parse_bound(p.to.as_deref(), End::To)?.unwrap_or(now);
    let from = parse_bound(p.from.as_deref(), End::From)?.unwrap_or(to - Duration::days(DEFAULT_DAYS));
    Period::new(from, to).map_err(|e| ApiError::unprocessable(e.message_en, e.message_zh))
}

/// The departments whose figures the caller may read; 403 for roles without business data.
async fn departments(state: &AppState, who: &Principal) -> ApiResult<DepartmentSet> {
    if who.has_any(&SEE_ALL) {
        return Ok(DepartmentSet::All);
    }
    let own = who.session.user.department_id;
    if who.has(Role::Leader) {
        let ids = match own {
            Some(d) => state.store.department_subtree(d).await?,
            None => vec![],
        };
        return Ok(DepartmentSet::Only(ids));
    }
    if who.has(Role::Handler) {
        return Ok(DepartmentSet::Only(own.into_iter().collect()));
    }
    Err(forbidden())
}

pub async fn departments_figures(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(p): ApiQuery<Params>,
) -> ApiResult<Json<Figures>> {
    let set = departments(&state, &who).await?;
    let now = Utc::now();
    let period = period(&p, now)?;
    let items = state.store.department_figures(&set, period, now).await?;
    Ok(Json(Figures { items, from: period.from(), to: period.to(), as_of: now }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(from: Option<&str>, to: Option<&str>) -> Params {
        Params { from: from.map(Into::into), to: to.map(Into::into) }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        crate::time::parse(s).unwrap()
    }

    #[test]
    fn dates_are_shanghai_days_and_to_is_the_end_of_its_day() {
        let now = utc("2026-07-15T00:00:00Z");
        let p = period(&params(Some("2026-06-01"), Some("2026-06-30")), now).unwrap();
        assert_eq!(p.from(), utc("2026-05-31T16:00:00Z"));
        assert_eq!(p.to(), utc("2026-06-30T16:00:00Z"));
        // One day is a valid period.
        let p = period(&params(Some("2026-06-01"), Some("2026-06-01")), now).unwrap();
        assert_eq!(p.to() - p.from(), Duration::days(1));
    }

    #[test]
    fn defaults_are_the_last_30_days() {
        let now = utc("2026-07-15T00:00:00Z");
        let p = period(&params(None, None), now).unwrap();
        assert_eq!((p.from(), p.to()), (now - Duration::days(30), now));
        let p = period(&params(None, Some("2026-07-01T00:00:00Z")), now).unwrap();
        assert_eq!(p.from(), utc("2026-06-01T00:00:00Z"));
        let p = period(&params(Some("2026-07-01T08:00:00+08:00"), None), now).unwrap();
        assert_eq!((p.from(), p.to()), (utc("2026-07-01T00:00:00Z"), now));
    }

    #[test]
    fn bad_or_empty_periods_are_refused() {
        let now = utc("2026-07-15T00:00:00Z");
        for (from, to) in [
            (Some("2026-06-02"), Some("2026-06-01")),
            (Some("2026-06-01T00:00:00Z"), Some("2026-06-01T00:00:00Z")),
            (Some("2026-08-01"), None),
            (Some("yesterday"), None),
            (None, Some("2026-13-01")),
            (Some("2026-06-01T25:00:00Z"), None),
        ] {
            let e = period(&params(from, to), now).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{from:?} {to:?}");
        }
    }
}
