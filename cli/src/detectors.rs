//! The detector chains the binary runs: the default one (what `offsite up` runs) and single
//! detectors by name, for backtests.

use anyhow::{bail, Context, Result};
use offsite_analytics::anomaly::{AnomalyConfig, AnomalyDetector, LastValue};
use offsite_analytics::chain::Chain;
use offsite_analytics::onnx::{init_runtime, OnnxForecaster};
use offsite_analytics::rules::RuleDetector;
use offsite_analytics::Detector;

use crate::assets;

/// Names `--detector` accepts.
pub const NAMES: [&str; 2] = ["anomaly-onnx", "anomaly-naive"];

/// The shipped ONNX forecaster, with ONNX Runtime found beside the binary.
pub fn onnx_anomaly(cfg: AnomalyConfig) -> Result<AnomalyDetector> {
    let lib = assets::onnxruntime_library()
        .context("ONNX Runtime library not found beside the executable (run `make build` or scripts/setup.sh)")?;
    init_runtime(&lib)?;
    let dir = assets::model_dir("anomaly").context("model models/anomaly not found beside the executable")?;
    let model = OnnxForecaster::load(&dir)?;
    Ok(AnomalyDetector::new(Box::new(model), cfg))
}

/// What `offsite up` runs: the rules (loaded from the database by the analytics tier) and the
/// ONNX anomaly detector. A model that cannot be loaded is reported and left out; the rules run.
pub fn live_chain() -> Chain {
    let mut detectors: Vec<Box<dyn Detector>> = vec![Box::new(RuleDetector::default())];
    match onnx_anomaly(AnomalyConfig::default()) {
        Ok(d) => detectors.push(Box::new(d)),
        Err(e) => tracing::error!(error = %format!("{e:#}"), "anomaly detector off: the ONNX model could not be loaded"),
    }
    Chain::new(detectors)
}

/// The chain called `name`, or the default chain (what `offsite up` runs: the rule detector, which
/// has no rules offline, and the ONNX anomaly detector, required here); returns the name results
/// are filed under.
pub fn build(name: Option<&str>) -> Result<(String, Chain)> {
    let cfg = AnomalyConfig::default();
    let detectors: Vec<Box<dyn Detector>> = match name {
        None => vec![Box::new(RuleDetector::default()), Box::new(onnx_anomaly(cfg)?)],
        Some("anomaly-onnx") => vec![Box::new(onnx_anomaly(cfg)?)],
        Some("anomaly-naive") => vec![Box::new(AnomalyDetector::new(Box::new(LastValue { window: 64 }), cfg))],
        Some(other) => bail!("unknown detector {other:?}; known: {}", NAMES.join(", ")),
    };
    Ok((name.unwrap_or("offsite").to_owned(), Chain::new(detectors)))
}
