use chrono::{DateTime, Utc};

use crate::{beijing_to_utc, ParseError};

/// Data flag of a value (hj212.md "Field suffixes and data flags").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataFlag {
    /// N: a normal measurement; the only flag limit rules may act on.
    Normal,
    /// F: the monitored installation is stopped.
    Stopped,
    /// M: under maintenance.
    Maintenance,
    /// S: set by hand.
    ManuallySet,
    /// D: instrument fault.
    Fault,
    /// C: calibrating.
    Calibration,
    /// T: over the instrument's range.
    OverRange,
    /// B: the logger lost contact with the instrument.
    CommFault,
}

impl DataFlag {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "N" => DataFlag::Normal,
            "F" => DataFlag::Stopped,
            "M" => DataFlag::Maintenance,
            "S" => DataFlag::ManuallySet,
            "D" => DataFlag::Fault,
            "C" => DataFlag::Calibration,
            "T" => DataFlag::OverRange,
            "B" => DataFlag::CommFault,
            _ => return None,
        })
    }

    pub fn letter(self) -> char {
        match self {
            DataFlag::Normal => 'N',
            DataFlag::Stopped => 'F',
            DataFlag::Maintenance => 'M',
            DataFlag::ManuallySet => 'S',
            DataFlag::Fault => 'D',
            DataFlag::Calibration => 'C',
            DataFlag::OverRange => 'T',
            DataFlag::CommFault => 'B',
        }
    }

    /// Every flag, for tables and tests.
    pub const ALL: [DataFlag; 8] = [
        DataFlag::Normal,
        DataFlag::Stopped,
        DataFlag::Maintenance,
        DataFlag::ManuallySet,
        DataFlag::Fault,
        DataFlag::Calibration,
        DataFlag::OverRange,
        DataFlag::CommFault,
    ];
}

/// The CP content: DataTime (converted to UTC), per-pollutant values, and every other key=value (e.g. RtdInterval, QnRtn, SystemTime).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cp {
    pub data_time: Option<DateTime<Utc>>,
    /// "a34004-Rtd=35.2,a34004-Flag=N": one CpValue { code: "a34004", suffix: "Rtd", value: 35.2, flag: Some(Normal) }.
    /// SBxxx-RS equipment states and other numeric code-suffix fields come through here too.
    pub values: Vec<CpValue>,
    /// Fields that are not code-suffix numbers, in order (e.g. ("RtdInterval","30"), ("QnRtn","1"), ("a34004-SampleTime","2026...")).
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CpValue {
    pub code: String,
    pub suffix: String,
    pub value: f64,
    pub flag: Option<DataFlag>,
}

impl Cp {
    /// Items are separated by ';', the values of one item by ','. A `code-Flag` applies to the values
    /// of that code in the same item, or failing that to its earlier values that have no flag yet.
    /// A flag letter the standard does not define is kept in `fields`, never silently taken as N.
    pub fn parse(cp: &str) -> Result<Cp, ParseError> {
        let mut out = Cp::default();
        for item in cp.split(';').filter(|item| !item.is_empty()) {
            let item_start = out.values.len();
            let mut flags: Vec<(&str, DataFlag)> = Vec::new();
            for pair in item.split(',').filter(|pair| !pair.is_empty()) {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| ParseError::BadCp(format!("{pair:?} is not key=value")))?;
                if key.is_empty() {
                    return Err(ParseError::BadCp(format!("{pair:?} has no key")));
                }
                if key == "DataTime" {
                    let t =
                        beijing_to_utc(value).ok_or_else(|| ParseError::BadTime(value.into()))?;
                    out.data_time = Some(t);
                    continue;
                }
                let Some((code, suffix)) = key
                    .rsplit_once('-')
                    .filter(|(c, s)| !c.is_empty() && !s.is_empty())
                else {
                    out.fields.push((key.into(), value.into()));
                    continue;
                };
                if suffix == "Flag" {
                    if let Some(flag) = DataFlag::parse(value) {
                        flags.push((code, flag));
                        continue;
                    }
                }
                // "-SampleTime" looks numeric but is a timestamp, not a measurement.
                let measurement = suffix != "Flag" && !suffix.ends_with("Time");
                match plain_number(value) {
                    Some(number) if measurement => out.values.push(CpValue {
                        code: code.into(),
                        suffix: suffix.into(),
                        value: number,
                        flag: None,
                    }),
                    _ => out.fields.push((key.into(), value.into())),
                }
            }
            for (code, flag) in flags {
                let in_item = out.values[item_start..]
                    .iter_mut()
                    .filter(|v| v.code == code && v.flag.is_none());
                let mut applied = false;
                for value in in_item {
                    value.flag = Some(flag);
                    applied = true;
                }
                if !applied {
                    for value in out.values[..item_start]
                        .iter_mut()
                        .filter(|v| v.code == code && v.flag.is_none())
                    {
                        value.flag = Some(flag);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The first value with this code and suffix.
    pub fn value(&self, code: &str, suffix: &str) -> Option<&CpValue> {
        self.values
            .iter()
            .find(|v| v.code == code && v.suffix == suffix)
    }

    /// The first field with this key.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A finite decimal number as loggers write it ("35.2", "-3", "1.5e3"); not "inf", "NaN" or "".
fn plain_number(s: &str) -> Option<f64> {
    let looks_numeric = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if !looks_numeric {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}
