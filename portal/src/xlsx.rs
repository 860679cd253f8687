//! Spreadsheets for the registers: an XLSX upload is read as the same table a CSV upload is, and
//! an export can be written as XLSX. The CSV import/export in the store stays the one place that
//! knows the columns; this module only converts between the two containers.

use std::io::Cursor;

use anyhow::{Context, Result};
use calamine::{open_workbook_from_rs, Data, Reader, Xlsx};

/// True if `bytes` look like an XLSX (a ZIP) file.
pub fn is_xlsx(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// The first worksheet as CSV text (every cell as text; numbers without trailing `.0`).
pub fn xlsx_to_csv(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut wb: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes)).context("not a readable XLSX workbook")?;
    let range = wb.worksheet_range_at(0).context("the workbook has no worksheet")?.context("reading the first worksheet")?;
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in range.rows() {
        let cells: Vec<String> = row.iter().map(cell_text).collect();
        w.write_record(&cells)?;
    }
    Ok(w.into_inner().context("finishing CSV")?)
}

fn cell_text(c: &Data) -> String {
    match c {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// CSV (as the store exports it, a UTF-8 BOM allowed) as a one-sheet XLSX workbook, all cells text.
pub fn csv_to_xlsx(csv_bytes: &[u8], sheet: &str) -> Result<Vec<u8>> {
    let text = csv_bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(csv_bytes);
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text);
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name(sheet)?;
    for (r, rec) in rdr.records().enumerate() {
        let rec = rec?;
        for (c, v) in rec.iter().enumerate() {
            ws.write_string(r as u32, c as u16, v)?;
        }
    }
    Ok(wb.save_to_buffer()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_xlsx_round_trip_keeps_text_and_chinese() {
        let csv = "\u{feff}id,name,credit_code,lon\nsite-1,工地一,91350100M000100Y43,120.1\nsite-2,工地二,,\n";
        let x = csv_to_xlsx(csv.as_bytes(), "objects").unwrap();
        assert!(is_xlsx(&x));
        let back = String::from_utf8(xlsx_to_csv(&x).unwrap()).unwrap();
        assert_eq!(back, "id,name,credit_code,lon\nsite-1,工地一,91350100M000100Y43,120.1\nsite-2,工地二,,\n");
        assert!(xlsx_to_csv(b"PK\x03\x04not really").is_err());
        assert!(!is_xlsx(b"id,name\n"));
    }
}
