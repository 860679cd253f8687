//! `offsite backtest`: recorded series through the live detector chain, NAB-layout results out.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use offsite_analytics::backtest;

use crate::detectors;

#[derive(Args)]
pub struct BacktestArgs {
    /// A CSV file (`timestamp,value`) or a directory in NAB layout (`DIR/<category>/<file>.csv`).
    #[arg(long)]
    input: PathBuf,
    /// Where results go: `<out>/<category>/<detector>_<file>.csv`.
    #[arg(long)]
    out: PathBuf,
    /// One detector instead of the default chain (see `offsite backtest --help`): anomaly, anomaly-naive.
    #[arg(long)]
    detector: Option<String>,
    /// NAB `combined_windows.json`, only to fill the `label` column (never read while detecting).
    #[arg(long)]
    labels: Option<PathBuf>,
}

pub fn run(a: BacktestArgs) -> Result<()> {
    let paths = backtest::discover(&a.input)?;
    let mut files = Vec::new();
    for p in &paths {
        files.push(backtest::read_input(&a.input, p)?);
    }
    let (name, mut chain) = detectors::build(a.detector.as_deref())?;
    let total: u64 = files.iter().map(|f| f.timestamps.len() as u64).sum();
    eprintln!("backtest: {} file(s), {total} rows, detector {name}", files.len());
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let t0 = std::time::Instant::now();
    let results = backtest::run(&mut chain, &files, |n| {
        if n % 4096 < files.len() as u64 {
            bar.set_position(n)
        }
    });
    bar.finish_and_clear();
    let labels = match &a.labels {
        Some(p) => Some(backtest::read_labels(p)?),
        None => None,
    };
    for (f, r) in files.iter().zip(&results) {
        let key = f.relative.to_string_lossy().replace('\\', "/");
        let windows = labels.as_ref().and_then(|l| l.get(&key)).map(Vec::as_slice);
        if labels.is_some() && windows.is_none() {
            bail!("{key} is not in the labels file");
        }
        backtest::write_result(&a.out, &name, f, r, windows)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("backtest: {total} rows in {secs:.1} s ({:.0} rows/s); results in {}", total as f64 / secs, a.out.display());
    Ok(())
}
