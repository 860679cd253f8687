//! Labelled anomaly windows (`labels/combined_windows.json`) and NAB timestamps.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;

/// One labelled anomaly window, inclusive at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
}

impl Window {
    pub fn new(start: NaiveDateTime, end: NaiveDateTime) -> Self {
        Window { start, end }
    }

    pub fn contains(&self, t: NaiveDateTime) -> bool {
        self.start <= t && t <= self.end
    }
}

/// The windows of every labelled file, keyed by `"<category>/<file>.csv"`, each list sorted by start.
#[derive(Debug, Clone, Default)]
pub struct Windows {
    files: BTreeMap<String, Vec<Window>>,
}

impl Windows {
    /// Read `combined_windows.json`.
    pub fn load(path: &Path) -> Result<Windows> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading labels file {}", path.display()))?;
        Windows::parse_json(&text).with_context(|| format!("parsing labels file {}", path.display()))
    }

    /// Parse `{"category/file.csv": [["start", "end"], ...], ...}`.
    pub fn parse_json(text: &str) -> Result<Windows> {
        let raw: BTreeMap<String, Vec<Vec<String>>> =
            serde_json::from_str(text).context("expected {\"category/file.csv\": [[start, end], ...]}")?;
        let mut files = BTreeMap::new();
        for (key, list) in raw {
            let mut windows = Vec::with_capacity(list.len());
            for pair in list {
                let [start, end] = pair.as_slice() else {
                    bail!("{key}: a window must be [start, end], got {pair:?}");
                };
                let start = parse_timestamp(start).with_context(|| format!("{key}: bad window start {start:?}"))?;
                let end = parse_timestamp(end).with_context(|| format!("{key}: bad window end {end:?}"))?;
                if end < start {
                    bail!("{key}: window ends ({end}) before it starts ({start})");
                }
                windows.push(Window { start, end });
            }
            windows.sort_by_key(|w| w.start);
            if let Some(pair) = windows.windows(2).find(|p| p[1].start <= p[0].end) {
                bail!(
                    "{key}: windows overlap: [{}, {}] and [{}, {}]",
                    pair[0].start,
                    pair[0].end,
                    pair[1].start,
                    pair[1].end
                );
            }
            files.insert(normalize_key(&key), windows);
        }
        Ok(Windows { files })
    }

    pub fn from_map(files: BTreeMap<String, Vec<Window>>) -> Windows {
        Windows {
            files: files
                .into_iter()
                .map(|(k, mut v)| {
                    (normalize_key(&k), {
                        v.sort_by_key(|w| w.start);
                        v
                    })
                })
                .collect(),
        }
    }

    /// The windows of one file (`"category/file.csv"`), `None` if the file is not labelled.
    pub fn get(&self, key: &str) -> Option<&[Window]> {
        self.files.get(&normalize_key(key)).map(|v| v.as_slice())
    }

    /// Labelled files, sorted.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(|k| k.as_str())
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Number of windows over all files.
    pub fn total_windows(&self) -> usize {
        self.files.values().map(|v| v.len()).sum()
    }
}

fn normalize_key(key: &str) -> String {
    key.replace('\\', "/").trim_start_matches("./").to_string()
}

/// Parse a NAB timestamp: `2014-02-19 10:50:00.000000`, `2015-02-26 21:42:53`, an ISO `T` separator, or a
/// bare date (midnight).
pub fn parse_timestamp(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    if let Some(t) = parse_fast(s.as_bytes()) {
        return Some(t);
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

/// `YYYY-MM-DD HH:MM:SS[.fffffffff]` without going through chrono's format machinery (the corpus has
/// 365k rows; this keeps loading fast in debug builds).
fn parse_fast(b: &[u8]) -> Option<NaiveDateTime> {
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b' ' && b[10] != b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let year = num(0..4)? as i32;
    let (month, day, hour, min, sec) = (num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut nanos = 0u32;
    if b.len() > 19 {
        if b[19] != b'.' || b.len() == 20 {
            return None;
        }
        let frac = &b[20..];
        if frac.len() > 9 || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        nanos = frac.iter().fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0')) * 10u32.pow(9 - frac.len() as u32);
    }
    NaiveDate::from_ymd_opt(year, month, day)?.and_hms_nano_opt(hour, min, sec, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let a = parse_timestamp("2014-02-19 10:50:00.000000").unwrap();
        let b = parse_timestamp("2014-02-19 10:50:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            parse_timestamp("2014-02-19T10:50:00.5")
                .unwrap()
                .and_utc()
                .timestamp_subsec_millis(),
            500
        );
        assert_eq!(
            parse_timestamp("2014-02-19").unwrap(),
            parse_timestamp("2014-02-19 00:00:00").unwrap()
        );
        assert!(parse_timestamp("2014-02-30 10:50:00").is_none());
        assert!(parse_timestamp("yesterday").is_none());
    }

    #[test]
    fn windows_json() {
        let w = Windows::parse_json(
            r#"{"a/x.csv": [["2014-01-02 00:00:00.000000", "2014-01-03 00:00:00.000000"],
                            ["2014-01-01 00:00:00.000000", "2014-01-01 06:00:00.000000"]], "b/y.csv": []}"#,
        )
        .unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w.total_windows(), 2);
        let x = w.get("a/x.csv").unwrap();
        assert!(x[0].start < x[1].start, "sorted by start");
        assert!(Windows::parse_json(r#"{"a/x.csv": [["2014-01-02 00:00:00", "2014-01-01 00:00:00"]]}"#).is_err());
        assert!(
            Windows::parse_json(r#"{"a/x.csv": [["2014-01-01", "2014-01-03"], ["2014-01-02", "2014-01-04"]]}"#)
                .is_err()
        );
    }
}
