//! Cameras and their snapshots (issue 8): the latest status per camera, JPEG evidence stored by
//! content hash in the [`FileStore`], camera message dedup by the device's `seq`, and snapshot
//! retention.
//!
//! Retention keeps a snapshot while the warning it supports belongs to a task (a case always has
//! a task, so that covers cases too); everything else older than the configured age goes, rows
//! first, then the bytes no row refers to any more.

use anyhow::Result;
use chrono::{DateTime, Utc};
use sqlx::Acquire;

use crate::files::FileStore;
use crate::Store;

/// A camera's status as its agent reports it.
#[derive(Debug, Clone)]
pub struct CameraStatus {
    pub device_key: i32,
    pub camera_id: String,
    pub name: String,
    pub online: bool,
    pub fps: f32,
    pub last_frame_at: Option<DateTime<Utc>>,
    /// The wire `Detection` as JSON.
    pub detection: serde_json::Value,
    /// The wire `Zone`s as JSON.
    pub zones: serde_json::Value,
    /// Health conditions raised now (`offline`, `black`, ...).
    pub health: Vec<String>,
    pub at: DateTime<Utc>,
}

/// A camera as the portal lists it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct CameraRecord {
    #[serde(skip)]
    pub device_key: i32,
    pub device_id: String,
    pub device_name: String,
    pub object_id: Option<String>,
    pub camera_id: String,
    pub name: String,
    pub online: bool,
    pub fps: f32,
    pub last_frame_at: Option<DateTime<Utc>>,
    pub detection: serde_json::Value,
    pub zones: serde_json::Value,
    pub health: Vec<String>,
    pub updated_at: DateTime<Utc>,
    pub latest_snapshot_id: Option<i64>,
    pub latest_snapshot_at: Option<DateTime<Utc>>,
}

/// A snapshot about to be recorded; its bytes are already in the file store under `sha256`.
#[derive(Debug, Clone)]
pub struct NewSnapshot {
    pub device_key: i32,
    pub camera_id: String,
    pub at: DateTime<Utc>,
    pub sha256: String,
    pub size: i64,
    pub width: i32,
    pub height: i32,
    pub boxes: serde_json::Value,
    pub zones: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct SnapshotRecord {
    pub id: i64,
    #[serde(skip)]
    pub device_key: i32,
    pub device_id: String,
    pub camera_id: String,
    pub at: DateTime<Utc>,
    pub sha256: String,
    pub width: i32,
    pub height: i32,
    pub boxes: serde_json::Value,
    pub zones: serde_json::Value,
    pub warning_id: Option<i64>,
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotRetention {
    pub snapshots: u64,
    pub files: u64,
}

/// Camera counts for the wall.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CameraCounts {
    pub total: i64,
    pub online: i64,
}

const CAMERA_SELECT: &str = "SELECT c.device_key, d.id AS device_id, d.name AS device_name, d.object_id, c.camera_id, \
     c.name, c.online, c.fps, c.last_frame_at, c.detection, c.zones, c.health, c.updated_at, \
     s.id AS latest_snapshot_id, s.at AS latest_snapshot_at \
     FROM cameras c JOIN devices d ON d.key = c.device_key \
     LEFT JOIN LATERAL (SELECT id, at FROM snapshots x WHERE x.device_key = c.device_key AND x.camera_id = c.camera_id \
                        ORDER BY at DESC, id DESC LIMIT 1) s ON true";

const SNAPSHOT_SELECT: &str = "SELECT s.id, s.device_key, d.id AS device_id, s.camera_id, s.at, s.sha256, s.width, \
     s.height, s.boxes, s.zones, s.warning_id FROM snapshots s JOIN devices d ON d.key = s.device_key";

impl Store {
    /// Remembers camera message `seq` of a device; `false` when it was handled before (a redelivery).
    pub async fn camera_message_first_seen(&self, device_key: i32, seq: u64) -> Result<bool> {
        let r = sqlx::query("INSERT INTO camera_messages_seen (device_key, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(device_key)
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Forgets a seq again (its message could not be stored, so a redelivery must be handled).
    pub async fn forget_camera_message(&self, device_key: i32, seq: u64) -> Result<()> {
        sqlx::query("DELETE FROM camera_messages_seen WHERE device_key = $1 AND seq = $2")
            .bind(device_key)
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a camera's reported status (creating the camera on first sight). An older report
    /// than the one stored changes nothing.
    pub async fn upsert_camera_status(&self, s: &CameraStatus) -> Result<()> {
        sqlx::query(
            "INSERT INTO cameras (device_key, camera_id, name, online, fps, last_frame_at, detection, zones, health, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (device_key, camera_id) DO UPDATE SET name = EXCLUDED.name, online = EXCLUDED.online, \
               fps = EXCLUDED.fps, last_frame_at = EXCLUDED.last_frame_at, detection = EXCLUDED.detection, \
               zones = EXCLUDED.zones, health = EXCLUDED.health, updated_at = EXCLUDED.updated_at \
             WHERE cameras.updated_at <= EXCLUDED.updated_at",
        )
        .bind(s.device_key)
        .bind(&s.camera_id)
        .bind(&s.name)
        .bind(s.online)
        .bind(s.fps)
        .bind(s.last_frame_at)
        .bind(&s.detection)
        .bind(&s.zones)
        .bind(&s.health)
        .bind(s.at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Applies a health event to the camera's row (creating it if an event comes before any
    /// status): adds or removes `kind` from its health, and an `offline` event sets `online`.
    pub async fn apply_camera_health(
        &self,
        device_key: i32,
        camera_id: &str,
        kind: &str,
        raised: bool,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO cameras (device_key, camera_id, online, health) \
             VALUES ($1, $2, NOT ($3 = 'offline' AND $4), CASE WHEN $4 THEN ARRAY[$3] ELSE '{}' END) \
             ON CONFLICT (device_key, camera_id) DO UPDATE SET \
               health = CASE WHEN $4 THEN array_append(array_remove(cameras.health, $3), $3) \
                             ELSE array_remove(cameras.health, $3) END, \
               online = CASE WHEN $3 = 'offline' THEN NOT $4 ELSE cameras.online END",
        )
        .bind(device_key)
        .bind(camera_id)
        .bind(kind)
        .bind(raised)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether the camera is known to be offline now (inhibits its other events): its offline
    /// condition is raised (by an event or its last status). A camera the platform has not heard a
    /// status from yet is not offline: its first event may arrive before its first status.
    pub async fn camera_offline(&self, device_key: i32, camera_id: &str) -> Result<bool> {
        let v: Option<bool> = sqlx::query_scalar(
            "SELECT 'offline' = ANY(health) FROM cameras WHERE device_key = $1 AND camera_id = $2",
        )
        .bind(device_key)
        .bind(camera_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(v.unwrap_or(false))
    }

    /// Records a snapshot whose bytes are in the file store (the `files` row in the same
    /// transaction; the camera is created on first sight). Returns its id.
    pub async fn insert_snapshot(&self, s: &NewSnapshot) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        crate::files::record_file_in(tx.acquire().await?, &s.sha256, s.size, "image/jpeg").await?;
        sqlx::query(
            "INSERT INTO cameras (device_key, camera_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(s.device_key)
        .bind(&s.camera_id)
        .execute(&mut *tx)
        .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO snapshots (device_key, camera_id, at, sha256, width, height, boxes, zones) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(s.device_key)
        .bind(&s.camera_id)
        .bind(s.at)
        .bind(&s.sha256)
        .bind(s.width)
        .bind(s.height)
        .bind(&s.boxes)
        .bind(&s.zones)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Links a snapshot to the warning it is evidence for.
    pub async fn link_snapshot(&self, snapshot_id: i64, warning_id: i64) -> Result<()> {
        sqlx::query("UPDATE snapshots SET warning_id = $2 WHERE id = $1")
            .bind(snapshot_id)
            .bind(warning_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn snapshot(&self, id: i64) -> Result<Option<SnapshotRecord>> {
        Ok(
            sqlx::query_as(&format!("{SNAPSHOT_SELECT} WHERE s.id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A camera's newest snapshots, newest first.
    pub async fn camera_snapshots(
        &self,
        device_key: i32,
        camera_id: &str,
        limit: i64,
    ) -> Result<Vec<SnapshotRecord>> {
        Ok(sqlx::query_as(&format!(
            "{SNAPSHOT_SELECT} WHERE s.device_key = $1 AND s.camera_id = $2 ORDER BY s.at DESC, s.id DESC LIMIT $3"
        ))
        .bind(device_key)
        .bind(camera_id)
        .bind(limit.clamp(1, 200))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Cameras of `device_keys` (`None`: every device's), by device then camera id.
    pub async fn cameras_among(&self, device_keys: Option<&[i32]>) -> Result<Vec<CameraRecord>> {
        Ok(sqlx::query_as(&format!(
            "{CAMERA_SELECT} WHERE d.revoked_at IS NULL AND ($1::int[] IS NULL OR c.device_key = ANY($1)) \
             ORDER BY d.id, c.camera_id"
        ))
        .bind(device_keys)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn camera(&self, device_key: i32, camera_id: &str) -> Result<Option<CameraRecord>> {
        Ok(sqlx::query_as(&format!(
            "{CAMERA_SELECT} WHERE c.device_key = $1 AND c.camera_id = $2"
        ))
        .bind(device_key)
        .bind(camera_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// How many cameras there are and how many are online, over `device_keys` (`None`: all).
    pub async fn camera_counts(&self, device_keys: Option<&[i32]>) -> Result<CameraCounts> {
        let (total, online): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE c.online AND NOT 'offline' = ANY(c.health)) \
             FROM cameras c JOIN devices d ON d.key = c.device_key \
             WHERE d.revoked_at IS NULL AND ($1::int[] IS NULL OR c.device_key = ANY($1))",
        )
        .bind(device_keys)
        .fetch_one(&self.pool)
        .await?;
        Ok(CameraCounts { total, online })
    }

    /// Deletes snapshots taken before `before` unless their warning belongs to a task (or, through
    /// the task, a case), then the stored files nothing refers to any more (rows, then bytes), and
    /// camera message seqs seen before `before`.
    pub async fn expire_snapshots(
        &self,
        before: DateTime<Utc>,
        files: &dyn FileStore,
    ) -> Result<SnapshotRetention> {
        let mut tx = self.pool.begin().await?;
        let hashes: Vec<String> = sqlx::query_scalar(
            "DELETE FROM snapshots s WHERE s.at < $1 \
             AND NOT EXISTS (SELECT 1 FROM warnings w WHERE w.id = s.warning_id AND w.task_id IS NOT NULL) \
             RETURNING s.sha256",
        )
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
        let removed = hashes.len() as u64;
        let mut unique = hashes;
        unique.sort();
        unique.dedup();
        // Task attachments, case documents and complaint attachments may hold the same bytes: only
        // unreferenced files go.
        let orphans: Vec<String> = sqlx::query_scalar(
            "DELETE FROM files f WHERE f.sha256 = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.sha256 = f.sha256) \
             AND NOT EXISTS (SELECT 1 FROM task_attachments a WHERE a.sha256 = f.sha256) \
             AND NOT EXISTS (SELECT 1 FROM case_documents c WHERE c.sha256 = f.sha256) \
             AND NOT EXISTS (SELECT 1 FROM complaint_attachments ca WHERE ca.sha256 = decode(f.sha256, 'hex')) \
             RETURNING f.sha256",
        )
        .bind(&unique)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM camera_messages_seen WHERE seen_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // After the commit: a crash here leaves bytes without a row (harmless), never a row without bytes.
        let mut deleted = 0;
        for sha in &orphans {
            if files.delete(sha).await? {
                deleted += 1;
            }
        }
        Ok(SnapshotRetention {
            snapshots: removed,
            files: deleted,
        })
    }
}
