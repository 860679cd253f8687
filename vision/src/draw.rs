//! The evidence picture: boxes and zone outlines drawn over the frame, JPEG-encoded.
//!
//! Drawing works on an RGB copy (the camera's frame stays as it is, it may still be analysed) and
//! the JPEG comes from a pure-Rust encoder, so a snapshot needs nothing from GStreamer.

use anyhow::{bail, Result};
use offsite_wire::{BoxN, Point, Zone, ZoneKind};

use crate::{FrameRef, PixelFormat};

/// Person boxes: green.
pub const BOX_COLOUR: [u8; 3] = [0, 230, 64];
/// Zone outlines by kind: a window seat blue, a queue area orange, anything else yellow.
pub fn zone_colour(kind: ZoneKind) -> [u8; 3] {
    match kind {
        ZoneKind::Window => [30, 144, 255],
        ZoneKind::Queue => [255, 140, 0],
        ZoneKind::Other => [255, 220, 0],
    }
}

/// An owned, packed RGB picture (`3 * width` bytes a row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// A packed RGB copy of `frame`, whatever its channel order and row padding.
    pub fn from_frame(frame: &FrameRef) -> Result<Self> {
        let (w, h) = (frame.width as usize, frame.height as usize);
        if w == 0 || h == 0 || frame.stride < 3 * w || frame.data.len() < (h - 1) * frame.stride + 3 * w {
            bail!("frame {}x{} (stride {}) does not fit its {} bytes", w, h, frame.stride, frame.data.len());
        }
        let mut data = Vec::with_capacity(3 * w * h);
        for row in frame.data.chunks(frame.stride).take(h) {
            match frame.format {
                PixelFormat::Rgb => data.extend_from_slice(&row[..3 * w]),
                PixelFormat::Bgr => data.extend(row[..3 * w].chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]])),
            }
        }
        Ok(Self { width: frame.width, height: frame.height, data })
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let o = 3 * (y as usize * self.width as usize + x as usize);
        [self.data[o], self.data[o + 1], self.data[o + 2]]
    }

    /// A `t` x `t` square of `colour` centred on (x, y), clipped to the picture.
    fn stamp(&mut self, x: i64, y: i64, t: i64, colour: [u8; 3]) {
        let (w, h) = (self.width as i64, self.height as i64);
        let lo = -(t - 1) / 2;
        for yy in (y + lo).max(0)..(y + lo + t).min(h) {
            for xx in (x + lo).max(0)..(x + lo + t).min(w) {
                let o = 3 * (yy * w + xx) as usize;
                self.data[o..o + 3].copy_from_slice(&colour);
            }
        }
    }

    /// A line `t` pixels thick between two pixel positions (Bresenham, a square brush).
    pub fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), t: i64, colour: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.stamp(x, y, t, colour);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Normalised coordinates (0..=1) to a pixel position, the far edge onto the last pixel.
    fn to_pixel(&self, [x, y]: Point) -> (i64, i64) {
        let px = (x.clamp(0.0, 1.0) * self.width as f32).round() as i64;
        let py = (y.clamp(0.0, 1.0) * self.height as f32).round() as i64;
        (px.min(self.width as i64 - 1), py.min(self.height as i64 - 1))
    }

    /// The outline of a closed polygon in normalised coordinates.
    pub fn polygon(&mut self, points: &[Point], t: i64, colour: [u8; 3]) {
        for (i, &p) in points.iter().enumerate() {
            let q = points[(i + 1) % points.len()];
            self.line(self.to_pixel(p), self.to_pixel(q), t, colour);
        }
    }

    /// The outline of a normalised box.
    pub fn rectangle(&mut self, b: &BoxN, t: i64, colour: [u8; 3]) {
        self.polygon(&[[b.x1, b.y1], [b.x2, b.y1], [b.x2, b.y2], [b.x1, b.y2]], t, colour);
    }

    /// JPEG at `quality` (1..=100).
    pub fn to_jpeg(&self, quality: u8) -> Result<Vec<u8>> {
        let (Ok(w), Ok(h)) = (u16::try_from(self.width), u16::try_from(self.height)) else {
            bail!("a JPEG is at most 65535 pixels a side, this picture is {}x{}", self.width, self.height);
        };
        let mut out = Vec::with_capacity(self.data.len() / 8);
        jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100))
            .encode(&self.data, w, h, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| anyhow::anyhow!("encoding the snapshot: {e}"))?;
        Ok(out)
    }
}

/// Line thickness for a picture: 2 pixels at 640 wide, growing with the picture so outlines stay
/// visible after the platform scales a snapshot down.
pub fn line_width(width: u32) -> i64 {
    (width as i64 / 320).max(2)
}

/// The frame with zone outlines, then person boxes over them.
pub fn annotate(frame: &FrameRef, boxes: &[BoxN], zones: &[Zone]) -> Result<RgbImage> {
    let mut img = RgbImage::from_frame(frame)?;
    let t = line_width(img.width);
    for z in zones {
        img.polygon(&z.polygon, t, zone_colour(z.kind));
    }
    for b in boxes {
        img.rectangle(b, t, BOX_COLOUR);
    }
    Ok(img)
}

pub fn snapshot_jpeg(frame: &FrameRef, boxes: &[BoxN], zones: &[Zone], quality: u8) -> anyhow::Result<Vec<u8>> {
    annotate(frame, boxes, zones)?.to_jpeg(quality)
}

#[cfg(test)]
mod tests {
    use super::*;
    use offsite_wire::ZoneId;

    const GREY: u8 = 90;

    fn grey_bgr(w: u32, h: u32, stride: usize) -> Vec<u8> {
        let mut data = vec![0u8; stride * h as usize];
        for row in data.chunks_mut(stride) {
            row[..3 * w as usize].fill(GREY);
        }
        data
    }

    #[test]
    fn the_copy_is_packed_rgb() {
        let data = [1, 2, 3, 4, 5, 6, 0xEE, 7, 8, 9, 10, 11, 12, 0xEE];
        let f = FrameRef { width: 2, height: 2, stride: 7, format: PixelFormat::Bgr, data: &data };
        let img = RgbImage::from_frame(&f).unwrap();
        assert_eq!(img.data, vec![3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]);
        let f = FrameRef { format: PixelFormat::Rgb, ..f };
        assert_eq!(RgbImage::from_frame(&f).unwrap().data, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert!(RgbImage::from_frame(&FrameRef { data: &data[..10], ..f }).is_err());
    }

    #[test]
    fn boxes_and_zones_are_drawn_where_they_are_and_nowhere_else() {
        let (w, h, stride) = (640, 360, 640 * 3 + 16);
        let data = grey_bgr(w, h, stride);
        let f = FrameRef { width: w, height: h, stride, format: PixelFormat::Bgr, data: &data };
        let person = BoxN { x1: 0.25, y1: 0.25, x2: 0.5, y2: 0.75, score: 0.9 };
        let zone = Zone {
            id: ZoneId::parse("w1").unwrap(),
            name: "1号窗口".into(),
            kind: ZoneKind::Window,
            polygon: vec![[0.6, 0.5], [0.9, 0.5], [0.9, 0.9], [0.6, 0.9]],
        };
        let img = annotate(&f, &[person], std::slice::from_ref(&zone)).unwrap();
        // The box's left edge at x = 160, from y = 90 to 270; its top edge at y = 90.
        assert_eq!(img.pixel(160, 180), BOX_COLOUR);
        assert_eq!(img.pixel(240, 90), BOX_COLOUR);
        assert_eq!(img.pixel(320, 270), BOX_COLOUR);
        // Inside the box, outside everything: untouched.
        assert_eq!(img.pixel(240, 180), [GREY; 3]);
        assert_eq!(img.pixel(10, 10), [GREY; 3]);
        // The zone's outline: left edge x = 384, bottom y = 324; a diagonal would be elsewhere.
        assert_eq!(img.pixel(384, 250), zone_colour(ZoneKind::Window));
        assert_eq!(img.pixel(500, 324), zone_colour(ZoneKind::Window));
        assert_eq!(img.pixel(500, 250), [GREY; 3]);
        let changed = img.data.chunks(3).filter(|p| *p != [GREY; 3]).count();
        // Two outlines of 2-pixel lines: roughly 2 x perimeter pixels.
        let perimeters = 2 * (160 + 180) + 2 * (192 + 144);
        assert!(changed > perimeters && changed < 3 * perimeters, "{changed} pixels changed");

        // A box touching the right and bottom edges is clipped, not a panic.
        let edge = BoxN { x1: 0.9, y1: 0.9, x2: 1.0, y2: 1.0, score: 0.5 };
        let img = annotate(&f, &[edge], &[]).unwrap();
        assert_eq!(img.pixel(w - 1, h - 1), BOX_COLOUR);
    }

    #[test]
    fn the_snapshot_is_a_jpeg() {
        let (w, h) = (320, 180);
        let data = grey_bgr(w, h, 3 * w as usize);
        let f = FrameRef { width: w, height: h, stride: 3 * w as usize, format: PixelFormat::Bgr, data: &data };
        let b = BoxN { x1: 0.1, y1: 0.1, x2: 0.4, y2: 0.9, score: 0.8 };
        let jpeg = snapshot_jpeg(&f, &[b], &[], 80).unwrap();
        assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF], "SOI then a marker");
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9], "ends with EOI");
        // A baseline frame header (SOF0) carrying the size.
        let sof = jpeg.windows(2).position(|m| m == [0xFF, 0xC0]).expect("SOF0");
        let hw = &jpeg[sof + 5..sof + 9];
        assert_eq!(u16::from_be_bytes([hw[0], hw[1]]), h as u16);
        assert_eq!(u16::from_be_bytes([hw[2], hw[3]]), w as u16);
        // Compressed: far below the raw 3 bytes a pixel, and bigger with more drawn.
        assert!(jpeg.len() < (w * h) as usize, "{} bytes", jpeg.len());
        let plain = snapshot_jpeg(&f, &[], &[], 80).unwrap();
        assert!(plain.len() < jpeg.len());
    }
}
