//! What a camera's frames say, as plain functions over pixel buffers (no GStreamer, no I/O but
//! the ONNX model): person detection with a YOLOX-style model, per-zone counts, the hall events
//! (post unattended, crowding), stream-health measures and the snapshot picture with boxes and
//! zones drawn. The camera mode of the edge agent calls these; ARCHITECTURE.md says how they fit.

pub mod detect;
pub mod draw;
pub mod events;
pub mod health;
pub mod zones;

/// How the bytes of a frame are laid out: packed 8-bit, three channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Bgr,
    Rgb,
}

/// A borrowed frame as GStreamer hands it over (rows may be padded: `stride` >= 3 * width).
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub format: PixelFormat,
    pub data: &'a [u8],
}
