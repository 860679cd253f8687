//! Analytics shards: which replica analyses which devices, up to where, and the feed that carries
//! committed samples to them.
//!
//! A sample's shard is `device_key % shards` (every series of a device together, so device-level
//! state such as flag inhibition and offline never splits). Each shard row has an owner with a
//! lease and a checkpoint. Replicas heartbeat, claim free or expired shards up to their fair
//! share, renew, give back surplus, and release on a clean shutdown. A new owner replays the
//! shard's samples received after the checkpoint (holding the live feed meanwhile), then follows
//! the live feed.
//!
//! The feed (split mode): ingest publishes each committed batch's rows, grouped by shard, to
//! [`feed_topic`] at QoS 1, encoded by [`encode_feed`] (a version byte, then fixed-size rows).

use std::fmt;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration, Utc};

use crate::{SampleRow, Store};

/// How many shards an installation has: fixed once analytics has run (the leases table holds
/// one row each), 1..=[`ShardCount::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardCount(u16);

impl ShardCount {
    pub const MAX: u16 = 4096;

    pub fn new(n: u32) -> Result<Self> {
        if n == 0 || n > Self::MAX as u32 {
            bail!(
                "analytics shards must be between 1 and {}, got {n}",
                Self::MAX
            );
        }
        Ok(Self(n as u16))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// The shard of a device's samples.
    pub fn shard_of(self, device_key: i32) -> Shard {
        Shard(device_key.rem_euclid(self.0 as i32) as u16)
    }

    pub fn all(self) -> impl Iterator<Item = Shard> {
        (0..self.0).map(Shard)
    }

    /// A replica's fair share among `live` replicas (at least one: itself).
    pub fn fair_share(self, live: usize) -> usize {
        (self.0 as usize).div_ceil(live.max(1))
    }
}

/// One shard's number, below its installation's [`ShardCount`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard(u16);

impl Shard {
    pub fn get(self) -> u16 {
        self.0
    }

    /// Only for numbers read back from the leases table or a feed topic, checked against `count`.
    pub fn parse(n: i64, count: ShardCount) -> Result<Self> {
        if n < 0 || n >= count.0 as i64 {
            bail!("shard {n} is outside 0..{}", count.0);
        }
        Ok(Self(n as u16))
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Topic prefix of the analytics feed. Devices are confined to `/tenants/<id>/...`, so only the
/// platform's internal account can publish here.
pub const FEED_PREFIX: &str = "offsite/analytics/v1/shard/";

/// The feed topic of one shard.
pub fn feed_topic(shard: Shard) -> String {
    format!("{FEED_PREFIX}{}", shard.0)
}

/// The shard a feed topic names.
pub fn parse_feed_topic(topic: &str, count: ShardCount) -> Result<Shard> {
    let n = topic
        .strip_prefix(FEED_PREFIX)
        .with_context(|| format!("not an analytics feed topic: {topic:?}"))?;
    let n: i64 = n
        .parse()
        .with_context(|| format!("bad shard number in {topic:?}"))?;
    Shard::parse(n, count)
}

/// Version byte of the feed encoding.
pub const FEED_VERSION: u8 = 1;
/// device_key i32, metric_id i32, ts µs i64, received_at µs i64, value f64, quality i16.
const ROW_BYTES: usize = 4 + 4 + 8 + 8 + 8 + 2;

/// Encodes committed rows for the feed: version byte, row count (u32), rows; little-endian.
pub fn encode_feed(rows: &[SampleRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + rows.len() * ROW_BYTES);
    out.push(FEED_VERSION);
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for r in rows {
        out.extend_from_slice(&r.device_key.to_le_bytes());
        out.extend_from_slice(&r.metric_id.to_le_bytes());
        out.extend_from_slice(&r.ts.timestamp_micros().to_le_bytes());
        out.extend_from_slice(&r.received_at.timestamp_micros().to_le_bytes());
        out.extend_from_slice(&r.value.to_le_bytes());
        out.extend_from_slice(&r.quality.to_le_bytes());
    }
    out
}

/// Why a feed message was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FeedError {
    #[error("empty feed message")]
    Empty,
    #[error("unknown feed encoding version {0}")]
    Version(u8),
    #[error("feed message length {got} does not match its {rows} rows")]
    Length { rows: u32, got: usize },
    #[error("feed row {0} has a time out of range")]
    Time(usize),
}

/// Decodes a feed message (see [`encode_feed`]).
pub fn decode_feed(b: &[u8]) -> Result<Vec<SampleRow>, FeedError> {
    let (&version, rest) = b.split_first().ok_or(FeedError::Empty)?;
    if version != FEED_VERSION {
        return Err(FeedError::Version(version));
    }
    if rest.len() < 4 {
        return Err(FeedError::Length {
            rows: 0,
            got: b.len(),
        });
    }
    let rows = u32::from_le_bytes(rest[..4].try_into().unwrap());
    let body = &rest[4..];
    if body.len() != rows as usize * ROW_BYTES {
        return Err(FeedError::Length { rows, got: b.len() });
    }
    let mut out = Vec::with_capacity(rows as usize);
    for (i, c) in body.chunks_exact(ROW_BYTES).enumerate() {
        let i32_at = |o: usize| i32::from_le_bytes(c[o..o + 4].try_into().unwrap());
        let i64_at = |o: usize| i64::from_le_bytes(c[o..o + 8].try_into().unwrap());
        out.push(SampleRow {
            device_key: i32_at(0),
            metric_id: i32_at(4),
            ts: DateTime::from_timestamp_micros(i64_at(8)).ok_or(FeedError::Time(i))?,
            received_at: DateTime::from_timestamp_micros(i64_at(16)).ok_or(FeedError::Time(i))?,
            value: f64::from_le_bytes(c[24..32].try_into().unwrap()),
            quality: i16::from_le_bytes(c[32..34].try_into().unwrap()),
        });
    }
    Ok(out)
}

/// Groups rows by shard, keeping their order within each shard.
pub fn split_by_shard(rows: &[SampleRow], count: ShardCount) -> Vec<(Shard, Vec<SampleRow>)> {
    let mut by: std::collections::BTreeMap<Shard, Vec<SampleRow>> = Default::default();
    for r in rows {
        by.entry(count.shard_of(r.device_key))
            .or_default()
            .push(r.clone());
    }
    by.into_iter().collect()
}

/// What one lease round changed for a replica.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaseRound {
    /// Every shard the replica owns after the round (renewed and acquired).
    pub owned: Vec<Shard>,
    /// Shards newly acquired, with their checkpoint (`None`: never analysed).
    pub acquired: Vec<(Shard, Option<DateTime<Utc>>)>,
    /// Shards given back as surplus.
    pub released: Vec<Shard>,
    /// Live replicas counted (this one included).
    pub live_replicas: usize,
    /// Other live in-process replicas holding shards (an exclusive round leaves their leases
    /// alone): a second ingest with in-process analytics on the same database.
    pub in_process_rivals: Vec<String>,
}

/// Where a replay stands, in `(received_at, device_key, metric_id, ts)` order (keyset paging: the
/// next page starts after it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplayCursor {
    /// Past every row received at or before this time.
    After(DateTime<Utc>),
    /// Past this row (rows received at the same time may follow it).
    Row {
        received_at: DateTime<Utc>,
        device_key: i32,
        metric_id: i32,
        ts: DateTime<Utc>,
    },
}

impl ReplayCursor {
    /// Just past `row`.
    pub fn past(row: &SampleRow) -> Self {
        Self::Row {
            received_at: row.received_at,
            device_key: row.device_key,
            metric_id: row.metric_id,
            ts: row.ts,
        }
    }

    pub fn received_at(&self) -> DateTime<Utc> {
        match *self {
            Self::After(t) | Self::Row { received_at: t, .. } => t,
        }
    }
}

/// One replay page to read: rows after `from`, received at or before `upto`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageRequest {
    pub from: ReplayCursor,
    pub upto: DateTime<Utc>,
    pub limit: i64,
}

/// How a replay pages through a shard up to its end: keyset pages over a short `received_at`
/// range, so that the BRIN index on `received_at` reads only that range's blocks (a BRIN scan
/// cannot stop at the LIMIT, so a range much longer than a page would be read again and again).
/// A short page means its range is done and the next range is twice as long; a full page goes on
/// after its last row with a range half as long.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayPaging {
    cursor: ReplayCursor,
    upto: DateTime<Utc>,
    range: Duration,
    limit: i64,
}

impl ReplayPaging {
    const FIRST_RANGE_MS: i64 = 10_000;
    const MIN_RANGE_MS: i64 = 1;
    const MAX_RANGE_MS: i64 = 3_600_000;

    /// From rows received after `after` to those received at or before `upto`, `limit` per page.
    pub fn new(after: DateTime<Utc>, upto: DateTime<Utc>, limit: i64) -> Self {
        Self {
            cursor: ReplayCursor::After(after),
            upto,
            range: Duration::milliseconds(Self::FIRST_RANGE_MS),
            limit: limit.max(1),
        }
    }

    /// The next page to read, or `None` once the end is reached.
    pub fn next_page(&self) -> Option<PageRequest> {
        let at = self.cursor.received_at();
        if matches!(self.cursor, ReplayCursor::After(_)) && at >= self.upto {
            return None;
        }
        Some(PageRequest {
            from: self.cursor,
            upto: (at + self.range).min(self.upto),
            limit: self.limit,
        })
    }

    /// Moves past a page read for `req`.
    pub fn page_read(&mut self, req: &PageRequest, rows: &[SampleRow]) {
        match rows.last() {
            Some(last) if rows.len() as i64 >= req.limit => {
                self.cursor = ReplayCursor::past(last);
                self.range = (self.range / 2).max(Duration::milliseconds(Self::MIN_RANGE_MS));
            }
            _ => {
                self.cursor = ReplayCursor::After(req.upto);
                self.range = (self.range * 2).min(Duration::milliseconds(Self::MAX_RANGE_MS));
            }
        }
    }

    /// Covers rows received between `oldest` and `newest` too: the end moves past the newest,
    /// and the cursor back before the oldest if it had passed it.
    pub fn cover(&mut self, oldest: DateTime<Utc>, newest: DateTime<Utc>) {
        self.upto = self.upto.max(newest);
        if oldest <= self.cursor.received_at() {
            self.cursor = ReplayCursor::After(oldest - Duration::microseconds(1));
        }
    }
}

impl Store {
    /// Creates the shard rows; refuses a count that differs from the one the installation has.
    pub async fn ensure_analytics_shards(&self, count: ShardCount) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('offsite.analytics_shards'))")
            .execute(&mut *tx)
            .await?;
        let have: i64 = sqlx::query_scalar("SELECT count(*) FROM analytics_shards")
            .fetch_one(&mut *tx)
            .await?;
        if have != 0 && have != count.0 as i64 {
            bail!(
                "this installation has {have} analytics shards; the configuration says {} (the count is fixed once analytics has run)",
                count.0
            );
        }
        sqlx::query("INSERT INTO analytics_shards (shard) SELECT generate_series(0, $1 - 1) ON CONFLICT DO NOTHING")
            .bind(count.0 as i32)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One round for `replica`: heartbeat, renew what it owns, give back surplus beyond its fair
    /// share, claim free or expired shards up to it. `exclusive` (a replica fed in-process, the
    /// only one that can see the stream) takes every shard, live lease or not, except those of
    /// another live in-process replica (reported in `in_process_rivals`).
    pub async fn analytics_lease_round(
        &self,
        replica: &str,
        count: ShardCount,
        lease: Duration,
        exclusive: bool,
    ) -> Result<LeaseRound> {
        let mut tx = self.pool.begin().await?;
        if exclusive {
            // Two in-process replicas starting together: the second sees the first's heartbeat
            // and leases, never a half-done claim.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('offsite.analytics_in_process'))")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO analytics_replicas (replica, seen_until, in_process) VALUES ($1, now() + $2, $3) \
             ON CONFLICT (replica) DO UPDATE SET seen_until = excluded.seen_until, in_process = excluded.in_process",
        )
        .bind(replica)
        .bind(lease)
        .bind(exclusive)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM analytics_replicas WHERE seen_until < now() - interval '1 hour'")
            .execute(&mut *tx)
            .await?;
        let live: i64 =
            sqlx::query_scalar("SELECT count(*) FROM analytics_replicas WHERE seen_until >= now()")
                .fetch_one(&mut *tx)
                .await?;
        let target = if exclusive {
            count.0 as usize
        } else {
            count.fair_share(live as usize)
        };
        // Renew what is still ours (also a lease that lapsed without anyone taking it).
        let mut owned: Vec<i32> = sqlx::query_scalar(
            "UPDATE analytics_shards SET lease_until = now() + $2 WHERE owner = $1 RETURNING shard",
        )
        .bind(replica)
        .bind(lease)
        .fetch_all(&mut *tx)
        .await?;
        owned.sort_unstable();
        let mut round = LeaseRound {
            live_replicas: live as usize,
            ..Default::default()
        };
        if owned.len() > target {
            // Surplus goes back from the top, so replicas settle on stable halves.
            let surplus: Vec<i32> = owned.split_off(target);
            sqlx::query(
                "UPDATE analytics_shards SET owner = NULL, lease_until = NULL, changed_at = now() \
                 WHERE owner = $1 AND shard = ANY($2)",
            )
            .bind(replica)
            .bind(&surplus)
            .execute(&mut *tx)
            .await?;
            for s in surplus {
                round.released.push(Shard::parse(s as i64, count)?);
            }
        } else if owned.len() < target {
            let claim = if exclusive {
                // Every shard but those under a live lease of another in-process replica.
                "SELECT shard FROM analytics_shards s WHERE owner IS DISTINCT FROM $1 AND NOT (lease_until >= now() \
                 AND EXISTS (SELECT 1 FROM analytics_replicas r WHERE r.replica = s.owner AND r.in_process)) \
                 ORDER BY shard LIMIT $2 FOR UPDATE"
            } else {
                "SELECT shard FROM analytics_shards WHERE owner IS NULL OR lease_until < now() ORDER BY shard LIMIT $2 \
                 FOR UPDATE SKIP LOCKED"
            };
            let got: Vec<(i32, Option<DateTime<Utc>>)> = sqlx::query_as(&format!(
                "UPDATE analytics_shards s SET owner = $1, lease_until = now() + $3, changed_at = now() \
                 FROM ({claim}) c WHERE s.shard = c.shard RETURNING s.shard, s.checkpoint"
            ))
            .bind(replica)
            .bind((target - owned.len()) as i64)
            .bind(lease)
            .fetch_all(&mut *tx)
            .await?;
            for (s, checkpoint) in got {
                owned.push(s);
                round
                    .acquired
                    .push((Shard::parse(s as i64, count)?, checkpoint));
            }
            owned.sort_unstable();
        }
        if exclusive && owned.len() < target {
            round.in_process_rivals = sqlx::query_scalar(
                "SELECT DISTINCT s.owner FROM analytics_shards s JOIN analytics_replicas r ON r.replica = s.owner \
                 WHERE s.lease_until >= now() AND r.in_process AND s.owner <> $1 ORDER BY 1",
            )
            .bind(replica)
            .fetch_all(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        round.owned = owned
            .into_iter()
            .map(|s| Shard::parse(s as i64, count))
            .collect::<Result<_>>()?;
        Ok(round)
    }

    /// Moves shards' checkpoints forward (never back), only where `replica` still owns them.
    pub async fn advance_analytics_checkpoints(
        &self,
        replica: &str,
        to: &[(Shard, DateTime<Utc>)],
    ) -> Result<u64> {
        if to.is_empty() {
            return Ok(0);
        }
        let shards: Vec<i32> = to.iter().map(|(s, _)| s.0 as i32).collect();
        let ats: Vec<DateTime<Utc>> = to.iter().map(|(_, t)| *t).collect();
        let r = sqlx::query(
            "UPDATE analytics_shards s SET checkpoint = greatest(s.checkpoint, u.at) \
             FROM unnest($2::int[], $3::timestamptz[]) AS u(shard, at) WHERE s.shard = u.shard AND s.owner = $1",
        )
        .bind(replica)
        .bind(&shards)
        .bind(&ats)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// A clean shutdown: every shard of `replica` free at once, the replica no longer counted.
    pub async fn release_analytics_shards(&self, replica: &str) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE analytics_shards SET owner = NULL, lease_until = NULL, changed_at = now() WHERE owner = $1",
        )
        .bind(replica)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM analytics_replicas WHERE replica = $1")
            .bind(replica)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    /// Every shard with its owner (if its lease is live) and checkpoint, for operators and tests.
    pub async fn analytics_shards(
        &self,
    ) -> Result<Vec<(i32, Option<String>, Option<DateTime<Utc>>)>> {
        Ok(sqlx::query_as(
            "SELECT shard, CASE WHEN lease_until >= now() THEN owner END, checkpoint FROM analytics_shards ORDER BY shard",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// One page of a shard's samples after `from` and received at or before `upto`, in
    /// `(received_at, device_key, metric_id, ts)` order: commit order, as the live feed delivered
    /// them. Both bounds are on `received_at`, so the BRIN index on it limits the scan to the
    /// blocks of that time range; the caller keeps the range short (a page's worth), because a
    /// BRIN scan cannot stop early at the LIMIT.
    pub async fn replay_page(
        &self,
        count: ShardCount,
        shard: Shard,
        from: ReplayCursor,
        upto: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<SampleRow>> {
        let (dev, met, ts) = match from {
            ReplayCursor::After(_) => (None, None, None),
            ReplayCursor::Row {
                device_key,
                metric_id,
                ts,
                ..
            } => (Some(device_key), Some(metric_id), Some(ts)),
        };
        let rows: Vec<(i32, i32, DateTime<Utc>, DateTime<Utc>, f64, i16)> = sqlx::query_as(
            "SELECT device_key, metric_id, ts, received_at, value, quality FROM samples \
             WHERE received_at >= $3 AND received_at <= $4 AND device_key % $1 = $2 \
             AND (($5::int IS NULL AND received_at > $3) OR (received_at, device_key, metric_id, ts) > ($3, $5, $6, $7)) \
             ORDER BY received_at, device_key, metric_id, ts LIMIT $8",
        )
        .bind(count.0 as i32)
        .bind(shard.0 as i32)
        .bind(from.received_at())
        .bind(upto)
        .bind(dev)
        .bind(met)
        .bind(ts)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(device_key, metric_id, ts, received_at, value, quality)| SampleRow {
                    device_key,
                    metric_id,
                    ts,
                    received_at,
                    value,
                    quality,
                },
            )
            .collect())
    }

    /// Summarises the block ranges of the samples' BRIN indexes (`received_at`) that no vacuum
    /// has summarised yet, returning how many. An unsummarised range matches every query, and
    /// PostgreSQL summarises new ranges only on VACUUM (`autosummarize` cannot be set on a
    /// partitioned index), so after heavy ingest the newest rows, those a replay reads, are all
    /// in such ranges: 3 million rows took ~0.3 s to summarise here, and a replay page then
    /// reads its own range only (see `docs/operations.md`).
    pub async fn summarize_received_index(&self) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        // It waits for a VACUUM of the same partition; a replay should rather go on without.
        sqlx::query("SET LOCAL lock_timeout = '5s'")
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query_scalar(
            "SELECT coalesce(sum(brin_summarize_new_values(c.oid)), 0)::int8 FROM pg_class c \
             JOIN pg_index x ON x.indexrelid = c.oid JOIN pg_am a ON a.oid = c.relam \
             WHERE a.amname = 'brin' AND c.relkind = 'i' AND (x.indrelid = 'samples'::regclass \
             OR x.indrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'samples'::regclass))",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// The database's clock (replicas compare leases and checkpoints on it, not on their own).
    pub async fn db_now(&self) -> Result<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(device_key: i32, i: i64) -> SampleRow {
        SampleRow {
            device_key,
            metric_id: 7,
            ts: DateTime::from_timestamp_micros(1_700_000_000_000_000 + i).unwrap(),
            received_at: DateTime::from_timestamp_micros(1_700_000_001_000_000 + i).unwrap(),
            value: i as f64 * 1.5,
            quality: (i % 3) as i16,
        }
    }

    #[test]
    fn feed_round_trips_and_refuses_bad_input() {
        let rows: Vec<_> = (0..5).map(|i| row(i as i32 - 2, i)).collect();
        let b = encode_feed(&rows);
        assert_eq!(decode_feed(&b).unwrap(), rows);
        assert_eq!(decode_feed(&[]), Err(FeedError::Empty));
        let mut v2 = b.clone();
        v2[0] = 2;
        assert_eq!(decode_feed(&v2), Err(FeedError::Version(2)));
        assert!(matches!(
            decode_feed(&b[..b.len() - 1]),
            Err(FeedError::Length { rows: 5, .. })
        ));
        assert!(matches!(
            decode_feed(&[1, 0]),
            Err(FeedError::Length { .. })
        ));
    }

    #[test]
    fn shards_and_topics() {
        assert!(ShardCount::new(0).is_err());
        assert!(ShardCount::new(5000).is_err());
        let c = ShardCount::new(16).unwrap();
        assert_eq!(c.shard_of(35).get(), 3);
        assert_eq!(c.shard_of(-1).get(), 15);
        assert_eq!(c.fair_share(3), 6);
        assert_eq!(c.fair_share(0), 16);
        let t = feed_topic(c.shard_of(35));
        assert_eq!(t, "offsite/analytics/v1/shard/3");
        assert_eq!(parse_feed_topic(&t, c).unwrap().get(), 3);
        assert!(parse_feed_topic("offsite/analytics/v1/shard/16", c).is_err());
        assert!(parse_feed_topic("/tenants/x/v1/data", c).is_err());
        let split = split_by_shard(&[row(1, 0), row(17, 1), row(2, 2)], c);
        assert_eq!(split.len(), 2);
        assert_eq!(
            split[0].1.len(),
            2,
            "devices 1 and 17 share shard 1, in order"
        );
    }
}
