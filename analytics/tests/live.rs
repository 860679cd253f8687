//! The analytics tier against a real database: rules turn samples into warnings with dedup,
//! auto-resolve, grouping, inhibition (offline, maintenance) and silences; rule edits apply
//! without a restart.

use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Utc};
use offsite_analytics::chain::Chain;
use offsite_analytics::live::{Analytics, Committed, LiveConfig};
use offsite_analytics::rules::{Condition, RuleDetector, Scope};
use offsite_analytics::Level;
use offsite_store::rules::NewRule;
use offsite_store::testing::TestDb;
use offsite_store::warnings::{NewMaintenance, NewSilence, WarningChange, WarningFilter};
use offsite_store::{NewDevice, SampleRow, Store};
use offsite_wire::DeviceId;
use tokio::sync::broadcast;

struct Rig {
    db: TestDb,
    tx: flume::Sender<Committed>,
    live: broadcast::Receiver<WarningChange>,
    analytics: Option<Analytics>,
    pm10: i32,
}

impl Rig {
    async fn new() -> Result<Self> {
        let db = TestDb::new().await?;
        let pm10 = db.store.metric_by_key("pm10").await?.unwrap().id;
        db.store
            .insert_rule(&NewRule {
                name: "PM10 超标".into(),
                scope: Scope { metric: Some("pm10".into()), ..Scope::default() },
                level: Level::ORANGE,
                condition: Condition::Threshold { above: Some(150.0), below: None, for_s: 0, hysteresis: 10.0 },
                item: None,
                enabled: true,
            })
            .await?;
        let (tx, rx) = flume::bounded(100);
        let (live_tx, live) = broadcast::channel(100);
        let cfg = LiveConfig { idle_every: Duration::from_millis(200), ..LiveConfig::default() };
        let chain = Chain::new(vec![Box::new(RuleDetector::default())]);
        let analytics = Some(Analytics::start(db.store.clone(), chain, cfg, rx, live_tx).await?);
        Ok(Self { db, tx, live, analytics, pm10 })
    }

    fn store(&self) -> &Store {
        &self.db.store
    }

    async fn device(&self, id: &str, object: &str) -> Result<i32> {
        let d = self
            .store()
            .insert_device(&NewDevice {
                id: DeviceId::parse(id)?,
                name: id.into(),
                object_id: Some(object.into()),
                token_sha256: [1; 32],
                cert_serial: None,
                cert_not_after: None,
            })
            .await?;
        self.store().set_device_online(d.key, true, Utc::now()).await?;
        Ok(d.key)
    }

    fn send(&self, device: i32, ts: DateTime<Utc>, value: f64) {
        let row = SampleRow { device_key: device, metric_id: self.pm10, ts, received_at: Utc::now(), value, quality: 0 };
        self.tx.send((Instant::now(), vec![row])).unwrap();
    }

    /// The next live change, within 10 s.
    async fn next(&mut self) -> WarningChange {
        tokio::time::timeout(Duration::from_secs(10), self.live.recv()).await.expect("a live change").unwrap()
    }

    /// Waits until the engine has drained what was sent.
    async fn settle(&self) {
        while !self.tx.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    async fn open(&self) -> Result<Vec<offsite_store::warnings::WarningRecord>> {
        Ok(self.store().warnings(&WarningFilter { open: Some(true), limit: 100, ..WarningFilter::default() }).await?.0)
    }
}

fn t(min: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::hours(1) + chrono::Duration::minutes(min)
}

#[tokio::test]
async fn threshold_warning_dedups_resolves_and_groups() -> Result<()> {
    let mut r = Rig::new().await?;
    let a = r.device("grpa", "site-1").await?;
    let b = r.device("grpb", "site-1").await?;
    let c = r.device("grpc", "site-2").await?;
    // Let the engine see everyone online first.
    tokio::time::sleep(Duration::from_millis(500)).await;

    r.send(a, t(0), 200.0);
    let first = r.next().await;
    assert_eq!(first.kind, "opened");
    let w = r.store().warning(first.id).await?.unwrap();
    assert_eq!((w.source.as_str(), w.level, w.device_id.as_str()), ("rules", Level::ORANGE, "grpa"));
    assert_eq!(w.evidence["detector"], "rules");
    assert!(w.evidence["series"].as_array().is_some_and(|s| !s.is_empty()), "evidence carries the series");
    assert_eq!(w.evidence["limits"], serde_json::json!({"above": 150.0}), "evidence carries the rule's limit");

    // Still above, then back within the hysteresis band: still the same open warning.
    r.send(a, t(1), 210.0);
    r.send(a, t(2), 145.0);
    r.settle().await;
    assert_eq!(r.open().await?.len(), 1);

    // Same object within the group window: same group; another object: its own.
    r.send(b, t(0) + chrono::Duration::seconds(10), 300.0);
    r.send(c, t(0) + chrono::Duration::seconds(10), 300.0);
    r.settle().await;
    let open = r.open().await?;
    assert_eq!(open.len(), 3);
    let group = |dev: &str| open.iter().find(|w| w.device_id == dev).unwrap().group_id;
    assert_eq!(group("grpa"), group("grpb"));
    assert_ne!(group("grpa"), group("grpc"));

    // Cleared below the band: resolved automatically; a new excursion opens a new warning.
    r.send(a, t(4), 100.0);
    r.settle().await;
    let resolved = r.store().warning(first.id).await?.unwrap();
    assert_eq!(resolved.resolution.as_deref(), Some("cleared"));
    r.send(a, t(5), 400.0);
    r.settle().await;
    let again = r.store().warnings(&WarningFilter { device_id: Some("grpa".into()), limit: 10, ..WarningFilter::default() }).await?;
    assert_eq!(again.1, 2, "a new episode is a new warning");
    r.analytics.take().unwrap().shutdown().await;
    Ok(())
}

#[tokio::test]
async fn offline_maintenance_and_silences() -> Result<()> {
    let mut r = Rig::new().await?;
    let off = r.device("inhoff", "site-9").await?;
    let maint = r.device("inhmnt", "site-8").await?;
    let quiet = r.device("inhsil", "site-7").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Offline: the device's own offline warning is raised, its data warnings are inhibited.
    r.store().set_device_online(off, false, Utc::now()).await?;
    let change = r.next().await;
    let w = r.store().warning(change.id).await?.unwrap();
    assert_eq!((w.source.as_str(), w.event.as_str(), w.device_id.as_str()), ("health", "offline", "inhoff"));
    r.send(off, t(0), 999.0);
    r.settle().await;
    assert!(r.open().await?.iter().all(|w| w.source != "rules"), "data warnings of an offline device are inhibited");
    // Back online: the offline warning resolves.
    r.store().set_device_online(off, true, Utc::now()).await?;
    let change = r.next().await;
    assert_eq!(change.kind, "resolved");

    // Maintenance of the object: nothing opened.
    r.store()
        .insert_maintenance(&NewMaintenance {
            device_id: None,
            object_id: Some("site-8".into()),
            starts_at: t(-10),
            ends_at: t(30),
            reason: "设备校准".into(),
            created_by: None,
        })
        .await?;
    r.send(maint, t(0), 999.0);
    r.settle().await;
    assert!(r.open().await?.iter().all(|w| w.device_id != "inhmnt"));

    // Silenced: recorded, marked with the silence.
    let s = r
        .store()
        .insert_silence(&NewSilence {
            device_id: Some("inhsil".into()),
            object_id: None,
            metric_key: None,
            event: None,
            starts_at: t(-10),
            ends_at: t(30),
            reason: "已知施工".into(),
            created_by: None,
        })
        .await?;
    r.send(quiet, t(0), 999.0);
    r.settle().await;
    let open = r.open().await?;
    let w = open.iter().find(|w| w.device_id == "inhsil").expect("silenced warnings are still recorded");
    assert_eq!(w.silenced_by, Some(s.id));
    r.analytics.take().unwrap().shutdown().await;
    Ok(())
}

#[tokio::test]
async fn rule_edits_apply_without_restart() -> Result<()> {
    let mut r = Rig::new().await?;
    let d = r.device("ruleed", "site-3").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    r.send(d, t(0), 120.0);
    r.settle().await;
    assert!(r.open().await?.is_empty(), "120 is below the 150 limit");
    let rule = r.store().list_rules().await?.into_iter().find(|r| r.name == "PM10 超标").expect("the rig's rule");
    r.store()
        .update_rule(
            rule.id,
            &NewRule {
                name: rule.name.clone(),
                scope: rule.scope.clone(),
                level: Level::RED,
                condition: Condition::Threshold { above: Some(100.0), below: None, for_s: 0, hysteresis: 0.0 },
                item: None,
                enabled: true,
            },
        )
        .await?;
    // The engine re-reads rules on its idle tick.
    tokio::time::sleep(Duration::from_millis(600)).await;
    r.send(d, t(1), 120.0);
    let change = r.next().await;
    let w = r.store().warning(change.id).await?.unwrap();
    assert_eq!(w.level, Level::RED);
    r.analytics.take().unwrap().shutdown().await;
    Ok(())
}

/// A predictor whose "model file" the test swaps, as a reload would.
struct SwappableModel(std::sync::Arc<std::sync::Mutex<offsite_store::detector_models::ModelLoad>>);

impl offsite_analytics::anomaly::Predictor for SwappableModel {
    fn window(&self) -> usize {
        8
    }
    fn name(&self) -> &str {
        "swappable"
    }
    fn version(&self) -> &str {
        "test"
    }
    fn predict(&mut self, _x: &[f32], rows: usize, out: &mut Vec<f32>) -> anyhow::Result<()> {
        out.extend(std::iter::repeat_n(0.0, rows));
        Ok(())
    }
    fn loaded(&self) -> Option<offsite_store::detector_models::ModelLoad> {
        Some(self.0.lock().unwrap().clone())
    }
}

#[tokio::test]
async fn every_model_load_is_recorded_once() -> Result<()> {
    use offsite_analytics::anomaly::{AnomalyConfig, AnomalyDetector};
    use offsite_store::detector_models::{ModelDigest, ModelLoad};

    let db = TestDb::new().await?;
    let first = ModelLoad {
        detector: String::new(),
        name: "forecaster".into(),
        version: "1".into(),
        sha256: ModelDigest::parse(&"1".repeat(64)).unwrap(),
        metadata: serde_json::json!({"name": "forecaster", "version": "1"}),
        loaded_at: t(0),
    };
    let model = std::sync::Arc::new(std::sync::Mutex::new(first.clone()));
    let chain = Chain::new(vec![Box::new(AnomalyDetector::new(Box::new(SwappableModel(model.clone())), AnomalyConfig::default()))]);
    let (_tx, rx) = flume::bounded::<Committed>(1);
    let (live_tx, _live) = broadcast::channel(10);
    let cfg = LiveConfig { idle_every: Duration::from_millis(100), ..LiveConfig::default() };
    let analytics = Analytics::start(db.store.clone(), chain, cfg, rx, live_tx).await?;

    // Recorded at start, under the detector's name, and not again on later ticks.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let loads = db.store.model_loads(10).await?;
    assert_eq!(loads.len(), 1, "{loads:?}");
    assert_eq!((loads[0].detector.as_str(), loads[0].version.as_str(), loads[0].current), ("anomaly-swappable", "1", true));

    // A reload (a new file, a new load time) is recorded and becomes the current one.
    *model.lock().unwrap() = ModelLoad { version: "2".into(), sha256: ModelDigest::parse(&"2".repeat(64)).unwrap(), loaded_at: t(5), ..first };
    let mut loads = Vec::new();
    for _ in 0..50 {
        loads = db.store.model_loads(10).await?;
        if loads.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen: Vec<(&str, bool)> = loads.iter().map(|m| (m.version.as_str(), m.current)).collect();
    assert_eq!(seen, [("2", true), ("1", false)]);
    analytics.shutdown().await;
    Ok(())
}
