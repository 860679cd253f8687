//! Scoring one file at one threshold, the way NAB's `Sweeper` does it.
//!
//! NAB details this follows (numenta/NAB `nab/sweeper.py`, which produced the published tables):
//! - rows `0 .. ceil(min(floor(0.15 n), 0.15 * 5000))` are probationary: never scored, neither as detections
//!   nor as window rows; a window none of whose rows is scorable is not counted at all (no FN);
//! - a row at index `i` inside a window `[lo, hi]` (row indices, width `W = hi - lo + 1`) is worth
//!   `σ(-(hi - i + 1) / W) * tpWeight / σ(-1)` (so the first row of a window is worth exactly `tpWeight`
//!   and the last one `σ(-1/W)`, slightly above 0); a window's score is the best (earliest) detection's,
//!   `-fnWeight` if it has none;
//! - a detection outside windows is worth `σ(|i - hi_prev| / (W_prev - 1)) * fpWeight`, measured in rows from
//!   the right edge of the closest preceding window, `σ(y) = -1` for `y >= 3`, and `-fpWeight` when no
//!   window precedes it in the file (a window of one row counts as `W_prev - 1 = 1`, where NAB divides by 0);
//! - `σ(y) = 2 / (1 + e^(5y)) - 1`.

use chrono::NaiveDateTime;
use serde::Serialize;

use anyhow::{bail, Result};

use super::labels::Window;
use super::profile::Profile;

/// Share of a file that is probationary.
pub const PROBATION_PERCENT: f64 = 0.15;

/// NAB's scaled sigmoid: `2 / (1 + e^(5y)) - 1`, and exactly -1 from `y >= 3` on.
pub fn scaled_sigmoid(y: f64) -> f64 {
    if y >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// Number of leading rows that are never scored in a file of `n` rows.
pub fn probationary_length(n: usize) -> usize {
    let p = (PROBATION_PERCENT * n as f64).floor().min(PROBATION_PERCENT * 5000.0);
    // NAB compares `i >= p` with a float p.
    p.ceil() as usize
}

/// The score of one file at one threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct FileScore {
    /// NAB raw score: window scores (best detection, or -fnWeight) plus false-positive scores.
    pub raw: f64,
    /// Scored rows inside windows with a detection (NAB's `TP` column: rows, not windows).
    pub tp: usize,
    /// Scored rows outside windows without a detection.
    pub tn: usize,
    /// Scored rows outside windows with a detection (false-positive detections).
    pub fp: usize,
    /// Scored rows inside windows without a detection.
    pub fn_: usize,
    /// Windows that count (at least one row after the probationary period).
    pub windows: usize,
    /// Of those, windows with at least one detection.
    pub windows_detected: usize,
    /// Rows after the probationary period.
    pub scored_rows: usize,
}

impl FileScore {
    pub fn windows_missed(&self) -> usize {
        self.windows - self.windows_detected
    }
}

/// What a scorable row is worth if it is a detection, before profile weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RowValue {
    /// Inside window `window` (index into the file's windows): `σ(position)`.
    Window { window: usize, sigma: f64 },
    /// Outside windows: `σ(distance)` (negative).
    Outside { sigma: f64 },
}

/// A file's windows as row ranges, and its probationary period.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub n: usize,
    pub probation: usize,
    /// Inclusive row ranges, sorted and disjoint.
    pub windows: Vec<(usize, usize)>,
}

impl Layout {
    /// Map windows to rows: a window covers the rows whose timestamps lie in `[start, end]`.
    pub fn new(timestamps: &[NaiveDateTime], windows: &[Window]) -> Result<Layout> {
        let n = timestamps.len();
        let mut ranges = Vec::with_capacity(windows.len());
        let sorted = timestamps.windows(2).all(|p| p[0] <= p[1]);
        for w in windows {
            let (lo, hi) = if sorted {
                let lo = timestamps.partition_point(|t| *t < w.start);
                let hi = timestamps.partition_point(|t| *t <= w.end);
                if hi <= lo {
                    bail!("window [{}, {}] covers no row", w.start, w.end);
                }
                (lo, hi - 1)
            } else {
                let mut inside = timestamps
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| w.contains(**t))
                    .map(|(i, _)| i);
                let Some(lo) = inside.next() else {
                    bail!("window [{}, {}] covers no row", w.start, w.end);
                };
                (lo, inside.next_back().unwrap_or(lo))
            };
            ranges.push((lo, hi));
        }
        ranges.sort_unstable();
        if let Some(p) = ranges.windows(2).find(|p| p[1].0 <= p[0].1) {
            bail!(
                "windows overlap on rows {}..={} and {}..={}",
                p[0].0,
                p[0].1,
                p[1].0,
                p[1].1
            );
        }
        Ok(Layout {
            n,
            probation: probationary_length(n),
            windows: ranges,
        })
    }

    /// Whether window `w` has a row after the probationary period (and so is scored).
    pub fn window_counts(&self, w: usize) -> bool {
        self.windows[w].1 >= self.probation
    }

    pub fn counted_windows(&self) -> usize {
        (0..self.windows.len()).filter(|&w| self.window_counts(w)).count()
    }

    /// Call `f(row, value)` for every row after the probationary period, in order.
    pub fn for_each_scorable(&self, mut f: impl FnMut(usize, RowValue)) {
        let mut k = 0; // first window whose right edge is >= i
        for i in self.probation..self.n {
            while k < self.windows.len() && self.windows[k].1 < i {
                k += 1;
            }
            let value = match self.windows.get(k) {
                Some(&(lo, hi)) if lo <= i => {
                    let width = (hi - lo + 1) as f64;
                    let position = -((hi - i + 1) as f64) / width;
                    RowValue::Window {
                        window: k,
                        sigma: scaled_sigmoid(position),
                    }
                }
                _ => {
                    let y = if k == 0 {
                        3.0
                    } else {
                        let (lo, hi) = self.windows[k - 1];
                        let width = (hi - lo + 1) as f64;
                        (i - hi) as f64 / (width - 1.0).max(1.0)
                    };
                    RowValue::Outside {
                        sigma: scaled_sigmoid(y),
                    }
                }
            };
            f(i, value);
        }
    }

    /// Score `scores` (one per row) at `threshold`: a row is a detection when `score >= threshold`.
    pub fn score(&self, scores: &[f64], profile: &Profile, threshold: f64) -> FileScore {
        debug_assert_eq!(scores.len(), self.n);
        let max_tp = scaled_sigmoid(-1.0);
        let mut best: Vec<Option<f64>> = vec![None; self.windows.len()];
        let mut out = FileScore {
            windows: self.counted_windows(),
            ..FileScore::default()
        };
        let mut fp_score = 0.0;
        self.for_each_scorable(|i, value| {
            out.scored_rows += 1;
            let detected = scores[i] >= threshold;
            match value {
                RowValue::Window { window, sigma } => {
                    if detected {
                        out.tp += 1;
                        let s = sigma * profile.tp_weight / max_tp;
                        let b = &mut best[window];
                        if b.is_none_or(|b| s > b) {
                            *b = Some(s);
                        }
                    } else {
                        out.fn_ += 1;
                    }
                }
                RowValue::Outside { sigma } => {
                    if detected {
                        out.fp += 1;
                        fp_score += sigma * profile.fp_weight;
                    } else {
                        out.tn += 1;
                    }
                }
            }
        });
        let mut window_score = 0.0;
        for (w, b) in best.iter().enumerate() {
            if !self.window_counts(w) {
                continue;
            }
            match b {
                Some(s) => {
                    out.windows_detected += 1;
                    window_score += s.max(-profile.fn_weight);
                }
                None => window_score -= profile.fn_weight,
            }
        }
        out.raw = window_score + fp_score;
        out
    }
}

/// Score one file: `rows` are (timestamp, anomaly score) in file order, `windows` the file's labelled windows.
/// Errors when a window covers no row or two windows overlap.
pub fn score_file(
    rows: &[(NaiveDateTime, f64)],
    windows: &[Window],
    profile: &Profile,
    threshold: f64,
) -> Result<FileScore> {
    let timestamps: Vec<NaiveDateTime> = rows.iter().map(|r| r.0).collect();
    let scores: Vec<f64> = rows.iter().map(|r| r.1).collect();
    Ok(Layout::new(&timestamps, windows)?.score(&scores, profile, threshold))
}
