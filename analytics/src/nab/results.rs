//! Reading a detector's results CSV (`timestamp,value,anomaly_score,label,...`) and a NAB data file.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::NaiveDateTime;

use super::labels::parse_timestamp;

/// The rows of one results file: timestamp and anomaly score, in file order. Only the `timestamp` and
/// `anomaly_score` columns are read; the windows come from the labels file, not from a `label` column.
#[derive(Debug, Clone, Default)]
pub struct ResultFile {
    pub rows: Vec<(NaiveDateTime, f64)>,
}

impl ResultFile {
    pub fn read(path: &Path) -> Result<ResultFile> {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        ResultFile::from_reader(std::io::BufReader::new(file)).with_context(|| format!("reading {}", path.display()))
    }

    /// Parse CSV with a header row naming `timestamp` and `anomaly_score`. An empty score or `nan` is a row
    /// that never counts as a detection.
    pub fn from_reader(reader: impl Read) -> Result<ResultFile> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(reader);
        let headers = csv.byte_headers()?.clone();
        let ts_col = column(&headers, "timestamp")?;
        let score_col = column(&headers, "anomaly_score")?;
        let mut rows = Vec::new();
        let mut record = csv::ByteRecord::new();
        while csv.read_byte_record(&mut record)? {
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            let ts = field(&record, ts_col, line)?;
            let t = parse_timestamp(ts).with_context(|| format!("line {line}: bad timestamp {ts:?}"))?;
            let s = field(&record, score_col, line)?.trim();
            let score = if s.is_empty() {
                f64::NAN
            } else {
                s.parse::<f64>()
                    .with_context(|| format!("line {line}: bad anomaly_score {s:?}"))?
            };
            rows.push((t, score));
        }
        Ok(ResultFile { rows })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// The `timestamp` column of a NAB data file (`timestamp,value`).
pub fn read_data_timestamps(path: &Path) -> Result<Vec<NaiveDateTime>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(std::io::BufReader::new(file));
    let headers = csv.byte_headers()?.clone();
    let ts_col = column(&headers, "timestamp").with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let mut record = csv::ByteRecord::new();
    while csv
        .read_byte_record(&mut record)
        .with_context(|| format!("reading {}", path.display()))?
    {
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let ts = field(&record, ts_col, line).with_context(|| format!("reading {}", path.display()))?;
        out.push(
            parse_timestamp(ts).with_context(|| format!("{}: line {line}: bad timestamp {ts:?}", path.display()))?,
        );
    }
    Ok(out)
}

fn column(headers: &csv::ByteRecord, name: &str) -> Result<usize> {
    let found = headers.iter().position(|h| {
        let h = String::from_utf8_lossy(h);
        h.trim().trim_start_matches('\u{feff}') == name
    });
    match found {
        Some(i) => Ok(i),
        None => bail!(
            "no `{name}` column (header: {})",
            headers
                .iter()
                .map(|h| String::from_utf8_lossy(h).into_owned())
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

fn field(record: &csv::ByteRecord, col: usize, line: u64) -> Result<&str> {
    let bytes = record
        .get(col)
        .with_context(|| format!("line {line}: missing column {}", col + 1))?;
    std::str::from_utf8(bytes).with_context(|| format!("line {line}: not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_columns_by_name() {
        let text = "value,timestamp,label,anomaly_score,extra\n\
                    1,2015-01-01 00:00:00,0,0.25,x\n\
                    2,2015-01-01 00:05:00,1,,y\n";
        let r = ResultFile::from_reader(text.as_bytes()).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r.rows[0].1, 0.25);
        assert!(r.rows[1].1.is_nan());
        assert!(ResultFile::from_reader("timestamp,score\n2015-01-01,1\n".as_bytes()).is_err());
    }
}
