//! The role-by-endpoint matrix: every endpoint, every role. A handler of department A gets nothing
//! of department B (404, not a hint that it exists); read-only roles change nothing; the three
//! administrators keep to their separated powers.

use std::time::Duration;

mod common;

use anyhow::Result;
use chrono::Utc;
use offsite_portal::{serve, AppState};
use offsite_store::auth::Role;
use offsite_store::testing::TestDb;
use offsite_store::warnings::NewWarning;
use offsite_store::{Level, NewDevice, NewObject};
use offsite_wire::DeviceId;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

struct World {
    base: String,
    db: TestDb,
    _stop: oneshot::Sender<()>,
    /// A device and a warning of department A, and of department B.
    dev_a: String,
    dev_b: String,
    warn_a: i64,
    warn_b: i64,
}

async fn world() -> Result<World> {
    let db = TestDb::new().await?;
    let s = &db.store;
    s.seed_demo_registers().await?;
    let housing = s.department_by_code("housing-construction").await?.unwrap();
    let ecology = s.department_by_code("ecology").await?.unwrap();
    let obj = |id: &str, dept: i64| NewObject {
        id: id.into(),
        name: id.into(),
        credit_code: None,
        object_type: Some("construction-site".into()),
        address: None,
        lon: None,
        lat: None,
        region_code: None,
        department_id: Some(dept),
    };
    s.insert_object(&obj("site-a", housing.id)).await?;
    s.insert_object(&obj("site-b", ecology.id)).await?;
    let mut devs = Vec::new();
    let mut warns = Vec::new();
    for (id, object) in [("deva", "site-a"), ("devb", "site-b")] {
        let d = s
            .insert_device(&NewDevice {
                id: DeviceId::parse(id)?,
                name: id.into(),
                object_id: Some(object.into()),
                token_sha256: [3; 32],
                cert_serial: None,
                cert_not_after: None,
            })
            .await?;
        let w = s
            .upsert_warning(&NewWarning {
                dedup_key: format!("rules|{id}|pm10|rule:1"),
                source: "rules".into(),
                source_version: "1".into(),
                event: "rule:1".into(),
                level: Level::ORANGE,
                device_key: d.key,
                metric_id: None,
                object_id: Some(object.into()),
                detail: "PM10 超标".into(),
                score: 1.0,
                at: Utc::now(),
                evidence: json!({}),
                group_window: chrono::Duration::seconds(30),
            })
            .await?;
        devs.push(id.to_owned());
        warns.push(w.record().id);
    }
    let users: [(&str, Role, Option<i64>); 8] = [
        ("sysadmin", Role::SystemAdmin, None),
        ("secadmin", Role::SecurityAdmin, None),
        ("auditor", Role::AuditAdmin, None),
        ("monitor", Role::Monitor, None),
        ("handlera", Role::Handler, Some(housing.id)),
        ("leadera", Role::Leader, Some(housing.id)),
        ("reviewer", Role::Reviewer, None),
        ("resup", Role::Resupervision, None),
    ];
    for (name, role, dept) in users {
        common::add_user(s, name, &[role], dept).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    let live = offsite_portal::live::channel();
    tokio::spawn(serve(listener, AppState::new(db.store.clone()).with_live(live), async move {
        let _ = rx.await;
    }));
    Ok(World { base, db, _stop: tx, dev_a: devs[0].clone(), dev_b: devs[1].clone(), warn_a: warns[0], warn_b: warns[1] })
}

impl World {
    async fn token(&self, user: &str) -> Result<String> {
        common::token(&self.db.store, user).await
    }

    async fn call(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Result<StatusCode> {
        let mut r = reqwest::Client::new().request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        // The stream never ends; its status is all that matters here.
        let resp = tokio::time::timeout(Duration::from_secs(10), r.send()).await??;
        Ok(resp.status())
    }
}

/// What a role should get: allowed (2xx), forbidden (403) or not found (404).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Ok,
    Forbidden,
    NotFound,
}

fn outcome(s: StatusCode) -> Want {
    match s {
        s if s.is_success() => Want::Ok,
        StatusCode::FORBIDDEN => Want::Forbidden,
        StatusCode::NOT_FOUND => Want::NotFound,
        other => panic!("unexpected status {other}"),
    }
}

#[tokio::test]
async fn every_endpoint_with_every_role() -> Result<()> {
    let w = world().await?;
    let (a, b, wa, wb) = (w.dev_a.clone(), w.dev_b.clone(), w.warn_a, w.warn_b);
    let series = |d: &str| format!("/api/v1/series?device={d}&metric=pm10&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z");
    let rule = json!({"name": "r", "level": 3, "condition": {"kind": "threshold", "above": 1}});
    let silence = json!({"device": a, "duration_s": 600, "reason": "测试"});
    let maint = json!({"device": a, "duration_s": 600, "reason": "测试"});
    use Want::*;
    // (method, path, body, [sysadmin, secadmin, auditor, monitor, handlera, leadera, reviewer, resup])
    let cases: Vec<(Method, String, Option<Value>, [Want; 8])> = vec![
        (Method::GET, "/api/v1/devices".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, format!("/api/v1/devices/{a}"), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, format!("/api/v1/devices/{b}"), None, [Ok, Forbidden, Forbidden, Ok, NotFound, NotFound, Ok, Ok]),
        (Method::GET, series(&a), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, series(&b), None, [Ok, Forbidden, Forbidden, Ok, NotFound, NotFound, Ok, Ok]),
        (Method::GET, "/api/v1/warnings".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, format!("/api/v1/warnings/{wa}"), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, format!("/api/v1/warnings/{wb}"), None, [Ok, Forbidden, Forbidden, Ok, NotFound, NotFound, Ok, Ok]),
        (Method::GET, "/api/v1/rules".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, "/api/v1/models".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::POST, "/api/v1/rules".into(), Some(rule.clone()), [Ok, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        (Method::GET, "/api/v1/silences".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::POST, "/api/v1/silences".into(), Some(silence), [Ok, Forbidden, Forbidden, Ok, Forbidden, Forbidden, Forbidden, Forbidden]),
        (Method::GET, "/api/v1/maintenance".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::POST, "/api/v1/maintenance".into(), Some(maint), [Ok, Forbidden, Forbidden, Ok, Forbidden, Forbidden, Forbidden, Forbidden]),
        (Method::GET, "/api/v1/users".into(), None, [Forbidden, Ok, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        (Method::GET, "/api/v1/audit".into(), None, [Forbidden, Forbidden, Ok, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        (Method::GET, "/api/v1/warnings/stream".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, "/api/v1/objects".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, "/api/v1/objects/site-a".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, "/api/v1/objects/site-b".into(), None, [Ok, Forbidden, Forbidden, Ok, NotFound, NotFound, Ok, Ok]),
        (Method::GET, "/api/v1/objects/export".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::POST, "/api/v1/objects".into(), Some(json!({"id": "site-x", "name": "x"})), [Ok, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        // The security administrator reads the organisation to assign accounts, no business data.
        (Method::GET, "/api/v1/regions".into(), None, [Ok, Ok, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, "/api/v1/departments".into(), None, [Ok, Ok, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, "/api/v1/catalog/drafts".into(), None, [Ok, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        (Method::DELETE, "/api/v1/departments/999999".into(), None, [NotFound, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        (Method::DELETE, "/api/v1/regions/999999".into(), None, [NotFound, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        (Method::GET, "/api/v1/catalog".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, "/api/v1/complaints".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, "/api/v1/metrics/departments".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, "/api/v1/wall/summary".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, "/api/v1/cameras".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, "/api/v1/devices/export".into(), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, format!("/api/v1/devices/{a}/metadata"), None, [Ok, Forbidden, Forbidden, Ok, Ok, Ok, Ok, Ok]),
        (Method::GET, format!("/api/v1/devices/{b}/metadata"), None, [Ok, Forbidden, Forbidden, Ok, NotFound, NotFound, Ok, Ok]),
        (Method::PUT, format!("/api/v1/devices/{a}/metadata"), Some(json!({"model": "X"})), [Ok, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
        (Method::PUT, "/api/v1/catalog/X1/draft".into(), Some(json!({"department": "d", "main_item": "m", "method": "非现场监管"})), [Ok, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden, Forbidden]),
    ];
    let users = ["sysadmin", "secadmin", "auditor", "monitor", "handlera", "leadera", "reviewer", "resup"];
    let mut tokens = Vec::new();
    for u in users {
        tokens.push(w.token(u).await?);
    }
    let mut failures = Vec::new();
    for (method, path, body, want) in &cases {
        for (i, user) in users.iter().enumerate() {
            let got = outcome(w.call(&tokens[i], method.clone(), path, body.clone()).await?);
            if got != want[i] {
                failures.push(format!("{user} {method} {path}: got {got:?}, want {:?}", want[i]));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A department's handler lists only its department's devices and warnings.
    let t = &tokens[4];
    for (path, key) in [("/api/v1/devices", "id"), ("/api/v1/warnings", "device_id")] {
        let v: Value = reqwest::Client::new().get(format!("{}{path}", w.base)).bearer_auth(t).send().await?.json().await?;
        let ids: Vec<&str> = v["items"].as_array().unwrap().iter().map(|i| i[key].as_str().unwrap()).collect();
        assert_eq!(ids, vec![a.as_str()], "{path}");
    }
    // The wall's figures count what the caller sees: both devices and both (orange) warnings for
    // the monitoring center, department A's only for its handler.
    for (i, want) in [(3, 2), (4, 1)] {
        let v: Value = reqwest::Client::new().get(format!("{}/api/v1/wall/summary", w.base)).bearer_auth(&tokens[i]).send().await?.json().await?;
        assert_eq!(v["devices"], want, "{}: {v}", users[i]);
        assert_eq!(v["open_by_level"], json!([0, want, 0, 0]), "{}: {v}", users[i]);
        assert_eq!(v["regions"][0]["open_by_level"][1], want, "{}: {v}", users[i]);
    }
    // Read-only roles change nothing: resolving a visible warning is refused, and it stays open.
    for (i, user) in users.iter().enumerate() {
        if ["sysadmin", "monitor"].contains(user) {
            continue;
        }
        let s = w.call(&tokens[i], Method::POST, &format!("/api/v1/warnings/{wa}/resolve"), Some(json!({"reason": "x"}))).await?;
        assert!(matches!(outcome(s), Forbidden | NotFound), "{user} resolved a warning");
    }
    assert!(w.db.store.warning(wa).await?.unwrap().resolved_at.is_none());
    // Unauthenticated: 401 everywhere.
    for (method, path, body, _) in &cases {
        let mut r = reqwest::Client::new().request(method.clone(), format!("{}{path}", w.base));
        if let Some(b) = body {
            r = r.json(b);
        }
        assert_eq!(r.send().await?.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    anyhow::Ok(())
}
