//! Samples: binary COPY writes, partition maintenance, the metric catalog and series reads.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use sqlx::{Executor, PgConnection};
use tracing::{debug, info};

use crate::Store;

/// One row of the samples table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRow {
    pub device_key: i32,
    pub metric_id: i32,
    pub ts: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub value: f64,
    pub quality: i16,
}

/// Quality bits. 0 means good.
pub mod quality {
    /// The value lies outside the metric's valid range in the catalog.
    pub const OUT_OF_RANGE: i16 = 1;
    // A device's own data flag (HJ 212 `-Flag`): the value is stored and shown, but it is not a
    // normal measurement, so no limit rule or model may raise a data warning from it.
    /// F: the monitored equipment was stopped.
    pub const FLAG_STOPPED: i16 = 1 << 1;
    /// M: maintenance.
    pub const FLAG_MAINTENANCE: i16 = 1 << 2;
    /// S: set by hand.
    pub const FLAG_MANUAL: i16 = 1 << 3;
    /// D: instrument fault.
    pub const FLAG_FAULT: i16 = 1 << 4;
    /// C: calibration.
    pub const FLAG_CALIBRATION: i16 = 1 << 5;
    /// T: over the instrument's range.
    pub const FLAG_OVER_RANGE: i16 = 1 << 6;
    /// B: the logger could not talk to the instrument.
    pub const FLAG_COMM_FAULT: i16 = 1 << 7;
    /// Any device flag that says "not a normal measurement".
    pub const NOT_MEASURED: i16 = FLAG_STOPPED
        | FLAG_MAINTENANCE
        | FLAG_MANUAL
        | FLAG_FAULT
        | FLAG_CALIBRATION
        | FLAG_OVER_RANGE
        | FLAG_COMM_FAULT;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// Native PostgreSQL range partitions by day, created ahead and dropped after retention.
    Native,
    /// TimescaleDB hypertable with compression and retention policies.
    Timescale,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Rows that are new in the table.
    pub inserted: u64,
    /// Rows that were already stored (a redelivery) and were skipped.
    pub duplicates: u64,
}

/// The newest value a device has sent for one metric (kept per batch in `sample_latest`).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LatestValue {
    pub metric: String,
    pub ts: DateTime<Utc>,
    pub value: f64,
    pub quality: i16,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct MetricDef {
    pub id: i32,
    pub key: String,
    pub name_zh: Option<String>,
    pub name_en: Option<String>,
    pub unit: Option<String>,
    pub valid_min: Option<f64>,
    pub valid_max: Option<f64>,
}

impl MetricDef {
    pub fn in_range(&self, v: f64) -> bool {
        self.valid_min.is_none_or(|m| v >= m) && self.valid_max.is_none_or(|m| v <= m)
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesPoint {
    pub ts: DateTime<Utc>,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<i16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
}

const COLUMNS: &str = "device_key, metric_id, ts, received_at, value, quality";
const UNIQUE_VIOLATION: &str = "23505";

/// Days whose partition is known to exist (process-wide, per database).
#[derive(Debug, Default, Clone)]
pub(crate) struct PartitionCache(Arc<Mutex<HashSet<NaiveDate>>>);

impl Store {
    pub async fn partitioning(&self) -> Result<Partitioning> {
        let ts: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')")
            .fetch_one(&self.pool)
            .await?;
        Ok(if ts { Partitioning::Timescale } else { Partitioning::Native })
    }

    /// Writes rows durably, once per (device, metric, ts): binary COPY, and on a duplicate the
    /// slower staged `INSERT .. ON CONFLICT DO NOTHING`. Also updates the latest-value table and
    /// the devices' last-seen time in the same transaction.
    pub async fn write_samples(&self, rows: &[SampleRow]) -> Result<WriteOutcome> {
        if rows.is_empty() {
            return Ok(WriteOutcome::default());
        }
        self.ensure_partitions_for(rows).await?;
        let copy = encode_copy(rows);
        let mut conn = self.pool.acquire().await?;
        match write_tx(&mut conn, &copy, rows, false).await {
            Ok(o) => Ok(o),
            Err(e) if is_code(&e, UNIQUE_VIOLATION) => {
                debug!("duplicate in batch; retrying with ON CONFLICT");
                write_tx(&mut conn, &copy, rows, true).await
            }
            Err(e) => Err(e),
        }
    }

    async fn ensure_partitions_for(&self, rows: &[SampleRow]) -> Result<()> {
        let mut days = BTreeSet::new();
        let mut last = i64::MIN;
        for r in rows {
            let d = r.ts.timestamp().div_euclid(86_400);
            if d != last {
                days.insert(d);
                last = d;
            }
        }
        let missing: Vec<NaiveDate> = {
            let known = self.partitions.0.lock().unwrap();
            days.into_iter()
                .filter_map(|d| DateTime::from_timestamp(d * 86_400, 0).map(|t| t.date_naive()))
                .filter(|d| !known.contains(d))
                .collect()
        };
        for day in missing {
            self.ensure_partition(day).await?;
        }
        Ok(())
    }

    /// Creates the day's partition if missing (no-op with TimescaleDB).
    pub async fn ensure_partition(&self, day: NaiveDate) -> Result<()> {
        if self.partitioning().await? == Partitioning::Timescale {
            self.partitions.0.lock().unwrap().insert(day);
            return Ok(());
        }
        let next = day + Duration::days(1);
        let name = format!("samples_{}", day.format("%Y%m%d"));
        let mut tx = self.pool.begin().await?;
        // Replicas may race to create the same day.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('offsite.samples.partitions'))").execute(&mut *tx).await?;
        tx.execute(
            format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF samples \
                 FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')"
            )
            .as_str(),
        )
        .await
        .with_context(|| format!("creating partition {name}"))?;
        tx.commit().await?;
        self.partitions.0.lock().unwrap().insert(day);
        Ok(())
    }

    /// Creates partitions from yesterday to `ahead_days` ahead and drops those entirely older than
    /// `retention_days`. Idempotent; run at start and periodically by one replica.
    pub async fn maintain_partitions(&self, ahead_days: i64, retention_days: i64) -> Result<Vec<String>> {
        let today = Utc::now().date_naive();
        if self.partitioning().await? == Partitioning::Timescale {
            sqlx::query("SELECT remove_retention_policy('samples', if_exists => true)").execute(&self.pool).await?;
            sqlx::query("SELECT add_retention_policy('samples', make_interval(days => $1))")
                .bind(retention_days as i32)
                .execute(&self.pool)
                .await?;
            return Ok(Vec::new());
        }
        for d in -1..=ahead_days {
            self.ensure_partition(today + Duration::days(d)).await?;
        }
        let cutoff = today - Duration::days(retention_days);
        let parts: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'samples'",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut dropped = Vec::new();
        for name in parts {
            let Some(day) = name.strip_prefix("samples_").and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
            else {
                continue;
            };
            // A partition holds [day, day+1); drop it once all of it is older than the cutoff.
            if day + Duration::days(1) <= cutoff {
                self.pool.execute(format!("DROP TABLE IF EXISTS {name}").as_str()).await?;
                self.partitions.0.lock().unwrap().remove(&day);
                info!(partition = %name, "dropped partition past retention");
                dropped.push(name);
            }
        }
        Ok(dropped)
    }

    /// Each metric's newest value for a device, by metric key: one primary-key range scan.
    pub async fn device_latest(&self, device_key: i32) -> Result<Vec<LatestValue>> {
        Ok(sqlx::query_as(
            "SELECT m.key AS metric, l.ts, l.value, l.quality FROM sample_latest l \
             JOIN metrics m ON m.id = l.metric_id WHERE l.device_key = $1 ORDER BY m.key",
        )
        .bind(device_key)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn metrics(&self) -> Result<Vec<MetricDef>> {
        Ok(sqlx::query_as(
            "SELECT id, key, name_zh, name_en, unit, valid_min, valid_max FROM metrics ORDER BY key",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Returns the catalog entry for `key`, adding one for a metric seen for the first time: named
    /// from the HJ 212 code tables when the key is an HJ 212 field (`a34004-Rtd`, `SB1-RS`), else bare.
    pub async fn ensure_metric(&self, key: &str) -> Result<MetricDef> {
        sqlx::query(
            "INSERT INTO metrics (key, name_zh, name_en, unit, valid_min, valid_max) \
             SELECT $1, d.name_zh, d.name_en, d.unit, d.valid_min, d.valid_max \
             FROM (SELECT 1) one LEFT JOIN hj212_metric_default($1) d ON true \
             ON CONFLICT (key) DO NOTHING",
        )
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_as(
            "SELECT id, key, name_zh, name_en, unit, valid_min, valid_max FROM metrics WHERE key = $1",
        )
        .bind(key)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn metric_by_key(&self, key: &str) -> Result<Option<MetricDef>> {
        Ok(sqlx::query_as(
            "SELECT id, key, name_zh, name_en, unit, valid_min, valid_max FROM metrics WHERE key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// One device's metric over `[from, to)`: raw points, or `date_bin` buckets of `step_secs`
    /// (avg, min, max, count) when a step is given. At most `limit` points, oldest first.
    pub async fn series(
        &self,
        device_key: i32,
        metric_id: i32,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_secs: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SeriesPoint>> {
        match step_secs {
            None => {
                let rows: Vec<(DateTime<Utc>, f64, i16)> = sqlx::query_as(
                    "SELECT ts, value, quality FROM samples WHERE device_key = $1 AND metric_id = $2 \
                     AND ts >= $3 AND ts < $4 ORDER BY ts LIMIT $5",
                )
                .bind(device_key)
                .bind(metric_id)
                .bind(from)
                .bind(to)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(ts, value, q)| SeriesPoint { ts, value, quality: Some(q), min: None, max: None, count: None })
                    .collect())
            }
            Some(step) => {
                let rows: Vec<(DateTime<Utc>, f64, f64, f64, i64)> = sqlx::query_as(
                    "SELECT date_bin(make_interval(secs => $5), ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS b, \
                     avg(value), min(value), max(value), count(*) FROM samples \
                     WHERE device_key = $1 AND metric_id = $2 AND ts >= $3 AND ts < $4 \
                     GROUP BY b ORDER BY b LIMIT $6",
                )
                .bind(device_key)
                .bind(metric_id)
                .bind(from)
                .bind(to)
                .bind(step as f64)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(ts, avg, min, max, n)| SeriesPoint {
                        ts,
                        value: avg,
                        quality: None,
                        min: Some(min),
                        max: Some(max),
                        count: Some(n),
                    })
                    .collect())
            }
        }
    }

    /// Count of stored samples (for tests and benchmarks).
    pub async fn sample_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM samples").fetch_one(&self.pool).await?)
    }
}

async fn write_tx(conn: &mut PgConnection, copy: &[u8], rows: &[SampleRow], staged: bool) -> Result<WriteOutcome> {
    conn.execute("BEGIN").await?;
    let r = async {
        let inserted = if staged {
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS samples_stage \
                 (LIKE samples INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
            )
            .await?;
            let mut c = conn.copy_in_raw(&format!("COPY samples_stage ({COLUMNS}) FROM STDIN (FORMAT binary)")).await?;
            c.send(copy).await?;
            c.finish().await?;
            conn.execute(
                format!("INSERT INTO samples ({COLUMNS}) SELECT {COLUMNS} FROM samples_stage ON CONFLICT DO NOTHING")
                    .as_str(),
            )
            .await?
            .rows_affected()
        } else {
            let mut c = conn.copy_in_raw(&format!("COPY samples ({COLUMNS}) FROM STDIN (FORMAT binary)")).await?;
            c.send(copy).await?;
            c.finish().await?
        };
        update_latest(conn, rows).await?;
        Ok::<_, anyhow::Error>(inserted)
    }
    .await;
    match r {
        Ok(inserted) => {
            conn.execute("COMMIT").await?;
            Ok(WriteOutcome { inserted, duplicates: rows.len() as u64 - inserted })
        }
        Err(e) => {
            conn.execute("ROLLBACK").await.ok();
            Err(e)
        }
    }
}

/// Upserts the newest value per (device, metric) and the devices' last-seen time. Rows are sorted
/// so concurrent writers lock in the same order and cannot deadlock.
async fn update_latest(conn: &mut PgConnection, rows: &[SampleRow]) -> Result<()> {
    let mut latest: std::collections::BTreeMap<(i32, i32), &SampleRow> = Default::default();
    let mut seen: std::collections::BTreeMap<i32, DateTime<Utc>> = Default::default();
    for r in rows {
        latest.entry((r.device_key, r.metric_id)).and_modify(|e| if r.ts > e.ts { *e = r }).or_insert(r);
        seen.entry(r.device_key).and_modify(|t| *t = (*t).max(r.received_at)).or_insert(r.received_at);
    }
    let (mut dk, mut mi, mut ts, mut v, mut q) = (vec![], vec![], vec![], vec![], vec![]);
    for ((d, m), r) in &latest {
        dk.push(*d);
        mi.push(*m);
        ts.push(r.ts);
        v.push(r.value);
        q.push(r.quality);
    }
    sqlx::query(
        "INSERT INTO sample_latest (device_key, metric_id, ts, value, quality) \
         SELECT * FROM unnest($1::int4[], $2::int4[], $3::timestamptz[], $4::float8[], $5::int2[]) \
         ON CONFLICT (device_key, metric_id) DO UPDATE SET ts = excluded.ts, value = excluded.value, \
         quality = excluded.quality WHERE sample_latest.ts < excluded.ts",
    )
    .bind(&dk)
    .bind(&mi)
    .bind(&ts)
    .bind(&v)
    .bind(&q)
    .execute(&mut *conn)
    .await?;
    let keys: Vec<i32> = seen.keys().copied().collect();
    let times: Vec<DateTime<Utc>> = seen.values().copied().collect();
    sqlx::query(
        "UPDATE device_status s SET last_seen = greatest(s.last_seen, v.t) \
         FROM unnest($1::int4[], $2::timestamptz[]) AS v(k, t) WHERE s.device_key = v.k",
    )
    .bind(&keys)
    .bind(&times)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn is_code(e: &anyhow::Error, code: &str) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<sqlx::Error>()
            .and_then(|s| s.as_database_error())
            .and_then(|d| d.code())
            .is_some_and(|c| c == code)
    })
}

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// Encodes rows in PostgreSQL's binary COPY format, in the column order of [`COLUMNS`].
pub fn encode_copy(rows: &[SampleRow]) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(19 + rows.len() * 52 + 2);
    b.put_slice(b"PGCOPY\n\xff\r\n\0");
    b.put_i32(0); // flags
    b.put_i32(0); // header extension length
    for r in rows {
        b.put_i16(6);
        b.put_i32(4);
        b.put_i32(r.device_key);
        b.put_i32(4);
        b.put_i32(r.metric_id);
        b.put_i32(8);
        b.put_i64(r.ts.timestamp_micros() - PG_EPOCH_OFFSET_US);
        b.put_i32(8);
        b.put_i64(r.received_at.timestamp_micros() - PG_EPOCH_OFFSET_US);
        b.put_i32(8);
        b.put_f64(r.value);
        b.put_i32(2);
        b.put_i16(r.quality);
    }
    b.put_i16(-1);
    b.to_vec()
}

/// Midnight UTC of a day, as a timestamp.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
}
