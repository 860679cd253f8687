//! Warnings (风险预警) as stored: dedup, grouping, silences, maintenance windows, and the change
//! notifications other processes listen to.
//!
//! Invariants: at most one open warning per dedup key (a partial unique index enforces it, and
//! [`Store::upsert_warning`] is a single `INSERT ... ON CONFLICT`, so concurrent writers of one key
//! count into the same row); a warning's evidence is the one it was opened with; every open,
//! repeat and resolve is announced on [`WARNINGS_CHANNEL`] when its transaction commits.

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Duration, Utc};
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::rules::Level;
use crate::Store;

/// Channel carrying `{"id": <warning id>, "kind": "opened" | "repeated" | "resolved"}`.
pub const WARNINGS_CHANNEL: &str = "offsite_warnings";

/// The resolutions a warning can be closed with.
pub const RESOLUTIONS: [&str; 4] = ["cleared", "manual", "expired", "false_positive"];

/// How long a page's `total` may be reused for the same filter. Writes through the same `Store`
/// clear it; other processes' writes show within this long.
pub const COUNT_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Recent warning counts per filter (bounded; see [`COUNT_TTL`]).
#[derive(Debug, Default, Clone)]
pub(crate) struct CountCache(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, i64)>>>);

impl CountCache {
    fn get(&self, key: &str) -> Option<i64> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).filter(|(at, _)| at.elapsed() < COUNT_TTL).map(|(_, n)| *n)
    }

    fn put(&self, key: String, n: i64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= 1024 {
            map.retain(|_, (at, _)| at.elapsed() < COUNT_TTL);
            if map.len() >= 1024 {
                map.clear();
            }
        }
        map.insert(key, (std::time::Instant::now(), n));
    }

    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// A warning as a detector raises it.
#[derive(Debug, Clone)]
pub struct NewWarning {
    /// One open warning per key, e.g. `source/device/event`.
    pub dedup_key: String,
    /// Detector name (rule engine, model name).
    pub source: String,
    pub source_version: String,
    pub event: String,
    pub level: Level,
    pub device_key: i32,
    pub metric_id: Option<i32>,
    /// The regulated object; `None` takes the device's.
    pub object_id: Option<String>,
    pub detail: String,
    pub score: f64,
    /// When the condition was seen (device time).
    pub at: DateTime<Utc>,
    /// Values, not links: the metric window, rule or model name and version.
    pub evidence: serde_json::Value,
    /// Open warnings of the same object first seen within this of `at` share a group.
    pub group_window: Duration,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct WarningRecord {
    pub id: i64,
    pub dedup_key: String,
    pub source: String,
    pub source_version: String,
    pub event: String,
    pub level: Level,
    #[serde(skip)]
    pub device_key: i32,
    pub device_id: String,
    pub metric_id: Option<i32>,
    pub metric_key: Option<String>,
    pub object_id: Option<String>,
    pub group_id: i64,
    pub detail: String,
    pub score: f64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub count: i32,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
    pub resolution_note: Option<String>,
    pub silenced_by: Option<i64>,
    pub evidence: serde_json::Value,
    /// Regulatory item (from the rule that raised it).
    pub item: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    /// The task it was dispatched as or merged into.
    pub task_id: Option<i64>,
    pub false_positive: bool,
}

impl WarningRecord {
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// What [`Store::upsert_warning`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Upserted {
    /// A new open warning.
    Opened(WarningRecord),
    /// The open warning of that key, its count, last-seen time, level and score updated.
    Repeated(WarningRecord),
}

impl Upserted {
    pub fn record(&self) -> &WarningRecord {
        match self {
            Upserted::Opened(w) | Upserted::Repeated(w) => w,
        }
    }

    pub fn into_record(self) -> WarningRecord {
        match self {
            Upserted::Opened(w) | Upserted::Repeated(w) => w,
        }
    }

    pub fn is_opened(&self) -> bool {
        matches!(self, Upserted::Opened(_))
    }
}

/// The payload of a [`WARNINGS_CHANNEL`] notification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WarningChange {
    pub id: i64,
    pub kind: String,
}

/// A page of warnings, newest (by first seen) first. Unset fields do not filter.
#[derive(Debug, Clone)]
pub struct WarningFilter {
    /// `Some(true)`: only open; `Some(false)`: only resolved.
    pub open: Option<bool>,
    /// Level this severe or more (1 = only red).
    pub level_at_most: Option<Level>,
    pub device_id: Option<String>,
    pub object_id: Option<String>,
    pub source: Option<String>,
    /// `first_seen >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `first_seen < until`.
    pub until: Option<DateTime<Utc>>,
    pub group_id: Option<i64>,
    /// Only warnings of these devices (the caller's visible devices); `None`: every device.
    pub device_keys: Option<Vec<i32>>,
    /// Clamped to 1..=1000.
    pub limit: i64,
    pub offset: i64,
}

impl Default for WarningFilter {
    fn default() -> Self {
        Self {
            open: None,
            level_at_most: None,
            device_id: None,
            object_id: None,
            source: None,
            since: None,
            until: None,
            group_id: None,
            device_keys: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// An operator's time-boxed silence. It matches a warning when every set field matches.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewSilence {
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub object_id: Option<String>,
    #[serde(default)]
    pub metric_key: Option<String>,
    #[serde(default)]
    pub event: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    #[serde(default)]
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct SilenceRecord {
    pub id: i64,
    pub device_id: Option<String>,
    pub object_id: Option<String>,
    pub metric_key: Option<String>,
    pub event: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A maintenance window of a device or a whole object (or one device of an object: both set).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewMaintenance {
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub object_id: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    #[serde(default)]
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct MaintenanceRecord {
    pub id: i64,
    pub device_id: Option<String>,
    pub object_id: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT w.id, w.dedup_key, w.source, w.source_version, w.event, w.level, w.device_key, \
     d.id AS device_id, w.metric_id, m.key AS metric_key, w.object_id, w.group_id, w.detail, w.score, w.first_seen, \
     w.last_seen, w.count, w.resolved_at, w.resolution, w.resolved_by, w.resolution_note, w.silenced_by, w.evidence, \
     w.item, w.acknowledged_at, w.acknowledged_by, w.task_id, w.false_positive \
     FROM warnings w JOIN devices d ON d.key = w.device_key LEFT JOIN metrics m ON m.id = w.metric_id";

// $1 dedup_key, $2 source, $3 source_version, $4 event, $5 level, $6 device_key, $7 metric_id,
// $8 object_id, $9 detail, $10 score, $11 at, $12 evidence, $13 group_window.
// On a repeat: first evidence, source_version, device, metric and object are kept; the detail
// follows the newest sighting; a silence that started since the warning opened now covers it.
const UPSERT: &str = "INSERT INTO warnings (dedup_key, source, source_version, event, level, device_key, metric_id, \
     object_id, group_id, detail, score, first_seen, last_seen, silenced_by, evidence) \
     SELECT $1, $2, $3, $4, $5, $6, $7, o.object_id, \
       (SELECT w.group_id FROM warnings w WHERE w.resolved_at IS NULL AND w.object_id = o.object_id \
          AND w.first_seen BETWEEN $11::timestamptz - $13::interval AND $11::timestamptz + $13::interval \
          ORDER BY abs(extract(epoch FROM w.first_seen - $11::timestamptz)), w.id LIMIT 1), \
       $9, $10, $11, $11, \
       (SELECT s.id FROM silences s WHERE s.starts_at <= $11::timestamptz AND s.ends_at > $11::timestamptz \
          AND (s.device_id IS NULL OR s.device_id = o.device_id) \
          AND (s.object_id IS NULL OR s.object_id = o.object_id) \
          AND (s.metric_key IS NULL OR s.metric_key = (SELECT key FROM metrics WHERE id = $7)) \
          AND (s.event IS NULL OR s.event = $4) \
          ORDER BY s.ends_at DESC, s.id LIMIT 1), \
       $12 \
     FROM (SELECT d.id AS device_id, coalesce($8::text, d.object_id) AS object_id FROM devices d WHERE d.key = $6) o \
     ON CONFLICT (dedup_key) WHERE resolved_at IS NULL DO UPDATE SET \
       count = warnings.count + 1, \
       first_seen = least(warnings.first_seen, excluded.first_seen), \
       last_seen = greatest(warnings.last_seen, excluded.last_seen), \
       level = least(warnings.level, excluded.level), \
       score = greatest(warnings.score, excluded.score), \
       detail = CASE WHEN excluded.last_seen >= warnings.last_seen THEN excluded.detail ELSE warnings.detail END, \
       silenced_by = coalesce(warnings.silenced_by, excluded.silenced_by) \
     RETURNING id, (xmax = 0) AS inserted";

fn check_resolution(resolution: &str) -> Result<()> {
    if !RESOLUTIONS.contains(&resolution) {
        bail!("resolution must be one of {RESOLUTIONS:?}, got {resolution:?}");
    }
    Ok(())
}

fn check_window(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>, reason: &str) -> Result<()> {
    if ends_at <= starts_at {
        bail!("ends_at must be after starts_at");
    }
    if reason.trim().is_empty() {
        bail!("a reason is required");
    }
    Ok(())
}

async fn notify_on(conn: &mut PgConnection, id: i64, kind: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, json_build_object('id', $2::bigint, 'kind', $3::text)::text)")
        .bind(WARNINGS_CHANNEL)
        .bind(id)
        .bind(kind)
        .execute(conn)
        .await?;
    Ok(())
}

async fn fetch_on(conn: &mut PgConnection, id: i64) -> Result<Option<WarningRecord>> {
    Ok(sqlx::query_as(&format!("{SELECT} WHERE w.id = $1")).bind(id).fetch_optional(conn).await?)
}

fn push_filters<'a>(b: &mut QueryBuilder<'a, Postgres>, f: &'a WarningFilter) {
    b.push(" WHERE true");
    match f.open {
        Some(true) => {
            b.push(" AND w.resolved_at IS NULL");
        }
        Some(false) => {
            b.push(" AND w.resolved_at IS NOT NULL");
        }
        None => {}
    }
    if let Some(l) = f.level_at_most {
        b.push(" AND w.level <= ").push_bind(l);
    }
    if let Some(d) = &f.device_id {
        b.push(" AND d.id = ").push_bind(d);
    }
    if let Some(o) = &f.object_id {
        b.push(" AND w.object_id = ").push_bind(o);
    }
    if let Some(s) = &f.source {
        b.push(" AND w.source = ").push_bind(s);
    }
    if let Some(t) = f.since {
        b.push(" AND w.first_seen >= ").push_bind(t);
    }
    if let Some(t) = f.until {
        b.push(" AND w.first_seen < ").push_bind(t);
    }
    if let Some(g) = f.group_id {
        b.push(" AND w.group_id = ").push_bind(g);
    }
    if let Some(keys) = &f.device_keys {
        b.push(" AND w.device_key = ANY(").push_bind(keys.clone()).push(")");
    }
}

impl Store {
    /// Opens a warning, or counts a repeat into the open warning of its dedup key (race-free).
    ///
    /// A new warning joins the group of an open warning of the same object first seen within
    /// `group_window` of `at` (else it is its own group), and is marked silenced by a silence
    /// active at `at` that matches its device, object, metric and event.
    pub async fn upsert_warning(&self, w: &NewWarning) -> Result<Upserted> {
        self.warning_counts.clear();
        let mut tx = self.pool.begin().await?;
        // Serialise the openings of one object so two devices opening at once still share a group.
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('offsite_warning_group:' || \
             coalesce($1::text, (SELECT object_id FROM devices WHERE key = $2)), 0))",
        )
        .bind(&w.object_id)
        .bind(w.device_key)
        .execute(&mut *tx)
        .await?;
        let row: Option<(i64, bool)> = sqlx::query_as(UPSERT)
            .bind(&w.dedup_key)
            .bind(&w.source)
            .bind(&w.source_version)
            .bind(&w.event)
            .bind(w.level)
            .bind(w.device_key)
            .bind(w.metric_id)
            .bind(&w.object_id)
            .bind(&w.detail)
            .bind(w.score)
            .bind(w.at)
            .bind(&w.evidence)
            .bind(w.group_window)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((id, inserted)) = row else {
            bail!("no device with key {}", w.device_key);
        };
        notify_on(&mut tx, id, if inserted { "opened" } else { "repeated" }).await?;
        let rec = fetch_on(&mut tx, id).await?.ok_or_else(|| anyhow!("warning {id} vanished"))?;
        tx.commit().await?;
        Ok(if inserted { Upserted::Opened(rec) } else { Upserted::Repeated(rec) })
    }

    /// Opens or repeats a warning unless the latest episode of its key already saw `w.at`: open
    /// or resolved with `last_seen >= at`, or cleared at or after `at`. A replayed sample (after a
    /// crash, a lease handover, an MQTT redelivery) thus neither doubles a warning nor re-opens an
    /// episode that was raised and resolved before. `None`: covered, nothing written.
    pub async fn upsert_warning_unless_covered(&self, w: &NewWarning) -> Result<Option<Upserted>> {
        let covered: Option<bool> = sqlx::query_scalar(
            "SELECT coalesce(w.last_seen >= $2 OR (w.resolution = 'cleared' AND w.resolved_at >= $2), false) \
             FROM warnings w WHERE w.dedup_key = $1 ORDER BY w.id DESC LIMIT 1",
        )
        .bind(&w.dedup_key)
        .bind(w.at)
        .fetch_optional(&self.pool)
        .await?;
        if covered == Some(true) {
            return Ok(None);
        }
        self.upsert_warning(w).await.map(Some)
    }

    /// Resolves the open warning of `dedup_key`, if there is one that began at or before `at` (a
    /// clear older than the episode, e.g. from a replay, cannot end it).
    pub async fn resolve_warning(
        &self,
        dedup_key: &str,
        at: DateTime<Utc>,
        resolution: &str,
    ) -> Result<Option<WarningRecord>> {
        check_resolution(resolution)?;
        let mut tx = self.pool.begin().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "UPDATE warnings SET resolved_at = $2, resolution = $3 WHERE dedup_key = $1 AND resolved_at IS NULL \
             AND first_seen <= $2 RETURNING id",
        )
        .bind(dedup_key)
        .bind(at)
        .bind(resolution)
        .fetch_optional(&mut *tx)
        .await?;
        self.finish_resolve(tx, id).await
    }

    /// Resolves warning `id` if it is open (`None` if there is no such open warning), recording who
    /// and why.
    pub async fn resolve_warning_by_id(
        &self,
        id: i64,
        at: DateTime<Utc>,
        resolution: &str,
        resolved_by: Option<&str>,
        note: Option<&str>,
    ) -> Result<Option<WarningRecord>> {
        check_resolution(resolution)?;
        let mut tx = self.pool.begin().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "UPDATE warnings SET resolved_at = $2, resolution = $3, resolved_by = $4, resolution_note = $5 \
             WHERE id = $1 AND resolved_at IS NULL RETURNING id",
        )
        .bind(id)
        .bind(at)
        .bind(resolution)
        .bind(resolved_by)
        .bind(note)
        .fetch_optional(&mut *tx)
        .await?;
        self.finish_resolve(tx, id).await
    }

    async fn finish_resolve(
        &self,
        mut tx: sqlx::Transaction<'_, Postgres>,
        id: Option<i64>,
    ) -> Result<Option<WarningRecord>> {
        self.warning_counts.clear();
        let Some(id) = id else {
            return Ok(None);
        };
        notify_on(&mut tx, id, "resolved").await?;
        let rec = fetch_on(&mut tx, id).await?;
        tx.commit().await?;
        Ok(rec)
    }

    /// Announces a change of warning `id` on [`WARNINGS_CHANNEL`] (upsert and resolve already do).
    pub async fn notify_warning(&self, id: i64, kind: &str) -> Result<()> {
        self.warning_counts.clear();
        let mut conn = self.pool.acquire().await?;
        notify_on(&mut conn, id, kind).await
    }

    pub async fn warning(&self, id: i64) -> Result<Option<WarningRecord>> {
        let mut conn = self.pool.acquire().await?;
        fetch_on(&mut conn, id).await
    }

    /// A page of warnings matching `f`, newest first, with the total count of matches.
    pub async fn warnings(&self, f: &WarningFilter) -> Result<(Vec<WarningRecord>, i64)> {
        let mut b = QueryBuilder::new(SELECT);
        push_filters(&mut b, f);
        b.push(" ORDER BY w.first_seen DESC, w.id DESC LIMIT ")
            .push_bind(f.limit.clamp(1, 1000))
            .push(" OFFSET ")
            .push_bind(f.offset.max(0));
        let items: Vec<WarningRecord> = b.build_query_as().fetch_all(&self.pool).await?;
        // A first page that is not full is the whole answer; otherwise count, joining devices only
        // when the filter names one (the join would double the cost of counting everything).
        if f.offset <= 0 && (items.len() as i64) < f.limit.clamp(1, 1000) {
            let total = items.len() as i64;
            return Ok((items, total));
        }
        // Pages of one filter asked within COUNT_TTL share one count (a live wall and its many
        // viewers ask the same question); a write through this store starts afresh.
        let key = format!("{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}", f.open, f.level_at_most, f.device_id, f.object_id, f.source, f.since, f.until, f.group_id, f.device_keys);
        if let Some(total) = self.warning_counts.get(&key) {
            return Ok((items, total));
        }
        let mut c = QueryBuilder::new(if f.device_id.is_some() {
            "SELECT count(*) FROM warnings w JOIN devices d ON d.key = w.device_key"
        } else {
            "SELECT count(*) FROM warnings w"
        });
        push_filters(&mut c, f);
        let total: i64 = c.build_query_scalar().fetch_one(&self.pool).await?;
        self.warning_counts.put(key, total);
        Ok((items, total))
    }

    /// Records a silence; refuses an empty reason or an empty time range.
    pub async fn insert_silence(&self, s: &NewSilence) -> Result<SilenceRecord> {
        check_window(s.starts_at, s.ends_at, &s.reason)?;
        Ok(sqlx::query_as(
            "INSERT INTO silences (device_id, object_id, metric_key, event, starts_at, ends_at, reason, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        )
        .bind(&s.device_id)
        .bind(&s.object_id)
        .bind(&s.metric_key)
        .bind(&s.event)
        .bind(s.starts_at)
        .bind(s.ends_at)
        .bind(&s.reason)
        .bind(&s.created_by)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Silences in force at `at`, ending soonest first.
    pub async fn active_silences(&self, at: DateTime<Utc>) -> Result<Vec<SilenceRecord>> {
        Ok(sqlx::query_as("SELECT * FROM silences WHERE starts_at <= $1 AND ends_at > $1 ORDER BY ends_at, id")
            .bind(at)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Ends a silence at `at` (one not yet started ends right at its start); false if there is no
    /// such silence or it was already over by `at`.
    pub async fn expire_silence(&self, id: i64, at: DateTime<Utc>) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE silences SET ends_at = greatest($2, starts_at + interval '1 microsecond') \
             WHERE id = $1 AND ends_at > $2",
        )
        .bind(id)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records a maintenance window; needs a device or an object, a reason and a non-empty range.
    pub async fn insert_maintenance(&self, m: &NewMaintenance) -> Result<MaintenanceRecord> {
        check_window(m.starts_at, m.ends_at, &m.reason)?;
        if m.device_id.is_none() && m.object_id.is_none() {
            bail!("a maintenance window needs a device or an object");
        }
        Ok(sqlx::query_as(
            "INSERT INTO maintenance (device_id, object_id, starts_at, ends_at, reason, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .bind(&m.device_id)
        .bind(&m.object_id)
        .bind(m.starts_at)
        .bind(m.ends_at)
        .bind(&m.reason)
        .bind(&m.created_by)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Whether a maintenance window covers the device (of that object) at `at`: every set field of
    /// the window must match.
    pub async fn in_maintenance(&self, device_id: &str, object_id: Option<&str>, at: DateTime<Utc>) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM maintenance WHERE starts_at <= $3 AND ends_at > $3 \
             AND (device_id IS NULL OR device_id = $1) AND (object_id IS NULL OR object_id = $2))",
        )
        .bind(device_id)
        .bind(object_id)
        .bind(at)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Maintenance windows in force at `at`.
    pub async fn active_maintenance(&self, at: DateTime<Utc>) -> Result<Vec<MaintenanceRecord>> {
        Ok(sqlx::query_as("SELECT * FROM maintenance WHERE starts_at <= $1 AND ends_at > $1 ORDER BY ends_at, id")
            .bind(at)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Devices that are offline (or never reported a status), by key: their data warnings are inhibited.
    pub async fn offline_devices(&self) -> Result<Vec<(i32, String)>> {
        Ok(sqlx::query_as(
            "SELECT d.key, d.id FROM devices d LEFT JOIN device_status s ON s.device_key = d.key \
             WHERE NOT coalesce(s.online, false) ORDER BY d.key",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// A listener on `channels` over its own connection (same options as the pool, not one of its
    /// connections); it reconnects and re-listens by itself. Notifications sent while it was
    /// reconnecting are lost: [`PgListener::try_recv`] returns `Ok(None)` then, to reload state.
    pub async fn listen(&self, channels: &[&str]) -> Result<PgListener> {
        let opts = self.pool.connect_options().as_ref().clone();
        let pool = PgPoolOptions::new().max_connections(1).min_connections(0).connect_with(opts).await?;
        let mut l = PgListener::connect_with(&pool).await?;
        l.listen_all(channels.iter().copied()).await?;
        Ok(l)
    }
}
