//! Notifications against a real PostgreSQL: who the fan-out tells about each task event and warning,
//! exactly once however often and however concurrently it runs, which channels get deliveries,
//! reading one's own notifications only, and claiming deliveries.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use anyhow::Result;
use chrono::{Duration, Utc};
use offsite_store::notifications::{
    ChannelSettings, DeliveryAttempt, DeliveryState, NoticeContent, NoticeKind, SecretChange,
};
use offsite_store::testing::TestDb;
use offsite_store::{Level, NewDevice, NewObject, NewWarning, Store};
use offsite_wire::DeviceId;

struct World {
    db: TestDb,
    housing: i64,
    ecology: i64,
    /// username -> id
    users: BTreeMap<&'static str, i64>,
}

impl World {
    fn store(&self) -> &Store {
        &self.db.store
    }

    fn id(&self, name: &str) -> i64 {
        self.users[name]
    }
}

/// An account inserted directly (no password needed here).
async fn user(store: &Store, name: &str, dept: Option<i64>, roles: &[&str], disabled: bool) -> Result<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (username, password_hash, department_id, disabled) VALUES ($1, 'x', $2, $3) RETURNING id",
    )
    .bind(name)
    .bind(dept)
    .bind(disabled)
    .fetch_one(store.pool())
    .await?;
    for r in roles {
        sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
            .bind(id)
            .bind(r)
            .execute(store.pool())
            .await?;
    }
    Ok(id)
}

async fn world() -> Result<World> {
    let db = TestDb::new().await?;
    let s = &db.store;
    s.seed_demo_registers().await?;
    let housing = s.department_by_code("housing-construction").await?.unwrap().id;
    let ecology = s.department_by_code("ecology").await?.unwrap().id;
    let mut users = BTreeMap::new();
    for (name, dept, roles, disabled) in [
        ("h_housing", Some(housing), &["handler"][..], false),
        ("l_housing", Some(housing), &["leader"][..], false),
        ("h_ecology", Some(ecology), &["handler"][..], false),
        ("l_ecology", Some(ecology), &["leader"][..], false),
        ("gone", Some(housing), &["handler"][..], true),
        ("mon", None, &["monitor"][..], false),
        ("chief", None, &["monitor", "leader"][..], false),
        ("resup", None, &["resupervision"][..], false),
        ("rev", Some(ecology), &["reviewer"][..], false),
        ("admin", None, &["system_admin"][..], false),
    ] {
        users.insert(name, user(s, name, dept, roles, disabled).await?);
    }
    Ok(World { db, housing, ecology, users })
}

/// A task in `department` (lead) with co-handlers, inserted as the task core would.
async fn task(store: &Store, no: &str, department: i64, co: &[i64]) -> Result<i64> {
    let now = Utc::now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO tasks (task_no, title, source, level, department_id, state, sign_limit, handle_limit,
                            dispatched_at, dispatched_by, sign_due)
         VALUES ($1, '工地扬尘超标处置', 'manual', 2, $2, 'dispatched', '2h', '3wd', $3, 'mon', $4) RETURNING id",
    )
    .bind(no)
    .bind(department)
    .bind(now)
    .bind(now + Duration::hours(2))
    .fetch_one(store.pool())
    .await?;
    sqlx::query("INSERT INTO task_departments (task_id, department_id, role) VALUES ($1, $2, 'lead')")
        .bind(id)
        .bind(department)
        .execute(store.pool())
        .await?;
    for d in co {
        sqlx::query("INSERT INTO task_departments (task_id, department_id, role) VALUES ($1, $2, 'co')")
            .bind(id)
            .bind(d)
            .execute(store.pool())
            .await?;
    }
    Ok(id)
}

async fn event<'e, E: sqlx::PgExecutor<'e>>(
    ex: E,
    task: i64,
    actor: &str,
    action: &str,
    department: Option<i64>,
    reason: Option<&str>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO task_events (task_id, at, actor, action, department_id, reason) VALUES ($1, now(), $2, $3, $4, $5)
         RETURNING id",
    )
    .bind(task)
    .bind(actor)
    .bind(action)
    .bind(department)
    .bind(reason)
    .fetch_one(ex)
    .await?)
}

/// Who got notifications of `kind` about `task`, by user name.
async fn recipients(w: &World, kind: NoticeKind, task: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT u.username FROM notifications n JOIN users u ON u.id = n.user_id
         WHERE n.kind = $1 AND n.task_id = $2 ORDER BY u.username",
    )
    .bind(kind.as_str())
    .bind(task)
    .fetch_all(w.store().pool())
    .await?)
}

async fn count(store: &Store, sql: &str) -> Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(store.pool()).await?)
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn task_events_reach_the_right_people_once() -> Result<()> {
    let w = world().await?;
    let s = w.store();
    let joint = task(s, "RW20260501000001", w.housing, &[w.ecology]).await?;
    let single = task(s, "RW20260501000002", w.housing, &[]).await?;

    event(s.pool(), joint, "mon", "dispatched", Some(w.housing), None).await?;
    event(s.pool(), joint, "h_housing", "comment", Some(w.housing), Some("到场了")).await?;
    event(s.pool(), joint, "h_housing", "attachment", Some(w.housing), None).await?;
    event(s.pool(), single, "l_housing", "dispatched", Some(w.housing), None).await?;
    event(s.pool(), single, "system", "remind", Some(w.housing), None).await?;
    event(s.pool(), single, "system", "supervise", Some(w.housing), None).await?;
    event(s.pool(), single, "system", "escalate", Some(w.housing), None).await?;
    event(s.pool(), single, "h_housing", "returned", Some(w.housing), Some("不属于本部门职责")).await?;
    event(s.pool(), single, "mon", "transferred", Some(w.ecology), Some("转生态环境局")).await?;

    let handled = s.fan_out_notifications(100).await?;
    assert_eq!(handled, 9, "every event is handled, the quiet ones too");

    // A joint task: both departments' handlers and leaders; never the disabled account.
    assert_eq!(
        recipients(&w, NoticeKind::NewTask, joint).await?,
        names(&["h_ecology", "h_housing", "l_ecology", "l_housing"])
    );
    // The leader who dispatched it is not told of their own action.
    assert_eq!(recipients(&w, NoticeKind::NewTask, single).await?, names(&["h_housing"]));
    assert_eq!(recipients(&w, NoticeKind::Reminder, single).await?, names(&["h_housing"]));
    assert_eq!(recipients(&w, NoticeKind::Supervision, single).await?, names(&["l_housing", "resup"]));
    assert_eq!(recipients(&w, NoticeKind::Escalation, single).await?, names(&["chief", "l_housing", "resup"]));
    assert_eq!(recipients(&w, NoticeKind::Returned, single).await?, names(&["chief", "mon"]));
    assert_eq!(recipients(&w, NoticeKind::Transferred, single).await?, names(&["h_ecology", "l_ecology"]));
    // Comments and attachments notify nobody.
    assert_eq!(count(s, "SELECT count(*) FROM notifications").await?, 4 + 1 + 1 + 2 + 3 + 2 + 2);

    // The words: zh-CN first, English available, a link to the task.
    let page = s.list_notifications(w.id("h_housing"), false, 50, 0).await?;
    let reminder = page.items.iter().find(|n| n.kind == NoticeKind::Reminder).unwrap();
    assert!(reminder.title_zh.contains("RW20260501000002"), "{}", reminder.title_zh);
    assert!(reminder.body_zh.contains("签收时限"), "{}", reminder.body_zh);
    assert!(reminder.title_en.starts_with("Task due soon"), "{}", reminder.title_en);
    assert_eq!(reminder.link.as_deref(), Some(format!("/tasks/{single}").as_str()));
    let returned = s.list_notifications(w.id("mon"), false, 50, 0).await?;
    assert!(returned.items[0].body_zh.contains("不属于本部门职责"));

    // Running again, and again concurrently, writes nothing more.
    let before = count(s, "SELECT count(*) FROM notifications").await?;
    assert_eq!(s.fan_out_notifications(100).await?, 0);
    for r in concurrently(s, 4, 100).await {
        assert_eq!(r?, 0);
    }
    assert_eq!(count(s, "SELECT count(*) FROM notifications").await?, before);

    // New events handled concurrently by several passes: still exactly once each.
    for _ in 0..20 {
        event(s.pool(), joint, "system", "remind", Some(w.housing), None).await?;
        event(s.pool(), joint, "rev", "rejected", Some(w.ecology), Some("整改照片不清晰")).await?;
    }
    let mut total: usize = concurrently(s, 4, 7).await.into_iter().map(|r| r.unwrap()).sum();
    while total < 40 {
        let n = s.fan_out_notifications(7).await?;
        assert!(n > 0, "rows left behind");
        total += n;
    }
    assert_eq!(total, 40);
    assert_eq!(recipients(&w, NoticeKind::Reminder, joint).await?.len(), 20, "h_housing, once per reminder");
    // Rejected goes back to the lead department's handlers, not to the reviewer who acted.
    assert_eq!(recipients(&w, NoticeKind::Rejected, joint).await?, vec!["h_housing".to_string(); 20]);

    // Feedback goes to the dispatching side and the reviewer department named on the task; a
    // co-handler's feedback to the lead department.
    sqlx::query("UPDATE tasks SET reviewer_department_id = $1 WHERE id = $2")
        .bind(w.ecology)
        .bind(single)
        .execute(s.pool())
        .await?;
    event(s.pool(), single, "h_ecology", "feedback", Some(w.ecology), Some("已整改")).await?;
    event(s.pool(), joint, "h_ecology", "co_feedback", Some(w.ecology), Some("协办部分完成")).await?;
    event(s.pool(), single, "h_ecology", "extension_requested", Some(w.ecology), Some("需要检测报告")).await?;
    assert_eq!(s.fan_out_notifications(100).await?, 3);
    assert_eq!(recipients(&w, NoticeKind::FeedbackSubmitted, single).await?, names(&["chief", "mon", "rev"]));
    assert_eq!(recipients(&w, NoticeKind::FeedbackSubmitted, joint).await?, names(&["h_housing"]));
    assert_eq!(recipients(&w, NoticeKind::ExtensionRequested, single).await?, names(&["chief", "mon"]));
    Ok(())
}

/// `n` fan-out passes at once, each on its own connection; how many rows each handled.
async fn concurrently(store: &Store, n: usize, batch: usize) -> Vec<Result<usize>> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.fan_out_notifications(batch).await })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("fan-out task"));
    }
    out
}

#[tokio::test]
async fn a_late_commit_below_the_cursor_is_not_lost() -> Result<()> {
    let w = world().await?;
    let s = w.store();
    let t = task(s, "RW20260501000003", w.housing, &[]).await?;
    // A transaction takes an id and stays open while a later event commits and is fanned out.
    let mut slow = s.pool().begin().await?;
    let early = event(&mut *slow, t, "system", "remind", Some(w.housing), None).await?;
    let late = event(s.pool(), t, "system", "supervise", Some(w.housing), None).await?;
    assert!(early < late);
    assert_eq!(s.fan_out_notifications(100).await?, 1);
    slow.commit().await?;
    assert_eq!(s.fan_out_notifications(100).await?, 1, "the early event is still handled");
    assert_eq!(recipients(&w, NoticeKind::Reminder, t).await?, names(&["h_housing"]));
    assert_eq!(recipients(&w, NoticeKind::Supervision, t).await?, names(&["l_housing", "resup"]));

    // Once handled long enough ago, the cursor moves past the rows and the ledger empties.
    sqlx::query("UPDATE notification_fanout_seen SET seen_at = seen_at - interval '1 hour'").execute(s.pool()).await?;
    assert_eq!(s.fan_out_notifications(100).await?, 0);
    let last: i64 = count(s, "SELECT last_id FROM notification_cursors WHERE source = 'task_events'").await?;
    assert_eq!(last, late);
    assert_eq!(count(s, "SELECT count(*) FROM notification_fanout_seen WHERE source = 'task_events'").await?, 0);
    assert_eq!(s.fan_out_notifications(100).await?, 0, "nothing handled twice after the move");
    assert_eq!(count(s, "SELECT count(*) FROM notifications").await?, 3);
    event(s.pool(), t, "system", "escalate", Some(w.housing), None).await?;
    assert_eq!(s.fan_out_notifications(100).await?, 1);
    assert_eq!(recipients(&w, NoticeKind::Escalation, t).await?, names(&["chief", "l_housing", "resup"]));
    Ok(())
}

async fn device(store: &Store, id: &str, object: &str) -> Result<i32> {
    Ok(store
        .insert_device(&NewDevice {
            id: DeviceId::parse(id)?,
            name: format!("{id} 扬尘监测仪"),
            object_id: Some(object.into()),
            token_sha256: [7; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?
        .key)
}

async fn warning(store: &Store, device_key: i32, object: &str, level: Level, key: &str) -> Result<i64> {
    Ok(store
        .upsert_warning(&NewWarning {
            dedup_key: key.into(),
            source: "rules".into(),
            source_version: "1".into(),
            event: "rule:1".into(),
            level,
            device_key,
            metric_id: None,
            object_id: Some(object.into()),
            detail: "PM10 超标 312 µg/m³".into(),
            score: 1.0,
            at: Utc::now(),
            evidence: serde_json::json!({}),
            group_window: Duration::seconds(30),
        })
        .await?
        .record()
        .id)
}

fn webhook(name: &str, events: Option<&[&str]>) -> ChannelSettings {
    let events: Option<Vec<String>> = events.map(|e| e.iter().map(|s| s.to_string()).collect());
    ChannelSettings::parse("webhook", name, Some("http://127.0.0.1:9/hook"), &[], events.as_deref(), true).unwrap()
}

#[tokio::test]
async fn warnings_and_channels() -> Result<()> {
    let w = world().await?;
    let s = w.store();
    s.insert_object(&NewObject {
        id: "site-1".into(),
        name: "滨江某工地".into(),
        credit_code: None,
        object_type: Some("construction-site".into()),
        address: None,
        lon: None,
        lat: None,
        region_code: None,
        department_id: Some(w.ecology),
    })
    .await?;
    let dev = device(s, "dev1", "site-1").await?;
    // Channels: ecology's default subscription, ecology's e-mail for closed tasks only, a disabled
    // one, and housing's (its people are not told of this warning).
    let eco_hook = s.insert_channel(w.ecology, &webhook("生态值班群", None), Some("s3cret"), "admin").await?.unwrap();
    let mail = ChannelSettings::parse(
        "email",
        "科室邮箱",
        None,
        &["ops@eco.example.cn".into()],
        Some(&["closed".into()]),
        true,
    )?;
    let eco_mail = s.insert_channel(w.ecology, &mail, None, "admin").await?.unwrap();
    let mut off = webhook("停用", None);
    off.enabled = false;
    let eco_off = s.insert_channel(w.ecology, &off, None, "admin").await?.unwrap();
    let housing_hook = s.insert_channel(w.housing, &webhook("住建值班群", None), None, "admin").await?.unwrap();
    assert!(s.insert_channel(999_999, &webhook("x", None), None, "admin").await?.is_none());
    assert!(eco_hook.secret_set && !eco_mail.secret_set);

    let red = warning(s, dev, "site-1", Level::RED, "k-red").await?;
    let orange = warning(s, dev, "site-1", Level::ORANGE, "k-orange").await?;
    let report = s.fan_out_notifications_report(100).await?;
    assert_eq!(report.sources, 2);
    assert_eq!(report.notifications.get(&NoticeKind::RedWarning), Some(&2), "{report:?}");
    let told: Vec<String> = sqlx::query_scalar(
        "SELECT u.username FROM notifications n JOIN users u ON u.id = n.user_id WHERE n.warning_id = $1 ORDER BY 1",
    )
    .bind(red)
    .fetch_all(s.pool())
    .await?;
    assert_eq!(told, names(&["chief", "mon"]));
    assert_eq!(count(s, &format!("SELECT count(*) FROM notifications WHERE warning_id = {orange}")).await?, 0);
    let deliveries = |c: i64| async move {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_deliveries WHERE channel_id = $1")
            .bind(c)
            .fetch_one(s.pool())
            .await?;
        anyhow::Ok(n)
    };
    assert_eq!(deliveries(eco_hook.id).await?, 1, "the object's department's channel");
    assert_eq!(deliveries(eco_mail.id).await?, 0, "not subscribed to red warnings");
    assert_eq!(deliveries(eco_off.id).await?, 0, "disabled");
    assert_eq!(deliveries(housing_hook.id).await?, 0, "another department");
    let (items, _) = s.channel_deliveries(eco_hook.id, 10, 0).await?;
    assert_eq!(items[0].kind, NoticeKind::RedWarning);
    assert_eq!(items[0].payload.0.warning_id, Some(red));
    assert!(items[0].payload.0.body_zh.contains("滨江某工地"), "{}", items[0].payload.0.body_zh);

    // Nobody acknowledged it: the monitoring center's leader hears again.
    sqlx::query("INSERT INTO warning_escalations (warning_id, at, reason) VALUES ($1, now(), '30 分钟内无人确认')")
        .bind(red)
        .execute(s.pool())
        .await?;
    assert_eq!(s.fan_out_notifications(100).await?, 1);
    let told: Vec<String> = sqlx::query_scalar(
        "SELECT u.username FROM notifications n JOIN users u ON u.id = n.user_id WHERE n.kind = 'warning_not_acknowledged'",
    )
    .fetch_all(s.pool())
    .await?;
    assert_eq!(told, names(&["chief"]));

    // Task events reach the channels of the departments concerned, by subscription.
    let t = task(s, "RW20260501000009", w.ecology, &[]).await?;
    event(s.pool(), t, "mon", "dispatched", Some(w.ecology), None).await?;
    event(s.pool(), t, "rev", "closed", Some(w.ecology), None).await?;
    event(s.pool(), t, "system", "remind", Some(w.ecology), None).await?;
    s.fan_out_notifications(100).await?;
    assert_eq!(deliveries(eco_hook.id).await?, 1 + 2, "new task and reminder, not closed");
    assert_eq!(deliveries(eco_mail.id).await?, 1, "closed only");
    assert_eq!(deliveries(housing_hook.id).await?, 0);
    Ok(())
}

#[tokio::test]
async fn only_the_owner_reads_a_notification() -> Result<()> {
    let w = world().await?;
    let s = w.store();
    let t = task(s, "RW20260501000004", w.housing, &[w.ecology]).await?;
    event(s.pool(), t, "mon", "dispatched", Some(w.housing), None).await?;
    event(s.pool(), t, "system", "remind", Some(w.housing), None).await?;
    s.fan_out_notifications(100).await?;
    let (h, l) = (w.id("h_housing"), w.id("l_ecology"));
    let page = s.list_notifications(h, false, 50, 0).await?;
    assert_eq!((page.total, page.unread), (2, 2));
    assert_eq!(page.items[0].kind, NoticeKind::Reminder, "newest first");
    let mine = page.items[1].id;
    assert!(!s.mark_notification_read(l, mine).await?, "someone else's");
    assert_eq!(s.unread_notification_count(h).await?, 2);
    assert!(s.mark_notification_read(h, mine).await?);
    assert!(s.mark_notification_read(h, mine).await?, "again is fine");
    let unread = s.list_notifications(h, true, 50, 0).await?;
    assert_eq!((unread.total, unread.unread, unread.items.len()), (1, 1, 1));
    assert_eq!(s.mark_all_notifications_read(l).await?, 1);
    assert_eq!(s.unread_notification_count(h).await?, 1, "l_ecology's read-all left h_housing's alone");
    assert_eq!(s.mark_all_notifications_read(h).await?, 1);
    assert_eq!(s.unread_notification_count(h).await?, 0);
    Ok(())
}

#[tokio::test]
async fn claiming_and_recording_deliveries() -> Result<()> {
    let w = world().await?;
    let s = w.store();
    let ch = s.insert_channel(w.housing, &webhook("群", None), None, "admin").await?.unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(s.queue_delivery(ch.id, &NoticeContent::channel_test(&format!("群{i}"), "admin", Utc::now())).await?);
    }
    // Queued deliveries are due at once.
    let now = Utc::now();
    // Two workers claiming at once never get the same delivery.
    let lease = StdDuration::from_secs(60);
    let (a, b) = tokio::join!(s.claim_due_deliveries(now, 6, lease), s.claim_due_deliveries(now, 6, lease));
    let (a, b) = (a?, b?);
    assert_eq!(a.len() + b.len(), 10);
    let mut all: Vec<i64> = a.iter().chain(&b).map(|d| d.id).collect();
    all.sort();
    assert_eq!(all, ids);
    assert_eq!(a[0].channel.kind, offsite_store::notifications::ChannelKind::Webhook);
    // Leased: nothing is due until the lease ends.
    assert!(s.claim_due_deliveries(now, 10, lease).await?.is_empty());
    assert_eq!(s.claim_due_deliveries(now + Duration::seconds(61), 10, lease).await?.len(), 10);

    let id = ids[0];
    s.record_delivery_attempt(&DeliveryAttempt {
        delivery_id: id,
        at: now,
        ok: false,
        status: Some(500),
        error: Some("HTTP 500".into()),
        next_attempt_at: Some(now + Duration::seconds(10)),
    })
    .await?;
    let n = s
        .record_delivery_attempt(&DeliveryAttempt {
            delivery_id: id,
            at: now + Duration::seconds(10),
            ok: true,
            status: Some(200),
            error: None,
            next_attempt_at: None,
        })
        .await?;
    assert_eq!(n, 2);
    let d = s.delivery(id).await?.unwrap();
    assert_eq!(d.state(), DeliveryState::Delivered);
    assert_eq!(d.attempts, 2);
    assert_eq!(
        d.attempt_log.iter().map(|a| (a.ok, a.status)).collect::<Vec<_>>(),
        vec![(false, Some(500)), (true, Some(200))]
    );
    assert_eq!(d.last_error, None);
    // Giving up.
    s.record_delivery_attempt(&DeliveryAttempt {
        delivery_id: ids[1],
        at: now,
        ok: false,
        status: None,
        error: Some("connection refused".into()),
        next_attempt_at: None,
    })
    .await?;
    assert_eq!(s.delivery(ids[1]).await?.unwrap().state(), DeliveryState::Failed);
    // Delivered and failed ones are never claimed again.
    let later = s.claim_due_deliveries(now + Duration::hours(1), 100, lease).await?;
    assert_eq!(later.len(), 8);
    assert!(later.iter().all(|d| d.id != ids[0] && d.id != ids[1]));

    // Updating keeps, replaces or clears the secret; deleting takes the deliveries along.
    let mut settings = webhook("群", None);
    let c = s.update_channel(ch.id, &settings, &SecretChange::Set("k".into())).await?.unwrap();
    assert!(c.secret_set);
    settings.name = "改名".into();
    let c = s.update_channel(ch.id, &settings, &SecretChange::Keep).await?.unwrap();
    assert!(c.secret_set && c.name == "改名");
    let c = s.update_channel(ch.id, &settings, &SecretChange::Clear).await?.unwrap();
    assert!(!c.secret_set);
    assert!(s.update_channel(999_999, &settings, &SecretChange::Keep).await?.is_none());
    assert!(s.delete_channel(ch.id).await?);
    assert!(!s.delete_channel(ch.id).await?);
    assert_eq!(count(s, "SELECT count(*) FROM notification_deliveries").await?, 0);
    Ok(())
}
