//! Backtest: runs recorded series through the same detector chain the live stream uses and writes
//! NAB-layout results (`<out>/<category>/<detector>_<file>.csv`: `timestamp,value,anomaly_score,label,warning`).
//!
//! Every input file is its own series, and all files advance together one row per step, so the
//! detectors see what they see live: batches of many series, each in time order. Labels are only
//! read to fill the output's `label` column, after detection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::chain::Chain;
use crate::detector::{Observation, SeriesKey, SeriesMeta};

/// One input file, read whole (timestamps and values kept as written, for verbatim output).
pub struct InputFile {
    /// Path relative to the input root, e.g. `realKnownCause/nyc_taxi.csv` (just the name for a single file).
    pub relative: PathBuf,
    pub timestamps: Vec<String>,
    pub values: Vec<String>,
    parsed: Vec<(DateTime<Utc>, f64)>,
}

/// Finds the CSV files to run: `input` itself if it is a file, else `input/<category>/*.csv`
/// (and CSVs directly in `input`), sorted.
pub fn discover(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(input).with_context(|| format!("reading {}", input.display()))? {
        let p = e?.path();
        if p.is_dir() {
            for f in std::fs::read_dir(&p)? {
                let f = f?.path();
                if f.extension().is_some_and(|x| x == "csv") {
                    out.push(f);
                }
            }
        } else if p.extension().is_some_and(|x| x == "csv") {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("no CSV files under {}", input.display());
    }
    Ok(out)
}

pub fn read_input(root: &Path, path: &Path) -> Result<InputFile> {
    let relative = if root.is_file() {
        PathBuf::from(path.file_name().context("file name")?)
    } else {
        path.strip_prefix(root).unwrap_or(path).to_path_buf()
    };
    let mut rdr = csv::ReaderBuilder::new().from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let headers = rdr.headers()?.clone();
    let ti = headers.iter().position(|h| h == "timestamp").with_context(|| format!("{}: no timestamp column", path.display()))?;
    let vi = headers.iter().position(|h| h == "value").with_context(|| format!("{}: no value column", path.display()))?;
    let (mut timestamps, mut values, mut parsed) = (Vec::new(), Vec::new(), Vec::new());
    for (n, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: row {}", path.display(), n + 2))?;
        let (t, v) = (rec.get(ti).unwrap_or(""), rec.get(vi).unwrap_or(""));
        let ts = parse_time(t).with_context(|| format!("{}: row {}: bad timestamp {t:?}", path.display(), n + 2))?;
        // A value that does not parse is fed as NaN (detectors ignore it) but still written back verbatim.
        parsed.push((ts, v.trim().parse::<f64>().unwrap_or(f64::NAN)));
        timestamps.push(t.to_owned());
        values.push(v.to_owned());
    }
    Ok(InputFile { relative, timestamps, values, parsed })
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let n: i64 = s.parse().ok()?;
    if n.abs() > 100_000_000_000 {
        DateTime::from_timestamp_millis(n)
    } else {
        DateTime::from_timestamp(n, 0)
    }
}

/// Label windows per file (`category/file.csv` -> [(start, end)]), NAB's combined_windows.json.
pub fn read_labels(path: &Path) -> Result<HashMap<String, Vec<(DateTime<Utc>, DateTime<Utc>)>>> {
    let v: HashMap<String, Vec<Vec<String>>> =
        serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("parsing {}", path.display()))?;
    let mut out = HashMap::new();
    for (k, ws) in v {
        let mut list = Vec::new();
        for w in ws {
            if w.len() != 2 {
                bail!("{}: window of {k} is not [start, end]", path.display());
            }
            let s = parse_time(&w[0]).with_context(|| format!("bad window start {:?}", w[0]))?;
            let e = parse_time(&w[1]).with_context(|| format!("bad window end {:?}", w[1]))?;
            list.push((s, e));
        }
        out.insert(k, list);
    }
    Ok(out)
}

/// Per-row results of one file.
pub struct FileResult {
    pub scores: Vec<f64>,
    pub warnings: Vec<bool>,
}

/// Runs all files through `chain` together, one row of each per step. `progress` is called with
/// the number of rows done after each step.
pub fn run(chain: &mut Chain, files: &[InputFile], mut progress: impl FnMut(u64)) -> Vec<FileResult> {
    let metas: Vec<Arc<SeriesMeta>> = files
        .iter()
        .map(|f| Arc::new(SeriesMeta { device_id: "backtest".into(), metric_key: f.relative.display().to_string(), object_id: None, class: None }))
        .collect();
    let mut results: Vec<FileResult> =
        files.iter().map(|f| FileResult { scores: Vec::with_capacity(f.parsed.len()), warnings: Vec::with_capacity(f.parsed.len()) }).collect();
    let longest = files.iter().map(|f| f.parsed.len()).max().unwrap_or(0);
    let mut batch = Vec::with_capacity(files.len());
    let mut owners = Vec::with_capacity(files.len());
    let mut done = 0u64;
    for row in 0..longest {
        batch.clear();
        owners.clear();
        for (i, f) in files.iter().enumerate() {
            if let Some(&(ts, value)) = f.parsed.get(row) {
                if value.is_nan() {
                    // Nothing to learn from; scored 0.
                    results[i].scores.push(0.0);
                    results[i].warnings.push(false);
                    continue;
                }
                batch.push(Observation { key: SeriesKey { device: i as i32, metric: 0 }, meta: metas[i].clone(), ts, value, quality: 0 });
                owners.push(i);
            }
        }
        for (o, &i) in chain.observe(&batch).into_iter().zip(&owners) {
            results[i].scores.push(o.score);
            results[i].warnings.push(o.raised());
        }
        done += (batch.len()) as u64;
        progress(done);
    }
    results
}

/// Writes `<out>/<category>/<detector>_<file>.csv` for one input file.
pub fn write_result(
    out: &Path,
    detector: &str,
    f: &InputFile,
    r: &FileResult,
    windows: Option<&[(DateTime<Utc>, DateTime<Utc>)]>,
) -> Result<PathBuf> {
    let file_name = f.relative.file_name().context("file name")?.to_string_lossy().into_owned();
    let dir = match f.relative.parent() {
        Some(p) if !p.as_os_str().is_empty() => out.join(p),
        _ => out.to_path_buf(),
    };
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{detector}_{file_name}"));
    let mut w = csv::Writer::from_path(&path)?;
    w.write_record(["timestamp", "value", "anomaly_score", "label", "warning"])?;
    for (i, ((t, v), (s, warn))) in
        f.timestamps.iter().zip(&f.values).zip(r.scores.iter().zip(&r.warnings)).enumerate()
    {
        let ts = f.parsed[i].0;
        let label = windows.is_some_and(|ws| ws.iter().any(|(a, b)| *a <= ts && ts <= *b));
        w.write_record([t.as_str(), v.as_str(), &format!("{s}"), if label { "1" } else { "0" }, if *warn { "1" } else { "0" }])?;
    }
    w.flush()?;
    Ok(path)
}
