//! Device registry queries.

use anyhow::Result;
use chrono::{DateTime, Utc};
use offsite_wire::DeviceId;

use crate::Store;

#[derive(Debug, Clone)]
pub struct NewDevice {
    pub id: DeviceId,
    pub name: String,
    pub object_id: Option<String>,
    pub token_sha256: [u8; 32],
    pub cert_serial: Option<String>,
    pub cert_not_after: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct DeviceRecord {
    pub id: String,
    #[serde(skip)]
    pub key: i32,
    pub name: String,
    pub object_id: Option<String>,
    /// Kind of device (e.g. `dust-monitor`), which rules can be scoped to.
    pub class: Option<String>,
    pub cert_serial: Option<String>,
    pub cert_not_after: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub online: bool,
    pub last_seen: Option<DateTime<Utc>>,
}

/// What the broker needs to decide a connection.
#[derive(Debug, Clone)]
pub struct DeviceAuth {
    pub key: i32,
    pub token_sha256: Vec<u8>,
    pub revoked: bool,
}

const SELECT: &str = "SELECT d.id, d.key, d.name, d.object_id, d.class, d.cert_serial, d.cert_not_after, d.created_at, \
     d.rotated_at, d.revoked_at, coalesce(s.online, false) AS online, s.last_seen \
     FROM devices d LEFT JOIN device_status s ON s.device_key = d.key";

impl Store {
    pub async fn insert_device(&self, d: &NewDevice) -> Result<DeviceRecord> {
        let mut tx = self.pool.begin().await?;
        let key: i32 = sqlx::query_scalar(
            "INSERT INTO devices (id, name, object_id, token_sha256, cert_serial, cert_not_after) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING key",
        )
        .bind(d.id.as_str())
        .bind(&d.name)
        .bind(&d.object_id)
        .bind(&d.token_sha256[..])
        .bind(&d.cert_serial)
        .bind(d.cert_not_after)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO device_status (device_key) VALUES ($1)").bind(key).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(self.device(&d.id).await?.expect("just inserted"))
    }

    pub async fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE d.id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Sets (or clears) a device's class; false if there is no such device.
    pub async fn set_device_class(&self, id: &DeviceId, class: Option<&str>) -> Result<bool> {
        let r = sqlx::query("UPDATE devices SET class = $2 WHERE id = $1").bind(id.as_str()).bind(class).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    /// A device by its compact key (as stored with samples).
    pub async fn device_by_key(&self, key: i32) -> Result<Option<DeviceRecord>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE d.key = $1")).bind(key).fetch_optional(&self.pool).await?)
    }

    pub async fn device_by_name(&self, name: &str) -> Result<Option<DeviceRecord>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE d.name = $1 AND d.revoked_at IS NULL ORDER BY d.key LIMIT 1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A page of devices ordered by id, with the total count.
    pub async fn list_devices(&self, limit: i64, offset: i64) -> Result<(Vec<DeviceRecord>, i64)> {
        self.list_devices_among(None, limit, offset).await
    }

    /// A page of devices, only those with these keys when given (a caller's visible devices).
    pub async fn list_devices_among(&self, keys: Option<&[i32]>, limit: i64, offset: i64) -> Result<(Vec<DeviceRecord>, i64)> {
        let items = sqlx::query_as(&format!(
            "{SELECT} WHERE ($1::int4[] IS NULL OR d.key = ANY($1)) ORDER BY d.id LIMIT $2 OFFSET $3"
        ))
        .bind(keys)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE ($1::int4[] IS NULL OR key = ANY($1))")
            .bind(keys)
            .fetch_one(&self.pool)
            .await?;
        Ok((items, total))
    }

    /// Marks a device revoked; returns false if there is no such device.
    pub async fn revoke_device(&self, id: &DeviceId) -> Result<bool> {
        let r = sqlx::query("UPDATE devices SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Replaces a device's token (and certificate record); the old token stops working at once.
    pub async fn rotate_device(
        &self,
        id: &DeviceId,
        token_sha256: [u8; 32],
        cert_serial: Option<String>,
        cert_not_after: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE devices SET token_sha256 = $2, cert_serial = $3, cert_not_after = $4, rotated_at = now() \
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id.as_str())
        .bind(&token_sha256[..])
        .bind(cert_serial)
        .bind(cert_not_after)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn device_auth(&self, id: &str) -> Result<Option<DeviceAuth>> {
        let row: Option<(i32, Vec<u8>, bool)> =
            sqlx::query_as("SELECT key, token_sha256, revoked_at IS NOT NULL FROM devices WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(key, token_sha256, revoked)| DeviceAuth { key, token_sha256, revoked }))
    }

    /// Every device's id, key and whether it is revoked (ingest keeps this in memory).
    pub async fn device_keys(&self) -> Result<Vec<(String, i32, bool)>> {
        Ok(sqlx::query_as("SELECT id, key, revoked_at IS NOT NULL FROM devices").fetch_all(&self.pool).await?)
    }

    /// Records an online/offline transition reported on the status topic.
    pub async fn set_device_online(&self, key: i32, online: bool, at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO device_status (device_key, online, status_at, last_seen) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (device_key) DO UPDATE SET online = excluded.online, status_at = excluded.status_at, \
             last_seen = greatest(device_status.last_seen, excluded.last_seen)",
        )
        .bind(key)
        .bind(online)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks every device offline (a broker that restarts forgets its sessions; devices say
    /// online again when they reconnect).
    pub async fn mark_all_offline(&self) -> Result<u64> {
        Ok(sqlx::query("UPDATE device_status SET online = false, status_at = now() WHERE online")
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub async fn online_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM device_status WHERE online").fetch_one(&self.pool).await?)
    }
}
