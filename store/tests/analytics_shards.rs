//! Analytics shard leases, checkpoints, replay pages and the replay-safe warning upsert against a
//! real PostgreSQL.

use anyhow::Result;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use offsite_store::analytics_shards::{ReplayCursor, Shard, ShardCount};
use offsite_store::testing::TestDb;
use offsite_store::{Level, NewDevice, NewWarning, SampleRow, Store};
use offsite_wire::DeviceId;

fn utc_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn shards(round: &[Shard]) -> Vec<u16> {
    round.iter().map(|s| s.get()).collect()
}

/// Ends `replica`'s lease and heartbeat as a SIGKILL would once the lease time has passed.
async fn expire(store: &Store, replica: &str) -> Result<()> {
    sqlx::query(
        "UPDATE analytics_shards SET lease_until = now() - interval '1 second' WHERE owner = $1",
    )
    .bind(replica)
    .execute(store.pool())
    .await?;
    sqlx::query(
        "UPDATE analytics_replicas SET seen_until = now() - interval '1 second' WHERE replica = $1",
    )
    .bind(replica)
    .execute(store.pool())
    .await?;
    Ok(())
}

#[tokio::test]
async fn replicas_split_shards_fairly_and_take_over_a_dead_ones() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let n = ShardCount::new(16)?;
    let lease = Duration::seconds(15);
    s.ensure_analytics_shards(n).await?;
    s.ensure_analytics_shards(n).await?;
    assert!(
        s.ensure_analytics_shards(ShardCount::new(8)?)
            .await
            .is_err(),
        "the count is fixed once set"
    );

    let a = s.analytics_lease_round("a", n, lease, false).await?;
    assert_eq!(a.owned.len(), 16, "alone, a takes everything");
    assert_eq!(a.acquired.len(), 16);
    assert!(
        a.acquired.iter().all(|(_, c)| c.is_none()),
        "never analysed: no checkpoint"
    );

    // b arrives: nothing is free yet; a gives back its surplus on its next round; b takes it.
    let b = s.analytics_lease_round("b", n, lease, false).await?;
    assert_eq!((b.owned.len(), b.live_replicas), (0, 2));
    let a = s.analytics_lease_round("a", n, lease, false).await?;
    assert_eq!(shards(&a.owned), (0..8).collect::<Vec<_>>());
    assert_eq!(shards(&a.released), (8..16).collect::<Vec<_>>());
    let b = s.analytics_lease_round("b", n, lease, false).await?;
    assert_eq!(shards(&b.owned), (8..16).collect::<Vec<_>>());
    // Settled: another round changes nothing.
    let a2 = s.analytics_lease_round("a", n, lease, false).await?;
    assert_eq!(
        (a2.owned, a2.acquired.len(), a2.released.len()),
        (a.owned.clone(), 0, 0)
    );

    // Checkpoints move forward only, and only for the owner.
    let t = utc_now();
    assert_eq!(
        s.advance_analytics_checkpoints("a", &[(a.owned[0], t), (b.owned[0], t)])
            .await?,
        1
    );
    s.advance_analytics_checkpoints("a", &[(a.owned[0], t - Duration::seconds(5))])
        .await?;
    let table = s.analytics_shards().await?;
    assert_eq!(table[0], (0, Some("a".to_owned()), Some(t)));
    assert_eq!(table[8].2, None, "b's shard untouched by a");

    // a dies (no release): once its lease lapses, b takes all, with a's checkpoint.
    expire(s, "a").await?;
    let b = s.analytics_lease_round("b", n, lease, false).await?;
    assert_eq!(b.owned.len(), 16);
    assert_eq!(b.acquired.len(), 8);
    assert!(
        b.acquired.contains(&(a.owned[0], Some(t))),
        "the checkpoint travels with the shard"
    );
    // A clean shutdown frees everything at once.
    assert_eq!(s.release_analytics_shards("b").await?, 16);
    let c = s.analytics_lease_round("c", n, lease, false).await?;
    assert_eq!((c.owned.len(), c.live_replicas), (16, 1));
    Ok(())
}

#[tokio::test]
async fn an_exclusive_replica_takes_live_leases() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let n = ShardCount::new(4)?;
    s.ensure_analytics_shards(n).await?;
    s.analytics_lease_round("old", n, Duration::seconds(60), false)
        .await?;
    let r = s
        .analytics_lease_round("all-in-one", n, Duration::seconds(60), true)
        .await?;
    assert_eq!(
        r.owned.len(),
        4,
        "the in-process feed reaches only this replica: it owns all"
    );
    let old = s
        .analytics_lease_round("old", n, Duration::seconds(60), false)
        .await?;
    assert!(old.owned.is_empty(), "the old owner sees its shards gone");
    Ok(())
}

#[tokio::test]
async fn replay_pages_follow_received_at_and_the_shard() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let n = ShardCount::new(2)?;
    let mut keys = vec![];
    for id in ["rp1", "rp2"] {
        let d = s
            .insert_device(&NewDevice {
                id: DeviceId::parse(id)?,
                name: id.into(),
                object_id: None,
                token_sha256: [7; 32],
                cert_serial: None,
                cert_not_after: None,
            })
            .await?;
        keys.push(d.key);
    }
    let m = s.ensure_metric("pm10").await?.id;
    let t0 = utc_now() - Duration::minutes(10);
    let mut rows = vec![];
    for i in 0..25 {
        for &k in &keys {
            rows.push(SampleRow {
                device_key: k,
                metric_id: m,
                ts: t0 + Duration::seconds(i),
                received_at: t0 + Duration::seconds(i),
                value: i as f64,
                quality: 0,
            });
        }
    }
    s.write_samples(&rows).await?;
    let shard = n.shard_of(keys[0]);
    let after = t0 + Duration::seconds(4);
    let (mut got, mut cursor) = (vec![], ReplayCursor::After(after));
    loop {
        let page = s.replay_page(n, shard, cursor, utc_now(), 7).await?;
        let Some(last) = page.last() else { break };
        cursor = ReplayCursor::past(last);
        got.extend(page);
    }
    assert_eq!(
        got.len(),
        20,
        "received after the checkpoint: seconds 5..24"
    );
    assert!(got.iter().all(|r| n.shard_of(r.device_key) == shard));
    assert!(
        got.windows(2).all(|w| w[0].ts < w[1].ts),
        "device time order"
    );
    assert_eq!(got[0].value, 5.0);
    Ok(())
}

#[tokio::test]
async fn a_replayed_raise_neither_doubles_nor_reopens_an_episode() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let d = s
        .insert_device(&NewDevice {
            id: DeviceId::parse("ep1")?,
            name: "ep".into(),
            object_id: None,
            token_sha256: [7; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?;
    let t = utc_now() - Duration::minutes(5);
    let w = |at: DateTime<Utc>| NewWarning {
        dedup_key: "rules|ep1|pm10|over".into(),
        source: "rules".into(),
        source_version: "1".into(),
        event: "over".into(),
        level: Level::YELLOW,
        device_key: d.key,
        metric_id: None,
        object_id: None,
        detail: "over".into(),
        score: 1.0,
        at,
        evidence: serde_json::json!({}),
        group_window: Duration::seconds(30),
    };
    let count = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM warnings WHERE dedup_key = 'rules|ep1|pm10|over'",
        )
        .fetch_one(s.pool())
        .await
    };
    assert!(s
        .upsert_warning_unless_covered(&w(t))
        .await?
        .unwrap()
        .is_opened());
    assert!(
        s.upsert_warning_unless_covered(&w(t)).await?.is_none(),
        "the same sample again: covered"
    );
    let r = s
        .upsert_warning_unless_covered(&w(t + Duration::seconds(10)))
        .await?
        .unwrap();
    assert!(!r.is_opened(), "a later sighting repeats the open one");
    assert_eq!(r.record().count, 2);
    // A clear older than the episode cannot end it; the real clear does.
    assert!(s
        .resolve_warning("rules|ep1|pm10|over", t - Duration::seconds(1), "cleared")
        .await?
        .is_none());
    assert!(s
        .resolve_warning("rules|ep1|pm10|over", t + Duration::seconds(20), "cleared")
        .await?
        .is_some());
    // Replaying the raise at t or t+10 must not re-open the resolved episode.
    assert!(s.upsert_warning_unless_covered(&w(t)).await?.is_none());
    assert!(
        s.upsert_warning_unless_covered(&w(t + Duration::seconds(15)))
            .await?
            .is_none(),
        "within the cleared episode"
    );
    assert_eq!(count().await?, 1);
    // A raise after the clear is a new episode.
    assert!(s
        .upsert_warning_unless_covered(&w(t + Duration::seconds(30)))
        .await?
        .unwrap()
        .is_opened());
    assert_eq!(count().await?, 2);
    Ok(())
}

/// Keyset paging by received_at: rows sharing one received_at (a batch) split across pages
/// without loss or repeat, and the upper bound stops the replay where the live feed took over.
#[tokio::test]
async fn replay_pages_split_a_batch_and_stop_at_the_upper_bound() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let n = ShardCount::new(1)?;
    let d = s
        .insert_device(&NewDevice {
            id: DeviceId::parse("rpk")?,
            name: "rpk".into(),
            object_id: None,
            token_sha256: [7; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?;
    let m = s.ensure_metric("pm10").await?.id;
    let t0 = utc_now() - Duration::minutes(10);
    // Two batches of 10 rows each, one received_at per batch.
    let rows: Vec<_> = (0..20)
        .map(|i| SampleRow {
            device_key: d.key,
            metric_id: m,
            ts: t0 + Duration::seconds(i),
            received_at: t0 + Duration::seconds(if i < 10 { 100 } else { 200 }),
            value: i as f64,
            quality: 0,
        })
        .collect();
    s.write_samples(&rows).await?;
    let shard = n.shard_of(d.key);
    let read = |upto| async move {
        let (mut got, mut cursor) = (vec![], ReplayCursor::After(t0));
        loop {
            let page = s.replay_page(n, shard, cursor, upto, 3).await?;
            let Some(last) = page.last() else { break };
            cursor = ReplayCursor::past(last);
            got.extend(page.into_iter().map(|r| r.value as i64));
        }
        anyhow::Ok(got)
    };
    assert_eq!(
        read(t0 + Duration::seconds(300)).await?,
        (0..20).collect::<Vec<_>>()
    );
    assert_eq!(
        read(t0 + Duration::seconds(150)).await?,
        (0..10).collect::<Vec<_>>(),
        "the second batch was received after the bound"
    );
    Ok(())
}

/// A second in-process replica (another ingest with analytics beside it) takes no shard while the
/// first one's leases are live, says who holds them, and takes them all once those lapse.
#[tokio::test]
async fn a_second_in_process_replica_waits_for_the_first() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let n = ShardCount::new(4)?;
    s.ensure_analytics_shards(n).await?;
    let first = s
        .analytics_lease_round("in-process-a", n, Duration::seconds(60), true)
        .await?;
    assert_eq!(first.owned.len(), 4);
    let second = s
        .analytics_lease_round("in-process-b", n, Duration::seconds(60), true)
        .await?;
    assert!(second.owned.is_empty(), "the first one's leases are live");
    assert_eq!(second.in_process_rivals, vec!["in-process-a".to_string()]);
    expire(s, "in-process-a").await?;
    let second = s
        .analytics_lease_round("in-process-b", n, Duration::seconds(60), true)
        .await?;
    assert_eq!(
        second.owned.len(),
        4,
        "the first one died: its leases lapsed"
    );
    assert!(second.in_process_rivals.is_empty());
    let first = s
        .analytics_lease_round("in-process-a", n, Duration::seconds(60), true)
        .await?;
    assert!(first.owned.is_empty() && first.in_process_rivals == vec!["in-process-b".to_string()]);
    Ok(())
}
