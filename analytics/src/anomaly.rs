//! The anomaly detector: per series, a window of recent values is normalised, a predictor (the
//! shipped ONNX forecaster, or a plain fallback) forecasts the next value, and the surprise of the
//! actual value feeds the per-series likelihood of changed behaviour.
//!
//! All series of a batch that have a full window go to the predictor in one call.

use std::collections::HashMap;
use std::collections::VecDeque;

use crate::detector::{Detector, Finding, Level, Observation, SeriesKey, Transition, Limits};
use crate::likelihood::{log_score, Likelihood, LikelihoodConfig};

/// Forecasts the next normalised value of many windows at once.
pub trait Predictor: Send {
    /// Values per window.
    fn window(&self) -> usize;
    fn name(&self) -> &str;
    fn version(&self) -> &str;
    /// `x` holds `rows` windows of `window()` normalised values, row-major; appends one forecast per row.
    fn predict(&mut self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> anyhow::Result<()>;
    /// Picks up a changed model file, if the predictor has one: `Some(Ok(version))` when a new
    /// model is in use, `Some(Err(why))` when the new file was refused (the old one keeps running).
    fn reload_if_changed(&mut self) -> Option<Result<String, String>> {
        None
    }
    /// The model file in use, if the predictor has one (`detector` left empty: the detector's
    /// name is filled in by [`AnomalyDetector`]).
    fn loaded(&self) -> Option<offsite_store::detector_models::ModelLoad> {
        None
    }
}

/// Forecasts "same as the last value": the fallback when no model is available.
pub struct LastValue {
    pub window: usize,
}

impl Predictor for LastValue {
    fn window(&self) -> usize {
        self.window
    }
    fn name(&self) -> &str {
        "last-value"
    }
    fn version(&self) -> &str {
        "1"
    }
    fn predict(&mut self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> anyhow::Result<()> {
        let w = self.window;
        out.extend((0..rows).map(|r| x[r * w + w - 1]));
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct AnomalyConfig {
    pub likelihood: LikelihoodConfig,
    /// A warning is raised when the score reaches this.
    pub raise_at: f64,
    /// After a warning is raised, the series stays quiet this many samples (the warning is open;
    /// repeats would only be noise).
    pub refractory: usize,
    /// Error (in standard deviations of the window) that counts as fully surprising.
    pub error_cap: f64,
    pub level: Level,
    /// Measure the forecast error against the series' long-run spread (mean absolute deviation
    /// from its long-run mean) instead of the window's standard deviation, so a change of level
    /// or amplitude that the window normalisation hides still counts.
    pub long_run_scale: bool,
    /// Weight of the long-run statistics' exponential average (per sample).
    pub long_run_alpha: f64,
    /// Score from the standard score z of the recent error average: tanh(z / z_scale), which keeps
    /// ranking where the likelihood saturates. 0 uses the likelihood's log score.
    pub z_scale: f64,
    /// A value beyond the range seen so far by more than this fraction of the range scores 1
    /// (a level never seen before); 0 switches it off.
    pub novelty: f64,
}

impl Default for AnomalyConfig {
    /// Chosen on the NAB corpus as a whole (one setting for every series, no per-file tuning):
    /// see BENCHMARKS.md.
    fn default() -> Self {
        Self {
            likelihood: LikelihoodConfig { short_window: 3, history: 2000, learning: 300, min_std: 0.005 },
            raise_at: 0.35,
            refractory: 100,
            error_cap: 10.0,
            level: Level::YELLOW,
            long_run_scale: true,
            long_run_alpha: 0.001,
            z_scale: 20.0,
            novelty: 0.01,
        }
    }
}

struct SeriesState {
    window: VecDeque<f64>,
    likelihood: Likelihood,
    /// Samples left in the quiet period after a raise.
    quiet: usize,
    /// A raised warning has not been cleared yet.
    raised: bool,
    /// Range seen so far, for "never seen before" values.
    min: f64,
    max: f64,
    seen: usize,
    /// Long-run mean and mean absolute deviation (exponentially weighted).
    lr_mean: f64,
    lr_mad: f64,
}

pub struct AnomalyDetector {
    name: String,
    version: String,
    cfg: AnomalyConfig,
    predictor: Box<dyn Predictor>,
    series: HashMap<SeriesKey, SeriesState>,
    // Reused buffers.
    x: Vec<f32>,
    pred: Vec<f32>,
    pending: Vec<(usize, f64, f64)>,
}

impl AnomalyDetector {
    pub fn new(predictor: Box<dyn Predictor>, cfg: AnomalyConfig) -> Self {
        let name = format!("anomaly-{}", predictor.name());
        let version = predictor.version().to_owned();
        Self { name, version, cfg, predictor, series: HashMap::new(), x: Vec::new(), pred: Vec::new(), pending: Vec::new() }
    }
}

impl AnomalyDetector {
    /// Takes the predictor back (to wrap it, e.g. for timing).
    pub fn into_predictor(self) -> Box<dyn Predictor> {
        self.predictor
    }
}

impl Detector for AnomalyDetector {
    fn name(&self) -> &str {
        &self.name
    }

    fn idle(&mut self, _now: chrono::DateTime<chrono::Utc>) -> Vec<(SeriesKey, std::sync::Arc<crate::SeriesMeta>, Transition)> {
        let window = self.predictor.window();
        match self.predictor.reload_if_changed() {
            Some(Ok(version)) => {
                tracing::info!(detector = %self.name, %version, "model reloaded");
                self.version = version;
                // A new window length makes the kept windows meaningless.
                if self.predictor.window() != window {
                    self.series.clear();
                }
            }
            Some(Err(e)) => tracing::error!(detector = %self.name, error = %e, "changed model refused; the previous one keeps running"),
            None => {}
        }
        Vec::new()
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn models(&self) -> Vec<offsite_store::detector_models::ModelLoad> {
        self.predictor.loaded().map(|m| offsite_store::detector_models::ModelLoad { detector: self.name.clone(), ..m }).into_iter().collect()
    }

    fn observe(&mut self, batch: &[Observation], out: &mut Vec<Finding>) {
        let w = self.predictor.window();
        // A series can appear several times in one batch; its later samples need the window as
        // it is after the earlier ones, so windows are snapshotted in order while values are pushed.
        self.x.clear();
        self.pending.clear();
        let mut order: Vec<Option<usize>> = Vec::with_capacity(batch.len());
        for (i, o) in batch.iter().enumerate() {
            // A flagged value is no reading: it must neither be scored nor enter the window.
            if !o.measured() {
                order.push(None);
                continue;
            }
            let st = self.series.entry(o.key).or_insert_with(|| SeriesState {
                window: VecDeque::with_capacity(w + 1),
                likelihood: Likelihood::new(self.cfg.likelihood),
                quiet: 0,
                raised: false,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                seen: 0,
                lr_mean: o.value,
                lr_mad: 0.0,
            });
            if st.window.len() == w {
                let (mean, std) = mean_std(&st.window);
                for v in &st.window {
                    self.x.push(((v - mean) / std) as f32);
                }
                self.pending.push((i, mean, std));
                order.push(Some(self.pending.len() - 1));
            } else {
                order.push(None);
            }
            st.window.push_back(o.value);
            if st.window.len() > w {
                st.window.pop_front();
            }
        }
        self.pred.clear();
        let rows = self.pending.len();
        if rows > 0 {
            if let Err(e) = self.predictor.predict(&self.x, rows, &mut self.pred) {
                tracing::warn!(detector = %self.name, error = %format!("{e:#}"), "prediction failed; batch scored 0");
                self.pred.clear();
                self.pred.resize(rows, f32::NAN);
            }
        }
        for (i, o) in batch.iter().enumerate() {
            if !o.measured() {
                continue;
            }
            let st = self.series.get_mut(&o.key).expect("inserted above");
            let raw = match order[i] {
                Some(p) => {
                    let (_, mean, std) = self.pending[p];
                    let z = (o.value - mean) / std;
                    let mut e = (z - self.pred[p] as f64).abs();
                    if self.cfg.long_run_scale {
                        // Back to the series' units, then against its long-run spread.
                        e = e * std / st.lr_mad.max(1e-9 * st.lr_mean.abs().max(1.0));
                    }
                    if e.is_finite() {
                        e.min(self.cfg.error_cap) / self.cfg.error_cap
                    } else {
                        0.0
                    }
                }
                None => 0.0,
            };
            let range = st.max - st.min;
            let tol = self.cfg.novelty * range;
            let novel = self.cfg.novelty > 0.0
                && st.seen > self.cfg.likelihood.learning
                && range > 0.0
                && (o.value > st.max + tol || o.value < st.min - tol);
            st.seen += 1;
            let a = if st.seen < 100 { 1.0 / st.seen as f64 } else { self.cfg.long_run_alpha };
            st.lr_mean += a * (o.value - st.lr_mean);
            st.lr_mad += a * ((o.value - st.lr_mean).abs() - st.lr_mad);
            st.min = st.min.min(o.value);
            st.max = st.max.max(o.value);
            let lik = st.likelihood.update(raw);
            let mut score = if self.cfg.z_scale > 0.0 {
                (st.likelihood.last_z().max(0.0) / self.cfg.z_scale).tanh()
            } else {
                log_score(lik)
            };
            if novel {
                score = 1.0;
            }
            let quiet = st.quiet > 0;
            if quiet {
                st.quiet -= 1;
                score = 0.0;
            }
            let transition = if quiet {
                None
            } else if score >= self.cfg.raise_at {
                // Raised again if still anomalous after the quiet period (the open warning's
                // counter goes up), else the warning clears.
                st.quiet = self.cfg.refractory;
                st.raised = true;
                Some(Transition::Raise {
                    event: "anomaly".into(),
                    level: self.cfg.level,
                    detail: format!("score {score:.3}"),
                    limits: Limits { score_at_least: Some(self.cfg.raise_at), ..Limits::default() },
                })
            } else if st.raised {
                st.raised = false;
                Some(Transition::Clear { event: "anomaly".into() })
            } else {
                None
            };
            out.push(Finding { index: i, score, transition });
        }
    }
}

/// Mean and standard deviation of a window (std floored so a flat window does not divide by 0).
fn mean_std(w: &VecDeque<f64>) -> (f64, f64) {
    let n = w.len() as f64;
    let mean = w.iter().sum::<f64>() / n;
    let var = w.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt().max(1e-6 * mean.abs().max(1.0)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::detector::SeriesMeta;

    /// Scores a series through a fresh detector; returns the indexes where a warning was raised.
    fn raises(values: &[f64]) -> Vec<usize> {
        let mut d = AnomalyDetector::new(Box::new(LastValue { window: 64 }), AnomalyConfig::default());
        let meta = Arc::new(SeriesMeta::default());
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut out = Vec::new();
        let batch: Vec<Observation> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Observation {
                quality: 0,
                key: SeriesKey { device: 1, metric: 1 },
                meta: meta.clone(),
                ts: t0 + chrono::Duration::minutes(i as i64),
                value: *v,
            })
            .collect();
        d.observe(&batch, &mut out);
        assert_eq!(out.len(), values.len(), "one finding per sample");
        assert!(out.iter().all(|f| (0.0..=1.0).contains(&f.score)));
        out.iter().filter(|f| matches!(f.transition, Some(Transition::Raise { .. }))).map(|f| f.index).collect()
    }

    #[test]
    fn a_raised_anomaly_clears_once_the_series_is_normal_again() {
        let mut v = normal(3000);
        v[2000] = 200.0;
        let mut d = AnomalyDetector::new(Box::new(LastValue { window: 64 }), AnomalyConfig::default());
        let meta = Arc::new(SeriesMeta::default());
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let batch: Vec<Observation> = v
            .iter()
            .enumerate()
            .map(|(i, x)| Observation { key: SeriesKey { device: 1, metric: 1 }, meta: meta.clone(), ts: t0 + chrono::Duration::minutes(i as i64), value: *x, quality: 0 })
            .collect();
        let mut out = Vec::new();
        d.observe(&batch, &mut out);
        let kinds: Vec<(usize, bool)> = out
            .iter()
            .filter_map(|f| f.transition.as_ref().map(|t| (f.index, matches!(t, Transition::Raise { .. }))))
            .collect();
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        assert!(kinds[0].1 && !kinds[1].1, "raise then clear: {kinds:?}");
        assert_eq!(kinds[1].0 - kinds[0].0, AnomalyConfig::default().refractory + 1, "cleared right after the quiet period");
    }

    /// A daily cycle with bounded noise (deterministic).
    fn normal(n: usize) -> Vec<f64> {
        (0..n).map(|i| 50.0 + 10.0 * (i as f64 / 288.0 * std::f64::consts::TAU).sin() + ((i * 7919) % 13) as f64 / 13.0).collect()
    }

    #[test]
    fn quiet_on_a_regular_series() {
        assert_eq!(raises(&normal(3000)), Vec::<usize>::new());
    }

    #[test]
    fn fires_on_a_spike_soon_after_it() {
        let mut v = normal(3000);
        v[2000] = 200.0;
        let r = raises(&v);
        assert!(r.first().is_some_and(|i| (2000..2005).contains(i)), "raised at {r:?}");
    }

    #[test]
    fn fires_on_a_level_shift() {
        let mut v = normal(3000);
        for x in &mut v[2000..] {
            *x += 40.0;
        }
        let r = raises(&v);
        assert!(r.first().is_some_and(|i| (2000..2010).contains(i)), "raised at {r:?}");
    }

    #[test]
    fn a_flagged_spike_is_neither_scored_nor_remembered() {
        let mut v = normal(3000);
        v[2000] = 200.0;
        let mut d = AnomalyDetector::new(Box::new(LastValue { window: 64 }), AnomalyConfig::default());
        let meta = Arc::new(SeriesMeta::default());
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let batch: Vec<Observation> = v
            .iter()
            .enumerate()
            .map(|(i, x)| Observation {
                key: SeriesKey { device: 1, metric: 1 },
                meta: meta.clone(),
                ts: t0 + chrono::Duration::minutes(i as i64),
                value: *x,
                quality: if i == 2000 { offsite_store::samples::quality::FLAG_FAULT } else { 0 },
            })
            .collect();
        let mut out = Vec::new();
        d.observe(&batch, &mut out);
        assert!(out.iter().all(|f| f.index != 2000), "no finding for the flagged value");
        // Had the spike entered the window, the values after it would look anomalous.
        assert!(out.iter().all(|f| f.transition.is_none()), "{:?}", out.iter().find(|f| f.transition.is_some()));
    }

    #[test]
    fn nothing_during_the_learning_period() {
        let mut v = normal(400);
        v[100] = 1e6;
        assert!(raises(&v).iter().all(|i| *i > AnomalyConfig::default().likelihood.learning));
    }
}
