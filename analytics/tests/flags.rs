//! Data flags through the live path against a real database: a flagged value never raises a data
//! warning, D/T/B/F raise device-health warnings that clear when normal data returns, M/C inhibit
//! the device's data warnings while they last, and a class-scoped data-gap rule covers loggers.

use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, Utc};
use offsite_analytics::chain::Chain;
use offsite_analytics::live::{Analytics, Committed, FlagKind, LiveConfig};
use offsite_analytics::rules::{Condition, RuleDetector, Scope};
use offsite_analytics::Level;
use offsite_store::rules::NewRule;
use offsite_store::samples::quality;
use offsite_store::testing::TestDb;
use offsite_store::warnings::{WarningFilter, WarningRecord};
use offsite_store::{NewDevice, SampleRow, Store};
use offsite_wire::DeviceId;
use tokio::sync::broadcast;

struct Rig {
    db: TestDb,
    tx: flume::Sender<Committed>,
    analytics: Option<Analytics>,
}

impl Rig {
    /// Starts the tier with the given rules, each as (metric scope, condition).
    async fn new(rules: Vec<(Scope, Condition)>) -> Result<Self> {
        let db = TestDb::new().await?;
        for (i, (scope, condition)) in rules.into_iter().enumerate() {
            db.store
                .insert_rule(&NewRule {
                    name: format!("规则 {i}"),
                    scope,
                    level: Level::ORANGE,
                    condition,
                    item: None,
                    enabled: true,
                })
                .await?;
        }
        let (tx, rx) = flume::bounded(100);
        let (live_tx, _) = broadcast::channel(100);
        let cfg = LiveConfig {
            idle_every: Duration::from_millis(200),
            ..LiveConfig::default()
        };
        let chain = Chain::new(vec![Box::new(RuleDetector::default())]);
        let analytics = Some(Analytics::start(db.store.clone(), chain, cfg, rx, live_tx).await?);
        Ok(Self { db, tx, analytics })
    }

    fn store(&self) -> &Store {
        &self.db.store
    }

    async fn device(&self, id: &str) -> Result<i32> {
        let d = self
            .store()
            .insert_device(&NewDevice {
                id: DeviceId::parse(id)?,
                name: id.into(),
                object_id: Some(format!("site-{id}")),
                token_sha256: [1; 32],
                cert_serial: None,
                cert_not_after: None,
            })
            .await?;
        self.store()
            .set_device_online(d.key, true, Utc::now())
            .await?;
        Ok(d.key)
    }

    async fn metric(&self, key: &str) -> Result<i32> {
        Ok(self.store().ensure_metric(key).await?.id)
    }

    /// Lets the engine see the devices online and reload its registry (at most once a second) for
    /// metrics created after it started.
    async fn ready(&self) {
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }

    /// One committed batch, as ingest hands it over.
    fn send(&self, rows: &[(i32, i32, DateTime<Utc>, f64, i16)]) {
        let rows = rows
            .iter()
            .map(|&(device_key, metric_id, ts, value, quality)| SampleRow {
                device_key,
                metric_id,
                ts,
                received_at: Utc::now(),
                value,
                quality,
            })
            .collect();
        self.tx.send((Instant::now(), rows)).unwrap();
    }

    async fn settle(&self) {
        while !self.tx.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    async fn warnings_of(&self, device: &str) -> Result<Vec<WarningRecord>> {
        let f = WarningFilter {
            device_id: Some(device.into()),
            limit: 100,
            ..WarningFilter::default()
        };
        Ok(self.store().warnings(&f).await?.0)
    }

    async fn stop(mut self) {
        self.analytics.take().unwrap().shutdown().await;
    }
}

fn t(min: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::hours(1) + chrono::Duration::minutes(min)
}

fn on(metric: &str) -> Scope {
    Scope {
        metric: Some(metric.into()),
        ..Scope::default()
    }
}

#[tokio::test]
async fn a_flagged_value_never_triggers_a_limit_rule() -> Result<()> {
    let r = Rig::new(vec![
        (
            on("a34004-Rtd"),
            Condition::Threshold {
                above: Some(75.0),
                below: None,
                for_s: 0,
                hysteresis: 0.0,
            },
        ),
        (
            on("a21026-Rtd"),
            Condition::RateOfChange {
                max_per_minute: 10.0,
            },
        ),
    ])
    .await?;
    let d = r.device("flagrule").await?;
    let (pm25, so2) = (r.metric("a34004-Rtd").await?, r.metric("a21026-Rtd").await?);
    r.ready().await;

    // Every flag that says "not a measurement", far over the limit: nothing.
    let flags = [
        quality::FLAG_STOPPED,
        quality::FLAG_MAINTENANCE,
        quality::FLAG_MANUAL,
        quality::FLAG_FAULT,
        quality::FLAG_CALIBRATION,
        quality::FLAG_OVER_RANGE,
        quality::FLAG_COMM_FAULT,
    ];
    for (i, f) in flags.iter().enumerate() {
        r.send(&[(d, pm25, t(i as i64), 999.0, *f)]);
    }
    // A flagged jump between two normal readings is no rate of change either, nor a reference.
    r.send(&[
        (d, so2, t(0), 10.0, 0),
        (d, so2, t(1), 500.0, quality::FLAG_MANUAL),
        (d, so2, t(2), 12.0, 0),
    ]);
    r.settle().await;
    let data: Vec<_> = r
        .warnings_of("flagrule")
        .await?
        .into_iter()
        .filter(|w| w.source == "rules")
        .collect();
    assert!(data.is_empty(), "{data:?}");

    // The same values unflagged (an out-of-range value is still a measurement): both rules fire.
    r.send(&[
        (d, pm25, t(10), 999.0, quality::OUT_OF_RANGE),
        (d, so2, t(11), 500.0, 0),
    ]);
    r.settle().await;
    let data: Vec<_> = r
        .warnings_of("flagrule")
        .await?
        .into_iter()
        .filter(|w| w.source == "rules")
        .collect();
    assert_eq!(data.len(), 2, "{data:?}");
    r.stop().await;
    Ok(())
}

#[tokio::test]
async fn fault_flags_raise_health_warnings_until_normal_data_returns() -> Result<()> {
    let r = Rig::new(vec![]).await?;
    let d = r.device("flaghealth").await?;
    let (pm25, pm10, so2) = (
        r.metric("a34004-Rtd").await?,
        r.metric("a34002-Rtd").await?,
        r.metric("a21026-Rtd").await?,
    );
    r.ready().await;

    // D on two metrics, T on a third, repeated: one warning per flag kind, not per value.
    r.send(&[
        (d, pm25, t(0), 1.0, quality::FLAG_FAULT),
        (d, pm10, t(0), 1.0, quality::FLAG_FAULT),
        (d, so2, t(0), 900.0, quality::FLAG_OVER_RANGE),
    ]);
    r.send(&[
        (d, pm25, t(1), 1.0, quality::FLAG_FAULT),
        (d, pm10, t(1), 1.0, quality::FLAG_FAULT),
    ]);
    r.settle().await;
    let open: Vec<_> = r
        .warnings_of("flaghealth")
        .await?
        .into_iter()
        .filter(|w| w.resolved_at.is_none())
        .collect();
    let mut seen: Vec<(&str, Level, &str)> = open
        .iter()
        .map(|w| (w.event.as_str(), w.level, w.source.as_str()))
        .collect();
    seen.sort_by_key(|s| s.0);
    assert_eq!(
        seen,
        [
            ("flag-fault", Level::YELLOW, "health"),
            ("flag-over-range", Level::ORANGE, "health")
        ]
    );
    assert!(
        open.iter().all(|w| w.detail.contains("数据标记")),
        "zh-CN first in the detail"
    );

    // One of the two faulty metrics is back: still a fault. Both back: resolved.
    r.send(&[(d, pm25, t(2), 30.0, 0)]);
    r.settle().await;
    let fault = |ws: &[WarningRecord]| {
        ws.iter()
            .find(|w| w.event == "flag-fault")
            .cloned()
            .unwrap()
    };
    assert!(fault(&r.warnings_of("flaghealth").await?)
        .resolved_at
        .is_none());
    r.send(&[(d, pm10, t(3), 50.0, 0)]);
    r.settle().await;
    let ws = r.warnings_of("flaghealth").await?;
    assert_eq!(fault(&ws).resolution.as_deref(), Some("cleared"));
    assert!(
        ws.iter()
            .find(|w| w.event == "flag-over-range")
            .unwrap()
            .resolved_at
            .is_none(),
        "T is still there"
    );

    // B and F are health conditions of their own.
    r.send(&[(
        d,
        pm25,
        t(4),
        0.0,
        quality::FLAG_COMM_FAULT | quality::FLAG_STOPPED,
    )]);
    r.settle().await;
    let ws = r.warnings_of("flaghealth").await?;
    for kind in [FlagKind::CommFault, FlagKind::Stopped] {
        let w = ws
            .iter()
            .find(|w| w.event == kind.event())
            .unwrap_or_else(|| panic!("{kind:?} raised"));
        assert_eq!(w.level, kind.level());
    }
    r.stop().await;
    Ok(())
}

#[tokio::test]
async fn open_flag_warnings_are_resolved_after_a_restart() -> Result<()> {
    let mut r = Rig::new(vec![]).await?;
    let d = r.device("flagrestart").await?;
    let pm25 = r.metric("a34004-Rtd").await?;
    r.ready().await;
    r.send(&[(d, pm25, t(0), 1.0, quality::FLAG_FAULT)]);
    r.settle().await;
    r.analytics.take().unwrap().shutdown().await;

    // A new engine knows nothing of which metric carried the flag; the next normal value clears it.
    let (tx, rx) = flume::bounded(100);
    let (live_tx, _) = broadcast::channel(100);
    let chain = Chain::new(vec![Box::new(RuleDetector::default())]);
    let cfg = LiveConfig {
        idle_every: Duration::from_millis(200),
        ..LiveConfig::default()
    };
    r.analytics = Some(Analytics::start(r.store().clone(), chain, cfg, rx, live_tx).await?);
    r.tx = tx;
    r.send(&[(d, pm25, t(1), 1.0, quality::FLAG_FAULT)]);
    r.settle().await;
    let ws = r.warnings_of("flagrestart").await?;
    assert_eq!(
        (ws.len(), ws[0].resolved_at.is_none()),
        (1, true),
        "still faulty: the same warning, not a second one"
    );
    r.send(&[(d, pm25, t(2), 30.0, 0)]);
    r.settle().await;
    assert_eq!(
        r.warnings_of("flagrestart").await?[0].resolution.as_deref(),
        Some("cleared")
    );
    r.stop().await;
    Ok(())
}

#[tokio::test]
async fn maintenance_and_calibration_flags_inhibit_the_devices_data_warnings() -> Result<()> {
    let r = Rig::new(vec![(
        on("a34004-Rtd"),
        Condition::Threshold {
            above: Some(75.0),
            below: None,
            for_s: 0,
            hysteresis: 0.0,
        },
    )])
    .await?;
    let d = r.device("flagmaint").await?;
    let (pm25, so2) = (r.metric("a34004-Rtd").await?, r.metric("a21026-Rtd").await?);
    r.ready().await;

    // SO2 analyser calibrating: the device's normal PM2.5 value over the limit opens nothing.
    r.send(&[
        (d, so2, t(0), 1.0, quality::FLAG_CALIBRATION),
        (d, pm25, t(0), 200.0, 0),
    ]);
    r.settle().await;
    assert!(r.warnings_of("flagmaint").await?.is_empty());
    // Then maintenance (M) on it: still inhibited.
    r.send(&[
        (d, so2, t(1), 1.0, quality::FLAG_MAINTENANCE),
        (d, pm25, t(1), 40.0, 0),
        (d, pm25, t(2), 210.0, 0),
    ]);
    r.settle().await;
    assert!(r.warnings_of("flagmaint").await?.is_empty());

    // Over: the next exceedance opens its warning.
    r.send(&[
        (d, so2, t(3), 20.0, 0),
        (d, pm25, t(3), 40.0, 0),
        (d, pm25, t(4), 220.0, 0),
    ]);
    r.settle().await;
    let ws = r.warnings_of("flagmaint").await?;
    assert_eq!(ws.len(), 1, "{ws:?}");
    assert_eq!(
        (ws[0].source.as_str(), ws[0].metric_key.as_deref()),
        ("rules", Some("a34004-Rtd"))
    );
    r.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_class_scoped_data_gap_rule_covers_every_logger() -> Result<()> {
    let r = Rig::new(vec![(
        Scope {
            class: Some("hj212".into()),
            ..Scope::default()
        },
        Condition::DataGap { max_gap_s: 2 },
    )])
    .await?;
    let logger = r.device("gaplogger").await?;
    let sensor = r.device("gapsensor").await?;
    r.store()
        .set_device_class(&DeviceId::parse("gaplogger")?, Some("hj212"))
        .await?;
    let pm25 = r.metric("a34004-Rtd").await?;
    r.ready().await;

    // A flagged value still counts as data arriving; then both fall silent.
    r.send(&[
        (logger, pm25, Utc::now(), 1.0, quality::FLAG_FAULT),
        (sensor, pm25, Utc::now(), 1.0, 0),
    ]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let gap: Vec<_> = r
        .warnings_of("gaplogger")
        .await?
        .into_iter()
        .filter(|w| w.source == "rules")
        .collect();
    assert_eq!(gap.len(), 1, "{gap:?}");
    assert!(gap[0].detail.contains("no data"), "{}", gap[0].detail);
    assert!(
        r.warnings_of("gapsensor").await?.is_empty(),
        "another class is not covered"
    );

    // Data again: resolved.
    r.send(&[(logger, pm25, Utc::now(), 1.0, 0)]);
    r.settle().await;
    let gap: Vec<_> = r
        .warnings_of("gaplogger")
        .await?
        .into_iter()
        .filter(|w| w.source == "rules")
        .collect();
    assert_eq!(gap[0].resolution.as_deref(), Some("cleared"));
    r.stop().await;
    Ok(())
}
