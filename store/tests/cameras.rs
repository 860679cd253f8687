//! Cameras and snapshots against a real PostgreSQL: status upserts, health events, message dedup,
//! and retention that keeps what a task holds and deletes the rest, rows and bytes.

use anyhow::Result;
use chrono::{Duration, Utc};
use offsite_store::cameras::{CameraStatus, NewSnapshot};
use offsite_store::files::{sha256_hex, FileStore, LocalDirStore};
use offsite_store::tasks::Dispatch;
use offsite_store::testing::TestDb;
use offsite_store::{Level, NewDevice, NewWarning, Store};
use offsite_wire::DeviceId;
use serde_json::json;

async fn device(store: &Store, id: &str, object: Option<&str>) -> Result<i32> {
    let d = store
        .insert_device(&NewDevice {
            id: DeviceId::parse(id)?,
            name: id.into(),
            object_id: object.map(Into::into),
            token_sha256: [7; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?;
    Ok(d.key)
}

/// A distinct small "JPEG" per tag (only the magic bytes matter to the store).
fn jpeg(tag: &str) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
    b.extend_from_slice(tag.as_bytes());
    b
}

async fn snapshot(
    store: &Store,
    files: &LocalDirStore,
    key: i32,
    camera: &str,
    tag: &str,
    age: Duration,
) -> Result<(i64, String)> {
    let bytes = jpeg(tag);
    let sha = files.put(&bytes).await?;
    let id = store
        .insert_snapshot(&NewSnapshot {
            device_key: key,
            camera_id: camera.into(),
            at: Utc::now() - age,
            sha256: sha.clone(),
            size: bytes.len() as i64,
            width: 640,
            height: 360,
            boxes: json!([]),
            zones: json!([]),
        })
        .await?;
    Ok((id, sha))
}

#[tokio::test]
async fn status_health_and_dedup() -> Result<()> {
    let db = TestDb::new().await?;
    let key = device(&db.store, "cam1", None).await?;
    let now = Utc::now();
    db.store
        .upsert_camera_status(&CameraStatus {
            device_key: key,
            camera_id: "hall".into(),
            name: "大厅".into(),
            online: true,
            fps: 5.0,
            last_frame_at: Some(now),
            detection: json!({"state": "off", "reason": "no model"}),
            zones: json!([]),
            health: vec![],
            at: now,
        })
        .await?;
    assert!(!db.store.camera_offline(key, "hall").await?);
    db.store
        .apply_camera_health(key, "hall", "offline", true)
        .await?;
    db.store
        .apply_camera_health(key, "hall", "black", true)
        .await?;
    let c = db.store.camera(key, "hall").await?.unwrap();
    assert!(!c.online);
    assert_eq!(c.health, vec!["offline".to_owned(), "black".to_owned()]);
    assert!(db.store.camera_offline(key, "hall").await?);
    assert_eq!(db.store.camera_counts(None).await?.online, 0);
    db.store
        .apply_camera_health(key, "hall", "offline", false)
        .await?;
    assert!(!db.store.camera_offline(key, "hall").await?);
    assert_eq!(
        db.store.camera_counts(None).await?,
        offsite_store::cameras::CameraCounts {
            total: 1,
            online: 1
        }
    );
    assert_eq!(db.store.camera_counts(Some(&[key + 1000])).await?.total, 0);

    // An older status never overwrites a newer one.
    db.store
        .upsert_camera_status(&CameraStatus {
            device_key: key,
            camera_id: "hall".into(),
            name: "old".into(),
            online: false,
            fps: 0.0,
            last_frame_at: None,
            detection: json!({"state": "off", "reason": "x"}),
            zones: json!([]),
            health: vec![],
            at: now - Duration::minutes(5),
        })
        .await?;
    assert_eq!(db.store.camera(key, "hall").await?.unwrap().name, "大厅");

    assert!(db.store.camera_message_first_seen(key, 42).await?);
    assert!(
        !db.store.camera_message_first_seen(key, 42).await?,
        "a redelivery is seen once"
    );
    db.store.forget_camera_message(key, 42).await?;
    assert!(db.store.camera_message_first_seen(key, 42).await?);
    // A camera first seen through a snapshot (its status not yet in) is not taken for offline:
    // its first event must not be inhibited.
    let dir = tempfile::tempdir()?;
    let files = LocalDirStore::new(dir.path());
    let other = device(&db.store, "cam2", None).await?;
    snapshot(&db.store, &files, other, "porch", "first", Duration::zero()).await?;
    assert!(!db.store.camera_offline(other, "porch").await?);
    Ok(())
}

#[tokio::test]
async fn retention_keeps_what_a_task_holds() -> Result<()> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    let dir = tempfile::tempdir()?;
    let files = LocalDirStore::new(dir.path());
    let key = device(&db.store, "cam2", Some("demo-site-01")).await?;

    let (old_free, old_free_sha) = snapshot(
        &db.store,
        &files,
        key,
        "hall",
        "old-free",
        Duration::days(40),
    )
    .await?;
    let (old_held, old_held_sha) = snapshot(
        &db.store,
        &files,
        key,
        "hall",
        "old-held",
        Duration::days(40),
    )
    .await?;
    let (old_warned, _) = snapshot(
        &db.store,
        &files,
        key,
        "hall",
        "old-warned",
        Duration::days(40),
    )
    .await?;
    let (fresh, fresh_sha) =
        snapshot(&db.store, &files, key, "hall", "fresh", Duration::days(1)).await?;
    // The same bytes as an old snapshot but recent: the file must survive the old row.
    let (_, shared_sha) = snapshot(
        &db.store,
        &files,
        key,
        "hall",
        "old-free",
        Duration::hours(1),
    )
    .await?;
    assert_eq!(shared_sha, old_free_sha);
    let (old_only, old_only_sha) = snapshot(
        &db.store,
        &files,
        key,
        "door",
        "old-only",
        Duration::days(40),
    )
    .await?;

    let warning = |event: &str| NewWarning {
        dedup_key: format!("camera|cam2|hall|{event}|"),
        source: "camera".into(),
        source_version: "1".into(),
        event: event.into(),
        level: Level::YELLOW,
        device_key: key,
        metric_id: None,
        object_id: None,
        detail: "x".into(),
        score: 1.0,
        at: Utc::now(),
        evidence: json!({}),
        group_window: Duration::zero(),
    };
    let held = db
        .store
        .upsert_warning(&warning("unattended"))
        .await?
        .into_record();
    db.store.link_snapshot(old_held, held.id).await?;
    let dispatch = Dispatch {
        department_id: Some(
            db.store
                .department_by_code("housing-construction")
                .await?
                .unwrap()
                .id,
        ),
        co_department_ids: vec![],
        title: None,
        description: None,
        level: None,
        item: None,
        by: "mon".into(),
        at: Utc::now(),
    };
    db.store
        .dispatch_warning(held.id, &dispatch)
        .await?
        .unwrap()
        .map_err(|r| anyhow::anyhow!("{r:?}"))?;
    // A warning without a task does not keep its snapshot.
    let loose = db
        .store
        .upsert_warning(&warning("black"))
        .await?
        .into_record();
    db.store.link_snapshot(old_warned, loose.id).await?;

    let r = db
        .store
        .expire_snapshots(Utc::now() - Duration::days(30), &files)
        .await?;
    assert_eq!(r.snapshots, 3, "old-free, old-warned, old-only");
    assert_eq!(
        r.files, 2,
        "old-warned and old-only bytes; old-free's bytes are still used"
    );
    assert!(db.store.snapshot(old_free).await?.is_none());
    assert!(db.store.snapshot(old_warned).await?.is_none());
    assert!(db.store.snapshot(old_only).await?.is_none());
    assert!(db.store.snapshot(old_held).await?.is_some());
    assert!(db.store.snapshot(fresh).await?.is_some());
    assert!(files.get(&old_held_sha).await?.is_some());
    assert!(files.get(&fresh_sha).await?.is_some());
    assert!(files.get(&shared_sha).await?.is_some());
    assert!(files.get(&old_only_sha).await?.is_none());
    assert!(files.get(&sha256_hex(&jpeg("old-warned"))).await?.is_none());
    // A second pass finds nothing more.
    assert_eq!(
        db.store
            .expire_snapshots(Utc::now() - Duration::days(30), &files)
            .await?
            .snapshots,
        0
    );
    Ok(())
}
