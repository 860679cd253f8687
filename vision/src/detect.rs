//! Person detection with a YOLOX-style ONNX model (input `[1,3,H,W]` raw BGR, letterboxed top
//! left with 114 padding; output `[1,N,5+classes]`).
//!
//! The YOLOX export we use (yolox_nano.onnx) leaves box decoding out of the graph: each output row
//! holds the cell offsets `(dx, dy)`, the log sizes `(lw, lh)`, then objectness and class
//! probabilities already passed through a sigmoid. A box is `((dx + gx) * s, (dy + gy) * s,
//! exp(lw) * s, exp(lh) * s)` for its cell `(gx, gy)` at stride `s`; rows run over strides 8, 16
//! and 32, each grid row-major (3549 = 52² + 26² + 13² at 416).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use ndarray::ArrayView4;
use offsite_wire::BoxN;
use ort::session::Session;
use ort::value::TensorRef;
use sha2::{Digest, Sha256};

use crate::{FrameRef, PixelFormat};

/// Where setup installs the YOLOX-Nano model, relative to the installation (git-ignored: the
/// model comes from another project).
pub const YOLOX_NANO_PATH: &str = "models/yolox-nano/yolox_nano.onnx";
/// The YOLOX-Nano file setup installs and the README points to.
pub const YOLOX_NANO_SHA256: &str = "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14";

/// The strides of YOLOX's three detection heads.
pub const STRIDES: [u32; 3] = [8, 16, 32];
/// What YOLOX pads the letterbox with (mid grey), as in its training.
pub const PAD_VALUE: f32 = 114.0;

#[derive(Debug, Clone)]
pub struct DetectorConfig {
    pub model: PathBuf,
    /// objectness x class probability at or above which a box is kept.
    pub score_threshold: f32,
    /// Boxes overlapping a better one by more than this IoU are dropped.
    pub nms_iou: f32,
    /// The class counted (COCO person = 0).
    pub class_id: usize,
}

impl DetectorConfig {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self { model: model.into(), score_threshold: 0.35, nms_iou: 0.45, class_id: 0 }
    }
}

static RUNTIME: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads the ONNX Runtime library once per process; later calls return the first outcome.
///
/// The analytics tier goes through this one as well, so a process that forecasts and detects
/// loads the library once.
pub fn init_runtime(library: &Path) -> Result<()> {
    init_runtime_environment(library).map(|_| ())
}

/// [`init_runtime`], handing back the environment sessions are built in.
pub fn init_runtime_environment(library: &Path) -> Result<&'static ort::environment::Environment> {
    let r = RUNTIME.get_or_init(|| {
        let fail = |e: &dyn std::fmt::Display| format!("loading ONNX Runtime from {}: {e}", library.display());
        let builder = ort::init_from(library).map_err(|e| fail(&e))?;
        builder.with_name("offsite").build().map_err(|e| fail(&e))
    });
    r.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
}

/// The environment [`init_runtime`] made, or an error saying it has not run (or failed).
pub fn runtime() -> Result<&'static ort::environment::Environment> {
    match RUNTIME.get() {
        Some(r) => r.as_ref().map_err(|e| anyhow::anyhow!("{e}")),
        None => bail!("the ONNX Runtime library is not loaded (init_runtime first)"),
    }
}

/// Where a frame lands in the model input: scaled by `scale`, placed at the top left, so a
/// model coordinate maps back to the frame by dividing by `scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub scale: f32,
    /// The scaled frame's size inside the input (the rest is padding).
    pub width: u32,
    pub height: u32,
}

impl Letterbox {
    /// The largest scale at which a `frame_w` x `frame_h` frame fits `input_w` x `input_h`.
    pub fn fit(frame_w: u32, frame_h: u32, input_w: u32, input_h: u32) -> Self {
        let scale = (input_w as f32 / frame_w as f32).min(input_h as f32 / frame_h as f32);
        // Rounded, then clamped: float error must not make the picture one pixel too big.
        let width = ((frame_w as f32 * scale).round() as u32).clamp(1, input_w);
        let height = ((frame_h as f32 * scale).round() as u32).clamp(1, input_h);
        Self { scale, width, height }
    }
}

/// Writes `frame` into `input` (CHW planes of `input_w` x `input_h`, B, G, R, values 0..=255),
/// scaled bilinearly (pixel centres aligned) to the letterbox and padded with [`PAD_VALUE`].
/// A frame already of the letterbox size is copied without resampling.
pub fn letterbox_into(frame: &FrameRef, input_w: u32, input_h: u32, input: &mut [f32]) -> Result<Letterbox> {
    check_frame(frame)?;
    let plane = (input_w * input_h) as usize;
    if input.len() != 3 * plane {
        bail!("model input buffer holds {} values, {} needed", input.len(), 3 * plane);
    }
    let lb = Letterbox::fit(frame.width, frame.height, input_w, input_h);
    input.fill(PAD_VALUE);
    // Channel order in the frame's pixel for model planes B, G, R.
    let order: [usize; 3] = match frame.format {
        PixelFormat::Bgr => [0, 1, 2],
        PixelFormat::Rgb => [2, 1, 0],
    };
    let (bp, rest) = input.split_at_mut(plane);
    let (gp, rp) = rest.split_at_mut(plane);
    let px = |x: usize, y: usize, c: usize| frame.data[y * frame.stride + 3 * x + order[c]] as f32;

    if lb.width == frame.width && lb.height == frame.height {
        for y in 0..lb.height as usize {
            let o = y * input_w as usize;
            for x in 0..lb.width as usize {
                bp[o + x] = px(x, y, 0);
                gp[o + x] = px(x, y, 1);
                rp[o + x] = px(x, y, 2);
            }
        }
        return Ok(lb);
    }

    // Source coordinate of each destination column, computed once: index and weight of the right
    // neighbour. Sampling at pixel centres ((d + 0.5) / scale - 0.5) keeps the picture from
    // shifting by half a pixel.
    let sx = frame.width as f32 / lb.width as f32;
    let sy = frame.height as f32 / lb.height as f32;
    let taps = |d: u32, ratio: f32, size: u32| -> (usize, usize, f32) {
        let s = ((d as f32 + 0.5) * ratio - 0.5).max(0.0);
        let i0 = (s.floor() as u32).min(size - 1);
        let i1 = (i0 + 1).min(size - 1);
        (i0 as usize, i1 as usize, s - i0 as f32)
    };
    let cols: Vec<(usize, usize, f32)> = (0..lb.width).map(|x| taps(x, sx, frame.width)).collect();
    for y in 0..lb.height {
        let (y0, y1, wy) = taps(y, sy, frame.height);
        let o = (y * input_w) as usize;
        for (x, &(x0, x1, wx)) in cols.iter().enumerate() {
            for (c, p) in [&mut *bp, &mut *gp, &mut *rp].into_iter().enumerate() {
                let top = px(x0, y0, c) * (1.0 - wx) + px(x1, y0, c) * wx;
                let bottom = px(x0, y1, c) * (1.0 - wx) + px(x1, y1, c) * wx;
                p[o + x] = top * (1.0 - wy) + bottom * wy;
            }
        }
    }
    Ok(lb)
}

fn check_frame(frame: &FrameRef) -> Result<()> {
    if frame.width == 0 || frame.height == 0 {
        bail!("empty frame ({}x{})", frame.width, frame.height);
    }
    if frame.stride < 3 * frame.width as usize {
        bail!("frame stride {} is less than 3 x width {}", frame.stride, frame.width);
    }
    let need = (frame.height as usize - 1) * frame.stride + 3 * frame.width as usize;
    if frame.data.len() < need {
        bail!(
            "frame of {}x{} (stride {}) needs {need} bytes, has {}",
            frame.width,
            frame.height,
            frame.stride,
            frame.data.len()
        );
    }
    Ok(())
}

/// A box in model input pixels with its score, before it is mapped back to the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
}

/// The number of output rows a YOLOX model has at this input size (3549 at 416 x 416).
pub fn grid_rows(input_w: u32, input_h: u32) -> usize {
    STRIDES.iter().map(|s| ((input_w / s) * (input_h / s)) as usize).sum()
}

/// Decodes raw YOLOX output rows (`rows` x `row_len`, see the module notes) into the boxes of
/// class `class_id` whose objectness x class probability is at least `threshold`.
pub fn decode(
    output: &[f32],
    row_len: usize,
    input_w: u32,
    input_h: u32,
    class_id: usize,
    threshold: f32,
) -> Result<Vec<Candidate>> {
    if row_len < 6 || class_id >= row_len - 5 {
        bail!("output rows of {row_len} values have no class {class_id}");
    }
    let rows = grid_rows(input_w, input_h);
    if output.len() != rows * row_len {
        bail!("output holds {} values, a {input_w}x{input_h} YOLOX grid gives {rows} x {row_len}", output.len());
    }
    let mut found = Vec::new();
    let mut row = 0;
    for s in STRIDES {
        let (gw, gh) = (input_w / s, input_h / s);
        for gy in 0..gh {
            for gx in 0..gw {
                let r = &output[row * row_len..(row + 1) * row_len];
                row += 1;
                let score = r[4] * r[5 + class_id];
                if score < threshold {
                    continue;
                }
                let s = s as f32;
                let cx = (r[0] + gx as f32) * s;
                let cy = (r[1] + gy as f32) * s;
                let w = r[2].exp() * s;
                let h = r[3].exp() * s;
                found.push(Candidate { x1: cx - w / 2.0, y1: cy - h / 2.0, x2: cx + w / 2.0, y2: cy + h / 2.0, score });
            }
        }
    }
    Ok(found)
}

fn area(x1: f32, y1: f32, x2: f32, y2: f32) -> f32 {
    (x2 - x1).max(0.0) * (y2 - y1).max(0.0)
}

/// Intersection over union of two boxes (0 when either is empty).
pub fn iou(a: &Candidate, b: &Candidate) -> f32 {
    let inter = area(a.x1.max(b.x1), a.y1.max(b.y1), a.x2.min(b.x2), a.y2.min(b.y2));
    let union = area(a.x1, a.y1, a.x2, a.y2) + area(b.x1, b.y1, b.x2, b.y2) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Greedy non-maximum suppression: best first, dropping any box that overlaps a kept one by
/// more than `max_iou`.
pub fn nms(mut boxes: Vec<Candidate>, max_iou: f32) -> Vec<Candidate> {
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for b in boxes {
        if kept.iter().all(|k| iou(k, &b) <= max_iou) {
            kept.push(b);
        }
    }
    kept
}

/// Maps a box from model input pixels back to the frame, clipped, and normalised to 0..=1.
pub fn to_frame(c: &Candidate, lb: &Letterbox, frame_w: u32, frame_h: u32) -> BoxN {
    let (fw, fh) = (frame_w as f32, frame_h as f32);
    let nx = |v: f32| (v / lb.scale).clamp(0.0, fw) / fw;
    let ny = |v: f32| (v / lb.scale).clamp(0.0, fh) / fh;
    BoxN { x1: nx(c.x1), y1: ny(c.y1), x2: nx(c.x2), y2: ny(c.y2), score: c.score }
}

pub struct Yolox {
    cfg: DetectorConfig,
    session: Session,
    input_name: String,
    output_name: String,
    input_w: u32,
    input_h: u32,
    row_len: usize,
    sha256: String,
    /// Reused between frames: the model input is 2 MB at 416.
    input: Vec<f32>,
}

impl Yolox {
    /// Loads the model (ONNX Runtime initialised first with [`init_runtime`]) and checks that its
    /// input is `[1,3,H,W]` and its output `[1,rows,5+classes]` with the rows of a YOLOX grid.
    pub fn load(cfg: &DetectorConfig) -> Result<Self> {
        let path = &cfg.model;
        let bytes = std::fs::read(path).with_context(|| format!("reading model {}", path.display()))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let session = Session::builder(runtime()?)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            // One thread per camera: cameras run in parallel, so more threads only contend.
            .with_intra_threads(1)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .commit_from_memory(&bytes)
            .map_err(|e| anyhow::anyhow!("loading model {}: {e}", path.display()))?;

        let (inputs, outputs) = (session.inputs(), session.outputs());
        if inputs.len() != 1 || outputs.len() != 1 {
            bail!(
                "model {}: a YOLOX model has one input and one output, this one {} and {}",
                path.display(),
                inputs.len(),
                outputs.len()
            );
        }
        let dims =
            |t: &ort::value::ValueType| -> Option<Vec<i64>> { t.tensor_shape().map(|s| s.iter().copied().collect()) };
        let in_shape =
            dims(inputs[0].dtype()).with_context(|| format!("model {}: the input is not a tensor", path.display()))?;
        let out_shape = dims(outputs[0].dtype())
            .with_context(|| format!("model {}: the output is not a tensor", path.display()))?;
        let (input_w, input_h) = match in_shape[..] {
            [1, 3, h, w] if h > 0 && w > 0 && h % 32 == 0 && w % 32 == 0 => (w as u32, h as u32),
            _ => bail!(
                "model {}: input {:?} is {in_shape:?}, expected [1, 3, H, W] with H and W fixed multiples of 32",
                path.display(),
                inputs[0].name()
            ),
        };
        let rows = grid_rows(input_w, input_h);
        let row_len = match out_shape[..] {
            [1, r, n] if r as usize == rows && n as usize > 5 + cfg.class_id => n as usize,
            _ => bail!(
                "model {}: output {:?} is {out_shape:?}, expected [1, {rows}, 5 + classes] (at least {} classes) for a {input_w}x{input_h} YOLOX input",
                path.display(),
                outputs[0].name(),
                cfg.class_id + 1
            ),
        };
        let input_name = inputs[0].name().to_owned();
        let output_name = outputs[0].name().to_owned();
        Ok(Self {
            cfg: cfg.clone(),
            session,
            input_name,
            output_name,
            input_w,
            input_h,
            row_len,
            sha256,
            input: vec![PAD_VALUE; 3 * (input_w * input_h) as usize],
        })
    }

    /// The model's input size (width, height), e.g. (416, 416).
    pub fn input_size(&self) -> (u32, u32) {
        (self.input_w, self.input_h)
    }

    /// A short name for people and logs, e.g. "yolox_nano.onnx (sha256 695e750a…)".
    pub fn model_name(&self) -> String {
        let file = self.cfg.model.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{file} (sha256 {}…)", &self.sha256[..8])
    }

    /// The model file's full SHA-256 (lower-case hex).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Persons in `frame` (any size; best already scaled so that it fits the input with one side
    /// equal), boxes normalised to `frame` (0..=1), best first.
    pub fn detect(&mut self, frame: &FrameRef) -> Result<Vec<BoxN>> {
        let lb = self.preprocess(frame)?;
        let raw = self.infer()?;
        self.postprocess(&raw, &lb, frame.width, frame.height)
    }

    /// The steps of [`Yolox::detect`] one by one, for a benchmark that times each: the letterbox
    /// into the model input,
    pub fn preprocess(&mut self, frame: &FrameRef) -> Result<Letterbox> {
        letterbox_into(frame, self.input_w, self.input_h, &mut self.input)
    }

    /// the model run on it (raw output rows),
    pub fn infer(&mut self) -> Result<Vec<f32>> {
        let shape = (1, 3, self.input_h as usize, self.input_w as usize);
        let view = ArrayView4::from_shape(shape, &self.input)?;
        let outputs = self.session.run(ort::inputs![self.input_name.as_str() => TensorRef::from_array_view(view)?])?;
        let y = outputs[self.output_name.as_str()].try_extract_array::<f32>()?;
        Ok(match y.as_slice() {
            Some(s) => s.to_vec(),
            None => y.iter().copied().collect(),
        })
    }

    /// and the decoding, threshold and NMS, boxes mapped back to the frame.
    pub fn postprocess(&self, raw: &[f32], lb: &Letterbox, frame_w: u32, frame_h: u32) -> Result<Vec<BoxN>> {
        let found = decode(raw, self.row_len, self.input_w, self.input_h, self.cfg.class_id, self.cfg.score_threshold)?;
        Ok(nms(found, self.cfg.nms_iou).iter().map(|c| to_frame(c, lb, frame_w, frame_h)).collect())
    }
}

/// Where the YOLOX-Nano model is looked for when none is configured: [`YOLOX_NANO_PATH`] under
/// the current directory or one of its parents (a checkout, where setup installs it), then under
/// the executable's directory or one of its parents (an installation).
pub fn default_model_path() -> Option<PathBuf> {
    let here = std::env::current_dir().ok();
    let exe = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf));
    [here, exe]
        .into_iter()
        .flatten()
        .find_map(|start| start.ancestors().map(|d| d.join(YOLOX_NANO_PATH)).find(|p| p.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_fits_the_longer_side() {
        let lb = Letterbox::fit(768, 432, 416, 416);
        assert_eq!((lb.width, lb.height), (416, 234));
        assert!((lb.scale - 416.0 / 768.0).abs() < 1e-6);
        let lb = Letterbox::fit(300, 600, 416, 416);
        assert_eq!((lb.width, lb.height), (208, 416));
        // A small frame is scaled up.
        let lb = Letterbox::fit(208, 117, 416, 416);
        assert_eq!((lb.width, lb.height), (416, 234));
    }

    fn frame_of(w: u32, h: u32, stride: usize, px: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let mut data = vec![7u8; stride * h as usize];
        for y in 0..h {
            for x in 0..w {
                let o = y as usize * stride + 3 * x as usize;
                data[o..o + 3].copy_from_slice(&px(x, y));
            }
        }
        data
    }

    #[test]
    fn letterbox_pads_bottom_right_and_orders_planes_bgr() {
        // 8x4 RGB frame with padded rows into a 16x16 input: scale 2, picture 16x8 on top.
        let (w, h, stride) = (8, 4, 8 * 3 + 5);
        let data = frame_of(w, h, stride, |_, _| [200, 100, 50]);
        let f = FrameRef { width: w, height: h, stride, format: PixelFormat::Rgb, data: &data };
        let mut input = vec![0.0; 3 * 16 * 16];
        let lb = letterbox_into(&f, 16, 16, &mut input).unwrap();
        assert_eq!((lb.width, lb.height, lb.scale), (16, 8, 2.0));
        let at = |c: usize, x: usize, y: usize| input[c * 256 + y * 16 + x];
        // Planes are B, G, R.
        assert_eq!((at(0, 3, 3), at(1, 3, 3), at(2, 3, 3)), (50.0, 100.0, 200.0));
        assert_eq!(at(0, 15, 7), 50.0);
        // Below the picture: padding.
        assert_eq!((at(0, 0, 8), at(2, 15, 15)), (PAD_VALUE, PAD_VALUE));
    }

    #[test]
    fn letterbox_copies_a_fitted_frame_and_interpolates_a_scaled_one() {
        let (w, h) = (4, 2);
        let data = frame_of(w, h, 12, |x, y| [(x * 10 + y) as u8, 0, 0]);
        let f = FrameRef { width: w, height: h, stride: 12, format: PixelFormat::Bgr, data: &data };
        let mut input = vec![0.0; 3 * 4 * 4];
        letterbox_into(&f, 4, 4, &mut input).unwrap();
        assert_eq!(&input[0..4], &[0.0, 10.0, 20.0, 30.0]);
        assert_eq!(&input[4..8], &[1.0, 11.0, 21.0, 31.0]);
        assert_eq!(&input[8..16], &[PAD_VALUE; 8]);

        // Doubled: destination pixel 1 samples source 0.25 between columns 0 and 1.
        let mut input = vec![0.0; 3 * 8 * 8];
        letterbox_into(&f, 8, 8, &mut input).unwrap();
        assert_eq!(input[0], 0.0);
        assert!((input[1] - 2.5).abs() < 1e-4, "{}", input[1]);
        assert!((input[2] - 7.5).abs() < 1e-4, "{}", input[2]);
        assert_eq!(input[7], 30.0);
    }

    #[test]
    fn letterbox_refuses_a_short_buffer() {
        let data = vec![0u8; 10];
        let f = FrameRef { width: 4, height: 2, stride: 12, format: PixelFormat::Bgr, data: &data };
        let mut input = vec![0.0; 3 * 16];
        assert!(letterbox_into(&f, 4, 4, &mut input).is_err());
        let f = FrameRef { width: 4, height: 2, stride: 11, format: PixelFormat::Bgr, data: &[0; 24] };
        assert!(letterbox_into(&f, 4, 4, &mut input).is_err());
    }

    /// A 64x64 model output (64 + 16 + 4 rows of 7: 2 classes) filled with nothing found.
    fn empty_output() -> Vec<f32> {
        let rows = grid_rows(64, 64);
        assert_eq!(rows, 84);
        let mut out = vec![0.0; rows * 7];
        for r in 0..rows {
            out[r * 7 + 4] = 0.01;
        }
        out
    }

    fn put(out: &mut [f32], row: usize, vals: [f32; 7]) {
        out[row * 7..row * 7 + 7].copy_from_slice(&vals);
    }

    #[test]
    fn decode_places_boxes_on_their_grid_cell_and_stride() {
        let mut out = empty_output();
        // Stride 8, cell (3, 2) = row 2*8+3; centre offset (0.5, 0.25), size exp(ln 2)*8 = 16 by 8.
        put(&mut out, 19, [0.5, 0.25, 2f32.ln(), 0.0, 0.9, 0.8, 0.1]);
        // Stride 16, cell (1, 3) = row 64 + 3*4+1; class 1 only: not a person.
        put(&mut out, 77, [0.0, 0.0, 0.0, 0.0, 0.9, 0.1, 0.95]);
        // Stride 32, cell (1, 1) = row 64 + 16 + 3; centre (48, 48), 32 by 64.
        put(&mut out, 83, [0.5, 0.5, 0.0, 2f32.ln(), 0.5, 0.9, 0.0]);
        let found = decode(&out, 7, 64, 64, 0, 0.35).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        let a = found[0];
        assert!((a.score - 0.72).abs() < 1e-6);
        assert_eq!((a.x1, a.y1, a.x2, a.y2), (28.0 - 8.0, 18.0 - 4.0, 28.0 + 8.0, 18.0 + 4.0));
        let b = found[1];
        assert!((b.score - 0.45).abs() < 1e-6);
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (32.0, 16.0, 64.0, 80.0));
        // The other class decodes from the same rows.
        let other = decode(&out, 7, 64, 64, 1, 0.35).unwrap();
        assert_eq!(other.len(), 1);
        assert_eq!((other[0].x1, other[0].y1), (16.0 - 8.0, 48.0 - 8.0));
        // A wrong size is refused, not misread.
        assert!(decode(&out[7..], 7, 64, 64, 0, 0.35).is_err());
        assert!(decode(&out, 7, 64, 64, 2, 0.35).is_err());
    }

    fn cand(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> Candidate {
        Candidate { x1, y1, x2, y2, score }
    }

    #[test]
    fn iou_of_known_overlaps() {
        let a = cand(0.0, 0.0, 10.0, 10.0, 1.0);
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &cand(10.0, 0.0, 20.0, 10.0, 1.0)), 0.0);
        // Half overlap: 50 / 150.
        assert!((iou(&a, &cand(5.0, 0.0, 15.0, 10.0, 1.0)) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&cand(1.0, 1.0, 1.0, 1.0, 1.0), &cand(1.0, 1.0, 1.0, 1.0, 1.0)), 0.0);
    }

    #[test]
    fn nms_keeps_the_best_of_each_cluster() {
        let boxes = vec![
            cand(0.0, 0.0, 10.0, 10.0, 0.6),
            cand(1.0, 0.0, 11.0, 10.0, 0.9),
            cand(50.0, 50.0, 60.0, 60.0, 0.5),
            // Overlaps the best by 1/3: kept at 0.45, dropped at 0.3.
            cand(6.0, 0.0, 16.0, 10.0, 0.4),
        ];
        let kept = nms(boxes.clone(), 0.45);
        let scores: Vec<f32> = kept.iter().map(|b| b.score).collect();
        assert_eq!(scores, vec![0.9, 0.5, 0.4]);
        let kept = nms(boxes, 0.3);
        let scores: Vec<f32> = kept.iter().map(|b| b.score).collect();
        assert_eq!(scores, vec![0.9, 0.5]);
    }

    #[test]
    fn boxes_map_back_to_the_frame_normalised_and_clipped() {
        let lb = Letterbox::fit(768, 432, 416, 416);
        let c = cand(104.0, 52.0, 208.0, 260.0, 0.8);
        let b = to_frame(&c, &lb, 768, 432);
        assert!((b.x1 - 0.25).abs() < 1e-5 && (b.x2 - 0.5).abs() < 1e-5);
        assert!((b.y1 - 52.0 / 234.0).abs() < 1e-5);
        // The padding below the picture is outside the frame: clipped to its edge.
        assert_eq!(b.y2, 1.0);
        assert_eq!(b.score, 0.8);
    }
}
