//! Which detector models were loaded, and when: a log the analytics tier appends to each time it
//! starts using a model file (`detector_models`, migration 0012), read by the portal's
//! `GET /api/v1/models`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::Store;

/// A model file's SHA-256, 64 lowercase hex digits once built.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ModelDigest(String);

impl ModelDigest {
    /// Accepts 64 hex digits in either case; keeps them lowercase.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Self(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One load of a model by a detector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelLoad {
    /// The detector's name as warnings carry it (`anomaly-onnx`).
    pub detector: String,
    /// The card's `name` and `version`.
    pub name: String,
    pub version: String,
    pub sha256: ModelDigest,
    /// The whole model card (`model.json`).
    pub metadata: Value,
    pub loaded_at: DateTime<Utc>,
}

/// A recorded load; `current` marks the latest load of each detector (the model it runs now).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DetectorModelRecord {
    pub id: i64,
    pub detector: String,
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub metadata: Value,
    pub loaded_at: DateTime<Utc>,
    pub current: bool,
}

impl Store {
    /// Appends one load to the log.
    pub async fn record_model_load(&self, m: &ModelLoad) -> anyhow::Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO detector_models (detector, name, version, sha256, metadata, loaded_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&m.detector)
        .bind(&m.name)
        .bind(&m.version)
        .bind(m.sha256.as_str())
        .bind(&m.metadata)
        .bind(m.loaded_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// The latest `limit` loads, newest first, each detector's latest one marked `current`.
    pub async fn model_loads(&self, limit: i64) -> anyhow::Result<Vec<DetectorModelRecord>> {
        let rows = sqlx::query_as::<_, DetectorModelRecord>(
            "SELECT id, detector, name, version, sha256, metadata, loaded_at, \
                    row_number() OVER (PARTITION BY detector ORDER BY loaded_at DESC, id DESC) = 1 AS current \
             FROM detector_models ORDER BY loaded_at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_and_refuse() {
        let hex = "AB6029a90de3124e660fc2da784adc91984cb775b7d62648b133ef03d37f215a";
        assert_eq!(ModelDigest::parse(hex).unwrap().as_str(), hex.to_ascii_lowercase());
        assert!(ModelDigest::parse(&hex[1..]).is_none(), "63 digits");
        assert!(ModelDigest::parse(&format!("{}g", &hex[1..])).is_none(), "not hex");
        assert!(ModelDigest::parse("").is_none());
    }
}
