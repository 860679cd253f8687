//! The ONNX forecaster: a model from `models/` (file + machine-readable card), run with ONNX
//! Runtime loaded at run time (`load-dynamic`), many windows per call.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ndarray::ArrayView2;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use offsite_store::detector_models::{ModelDigest, ModelLoad};

use crate::anomaly::Predictor;

/// The parts of `model.json` inference depends on.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelCard {
    pub name: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
    pub window: usize,
    pub input: Tensor,
    pub output: Tensor,
    /// The whole card as read (what the portal shows of a model).
    #[serde(skip)]
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tensor {
    pub name: String,
}

impl ModelCard {
    /// Reads `dir/model.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let p = dir.join("model.json");
        let metadata: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
                .with_context(|| format!("parsing {}", p.display()))?;
        let mut card: ModelCard =
            serde_json::from_value(metadata.clone()).with_context(|| format!("parsing {}", p.display()))?;
        card.metadata = metadata;
        if card.window == 0 || card.window > 4096 {
            bail!("{}: window {} out of range", p.display(), card.window);
        }
        Ok(card)
    }
}

/// Loads the ONNX Runtime library once per process (later calls return the first outcome). The
/// vision crate owns the one copy, so a process that also detects people loads it once.
pub fn init_runtime(library: &Path) -> Result<&'static ort::environment::Environment> {
    offsite_vision::detect::init_runtime_environment(library)
}

fn runtime() -> Result<&'static ort::environment::Environment> {
    offsite_vision::detect::runtime()
}

pub struct OnnxForecaster {
    session: Session,
    card: ModelCard,
    path: PathBuf,
    dir: PathBuf,
    /// Modification times of the card and the model when loaded.
    stamp: Option<(std::time::SystemTime, std::time::SystemTime)>,
    /// The file's digest (checked against the card) and when it was loaded.
    sha256: ModelDigest,
    loaded_at: chrono::DateTime<chrono::Utc>,
}

fn stamp(dir: &Path, file: &str) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
    let m = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(dir.join("model.json"))?, m(dir.join(file))?))
}

impl OnnxForecaster {
    /// Loads the model described by `dir/model.json`, checking the file's sha256 against the card
    /// and the model's input/output names, so a corrupt or mismatched file is refused clearly.
    pub fn load(dir: &Path) -> Result<Self> {
        let card = ModelCard::load(dir)?;
        let path = dir.join(&card.file);
        let bytes = std::fs::read(&path).with_context(|| format!("reading model {}", path.display()))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if !digest.eq_ignore_ascii_case(&card.sha256) {
            bail!("model {} does not match its card: sha256 {digest}, card says {}", path.display(), card.sha256);
        }
        let session = Session::builder(runtime()?)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_intra_threads(1)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .commit_from_memory(&bytes)
            .map_err(|e| anyhow::anyhow!("loading model {}: {e}", path.display()))?;
        if !session.inputs().iter().any(|i| i.name() == card.input.name) {
            bail!("model {} has no input named {:?}", path.display(), card.input.name);
        }
        if !session.outputs().iter().any(|o| o.name() == card.output.name) {
            bail!("model {} has no output named {:?}", path.display(), card.output.name);
        }
        let stamp = stamp(dir, &card.file);
        let sha256 = ModelDigest::parse(&digest).context("a SHA-256 digest is 64 hex digits")?;
        Ok(Self { session, card, path, dir: dir.to_path_buf(), stamp, sha256, loaded_at: chrono::Utc::now() })
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Predictor for OnnxForecaster {
    fn window(&self) -> usize {
        self.card.window
    }

    fn name(&self) -> &str {
        "onnx"
    }

    fn version(&self) -> &str {
        &self.card.version
    }

    fn loaded(&self) -> Option<ModelLoad> {
        Some(ModelLoad {
            detector: String::new(),
            name: self.card.name.clone(),
            version: self.card.version.clone(),
            sha256: self.sha256.clone(),
            metadata: self.card.metadata.clone(),
            loaded_at: self.loaded_at,
        })
    }

    fn reload_if_changed(&mut self) -> Option<std::result::Result<String, String>> {
        let now = stamp(&self.dir, &self.card.file);
        if now == self.stamp {
            return None;
        }
        // Whatever happens, do not retry the same files on every tick.
        self.stamp = now;
        match OnnxForecaster::load(&self.dir) {
            Ok(new) => {
                *self = new;
                Some(Ok(self.card.version.clone()))
            }
            Err(e) => Some(Err(format!("{e:#}"))),
        }
    }

    fn predict(&mut self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<()> {
        let view = ArrayView2::from_shape((rows, self.card.window), x)?;
        let outputs = self.session.run(ort::inputs![self.card.input.name.as_str() => TensorRef::from_array_view(view)?])?;
        let y = outputs[self.card.output.name.as_str()].try_extract_array::<f32>()?;
        if y.len() < rows {
            bail!("model returned {} values for {rows} rows", y.len());
        }
        // One forecast per row: the first column if the model returns more.
        let per_row = y.len() / rows;
        out.extend(y.iter().step_by(per_row.max(1)).take(rows).copied());
        Ok(())
    }
}
