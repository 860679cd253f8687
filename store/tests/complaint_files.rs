//! Complaint attachments in the file store: rows keep only the digest (older rows their bytes),
//! and snapshot retention never deletes bytes a complaint attachment shares.

use std::time::Duration as StdDuration;

use anyhow::Result;
use chrono::{Duration, Utc};
use offsite_store::cameras::NewSnapshot;
use offsite_store::complaints::Filed;
use offsite_store::files::{sha256_hex, FileStore, LocalDirStore};
use offsite_store::testing::TestDb;
use offsite_store::{NewAttachment, NewComplaint, NewDevice, RateLimit};
use offsite_wire::DeviceId;
use serde_json::json;

fn complaint(bytes: &[u8]) -> NewComplaint {
    NewComplaint {
        service_code: "noise".into(),
        description: "夜间工地施工噪声扰民，持续两小时以上。".into(),
        submitter_ip: "192.0.2.7".into(),
        attachments: vec![NewAttachment {
            filename: "现场.jpg".into(),
            content_type: "image/jpeg".into(),
            data: bytes.to_vec(),
        }],
        ..Default::default()
    }
}

const LIMIT: RateLimit = RateLimit {
    max: 100,
    window: StdDuration::from_secs(3600),
};

#[tokio::test]
async fn attachments_live_in_the_file_store_and_survive_snapshot_retention() -> Result<()> {
    let db = TestDb::new().await?;
    let s = &db.store;
    let dir = tempfile::tempdir()?;
    let files = LocalDirStore::new(dir.path());
    // The same bytes as a camera snapshot that retention is about to expire.
    let shared = [&[0xFF, 0xD8, 0xFF, 0xE0][..], b"shared picture"].concat();
    let sha = sha256_hex(&shared);

    let Filed::Ok { id, .. } = s.file_complaint_with(&complaint(&shared), LIMIT, Some(&files)).await? else {
        anyhow::bail!("throttled")
    };
    let attachments = s.complaint_attachments(id).await?;
    let (meta, data) = s
        .complaint_attachment(id, attachments[0].id)
        .await?
        .expect("the attachment");
    assert_eq!(
        (meta.sha256.as_str(), data),
        (sha.as_str(), None),
        "only the digest in the row"
    );
    assert_eq!(files.get(&sha).await?, Some(shared.clone()));

    // Filed without a file store (as before migration 0018): the bytes stay in the row.
    let Filed::Ok { id: old, .. } = s.file_complaint(&complaint(b"%PDF-1.4 old"), LIMIT).await? else {
        anyhow::bail!("throttled")
    };
    let a = s.complaint_attachments(old).await?;
    assert_eq!(
        s.complaint_attachment(old, a[0].id).await?.and_then(|(_, d)| d),
        Some(b"%PDF-1.4 old".to_vec())
    );

    let key = s
        .insert_device(&NewDevice {
            id: DeviceId::parse("cam9")?,
            name: "cam9".into(),
            object_id: None,
            token_sha256: [7; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?
        .key;
    files.put(&shared).await?;
    s.insert_snapshot(&NewSnapshot {
        device_key: key,
        camera_id: "hall".into(),
        at: Utc::now() - Duration::days(40),
        sha256: sha.clone(),
        size: shared.len() as i64,
        width: 640,
        height: 360,
        boxes: json!([]),
        zones: json!([]),
    })
    .await?;
    let r = s.expire_snapshots(Utc::now() - Duration::days(30), &files).await?;
    assert_eq!(r.snapshots, 1, "{r:?}");
    assert_eq!(
        files.get(&sha).await?,
        Some(shared),
        "the complaint's attachment keeps its bytes"
    );
    Ok(())
}
