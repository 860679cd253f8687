//! Rules and warnings against a real PostgreSQL: dedup, grouping, silences, maintenance, rule CRUD
//! and the change notifications.

use std::time::Duration as StdDuration;

use anyhow::Result;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use offsite_store::testing::TestDb;
use offsite_store::{
    Condition, Level, NewDevice, NewMaintenance, NewRule, NewSilence, NewWarning, Scope, Store, Upserted,
    WarningChange, WarningFilter, RULES_CHANNEL, WARNINGS_CHANNEL,
};
use offsite_wire::DeviceId;
use sqlx::postgres::PgListener;

/// Now, at PostgreSQL's precision (microseconds), so stored times compare equal.
fn utc_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

async fn device(store: &Store, id: &str, object: Option<&str>) -> Result<i32> {
    let d = store
        .insert_device(&NewDevice {
            id: DeviceId::parse(id)?,
            name: id.into(),
            object_id: object.map(Into::into),
            token_sha256: [7; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?;
    Ok(d.key)
}

async fn metric(store: &Store, key: &str) -> Result<i32> {
    Ok(store.metric_by_key(key).await?.unwrap().id)
}

fn warning(key: &str, device_key: i32, event: &str, level: Level, at: DateTime<Utc>) -> NewWarning {
    NewWarning {
        dedup_key: key.into(),
        source: "rules".into(),
        source_version: "1".into(),
        event: event.into(),
        level,
        device_key,
        metric_id: None,
        object_id: None,
        detail: format!("{event} at {at}"),
        score: 1.0,
        at,
        evidence: serde_json::json!({"values": [1, 2, 3]}),
        group_window: Duration::seconds(30),
    }
}

async fn open_count(store: &Store, key: &str) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM warnings WHERE dedup_key = $1 AND resolved_at IS NULL")
        .bind(key)
        .fetch_one(store.pool())
        .await?)
}

async fn next_payload(l: &mut PgListener) -> Result<String> {
    let n = tokio::time::timeout(StdDuration::from_secs(10), l.recv()).await??;
    Ok(n.payload().to_owned())
}

async fn next_change(l: &mut PgListener) -> Result<WarningChange> {
    Ok(serde_json::from_str(&next_payload(l).await?)?)
}

fn threshold(above: Option<f64>) -> Condition {
    Condition::Threshold { above, below: None, for_s: 60, hysteresis: 5.0 }
}

#[tokio::test]
async fn repeats_count_into_one_open_warning() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let k = device(s, "dd1", Some("site1")).await?;
    let m = metric(s, "pm10").await?;
    let t = utc_now() - Duration::minutes(10);
    let mut first = warning("rules/dd1/rule:1", k, "rule:1", Level::YELLOW, t);
    first.metric_id = Some(m);
    let a = s.upsert_warning(&first).await?;
    let Upserted::Opened(a) = a else { panic!("first upsert must open: {a:?}") };
    assert_eq!((a.count, a.level, a.first_seen, a.last_seen), (1, Level::YELLOW, t, t));
    assert_eq!(
        (a.device_id.as_str(), a.metric_key.as_deref(), a.object_id.as_deref()),
        ("dd1", Some("pm10"), Some("site1"))
    );
    assert_eq!(a.group_id, a.id, "alone: its own group");
    assert!(a.is_open() && a.silenced_by.is_none());

    // A repeat, more severe, with other evidence and a higher score.
    let mut again = warning("rules/dd1/rule:1", k, "rule:1", Level::RED, t + Duration::seconds(10));
    again.metric_id = Some(m);
    again.score = 5.0;
    again.evidence = serde_json::json!({"values": [9]});
    let b = s.upsert_warning(&again).await?;
    let Upserted::Repeated(b) = b else { panic!("second upsert must repeat: {b:?}") };
    assert_eq!(b.id, a.id);
    assert_eq!((b.count, b.level, b.score), (2, Level::RED, 5.0));
    assert_eq!((b.first_seen, b.last_seen), (t, t + Duration::seconds(10)));
    assert_eq!(b.evidence, first.evidence, "the first evidence is kept");

    // A late, milder repeat: counted, but neither the level nor last_seen go back.
    let late = warning("rules/dd1/rule:1", k, "rule:1", Level::BLUE, t + Duration::seconds(5));
    let c = s.upsert_warning(&late).await?.into_record();
    assert_eq!((c.count, c.level, c.score, c.last_seen), (3, Level::RED, 5.0, t + Duration::seconds(10)));
    assert_eq!(open_count(s, "rules/dd1/rule:1").await?, 1);

    // The database itself refuses a second open row of the key.
    let dup = sqlx::query(
        "INSERT INTO warnings (dedup_key, source, source_version, event, level, device_key, detail, score, \
         first_seen, last_seen) VALUES ('rules/dd1/rule:1', 'x', '1', 'e', 1, $1, 'd', 0, now(), now())",
    )
    .bind(k)
    .execute(s.pool())
    .await;
    assert!(dup.is_err(), "the partial unique index holds");

    // JSON: level as a number, device key hidden.
    let j = serde_json::to_value(&c)?;
    assert_eq!((j["level"].clone(), j["device_id"].clone()), (serde_json::json!(1), serde_json::json!("dd1")));
    assert!(j.get("device_key").is_none());
    Ok(())
}

#[tokio::test]
async fn a_resolved_warning_is_reopened_as_a_new_one() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let k = device(s, "rs1", None).await?;
    let t = utc_now() - Duration::minutes(5);
    let a = s.upsert_warning(&warning("key1", k, "gap", Level::ORANGE, t)).await?.into_record();
    assert!(s.resolve_warning("key1", t, "bogus").await.is_err(), "unknown resolution refused");
    let r = s.resolve_warning("key1", t + Duration::seconds(30), "cleared").await?.expect("open one resolved");
    assert_eq!(
        (r.id, r.resolution.as_deref(), r.resolved_at),
        (a.id, Some("cleared"), Some(t + Duration::seconds(30)))
    );
    assert!(s.resolve_warning("key1", t + Duration::seconds(31), "cleared").await?.is_none(), "nothing open");
    assert_eq!(open_count(s, "key1").await?, 0);

    let b = s.upsert_warning(&warning("key1", k, "gap", Level::ORANGE, t + Duration::seconds(60))).await?;
    assert!(b.is_opened(), "{b:?}");
    let b = b.into_record();
    assert_ne!(b.id, a.id);
    assert_eq!(b.count, 1);
    assert_eq!(s.warning(a.id).await?.unwrap().count, 1, "the resolved one is left as it was");

    let m = s.resolve_warning_by_id(b.id, t + Duration::seconds(90), "manual", Some("op1"), Some("现场已整改")).await?.unwrap();
    assert_eq!(m.resolution_note.as_deref(), Some("现场已整改"));
    assert_eq!((m.resolution.as_deref(), m.resolved_by.as_deref()), (Some("manual"), Some("op1")));
    assert!(s.resolve_warning_by_id(b.id, t + Duration::seconds(91), "manual", None, None).await?.is_none());
    assert!(s.warning(999_999).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn concurrent_upserts_of_one_key_make_one_warning() -> Result<()> {
    let db = TestDb::new().await?;
    let s = db.store.clone();
    let k = device(&s, "cc1", Some("obj")).await?;
    let t = utc_now() - Duration::minutes(1);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut opened = 0;
            for j in 0..5 {
                let at = t + Duration::milliseconds(i * 100 + j);
                if s.upsert_warning(&warning("race", k, "ev", Level::YELLOW, at)).await?.is_opened() {
                    opened += 1;
                }
            }
            Ok::<_, anyhow::Error>(opened)
        }));
    }
    let mut opened = 0;
    for task in tasks {
        opened += task.await??;
    }
    assert_eq!(opened, 1, "exactly one upsert opened the warning");
    assert_eq!(open_count(&s, "race").await?, 1);
    let (ws, total) = s.warnings(&WarningFilter::default()).await?;
    assert_eq!(total, 1);
    assert_eq!(ws[0].count, 40);
    assert_eq!(ws[0].last_seen, t + Duration::milliseconds(704));
    Ok(())
}

#[tokio::test]
async fn warnings_of_one_object_close_in_time_share_a_group() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let a = device(s, "ga", Some("site1")).await?;
    let b = device(s, "gb", Some("site1")).await?;
    let c = device(s, "gc", Some("site2")).await?;
    let t = utc_now() - Duration::minutes(10);
    let wa = s.upsert_warning(&warning("ga/e", a, "e", Level::YELLOW, t)).await?.into_record();
    let wb = s.upsert_warning(&warning("gb/e", b, "e", Level::YELLOW, t + Duration::seconds(10))).await?.into_record();
    assert_eq!(wb.group_id, wa.id, "same object within the window");
    let wc = s.upsert_warning(&warning("gc/e", c, "e", Level::YELLOW, t + Duration::seconds(5))).await?.into_record();
    assert_eq!(wc.group_id, wc.id, "another object: its own group");
    let late =
        s.upsert_warning(&warning("gb/f", b, "f", Level::YELLOW, t + Duration::seconds(100))).await?.into_record();
    assert_eq!(late.group_id, late.id, "outside the window: a new group");
    // An explicit object overrides the device's.
    let mut other = warning("ga/x", a, "x", Level::YELLOW, t + Duration::seconds(6));
    other.object_id = Some("site2".into());
    let wx = s.upsert_warning(&other).await?.into_record();
    assert_eq!((wx.object_id.as_deref(), wx.group_id), (Some("site2"), wc.id));
    // A resolved warning does not gather a group.
    s.resolve_warning("gc/e", t + Duration::seconds(7), "cleared").await?;
    s.resolve_warning("ga/x", t + Duration::seconds(7), "cleared").await?;
    let wy = s.upsert_warning(&warning("gc/y", c, "y", Level::YELLOW, t + Duration::seconds(8))).await?.into_record();
    assert_eq!(wy.group_id, wy.id);
    let (group, total) = s.warnings(&WarningFilter { group_id: Some(wa.id), ..Default::default() }).await?;
    assert_eq!(total, 2);
    assert_eq!(group.iter().map(|w| w.id).collect::<Vec<_>>(), vec![wb.id, wa.id]);
    Ok(())
}

#[tokio::test]
async fn matching_silences_mark_new_warnings() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let k = device(s, "si1", Some("site9")).await?;
    let m = metric(s, "noise").await?;
    let now = utc_now();
    let silence = |event: Option<&str>, reason: &str| NewSilence {
        device_id: Some("si1".into()),
        object_id: None,
        metric_key: Some("noise".into()),
        event: event.map(Into::into),
        starts_at: now - Duration::minutes(1),
        ends_at: now + Duration::hours(1),
        reason: reason.into(),
        created_by: Some("op".into()),
    };
    assert!(s.insert_silence(&silence(Some("rule:7"), " ")).await.is_err(), "a reason is required");
    let backwards = NewSilence { ends_at: now - Duration::minutes(2), ..silence(Some("rule:7"), "works") };
    assert!(s.insert_silence(&backwards).await.is_err(), "ends before it starts");
    let sil = s.insert_silence(&silence(Some("rule:7"), "night works, permit 12")).await?;

    let mut w = warning("si1/rule:7", k, "rule:7", Level::YELLOW, now);
    w.metric_id = Some(m);
    assert_eq!(s.upsert_warning(&w).await?.into_record().silenced_by, Some(sil.id), "matching");
    let mut other_event = warning("si1/rule:8", k, "rule:8", Level::YELLOW, now);
    other_event.metric_id = Some(m);
    assert_eq!(s.upsert_warning(&other_event).await?.into_record().silenced_by, None, "another event");
    let mut other_metric = warning("si1/rule:7/pm", k, "rule:7", Level::YELLOW, now);
    other_metric.metric_id = Some(metric(s, "pm10").await?);
    assert_eq!(s.upsert_warning(&other_metric).await?.into_record().silenced_by, None, "another metric");
    let mut before = warning("si1/rule:7/early", k, "rule:7", Level::YELLOW, now - Duration::minutes(5));
    before.metric_id = Some(m);
    assert_eq!(s.upsert_warning(&before).await?.into_record().silenced_by, None, "before the silence");

    assert_eq!(s.active_silences(now).await?.iter().map(|x| x.id).collect::<Vec<_>>(), vec![sil.id]);
    assert!(s.expire_silence(sil.id, now + Duration::seconds(1)).await?);
    assert!(!s.expire_silence(sil.id, now + Duration::seconds(2)).await?, "already over");
    assert!(s.active_silences(now + Duration::seconds(2)).await?.is_empty());
    s.resolve_warning("si1/rule:7", now, "cleared").await?;
    let mut after = warning("si1/rule:7", k, "rule:7", Level::YELLOW, now + Duration::seconds(5));
    after.metric_id = Some(m);
    assert_eq!(s.upsert_warning(&after).await?.into_record().silenced_by, None, "expired silence");

    // A silence by object (and nothing else) covers every device of it.
    let by_object =
        NewSilence { device_id: None, metric_key: None, object_id: Some("site9".into()), ..silence(None, "drill") };
    let so = s.insert_silence(&by_object).await?;
    let w2 = s.upsert_warning(&warning("si1/any", k, "offline", Level::BLUE, now)).await?.into_record();
    assert_eq!(w2.silenced_by, Some(so.id));
    Ok(())
}

#[tokio::test]
async fn maintenance_windows_cover_devices_and_objects() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let now = utc_now();
    let window = |device: Option<&str>, object: Option<&str>| NewMaintenance {
        device_id: device.map(Into::into),
        object_id: object.map(Into::into),
        starts_at: now,
        ends_at: now + Duration::hours(2),
        reason: "calibration".into(),
        created_by: None,
    };
    assert!(s.insert_maintenance(&window(None, None)).await.is_err(), "needs a device or an object");
    assert!(s.insert_maintenance(&NewMaintenance { reason: "".into(), ..window(Some("m1"), None) }).await.is_err());
    s.insert_maintenance(&window(None, Some("plant"))).await?;
    s.insert_maintenance(&window(Some("m9"), None)).await?;
    let inside = now + Duration::minutes(30);
    assert!(s.in_maintenance("m1", Some("plant"), inside).await?, "every device of the object");
    assert!(!s.in_maintenance("m1", Some("plant"), now - Duration::seconds(1)).await?, "not yet");
    assert!(!s.in_maintenance("m1", Some("plant"), now + Duration::hours(2)).await?, "over");
    assert!(!s.in_maintenance("m1", Some("other"), inside).await?);
    assert!(!s.in_maintenance("m1", None, inside).await?);
    assert!(s.in_maintenance("m9", None, inside).await?, "the device itself");
    assert!(s.in_maintenance("m9", Some("other"), inside).await?);
    assert_eq!(s.active_maintenance(inside).await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn rules_crud_validates_and_notifies() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    // The migrations seed the HJ 212 loggers' data-gap rule.
    let seeded = s.list_rules().await?;
    assert_eq!(seeded.len(), 1);
    let mut l = s.listen(&[RULES_CHANNEL]).await?;
    let new = NewRule {
        name: "PM10 over 150".into(),
        scope: Scope { object: Some("site1".into()), metric: Some("pm10".into()), ..Scope::default() },
        level: Level::ORANGE,
        condition: threshold(Some(150.0)),
        item: Some("ENV-001".into()),
        enabled: true,
    };
    let r = s.insert_rule(&new).await?;
    assert_eq!(next_payload(&mut l).await?, r.id.to_string());
    assert_eq!(
        (r.name.as_str(), r.level, &r.scope, &r.condition),
        (new.name.as_str(), Level::ORANGE, &new.scope, &new.condition)
    );
    assert_eq!(s.list_rules().await?, [seeded.clone(), vec![r.clone()]].concat());

    // Invalid rules are refused and not written.
    assert!(s.insert_rule(&NewRule { condition: threshold(None), ..new.clone() }).await.is_err());
    assert!(s.insert_rule(&NewRule { name: "".into(), ..new.clone() }).await.is_err());
    assert!(s.insert_rule(&NewRule { condition: Condition::DataGap { max_gap_s: 0 }, ..new.clone() }).await.is_err());
    assert!(s.update_rule(r.id, &NewRule { condition: threshold(None), ..new.clone() }).await.is_err());
    assert_eq!(s.list_rules().await?.len(), seeded.len() + 1);

    let changed = NewRule {
        level: Level::RED,
        enabled: false,
        condition: Condition::FlatLine { for_s: 600, epsilon: 0.0 },
        ..new.clone()
    };
    let u = s.update_rule(r.id, &changed).await?.expect("exists");
    assert_eq!(next_payload(&mut l).await?, r.id.to_string());
    assert_eq!((u.id, u.level, u.enabled, &u.condition), (r.id, Level::RED, false, &changed.condition));
    assert_eq!(s.rule(r.id).await?, Some(u.clone()));
    assert!(s.update_rule(r.id + 100, &changed).await?.is_none());

    // The stored JSON is the serde shape of the types.
    let cond: serde_json::Value =
        sqlx::query_scalar("SELECT condition FROM rules WHERE id = $1").bind(r.id).fetch_one(s.pool()).await?;
    assert_eq!(cond, serde_json::json!({"kind": "flat_line", "for_s": 600, "epsilon": 0.0}));

    assert!(s.delete_rule(r.id).await?);
    assert_eq!(next_payload(&mut l).await?, r.id.to_string());
    assert!(!s.delete_rule(r.id).await?);
    assert_eq!(s.list_rules().await?, seeded);
    Ok(())
}

#[tokio::test]
async fn warning_changes_are_announced() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let k = device(s, "nt1", None).await?;
    let mut l = s.listen(&[WARNINGS_CHANNEL]).await?;
    let t = utc_now();
    let a = s.upsert_warning(&warning("nt", k, "e", Level::YELLOW, t)).await?.into_record();
    assert_eq!(next_change(&mut l).await?, WarningChange { id: a.id, kind: "opened".into() });
    s.upsert_warning(&warning("nt", k, "e", Level::YELLOW, t + Duration::seconds(1))).await?;
    assert_eq!(next_change(&mut l).await?, WarningChange { id: a.id, kind: "repeated".into() });
    s.resolve_warning("nt", t + Duration::seconds(2), "cleared").await?;
    assert_eq!(next_change(&mut l).await?, WarningChange { id: a.id, kind: "resolved".into() });
    // Nothing to resolve: nothing announced.
    assert!(s.resolve_warning("nt", t + Duration::seconds(3), "cleared").await?.is_none());
    s.notify_warning(a.id, "triaged").await?;
    assert_eq!(next_change(&mut l).await?, WarningChange { id: a.id, kind: "triaged".into() });
    Ok(())
}

#[tokio::test]
async fn warnings_are_listed_by_filter_newest_first() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let a = device(s, "la", Some("o1")).await?;
    let b = device(s, "lb", Some("o2")).await?;
    let t = utc_now() - Duration::hours(1);
    let at = |m: i64| t + Duration::minutes(m);
    let w1 = s.upsert_warning(&warning("l1", a, "e1", Level::RED, at(0))).await?.into_record();
    let w2 = s.upsert_warning(&warning("l2", a, "e2", Level::YELLOW, at(1))).await?.into_record();
    let mut model = warning("l3", b, "anomaly", Level::ORANGE, at(2));
    model.source = "anomaly".into();
    let w3 = s.upsert_warning(&model).await?.into_record();
    let w4 = s.upsert_warning(&warning("l4", b, "e1", Level::BLUE, at(3))).await?.into_record();
    s.resolve_warning("l2", at(4), "cleared").await?;

    let ids = |f: WarningFilter| async move {
        let (ws, total) = s.warnings(&f).await?;
        Ok::<_, anyhow::Error>((ws.iter().map(|w| w.id).collect::<Vec<_>>(), total))
    };
    assert_eq!(ids(WarningFilter::default()).await?, (vec![w4.id, w3.id, w2.id, w1.id], 4));
    assert_eq!(ids(WarningFilter { open: Some(true), ..Default::default() }).await?, (vec![w4.id, w3.id, w1.id], 3));
    assert_eq!(ids(WarningFilter { open: Some(false), ..Default::default() }).await?, (vec![w2.id], 1));
    let orange = WarningFilter { level_at_most: Some(Level::ORANGE), ..Default::default() };
    assert_eq!(ids(orange).await?, (vec![w3.id, w1.id], 2));
    let red = WarningFilter { level_at_most: Some(Level::RED), ..Default::default() };
    assert_eq!(ids(red).await?, (vec![w1.id], 1));
    assert_eq!(
        ids(WarningFilter { device_id: Some("la".into()), ..Default::default() }).await?,
        (vec![w2.id, w1.id], 2)
    );
    assert_eq!(
        ids(WarningFilter { object_id: Some("o2".into()), ..Default::default() }).await?,
        (vec![w4.id, w3.id], 2)
    );
    assert_eq!(ids(WarningFilter { source: Some("anomaly".into()), ..Default::default() }).await?, (vec![w3.id], 1));
    assert_eq!(ids(WarningFilter { since: Some(at(2)), ..Default::default() }).await?, (vec![w4.id, w3.id], 2));
    assert_eq!(ids(WarningFilter { until: Some(at(1)), ..Default::default() }).await?, (vec![w1.id], 1));
    let combined =
        WarningFilter { open: Some(true), device_id: Some("lb".into()), since: Some(at(3)), ..Default::default() };
    assert_eq!(ids(combined).await?, (vec![w4.id], 1));
    // Pages: the total counts every match; the limit is clamped to at least one.
    assert_eq!(ids(WarningFilter { limit: 2, offset: 1, ..Default::default() }).await?, (vec![w3.id, w2.id], 4));
    assert_eq!(ids(WarningFilter { limit: 0, ..Default::default() }).await?, (vec![w4.id], 4));
    assert_eq!(ids(WarningFilter { offset: 10, ..Default::default() }).await?, (vec![], 4));
    Ok(())
}

#[tokio::test]
async fn offline_devices_are_listed_for_inhibition() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let a = device(s, "on1", None).await?;
    let b = device(s, "off1", None).await?;
    s.set_device_online(a, true, utc_now()).await?;
    assert_eq!(s.offline_devices().await?, vec![(b, "off1".to_string())]);
    s.set_device_online(a, false, utc_now()).await?;
    assert_eq!(s.offline_devices().await?, vec![(a, "on1".to_string()), (b, "off1".to_string())]);
    // A device that never had a status row counts as offline.
    s.set_device_online(a, true, utc_now()).await?;
    sqlx::query("DELETE FROM device_status WHERE device_key = $1").bind(b).execute(s.pool()).await?;
    assert_eq!(s.offline_devices().await?, vec![(b, "off1".to_string())]);
    Ok(())
}
