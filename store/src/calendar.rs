//! The working calendar time limits run on: weekends and public holidays are days off, make-up
//! working days (调休) are working days although they fall on a weekend. Days are those of
//! Asia/Shanghai (UTC+8 all year; China has no daylight saving time).
//!
//! Limits in hours count calendar hours; limits in working days count whole working days: a task
//! dispatched at 15:00 on a Friday with a one-working-day limit is due at 15:00 on the next working
//! day. The days come from the `calendar_days` table (`Store::working_calendar`).

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Utc, Weekday};

/// Asia/Shanghai.
pub fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("valid offset")
}

/// Days that differ from the weekday/weekend rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkingCalendar {
    /// Public holidays (days off even on a weekday).
    pub holidays: HashSet<NaiveDate>,
    /// Make-up working days (working even on a weekend).
    pub workdays: HashSet<NaiveDate>,
}

/// A time limit: calendar time (minutes; hours are written `24h` and stored as minutes) or
/// working days. Written `30m`, `24h`, `3wd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Minutes(u32),
    WorkingDays(u32),
}

impl Limit {
    pub const MAX: u32 = 999_999;

    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
        if num.is_empty() || num.starts_with('0') {
            return None;
        }
        let n: u32 = num.parse().ok().filter(|n| *n <= Self::MAX)?;
        match unit {
            "m" => Some(Limit::Minutes(n)),
            "h" => Some(Limit::Minutes(n.checked_mul(60)?)),
            "wd" => Some(Limit::WorkingDays(n)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Limit::Minutes(m) if m % 60 == 0 && m / 60 <= Self::MAX => write!(f, "{}h", m / 60),
            Limit::Minutes(m) => write!(f, "{m}m"),
            Limit::WorkingDays(d) => write!(f, "{d}wd"),
        }
    }
}

impl WorkingCalendar {
    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        if self.workdays.contains(&d) {
            return true;
        }
        if self.holidays.contains(&d) {
            return false;
        }
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
    }

    /// When a limit that starts at `from` runs out.
    pub fn deadline(&self, from: DateTime<Utc>, limit: Limit) -> DateTime<Utc> {
        match limit {
            Limit::Minutes(m) => from + Duration::minutes(m as i64),
            Limit::WorkingDays(n) => {
                let local = from.with_timezone(&china());
                let mut day = local.date_naive();
                let mut left = n;
                // Starting on a day off, the clock starts at the next working day's beginning.
                let mut time = local.time();
                if !self.is_working_day(day) {
                    time = chrono::NaiveTime::MIN;
                    while !self.is_working_day(day) {
                        day = day.succ_opt().expect("date in range");
                    }
                }
                while left > 0 {
                    day = day.succ_opt().expect("date in range");
                    if self.is_working_day(day) {
                        left -= 1;
                    }
                }
                china().from_local_datetime(&day.and_time(time)).single().expect("fixed offset").with_timezone(&Utc)
            }
        }
    }

    /// The moments at 50%, 100% and 150% of a limit (remind, supervise, escalate). For working
    /// days the fractions are of the working days, mapped onto the calendar.
    pub fn checkpoints(&self, from: DateTime<Utc>, limit: Limit) -> [DateTime<Utc>; 3] {
        match limit {
            Limit::Minutes(m) => {
                let span = Duration::minutes(m as i64);
                [from + span / 2, from + span, from + span + span / 2]
            }
            Limit::WorkingDays(n) => {
                // Half-days count in working hours of 24 h per working day: step through whole
                // working days, then add the remaining hours.
                let at = |halves: u32| {
                    let whole = self.deadline(from, Limit::WorkingDays(halves / 2));
                    if halves % 2 == 1 {
                        whole + Duration::hours(12)
                    } else {
                        whole
                    }
                };
                [at(n), at(2 * n), at(3 * n)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn at(y: i32, m: u32, day: u32, h: u32) -> DateTime<Utc> {
        china().with_ymd_and_hms(y, m, day, h, 0, 0).unwrap().with_timezone(&Utc)
    }

    /// 2026: National Day holiday 1-7 Oct (Thu..Wed), make-up working days Sun 27 Sep and Sat 10 Oct
    /// (illustrative; the administrator maintains the real table).
    fn cal() -> WorkingCalendar {
        WorkingCalendar {
            holidays: (1..=7).map(|x| d(2026, 10, x)).collect(),
            workdays: [d(2026, 9, 27), d(2026, 10, 10)].into_iter().collect(),
        }
    }

    #[test]
    fn limits_parse_and_print() {
        assert_eq!(Limit::parse("30m"), Some(Limit::Minutes(30)));
        assert_eq!(Limit::parse("24h"), Some(Limit::Minutes(1440)));
        assert_eq!(Limit::parse("3wd"), Some(Limit::WorkingDays(3)));
        for bad in ["", "0h", "05m", "3d", "h", "-1h", "1000000m", "3 wd"] {
            assert_eq!(Limit::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Limit::Minutes(1440).to_string(), "24h");
        assert_eq!(Limit::Minutes(30).to_string(), "30m");
        assert_eq!(Limit::WorkingDays(10).to_string(), "10wd");
    }

    #[test]
    fn weekends_holidays_and_make_up_days() {
        let c = cal();
        assert!(c.is_working_day(d(2026, 9, 25)), "Friday");
        assert!(!c.is_working_day(d(2026, 9, 26)), "Saturday");
        assert!(c.is_working_day(d(2026, 9, 27)), "make-up Sunday");
        assert!(!c.is_working_day(d(2026, 10, 5)), "holiday Monday");
        assert!(c.is_working_day(d(2026, 10, 10)), "make-up Saturday");
    }

    #[test]
    fn working_day_limits_skip_days_off() {
        let c = cal();
        // Friday 15:00 + 1 working day: the make-up Sunday 27 Sep, 15:00.
        assert_eq!(c.deadline(at(2026, 9, 25, 15), Limit::WorkingDays(1)), at(2026, 9, 27, 15));
        // Wednesday 30 Sep 10:00 + 1: the holiday week is skipped, to Thursday 8 Oct.
        assert_eq!(c.deadline(at(2026, 9, 30, 10), Limit::WorkingDays(1)), at(2026, 10, 8, 10));
        // Thursday 8 Oct + 2: Friday 9, then the make-up Saturday 10.
        assert_eq!(c.deadline(at(2026, 10, 8, 9), Limit::WorkingDays(2)), at(2026, 10, 10, 9));
        // Dispatched on a holiday: counting starts from the next working day's beginning.
        assert_eq!(c.deadline(at(2026, 10, 3, 20), Limit::WorkingDays(1)), at(2026, 10, 9, 0));
        // Hours are calendar hours, holidays or not.
        assert_eq!(c.deadline(at(2026, 10, 1, 8), Limit::Minutes(24 * 60)), at(2026, 10, 2, 8));
    }

    #[test]
    fn checkpoints_at_half_full_and_one_and_a_half() {
        let c = cal();
        let from = at(2026, 11, 2, 9); // Monday
        assert_eq!(c.checkpoints(from, Limit::Minutes(120)), [at(2026, 11, 2, 10), at(2026, 11, 2, 11), at(2026, 11, 2, 12)]);
        let [r, s, e] = c.checkpoints(from, Limit::WorkingDays(2));
        assert_eq!(r, at(2026, 11, 3, 9), "50% of 2 working days: one working day");
        assert_eq!(s, at(2026, 11, 4, 9));
        assert_eq!(e, at(2026, 11, 5, 9));
        // Across a weekend: Friday + 1 working day -> 50% at Friday 21:00, due Monday, 150% Monday 21:00.
        let fri = at(2026, 11, 6, 9);
        assert_eq!(c.checkpoints(fri, Limit::WorkingDays(1)), [at(2026, 11, 6, 21), at(2026, 11, 9, 9), at(2026, 11, 9, 21)]);
    }
}
