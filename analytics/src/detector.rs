//! The detector contract: a detector reads samples of many series in stream order and says, per
//! sample, how anomalous it looks and whether a warning condition starts or ends.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
}

/// One sample as detectors see it.
#[derive(Debug, Clone)]
pub struct Observation {
    pub key: SeriesKey,
    pub meta: Arc<SeriesMeta>,
    pub ts: DateTime<Utc>,
    pub value: f64,
}

/// Warning level, 1 (most severe) to 4. Cannot be out of range once built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Level(u8);

impl Level {
    pub const RED: Level = Level(1);
    pub const ORANGE: Level = Level(2);
    pub const YELLOW: Level = Level(3);
    pub const BLUE: Level = Level(4);

    pub fn new(n: u8) -> Result<Self, String> {
        if (1..=4).contains(&n) {
            Ok(Level(n))
        } else {
            Err(format!("warning level must be 1..=4 (red, orange, yellow, blue), got {n}"))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// 红 / 橙 / 黄 / 蓝.
    pub fn name_zh(self) -> &'static str {
        ["红色", "橙色", "黄色", "蓝色"][self.0 as usize - 1]
    }

    pub fn name_en(self) -> &'static str {
        ["red", "orange", "yellow", "blue"][self.0 as usize - 1]
    }
}

impl TryFrom<u8> for Level {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        Level::new(n)
    }
}

impl From<Level> for u8 {
    fn from(l: Level) -> u8 {
        l.0
    }
}

/// A warning condition starting or ending on a series.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Raise { event: String, level: Level, detail: String },
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
    /// Conditions that arise from time passing without samples (data gaps), checked periodically.
    fn idle(&mut self, _now: DateTime<Utc>) -> Vec<(SeriesKey, Arc<SeriesMeta>, Transition)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_refuse() {
        assert_eq!(Level::new(1).unwrap(), Level::RED);
        assert!(Level::new(0).is_err() && Level::new(5).is_err());
        assert_eq!(serde_json::to_string(&Level::YELLOW).unwrap(), "3");
        assert!(serde_json::from_str::<Level>("7").is_err());
        assert_eq!((Level::ORANGE.name_zh(), Level::BLUE.name_en()), ("橙色", "blue"));
    }
}
