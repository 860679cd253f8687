//! The task scheduler against a real PostgreSQL with a controllable clock: reminders, supervision
//! and escalation at 50/100/150% of limits across a weekend, a public holiday and a make-up working
//! day; once only, even when passes overlap; automatic dispatch of red warnings; escalation of
//! warnings nobody acknowledged.

use anyhow::Result;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use offsite_store::calendar::china;
use offsite_store::tasks::{
    Action, CalendarDay, CalendarDayKind, NewTask, SchedulerPolicy, TaskPolicy, TaskSource, TaskState,
};
use offsite_store::testing::TestDb;
use offsite_store::{Condition, Level, NewDevice, NewRule, NewWarning, Scope, Store};
use offsite_wire::DeviceId;
use serde_json::json;

/// A moment in Asia/Shanghai.
fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    china().with_ymd_and_hms(y, m, d, h, min, 0).unwrap().with_timezone(&Utc)
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// National Day 2026 as an administrator would enter it: 1-7 Oct off, Sun 27 Sep and Sat 10 Oct
/// worked instead.
async fn national_day(store: &Store) -> Result<()> {
    for d in 1..=7 {
        store
            .set_calendar_day(&CalendarDay { day: day(2026, 10, d), kind: CalendarDayKind::Holiday, name: Some("国庆节".into()) }, "admin")
            .await?;
    }
    for (m, d) in [(9, 27), (10, 10)] {
        store
            .set_calendar_day(&CalendarDay { day: day(2026, m, d), kind: CalendarDayKind::Workday, name: Some("调休".into()) }, "admin")
            .await?;
    }
    Ok(())
}

async fn setup() -> Result<(TestDb, i64)> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    national_day(&db.store).await?;
    // Item "wd": sign within 4 hours, handle within 2 working days; "wd1": 1 working day.
    for (item, handle) in [("wd", "2wd"), ("wd1", "1wd")] {
        db.store
            .set_task_policy(
                &TaskPolicy {
                    item: item.into(),
                    level: Level::YELLOW,
                    sign_limit: "4h".into(),
                    handle_limit: handle.into(),
                    auto_dispatch: false,
                    reviewer_department_id: None,
                },
                "admin",
            )
            .await?;
    }
    let housing = db.store.department_by_code("housing-construction").await?.unwrap().id;
    Ok((db, housing))
}

async fn dispatch(store: &Store, department: i64, item: &str, when: DateTime<Utc>) -> Result<i64> {
    let t = NewTask {
        title: "核查".into(),
        description: String::new(),
        source: TaskSource::Manual,
        source_ref: None,
        level: Level::YELLOW,
        item: Some(item.into()),
        object_id: Some("demo-site-01".into()),
        department_id: department,
        co_department_ids: vec![],
        dispatched_by: "mon".into(),
        at: when,
    };
    Ok(store.dispatch_task(&t).await?.map_err(|r| anyhow::anyhow!("{r:?}"))?.id)
}

/// (clock, stage) fired by one pass at `now`, for `task`.
async fn pass(store: &Store, now: DateTime<Utc>, task: i64) -> Result<Vec<(String, String)>> {
    let r = store.run_scheduler(now, &SchedulerPolicy { ack_escalate_after: None, ..Default::default() }).await?;
    assert!(!r.skipped);
    Ok(r.fired.into_iter().filter(|f| f.task_id == task).map(|f| (f.clock, f.stage)).collect())
}

fn fired(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(c, s)| (c.to_string(), s.to_string())).collect()
}

async fn act(store: &Store, id: i64, a: Action, when: DateTime<Utc>) -> Result<()> {
    store.act_on_task(id, "h", &a, when).await?.unwrap().map_err(|r| anyhow::anyhow!("{r:?}"))?;
    Ok(())
}

#[tokio::test]
async fn sign_for_clock_then_handling_clock_across_a_make_up_sunday() -> Result<()> {
    let (db, housing) = setup().await?;
    let s = &db.store;
    // Friday 25 Sep 10:00; sign-for limit 4 h: 12:00 remind, 14:00 supervise, 16:00 escalate.
    let id = dispatch(s, housing, "wd", at(2026, 9, 25, 10, 0)).await?;
    assert_eq!(pass(s, at(2026, 9, 25, 11, 59), id).await?, fired(&[]));
    assert_eq!(pass(s, at(2026, 9, 25, 12, 0), id).await?, fired(&[("sign", "remind")]));
    assert_eq!(pass(s, at(2026, 9, 25, 12, 30), id).await?, fired(&[]), "once only");
    assert_eq!(pass(s, at(2026, 9, 25, 14, 0), id).await?, fired(&[("sign", "supervise")]));
    // Signed late (after supervision) at 15:00: the sign-for escalation is cancelled; the handling
    // clock runs 2 working days: Saturday is off, Sunday 27 is a make-up working day.
    act(s, id, Action::Sign, at(2026, 9, 25, 15, 0)).await?;
    let t = s.task(id).await?.unwrap();
    assert_eq!(t.handle_due, Some(at(2026, 9, 28, 15, 0)), "Sun 27 (make-up) + Mon 28");
    assert_eq!(pass(s, at(2026, 9, 25, 16, 0), id).await?, fired(&[]), "sign-for clock stopped");
    assert_eq!(pass(s, at(2026, 9, 26, 23, 0), id).await?, fired(&[]), "Saturday is off");
    assert_eq!(pass(s, at(2026, 9, 27, 15, 0), id).await?, fired(&[("handle", "remind")]), "50% on the make-up Sunday");
    assert_eq!(pass(s, at(2026, 9, 28, 15, 0), id).await?, fired(&[("handle", "supervise")]));
    assert_eq!(pass(s, at(2026, 9, 29, 14, 59), id).await?, fired(&[]));
    assert_eq!(pass(s, at(2026, 9, 29, 15, 0), id).await?, fired(&[("handle", "escalate")]), "150%: 3 working days");
    let events: Vec<String> = s.task_events(id).await?.into_iter().map(|e| e.action).collect();
    assert_eq!(events, ["dispatched", "remind", "supervise", "signed", "remind", "supervise", "escalate"]);
    let ev = s.task_events(id).await?;
    assert_eq!(ev[1].actor, "system:scheduler");
    assert_eq!(ev[1].at, at(2026, 9, 25, 12, 0), "events carry the scheduler's clock");
    assert_eq!(ev[1].detail["clock"], "sign");
    Ok(())
}

#[tokio::test]
async fn a_holiday_week_and_a_weekend_are_skipped() -> Result<()> {
    let (db, housing) = setup().await?;
    let s = &db.store;
    // Wednesday 30 Sep 10:00, signed at once, 1 working day: 50% at 22:00 (half a working day on
    // the calendar), due Thursday 8 Oct 10:00 after the holiday week, 150% at 22:00 that day.
    let id = dispatch(s, housing, "wd1", at(2026, 9, 30, 10, 0)).await?;
    act(s, id, Action::Sign, at(2026, 9, 30, 10, 0)).await?;
    assert_eq!(s.task(id).await?.unwrap().handle_due, Some(at(2026, 10, 8, 10, 0)));
    assert_eq!(pass(s, at(2026, 9, 30, 22, 0), id).await?, fired(&[("handle", "remind")]));
    assert_eq!(pass(s, at(2026, 10, 5, 12, 0), id).await?, fired(&[]), "nothing during the holiday");
    assert_eq!(pass(s, at(2026, 10, 8, 10, 0), id).await?, fired(&[("handle", "supervise")]));

    // Friday 6 Nov 09:00 + 1 working day: due Monday 9 Nov 09:00; nothing but the reminder over the weekend.
    let id = dispatch(s, housing, "wd1", at(2026, 11, 6, 9, 0)).await?;
    act(s, id, Action::Sign, at(2026, 11, 6, 9, 0)).await?;
    assert_eq!(pass(s, at(2026, 11, 6, 21, 0), id).await?, fired(&[("handle", "remind")]));
    assert_eq!(pass(s, at(2026, 11, 8, 23, 59), id).await?, fired(&[]));
    assert_eq!(pass(s, at(2026, 11, 9, 9, 0), id).await?, fired(&[("handle", "supervise")]));
    Ok(())
}

#[tokio::test]
async fn a_scheduler_that_was_down_catches_up_in_order_and_overlapping_passes_fire_once() -> Result<()> {
    let (db, housing) = setup().await?;
    let s = &db.store;
    let id = dispatch(s, housing, "wd", at(2026, 11, 2, 9, 0)).await?;
    // Down all day: the next pass fires all three sign-for checkpoints, remind first.
    assert_eq!(
        pass(s, at(2026, 11, 2, 18, 0), id).await?,
        fired(&[("sign", "remind"), ("sign", "supervise"), ("sign", "escalate")])
    );
    // Many tasks and two replicas running passes at the same moment: each checkpoint fires once.
    let mut ids = vec![];
    for _ in 0..20 {
        ids.push(dispatch(s, housing, "wd", at(2026, 11, 3, 9, 0)).await?);
    }
    let policy = SchedulerPolicy { ack_escalate_after: None, ..Default::default() };
    let (a, b) = tokio::join!(s.run_scheduler(at(2026, 11, 3, 14, 0), &policy), s.run_scheduler(at(2026, 11, 3, 14, 0), &policy));
    let (a, b) = (a?, b?);
    assert_eq!(a.fired.len() + b.fired.len(), 40, "remind and supervise of 20 tasks, once each");
    let reminds: i64 = sqlx::query_scalar("SELECT count(*) FROM task_events WHERE action = 'remind' AND task_id = ANY($1)")
        .bind(&ids)
        .fetch_one(s.pool())
        .await?;
    assert_eq!(reminds, 20);
    Ok(())
}

#[tokio::test]
async fn an_approved_extension_moves_the_checkpoints_not_yet_fired() -> Result<()> {
    let (db, housing) = setup().await?;
    let s = &db.store;
    let id = dispatch(s, housing, "wd", at(2026, 11, 2, 9, 0)).await?;
    act(s, id, Action::Sign, at(2026, 11, 2, 9, 0)).await?; // due Wed 4 Nov 09:00
    act(s, id, Action::Start, at(2026, 11, 2, 9, 5)).await?;
    assert_eq!(pass(s, at(2026, 11, 3, 9, 0), id).await?, fired(&[("handle", "remind")]));
    act(s, id, Action::RequestExtension { until: at(2026, 11, 10, 9, 0), reason: "等检测报告".into() }, at(2026, 11, 3, 10, 0))
        .await?;
    act(s, id, Action::DecideExtension { approve: true, note: None }, at(2026, 11, 3, 11, 0)).await?;
    assert_eq!(s.task(id).await?.unwrap().handle_due, Some(at(2026, 11, 10, 9, 0)));
    assert_eq!(pass(s, at(2026, 11, 4, 9, 0), id).await?, fired(&[]), "the old deadline no longer supervises");
    assert_eq!(pass(s, at(2026, 11, 10, 9, 0), id).await?, fired(&[("handle", "supervise")]));
    // Closed: nothing more.
    act(s, id, Action::Feedback { text: "done".into() }, at(2026, 11, 10, 10, 0)).await?;
    act(s, id, Action::Approve { note: None }, at(2026, 11, 10, 11, 0)).await?;
    assert_eq!(s.task(id).await?.unwrap().state(), TaskState::Closed);
    assert_eq!(pass(s, at(2026, 11, 30, 0, 0), id).await?, fired(&[]));
    Ok(())
}

async fn device(store: &Store, id: &str, object: &str) -> Result<i32> {
    Ok(store
        .insert_device(&NewDevice {
            id: DeviceId::parse(id)?,
            name: id.into(),
            object_id: Some(object.into()),
            token_sha256: [7; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?
        .key)
}

fn warning(key: &str, device_key: i32, event: &str, level: Level, when: DateTime<Utc>) -> NewWarning {
    NewWarning {
        dedup_key: key.into(),
        source: "rules".into(),
        source_version: "1".into(),
        event: event.into(),
        level,
        device_key,
        metric_id: None,
        object_id: None,
        detail: "PM10 超标".into(),
        score: 1.0,
        at: when,
        evidence: json!({}),
        group_window: Duration::seconds(30),
    }
}

#[tokio::test]
async fn red_warnings_of_configured_items_dispatch_themselves() -> Result<()> {
    let (db, housing) = setup().await?;
    let s = &db.store;
    s.set_task_policy(
        &TaskPolicy {
            item: "demo-dust".into(),
            level: Level::RED,
            sign_limit: "30m".into(),
            handle_limit: "24h".into(),
            auto_dispatch: true,
            reviewer_department_id: None,
        },
        "admin",
    )
    .await?;
    let rule = |item: &str| NewRule {
        name: format!("rule {item}"),
        scope: Scope::default(),
        level: Level::RED,
        condition: Condition::Threshold { above: Some(150.0), below: None, for_s: 60, hysteresis: 5.0 },
        item: Some(item.into()),
        enabled: true,
    };
    let dust = s.insert_rule(&rule("demo-dust")).await?;
    let noise = s.insert_rule(&rule("demo-noise")).await?;
    let dev = device(s, "dust01", "demo-site-01").await?;
    let now = Utc::now();
    let red = s.upsert_warning(&warning("a", dev, &dust.event(), Level::RED, now)).await?.into_record();
    assert_eq!(red.item.as_deref(), Some("demo-dust"), "the item comes from the rule");
    let other_item = s.upsert_warning(&warning("b", dev, &noise.event(), Level::RED, now)).await?.into_record();
    let orange = s.upsert_warning(&warning("c", dev, &dust.event(), Level::ORANGE, now)).await?.into_record();

    let r = s.run_scheduler(now, &SchedulerPolicy { ack_escalate_after: None, ..Default::default() }).await?;
    assert_eq!(r.auto_dispatched.len(), 1, "{r:?}");
    let (w, task) = r.auto_dispatched[0];
    assert_eq!(w, red.id);
    let t = s.task(task).await?.unwrap();
    assert_eq!((t.source(), t.department_id, t.sign_limit.as_str()), (TaskSource::Warning, housing, "30m"));
    assert_eq!(t.dispatched_by, "system:auto-dispatch");
    assert_eq!(s.warning(red.id).await?.unwrap().task_id, Some(task));
    assert_eq!(s.warning(other_item.id).await?.unwrap().task_id, None, "item not configured");
    assert_eq!(s.warning(orange.id).await?.unwrap().task_id, None, "only red");
    let again = s.run_scheduler(now, &SchedulerPolicy { ack_escalate_after: None, ..Default::default() }).await?;
    assert!(again.auto_dispatched.is_empty(), "once");
    Ok(())
}

#[tokio::test]
async fn warnings_nobody_acknowledges_escalate_once() -> Result<()> {
    let (db, _) = setup().await?;
    let s = &db.store;
    let dev = device(s, "dust02", "demo-site-02").await?;
    let t0 = Utc::now() - Duration::minutes(20);
    let ignored = s.upsert_warning(&warning("x", dev, "e1", Level::ORANGE, t0)).await?.into_record();
    let seen = s.upsert_warning(&warning("y", dev, "e2", Level::ORANGE, t0)).await?.into_record();
    let minor = s.upsert_warning(&warning("z", dev, "e3", Level::BLUE, t0)).await?.into_record();
    let fresh = s.upsert_warning(&warning("w", dev, "e4", Level::RED, Utc::now())).await?.into_record();
    s.acknowledge_warning(seen.id, "mon", Utc::now()).await?;
    let policy = SchedulerPolicy { ack_escalate_after: Some(Duration::minutes(15)), ..Default::default() };
    let r = s.run_scheduler(Utc::now(), &policy).await?;
    assert_eq!(r.escalated_warnings, vec![ignored.id], "not the acknowledged, the blue or the fresh one");
    let _ = (minor, fresh);
    let r = s.run_scheduler(Utc::now(), &policy).await?;
    assert!(r.escalated_warnings.is_empty(), "once");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM warning_escalations WHERE warning_id = $1")
        .bind(ignored.id)
        .fetch_one(s.pool())
        .await?;
    assert_eq!(n, 1);
    Ok(())
}
