//! Person detection with a YOLOX-style ONNX model (input `[1,3,H,W]` raw BGR, letterboxed top
//! left with 114 padding; output `[1,N,5+classes]`).

use std::path::{Path, PathBuf};

use offsite_wire::BoxN;

use crate::FrameRef;

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

/// Loads the ONNX Runtime library once per process; later calls return the first outcome.
pub fn init_runtime(library: &Path) -> anyhow::Result<()> {
    anyhow::bail!("ONNX Runtime for vision not available yet ({})", library.display())
}

pub struct Yolox {
    _cfg: DetectorConfig,
}

impl Yolox {
    /// Loads the model (ONNX Runtime initialised first with [`init_runtime`]).
    pub fn load(cfg: &DetectorConfig) -> anyhow::Result<Self> {
        anyhow::bail!("person detection not available yet ({})", cfg.model.display())
    }

    /// The model's input size (width, height), e.g. (416, 416).
    pub fn input_size(&self) -> (u32, u32) {
        (416, 416)
    }

    /// A short name for people and logs, e.g. "yolox_nano.onnx (sha256 695e750a…)".
    pub fn model_name(&self) -> String {
        self._cfg.model.display().to_string()
    }

    /// Persons in `frame` (any size; best already scaled so that it fits the input with one side
    /// equal), boxes normalised to `frame` (0..=1), best first.
    pub fn detect(&mut self, frame: &FrameRef) -> anyhow::Result<Vec<BoxN>> {
        let _ = frame;
        anyhow::bail!("person detection not available yet")
    }
}
