//! The detector on frames exactly as the camera pipeline feeds it: decoded and scaled to the model's
//! width in BGR by GStreamer (camera::media::decode_frames, the detect branch's elements), then
//! compared with Python onnxruntime on the very same pixels (vision/reference/yolox_reference.py
//! --frames-dir). vision/tests/reference.rs does the same on frames OpenCV decoded at full size;
//! this one proves that GStreamer's decoding and scaling keep the people visible to the model.

use std::path::{Path, PathBuf};
use std::process::Command;

use offsite_edge_agent::camera::media::{self, decode_frames};
use offsite_vision::detect::{iou, Candidate, DetectorConfig, Yolox};
use offsite_wire::BoxN;
use serde_json::Value;

/// Frames of one-by-one-person-detection.mp4 looked at by eye (the same as the vision test's).
const WITH_PERSON: [u64; 4] = [140, 350, 630, 1050];
const EMPTY: [u64; 4] = [0, 210, 490, 910];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn candidate(b: &BoxN) -> Candidate {
    Candidate {
        x1: b.x1,
        y1: b.y1,
        x2: b.x2,
        y2: b.y2,
        score: b.score,
    }
}

#[test]
fn boxes_on_gstreamer_decoded_frames_match_python_onnxruntime_and_the_eye() {
    let ws = workspace();
    let clip = ws.join("../shared/data/video/one-by-one-person-detection.mp4");
    assert!(
        clip.is_file(),
        "test material missing: {} (see ../shared/README.md)",
        clip.display()
    );
    let model = ws.join(offsite_vision::detect::YOLOX_NANO_PATH);
    assert!(
        model.is_file(),
        "{} is missing: run scripts/setup.sh",
        model.display()
    );
    let python = ws.join("vision/reference/.venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup.sh",
        python.display()
    );
    let lib = ws
        .join(std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH (set by .cargo/config.toml)"));
    offsite_vision::detect::init_runtime(&lib).expect("ONNX Runtime loads");
    let mut yolox = Yolox::load(&DetectorConfig::new(&model)).expect("model loads");
    let (input_w, _) = yolox.input_size();

    let wanted: Vec<u64> = WITH_PERSON.iter().chain(&EMPTY).copied().collect();
    let frames = decode_frames(&clip, input_w, |i| wanted.contains(&i), wanted.len())
        .expect("decoding the clip");
    assert_eq!(frames.len(), wanted.len(), "the clip is long enough");

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gst-reference");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in &frames {
        assert_eq!(f.width, input_w, "scaled to the model's width as the detect branch does");
    }
    media::write_frames(&dir, &frames).unwrap();
    let status = Command::new(&python)
        .arg(ws.join("vision/reference/yolox_reference.py"))
        .args([
            "--frames-dir".as_ref(),
            dir.as_os_str(),
            "--out".as_ref(),
            dir.as_os_str(),
        ])
        .arg("--model")
        .arg(&model)
        .status()
        .expect("running the reference script");
    assert!(status.success(), "the reference script failed: {status}");
    let reference: Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();

    for (f, r) in frames.iter().zip(reference["frames"].as_array().unwrap()) {
        assert_eq!(r["index"].as_u64(), Some(f.index));
        let got = yolox.detect(&f.as_ref()).unwrap();
        let want: Vec<BoxN> = r["boxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let v = |k: &str| b[k].as_f64().unwrap() as f32;
                BoxN {
                    x1: v("x1"),
                    y1: v("y1"),
                    x2: v("x2"),
                    y2: v("y2"),
                    score: v("score"),
                }
            })
            .collect();
        let i = f.index;
        assert_eq!(
            got.len(),
            want.len(),
            "frame {i}: rust {got:?}\npython {want:?}"
        );
        for (g, w) in got.iter().zip(&want) {
            let overlap = iou(&candidate(g), &candidate(w));
            assert!(
                overlap >= 0.9,
                "frame {i}: IoU {overlap}: rust {g:?} python {w:?}"
            );
            assert!(
                (g.score - w.score).abs() <= 0.02,
                "frame {i}: score rust {} python {}",
                g.score,
                w.score
            );
        }
        if WITH_PERSON.contains(&i) {
            assert!(
                !got.is_empty(),
                "frame {i} shows a person at the table; none found after GStreamer's scaling"
            );
        } else {
            assert!(got.is_empty(), "frame {i} is empty, found {got:?}");
        }
    }
}
