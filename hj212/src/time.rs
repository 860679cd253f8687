use chrono::{DateTime, Duration, NaiveDate, Utc};

/// Beijing is UTC+8 all year (no daylight saving), so a fixed offset is exact.
const BEIJING_OFFSET_HOURS: i64 = 8;

/// Beijing local time YYYYMMDDhhmmss[zzz] -> UTC. None when the text is not such a time.
pub fn beijing_to_utc(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if !(b.len() == 14 || b.len() == 17) || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |from: usize, to: usize| -> u32 { s[from..to].parse().unwrap_or(u32::MAX) };
    let year = i32::try_from(num(0, 4)).ok()?;
    let millis = if b.len() == 17 { num(14, 17) } else { 0 };
    let local = NaiveDate::from_ymd_opt(year, num(4, 6), num(6, 8))?.and_hms_milli_opt(
        num(8, 10),
        num(10, 12),
        num(12, 14),
        millis,
    )?;
    Some((local - Duration::hours(BEIJING_OFFSET_HOURS)).and_utc())
}

/// UTC -> Beijing local time YYYYMMDDhhmmss, with zzz milliseconds when `with_millis` (QN wants them,
/// DataTime and SystemTime do not).
pub fn utc_to_beijing(t: DateTime<Utc>, with_millis: bool) -> String {
    let local = t.naive_utc() + Duration::hours(BEIJING_OFFSET_HOURS);
    if with_millis {
        local.format("%Y%m%d%H%M%S%3f").to_string()
    } else {
        local.format("%Y%m%d%H%M%S").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn beijing_is_utc_plus_8() {
        let t = beijing_to_utc("20261127100000").unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap());
        // Crossing midnight and the year boundary backwards.
        let t = beijing_to_utc("20270101053000123").unwrap();
        assert_eq!(
            t,
            Utc.with_ymd_and_hms(2026, 12, 31, 21, 30, 0).unwrap() + Duration::milliseconds(123)
        );
        assert_eq!(utc_to_beijing(t, true), "20270101053000123");
        assert_eq!(utc_to_beijing(t, false), "20270101053000");
    }

    #[test]
    fn round_trip_and_rejects() {
        let t = Utc.with_ymd_and_hms(2016, 8, 1, 0, 58, 57).unwrap() + Duration::milliseconds(223);
        assert_eq!(utc_to_beijing(t, true), "20160801085857223");
        assert_eq!(beijing_to_utc("20160801085857223"), Some(t));
        for bad in [
            "",
            "2026112710000",
            "202611271000001",
            "20261327100000",
            "20261127250000",
            "2026112710000a",
            "20260230100000",
            "+2026112710000",
        ] {
            assert_eq!(beijing_to_utc(bad), None, "{bad}");
        }
    }
}
