//! Store-and-forward disk queue for one device.
//!
//! Every batch is appended here *before* it is published, and stays until the platform
//! acknowledges its sequence number, so neither an agent restart nor a power cut (subject to the
//! [`FsyncPolicy`]) loses data that was accepted from the sensors. The queue is bounded on disk:
//! when the byte budget is full, whole oldest segments are dropped and counted.
//!
//! # Layout
//!
//! A segmented append-only log in one directory:
//!
//! * `seg-<20-digit first seq>.log`: records, each
//!   `len u32 LE | crc32 u32 LE | seq u64 LE | appended_ms i64 LE | payload[len]`, where the CRC
//!   covers `seq`, `appended_ms` and `payload`. A new segment is started when the next record
//!   would take the active one past `segment_bytes`.
//! * `seg-<20-digit first seq>.ack`: the sequence numbers (u64 LE) acknowledged from that segment.
//!   Acks are not fsync'ed: a lost ack only causes a resend, which the platform deduplicates.
//! * `meta.json`: the highest seq ever appended and the drop counters, replaced atomically
//!   (temp file + rename). It is rewritten only when segments are deleted and on a clean close,
//!   which is enough because the newest seq otherwise lives in the active segment.
//!
//! Only a small index of *pending* records (seq -> segment, offset, length, time) is kept in
//! memory; payloads are read back from disk on demand, so a large backlog costs little RAM.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

/// Fixed part of a record: len, crc, seq, appended_ms.
const HEADER_LEN: u64 = 24;
/// Size of one entry in a `.ack` file.
const ACK_LEN: u64 = 8;
const META_FILE: &str = "meta.json";
const META_TMP: &str = "meta.json.tmp";
/// Smallest accepted budget; keeps the "payload <= max_bytes / 2" rule meaningful.
const MIN_MAX_BYTES: u64 = 1024;

/// When appended data is flushed to stable storage.
///
/// Deserializes (serde, snake_case) from `"always"`, `"never"` or `{"every_ms": 200}`, and parses
/// ([`FromStr`]) from `"always"`, `"never"` or `"<N>ms"` (e.g. `"200ms"`), which is also its
/// [`Display`](fmt::Display) form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Every append is fsync'ed before `append` returns: nothing acknowledged to the caller is lost.
    #[default]
    Always,
    /// The owner calls [`DiskQueue::sync`] when [`DiskQueue::sync_due`] says so (appends also
    /// sync opportunistically once the interval has elapsed); a power cut loses at most about
    /// that many milliseconds of batches.
    EveryMs(u64),
    /// Never fsync (tests, tmpfs); the OS decides. A power cut may lose recent batches.
    Never,
}

/// Error of [`FsyncPolicy::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fsync policy {0:?}: expected \"always\", \"never\" or \"<N>ms\"")]
pub struct ParseFsyncPolicyError(String);

impl FromStr for FsyncPolicy {
    type Err = ParseFsyncPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => other
                .strip_suffix("ms")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .map(Self::EveryMs)
                .ok_or_else(|| ParseFsyncPolicyError(s.to_owned())),
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Never => f.write_str("never"),
            Self::EveryMs(ms) => write!(f, "{ms}ms"),
        }
    }
}

/// Sizing and durability of a [`DiskQueue`].
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Budget for all queue files (`.log` + `.ack`); at least 1 KiB.
    pub max_bytes: u64,
    /// Target size of one segment; clamped to at most `max_bytes / 4` so that dropping the
    /// oldest segment frees a useful share of the budget without losing too much at once.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            segment_bytes: 1 << 20,
            fsync: FsyncPolicy::Always,
        }
    }
}

impl QueueConfig {
    fn clamped(mut self) -> Self {
        self.max_bytes = self.max_bytes.max(MIN_MAX_BYTES);
        self.segment_bytes = self.segment_bytes.clamp(1, self.max_bytes / 4);
        self
    }
}

/// Batches removed by the byte budget before they were acknowledged (`bytes` counts payloads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub batches: u64,
    pub bytes: u64,
}

/// What the index knows about one pending batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingInfo {
    pub seq: u64,
    pub appended_ms: i64,
    /// Payload length in bytes.
    pub len: u32,
}

/// In-memory index entry of a pending record (32 bytes + the seq key).
#[derive(Debug, Clone, Copy)]
struct Entry {
    seg: u64,
    offset: u64,
    appended_ms: i64,
    len: u32,
}

/// Book-keeping for one segment (keyed by its first seq).
#[derive(Debug, Default)]
struct Segment {
    log_bytes: u64,
    ack_bytes: u64,
    /// Records in the `.log` file (pending or not).
    records: u64,
    /// Records not acknowledged yet; 0 means the segment can go.
    pending: u64,
}

impl Segment {
    /// Bytes charged against the budget: the log plus room for one ack per record, so that acks
    /// written later can never push the files over `max_bytes`.
    fn reserved(&self) -> u64 {
        self.log_bytes + self.ack_bytes.max(self.records * ACK_LEN)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Meta {
    last_seq: Option<u64>,
    dropped_batches: u64,
    dropped_bytes: u64,
}

/// The store-and-forward queue of one device. See the [module documentation](self).
pub struct DiskQueue {
    dir: PathBuf,
    cfg: QueueConfig,
    segments: BTreeMap<u64, Segment>,
    index: BTreeMap<u64, Entry>,
    /// The segment being written; never dropped by the budget while it is active.
    active: Option<(u64, File)>,
    /// Cached handles: acks and reads mostly hit the same (oldest) segment in a row.
    ack_file: Option<(u64, File)>,
    read_file: Option<(u64, File)>,
    /// Current values, and what `meta.json` holds, to skip redundant rewrites.
    meta: Meta,
    meta_on_disk: Meta,
    /// Appended data not fsync'ed yet / directory entries not fsync'ed yet.
    unsynced: bool,
    dir_dirty: bool,
    last_sync: Instant,
}

impl DiskQueue {
    /// Opens or creates the queue in `dir`; recovers after a crash: a torn/corrupt tail record
    /// (bad length or CRC) is truncated away, everything before it is kept.
    ///
    /// In an older segment a bad record only hides the rest of that segment (logged as a
    /// warning); segments with nothing pending are deleted; if the budget shrank, the oldest
    /// segments are dropped (counted).
    pub fn open(dir: &Path, cfg: QueueConfig) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let meta = read_meta(dir)?;
        let mut q = DiskQueue {
            dir: dir.to_path_buf(),
            cfg: cfg.clamped(),
            segments: BTreeMap::new(),
            index: BTreeMap::new(),
            active: None,
            ack_file: None,
            read_file: None,
            meta,
            meta_on_disk: meta,
            unsynced: false,
            dir_dirty: false,
            last_sync: Instant::now(),
        };
        q.recover()?;
        Ok(q)
    }

    /// Appends a batch (seq must be greater than every seq appended before, else Err
    /// InvalidInput). Applies the fsync policy (Always: data is fsync'ed before returning). If
    /// the queue's bytes on disk would exceed max_bytes, whole oldest segments are deleted first
    /// (drop oldest), their still-pending batches counted as dropped and returned. Never drops
    /// the segment being written. A single payload larger than max_bytes/2 is refused with
    /// Err(InvalidInput).
    pub fn append(&mut self, seq: u64, appended_ms: i64, payload: &[u8]) -> io::Result<Dropped> {
        if let Some(last) = self.meta.last_seq {
            if seq <= last {
                return Err(invalid_input(format!(
                    "seq {seq} is not above the last appended seq {last}"
                )));
            }
        }
        let len = payload.len() as u64;
        if len > self.cfg.max_bytes / 2 || len > u64::from(u32::MAX) {
            return Err(invalid_input(format!(
                "payload of {len} bytes exceeds half the queue budget ({} bytes)",
                self.cfg.max_bytes
            )));
        }
        let rec_len = HEADER_LEN + len;

        // Start a new segment when there is none or the record would overflow the active one
        // (an empty active segment takes any record, so an oversized record is never stuck).
        let mut roll = match &self.active {
            None => true,
            Some((id, _)) => {
                let s = &self.segments[id];
                s.records > 0 && s.log_bytes + rec_len > self.cfg.segment_bytes
            }
        };

        // Make room (the record plus the room reserved for its future ack).
        let victims = self.select_victims(rec_len + ACK_LEN, &mut roll, true);
        let dropped = self.drop_segments(&victims)?;

        if roll {
            self.roll(seq)?;
        }
        let (seg_id, file) = match self.active.as_mut() {
            Some((id, f)) => (*id, f),
            None => return Err(io::Error::other("no active segment after roll")),
        };
        let seg = self
            .segments
            .get_mut(&seg_id)
            .ok_or_else(|| io::Error::other("active segment missing"))?;
        let offset = seg.log_bytes;

        let record = encode_record(seq, appended_ms, payload);
        let written = file.write_all(&record).and_then(|()| match self.cfg.fsync {
            FsyncPolicy::Always => file.sync_data(),
            _ => Ok(()),
        });
        if let Err(e) = written {
            // Cut off whatever part of the record made it, so the file stays a valid log.
            if let Err(e2) = file
                .set_len(offset)
                .and_then(|()| file.seek(SeekFrom::Start(offset)).map(drop))
            {
                warn!(error = %e2, "queue: could not roll back a failed append");
            }
            return Err(e);
        }

        seg.log_bytes += rec_len;
        seg.records += 1;
        seg.pending += 1;
        self.index.insert(
            seq,
            Entry {
                seg: seg_id,
                offset,
                appended_ms,
                len: len as u32,
            },
        );
        self.meta.last_seq = Some(seq);

        match self.cfg.fsync {
            // A new segment's directory entry must be durable too.
            FsyncPolicy::Always if self.dir_dirty => self.sync()?,
            FsyncPolicy::Always => self.last_sync = Instant::now(),
            FsyncPolicy::EveryMs(_) => {
                self.unsynced = true;
                if self.sync_due() {
                    self.sync()?;
                }
            }
            FsyncPolicy::Never => self.unsynced = true,
        }
        Ok(dropped)
    }

    /// Marks a seq acknowledged. Returns true if it was pending. Segments whose records are all
    /// acknowledged (and which are not the active segment) are deleted. Acks need not be
    /// fsync'ed (a lost ack only means a resend; the platform deduplicates) but are durable
    /// across a clean restart (written straight to the `.ack` file, no user-space buffer).
    pub fn ack(&mut self, seq: u64) -> io::Result<bool> {
        let Some(seg_id) = self.index.get(&seq).map(|e| e.seg) else {
            return Ok(false);
        };
        let ack_bytes = self.segments.get(&seg_id).map_or(0, |s| s.ack_bytes);
        self.write_ack(seg_id, seq, ack_bytes)?;
        self.index.remove(&seq);
        let Some(seg) = self.segments.get_mut(&seg_id) else {
            return Ok(true);
        };
        seg.ack_bytes += ACK_LEN;
        seg.pending = seg.pending.saturating_sub(1);
        if seg.pending == 0 && !self.is_active(seg_id) {
            // The ack itself is recorded; failing to delete is only housekeeping, retried when
            // the next segment rolls or at the next open.
            if let Err(e) = self.reap() {
                warn!(error = %e, segment = seg_id, "queue: could not delete an acknowledged segment");
            }
        }
        Ok(true)
    }

    /// Number of unacknowledged batches.
    pub fn pending(&self) -> usize {
        self.index.len()
    }

    /// Bytes of queue files (`.log` + `.ack`) on disk.
    pub fn bytes(&self) -> u64 {
        self.segments
            .values()
            .map(|s| s.log_bytes + s.ack_bytes)
            .sum()
    }

    pub fn oldest_pending(&self) -> Option<PendingInfo> {
        self.index.first_key_value().map(|(&seq, e)| PendingInfo {
            seq,
            appended_ms: e.appended_ms,
            len: e.len,
        })
    }

    /// Index data of one pending batch (None if not pending).
    pub fn info(&self, seq: u64) -> Option<PendingInfo> {
        self.index.get(&seq).map(|e| PendingInfo {
            seq,
            appended_ms: e.appended_ms,
            len: e.len,
        })
    }

    /// Pending seqs in ascending order strictly after `after` (None = from the first), at most
    /// `limit`.
    pub fn pending_after(&self, after: Option<u64>, limit: usize) -> Vec<u64> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.index
            .range((lower, Bound::Unbounded))
            .take(limit)
            .map(|(&seq, _)| seq)
            .collect()
    }

    /// Reads a pending batch's payload from disk (None if not pending). A record that no longer
    /// matches its index entry or CRC is reported as `InvalidData`.
    pub fn read(&mut self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(e) = self.index.get(&seq).copied() else {
            return Ok(None);
        };
        if self.read_file.as_ref().map(|(id, _)| *id) != Some(e.seg) {
            self.read_file = Some((e.seg, File::open(self.seg_path(e.seg, "log"))?));
        }
        let Some((_, file)) = self.read_file.as_mut() else {
            return Ok(None);
        };
        file.seek(SeekFrom::Start(e.offset))?;
        let mut head = [0u8; HEADER_LEN as usize];
        file.read_exact(&mut head)?;
        let h = Header::decode(&head);
        if h.seq != seq || h.len != e.len {
            return Err(invalid_data(format!(
                "record at offset {} is not seq {seq}",
                e.offset
            )));
        }
        let mut payload = vec![0u8; e.len as usize];
        file.read_exact(&mut payload)?;
        if record_crc(h.seq, h.appended_ms, &payload) != h.crc {
            return Err(invalid_data(format!("CRC mismatch in record seq {seq}")));
        }
        Ok(Some(payload))
    }

    /// Highest seq ever appended (survives restart even if everything was acknowledged and
    /// deleted, via `meta.json`), so a restarted agent continues numbering above it.
    pub fn last_seq(&self) -> Option<u64> {
        self.meta.last_seq
    }

    /// Total batches dropped by the budget since the queue was created (persisted in `meta.json`).
    pub fn dropped_total(&self) -> Dropped {
        Dropped {
            batches: self.meta.dropped_batches,
            bytes: self.meta.dropped_bytes,
        }
    }

    /// fsyncs outstanding appends and directory changes (for EveryMs: the owner calls this on a
    /// timer; Drop also calls it best-effort).
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            if let Some((_, f)) = &self.active {
                f.sync_data()?;
            }
        }
        if self.dir_dirty {
            sync_dir(&self.dir)?;
        }
        self.unsynced = false;
        self.dir_dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Whether the policy says a sync is due now (EveryMs elapsed since last sync with unsynced
    /// data).
    pub fn sync_due(&self) -> bool {
        match self.cfg.fsync {
            FsyncPolicy::EveryMs(ms) => {
                (self.unsynced || self.dir_dirty)
                    && self.last_sync.elapsed() >= Duration::from_millis(ms)
            }
            FsyncPolicy::Always | FsyncPolicy::Never => false,
        }
    }

    /// The queue's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The effective configuration (after clamping).
    pub fn config(&self) -> &QueueConfig {
        &self.cfg
    }

    /// Number of segments (`.log` files) currently on disk.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    // ---- internals -------------------------------------------------------------------------

    fn seg_path(&self, id: u64, ext: &str) -> PathBuf {
        seg_path(&self.dir, id, ext)
    }

    fn is_active(&self, id: u64) -> bool {
        self.active.as_ref().is_some_and(|(a, _)| *a == id)
    }

    /// Records that directory entries changed; with `Always` they are made durable right away.
    fn dir_changed(&mut self) -> io::Result<()> {
        self.dir_dirty = true;
        if self.cfg.fsync == FsyncPolicy::Always {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Picks the oldest segments to drop so that `extra` more bytes fit in the budget. If only
    /// the active segment is left and `may_roll`, sets `roll` so it stops being active and can
    /// go too (only possible with unusual configurations). Victims are always a prefix of
    /// `segments`.
    fn select_victims(&self, extra: u64, roll: &mut bool, may_roll: bool) -> Vec<u64> {
        let mut used: u64 = self.segments.values().map(Segment::reserved).sum();
        let mut victims = Vec::new();
        if used + extra <= self.cfg.max_bytes {
            return victims;
        }
        let mut oldest = self.segments.iter().peekable();
        while used + extra > self.cfg.max_bytes {
            let Some((&id, seg)) = oldest.peek() else {
                break;
            };
            if self.is_active(id) && !*roll {
                if !may_roll {
                    break;
                }
                *roll = true;
            }
            used -= seg.reserved();
            victims.push(id);
            oldest.next();
        }
        victims
    }

    /// Deletes `victims` (a prefix of `segments`), counting their pending batches as dropped.
    fn drop_segments(&mut self, victims: &[u64]) -> io::Result<Dropped> {
        let Some(&last_victim) = victims.last() else {
            return Ok(Dropped::default());
        };
        // Victims are the oldest segments, and seqs of a segment lie below the next one's id,
        // so their pending records are exactly the index entries below the first survivor.
        let bound = self
            .segments
            .range((Bound::Excluded(last_victim), Bound::Unbounded))
            .next()
            .map(|(&id, _)| id);
        let range = match bound {
            Some(b) => self.index.range(..b),
            None => self.index.range(..),
        };
        let mut dropped = Dropped::default();
        for (_, e) in range {
            dropped.batches += 1;
            dropped.bytes += u64::from(e.len);
        }

        // Count first, delete second: a crash in between over-counts rather than losing data.
        let mut meta = self.meta;
        meta.dropped_batches += dropped.batches;
        meta.dropped_bytes += dropped.bytes;
        self.write_meta(meta)?;
        if dropped.batches > 0 {
            warn!(
                batches = dropped.batches,
                bytes = dropped.bytes,
                segments = victims.len(),
                "queue: byte budget full, dropped the oldest unacknowledged batches"
            );
        }

        self.index = match bound {
            Some(b) => self.index.split_off(&b),
            None => BTreeMap::new(),
        };
        let mut first_err = None;
        for &id in victims {
            if let Err(e) = self.remove_segment(id) {
                first_err.get_or_insert(e);
            }
        }
        self.dir_changed()?;
        first_err.map_or(Ok(dropped), Err)
    }

    /// Deletes every non-active segment that has nothing pending.
    fn reap(&mut self) -> io::Result<()> {
        let done: Vec<u64> = self
            .segments
            .iter()
            .filter(|(&id, s)| s.pending == 0 && !self.is_active(id))
            .map(|(&id, _)| id)
            .collect();
        if done.is_empty() {
            return Ok(());
        }
        // Persist last_seq before its segment may disappear.
        self.write_meta(self.meta)?;
        for id in done {
            debug!(segment = id, "queue: deleting fully acknowledged segment");
            self.remove_segment(id)?;
        }
        self.dir_changed()
    }

    /// Forgets segment `id` and removes its files (the `.log` first: a leftover `.ack` alone is
    /// harmless and cleaned up at open, a leftover `.log` would resurrect acknowledged data).
    fn remove_segment(&mut self, id: u64) -> io::Result<()> {
        self.segments.remove(&id);
        if self.is_active(id) {
            self.active = None;
        }
        if self.ack_file.as_ref().is_some_and(|(a, _)| *a == id) {
            self.ack_file = None;
        }
        if self.read_file.as_ref().is_some_and(|(a, _)| *a == id) {
            self.read_file = None;
        }
        remove_if_exists(&self.seg_path(id, "log"))?;
        remove_if_exists(&self.seg_path(id, "ack"))
    }

    /// Closes the active segment and starts `seg-<first_seq>.log`.
    fn roll(&mut self, first_seq: u64) -> io::Result<()> {
        if let Some((_, old)) = self.active.take() {
            // `sync` only covers the active file, so flush the one being closed now.
            if self.unsynced && self.cfg.fsync != FsyncPolicy::Never {
                old.sync_data()?;
                self.unsynced = false;
            }
        }
        // The previous active segment may have been fully acknowledged already.
        self.reap()?;
        // No tracked segment can have this id (seqs only grow), so anything there is stale.
        remove_if_exists(&self.seg_path(first_seq, "ack"))?;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.seg_path(first_seq, "log"))?;
        self.segments.insert(first_seq, Segment::default());
        self.active = Some((first_seq, file));
        self.dir_dirty = true; // made durable together with the first record (see `append`)
        Ok(())
    }

    fn write_ack(&mut self, seg_id: u64, seq: u64, ack_bytes: u64) -> io::Result<()> {
        if self.ack_file.as_ref().map(|(id, _)| *id) != Some(seg_id) {
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .open(self.seg_path(seg_id, "ack"))?;
            self.ack_file = Some((seg_id, f));
        }
        let Some((_, f)) = self.ack_file.as_mut() else {
            return Err(io::Error::other("ack file not open"));
        };
        if let Err(e) = f.write_all(&seq.to_le_bytes()) {
            // Keep the file a whole number of entries, or later acks would be misread.
            if let Err(e2) = f.set_len(ack_bytes) {
                warn!(error = %e2, "queue: could not roll back a failed ack write");
            }
            self.ack_file = None;
            return Err(e);
        }
        Ok(())
    }

    /// Writes `meta` to `meta.json` (temp file + rename) unless it is already there.
    fn write_meta(&mut self, meta: Meta) -> io::Result<()> {
        if meta == self.meta_on_disk {
            self.meta = meta;
            return Ok(());
        }
        let durable = self.cfg.fsync != FsyncPolicy::Never;
        let tmp = self.dir.join(META_TMP);
        let json = serde_json::to_vec(&meta).map_err(io::Error::other)?;
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&json)?;
            if durable {
                f.sync_all()?;
            }
        }
        fs::rename(&tmp, self.dir.join(META_FILE))?;
        if durable {
            sync_dir(&self.dir)?;
        }
        self.meta = meta;
        self.meta_on_disk = meta;
        Ok(())
    }

    /// Rebuilds the index from the files in `dir` (see [`DiskQueue::open`]).
    fn recover(&mut self) -> io::Result<()> {
        let mut logs = Vec::new();
        let mut acks = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            match parse_seg_name(name) {
                Some((id, "log")) => logs.push(id),
                Some((id, "ack")) => acks.push(id),
                _ if name == META_TMP => remove_if_exists(&entry.path())?,
                _ => {}
            }
        }
        logs.sort_unstable();
        acks.sort_unstable();
        let mut orphans_removed = false;
        let mut max_seq = self.meta.last_seq;

        for (i, &id) in logs.iter().enumerate() {
            let next_id = logs.get(i + 1).copied();
            let path = self.seg_path(id, "log");
            let scan = scan_segment(&path, id, next_id, &mut self.index)?;
            let mut log_bytes = scan.file_len;
            if let Some(reason) = scan.bad {
                if next_id.is_none() {
                    // Torn or corrupt tail of the last segment: the expected result of a crash.
                    warn!(file = %path.display(), offset = scan.good_len, reason,
                        "queue: truncating torn tail of the last segment");
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(scan.good_len)?;
                    f.sync_all()?;
                    log_bytes = scan.good_len;
                } else {
                    warn!(file = %path.display(), offset = scan.good_len, reason,
                        lost_bytes = scan.file_len - scan.good_len,
                        "queue: corrupt record in an older segment, keeping only the records before it");
                }
            }
            max_seq = max_seq.max(scan.max_seq);
            self.segments.insert(
                id,
                Segment {
                    log_bytes,
                    ack_bytes: 0,
                    records: scan.records,
                    pending: scan.records,
                },
            );
        }

        for id in acks {
            let path = self.seg_path(id, "ack");
            let Some(seg) = self.segments.get_mut(&id) else {
                debug!(file = %path.display(), "queue: removing ack file without a segment");
                remove_if_exists(&path)?;
                orphans_removed = true;
                continue;
            };
            let data = fs::read(&path)?;
            let whole = data.len() - data.len() % ACK_LEN as usize;
            if whole != data.len() {
                warn!(file = %path.display(), "queue: truncating torn ack entry");
                OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(whole as u64)?;
            }
            seg.ack_bytes = whole as u64;
            for chunk in data[..whole].chunks_exact(ACK_LEN as usize) {
                let seq = u64::from_le_bytes(le_array(chunk));
                if self.index.get(&seq).is_some_and(|e| e.seg == id) {
                    self.index.remove(&seq);
                    seg.pending -= 1;
                }
            }
        }

        // The newest segment stays active (appends continue in it) if it still has pending
        // records; otherwise the next append starts a fresh one.
        if let Some((&id, seg)) = self.segments.last_key_value() {
            if seg.pending > 0 {
                let mut f = OpenOptions::new()
                    .write(true)
                    .open(self.seg_path(id, "log"))?;
                f.seek(SeekFrom::Start(seg.log_bytes))?;
                self.active = Some((id, f));
            }
        }

        // `reap` persists the numbering (meta.json) before deleting the segments that carried it.
        self.meta.last_seq = max_seq;
        self.reap()?;

        // A smaller budget than last time: drop the oldest until it fits.
        let mut roll = false;
        let victims = self.select_victims(0, &mut roll, false);
        if !victims.is_empty() {
            self.drop_segments(&victims)?;
        }

        if orphans_removed {
            self.dir_changed()?;
        }
        debug!(dir = %self.dir.display(), pending = self.index.len(), segments = self.segments.len(),
            last_seq = ?self.meta.last_seq, "queue: opened");
        Ok(())
    }
}

impl Drop for DiskQueue {
    /// Best effort: flush outstanding appends and persist `last_seq`/counters on a clean close.
    fn drop(&mut self) {
        if self.cfg.fsync != FsyncPolicy::Never {
            if let Err(e) = self.sync() {
                warn!(error = %e, "queue: sync on close failed");
            }
        }
        if let Err(e) = self.write_meta(self.meta) {
            warn!(error = %e, "queue: writing meta on close failed");
        }
    }
}

impl fmt::Debug for DiskQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskQueue")
            .field("dir", &self.dir)
            .field("cfg", &self.cfg)
            .field("segments", &self.segments.len())
            .field("pending", &self.index.len())
            .field("last_seq", &self.meta.last_seq)
            .finish_non_exhaustive()
    }
}

// ---- record format and file helpers ------------------------------------------------------------

struct Header {
    len: u32,
    crc: u32,
    seq: u64,
    appended_ms: i64,
}

impl Header {
    fn decode(b: &[u8; HEADER_LEN as usize]) -> Self {
        Header {
            len: u32::from_le_bytes(le_array(&b[0..4])),
            crc: u32::from_le_bytes(le_array(&b[4..8])),
            seq: u64::from_le_bytes(le_array(&b[8..16])),
            appended_ms: i64::from_le_bytes(le_array(&b[16..24])),
        }
    }
}

/// Copies a slice of known length into an array (the callers slice exact widths).
fn le_array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

fn record_crc(seq: u64, appended_ms: i64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&appended_ms.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// One buffer so the record reaches the file in a single write.
fn encode_record(seq: u64, appended_ms: i64, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN as usize + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&record_crc(seq, appended_ms, payload).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&appended_ms.to_le_bytes());
    buf.extend_from_slice(payload);
    buf
}

struct Scan {
    /// Bytes of valid records from the start.
    good_len: u64,
    file_len: u64,
    records: u64,
    max_seq: Option<u64>,
    /// Why the scan stopped before the end of the file.
    bad: Option<&'static str>,
}

/// Reads the records of segment `id`, adding them to `index`. A record is valid if it is
/// complete, its CRC matches, and its seq is increasing within `[id, next_id)`.
fn scan_segment(
    path: &Path,
    id: u64,
    next_id: Option<u64>,
    index: &mut BTreeMap<u64, Entry>,
) -> io::Result<Scan> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(64 << 10, file);
    let mut scan = Scan {
        good_len: 0,
        file_len,
        records: 0,
        max_seq: None,
        bad: None,
    };
    let mut payload = Vec::new();
    let mut head = [0u8; HEADER_LEN as usize];
    let mut off = 0u64;
    while off < file_len {
        if file_len - off < HEADER_LEN {
            scan.bad = Some("incomplete header");
            break;
        }
        r.read_exact(&mut head)?;
        let h = Header::decode(&head);
        if u64::from(h.len) > file_len - off - HEADER_LEN {
            scan.bad = Some("length runs past the end of the file");
            break;
        }
        payload.resize(h.len as usize, 0);
        r.read_exact(&mut payload)?;
        if record_crc(h.seq, h.appended_ms, &payload) != h.crc {
            scan.bad = Some("CRC mismatch");
            break;
        }
        let in_range = h.seq >= id
            && next_id.is_none_or(|n| h.seq < n)
            && scan.max_seq.is_none_or(|m| h.seq > m);
        if !in_range {
            scan.bad = Some("sequence number out of order");
            break;
        }
        index.insert(
            h.seq,
            Entry {
                seg: id,
                offset: off,
                appended_ms: h.appended_ms,
                len: h.len,
            },
        );
        off += HEADER_LEN + u64::from(h.len);
        scan.records += 1;
        scan.max_seq = Some(h.seq);
    }
    scan.good_len = off;
    Ok(scan)
}

fn seg_path(dir: &Path, id: u64, ext: &str) -> PathBuf {
    dir.join(format!("seg-{id:020}.{ext}"))
}

/// `seg-<20 digits>.<log|ack>` -> (id, ext).
fn parse_seg_name(name: &str) -> Option<(u64, &str)> {
    let (digits, ext) = name.strip_prefix("seg-")?.split_once('.')?;
    if digits.len() != 20
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !matches!(ext, "log" | "ack")
    {
        return None;
    }
    Some((digits.parse().ok()?, ext))
}

fn read_meta(dir: &Path) -> io::Result<Meta> {
    match fs::read(dir.join(META_FILE)) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            // Only counters and a numbering floor live here; the segments still hold the data.
            warn!(error = %e, "queue: unreadable meta.json, starting its counters from zero");
            Meta::default()
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Meta::default()),
        Err(e) => Err(e),
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes created/renamed/deleted directory entries durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn invalid_input(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_bytes: u64, segment_bytes: u64, fsync: FsyncPolicy) -> QueueConfig {
        QueueConfig {
            max_bytes,
            segment_bytes,
            fsync,
        }
    }

    fn payload(seq: u64, len: usize) -> Vec<u8> {
        let mut p = format!("{{\"seq\":{seq},\"pad\":\"").into_bytes();
        p.resize(len.max(p.len() + 2) - 2, b'x');
        p.extend_from_slice(b"\"}");
        p
    }

    fn count_files(dir: &Path, ext: &str) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .ends_with(ext)
            })
            .count()
    }

    fn log_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn append_ack_read_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DiskQueue::open(dir.path(), QueueConfig::default()).unwrap();
        assert_eq!(q.pending(), 0);
        assert_eq!(q.last_seq(), None);
        for seq in 1..=5 {
            assert_eq!(
                q.append(seq, 1000 + seq as i64, &payload(seq, 100))
                    .unwrap(),
                Dropped::default()
            );
        }
        assert_eq!(q.pending(), 5);
        assert_eq!(q.last_seq(), Some(5));
        assert_eq!(q.bytes(), 5 * (HEADER_LEN + 100));
        assert_eq!(q.read(3).unwrap(), Some(payload(3, 100)));
        assert_eq!(
            q.oldest_pending(),
            Some(PendingInfo {
                seq: 1,
                appended_ms: 1001,
                len: 100
            })
        );

        assert!(q.ack(1).unwrap());
        assert!(!q.ack(1).unwrap(), "second ack of the same seq");
        assert!(!q.ack(99).unwrap(), "ack of an unknown seq");
        assert!(q.ack(3).unwrap());
        assert_eq!(q.pending(), 3);
        assert_eq!(q.read(1).unwrap(), None);
        assert_eq!(q.read(3).unwrap(), None);
        assert_eq!(q.read(4).unwrap(), Some(payload(4, 100)));
        assert_eq!(q.oldest_pending().map(|p| p.seq), Some(2));
        // Acks are stored on disk and counted.
        assert_eq!(q.bytes(), 5 * (HEADER_LEN + 100) + 2 * ACK_LEN);
    }

    #[test]
    fn pending_after_orders_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DiskQueue::open(dir.path(), cfg(1 << 20, 4096, FsyncPolicy::Never)).unwrap();
        // Non-contiguous seqs spread over several segments.
        for seq in (10..60).step_by(5) {
            q.append(seq, 0, &payload(seq, 1000)).unwrap();
        }
        assert!(q.segment_count() > 1);
        q.ack(20).unwrap();
        assert_eq!(q.pending_after(None, 3), vec![10, 15, 25]);
        assert_eq!(q.pending_after(Some(15), 2), vec![25, 30]);
        assert_eq!(
            q.pending_after(Some(17), 100),
            vec![25, 30, 35, 40, 45, 50, 55]
        );
        assert_eq!(q.pending_after(Some(55), 10), Vec::<u64>::new());
        assert_eq!(q.pending_after(None, 0), Vec::<u64>::new());
    }

    #[test]
    fn reopen_keeps_pending_payloads_acks_and_last_seq() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(1 << 20, 4096, FsyncPolicy::Always);
        let mut q = DiskQueue::open(dir.path(), c.clone()).unwrap();
        for seq in 1..=12 {
            q.append(seq, seq as i64 * 7, &payload(seq, 900)).unwrap();
        }
        for seq in [2, 5, 11] {
            assert!(q.ack(seq).unwrap());
        }
        let before = q.pending_after(None, usize::MAX);
        let infos: Vec<_> = before.iter().map(|&s| q.info(s).unwrap()).collect();
        // A crash: no Drop, so no final sync and no meta.json write.
        std::mem::forget(q);

        let mut q = DiskQueue::open(dir.path(), c.clone()).unwrap();
        assert_eq!(q.pending_after(None, usize::MAX), before);
        assert_eq!(q.last_seq(), Some(12));
        for (&seq, info) in before.iter().zip(&infos) {
            assert_eq!(q.read(seq).unwrap(), Some(payload(seq, 900)));
            assert_eq!(q.info(seq).as_ref(), Some(info));
        }
        for seq in [2, 5, 11] {
            assert_eq!(q.read(seq).unwrap(), None, "acked seq {seq} came back");
            assert!(!q.ack(seq).unwrap());
        }
        // Appending continues above the recovered numbering, and a clean close keeps it all.
        assert!(q.append(12, 0, b"x").is_err());
        q.append(13, 0, &payload(13, 10)).unwrap();
        assert!(q.ack(1).unwrap());
        drop(q);

        let mut q = DiskQueue::open(dir.path(), c).unwrap();
        assert_eq!(q.last_seq(), Some(13));
        assert_eq!(q.pending(), before.len());
        assert_eq!(q.read(13).unwrap(), Some(payload(13, 10)));
        assert_eq!(q.read(1).unwrap(), None);
    }

    #[test]
    fn torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(1 << 20, 1 << 16, FsyncPolicy::Always);
        let mut q = DiskQueue::open(dir.path(), c.clone()).unwrap();
        for seq in 1..=3 {
            q.append(seq, 0, &payload(seq, 200)).unwrap();
        }
        drop(q);
        let logs = log_files(dir.path());
        assert_eq!(logs.len(), 1);
        let good_len = fs::metadata(&logs[0]).unwrap().len();
        // Half of a record for seq 4 (valid-looking header, payload cut short).
        let rec = encode_record(4, 0, &payload(4, 200));
        OpenOptions::new()
            .append(true)
            .open(&logs[0])
            .unwrap()
            .write_all(&rec[..rec.len() / 2])
            .unwrap();

        let mut q = DiskQueue::open(dir.path(), c.clone()).unwrap();
        assert_eq!(q.pending_after(None, 10), vec![1, 2, 3]);
        assert_eq!(
            fs::metadata(&logs[0]).unwrap().len(),
            good_len,
            "torn tail not truncated"
        );
        q.append(4, 0, &payload(4, 50)).unwrap();
        drop(q);

        // Plain garbage (too short for a header) is cut off as well.
        OpenOptions::new()
            .append(true)
            .open(&logs[0])
            .unwrap()
            .write_all(b"\xde\xad\xbe")
            .unwrap();
        let mut q = DiskQueue::open(dir.path(), c).unwrap();
        assert_eq!(q.pending_after(None, 10), vec![1, 2, 3, 4]);
        for seq in 1..=3 {
            assert_eq!(q.read(seq).unwrap(), Some(payload(seq, 200)));
        }
        assert_eq!(q.read(4).unwrap(), Some(payload(4, 50)));
    }

    #[test]
    fn corrupt_crc_in_last_record_drops_only_that_record() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(1 << 20, 1 << 16, FsyncPolicy::Always);
        let mut q = DiskQueue::open(dir.path(), c.clone()).unwrap();
        for seq in 1..=3 {
            q.append(seq, 0, &payload(seq, 200)).unwrap();
        }
        drop(q);
        let log = &log_files(dir.path())[0];
        let mut data = fs::read(log).unwrap();
        let n = data.len();
        data[n - 5] ^= 0x40; // inside seq 3's payload
        fs::write(log, &data).unwrap();

        let mut q = DiskQueue::open(dir.path(), c).unwrap();
        assert_eq!(q.pending_after(None, 10), vec![1, 2]);
        assert_eq!(q.read(2).unwrap(), Some(payload(2, 200)));
        assert_eq!(q.read(3).unwrap(), None);
        // seq 3 was appended (and may have been sent): its number is not reused.
        assert_eq!(q.last_seq(), Some(3));
        assert_eq!(q.bytes(), 2 * (HEADER_LEN + 200));
    }

    #[test]
    fn corrupt_record_in_older_segment_keeps_its_prefix_and_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(1 << 20, 1000, FsyncPolicy::Never);
        let mut q = DiskQueue::open(dir.path(), c.clone()).unwrap();
        for seq in 1..=9 {
            q.append(seq, 0, &payload(seq, 300)).unwrap(); // 3 records per segment
        }
        assert_eq!(q.segment_count(), 3);
        drop(q);
        let first = &log_files(dir.path())[0];
        let mut data = fs::read(first).unwrap();
        let second_record_payload = (HEADER_LEN + 300 + HEADER_LEN + 10) as usize;
        data[second_record_payload] ^= 1;
        fs::write(first, &data).unwrap();

        let mut q = DiskQueue::open(dir.path(), c).unwrap();
        assert_eq!(q.pending_after(None, 20), vec![1, 4, 5, 6, 7, 8, 9]);
        assert_eq!(q.read(1).unwrap(), Some(payload(1, 300)));
        assert_eq!(q.read(9).unwrap(), Some(payload(9, 300)));
    }

    #[test]
    fn budget_drops_oldest_segments_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(64 << 10, 8 << 10, FsyncPolicy::Never);
        let mut q = DiskQueue::open(dir.path(), c.clone()).unwrap();
        let mut dropped = Dropped::default();
        for seq in 1..=300u64 {
            let d = q.append(seq, seq as i64, &payload(seq, 1000)).unwrap();
            dropped.batches += d.batches;
            dropped.bytes += d.bytes;
            assert!(
                q.bytes() <= c.max_bytes,
                "{} bytes on disk after seq {seq}",
                q.bytes()
            );
        }
        let total = q.dropped_total();
        assert!(total.batches > 0);
        assert_eq!(
            total, dropped,
            "returned drops and the running total disagree"
        );
        assert_eq!(total.bytes, total.batches * 1000);
        // Exactly the oldest are gone; everything newer is pending and readable.
        assert_eq!(q.pending() as u64 + total.batches, 300);
        assert_eq!(q.oldest_pending().unwrap().seq, total.batches + 1);
        assert_eq!(q.read(1).unwrap(), None);
        for seq in total.batches + 1..=300 {
            assert_eq!(q.read(seq).unwrap(), Some(payload(seq, 1000)), "seq {seq}");
        }
        // Acks stay within the budget (room for them is reserved).
        for seq in q
            .pending_after(None, usize::MAX)
            .into_iter()
            .rev()
            .step_by(2)
        {
            q.ack(seq).unwrap();
            assert!(q.bytes() <= c.max_bytes);
        }
        drop(q);

        let q = DiskQueue::open(dir.path(), c).unwrap();
        assert_eq!(q.dropped_total(), total);
        assert_eq!(q.last_seq(), Some(300));
        assert!(q.bytes() <= 64 << 10);
    }

    #[test]
    fn acks_never_push_files_over_budget() {
        // Small records make acks (8 bytes each) a third of the log size; without the room
        // reserved for them, acking a full queue would overflow the budget.
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(64 << 10, 8 << 10, FsyncPolicy::Never);
        let mut q = DiskQueue::open(dir.path(), c.clone()).unwrap();
        for seq in 1..=5000 {
            q.append(seq, 0, &seq.to_le_bytes()).unwrap();
        }
        assert!(q.dropped_total().batches > 0, "budget not reached");
        // Keep every 10th pending so that no segment becomes fully acknowledged.
        for (i, seq) in q.pending_after(None, usize::MAX).into_iter().enumerate() {
            if i % 10 != 0 {
                q.ack(seq).unwrap();
                assert!(
                    q.bytes() <= c.max_bytes,
                    "{} bytes after acking {seq}",
                    q.bytes()
                );
            }
        }
        assert!(count_files(dir.path(), ".ack") > 1);
    }

    #[test]
    fn smaller_budget_at_open_drops_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DiskQueue::open(dir.path(), cfg(1 << 20, 8 << 10, FsyncPolicy::Never)).unwrap();
        for seq in 1..=100 {
            q.append(seq, 0, &payload(seq, 1000)).unwrap();
        }
        drop(q);
        let q = DiskQueue::open(dir.path(), cfg(32 << 10, 8 << 10, FsyncPolicy::Never)).unwrap();
        assert!(q.bytes() <= 32 << 10);
        assert!(q.dropped_total().batches > 0);
        assert_eq!(q.pending_after(None, usize::MAX).last(), Some(&100));
    }

    #[test]
    fn fully_acked_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(1 << 20, 4096, FsyncPolicy::Always);
        let mut q = DiskQueue::open(dir.path(), c.clone()).unwrap();
        for seq in 1..=20 {
            q.append(seq, 0, &payload(seq, 1000)).unwrap(); // 4 records per segment
        }
        assert_eq!(count_files(dir.path(), ".log"), 5);
        // Acking all but the last segment's records, out of order, deletes 4 segments.
        for seq in (1..=16).rev() {
            assert!(q.ack(seq).unwrap());
        }
        assert_eq!(count_files(dir.path(), ".log"), 1);
        assert_eq!(count_files(dir.path(), ".ack"), 0);
        assert_eq!(q.bytes(), 4 * (HEADER_LEN + 1000));
        // The active segment stays while it is being written, even when fully acked ...
        for seq in 17..=20 {
            q.ack(seq).unwrap();
        }
        assert_eq!(count_files(dir.path(), ".log"), 1);
        // ... and goes when the next one starts.
        q.append(21, 0, &payload(21, 1000)).unwrap();
        assert_eq!(q.pending(), 1);
        q.ack(21).unwrap();
        drop(q);

        // Nothing pending: open deletes the rest, but the numbering survives in meta.json.
        let mut q = DiskQueue::open(dir.path(), c).unwrap();
        assert_eq!(q.pending(), 0);
        assert_eq!(count_files(dir.path(), ".log"), 0);
        assert_eq!(count_files(dir.path(), ".ack"), 0);
        assert_eq!(q.bytes(), 0);
        assert_eq!(q.last_seq(), Some(21));
        assert_eq!(
            q.append(21, 0, b"{}").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        q.append(22, 0, b"{}").unwrap();
    }

    #[test]
    fn seq_must_increase() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DiskQueue::open(dir.path(), QueueConfig::default()).unwrap();
        q.append(5, 0, b"a").unwrap();
        assert_eq!(
            q.append(5, 0, b"b").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            q.append(3, 0, b"c").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        q.append(6, 0, b"d").unwrap();
        assert_eq!(q.pending_after(None, 10), vec![5, 6]);
        assert_eq!(q.read(5).unwrap(), Some(b"a".to_vec()));
        drop(q);
        let mut q = DiskQueue::open(dir.path(), QueueConfig::default()).unwrap();
        assert_eq!(
            q.append(6, 0, b"e").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        q.append(7, 0, b"f").unwrap();
    }

    #[test]
    fn oversized_payload_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut q =
            DiskQueue::open(dir.path(), cfg(64 << 10, 8 << 10, FsyncPolicy::Never)).unwrap();
        let err = q.append(1, 0, &vec![0u8; (32 << 10) + 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(q.pending(), 0);
        // Exactly half fits (in a segment of its own, larger than segment_bytes).
        q.append(1, 0, &vec![7u8; 32 << 10]).unwrap();
        q.append(2, 0, b"{}").unwrap();
        assert_eq!(q.read(1).unwrap().map(|p| p.len()), Some(32 << 10));
        assert_eq!(q.segment_count(), 2);
    }

    #[test]
    fn segment_bytes_is_clamped_to_a_quarter_of_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(dir.path(), cfg(64 << 10, 1 << 20, FsyncPolicy::Never)).unwrap();
        assert_eq!(q.config().segment_bytes, 16 << 10);
    }

    #[test]
    fn every_ms_policy_reports_due_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let mut q =
            DiskQueue::open(dir.path(), cfg(1 << 20, 4096, FsyncPolicy::EveryMs(60_000))).unwrap();
        assert!(!q.sync_due());
        q.append(1, 0, b"{}").unwrap();
        assert!(!q.sync_due(), "interval has not elapsed");
        q.last_sync -= Duration::from_secs(61);
        assert!(q.sync_due());
        q.sync().unwrap();
        assert!(!q.sync_due());

        let dir2 = tempfile::tempdir().unwrap();
        let mut q = DiskQueue::open(dir2.path(), QueueConfig::default()).unwrap();
        q.append(1, 0, b"{}").unwrap();
        assert!(!q.sync_due(), "Always never leaves a sync due");
    }

    #[test]
    fn fsync_policy_parses_and_deserializes() {
        assert_eq!("always".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Always));
        assert_eq!("never".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Never));
        assert_eq!(
            "200ms".parse::<FsyncPolicy>(),
            Ok(FsyncPolicy::EveryMs(200))
        );
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        assert!("ms".parse::<FsyncPolicy>().is_err());
        for p in [
            FsyncPolicy::Always,
            FsyncPolicy::Never,
            FsyncPolicy::EveryMs(5),
        ] {
            assert_eq!(p.to_string().parse::<FsyncPolicy>(), Ok(p));
        }
        let p: FsyncPolicy = serde_json::from_str("\"always\"").unwrap();
        assert_eq!(p, FsyncPolicy::Always);
        let p: FsyncPolicy = serde_json::from_str("{\"every_ms\": 250}").unwrap();
        assert_eq!(p, FsyncPolicy::EveryMs(250));
    }
}
