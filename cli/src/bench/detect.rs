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

pub async fn run(a: Args) -> Result<()> {
    let out = tokio::task::spawn_blocking(move || measure(&a)).await??;
    println!("{out}");
    Ok(())
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
        .map(|i| Arc::new(SeriesMeta { device_id: format!("d{}", i / 4), metric_key: format!("m{}", i % 4), object_id: None }))
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
