//! `offsite bench detect`: samples per second per core through the full default detector chain
//! (rules + the ONNX anomaly detector on every series), and the share of that time spent in ONNX.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use chrono::{Duration, Utc};
use offsite_analytics::anomaly::{AnomalyConfig, AnomalyDetector, Predictor};
use offsite_analytics::chain::Chain;
use offsite_analytics::rules::{Condition, Rule, RuleDetector, Scope};
use offsite_analytics::{Level, Observation, SeriesKey, SeriesMeta};
use serde_json::json;

use super::support::round;

#[derive(clap::Args)]
pub struct Args {
    /// Series (device x metric) in the stream.
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Samples per series measured (after a warm-up that fills windows and learning periods).
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Devices publishing the steady background load during the latency measurement.
    #[arg(long, default_value_t = 20)]
    devices: usize,
    /// Seconds of the latency measurement.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Accepted for symmetry; the JSON line is always printed last.
    #[arg(long)]
    json: bool,
}

/// Measures time spent inside the predictor.
struct Timed {
    inner: Box<dyn Predictor>,
    nanos: Arc<AtomicU64>,
}

impl Predictor for Timed {
    fn window(&self) -> usize {
        self.inner.window()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn version(&self) -> &str {
        self.inner.version()
    }
    fn predict(&mut self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.predict(x, rows, out);
        self.nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
}

pub async fn run(base: crate::configuration::Config, a: Args) -> Result<()> {
    let a = Arc::new(a);
    let a2 = a.clone();
    let mut out = tokio::task::spawn_blocking(move || measure(&a2)).await??;
    let live = latency(base, &a).await?;
    if let (Some(o), Some(l)) = (out.as_object_mut(), live.as_object()) {
        o.extend(l.clone());
    }
    println!("{out}");
    Ok(())
}

/// Commit-to-warning latency on the live stream: the all-in-one platform under a steady load of
/// devices over MQTT/TLS, one device repeatedly crossing a rule's threshold and coming back.
async fn latency(base: crate::configuration::Config, a: &Args) -> Result<serde_json::Value> {
    use offsite_edge_agent::{DeviceLink, Endpoint, LinkOptions};
    use offsite_store::rules::NewRule;
    use offsite_wire::{MetricKey, Sample};

    let dir = super::support::scratch_dir("detect")?;
    let mut cfg = base;
    cfg.data_dir = dir.path().to_path_buf();
    cfg.database.url = None;
    cfg.broker.tls_listen = Some(format!("127.0.0.1:{}", super::support::free_port()?).parse()?);
    cfg.broker.plain_listen = Some(format!("127.0.0.1:{}", super::support::free_port()?).parse()?);
    cfg.portal.listen = Some("127.0.0.1:0".parse()?);
    cfg.portal.https_listen = None;
    cfg.hj212.listen = "127.0.0.1:0".into();
    let (probe_tx, probe_rx) = flume::unbounded();
    let p = crate::startup::AllInOne::start_with(&cfg, crate::startup::Hooks { warning_latency: Some(probe_tx) }).await?;
    let r = async {
        let store = &p.db.store;
        store
            .insert_rule(&NewRule {
                name: "bench 超限".into(),
                scope: Scope { metric: Some("pm10".into()), ..Scope::default() },
                level: Level::ORANGE,
                condition: Condition::Threshold { above: Some(1000.0), below: None, for_s: 0, hysteresis: 0.0 },
                item: None,
                enabled: true,
            })
            .await?;
        let endpoint = Endpoint { host: "localhost".into(), port: p.broker.tls_addr().expect("tls").port() };
        let mut links = Vec::new();
        for i in 0..=a.devices {
            let (_, creds) = offsite_broker::provision(store, &p.pki, &format!("bench-detect-{i}"), None).await?;
            links.push(Arc::new(DeviceLink::connect(&creds, &endpoint, LinkOptions::default(), None)?));
        }
        // Rules are re-read on the analytics tier's idle tick.
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
        let pm10 = MetricKey::parse("pm10")?;
        let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut tasks = Vec::new();
        for (i, l) in links.iter().enumerate().skip(1) {
            let (l, running, pm10) = (l.clone(), running.clone(), pm10.clone());
            tasks.push(tokio::spawn(async move {
                let mut ms = Utc::now().timestamp_millis() - 3_600_000;
                while running.load(Ordering::Relaxed) {
                    let samples: Vec<Sample> = (0..100)
                        .map(|k| {
                            ms += 1;
                            let ts = chrono::DateTime::from_timestamp_millis(ms).expect("valid");
                            Sample { ts, metric: pm10.clone(), value: 50.0 + ((i + k) % 7) as f64 }
                        })
                        .collect();
                    let _ = l.publish(samples).await;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }));
        }
        let injector = links[0].clone();
        let start = Instant::now();
        let mut ms = Utc::now().timestamp_millis() - 3_600_000;
        let mut injected = 0;
        while start.elapsed() < std::time::Duration::from_secs(a.duration) {
            for v in [5000.0, 10.0] {
                ms += 1000;
                let ts = chrono::DateTime::from_timestamp_millis(ms).expect("valid");
                injector.publish(vec![Sample { ts, metric: pm10.clone(), value: v }]).await?;
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            injected += 1;
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        running.store(false, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let mut lat: Vec<f64> = probe_rx.try_iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        let background = a.devices as f64 * 1000.0;
        eprintln!("  latency: {} warnings from {injected} crossings under ~{background} samples/s background", lat.len());
        anyhow::Ok(json!({
            "warnings_measured": lat.len(),
            "crossings": injected,
            "background_samples_per_sec": background,
            "warning_latency_p50_ms": round(super::support::percentile(&mut lat, 50.0), 1),
            "warning_latency_p99_ms": round(super::support::percentile(&mut lat, 99.0), 1),
        }))
    }
    .await;
    p.stop().await?;
    r
}

fn measure(a: &Args) -> Result<serde_json::Value> {
    let onnx = crate::detectors::onnx_anomaly(AnomalyConfig::default())?;
    let nanos = Arc::new(AtomicU64::new(0));
    let predictor = Box::new(Timed { inner: onnx.into_predictor(), nanos: nanos.clone() });
    let anomaly = AnomalyDetector::new(predictor, AnomalyConfig::default());
    let rules = RuleDetector::new(vec![
        Rule {
            id: 1,
            name: "上限".into(),
            scope: Scope::default(),
            level: Level::ORANGE,
            condition: Condition::Threshold { above: Some(1e9), below: None, for_s: 600, hysteresis: 0.0 },
            item: None,
            enabled: true,
        },
        Rule {
            id: 2,
            name: "突变".into(),
            scope: Scope::default(),
            level: Level::YELLOW,
            condition: Condition::RateOfChange { max_per_minute: 1e9 },
            item: None,
            enabled: true,
        },
    ]);
    let mut chain = Chain::new(vec![Box::new(rules), Box::new(anomaly)]);
    let metas: Vec<Arc<SeriesMeta>> = (0..a.series)
        .map(|i| Arc::new(SeriesMeta { device_id: format!("d{}", i / 4), metric_key: format!("m{}", i % 4), object_id: None, class: None }))
        .collect();
    let t0 = Utc::now() - Duration::days(1);
    let warmup = 64 + AnomalyConfig::default().likelihood.learning + 10;
    eprintln!("bench detect: {} series, warm-up {warmup} steps, then {} measured steps", a.series, a.steps);
    let mut batch = Vec::with_capacity(a.series);
    let mut run_steps = |from: usize, n: usize, chain: &mut Chain| {
        for step in from..from + n {
            batch.clear();
            for (i, m) in metas.iter().enumerate() {
                let x = step as f64;
                let value = 50.0 + 10.0 * (x / 24.0 + i as f64).sin() + ((x * 7.3 + i as f64 * 1.7).sin() * 3.0);
                batch.push(Observation {
                    quality: 0,
                    key: SeriesKey { device: (i / 4) as i32, metric: (i % 4) as i32 },
                    meta: m.clone(),
                    ts: t0 + Duration::seconds(step as i64 * 60),
                    value,
                });
            }
            chain.observe(&batch);
        }
    };
    run_steps(0, warmup, &mut chain);
    nanos.store(0, Ordering::Relaxed);
    let start = Instant::now();
    run_steps(warmup, a.steps, &mut chain);
    let secs = start.elapsed().as_secs_f64();
    let samples = (a.series * a.steps) as f64;
    let onnx_s = nanos.load(Ordering::Relaxed) as f64 / 1e9;
    eprintln!("  {samples} samples in {secs:.2} s; {onnx_s:.2} s in ONNX");
    Ok(json!({
        "bench": "detect",
        "series": a.series,
        "steps": a.steps,
        "samples_per_sec_per_core": round(samples / secs, 0),
        "onnx_share": round(onnx_s / secs, 3),
        "detectors": chain.detectors().map(|d| format!("{}@{}", d.name(), d.version())).collect::<Vec<_>>(),
    }))
}
