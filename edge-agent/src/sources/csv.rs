//! Replays a recorded CSV file (NAB benchmark files, exports from a logger, ...) as if a device
//! were measuring it now.
//!
//! The file is read streaming, one record at a time, so its size does not matter. Timing: the row
//! that starts the replay is the *anchor*; a later row is due when `anchor_wall + (row_ts -
//! anchor_ts) / speed <= now`. With `timestamps = "shift"` a row is stamped with that due time,
//! so an accelerated replay looks like a live sensor measuring faster and never stamps the future
//! (which the platform would refuse). With `speed = 0` (everything due at once) there is no replay
//! clock: shift mode then keeps the recorded spacing from the start, so stamps may run ahead of the
//! wall clock; use `timestamps = "original"` for bulk loads.
//!
//! After [`CsvSource::restore`] the first row after the skipped ones becomes the new anchor at the
//! next poll: it is due immediately, and in shift mode it is stamped with that poll's time, rather
//! than waiting out the downtime or re-emitting old stamps.

use std::fs::File;
use std::path::{Path, PathBuf};

use ::csv::{Reader, ReaderBuilder, StringRecord, Trim};
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use offsite_wire::{MetricKey, Sample};
use serde::{Deserialize, Serialize};

use super::SourceError;

/// `kind = "csv"` in `[[devices.sources]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// The file; relative paths resolve against the agent's config directory.
    pub path: PathBuf,
    #[serde(default = "default_timestamp_column")]
    pub timestamp_column: String,
    /// Columns to emit; every column except the timestamp when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_columns: Option<Vec<String>>,
    /// Metric key per value column (same order); the column names when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<MetricKey>>,
    /// Recorded time per wall-clock time: 1 = real time, 60 = a recorded minute per second,
    /// 0 = as fast as polling allows.
    #[serde(default = "default_speed")]
    pub speed: f64,
    #[serde(default)]
    pub timestamps: TimestampMode,
    /// Start over at the end of the file (shift mode only); each loop is stamped later than the
    /// previous one by the file's span plus one step.
    #[serde(default)]
    pub repeat: bool,
    #[serde(default = "default_max_rows_per_poll")]
    pub max_rows_per_poll: usize,
}

fn default_timestamp_column() -> String {
    "timestamp".into()
}

fn default_speed() -> f64 {
    1.0
}

fn default_max_rows_per_poll() -> usize {
    1000
}

/// How replayed samples are stamped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampMode {
    /// The file's own times.
    Original,
    /// Moved so that the replay's first row is stamped with the moment the replay started.
    #[default]
    Shift,
}

impl CsvConfig {
    /// A config with every default, for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            timestamp_column: default_timestamp_column(),
            value_columns: None,
            metrics: None,
            speed: default_speed(),
            timestamps: TimestampMode::default(),
            repeat: false,
            max_rows_per_poll: default_max_rows_per_poll(),
        }
    }

    pub fn validate(&self) -> Result<(), SourceError> {
        let cfg = |m: String| Err(SourceError::Config(m));
        if !(self.speed.is_finite() && self.speed >= 0.0) {
            return cfg(format!("csv: speed must be a finite number >= 0, got {}", self.speed));
        }
        if self.repeat && self.timestamps == TimestampMode::Original {
            return cfg("csv: repeat needs timestamps = \"shift\" (original times would repeat)".into());
        }
        if self.max_rows_per_poll == 0 {
            return cfg("csv: max_rows_per_poll must be at least 1".into());
        }
        if let Some(cols) = &self.value_columns {
            if cols.is_empty() {
                return cfg("csv: value_columns is empty".into());
            }
            if cols.contains(&self.timestamp_column) {
                return cfg(format!("csv: value_columns contains the timestamp column {:?}", self.timestamp_column));
            }
            if let Some(d) = first_duplicate(cols.iter().map(String::as_str)) {
                return cfg(format!("csv: column {d:?} is listed twice in value_columns"));
            }
            if let Some(metrics) = &self.metrics {
                if metrics.len() != cols.len() {
                    return cfg(format!("csv: {} metrics for {} value_columns", metrics.len(), cols.len()));
                }
            }
        }
        if let Some(metrics) = &self.metrics {
            if let Some(d) = first_duplicate(metrics.iter().map(MetricKey::as_str)) {
                return cfg(format!("csv: metric {d} is listed twice"));
            }
        }
        Ok(())
    }
}

fn first_duplicate<'a>(items: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen: Vec<&str> = items.collect();
    seen.sort_unstable();
    seen.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// Parses a timestamp cell: `2014-04-10 00:00:00` (NAB; naive, taken as UTC, optional fraction,
/// `T` separator accepted), RFC 3339, or integer epoch seconds or milliseconds. Integers below
/// 10^11 in magnitude are seconds (10^11 s is the year 5138), larger ones milliseconds (so epoch
/// milliseconds before March 1973 are misread; recordings that old are not expected).
pub fn parse_timestamp(cell: &str) -> Option<DateTime<Utc>> {
    let s = cell.trim();
    if let Ok(n) = s.parse::<i64>() {
        return if n.unsigned_abs() < 100_000_000_000 {
            DateTime::from_timestamp(n, 0)
        } else {
            DateTime::from_timestamp_millis(n)
        };
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(s, fmt).ok())
        .map(|t| t.and_utc())
}

/// One data row, parsed.
#[derive(Debug)]
struct Row {
    /// The file's time.
    ts: DateTime<Utc>,
    /// The file's time moved by the loop offset: the replay's own time line.
    vts: DateTime<Utc>,
    /// Per value column; None for an empty or non-numeric cell.
    values: Vec<Option<f64>>,
}

/// Replays one CSV file. See the module docs for the timing rules.
pub struct CsvSource {
    path: PathBuf,
    cfg: CsvConfig,
    reader: Reader<File>,
    record: StringRecord,
    ts_col: usize,
    /// Value column index and metric key.
    columns: Vec<(usize, MetricKey)>,
    /// Records read from the file since the replay started (all loops), bad ones included.
    read: u64,
    /// Read but not yet due (or over the per-poll limit).
    pending: Option<Row>,
    /// An error met after samples were already collected; reported by the next poll so those
    /// samples are not lost.
    deferred: Option<SourceError>,
    /// A `restore` to carry out at the next poll (it reads the file, which may fail).
    restore_to: Option<u64>,
    /// (wall time, replay time) of the row that started the replay; None: the next row anchors.
    anchor: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// End of the file reached and no further loop.
    eof: bool,
    skipped: u64,
    loop_index: u64,
    rows_this_loop: u64,
    /// Rows with a valid timestamp in the current loop; a loop without any ends the replay.
    valid_this_loop: u64,
    /// First, previous-to-last and last valid times of the first loop: the loop offset's parts.
    first_ts: Option<DateTime<Utc>>,
    prev_ts: Option<DateTime<Utc>>,
    last_ts: Option<DateTime<Utc>>,
    /// Known once the first loop is complete.
    loop_shift: Option<TimeDelta>,
    rows_per_loop: Option<u64>,
}

impl CsvSource {
    /// Opens the file (resolved against `base_dir` if relative) and checks its header.
    pub fn open(cfg: &CsvConfig, base_dir: &Path) -> Result<Self, SourceError> {
        cfg.validate()?;
        let path = base_dir.join(&cfg.path);
        let Opened { reader, ts_col, columns } = open_reader(&path, cfg)?;
        Ok(Self {
            path,
            cfg: cfg.clone(),
            reader,
            record: StringRecord::new(),
            ts_col,
            columns,
            read: 0,
            pending: None,
            deferred: None,
            restore_to: None,
            anchor: None,
            eof: false,
            skipped: 0,
            loop_index: 0,
            rows_this_loop: 0,
            valid_this_loop: 0,
            first_ts: None,
            prev_ts: None,
            last_ts: None,
            loop_shift: None,
            rows_per_loop: None,
        })
    }

    /// Every row due at `now`, at most `max_rows_per_poll` of them.
    pub fn poll(&mut self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        if let Some(n) = self.restore_to.take() {
            if let Err(e) = self.seek_to(n) {
                self.restore_to = Some(n); // try again next time
                return Err(e);
            }
        }
        let mut out = Vec::new();
        let mut rows = 0;
        loop {
            let row = match self.pending.take() {
                Some(row) => row,
                None => match self.next_row() {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(e) if out.is_empty() => return Err(e),
                    Err(e) => {
                        self.deferred = Some(e);
                        break;
                    }
                },
            };
            let (anchor_wall, anchor_vts) = *self.anchor.get_or_insert((now, row.vts));
            // Checked after reading, so a finished file is noticed even when the limit is hit.
            if rows == self.cfg.max_rows_per_poll || !self.is_due(&row, now) {
                self.pending = Some(row);
                break;
            }
            rows += 1;
            let ts = match self.cfg.timestamps {
                TimestampMode::Original => row.ts,
                TimestampMode::Shift => match anchor_wall.checked_add_signed(self.replay_offset(row.vts - anchor_vts)) {
                    Some(ts) => ts,
                    None => {
                        let e = self.parse_error(format!("shifted time of {} is out of range", row.ts));
                        if out.is_empty() {
                            return Err(e);
                        }
                        self.deferred = Some(e);
                        break;
                    }
                },
            };
            for (value, (_, metric)) in row.values.iter().zip(&self.columns) {
                match value {
                    Some(value) => out.push(Sample { ts, metric: metric.clone(), value: *value }),
                    None => self.skipped += 1,
                }
            }
        }
        Ok(out)
    }

    /// True once everything has been emitted (never with `repeat`, unless the file has no rows).
    pub fn finished(&self) -> bool {
        self.eof && self.pending.is_none() && self.deferred.is_none() && self.restore_to.is_none()
    }

    /// Data rows consumed (emitted or rejected as bad) since the start, over all loops.
    pub fn checkpoint(&self) -> u64 {
        match self.restore_to {
            Some(n) => n,
            None => self.read - u64::from(self.pending.is_some()),
        }
    }

    /// Continues after `checkpoint` consumed rows. Takes effect at the next poll, which skips the
    /// rows and anchors the replay clock on the next row (due at once; see the module docs).
    pub fn restore(&mut self, checkpoint: u64) {
        self.restore_to = Some(checkpoint);
    }

    /// Value cells skipped because they were empty or not a finite number.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Recorded time since the anchor as replay time: divided by the speed (kept as is at speed 0).
    fn replay_offset(&self, recorded: TimeDelta) -> TimeDelta {
        if self.cfg.speed == 0.0 {
            return recorded;
        }
        TimeDelta::milliseconds((recorded.num_milliseconds() as f64 / self.cfg.speed).round() as i64)
    }

    fn is_due(&self, row: &Row, now: DateTime<Utc>) -> bool {
        let Some((anchor_wall, anchor_vts)) = self.anchor else { return true };
        if self.cfg.speed == 0.0 {
            return true;
        }
        // In f64 milliseconds: no overflow whatever the speed, and exact for whole ratios.
        let recorded = (row.vts - anchor_vts).num_milliseconds() as f64;
        let waited = (now - anchor_wall).num_milliseconds() as f64;
        recorded / self.cfg.speed <= waited
    }

    /// Rewinds if needed and skips to `target` consumed rows; the next row re-anchors the clock.
    fn seek_to(&mut self, target: u64) -> Result<(), SourceError> {
        if self.read > 0 || self.loop_index > 0 || self.eof {
            self.rewind()?;
        }
        self.anchor = None;
        while self.read < target {
            // Once a loop's length is known, whole loops are jumped over instead of read: at the
            // end of a loop, the next `loops` loops would just be read and thrown away.
            if let Some(per) = self.rows_per_loop.filter(|&per| per > 0) {
                let loops = (target - self.read) / per;
                if self.rows_this_loop == per && loops > 0 {
                    self.loop_index += loops;
                    self.read += loops * per;
                    continue;
                }
            }
            let before = self.read;
            match self.next_row() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                // A bad row was consumed before the restart too; only a read failure stops us.
                Err(_) if self.read > before => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Back to the first row, as freshly opened.
    fn rewind(&mut self) -> Result<(), SourceError> {
        self.reopen()?;
        self.read = 0;
        self.pending = None;
        self.deferred = None;
        self.anchor = None;
        self.eof = false;
        self.loop_index = 0;
        self.rows_this_loop = 0;
        self.valid_this_loop = 0;
        self.first_ts = None;
        self.prev_ts = None;
        self.last_ts = None;
        self.loop_shift = None;
        self.rows_per_loop = None;
        Ok(())
    }

    /// Opens the file again at its first row (the columns are looked up again too).
    fn reopen(&mut self) -> Result<(), SourceError> {
        let Opened { reader, ts_col, columns } = open_reader(&self.path, &self.cfg)?;
        self.reader = reader;
        self.ts_col = ts_col;
        self.columns = columns;
        Ok(())
    }

    /// The next data row; Ok(None) when the replay is over. A bad row is consumed and returned as
    /// an error; a read failure is returned without consuming anything.
    fn next_row(&mut self) -> Result<Option<Row>, SourceError> {
        loop {
            if self.eof {
                return Ok(None);
            }
            match self.reader.read_record(&mut self.record) {
                Ok(true) => {
                    self.read += 1;
                    self.rows_this_loop += 1;
                    return self.parse_record().map(Some);
                }
                Ok(false) => {
                    if !self.next_loop()? {
                        self.eof = true;
                    }
                }
                Err(e) if e.is_io_error() => {
                    return Err(SourceError::Io {
                        context: format!("reading {}", self.path.display()),
                        source: std::io::Error::other(e),
                    })
                }
                Err(e) => {
                    // Malformed record (e.g. invalid UTF-8): the reader has moved past it. The
                    // error's text has the position; `self.record` is stale here.
                    self.read += 1;
                    self.rows_this_loop += 1;
                    return Err(SourceError::Parse {
                        context: self.path.display().to_string(),
                        message: e.to_string(),
                    });
                }
            }
        }
    }

    /// At the end of the file: starts the next loop if `repeat`; false when the replay is over.
    fn next_loop(&mut self) -> Result<bool, SourceError> {
        // A loop without a single usable row would spin forever.
        if !self.cfg.repeat || self.valid_this_loop == 0 {
            return Ok(false);
        }
        if self.loop_shift.is_none() {
            let (first, last) = (self.first_ts.unwrap_or_default(), self.last_ts.unwrap_or_default());
            let step = self.prev_ts.map(|prev| last - prev).filter(|s| *s > TimeDelta::zero());
            // A single row (or a file running backwards) has no step; one second is as good as any.
            let shift = (last - first) + step.unwrap_or(TimeDelta::seconds(1));
            self.loop_shift = Some(shift.max(TimeDelta::seconds(1)));
            self.rows_per_loop = Some(self.rows_this_loop);
        }
        self.reopen()?;
        self.loop_index += 1;
        self.rows_this_loop = 0;
        self.valid_this_loop = 0;
        Ok(true)
    }

    fn parse_record(&mut self) -> Result<Row, SourceError> {
        let cell = self.record.get(self.ts_col).unwrap_or("");
        let Some(ts) = parse_timestamp(cell) else {
            return Err(self.parse_error(format!("bad timestamp {cell:?}")));
        };
        let vts = self.loop_offset().and_then(|off| ts.checked_add_signed(off));
        let Some(vts) = vts else {
            return Err(self.parse_error(format!("replay time of {ts} in loop {} is out of range", self.loop_index)));
        };
        let values = self
            .columns
            .iter()
            .map(|(col, _)| {
                let cell = self.record.get(*col)?.trim();
                cell.parse::<f64>().ok().filter(|v| v.is_finite())
            })
            .collect();
        self.valid_this_loop += 1;
        if self.loop_shift.is_none() {
            self.first_ts.get_or_insert(ts);
            self.prev_ts = self.last_ts.replace(ts);
        }
        Ok(Row { ts, vts, values })
    }

    /// How far the current loop is moved on the replay's time line.
    fn loop_offset(&self) -> Option<TimeDelta> {
        if self.loop_index == 0 {
            return Some(TimeDelta::zero());
        }
        let shift_ms = self.loop_shift?.num_milliseconds();
        let ms = shift_ms.checked_mul(i64::try_from(self.loop_index).ok()?)?;
        TimeDelta::try_milliseconds(ms)
    }

    fn parse_error(&self, message: String) -> SourceError {
        let line = self.record.position().map_or(0, |p| p.line());
        SourceError::Parse { context: format!("{} line {line}", self.path.display()), message }
    }
}

/// An opened file and where its columns are.
struct Opened {
    reader: Reader<File>,
    ts_col: usize,
    columns: Vec<(usize, MetricKey)>,
}

/// Opens `path` and finds the timestamp and value columns in its header.
fn open_reader(path: &Path, cfg: &CsvConfig) -> Result<Opened, SourceError> {
    let io_context = || format!("opening {}", path.display());
    let mut reader = ReaderBuilder::new()
        .has_headers(true)
        // Short rows are tolerated: their missing cells count as skipped values.
        .flexible(true)
        .trim(Trim::All)
        .from_path(path)
        .map_err(|e| SourceError::Io { context: io_context(), source: std::io::Error::other(e) })?;
    let header = reader
        .headers()
        .map_err(|e| SourceError::Parse { context: format!("{} header", path.display()), message: e.to_string() })?
        .clone();
    let names: Vec<&str> = header.iter().collect();
    let missing = |col: &str| {
        SourceError::Config(format!("{}: no column {col:?} (columns: {})", path.display(), names.join(", ")))
    };
    let ts_col = names.iter().position(|n| *n == cfg.timestamp_column).ok_or_else(|| missing(&cfg.timestamp_column))?;
    let value_cols: Vec<(usize, &str)> = match &cfg.value_columns {
        Some(cols) => cols
            .iter()
            .map(|c| names.iter().position(|n| n == c).map(|i| (i, c.as_str())).ok_or_else(|| missing(c)))
            .collect::<Result<_, _>>()?,
        None => names.iter().enumerate().filter(|(i, _)| *i != ts_col).map(|(i, n)| (i, *n)).collect(),
    };
    if value_cols.is_empty() {
        return Err(SourceError::Config(format!("{}: no value columns", path.display())));
    }
    let columns = match &cfg.metrics {
        Some(metrics) if metrics.len() != value_cols.len() => {
            return Err(SourceError::Config(format!(
                "{}: {} metrics for {} value columns",
                path.display(),
                metrics.len(),
                value_cols.len()
            )))
        }
        Some(metrics) => value_cols.iter().map(|(i, _)| *i).zip(metrics.iter().cloned()).collect(),
        None => value_cols
            .iter()
            .map(|(i, name)| {
                MetricKey::parse(name).map(|key| (*i, key)).map_err(|e| {
                    SourceError::Config(format!(
                        "{}: column {name:?} is not a valid metric key ({e}); name the metrics with `metrics`",
                        path.display()
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Opened { reader, ts_col, columns })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::io::Write;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, h, m, s).single().expect("valid time")
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    fn source(f: &tempfile::NamedTempFile, tweak: impl FnOnce(&mut CsvConfig)) -> CsvSource {
        let mut cfg = CsvConfig::new(f.path());
        tweak(&mut cfg);
        CsvSource::open(&cfg, Path::new("/")).expect("opens")
    }

    fn pairs(samples: &[Sample]) -> Vec<(DateTime<Utc>, &str, f64)> {
        samples.iter().map(|s| (s.ts, s.metric.as_str(), s.value)).collect()
    }

    const THREE: &str = "timestamp,value\n2014-04-10 00:00:00,1\n2014-04-10 00:00:10,2\n2014-04-10 00:00:20,3\n";

    #[test]
    fn timestamp_formats() {
        let want = Utc.with_ymd_and_hms(2014, 4, 10, 0, 0, 0).single().expect("valid");
        assert_eq!(parse_timestamp("2014-04-10 00:00:00"), Some(want));
        assert_eq!(parse_timestamp("2014-04-10T00:00:00"), Some(want));
        assert_eq!(parse_timestamp(" 2014-04-10T02:00:00+02:00 "), Some(want));
        assert_eq!(parse_timestamp("2014-04-10T00:00:00Z"), Some(want));
        assert_eq!(parse_timestamp("1397088000"), Some(want));
        assert_eq!(parse_timestamp("1397088000000"), Some(want));
        assert_eq!(parse_timestamp("2014-04-10 00:00:00.250"), Some(want + TimeDelta::milliseconds(250)));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp(""), None);
    }

    #[test]
    fn shift_mode_paces_rows_in_real_time() {
        let f = file(THREE);
        let mut s = source(&f, |_| {});
        let start = t(9, 0, 0);
        assert_eq!(pairs(&s.poll(start).expect("poll")), [(start, "value", 1.0)]);
        assert!(s.poll(start + TimeDelta::seconds(9)).expect("poll").is_empty(), "not due yet");
        assert_eq!(s.checkpoint(), 1);
        let later = start + TimeDelta::seconds(25);
        assert_eq!(
            pairs(&s.poll(later).expect("poll")),
            [(start + TimeDelta::seconds(10), "value", 2.0), (start + TimeDelta::seconds(20), "value", 3.0)]
        );
        assert!(s.finished());
        assert_eq!(s.checkpoint(), 3);
        assert!(s.poll(later).expect("poll").is_empty());
    }

    #[test]
    fn speed_scales_pacing_and_stamps() {
        let f = file("timestamp,value\n2014-04-10 00:00:00,1\n2014-04-10 00:01:00,2\n2014-04-10 00:02:00,3\n");
        let mut s = source(&f, |c| c.speed = 60.0);
        let start = t(9, 0, 0);
        assert_eq!(s.poll(start).expect("poll").len(), 1);
        assert!(s.poll(start + TimeDelta::milliseconds(999)).expect("poll").is_empty());
        let got = s.poll(start + TimeDelta::seconds(1)).expect("poll");
        assert_eq!(pairs(&got), [(start + TimeDelta::seconds(1), "value", 2.0)]);
    }

    #[test]
    fn original_mode_and_column_selection() {
        let f = file("when,a,b,c\n1397088000,1,2,3\n1397088060,4,5,6\n");
        let mut s = source(&f, |c| {
            c.timestamp_column = "when".into();
            c.value_columns = Some(vec!["c".into(), "a".into()]);
            c.metrics =
                Some(vec![MetricKey::parse("temp.c").expect("valid"), MetricKey::parse("temp.a").expect("valid")]);
            c.timestamps = TimestampMode::Original;
            c.speed = 0.0;
        });
        let t0 = Utc.with_ymd_and_hms(2014, 4, 10, 0, 0, 0).single().expect("valid");
        let got = s.poll(t(12, 0, 0)).expect("poll");
        assert_eq!(
            pairs(&got),
            [
                (t0, "temp.c", 3.0),
                (t0, "temp.a", 1.0),
                (t0 + TimeDelta::minutes(1), "temp.c", 6.0),
                (t0 + TimeDelta::minutes(1), "temp.a", 4.0)
            ]
        );
        assert!(s.finished());
    }

    #[test]
    fn bad_cells_are_skipped_not_rows() {
        let f = file(concat!(
            "timestamp,a,b\n",
            "2014-04-10 00:00:00,1,\n",
            "2014-04-10 00:00:01,abc,2\n",
            "2014-04-10 00:00:02,NaN,inf\n",
            "2014-04-10 00:00:03,5\n", // short row: b is missing
            "2014-04-10 00:00:04, 6 ,7\n",
        ));
        let mut s = source(&f, |c| c.speed = 0.0);
        let got = s.poll(t(0, 0, 0)).expect("poll");
        let values: Vec<_> = got.iter().map(|s| (s.metric.as_str(), s.value)).collect();
        assert_eq!(values, [("a", 1.0), ("b", 2.0), ("a", 5.0), ("a", 6.0), ("b", 7.0)]);
        assert_eq!(s.skipped(), 5);
        assert_eq!(s.checkpoint(), 5);
    }

    #[test]
    fn bad_timestamp_is_an_error_without_losing_rows() {
        let f = file("timestamp,v\n2014-04-10 00:00:00,1\nnot a time,2\n2014-04-10 00:00:02,3\n");
        let mut s = source(&f, |c| c.speed = 0.0);
        let now = t(0, 0, 0);
        // The first row is returned; the bad one is reported by the next poll, then replay goes on.
        assert_eq!(s.poll(now).expect("poll").len(), 1);
        let err = s.poll(now).expect_err("bad row");
        assert!(err.to_string().contains("line 3") && err.to_string().contains("not a time"), "{err}");
        assert_eq!(s.checkpoint(), 2);
        assert_eq!(s.poll(now).expect("poll")[0].value, 3.0);
        assert!(s.finished());
    }

    #[test]
    fn max_rows_per_poll_limits_and_checkpoint_restores() {
        let f = file(THREE);
        let mut s = source(&f, |c| {
            c.speed = 0.0;
            c.max_rows_per_poll = 2;
        });
        assert_eq!(s.poll(t(1, 0, 0)).expect("poll").len(), 2);
        assert_eq!(s.checkpoint(), 2, "the peeked third row is not consumed yet");
        assert!(!s.finished());

        // A restarted agent resumes at the third row, due at once although paced in real time.
        let mut s = source(&f, |_| {});
        s.restore(2);
        assert_eq!(s.checkpoint(), 2);
        let resumed = t(5, 0, 0);
        assert_eq!(pairs(&s.poll(resumed).expect("poll")), [(resumed, "value", 3.0)]);
        assert!(s.finished());
        assert_eq!(s.checkpoint(), 3);

        // Restoring after progress rewinds; restoring past the end just finishes.
        let mut s = source(&f, |c| c.speed = 0.0);
        assert_eq!(s.poll(resumed).expect("poll").len(), 3);
        s.restore(1);
        assert_eq!(s.poll(resumed).expect("poll").iter().map(|s| s.value).collect::<Vec<_>>(), [2.0, 3.0]);
        s.restore(10);
        assert!(s.poll(resumed).expect("poll").is_empty());
        assert!(s.finished());
    }

    #[test]
    fn resumed_rows_keep_their_spacing() {
        let f = file(THREE);
        let mut s = source(&f, |_| {});
        s.restore(1);
        let resumed = t(5, 0, 0);
        assert_eq!(pairs(&s.poll(resumed).expect("poll")), [(resumed, "value", 2.0)]);
        assert!(s.poll(resumed + TimeDelta::seconds(5)).expect("poll").is_empty());
        let got = s.poll(resumed + TimeDelta::seconds(10)).expect("poll");
        assert_eq!(pairs(&got), [(resumed + TimeDelta::seconds(10), "value", 3.0)]);
    }

    #[test]
    fn repeat_shifts_each_loop_by_span_plus_step() {
        let f = file(THREE);
        let mut s = source(&f, |c| {
            c.speed = 0.0;
            c.repeat = true;
            c.max_rows_per_poll = 7;
        });
        let start = t(2, 0, 0);
        let got = s.poll(start).expect("poll");
        let secs: Vec<i64> = got.iter().map(|s| (s.ts - start).num_seconds()).collect();
        assert_eq!(secs, [0, 10, 20, 30, 40, 50, 60]);
        assert_eq!(got.iter().map(|s| s.value).collect::<Vec<_>>(), [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]);
        assert_eq!(s.checkpoint(), 7);
        assert!(!s.finished());

        // Restoring deep into the loops jumps over whole loops and lands on the right row.
        let mut s = source(&f, |c| c.repeat = true);
        s.restore(3 * 1000 + 1);
        let now = t(3, 0, 0);
        assert_eq!(pairs(&s.poll(now).expect("poll")), [(now, "value", 2.0)]);
        assert_eq!(s.checkpoint(), 3002);
        assert_eq!(
            pairs(&s.poll(now + TimeDelta::seconds(10)).expect("poll")),
            [(now + TimeDelta::seconds(10), "value", 3.0)]
        );
        assert_eq!(
            pairs(&s.poll(now + TimeDelta::seconds(20)).expect("poll")),
            [(now + TimeDelta::seconds(20), "value", 1.0)]
        );
    }

    #[test]
    fn repeat_of_a_file_without_rows_ends() {
        for text in ["timestamp,value\n", "timestamp,value\nnope,1\n"] {
            let f = file(text);
            let mut s = source(&f, |c| {
                c.speed = 0.0;
                c.repeat = true;
            });
            for _ in 0..3 {
                let _ = s.poll(t(0, 0, 0)); // the bad row is reported once
            }
            assert!(s.finished(), "{text:?}");
        }
    }

    #[test]
    fn config_errors_name_the_problem() {
        let f = file("time,value x,y\n2014-04-10 00:00:00,1,2\n");
        let open = |tweak: &dyn Fn(&mut CsvConfig)| {
            let mut cfg = CsvConfig::new(f.path());
            tweak(&mut cfg);
            CsvSource::open(&cfg, Path::new("/")).err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert!(open(&|_| {}).contains("no column \"timestamp\""));
        assert!(open(&|c| c.timestamp_column = "time".into()).contains("not a valid metric key"));
        assert!(open(&|c| {
            c.timestamp_column = "time".into();
            c.value_columns = Some(vec!["zz".into()]);
        })
        .contains("no column \"zz\""));
        assert!(open(&|c| {
            c.timestamp_column = "time".into();
            c.metrics = Some(vec![MetricKey::parse("one").expect("valid")]);
        })
        .contains("1 metrics for 2 value columns"));
        let e = CsvSource::open(&CsvConfig::new("missing.csv"), Path::new("/nonexistent")).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("/nonexistent/missing.csv")));
    }

    /// Replays a real NAB recording end to end and compares with the file.
    #[test]
    fn nab_nyc_taxi_replays_completely() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/nab/data/realKnownCause/nyc_taxi.csv");
        let path = Path::new(path);
        if !path.exists() {
            eprintln!("skipping: {} not found", path.display());
            return;
        }
        let text = std::fs::read_to_string(path).expect("readable");
        let lines: Vec<&str> = text.lines().skip(1).filter(|l| !l.trim().is_empty()).collect();
        let parse_line = |l: &str| {
            let (ts, v) = l.split_once(',').expect("two columns");
            (parse_timestamp(ts).expect("timestamp"), v.trim().parse::<f64>().expect("number"))
        };

        let mut cfg = CsvConfig::new(path);
        cfg.speed = 0.0;
        cfg.timestamps = TimestampMode::Original;
        let mut s = CsvSource::open(&cfg, Path::new("/")).expect("opens");
        let mut all = Vec::new();
        let mut polls = 0;
        while !s.finished() {
            all.extend(s.poll(Utc::now()).expect("poll"));
            polls += 1;
            assert!(polls < 1000, "replay does not end");
        }
        assert_eq!(all.len(), lines.len());
        assert_eq!(s.checkpoint(), lines.len() as u64);
        assert_eq!(s.skipped(), 0);
        let first = (all[0].ts, all[0].value);
        let last = (all[all.len() - 1].ts, all[all.len() - 1].value);
        assert_eq!(first, parse_line(lines[0]));
        assert_eq!(last, parse_line(lines[lines.len() - 1]));
        assert!(all.iter().all(|s| s.metric.as_str() == "value"));
    }
}
