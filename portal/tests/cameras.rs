//! Cameras over HTTP: the list is scoped by the device's object like devices; a snapshot's JPEG
//! goes only to those who may see its device (404 otherwise), cached by its hash; the zone editor's
//! PUT is for the monitoring center, validates zones, records a `set_zones` command and audits it;
//! the wall counts cameras.

mod common;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use offsite_portal::{serve, AppState};
use offsite_store::auth::Role;
use offsite_store::cameras::{CameraStatus, NewSnapshot};
use offsite_store::files::{FileStore, LocalDirStore};
use offsite_store::testing::TestDb;
use offsite_store::{AuditFilter, NewDevice, Store};
use offsite_wire::DeviceId;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const JPEG: &[u8] = include_bytes!("../../tests/fixtures/camera-snapshot.jpg");

struct App {
    base: String,
    db: TestDb,
    _files: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
    /// (device id, snapshot id) of the housing department's camera.
    housing_cam: (String, i64),
    ecology_dev: String,
}

async fn device(store: &Store, id: &str, object: &str) -> Result<i32> {
    Ok(store
        .insert_device(&NewDevice {
            id: DeviceId::parse(id)?,
            name: format!("{id} 摄像头"),
            object_id: Some(object.into()),
            token_sha256: [3; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?
        .key)
}

async fn camera(store: &Store, key: i32, online: bool) -> Result<()> {
    store
        .upsert_camera_status(&CameraStatus {
            device_key: key,
            camera_id: "hall".into(),
            name: "大厅".into(),
            online,
            fps: 5.0,
            last_frame_at: Some(Utc::now()),
            detection: json!({"state": "on", "model": "yolox-nano"}),
            zones: json!([{"id": "w1", "name": "1号窗口", "kind": "window", "polygon": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.5]]}]),
            health: vec![],
            at: Utc::now(),
        })
        .await
}

async fn app() -> Result<App> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    let housing = db
        .store
        .department_by_code("housing-construction")
        .await?
        .unwrap()
        .id;
    let ecology = db.store.department_by_code("ecology").await?.unwrap().id;
    for (name, role, dept) in [
        ("sys", Role::SystemAdmin, None),
        ("mon", Role::Monitor, None),
        ("sec", Role::SecurityAdmin, None),
        ("h1", Role::Handler, Some(housing)),
        ("e1", Role::Handler, Some(ecology)),
    ] {
        common::add_user(&db.store, name, &[role], dept).await?;
    }
    let files_dir = tempfile::tempdir()?;
    let files = Arc::new(LocalDirStore::new(files_dir.path()));
    // demo-site-01 is the housing department's, demo-site-02 ecology's.
    let a = device(&db.store, "camhousing", "demo-site-01").await?;
    let b = device(&db.store, "camecology", "demo-site-02").await?;
    camera(&db.store, a, true).await?;
    camera(&db.store, b, false).await?;
    let sha = files.put(JPEG).await?;
    let snapshot = db
        .store
        .insert_snapshot(&NewSnapshot {
            device_key: a,
            camera_id: "hall".into(),
            at: Utc::now(),
            sha256: sha,
            size: JPEG.len() as i64,
            width: 160,
            height: 90,
            boxes: json!([]),
            zones: json!([]),
        })
        .await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    let audit = offsite_store::AuditLog::start(db.store.clone(), None, Duration::from_secs(60));
    let state = AppState::new(db.store.clone())
        .with_live(offsite_portal::live::channel())
        .with_audit(audit)
        .with_files(files);
    tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    Ok(App {
        base,
        db,
        _files: files_dir,
        _stop: tx,
        housing_cam: ("camhousing".into(), snapshot),
        ecology_dev: "camecology".into(),
    })
}

impl App {
    async fn get(&self, user: &str, path: &str) -> Result<reqwest::Response> {
        Ok(common::client(&self.db.store, user)
            .await?
            .get(format!("{}{path}", self.base))
            .send()
            .await?)
    }

    async fn put(&self, user: &str, path: &str, body: Value) -> Result<(StatusCode, Value)> {
        let r = common::client(&self.db.store, user)
            .await?
            .put(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn cameras(&self, user: &str) -> Result<Vec<Value>> {
        let r = self.get(user, "/api/v1/cameras").await?;
        assert_eq!(r.status(), StatusCode::OK);
        Ok(r.json::<Value>().await?["items"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

#[tokio::test]
async fn cameras_are_listed_within_scope() -> Result<()> {
    let app = app().await?;
    let all = app.cameras("sys").await?;
    assert_eq!(all.len(), 2);
    let mine = app.cameras("h1").await?;
    assert_eq!(mine.len(), 1, "a department sees its objects' cameras only");
    let c = &mine[0];
    assert_eq!(c["device_id"], "camhousing");
    assert_eq!(c["camera_id"], "hall");
    assert_eq!(c["online"], true);
    assert_eq!(c["detection"]["state"], "on");
    assert_eq!(c["zones"][0]["id"], "w1");
    assert_eq!(c["latest_snapshot_id"], app.housing_cam.1);
    assert_eq!(
        app.cameras("e1").await?[0]["latest_snapshot_id"],
        Value::Null
    );
    assert_eq!(
        app.get("sec", "/api/v1/cameras").await?.status(),
        StatusCode::FORBIDDEN
    );

    let wall: Value = app.get("sys", "/api/v1/wall/summary").await?.json().await?;
    assert_eq!(wall["cameras"], json!({"total": 2, "online": 1}));
    let wall: Value = app.get("e1", "/api/v1/wall/summary").await?.json().await?;
    assert_eq!(wall["cameras"], json!({"total": 1, "online": 0}));
    Ok(())
}

#[tokio::test]
async fn snapshots_go_only_to_those_who_may_see_them() -> Result<()> {
    let app = app().await?;
    let path = format!("/api/v1/snapshots/{}", app.housing_cam.1);
    let r = app.get("h1", &path).await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let etag = r.headers()["etag"].to_str()?.to_owned();
    assert!(r.headers()["cache-control"].to_str()?.contains("immutable"));
    assert_eq!(r.bytes().await?.as_ref(), JPEG);
    assert_eq!(
        etag,
        format!("\"{}\"", offsite_store::files::sha256_hex(JPEG))
    );

    let again = common::client(&app.db.store, "sys")
        .await?
        .get(format!("{}{path}", app.base))
        .header("if-none-match", &etag)
        .send()
        .await?;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    assert_eq!(
        app.get("e1", &path).await?.status(),
        StatusCode::NOT_FOUND,
        "another department's evidence"
    );
    assert_eq!(
        app.get("sys", "/api/v1/snapshots/999999").await?.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("sec", &path).await?.status(), StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn zones_are_checked_recorded_as_a_command_and_audited() -> Result<()> {
    let app = app().await?;
    let dev = &app.housing_cam.0;
    let path = format!("/api/v1/cameras/{dev}/hall/zones");
    let zones = json!({"zones": [
        {"id": "w1", "name": "1号窗口", "kind": "window", "polygon": [[0.1, 0.1], [0.45, 0.1], [0.45, 0.6], [0.1, 0.6]]},
        {"id": "queue", "name": "排队区", "kind": "queue", "polygon": [[0.5, 0.5], [0.9, 0.5], [0.9, 0.9]]}
    ]});

    let (s, _) = app.put("h1", &path, zones.clone()).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "handlers do not edit zones");
    let (s, _) = app
        .put(
            "mon",
            &format!("/api/v1/cameras/{dev}/nosuch/zones"),
            zones.clone(),
        )
        .await?;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .put(
            "mon",
            &format!("/api/v1/cameras/{}/nosuch/zones", "nodevice"),
            zones.clone(),
        )
        .await?;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let outside = json!({"zones": [{"id": "w1", "name": "x", "kind": "window", "polygon": [[0.1, 0.1], [1.5, 0.1], [0.4, 0.5]]}]});
    let (s, body) = app.put("mon", &path, outside).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let two_points = json!({"zones": [{"id": "w1", "name": "x", "kind": "window", "polygon": [[0.1, 0.1], [0.2, 0.1]]}]});
    assert_eq!(
        app.put("mon", &path, two_points).await?.0,
        StatusCode::BAD_REQUEST
    );
    let twice = json!({"zones": [
        {"id": "w1", "name": "a", "kind": "window", "polygon": [[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]]},
        {"id": "w1", "name": "b", "kind": "queue", "polygon": [[0.3, 0.1], [0.4, 0.1], [0.4, 0.2]]}
    ]});
    assert_eq!(
        app.put("mon", &path, twice).await?.0,
        StatusCode::BAD_REQUEST
    );
    let bad_id = json!({"zones": [{"id": "W 1", "name": "a", "kind": "window", "polygon": [[0.1, 0.1], [0.2, 0.1], [0.2, 0.2]]}]});
    assert!(app.put("mon", &path, bad_id).await?.0.is_client_error());

    let (s, body) = app.put("mon", &path, zones.clone()).await?;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body["sent"], false,
        "no broker connection in this test: sent on reconnection"
    );
    let id = body["command_id"].as_str().unwrap().to_owned();
    let c = app.db.store.command(&id).await?.expect("command recorded");
    assert_eq!(c.kind, "set_zones");
    assert_eq!(c.device_id, *dev);
    assert_eq!(c.created_by.as_deref(), Some("mon"));
    assert_eq!(c.body["camera"], "hall");
    assert_eq!(c.body["zones"], zones["zones"]);
    let key = app
        .db
        .store
        .device(&DeviceId::parse(dev)?)
        .await?
        .unwrap()
        .key;
    assert_eq!(
        app.db
            .store
            .pending_commands(key, chrono::Duration::days(1))
            .await?
            .len(),
        1,
        "waits for the device"
    );

    let mut audited = None;
    for _ in 0..100 {
        let f = AuditFilter {
            action: Some("camera.set_zones".into()),
            entity_id: Some(format!("{dev}/hall")),
            ..Default::default()
        };
        if let Some(r) = app.db.store.audit_search(&f).await?.0.into_iter().next() {
            audited = Some(r.actor);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(audited.as_deref(), Some("mon"));

    // The system administrator reaches every department's cameras.
    let (s, _) = app
        .put(
            "sys",
            &format!("/api/v1/cameras/{}/hall/zones", app.ecology_dev),
            zones,
        )
        .await?;
    assert_eq!(
        s,
        StatusCode::ACCEPTED,
        "the system administrator sees every camera"
    );
    Ok(())
}
