//! What the vision tests share: where the test material and the model are, and the ONNX Runtime.

use std::path::PathBuf;

/// The workspace root (the parent of this crate).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("vision/ has a parent").to_path_buf()
}

/// The shared test material next to the repository (present in CI); a clear failure otherwise.
pub fn shared() -> PathBuf {
    let dir = workspace().join("../shared");
    assert!(
        dir.join("data/video").is_dir(),
        "the shared test material is missing: expected {} next to the repository (CI provides it)",
        dir.display()
    );
    dir
}

/// The YOLOX-Nano model: the copy setup installs under models/, else the one in ../shared.
pub fn yolox_model() -> PathBuf {
    let installed = workspace().join(offsite_vision::detect::YOLOX_NANO_PATH);
    if installed.is_file() {
        return installed;
    }
    let shared = shared().join("models/yolox-nano/yolox_nano.onnx");
    assert!(shared.is_file(), "no YOLOX-Nano model at {} or {}", installed.display(), shared.display());
    shared
}

/// Loads ONNX Runtime from ORT_DYLIB_PATH (.cargo/config.toml points it at setup's copy).
pub fn init_runtime() {
    let lib = std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH (set by .cargo/config.toml)");
    let lib = workspace().join(lib);
    assert!(lib.is_file(), "{} is missing: run scripts/setup.sh", lib.display());
    offsite_vision::detect::init_runtime(&lib).expect("ONNX Runtime loads");
}
