//! The audit trail against a real PostgreSQL: one gap-free chain under concurrent writers,
//! batching, the append-only trigger, and `verify` naming tampering, deletion, truncation and a
//! consistent rewrite.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use offsite_store::audit::{self, canonical_json, event_hash, read_anchors, GENESIS};
use offsite_store::testing::TestDb;
use offsite_store::{AuditEvent, AuditFilter, AuditLog, BreakKind, Store};
use serde_json::{json, Value};

fn event(i: usize) -> AuditEvent {
    AuditEvent::new(format!("user{}", i % 3), ["rule.update", "warning.resolve"][i % 2], "rule")
        .ip("10.0.0.7")
        .id(i.to_string())
        .before(json!({"threshold": i, "name": "扬尘"}))
        .after(json!({"threshold": i + 1, "name": "扬尘", "nested": {"b": 1, "a": [1.5, null, true]}}))
}

/// Records `n` events through a log anchoring into `anchors`, then shuts it down.
async fn fill(store: &Store, n: usize, anchors: Option<&Path>) -> Result<()> {
    let log = AuditLog::start(store.clone(), anchors.map(Path::to_path_buf), Duration::from_secs(60));
    for i in 1..=n {
        assert_eq!(log.record(event(i)).await?, i as u64);
    }
    log.shutdown().await?;
    Ok(())
}

async fn disable_trigger(store: &Store) -> Result<()> {
    sqlx::query("ALTER TABLE audit_events DISABLE TRIGGER USER").execute(store.pool()).await?;
    Ok(())
}

fn anchors_in(dir: &tempfile::TempDir) -> PathBuf {
    audit::anchors_path(dir.path())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_extend_one_gap_free_chain() -> Result<()> {
    let db = TestDb::new().await?;
    let dir = tempfile::tempdir()?;
    let anchors = anchors_in(&dir);
    let a = AuditLog::start(db.store.clone(), Some(anchors.clone()), Duration::from_millis(50));
    // A second process: its own pool and writer on the same database.
    let other = Store::connect(db.options.clone(), 4).await?;
    let b = AuditLog::start(other.clone(), Some(anchors.clone()), Duration::from_millis(50));
    let mut tasks = Vec::new();
    for t in 0..30 {
        let log = if t < 20 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                let ev = AuditEvent::system("test", "thing.do", "thing").id(format!("{t}-{i}")).after(json!({"i": i}));
                if i % 5 == 0 {
                    log.record_nowait(ev).await?;
                } else {
                    seqs.push(log.record(ev).await?);
                }
            }
            anyhow::Ok(seqs)
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await??);
    }
    a.shutdown().await?;
    b.shutdown().await?;
    assert_eq!(a.events_committed() + b.events_committed(), 1500);
    assert!(a.events_committed() > 0 && b.events_committed() > 0);
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 1200, "every acknowledged seq is distinct");

    let (n, min, max): (i64, i64, i64) =
        sqlx::query_as("SELECT count(*), min(seq), max(seq) FROM audit_events").fetch_one(db.store.pool()).await?;
    assert_eq!((n, min, max), (1500, 1, 1500));
    let report = audit::verify(&db.store, Some(&anchors)).await?;
    assert!(report.intact(), "{:?}", report.first_break);
    assert_eq!(report.events, 1500);
    assert_eq!(report.head.map(|h| h.0), Some(1500));
    assert!(report.anchors_checked >= 3, "start anchors and at least the shutdown anchors: {report:?}");
    // Every anchor line names a committed head; the last one the final head.
    let lines = read_anchors(&anchors)?.unwrap();
    assert_eq!(lines.iter().map(|l| l.seq).max(), Some(1500));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_many_events_per_transaction() -> Result<()> {
    let db = TestDb::new().await?;
    let log = AuditLog::start(db.store.clone(), None, Duration::from_secs(60));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move { log.record(event(i)).await }));
    }
    for t in tasks {
        t.await??;
    }
    log.shutdown().await?;
    assert_eq!(log.events_committed(), 1000);
    let batches = log.batches_committed();
    eprintln!("1000 events in {batches} transactions");
    assert!(batches <= 100, "1000 events took {batches} transactions");
    assert!(audit::verify(&db.store, None).await?.intact());
    // Refused once shut down.
    assert!(log.record(event(1)).await.is_err());
    Ok(())
}

#[tokio::test]
async fn the_table_refuses_update_delete_and_truncate() -> Result<()> {
    let db = TestDb::new().await?;
    fill(&db.store, 3, None).await?;
    let pool = db.store.pool();
    for sql in [
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 3",
        "TRUNCATE audit_events",
    ] {
        let e = sqlx::query(sql).execute(pool).await.expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events").fetch_one(pool).await?;
    assert_eq!(n, 3);
    Ok(())
}

#[tokio::test]
async fn a_tampered_row_is_named() -> Result<()> {
    let db = TestDb::new().await?;
    let dir = tempfile::tempdir()?;
    fill(&db.store, 10, Some(&anchors_in(&dir))).await?;
    assert!(audit::verify(&db.store, Some(&anchors_in(&dir))).await?.intact());
    disable_trigger(&db.store).await?;
    sqlx::query("UPDATE audit_events SET after = jsonb_set(after, '{threshold}', '99') WHERE seq = 4")
        .execute(db.store.pool())
        .await?;
    let r = audit::verify(&db.store, Some(&anchors_in(&dir))).await?;
    let b = r.first_break.expect("tampering detected");
    assert_eq!((b.seq, b.kind), (4, BreakKind::Tampered), "{}", b.detail);
    assert_eq!(r.events, 10);
    // Any column counts, the time included.
    sqlx::query("UPDATE audit_events SET after = (SELECT after FROM audit_events WHERE seq = 5) WHERE seq = 4")
        .execute(db.store.pool())
        .await?;
    sqlx::query("UPDATE audit_events SET at = at + interval '1 microsecond' WHERE seq = 2")
        .execute(db.store.pool())
        .await?;
    let b = audit::verify(&db.store, None).await?.first_break.unwrap();
    assert_eq!((b.seq, b.kind), (2, BreakKind::Tampered));
    Ok(())
}

#[tokio::test]
async fn a_deleted_row_is_named() -> Result<()> {
    let db = TestDb::new().await?;
    fill(&db.store, 10, None).await?;
    disable_trigger(&db.store).await?;
    sqlx::query("DELETE FROM audit_events WHERE seq IN (5, 6)").execute(db.store.pool()).await?;
    let b = audit::verify(&db.store, None).await?.first_break.expect("deletion detected");
    assert_eq!((b.seq, b.kind), (5, BreakKind::Missing), "{}", b.detail);
    // Renumbering the rest to close the gap breaks the hashes instead.
    sqlx::query("UPDATE audit_events SET seq = seq - 2 WHERE seq > 6").execute(db.store.pool()).await?;
    let b = audit::verify(&db.store, None).await?.first_break.unwrap();
    assert_eq!((b.seq, b.kind), (5, BreakKind::Tampered), "{}", b.detail);
    // The first row too.
    let db = TestDb::new().await?;
    fill(&db.store, 3, None).await?;
    disable_trigger(&db.store).await?;
    sqlx::query("DELETE FROM audit_events WHERE seq = 1").execute(db.store.pool()).await?;
    let b = audit::verify(&db.store, None).await?.first_break.unwrap();
    assert_eq!((b.seq, b.kind), (1, BreakKind::Missing));
    Ok(())
}

/// A row rehashed after its change, but not its successors: the next link breaks.
#[tokio::test]
async fn a_rehashed_row_breaks_the_next_link() -> Result<()> {
    let db = TestDb::new().await?;
    fill(&db.store, 5, None).await?;
    disable_trigger(&db.store).await?;
    let mut rows = stored(&db.store).await?;
    let (seq, at, ev, prev) = &mut rows[2];
    ev.after = Some(json!({"threshold": 1000}));
    let hash = event_hash(*seq, at, ev, prev);
    rewrite(&db.store, *seq, ev, prev, &hash).await?;
    let b = audit::verify(&db.store, None).await?.first_break.unwrap();
    assert_eq!((b.seq, b.kind), (4, BreakKind::BrokenLink), "{}", b.detail);
    Ok(())
}

#[tokio::test]
async fn a_truncated_tail_is_caught_by_the_anchors() -> Result<()> {
    let db = TestDb::new().await?;
    let dir = tempfile::tempdir()?;
    let anchors = anchors_in(&dir);
    fill(&db.store, 10, Some(&anchors)).await?;
    let text = std::fs::read_to_string(&anchors)?;
    assert!(text.starts_with(&format!("0 {} ", hex(&GENESIS))), "start anchor of an empty trail: {text}");
    assert!(text.lines().last().unwrap().starts_with("10 "), "shutdown anchor: {text}");
    disable_trigger(&db.store).await?;
    sqlx::query("DELETE FROM audit_events WHERE seq > 7").execute(db.store.pool()).await?;
    // The chain alone looks fine ...
    let r = audit::verify(&db.store, None).await?;
    assert!(r.intact() && r.anchors_read.is_none());
    // ... the anchors do not.
    let r = audit::verify(&db.store, Some(&anchors)).await?;
    let b = r.first_break.expect("truncation detected");
    assert_eq!((b.seq, b.kind), (8, BreakKind::Truncated), "{}", b.detail);
    assert!(b.detail.contains("seq 10"), "{}", b.detail);
    // Everything gone.
    sqlx::query("DELETE FROM audit_events").execute(db.store.pool()).await?;
    let b = audit::verify(&db.store, Some(&anchors)).await?.first_break.unwrap();
    assert_eq!((b.seq, b.kind), (1, BreakKind::Truncated));
    Ok(())
}

#[tokio::test]
async fn a_consistent_rewrite_is_caught_by_the_anchors() -> Result<()> {
    let db = TestDb::new().await?;
    let dir = tempfile::tempdir()?;
    let anchors = anchors_in(&dir);
    fill(&db.store, 6, Some(&anchors)).await?;
    // More events after a restart: the new start anchor names seq 6.
    let log = AuditLog::start(db.store.clone(), Some(anchors.clone()), Duration::from_secs(60));
    for i in 7..=10 {
        log.record(event(i)).await?;
    }
    log.shutdown().await?;
    assert_eq!(read_anchors(&anchors)?.unwrap().iter().map(|a| a.seq).collect::<Vec<_>>(), vec![0, 6, 6, 10]);

    disable_trigger(&db.store).await?;
    let mut rows = stored(&db.store).await?;
    let mut prev = GENESIS;
    for (i, (seq, at, ev, p)) in rows.iter_mut().enumerate() {
        if i == 2 {
            ev.after = Some(json!({"threshold": 1000}));
        }
        *p = prev;
        prev = event_hash(*seq, at, ev, p);
        rewrite(&db.store, *seq, ev, p, &prev).await?;
    }
    let r = audit::verify(&db.store, None).await?;
    assert!(r.intact(), "the rewrite is consistent: {:?}", r.first_break);
    let r = audit::verify(&db.store, Some(&anchors)).await?;
    let b = r.first_break.expect("rewrite detected");
    assert_eq!((b.seq, b.kind), (6, BreakKind::Rewritten), "{}", b.detail);
    Ok(())
}

#[tokio::test]
async fn anchors_missing_or_damaged() -> Result<()> {
    let db = TestDb::new().await?;
    let dir = tempfile::tempdir()?;
    fill(&db.store, 2, None).await?;
    let r = audit::verify(&db.store, Some(&dir.path().join("nope.log"))).await?;
    assert!(r.intact() && r.anchors_read.is_none() && r.anchors_checked == 0 && r.events == 2);
    let head = audit::write_anchor(&db.store, &anchors_in(&dir)).await?;
    assert_eq!(head.0, 2);
    // A torn last line (the writer died mid-append) is skipped; garbage elsewhere is an error.
    let mut text = std::fs::read_to_string(anchors_in(&dir))?;
    text.push_str("3 abc");
    std::fs::write(anchors_in(&dir), &text)?;
    let r = audit::verify(&db.store, Some(&anchors_in(&dir))).await?;
    assert!(r.intact() && r.anchors_checked == 1 && r.anchors_read == Some(1));
    text.push('\n');
    std::fs::write(anchors_in(&dir), &text)?;
    assert!(audit::verify(&db.store, Some(&anchors_in(&dir))).await.is_err());
    Ok(())
}

/// What is hashed is what reads back from jsonb, whatever the numbers and keys look like.
#[tokio::test]
async fn awkward_values_verify() -> Result<()> {
    let db = TestDb::new().await?;
    let awkward = [
        json!({"z": 1, "a": 2, "é": 3, "aa": {"y": [], "x": {}}}),
        json!([1e16, 5.0, -0.0, 0.1, 1e20, -1e19, 1e300, 5e-324, u64::MAX, i64::MIN, 1.5e-7, 123456789.125]),
        json!({"nul\u{0}key": "a\u{0}b", "emoji": "😀\n\t\"\\", "ctl": "\u{1}"}),
        json!("just a string"),
        Value::Null,
    ];
    let log = AuditLog::start(db.store.clone(), None, Duration::from_secs(60));
    for v in &awkward {
        let mut ev = AuditEvent::new("ad\u{0}min", "odd.value", "thing").before(v.clone()).after(v.clone());
        ev.entity_id = Some(String::new());
        log.record(ev).await?;
    }
    log.shutdown().await?;
    let r = audit::verify(&db.store, None).await?;
    assert!(r.intact(), "{:?}", r.first_break);
    assert_eq!(r.events, awkward.len() as u64);
    let back: Vec<Option<Value>> =
        sqlx::query_scalar("SELECT after FROM audit_events ORDER BY seq").fetch_all(db.store.pool()).await?;
    assert_eq!(canonical_json(back[0].as_ref().unwrap()), r#"{"a":2,"aa":{"x":{},"y":[]},"z":1,"é":3}"#);
    assert_eq!(
        canonical_json(back[1].as_ref().unwrap()),
        "[10000000000000000,5,0,0.1,1e+20,-1e+19,1e+300,5e-324,18446744073709551615,-9223372036854775808,1.5e-7,123456789.125]"
    );
    // A JSON null is stored as the JSON value null, not as SQL NULL.
    assert_eq!(back[4], Some(Value::Null));
    Ok(())
}

#[tokio::test]
async fn search_newest_first_with_filters() -> Result<()> {
    let db = TestDb::new().await?;
    fill(&db.store, 12, None).await?;
    let store = &db.store;
    let (items, total) = store.audit_search(&AuditFilter { limit: 5, ..Default::default() }).await?;
    assert_eq!(total, 12);
    assert_eq!(items.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![12, 11, 10, 9, 8]);
    assert_eq!(items[0].hash.len(), 64);
    assert_eq!(items[0].actor_ip.as_deref(), Some("10.0.0.7"));
    let (items, total) = store
        .audit_search(&AuditFilter { actor: Some("user1".into()), action: Some("rule.*".into()), ..Default::default() })
        .await?;
    // user1: i % 3 == 1 -> 1, 4, 7, 10; rule.update: even -> 4, 10.
    assert_eq!((items.iter().map(|r| r.seq).collect::<Vec<_>>(), total), (vec![10, 4], 2));
    let (items, _) = store
        .audit_search(&AuditFilter { entity: Some("rule".into()), entity_id: Some("7".into()), ..Default::default() })
        .await?;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].after.as_ref().unwrap()["threshold"], 8);
    assert_eq!(items[0].action, "warning.resolve");
    let (_, total) =
        store.audit_search(&AuditFilter { action: Some("rule_update*".into()), ..Default::default() }).await?;
    assert_eq!(total, 0, "`_` is literal in a prefix");
    let (items, total) = store.audit_search(&AuditFilter { limit: 5, offset: 10, ..Default::default() }).await?;
    assert_eq!((items.len(), total), (2, 12));
    let future: DateTime<Utc> = Utc::now() + chrono::Duration::hours(1);
    let (_, total) = store.audit_search(&AuditFilter { since: Some(future), ..Default::default() }).await?;
    assert_eq!(total, 0);
    let (_, total) = store.audit_search(&AuditFilter { until: Some(future), ..Default::default() }).await?;
    assert_eq!(total, 12);
    Ok(())
}

/// The periodic anchor follows the head while it moves, and only then.
#[tokio::test]
async fn anchors_are_written_periodically_when_the_head_moves() -> Result<()> {
    let db = TestDb::new().await?;
    let dir = tempfile::tempdir()?;
    let anchors = anchors_in(&dir);
    let log = AuditLog::start(db.store.clone(), Some(anchors.clone()), Duration::from_millis(100));
    log.record(event(1)).await?;
    tokio::time::sleep(Duration::from_millis(350)).await;
    log.record(event(2)).await?;
    tokio::time::sleep(Duration::from_millis(350)).await;
    log.shutdown().await?;
    let seqs: Vec<u64> = read_anchors(&anchors)?.unwrap().iter().map(|a| a.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2], "start, then once per move; nothing at shutdown when unchanged");
    assert!(audit::verify(&db.store, Some(&anchors)).await?.intact());
    Ok(())
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

type Stored = (u64, DateTime<Utc>, AuditEvent, [u8; 32]);

#[allow(clippy::type_complexity)]
async fn stored(store: &Store) -> Result<Vec<Stored>> {
    let rows: Vec<(
        i64,
        DateTime<Utc>,
        String,
        Option<String>,
        String,
        String,
        Option<String>,
        Option<Value>,
        Option<Value>,
        Vec<u8>,
    )> = sqlx::query_as(
        "SELECT seq, at, actor, actor_ip, action, entity, entity_id, before, after, prev_hash FROM audit_events \
         ORDER BY seq",
    )
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, at, actor, actor_ip, action, entity, entity_id, before, after, prev)| {
            let ev = AuditEvent { actor, actor_ip, action, entity, entity_id, before, after };
            (seq as u64, at, ev, prev.try_into().unwrap())
        })
        .collect())
}

async fn rewrite(store: &Store, seq: u64, ev: &AuditEvent, prev: &[u8; 32], hash: &[u8; 32]) -> Result<()> {
    sqlx::query("UPDATE audit_events SET after = $2, prev_hash = $3, hash = $4 WHERE seq = $1")
        .bind(seq as i64)
        .bind(&ev.after)
        .bind(prev.as_slice())
        .bind(hash.as_slice())
        .execute(store.pool())
        .await?;
    Ok(())
}

/// `verify` beside a busy writer that anchors often: every run is intact (the anchors are read
/// before the snapshot, so none lies beyond it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_while_writing() -> Result<()> {
    let db = TestDb::new().await?;
    let dir = tempfile::tempdir()?;
    let anchors = anchors_in(&dir);
    let log = AuditLog::start(db.store.clone(), Some(anchors.clone()), Duration::from_millis(10));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..4 {
        let (log, stop) = (log.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                log.record(event(t * 100_000 + i)).await?;
                i += 1;
            }
            anyhow::Ok(())
        }));
    }
    let mut runs = 0;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        let r = audit::verify(&db.store, Some(&anchors)).await?;
        assert!(r.intact(), "{:?}", r.first_break);
        runs += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await??;
    }
    log.shutdown().await?;
    let r = audit::verify(&db.store, Some(&anchors)).await?;
    assert!(r.intact() && r.anchors_checked > 2, "{r:?}");
    eprintln!("{runs} verifications beside {} events, {} anchors", r.events, r.anchors_checked);
    Ok(())
}
