//! Camera messages through the real binary: a device publishes over MQTT/TLS on its `event`
//! channel; ingest stores the camera's status, the snapshot (row and file) and turns events into
//! warnings; a clear resolves; a snapshot whose hash does not match is dead-lettered; an offline
//! camera's other events raise nothing; a redelivered message counts once.

use std::time::Duration;

use anyhow::Result;
use base64::Engine;
use chrono::Utc;
use offsite_tests::*;
use offsite_wire::{
    BoxN, CameraEventKind, CameraId, CameraMessage, Detection, Snapshot, Zone, ZoneId, ZoneKind,
};
use sha2::{Digest, Sha256};

fn zone() -> Zone {
    Zone {
        id: ZoneId::parse("w1").unwrap(),
        name: "1号窗口".into(),
        kind: ZoneKind::Window,
        polygon: vec![[0.1, 0.1], [0.5, 0.1], [0.5, 0.6]],
    }
}

fn snapshot(sha: Option<String>) -> Snapshot {
    Snapshot {
        at: Utc::now(),
        width: 160,
        height: 90,
        sha256: sha.unwrap_or_else(|| hex(&Sha256::digest(CAMERA_JPEG))),
        jpeg_base64: base64::engine::general_purpose::STANDARD.encode(CAMERA_JPEG),
        boxes: vec![BoxN {
            x1: 0.2,
            y1: 0.2,
            x2: 0.3,
            y2: 0.5,
            score: 0.9,
        }],
        zones: vec![zone()],
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn event(
    seq: u64,
    kind: CameraEventKind,
    raised: bool,
    zone: Option<&str>,
    snap: Option<Snapshot>,
) -> CameraMessage {
    CameraMessage::Event {
        seq,
        camera: CameraId::parse("c1").unwrap(),
        kind,
        raised,
        at: Utc::now(),
        zone: zone.map(|z| ZoneId::parse(z).unwrap()),
        detail: "测试 test".into(),
        snapshot: snap,
    }
}

/// (id, level, resolution, count, evidence) of the newest warning with `key`.
async fn warning(
    site: &Site,
    key: &str,
) -> Option<(i64, i16, Option<String>, i32, serde_json::Value)> {
    sqlx::query_as("SELECT id, level, resolution, count, evidence FROM warnings WHERE dedup_key = $1 ORDER BY id DESC LIMIT 1")
        .bind(key)
        .fetch_optional(site.db.store.pool())
        .await
        .ok()
        .flatten()
}

async fn camera_health(site: &Site) -> Vec<String> {
    sqlx::query_scalar("SELECT health FROM cameras WHERE camera_id = 'c1'")
        .fetch_optional(site.db.store.pool())
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

#[tokio::test]
async fn camera_events_become_warnings_with_snapshots() -> Result<()> {
    let site = Site::new().await?;
    let _up = site.spawn(&["up"])?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let creds = site.provision("大厅摄像头").await?;
    let dev = creds.device_id.to_string();
    let mut d = CameraDevice::connect(site.tls_port, &creds).await?;
    let secs = Duration::from_secs(20);

    // Status: the camera appears with its zones and detection state.
    d.send(&CameraMessage::Status {
        seq: 1,
        camera: CameraId::parse("c1").unwrap(),
        at: Utc::now(),
        name: "大厅东侧".into(),
        online: true,
        fps: 5.0,
        last_frame_at: Some(Utc::now()),
        detection: Detection::Off {
            reason: "no model".into(),
        },
        zones: vec![zone()],
        health: vec![],
    })
    .await?;
    let pool = site.db.store.pool().clone();
    wait_for("camera row", secs, || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT name FROM cameras WHERE camera_id = 'c1'")
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten()
                .is_some_and(|n| n == "大厅东侧")
        }
    })
    .await?;

    // An unattended event with its snapshot: a yellow warning, the snapshot row linked to it, the file stored.
    let key = format!("camera|{dev}|c1|unattended|w1");
    let raise = event(
        2,
        CameraEventKind::Unattended,
        true,
        Some("w1"),
        Some(snapshot(None)),
    );
    d.send(&raise).await?;
    wait_for("unattended warning", secs, || async {
        warning(&site, &key).await.is_some()
    })
    .await?;
    let (wid, level, resolution, _, evidence) = warning(&site, &key).await.unwrap();
    assert_eq!(level, 3, "unattended is yellow");
    assert_eq!(resolution, None);
    let sid = evidence["snapshot_id"]
        .as_i64()
        .expect("evidence names the snapshot");
    let (sha, linked): (String, Option<i64>) =
        sqlx::query_as("SELECT sha256, warning_id FROM snapshots WHERE id = $1")
            .bind(sid)
            .fetch_one(&pool)
            .await?;
    assert_eq!(linked, Some(wid));
    assert_eq!(sha, hex(&Sha256::digest(CAMERA_JPEG)));
    let stored = std::fs::read(
        site.dir
            .path()
            .join("files")
            .join(&sha[0..2])
            .join(&sha[2..4])
            .join(&sha),
    )?;
    assert_eq!(
        stored, CAMERA_JPEG,
        "the JPEG is in the file store under its hash"
    );

    // The same message again (a redelivery) changes nothing.
    d.send(&raise).await?;
    // A clear resolves it (and, being later on the same worker, proves the redelivery was handled).
    d.send(&event(
        3,
        CameraEventKind::Unattended,
        false,
        Some("w1"),
        None,
    ))
    .await?;
    wait_for("resolved", secs, || async {
        warning(&site, &key).await.is_some_and(|w| w.2.is_some())
    })
    .await?;
    let (_, _, resolution, count, _) = warning(&site, &key).await.unwrap();
    assert_eq!(resolution.as_deref(), Some("cleared"));
    assert_eq!(count, 1, "the redelivered event was not counted");

    // A snapshot whose hash does not match its bytes: dead-lettered and counted, nothing raised.
    let before = metric_value(
        &site,
        "offsite_ingest_rejected_total",
        r#"reason="malformed""#,
    )
    .await
    .unwrap_or(0.0);
    let bad = event(
        4,
        CameraEventKind::Crowding,
        true,
        Some("w1"),
        Some(snapshot(Some("0".repeat(64)))),
    );
    d.send(&bad).await?;
    wait_for("dead letter", secs, || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT detail FROM dead_letters WHERE topic LIKE '%/event'",
            )
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
            .is_some_and(|d| d.contains("sha256"))
        }
    })
    .await?;
    assert!(
        metric_value(
            &site,
            "offsite_ingest_rejected_total",
            r#"reason="malformed""#
        )
        .await?
            > before
    );
    assert!(warning(&site, &format!("camera|{dev}|c1|crowding|w1"))
        .await
        .is_none());

    // Offline (orange) inhibits the camera's other events; back online, they raise again.
    d.send(&event(
        5,
        CameraEventKind::Offline,
        true,
        None,
        Some(snapshot(None)),
    ))
    .await?;
    d.send(&event(6, CameraEventKind::Black, true, None, None))
        .await?;
    wait_for("black applied", secs, || async {
        camera_health(&site).await.contains(&"black".to_owned())
    })
    .await?;
    let offline = warning(&site, &format!("camera|{dev}|c1|offline|"))
        .await
        .expect("offline warning");
    assert_eq!(offline.1, 2, "offline is orange");
    let black = format!("camera|{dev}|c1|black|");
    assert!(
        warning(&site, &black).await.is_none(),
        "inhibited while offline"
    );
    d.send(&event(7, CameraEventKind::Offline, false, None, None))
        .await?;
    d.send(&event(8, CameraEventKind::Black, true, None, None))
        .await?;
    wait_for("black warning", secs, || async {
        warning(&site, &black).await.is_some()
    })
    .await?;
    assert_eq!(
        warning(&site, &black).await.unwrap().1,
        3,
        "black is yellow"
    );
    assert_eq!(
        warning(&site, &format!("camera|{dev}|c1|offline|"))
            .await
            .unwrap()
            .2
            .as_deref(),
        Some("cleared")
    );

    // The zone editor: the portal records a set_zones command and the device receives it over MQTT.
    let admin = site.admin_client().await?;
    let mut moved = zone();
    moved.polygon = vec![[0.2, 0.2], [0.6, 0.2], [0.6, 0.7]];
    let r = admin
        .put(site.http(&format!("/api/v1/cameras/{dev}/c1/zones")))
        .json(&serde_json::json!({ "zones": [moved] }))
        .send()
        .await?;
    assert_eq!(r.status(), 202);
    let answer: serde_json::Value = r.json().await?;
    assert_eq!(answer["sent"], true);
    let got = tokio::time::timeout(secs, d.commands.recv())
        .await?
        .expect("command arrives");
    let cmd = offsite_wire::Command::decode(&got).map_err(anyhow::Error::msg)?;
    assert_eq!(cmd.id, answer["command_id"].as_str().unwrap());
    assert_eq!(
        cmd.action,
        offsite_wire::CommandAction::SetZones {
            camera: CameraId::parse("c1").unwrap(),
            zones: vec![moved]
        }
    );
    Ok(())
}
