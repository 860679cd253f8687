//! A shard's catch-up from its checkpoint, run beside the live feed instead of before it.
//!
//! When a replica acquires a shard (at start too) it already follows the shard's live feed. The
//! replay reads the shard's samples received after the checkpoint and up to `upto`, a point after
//! the feed was attached, in commit (`received_at`) order, one page at a time, while the engine
//! keeps taking live rows: live rows of a replaying shard are held here, and flow once the replay
//! has reached `upto`. Rows seen by both (received before `upto`, delivered live) are skipped by
//! the per-series recent-times guard. Held rows are bounded: beyond [`MAX_HELD_ROWS`] they are
//! dropped and counted, and the replay is extended over them instead (they are committed, so the
//! table has them).
//!
//! Pages are keyset pages over a short `received_at` range (`ReplayPaging` in the store): the
//! BRIN index on `received_at` then reads only that range's blocks.

use chrono::{DateTime, Utc};
pub use offsite_store::analytics_shards::PageRequest;
use offsite_store::analytics_shards::ReplayPaging;
use offsite_store::SampleRow;

/// Rows per replay page.
pub const PAGE_ROWS: i64 = 5000;
/// Live rows held per replaying shard before they are dropped (and re-read by the replay).
/// (16 shards replaying at once hold at most ~40 MB.)
pub const MAX_HELD_ROWS: usize = 50_000;

/// What happened to live rows offered to a replaying shard.
#[derive(Debug, Default, PartialEq)]
pub struct Held {
    /// Rows dropped because the bound was reached (the replay reads them instead).
    pub dropped: usize,
}

/// The state of one shard's replay.
#[derive(Debug)]
pub struct ShardReplay {
    /// Tells a page answer for this replay from one for an earlier replay of the same shard.
    pub generation: u64,
    /// Up to the replay's end: past the point where the live feed was attached.
    paging: ReplayPaging,
    held: Vec<SampleRow>,
    pub replayed: usize,
    pub since: DateTime<Utc>,
}

impl ShardReplay {
    pub fn new(generation: u64, after: DateTime<Utc>, upto: DateTime<Utc>) -> Self {
        Self {
            generation,
            paging: ReplayPaging::new(after, upto, PAGE_ROWS),
            held: Vec::new(),
            replayed: 0,
            since: after,
        }
    }

    /// The next page to read, or `None` once the replay has reached its end.
    pub fn next_page(&self) -> Option<PageRequest> {
        self.paging.next_page()
    }

    pub fn page_read(&mut self, req: &PageRequest, rows: &[SampleRow]) {
        self.replayed += rows.len();
        self.paging.page_read(req, rows);
    }

    /// Holds live rows until the replay is done. Over the bound, every held row is dropped and
    /// the replay covers them: its end moves past the newest, and its cursor back before the
    /// oldest if the replay had passed it (a row committed after the replay read its range).
    pub fn hold(&mut self, rows: Vec<SampleRow>) -> Held {
        if self.held.len() + rows.len() <= MAX_HELD_ROWS {
            self.held.extend(rows);
            return Held::default();
        }
        let all = std::mem::take(&mut self.held).into_iter().chain(rows);
        let (mut n, mut span) = (0usize, None::<(DateTime<Utc>, DateTime<Utc>)>);
        for r in all {
            n += 1;
            span = Some(span.map_or((r.received_at, r.received_at), |(o, y)| {
                (o.min(r.received_at), y.max(r.received_at))
            }));
        }
        if let Some((oldest, newest)) = span {
            self.paging.cover(oldest, newest);
        }
        Held { dropped: n }
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The live rows held meanwhile, in the order they arrived.
    pub fn into_held(self) -> Vec<SampleRow> {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offsite_store::analytics_shards::ReplayCursor;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn row(received: i64, i: i64) -> SampleRow {
        SampleRow {
            device_key: 1,
            metric_id: 1,
            ts: t(i),
            received_at: t(received),
            value: 0.0,
            quality: 0,
        }
    }

    #[test]
    fn pages_walk_to_the_upper_bound_and_stop() {
        let mut r = ShardReplay::new(1, t(0), t(25));
        let p = r.next_page().unwrap();
        assert_eq!((p.from, p.upto), (ReplayCursor::After(t(0)), t(10)));
        r.page_read(&p, &[row(3, 3)]);
        let p = r.next_page().unwrap();
        assert_eq!(
            (p.from, p.upto),
            (ReplayCursor::After(t(10)), t(25)),
            "wider, capped at the end"
        );
        let full: Vec<_> = (0..PAGE_ROWS).map(|i| row(12, i)).collect();
        r.page_read(&p, &full);
        let p = r.next_page().unwrap();
        assert_eq!(
            p.from,
            ReplayCursor::past(full.last().unwrap()),
            "a full page goes on after its last row"
        );
        assert_eq!(p.upto, t(22), "narrower");
        r.page_read(&p, &[]);
        let p = r.next_page().unwrap();
        assert_eq!(p.from, ReplayCursor::After(t(22)));
        r.page_read(&p, &[]);
        assert_eq!(r.next_page(), None);
        assert_eq!(r.replayed, PAGE_ROWS as usize + 1);
    }

    #[test]
    fn held_rows_over_the_bound_extend_the_replay_instead() {
        let mut r = ShardReplay::new(1, t(0), t(25));
        let p = r.next_page().unwrap();
        r.page_read(&p, &[]);
        assert_eq!(r.hold(vec![row(30, 1)]), Held::default());
        assert_eq!(r.held(), 1);
        // A row received at 5 (the replay is past 10 already) and many newer ones.
        let mut many: Vec<_> = (0..MAX_HELD_ROWS as i64).map(|i| row(40, i)).collect();
        many.push(row(5, 0));
        assert_eq!(r.hold(many).dropped, MAX_HELD_ROWS + 2);
        assert_eq!(r.held(), 0);
        let p = r.next_page().unwrap();
        assert!(
            p.from.received_at() < t(5),
            "back before the oldest dropped row: {p:?}"
        );
        let mut end = None;
        let mut r2 = r;
        while let Some(p) = r2.next_page() {
            end = Some(p.upto);
            r2.page_read(&p, &[]);
        }
        assert_eq!(end, Some(t(40)), "on to the newest dropped row");
    }
}
