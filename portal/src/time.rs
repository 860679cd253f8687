//! Time formatting and parsing shared by the endpoints.
//!
//! Responses always carry RFC 3339 in UTC with a `Z` suffix; the UI converts to Asia/Shanghai.
//! Spelling it out here keeps the wire format independent of chrono's serde defaults.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

pub fn format(t: &DateTime<Utc>) -> String {
    // AutoSi keeps the stored microseconds when there are any, and prints none when there aren't.
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(t))
}

pub fn serialize_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

/// Parses an RFC 3339 time from a query parameter.
///
/// A literal `+` in a query string decodes to a space, so `...T08:00:00+08:00` typed into a URL
/// arrives as `...T08:00:00 08:00`; a single space where the offset sign belongs is read as `+`.
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let (head, tail) = s.rsplit_once(' ')?;
    let fixed = format!("{head}+{tail}");
    DateTime::parse_from_rfc3339(&fixed).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_offsets_and_formats_utc() {
        let t = parse("2024-05-01T08:00:00+08:00").unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap());
        assert_eq!(parse("2024-05-01T08:00:00 08:00"), Some(t));
        assert_eq!(format(&t), "2024-05-01T00:00:00Z");
        assert_eq!(parse("2024-05-01T00:00:00.25Z").map(|t| format(&t)).as_deref(), Some("2024-05-01T00:00:00.250Z"));
        assert_eq!(parse("notatime"), None);
        assert_eq!(parse("2024-05-01 00:00:00"), None);
    }
}
