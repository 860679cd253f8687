//! Turns a stream of raw anomaly scores into the likelihood that the *recent* scores come from a
//! different distribution than the long-run ones (the idea behind HTM's anomaly likelihood).
//!
//! Isolated noisy errors barely move a short moving average, so they stay unlikely; a change in
//! behaviour shifts the average far into the tail of the long-run distribution. Everything is
//! per series and online: O(1) per sample, bounded memory.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy)]
pub struct LikelihoodConfig {
    /// Samples averaged to form the recent score.
    pub short_window: usize,
    /// Averaged scores kept to estimate the long-run distribution.
    pub history: usize,
    /// Samples before any likelihood is reported (0.5 meanwhile).
    pub learning: usize,
    /// Lower bound on the long-run standard deviation, so a perfectly quiet series does not make
    /// every small error look infinitely unlikely.
    pub min_std: f64,
}

impl Default for LikelihoodConfig {
    fn default() -> Self {
        Self { short_window: 10, history: 2000, learning: 300, min_std: 0.02 }
    }
}

#[derive(Debug, Clone)]
pub struct Likelihood {
    cfg: LikelihoodConfig,
    short: VecDeque<f64>,
    short_sum: f64,
    hist: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
    seen: usize,
    /// Standard score of the latest recent average against the long-run distribution.
    last_z: f64,
}

impl Likelihood {
    pub fn new(cfg: LikelihoodConfig) -> Self {
        Self {
            cfg,
            short: VecDeque::with_capacity(cfg.short_window),
            short_sum: 0.0,
            hist: VecDeque::with_capacity(cfg.history.min(4096)),
            sum: 0.0,
            sum_sq: 0.0,
            seen: 0,
            last_z: 0.0,
        }
    }

    /// Feeds one raw score (>= 0) and returns the likelihood (0..=1) that behaviour has changed.
    pub fn update(&mut self, raw: f64) -> f64 {
        let raw = if raw.is_finite() { raw.max(0.0) } else { 0.0 };
        self.seen += 1;
        self.short.push_back(raw);
        self.short_sum += raw;
        if self.short.len() > self.cfg.short_window.max(1) {
            self.short_sum -= self.short.pop_front().unwrap_or(0.0);
        }
        let avg = self.short_sum / self.short.len() as f64;
        self.last_z = 0.0;
        let out = if self.seen <= self.cfg.learning || self.hist.len() < 2 {
            0.5
        } else {
            let n = self.hist.len() as f64;
            let mean = self.sum / n;
            let var = (self.sum_sq / n - mean * mean).max(0.0);
            let std = var.sqrt().max(self.cfg.min_std);
            self.last_z = (avg - mean) / std;
            1.0 - upper_tail(self.last_z)
        };
        self.hist.push_back(avg);
        self.sum += avg;
        self.sum_sq += avg * avg;
        if self.hist.len() > self.cfg.history.max(2) {
            let old = self.hist.pop_front().unwrap_or(0.0);
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        out
    }
}

impl Likelihood {
    /// How many standard deviations the recent average stands above the long-run mean (0 while learning).
    pub fn last_z(&self) -> f64 {
        self.last_z
    }
}

/// P(Z > z) for a standard normal Z.
pub fn upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' erfcc, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t * (-z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
        .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Maps a likelihood near 1 onto a usable 0..1 scale: 0.5 at 1 - 1e-5, 1.0 at 1 - 1e-10.
/// (Likelihoods that matter differ in their ninth decimal, which a plain threshold cannot use.)
pub fn log_score(likelihood: f64) -> f64 {
    ((1.0000000001 - likelihood).ln() / (1e-10f64).ln()).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_probabilities() {
        assert!((upper_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((upper_tail(1.96) - 0.025).abs() < 1e-4);
        assert!((upper_tail(-1.96) - 0.975).abs() < 1e-4);
    }

    #[test]
    fn a_lasting_change_is_likely_an_isolated_spike_is_not() {
        let mut l = Likelihood::new(LikelihoodConfig::default());
        let mut x = 1u64;
        let mut noise = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as f64 / (1u64 << 31) as f64 * 0.2
        };
        for _ in 0..1000 {
            l.update(noise());
        }
        // Raw scores are 0..=1 (the detector caps them).
        let spike = log_score(l.update(1.0));
        for _ in 0..30 {
            l.update(noise());
        }
        let mut shifted = 0.0f64;
        for _ in 0..10 {
            shifted = shifted.max(log_score(l.update(0.8 + noise())));
        }
        assert!(spike < shifted, "spike {spike} vs lasting change {shifted}");
        assert!(shifted > 0.5, "a lasting change must stand out: {shifted}");
    }
}
