//! `GET /api/v1/metrics/departments` over HTTP: who sees which departments (everything, a leader's
//! subtree, a handler's own department, nothing for the security and audit administrators), the
//! period (dates of Asia/Shanghai, defaults, refusals) and figures on a small crafted history. The
//! full known-answer test of every formula is the store's (store/tests/dept_metrics.rs).

mod common;

use anyhow::Result;
use chrono::{DateTime, TimeZone, Utc};
use offsite_portal::{serve, AppState};
use offsite_store::auth::Role;
use offsite_store::testing::TestDb;
use offsite_store::{NewDepartment, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const PATH: &str = "/api/v1/metrics/departments";

struct App {
    base: String,
    db: TestDb,
    /// city (parent of district), district, ecology, idle.
    city: i64,
    district: i64,
    ecology: i64,
    idle: i64,
    _stop: oneshot::Sender<()>,
}

fn utc(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, d, h, m, 0).unwrap()
}

/// Inserts a task the way the workflow leaves it (the tasks API is not used here).
async fn task(
    s: &Store,
    department: i64,
    state: &str,
    dispatched: DateTime<Utc>,
    sign_due: DateTime<Utc>,
    signed: Option<(DateTime<Utc>, DateTime<Utc>)>,
    closed: Option<DateTime<Utc>>,
) -> Result<i64> {
    let n: i64 = sqlx::query_scalar("SELECT nextval('task_no_seq')").fetch_one(s.pool()).await?;
    Ok(sqlx::query_scalar(
        "INSERT INTO tasks (task_no, title, source, level, department_id, state, sign_limit, handle_limit, \
         dispatched_at, dispatched_by, sign_due, signed_at, handle_due, closed_at) \
         VALUES ($1, '测试任务', 'warning', 2, $2, $3, '2h', '3wd', $4, 'monitor', $5, $6, $7, $8) RETURNING id",
    )
    .bind(format!("RW20260601{n:06}"))
    .bind(department)
    .bind(state)
    .bind(dispatched)
    .bind(sign_due)
    .bind(signed.map(|s| s.0))
    .bind(signed.map(|s| s.1))
    .bind(closed)
    .fetch_one(s.pool())
    .await?)
}

async fn app() -> Result<App> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let dept =
        |code: &str, parent: Option<i64>| NewDepartment { code: code.into(), name: code.into(), parent_id: parent };
    let city = s.insert_department(&dept("a-city", None)).await?.id;
    let district = s.insert_department(&dept("b-district", Some(city))).await?.id;
    let ecology = s.insert_department(&dept("c-ecology", None)).await?.id;
    let idle = s.insert_department(&dept("d-idle", None)).await?.id;

    // city: signed 10 min after dispatch (due 120), closed 120 min after signing, on time.
    let signed = Some((utc(10, 0, 10), utc(13, 0, 10)));
    task(s, city, "closed", utc(10, 0, 0), utc(10, 2, 0), signed, Some(utc(10, 2, 10))).await?;
    // district: never signed, due long past.
    task(s, district, "dispatched", utc(11, 0, 0), utc(11, 2, 0), None, None).await?;
    // ecology: signed 3 h after dispatch (late), still in progress; and one dispatched two days ago
    // (only the default period holds it), due tomorrow.
    let signed = Some((utc(12, 3, 0), utc(15, 3, 0)));
    task(s, ecology, "in_progress", utc(12, 0, 0), utc(12, 2, 0), signed, None).await?;
    let now = Utc::now();
    task(s, ecology, "dispatched", now - chrono::Duration::days(2), now + chrono::Duration::days(1), None, None)
        .await?;

    let users = [
        ("sysadmin", Role::SystemAdmin, None),
        ("secadmin", Role::SecurityAdmin, None),
        ("auditor", Role::AuditAdmin, None),
        ("monitor", Role::Monitor, None),
        ("reviewer", Role::Reviewer, None),
        ("resup", Role::Resupervision, None),
        ("lead_city", Role::Leader, Some(city)),
        ("lead_district", Role::Leader, Some(district)),
        ("handler_city", Role::Handler, Some(city)),
        ("handler_none", Role::Handler, None),
    ];
    for (name, role, d) in users {
        common::add_user(s, name, &[role], d).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        AppState::new(db.store.clone()).with_live(offsite_portal::live::channel()),
        async move {
            let _ = rx.await;
        },
    ));
    Ok(App { base, db, city, district, ecology, idle, _stop: tx })
}

impl App {
    async fn get(&self, user: &str, query: &str) -> Result<(StatusCode, Value)> {
        let c = common::client(&self.db.store, user).await?;
        let r = c.get(format!("{}{PATH}{query}", self.base)).send().await?;
        let status = r.status();
        Ok((status, r.json().await?))
    }
}

fn ids(v: &Value) -> Vec<i64> {
    v["items"].as_array().unwrap().iter().map(|i| i["department_id"].as_i64().unwrap()).collect()
}

fn entry(v: &Value, id: i64) -> &Value {
    v["items"].as_array().unwrap().iter().find(|i| i["department_id"] == id).expect("an entry")
}

#[tokio::test]
async fn each_role_sees_its_departments() -> Result<()> {
    let app = app().await?;
    let june = "?from=2026-06-01&to=2026-06-30";
    let every = vec![app.city, app.district, app.ecology, app.idle];
    for user in ["sysadmin", "monitor", "reviewer", "resup"] {
        let (s, v) = app.get(user, june).await?;
        assert_eq!(s, StatusCode::OK, "{user}: {v}");
        assert_eq!(ids(&v), every, "{user}");
    }
    // A leader: their department and the ones below it; a handler: their own.
    assert_eq!(ids(&app.get("lead_city", june).await?.1), vec![app.city, app.district]);
    assert_eq!(ids(&app.get("lead_district", june).await?.1), vec![app.district]);
    assert_eq!(ids(&app.get("handler_city", june).await?.1), vec![app.city]);
    assert_eq!(ids(&app.get("handler_none", june).await?.1), Vec::<i64>::new());
    // Separated powers: no business data for the security and audit administrators.
    for user in ["secadmin", "auditor"] {
        let (s, v) = app.get(user, june).await?;
        assert_eq!(s, StatusCode::FORBIDDEN, "{user}");
        assert_eq!(v["error"]["code"], "forbidden");
    }
    let anon = reqwest::Client::new().get(format!("{}{PATH}", app.base)).send().await?;
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn figures_and_period_over_http() -> Result<()> {
    let app = app().await?;
    let (s, v) = app.get("resup", "?from=2026-06-01&to=2026-06-30").await?;
    assert_eq!(s, StatusCode::OK);
    // Dates are days of Asia/Shanghai; `to` is the end of its day. Echoed in UTC.
    assert_eq!(v["from"], "2026-05-31T16:00:00Z");
    assert_eq!(v["to"], "2026-06-30T16:00:00Z");
    assert!(v["as_of"].is_string());

    let city = entry(&v, app.city);
    assert_eq!(city["tasks"], 1);
    assert_eq!((city["signed"].clone(), city["on_time_sign_rate"].clone()), (json!(1), json!(1.0)));
    assert_eq!(city["on_time_completion_rate"], 1.0);
    assert_eq!((city["mean_sign_minutes"].clone(), city["mean_close_minutes"].clone()), (json!(10.0), json!(120.0)));
    assert_eq!(city["return_rate"], 0.0);
    // Nothing reviewed, no warnings, no callbacks: null, not 0.
    assert_eq!((city["redo_rate"].clone(), city["false_positive_rate"].clone()), (Value::Null, Value::Null));
    assert_eq!(city["callback_satisfaction"], Value::Null);

    let district = entry(&v, app.district);
    assert_eq!((district["tasks"].clone(), district["sign_overdue"].clone()), (json!(1), json!(1)));
    assert_eq!((district["open_overdue_now"].clone(), district["on_time_sign_rate"].clone()), (json!(1), Value::Null));

    let ecology = entry(&v, app.ecology);
    // The June task only; signed 180 min after dispatch, one hour late; in progress, handling due passed.
    assert_eq!(ecology["tasks"], 1);
    assert_eq!(
        (ecology["on_time_sign_rate"].clone(), ecology["mean_sign_minutes"].clone()),
        (json!(0.0), json!(180.0))
    );
    assert_eq!((ecology["sign_overdue"].clone(), ecology["handle_overdue"].clone()), (json!(1), json!(1)));
    assert_eq!(ecology["mean_close_minutes"], Value::Null);

    let idle = entry(&v, app.idle);
    assert_eq!(idle["department_code"], "d-idle");
    assert_eq!(
        (idle["tasks"].clone(), idle["received"].clone(), idle["open_overdue_now"].clone()),
        (json!(0), json!(0), json!(0))
    );
    for rate in ["on_time_sign_rate", "on_time_completion_rate", "return_rate", "redo_rate", "extension_rate"] {
        assert_eq!(idle[rate], Value::Null, "{rate}");
    }

    // July: nobody's June tasks count; the snapshot still does.
    let (_, v) = app.get("resup", "?from=2026-07-01T00:00:00%2B08:00&to=2026-08-01").await?;
    assert_eq!(entry(&v, app.city)["tasks"], 0);
    assert_eq!(entry(&v, app.district)["open_overdue_now"], 1);

    // Default: the last 30 days, which hold only ecology's recent task.
    let (s, v) = app.get("resup", "").await?;
    assert_eq!(s, StatusCode::OK);
    let from = offsite_portal::time::parse(v["from"].as_str().unwrap()).unwrap();
    let to = offsite_portal::time::parse(v["to"].as_str().unwrap()).unwrap();
    assert_eq!(to - from, chrono::Duration::days(30));
    assert!((Utc::now() - to).num_seconds().abs() < 60);
    let tasks: Vec<i64> = v["items"].as_array().unwrap().iter().map(|i| i["tasks"].as_i64().unwrap()).collect();
    assert_eq!(tasks, vec![0, 0, 1, 0]);
    Ok(())
}

#[tokio::test]
async fn bad_periods_are_400_with_both_languages() -> Result<()> {
    let app = app().await?;
    for query in [
        "?from=2026-06-30&to=2026-06-01",
        "?from=2026-06-01T00:00:00Z&to=2026-06-01T00:00:00Z",
        "?from=2026-06-02&to=2026-06-01",
        "?from=yesterday",
        "?to=2026-02-30",
        "?from=2999-01-01",
    ] {
        let (s, v) = app.get("resup", query).await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        assert!(!v["error"]["message_zh"].as_str().unwrap().is_empty());
    }
    let (_, v) = app.get("resup", "?from=2026-06-30&to=2026-06-01").await?;
    assert_eq!(v["error"]["code"], "invalid");
    Ok(())
}

/// The workbook's first sheet as rows of cells.
fn sheet_rows(bytes: &[u8]) -> Result<(Vec<String>, Vec<Vec<calamine::Data>>)> {
    use calamine::{open_workbook_from_rs, Reader, Xlsx};
    let mut wb: Xlsx<_> = open_workbook_from_rs(std::io::Cursor::new(bytes.to_vec()))?;
    let names = wb.sheet_names().to_vec();
    let range = wb.worksheet_range(&names[0])?;
    Ok((names, range.rows().map(<[calamine::Data]>::to_vec).collect()))
}

#[tokio::test]
async fn the_xlsx_export_holds_the_json_figures_under_chinese_headers() -> Result<()> {
    use calamine::Data;
    let app = app().await?;
    let june = "?from=2026-06-01&to=2026-06-30";
    let export = |user: &'static str, q: &'static str| {
        let app = &app;
        async move {
            let c = common::client(&app.db.store, user).await?;
            anyhow::Ok(c.get(format!("{}{PATH}/export{q}", app.base)).send().await?)
        }
    };
    let r = export("resup", june).await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    let disposition = r.headers()["content-disposition"].to_str()?.to_owned();
    assert!(disposition.contains("department-metrics-20260601-20260630.xlsx"), "{disposition}");
    let bytes = r.bytes().await?;
    let (_, json) = app.get("resup", june).await?;

    let (sheets, rows) = sheet_rows(&bytes)?;
    assert_eq!(sheets, ["部门履职统计", "统计说明"]);
    let header: Vec<String> = rows[0].iter().map(|c| c.to_string()).collect();
    let wanted =
        ["部门名称", "任务数", "按时签收率", "按时办结率", "当前在办超期数", "平均办理时长（分钟）", "回访满意率"];
    for h in wanted {
        assert!(header.iter().any(|x| x == h), "no column {h} in {header:?}");
    }
    let columns = offsite_portal::routes::dept_metrics::EXPORT_COLUMNS;
    assert_eq!(header, columns.iter().map(|c| c.1).collect::<Vec<_>>());
    let items = json["items"].as_array().unwrap();
    assert_eq!(rows.len(), items.len() + 1, "a row per department");
    for (row, item) in rows[1..].iter().zip(items) {
        for ((key, title, _), cell) in columns.iter().zip(row) {
            let want = &item[*key];
            match (want, cell) {
                (Value::Null, Data::Empty) => {}
                (Value::String(s), Data::String(got)) => assert_eq!(got, s, "{title}"),
                (Value::Number(n), Data::Float(got)) => assert_eq!(*got, n.as_f64().unwrap(), "{title}"),
                (Value::Number(n), Data::Int(got)) => assert_eq!(*got as f64, n.as_f64().unwrap(), "{title}"),
                other => panic!("{title} ({key}): JSON and cell differ: {other:?}"),
            }
        }
    }
    // A few figures by hand: the city closed on time (100%); the idle department has empty rates.
    let col = |h: &str| header.iter().position(|x| x == h).unwrap();
    let city = rows.iter().find(|r| r[col("部门ID")] == Data::Float(app.city as f64)).expect("the city's row");
    assert_eq!(city[col("按时办结率")], Data::Float(1.0));
    assert_eq!(city[col("平均签收时长（分钟）")], Data::Float(10.0));
    let idle = rows.iter().find(|r| r[col("部门编码")] == Data::String("d-idle".into())).expect("the idle row");
    assert_eq!(idle[col("按时签收率")], Data::Empty);
    assert_eq!(idle[col("任务数")], Data::Float(0.0));

    // Same rights as the JSON: a leader's subtree only; nothing for the security administrator.
    let bytes = export("lead_district", june).await?.bytes().await?;
    let (_, rows) = sheet_rows(&bytes)?;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][col("部门ID")], Data::Float(app.district as f64));
    assert_eq!(export("secadmin", june).await?.status(), StatusCode::FORBIDDEN);
    // Same period rules.
    let bad = export("resup", "?from=2026-06-30&to=2026-06-01").await?;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let e: Value = bad.json().await?;
    assert!(e["error"]["message_zh"].as_str().is_some(), "{e}");
    Ok(())
}
