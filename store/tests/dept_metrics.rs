//! Re-supervision figures on a crafted history with answers worked out by hand: three departments
//! (A busy, B small, C idle), tasks in every state, returns, reviews, extensions, warnings and
//! complaint callbacks, some inside the period and some outside it.
//!
//! Times are minutes after T = 2026-06-10 00:00 UTC unless written out. The period is
//! [2026-06-01, 2026-06-29) UTC and "now" is 2026-06-30 00:00 UTC.

use anyhow::Result;
use chrono::{DateTime, Duration, TimeZone, Utc};
use offsite_store::dept_metrics::{DepartmentFigures, DepartmentSet, Period};
use offsite_store::testing::TestDb;
use offsite_store::{NewDepartment, NewDevice, Store};
use offsite_wire::DeviceId;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// T + `m` minutes.
fn t(m: i64) -> DateTime<Utc> {
    utc(2026, 6, 10, 0, 0) + Duration::minutes(m)
}

fn period() -> Period {
    Period::new(utc(2026, 6, 1, 0, 0), utc(2026, 6, 29, 0, 0)).unwrap()
}

fn now() -> DateTime<Utc> {
    utc(2026, 6, 30, 0, 0)
}

/// A task row as the workflow would have left it. Unset times are NULL.
#[derive(Clone)]
struct Task {
    department: i64,
    state: &'static str,
    dispatched: DateTime<Utc>,
    sign_due: DateTime<Utc>,
    signed: Option<DateTime<Utc>>,
    handle_due: Option<DateTime<Utc>>,
    closed: Option<DateTime<Utc>>,
    review_count: i32,
    first_review_rejected: Option<bool>,
    extension_count: i32,
}

impl Task {
    fn new(department: i64, state: &'static str, dispatched: DateTime<Utc>, sign_due: DateTime<Utc>) -> Self {
        Self {
            department,
            state,
            dispatched,
            sign_due,
            signed: None,
            handle_due: None,
            closed: None,
            review_count: 0,
            first_review_rejected: None,
            extension_count: 0,
        }
    }

    fn signed(mut self, at: DateTime<Utc>, handle_due: DateTime<Utc>) -> Self {
        self.signed = Some(at);
        self.handle_due = Some(handle_due);
        self
    }

    fn closed(mut self, at: DateTime<Utc>) -> Self {
        self.closed = Some(at);
        self
    }

    fn reviewed(mut self, count: i32, first_rejected: bool) -> Self {
        self.review_count = count;
        self.first_review_rejected = Some(first_rejected);
        self
    }

    fn extended(mut self, count: i32) -> Self {
        self.extension_count = count;
        self
    }

    async fn insert(&self, store: &Store) -> Result<i64> {
        let n: i64 = sqlx::query_scalar("SELECT nextval('task_no_seq')").fetch_one(store.pool()).await?;
        Ok(sqlx::query_scalar(
            "INSERT INTO tasks (task_no, title, source, level, department_id, state, sign_limit, handle_limit, \
             dispatched_at, dispatched_by, sign_due, signed_at, handle_due, closed_at, review_count, \
             first_review_rejected, extension_count, redo_count) \
             VALUES ($1, 'fixture', 'manual', 3, $2, $3, '30m', '24h', $4, 'monitor', $5, $6, $7, $8, $9, $10, $11, \
             CASE WHEN $10 THEN 1 ELSE 0 END) RETURNING id",
        )
        .bind(format!("RW20260610{n:06}"))
        .bind(self.department)
        .bind(self.state)
        .bind(self.dispatched)
        .bind(self.sign_due)
        .bind(self.signed)
        .bind(self.handle_due)
        .bind(self.closed)
        .bind(self.review_count)
        .bind(self.first_review_rejected)
        .bind(self.extension_count)
        .fetch_one(store.pool())
        .await?)
    }
}

async fn event(store: &Store, task: i64, action: &str, department: i64, at: DateTime<Utc>) -> Result<()> {
    sqlx::query("INSERT INTO task_events (task_id, at, actor, action, department_id) VALUES ($1, $2, 'x', $3, $4)")
        .bind(task)
        .bind(at)
        .bind(action)
        .bind(department)
        .execute(store.pool())
        .await?;
    Ok(())
}

async fn warning(store: &Store, device_key: i32, n: u32, task: Option<i64>, false_positive: bool) -> Result<()> {
    sqlx::query(
        "INSERT INTO warnings (dedup_key, source, source_version, event, level, device_key, detail, first_seen, \
         last_seen, resolved_at, resolution, false_positive, task_id) \
         VALUES ($1, 'rules', '1', 'fixture', 2, $2, 'fixture', $3, $3, $3, $4, $5, $6)",
    )
    .bind(format!("fixture|{n}"))
    .bind(device_key)
    .bind(t(0))
    .bind(if false_positive { "false_positive" } else { "manual" })
    .bind(false_positive)
    .bind(task)
    .execute(store.pool())
    .await?;
    Ok(())
}

async fn complaint(store: &Store, n: u32, task: i64, callback: Option<&str>) -> Result<()> {
    sqlx::query(
        "INSERT INTO complaints (tracking_no, service_code, description, submitter_ip, task_id, callback_result, \
         callback_at) VALUES ($1, 'noise', 'fixture', '127.0.0.1', $2, $3, CASE WHEN $3 IS NULL THEN NULL ELSE now() END)",
    )
    .bind(format!("TS20260610{n:010}"))
    .bind(task)
    .bind(callback)
    .execute(store.pool())
    .await?;
    Ok(())
}

struct Fixture {
    db: TestDb,
    a: i64,
    b: i64,
    c: i64,
}

async fn department(store: &Store, code: &str) -> Result<i64> {
    let d = NewDepartment { code: code.into(), name: format!("{code} 部门"), parent_id: None };
    Ok(store.insert_department(&d).await?.id)
}

/// The crafted history; the expected figures are worked out next to each test.
async fn fixture() -> Result<Fixture> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let (a, b, c) = (department(s, "dept-a").await?, department(s, "dept-b").await?, department(s, "dept-c").await?);
    let dev = s
        .insert_device(&NewDevice {
            id: DeviceId::parse("dfixture01")?,
            name: "fixture".into(),
            object_id: None,
            token_sha256: [1; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?
        .key;
    let day = 1440;

    // Department A, in the period.
    // A1: signed after 10 min (on time), closed 600 min after signing (on time); reviewed once, passed.
    let a1 = Task::new(a, "closed", t(0), t(30)).signed(t(10), t(10 + day)).closed(t(10 + 600)).reviewed(1, false);
    let a1 = a1.insert(s).await?;
    // A2: signed after 50 min (late), closed 1500 min after signing (late); first review rejected; one
    // extension.
    let a2 = Task::new(a, "archived", t(0), t(30)).signed(t(50), t(50 + day)).closed(t(50 + 1500));
    let a2 = a2.reviewed(2, true).extended(1).insert(s).await?;
    // A3: signed after 20 min (on time), still in progress past its handling due (T + 1 day + 20 min).
    let a3 = Task::new(a, "in_progress", t(0), t(30)).signed(t(20), t(20 + day)).insert(s).await?;
    // A4: dispatched exactly at the period's start, never signed, sign-for due long past.
    let from = period().from();
    let a4 = Task::new(a, "dispatched", from, from + Duration::minutes(30)).insert(s).await?;
    // A5: dispatched just before the period's end, its sign-for due still ahead of "now".
    Task::new(a, "dispatched", utc(2026, 6, 28, 23, 0), utc(2026, 6, 30, 2, 0)).insert(s).await?;
    // A6: signed exactly at its due (on time), feedback given, handling due (extended) ahead.
    let a6 = Task::new(a, "feedback", t(0), t(30)).signed(t(30), utc(2026, 7, 5, 0, 0)).extended(2);
    let a6 = a6.insert(s).await?;
    // R2: returned by A at T+15 and waiting for re-dispatch: no department's cohort, one return for A.
    let r2 = Task::new(a, "returned", t(0), t(30)).insert(s).await?;
    event(s, r2, "dispatched", a, t(0)).await?;
    event(s, r2, "returned", a, t(15)).await?;
    // R1: dispatched to A, returned by A at T+5, re-dispatched to B at T+60; B signed it after 10 min.
    let r1 = Task::new(b, "signed", t(60), t(90)).signed(t(70), utc(2026, 7, 10, 0, 0)).insert(s).await?;
    event(s, r1, "dispatched", a, t(0)).await?;
    event(s, r1, "returned", a, t(5)).await?;
    event(s, r1, "redispatched", b, t(60)).await?;
    event(s, r1, "signed", b, t(70)).await?;

    // Department A, outside the period.
    // A7: May, signed late, closed late; a false positive warning, a satisfied callback and a return,
    // all of which must not count.
    let may = utc(2026, 5, 20, 0, 0);
    let a7 = Task::new(a, "closed", may, may + Duration::minutes(30))
        .signed(may + Duration::minutes(90), may + Duration::minutes(90 + day))
        .closed(may + Duration::minutes(90 + 2 * day))
        .reviewed(1, true)
        .extended(1);
    let a7 = a7.insert(s).await?;
    event(s, a7, "returned", a, utc(2026, 5, 25, 0, 0)).await?;
    // A9: May, signed, handling due 2026-05-20 long past and still open: only in the "now" snapshot.
    let a9 = Task::new(a, "signed", utc(2026, 5, 15, 0, 0), utc(2026, 5, 15, 0, 30))
        .signed(utc(2026, 5, 15, 0, 10), utc(2026, 5, 20, 0, 0));
    a9.insert(s).await?;
    // A10: dispatched exactly at the period's end (excluded), closed on time.
    let end = period().to();
    Task::new(a, "closed", end, end + Duration::minutes(30))
        .signed(end + Duration::minutes(5), end + Duration::minutes(5 + day))
        .closed(end + Duration::minutes(65))
        .insert(s)
        .await?;
    // A transfer by A is not a return.
    event(s, a3, "transferred", a, t(3)).await?;

    // Department B, in the period.
    // B1: signed after 60 min (on time, due 120), closed 240 min after signing (on time); reviewed,
    // passed; a basically satisfied callback.
    let b1 = Task::new(b, "closed", t(0), t(120)).signed(t(60), t(60 + 3 * day)).closed(t(60 + 240)).reviewed(1, false);
    let b1 = b1.insert(s).await?;

    // Warnings: two on A1 (one a false positive), one on A4; one false positive on A7 (outside the
    // period); one false positive that never became a task.
    warning(s, dev, 1, Some(a1), false).await?;
    warning(s, dev, 2, Some(a1), true).await?;
    warning(s, dev, 3, Some(a4), false).await?;
    warning(s, dev, 4, Some(a7), true).await?;
    warning(s, dev, 5, None, true).await?;

    // Complaints: A1 satisfied, A2 dissatisfied, A3 not called back yet, A6 basically satisfied,
    // A7 (outside) satisfied, B1 basically satisfied.
    complaint(s, 1, a1, Some("satisfied")).await?;
    complaint(s, 2, a2, Some("dissatisfied")).await?;
    complaint(s, 3, a3, None).await?;
    complaint(s, 4, a6, Some("basically_satisfied")).await?;
    complaint(s, 5, a7, Some("satisfied")).await?;
    complaint(s, 6, b1, Some("basically_satisfied")).await?;
    Ok(Fixture { db, a, b, c })
}

fn entry(all: &[DepartmentFigures], id: i64) -> &DepartmentFigures {
    all.iter().find(|f| f.department_id == id).expect("an entry per department")
}

#[tokio::test]
async fn figures_match_the_hand_computed_answers() -> Result<()> {
    let f = fixture().await?;
    let all = f.db.store.department_figures(&DepartmentSet::All, period(), now()).await?;
    assert_eq!(
        all.iter().map(|d| d.department_code.as_str()).collect::<Vec<_>>(),
        ["dept-a", "dept-b", "dept-c"],
        "one entry per department, by code"
    );

    let a = entry(&all, f.a);
    // Cohort: A1..A6 (R2 is returned, A7/A9 are May, A10 is at the period's end).
    assert_eq!(a.tasks, 6);
    // Returns by A in the period: R1 at T+5 and R2 at T+15 (the May one is outside; a transfer is not one).
    assert_eq!((a.returns, a.received), (2, 8));
    assert_eq!(a.return_rate, Some(2.0 / 8.0));
    // Signed: A1 (10 min), A2 (50, late), A3 (20), A6 (30 = due, on time).
    assert_eq!((a.signed, a.signed_on_time), (4, 3));
    assert_eq!(a.on_time_sign_rate, Some(3.0 / 4.0));
    // Closed: A1 on time, A2 late.
    assert_eq!((a.closed, a.closed_on_time), (2, 1));
    assert_eq!(a.on_time_completion_rate, Some(1.0 / 2.0));
    // Sign-for overdue: A2 (late) and A4 (unsigned past due); A5 is not due yet.
    assert_eq!(a.sign_overdue, 2);
    // Handling overdue: A2 (closed late) and A3 (open past due); A6's due is ahead.
    assert_eq!(a.handle_overdue, 2);
    // Open and overdue now, whatever the period: A3, A4 and May's A9.
    assert_eq!(a.open_overdue_now, 3);
    // (10 + 50 + 20 + 30) / 4 and (600 + 1500) / 2.
    assert_eq!(a.mean_sign_minutes, Some(27.5));
    assert_eq!(a.mean_close_minutes, Some(1050.0));
    // Reviewed: A1, A2; A2's first review rejected.
    assert_eq!((a.reviewed, a.redone), (2, 1));
    assert_eq!(a.redo_rate, Some(1.0 / 2.0));
    // Extended: A2, A6 of 6.
    assert_eq!(a.extended, 2);
    assert_eq!(a.extension_rate, Some(2.0 / 6.0));
    // Warnings on A1 (2, one false positive) and A4 (1).
    assert_eq!((a.warnings_received, a.warnings_false_positive), (3, 1));
    assert_eq!(a.false_positive_rate, Some(1.0 / 3.0));
    // Called back: A1 satisfied, A2 dissatisfied, A6 basically satisfied (A3 not yet).
    assert_eq!((a.callbacks, a.callbacks_satisfied), (3, 2));
    assert_eq!(a.callback_satisfaction, Some(2.0 / 3.0));

    let b = entry(&all, f.b);
    // Cohort: R1 (re-dispatched to B) and B1.
    assert_eq!((b.tasks, b.returns, b.received), (2, 0, 2));
    assert_eq!(b.return_rate, Some(0.0));
    assert_eq!((b.signed, b.signed_on_time, b.on_time_sign_rate), (2, 2, Some(1.0)));
    assert_eq!((b.closed, b.closed_on_time, b.on_time_completion_rate), (1, 1, Some(1.0)));
    assert_eq!((b.sign_overdue, b.handle_overdue, b.open_overdue_now), (0, 0, 0));
    // (10 + 60) / 2 and 240.
    assert_eq!((b.mean_sign_minutes, b.mean_close_minutes), (Some(35.0), Some(240.0)));
    assert_eq!((b.reviewed, b.redone, b.redo_rate), (1, 0, Some(0.0)));
    assert_eq!((b.extended, b.extension_rate), (0, Some(0.0)));
    // No warnings reached B: no rate, not 0.
    assert_eq!((b.warnings_received, b.false_positive_rate), (0, None));
    assert_eq!((b.callbacks, b.callbacks_satisfied, b.callback_satisfaction), (1, 1, Some(1.0)));

    let c = entry(&all, f.c);
    let idle = DepartmentFigures {
        department_id: f.c,
        department_code: "dept-c".into(),
        department_name: "dept-c 部门".into(),
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
    assert_eq!(c, &idle, "the idle department has zeros and nulls");
    Ok(())
}

#[tokio::test]
async fn the_period_decides_which_tasks_count() -> Result<()> {
    let f = fixture().await?;
    let may = Period::new(utc(2026, 5, 1, 0, 0), utc(2026, 6, 1, 0, 0))?;
    let all = f.db.store.department_figures(&DepartmentSet::All, may, now()).await?;
    let a = entry(&all, f.a);
    // May: A7 and A9 only (A4 was dispatched at June 1 00:00, the end of this period).
    assert_eq!(a.tasks, 2);
    // The return of 2026-05-25.
    assert_eq!((a.returns, a.received), (1, 3));
    // A7 signed 90 min after a 30 min due; A9 after 10 of 30.
    assert_eq!((a.signed, a.signed_on_time, a.sign_overdue), (2, 1, 1));
    assert_eq!(a.mean_sign_minutes, Some(50.0));
    // A7 closed two days after signing, one day late; A9 is open past its due.
    assert_eq!((a.closed, a.closed_on_time, a.handle_overdue), (1, 0, 2));
    assert_eq!(a.mean_close_minutes, Some(2.0 * 1440.0));
    assert_eq!((a.redo_rate, a.extension_rate), (Some(1.0), Some(1.0 / 2.0)));
    assert_eq!((a.warnings_received, a.false_positive_rate), (1, Some(1.0)));
    assert_eq!((a.callbacks, a.callback_satisfaction), (1, Some(1.0)));
    // The snapshot does not depend on the period.
    assert_eq!(a.open_overdue_now, 3);
    // B had nothing in May.
    let b = entry(&all, f.b);
    assert_eq!((b.tasks, b.received, b.on_time_sign_rate, b.mean_sign_minutes), (0, 0, None, None));

    // A period holding only A10's dispatch moment.
    let end = period().to();
    let june29 = Period::new(end, end + Duration::days(1))?;
    let a = entry(&f.db.store.department_figures(&DepartmentSet::All, june29, now()).await?, f.a).clone();
    assert_eq!((a.tasks, a.closed_on_time, a.mean_close_minutes), (1, 1, Some(60.0)));
    Ok(())
}

#[tokio::test]
async fn only_the_departments_asked_for_get_entries() -> Result<()> {
    let f = fixture().await?;
    let some = f.db.store.department_figures(&DepartmentSet::Only(vec![f.b, f.c]), period(), now()).await?;
    assert_eq!(some.iter().map(|d| d.department_id).collect::<Vec<_>>(), [f.b, f.c]);
    assert_eq!(some[0].tasks, 2);
    let none = f.db.store.department_figures(&DepartmentSet::Only(vec![]), period(), now()).await?;
    assert!(none.is_empty());
    Ok(())
}
