//! Simulated sensor signals: trend + daily cycle + noise, with injected anomalies.
//!
//! Used for demos and for exercising the platform's anomaly detection without hardware, so every
//! anomaly shape the detectors should catch can be produced on purpose (`inject`) or at random
//! (`anomaly_rate`), and everything is deterministic for a given seed and sequence of timestamps.

use chrono::{DateTime, Timelike, Utc};
use offsite_wire::{MetricKey, Sample};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::SourceError;

/// Shape of one simulated metric.
#[derive(Debug, Clone)]
pub struct MetricProfile {
    pub metric: MetricKey,
    pub base: f64,
    /// Change per hour.
    pub trend_per_hour: f64,
    /// Amplitude of the daily cycle (peak in the afternoon).
    pub daily_amplitude: f64,
    /// Standard deviation of the noise.
    pub noise: f64,
    pub min: f64,
    pub max: f64,
}

impl MetricProfile {
    pub fn new(metric: &str, base: f64, daily_amplitude: f64, noise: f64) -> Self {
        Self {
            metric: MetricKey::parse(metric).expect("built-in metric keys are valid"),
            base,
            trend_per_hour: 0.0,
            daily_amplitude,
            noise,
            min: f64::NEG_INFINITY,
            max: f64::INFINITY,
        }
    }

    /// A construction-site dust and noise monitor, the most common kind of demo device.
    pub fn construction_site() -> Vec<Self> {
        vec![
            Self { min: 0.0, ..Self::new("pm10", 70.0, 25.0, 6.0) },
            Self { min: 0.0, ..Self::new("pm25", 40.0, 12.0, 4.0) },
            Self { min: 30.0, ..Self::new("noise", 58.0, 8.0, 2.0) },
            Self::new("temperature", 12.0, 5.0, 0.3),
        ]
    }

    /// Typical size of the signal, used to make anomalies "far off" whatever the metric's unit.
    fn scale(&self) -> f64 {
        self.base.abs().max(self.daily_amplitude.abs()).max(self.noise * 5.0).max(1.0)
    }
}

/// An anomaly currently being injected into one metric. `remaining` counts the samples (polls)
/// still affected, including the next one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Anomaly {
    /// One value off by `delta`.
    Spike { delta: f64 },
    /// The level jumps by `delta` and stays there.
    LevelShift { delta: f64, remaining: u32 },
    /// A growing departure: the k-th affected sample is off by `k * per_sample`.
    Drift { per_sample: f64, remaining: u32 },
    /// The value is stuck at the last emitted value (a frozen sensor).
    FlatLine { remaining: u32 },
    /// No sample of the metric at all (a sensor that stopped answering).
    Dropout { remaining: u32 },
}

impl Anomaly {
    pub fn kind(&self) -> AnomalyKind {
        match self {
            Anomaly::Spike { .. } => AnomalyKind::Spike,
            Anomaly::LevelShift { .. } => AnomalyKind::LevelShift,
            Anomaly::Drift { .. } => AnomalyKind::Drift,
            Anomaly::FlatLine { .. } => AnomalyKind::FlatLine,
            Anomaly::Dropout { .. } => AnomalyKind::Dropout,
        }
    }

    /// Samples still affected after this one.
    fn remaining(&self) -> u32 {
        match *self {
            Anomaly::Spike { .. } => 1,
            Anomaly::LevelShift { remaining, .. }
            | Anomaly::Drift { remaining, .. }
            | Anomaly::FlatLine { remaining }
            | Anomaly::Dropout { remaining } => remaining,
        }
    }
}

/// The anomaly shapes, as named in the config's `anomalies` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    Spike,
    LevelShift,
    Drift,
    FlatLine,
    Dropout,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 5] =
        [AnomalyKind::Spike, AnomalyKind::LevelShift, AnomalyKind::Drift, AnomalyKind::FlatLine, AnomalyKind::Dropout];
}

/// Per-metric injection state.
#[derive(Debug, Clone, Copy)]
struct Active {
    anomaly: Anomaly,
    /// Samples already affected (drives the drift's growth).
    done: u32,
}

/// Deterministic generator for one device (seeded), so demos and tests are reproducible.
pub struct SignalGenerator {
    profiles: Vec<MetricProfile>,
    rng: SmallRng,
    /// Origin of the trend: the first sampled timestamp, not the wall clock, so that output depends
    /// only on the seed and the timestamps asked for.
    started: Option<DateTime<Utc>>,
    /// Probability per sample that an anomaly starts.
    pub anomaly_rate: f64,
    kinds: Vec<AnomalyKind>,
    active: Vec<Option<Active>>,
    /// Last emitted value per metric, for flat lines.
    last: Vec<Option<f64>>,
}

impl SignalGenerator {
    pub fn new(profiles: Vec<MetricProfile>, seed: u64, anomaly_rate: f64) -> Self {
        let n = profiles.len();
        Self {
            profiles,
            rng: SmallRng::seed_from_u64(seed),
            started: None,
            anomaly_rate,
            kinds: AnomalyKind::ALL.to_vec(),
            active: vec![None; n],
            last: vec![None; n],
        }
    }

    /// Restricts the shapes that random injection (`anomaly_rate`) picks from; empty disables it.
    pub fn set_anomaly_kinds(&mut self, kinds: &[AnomalyKind]) {
        self.kinds = kinds.to_vec();
    }

    pub fn profiles(&self) -> &[MetricProfile] {
        &self.profiles
    }

    /// Forces `anomaly` onto metric `index` from the next sample on, replacing any active one.
    /// Returns false (and does nothing) when there is no such metric.
    pub fn inject(&mut self, index: usize, anomaly: Anomaly) -> bool {
        match self.active.get_mut(index) {
            Some(slot) => {
                *slot = Some(Active { anomaly, done: 0 });
                true
            }
            None => false,
        }
    }

    /// The anomaly affecting metric `index`, if any.
    pub fn active(&self, index: usize) -> Option<Anomaly> {
        self.active.get(index).copied().flatten().map(|a| a.anomaly)
    }

    /// One sample of every metric at `ts`; a metric in a dropout is left out.
    pub fn sample_all(&mut self, ts: DateTime<Utc>) -> Vec<Sample> {
        let started = *self.started.get_or_insert(ts);
        let hours = (ts - started).num_milliseconds() as f64 / 3_600_000.0;
        let local_hour = (ts.hour() as f64 + 8.0 + ts.minute() as f64 / 60.0) % 24.0; // Asia/Shanghai
        let cycle = ((local_hour - 9.0) / 24.0 * std::f64::consts::TAU).sin();
        let mut out = Vec::with_capacity(self.profiles.len());
        for i in 0..self.profiles.len() {
            let p = &self.profiles[i];
            // Always draw the noise so that the random sequence does not depend on anomalies.
            let noise = gaussian(&mut self.rng) * p.noise;
            let mut v = p.base + p.trend_per_hour * hours + p.daily_amplitude * cycle + noise;
            if self.active[i].is_none() && !self.kinds.is_empty() && self.rng.random::<f64>() < self.anomaly_rate {
                let kind = self.kinds[self.rng.random_range(0..self.kinds.len())];
                let anomaly = random_anomaly(&mut self.rng, kind, p.scale());
                self.active[i] = Some(Active { anomaly, done: 0 });
            }
            let mut emit = true;
            if let Some(mut a) = self.active[i] {
                match a.anomaly {
                    Anomaly::Spike { delta } | Anomaly::LevelShift { delta, .. } => v += delta,
                    Anomaly::Drift { per_sample, .. } => v += per_sample * f64::from(a.done + 1),
                    // Before any value was emitted there is nothing to stick to: freeze this one.
                    Anomaly::FlatLine { .. } => v = self.last[i].unwrap_or(v),
                    Anomaly::Dropout { .. } => emit = false,
                }
                a.done += 1;
                self.active[i] = (a.done < a.anomaly.remaining()).then_some(a);
            }
            if emit {
                // max/min rather than clamp: clamp panics on a misconfigured min > max.
                let v = v.max(p.min).min(p.max);
                // A non-finite value would poison downstream statistics; fall back to the base.
                let v = if v.is_finite() { v } else { p.base };
                self.last[i] = Some(v);
                out.push(Sample { ts, metric: p.metric.clone(), value: v });
            }
        }
        out
    }
}

/// Random parameters for one anomaly of `kind`; `scale` is the metric's typical size.
fn random_anomaly(rng: &mut SmallRng, kind: AnomalyKind, scale: f64) -> Anomaly {
    match kind {
        AnomalyKind::Spike => Anomaly::Spike { delta: scale * (2.0 + rng.random::<f64>() * 3.0) },
        AnomalyKind::LevelShift => Anomaly::LevelShift { delta: scale * 1.5, remaining: rng.random_range(20..=60) },
        AnomalyKind::Drift => {
            let remaining = rng.random_range(30..=120);
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            // Ends about two scales away from normal.
            Anomaly::Drift { per_sample: sign * 2.0 * scale / f64::from(remaining), remaining }
        }
        AnomalyKind::FlatLine => Anomaly::FlatLine { remaining: rng.random_range(20..=60) },
        AnomalyKind::Dropout => Anomaly::Dropout { remaining: rng.random_range(5..=30) },
    }
}

/// Standard normal via Box-Muller.
fn gaussian(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `kind = "sim"` in `[[devices.sources]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Built-in metric set; `construction_site` when neither this nor `metrics` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<BuiltinProfile>,
    /// Explicit metrics, instead of a built-in profile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<SimMetricConfig>,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Probability per sample and metric that a random anomaly starts.
    #[serde(default)]
    pub anomaly_rate: f64,
    /// Shapes random anomalies are drawn from.
    #[serde(default = "all_kinds")]
    pub anomalies: Vec<AnomalyKind>,
}

fn default_seed() -> u64 {
    1
}

fn all_kinds() -> Vec<AnomalyKind> {
    AnomalyKind::ALL.to_vec()
}

impl Default for SimConfig {
    fn default() -> Self {
        Self { profile: None, metrics: Vec::new(), seed: default_seed(), anomaly_rate: 0.0, anomalies: all_kinds() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinProfile {
    ConstructionSite,
}

/// One `[[devices.sources.metrics]]` entry of a sim source.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimMetricConfig {
    pub key: MetricKey,
    pub base: f64,
    #[serde(default)]
    pub daily_amplitude: f64,
    #[serde(default)]
    pub noise: f64,
    #[serde(default)]
    pub trend_per_hour: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl SimConfig {
    pub fn validate(&self) -> Result<(), SourceError> {
        let cfg = |m: String| Err(SourceError::Config(m));
        if self.profile.is_some() && !self.metrics.is_empty() {
            return cfg("sim: give either `profile` or `metrics`, not both".into());
        }
        if !(0.0..=1.0).contains(&self.anomaly_rate) {
            return cfg(format!("sim: anomaly_rate must be within 0..=1, got {}", self.anomaly_rate));
        }
        for m in &self.metrics {
            let finite = [m.base, m.daily_amplitude, m.noise, m.trend_per_hour].iter().all(|x| x.is_finite());
            if !finite || m.noise < 0.0 {
                return cfg(format!(
                    "sim metric {}: base, daily_amplitude, trend_per_hour must be finite and noise >= 0",
                    m.key
                ));
            }
            if m.min.is_some_and(f64::is_nan) || m.max.is_some_and(f64::is_nan) {
                return cfg(format!("sim metric {}: min/max must be numbers", m.key));
            }
            if let (Some(lo), Some(hi)) = (m.min, m.max) {
                if lo > hi {
                    return cfg(format!("sim metric {}: min {lo} > max {hi}", m.key));
                }
            }
        }
        let mut keys: Vec<&str> = self.metrics.iter().map(|m| m.key.as_str()).collect();
        keys.sort_unstable();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            return cfg(format!("sim: metric {} is listed twice", w[0]));
        }
        Ok(())
    }

    /// The metric profiles this config describes.
    pub fn profiles(&self) -> Vec<MetricProfile> {
        if self.metrics.is_empty() {
            return match self.profile.unwrap_or(BuiltinProfile::ConstructionSite) {
                BuiltinProfile::ConstructionSite => MetricProfile::construction_site(),
            };
        }
        self.metrics
            .iter()
            .map(|m| MetricProfile {
                metric: m.key.clone(),
                base: m.base,
                trend_per_hour: m.trend_per_hour,
                daily_amplitude: m.daily_amplitude,
                noise: m.noise,
                min: m.min.unwrap_or(f64::NEG_INFINITY),
                max: m.max.unwrap_or(f64::INFINITY),
            })
            .collect()
    }
}

/// A sim source: one sample of every metric per poll.
pub struct SimSource {
    generator: SignalGenerator,
}

impl SimSource {
    pub fn new(cfg: &SimConfig) -> Result<Self, SourceError> {
        cfg.validate()?;
        let mut generator = SignalGenerator::new(cfg.profiles(), cfg.seed, cfg.anomaly_rate);
        generator.set_anomaly_kinds(&cfg.anomalies);
        Ok(Self { generator })
    }

    pub fn poll(&mut self, now: DateTime<Utc>) -> Vec<Sample> {
        self.generator.sample_all(now)
    }

    /// Access to the generator, e.g. to inject anomalies on demand.
    pub fn generator_mut(&mut self) -> &mut SignalGenerator {
        &mut self.generator
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 6, 0, 0).single().expect("valid date")
    }

    fn flat(base: f64) -> SignalGenerator {
        // No noise or cycle, so every departure from `base` is the anomaly's doing.
        SignalGenerator::new(vec![MetricProfile::new("m", base, 0.0, 0.0)], 7, 0.0)
    }

    fn values(g: &mut SignalGenerator, n: i64) -> Vec<Option<f64>> {
        (0..n).map(|i| g.sample_all(t0() + Duration::seconds(i)).first().map(|s| s.value)).collect()
    }

    #[test]
    fn deterministic_and_bounded() {
        let mut a = SignalGenerator::new(MetricProfile::construction_site(), 1, 0.05);
        let mut b = SignalGenerator::new(MetricProfile::construction_site(), 1, 0.05);
        let mut c = SignalGenerator::new(MetricProfile::construction_site(), 2, 0.05);
        let mut differs = false;
        for i in 0..2000 {
            let ts = t0() + Duration::seconds(i * 60);
            let (x, y, z) = (a.sample_all(ts), b.sample_all(ts), c.sample_all(ts));
            assert_eq!(x, y);
            differs |= x != z;
            for s in &x {
                assert!(s.value.is_finite());
                let p = a.profiles().iter().find(|p| p.metric == s.metric).expect("known metric");
                assert!(s.value >= p.min && s.value <= p.max, "{s:?} outside {}..{}", p.min, p.max);
            }
        }
        assert!(differs, "another seed should give another signal");
    }

    #[test]
    fn random_anomalies_are_injected() {
        let mut g = SignalGenerator::new(vec![MetricProfile::new("pm10", 50.0, 0.0, 0.1)], 3, 0.05);
        g.set_anomaly_kinds(&[AnomalyKind::Spike, AnomalyKind::LevelShift]);
        let far = values(&mut g, 500).into_iter().flatten().filter(|v| (v - 50.0).abs() > 20.0).count();
        assert!(far > 5, "expected injected anomalies, saw {far}");

        let mut none = SignalGenerator::new(vec![MetricProfile::new("pm10", 50.0, 0.0, 0.1)], 3, 0.5);
        none.set_anomaly_kinds(&[]);
        assert!(values(&mut none, 200).into_iter().all(|v| v.is_some_and(|v| (v - 50.0).abs() < 5.0)));
    }

    #[test]
    fn spike_is_one_value() {
        let mut g = flat(10.0);
        values(&mut g, 2);
        assert!(g.inject(0, Anomaly::Spike { delta: 100.0 }));
        assert_eq!(values(&mut g, 3), vec![Some(110.0), Some(10.0), Some(10.0)]);
        assert!(!g.inject(5, Anomaly::Spike { delta: 1.0 }), "no such metric");
    }

    #[test]
    fn level_shift_lasts_n_samples() {
        let mut g = flat(10.0);
        g.inject(0, Anomaly::LevelShift { delta: -4.0, remaining: 3 });
        assert_eq!(values(&mut g, 5), vec![Some(6.0), Some(6.0), Some(6.0), Some(10.0), Some(10.0)]);
    }

    #[test]
    fn drift_grows_linearly_then_recovers() {
        let mut g = flat(10.0);
        g.inject(0, Anomaly::Drift { per_sample: 0.5, remaining: 4 });
        assert_eq!(g.active(0).map(|a| a.kind()), Some(AnomalyKind::Drift));
        assert_eq!(values(&mut g, 5), vec![Some(10.5), Some(11.0), Some(11.5), Some(12.0), Some(10.0)]);
        assert_eq!(g.active(0), None);
    }

    #[test]
    fn flat_line_repeats_last_value() {
        let mut g = SignalGenerator::new(vec![MetricProfile::new("m", 10.0, 0.0, 1.0)], 9, 0.0);
        let before = values(&mut g, 3);
        g.inject(0, Anomaly::FlatLine { remaining: 4 });
        let during = values(&mut g, 4);
        assert!(during.iter().all(|v| *v == before[2]), "{before:?} then {during:?}");
        let after = values(&mut g, 3);
        assert!(after.iter().all(|v| *v != before[2]), "noise is back: {after:?}");
    }

    #[test]
    fn dropout_omits_samples() {
        let profiles = vec![MetricProfile::new("a", 1.0, 0.0, 0.0), MetricProfile::new("b", 2.0, 0.0, 0.0)];
        let mut g = SignalGenerator::new(profiles, 1, 0.0);
        g.inject(1, Anomaly::Dropout { remaining: 2 });
        let keys = |s: Vec<Sample>| s.into_iter().map(|s| s.metric.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(keys(g.sample_all(t0())), ["a"]);
        assert_eq!(keys(g.sample_all(t0() + Duration::seconds(1))), ["a"]);
        assert_eq!(keys(g.sample_all(t0() + Duration::seconds(2))), ["a", "b"]);
    }

    #[test]
    fn every_random_shape_is_observable() {
        // With a high rate, each enabled shape alone shows up in the output, and only that shape.
        for kind in AnomalyKind::ALL {
            let mut g = SignalGenerator::new(vec![MetricProfile::new("m", 50.0, 0.0, 0.5)], 11, 0.2);
            g.set_anomaly_kinds(&[kind]);
            let mut out = Vec::new();
            for i in 0..300 {
                out.push(g.sample_all(t0() + Duration::seconds(i)).first().map(|s| s.value));
                assert!(g.active(0).is_none_or(|a| a.kind() == kind));
            }
            let seen = match kind {
                AnomalyKind::Dropout => out.iter().any(Option::is_none),
                AnomalyKind::FlatLine => out.windows(2).any(|w| w[0] == w[1]),
                _ => out.iter().flatten().any(|v| (v - 50.0).abs() > 10.0),
            };
            assert!(seen, "{kind:?} never observed");
        }
    }

    #[test]
    fn anomalies_respect_bounds() {
        let p = MetricProfile { min: 0.0, max: 100.0, ..MetricProfile::new("m", 90.0, 0.0, 0.0) };
        let mut g = SignalGenerator::new(vec![p], 1, 0.0);
        g.inject(0, Anomaly::LevelShift { delta: 1e9, remaining: 2 });
        assert_eq!(values(&mut g, 1), vec![Some(100.0)]);
        g.inject(0, Anomaly::Drift { per_sample: -1e308, remaining: 2 });
        assert_eq!(values(&mut g, 2), vec![Some(0.0), Some(0.0)]);
    }

    #[test]
    fn config_builds_profiles() {
        let cfg = SimConfig::default();
        assert_eq!(cfg.profiles().len(), 4);
        let cfg = SimConfig {
            metrics: vec![SimMetricConfig {
                key: MetricKey::parse("flow").expect("valid"),
                base: 3.0,
                daily_amplitude: 0.0,
                noise: 0.0,
                trend_per_hour: 1.0,
                min: Some(0.0),
                max: None,
            }],
            ..SimConfig::default()
        };
        let mut s = SimSource::new(&cfg).expect("valid config");
        assert_eq!(s.poll(t0())[0].value, 3.0);
        assert_eq!(s.poll(t0() + Duration::hours(2))[0].value, 5.0);

        let bad = SimConfig { anomaly_rate: 2.0, ..SimConfig::default() };
        assert!(matches!(SimSource::new(&bad), Err(SourceError::Config(_))));
        let both = SimConfig { profile: Some(BuiltinProfile::ConstructionSite), ..cfg };
        assert!(both.validate().is_err());
    }
}
