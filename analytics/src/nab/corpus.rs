//! A detector's results over the NAB corpus: loading, scoring at a threshold, and NAB's threshold sweep.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::labels::{Window, Windows};
use super::profile::Profile;
use super::results::{read_data_timestamps, ResultFile};
use super::score::{scaled_sigmoid, FileScore, Layout, RowValue};

/// Where the corpus (the labelled files) comes from.
#[derive(Debug, Clone, Default)]
pub struct CorpusSource {
    /// NAB `data/` directory (`<data>/<category>/<file>.csv`). When given, every labelled file must exist
    /// there and its rows must line up with the results rows.
    pub data_dir: Option<PathBuf>,
    /// `combined_windows.json`. Defaults to `<data>/../labels/combined_windows.json`.
    pub labels: Option<PathBuf>,
}

impl CorpusSource {
    /// Interpret one path: a labels JSON file, a NAB root (holding `data/` and `labels/`), or a NAB `data/`
    /// directory next to `labels/`.
    pub fn from_path(path: &Path) -> Result<CorpusSource> {
        if path.is_file() {
            return Ok(CorpusSource {
                data_dir: None,
                labels: Some(path.to_path_buf()),
            });
        }
        if !path.is_dir() {
            bail!("{} is neither a labels file nor a directory", path.display());
        }
        let root_labels = path.join("labels").join("combined_windows.json");
        if path.join("data").is_dir() && root_labels.is_file() {
            return Ok(CorpusSource {
                data_dir: Some(path.join("data")),
                labels: Some(root_labels),
            });
        }
        Ok(CorpusSource {
            data_dir: Some(path.to_path_buf()),
            labels: None,
        })
    }

    fn labels_path(&self) -> Result<PathBuf> {
        if let Some(l) = &self.labels {
            return Ok(l.clone());
        }
        let Some(data) = &self.data_dir else {
            bail!("neither a labels file nor a data directory given");
        };
        let guess = data.join("..").join("labels").join("combined_windows.json");
        if !guess.is_file() {
            bail!("no labels file given and {} does not exist", guess.display());
        }
        Ok(guess)
    }
}

/// One labelled file with its results.
#[derive(Debug, Clone)]
pub struct CorpusFile {
    /// `"<category>/<file>.csv"`.
    pub name: String,
    pub results_path: PathBuf,
    pub windows: Vec<Window>,
    /// Anomaly scores, one per row.
    pub scores: Vec<f64>,
    pub(crate) layout: Layout,
}

impl CorpusFile {
    /// Build from a results file already in memory.
    pub fn new(name: impl Into<String>, results: &ResultFile, windows: &[Window]) -> Result<CorpusFile> {
        let name = name.into();
        let timestamps: Vec<_> = results.rows.iter().map(|r| r.0).collect();
        let layout = Layout::new(&timestamps, windows).with_context(|| format!("{name}: mapping windows to rows"))?;
        Ok(CorpusFile {
            name,
            results_path: PathBuf::new(),
            windows: windows.to_vec(),
            scores: results.rows.iter().map(|r| r.1).collect(),
            layout,
        })
    }

    pub fn rows(&self) -> usize {
        self.scores.len()
    }

    pub fn score(&self, profile: &Profile, threshold: f64) -> FileScore {
        self.layout.score(&self.scores, profile, threshold)
    }
}

/// A detector's results matched to the labelled corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Detector name (the results files' common prefix), when they agree.
    pub detector: Option<String>,
    pub files: Vec<CorpusFile>,
    /// Windows in the labels of the scored files (NAB's "perfect" count).
    pub total_windows: usize,
    /// Results CSVs under a category that matched no labelled file (ignored).
    pub ignored_results: Vec<PathBuf>,
    /// Data files without labels (ignored).
    pub unlabelled_data: Vec<String>,
}

/// Corpus score for one profile at one threshold.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusScore {
    pub threshold: f64,
    pub raw: f64,
    /// `100 * (raw - null) / (perfect - null)`.
    pub normalized: f64,
    /// Raw score of a detector that never fires: `-fnWeight` per counted window.
    pub null_raw: f64,
    /// `tpWeight` per labelled window.
    pub perfect_raw: f64,
    /// Sum over files (rows, as in NAB's tables).
    pub totals: FileScore,
    pub per_file: Vec<(String, FileScore)>,
}

/// Result of NAB's threshold sweep for one profile.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ThresholdChoice {
    /// The best threshold: one of the anomaly scores (detections are `score >= threshold`), or a value above
    /// every score (1.1, as NAB) when never firing is best.
    pub threshold: f64,
    /// Corpus raw score at that threshold.
    pub raw: f64,
    /// Number of distinct thresholds evaluated (including "no detection").
    pub candidates: usize,
}

impl Corpus {
    /// Load `<results>/<category>/<detector>_<file>.csv` for every labelled file.
    pub fn load(results_dir: &Path, source: &CorpusSource) -> Result<Corpus> {
        let labels_path = source.labels_path()?;
        let windows = Windows::load(&labels_path)?;
        if windows.is_empty() {
            bail!("labels file {} lists no file", labels_path.display());
        }
        if !results_dir.is_dir() {
            bail!("results directory {} does not exist", results_dir.display());
        }

        // Data files: every labelled one must exist; unlabelled ones are reported and skipped.
        let mut unlabelled_data = Vec::new();
        if let Some(data_dir) = &source.data_dir {
            let data_files = list_category_csvs(data_dir)?;
            let names: BTreeSet<String> = data_files.iter().map(|(c, f, _)| format!("{c}/{f}")).collect();
            let missing: Vec<&str> = windows.files().filter(|k| !names.contains(*k)).collect();
            if !missing.is_empty() {
                bail!(
                    "{} labelled file(s) missing from data directory {}: {}",
                    missing.len(),
                    data_dir.display(),
                    missing.join(", ")
                );
            }
            unlabelled_data = names.into_iter().filter(|n| windows.get(n).is_none()).collect();
            for n in &unlabelled_data {
                tracing::warn!(file = %n, "data file has no labels; not scored");
            }
        }

        // Match results files to labelled files by the `_<file>.csv` suffix, the longest match winning.
        let results = list_category_csvs(results_dir)?;
        let mut matched: BTreeMap<&str, Vec<(&PathBuf, String)>> = BTreeMap::new();
        let mut ignored_results = Vec::new();
        for (category, file, path) in &results {
            let best = windows
                .files()
                .filter_map(|key| {
                    let (cat, data_file) = key.split_once('/')?;
                    let suffix = format!("_{data_file}");
                    (cat == category && file.len() > suffix.len() && file.ends_with(&suffix)).then_some((key, suffix))
                })
                .max_by_key(|(_, suffix)| suffix.len());
            match best {
                Some((key, suffix)) => {
                    let detector = file[..file.len() - suffix.len()].to_string();
                    matched.entry(key).or_default().push((path, detector));
                }
                None => ignored_results.push(path.clone()),
            }
        }
        for p in &ignored_results {
            tracing::warn!(path = %p.display(), "results file matches no labelled file; ignored");
        }

        let mut problems = Vec::new();
        for key in windows.files() {
            match matched.get(key).map(|v| v.as_slice()) {
                None | Some([]) => problems.push(format!("no results file for {key}")),
                Some([_]) => {}
                Some(many) => problems.push(format!(
                    "{} results files for {key}: {}",
                    many.len(),
                    many.iter()
                        .map(|(p, _)| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        if !problems.is_empty() {
            let mut msg = format!(
                "results directory {} does not match the corpus (expected <results>/<category>/<detector>_<file>.csv):\n  {}",
                results_dir.display(),
                problems.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
            );
            if problems.len() > 20 {
                msg.push_str(&format!("\n  ... and {} more", problems.len() - 20));
            }
            if matched.is_empty() {
                msg.push_str(
                    "\nno results file matched at all: pass one detector's directory (e.g. results/numenta), \
                     not the results root",
                );
            }
            bail!(msg);
        }

        let detectors: BTreeSet<&str> = matched
            .values()
            .flat_map(|v| v.iter().map(|(_, d)| d.as_str()))
            .collect();
        let detector = (detectors.len() == 1).then(|| detectors.iter().next().unwrap().to_string());

        let jobs: Vec<(&str, &PathBuf)> = windows.files().map(|k| (k, matched[k][0].0)).collect();
        let data_dir = source.data_dir.as_deref();
        let load_one = |(key, path): (&str, &PathBuf)| -> Result<CorpusFile> {
            let results = ResultFile::read(path)?;
            if let Some(data_dir) = data_dir {
                let data_path = data_dir.join(key);
                let data_ts = read_data_timestamps(&data_path)?;
                if data_ts.len() != results.len() {
                    bail!(
                        "{} has {} rows but data file {} has {}",
                        path.display(),
                        results.len(),
                        data_path.display(),
                        data_ts.len()
                    );
                }
                if let Some(i) = (0..data_ts.len()).find(|&i| data_ts[i] != results.rows[i].0) {
                    bail!(
                        "{} row {} has timestamp {} but data file {} has {}",
                        path.display(),
                        i + 1,
                        results.rows[i].0,
                        data_path.display(),
                        data_ts[i]
                    );
                }
            }
            let mut file = CorpusFile::new(key, &results, windows.get(key).unwrap_or(&[]))
                .with_context(|| format!("results file {}", path.display()))?;
            file.results_path = path.clone();
            Ok(file)
        };
        let files = load_parallel(jobs, load_one)?;
        let total_windows = files.iter().map(|f| f.windows.len()).sum();
        Ok(Corpus {
            detector,
            files,
            total_windows,
            ignored_results,
            unlabelled_data,
        })
    }

    /// Build from files already in memory.
    pub fn from_files(files: Vec<CorpusFile>) -> Corpus {
        let total_windows = files.iter().map(|f| f.windows.len()).sum();
        Corpus {
            detector: None,
            files,
            total_windows,
            ignored_results: Vec::new(),
            unlabelled_data: Vec::new(),
        }
    }

    pub fn rows(&self) -> usize {
        self.files.iter().map(|f| f.rows()).sum()
    }

    /// Windows that count (not wholly inside a probationary period).
    pub fn counted_windows(&self) -> usize {
        self.files.iter().map(|f| f.layout.counted_windows()).sum()
    }

    /// Raw score of a detector that never fires.
    pub fn null_raw(&self, profile: &Profile) -> f64 {
        -(self.counted_windows() as f64) * profile.fn_weight
    }

    /// Raw score of a perfect detector (NAB: `tpWeight` per labelled window).
    pub fn perfect_raw(&self, profile: &Profile) -> f64 {
        self.total_windows as f64 * profile.tp_weight
    }

    /// `100 * (raw - null) / (perfect - null)` (NaN when the corpus has no window).
    pub fn normalize(&self, profile: &Profile, raw: f64) -> f64 {
        let (null, perfect) = (self.null_raw(profile), self.perfect_raw(profile));
        if perfect > null {
            100.0 * (raw - null) / (perfect - null)
        } else {
            f64::NAN
        }
    }

    /// Score every file at `threshold` (detections: `anomaly_score >= threshold`).
    pub fn score(&self, profile: &Profile, threshold: f64) -> CorpusScore {
        let per_file: Vec<(String, FileScore)> = self
            .files
            .iter()
            .map(|f| (f.name.clone(), f.score(profile, threshold)))
            .collect();
        let mut totals = FileScore::default();
        for (_, s) in &per_file {
            totals.raw += s.raw;
            totals.tp += s.tp;
            totals.tn += s.tn;
            totals.fp += s.fp;
            totals.fn_ += s.fn_;
            totals.windows += s.windows;
            totals.windows_detected += s.windows_detected;
            totals.scored_rows += s.scored_rows;
        }
        CorpusScore {
            threshold,
            raw: totals.raw,
            normalized: self.normalize(profile, totals.raw),
            null_raw: self.null_raw(profile),
            perfect_raw: self.perfect_raw(profile),
            totals,
            per_file,
        }
    }

    /// The profile-independent part of the sweep: every scorable row with a finite score, sorted by
    /// descending anomaly score (stable).
    pub fn sweep_points(&self) -> SweepPoints {
        let mut points = Vec::with_capacity(self.rows());
        let mut window_base = 0u32;
        let mut max_score = f64::NEG_INFINITY;
        for f in &self.files {
            f.layout.for_each_scorable(|i, value| {
                let score = f.scores[i];
                if score.is_nan() {
                    return;
                }
                max_score = max_score.max(score);
                points.push(match value {
                    RowValue::Window { window, sigma } => SweepPoint {
                        score,
                        sigma,
                        window: window_base + window as u32,
                    },
                    RowValue::Outside { sigma } => SweepPoint {
                        score,
                        sigma,
                        window: OUTSIDE,
                    },
                });
            });
            window_base += f.layout.windows.len() as u32;
        }
        points.sort_by(|a, b| b.score.partial_cmp(&a.score).expect("NaN filtered"));
        let counted: Vec<bool> = self
            .files
            .iter()
            .flat_map(|f| (0..f.layout.windows.len()).map(|w| f.layout.window_counts(w)))
            .collect();
        SweepPoints {
            points,
            counted,
            max_score,
        }
    }

    /// NAB's optimiser: the threshold (among all distinct anomaly scores, plus "never fire") that maximises the
    /// corpus raw score; ties go to the higher threshold.
    pub fn optimize_threshold(&self, profile: &Profile) -> ThresholdChoice {
        self.sweep_points().optimize(profile)
    }
}

const OUTSIDE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct SweepPoint {
    score: f64,
    sigma: f64,
    window: u32,
}

/// Corpus rows prepared for sweeping thresholds (reusable across profiles).
#[derive(Debug, Clone)]
pub struct SweepPoints {
    points: Vec<SweepPoint>,
    /// Per corpus window: whether it is counted.
    counted: Vec<bool>,
    max_score: f64,
}

impl SweepPoints {
    /// Sweep thresholds from the highest anomaly score down, adding one group of equal scores at a time: a
    /// false positive adds its weighted score, a window row raises its window's best score. O(rows) per
    /// profile after the one sort.
    pub fn optimize(&self, profile: &Profile) -> ThresholdChoice {
        let max_tp = scaled_sigmoid(-1.0);
        let mut best_in_window: Vec<f64> = vec![-profile.fn_weight; self.counted.len()];
        let mut window_sum = -profile.fn_weight * self.counted.iter().filter(|c| **c).count() as f64;
        let mut fp_sum = 0.0;
        let no_detection = if self.max_score < 1.1 {
            1.1
        } else {
            f64::from_bits(self.max_score.to_bits() + 1)
        };
        let mut best = ThresholdChoice {
            threshold: no_detection,
            raw: window_sum + fp_sum,
            candidates: 1,
        };
        let mut i = 0;
        while i < self.points.len() {
            let threshold = self.points[i].score;
            while i < self.points.len() && self.points[i].score == threshold {
                let p = self.points[i];
                if p.window == OUTSIDE {
                    fp_sum += p.sigma * profile.fp_weight;
                } else {
                    let w = p.window as usize;
                    let s = p.sigma * profile.tp_weight / max_tp;
                    if s > best_in_window[w] {
                        window_sum += s - best_in_window[w];
                        best_in_window[w] = s;
                    }
                }
                i += 1;
            }
            best.candidates += 1;
            let raw = window_sum + fp_sum;
            if raw > best.raw {
                best.threshold = threshold;
                best.raw = raw;
            }
        }
        best
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// Score a results directory at a fixed threshold. `data_dir_or_labels`: see [`CorpusSource::from_path`].
pub fn score_corpus(
    results_dir: &Path,
    data_dir_or_labels: &Path,
    profile: &Profile,
    threshold: f64,
) -> Result<CorpusScore> {
    let corpus = Corpus::load(results_dir, &CorpusSource::from_path(data_dir_or_labels)?)?;
    Ok(corpus.score(profile, threshold))
}

/// Sweep thresholds for one profile and score the corpus at the best one.
pub fn optimize_threshold(results_dir: &Path, data_dir_or_labels: &Path, profile: &Profile) -> Result<CorpusScore> {
    let corpus = Corpus::load(results_dir, &CorpusSource::from_path(data_dir_or_labels)?)?;
    let choice = corpus.optimize_threshold(profile);
    Ok(corpus.score(profile, choice.threshold))
}

/// `(category, file name, path)` of every `*.csv` one level below `dir` (top-level files are ignored).
fn list_category_csvs(dir: &Path) -> Result<Vec<(String, String, PathBuf)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry?;
        if !entry.path().is_dir() {
            continue;
        }
        let Some(category) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        for file in std::fs::read_dir(entry.path()).with_context(|| format!("listing {}", entry.path().display()))? {
            let file = file?;
            let path = file.path();
            let Some(name) = file.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if path.is_file() && name.ends_with(".csv") {
                out.push((category.clone(), name, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Run `f` over `jobs` on up to `available_parallelism` threads, keeping the order.
fn load_parallel<J: Send, T: Send>(jobs: Vec<J>, f: impl Fn(J) -> Result<T> + Sync) -> Result<Vec<T>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    if threads == 1 || jobs.len() < 2 {
        return jobs.into_iter().map(f).collect();
    }
    let n = jobs.len();
    let queue = std::sync::Mutex::new(jobs.into_iter().enumerate().collect::<Vec<_>>().into_iter());
    let results = std::sync::Mutex::new((0..n).map(|_| None).collect::<Vec<Option<Result<T>>>>());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let next = queue.lock().unwrap().next();
                let Some((i, job)) = next else { break };
                let r = f(job);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}
