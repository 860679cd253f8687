//! Is the picture usable: measures over a small grey thumbnail of each frame, and the verdicts
//! they support (black, frozen, covered or out of focus, moved), plus motion in zones for gating
//! inference.
//!
//! Everything runs on a thumbnail (at most [`THUMB_WIDTH`] wide, averaged) because the questions
//! are about the whole scene: it costs little per frame and averages sensor noise away. The
//! verdicts here are for one frame; how long one must last before an event is raised is the
//! caller's business (a camera turned away for a second is not "moved").

use offsite_wire::{CameraEventKind, Point};

use crate::zones::point_in_polygon;
use crate::{FrameRef, PixelFormat};

/// Width of the analysis thumbnail: enough detail for focus and scene comparison.
pub const THUMB_WIDTH: u32 = 160;

/// An 8-bit grey picture, packed rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Luma {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Luma {
    /// The frame averaged down to at most `max_width` wide (aspect kept), as BT.601 luma.
    /// Returns `None` for a frame whose buffer does not match its size.
    pub fn thumbnail(frame: &FrameRef, max_width: u32) -> Option<Self> {
        let (fw, fh) = (frame.width as usize, frame.height as usize);
        if fw == 0 || fh == 0 || frame.stride < 3 * fw || frame.data.len() < (fh - 1) * frame.stride + 3 * fw {
            return None;
        }
        let factor = fw.div_ceil(max_width.max(1) as usize).max(1);
        let (w, h) = ((fw / factor).max(1), (fh / factor).max(1));
        let (r, b) = match frame.format {
            PixelFormat::Rgb => (0, 2),
            PixelFormat::Bgr => (2, 0),
        };
        let mut data = Vec::with_capacity(w * h);
        for ty in 0..h {
            for tx in 0..w {
                // Integer BT.601 weights (77, 150, 29) / 256 summed over the block.
                let mut sum = 0u32;
                for y in ty * factor..(ty + 1) * factor {
                    let row = &frame.data[y * frame.stride..];
                    for x in tx * factor..(tx + 1) * factor {
                        let p = &row[3 * x..3 * x + 3];
                        sum += 77 * p[r] as u32 + 150 * p[1] as u32 + 29 * p[b] as u32;
                    }
                }
                data.push((sum / (256 * (factor * factor) as u32)) as u8);
            }
        }
        Some(Self { width: w as u32, height: h as u32, data })
    }

    fn same_size(&self, other: &Luma) -> bool {
        self.width == other.width && self.height == other.height
    }
}

/// Mean brightness, 0..=255.
pub fn mean_luma(img: &Luma) -> f32 {
    img.data.iter().map(|&v| v as f64).sum::<f64>() as f32 / img.data.len().max(1) as f32
}

/// Mean absolute difference per pixel between two thumbnails (0 = identical); `None` if their
/// sizes differ (the stream changed resolution: not comparable).
pub fn mean_abs_diff(a: &Luma, b: &Luma) -> Option<f32> {
    if !a.same_size(b) {
        return None;
    }
    let sum: u64 = a.data.iter().zip(&b.data).map(|(&x, &y)| x.abs_diff(y) as u64).sum();
    Some(sum as f32 / a.data.len().max(1) as f32)
}

/// Sharpness: variance of the 4-neighbour Laplacian over the inner pixels. A covered lens, a
/// smeared or defocused picture loses its edges and this drops by an order of magnitude.
pub fn sharpness(img: &Luma) -> f32 {
    let (w, h) = (img.width as usize, img.height as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let at = |x: usize, y: usize| img.data[y * w + x] as f64;
    let (mut sum, mut sq, mut n) = (0.0, 0.0, 0.0);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let l = at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y);
            sum += l;
            sq += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sq / n - mean * mean) as f32
}

/// Scene similarity: the zero-mean normalised cross-correlation of two thumbnails, -1..=1
/// (1 = the same scene). Insensitive to overall brightness and contrast (lights, daylight), so a
/// low value means the view itself changed. `None` for different sizes or a flat picture.
pub fn similarity(a: &Luma, b: &Luma) -> Option<f32> {
    if !a.same_size(b) {
        return None;
    }
    let n = a.data.len() as f64;
    let ma = a.data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let mb = b.data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.data.iter().zip(&b.data) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        ab += dx * dy;
        aa += dx * dx;
        bb += dy * dy;
    }
    if aa < 1e-6 || bb < 1e-6 {
        return None;
    }
    Some((ab / (aa * bb).sqrt()) as f32)
}

/// The share (0..=1) of a zone's thumbnail pixels that changed by more than `pixel_delta`
/// between two thumbnails; `None` if they are not comparable or the zone covers no pixel.
pub fn motion_in_zone(prev: &Luma, cur: &Luma, polygon: &[Point], pixel_delta: u8) -> Option<f32> {
    if !prev.same_size(cur) {
        return None;
    }
    let (w, h) = (cur.width as usize, cur.height as usize);
    let (mut inside, mut changed) = (0u32, 0u32);
    for y in 0..h {
        for x in 0..w {
            let p = [(x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32];
            if point_in_polygon(p, polygon) {
                inside += 1;
                let i = y * w + x;
                if prev.data[i].abs_diff(cur.data[i]) > pixel_delta {
                    changed += 1;
                }
            }
        }
    }
    (inside > 0).then(|| changed as f32 / inside as f32)
}

/// Limits for one frame's verdicts. The defaults were chosen on the synthetic tests here and
/// the shared indoor clip; a site with a dim hall may need a lower `black_below`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthLimits {
    /// Mean luma below this is black.
    pub black_below: f32,
    /// Mean absolute difference from the previous analysed frame at or below this is "unchanged".
    /// Default 0, an exact repeat: a static empty hall from the shared clip at 5 fps still differs
    /// by 0.01 to 0.09 between frames (compression), so any looser limit calls a quiet hall frozen.
    pub frozen_at_most: f32,
    /// Sharpness below this share of the reference's is covered / out of focus.
    pub covered_below_share: f32,
    /// Similarity to the reference below this is moved.
    pub moved_below: f32,
}

impl Default for HealthLimits {
    fn default() -> Self {
        Self { black_below: 16.0, frozen_at_most: 0.0, covered_below_share: 0.2, moved_below: 0.5 }
    }
}

/// What one frame shows about the camera, measured against the previous frame and a reference
/// picture of the scene (taken when the camera was known good).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthMeasures {
    pub mean_luma: f32,
    pub diff_from_previous: Option<f32>,
    pub sharpness: f32,
    pub similarity_to_reference: Option<f32>,
}

impl HealthMeasures {
    pub fn measure(cur: &Luma, previous: Option<&Luma>, reference: Option<&Luma>) -> Self {
        Self {
            mean_luma: mean_luma(cur),
            diff_from_previous: previous.and_then(|p| mean_abs_diff(p, cur)),
            sharpness: sharpness(cur),
            similarity_to_reference: reference.and_then(|r| similarity(r, cur)),
        }
    }

    /// The problems this frame shows, given the reference's sharpness. Black hides the others
    /// (a black picture is also unchanged, unsharp and unlike the reference).
    pub fn verdicts(&self, limits: &HealthLimits, reference_sharpness: Option<f32>) -> Vec<CameraEventKind> {
        if self.mean_luma < limits.black_below {
            return vec![CameraEventKind::Black];
        }
        let mut found = Vec::new();
        if self.diff_from_previous.is_some_and(|d| d <= limits.frozen_at_most) {
            found.push(CameraEventKind::Frozen);
        }
        if reference_sharpness.is_some_and(|r| r > 0.0 && self.sharpness < limits.covered_below_share * r) {
            found.push(CameraEventKind::Covered);
        }
        // A flat picture (no similarity) is covered, not moved.
        if self.similarity_to_reference.is_some_and(|s| s < limits.moved_below) {
            found.push(CameraEventKind::Moved);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 320x180 synthetic scene: a bright wall, a dark door, a grid of posters, a floor; offset
    /// by `shift` pixels (a turned camera) and scaled in brightness by `gain`.
    fn scene(shift: i64, gain: f32) -> Vec<u8> {
        let (w, h) = (320i64, 180i64);
        let mut data = vec![0u8; (w * h * 3) as usize];
        for y in 0..h {
            for x in 0..w {
                let sx = x + shift;
                let v: f32 = if y > 120 {
                    100.0 + ((sx / 8) % 2) as f32 * 40.0
                } else if (40..100).contains(&sx) && y > 30 {
                    40.0
                } else if (150..300).contains(&sx) && (20..80).contains(&y) && (sx / 10 + y / 10) % 2 == 0 {
                    220.0
                } else {
                    180.0
                };
                let v = (v * gain).clamp(0.0, 255.0) as u8;
                let o = ((y * w + x) * 3) as usize;
                data[o..o + 3].copy_from_slice(&[v, v.saturating_sub(10), v.saturating_add(5)]);
            }
        }
        data
    }

    fn thumb(data: &[u8]) -> Luma {
        let f = FrameRef { width: 320, height: 180, stride: 960, format: PixelFormat::Bgr, data };
        Luma::thumbnail(&f, THUMB_WIDTH).unwrap()
    }

    /// A box blur of radius r, as a smeared or defocused lens gives.
    fn blurred(data: &[u8], r: i64) -> Vec<u8> {
        let (w, h) = (320i64, 180i64);
        let mut out = data.to_vec();
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let (mut s, mut n) = (0u32, 0u32);
                    for yy in (y - r).max(0)..=(y + r).min(h - 1) {
                        for xx in (x - r).max(0)..=(x + r).min(w - 1) {
                            s += data[((yy * w + xx) * 3 + c) as usize] as u32;
                            n += 1;
                        }
                    }
                    out[((y * w + x) * 3 + c) as usize] = (s / n) as u8;
                }
            }
        }
        out
    }

    #[test]
    fn thumbnail_averages_and_weights_channels() {
        let t = thumb(&scene(0, 1.0));
        assert_eq!((t.width, t.height), (160, 90));
        // Pure colours: BT.601 puts green heaviest.
        let px = |bgr: [u8; 3]| {
            let data: Vec<u8> = bgr.iter().copied().cycle().take(12).collect();
            let f = FrameRef { width: 2, height: 2, stride: 6, format: PixelFormat::Bgr, data: &data };
            Luma::thumbnail(&f, 1).unwrap().data[0]
        };
        assert_eq!(px([0, 255, 0]), 149);
        assert_eq!(px([0, 0, 255]), 76);
        assert_eq!(px([255, 0, 0]), 28);
        assert!(Luma::thumbnail(
            &FrameRef { width: 4, height: 4, stride: 12, format: PixelFormat::Rgb, data: &[0; 40] },
            2
        )
        .is_none());
    }

    #[test]
    fn a_good_picture_shows_nothing_wrong() {
        let reference = thumb(&scene(0, 1.0));
        let prev = thumb(&scene(0, 1.0));
        // The same scene, a little brighter and with a person-sized change: not frozen, not moved.
        let mut now = scene(0, 1.1);
        for y in 60..170 {
            for x in 200..240 {
                now[(y * 320 + x) * 3..(y * 320 + x) * 3 + 3].copy_from_slice(&[30, 30, 30]);
            }
        }
        let m = HealthMeasures::measure(&thumb(&now), Some(&prev), Some(&reference));
        assert_eq!(m.verdicts(&HealthLimits::default(), Some(sharpness(&reference))), vec![], "{m:?}");
    }

    #[test]
    fn black_frozen_covered_and_moved_are_told_apart() {
        let limits = HealthLimits::default();
        let reference = thumb(&scene(0, 1.0));
        let reference_sharpness = sharpness(&reference);
        let sharp = Some(reference_sharpness);

        let black = thumb(&scene(0, 0.05));
        let m = HealthMeasures::measure(&black, Some(&reference), Some(&reference));
        assert_eq!(m.verdicts(&limits, sharp), vec![CameraEventKind::Black]);

        let same = thumb(&scene(0, 1.0));
        let m = HealthMeasures::measure(&same, Some(&same.clone()), Some(&reference));
        assert_eq!(m.verdicts(&limits, sharp), vec![CameraEventKind::Frozen]);

        // Smeared: sharpness collapses, yet the scene is the same place.
        let smeared = thumb(&blurred(&scene(0, 1.0), 4));
        assert!(sharpness(&smeared) < 0.2 * reference_sharpness, "{} vs {reference_sharpness}", sharpness(&smeared));
        let m = HealthMeasures::measure(&smeared, Some(&reference), Some(&reference));
        assert_eq!(m.verdicts(&limits, sharp), vec![CameraEventKind::Covered], "{m:?}");

        // A hand over the lens: flat, mid grey.
        let covered = Luma { width: 160, height: 90, data: vec![70; 160 * 90] };
        let m = HealthMeasures::measure(&covered, Some(&reference), Some(&reference));
        assert_eq!(m.verdicts(&limits, sharp), vec![CameraEventKind::Covered], "{m:?}");

        let turned = thumb(&scene(90, 1.0));
        let m = HealthMeasures::measure(&turned, Some(&reference), Some(&reference));
        assert!(m.similarity_to_reference.unwrap() < 0.5, "{m:?}");
        assert_eq!(m.verdicts(&limits, sharp), vec![CameraEventKind::Moved], "{m:?}");
        assert!(similarity(&reference, &thumb(&scene(0, 0.7))).unwrap() > 0.99);
    }

    #[test]
    fn motion_is_measured_inside_the_zone_only() {
        let before = thumb(&scene(0, 1.0));
        let mut moved = scene(0, 1.0);
        // Someone in the left half.
        for y in 60..170 {
            for x in 20..60 {
                moved[(y * 320 + x) * 3..(y * 320 + x) * 3 + 3].copy_from_slice(&[250, 250, 250]);
            }
        }
        let after = thumb(&moved);
        let left = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]];
        let right = [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]];
        let l = motion_in_zone(&before, &after, &left, 12).unwrap();
        assert!(l > 0.05 && l < 0.2, "{l}");
        assert_eq!(motion_in_zone(&before, &after, &right, 12), Some(0.0));
        assert_eq!(motion_in_zone(&before, &before, &left, 12), Some(0.0));
        let tiny = Luma { width: 2, height: 2, data: vec![0; 4] };
        assert_eq!(motion_in_zone(&before, &tiny, &left, 12), None);
    }
}
