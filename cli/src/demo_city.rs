//! The demo city: 杭州市 with three districts, eight departments, sixty regulated objects of four
//! kinds with one monitoring device each, catalog items for every device kind, who handles which
//! item, rules (red ones dispatch themselves), this year's holidays, and a month of task history
//! with tasks in every state. Everything goes through the store's public API, and seeding is
//! idempotent: what exists (an operator's edits included) is left as it is.

use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use offsite_store::calendar::china;
use offsite_store::registers::demo_credit_code;
use offsite_store::rules::{Condition, Level, NewRule, Scope};
use offsite_store::tasks::{Action, CalendarDay, CalendarDayKind, NewTask, TaskPolicy, TaskSource};
use offsite_store::{CatalogFields, NewDepartment, NewObject, Region, RegionLevel, Store};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tracing::info;

pub const DISTRICTS: [(&str, &str); 3] = [("330102", "上城区"), ("330106", "西湖区"), ("330108", "滨江区")];

/// (code, name): the eight departments of the demo city.
pub const DEPARTMENTS: [(&str, &str); 8] = [
    ("market", "市场监督管理局"),
    ("ecology", "生态环境局"),
    ("housing-construction", "住建局"),
    ("emergency", "应急管理局"),
    ("approval", "行政审批局"),
    ("health", "卫生健康委员会"),
    ("urban-management", "城市管理局"),
    ("justice", "司法局"),
];

/// A kind of regulated object and the device that watches it.
pub struct Kind {
    pub class: &'static str,
    pub object_type: &'static str,
    /// Object name pattern: `{district}{name}{n:02}号`.
    pub name: &'static str,
    pub id_prefix: &'static str,
    pub count: usize,
    pub department: &'static str,
    pub item: &'static str,
    /// Anomalies per sample relative to `demo.anomaly_rate`.
    pub anomaly_factor: f64,
}

pub const KINDS: [Kind; 4] = [
    Kind {
        class: "dust-monitor",
        object_type: "construction-site",
        name: "示范建设工地",
        id_prefix: "demo-site",
        count: 25,
        department: "housing-construction",
        item: "demo-dust",
        anomaly_factor: 1.0,
    },
    Kind {
        class: "cold-chain-sensor",
        object_type: "cold-storage",
        name: "冷链食品仓库",
        id_prefix: "cold",
        count: 12,
        department: "market",
        item: "demo-cold-chain",
        anomaly_factor: 6.0,
    },
    Kind {
        class: "wastewater-monitor",
        object_type: "pollution-source",
        name: "重点排污单位",
        id_prefix: "ps",
        count: 13,
        department: "ecology",
        item: "demo-wastewater",
        anomaly_factor: 2.0,
    },
    Kind {
        class: "hall-counter",
        object_type: "service-hall",
        name: "便民服务中心",
        id_prefix: "hall",
        count: 10,
        department: "approval",
        item: "demo-hall-service",
        anomaly_factor: 2.0,
    },
];

/// One object of the city and how its device behaves.
#[derive(Debug, Clone)]
pub struct CityObject {
    pub id: String,
    pub class: &'static str,
    /// The sim source's `metrics` (empty: the built-in construction-site profile).
    pub metrics: Value,
    pub anomaly_factor: f64,
}

fn sim_metrics(class: &str) -> Value {
    match class {
        "cold-chain-sensor" => json!([
            {"key": "cold_temp", "base": -20.0, "daily_amplitude": 0.8, "noise": 0.4},
            {"key": "humidity", "base": 85.0, "daily_amplitude": 3.0, "noise": 1.0, "min": 0.0, "max": 100.0}
        ]),
        "wastewater-monitor" => json!([
            {"key": "cod", "base": 40.0, "daily_amplitude": 8.0, "noise": 3.0, "min": 0.0},
            {"key": "nh3n", "base": 4.0, "daily_amplitude": 1.0, "noise": 0.4, "min": 0.0},
            {"key": "ph", "base": 7.2, "daily_amplitude": 0.2, "noise": 0.05, "min": 0.0, "max": 14.0},
            {"key": "flow", "base": 120.0, "daily_amplitude": 40.0, "noise": 5.0, "min": 0.0}
        ]),
        "hall-counter" => json!([
            {"key": "people", "base": 40.0, "daily_amplitude": 25.0, "noise": 4.0, "min": 0.0},
            {"key": "queue", "base": 8.0, "daily_amplitude": 6.0, "noise": 2.0, "min": 0.0}
        ]),
        _ => json!([]),
    }
}

/// The city's objects in a fixed order (device `i` watches object `i`).
pub fn objects() -> Vec<CityObject> {
    KINDS
        .iter()
        .flat_map(|k| {
            (1..=k.count).map(move |n| CityObject {
                id: format!("{}-{n:02}", k.id_prefix),
                class: k.class,
                metrics: sim_metrics(k.class),
                anomaly_factor: k.anomaly_factor,
            })
        })
        .collect()
}

fn catalog(item: &str) -> Option<CatalogFields> {
    let f = |department: &str, main: &str, sub: &str, basis: &str, measures: &str, object_type: &str| CatalogFields {
        department: department.into(),
        main_item: main.into(),
        sub_item: Some(sub.into()),
        method: "非现场监管".into(),
        measures: Some(measures.into()),
        object_type: Some(object_type.into()),
        legal_basis: Some(basis.into()),
        process: Some("在线监测预警 -> 研判派单 -> 部门核查处置 -> 反馈审核 -> 办结".into()),
        result: Some("责令改正；依法处罚；结果公示".into()),
        level: Some("市级".into()),
    };
    Some(match item {
        "demo-cold-chain" => f(
            "市场监督管理局",
            "对冷链食品贮存、运输温度控制的监督检查",
            "冷库温度在线监测超限",
            "《中华人民共和国食品安全法》第三十三条、第一百三十二条",
            "冷库温度在线监测，冻品高于 -18℃ 预警、高于 -12℃ 拒收线立即派单",
            "cold-storage",
        ),
        "demo-wastewater" => f(
            "生态环境局",
            "对排污单位污染物排放的监督检查",
            "废水污染物在线监测超标",
            "《中华人民共和国水污染防治法》第二十三条、第八十三条",
            "COD、氨氮、pH 在线监测，超标预警并派单核查",
            "pollution-source",
        ),
        "demo-hall-service" => f(
            "行政审批局",
            "对政务服务窗口服务质量的监督检查",
            "窗口排队过长、人员聚集",
            "《优化营商环境条例》第四十一条",
            "视频客流计数，排队超过阈值预警",
            "service-hall",
        ),
        _ => return None,
    })
}

/// Seeds what the demo city needs; returns its objects.
pub async fn seed(store: &Store) -> Result<Vec<CityObject>> {
    // The two-district core (regions, 住建局, 生态环境局, demo-site-01..10, demo-dust, demo-noise).
    store.seed_demo_registers().await?;
    let (bj_code, bj_name) = DISTRICTS[2];
    if store.region(bj_code).await?.is_none() {
        store
            .upsert_region(&Region {
                code: bj_code.into(),
                name: bj_name.into(),
                parent_code: Some("330100".into()),
                level: RegionLevel::County,
            })
            .await?;
    }
    let all_districts: Vec<String> = DISTRICTS.iter().map(|(c, _)| c.to_string()).collect();
    let mut dept_ids = std::collections::HashMap::new();
    for (code, name) in DEPARTMENTS {
        let d = match store.department_by_code(code).await? {
            Some(d) => d,
            None => {
                let d = store.insert_department(&NewDepartment { code: code.into(), name: name.into(), parent_id: None }).await?;
                store.set_department_regions(d.id, &all_districts).await?;
                d
            }
        };
        dept_ids.insert(code, d.id);
    }

    let mut serial = 100;
    for k in &KINDS {
        for n in 1..=k.count {
            let id = format!("{}-{n:02}", k.id_prefix);
            serial += 1;
            if store.object(&id).await?.is_some() {
                continue;
            }
            let (region, district) = DISTRICTS[n % 3];
            let (lon, lat) = (120.10 + (serial % 17) as f64 * 0.006, 30.18 + (serial % 13) as f64 * 0.007);
            store
                .insert_object(&NewObject {
                    id,
                    name: format!("{district}{}{n:02}号", k.name),
                    credit_code: Some(demo_credit_code(region, "3C", serial)),
                    object_type: Some(k.object_type.into()),
                    address: Some(format!("浙江省杭州市{district}示范大道{serial}号")),
                    lon: Some((lon * 1e6_f64).round() / 1e6),
                    lat: Some((lat * 1e6_f64).round() / 1e6),
                    region_code: Some(region.into()),
                    department_id: dept_ids.get(k.department).copied(),
                })
                .await?;
        }
    }

    for k in &KINDS {
        if let Some(fields) = catalog(k.item) {
            if store.catalog_published(k.item).await?.is_none() {
                store.catalog_save_draft(k.item, &fields, Some("demo")).await?;
                store.catalog_publish(k.item, Some("demo")).await?;
            }
        }
        let dept = *dept_ids.get(k.department).context("department")?;
        if !store.responsibilities().await?.iter().any(|(i, _, _)| i == k.item) {
            store.set_responsibility(k.item, "330100", dept).await?;
        }
    }
    if !store.responsibilities().await?.iter().any(|(i, _, _)| i == "demo-noise") {
        store.set_responsibility("demo-noise", "330100", dept_ids["ecology"]).await?;
    }
    let policies = store.task_policies().await?;
    for item in ["demo-dust", "demo-cold-chain", "demo-wastewater"] {
        if !policies.iter().any(|p| p.item == item) {
            store
                .set_task_policy(
                    &TaskPolicy {
                        item: item.into(),
                        level: Level::RED,
                        sign_limit: "30m".into(),
                        handle_limit: "24h".into(),
                        auto_dispatch: true,
                        reviewer_department_id: None,
                    },
                    "demo",
                )
                .await?;
        }
    }
    seed_holidays(store).await?;
    seed_rules(store).await?;
    seed_history(store, &dept_ids).await?;
    Ok(objects())
}

/// The public holidays and make-up working days of the current year. 2026 is the State Council's
/// published arrangement; for other years only the fixed-date holidays are entered and the
/// administrator completes the table.
async fn seed_holidays(store: &Store) -> Result<()> {
    let year = Utc::now().with_timezone(&china()).year();
    let from = NaiveDate::from_ymd_opt(year, 1, 1).expect("date");
    let to = NaiveDate::from_ymd_opt(year, 12, 31).expect("date");
    if !store.calendar_days(from, to).await?.is_empty() {
        return Ok(());
    }
    let d = |m: u32, day: u32| NaiveDate::from_ymd_opt(year, m, day).expect("date");
    let mut days: Vec<(NaiveDate, CalendarDayKind, &str)> = Vec::new();
    let mut off = |name: &'static str, m: u32, first: u32, last: u32| {
        for day in first..=last {
            days.push((d(m, day), CalendarDayKind::Holiday, name));
        }
    };
    if year == 2026 {
        off("元旦", 1, 1, 3);
        off("春节", 2, 15, 23);
        off("清明节", 4, 4, 6);
        off("劳动节", 5, 1, 5);
        off("端午节", 6, 19, 21);
        off("中秋节", 9, 25, 27);
        off("国庆节", 10, 1, 7);
        for (m, day, name) in [(1, 4, "元旦调休"), (2, 14, "春节调休"), (2, 28, "春节调休"), (5, 9, "劳动节调休"), (9, 20, "国庆节调休"), (10, 10, "国庆节调休")] {
            days.push((d(m, day), CalendarDayKind::Workday, name));
        }
    } else {
        off("元旦", 1, 1, 1);
        off("劳动节", 5, 1, 1);
        off("国庆节", 10, 1, 3);
    }
    for (day, kind, name) in &days {
        store.set_calendar_day(&CalendarDay { day: *day, kind: *kind, name: Some((*name).into()) }, "demo").await?;
    }
    info!(year, days = days.len(), "demo holidays entered");
    Ok(())
}

/// Rules per device kind, added by name (an operator's edits to existing ones are kept).
async fn seed_rules(store: &Store) -> Result<()> {
    let existing: Vec<String> = store.list_rules().await?.into_iter().map(|r| r.name).collect();
    // (name, class, metric, level, above, for_s, hysteresis, item)
    let rules: [(&str, &str, &str, Level, f64, u64, f64, &str); 8] = [
        ("PM10 持续超标 (>150 μg/m³, 20 s)", "dust-monitor", "pm10", Level::ORANGE, 150.0, 20, 10.0, "demo-dust"),
        ("PM10 严重超标 (>200 μg/m³, 15 s)", "dust-monitor", "pm10", Level::RED, 200.0, 15, 10.0, "demo-dust"),
        ("噪声超标 (>80 dB(A), 10 s)", "dust-monitor", "noise", Level::YELLOW, 80.0, 10, 3.0, "demo-noise"),
        ("冷库温度高于 -18℃ (30 s)", "cold-chain-sensor", "cold_temp", Level::ORANGE, -18.0, 30, 0.5, "demo-cold-chain"),
        ("冷库温度高于 -12℃ 拒收线 (10 s)", "cold-chain-sensor", "cold_temp", Level::RED, -12.0, 10, 1.0, "demo-cold-chain"),
        ("COD 超标 (>100 mg/L, 30 s)", "wastewater-monitor", "cod", Level::ORANGE, 100.0, 30, 5.0, "demo-wastewater"),
        ("氨氮超标 (>10 mg/L, 30 s)", "wastewater-monitor", "nh3n", Level::YELLOW, 10.0, 30, 0.5, "demo-wastewater"),
        ("窗口排队过长 (>20 人, 30 s)", "hall-counter", "queue", Level::YELLOW, 20.0, 30, 2.0, "demo-hall-service"),
    ];
    let mut added = 0;
    for (name, class, metric, level, above, for_s, hysteresis, item) in rules {
        if existing.iter().any(|e| e == name) {
            continue;
        }
        store
            .insert_rule(&NewRule {
                name: name.into(),
                scope: Scope { class: Some(class.into()), metric: Some(metric.into()), ..Scope::default() },
                level,
                condition: Condition::Threshold { above: Some(above), below: None, for_s, hysteresis },
                item: Some(item.into()),
                enabled: true,
            })
            .await?;
        added += 1;
    }
    if added > 0 {
        info!(rules = added, "demo rules added");
    }
    Ok(())
}

/// A month of history: tasks dispatched on working days at office hours, handled on time or
/// late, some returned, rejected or extended, and a few still in every open state. Seeded once.
async fn seed_history(store: &Store, depts: &std::collections::HashMap<&str, i64>) -> Result<()> {
    let (_, total) = store
        .list_tasks(
            &offsite_store::tasks::TaskFilter { limit: 1, ..Default::default() },
            &offsite_store::AccessScope::all(),
            Utc::now(),
        )
        .await?;
    if total > 0 {
        return Ok(());
    }
    let mut rng = SmallRng::seed_from_u64(2026);
    let now = Utc::now();
    let handling: [(&str, &str, &str); 4] = [
        ("housing-construction", "demo-dust", "demo-site"),
        ("market", "demo-cold-chain", "cold"),
        ("ecology", "demo-wastewater", "ps"),
        ("approval", "demo-hall-service", "hall"),
    ];
    let mut n = 0;
    let mut cases = 0;
    for i in 0..120usize {
        let (dept_code, item, prefix) = handling[i % handling.len()];
        let department_id = depts[dept_code];
        let days_ago = 30 - (i as i64 * 30 / 120);
        let day = (now - Duration::days(days_ago)).with_timezone(&china()).date_naive();
        let hour = rng.random_range(8..18);
        let at = china().from_local_datetime(&day.and_hms_opt(hour, rng.random_range(0..60), 0).expect("time")).single().expect("fixed offset");
        let at: DateTime<Utc> = at.with_timezone(&Utc);
        let level = match rng.random_range(0..10) {
            0 => Level::RED,
            1..=3 => Level::ORANGE,
            4..=7 => Level::YELLOW,
            _ => Level::BLUE,
        };
        let object = format!("{prefix}-{:02}", rng.random_range(1..=10));
        let source = if rng.random_bool(0.75) { TaskSource::Warning } else { TaskSource::Manual };
        let t = NewTask {
            title: format!("{}：{}", object, history_title(item)),
            description: "演示历史任务".into(),
            source,
            source_ref: None,
            level,
            item: Some(item.into()),
            object_id: Some(object),
            department_id,
            co_department_ids: if rng.random_bool(0.1) { vec![depts["urban-management"]] } else { vec![] },
            dispatched_by: "monitor".into(),
            at,
        };
        let Ok(task) = store.dispatch_task(&t).await? else { continue };
        n += 1;
        // The newest tasks stay open in every state; older ones mostly run to the end.
        let age_fraction = days_ago as f64 / 30.0;
        let target = if age_fraction < 0.1 {
            ["dispatched", "signed", "in_progress", "feedback", "returned"][i % 5]
        } else if rng.random_bool(0.15) {
            "archived"
        } else {
            "closed"
        };
        let mut clock = at + Duration::minutes(rng.random_range(10..240));
        let mut step = |a: Action| {
            let when = clock;
            clock += Duration::minutes(rng.random_range(30..3000));
            (a, when.min(now - Duration::minutes(1)))
        };
        let mut plan = vec![];
        if target == "returned" {
            plan.push(step(Action::Return { reason: "不属于本部门职责".into() }));
        } else if target != "dispatched" {
            plan.push(step(Action::Sign));
            if target != "signed" {
                plan.push(step(Action::Start));
            }
            if matches!(target, "feedback" | "closed" | "archived") {
                if i % 7 == 0 {
                    plan.push(step(Action::Feedback { text: "已现场核查".into() }));
                    plan.push(step(Action::Reject { reason: "缺少整改后照片".into() }));
                }
                plan.push(step(Action::Feedback { text: "已现场核查并责令整改，整改到位".into() }));
            }
            if matches!(target, "closed" | "archived") {
                plan.push(step(Action::Approve { note: Some("同意办结".into()) }));
            }
            if target == "archived" {
                plan.push(step(Action::Archive));
            }
        }
        let mut last = at;
        for (a, when) in plan {
            let actor = if matches!(a, Action::Approve { .. } | Action::Reject { .. } | Action::Archive) { "monitor" } else { "handler" };
            if store.act_on_task(task.id, actor, &a, when).await?.is_none_or(|r| r.is_err()) {
                break;
            }
            last = when;
        }
        // Some closed tasks found violations: enforcement cases, decided with a fine, disclosed.
        if matches!(target, "closed" | "archived") && i % 10 == 3 && seed_case(store, task.id, last, &mut rng, now).await? {
            cases += 1;
        }
    }
    info!(tasks = n, cases, "demo task history added");
    Ok(())
}

/// A case opened from a closed task and taken to a decision (a fine, disclosed) and beyond.
async fn seed_case(store: &Store, task_id: i64, from: DateTime<Utc>, rng: &mut SmallRng, now: DateTime<Utc>) -> Result<bool> {
    use offsite_store::cases::{Advanced, CaseStage, DecisionInput, Fen, Opened, PenaltyType};
    let mut at = from + Duration::hours(2);
    if at > now {
        return Ok(false);
    }
    let Opened::Ok(case) = store.open_case(task_id, "handler", Some("现场核查发现违法行为，立案调查"), at).await? else {
        return Ok(false);
    };
    let fine = Fen::from_yuan(rng.random_range(1..=8) * 5_000);
    let stages = [
        (CaseStage::Investigating, "调取监测记录、现场检查笔录", None),
        (
            CaseStage::Decided,
            "处罚决定书已送达",
            Some(DecisionInput { legal_basis: None, penalty: PenaltyType::Fine, amount: Some(fine), disclose: true }),
        ),
        (CaseStage::Executing, "罚款已缴纳", None),
        (CaseStage::Closed, "执行完毕，结案", None),
    ];
    for (stage, note, decision) in stages {
        at += Duration::hours(rng.random_range(4..48));
        if at > now {
            break;
        }
        if !matches!(store.advance_case(case.id, stage, "handler", Some(note), decision, at).await?, Advanced::Ok(_)) {
            break;
        }
    }
    Ok(true)
}

fn history_title(item: &str) -> &'static str {
    match item {
        "demo-dust" => "PM10 超标核查",
        "demo-cold-chain" => "冷库温度超限核查",
        "demo-wastewater" => "废水 COD 超标核查",
        _ => "窗口排队过长核查",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_objects_of_four_kinds_with_a_catalog_item_each() {
        let objs = objects();
        assert_eq!(objs.len(), 60);
        let ids: std::collections::HashSet<_> = objs.iter().map(|o| o.id.clone()).collect();
        assert_eq!(ids.len(), 60, "unique ids");
        assert_eq!(objs[0].id, "demo-site-01", "the core sites come first");
        for k in &KINDS {
            assert!(k.item == "demo-dust" || catalog(k.item).is_some(), "{} has a catalog item", k.class);
            assert!(DEPARTMENTS.iter().any(|(c, _)| *c == k.department));
        }
    }
}
