//! The hall events over per-zone counts: post unattended (a window zone empty longer than allowed
//! within working hours, Asia/Shanghai) and crowding (more than K people for longer than T).
//!
//! Only time inside working hours counts towards unattended: a window left at 11:55 for lunch is
//! not unattended at 13:31, and an open unattended event clears when the hours end (nobody is
//! expected then). Crowding counts at any hour.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, FixedOffset, NaiveTime, Utc, Weekday};
use offsite_wire::{CameraEventKind, ZoneId, ZoneKind};

#[derive(Debug, Clone)]
pub struct HallRules {
    pub unattended_after: std::time::Duration,
    /// Working hours in Asia/Shanghai (e.g. 09:00-12:00 and 13:30-17:30); outside them nothing is unattended.
    pub working_hours: Vec<(NaiveTime, NaiveTime)>,
    /// Only Monday to Friday (holidays are the platform's business).
    pub weekdays_only: bool,
    pub crowding_above: u32,
    pub crowding_for: std::time::Duration,
}

impl HallRules {
    /// Whether `at` falls within working hours (Asia/Shanghai, start inclusive, end exclusive).
    pub fn working_at(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&shanghai());
        if self.weekdays_only && matches!(local.weekday(), Weekday::Sat | Weekday::Sun) {
            return false;
        }
        let t = local.time();
        self.working_hours.iter().any(|&(start, end)| start <= t && t < end)
    }
}

/// Asia/Shanghai: UTC+8 all year (no daylight saving time since 1991).
fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

#[derive(Debug, Clone, PartialEq)]
pub struct HallTransition {
    pub kind: CameraEventKind,
    pub zone: ZoneId,
    pub raised: bool,
    /// For people, zh first, e.g. "1号窗口 无人 12 分钟".
    pub detail: String,
}

/// What is being timed in one zone.
#[derive(Debug, Default)]
struct ZoneState {
    /// Start of the current stretch that may become an event (empty window within hours, or a
    /// queue above the limit).
    since: Option<DateTime<Utc>>,
    raised: bool,
    kind: Option<CameraEventKind>,
}

pub struct HallEvents {
    rules: HallRules,
    zones: HashMap<ZoneId, ZoneState>,
}

fn minutes(d: chrono::Duration) -> i64 {
    d.num_minutes().max(0)
}

impl HallEvents {
    pub fn new(rules: HallRules) -> Self {
        Self { rules, zones: HashMap::new() }
    }

    pub fn rules(&self) -> &HallRules {
        &self.rules
    }

    /// Whether an event of this zone is open now.
    pub fn is_raised(&self, zone: &ZoneId) -> bool {
        self.zones.get(zone).is_some_and(|z| z.raised)
    }

    /// Feeds one analysed frame's counts (zone id, kind, name, count); returns what starts or ends.
    ///
    /// A zone that was raised and is missing from `counts` (removed from the layout) is cleared.
    pub fn observe(&mut self, at: DateTime<Utc>, counts: &[(ZoneId, ZoneKind, String, u32)]) -> Vec<HallTransition> {
        let mut out = Vec::new();
        let working = self.rules.working_at(at);
        for (id, kind, name, count) in counts {
            let state = self.zones.entry(id.clone()).or_default();
            let transition = match kind {
                ZoneKind::Window => Self::window(&self.rules, state, at, working, name, *count),
                ZoneKind::Queue => Self::queue(&self.rules, state, at, name, *count),
                ZoneKind::Other => None,
            };
            if let Some((kind, raised, detail)) = transition {
                out.push(HallTransition { kind, zone: id.clone(), raised, detail });
            }
        }
        let gone: Vec<ZoneId> =
            self.zones.keys().filter(|id| !counts.iter().any(|(c, ..)| c == *id)).cloned().collect();
        for id in gone {
            let state = self.zones.remove(&id).expect("listed above");
            if let (true, Some(kind)) = (state.raised, state.kind) {
                let detail = format!("{id} 区域已移除 (zone removed)");
                out.push(HallTransition { kind, zone: id, raised: false, detail });
            }
        }
        out
    }

    fn window(
        rules: &HallRules,
        s: &mut ZoneState,
        at: DateTime<Utc>,
        working: bool,
        name: &str,
        count: u32,
    ) -> Option<(CameraEventKind, bool, String)> {
        const KIND: CameraEventKind = CameraEventKind::Unattended;
        if !working {
            s.since = None;
            return std::mem::take(&mut s.raised)
                .then(|| (KIND, false, format!("{name} 下班时间，不再计脱岗 (working hours over)")));
        }
        if count > 0 {
            let since = s.since.take();
            if std::mem::take(&mut s.raised) {
                let away = since.map(|t| minutes(at - t)).unwrap_or(0);
                return Some((KIND, false, format!("{name} 人员已回岗，离岗 {away} 分钟 (back after {away} min)")));
            }
            return None;
        }
        let since = *s.since.get_or_insert(at);
        let empty_for = at - since;
        if !s.raised && empty_for.to_std().is_ok_and(|d| d >= rules.unattended_after) {
            s.raised = true;
            s.kind = Some(KIND);
            let m = minutes(empty_for);
            return Some((KIND, true, format!("{name} 无人 {m} 分钟 (unattended for {m} min)")));
        }
        None
    }

    fn queue(
        rules: &HallRules,
        s: &mut ZoneState,
        at: DateTime<Utc>,
        name: &str,
        count: u32,
    ) -> Option<(CameraEventKind, bool, String)> {
        const KIND: CameraEventKind = CameraEventKind::Crowding;
        let limit = rules.crowding_above;
        if count <= limit {
            s.since = None;
            return std::mem::take(&mut s.raised)
                .then(|| (KIND, false, format!("{name} 人数回落至 {count} 人 (down to {count}, limit {limit})")));
        }
        let since = *s.since.get_or_insert(at);
        let crowded_for = at - since;
        if !s.raised && crowded_for.to_std().is_ok_and(|d| d >= rules.crowding_for) {
            s.raised = true;
            s.kind = Some(KIND);
            let m = minutes(crowded_for);
            return Some((
                KIND,
                true,
                format!(
                    "{name} 聚集 {count} 人（上限 {limit}）已 {m} 分钟 ({count} people, limit {limit}, for {m} min)"
                ),
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn rules() -> HallRules {
        HallRules {
            unattended_after: Duration::from_secs(10 * 60),
            working_hours: vec![(hm(9, 0), hm(12, 0)), (hm(13, 30), hm(17, 30))],
            weekdays_only: true,
            crowding_above: 3,
            crowding_for: Duration::from_secs(2 * 60),
        }
    }

    /// Wednesday 2026-11-25 at `h:m:s` Asia/Shanghai.
    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        shanghai().with_ymd_and_hms(2026, 11, 25, h, m, s).unwrap().with_timezone(&Utc)
    }

    fn window(n: u32) -> Vec<(ZoneId, ZoneKind, String, u32)> {
        vec![(ZoneId::parse("w1").unwrap(), ZoneKind::Window, "1号窗口".into(), n)]
    }

    fn queue(n: u32) -> Vec<(ZoneId, ZoneKind, String, u32)> {
        vec![(ZoneId::parse("q").unwrap(), ZoneKind::Queue, "等候区".into(), n)]
    }

    #[test]
    fn working_hours_are_shanghai_weekdays() {
        let r = rules();
        assert!(r.working_at(at(9, 0, 0)));
        assert!(!r.working_at(at(8, 59, 59)));
        assert!(!r.working_at(at(12, 0, 0)));
        assert!(r.working_at(at(17, 29, 0)));
        // 09:30 in Shanghai is 01:30 UTC.
        assert!(r.working_at(Utc.with_ymd_and_hms(2026, 11, 25, 1, 30, 0).unwrap()));
        // Saturday.
        let sat = shanghai().with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap().with_timezone(&Utc);
        assert!(!r.working_at(sat));
        assert!(HallRules { weekdays_only: false, ..r }.working_at(sat));
    }

    #[test]
    fn unattended_after_the_allowed_time_and_cleared_when_someone_is_back() {
        let mut h = HallEvents::new(rules());
        assert!(h.observe(at(10, 0, 0), &window(1)).is_empty());
        assert!(h.observe(at(10, 1, 0), &window(0)).is_empty());
        assert!(h.observe(at(10, 10, 59), &window(0)).is_empty());
        let t = h.observe(at(10, 11, 0), &window(0));
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!((t[0].kind, t[0].raised, t[0].zone.as_str()), (CameraEventKind::Unattended, true, "w1"));
        assert!(t[0].detail.starts_with("1号窗口 无人 10 分钟"), "{}", t[0].detail);
        assert!(h.is_raised(&ZoneId::parse("w1").unwrap()));
        // Raised once, not on every frame.
        assert!(h.observe(at(10, 12, 0), &window(0)).is_empty());
        let t = h.observe(at(10, 15, 0), &window(1));
        assert_eq!((t[0].kind, t[0].raised), (CameraEventKind::Unattended, false));
        assert!(t[0].detail.contains("离岗 14 分钟"), "{}", t[0].detail);
        // A short absence raises nothing.
        assert!(h.observe(at(10, 20, 0), &window(0)).is_empty());
        assert!(h.observe(at(10, 25, 0), &window(1)).is_empty());
    }

    #[test]
    fn time_outside_working_hours_does_not_count_and_hours_ending_clears() {
        let mut h = HallEvents::new(rules());
        // Empty through lunch: the clock starts at 13:30.
        assert!(h.observe(at(11, 55, 0), &window(0)).is_empty());
        assert!(h.observe(at(12, 30, 0), &window(0)).is_empty());
        assert!(h.observe(at(13, 30, 0), &window(0)).is_empty());
        assert!(h.observe(at(13, 39, 0), &window(0)).is_empty());
        let t = h.observe(at(13, 40, 0), &window(0));
        assert_eq!((t.len(), t[0].raised), (1, true));
        // Still empty when the day ends: cleared, not left open overnight.
        let t = h.observe(at(17, 30, 0), &window(0));
        assert_eq!((t.len(), t[0].raised), (1, false), "{t:?}");
        assert!(t[0].detail.contains("下班"));
        assert!(h.observe(at(18, 30, 0), &window(0)).is_empty());
    }

    #[test]
    fn crowding_above_the_limit_for_long_enough() {
        let mut h = HallEvents::new(rules());
        // At the limit is not above it.
        assert!(h.observe(at(10, 0, 0), &queue(3)).is_empty());
        assert!(h.observe(at(10, 3, 0), &queue(3)).is_empty());
        assert!(h.observe(at(10, 4, 0), &queue(5)).is_empty());
        assert!(h.observe(at(10, 5, 59), &queue(4)).is_empty());
        let t = h.observe(at(10, 6, 0), &queue(6));
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].kind, t[0].raised), (CameraEventKind::Crowding, true));
        assert!(t[0].detail.starts_with("等候区 聚集 6 人（上限 3）已 2 分钟"), "{}", t[0].detail);
        assert!(h.observe(at(10, 7, 0), &queue(8)).is_empty());
        let t = h.observe(at(10, 8, 0), &queue(3));
        assert_eq!((t[0].kind, t[0].raised), (CameraEventKind::Crowding, false));
        // A dip to the limit restarts the clock.
        assert!(h.observe(at(10, 9, 0), &queue(4)).is_empty());
        assert!(h.observe(at(10, 10, 0), &queue(2)).is_empty());
        assert!(h.observe(at(10, 10, 30), &queue(4)).is_empty());
        assert!(h.observe(at(10, 12, 0), &queue(4)).is_empty());
        assert_eq!(h.observe(at(10, 12, 30), &queue(4)).len(), 1);
        // Crowding counts outside working hours too.
        let mut h = HallEvents::new(rules());
        h.observe(at(20, 0, 0), &queue(9));
        assert_eq!(h.observe(at(20, 2, 0), &queue(9)).len(), 1);
    }

    #[test]
    fn other_zones_raise_nothing_and_removed_zones_clear() {
        let mut h = HallEvents::new(rules());
        let other = vec![(ZoneId::parse("door").unwrap(), ZoneKind::Other, "门口".into(), 50)];
        assert!(h.observe(at(10, 0, 0), &other).is_empty());
        assert!(h.observe(at(11, 0, 0), &other).is_empty());

        h.observe(at(10, 0, 0), &window(0));
        assert_eq!(h.observe(at(10, 10, 0), &window(0)).len(), 1);
        let t = h.observe(at(10, 11, 0), &queue(0));
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!((t[0].kind, t[0].raised, t[0].zone.as_str()), (CameraEventKind::Unattended, false, "w1"));
    }
}
