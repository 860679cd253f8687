//! Rules are data: each names a scope (device, regulated object, metric), a condition and a
//! warning level. One detector evaluates all rules; `set_rules` swaps them without a restart.
//!
//! Conditions: threshold with duration and hysteresis, rate of change, flat line, data gap.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::detector::{Detector, Finding, Observation, SeriesKey, SeriesMeta, Transition, Limits};

pub use offsite_store::rules::{Condition, Rule, Scope};

#[derive(Debug, Clone, Default)]
struct RuleState {
    firing: bool,
    /// When the current exceedance / flat stretch began.
    since: Option<DateTime<Utc>>,
    last: Option<(DateTime<Utc>, f64)>,
}

struct SeriesRules {
    meta: Arc<SeriesMeta>,
    /// Indexes into `rules` of the rules that apply, with their state.
    states: Vec<(usize, RuleState)>,
    generation: u64,
}

pub struct RuleDetector {
    rules: Vec<Rule>,
    generation: u64,
    series: HashMap<SeriesKey, SeriesRules>,
}

impl Default for RuleDetector {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl RuleDetector {
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut d = Self { rules: Vec::new(), generation: 0, series: HashMap::new() };
        d.set_rules(rules);
        d
    }

    /// Replaces the rules; state of a rule that is still there (same id and condition) is kept.
    pub fn set_rules(&mut self, rules: Vec<Rule>) {
        let old = std::mem::take(&mut self.rules);
        self.rules = rules.into_iter().filter(|r| r.enabled && r.validate().is_ok()).collect();
        self.generation += 1;
        for s in self.series.values_mut() {
            let kept: HashMap<i64, RuleState> = s
                .states
                .drain(..)
                .filter_map(|(i, st)| {
                    let r = &old[i];
                    self.rules.iter().any(|n| n.id == r.id && n.condition == r.condition).then_some((r.id, st))
                })
                .collect();
            s.states = applicable(&self.rules, &s.meta)
                .map(|i| (i, kept.get(&self.rules[i].id).cloned().unwrap_or_default()))
                .collect();
            s.generation = self.generation;
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

fn applicable<'a>(rules: &'a [Rule], meta: &'a SeriesMeta) -> impl Iterator<Item = usize> + 'a {
    rules.iter().enumerate().filter(|(_, r)| r.scope.matches(meta.target())).map(|(i, _)| i)
}

impl Detector for RuleDetector {
    fn name(&self) -> &str {
        "rules"
    }

    fn version(&self) -> &str {
        "1"
    }

    fn observe(&mut self, batch: &[Observation], out: &mut Vec<Finding>) {
        for (index, o) in batch.iter().enumerate() {
            let rules = &self.rules;
            let generation = self.generation;
            let s = self.series.entry(o.key).or_insert_with(|| SeriesRules {
                meta: o.meta.clone(),
                states: applicable(rules, &o.meta).map(|i| (i, RuleState::default())).collect(),
                generation,
            });
            let mut score: f64 = 0.0;
            let measured = o.measured();
            for (ri, st) in &mut s.states {
                let rule = &rules[*ri];
                // A flagged value still shows the device is sending (data gap) but is no reading:
                // limit rules neither fire on it nor take it as the reference for the next value.
                if !measured && !matches!(rule.condition, Condition::DataGap { .. }) {
                    continue;
                }
                let t = step(rule, st, o.ts, o.value);
                if st.firing {
                    score = 1.0;
                }
                if let Some(t) = t {
                    out.push(Finding { index, score: if st.firing { 1.0 } else { 0.0 }, transition: Some(t) });
                }
            }
            if score > 0.0 {
                out.push(Finding { index, score, transition: None });
            }
        }
    }

    fn set_rules(&mut self, rules: &[Rule]) {
        RuleDetector::set_rules(self, rules.to_vec());
    }

    fn idle(&mut self, now: DateTime<Utc>) -> Vec<(SeriesKey, Arc<SeriesMeta>, Transition)> {
        let mut out = Vec::new();
        for (key, s) in &mut self.series {
            for (ri, st) in &mut s.states {
                let rule = &self.rules[*ri];
                if let Condition::DataGap { max_gap_s } = rule.condition {
                    if let Some((last, _)) = st.last {
                        if !st.firing && (now - last).num_seconds() >= max_gap_s as i64 {
                            st.firing = true;
                            out.push((*key, s.meta.clone(), raise(rule, format!("no data for {} s", (now - last).num_seconds()))));
                        }
                    }
                }
            }
        }
        out
    }
}

fn raise(rule: &Rule, detail: String) -> Transition {
    let limits = match rule.condition {
        Condition::Threshold { above, below, .. } => Limits { above, below, score_at_least: None },
        _ => Limits::default(),
    };
    Transition::Raise { event: rule.event(), level: rule.level, detail: format!("{}: {detail}", rule.name), limits }
}

/// A measured value as people read it in a warning's text: at most three decimals, no trailing
/// zeros (the evidence keeps the exact value).
fn shown(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".to_owned() } else { s.to_owned() }
}

/// Advances one rule's state by one sample; returns a transition if the rule starts or stops firing.
fn step(rule: &Rule, st: &mut RuleState, ts: DateTime<Utc>, v: f64) -> Option<Transition> {
    let prev = st.last.replace((ts, v));
    let clear = |st: &mut RuleState| {
        st.firing = false;
        Some(Transition::Clear { event: rule.event() })
    };
    match &rule.condition {
        Condition::Threshold { above, below, for_s, hysteresis } => {
            let exceeding = above.is_some_and(|a| v > a) || below.is_some_and(|b| v < b);
            if exceeding {
                let since = *st.since.get_or_insert(ts);
                if !st.firing && (ts - since).num_seconds() >= *for_s as i64 {
                    st.firing = true;
                    let limit = above.map(|a| format!("> {a}")).or(below.map(|b| format!("< {b}"))).unwrap_or_default();
                    return Some(raise(rule, format!("{} {limit} for {} s", shown(v), (ts - since).num_seconds())));
                }
                None
            } else {
                st.since = None;
                let back = above.is_none_or(|a| v <= a - hysteresis) && below.is_none_or(|b| v >= b + hysteresis);
                if st.firing && back {
                    return clear(st);
                }
                None
            }
        }
        Condition::RateOfChange { max_per_minute } => {
            let (pt, pv) = prev?;
            let minutes = (ts - pt).num_milliseconds() as f64 / 60_000.0;
            if minutes <= 0.0 {
                return None;
            }
            let rate = (v - pv).abs() / minutes;
            if rate > *max_per_minute {
                if !st.firing {
                    st.firing = true;
                    return Some(raise(rule, format!("changed {:.3} per minute (limit {max_per_minute})", rate)));
                }
                None
            } else if st.firing {
                clear(st)
            } else {
                None
            }
        }
        Condition::FlatLine { for_s, epsilon } => {
            let reference = match prev {
                Some((_, pv)) if (v - pv).abs() <= *epsilon => true,
                _ => false,
            };
            if reference {
                let since = *st.since.get_or_insert(prev.map(|p| p.0).unwrap_or(ts));
                if !st.firing && (ts - since).num_seconds() >= *for_s as i64 {
                    st.firing = true;
                    return Some(raise(rule, format!("value stuck at {} for {} s", shown(v), (ts - since).num_seconds())));
                }
                None
            } else {
                st.since = None;
                if st.firing {
                    clear(st)
                } else {
                    None
                }
            }
        }
        Condition::DataGap { max_gap_s } => {
            if st.firing {
                return clear(st);
            }
            // Noticed only when data comes back (backtests have no clock): raised and cleared at once.
            let (pt, _) = prev?;
            if (ts - pt).num_seconds() >= *max_gap_s as i64 {
                st.firing = true;
                let t = raise(rule, format!("no data for {} s", (ts - pt).num_seconds()));
                return Some(t);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::Level;

    fn meta(device: &str, metric: &str) -> Arc<SeriesMeta> {
        Arc::new(SeriesMeta { device_id: device.into(), metric_key: metric.into(), object_id: Some("site1".into()), class: Some("dust-monitor".into()) })
    }

    fn rule(id: i64, condition: Condition) -> Rule {
        Rule { id, name: format!("r{id}"), scope: Scope::default(), level: Level::ORANGE, condition, item: None, enabled: true }
    }

    fn key_of(m: &SeriesMeta) -> SeriesKey {
        let sum = |s: &str| s.bytes().map(i32::from).sum();
        SeriesKey { device: sum(&m.device_id), metric: sum(&m.metric_key) }
    }

    /// Feeds (seconds, value) pairs of one series; returns (second, "raise"/"clear") transitions.
    fn run(d: &mut RuleDetector, m: &Arc<SeriesMeta>, points: &[(i64, f64)]) -> Vec<(i64, &'static str)> {
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let batch: Vec<Observation> = points
            .iter()
            .map(|(s, v)| Observation { key: key_of(m), meta: m.clone(), ts: t0 + chrono::Duration::seconds(*s), value: *v, quality: 0 })
            .collect();
        let mut out = Vec::new();
        d.observe(&batch, &mut out);
        out.into_iter()
            .filter_map(|f| {
                f.transition.map(|t| (points[f.index].0, if matches!(t, Transition::Raise { .. }) { "raise" } else { "clear" }))
            })
            .collect()
    }

    #[test]
    fn values_in_texts_have_at_most_three_decimals() {
        assert_eq!(shown(10.966372081098196), "10.966");
        assert_eq!(shown(180.0), "180");
        assert_eq!(shown(-0.0001), "0");
        assert_eq!(shown(2.5), "2.5");
    }

    #[test]
    fn threshold_needs_duration_and_clears_with_hysteresis() {
        let pm10 = Condition::Threshold { above: Some(150.0), below: None, for_s: 600, hysteresis: 10.0 };
        let mut d = RuleDetector::new(vec![rule(1, pm10)]);
        let m = meta("d1", "pm10");
        // A 5-minute excursion is not enough.
        let short: Vec<(i64, f64)> = (0..=5).map(|i| (i * 60, 160.0)).chain([(360, 100.0)]).collect();
        assert!(run(&mut d, &m, &short).is_empty());
        // Ten minutes above: raised at minute 10 after the start, once.
        let long: Vec<(i64, f64)> = (10..=25).map(|i| (i * 60, 170.0)).collect();
        assert_eq!(run(&mut d, &m, &long), vec![(1200, "raise")]);
        // Back to 145 (inside the hysteresis band): still firing; 139: cleared.
        assert!(run(&mut d, &m, &[(1600, 145.0)]).is_empty());
        assert_eq!(run(&mut d, &m, &[(1660, 139.0)]), vec![(1660, "clear")]);
    }

    #[test]
    fn scope_limits_which_series_a_rule_sees() {
        let mut r = rule(2, Condition::Threshold { above: Some(1.0), below: None, for_s: 0, hysteresis: 0.0 });
        r.scope = Scope { object: Some("site1".into()), metric: Some("noise".into()), ..Scope::default() };
        let mut d = RuleDetector::new(vec![r]);
        assert!(run(&mut d, &meta("d1", "pm10"), &[(0, 5.0)]).is_empty());
        assert_eq!(run(&mut d, &meta("d2", "noise"), &[(0, 5.0)]), vec![(0, "raise")]);
        let other_site = Arc::new(SeriesMeta { device_id: "d3".into(), metric_key: "noise".into(), object_id: None, class: None });
        let batch = [Observation { key: SeriesKey { device: 3, metric: 2 }, meta: other_site, ts: Utc::now(), value: 5.0, quality: 0 }];
        let mut out = Vec::new();
        d.observe(&batch, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_class_scope_covers_every_device_of_that_kind() {
        let mut r = rule(6, Condition::Threshold { above: Some(1.0), below: None, for_s: 0, hysteresis: 0.0 });
        r.scope = Scope { class: Some("dust-monitor".into()), ..Scope::default() };
        let mut d = RuleDetector::new(vec![r]);
        assert_eq!(run(&mut d, &meta("d7", "pm10"), &[(0, 5.0)]), vec![(0, "raise")]);
        let other = Arc::new(SeriesMeta { device_id: "d8".into(), metric_key: "pm10".into(), object_id: None, class: Some("camera".into()) });
        assert!(run(&mut d, &other, &[(0, 5.0)]).is_empty());
    }

    #[test]
    fn rate_of_change_flat_line_and_gap() {
        let mut d = RuleDetector::new(vec![rule(3, Condition::RateOfChange { max_per_minute: 10.0 })]);
        let m = meta("d1", "temperature");
        assert_eq!(run(&mut d, &m, &[(0, 20.0), (60, 25.0), (120, 50.0), (180, 51.0)]), vec![(120, "raise"), (180, "clear")]);

        let mut d = RuleDetector::new(vec![rule(4, Condition::FlatLine { for_s: 300, epsilon: 0.0 })]);
        let flat: Vec<(i64, f64)> = (0..=6).map(|i| (i * 60, 7.0)).chain([(420, 7.5)]).collect();
        assert_eq!(run(&mut d, &m, &flat), vec![(300, "raise"), (420, "clear")]);
        let noisy: Vec<(i64, f64)> = (10..30).map(|i| (i * 60, (i % 3) as f64)).collect();
        assert!(run(&mut d, &m, &noisy).is_empty());

        let mut d = RuleDetector::new(vec![rule(5, Condition::DataGap { max_gap_s: 120 })]);
        assert!(run(&mut d, &m, &[(0, 1.0), (60, 1.0)]).is_empty());
        let idle = d.idle(DateTime::from_timestamp(1_700_000_000 + 400, 0).unwrap());
        assert_eq!(idle.len(), 1, "a gap is raised while it lasts");
        assert!(d.idle(DateTime::from_timestamp(1_700_000_000 + 500, 0).unwrap()).is_empty(), "once");
        assert_eq!(run(&mut d, &m, &[(600, 1.0)]), vec![(600, "clear")]);
    }

    #[test]
    fn rules_change_without_restart_and_keep_state() {
        let th = Condition::Threshold { above: Some(10.0), below: None, for_s: 120, hysteresis: 0.0 };
        let mut d = RuleDetector::new(vec![rule(1, th.clone())]);
        let m = meta("d1", "x");
        assert!(run(&mut d, &m, &[(0, 11.0), (60, 11.0)]).is_empty());
        // Another rule added: rule 1 keeps its running exceedance.
        d.set_rules(vec![rule(1, th), rule(9, Condition::Threshold { above: Some(100.0), below: None, for_s: 0, hysteresis: 0.0 })]);
        assert_eq!(run(&mut d, &m, &[(120, 11.0)]), vec![(120, "raise")]);
        assert_eq!(run(&mut d, &m, &[(180, 200.0)]), vec![(180, "raise")]);
        // Rules removed: nothing fires any more.
        d.set_rules(vec![]);
        assert!(run(&mut d, &m, &[(240, 500.0)]).is_empty());
    }

    #[test]
    fn rules_parse_from_json_and_are_validated() {
        let r: Rule = serde_json::from_str(
            r#"{"id":1,"name":"PM10 超标","level":2,"scope":{"metric":"pm10"},
                "condition":{"kind":"threshold","above":150,"for_s":600,"hysteresis":10}}"#,
        )
        .unwrap();
        assert!(r.validate().is_ok() && r.enabled);
        let bad: Rule = serde_json::from_str(r#"{"id":2,"name":"x","level":3,"condition":{"kind":"threshold"}}"#).unwrap();
        assert!(bad.validate().is_err());
        assert!(serde_json::from_str::<Rule>(r#"{"id":3,"name":"x","level":9,"condition":{"kind":"data_gap","max_gap_s":5}}"#).is_err());
    }
}
