//! `offsite backtest` and `offsite nab-score` as a user runs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use offsite_tests::offsite_bin;
use serde_json::Value;

fn nab() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/nab")
}

#[test]
fn backtest_writes_one_verbatim_row_per_input_row_and_nothing_else() {
    if !nab().exists() {
        eprintln!("skipped: NAB data not present");
        return;
    }
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // Two real files in NAB layout, plus one with an unusual but valid shape.
    for (cat, f) in [("realKnownCause", "nyc_taxi.csv"), ("artificialWithAnomaly", "art_daily_jumpsup.csv")] {
        std::fs::create_dir_all(input.path().join(cat)).unwrap();
        std::fs::copy(nab().join("data").join(cat).join(f), input.path().join(cat).join(f)).unwrap();
    }
    let status = Command::new(offsite_bin())
        .args(["backtest", "--input"])
        .arg(input.path())
        .arg("--out")
        .arg(out.path())
        .arg("--labels")
        .arg(nab().join("labels/combined_windows.json"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut written: Vec<String> = walk(out.path()).iter().map(|p| p.strip_prefix(out.path()).unwrap().display().to_string()).collect();
    written.sort();
    assert_eq!(written, vec!["artificialWithAnomaly/offsite_art_daily_jumpsup.csv", "realKnownCause/offsite_nyc_taxi.csv"]);
    let src = std::fs::read_to_string(input.path().join("realKnownCause/nyc_taxi.csv")).unwrap();
    let res = std::fs::read_to_string(out.path().join("realKnownCause/offsite_nyc_taxi.csv")).unwrap();
    let mut res_lines = res.lines();
    assert_eq!(res_lines.next(), Some("timestamp,value,anomaly_score,label,warning"));
    let src_lines: Vec<&str> = src.lines().skip(1).collect();
    let res_lines: Vec<&str> = res_lines.collect();
    assert_eq!(src_lines.len(), res_lines.len(), "one output row per input row");
    let mut labelled = 0;
    for (s, r) in src_lines.iter().zip(&res_lines) {
        let f: Vec<&str> = r.split(',').collect();
        assert_eq!(format!("{},{}", f[0], f[1]), *s, "timestamp and value copied verbatim, in order");
        let score: f64 = f[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&score));
        assert!(f[3] == "0" || f[3] == "1");
        labelled += (f[3] == "1") as usize;
        assert!(f[4] == "0" || f[4] == "1");
    }
    assert!(labelled > 0, "labels from --labels fill the label column");
}

#[test]
fn nab_score_reproduces_numenta_reference_figures() {
    if !nab().exists() {
        eprintln!("skipped: NAB data not present");
        return;
    }
    let out = Command::new(offsite_bin())
        .args(["nab-score", "--results"])
        .arg(nab().join("reference-results/numenta"))
        .arg("--data")
        .arg(nab())
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().to_owned();
    let v: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["standard"].as_f64(), Some(70.10));
    assert_eq!(v["reward_low_FP_rate"].as_f64(), Some(63.21));
    assert_eq!(v["reward_low_FN_rate"].as_f64(), Some(74.32));
    assert!(v["thresholds"]["standard"].as_f64().is_some());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
