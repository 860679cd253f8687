//! The Rust YOLOX pipeline against an independent Python onnxruntime reference on fixed frames of
//! the shared indoor clip (vision/reference/yolox_reference.py), and counts checked by eye.

mod support;

use std::path::Path;
use std::process::Command;

use offsite_vision::detect::{Candidate, DetectorConfig, Yolox};
use offsite_vision::{FrameRef, PixelFormat};
use offsite_wire::BoxN;
use serde_json::Value;

/// Frames of one-by-one-person-detection.mp4 looked at by eye: a person at the table, or nobody.
const WITH_PERSON: [u32; 4] = [140, 350, 630, 1050];
const EMPTY: [u32; 4] = [0, 210, 490, 910];

fn run_reference(model: &Path, out: &Path) -> Value {
    let ws = support::workspace();
    let python = ws.join("vision/reference/.venv/bin/python");
    assert!(python.is_file(), "{} is missing: run scripts/setup.sh (it needs python3 with venv)", python.display());
    let frames: Vec<String> = WITH_PERSON.iter().chain(&EMPTY).map(|i| i.to_string()).collect();
    let status = Command::new(&python)
        .arg(ws.join("vision/reference/yolox_reference.py"))
        .arg("--video")
        .arg(support::shared().join("data/video/one-by-one-person-detection.mp4"))
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .arg("--frames")
        .arg(frames.join(","))
        .status()
        .expect("running the reference script");
    assert!(status.success(), "the reference script failed: {status}");
    serde_json::from_slice(&std::fs::read(out.join("reference.json")).unwrap()).unwrap()
}

fn as_candidate(b: &BoxN) -> Candidate {
    Candidate { x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2, score: b.score }
}

#[test]
fn boxes_match_python_onnxruntime_and_counts_match_the_eye() {
    support::init_runtime();
    let model = support::yolox_model();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("yolox-reference");
    let _ = std::fs::remove_dir_all(&out);
    let reference = run_reference(&model, &out);

    let mut yolox = Yolox::load(&DetectorConfig::new(&model)).expect("model loads");
    assert_eq!(yolox.input_size(), (416, 416));
    assert_eq!(yolox.sha256(), offsite_vision::detect::YOLOX_NANO_SHA256, "the model the reference was written for");
    assert!(yolox.model_name().starts_with("yolox_nano.onnx (sha256 "), "{}", yolox.model_name());

    let frames = reference["frames"].as_array().unwrap();
    assert_eq!(frames.len(), WITH_PERSON.len() + EMPTY.len());
    for fr in frames {
        let index = fr["index"].as_u64().unwrap() as u32;
        let (w, h) = (fr["width"].as_u64().unwrap() as u32, fr["height"].as_u64().unwrap() as u32);
        let data = std::fs::read(out.join(fr["file"].as_str().unwrap())).unwrap();
        assert_eq!(data.len(), (w * h * 3) as usize);
        let frame = FrameRef { width: w, height: h, stride: 3 * w as usize, format: PixelFormat::Bgr, data: &data };
        let got = yolox.detect(&frame).unwrap();
        let want: Vec<BoxN> = fr["boxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let f = |k: &str| b[k].as_f64().unwrap() as f32;
                BoxN { x1: f("x1"), y1: f("y1"), x2: f("x2"), y2: f("y2"), score: f("score") }
            })
            .collect();
        assert_eq!(got.len(), want.len(), "frame {index}: rust {got:?}\npython {want:?}");
        for (g, r) in got.iter().zip(&want) {
            let overlap = offsite_vision::detect::iou(&as_candidate(g), &as_candidate(r));
            assert!(overlap >= 0.9, "frame {index}: IoU {overlap}: rust {g:?} python {r:?}");
            assert!((g.score - r.score).abs() <= 0.02, "frame {index}: score rust {} python {}", g.score, r.score);
            assert!(g.x1 >= 0.0 && g.y1 >= 0.0 && g.x2 <= 1.0 && g.y2 <= 1.0 && g.x1 < g.x2 && g.y1 < g.y2);
        }

        // The evidence picture for a person looking at the result (target/tmp/yolox-reference).
        let jpeg = offsite_vision::draw::snapshot_jpeg(&frame, &got, &[], 85).unwrap();
        std::fs::write(out.join(format!("snapshot_{index:05}.jpg")), jpeg).unwrap();

        if WITH_PERSON.contains(&index) {
            assert!(!got.is_empty(), "frame {index} shows a person at the table, none found");
        } else {
            assert!(got.is_empty(), "frame {index} is empty, found {got:?}");
        }

        // The same frame as RGB in rows padded as GStreamer pads them gives the same boxes.
        let stride = 3 * w as usize + 8;
        let mut rgb = vec![0u8; stride * h as usize];
        for y in 0..h as usize {
            for x in 0..w as usize {
                let s = y * 3 * w as usize + 3 * x;
                rgb[y * stride + 3 * x..y * stride + 3 * x + 3].copy_from_slice(&[data[s + 2], data[s + 1], data[s]]);
            }
        }
        let frame = FrameRef { width: w, height: h, stride, format: PixelFormat::Rgb, data: &rgb };
        assert_eq!(yolox.detect(&frame).unwrap(), got, "frame {index} as padded RGB");
    }
}

#[test]
fn a_model_of_another_shape_is_refused_clearly() {
    support::init_runtime();
    // The analytics tier's forecaster is an ONNX model, but not a detector.
    let other = support::workspace().join("models/anomaly");
    let file = std::fs::read_dir(&other)
        .expect("models/anomaly")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "onnx"))
        .expect("an ONNX model in models/anomaly");
    let err = Yolox::load(&DetectorConfig::new(&file)).err().expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("expected [1, 3, H, W]") || msg.contains("expected [1, "), "{msg}");

    let err = Yolox::load(&DetectorConfig::new(support::workspace().join("models/none.onnx"))).err().expect("refused");
    assert!(format!("{err:#}").contains("reading model"), "{err:#}");
}
