//! A shard catching up from its checkpoint does not hold the others up, and its own live rows
//! wait for it: per series, the detectors see the backlog, then what arrived live meanwhile.
//! (One test per binary: it reads the process-wide replay gauges.)

use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Utc};
use offsite_analytics::chain::Chain;
use offsite_analytics::live::{Analytics, LiveConfig};
use offsite_analytics::rules::{Condition, RuleDetector, Scope};
use offsite_analytics::shards::{REPLAYED, REPLAYING};
use offsite_analytics::Level;
use offsite_store::rules::NewRule;
use offsite_store::testing::TestDb;
use offsite_store::{NewDevice, SampleRow, Store};
use offsite_wire::DeviceId;

async fn online_device(store: &Store, id: &str) -> Result<i32> {
    let d = store
        .insert_device(&NewDevice {
            id: DeviceId::parse(id)?,
            name: id.into(),
            object_id: None,
            token_sha256: [1; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?;
    store.set_device_online(d.key, true, Utc::now()).await?;
    Ok(d.key)
}

/// (count, open) of the rule warnings of a device, oldest first.
async fn warnings(store: &Store, device: i32) -> Result<Vec<(i32, bool)>> {
    Ok(sqlx::query_as(
        "SELECT count, resolved_at IS NULL FROM warnings WHERE device_key = $1 AND source = 'rules' ORDER BY id",
    )
    .bind(device)
    .fetch_all(store.pool())
    .await?)
}

async fn wait_until<F, Fut>(what: &str, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + Duration::from_secs(120);
    while Instant::now() < end {
        if f().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_backlog_holds_neither_other_shards_nor_its_order() -> Result<()> {
    let db = TestDb::new().await?;
    let store = &db.store;
    let pm10 = store.metric_by_key("pm10").await?.unwrap().id;
    store
        .insert_rule(&NewRule {
            name: "PM10 超标".into(),
            scope: Scope {
                metric: Some("pm10".into()),
                ..Scope::default()
            },
            level: Level::ORANGE,
            condition: Condition::Threshold {
                above: Some(150.0),
                below: None,
                for_s: 0,
                hysteresis: 10.0,
            },
            item: None,
            enabled: true,
        })
        .await?;
    // `quiet` in a shard after the backlog's: replayed one shard after another, it would wait.
    let backlogged = online_device(store, "replayA").await?;
    let mut quiet = online_device(store, "replayB0").await?;
    for i in 1.. {
        if quiet % 16 > backlogged % 16 {
            break;
        }
        quiet = online_device(store, &format!("replayB{i}")).await?;
    }

    // 400,000 committed samples of `backlogged` never analysed (no checkpoint yet), ending in a
    // spike; device time 100 ms apart, received within the last minute.
    const N: i64 = 400_000;
    let now = store.db_now().await?;
    let first = now - chrono::Duration::milliseconds(N * 100 + 1000);
    for day in [first.date_naive(), now.date_naive()] {
        store.ensure_partition(day).await?;
    }
    sqlx::query(
        "INSERT INTO samples (device_key, metric_id, ts, received_at, value, quality) \
         SELECT $1, $2, $3 + make_interval(secs => i * 0.1), now() - make_interval(secs => ($4 - i) * 50.0 / $4), \
         CASE WHEN i = $4 - 1 THEN 240 ELSE 40 + i % 7 END, 0 FROM generate_series(0, $4 - 1) i",
    )
    .bind(backlogged)
    .bind(pm10)
    .bind(first)
    .bind(N as i32)
    .execute(store.pool())
    .await?;
    let after_backlog = first + chrono::Duration::milliseconds(N * 100);

    let (tx, rx) = flume::bounded(100);
    let (live_tx, _live) = tokio::sync::broadcast::channel(100);
    let cfg = LiveConfig {
        idle_every: Duration::from_millis(200),
        ..LiveConfig::default()
    };
    let chain = Chain::new(vec![Box::new(RuleDetector::default())]);
    let analytics = Analytics::start(store.clone(), chain, cfg, rx, live_tx).await?;
    let row = |device: i32, ts: DateTime<Utc>, value: f64| SampleRow {
        device_key: device,
        metric_id: pm10,
        ts,
        received_at: Utc::now(),
        value,
        quality: 0,
    };
    // Live, while the backlog replays: the quiet device's spike, and the backlogged device's
    // next two values (its spike goes on, then ends).
    tx.send((Instant::now(), vec![row(quiet, now, 230.0)]))?;
    tx.send((
        Instant::now(),
        vec![
            row(backlogged, after_backlog, 245.0),
            row(
                backlogged,
                after_backlog + chrono::Duration::seconds(1),
                50.0,
            ),
        ],
    ))?;

    wait_until("the quiet device's warning", || async {
        warnings(store, quiet).await.unwrap_or_default().len() == 1
    })
    .await?;
    let (replaying, replayed) = (REPLAYING.get(), REPLAYED.get());
    eprintln!("quiet device's warning opened with {replaying} shard(s) replaying, {replayed} of {N} samples replayed");
    assert!(
        replaying >= 1 && replayed < N as u64,
        "opened while the backlog replays: {replaying} replaying, {replayed} replayed"
    );

    wait_until("the replay's end", || async { REPLAYING.get() == 0 }).await?;
    wait_until("the backlogged device's warning resolved", || async {
        warnings(store, backlogged)
            .await
            .unwrap_or_default()
            .iter()
            .any(|(_, open)| !open)
    })
    .await?;
    assert_eq!(
        warnings(store, backlogged).await?,
        vec![(1, false)],
        "the replayed spike opened it, the held live 50 resolved it (after the backlog: in device time order)"
    );
    assert_eq!(warnings(store, quiet).await?, vec![(1, true)]);
    analytics.shutdown().await;
    Ok(())
}
