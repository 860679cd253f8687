//! Analytics as its own tier (issues 10 and 11): `offsite broker` + `offsite ingest` (feed =
//! shards) + `offsite analytics` replicas as real processes, SIGKILLed mid-stream; and the
//! all-in-one's in-process analytics replaying after a SIGKILL. Each asserts stored = sent and
//! that every warning exists exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use offsite_tests::analytics::*;
use offsite_tests::*;
use offsite_wire::DeviceCredentials;

/// Short leases so a dead replica's shards move within seconds.
const LEASE_S: u64 = 4;

/// `offsite <args>` with the analytics settings of these tests, stderr to `log` if given.
fn spawn(site: &Site, args: &[&str], replica: Option<&str>, log: Option<&Path>) -> Result<Proc> {
    let mut c = site.command(args);
    c.env("OFFSITE_ANALYTICS__FEED", "shards")
        .env("OFFSITE_ANALYTICS__LEASE_S", LEASE_S.to_string())
        .env("OFFSITE_ANALYTICS__RENEW_S", "1")
        // A wide margin: the replay after a kill re-reads everything analysed before it, so the
        // tests also prove that re-analysing does not double a warning.
        .env("OFFSITE_ANALYTICS__CHECKPOINT_MARGIN_S", "60");
    if let Some(r) = replica {
        c.env("OFFSITE_ANALYTICS__REPLICA", r);
    }
    if std::env::var_os("OFFSITE_TEST_VERBOSE").is_some() {
        c.env(
            "RUST_LOG",
            "info,offsite_analytics=debug,rumqttd=warn,sqlx=warn",
        );
    }
    if let Some(log) = log {
        c.env(
            "RUST_LOG",
            "info,offsite_analytics::live=debug,rumqttd=warn,sqlx=warn",
        )
        .stderr(Stdio::from(std::fs::File::create(log)?));
    }
    Ok(Proc(c.spawn().context("spawning offsite")?))
}

/// Issue 10: SIGKILL of the analytics process mid-stream. The anomaly is sent while it is dead
/// (the feed reaches nobody), so only the replay from the checkpoint can raise its warning; the
/// replay also re-reads the samples of the warnings raised before the kill, which must not double
/// or re-open.
#[tokio::test(flavor = "multi_thread")]
async fn analytics_killed_mid_stream_replays_without_doubles() -> Result<()> {
    let site = Site::new().await?;
    pm10_rule(&site).await?;
    let _broker = spawn(&site, &["broker"], None, None)?;
    wait_port(site.tls_port, Duration::from_secs(60)).await?;
    wait_port(site.plain_port, Duration::from_secs(10)).await?;
    let _ingest = spawn(&site, &["ingest"], None, None)?;
    let mut analytics = spawn(&site, &["analytics"], None, None)?;
    wait_for(
        "one replica owning all shards",
        Duration::from_secs(60),
        || async {
            owners(&site)
                .await
                .map(|o| o.len() == 16 && o.iter().all(|x| x.is_some()))
                .unwrap_or(false)
        },
    )
    .await?;

    let start = Utc::now().timestamp_millis() - 600_000;
    let (mut resolved, mut open, mut later) = (
        Streamer::connect(&site, &site.provision("回放已恢复").await?, start)?,
        Streamer::connect(&site, &site.provision("回放未恢复").await?, start)?,
        Streamer::connect(&site, &site.provision("回放停机期间").await?, start)?,
    );
    // An offline device's data warnings are inhibited by design: wait for their online status.
    wait_online(&site, &[&resolved.id, &open.id, &later.id]).await?;
    for s in [&mut resolved, &mut open, &mut later] {
        s.send(&[50.0; 20]).await?;
    }
    // Before the kill: one episode raised and cleared, one raised and still open.
    resolved.send(&[200.0, 210.0, 60.0, 55.0]).await?;
    open.send(&[190.0, 195.0]).await?;
    wait_rule_warnings(&site, &resolved.id, &[(1, false)], Duration::from_secs(30)).await?;
    wait_rule_warnings(&site, &open.id, &[(1, true)], Duration::from_secs(30)).await?;

    // The owner has moved the checkpoints of these devices' shards (so the replay below starts
    // from a checkpoint, not from the maximum window).
    let mut shards = vec![];
    for s in [&resolved, &open, &later] {
        shards.push(device_key(&site, &s.id).await? % 16);
    }
    wait_for("checkpoints written", Duration::from_secs(20), || async {
        let t = site.db.store.analytics_shards().await.unwrap_or_default();
        shards
            .iter()
            .all(|s| t.iter().any(|(n, _, c)| n == s && c.is_some()))
    })
    .await?;
    analytics.kill9();
    // While analytics is dead: the stream goes on and an anomaly arrives; ingest commits it.
    for _ in 0..5 {
        for s in [&mut resolved, &mut later] {
            s.send(&[52.0; 5]).await?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    later.send(&[230.0]).await?;
    assert!(later.link.flush(Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rule_warnings(&site, &later.id).await?,
        vec![],
        "nobody analysed the anomaly yet"
    );

    // An offline device's data warnings are inhibited by design: all three must be online.
    wait_online(&site, &[&resolved.id, &open.id, &later.id]).await?;
    let _analytics = spawn(&site, &["analytics"], None, None)?;
    wait_rule_warnings(
        &site,
        &later.id,
        &[(1, true)],
        Duration::from_secs(LEASE_S * 5 + 30),
    )
    .await?;
    // Let the new replica settle and follow the live feed a little more.
    for s in [&mut resolved, &mut open, &mut later] {
        s.send(&[231.0, 232.0]).await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rule_warnings(&site, &resolved.id).await?,
        vec![(1, false), (1, true)],
        "the cleared episode stays one; the new high opens one"
    );
    // The replay ran the open episode's samples again: skipped as covered, not counted again.
    assert_eq!(
        rule_warnings(&site, &open.id).await?,
        vec![(1, true)],
        "the open warning is not doubled"
    );
    assert_eq!(rule_warnings(&site, &later.id).await?, vec![(1, true)]);
    for s in [&resolved, &open, &later] {
        s.stored_equals_sent(&site).await?;
    }
    Ok(())
}

/// Publishes a well-formed feed message for `victim` to its shard topic with a device's own
/// credentials (certificate and token), as a compromised device would.
async fn forge_feed(site: &Site, c: &DeviceCredentials, victim: i32) -> Result<()> {
    use offsite_store::analytics_shards::{encode_feed, feed_topic, ShardCount};
    use rumqttc::{AsyncClient, MqttOptions, QoS, TlsConfiguration, Transport};
    let metric = site
        .db
        .store
        .metric_by_key("pm10")
        .await?
        .context("pm10")?
        .id;
    let row = offsite_store::SampleRow {
        device_key: victim,
        metric_id: metric,
        ts: Utc::now(),
        received_at: Utc::now(),
        value: 999.0,
        quality: 0,
    };
    let mut o = MqttOptions::new("forger", "localhost", site.tls_port);
    o.set_credentials(c.device_id.as_str(), c.token.as_str());
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: c.ca_pem.as_bytes().to_vec(),
        alpn: None,
        client_auth: Some((
            c.cert_pem.as_bytes().to_vec(),
            c.key_pem.as_bytes().to_vec(),
        )),
    }));
    let (client, mut ev) = AsyncClient::new(o, 10);
    assert!(connack_ok(&mut ev).await, "the device itself may connect");
    let topic = feed_topic(ShardCount::new(16)?.shard_of(victim));
    client
        .publish(topic, QoS::AtLeastOnce, false, encode_feed(&[row]))
        .await?;
    // Drive the connection until the broker closes it (the refusal) or a few seconds pass.
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while ev.poll().await.is_ok() {}
    })
    .await;
    Ok(())
}

/// The shards each replica analysed, from its debug log lines `analysing ... shards={..}` after
/// byte `from`.
fn analysed_shards(log: &Path, from: usize) -> Result<BTreeSet<u16>> {
    let text = std::fs::read_to_string(log)?;
    let mut out = BTreeSet::new();
    for line in text
        .get(from..)
        .unwrap_or("")
        .lines()
        .filter(|l| l.contains("analysing"))
    {
        if let Some(rest) = line.split("shards={").nth(1) {
            for n in rest.split('}').next().unwrap_or("").split(',') {
                if let Ok(n) = n.trim().parse() {
                    out.insert(n);
                }
            }
        }
    }
    Ok(out)
}

/// Issue 11: two replicas share the shards; each series is analysed by one of them only; a
/// SIGKILLed replica's shards move to the other within the lease time, and a warning on one of
/// them appears exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_split_the_shards_and_survive_a_kill() -> Result<()> {
    let site = Site::new().await?;
    pm10_rule(&site).await?;
    let _broker = spawn(&site, &["broker"], None, None)?;
    wait_port(site.tls_port, Duration::from_secs(60)).await?;
    wait_port(site.plain_port, Duration::from_secs(10)).await?;
    let _ingest = spawn(&site, &["ingest"], None, None)?;
    let (log_a, log_b) = (
        site.dir.path().join("analytics-a.log"),
        site.dir.path().join("analytics-b.log"),
    );
    let mut a = spawn(&site, &["analytics"], Some("ra"), Some(&log_a))?;
    let _b = spawn(&site, &["analytics"], Some("rb"), Some(&log_b))?;
    wait_for(
        "two replicas with 8 shards each",
        Duration::from_secs(60),
        || async {
            let o = owners(&site).await.unwrap_or_default();
            let count = |r: &str| o.iter().filter(|x| x.as_deref() == Some(r)).count();
            count("ra") == 8 && count("rb") == 8
        },
    )
    .await?;
    let table = owners(&site).await?;
    let owned_by = |r: &str| -> BTreeSet<u16> {
        table
            .iter()
            .enumerate()
            .filter(|(_, o)| o.as_deref() == Some(r))
            .map(|(i, _)| i as u16)
            .collect()
    };
    let (shards_a, shards_b) = (owned_by("ra"), owned_by("rb"));
    let (from_a, from_b) = (
        std::fs::metadata(&log_a)?.len() as usize,
        std::fs::metadata(&log_b)?.len() as usize,
    );

    // Twelve devices: consecutive keys, twelve different shards, so both replicas' halves.
    let start = Utc::now().timestamp_millis() - 600_000;
    let mut devices = Vec::new();
    for i in 0..12 {
        devices.push(Streamer::connect(
            &site,
            &site.provision(&format!("分片{i}")).await?,
            start,
        )?);
    }
    let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    wait_online(&site, &ids.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    for _ in 0..10 {
        for d in devices.iter_mut() {
            d.send(&[40.0, 41.0]).await?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for d in &devices {
        assert!(d.link.flush(Duration::from_secs(30)).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (seen_a, seen_b) = (
        analysed_shards(&log_a, from_a)?,
        analysed_shards(&log_b, from_b)?,
    );
    assert!(
        !seen_a.is_empty() && !seen_b.is_empty(),
        "both replicas analysed: a {seen_a:?}, b {seen_b:?}"
    );
    assert!(
        seen_a.is_subset(&shards_a),
        "a analysed only its shards: {seen_a:?} vs {shards_a:?}"
    );
    assert!(
        seen_b.is_subset(&shards_b),
        "b analysed only its shards: {seen_b:?} vs {shards_b:?}"
    );
    let mut keys = BTreeMap::new();
    for d in &devices {
        keys.insert(d.id.clone(), device_key(&site, &d.id).await? as i64 % 16);
    }
    let on_a: Vec<usize> = (0..devices.len())
        .filter(|&i| shards_a.contains(&(keys[&devices[i].id] as u16)))
        .collect();
    assert!(
        !on_a.is_empty(),
        "some device is in a's shards: {keys:?} vs {shards_a:?}"
    );

    // A device cannot feed analytics: its certificate confines it to /tenants/<its id>/, so a
    // forged feed message (another device's PM10 at 999) reaches no replica.
    let target = &devices[(on_a[0] + 1) % devices.len()];
    forge_feed(
        &site,
        &devices[on_a[0]].creds,
        device_key(&site, &target.id).await?,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rule_warnings(&site, &target.id).await?,
        vec![],
        "the forged feed message raised nothing"
    );

    a.kill9();
    let t0 = std::time::Instant::now();
    wait_for(
        "rb owning every shard",
        Duration::from_secs(LEASE_S * 4),
        || async {
            owners(&site)
                .await
                .map(|o| o.iter().all(|x| x.as_deref() == Some("rb")))
                .unwrap_or(false)
        },
    )
    .await?;
    let takeover = t0.elapsed();
    eprintln!(
        "takeover after SIGKILL: {:.1} s (lease {LEASE_S} s, renew 1 s)",
        takeover.as_secs_f64()
    );

    // The anomaly on a device a owned, sent right after the kill: its warning appears once.
    let victim = on_a[0];
    devices[victim].send(&[260.0]).await?;
    let id = devices[victim].id.clone();
    wait_rule_warnings(&site, &id, &[(1, true)], Duration::from_secs(30)).await?;
    for d in devices.iter_mut() {
        d.send(&[42.0]).await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rule_warnings(&site, &id).await?,
        vec![(1, false)],
        "resolved by the next value, still one"
    );
    for d in &devices {
        d.stored_equals_sent(&site).await?;
        if d.id != id {
            assert_eq!(
                rule_warnings(&site, &d.id).await?,
                vec![],
                "{}: nothing raised",
                d.id
            );
        }
    }
    Ok(())
}

/// The all-in-one: its in-process analytics owns every shard, and after a SIGKILL replays from
/// the checkpoint. Rows committed but never analysed (written while it was down, as a kill
/// between commit and analysis leaves them) raise their warning after the restart; the warning
/// raised before the kill is not doubled.
#[tokio::test(flavor = "multi_thread")]
async fn all_in_one_replays_after_a_kill() -> Result<()> {
    let site = Site::new().await?;
    pm10_rule(&site).await?;
    let mut up = spawn(&site, &["up"], None, None)?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let start = Utc::now().timestamp_millis() - 600_000;
    let mut dev = Streamer::connect(&site, &site.provision("一体机回放").await?, start)?;
    wait_online(&site, &[&dev.id]).await?;
    dev.send(&[50.0; 10]).await?;
    dev.send(&[220.0]).await?;
    wait_rule_warnings(&site, &dev.id, &[(1, true)], Duration::from_secs(30)).await?;
    dev.send(&[50.0]).await?;
    wait_rule_warnings(&site, &dev.id, &[(1, false)], Duration::from_secs(30)).await?;
    assert!(dev.link.flush(Duration::from_secs(30)).await);
    assert_eq!(
        owners(&site)
            .await?
            .iter()
            .filter(|o| o.as_deref().is_some_and(|o| o.starts_with("in-process-")))
            .count(),
        16
    );
    // Give the checkpoint a round to move.
    tokio::time::sleep(Duration::from_secs(2)).await;
    up.kill9();

    // Committed, never analysed: a spike and its return, received now.
    let key = device_key(&site, &dev.id).await?;
    let metric = site
        .db
        .store
        .metric_by_key("pm10")
        .await?
        .context("pm10")?
        .id;
    let now = Utc::now();
    let rows: Vec<_> = [(1, 240.0), (2, 245.0)]
        .into_iter()
        .map(|(i, v)| offsite_store::SampleRow {
            device_key: key,
            metric_id: metric,
            ts: chrono::DateTime::from_timestamp_millis(dev.next_ts + i * 1000).unwrap(),
            received_at: now,
            value: v,
            quality: 0,
        })
        .collect();
    site.db.store.write_samples(&rows).await?;
    dev.next_ts += 2000;
    dev.sent += 2;

    let _up = spawn(&site, &["up"], None, None)?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    wait_online(&site, &[&dev.id]).await?;
    wait_rule_warnings(
        &site,
        &dev.id,
        &[(1, false), (1, true)],
        Duration::from_secs(30),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rule_warnings(&site, &dev.id).await?,
        vec![(1, false), (1, true)],
        "one new episode, the old one untouched"
    );
    dev.stored_equals_sent(&site).await?;
    Ok(())
}

/// Issue 10 with the feed: SIGKILL of `offsite ingest` mid-stream while analytics follows the
/// feed. Batches committed but not yet on the feed stay unacknowledged, so the device resends
/// them and they reach analytics after the restart; the anomaly sent around the kill opens its
/// warning exactly once, and stored = sent.
#[tokio::test(flavor = "multi_thread")]
async fn ingest_killed_mid_stream_still_feeds_analytics_once() -> Result<()> {
    let site = Site::new().await?;
    pm10_rule(&site).await?;
    let _broker = spawn(&site, &["broker"], None, None)?;
    wait_port(site.tls_port, Duration::from_secs(60)).await?;
    wait_port(site.plain_port, Duration::from_secs(10)).await?;
    let mut ingest = spawn(&site, &["ingest"], None, None)?;
    let _analytics = spawn(&site, &["analytics"], None, None)?;
    wait_for(
        "one replica owning all shards",
        Duration::from_secs(60),
        || async {
            owners(&site)
                .await
                .map(|o| o.len() == 16 && o.iter().all(|x| x.is_some()))
                .unwrap_or(false)
        },
    )
    .await?;
    let start = Utc::now().timestamp_millis() - 600_000;
    let mut dev = Streamer::connect(&site, &site.provision("断流分析").await?, start)?;
    wait_online(&site, &[&dev.id]).await?;
    for i in 0..60 {
        dev.send(&[50.0, 51.0]).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        if i == 20 {
            ingest.kill9();
        }
        if i == 30 {
            // The anomaly while ingest is dead: it waits in the device's outbox.
            dev.send(&[250.0, 50.0]).await?;
        }
        if i == 40 {
            ingest = spawn(&site, &["ingest"], None, None)?;
        }
    }
    dev.stored_equals_sent(&site).await?;
    wait_rule_warnings(&site, &dev.id, &[(1, false)], Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rule_warnings(&site, &dev.id).await?,
        vec![(1, false)],
        "raised and cleared once"
    );
    drop(ingest);
    Ok(())
}

/// SIGKILL of the broker mid-stream: devices, ingest (source and feed connections) and the
/// analytics replica's feed all reconnect (the replica then replays its shards from their
/// checkpoints: what was published while it was away is gone with the clean session). The
/// anomaly sent after the restart opens its warning once; the one from before is not doubled;
/// stored = sent.
#[tokio::test(flavor = "multi_thread")]
async fn broker_killed_mid_stream_loses_no_warning() -> Result<()> {
    let site = Site::new().await?;
    pm10_rule(&site).await?;
    let mut broker = spawn(&site, &["broker"], None, None)?;
    wait_port(site.tls_port, Duration::from_secs(60)).await?;
    wait_port(site.plain_port, Duration::from_secs(10)).await?;
    let _ingest = spawn(&site, &["ingest"], None, None)?;
    let _analytics = spawn(&site, &["analytics"], None, None)?;
    wait_for(
        "one replica owning all shards",
        Duration::from_secs(60),
        || async {
            owners(&site)
                .await
                .map(|o| o.len() == 16 && o.iter().all(|x| x.is_some()))
                .unwrap_or(false)
        },
    )
    .await?;
    let start = Utc::now().timestamp_millis() - 600_000;
    let mut dev = Streamer::connect(&site, &site.provision("代理重启").await?, start)?;
    wait_online(&site, &[&dev.id]).await?;
    dev.send(&[50.0; 10]).await?;
    dev.send(&[210.0, 60.0]).await?;
    wait_rule_warnings(&site, &dev.id, &[(1, false)], Duration::from_secs(30)).await?;
    for i in 0..40 {
        dev.send(&[50.0, 51.0]).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        if i == 10 {
            broker.kill9();
        }
        if i == 20 {
            broker = spawn(&site, &["broker"], None, None)?;
        }
    }
    wait_port(site.tls_port, Duration::from_secs(30)).await?;
    dev.stored_equals_sent(&site).await?;
    wait_online(&site, &[&dev.id]).await?;
    dev.send(&[240.0]).await?;
    wait_rule_warnings(
        &site,
        &dev.id,
        &[(1, false), (1, true)],
        Duration::from_secs(40),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rule_warnings(&site, &dev.id).await?,
        vec![(1, false), (1, true)]
    );
    dev.stored_equals_sent(&site).await?;
    drop(broker);
    Ok(())
}

/// Rows of filler devices written straight into `samples` as committed but never analysed:
/// `devices` new devices (keys from the store), `per_device` samples each at one per second of
/// device time ending now, all received within the last minute. Returns the rows written.
async fn write_backlog(site: &Site, devices: usize, per_device: i64) -> Result<i64> {
    let store = &site.db.store;
    let metric = store.metric_by_key("pm10").await?.context("pm10")?.id;
    let mut keys = vec![];
    for i in 0..devices {
        let d = store
            .insert_device(&offsite_store::NewDevice {
                id: offsite_wire::DeviceId::parse(&format!("backlog{i}"))?,
                name: format!("积压 {i}"),
                object_id: None,
                token_sha256: [9; 32],
                cert_serial: None,
                cert_not_after: None,
            })
            .await?;
        keys.push(d.key);
    }
    let now = store.db_now().await?;
    let first = now - chrono::Duration::seconds(per_device);
    for day in [first.date_naive(), now.date_naive()] {
        store.ensure_partition(day).await?;
    }
    let n = sqlx::query(
        "INSERT INTO samples (device_key, metric_id, ts, received_at, value, quality) \
         SELECT d, $2, $3 + make_interval(secs => i), now() - make_interval(secs => (($4 - i) * 50.0 / $4)), 40 + i % 7, 0 \
         FROM generate_series(0, $4 - 1) i, unnest($1::int[]) d ORDER BY i, d",
    )
    .bind(&keys)
    .bind(metric)
    .bind(first)
    .bind(per_device as i32)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n as i64)
}

/// Samples whose `received_at` is past their shard's checkpoint (or every sample, for a shard
/// never analysed): what a replay from those checkpoints must analyse, each once.
async fn behind_checkpoints(
    site: &Site,
    checkpoints: &[(i32, Option<String>, Option<chrono::DateTime<Utc>>)],
) -> Result<i64> {
    let (shards, at): (Vec<i32>, Vec<Option<chrono::DateTime<Utc>>>) =
        checkpoints.iter().map(|(s, _, c)| (*s, *c)).unzip();
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM samples s JOIN unnest($1::int[], $2::timestamptz[]) c(shard, at) \
         ON s.device_key % 16 = c.shard WHERE s.received_at > coalesce(c.at, '-infinity')",
    )
    .bind(&shards)
    .bind(&at)
    .fetch_one(site.db.store.pool())
    .await?)
}

/// Issue 11: a restarted all-in-one with a large backlog behind its checkpoints (as after a
/// queue overflow) acknowledges and stores device data while its shards are still replaying, and
/// the replay neither skips nor repeats a sample: the anomaly in the backlog opens exactly one
/// warning (and its clear, also in the backlog, resolves it), and the samples analysed after the
/// restart are exactly those behind the checkpoints, each once.
#[tokio::test(flavor = "multi_thread")]
async fn all_in_one_accepts_data_while_a_large_backlog_replays() -> Result<()> {
    let site = Site::new().await?;
    pm10_rule(&site).await?;
    let log = site.dir.path().join("up.log");
    let mut up = spawn(&site, &["up"], None, None)?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let start = Utc::now().timestamp_millis() - 600_000;
    let mut dev = Streamer::connect(&site, &site.provision("积压回放").await?, start)?;
    wait_online(&site, &[&dev.id]).await?;
    dev.send(&[50.0; 10]).await?;
    assert!(dev.link.flush(Duration::from_secs(30)).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    up.kill9();

    // Committed while nothing analysed: 800,000 samples of 160 devices, and the device's own
    // spike with its return, received now.
    let backlog = write_backlog(&site, 160, 5000).await?;
    let key = device_key(&site, &dev.id).await?;
    let metric = site
        .db
        .store
        .metric_by_key("pm10")
        .await?
        .context("pm10")?
        .id;
    let now = Utc::now();
    let rows: Vec<_> = [50.0, 50.0, 240.0, 245.0, 50.0]
        .into_iter()
        .enumerate()
        .map(|(i, v)| offsite_store::SampleRow {
            device_key: key,
            metric_id: metric,
            ts: chrono::DateTime::from_timestamp_millis(dev.next_ts + (i as i64 + 1) * 1000)
                .unwrap(),
            received_at: now,
            value: v,
            quality: 0,
        })
        .collect();
    site.db.store.write_samples(&rows).await?;
    dev.next_ts += 5000;
    dev.sent += 5;
    let checkpoints = site.db.store.analytics_shards().await?;
    let expected = behind_checkpoints(&site, &checkpoints).await?;
    assert!(expected > backlog, "the backlog is behind the checkpoints");

    let mut c = site.command(&["up"]);
    c.env("OFFSITE_ANALYTICS__LEASE_S", LEASE_S.to_string())
        .env("OFFSITE_ANALYTICS__RENEW_S", "1")
        .env(
            "RUST_LOG",
            "info,offsite_analytics=debug,rumqttd=warn,sqlx=warn",
        )
        .stderr(Stdio::from(std::fs::File::create(&log)?));
    // The dead process's leases stay live until the device is online again (a device's data
    // warnings are inhibited while it is offline, by design), then lapse.
    let leases = |until: &'static str| sqlx::query(until).execute(site.db.store.pool());
    leases("UPDATE analytics_shards SET lease_until = now() + interval '1 hour'").await?;
    let _up = Proc(c.spawn()?);
    wait_healthy(&site, Duration::from_secs(60)).await?;
    wait_online(&site, &[&dev.id]).await?;
    wait_for(
        "the new process waiting for the old leases",
        Duration::from_secs(30),
        || async {
            metric_value(&site, "offsite_analytics_in_process_waiting", "")
                .await
                .unwrap_or(0.0)
                == 1.0
        },
    )
    .await?;
    leases("UPDATE analytics_shards SET lease_until = now() - interval '1 second'").await?;
    // The new one acquires every shard and replays.
    wait_for(
        "the replay running",
        Duration::from_secs(LEASE_S * 5 + 30),
        || async {
            metric_value(&site, "offsite_analytics_replaying_shards", "")
                .await
                .unwrap_or(0.0)
                >= 1.0
                && metric_value(&site, "offsite_analytics_replayed_samples_total", "")
                    .await
                    .unwrap_or(0.0)
                    > 0.0
        },
    )
    .await?;
    let replay_started = std::time::Instant::now();
    // Device data is acknowledged (after its commit) and stored while the replay still runs.
    dev.send(&[51.0, 52.0, 53.0]).await?;
    dev.stored_equals_sent(&site).await?;
    let replaying = metric_value(&site, "offsite_analytics_replaying_shards", "").await?;
    let replayed = metric_value(&site, "offsite_analytics_replayed_samples_total", "").await?;
    eprintln!("acknowledged and stored with {replaying} shards replaying, {replayed} of {expected} samples replayed");
    assert!(
        replaying >= 1.0 && replayed < backlog as f64,
        "acknowledged and stored during the replay: {replaying} shards replaying, {replayed} of {backlog} samples replayed"
    );

    wait_for("the replay finished", Duration::from_secs(600), || async {
        metric_value(&site, "offsite_analytics_replaying_shards", "")
            .await
            .unwrap_or(1.0)
            == 0.0
    })
    .await?;
    dev.send(&[54.0]).await?;
    dev.stored_equals_sent(&site).await?;
    eprintln!(
        "replay finished after {:.1} s",
        replay_started.elapsed().as_secs_f64()
    );
    let expected = expected + 4;
    let analysed = || async {
        metric_value(
            &site,
            "offsite_analytics_samples_total",
            "outcome=\"analysed\"",
        )
        .await
        .unwrap_or(0.0)
    };
    let _ = wait_for("every sample analysed", Duration::from_secs(30), || async {
        analysed().await >= expected as f64
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        analysed().await as i64,
        expected,
        "each sample behind the checkpoints and each live one analysed once (see {})",
        log.display()
    );
    assert_eq!(
        rule_warnings(&site, &dev.id).await?,
        vec![(1, false)],
        "the replayed spike opened one warning, its replayed return resolved it"
    );
    Ok(())
}

/// `offsite ingest` with in-process analytics, with `extra` environment; stderr to `log`.
fn spawn_in_process_ingest(site: &Site, log: &Path) -> Result<Proc> {
    let mut c = site.command(&["ingest"]);
    c.env("OFFSITE_ANALYTICS__FEED", "in_process")
        .env("OFFSITE_ANALYTICS__LEASE_S", LEASE_S.to_string())
        .env("OFFSITE_ANALYTICS__RENEW_S", "1")
        // Each process its own HJ 212 port.
        .env(
            "OFFSITE_HJ212__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .stderr(Stdio::from(std::fs::File::create(log)?));
    Ok(Proc(c.spawn().context("spawning offsite ingest")?))
}

/// Issue 11: a second `offsite ingest` with in-process analytics on the same database takes no
/// shard from the first (each would analyse only its own commits) and says so in its log; when
/// the first dies, its leases lapse and the second takes every shard (a rolling update).
#[tokio::test(flavor = "multi_thread")]
async fn a_second_in_process_ingest_takes_no_shards_until_the_first_is_gone() -> Result<()> {
    let site = Site::new().await?;
    let _broker = spawn(&site, &["broker"], None, None)?;
    wait_port(site.tls_port, Duration::from_secs(60)).await?;
    wait_port(site.plain_port, Duration::from_secs(10)).await?;
    let (log_a, log_b) = (
        site.dir.path().join("ingest-a.log"),
        site.dir.path().join("ingest-b.log"),
    );
    let mut a = spawn_in_process_ingest(&site, &log_a)?;
    let mut first = String::new();
    wait_for(
        "the first ingest owning every shard",
        Duration::from_secs(60),
        || async {
            let o = owners(&site).await.unwrap_or_default();
            o.len() == 16
                && o.iter().all(|x| {
                    x.as_deref().is_some_and(|x| x.starts_with("in-process-")) && *x == o[0]
                })
        },
    )
    .await?;
    first.push_str(owners(&site).await?[0].as_deref().unwrap_or_default());
    let _b = spawn_in_process_ingest(&site, &log_b)?;
    wait_for(
        "the second one saying why it waits",
        Duration::from_secs(60),
        || async {
            std::fs::read_to_string(&log_b)
                .unwrap_or_default()
                .contains("another process with in-process analytics")
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(LEASE_S)).await;
    assert!(
        owners(&site)
            .await?
            .iter()
            .all(|o| o.as_deref() == Some(first.as_str())),
        "the first keeps every shard"
    );
    assert!(
        std::fs::read_to_string(&log_b)?.contains(&first),
        "the log names the holder"
    );

    a.kill9();
    wait_for(
        "the second owning every shard",
        Duration::from_secs(LEASE_S * 4 + 10),
        || async {
            let o = owners(&site).await.unwrap_or_default();
            o.iter().all(|x| {
                x.as_deref()
                    .is_some_and(|x| x.starts_with("in-process-") && x != first)
            })
        },
    )
    .await?;
    Ok(())
}
