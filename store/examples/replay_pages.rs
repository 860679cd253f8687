//! How long one shard's replay takes on a samples table of a few million rows: the paging the
//! analytics tier used before (`ORDER BY ts` over everything received after the checkpoint, each
//! page a scan of the whole range) against keyset pages by `received_at` over short ranges
//! (`Store::replay_page` driven by `ReplayPaging`, as the analytics replay does).
//!
//! `OFFSITE_TEST_PG_DIR=... cargo run -p offsite-store --example replay_pages -- [ROWS]`
//! (default 3,000,000 rows: 1,000 devices, 16 shards, received over 30 minutes).

use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use offsite_store::analytics_shards::{ReplayPaging, ShardCount};
use offsite_store::testing::TestDb;
use offsite_store::SampleRow;

const DEVICES: i64 = 1000;
const PAGE: i64 = 5000;

#[tokio::main]
async fn main() -> Result<()> {
    let rows: i64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(3_000_000);
    let per_device = rows / DEVICES;
    let db = TestDb::new().await?;
    let s = &db.store;
    let now = s.db_now().await?;
    let t0 = now - Duration::minutes(31);
    for d in 0..=1 {
        s.ensure_partition((t0 + Duration::days(d)).date_naive())
            .await?;
    }
    let started = Instant::now();
    // Device time one second apart per device, received over 30 minutes in ingest's order.
    sqlx::query(
        "INSERT INTO samples (device_key, metric_id, ts, received_at, value, quality) \
         SELECT d, 1, $1 + make_interval(secs => i), $1 + make_interval(secs => i * 1800.0 / $3), random() * 100, 0 \
         FROM generate_series(0, $3 - 1) i, generate_series(1, $2) d ORDER BY i, d",
    )
    .bind(t0)
    .bind(DEVICES as i32)
    .bind(per_device as i32)
    .execute(s.pool())
    .await?;
    sqlx::query("ANALYZE samples").execute(s.pool()).await?;
    println!(
        "{} rows written in {:.1} s",
        per_device * DEVICES,
        started.elapsed().as_secs_f64()
    );
    let count = ShardCount::new(16)?;
    let shard = count.shard_of(3);
    let after = t0;

    // Before: ORDER BY ts, every page scans everything received after the checkpoint. The first
    // 10 pages only (each costs about the same).
    let old = old_pages(s, count, shard, after).await?;
    println!("before (ORDER BY ts): {old:.3} s per page");

    // After: the whole shard, as the analytics replay pages it (summarising the BRIN first, as
    // the replay does; that time is included).
    let started = Instant::now();
    let ranges = s.summarize_received_index().await?;
    println!(
        "BRIN ranges summarised: {ranges} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut paging = ReplayPaging::new(after, now + Duration::seconds(10), PAGE);
    let (mut n, mut pages) = (0usize, 0);
    while let Some(req) = paging.next_page() {
        let page: Vec<SampleRow> = s
            .replay_page(count, shard, req.from, req.upto, req.limit)
            .await?;
        n += page.len();
        pages += 1;
        paging.page_read(&req, &page);
    }
    let new = started.elapsed().as_secs_f64();
    println!(
        "after (keyset by received_at, short ranges): {pages} queries, {n} rows (the whole shard), {new:.2} s, {:.3} s per query, {:.0} rows/s",
        new / pages.max(1) as f64,
        n as f64 / new
    );
    let old = old_pages(s, count, shard, after).await?;
    println!("before, with the BRIN summarised too: {old:.3} s per page");
    Ok(())
}

/// Seconds per page of the paging used before, over its first 10 pages.
async fn old_pages(
    s: &offsite_store::Store,
    count: ShardCount,
    shard: offsite_store::analytics_shards::Shard,
    after: DateTime<Utc>,
) -> Result<f64> {
    let started = Instant::now();
    let (mut cursor, mut pages) = (None::<(DateTime<Utc>, i32, i32)>, 0);
    while pages < 10 {
        let page: Vec<(i32, i32, DateTime<Utc>)> = sqlx::query_as(
            "SELECT device_key, metric_id, ts FROM samples \
             WHERE received_at > $3 AND device_key % $1 = $2 AND ($4::timestamptz IS NULL OR (ts, device_key, metric_id) > ($4, $5, $6)) \
             ORDER BY ts, device_key, metric_id LIMIT $7",
        )
        .bind(count.get() as i32)
        .bind(shard.get() as i32)
        .bind(after)
        .bind(cursor.map(|c| c.0))
        .bind(cursor.map(|c| c.1))
        .bind(cursor.map(|c| c.2))
        .bind(PAGE)
        .fetch_all(s.pool())
        .await?;
        let Some(last) = page.last() else { break };
        cursor = Some((last.2, last.0, last.1));
        pages += 1;
    }
    Ok(started.elapsed().as_secs_f64() / pages.max(1) as f64)
}
