//! Simulated sensor signals: trend + daily cycle + noise, with injected anomalies.

use chrono::{DateTime, Timelike, Utc};
use offsite_wire::{MetricKey, Sample};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

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
}

/// An anomaly currently being injected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Anomaly {
    /// One value far off.
    Spike { factor: f64 },
    /// The level jumps and stays for `remaining` samples.
    LevelShift { delta: f64, remaining: u32 },
}

/// Deterministic generator for one device (seeded), so demos and tests are reproducible.
pub struct SignalGenerator {
    profiles: Vec<MetricProfile>,
    rng: SmallRng,
    started: DateTime<Utc>,
    /// Probability per sample that an anomaly starts.
    pub anomaly_rate: f64,
    active: Vec<Option<Anomaly>>,
}

impl SignalGenerator {
    pub fn new(profiles: Vec<MetricProfile>, seed: u64, anomaly_rate: f64) -> Self {
        let n = profiles.len();
        Self { profiles, rng: SmallRng::seed_from_u64(seed), started: Utc::now(), anomaly_rate, active: vec![None; n] }
    }

    /// One sample of every metric at `ts`.
    pub fn sample_all(&mut self, ts: DateTime<Utc>) -> Vec<Sample> {
        let hours = (ts - self.started).num_milliseconds() as f64 / 3_600_000.0;
        let local_hour = (ts.hour() as f64 + 8.0 + ts.minute() as f64 / 60.0) % 24.0; // Asia/Shanghai
        let cycle = ((local_hour - 9.0) / 24.0 * std::f64::consts::TAU).sin();
        let mut out = Vec::with_capacity(self.profiles.len());
        for (i, p) in self.profiles.iter().enumerate() {
            let noise = gaussian(&mut self.rng) * p.noise;
            let mut v = p.base + p.trend_per_hour * hours + p.daily_amplitude * cycle + noise;
            if self.active[i].is_none() && self.rng.random::<f64>() < self.anomaly_rate {
                self.active[i] = Some(if self.rng.random::<bool>() {
                    Anomaly::Spike { factor: 3.0 + self.rng.random::<f64>() * 3.0 }
                } else {
                    Anomaly::LevelShift { delta: p.base.abs().max(1.0) * 1.5, remaining: 30 }
                });
            }
            match self.active[i] {
                Some(Anomaly::Spike { factor }) => {
                    v *= factor;
                    self.active[i] = None;
                }
                Some(Anomaly::LevelShift { delta, remaining }) => {
                    v += delta;
                    self.active[i] = (remaining > 1).then_some(Anomaly::LevelShift { delta, remaining: remaining - 1 });
                }
                None => {}
            }
            out.push(Sample { ts, metric: p.metric.clone(), value: v.clamp(p.min, p.max) });
        }
        out
    }
}

/// Standard normal via Box-Muller.
fn gaussian(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_bounded() {
        let t = Utc::now();
        let mut a = SignalGenerator::new(MetricProfile::construction_site(), 1, 0.0);
        let mut b = SignalGenerator::new(MetricProfile::construction_site(), 1, 0.0);
        a.started = t;
        b.started = t;
        for i in 0..100 {
            let ts = t + chrono::Duration::seconds(i);
            let (x, y) = (a.sample_all(ts), b.sample_all(ts));
            assert_eq!(x, y);
            assert!(x.iter().all(|s| s.value.is_finite()));
            assert!(x[0].value >= 0.0);
        }
    }

    #[test]
    fn anomalies_are_injected() {
        let mut g = SignalGenerator::new(vec![MetricProfile::new("pm10", 50.0, 0.0, 0.1)], 3, 0.05);
        let t = Utc::now();
        let far = (0..500).filter(|i| (g.sample_all(t + chrono::Duration::seconds(*i))[0].value - 50.0).abs() > 20.0).count();
        assert!(far > 5, "expected injected anomalies, saw {far}");
    }
}
