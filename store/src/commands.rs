//! Device commands: what the platform asked a device to do, and what the device answered.

use anyhow::Result;
use chrono::{DateTime, Utc};
use offsite_wire::CommandAck;

use crate::Store;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct CommandRecord {
    pub id: String,
    pub device_id: String,
    pub kind: String,
    pub body: serde_json::Value,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub acked_at: Option<DateTime<Utc>>,
    pub ok: Option<bool>,
    pub error: Option<String>,
    pub state: Option<serde_json::Value>,
}

const SELECT: &str = "SELECT c.id, d.id AS device_id, c.kind, c.body, c.created_by, c.created_at, c.acked_at, \
     c.ok, c.error, c.state FROM device_commands c JOIN devices d ON d.key = c.device_key";

impl Store {
    /// Records a command about to be sent to `device_key`.
    pub async fn insert_command(
        &self,
        id: &str,
        device_key: i32,
        kind: &str,
        body: &serde_json::Value,
        created_by: Option<&str>,
    ) -> Result<()> {
        sqlx::query("INSERT INTO device_commands (id, device_key, kind, body, created_by) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(device_key)
            .bind(kind)
            .bind(body)
            .bind(created_by)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a device's answer. Only the device the command was sent to can answer it; the first
    /// answer wins (a device may repeat itself after a redelivery). Returns whether a row changed.
    pub async fn record_command_ack(&self, device_key: i32, ack: &CommandAck, at: DateTime<Utc>) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE device_commands SET acked_at = $3, ok = $4, error = $5, state = $6 \
             WHERE id = $1 AND device_key = $2 AND acked_at IS NULL",
        )
        .bind(&ack.id)
        .bind(device_key)
        .bind(at)
        .bind(ack.ok)
        .bind(&ack.error)
        .bind(&ack.state)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Unanswered commands of a device younger than `max_age`, oldest first, as sent (the JSON body),
    /// for redelivery when the device comes back online.
    pub async fn pending_commands(&self, device_key: i32, max_age: chrono::Duration) -> Result<Vec<(String, serde_json::Value)>> {
        Ok(sqlx::query_as(
            "SELECT id, body FROM device_commands WHERE device_key = $1 AND acked_at IS NULL AND created_at > now() - $2 \
             ORDER BY created_at",
        )
        .bind(device_key)
        .bind(max_age)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn command(&self, id: &str) -> Result<Option<CommandRecord>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE c.id = $1")).bind(id).fetch_optional(&self.pool).await?)
    }

    /// A device's commands, newest first.
    pub async fn device_commands(&self, device_key: i32, limit: i64) -> Result<Vec<CommandRecord>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE c.device_key = $1 ORDER BY c.created_at DESC LIMIT $2"))
            .bind(device_key)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }
}
