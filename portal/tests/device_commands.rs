//! HJ 212 logger commands over HTTP: the system administrator records a clock sync or an interval
//! for a logger (audited, refused for other devices and bad intervals); the history shows the
//! logger's MN and each command with the answers the gateway recorded, to whoever sees the device.

mod common;

use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use offsite_portal::{serve, AppState};
use offsite_store::auth::Role;
use offsite_store::testing::TestDb;
use offsite_store::{AuditFilter, NewDevice};
use offsite_wire::{CommandAck, DeviceId};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const MN: &str = "SQ0000000000000000000009";

struct App {
    base: String,
    db: TestDb,
    _stop: oneshot::Sender<()>,
}

async fn app() -> Result<App> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    let housing = db.store.department_by_code("housing-construction").await?.unwrap().id;
    let ecology = db.store.department_by_code("ecology").await?.unwrap().id;
    for (name, role, dept) in [
        ("sys", Role::SystemAdmin, None),
        ("mon", Role::Monitor, None),
        ("h1", Role::Handler, Some(housing)),
        ("e1", Role::Handler, Some(ecology)),
    ] {
        common::add_user(&db.store, name, &[role], dept).await?;
    }
    // demo-site-01 is the housing department's.
    db.store.insert_hj212_logger("工地扬尘数采仪", Some("demo-site-01".into()), MN, "123456").await?;
    db.store
        .insert_device(&NewDevice {
            id: DeviceId::parse("mqttdev")?,
            name: "MQTT 监测仪".into(),
            object_id: Some("demo-site-01".into()),
            token_sha256: [3; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    let audit = offsite_store::AuditLog::start(db.store.clone(), None, Duration::from_secs(60));
    let state = AppState::new(db.store.clone()).with_live(offsite_portal::live::channel()).with_audit(audit);
    tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    Ok(App { base, db, _stop: tx })
}

impl App {
    async fn get(&self, user: &str, path: &str) -> Result<(StatusCode, Value)> {
        let r = common::client(&self.db.store, user).await?.get(format!("{}{path}", self.base)).send().await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn post(&self, user: &str, path: &str, body: Value) -> Result<(StatusCode, Value)> {
        let r = common::client(&self.db.store, user).await?.post(format!("{}{path}", self.base)).json(&body).send().await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }
}

fn commands(id: &str) -> String {
    format!("/api/v1/devices/{id}/commands")
}

#[tokio::test]
async fn the_administrator_commands_a_logger_and_sees_its_answers() -> Result<()> {
    let app = app().await?;
    let (s, body) = app.post("sys", &commands(MN), json!({"action": "sync_clock"})).await?;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let clock = body["command_id"].as_str().expect("command_id").to_owned();
    let (s, body) = app.post("sys", &commands(MN), json!({"action": "set_interval", "seconds": 60})).await?;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let interval = body["command_id"].as_str().expect("command_id").to_owned();

    // Recorded for the gateway, in the shape it reads.
    let c = app.db.store.command(&interval).await?.expect("recorded");
    assert_eq!((c.kind.as_str(), &c.body["seconds"], c.created_by.as_deref()), ("set_interval", &json!(60), Some("sys")));
    assert_eq!(app.db.store.command(&clock).await?.expect("recorded").kind, "sync_clock");

    // The gateway records the logger's answer; the history shows it, newest first.
    let key = app.db.store.device(&DeviceId::parse(MN)?).await?.unwrap().key;
    let ack = CommandAck {
        id: interval.clone(),
        ok: true,
        error: None,
        // As the gateway records a logger's 9011 (QnRtn) and 9012 (ExeRtn).
        state: Some(json!({"qn": "20261127100000000", "qn_rtn": 1, "exe_rtn": 1})),
    };
    assert!(app.db.store.record_command_ack(key, &ack, Utc::now()).await?);
    let (s, h) = app.get("sys", &commands(MN)).await?;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(h["hj212_mn"], MN);
    let items = h["items"].as_array().expect("items");
    let ids: Vec<&str> = items.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids, [interval.as_str(), clock.as_str()]);
    assert_eq!((&items[0]["ok"], &items[0]["state"]["exe_rtn"]), (&json!(true), &json!(1)));
    assert_eq!((&items[1]["ok"], &items[1]["acked_at"]), (&Value::Null, &Value::Null), "not answered yet");

    // Audited as the administrator's.
    let mut audited = None;
    for _ in 0..100 {
        let f = AuditFilter { action: Some("device.command".into()), entity_id: Some(MN.into()), ..Default::default() };
        let found = app.db.store.audit_search(&f).await?.0;
        if found.len() == 2 {
            audited = Some(found[0].actor.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(audited.as_deref(), Some("sys"));
    Ok(())
}

#[tokio::test]
async fn commands_are_refused_where_they_do_not_apply() -> Result<()> {
    let app = app().await?;
    for body in [
        json!({"action": "set_interval", "seconds": 29}),
        json!({"action": "set_interval", "seconds": 3601}),
        json!({"action": "set_interval"}),
        json!({"action": "reboot"}),
        json!({"action": "sync_clock", "now": true}),
    ] {
        let (s, resp) = app.post("sys", &commands(MN), body.clone()).await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {resp}");
    }
    let (_, resp) = app.post("sys", &commands(MN), json!({"action": "set_interval", "seconds": 29})).await?;
    assert!(resp["error"]["message_zh"].as_str().is_some_and(|m| m.contains("上报间隔")), "{resp}");
    // Not a logger: nothing to sync.
    let (s, resp) = app.post("sys", &commands("mqttdev"), json!({"action": "sync_clock"})).await?;
    assert_eq!(s, StatusCode::CONFLICT, "{resp}");
    let (s, h) = app.get("sys", &commands("mqttdev")).await?;
    assert_eq!((s, &h["hj212_mn"]), (StatusCode::OK, &Value::Null));
    // Only who manages devices commands them; the history goes to whoever sees the device.
    let (s, _) = app.post("mon", &commands(MN), json!({"action": "sync_clock"})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.post("h1", &commands(MN), json!({"action": "sync_clock"})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(app.get("h1", &commands(MN)).await?.0, StatusCode::OK);
    assert_eq!(app.get("e1", &commands(MN)).await?.0, StatusCode::NOT_FOUND, "another department's logger");
    assert_eq!(app.post("sys", &commands("nosuchdev"), json!({"action": "sync_clock"})).await?.0, StatusCode::NOT_FOUND);
    // A revoked logger is not commanded.
    app.db.store.revoke_device(&DeviceId::parse(MN)?).await?;
    assert_eq!(app.post("sys", &commands(MN), json!({"action": "sync_clock"})).await?.0, StatusCode::CONFLICT);
    let key = app.db.store.device(&DeviceId::parse(MN)?).await?.unwrap().key;
    assert!(app.db.store.device_commands(key, 10).await?.is_empty(), "nothing refused was recorded");
    Ok(())
}

/// A logger registered from the web form: no certificate authority needed (this portal has none),
/// class `hj212`, audited; a second registration of its MN and bad MNs or PWs are refused.
#[tokio::test]
async fn a_logger_is_registered_by_mn_and_pw() -> Result<()> {
    let app = app().await?;
    let body = json!({"name": "排口数采仪", "object_id": "demo-site-01", "hj212": {"mn": "WATER0001", "pw": "abc123"}});
    let (s, r) = app.post("sys", "/api/v1/devices", body.clone()).await?;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!((r["device_id"].as_str(), r["hj212_mn"].as_str()), (Some("WATER0001"), Some("WATER0001")));
    assert!(r.get("token").is_none(), "a logger gets no credentials: {r}");
    let logger = app.db.store.hj212_logger("WATER0001").await?.expect("registered");
    assert!(logger.password_matches("abc123") && !logger.password_matches("abc124"));
    let d = app.db.store.device(&DeviceId::parse("WATER0001")?).await?.unwrap();
    assert_eq!((d.class.as_deref(), d.object_id.as_deref()), (Some("hj212"), Some("demo-site-01")));
    let (s, h) = app.get("sys", &commands("WATER0001")).await?;
    assert_eq!((s, &h["hj212_mn"]), (StatusCode::OK, &json!("WATER0001")));

    assert_eq!(app.post("sys", "/api/v1/devices", body).await?.0, StatusCode::CONFLICT, "the MN is taken");
    for hj212 in [json!({"mn": "has space", "pw": "1"}), json!({"mn": "OK1", "pw": "a;b"}), json!({"mn": "OK1"}), json!({"mn": "OK1", "pw": "1", "st": "22"})] {
        let (s, r) = app.post("sys", "/api/v1/devices", json!({"name": "x", "hj212": hj212})).await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{hj212}: {r}");
    }
    let (s, _) = app.post("mon", "/api/v1/devices", json!({"name": "x", "hj212": {"mn": "OK2", "pw": "1"}})).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    Ok(())
}
