//! Registering, rotating and revoking devices over HTTP with a real device CA: credentials come back
//! once (and work: the registry holds their token's digest), never from any read; only the system
//! administrator may do it; every change is in the audit trail; without a CA the portal says so (503).

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use async_trait::async_trait;
use offsite_broker::Pki;
use offsite_portal::provision::DeviceProvisioner;
use offsite_portal::{serve, AppState};
use offsite_store::auth::Role;
use offsite_store::testing::TestDb;
use offsite_store::{AuditFilter, DeviceRecord, Store};
use offsite_wire::{DeviceCredentials, DeviceId};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// What the CLI plugs in, over a CA in a temporary directory.
struct TestProvisioner(Pki);

#[async_trait]
impl DeviceProvisioner for TestProvisioner {
    async fn provision(
        &self,
        store: &Store,
        name: &str,
        object_id: Option<String>,
    ) -> Result<(DeviceRecord, DeviceCredentials)> {
        offsite_broker::provision(store, &self.0, name, object_id).await
    }

    async fn rotate(&self, store: &Store, id: &DeviceId) -> Result<Option<DeviceCredentials>> {
        offsite_broker::rotate(store, &self.0, id).await
    }
}

struct App {
    base: String,
    db: TestDb,
    pki: Pki,
    _pki_dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn app(with_ca: bool) -> Result<App> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    let housing = db
        .store
        .department_by_code("housing-construction")
        .await?
        .unwrap()
        .id;
    for (name, role, dept) in [
        ("sys", Role::SystemAdmin, None),
        ("mon", Role::Monitor, None),
        ("sec", Role::SecurityAdmin, None),
        ("h1", Role::Handler, Some(housing)),
    ] {
        common::add_user(&db.store, name, &[role], dept).await?;
    }
    let pki_dir = tempfile::tempdir()?;
    let pki = Pki::load_or_create(pki_dir.path())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    let audit = offsite_store::AuditLog::start(db.store.clone(), None, Duration::from_secs(60));
    let mut state = AppState::new(db.store.clone())
        .with_live(offsite_portal::live::channel())
        .with_audit(audit);
    if with_ca {
        state = state.with_provisioner(Arc::new(TestProvisioner(pki.clone())));
    }
    tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    Ok(App {
        base,
        db,
        pki,
        _pki_dir: pki_dir,
        _stop: tx,
    })
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(
        &self,
        user: &str,
        path: &str,
        body: Value,
    ) -> Result<(StatusCode, Value, Option<String>)> {
        let r = common::client(&self.db.store, user)
            .await?
            .post(self.url(path))
            .json(&body)
            .send()
            .await?;
        let cache = r
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((r.status(), r.json().await.unwrap_or(Value::Null), cache))
    }

    async fn get_text(&self, user: &str, path: &str) -> Result<(StatusCode, String)> {
        let r = common::client(&self.db.store, user)
            .await?
            .get(self.url(path))
            .send()
            .await?;
        Ok((r.status(), r.text().await?))
    }

    async fn device_count(&self) -> Result<i64> {
        Ok(self.db.store.list_devices(1, 0).await?.1)
    }

    /// Whether the registry would let `token` connect as `id` (the broker compares these digests).
    async fn token_works(&self, id: &str, token: &str) -> Result<bool> {
        let auth = self.db.store.device_auth(id).await?.expect("device exists");
        Ok(!auth.revoked && auth.token_sha256 == offsite_broker::token_digest(token).to_vec())
    }

    async fn audited(&self, action: &str, id: &str) -> Result<Option<String>> {
        for _ in 0..100 {
            let f = AuditFilter {
                action: Some(action.into()),
                entity_id: Some(id.into()),
                ..Default::default()
            };
            if let Some(r) = self.db.store.audit_search(&f).await?.0.into_iter().next() {
                return Ok(Some(r.actor));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(None)
    }
}

#[tokio::test]
async fn registration_returns_working_credentials_once() -> Result<()> {
    let app = app(true).await?;
    let body = json!({"name": " 工地扬尘监测仪 3号 ", "object_id": "demo-site-01", "class": "dust-monitor"});

    // Only the system administrator registers devices; nothing is created on a refusal.
    for user in ["mon", "sec", "h1"] {
        let (st, _, _) = app.post(user, "/api/v1/devices", body.clone()).await?;
        assert_eq!(st, StatusCode::FORBIDDEN, "{user}");
    }
    for bad in [
        json!({"name": "  "}),
        json!({"name": "x", "object_id": "no-such-site"}),
        json!({"name": "x", "class": "a b"}),
    ] {
        let (st, e, _) = app.post("sys", "/api/v1/devices", bad.clone()).await?;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad} -> {e}");
        assert!(
            e["error"]["message_zh"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{e}"
        );
    }
    assert_eq!(app.device_count().await?, 0);

    let (st, creds, cache) = app.post("sys", "/api/v1/devices", body).await?;
    assert_eq!(st, StatusCode::CREATED, "{creds}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    let id = creds["device_id"].as_str().unwrap().to_owned();
    let token = creds["token"].as_str().unwrap().to_owned();
    assert!(creds["cert_pem"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert!(creds["key_pem"].as_str().unwrap().contains("PRIVATE KEY"));
    assert_eq!(creds["ca_pem"].as_str().unwrap(), app.pki.ca_pem());
    assert!(app.token_works(&id, &token).await?);
    // The bundle is what `offsite device add` writes, so the edge agent reads it as it is.
    let parsed: DeviceCredentials = serde_json::from_value(creds.clone())?;
    assert_eq!(parsed.device_id.as_str(), id);

    let d = app.db.store.device(&DeviceId::parse(&id)?).await?.unwrap();
    assert_eq!(
        (d.name.as_str(), d.object_id.as_deref(), d.class.as_deref()),
        (
            "工地扬尘监测仪 3号",
            Some("demo-site-01"),
            Some("dust-monitor")
        )
    );
    assert_eq!(
        app.audited("device.provision", &id).await?.as_deref(),
        Some("sys")
    );

    // Shown once: no read gives the token or the key back.
    for path in [
        format!("/api/v1/devices/{id}"),
        "/api/v1/devices".into(),
        format!("/api/v1/devices/{id}/metadata"),
        "/api/v1/devices/export".into(),
    ] {
        let (st, text) = app.get_text("sys", &path).await?;
        assert_eq!(st, StatusCode::OK, "{path}");
        assert!(
            text.contains(&id) || path.ends_with("/metadata"),
            "{path}: {text}"
        );
        assert!(
            !text.contains(&token) && !text.contains("PRIVATE KEY"),
            "{path} leaks credentials"
        );
    }
    Ok(())
}

#[tokio::test]
async fn rotation_and_revocation() -> Result<()> {
    let app = app(true).await?;
    let (_, creds, _) = app
        .post("sys", "/api/v1/devices", json!({"name": "水质监测仪"}))
        .await?;
    let id = creds["device_id"].as_str().unwrap().to_owned();
    let old = creds["token"].as_str().unwrap().to_owned();

    for user in ["mon", "h1"] {
        assert_eq!(
            app.post(user, &format!("/api/v1/devices/{id}/rotate"), json!({}))
                .await?
                .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            app.post(user, &format!("/api/v1/devices/{id}/revoke"), json!({}))
                .await?
                .0,
            StatusCode::FORBIDDEN
        );
    }
    assert!(
        app.token_works(&id, &old).await?,
        "refused calls change nothing"
    );
    assert_eq!(
        app.post("sys", "/api/v1/devices/nosuch1/rotate", json!({}))
            .await?
            .0,
        StatusCode::NOT_FOUND
    );

    let (st, fresh, cache) = app
        .post("sys", &format!("/api/v1/devices/{id}/rotate"), json!({}))
        .await?;
    assert_eq!(st, StatusCode::OK, "{fresh}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    let new = fresh["token"].as_str().unwrap();
    assert_ne!(new, old);
    assert!(app.token_works(&id, new).await? && !app.token_works(&id, &old).await?);
    assert_eq!(
        app.audited("device.rotate", &id).await?.as_deref(),
        Some("sys")
    );

    let (st, view, _) = app
        .post("sys", &format!("/api/v1/devices/{id}/revoke"), json!({}))
        .await?;
    assert_eq!(st, StatusCode::OK, "{view}");
    assert_eq!(view["revoked"], true);
    assert!(!app.token_works(&id, new).await?);
    assert_eq!(
        app.audited("device.revoke", &id).await?.as_deref(),
        Some("sys")
    );
    // A revoked device gets no new credentials.
    let (st, e, _) = app
        .post("sys", &format!("/api/v1/devices/{id}/rotate"), json!({}))
        .await?;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    Ok(())
}

#[tokio::test]
async fn without_the_ca_registration_is_unavailable_but_revocation_works() -> Result<()> {
    let app = app(false).await?;
    // Roles first: a monitor learns nothing about the portal's set-up.
    assert_eq!(
        app.post("mon", "/api/v1/devices", json!({"name": "x"}))
            .await?
            .0,
        StatusCode::FORBIDDEN
    );
    let (st, e, _) = app
        .post("sys", "/api/v1/devices", json!({"name": "x"}))
        .await?;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert!(
        e["error"]["message_zh"].as_str().unwrap().contains("证书"),
        "{e}"
    );
    assert_eq!(app.device_count().await?, 0);

    // A device registered elsewhere (the CLI) can still be revoked here, and not rotated.
    let (rec, _) = offsite_broker::provision(&app.db.store, &app.pki, "视频网关", None).await?;
    assert_eq!(
        app.post(
            "sys",
            &format!("/api/v1/devices/{}/rotate", rec.id),
            json!({})
        )
        .await?
        .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (st, view, _) = app
        .post(
            "sys",
            &format!("/api/v1/devices/{}/revoke", rec.id),
            json!({}),
        )
        .await?;
    assert_eq!(
        (st, view["revoked"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    Ok(())
}

#[tokio::test]
async fn latest_values_follow_the_scope() -> Result<()> {
    let app = app(true).await?;
    // demo-site-02 is 生态环境局's (the seed puts even sites there), so the housing handler cannot see it.
    let (_, creds, _) = app
        .post(
            "sys",
            "/api/v1/devices",
            json!({"name": "扬尘仪", "object_id": "demo-site-02"}),
        )
        .await?;
    let id = creds["device_id"].as_str().unwrap().to_owned();
    let d = app.db.store.device(&DeviceId::parse(&id)?).await?.unwrap();
    let pm10 = app
        .db
        .store
        .metric_by_key("pm10")
        .await?
        .expect("pm10 is in the catalog");
    sqlx::query("INSERT INTO sample_latest (device_key, metric_id, ts, value, quality) VALUES ($1, $2, '2026-03-01T08:00:00Z', 182.5, 1)")
        .bind(d.key)
        .bind(pm10.id)
        .execute(app.db.store.pool())
        .await?;

    let (st, text) = app
        .get_text("mon", &format!("/api/v1/devices/{id}/latest"))
        .await?;
    assert_eq!(st, StatusCode::OK, "{text}");
    let v: Value = serde_json::from_str(&text)?;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(
        (
            v["items"][0]["metric"].as_str(),
            v["items"][0]["value"].as_f64(),
            v["items"][0]["quality"].as_i64()
        ),
        (Some("pm10"), Some(182.5), Some(1))
    );
    assert!(
        v["items"][0]["ts"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-01T08:00:00"),
        "{v}"
    );
    assert_eq!(
        app.get_text("h1", &format!("/api/v1/devices/{id}/latest"))
            .await?
            .0,
        StatusCode::NOT_FOUND
    );
    Ok(())
}
