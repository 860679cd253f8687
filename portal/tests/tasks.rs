//! Tasks over HTTP, black-box: every transition of the state machine and every forbidden one (409
//! with a reason), who may do what, department scope, joint tasks, extensions, attachments, warning
//! triage (dispatch, merge, false positive, precision) and complaint -> task -> public status.

use std::time::Duration;

mod common;

use anyhow::{anyhow, Result};
use base64::Engine;
use chrono::{TimeDelta, Utc};
use offsite_portal::{serve, AppState};
use offsite_store::auth::Role;
use offsite_store::testing::TestDb;
use offsite_store::{Level, NewDevice, NewWarning};
use offsite_wire::DeviceId;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

struct App {
    base: String,
    db: TestDb,
    housing: i64,
    ecology: i64,
    _stop: oneshot::Sender<()>,
}

async fn app() -> Result<App> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    let housing = db.store.department_by_code("housing-construction").await?.unwrap().id;
    let ecology = db.store.department_by_code("ecology").await?.unwrap().id;
    let users: [(&str, &[Role], Option<i64>); 8] = [
        ("mon", &[Role::Monitor], None),
        ("h_housing", &[Role::Handler], Some(housing)),
        ("l_housing", &[Role::Leader], Some(housing)),
        ("h_ecology", &[Role::Handler], Some(ecology)),
        ("rev", &[Role::Reviewer], None),
        ("resup", &[Role::Resupervision], None),
        ("admin", &[Role::SystemAdmin], None),
        ("sec", &[Role::SecurityAdmin], None),
    ];
    for (name, roles, dept) in users {
        common::add_user(&db.store, name, roles, dept).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    let files = tempfile::tempdir()?.keep();
    let state = AppState::new(db.store.clone())
        .with_live(offsite_portal::live::channel())
        .with_files(std::sync::Arc::new(offsite_store::files::LocalDirStore::new(files)));
    tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    Ok(App { base, db, housing, ecology, _stop: tx })
}

impl App {
    async fn call(&self, user: &str, method: Method, path: &str, body: Option<Value>) -> Result<(StatusCode, Value)> {
        let c = common::client(&self.db.store, user).await?;
        let mut req = c.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).map_err(|e| anyhow!("{path}: {e}: {text}"))? };
        Ok((status, v))
    }

    async fn get(&self, user: &str, path: &str) -> Result<(StatusCode, Value)> {
        self.call(user, Method::GET, path, None).await
    }

    async fn post(&self, user: &str, path: &str, body: Value) -> Result<(StatusCode, Value)> {
        self.call(user, Method::POST, path, Some(body)).await
    }

    /// A task for housing (optionally joint with ecology), dispatched by the monitor.
    async fn dispatch(&self, joint: bool) -> Result<i64> {
        let co = if joint { vec![self.ecology] } else { vec![] };
        let (s, b) = self
            .post(
                "mon",
                "/api/v1/tasks",
                json!({"title": "工地扬尘核查", "description": "PM10 超标", "level": 3, "department_id": self.housing,
                       "co_department_ids": co, "object_id": "demo-site-01", "item": "demo-dust"}),
            )
            .await?;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(b["state"], "dispatched");
        assert_eq!(b["source"], "manual");
        assert!(b["task_no"].as_str().unwrap().starts_with("RW"), "{b}");
        Ok(b["id"].as_i64().unwrap())
    }

    async fn act(&self, user: &str, id: i64, action: &str, body: Value) -> Result<(StatusCode, Value)> {
        self.post(user, &format!("/api/v1/tasks/{id}/{action}"), body).await
    }

    async fn ok(&self, user: &str, id: i64, action: &str, body: Value, state: &str) -> Result<Value> {
        let (s, b) = self.act(user, id, action, body).await?;
        assert_eq!(s, StatusCode::OK, "{action} by {user}: {b}");
        assert_eq!(b["state"], state, "{action}: {b}");
        Ok(b)
    }

    /// A task brought to `state` through the API.
    async fn task_in(&self, state: &str) -> Result<i64> {
        let id = self.dispatch(true).await?;
        let steps: &[(&str, &str, Value, &str)] = &[
            ("h_housing", "sign", json!({}), "signed"),
            ("h_housing", "start", json!({}), "in_progress"),
            ("h_housing", "feedback", json!({"text": "已到场核查，责令覆盖裸土"}), "feedback"),
            ("mon", "approve", json!({"note": "同意办结"}), "closed"),
            ("mon", "archive", json!({}), "archived"),
        ];
        if state == "returned" {
            self.ok("h_housing", id, "return", json!({"reason": "不属于本部门职责"}), "returned").await?;
            return Ok(id);
        }
        if state == "dispatched" {
            return Ok(id);
        }
        for (user, action, body, to) in steps {
            self.ok(user, id, action, body.clone(), to).await?;
            if *to == state {
                return Ok(id);
            }
        }
        unreachable!("state {state}")
    }
}

/// (action path, who is entitled to try it, body)
fn actions(app: &App) -> Vec<(&'static str, &'static str, Value)> {
    let until = (Utc::now() + TimeDelta::days(30)).to_rfc3339();
    vec![
        ("sign", "h_housing", json!({})),
        ("start", "h_housing", json!({})),
        ("return", "h_housing", json!({"reason": "不属于本部门"})),
        ("redispatch", "mon", json!({"department_id": app.ecology})),
        ("transfer", "mon", json!({"department_id": app.ecology, "reason": "转生态环境局"})),
        ("extension", "h_housing", json!({"until": until, "reason": "需第三方检测"})),
        ("extension/approve", "mon", json!({})),
        ("extension/refuse", "mon", json!({})),
        ("feedback", "h_housing", json!({"text": "已处理"})),
        ("co-feedback", "h_ecology", json!({"text": "协办意见"})),
        ("approve", "mon", json!({})),
        ("reject", "mon", json!({"reason": "证据不足"})),
        ("archive", "mon", json!({})),
    ]
}

/// What each state allows (the rest must be 409).
fn allowed(state: &str) -> &'static [&'static str] {
    match state {
        "dispatched" => &["sign", "return", "transfer"],
        "signed" => &["start", "transfer", "co-feedback"],
        "in_progress" => &["extension", "feedback", "co-feedback"],
        "feedback" => &["approve", "reject", "co-feedback"],
        "closed" => &["archive"],
        "archived" => &[],
        "returned" => &["redispatch"],
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn every_forbidden_transition_is_409_with_a_reason() -> Result<()> {
    let app = app().await?;
    for state in ["dispatched", "signed", "in_progress", "feedback", "closed", "archived", "returned"] {
        let id = app.task_in(state).await?;
        for (action, user, body) in actions(&app) {
            if allowed(state).contains(&action) {
                continue;
            }
            let (s, b) = app.act(user, id, action, body).await?;
            // Deciding an extension nobody asked for is refused by the same rule.
            assert_eq!(s, StatusCode::CONFLICT, "{action} on a {state} task: {b}");
            let code = b["error"]["code"].as_str().unwrap();
            assert!(code == "invalid_transition" || code == "no_extension_pending", "{action} on {state}: {b}");
            assert!(b["error"]["message_zh"].as_str().is_some_and(|m| !m.is_empty()), "{b}");
        }
        let (_, t) = app.get("mon", &format!("/api/v1/tasks/{id}")).await?;
        assert_eq!(t["state"], state, "refused actions changed nothing");
    }
    Ok(())
}

#[tokio::test]
async fn the_whole_life_of_a_task_with_a_redo_and_an_extension() -> Result<()> {
    let app = app().await?;
    let id = app.dispatch(false).await?;
    let (_, t) = app.get("h_housing", &format!("/api/v1/tasks/{id}")).await?;
    assert_eq!(t["sign_limit"], "2h", "level 3 default: sign within 2 hours: {t}");
    assert!(t["handle_due"].is_null());
    assert_eq!(t["checkpoints"].as_array().unwrap().len(), 3, "sign-for clock armed: {t}");

    let signed = app.ok("h_housing", id, "sign", json!({}), "signed").await?;
    assert!(signed["handle_due"].is_string(), "handling clock starts at signing: {signed}");
    app.ok("h_housing", id, "start", json!({}), "in_progress").await?;

    // Extension: asked, a second request refused while one waits, approved by the monitor.
    let before = signed["handle_due"].as_str().unwrap().to_owned();
    let until = (Utc::now() + TimeDelta::days(40)).to_rfc3339();
    app.ok("h_housing", id, "extension", json!({"until": until, "reason": "需第三方检测"}), "in_progress").await?;
    let (s, b) = app.act("h_housing", id, "extension", json!({"until": until, "reason": "again"})).await?;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("extension_pending")), "{b}");
    let (s, _) = app.act("h_housing", id, "extension/approve", json!({})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "a department cannot approve its own extension");
    let approved = app.ok("mon", id, "extension/approve", json!({"note": "同意"}), "in_progress").await?;
    assert_ne!(approved["handle_due"].as_str().unwrap(), before, "deadline moved");
    assert_eq!(approved["extension_count"], 1);

    // Feedback rejected once (a redo), then approved.
    app.ok("h_housing", id, "feedback", json!({"text": "已整改"}), "feedback").await?;
    let (s, _) = app.act("h_housing", id, "approve", json!({})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "a department cannot review itself");
    let (s, b) = app.act("mon", id, "reject", json!({})).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a rejection needs a reason: {b}");
    app.ok("rev", id, "reject", json!({"reason": "缺少现场照片"}), "in_progress").await?;
    app.ok("h_housing", id, "feedback", json!({"text": "补充现场照片"}), "feedback").await?;
    let closed = app.ok("rev", id, "approve", json!({}), "closed").await?;
    assert_eq!((closed["redo_count"].as_i64(), closed["review_count"].as_i64()), (Some(1), Some(2)));
    assert_eq!(closed["first_review_rejected"], true);
    app.ok("mon", id, "archive", json!({}), "archived").await?;

    let (_, t) = app.get("resup", &format!("/api/v1/tasks/{id}")).await?;
    let actions: Vec<&str> = t["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "dispatched",
            "signed",
            "started",
            "extension_requested",
            "extension_approved",
            "feedback",
            "rejected",
            "feedback",
            "closed",
            "archived"
        ]
    );
    let ev = &t["events"].as_array().unwrap()[6];
    assert_eq!((ev["actor"].as_str(), ev["reason"].as_str()), (Some("rev"), Some("缺少现场照片")));
    assert_eq!((ev["from_state"].as_str(), ev["to_state"].as_str()), (Some("feedback"), Some("in_progress")));
    assert_eq!(t["extensions"][0]["decision"], "approved");
    Ok(())
}

#[tokio::test]
async fn return_redispatch_and_transfer_move_the_task_and_its_scope() -> Result<()> {
    let app = app().await?;
    let id = app.dispatch(false).await?;
    let (s, b) = app.act("h_housing", id, "return", json!({"reason": " "})).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a return needs a reason: {b}");
    let (s, _) = app.get("h_ecology", &format!("/api/v1/tasks/{id}")).await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "another department's task does not exist for it");
    app.ok("h_housing", id, "return", json!({"reason": "属生态环境局职责"}), "returned").await?;
    let (s, _) = app.act("h_housing", id, "redispatch", json!({"department_id": app.ecology})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "only the monitoring center redispatches");
    let t = app.ok("mon", id, "redispatch", json!({"department_id": app.ecology}), "dispatched").await?;
    assert_eq!(t["department_id"], app.ecology);
    assert_eq!(t["return_count"], 1);
    let (s, _) = app.get("h_ecology", &format!("/api/v1/tasks/{id}")).await?;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.get("h_housing", &format!("/api/v1/tasks/{id}")).await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "housing no longer sees it");

    // Transfer back to housing: signed by ecology first, then transferred; the clock restarts.
    app.ok("h_ecology", id, "sign", json!({}), "signed").await?;
    let (s, _) = app.act("h_housing", id, "transfer", json!({"department_id": app.housing, "reason": "x"})).await?;
    assert_eq!(s, StatusCode::NOT_FOUND, "out of scope stays 404");
    let t = app.ok("mon", id, "transfer", json!({"department_id": app.housing, "reason": "属地住建局办理"}), "dispatched").await?;
    assert_eq!((t["department_id"].as_i64(), t["transfer_count"].as_i64()), (Some(app.housing), Some(1)));
    assert!(t["signed_at"].is_null() && t["handle_due"].is_null(), "{t}");
    // A housing leader may transfer onward; a handler may not.
    let (s, _) = app.act("h_housing", id, "transfer", json!({"department_id": app.ecology, "reason": "x"})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = app.act("l_housing", id, "transfer", json!({"department_id": app.housing, "reason": "x"})).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "transfer to itself: {b}");
    app.ok("l_housing", id, "transfer", json!({"department_id": app.ecology, "reason": "再次转办"}), "dispatched").await?;
    let (_, d) = app.get("mon", &format!("/api/v1/tasks/{id}")).await?;
    let transfers: Vec<_> = d["events"].as_array().unwrap().iter().filter(|e| e["action"] == "transferred").collect();
    assert_eq!(transfers.len(), 2);
    assert_eq!(transfers[0]["detail"]["from_department_id"], app.ecology, "history keeps where it came from");
    Ok(())
}

#[tokio::test]
async fn joint_task_closes_on_the_leads_approved_feedback() -> Result<()> {
    let app = app().await?;
    let id = app.dispatch(true).await?;
    let (s, list) = app.get("h_ecology", "/api/v1/tasks").await?;
    assert_eq!(s, StatusCode::OK);
    assert!(list["items"].as_array().unwrap().iter().any(|t| t["id"] == id), "the co-handler sees it: {list}");
    let (s, _) = app.act("h_ecology", id, "sign", json!({})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "only the lead signs");
    app.ok("h_housing", id, "sign", json!({}), "signed").await?;
    app.ok("h_ecology", id, "co-feedback", json!({"text": "已完成环境监测"}), "signed").await?;
    let (s, _) = app.act("h_housing", id, "co-feedback", json!({"text": "x"})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "the lead gives feedback, not co-feedback");
    app.ok("h_housing", id, "start", json!({}), "in_progress").await?;
    let (s, _) = app.act("h_ecology", id, "feedback", json!({"text": "x"})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "a co-handler cannot close the task");
    app.ok("h_housing", id, "feedback", json!({"text": "联合检查完毕"}), "feedback").await?;
    app.ok("mon", id, "approve", json!({}), "closed").await?;
    let (_, d) = app.get("h_ecology", &format!("/api/v1/tasks/{id}")).await?;
    let roles: Vec<(i64, &str)> =
        d["departments"].as_array().unwrap().iter().map(|x| (x["department_id"].as_i64().unwrap(), x["role"].as_str().unwrap())).collect();
    assert!(roles.contains(&(app.housing, "lead")) && roles.contains(&(app.ecology, "co")), "{roles:?}");
    Ok(())
}

#[tokio::test]
async fn inbox_filters_scope_and_roles() -> Result<()> {
    let app = app().await?;
    let a = app.dispatch(false).await?;
    let b = app.dispatch(false).await?;
    app.ok("h_housing", b, "sign", json!({}), "signed").await?;
    let (s, l) = app.get("h_housing", "/api/v1/tasks?state=dispatched").await?;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<i64> = l["items"].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!((ids, l["total"].as_i64()), (vec![a], Some(1)));
    let (_, l) = app.get("mon", "/api/v1/tasks?source=manual&limit=1").await?;
    assert_eq!((l["items"].as_array().unwrap().len(), l["total"].as_i64()), (1, Some(2)), "paged with the full total");
    let (_, l) = app.get("h_ecology", "/api/v1/tasks").await?;
    assert_eq!(l["total"], 0, "nothing of housing's: {l}");
    let (_, l) = app.get("mon", "/api/v1/tasks?overdue=true").await?;
    assert_eq!(l["total"], 0, "nothing is late yet");
    let (_, l) = app.get("mon", "/api/v1/tasks?source=warning").await?;
    assert_eq!(l["total"], 0);
    for bad in ["state=done", "source=x", "level=9", "overdue=maybe", "limit=0", "department_id=x"] {
        let (s, _) = app.get("mon", &format!("/api/v1/tasks?{bad}")).await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (s, _) = app.get("sec", "/api/v1/tasks").await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "the security administrator sees no business data");
    let (s, _) = app.post("h_housing", "/api/v1/tasks", json!({"title": "x", "level": 3, "department_id": app.housing})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "departments do not dispatch");
    let (s, _) = app.post("resup", &format!("/api/v1/tasks/{a}/comments"), json!({"text": "看看"})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "re-supervision reads only");
    let (s, _) = app.post("h_housing", &format!("/api/v1/tasks/{a}/comments"), json!({"text": "收到，今天下午到场"})).await?;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = app
        .post("mon", "/api/v1/tasks", json!({"title": "x", "level": 3, "department_id": app.housing, "co_department_ids": [app.housing]}))
        .await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "lead cannot be co-handler");
    let (s, _) = app.post("mon", "/api/v1/tasks", json!({"title": "x", "level": 3, "department_id": 999999})).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "unknown department");
    Ok(())
}

#[tokio::test]
async fn attachments_are_checked_stored_by_hash_and_downloadable() -> Result<()> {
    let app = app().await?;
    let id = app.dispatch(false).await?;
    let png = base64::engine::general_purpose::STANDARD.decode(PNG_B64)?;
    let c = common::client(&app.db.store, "h_housing").await?;
    let url = format!("{}/api/v1/tasks/{id}/attachments", app.base);
    let form = Form::new().part("file", Part::bytes(png.clone()).file_name("../现场照片.png"));
    let r = c.post(&url).multipart(form).send().await?;
    assert_eq!(r.status(), StatusCode::CREATED);
    let a: Value = r.json().await?;
    assert_eq!((a["content_type"].as_str(), a["filename"].as_str()), (Some("image/png"), Some("现场照片.png")));
    assert_eq!(a["sha256"].as_str().unwrap(), offsite_store::files::sha256_hex(&png));
    let got = c.get(format!("{url}/{}", a["id"])).send().await?;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await?.to_vec(), png);
    let form = Form::new().part("file", Part::bytes(b"MZ not a picture".to_vec()).file_name("photo.png"));
    assert_eq!(c.post(&url).multipart(form).send().await?.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = vec![0xFFu8; (20 << 20) + 10];
    let form = Form::new().part("file", Part::bytes(big).file_name("big.jpg"));
    assert_eq!(c.post(&url).multipart(form).send().await?.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let other = common::client(&app.db.store, "h_ecology").await?;
    assert_eq!(other.get(format!("{url}/{}", a["id"])).send().await?.status(), StatusCode::NOT_FOUND);
    let (_, t) = app.get("mon", &format!("/api/v1/tasks/{id}")).await?;
    assert!(t["events"].as_array().unwrap().iter().any(|e| e["action"] == "attachment"), "{t}");
    Ok(())
}

async fn device(app: &App, id: &str, object: &str) -> Result<i32> {
    Ok(app
        .db
        .store
        .insert_device(&NewDevice {
            id: DeviceId::parse(id)?,
            name: id.into(),
            object_id: Some(object.into()),
            token_sha256: [7; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?
        .key)
}

fn warning(key: &str, device_key: i32, level: Level) -> NewWarning {
    NewWarning {
        dedup_key: key.into(),
        source: "rules".into(),
        source_version: "1".into(),
        event: format!("event-{key}"),
        level,
        device_key,
        metric_id: None,
        object_id: None,
        detail: "PM10 连续 10 分钟超过 150".into(),
        score: 1.0,
        at: Utc::now(),
        evidence: json!({}),
        group_window: TimeDelta::seconds(30),
    }
}

#[tokio::test]
async fn warning_triage_dispatch_merge_false_positive_and_precision() -> Result<()> {
    let app = app().await?;
    let dev = device(&app, "dust01", "demo-site-01").await?;
    let w1 = app.db.store.upsert_warning(&warning("a", dev, Level::YELLOW)).await?.into_record().id;
    let w2 = app.db.store.upsert_warning(&warning("b", dev, Level::YELLOW)).await?.into_record().id;
    let w3 = app.db.store.upsert_warning(&warning("c", dev, Level::YELLOW)).await?.into_record().id;

    let (s, _) = app.post("h_housing", &format!("/api/v1/warnings/{w1}/dispatch"), json!({})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "departments do not triage");
    let (s, _) = app.post("mon", &format!("/api/v1/warnings/{w1}/acknowledge"), json!({})).await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // No department named: the object's responsible department (demo-site-01 -> housing).
    let (s, t) = app.post("mon", &format!("/api/v1/warnings/{w1}/dispatch"), json!({})).await?;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!((t["department_id"].as_i64(), t["source"].as_str()), (Some(app.housing), Some("warning")));
    assert_eq!(t["source_ref"], w1.to_string());
    assert!(t["title"].as_str().unwrap().contains("示范建设工地"), "title names the place: {t}");
    let task = t["id"].as_i64().unwrap();
    let (s, b) = app.post("mon", &format!("/api/v1/warnings/{w1}/dispatch"), json!({})).await?;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("already_dispatched")));

    let (s, _) = app.post("mon", &format!("/api/v1/warnings/{w2}/merge"), json!({"task_id": task})).await?;
    assert_eq!(s, StatusCode::OK);
    let (_, w) = app.get("mon", &format!("/api/v1/warnings/{w2}")).await?;
    let (_, d) = app.get("mon", &format!("/api/v1/tasks/{task}")).await?;
    assert!(d["events"].as_array().unwrap().iter().any(|e| e["action"] == "warning_merged" && e["detail"]["warning_id"] == w2));
    let _ = w;

    let (s, _) = app.post("mon", &format!("/api/v1/warnings/{w3}/false-positive"), json!({"note": "传感器被遮挡"})).await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, w) = app.get("mon", &format!("/api/v1/warnings/{w3}")).await?;
    assert_eq!((w["open"].as_bool(), w["resolution"].as_str()), (Some(false), Some("false_positive")), "{w}");
    let (s, b) = app.post("mon", &format!("/api/v1/warnings/{w3}/dispatch"), json!({})).await?;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("false_positive")));

    let (s, p) = app.get("mon", "/api/v1/warnings/precision").await?;
    assert_eq!(s, StatusCode::OK);
    let items = p["items"].as_array().unwrap();
    let triaged: i64 = items.iter().map(|i| i["triaged"].as_i64().unwrap()).sum();
    let fps: i64 = items.iter().map(|i| i["false_positives"].as_i64().unwrap()).sum();
    assert_eq!((triaged, fps), (3, 1), "{p}");
    let (s, _) = app.get("h_housing", "/api/v1/warnings/precision").await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn complaint_becomes_a_task_and_its_public_status_follows() -> Result<()> {
    let app = app().await?;
    let filed = app
        .db
        .store
        .file_complaint(
            &offsite_store::NewComplaint {
                service_code: "dust".into(),
                description: "工地夜间施工扬尘严重".into(),
                address: None,
                lon: None,
                lat: None,
                object_id: Some("demo-site-01".into()),
                contact_name: None,
                phone: None,
                id_number: None,
                submitter_ip: "203.0.113.9".into(),
                attachments: vec![],
            },
            offsite_store::RateLimit { max: 100, window: Duration::from_secs(3600) },
        )
        .await?;
    let offsite_store::complaints::Filed::Ok { id, tracking_no } = filed else { panic!("not filed") };
    let (s, t) = app.post("mon", &format!("/api/v1/complaints/{id}/task"), json!({})).await?;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!((t["source"].as_str(), t["source_ref"].as_str()), (Some("complaint"), Some(tracking_no.as_str())));
    assert_eq!(t["level"], 4, "complaints default to blue");
    let task = t["id"].as_i64().unwrap();
    let (s, _) = app.post("mon", &format!("/api/v1/complaints/{id}/task"), json!({})).await?;
    assert_eq!(s, StatusCode::CONFLICT, "one task per complaint");

    let public = reqwest::Client::new();
    let track = |no: String| {
        let public = public.clone();
        let base = app.base.clone();
        async move {
            let r = public.get(format!("{base}/api/v1/complaints/track/{no}")).send().await?;
            anyhow::Ok(r.json::<Value>().await?)
        }
    };
    app.ok("h_housing", task, "sign", json!({}), "signed").await?;
    let p = track(tracking_no.clone()).await?;
    let text = p.to_string();
    assert!(text.contains("已签收"), "the public sees the task was signed: {p}");
    assert!(!text.contains("h_housing"), "no staff names in public: {p}");
    app.ok("h_housing", task, "start", json!({}), "in_progress").await?;
    app.ok("h_housing", task, "feedback", json!({"text": "已责令工地夜间停工并覆盖裸土"}), "feedback").await?;
    let p = track(tracking_no.clone()).await?;
    assert_ne!(p["status"], "closed", "not closed before review: {p}");
    app.ok("mon", task, "approve", json!({}), "closed").await?;
    let p = track(tracking_no.clone()).await?;
    assert_eq!(p["status"], "closed", "{p}");
    assert!(p.to_string().contains("已责令工地夜间停工并覆盖裸土"), "the feedback is the public answer: {p}");

    let (s, _) = app.post("mon", &format!("/api/v1/complaints/{id}/callback"), json!({"result": "great"})).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = app.post("mon", &format!("/api/v1/complaints/{id}/callback"), json!({"result": "satisfied"})).await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    Ok(())
}

#[tokio::test]
async fn policies_calendar_and_responsibilities_are_admin_maintained() -> Result<()> {
    let app = app().await?;
    let (s, p) = app.get("mon", "/api/v1/task-policies").await?;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["items"].as_array().unwrap().len(), 4, "the four defaults: {p}");
    let body = json!({"item": "demo-dust", "level": 1, "sign_limit": "15m", "handle_limit": "12h", "auto_dispatch": true});
    let (s, _) = app.call("mon", Method::PUT, "/api/v1/task-policies", Some(body.clone())).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.call("admin", Method::PUT, "/api/v1/task-policies", Some(body)).await?;
    assert_eq!(s, StatusCode::OK);
    let bad = json!({"item": "demo-dust", "level": 1, "sign_limit": "15 minutes", "handle_limit": "12h"});
    let (s, _) = app.call("admin", Method::PUT, "/api/v1/task-policies", Some(bad)).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = app.call("admin", Method::DELETE, "/api/v1/task-policies/*/1", None).await?;
    assert_eq!(s, StatusCode::CONFLICT, "defaults stay");

    let (s, _) = app.call("admin", Method::PUT, "/api/v1/calendar/2026-10-01", Some(json!({"kind": "holiday", "name": "国庆节"}))).await?;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.call("admin", Method::PUT, "/api/v1/calendar/2026-10-10", Some(json!({"kind": "workday", "name": "国庆调休"}))).await?;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.call("admin", Method::PUT, "/api/v1/calendar/2026-13-01", Some(json!({"kind": "holiday"}))).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, c) = app.get("h_housing", "/api/v1/calendar?year=2026").await?;
    assert_eq!(c["items"].as_array().unwrap().len(), 2, "{c}");
    let cal = app.db.store.working_calendar().await?;
    assert!(cal.workdays.contains(&chrono::NaiveDate::from_ymd_opt(2026, 10, 10).unwrap()));

    let r = json!({"item": "demo-dust", "region_code": "330102", "department_id": app.ecology});
    let (s, _) = app.call("admin", Method::PUT, "/api/v1/responsibilities", Some(r)).await?;
    assert_eq!(s, StatusCode::OK);
    // demo-site-01 lies in 330102: dust there is now ecology's; other items stay with housing.
    assert_eq!(app.db.store.responsible_department(Some("demo-dust"), "demo-site-01").await?, Some(app.ecology));
    assert_eq!(app.db.store.responsible_department(Some("demo-noise"), "demo-site-01").await?, Some(app.housing));
    Ok(())
}

/// The workflow's events reach people: a new task its department, the scheduler's reminder its
/// handlers, supervision its leaders and re-supervision (the notify fan-out over real task events).
#[tokio::test]
async fn task_events_become_notifications_for_the_right_people() -> Result<()> {
    let app = app().await?;
    let id = app.dispatch(false).await?;
    app.db.store.fan_out_notifications(1000).await?;
    let kinds = |user: &'static str| {
        let app = &app;
        async move {
            let (s, b) = app.get(user, "/api/v1/notifications?limit=100").await?;
            assert_eq!(s, StatusCode::OK, "{b}");
            anyhow::Ok(
                b["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|n| n["task_id"] == id)
                    .map(|n| n["kind"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>(),
            )
        }
    };
    assert_eq!(kinds("h_housing").await?, ["new_task"]);
    assert_eq!(kinds("l_housing").await?, ["new_task"]);
    assert!(kinds("h_ecology").await?.is_empty(), "another department hears nothing");
    // Nobody signs: two hours later every sign-for checkpoint has passed.
    let task = app.db.store.task(id).await?.unwrap();
    let later = task.sign_due + TimeDelta::hours(2);
    let r = app.db.store.run_scheduler(later, &offsite_store::tasks::SchedulerPolicy::default()).await?;
    assert_eq!(r.fired.iter().filter(|f| f.task_id == id).count(), 3);
    app.db.store.fan_out_notifications(1000).await?;
    assert_eq!(kinds("h_housing").await?, ["reminder", "new_task"], "newest first");
    let leader = kinds("l_housing").await?;
    assert!(leader.contains(&"supervision".to_owned()) && leader.contains(&"escalation".to_owned()), "{leader:?}");
    let resup = kinds("resup").await?;
    assert!(resup.contains(&"supervision".to_owned()), "re-supervision sees supervision: {resup:?}");
    Ok(())
}

#[tokio::test]
async fn a_warning_merges_into_an_open_case() -> Result<()> {
    let app = app().await?;
    let dev = device(&app, "dust02", "demo-site-01").await?;
    let task = app.dispatch(false).await?;
    app.ok("h_housing", task, "sign", json!({}), "signed").await?;
    let (s, c) = app.post("h_housing", &format!("/api/v1/tasks/{task}/case"), json!({"note": "立案"})).await?;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let case = c["id"].as_i64().unwrap();
    // The task closes; the case goes on, and a new warning about the same site joins it.
    app.ok("h_housing", task, "start", json!({}), "in_progress").await?;
    app.ok("h_housing", task, "feedback", json!({"text": "已立案查处"}), "feedback").await?;
    app.ok("mon", task, "approve", json!({}), "closed").await?;
    let w = app.db.store.upsert_warning(&warning("m", dev, Level::YELLOW)).await?.into_record().id;
    let (s, _) = app.post("mon", &format!("/api/v1/warnings/{w}/merge"), json!({"task_id": task})).await?;
    assert_eq!(s, StatusCode::CONFLICT, "a closed task takes no more warnings");
    let (s, b) = app.post("mon", &format!("/api/v1/warnings/{w}/merge"), json!({"case_id": case})).await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(app.db.store.warning(w).await?.unwrap().task_id, Some(task));
    let (s, _) = app.post("mon", &format!("/api/v1/warnings/{w}/merge"), json!({"task_id": task, "case_id": case})).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "one target only");
    Ok(())
}

#[tokio::test]
async fn a_refused_extension_keeps_the_deadline() -> Result<()> {
    let app = app().await?;
    let id = app.dispatch(false).await?;
    app.ok("h_housing", id, "sign", json!({}), "signed").await?;
    let started = app.ok("h_housing", id, "start", json!({}), "in_progress").await?;
    let due = started["handle_due"].clone();
    let (s, _) = app.act("h_housing", id, "extension", json!({"until": "2000-01-01T00:00:00Z", "reason": "x"})).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a new deadline must be later than the current one");
    let until = (Utc::now() + TimeDelta::days(60)).to_rfc3339();
    app.ok("h_housing", id, "extension", json!({"until": until, "reason": "等待检测报告"}), "in_progress").await?;
    let (s, b) = app.act("h_housing", id, "feedback", json!({"text": "x"})).await?;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("extension_pending")), "{b}");
    let refused = app.ok("mon", id, "extension/refuse", json!({"note": "理由不充分"}), "in_progress").await?;
    assert_eq!(refused["handle_due"], due, "the deadline stays");
    assert_eq!((refused["extension_count"].as_i64(), refused["extension_pending"].as_bool()), (Some(0), Some(false)));
    let (_, d) = app.get("h_housing", &format!("/api/v1/tasks/{id}")).await?;
    assert_eq!(d["extensions"][0]["decision"], "refused");
    assert!(d["events"].as_array().unwrap().iter().any(|e| e["action"] == "extension_refused" && e["reason"] == "理由不充分"));
    app.ok("h_housing", id, "feedback", json!({"text": "按期完成"}), "feedback").await?;
    Ok(())
}
