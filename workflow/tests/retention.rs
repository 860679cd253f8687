//! Snapshot retention run by the workflow tier against a real PostgreSQL and a real file store:
//! an old snapshot goes (row and bytes), a recent one stays, and the spawned job does the same
//! on its own first tick.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use offsite_store::cameras::NewSnapshot;
use offsite_store::files::{FileStore, LocalDirStore};
use offsite_store::testing::TestDb;
use offsite_store::{NewDevice, Store};
use offsite_wire::DeviceId;

async fn snapshot(
    store: &Store,
    files: &LocalDirStore,
    key: i32,
    tag: &[u8],
    age_days: i64,
) -> Result<(i64, String)> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend_from_slice(tag);
    let sha = files.put(&bytes).await?;
    let id = store
        .insert_snapshot(&NewSnapshot {
            device_key: key,
            camera_id: "hall".into(),
            at: Utc::now() - chrono::Duration::days(age_days),
            sha256: sha.clone(),
            size: bytes.len() as i64,
            width: 2,
            height: 2,
            boxes: serde_json::json!([]),
            zones: serde_json::json!([]),
        })
        .await?;
    Ok((id, sha))
}

#[tokio::test]
async fn old_snapshots_are_deleted_recent_ones_kept() -> Result<()> {
    let db = TestDb::new().await?;
    let dir = tempfile::tempdir()?;
    let files = Arc::new(LocalDirStore::new(dir.path()));
    let key = db
        .store
        .insert_device(&NewDevice {
            id: DeviceId::parse("camdev")?,
            name: "camdev".into(),
            object_id: None,
            token_sha256: [1; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?
        .key;
    let (old, old_sha) = snapshot(&db.store, &files, key, b"old", 10).await?;
    let (recent, recent_sha) = snapshot(&db.store, &files, key, b"recent", 2).await?;

    let r = offsite_workflow::retention::run_once(&db.store, files.as_ref(), Utc::now(), 7).await?;
    assert_eq!((r.snapshots, r.files), (1, 1));
    assert!(db.store.snapshot(old).await?.is_none());
    assert!(files.get(&old_sha).await?.is_none());
    assert!(db.store.snapshot(recent).await?.is_some());

    // The service: its first tick runs at once; a one-day limit takes the recent one too.
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let job = offsite_workflow::retention::spawn(
        db.store.clone(),
        files.clone(),
        1,
        Duration::from_secs(3600),
        stop_rx,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while db.store.snapshot(recent).await?.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention job did not run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(files.get(&recent_sha).await?.is_none());
    stop.send(true)?;
    job.await?;
    Ok(())
}
