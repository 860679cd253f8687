//! The hall events over per-zone counts: post unattended (a window zone empty longer than allowed
//! within working hours, Asia/Shanghai) and crowding (more than K people for longer than T).

use chrono::{DateTime, NaiveTime, Utc};
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

#[derive(Debug, Clone, PartialEq)]
pub struct HallTransition {
    pub kind: CameraEventKind,
    pub zone: ZoneId,
    pub raised: bool,
    /// For people, zh first, e.g. "1号窗口 无人 12 分钟".
    pub detail: String,
}

pub struct HallEvents {
    _rules: HallRules,
}

impl HallEvents {
    pub fn new(rules: HallRules) -> Self {
        Self { _rules: rules }
    }

    /// Feeds one analysed frame's counts (zone id, kind, name, count); returns what starts or ends.
    pub fn observe(&mut self, at: DateTime<Utc>, counts: &[(ZoneId, ZoneKind, String, u32)]) -> Vec<HallTransition> {
        let _ = (at, counts);
        Vec::new()
    }
}
