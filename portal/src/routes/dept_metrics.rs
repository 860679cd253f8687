//! Re-supervision figures (对监管的监管): `GET /api/v1/metrics/departments?from=&to=`, one entry per
//! department in the caller's view, idle ones included. The formulas are those of
//! `offsite_store::dept_metrics`; [`DESCRIPTION`] repeats them for the API docs.
//!
//! Who reads what: the system administrator, the monitoring center, reviewers and re-supervision
//! see every department; a leader sees their department and its sub-departments; a handler their
//! own department. The security and audit administrators see no business data (403).

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
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

/// The figures the caller may read for the period asked for, judged now.
async fn figures(state: &AppState, who: &Principal, p: &Params) -> ApiResult<Figures> {
    let set = departments(state, who).await?;
    let now = Utc::now();
    let period = period(p, now)?;
    let items = state.store.department_figures(&set, period, now).await?;
    Ok(Figures { items, from: period.from(), to: period.to(), as_of: now })
}

pub async fn departments_figures(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(p): ApiQuery<Params>,
) -> ApiResult<Json<Figures>> {
    Ok(Json(figures(&state, &who, &p).await?))
}

/// How a column's value is written in the spreadsheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    Count,
    /// A fraction shown as a percentage (the cell holds the fraction itself).
    Rate,
    Minutes,
}

/// The export's columns: the JSON field each one shows and its Chinese header, in the order of
/// the spreadsheet. Every field of [`DepartmentFigures`] is here (a test checks it).
pub const EXPORT_COLUMNS: &[(&str, &str, ColumnKind)] = &[
    ("department_code", "部门编码", ColumnKind::Text),
    ("department_name", "部门名称", ColumnKind::Text),
    ("department_id", "部门ID", ColumnKind::Count),
    ("tasks", "任务数", ColumnKind::Count),
    ("received", "接收数", ColumnKind::Count),
    ("returns", "退回次数", ColumnKind::Count),
    ("return_rate", "退回率", ColumnKind::Rate),
    ("signed", "签收数", ColumnKind::Count),
    ("signed_on_time", "按时签收数", ColumnKind::Count),
    ("on_time_sign_rate", "按时签收率", ColumnKind::Rate),
    ("closed", "办结数", ColumnKind::Count),
    ("closed_on_time", "按时办结数", ColumnKind::Count),
    ("on_time_completion_rate", "按时办结率", ColumnKind::Rate),
    ("sign_overdue", "签收超期数", ColumnKind::Count),
    ("handle_overdue", "办理超期数", ColumnKind::Count),
    ("open_overdue_now", "当前在办超期数", ColumnKind::Count),
    ("mean_sign_minutes", "平均签收时长（分钟）", ColumnKind::Minutes),
    ("mean_close_minutes", "平均办理时长（分钟）", ColumnKind::Minutes),
    ("reviewed", "已审核数", ColumnKind::Count),
    ("redone", "返工数", ColumnKind::Count),
    ("redo_rate", "返工率", ColumnKind::Rate),
    ("extended", "延期任务数", ColumnKind::Count),
    ("extension_rate", "延期率", ColumnKind::Rate),
    ("warnings_received", "派至预警数", ColumnKind::Count),
    ("warnings_false_positive", "误报预警数", ColumnKind::Count),
    ("false_positive_rate", "误报率", ColumnKind::Rate),
    ("callbacks", "回访数", ColumnKind::Count),
    ("callbacks_satisfied", "回访满意数", ColumnKind::Count),
    ("callback_satisfaction", "回访满意率", ColumnKind::Rate),
];

/// The first sheet's name; the second one says which period and moment the figures are for.
pub const EXPORT_SHEET: &str = "部门履职统计";
pub const EXPORT_NOTES_SHEET: &str = "统计说明";

fn shanghai(t: &DateTime<Utc>) -> String {
    t.with_timezone(&china()).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The figures as an XLSX workbook: one row per department under Chinese headers (a missing rate
/// or mean is an empty cell), and a sheet naming the period and the moment of judgement.
fn figures_xlsx(f: &Figures) -> anyhow::Result<Vec<u8>> {
    use rust_xlsxwriter::{Format, Workbook};
    let header = Format::new().set_bold();
    let percent = Format::new().set_num_format("0.0%");
    let minutes = Format::new().set_num_format("0.0");
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name(EXPORT_SHEET)?;
    for (c, (_, title, _)) in EXPORT_COLUMNS.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *title, &header)?;
        ws.set_column_width(c as u16, if c < 2 { 18 } else { 12 })?;
    }
    ws.set_freeze_panes(1, 2)?;
    for (r, item) in f.items.iter().enumerate() {
        let row = r as u32 + 1;
        let v = serde_json::to_value(item)?;
        for (c, (key, _, kind)) in EXPORT_COLUMNS.iter().enumerate() {
            let col = c as u16;
            match (kind, &v[*key]) {
                (_, serde_json::Value::Null) => {}
                (ColumnKind::Text, x) => {
                    ws.write_string(row, col, x.as_str().unwrap_or_default())?;
                }
                (ColumnKind::Count, x) => {
                    ws.write_number(row, col, x.as_f64().unwrap_or_default())?;
                }
                (ColumnKind::Rate, x) => {
                    ws.write_number_with_format(row, col, x.as_f64().unwrap_or_default(), &percent)?;
                }
                (ColumnKind::Minutes, x) => {
                    ws.write_number_with_format(row, col, x.as_f64().unwrap_or_default(), &minutes)?;
                }
            }
        }
    }
    let notes = wb.add_worksheet();
    notes.set_name(EXPORT_NOTES_SHEET)?;
    notes.set_column_width(0, 16)?;
    notes.set_column_width(1, 60)?;
    let lines = [
        ("统计开始（含）", shanghai(&f.from)),
        ("统计结束（不含）", shanghai(&f.to)),
        ("超期判定时刻", shanghai(&f.as_of)),
        ("时区", "Asia/Shanghai（北京时间）".to_owned()),
        ("口径", "统计期间内派发、现由该部门主办的任务（不含待重新派发的退回任务）；分母为 0 的比率留空".to_owned()),
    ];
    for (r, (k, v)) in lines.iter().enumerate() {
        notes.write_string_with_format(r as u32, 0, *k, &header)?;
        notes.write_string(r as u32, 1, v)?;
    }
    Ok(wb.save_to_buffer()?)
}

/// `GET /api/v1/metrics/departments/export`: the same figures as XLSX, same parameters and rights.
pub async fn export_figures(
    State(state): State<AppState>,
    who: Principal,
    ApiQuery(p): ApiQuery<Params>,
) -> ApiResult<Response> {
    let f = figures(&state, &who, &p).await?;
    let bytes = figures_xlsx(&f)?;
    let day = |t: &DateTime<Utc>| t.with_timezone(&china()).format("%Y%m%d").to_string();
    // Named by the first and last day held (`to` itself is excluded).
    let last = f.to - Duration::seconds(1);
    let name = format!("department-metrics-{}-{}.xlsx", day(&f.from), day(&last));
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(XLSX_TYPE));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

const XLSX_TYPE: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

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
    fn the_export_has_one_column_per_figure() {
        let figures = DepartmentFigures {
            department_id: 1,
            department_code: "c".into(),
            department_name: "n".into(),
            tasks: 0,
            received: 0,
            returns: 0,
            return_rate: None,
            signed: 0,
            signed_on_time: 0,
            on_time_sign_rate: None,
            closed: 0,
            closed_on_time: 0,
            on_time_completion_rate: None,
            sign_overdue: 0,
            handle_overdue: 0,
            open_overdue_now: 0,
            mean_sign_minutes: None,
            mean_close_minutes: None,
            reviewed: 0,
            redone: 0,
            redo_rate: None,
            extended: 0,
            extension_rate: None,
            warnings_received: 0,
            warnings_false_positive: 0,
            false_positive_rate: None,
            callbacks: 0,
            callbacks_satisfied: 0,
            callback_satisfaction: None,
        };
        let v = serde_json::to_value(&figures).unwrap();
        let mut fields: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut columns: Vec<&str> = EXPORT_COLUMNS.iter().map(|c| c.0).collect();
        fields.sort_unstable();
        columns.sort_unstable();
        assert_eq!(columns, fields);
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
