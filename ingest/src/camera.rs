//! Camera messages (`/tenants/<id>/v1/event`): checked in the processor, applied one at a time by
//! one worker so a device's raise and clear are never reordered, then acknowledged.
//!
//! A message is refused (dead-lettered, counted, its `seq` acknowledged as rejected) when it does
//! not parse, is too large, or carries a snapshot whose bytes are not a JPEG or do not hash to its
//! `sha256`. An accepted event stores its snapshot (bytes in the file store, row in `snapshots`),
//! updates the camera's health and opens or resolves its warning through the same
//! `upsert_warning` the analytics tier uses.
//!
//! Levels (ARCHITECTURE.md repeats this table): offline, covered, moved and crowding orange (2);
//! black, frozen and unattended yellow (3). While a camera is offline its other raised events
//! open nothing (counted in `offsite_ingest_camera_inhibited_total`); clears always apply.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use offsite_store::cameras::{CameraStatus, NewSnapshot};
use offsite_store::files::{sha256_hex, sniff, FileStore};
use offsite_store::{Level, NewWarning, Store, WarningChange};
use offsite_wire::{
    Ack, CameraEventKind, CameraMessage, Channel, DeviceId, RejectReason, Rejection, Snapshot,
    Topic,
};
use serde_json::json;
use tokio::sync::broadcast;
use tracing::{error, info, warn};

use crate::metrics;
use crate::source::AckSink;

/// Where camera work goes besides the database: the snapshot bytes, and (all-in-one) the
/// in-process broadcast of warning changes the portal's live stream reads.
#[derive(Clone, Default)]
pub struct CameraSink {
    /// Without a file store, snapshots are not kept (events still raise warnings, without evidence).
    pub files: Option<Arc<dyn FileStore>>,
    pub live: Option<broadcast::Sender<WarningChange>>,
}

/// A checked camera message of a known device, with its snapshot's JPEG decoded.
pub struct CameraWork {
    pub device_key: i32,
    pub device_id: String,
    pub message: CameraMessage,
    pub jpeg: Option<Vec<u8>>,
}

/// Who raises camera warnings (the `source` of the warning).
pub const SOURCE: &str = "camera";
const SOURCE_VERSION: &str = "1";

/// The level of a camera warning.
pub fn level(kind: CameraEventKind) -> Level {
    match kind {
        CameraEventKind::Offline
        | CameraEventKind::Covered
        | CameraEventKind::Moved
        | CameraEventKind::Crowding => Level::ORANGE,
        CameraEventKind::Black | CameraEventKind::Frozen | CameraEventKind::Unattended => {
            Level::YELLOW
        }
    }
}

/// zh-CN first, then English.
fn label(kind: CameraEventKind) -> &'static str {
    match kind {
        CameraEventKind::Offline => "摄像头离线 / camera offline",
        CameraEventKind::Black => "画面黑屏 / black picture",
        CameraEventKind::Frozen => "画面冻结 / frozen picture",
        CameraEventKind::Covered => "镜头遮挡或失焦 / covered or out of focus",
        CameraEventKind::Moved => "摄像头移位 / camera moved",
        CameraEventKind::Unattended => "窗口脱岗 / post unattended",
        CameraEventKind::Crowding => "人员聚集 / crowding",
    }
}

/// One open warning per device, camera, kind and zone.
pub fn dedup_key(device: &str, camera: &str, kind: CameraEventKind, zone: Option<&str>) -> String {
    format!(
        "camera|{device}|{camera}|{}|{}",
        kind.as_str(),
        zone.unwrap_or("")
    )
}

/// Parses and checks a camera message. The snapshot's JPEG is returned decoded.
pub fn check(payload: &[u8]) -> Result<(CameraMessage, Option<Vec<u8>>), Rejection> {
    if payload.len() > offsite_wire::MAX_CAMERA_MESSAGE {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!("camera message of {} bytes", payload.len()),
        ));
    }
    let message =
        CameraMessage::decode(payload).map_err(|e| Rejection::new(RejectReason::Malformed, e))?;
    let snapshot = match &message {
        CameraMessage::Event { snapshot, .. } => snapshot.as_ref(),
        CameraMessage::Snapshot { snapshot, .. } => Some(snapshot),
        CameraMessage::Status { .. } => None,
    };
    let jpeg = snapshot.map(check_snapshot).transpose()?;
    Ok((message, jpeg))
}

fn check_snapshot(s: &Snapshot) -> Result<Vec<u8>, Rejection> {
    let bad = |why: &str| Rejection::new(RejectReason::Malformed, format!("snapshot: {why}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&s.jpeg_base64)
        .map_err(|_| bad("not base64"))?;
    if !matches!(sniff(&bytes), Some(("image/jpeg", _))) {
        return Err(bad("not a JPEG"));
    }
    if sha256_hex(&bytes) != s.sha256 {
        return Err(bad("sha256 does not match the JPEG"));
    }
    if s.width == 0 || s.height == 0 || s.width > 16384 || s.height > 16384 {
        return Err(bad("bad width or height"));
    }
    Ok(bytes)
}

/// Applies camera work in arrival order, retrying database failures, and acknowledges each seq
/// once applied.
pub async fn run(store: Store, sink: CameraSink, rx: flume::Receiver<CameraWork>, acks: AckSink) {
    while let Ok(work) = rx.recv_async().await {
        let seq = seq_of(&work.message);
        let mut backoff = Duration::from_millis(100);
        loop {
            match apply(&store, &sink, &work).await {
                Ok(()) => break,
                Err(e) => {
                    metrics::WRITE_ERRORS.inc();
                    error!(device = %work.device_id, seq, error = %format!("{e:#}"), "camera message failed; retrying");
                    let _ = store.forget_camera_message(work.device_key, seq).await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        metrics::CAMERA_MESSAGES.inc();
        if let Ok(device) = DeviceId::parse(&work.device_id) {
            let ack = Ack {
                seqs: vec![seq],
                rejected: vec![],
            };
            acks.publish(Topic::new(device, Channel::Ack).render(), ack.encode())
                .await;
        }
    }
}

fn seq_of(m: &CameraMessage) -> u64 {
    match m {
        CameraMessage::Event { seq, .. }
        | CameraMessage::Status { seq, .. }
        | CameraMessage::Snapshot { seq, .. } => *seq,
    }
}

async fn apply(store: &Store, sink: &CameraSink, w: &CameraWork) -> anyhow::Result<()> {
    if !store
        .camera_message_first_seen(w.device_key, seq_of(&w.message))
        .await?
    {
        metrics::CAMERA_DUPLICATES.inc();
        return Ok(());
    }
    match &w.message {
        CameraMessage::Status {
            camera,
            at,
            name,
            online,
            fps,
            last_frame_at,
            detection,
            zones,
            health,
            ..
        } => {
            store
                .upsert_camera_status(&CameraStatus {
                    device_key: w.device_key,
                    camera_id: camera.to_string(),
                    name: name.clone(),
                    online: *online,
                    fps: *fps,
                    last_frame_at: *last_frame_at,
                    detection: serde_json::to_value(detection)?,
                    zones: json_of(zones)?,
                    health: health.iter().map(|k| k.as_str().to_owned()).collect(),
                    at: *at,
                })
                .await?;
        }
        CameraMessage::Snapshot {
            camera, snapshot, ..
        } => {
            store_snapshot(store, sink, w, camera.as_str(), snapshot).await?;
        }
        CameraMessage::Event {
            camera,
            kind,
            raised,
            at,
            zone,
            detail,
            snapshot,
            ..
        } => {
            let camera = camera.as_str();
            let zone = zone.as_ref().map(|z| z.as_str());
            let snapshot_id = match (snapshot, &w.jpeg) {
                (Some(s), Some(_)) => store_snapshot(store, sink, w, camera, s).await?,
                _ => None,
            };
            let key = dedup_key(&w.device_id, camera, *kind, zone);
            // Checked before this event changes the camera's health: an offline event itself
            // is never inhibited.
            let inhibited = *raised
                && *kind != CameraEventKind::Offline
                && store.camera_offline(w.device_key, camera).await?;
            if kind.is_health() {
                store
                    .apply_camera_health(w.device_key, camera, kind.as_str(), *raised)
                    .await?;
            }
            let warning_id = if !*raised {
                let resolved = store.resolve_warning(&key, *at, "cleared").await?;
                if let (Some(r), Some(live)) = (&resolved, &sink.live) {
                    let _ = live.send(WarningChange {
                        id: r.id,
                        kind: "resolved".into(),
                    });
                }
                resolved.map(|r| r.id)
            } else if inhibited {
                metrics::CAMERA_INHIBITED.inc();
                info!(device = %w.device_id, camera, kind = kind.as_str(), "camera offline: event inhibited");
                None
            } else {
                let text = if detail.trim().is_empty() {
                    label(*kind).to_owned()
                } else {
                    format!("{}: {detail}", label(*kind))
                };
                let u = store
                    .upsert_warning(&NewWarning {
                        dedup_key: key,
                        source: SOURCE.into(),
                        source_version: SOURCE_VERSION.into(),
                        event: kind.as_str().into(),
                        level: level(*kind),
                        device_key: w.device_key,
                        metric_id: None,
                        object_id: None,
                        detail: text,
                        score: 1.0,
                        at: *at,
                        evidence: json!({
                            "detector": SOURCE,
                            "version": SOURCE_VERSION,
                            "camera": camera,
                            "zone": zone,
                            "kind": kind.as_str(),
                            "detail": detail,
                            "at": at,
                            "snapshot_id": snapshot_id,
                            "people": snapshot.as_ref().map(|s| s.boxes.len()),
                        }),
                        group_window: chrono::Duration::seconds(30),
                    })
                    .await?;
                if let Some(live) = &sink.live {
                    let _ = live.send(WarningChange {
                        id: u.record().id,
                        kind: if u.is_opened() { "opened" } else { "repeated" }.into(),
                    });
                }
                Some(u.record().id)
            };
            if let (Some(s), Some(wid)) = (snapshot_id, warning_id) {
                store.link_snapshot(s, wid).await?;
            }
        }
    }
    Ok(())
}

/// JSON through its text form: `to_value` would widen the f32 coordinates (0.1 -> 0.10000000149011612).
fn json_of<T: serde::Serialize>(v: &T) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_slice(&serde_json::to_vec(v)?)?)
}

/// Stores a checked snapshot's bytes and row; `None` without a file store.
async fn store_snapshot(
    store: &Store,
    sink: &CameraSink,
    w: &CameraWork,
    camera: &str,
    s: &Snapshot,
) -> anyhow::Result<Option<i64>> {
    let (Some(files), Some(jpeg)) = (&sink.files, &w.jpeg) else {
        warn!(device = %w.device_id, camera, "no file store: snapshot not kept");
        return Ok(None);
    };
    let sha = files.put(jpeg).await?;
    let id = store
        .insert_snapshot(&NewSnapshot {
            device_key: w.device_key,
            camera_id: camera.to_owned(),
            at: s.at.min(Utc::now()),
            sha256: sha,
            size: jpeg.len() as i64,
            width: i32::try_from(s.width)?,
            height: i32::try_from(s.height)?,
            boxes: json_of(&s.boxes)?,
            zones: json_of(&s.zones)?,
        })
        .await?;
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use offsite_wire::CameraId;

    fn snapshot(jpeg: &[u8], sha: String) -> Snapshot {
        Snapshot {
            at: Utc::now(),
            width: 4,
            height: 4,
            sha256: sha,
            jpeg_base64: base64::engine::general_purpose::STANDARD.encode(jpeg),
            boxes: vec![],
            zones: vec![],
        }
    }

    fn message(s: Snapshot) -> Vec<u8> {
        CameraMessage::Snapshot {
            seq: 1,
            camera: CameraId::parse("c1").unwrap(),
            snapshot: s,
        }
        .encode()
    }

    #[test]
    fn snapshots_must_be_jpegs_with_their_hash() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
        assert_eq!(
            check(&message(snapshot(&jpeg, sha256_hex(&jpeg))))
                .unwrap()
                .1
                .unwrap(),
            jpeg
        );
        let e = check(&message(snapshot(&jpeg, sha256_hex(b"other")))).unwrap_err();
        assert!(e.detail.contains("sha256"), "{}", e.detail);
        let png = b"\x89PNG\r\n\x1a\nxx";
        assert!(check(&message(snapshot(png, sha256_hex(png))))
            .unwrap_err()
            .detail
            .contains("JPEG"));
        assert_eq!(
            check(b"{\"type\":\"event\"}").unwrap_err().reason,
            RejectReason::Malformed
        );
        assert_eq!(
            check(&vec![b' '; offsite_wire::MAX_CAMERA_MESSAGE + 1])
                .unwrap_err()
                .reason,
            RejectReason::TooLarge
        );
    }

    #[test]
    fn levels_and_keys() {
        assert_eq!(level(CameraEventKind::Offline), Level::ORANGE);
        assert_eq!(level(CameraEventKind::Unattended), Level::YELLOW);
        assert_eq!(level(CameraEventKind::Black), Level::YELLOW);
        assert_eq!(
            dedup_key("d1", "c1", CameraEventKind::Unattended, Some("w1")),
            "camera|d1|c1|unattended|w1"
        );
        assert_eq!(
            dedup_key("d1", "c1", CameraEventKind::Black, None),
            "camera|d1|c1|black|"
        );
    }
}
