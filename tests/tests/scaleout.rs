//! Issue 11's combined test on this machine: every tier scaled out on an external broker.
//! Debian's mosquitto (the shipped `offsite certs mosquitto` configuration), two `offsite ingest`
//! (`$share` subscription, feed = shards), two `offsite analytics` replicas leasing the shards,
//! two `offsite portal` processes running the workflow scheduler, one PostgreSQL; devices stream
//! through the real edge agent's link over MQTT/TLS to mosquitto.
//!
//! It asserts that the load spreads over the replicas (each ingest commits samples, each
//! analytics replica owns shards and analyses samples: their `/metrics` through `[ops] listen`),
//! that SIGKILL of one ingest and one analytics mid-stream loses nothing (stored = sent, no
//! duplicates), that an anomaly on a shard of the killed analytics replica raises its warning
//! exactly once, that each due task checkpoint fires exactly once with two schedulers, and that
//! partition maintenance ran without error in both ingest processes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use offsite_store::tasks::{NewTask, TaskPolicy, TaskSource};
use offsite_store::Level;
use offsite_tests::analytics::*;
use offsite_tests::mosquitto::Mosquitto;
use offsite_tests::*;

/// Short leases so the killed replica's shards move within seconds.
const LEASE_S: u64 = 4;
const DEVICES: usize = 12;
/// Three due sign-for checkpoints each: enough work that a pass takes a while, so the two
/// portals' passes can overlap.
const TASKS: usize = 100;

/// One replica of a tier: its process, its `[ops] listen` port and its log file.
struct Replica {
    proc: Proc,
    ops_port: u16,
    log: PathBuf,
}

/// `offsite <tier>` on mosquitto's internal listener, with the analytics feed on shards, its ops
/// server on a free port and its JSON log in the site's directory.
fn spawn_tier(site: &Site, m: &Mosquitto, tier: &str, name: &str) -> Result<Replica> {
    let ops_port = free_port();
    let log = site.dir.path().join(format!("{name}.log"));
    let mut c = site.command(&[tier]);
    c.env("OFFSITE_INTERNAL_MQTT__HOST", "127.0.0.1")
        .env("OFFSITE_INTERNAL_MQTT__PORT", m.internal_port.to_string())
        .env("OFFSITE_OPS__LISTEN", format!("127.0.0.1:{ops_port}"))
        // Replicas share the machine: no HJ 212 gateway, no HTTPS listener on a shared port.
        .env("OFFSITE_HJ212__ENABLED", "false")
        .env("OFFSITE_PORTAL__HTTPS_LISTEN", "off")
        .env("OFFSITE_ANALYTICS__FEED", "shards")
        .env("OFFSITE_ANALYTICS__REPLICA", name)
        .env("OFFSITE_ANALYTICS__LEASE_S", LEASE_S.to_string())
        .env("OFFSITE_ANALYTICS__RENEW_S", "1")
        .env("OFFSITE_WORKFLOW__INTERVAL_S", "1")
        .env("OFFSITE_LOG__FORMAT", "json")
        .env("RUST_LOG", "info,rumqttd=warn,sqlx=warn")
        .stderr(std::fs::File::create(&log)?);
    Ok(Replica {
        proc: Proc(
            c.spawn()
                .with_context(|| format!("spawning offsite {tier}"))?,
        ),
        ops_port,
        log,
    })
}

/// `offsite portal` on its own HTTP port (which serves its probes and `/metrics`).
fn spawn_portal(site: &Site, m: &Mosquitto, name: &str, http_port: u16) -> Result<Replica> {
    let log = site.dir.path().join(format!("{name}.log"));
    let mut c = site.command(&["portal"]);
    c.env("OFFSITE_INTERNAL_MQTT__HOST", "127.0.0.1")
        .env("OFFSITE_INTERNAL_MQTT__PORT", m.internal_port.to_string())
        .env("OFFSITE_PORTAL__LISTEN", format!("127.0.0.1:{http_port}"))
        .env("OFFSITE_PORTAL__HTTPS_LISTEN", "off")
        .env("OFFSITE_WORKFLOW__INTERVAL_S", "1")
        .env("OFFSITE_LOG__FORMAT", "json")
        .env("RUST_LOG", "info,sqlx=warn")
        .stderr(std::fs::File::create(&log)?);
    Ok(Replica {
        proc: Proc(c.spawn().context("spawning offsite portal")?),
        ops_port: http_port,
        log,
    })
}

/// The sum of a Prometheus metric over the label sets containing `labels`, from
/// `http://127.0.0.1:<port>/metrics`.
async fn scrape(port: u16, name: &str, labels: &str) -> Result<f64> {
    let text = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .text()
        .await?;
    let mut total = 0.0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(name) {
            if (rest.starts_with(' ') && labels.is_empty())
                || (rest.starts_with('{') && rest.contains(labels))
            {
                total += rest.rsplit(' ').next().unwrap_or("0").parse::<f64>()?;
            }
        }
    }
    Ok(total)
}

async fn wait_ready(r: &Replica, path: &str, what: &str) -> Result<()> {
    let url = format!("http://127.0.0.1:{}{path}", r.ops_port);
    let ready = wait_for(what, Duration::from_secs(60), || {
        let url = url.clone();
        async move {
            reqwest::get(&url)
                .await
                .map(|x| x.status().is_success())
                .unwrap_or(false)
        }
    })
    .await;
    ready.with_context(|| format!("{what}: {}", tail(&r.log)))
}

/// The last lines of a log, for failure messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(20).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// The `fields.message` of each JSON log line.
fn log_messages(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fields"]["message"].as_str().map(str::to_owned))
        .collect()
}

/// Shards owned by each replica (live leases).
async fn shards_by_owner(site: &Site) -> Result<BTreeMap<String, BTreeSet<u16>>> {
    let mut out: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for (i, o) in owners(site).await?.into_iter().enumerate() {
        if let Some(o) = o {
            out.entry(o).or_default().insert(i as u16);
        }
    }
    Ok(out)
}

/// Tasks of item "scale" whose sign-for checkpoints are all due: dispatched a week ago with a
/// 4-hour limit.
async fn dispatch_overdue_tasks(site: &Site, n: usize) -> Result<Vec<i64>> {
    let store = &site.db.store;
    store.seed_demo_registers().await?;
    store
        .set_task_policy(
            &TaskPolicy {
                item: "scale".into(),
                level: Level::YELLOW,
                sign_limit: "4h".into(),
                handle_limit: "2wd".into(),
                auto_dispatch: false,
                reviewer_department_id: None,
            },
            "admin",
        )
        .await?;
    let department = store
        .department_by_code("housing-construction")
        .await?
        .context("the demo registers' housing department")?
        .id;
    let mut ids = Vec::new();
    for i in 0..n {
        let t = NewTask {
            title: format!("扩容核查{i}"),
            description: String::new(),
            source: TaskSource::Manual,
            source_ref: None,
            level: Level::YELLOW,
            item: Some("scale".into()),
            object_id: Some("demo-site-01".into()),
            department_id: department,
            co_department_ids: vec![],
            dispatched_by: "mon".into(),
            at: Utc::now() - chrono::Duration::days(7),
        };
        match store.dispatch_task(&t).await? {
            Ok(t) => ids.push(t.id),
            Err(r) => bail!("dispatch refused: {r:?}"),
        }
    }
    Ok(ids)
}

/// (task, clock, stage, fired) of the tasks' checkpoints that are due now.
async fn due_checkpoints(site: &Site, tasks: &[i64]) -> Result<Vec<(i64, String, String, bool)>> {
    Ok(sqlx::query_as(
        "SELECT task_id, clock, stage, fired_at IS NOT NULL FROM task_checkpoints \
         WHERE task_id = ANY($1) AND due_at <= now() AND cancelled_at IS NULL \
         ORDER BY task_id, clock, stage",
    )
    .bind(tasks)
    .fetch_all(site.db.store.pool())
    .await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_tier_scaled_out_on_mosquitto_loses_nothing_and_acts_once() -> Result<()> {
    let site = Site::new().await?;
    pm10_rule(&site).await?;
    let m = Mosquitto::start(&site).await?;
    // Started back to back, so both run partition maintenance at the same moment.
    let mut ingest_1 = spawn_tier(&site, &m, "ingest", "ingest-1")?;
    let ingest_2 = spawn_tier(&site, &m, "ingest", "ingest-2")?;
    let mut analytics_a = spawn_tier(&site, &m, "analytics", "ra")?;
    let analytics_b = spawn_tier(&site, &m, "analytics", "rb")?;
    // Overdue tasks before the portals start (a scheduler that was down): both portals' first
    // passes, a moment apart at start, find all their checkpoints due at once.
    let t0 = std::time::Instant::now();
    let tasks = dispatch_overdue_tasks(&site, TASKS).await?;
    eprintln!(
        "{TASKS} overdue tasks dispatched in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let (portal_1, portal_2) = (
        spawn_portal(&site, &m, "portal-1", free_port())?,
        spawn_portal(&site, &m, "portal-2", free_port())?,
    );
    for (r, what) in [(&ingest_1, "ingest-1"), (&ingest_2, "ingest-2")] {
        // Ingest is ready once its source connection to mosquitto is up.
        wait_ready(r, "/readyz", what).await?;
    }
    for (r, what) in [(&portal_1, "portal-1"), (&portal_2, "portal-2")] {
        wait_ready(r, "/healthz", what).await?;
    }
    wait_for(
        "two analytics replicas with 8 shards each",
        Duration::from_secs(60),
        || async {
            shards_by_owner(&site)
                .await
                .map(|o| {
                    o.get("ra").map(|s| s.len()) == Some(8)
                        && o.get("rb").map(|s| s.len()) == Some(8)
                })
                .unwrap_or(false)
        },
    )
    .await
    .with_context(|| {
        format!(
            "ra: {}\nrb: {}",
            tail(&analytics_a.log),
            tail(&analytics_b.log)
        )
    })?;
    let shards = shards_by_owner(&site).await?;
    let shards_a = shards["ra"].clone();
    // The subscriptions follow the CONNACK.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Twelve devices: consecutive keys, twelve different shards, so both replicas' halves.
    let start = Utc::now().timestamp_millis() - 600_000;
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let c = site.provision(&format!("扩容{i}")).await?;
        devices.push(Streamer::connect_to(m.tls_port, &c, start)?);
    }
    let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    // An offline device's data warnings are inhibited by design: wait for their online status.
    wait_online(&site, &ids.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let mut shard_of = BTreeMap::new();
    for d in &devices {
        shard_of.insert(d.id.clone(), (device_key(&site, &d.id).await? % 16) as u16);
    }
    let victim = devices
        .iter()
        .position(|d| shards_a.contains(&shard_of[&d.id]))
        .with_context(|| format!("some device is on ra's shards: {shard_of:?} vs {shards_a:?}"))?;

    // 1. The load spreads: both ingest processes commit, both analytics replicas analyse.
    let spread = |r: &Replica, name: &'static str| {
        let port = r.ops_port;
        async move { scrape(port, name, "").await.unwrap_or(0.0) }
    };
    let mut round = 0;
    let mut before_kill = None;
    while before_kill.is_none() {
        for d in devices.iter_mut() {
            d.send(&[40.0, 41.0]).await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        round += 1;
        let committed = (
            spread(&ingest_1, "offsite_ingest_samples_total").await,
            spread(&ingest_2, "offsite_ingest_samples_total").await,
        );
        let analysed = (
            spread(&analytics_a, "offsite_analytics_samples_total").await,
            spread(&analytics_b, "offsite_analytics_samples_total").await,
        );
        // At least ten rounds, so the kill below falls mid-stream.
        if round >= 10
            && committed.0 > 0.0
            && committed.1 > 0.0
            && analysed.0 > 0.0
            && analysed.1 > 0.0
        {
            before_kill = Some((committed, analysed));
        } else if round > 200 {
            bail!("the load did not spread: committed {committed:?}, analysed {analysed:?}");
        }
    }
    let (committed, analysed) = before_kill.unwrap();
    eprintln!("after {round} rounds: committed by ingest-1/2 {committed:?}, analysed by ra/rb {analysed:?}");

    // 2. SIGKILL of one ingest and one analytics replica mid-stream; the stream goes on.
    ingest_1.proc.kill9();
    analytics_a.proc.kill9();
    let killed = std::time::Instant::now();
    for i in 0..20 {
        for d in devices.iter_mut() {
            d.send(&[42.0, 43.0]).await?;
        }
        if i == 5 {
            // 3. The anomaly on a device of the killed replica's shards, while its lease runs
            //    out (the values after it clear it).
            devices[victim].send(&[260.0]).await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for(
        "rb owning every shard",
        Duration::from_secs(LEASE_S * 4 + 10),
        || async {
            owners(&site)
                .await
                .map(|o| o.iter().all(|x| x.as_deref() == Some("rb")))
                .unwrap_or(false)
        },
    )
    .await?;
    eprintln!(
        "rb owns every shard {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    let victim_id = devices[victim].id.clone();
    // The values after the anomaly resolve it: one warning, raised and cleared.
    wait_rule_warnings(&site, &victim_id, &[(1, false)], Duration::from_secs(40)).await?;
    for d in &devices {
        d.stored_equals_sent(&site).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rule_warnings(&site, &victim_id).await?,
        vec![(1, false)],
        "one warning for the anomaly, not one per replica"
    );
    for d in &devices {
        if d.id != victim_id {
            assert_eq!(
                rule_warnings(&site, &d.id).await?,
                vec![],
                "{}: nothing raised",
                d.id
            );
        }
    }
    let sent: usize = devices.iter().map(|d| d.sent).sum();
    let survivor = scrape(ingest_2.ops_port, "offsite_ingest_samples_total", "").await?;
    assert!(
        survivor > committed.1,
        "the surviving ingest took over the stream: {survivor} vs {committed:?}"
    );
    eprintln!("samples sent {sent}, stored {sent}; ingest-2 committed {survivor} in all");

    // 4. Each due checkpoint fired exactly once: one task event per checkpoint, though both
    //    portals ran the scheduler.
    wait_for(
        "every due checkpoint fired",
        Duration::from_secs(30),
        || async {
            due_checkpoints(&site, &tasks)
                .await
                .map(|c| !c.is_empty() && c.iter().all(|x| x.3))
                .unwrap_or(false)
        },
    )
    .await?;
    // A few more passes of both schedulers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let due = due_checkpoints(&site, &tasks).await?;
    assert!(
        due.iter().filter(|c| c.2 == "remind").count() == TASKS,
        "a due remind checkpoint per task: {due:?}"
    );
    let events: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT task_id, detail->>'clock', action, count(*) FROM task_events \
         WHERE task_id = ANY($1) AND actor = 'system:scheduler' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .bind(&tasks)
    .fetch_all(site.db.store.pool())
    .await?;
    let expected: Vec<(i64, String, String, i64)> = due
        .iter()
        .map(|(t, clock, stage, _)| (*t, clock.clone(), stage.clone(), 1))
        .collect();
    assert_eq!(events, expected, "one scheduler event per due checkpoint");
    let mut fired_by_portals = 0.0;
    for p in [&portal_1, &portal_2] {
        let ran = scrape(
            p.ops_port,
            "offsite_scheduler_passes_total",
            "outcome=\"ran\"",
        )
        .await?;
        let skipped = scrape(
            p.ops_port,
            "offsite_scheduler_passes_total",
            "outcome=\"skipped\"",
        )
        .await?;
        let errors = scrape(
            p.ops_port,
            "offsite_scheduler_passes_total",
            "outcome=\"error\"",
        )
        .await?;
        eprintln!(
            "{}: scheduler passes ran {ran}, skipped {skipped}, error {errors}",
            p.log.display()
        );
        assert!(ran + skipped > 0.0, "both portals run the scheduler");
        assert_eq!(errors, 0.0, "no failed scheduler pass");
        fired_by_portals += scrape(p.ops_port, "offsite_scheduler_checkpoints_total", "").await?;
    }
    assert_eq!(
        fired_by_portals as usize,
        due.len(),
        "the two portals together fired each checkpoint once"
    );

    // Partition maintenance ran in both ingest processes, started together, without an error.
    for r in [&ingest_1, &ingest_2] {
        let said = log_messages(&r.log);
        assert!(
            said.iter()
                .any(|m| m == "partitions maintained" || m == "partition maintenance"),
            "partition maintenance ran in {}: {}",
            r.log.display(),
            tail(&r.log)
        );
        assert!(
            !said.iter().any(|m| m == "partition maintenance failed"),
            "partition maintenance failed in {}",
            r.log.display()
        );
    }
    drop((ingest_2, analytics_b, portal_1, portal_2));
    Ok(())
}

/// Regression (found by `analytics_tier::broker_killed_mid_stream_loses_no_warning`): brokers
/// send no retained message to a `$share` subscription, so a device that said `online` while no
/// ingest replica was subscribed (as after a broker restart, which marks every device offline)
/// stayed offline, its data warnings inhibited, until it reconnected. Ingest now reads the
/// retained statuses once its shared subscription is in place.
#[tokio::test(flavor = "multi_thread")]
async fn a_status_said_while_no_ingest_was_subscribed_is_recorded() -> Result<()> {
    let site = Site::new().await?;
    let _broker = site.spawn(&["broker"])?;
    wait_port(site.tls_port, Duration::from_secs(60)).await?;
    wait_port(site.plain_port, Duration::from_secs(10)).await?;
    let c = site.provision("无人订阅时上线").await?;
    let dev = Streamer::connect(&site, &c, Utc::now().timestamp_millis())?;
    // The device's retained `online` reaches the broker while nobody subscribes to it.
    wait_for("device connected", Duration::from_secs(20), || async {
        dev.link.stats().connected
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let online: Option<bool> = sqlx::query_scalar(
        "SELECT s.online FROM device_status s JOIN devices d ON d.key = s.device_key WHERE d.id = $1",
    )
    .bind(&dev.id)
    .fetch_optional(site.db.store.pool())
    .await?
    .flatten();
    assert_ne!(online, Some(true), "no ingest yet, so nobody recorded it");
    let _ingest = site.spawn(&["ingest"])?;
    wait_online(&site, &[&dev.id]).await?;
    Ok(())
}
