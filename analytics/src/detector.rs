//! The detector contract: a detector reads samples of many series in stream order and says, per
//! sample, how anomalous it looks and whether a warning condition starts or ends.

use std::sync::Arc;

use chrono::{DateTime, Utc};
pub use offsite_store::rules::Level;

/// One series: a metric of a device (registry surrogates, as stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub device: i32,
    pub metric: i32,
}

/// What rules need to know about a series to decide whether they apply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SeriesMeta {
    pub device_id: String,
    pub metric_key: String,
    /// The regulated object (site) the device belongs to.
    pub object_id: Option<String>,
    /// The device's class (kind of monitor).
    pub class: Option<String>,
}

impl SeriesMeta {
    /// What rule scopes are matched against.
    pub fn target(&self) -> offsite_store::rules::Target<'_> {
        offsite_store::rules::Target {
            device_id: &self.device_id,
            object_id: self.object_id.as_deref(),
            class: self.class.as_deref(),
            metric_key: &self.metric_key,
        }
    }
}

/// One sample as detectors see it.
#[derive(Debug, Clone)]
pub struct Observation {
    pub key: SeriesKey,
    pub meta: Arc<SeriesMeta>,
    pub ts: DateTime<Utc>,
    pub value: f64,
    /// The stored quality bits (`offsite_store::samples::quality`).
    pub quality: i16,
}

impl Observation {
    /// False when the device flagged the value as not a normal measurement (HJ 212 F, M, S, D, C,
    /// T, B): it is stored and shown, but no limit rule or model may take it as a reading.
    pub fn measured(&self) -> bool {
        self.quality & offsite_store::samples::quality::NOT_MEASURED == 0
    }
}

/// What a raised warning was measured against: kept in its evidence so that the evidence chart can
/// draw the limit next to the series.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// A model's score at or above which it raises.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score_at_least: Option<f64>,
}

/// A warning condition starting or ending on a series.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Raise { event: String, level: Level, detail: String, limits: Limits },
    Clear { event: String },
}

/// What one detector concluded about one sample of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Index of the sample in the batch given to `observe`.
    pub index: usize,
    /// How anomalous the sample looks, 0..=1.
    pub score: f64,
    pub transition: Option<Transition>,
}

/// A detector over the sample stream. It keeps its own per-series state; `observe` receives
/// samples of many series in stream order (a series' samples in time order), so a detector that
/// calls a model can serve the whole batch in one call.
pub trait Detector: Send {
    /// Stable name, used in warnings' evidence and in backtest file names.
    fn name(&self) -> &str;
    /// Version of the logic or model, recorded with every warning.
    fn version(&self) -> &str;
    /// Appends findings for samples of `batch` (any subset; a sample without a finding scores 0).
    fn observe(&mut self, batch: &[Observation], out: &mut Vec<Finding>);
    /// New rules (rules are data, edited while running). Detectors without rules ignore it.
    fn set_rules(&mut self, _rules: &[offsite_store::rules::Rule]) {}
    /// Conditions that arise from time passing without samples (data gaps), checked periodically.
    fn idle(&mut self, _now: DateTime<Utc>) -> Vec<(SeriesKey, Arc<SeriesMeta>, Transition)> {
        Vec::new()
    }
    /// The model files in use (with when each was loaded), for the `detector_models` log.
    fn models(&self) -> Vec<offsite_store::detector_models::ModelLoad> {
        Vec::new()
    }
}
