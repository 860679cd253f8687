//! NAB (Numenta Anomaly Benchmark) scoring.
//!
//! Reproduces NAB's scorer and threshold optimiser (numenta/NAB `nab/sweeper.py`): anomaly windows from
//! `labels/combined_windows.json`, a probationary period of `min(floor(0.15 n), 750)` rows per file,
//! scaled-sigmoid credit for the earliest detection in each window, distance-weighted penalties for false
//! positives, `-fnWeight` per missed window, three application profiles, and a sweep over every distinct
//! anomaly score for the threshold that maximises the corpus raw score. Normalised score:
//! `100 * (raw - null) / (perfect - null)`.
//!
//! Entry point for tools: [`run_scoring`].

mod corpus;
mod labels;
mod profile;
mod results;
mod score;

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::Serialize;

pub use corpus::{
    optimize_threshold, score_corpus, Corpus, CorpusFile, CorpusScore, CorpusSource, SweepPoints, ThresholdChoice,
};
pub use labels::{parse_timestamp, Window, Windows};
pub use profile::Profile;
pub use results::{read_data_timestamps, ResultFile};
pub use score::{probationary_length, scaled_sigmoid, score_file, FileScore, PROBATION_PERCENT};

/// What to score.
#[derive(Debug, Clone)]
pub struct ScoringRequest {
    /// One detector's results: `<results>/<category>/<detector>_<file>.csv`.
    pub results_dir: PathBuf,
    /// The corpus: a NAB `data/` directory, and/or the labels file (see [`CorpusSource`]).
    pub source: CorpusSource,
    /// Profiles to score (default: [`Profile::standard_set`]).
    pub profiles: Vec<Profile>,
    /// Score every profile at this threshold instead of sweeping for each profile's best.
    pub threshold: Option<f64>,
}

impl ScoringRequest {
    pub fn new(results_dir: impl Into<PathBuf>, source: CorpusSource) -> Self {
        ScoringRequest {
            results_dir: results_dir.into(),
            source,
            profiles: Profile::standard_set(),
            threshold: None,
        }
    }
}

/// One profile's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileReport {
    pub profile: Profile,
    /// Whether the threshold came from the sweep (else it was given).
    pub swept: bool,
    /// Number of thresholds the sweep evaluated (0 when not swept).
    pub candidates: usize,
    pub score: CorpusScore,
}

/// The outcome of [`run_scoring`].
#[derive(Debug, Clone, Serialize)]
pub struct ScoringReport {
    pub detector: Option<String>,
    pub files: usize,
    pub rows: usize,
    pub windows: usize,
    pub ignored_results: Vec<PathBuf>,
    pub unlabelled_data: Vec<String>,
    pub profiles: Vec<ProfileReport>,
    /// Seconds spent loading and scoring.
    pub load_seconds: f64,
    pub score_seconds: f64,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl ScoringReport {
    /// The summary object: normalised scores per profile (2 decimals) at the top level, then `thresholds`,
    /// `raw`, `counts`, `detector`, `files`, `rows`, `windows`.
    pub fn summary_json(&self) -> serde_json::Value {
        let mut top = serde_json::Map::new();
        let mut thresholds = serde_json::Map::new();
        let mut raw = serde_json::Map::new();
        let mut counts = serde_json::Map::new();
        for p in &self.profiles {
            let name = p.profile.name.clone();
            top.insert(name.clone(), serde_json::json!(round2(p.score.normalized)));
            thresholds.insert(name.clone(), serde_json::json!(p.score.threshold));
            raw.insert(name.clone(), serde_json::json!(p.score.raw));
            let t = &p.score.totals;
            counts.insert(
                name,
                serde_json::json!({
                    "windows_detected": t.windows_detected,
                    "windows_missed": t.windows_missed(),
                    "fp": t.fp,
                    "tp_rows": t.tp,
                    "fn_rows": t.fn_,
                    "tn_rows": t.tn,
                }),
            );
        }
        top.insert("thresholds".into(), thresholds.into());
        top.insert("raw".into(), raw.into());
        top.insert("counts".into(), counts.into());
        top.insert("swept".into(), serde_json::json!(self.profiles.iter().all(|p| p.swept)));
        top.insert("detector".into(), serde_json::json!(self.detector));
        top.insert("files".into(), serde_json::json!(self.files));
        top.insert("rows".into(), serde_json::json!(self.rows));
        top.insert("windows".into(), serde_json::json!(self.windows));
        serde_json::Value::Object(top)
    }
}

/// Load a detector's results, then for each profile sweep for the best threshold (or use the given one) and
/// score the corpus.
pub fn run_scoring(request: &ScoringRequest) -> Result<ScoringReport> {
    if request.profiles.is_empty() {
        bail!("no profile to score");
    }
    if let Some(t) = request.threshold {
        if t.is_nan() {
            bail!("threshold must be a number");
        }
    }
    let started = std::time::Instant::now();
    let corpus = Corpus::load(&request.results_dir, &request.source)?;
    let load_seconds = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let sweep = request.threshold.is_none().then(|| corpus.sweep_points());
    let profiles = request
        .profiles
        .iter()
        .map(|profile| {
            let (threshold, candidates) = match (&sweep, request.threshold) {
                (Some(points), _) => {
                    let choice = points.optimize(profile);
                    (choice.threshold, choice.candidates)
                }
                (None, Some(t)) => (t, 0),
                (None, None) => unreachable!(),
            };
            ProfileReport {
                profile: profile.clone(),
                swept: sweep.is_some(),
                candidates,
                score: corpus.score(profile, threshold),
            }
        })
        .collect();
    Ok(ScoringReport {
        detector: corpus.detector.clone(),
        files: corpus.files.len(),
        rows: corpus.rows(),
        windows: corpus.total_windows,
        ignored_results: corpus.ignored_results.clone(),
        unlabelled_data: corpus.unlabelled_data.clone(),
        profiles,
        load_seconds,
        score_seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests;
