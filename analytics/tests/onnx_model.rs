//! The shipped forecaster through the real ONNX Runtime: same numbers as onnxruntime in Python,
//! and a broken or mismatched model is refused with a clear error.

use std::path::{Path, PathBuf};

use offsite_analytics::anomaly::Predictor;
use offsite_analytics::onnx::{init_runtime, OnnxForecaster};

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/anomaly")
}

fn runtime() {
    // `make test` fetches the library (scripts/setup.sh); cargo gets its path from .cargo/config.toml.
    let lib = std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH (set by .cargo/config.toml)");
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(lib);
    init_runtime(&lib).expect("ONNX Runtime loads");
}

#[test]
fn forecasts_match_the_reference_outputs() {
    runtime();
    let mut m = OnnxForecaster::load(&model_dir()).unwrap();
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(model_dir().join("reference.json")).unwrap()).unwrap();
    let w = m.window();
    assert_eq!(w as u64, r["window"].as_u64().unwrap());
    let cases = r["cases"].as_array().unwrap();
    let mut x = Vec::new();
    let mut expected = Vec::new();
    for c in cases {
        // The Rust side normalises the raw window itself, as the live detector does.
        let raw: Vec<f64> = c["raw"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(raw.len(), w);
        let n = w as f64;
        let mean = raw.iter().sum::<f64>() / n;
        let std = (raw.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
        let scale = std.max(1e-6 * mean.abs().max(1.0));
        let xs: Vec<f32> = raw.iter().map(|v| ((v - mean) / scale) as f32).collect();
        let want: Vec<f32> = c["x"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        for (a, b) in xs.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "normalisation differs: {a} vs {b}");
        }
        x.extend(xs);
        expected.push(c["y"].as_array().map(|a| a[0].as_f64().unwrap()).or(c["y"].as_f64()).unwrap() as f32);
    }
    let mut out = Vec::new();
    m.predict(&x, cases.len(), &mut out).unwrap();
    assert_eq!(out.len(), cases.len());
    for (a, b) in out.iter().zip(&expected) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "forecast {a} vs onnxruntime {b}");
    }
}

#[test]
fn corrupt_or_mismatched_models_are_refused_clearly() {
    runtime();
    let dir = tempfile::tempdir().unwrap();
    let card = std::fs::read_to_string(model_dir().join("model.json")).unwrap();
    let onnx = std::fs::read(model_dir().join("forecaster.onnx")).unwrap();
    // Flipped bytes: the checksum catches it before ONNX Runtime sees it.
    std::fs::write(dir.path().join("model.json"), &card).unwrap();
    let mut bad = onnx.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(dir.path().join("forecaster.onnx"), &bad).unwrap();
    let e = OnnxForecaster::load(dir.path()).err().unwrap().to_string();
    assert!(e.contains("does not match its card"), "{e}");
    // Garbage with a matching checksum: ONNX Runtime refuses it, with the path in the message.
    let garbage = b"not an onnx model".to_vec();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&garbage))
    };
    let sum = serde_json::from_str::<serde_json::Value>(&card).unwrap()["sha256"].as_str().unwrap().to_owned();
    std::fs::write(dir.path().join("model.json"), card.replace(&sum, &digest)).unwrap();
    std::fs::write(dir.path().join("forecaster.onnx"), &garbage).unwrap();
    let e = OnnxForecaster::load(dir.path()).err().unwrap().to_string();
    assert!(e.contains("loading model"), "{e}");
    // A card naming an input the model does not have.
    std::fs::write(dir.path().join("forecaster.onnx"), &onnx).unwrap();
    std::fs::write(dir.path().join("model.json"), card.replace("\"name\": \"x\"", "\"name\": \"input\"")).unwrap();
    let e = OnnxForecaster::load(dir.path()).err().unwrap().to_string();
    assert!(e.contains("no input named"), "{e}");
    // Missing card.
    assert!(OnnxForecaster::load(&dir.path().join("nowhere")).err().unwrap().to_string().contains("model.json"));
}

#[test]
fn a_changed_model_is_picked_up_and_a_broken_one_leaves_the_old_running() {
    runtime();
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.json", "forecaster.onnx"] {
        std::fs::copy(model_dir().join(f), dir.path().join(f)).unwrap();
    }
    let mut m = OnnxForecaster::load(dir.path()).unwrap();
    assert!(m.reload_if_changed().is_none(), "nothing changed");
    let x = vec![0.5f32; m.window()];
    let mut before = Vec::new();
    m.predict(&x, 1, &mut before).unwrap();

    // A new version of the card (same model bytes): picked up.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let card = std::fs::read_to_string(dir.path().join("model.json")).unwrap();
    std::fs::write(dir.path().join("model.json"), card.replace("\"version\": \"1\"", "\"version\": \"2\"")).unwrap();
    assert_eq!(m.reload_if_changed(), Some(Ok("2".to_owned())));

    // A corrupt model file: refused, the loaded one keeps predicting the same.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(dir.path().join("forecaster.onnx"), b"garbage").unwrap();
    assert!(matches!(m.reload_if_changed(), Some(Err(e)) if e.contains("does not match")));
    assert!(m.reload_if_changed().is_none(), "a refused file is not retried every tick");
    let mut after = Vec::new();
    m.predict(&x, 1, &mut after).unwrap();
    assert_eq!(before, after);
}
