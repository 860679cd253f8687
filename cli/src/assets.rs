//! Files the binary ships beside itself (so it works from any working directory).
//!
//! Today only the ONNX Runtime library, which the analytics tier will load; a missing optional
//! asset is logged at start, never fatal.

use std::path::PathBuf;

use tracing::{info, warn};

/// Where `make build` puts the ONNX Runtime library: next to the executable. A source checkout's
/// `third_party/` copy is found too, for `cargo run`.
pub fn onnxruntime_library() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let candidates = [
        dir.join("libonnxruntime.so"),
        dir.join("../../third_party/onnxruntime/libonnxruntime.so"),
    ];
    candidates.into_iter().find(|p| p.exists()).and_then(|p| p.canonicalize().ok())
}

/// A shipped model's directory (`models/<name>` with `model.json`): beside the executable after
/// `make build`, or in the source checkout for `cargo run`.
pub fn model_dir(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("models").join(name), dir.join("../../models").join(name)]
        .into_iter()
        .find(|p| p.join("model.json").exists())
        .and_then(|p| p.canonicalize().ok())
}

/// The YOLOX person detector setup installs (`models/yolox-nano/yolox_nano.onnx`): beside the
/// executable after `make build`, or in the source checkout.
pub fn yolox_model() -> Option<PathBuf> {
    beside_executable(&["models", "yolox-nano", "yolox_nano.onnx"])
}

/// A clip of the demo's cameras (`demo-media/<file>`, placed by setup): beside the executable
/// after `make build`, or in the source checkout.
pub fn demo_media(file: &str) -> Option<PathBuf> {
    beside_executable(&["demo-media", file])
}

/// `parts` joined under the executable's directory, else under the checkout it was built in.
fn beside_executable(parts: &[&str]) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let rel: PathBuf = parts.iter().collect();
    [dir.join(&rel), dir.join("../..").join(&rel)]
        .into_iter()
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
}

/// Logs which optional assets were found.
pub fn report() {
    match onnxruntime_library() {
        Some(p) => info!(path = %p.display(), "ONNX Runtime library found"),
        None => warn!("ONNX Runtime library not found beside the executable; ONNX detectors will be off (run `make build`)"),
    }
}
