//! Stream health from the view frames: plain per-frame measures over a small grey thumbnail
//! (brightness, change since the previous frame, sharpness, similarity to a reference scene) and
//! the tracker that turns them into raised and cleared conditions with a hold time, so one odd
//! frame raises nothing.

use std::time::{Duration, Instant};

use offsite_vision::{FrameRef, PixelFormat};
use offsite_wire::CameraEventKind;

use crate::camera_config::HealthSection;

/// Thumbnail size: enough for brightness, change and sharpness, cheap at any stream size.
pub const THUMB_W: usize = 160;
pub const THUMB_H: usize = 90;

/// A grey thumbnail of a frame (box-averaged, so noise does not look like detail).
#[derive(Debug, Clone, PartialEq)]
pub struct Grey {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<f32>,
}

impl Grey {
    pub fn from_frame(f: &FrameRef) -> Self {
        let (w, h) = (THUMB_W.min(f.width as usize).max(1), THUMB_H.min(f.height as usize).max(1));
        let mut pixels = vec![0f32; w * h];
        let (fw, fh) = (f.width as usize, f.height as usize);
        let (ri, bi) = match f.format {
            PixelFormat::Rgb => (0, 2),
            PixelFormat::Bgr => (2, 0),
        };
        for ty in 0..h {
            let (y0, y1) = (ty * fh / h, ((ty + 1) * fh / h).max(ty * fh / h + 1));
            for tx in 0..w {
                let (x0, x1) = (tx * fw / w, ((tx + 1) * fw / w).max(tx * fw / w + 1));
                let mut sum = 0f32;
                for y in y0..y1 {
                    let row = &f.data[y * f.stride..];
                    for x in x0..x1 {
                        let p = &row[x * 3..x * 3 + 3];
                        sum += 0.299 * p[ri] as f32 + 0.587 * p[1] as f32 + 0.114 * p[bi] as f32;
                    }
                }
                pixels[ty * w + tx] = sum / ((y1 - y0) * (x1 - x0)) as f32;
            }
        }
        Self { width: w, height: h, pixels }
    }

    pub fn mean(&self) -> f32 {
        self.pixels.iter().sum::<f32>() / self.pixels.len() as f32
    }

    /// Variance of the 4-neighbour Laplacian: high for edges and texture, near 0 for a blurred,
    /// covered or uniform picture.
    pub fn sharpness(&self) -> f32 {
        let (w, h) = (self.width, self.height);
        if w < 3 || h < 3 {
            return 0.0;
        }
        let mut vals = Vec::with_capacity((w - 2) * (h - 2));
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let c = self.pixels[y * w + x];
                vals.push(
                    self.pixels[(y - 1) * w + x]
                        + self.pixels[(y + 1) * w + x]
                        + self.pixels[y * w + x - 1]
                        + self.pixels[y * w + x + 1]
                        - 4.0 * c,
                );
            }
        }
        let m = vals.iter().sum::<f32>() / vals.len() as f32;
        vals.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / vals.len() as f32
    }

    /// Mean absolute difference to `other` (0..255); `None` when the sizes differ.
    pub fn change(&self, other: &Grey) -> Option<f32> {
        (self.pixels.len() == other.pixels.len()).then(|| {
            self.pixels.iter().zip(&other.pixels).map(|(a, b)| (a - b).abs()).sum::<f32>() / self.pixels.len() as f32
        })
    }

    /// Mean absolute difference to `other` inside a region given in normalised coordinates.
    pub fn change_in(&self, other: &Grey, inside: &dyn Fn(f32, f32) -> bool) -> Option<f32> {
        if self.pixels.len() != other.pixels.len() {
            return None;
        }
        let (mut sum, mut n) = (0f32, 0usize);
        for y in 0..self.height {
            for x in 0..self.width {
                if inside((x as f32 + 0.5) / self.width as f32, (y as f32 + 0.5) / self.height as f32) {
                    let i = y * self.width + x;
                    sum += (self.pixels[i] - other.pixels[i]).abs();
                    n += 1;
                }
            }
        }
        Some(if n == 0 { 0.0 } else { sum / n as f32 })
    }

    /// Pearson correlation with `other` (1 = same scene, ~0 = unrelated); robust to a change of
    /// overall brightness, which is not a moved camera.
    pub fn similarity(&self, other: &Grey) -> Option<f32> {
        if self.pixels.len() != other.pixels.len() {
            return None;
        }
        let (ma, mb) = (self.mean(), other.mean());
        let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
        for (a, b) in self.pixels.iter().zip(&other.pixels) {
            ab += (a - ma) * (b - mb);
            aa += (a - ma) * (a - ma);
            bb += (b - mb) * (b - mb);
        }
        // Two flat pictures: nothing to compare, call them the same.
        if aa < 1e-3 || bb < 1e-3 {
            return Some(if (ma - mb).abs() < 10.0 { 1.0 } else { 0.0 });
        }
        Some(ab / (aa.sqrt() * bb.sqrt()))
    }
}

/// One condition with its hold time in both directions.
#[derive(Debug, Default)]
struct Held {
    raised: bool,
    /// Since when the measure has disagreed with `raised`.
    since: Option<Instant>,
}

impl Held {
    /// Feeds whether the condition holds now; returns Some(new state) on a transition.
    fn feed(&mut self, holds: bool, now: Instant, hold: Duration) -> Option<bool> {
        if holds == self.raised {
            self.since = None;
            return None;
        }
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) >= hold {
            self.raised = holds;
            self.since = None;
            return Some(holds);
        }
        None
    }
}

/// The per-camera health state over view frames (offline is decided by the pipeline's frame
/// clock, not here).
pub struct HealthTracker {
    cfg: HealthSection,
    previous: Option<Grey>,
    /// Change between consecutive frames over (just over) the last `frozen_after_s`.
    changes: std::collections::VecDeque<(Instant, f32)>,
    /// Learned from the first `reference_after_s` of healthy pictures.
    reference_sharpness: Option<f32>,
    reference_scene: Option<Grey>,
    learning: Vec<(f32, Grey)>,
    learning_since: Option<Instant>,
    black: Held,
    frozen: Held,
    covered: Held,
    moved: Held,
}

/// What the last frame measured (for logs and tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct Measures {
    pub brightness: f32,
    pub change: Option<f32>,
    pub sharpness: f32,
    pub similarity: Option<f32>,
}

impl HealthTracker {
    pub fn new(cfg: HealthSection) -> Self {
        Self {
            cfg,
            previous: None,
            changes: std::collections::VecDeque::new(),
            reference_sharpness: None,
            reference_scene: None,
            learning: Vec::new(),
            learning_since: None,
            black: Held::default(),
            frozen: Held::default(),
            covered: Held::default(),
            moved: Held::default(),
        }
    }

    /// Conditions raised now.
    pub fn raised(&self) -> Vec<CameraEventKind> {
        [
            (CameraEventKind::Black, &self.black),
            (CameraEventKind::Frozen, &self.frozen),
            (CameraEventKind::Covered, &self.covered),
            (CameraEventKind::Moved, &self.moved),
        ]
        .into_iter()
        .filter(|(_, h)| h.raised)
        .map(|(k, _)| k)
        .collect()
    }

    /// After a reconnect the next picture must not count as "changed" or "unchanged".
    pub fn forget_previous(&mut self) {
        self.previous = None;
        self.changes.clear();
    }

    /// Feeds one view frame's thumbnail; returns the transitions (kind, raised).
    pub fn observe(&mut self, grey: Grey, now: Instant) -> (Measures, Vec<(CameraEventKind, bool)>) {
        let hold = Duration::from_secs(self.cfg.hold_s);
        let brightness = grey.mean();
        let sharpness = grey.sharpness();
        let change = self.previous.as_ref().and_then(|p| grey.change(p));
        let similarity = self.reference_scene.as_ref().and_then(|r| grey.similarity(r));
        let mut out = Vec::new();

        let is_black = brightness < self.cfg.black_below;
        if let Some(t) = self.black.feed(is_black, now, hold) {
            out.push((CameraEventKind::Black, t));
        }

        // Frozen: the median change over frozen_after_s is nil. The median, because a re-encoded
        // still picture changes a little at every key frame, while a live camera's sensor noise
        // changes every frame.
        let window = Duration::from_secs(self.cfg.frozen_after_s);
        if let Some(c) = change {
            self.changes.push_back((now, c));
        }
        while self.changes.len() > 1 && now.duration_since(self.changes[1].0) >= window {
            self.changes.pop_front();
        }
        let covered_for = self.changes.front().map_or(Duration::ZERO, |(t, _)| now.duration_since(*t));
        let is_frozen = covered_for >= window && {
            let mut c: Vec<f32> = self.changes.iter().map(|(_, c)| *c).collect();
            c.sort_by(f32::total_cmp);
            c[c.len() / 2] < self.cfg.frozen_change_below
        };
        if let Some(t) = self.frozen.feed(is_frozen, now, Duration::ZERO) {
            out.push((CameraEventKind::Frozen, t));
        }

        // A black picture has no sharpness either; it is reported as black, not covered.
        let is_covered = !is_black
            && (sharpness < self.cfg.covered_floor
                || self.reference_sharpness.is_some_and(|r| sharpness < r * self.cfg.covered_ratio));
        if let Some(t) = self.covered.feed(is_covered, now, hold) {
            out.push((CameraEventKind::Covered, t));
        }

        // Moved is only judged on a usable picture, against a learned reference.
        let is_moved = !is_black && !is_covered && similarity.is_some_and(|s| s < self.cfg.moved_similarity_below);
        if let Some(t) = self.moved.feed(is_moved, now, hold) {
            out.push((CameraEventKind::Moved, t));
        }

        if self.reference_scene.is_none() && !is_black && !is_covered && !is_frozen {
            let since = *self.learning_since.get_or_insert(now);
            self.learning.push((sharpness, grey.clone()));
            if now.duration_since(since) >= Duration::from_secs(self.cfg.reference_after_s) {
                let mut s: Vec<f32> = self.learning.iter().map(|(s, _)| *s).collect();
                s.sort_by(f32::total_cmp);
                self.reference_sharpness = Some(s[s.len() / 2]);
                self.reference_scene = self.learning.pop().map(|(_, g)| g);
                self.learning.clear();
            }
        }
        self.previous = Some(grey);
        (Measures { brightness, change, sharpness, similarity }, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let mut v = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&f(x, y));
            }
        }
        v
    }

    fn grey(w: u32, h: u32, data: &[u8]) -> Grey {
        Grey::from_frame(&FrameRef { width: w, height: h, stride: (w * 3) as usize, format: PixelFormat::Rgb, data })
    }

    fn checker(seed: u32) -> impl Fn(u32, u32) -> [u8; 3] {
        move |x, y| if ((x + seed) / 8 + y / 8) % 2 == 0 { [220, 220, 220] } else { [30, 30, 30] }
    }

    fn quick() -> HealthSection {
        HealthSection { hold_s: 0, frozen_after_s: 1, reference_after_s: 1, ..HealthSection::default() }
    }

    #[test]
    fn measures_tell_black_sharp_and_blurred_apart() {
        let black = grey(320, 180, &frame(320, 180, |_, _| [3, 3, 3]));
        let sharp = grey(320, 180, &frame(320, 180, checker(0)));
        let flat = grey(320, 180, &frame(320, 180, |x, _| [(x / 2) as u8, 100, 100]));
        assert!(black.mean() < 5.0 && sharp.mean() > 100.0);
        assert!(sharp.sharpness() > 100.0 * flat.sharpness().max(1.0), "{} vs {}", sharp.sharpness(), flat.sharpness());
        assert_eq!(sharp.change(&sharp), Some(0.0));
        assert!(sharp.change(&black).unwrap() > 50.0);
        assert!(sharp.similarity(&sharp).unwrap() > 0.99);
        let shifted = grey(320, 180, &frame(320, 180, checker(8)));
        assert!(sharp.similarity(&shifted).unwrap() < 0.0, "an inverted checkerboard is a different scene");
    }

    #[test]
    fn tracker_raises_and_clears_black_frozen_covered() {
        let mut t = HealthTracker::new(quick());
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Moving sharp picture: nothing raised, reference learned.
        for i in 0..10u32 {
            let (_, tr) = t.observe(grey(320, 180, &frame(320, 180, checker(i % 2))), at(i as u64 * 200));
            assert!(tr.is_empty(), "{tr:?}");
        }
        // Black: raised (and frozen after a second of no change).
        let mut seen = Vec::new();
        for i in 10..20u32 {
            seen.extend(t.observe(grey(320, 180, &frame(320, 180, |_, _| [2, 2, 2])), at(i as u64 * 200)).1);
        }
        assert!(seen.contains(&(CameraEventKind::Black, true)), "{seen:?}");
        assert!(seen.contains(&(CameraEventKind::Frozen, true)), "{seen:?}");
        assert!(!seen.iter().any(|(k, _)| *k == CameraEventKind::Covered), "black is not reported as covered");
        // Blurred but changing: black and frozen clear, covered raised.
        let mut seen = Vec::new();
        for i in 20..30u32 {
            let v = 100 + (i % 3) as u8 * 10;
            seen.extend(t.observe(grey(320, 180, &frame(320, 180, move |_, _| [v, v, v])), at(i as u64 * 200)).1);
        }
        assert!(seen.contains(&(CameraEventKind::Black, false)), "{seen:?}");
        assert!(seen.contains(&(CameraEventKind::Frozen, false)), "{seen:?}");
        assert!(seen.contains(&(CameraEventKind::Covered, true)), "{seen:?}");
        assert_eq!(t.raised(), vec![CameraEventKind::Covered]);
    }

    #[test]
    fn a_sharpness_drop_against_the_reference_is_covered_even_above_the_floor() {
        let mut t = HealthTracker::new(quick());
        let t0 = Instant::now();
        for i in 0..8u64 {
            t.observe(grey(320, 180, &frame(320, 180, checker((i % 2) as u32))), t0 + Duration::from_millis(i * 200));
        }
        // Soft stripes: some detail left (above the absolute floor), far less than the reference.
        let soft = |phase: u32| {
            move |x: u32, _y: u32| {
                let v = (128.0 + 100.0 * ((x + phase) as f32 * std::f32::consts::TAU / 32.0).sin()) as u8;
                [v, v, v]
            }
        };
        let probe = grey(320, 180, &frame(320, 180, soft(0)));
        assert!(probe.sharpness() > quick().covered_floor, "{}", probe.sharpness());
        let mut seen = Vec::new();
        for i in 8..14u64 {
            seen.extend(
                t.observe(grey(320, 180, &frame(320, 180, soft(i as u32))), t0 + Duration::from_millis(i * 200)).1,
            );
        }
        assert!(seen.contains(&(CameraEventKind::Covered, true)), "{seen:?}");
    }

    #[test]
    fn tracker_reports_a_moved_camera() {
        let mut t = HealthTracker::new(quick());
        let t0 = Instant::now();
        for i in 0..8u64 {
            t.observe(grey(320, 180, &frame(320, 180, checker((i % 2) as u32))), t0 + Duration::from_millis(i * 200));
        }
        let mut seen = Vec::new();
        for i in 8..12u64 {
            // As much detail, another scene: diagonal stripes.
            let turned = frame(320, 180, |x, y| if ((x + y) / 8) % 2 == 0 { [220, 220, 220] } else { [30, 30, 30] });
            seen.extend(t.observe(grey(320, 180, &turned), t0 + Duration::from_millis(i * 200)).1);
        }
        assert!(seen.contains(&(CameraEventKind::Moved, true)), "{seen:?}");
    }
}
