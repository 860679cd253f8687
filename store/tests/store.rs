//! Storage against a real PostgreSQL: exactly-once rows, partitions, retention, the embedded cluster.

use anyhow::Result;
use chrono::{Duration, Utc};
use offsite_store::embedded::{EmbeddedOptions, EmbeddedPostgres};
use offsite_store::testing::TestDb;
use offsite_store::{NewDevice, Partitioning, SampleRow, Store};
use offsite_wire::DeviceId;

async fn device(store: &Store, id: &str) -> Result<i32> {
    let d = store
        .insert_device(&NewDevice {
            id: DeviceId::parse(id)?,
            name: id.into(),
            object_id: None,
            token_sha256: [7; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?;
    Ok(d.key)
}

fn row(device_key: i32, metric_id: i32, ts: chrono::DateTime<Utc>, value: f64) -> SampleRow {
    SampleRow { device_key, metric_id, ts, received_at: Utc::now(), value, quality: 0 }
}

#[tokio::test]
async fn each_sample_is_stored_once() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let k = device(s, "dup1").await?;
    let m = s.metric_by_key("pm10").await?.unwrap().id;
    let t = Utc::now() - Duration::minutes(5);
    let rows: Vec<SampleRow> = (0..100).map(|i| row(k, m, t + Duration::seconds(i), i as f64)).collect();
    let first = s.write_samples(&rows).await?;
    assert_eq!((first.inserted, first.duplicates), (100, 0));
    // Redelivery of the whole batch plus 10 new rows, and a duplicate inside the batch itself.
    let mut again = rows.clone();
    again.extend((100..110).map(|i| row(k, m, t + Duration::seconds(i), i as f64)));
    again.push(row(k, m, t + Duration::seconds(105), 999.0));
    let second = s.write_samples(&again).await?;
    assert_eq!((second.inserted, second.duplicates), (10, 101));
    assert_eq!(s.sample_count().await?, 110);
    // First value wins; the latest table holds the newest point.
    let v: f64 = sqlx::query_scalar("SELECT value FROM samples WHERE ts = $1").bind(t + Duration::seconds(105)).fetch_one(s.pool()).await?;
    assert_eq!(v, 105.0);
    let latest: f64 = sqlx::query_scalar("SELECT value FROM sample_latest WHERE device_key = $1 AND metric_id = $2")
        .bind(k)
        .bind(m)
        .fetch_one(s.pool())
        .await?;
    assert_eq!(latest, 109.0);
    Ok(())
}

#[tokio::test]
async fn partitions_are_created_ahead_and_dropped_after_retention() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    if s.partitioning().await? == Partitioning::Timescale {
        eprintln!("SKIP: TimescaleDB is in use; native partition maintenance does not apply");
        return Ok(());
    }
    let k = device(s, "part1").await?;
    let m = s.metric_by_key("pm25").await?.unwrap().id;
    // Rows 20 and 2 days old: their partitions are created on demand.
    let old = Utc::now() - Duration::days(20);
    let recent = Utc::now() - Duration::days(2);
    s.write_samples(&[row(k, m, old, 1.0), row(k, m, recent, 2.0)]).await?;
    s.maintain_partitions(3, 10).await?;
    let parts: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'samples' ORDER BY 1",
    )
    .fetch_all(s.pool())
    .await?;
    let name = |d: chrono::DateTime<Utc>| format!("samples_{}", d.format("%Y%m%d"));
    assert!(!parts.contains(&name(old)), "20-day-old partition dropped with 10-day retention: {parts:?}");
    assert!(parts.contains(&name(recent)));
    for ahead in 0..=3 {
        assert!(parts.contains(&name(Utc::now() + Duration::days(ahead))), "{ahead} days ahead: {parts:?}");
    }
    let values: Vec<f64> = sqlx::query_scalar("SELECT value FROM samples ORDER BY ts").fetch_all(s.pool()).await?;
    assert_eq!(values, vec![2.0]);
    // Writing to the dropped day again recreates its partition (the cache forgot it).
    s.write_samples(&[row(k, m, old, 3.0)]).await?;
    assert_eq!(s.sample_count().await?, 2);
    Ok(())
}

#[tokio::test]
async fn timescaledb_hypertable_when_available() -> Result<()> {
    let db = TestDb::new().await?;
    let available: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')")
        .fetch_one(db.store.pool())
        .await?;
    if !available {
        eprintln!("SKIP: the timescaledb extension is not installed on this PostgreSQL server; native partitions are used");
        assert_eq!(db.store.partitioning().await?, Partitioning::Native);
        return Ok(());
    }
    assert_eq!(db.store.partitioning().await?, Partitioning::Timescale);
    let is_hyper: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'samples')",
    )
    .fetch_one(db.store.pool())
    .await?;
    assert!(is_hyper);
    db.store.maintain_partitions(7, 30).await?;
    Ok(())
}

#[tokio::test]
async fn embedded_cluster_is_shared_and_stopped_by_its_starter() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("offsite-pg-").tempdir_in("/tmp")?;
    let opts = EmbeddedOptions { port: 5433, ..Default::default() };
    let first = EmbeddedPostgres::ensure(dir.path(), &opts).await?;
    assert!(first.started_here());
    assert!(dir.path().join("postgres/PG_VERSION").exists());
    let second = EmbeddedPostgres::ensure(dir.path(), &opts).await?;
    assert!(!second.started_here(), "a second user shares the running cluster");
    second.ensure_database("offsite").await?;
    let store = Store::connect(second.connect_options("offsite"), 2).await?;
    store.ping().await?;
    store.pool().close().await;
    second.stop().await?; // not the starter: a no-op
    assert!(first.is_running());
    let check = EmbeddedPostgres::ensure(dir.path(), &opts).await?;
    first.stop().await?;
    assert!(!check.is_running());
    Ok(())
}

/// A cluster whose starter died (its lock gone, the cluster still running) is taken over by the
/// next user and stopped by it; a user that outlives a dead starter stops it too.
#[tokio::test]
async fn embedded_cluster_left_by_a_dead_starter_is_taken_over_and_stopped() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("offsite-pg-").tempdir_in("/tmp")?;
    std::process::Command::new("chmod").arg("755").arg(dir.path()).status()?;
    let opts = EmbeddedOptions { port: 5434, ..Default::default() };
    let starter = EmbeddedPostgres::ensure(dir.path(), &opts).await?;
    assert!(starter.started_here());
    // Dropped without stop: what a SIGKILL leaves (the cluster runs, the lock is gone).
    drop(starter);
    let heir = EmbeddedPostgres::ensure(dir.path(), &opts).await?;
    assert!(heir.is_running());
    assert!(heir.started_here(), "a running cluster without users is taken over");
    let sharer = EmbeddedPostgres::ensure(dir.path(), &opts).await?;
    assert!(!sharer.started_here(), "while the heir lives, others share");
    drop(heir);
    assert!(sharer.is_running());
    let probe = EmbeddedPostgres::ensure(dir.path(), &opts).await?;
    assert!(!probe.started_here(), "the sharer still uses it");
    drop(probe);
    sharer.stop().await?; // the last user: stops it although it did not start it
    let after = EmbeddedPostgres::ensure(dir.path(), &opts).await?;
    assert!(after.started_here(), "stopped by the last user, so started again here");
    after.stop().await?;
    Ok(())
}

#[tokio::test]
async fn command_answers_are_recorded_once_and_only_from_their_device() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let a = device(s, "cmda").await?;
    let b = device(s, "cmdb").await?;
    let body = serde_json::json!({"sources": {"dust": {"interval_ms": 5000}}});
    s.insert_command("c1", a, "configure", &body, Some("tester")).await?;
    let ack = offsite_wire::CommandAck { id: "c1".into(), ok: true, error: None, state: Some(serde_json::json!({"dust": {}})) };
    // Another device cannot answer for it.
    assert!(!s.record_command_ack(b, &ack, Utc::now()).await?);
    assert!(s.command("c1").await?.unwrap().acked_at.is_none());
    assert!(s.record_command_ack(a, &ack, Utc::now()).await?);
    // A repeated answer (after a redelivery) does not overwrite the first.
    let later = offsite_wire::CommandAck { ok: false, error: Some("late".into()), ..ack.clone() };
    assert!(!s.record_command_ack(a, &later, Utc::now()).await?);
    let c = s.command("c1").await?.unwrap();
    assert_eq!((c.device_id.as_str(), c.ok, c.error), ("cmda", Some(true), None));
    assert_eq!(c.body, body);
    assert_eq!(s.device_commands(a, 10).await?.len(), 1);
    assert!(s.device_commands(b, 10).await?.is_empty());
    // Health metrics of the edge agent are in the catalog.
    assert!(s.metric_by_key("agent.queue_depth").await?.is_some());
    Ok(())
}
