//! `offsite nab-score`: score one detector's results on the Numenta Anomaly Benchmark.
//!
//! Example: offsite nab-score --results nab/results/numenta --data nab/data --json

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use offsite_analytics::nab::{run_scoring, CorpusSource, Profile, ScoringReport, ScoringRequest};

#[derive(clap::Args, Debug, Clone)]
pub struct NabScoreArgs {
    /// One detector's results: DIR/<category>/<detector>_<file>.csv (NAB's results/<detector> directory).
    #[arg(long, value_name = "DIR")]
    pub results: PathBuf,
    /// NAB data directory (DIR/<category>/<file>.csv), or the NAB root holding data/ and labels/. Its files
    /// must all be labelled and line up row by row with the results.
    #[arg(long, value_name = "DIR", required_unless_present = "labels")]
    pub data: Option<PathBuf>,
    /// Anomaly windows (combined_windows.json) [default: <data>/../labels/combined_windows.json].
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Also print one JSON line to stdout: normalised score per profile, thresholds, raw scores, counts.
    #[arg(long)]
    pub json: bool,
    /// Score every profile at this threshold (detection: anomaly_score >= F) instead of sweeping for the best.
    #[arg(long, value_name = "F")]
    pub threshold: Option<f64>,
    /// Profiles file (NAB config/profiles.json) [default: standard, reward_low_FP_rate, reward_low_FN_rate].
    #[arg(long, value_name = "FILE")]
    pub profiles: Option<PathBuf>,
}

pub fn run(args: NabScoreArgs) -> Result<()> {
    let mut source = match &args.data {
        Some(data) => CorpusSource::from_path(data)?,
        None => CorpusSource::default(),
    };
    if let Some(labels) = &args.labels {
        source.labels = Some(labels.clone());
    }
    if source.data_dir.is_none() && source.labels.is_none() {
        bail!("give --data DIR or --labels FILE");
    }
    let profiles = match &args.profiles {
        Some(path) => Profile::load(path)?,
        None => Profile::standard_set(),
    };
    let request = ScoringRequest {
        results_dir: args.results.clone(),
        source,
        profiles,
        threshold: args.threshold,
    };
    let report = run_scoring(&request)?;
    print_table(&report)?;
    if args.json {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string(&report.summary_json())?)?;
        out.flush()?;
    }
    Ok(())
}

fn print_table(report: &ScoringReport) -> Result<()> {
    let mut err = std::io::stderr().lock();
    let swept = report.profiles.iter().all(|p| p.swept);
    writeln!(
        err,
        "NAB score of {} on {} files, {} rows, {} windows ({}; loaded in {:.1}s, scored in {:.1}s)",
        report.detector.as_deref().unwrap_or("results"),
        report.files,
        report.rows,
        report.windows,
        if swept {
            "best threshold per profile"
        } else {
            "fixed threshold"
        },
        report.load_seconds,
        report.score_seconds,
    )?;
    writeln!(
        err,
        "{:<20} {:>10} {:>10} {:>14} {:>5} {:>5} {:>6}",
        "profile", "normalised", "raw", "threshold", "TP", "FN", "FP"
    )?;
    for p in &report.profiles {
        let t = &p.score.totals;
        writeln!(
            err,
            "{:<20} {:>10.2} {:>10.3} {:>14.10} {:>5} {:>5} {:>6}",
            p.profile.name,
            p.score.normalized,
            p.score.raw,
            p.score.threshold,
            t.windows_detected,
            t.windows_missed(),
            t.fp,
        )?;
    }
    writeln!(
        err,
        "TP/FN: windows detected/missed; FP: detections outside windows (after the probationary period)"
    )?;
    if !report.ignored_results.is_empty() {
        writeln!(
            err,
            "ignored {} results file(s) matching no labelled file:",
            report.ignored_results.len()
        )?;
        for p in &report.ignored_results {
            writeln!(err, "  {}", p.display())?;
        }
    }
    if !report.unlabelled_data.is_empty() {
        writeln!(err, "not scored (no labels): {}", report.unlabelled_data.join(", "))?;
    }
    Ok(())
}
