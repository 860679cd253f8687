//! NAB scorer against NAB's own published numbers for the Numenta HTM detector.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use offsite_analytics::nab::{run_scoring, Corpus, CorpusSource, Profile, ScoringRequest};

fn nab_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/nab");
    if dir.join("reference-results/numenta").is_dir() && dir.join("labels/combined_windows.json").is_file() {
        Some(dir)
    } else {
        println!("skipping: NAB data not found at {}", dir.display());
        None
    }
}

fn source(nab: &Path) -> CorpusSource {
    CorpusSource {
        data_dir: Some(nab.join("data")),
        labels: Some(nab.join("labels/combined_windows.json")),
    }
}

/// The Numenta results, loaded once for all tests of this binary.
fn numenta() -> Option<&'static Corpus> {
    static CORPUS: OnceLock<Option<Corpus>> = OnceLock::new();
    CORPUS
        .get_or_init(|| {
            let nab = nab_dir()?;
            let started = Instant::now();
            let corpus = Corpus::load(&nab.join("reference-results/numenta"), &source(&nab)).expect("load corpus");
            println!(
                "loaded {} files, {} rows in {:.2?}",
                corpus.files.len(),
                corpus.rows(),
                started.elapsed()
            );
            Some(corpus)
        })
        .as_ref()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn recorded_threshold(nab: &Path, profile: &str) -> f64 {
    let text = std::fs::read_to_string(nab.join("config/thresholds.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["numenta"][profile]["threshold"].as_f64().unwrap()
}

struct TableRow {
    threshold: f64,
    score: f64,
    counts: [usize; 4], // TP, TN, FP, FN
}

/// `numenta_<profile>_scores.csv`: file -> row, plus the Totals score.
fn reference_table(nab: &Path, profile: &str) -> (BTreeMap<String, TableRow>, f64) {
    let path = nab.join(format!("reference-results/numenta/numenta_{profile}_scores.csv"));
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let mut rows = BTreeMap::new();
    let mut total = f64::NAN;
    for rec in reader.records() {
        let rec = rec.unwrap();
        if &rec[0] == "Totals" {
            total = rec[4].parse().unwrap();
            continue;
        }
        let count = |i: usize| rec[i].parse::<usize>().unwrap();
        rows.insert(
            rec[2].to_string(),
            TableRow {
                threshold: rec[3].parse().unwrap(),
                score: rec[4].parse().unwrap(),
                counts: [count(5), count(6), count(7), count(8)],
            },
        );
    }
    (rows, total)
}

const EXPECTED_AT_RECORDED: [(&str, f64); 3] = [
    ("standard", 70.10),
    ("reward_low_FP_rate", 63.12),
    ("reward_low_FN_rate", 74.32),
];
const EXPECTED_SWEPT: [(&str, f64); 3] = [
    ("standard", 70.10),
    ("reward_low_FP_rate", 63.21),
    ("reward_low_FN_rate", 74.32),
];

fn profile(name: &str) -> Profile {
    Profile::standard_set().into_iter().find(|p| p.name == name).unwrap()
}

#[test]
fn profiles_file_matches_builtin_set() {
    let Some(nab) = nab_dir() else { return };
    assert_eq!(
        Profile::load(&nab.join("config/profiles.json")).unwrap(),
        Profile::standard_set()
    );
}

#[test]
fn numenta_at_recorded_thresholds_reproduces_nab_tables() {
    let (Some(nab), Some(corpus)) = (nab_dir(), numenta()) else {
        return;
    };
    assert_eq!(corpus.files.len(), 58);
    assert_eq!(corpus.total_windows, 116);
    assert_eq!(corpus.detector.as_deref(), Some("numenta"));
    for (name, expected) in EXPECTED_AT_RECORDED {
        let p = profile(name);
        let threshold = recorded_threshold(&nab, name);
        let score = corpus.score(&p, threshold);
        let (table, table_total) = reference_table(&nab, name);
        assert_eq!(table.len(), 58, "{name}");
        let mut worst: f64 = 0.0;
        for (file, s) in &score.per_file {
            let row = table
                .get(file)
                .unwrap_or_else(|| panic!("{name}: {file} missing from NAB's table"));
            assert_eq!(row.threshold, threshold, "{name} {file}");
            assert_eq!(
                round2(s.raw),
                round2(row.score),
                "{name} {file}: ours {} NAB {}",
                s.raw,
                row.score
            );
            assert_eq!([s.tp, s.tn, s.fp, s.fn_], row.counts, "{name} {file}: TP/TN/FP/FN");
            worst = worst.max((s.raw - row.score).abs());
        }
        assert!(worst < 1e-9, "{name}: largest per-file difference {worst}");
        assert!(
            (score.raw - table_total).abs() < 1e-9,
            "{name}: raw {} NAB {}",
            score.raw,
            table_total
        );
        assert_eq!(
            round2(score.normalized),
            expected,
            "{name}: normalised {}",
            score.normalized
        );
        println!(
            "{name}: threshold {threshold} raw {:.6} normalised {:.4}",
            score.raw, score.normalized
        );
    }
}

#[test]
fn numenta_sweep_finds_nab_optimum() {
    let (Some(_), Some(corpus)) = (nab_dir(), numenta()) else {
        return;
    };
    let started = Instant::now();
    let points = corpus.sweep_points();
    println!("sweep preparation ({} points): {:.2?}", points.len(), started.elapsed());
    for (name, expected) in EXPECTED_SWEPT {
        let p = profile(name);
        let t0 = Instant::now();
        let choice = points.optimize(&p);
        let sweep_time = t0.elapsed();
        let score = corpus.score(&p, choice.threshold);
        assert!(
            (score.raw - choice.raw).abs() < 1e-9,
            "{name}: sweep {} rescored {}",
            choice.raw,
            score.raw
        );
        assert_eq!(
            round2(score.normalized),
            expected,
            "{name}: normalised {}",
            score.normalized
        );
        println!(
            "{name}: best threshold {} over {} candidates, raw {:.6}, normalised {:.4} (sweep {:.2?})",
            choice.threshold, choice.candidates, choice.raw, score.normalized, sweep_time
        );
    }
    println!("full sweep, 3 profiles: {:.2?}", started.elapsed());
}

#[test]
fn run_scoring_end_to_end() {
    let Some(nab) = nab_dir() else { return };
    // The NAB root is accepted as the corpus source too.
    let request = ScoringRequest::new(
        nab.join("reference-results/numenta"),
        CorpusSource::from_path(&nab).unwrap(),
    );
    let report = run_scoring(&request).unwrap();
    let json = report.summary_json();
    for (name, expected) in EXPECTED_SWEPT {
        assert_eq!(json[name].as_f64(), Some(expected), "{json}");
        assert!(json["thresholds"][name].as_f64().is_some());
        assert!(json["raw"][name].as_f64().is_some());
    }
    assert_eq!(json["files"], 58);
    assert_eq!(json["windows"], 116);
    assert_eq!(json["detector"], "numenta");
    println!("load {:.2}s, score {:.2}s", report.load_seconds, report.score_seconds);

    let fixed = run_scoring(&ScoringRequest {
        threshold: Some(recorded_threshold(&nab, "standard")),
        ..request
    })
    .unwrap();
    assert_eq!(fixed.summary_json()["standard"].as_f64(), Some(70.10));
    assert_eq!(fixed.summary_json()["swept"], false);
}

/// A tiny corpus on disk: category `c`, data files `x.csv` and `a_x.csv` (a suffix clash).
fn tiny_corpus(dir: &Path) -> CorpusSource {
    let mut data = String::from("timestamp,value\n");
    let mut results = String::from("timestamp,value,anomaly_score,label\n");
    for i in 0..200 {
        let ts = format!("2015-01-01 {:02}:{:02}:00", i / 60, i % 60);
        data.push_str(&format!("{ts},1\n"));
        let score = if i == 150 { 0.9 } else { 0.1 };
        results.push_str(&format!("{ts},1,{score},0\n"));
    }
    std::fs::create_dir_all(dir.join("data/c")).unwrap();
    std::fs::write(dir.join("data/c/x.csv"), &data).unwrap();
    std::fs::write(dir.join("data/c/a_x.csv"), &data).unwrap();
    std::fs::create_dir_all(dir.join("labels")).unwrap();
    std::fs::write(
        dir.join("labels/combined_windows.json"),
        r#"{"c/x.csv": [["2015-01-01 02:30:00.000000", "2015-01-01 02:39:00.000000"]], "c/a_x.csv": []}"#,
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("results/det/c")).unwrap();
    std::fs::write(dir.join("results/det/c/det_x.csv"), &results).unwrap();
    std::fs::write(dir.join("results/det/c/det_a_x.csv"), &results).unwrap();
    // Ignored: NAB's score tables at the top level, non-CSV files.
    std::fs::write(dir.join("results/det/det_standard_scores.csv"), "garbage").unwrap();
    std::fs::write(dir.join("results/det/c/notes.txt"), "garbage").unwrap();
    CorpusSource::from_path(&dir.join("data")).unwrap()
}

#[test]
fn results_are_matched_by_suffix() {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_corpus(dir.path());
    let corpus = Corpus::load(&dir.path().join("results/det"), &source).unwrap();
    assert_eq!(corpus.files.len(), 2);
    assert_eq!(corpus.detector.as_deref(), Some("det"));
    let x = corpus.files.iter().find(|f| f.name == "c/x.csv").unwrap();
    assert!(x.results_path.ends_with("det_x.csv"));
    let s = corpus.score(&Profile::standard(), 0.5);
    let per_file: BTreeMap<&str, f64> = s.per_file.iter().map(|(n, f)| (n.as_str(), f.raw)).collect();
    // c/x.csv: row 150 is the first row of the window (rows 150..=159): a full true positive.
    assert!((per_file["c/x.csv"] - 1.0).abs() < 1e-12, "{per_file:?}");
    // c/a_x.csv has no window: the same detection is a false positive with no window before it.
    assert!((per_file["c/a_x.csv"] + 0.11).abs() < 1e-12, "{per_file:?}");
    assert!(
        (s.normalized - 100.0 * (0.89 + 1.0) / 2.0).abs() < 1e-9,
        "{}",
        s.normalized
    );

    // A second results file for the same data file is an error.
    std::fs::copy(
        dir.path().join("results/det/c/det_x.csv"),
        dir.path().join("results/det/c/other_x.csv"),
    )
    .unwrap();
    let err = Corpus::load(&dir.path().join("results/det"), &source)
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 results files for c/x.csv"), "{err}");
    std::fs::remove_file(dir.path().join("results/det/c/other_x.csv")).unwrap();

    // A missing one too.
    std::fs::remove_file(dir.path().join("results/det/c/det_a_x.csv")).unwrap();
    let err = Corpus::load(&dir.path().join("results/det"), &source)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no results file for c/a_x.csv"), "{err}");
}

#[test]
fn results_must_line_up_with_data() {
    let dir = tempfile::tempdir().unwrap();
    let source = tiny_corpus(dir.path());
    let path = dir.path().join("results/det/c/det_x.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let truncated: Vec<&str> = text.lines().take(100).collect();
    std::fs::write(&path, truncated.join("\n")).unwrap();
    let err = format!(
        "{:#}",
        Corpus::load(&dir.path().join("results/det"), &source).unwrap_err()
    );
    assert!(err.contains("99 rows") && err.contains("200"), "{err}");
    // Without a data directory the labels alone define the corpus, and the window falls outside the rows.
    let labels_only = CorpusSource {
        data_dir: None,
        labels: source
            .labels
            .clone()
            .or(Some(dir.path().join("labels/combined_windows.json"))),
    };
    let err = format!(
        "{:#}",
        Corpus::load(&dir.path().join("results/det"), &labels_only).unwrap_err()
    );
    assert!(err.contains("covers no row"), "{err}");
}
