//! Detection and workflow configuration over HTTP: the detector models the analytics tier
//! recorded (`GET /api/v1/models`, each detector's latest load marked current) and removing a
//! responsibility (`DELETE /api/v1/responsibilities/{item}/{region_code}`, the system
//! administrator's, audited).

use std::time::Duration;

mod common;

use anyhow::Result;
use chrono::{TimeZone, Utc};
use offsite_portal::{serve, AppState};
use offsite_store::auth::Role;
use offsite_store::detector_models::{ModelDigest, ModelLoad};
use offsite_store::testing::TestDb;
use offsite_store::AuditFilter;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

struct App {
    base: String,
    db: TestDb,
    _stop: oneshot::Sender<()>,
}

async fn app() -> Result<App> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    let housing = db.store.department_by_code("housing-construction").await?.unwrap().id;
    for (name, roles, dept) in [
        ("admin", &[Role::SystemAdmin][..], None),
        ("sec", &[Role::SecurityAdmin][..], None),
        ("mon", &[Role::Monitor][..], None),
        ("h_housing", &[Role::Handler][..], Some(housing)),
    ] {
        common::add_user(&db.store, name, roles, dept).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    let audit = offsite_store::AuditLog::start(db.store.clone(), None, Duration::from_secs(60));
    let state = AppState::new(db.store.clone())
        .with_live(offsite_portal::live::channel())
        .with_audit(audit);
    tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    Ok(App { base, db, _stop: tx })
}

impl App {
    async fn call(&self, user: &str, method: Method, path: &str, body: Option<Value>) -> Result<(StatusCode, Value)> {
        let c = common::client(&self.db.store, user).await?;
        let mut r = c.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

fn load(detector: &str, version: &str, digit: char, minute: u32) -> ModelLoad {
    ModelLoad {
        detector: detector.into(),
        name: "offsite-anomaly-forecaster".into(),
        version: version.into(),
        sha256: ModelDigest::parse(&digit.to_string().repeat(64)).unwrap(),
        metadata: json!({"name": "offsite-anomaly-forecaster", "version": version, "window": 64}),
        loaded_at: Utc.with_ymd_and_hms(2026, 5, 1, 8, minute, 0).unwrap(),
    }
}

#[tokio::test]
async fn models_list_each_load_newest_first_with_the_current_one_marked() -> Result<()> {
    let app = app().await?;
    let (status, body) = app.call("admin", Method::GET, "/api/v1/models", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"], json!([]), "nothing loaded yet");

    app.db
        .store
        .record_model_load(&load("anomaly-onnx", "1", 'a', 0))
        .await?;
    app.db
        .store
        .record_model_load(&load("anomaly-onnx", "2", 'B', 5))
        .await?;
    app.db
        .store
        .record_model_load(&load("anomaly-other", "7", 'c', 1))
        .await?;

    let (status, body) = app.call("mon", Method::GET, "/api/v1/models", None).await?;
    assert_eq!(status, StatusCode::OK);
    let items = body["items"].as_array().unwrap();
    let seen: Vec<(&str, &str, bool)> = items
        .iter()
        .map(|m| {
            (
                m["detector"].as_str().unwrap(),
                m["version"].as_str().unwrap(),
                m["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("anomaly-onnx", "2", true),
            ("anomaly-other", "7", true),
            ("anomaly-onnx", "1", false)
        ]
    );
    assert_eq!(items[0]["sha256"], "b".repeat(64), "digests are stored lowercase");
    assert_eq!(items[0]["metadata"]["window"], 64);
    assert_eq!(items[0]["loaded_at"], "2026-05-01T08:05:00Z");

    // Business data roles read it; the security administrator sees no business configuration.
    let (status, _) = app.call("h_housing", Method::GET, "/api/v1/models", None).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call("sec", Method::GET, "/api/v1/models", None).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn a_responsibility_can_be_removed_by_the_system_administrator_only() -> Result<()> {
    let app = app().await?;
    let housing = app
        .db
        .store
        .department_by_code("housing-construction")
        .await?
        .unwrap()
        .id;
    let body = json!({"item": "demo-dust", "region_code": "330102", "department_id": housing});
    let (status, _) = app
        .call("admin", Method::PUT, "/api/v1/responsibilities", Some(body))
        .await?;
    assert_eq!(status, StatusCode::OK);

    let path = "/api/v1/responsibilities/demo-dust/330102";
    let (status, _) = app.call("mon", Method::DELETE, path, None).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.call("admin", Method::DELETE, path, None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = app.call("admin", Method::GET, "/api/v1/responsibilities", None).await?;
    assert!(
        !list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["item"] == "demo-dust" && r["region_code"] == "330102"),
        "{list}"
    );
    let (status, body) = app.call("admin", Method::DELETE, path, None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body["error"]["message_zh"].as_str().unwrap().is_empty());

    let mut audited = false;
    for _ in 0..100 {
        let f = AuditFilter {
            action: Some("responsibility.delete".into()),
            entity_id: Some("demo-dust/330102".into()),
            ..Default::default()
        };
        if !app.db.store.audit_search(&f).await?.0.is_empty() {
            audited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(audited, "the removal is in the audit trail");
    Ok(())
}
