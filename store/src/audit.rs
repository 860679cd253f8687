//! The audit trail: every change made by a person or by the system, append-only and hash-chained.
//!
//! * [`AuditLog`] is the one way to write it: a cheap, clonable handle feeding one writer task
//!   that commits whatever is queued (up to [`MAX_BATCH`] events) in one transaction, so audit
//!   writes never serialise the API. The writer takes `pg_advisory_xact_lock(AUDIT_LOCK)` and reads
//!   the head inside the transaction, so several processes writing to one database extend one chain.
//! * Row `seq` (1, 2, ... without gaps) has `hash = SHA-256(encoding(seq, at, actor, actor_ip,
//!   action, entity, entity_id, before, after, prev_hash))` (see [`event_hash`]), `prev_hash` being
//!   the hash of row `seq - 1` ([`GENESIS`] for row 1). A trigger refuses UPDATE, DELETE and
//!   TRUNCATE.
//! * A DBA can disable the trigger and rewrite or cut the chain consistently, so the head is also
//!   written outside the database: one line `<seq> <hex hash> <RFC 3339 time>` appended (and
//!   fsynced) to `<data_dir>/audit/anchors.log` at start, every `every` while the head moves, and
//!   at shutdown. [`verify`] checks the chain and the anchors and names the first break.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde_json::{Number, Value};
use sha2::{Digest, Sha256};
use sqlx::{Postgres, QueryBuilder};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::Store;

/// `prev_hash` of the first event.
pub const GENESIS: [u8; 32] = [0; 32];
/// Where the anchors live, relative to the data directory.
pub const ANCHORS_FILE: &str = "audit/anchors.log";
/// How often the writer anchors a head that moved.
pub const DEFAULT_ANCHOR_EVERY: Duration = Duration::from_secs(60);
/// Most events committed in one transaction.
pub const MAX_BATCH: usize = 1000;
/// Advisory lock key taken by every chain write ("offsiteA").
pub const AUDIT_LOCK: i64 = 0x6f66_6673_6974_6541;
/// Events queued before [`AuditLog::record`] waits.
const QUEUE: usize = 10_000;
const VERIFY_PAGE: i64 = 1000;
const ENCODING_TAG: &[u8] = b"offsite-audit-v1\n";

/// `<data_dir>/audit/anchors.log`.
pub fn anchors_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ANCHORS_FILE)
}

/// One change: who (and from where), what, and the entity before and after it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// A username, or `system:<component>`.
    pub actor: String,
    pub actor_ip: Option<String>,
    /// e.g. `rule.update`, `warning.resolve`, `user.login`.
    pub action: String,
    /// e.g. `rule`, `warning`, `user`.
    pub entity: String,
    pub entity_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl AuditEvent {
    /// A person's change.
    pub fn new(actor: impl Into<String>, action: impl Into<String>, entity: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            actor_ip: None,
            action: action.into(),
            entity: entity.into(),
            entity_id: None,
            before: None,
            after: None,
        }
    }

    /// A change made by the system: the actor is `system:<component>`.
    pub fn system(component: &str, action: impl Into<String>, entity: impl Into<String>) -> Self {
        Self::new(format!("system:{component}"), action, entity)
    }

    pub fn ip(mut self, ip: impl Into<String>) -> Self {
        self.actor_ip = Some(ip.into());
        self
    }

    pub fn id(mut self, entity_id: impl Into<String>) -> Self {
        self.entity_id = Some(entity_id.into());
        self
    }

    pub fn before(mut self, v: Value) -> Self {
        self.before = Some(v);
        self
    }

    pub fn after(mut self, v: Value) -> Self {
        self.after = Some(v);
        self
    }

    /// PostgreSQL text and jsonb cannot hold NUL: replace it (U+FFFD) so the event can be stored
    /// exactly as it is hashed.
    fn sanitize(&mut self) {
        for s in [&mut self.actor, &mut self.action, &mut self.entity] {
            clean(s);
        }
        for s in [&mut self.actor_ip, &mut self.entity_id].into_iter().flatten() {
            clean(s);
        }
        for v in [&mut self.before, &mut self.after].into_iter().flatten() {
            clean_json(v);
        }
    }
}

fn clean(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

fn clean_json(v: &mut Value) {
    match v {
        Value::String(s) => clean(s),
        Value::Array(a) => a.iter_mut().for_each(clean_json),
        Value::Object(m) => {
            if m.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(m);
                for (mut k, v) in old {
                    clean(&mut k);
                    m.insert(k, v);
                }
            }
            m.values_mut().for_each(clean_json);
        }
        _ => {}
    }
}

/// Canonical JSON: object keys sorted (by UTF-8 bytes), no whitespace, strings escaped as
/// serde_json does, and numbers in one form whatever their type: an integral value within the
/// 64-bit integer ranges is written as an integer (`5.0` -> `5`, `-0.0` -> `0`), anything else in
/// the shortest form that round-trips (`0.1`, `1e+20`). So a value reads back from jsonb (which
/// keeps numbers as decimals) to the same text.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&canonical_number(n)),
        Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(x, out);
            }
            out.push('}');
        }
    }
}

fn canonical_number(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f == 0.0 {
        return "0".into();
    }
    if f.fract() == 0.0 {
        if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
            return (f as i64).to_string();
        }
        if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
            return (f as u64).to_string();
        }
    }
    n.to_string()
}

/// `at` as hashed: RFC 3339, UTC, microseconds, `Z`.
pub fn hash_time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The chain hash of event `seq` recorded at `at` after an event whose hash is `prev`.
///
/// Encoding (all lengths u64 big-endian): the tag `offsite-audit-v1\n`, `seq`, then each text as
/// `len || UTF-8` — `at` ([`hash_time`]), `actor`, `actor_ip`, `action`, `entity`, `entity_id`,
/// `before`, `after` (the last two as [`canonical_json`]) — where an optional field is `0x00` when
/// absent and `0x01 || len || bytes` when present, and finally the 32 bytes of `prev`.
pub fn event_hash(seq: u64, at: &DateTime<Utc>, ev: &AuditEvent, prev: &[u8; 32]) -> [u8; 32] {
    fn text(h: &mut Sha256, s: &str) {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    }
    fn opt(h: &mut Sha256, s: Option<&str>) {
        match s {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                text(h, s);
            }
        }
    }
    let mut h = Sha256::new();
    h.update(ENCODING_TAG);
    h.update(seq.to_be_bytes());
    text(&mut h, &hash_time(at));
    text(&mut h, &ev.actor);
    opt(&mut h, ev.actor_ip.as_deref());
    text(&mut h, &ev.action);
    text(&mut h, &ev.entity);
    opt(&mut h, ev.entity_id.as_deref());
    opt(&mut h, ev.before.as_ref().map(canonical_json).as_deref());
    opt(&mut h, ev.after.as_ref().map(canonical_json).as_deref());
    h.update(prev);
    h.finalize().into()
}

fn hash32(v: &[u8]) -> Option<[u8; 32]> {
    v.try_into().ok()
}

fn short(h: &[u8]) -> String {
    hex::encode(h).chars().take(16).collect()
}

// ---------------------------------------------------------------------------------------------
// Writing

struct Pending {
    ev: AuditEvent,
    at: DateTime<Utc>,
    ack: Option<oneshot::Sender<Result<u64, String>>>,
}

#[allow(clippy::large_enum_variant)] // the event is the common message: no box per event
enum Msg {
    Event(Pending),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    events: AtomicU64,
    last_seq: AtomicU64,
}

/// Handle to the audit writer; clone it freely. Shut it down (or drop every clone) before closing
/// the store's pool, so that the queue is committed and the last head anchored.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("batches_committed", &self.batches_committed())
            .field("events_committed", &self.events_committed())
            .finish()
    }
}

impl AuditLog {
    /// Starts the writer task (call within a Tokio runtime). With `anchors`, the current head is
    /// appended to that file at once, then every `every` when it moved, and at shutdown.
    pub fn start(store: Store, anchors: Option<PathBuf>, every: Duration) -> AuditLog {
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        tokio::spawn(writer(store, anchors, every.max(Duration::from_millis(10)), rx, counters.clone()));
        AuditLog { tx, counters }
    }

    /// Records an event and returns its `seq` once it is committed. Waits while the queue is full;
    /// never drops an event. The event is committed even if this future is dropped after queueing.
    pub async fn record(&self, ev: AuditEvent) -> Result<u64> {
        let (ack, done) = oneshot::channel();
        self.send(ev, Some(ack)).await?;
        done.await.map_err(|_| anyhow!("the audit writer stopped before committing the event"))?.map_err(|e| anyhow!(e))
    }

    /// Records an event and returns once it is queued (for hot paths); the writer commits it with
    /// the next batch, and logs an error if it cannot.
    pub async fn record_nowait(&self, ev: AuditEvent) -> Result<()> {
        self.send(ev, None).await
    }

    async fn send(&self, mut ev: AuditEvent, ack: Option<oneshot::Sender<Result<u64, String>>>) -> Result<()> {
        ev.sanitize();
        let at = Utc::now().trunc_subsecs(6);
        self.tx.send(Msg::Event(Pending { ev, at, ack })).await.map_err(|_| anyhow!("the audit log is shut down"))
    }

    /// Commits everything queued so far, anchors the head and stops the writer. Events recorded
    /// afterwards (through any clone) are refused.
    pub async fn shutdown(&self) -> Result<()> {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(ack)).await.is_err() {
            return Ok(());
        }
        let _ = done.await;
        Ok(())
    }

    /// Transactions committed by this log's writer.
    pub fn batches_committed(&self) -> u64 {
        self.counters.batches.load(Ordering::Relaxed)
    }

    /// Events committed by this log's writer.
    pub fn events_committed(&self) -> u64 {
        self.counters.events.load(Ordering::Relaxed)
    }

    /// The highest `seq` this log's writer committed (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.counters.last_seq.load(Ordering::Relaxed)
    }
}

async fn writer(
    store: Store,
    anchors: Option<PathBuf>,
    every: Duration,
    mut rx: mpsc::Receiver<Msg>,
    counters: Arc<Counters>,
) {
    // Seq of the last anchor this writer appended.
    let mut anchored: Option<u64> = None;
    if let Some(path) = &anchors {
        match anchor_if_moved(&store, path, None).await {
            Ok(seq) => anchored = Some(seq),
            Err(e) => {
                warn!(error = %format!("{e:#}"), "audit: could not write the start anchor; retrying with the next")
            }
        }
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = Vec::with_capacity(MAX_BATCH);
    let mut shutdowns = Vec::new();
    loop {
        tokio::select! {
            n = rx.recv_many(&mut buf, MAX_BATCH) => {
                if n == 0 {
                    break;
                }
                let mut batch = Vec::with_capacity(n);
                for m in buf.drain(..) {
                    match m {
                        Msg::Event(p) => batch.push(p),
                        Msg::Shutdown(ack) => {
                            // Whatever is queued is still committed; later sends fail.
                            rx.close();
                            shutdowns.push(ack);
                        }
                    }
                }
                if !batch.is_empty() {
                    commit(&store, batch, &counters).await;
                }
            }
            _ = tick.tick() => {
                if let Some(path) = &anchors {
                    match anchor_if_moved(&store, path, anchored).await {
                        Ok(seq) => anchored = Some(seq),
                        Err(e) => warn!(error = %format!("{e:#}"), "audit: could not write an anchor"),
                    }
                }
            }
        }
    }
    if let Some(path) = &anchors {
        if let Err(e) = anchor_if_moved(&store, path, anchored).await {
            warn!(error = %format!("{e:#}"), "audit: could not write the shutdown anchor");
        }
    }
    for ack in shutdowns {
        let _ = ack.send(());
    }
}

/// Appends the database's current head to `path` unless it is `last`; returns the head's seq.
async fn anchor_if_moved(store: &Store, path: &Path, last: Option<u64>) -> Result<u64> {
    let (seq, hash) = store.audit_head().await?.unwrap_or((0, GENESIS));
    if last != Some(seq) {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || append_anchor(&path, seq, &hash, Utc::now())).await??;
    }
    Ok(seq)
}

/// Appends the database's current head to the anchors file (as the writer does); returns it.
pub async fn write_anchor(store: &Store, path: &Path) -> Result<(u64, [u8; 32])> {
    let (seq, hash) = store.audit_head().await?.unwrap_or((0, GENESIS));
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || append_anchor(&path, seq, &hash, Utc::now())).await??;
    Ok((seq, hash))
}

/// Appends one anchor line and fsyncs it (and the directory when the file is new).
pub fn append_anchor(path: &Path, seq: u64, hash: &[u8; 32], at: DateTime<Utc>) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let new = !path.exists();
    let line = format!("{seq} {} {}\n", hex::encode(hash), at.to_rfc3339_opts(SecondsFormat::Micros, true));
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the audit anchors {}", path.display()))?;
    f.write_all(line.as_bytes())?;
    f.sync_all()?;
    if new {
        if let Some(d) = dir {
            File::open(d)?.sync_all()?;
        }
    }
    Ok(())
}

enum Failure {
    /// Try the same events again later (connection trouble, contention).
    Transient,
    /// Something about the events (or the table) is refused; isolate the culprit.
    Refused,
    /// The pool is closed: nothing can be written any more.
    Fatal,
}

fn classify(e: &anyhow::Error) -> Failure {
    match e.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::PoolClosed) => Failure::Fatal,
        Some(sqlx::Error::Database(d)) => match d.code().as_deref() {
            // A seq taken by a writer that skipped the lock: read the head again.
            Some("23505") => Failure::Transient,
            Some(c) if ["08", "40", "53", "57", "58"].iter().any(|p| c.starts_with(p)) => Failure::Transient,
            _ => Failure::Refused,
        },
        Some(sqlx::Error::Encode(_) | sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. }) => Failure::Refused,
        _ => Failure::Transient,
    }
}

/// Commits `batch` (splitting it only to isolate an event the database refuses) and acknowledges
/// every sender.
async fn commit(store: &Store, batch: Vec<Pending>, counters: &Counters) {
    let mut chunks = VecDeque::from([batch]);
    while let Some(mut chunk) = chunks.pop_front() {
        let mut backoff = Duration::from_millis(50);
        loop {
            match insert_batch(store, &chunk).await {
                Ok(first) => {
                    let n = chunk.len() as u64;
                    counters.batches.fetch_add(1, Ordering::Relaxed);
                    counters.events.fetch_add(n, Ordering::Relaxed);
                    counters.last_seq.fetch_max(first + n - 1, Ordering::Relaxed);
                    for (i, p) in chunk.drain(..).enumerate() {
                        if let Some(ack) = p.ack {
                            let _ = ack.send(Ok(first + i as u64));
                        }
                    }
                    break;
                }
                Err(e) => match classify(&e) {
                    Failure::Transient => {
                        warn!(error = %format!("{e:#}"), events = chunk.len(), "audit: commit failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                    Failure::Refused if chunk.len() > 1 => {
                        for p in chunk.into_iter().rev() {
                            chunks.push_front(vec![p]);
                        }
                        break;
                    }
                    Failure::Refused | Failure::Fatal => {
                        let fatal = matches!(classify(&e), Failure::Fatal);
                        let msg = format!("audit event not recorded: {e:#}");
                        let lost: Vec<Pending> =
                            if fatal { chunk.into_iter().chain(chunks.drain(..).flatten()).collect() } else { chunk };
                        for p in lost {
                            error!(actor = %p.ev.actor, action = %p.ev.action, entity = %p.ev.entity,
                                entity_id = ?p.ev.entity_id, "{msg}");
                            if let Some(ack) = p.ack {
                                let _ = ack.send(Err(msg.clone()));
                            }
                        }
                        break;
                    }
                },
            }
        }
    }
}

/// One transaction: lock the chain, read the head, append `chunk`. Returns the first new seq.
async fn insert_batch(store: &Store, chunk: &[Pending]) -> Result<u64> {
    let mut tx = store.pool().begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(AUDIT_LOCK).execute(&mut *tx).await?;
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetch_optional(&mut *tx).await?;
    let (head_seq, mut prev) = match head {
        Some((s, h)) => (s as u64, hash32(&h).ok_or_else(|| anyhow!("audit head {s} has a malformed hash"))?),
        None => (0, GENESIS),
    };
    let mut rows = Vec::with_capacity(chunk.len());
    for (i, p) in chunk.iter().enumerate() {
        let seq = head_seq + 1 + i as u64;
        let hash = event_hash(seq, &p.at, &p.ev, &prev);
        rows.push((seq as i64, p, prev, hash));
        prev = hash;
    }
    let mut b: QueryBuilder<Postgres> = QueryBuilder::new(
        "INSERT INTO audit_events (seq, at, actor, actor_ip, action, entity, entity_id, before, after, prev_hash, hash) ",
    );
    b.push_values(&rows, |mut r, (seq, p, prev, hash)| {
        r.push_bind(*seq)
            .push_bind(p.at)
            .push_bind(&p.ev.actor)
            .push_bind(&p.ev.actor_ip)
            .push_bind(&p.ev.action)
            .push_bind(&p.ev.entity)
            .push_bind(&p.ev.entity_id)
            .push_bind(&p.ev.before)
            .push_bind(&p.ev.after)
            .push_bind(prev.as_slice())
            .push_bind(hash.as_slice());
    });
    b.build().execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(head_seq + 1)
}

// ---------------------------------------------------------------------------------------------
// Verifying

/// What kind of damage [`verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The row's content does not match its hash.
    Tampered,
    /// A gap in `seq`: this seq (and maybe more) is gone.
    Missing,
    /// The row's `prev_hash` is not the previous row's hash.
    BrokenLink,
    /// An anchor names a seq beyond the end of the chain; `seq` is the first one missing.
    Truncated,
    /// An anchor's hash differs from the stored hash at its seq: the chain was rewritten.
    Rewritten,
}

impl BreakKind {
    /// Short description: (zh-CN, English).
    pub fn describe(self) -> (&'static str, &'static str) {
        match self {
            BreakKind::Tampered => ("记录内容被篡改（哈希不符）", "row content altered (hash mismatch)"),
            BreakKind::Missing => ("记录缺失（序号不连续）", "row missing (gap in seq)"),
            BreakKind::BrokenLink => ("链接断裂（前序哈希不符）", "broken link (prev_hash differs)"),
            BreakKind::Truncated => ("尾部被截断（锚点超出链尾）", "tail truncated (an anchor lies beyond the end)"),
            BreakKind::Rewritten => ("链被重写（锚点哈希不符）", "chain rewritten (anchor hash differs)"),
        }
    }
}

/// The first break of the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Break {
    pub seq: u64,
    pub kind: BreakKind,
    pub detail: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows in the snapshot.
    pub events: u64,
    /// Last row's (seq, stored hash).
    pub head: Option<(u64, [u8; 32])>,
    /// Anchors compared with the chain.
    pub anchors_checked: usize,
    /// Anchors read; `None` when no anchors file was given or it does not exist.
    pub anchors_read: Option<usize>,
    pub first_break: Option<Break>,
}

impl VerifyReport {
    pub fn intact(&self) -> bool {
        self.first_break.is_none()
    }
}

/// One line of the anchors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: [u8; 32],
    pub at: DateTime<Utc>,
    /// 1-based line number.
    pub line: usize,
}

/// Reads an anchors file; `Ok(None)` when it does not exist. Blank lines and `#` comments are
/// skipped, as is a torn last line (no newline: the writer died mid-append); any other malformed
/// line is an error.
pub fn read_anchors(path: &Path) -> Result<Option<Vec<Anchor>>> {
    let text = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let text = String::from_utf8_lossy(&text);
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, raw) in lines.iter().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        match parse_anchor(l, i + 1) {
            Ok(a) => out.push(a),
            Err(_) if i + 1 == lines.len() && !complete => {
                warn!(line = i + 1, "audit: ignoring a torn last anchor line in {}", path.display());
            }
            Err(e) => return Err(e.context(format!("{}:{}", path.display(), i + 1))),
        }
    }
    Ok(Some(out))
}

fn parse_anchor(l: &str, line: usize) -> Result<Anchor> {
    let f: Vec<&str> = l.split_whitespace().collect();
    let [seq, hash, at] = f[..] else { bail!("expected `<seq> <hex hash> <RFC 3339 time>`, got {l:?}") };
    let seq: u64 = seq.parse().with_context(|| format!("bad seq {seq:?}"))?;
    let hash = hex::decode(hash).ok().and_then(|h| hash32(&h)).ok_or_else(|| anyhow!("bad hash {hash:?}"))?;
    let at = DateTime::parse_from_rfc3339(at).with_context(|| format!("bad time {at:?}"))?.with_timezone(&Utc);
    Ok(Anchor { seq, hash, at, line })
}

#[derive(sqlx::FromRow)]
struct StoredRow {
    seq: i64,
    at: DateTime<Utc>,
    actor: String,
    actor_ip: Option<String>,
    action: String,
    entity: String,
    entity_id: Option<String>,
    before: Option<Value>,
    after: Option<Value>,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

/// Checks the whole chain, in seq order, and the anchors of `anchors` (a missing file means no
/// anchors) against it; stops checking at the first break but still counts the rows.
///
/// Runs beside writers: the anchors file is read first, then the rows from one REPEATABLE READ
/// snapshot taken afterwards. An anchor is appended only after its head committed, so every anchor
/// read names a row that snapshot must hold; one beyond the end means the tail was cut.
pub async fn verify(store: &Store, anchors: Option<&Path>) -> Result<VerifyReport> {
    let read = match anchors {
        Some(p) => {
            let p = p.to_owned();
            tokio::task::spawn_blocking(move || read_anchors(&p)).await??
        }
        None => None,
    };
    let anchors_read = read.as_ref().map(Vec::len);
    let mut anchors = read.unwrap_or_default();
    anchors.sort_by_key(|a| (a.seq, a.line));

    let mut report = VerifyReport { events: 0, head: None, anchors_checked: 0, anchors_read, first_break: None };
    let mut ai = 0;
    // Genesis anchors (written when the trail was empty).
    while ai < anchors.len() && anchors[ai].seq == 0 {
        let a = &anchors[ai];
        report.anchors_checked += 1;
        if a.hash != GENESIS && report.first_break.is_none() {
            report.first_break = Some(Break {
                seq: 0,
                kind: BreakKind::Rewritten,
                detail: format!("anchor on line {} names seq 0 with a hash other than zeros", a.line),
            });
        }
        ai += 1;
    }

    let mut tx = store.pool().begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let mut expected: u64 = 1;
    let mut prev = GENESIS;
    let mut after: i64 = 0;
    loop {
        let rows: Vec<StoredRow> = sqlx::query_as(
            "SELECT seq, at, actor, actor_ip, action, entity, entity_id, before, after, prev_hash, hash \
             FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(VERIFY_PAGE)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for r in rows {
            report.events += 1;
            let seq = r.seq as u64;
            let stored = hash32(&r.hash);
            if report.first_break.is_none() {
                report.first_break = check_row(r, seq, expected, &prev, stored, &anchors, &mut ai, &mut report);
            }
            prev = stored.unwrap_or(GENESIS);
            expected = seq + 1;
            report.head = Some((seq, prev));
        }
    }
    tx.rollback().await?;

    if report.first_break.is_none() {
        if let Some(a) = anchors.get(ai) {
            let end = report.head.map(|h| h.0).unwrap_or(0);
            report.first_break = Some(Break {
                seq: end + 1,
                kind: BreakKind::Truncated,
                detail: format!(
                    "anchor on line {} ({}) names seq {} (hash {}…) but the chain ends at seq {end}",
                    a.line,
                    a.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    a.seq,
                    short(&a.hash)
                ),
            });
        }
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn check_row(
    r: StoredRow,
    seq: u64,
    expected: u64,
    prev: &[u8; 32],
    stored: Option<[u8; 32]>,
    anchors: &[Anchor],
    ai: &mut usize,
    report: &mut VerifyReport,
) -> Option<Break> {
    if seq != expected {
        let detail = if seq == expected + 1 {
            format!("seq {expected} is missing (the chain goes from {} to {seq})", expected - 1)
        } else {
            format!("seqs {expected}..={} are missing (the chain goes from {} to {seq})", seq - 1, expected - 1)
        };
        return Some(Break { seq: expected, kind: BreakKind::Missing, detail });
    }
    let Some(stored) = stored else {
        return Some(Break { seq, kind: BreakKind::Tampered, detail: format!("seq {seq} has a malformed hash") });
    };
    let prev_hash = r.prev_hash.clone();
    let at = r.at;
    let ev = AuditEvent {
        actor: r.actor,
        actor_ip: r.actor_ip,
        action: r.action,
        entity: r.entity,
        entity_id: r.entity_id,
        before: r.before,
        after: r.after,
    };
    let computed = event_hash(seq, &at, &ev, &hash32(&prev_hash).unwrap_or(GENESIS));
    if computed != stored || prev_hash.len() != 32 {
        return Some(Break {
            seq,
            kind: BreakKind::Tampered,
            detail: format!(
                "seq {seq} ({} {} {}{}) hashes to {}… but stores {}…",
                ev.actor,
                ev.action,
                ev.entity,
                ev.entity_id.as_deref().map(|i| format!("/{i}")).unwrap_or_default(),
                short(&computed),
                short(&stored)
            ),
        });
    }
    if prev_hash != prev.as_slice() {
        return Some(Break {
            seq,
            kind: BreakKind::BrokenLink,
            detail: format!("seq {seq} links to {}… but seq {} hashes to {}…", short(&prev_hash), seq - 1, short(prev)),
        });
    }
    while let Some(a) = anchors.get(*ai).filter(|a| a.seq <= seq) {
        *ai += 1;
        report.anchors_checked += 1;
        if a.seq == seq && a.hash != stored {
            return Some(Break {
                seq,
                kind: BreakKind::Rewritten,
                detail: format!(
                    "anchor on line {} ({}) says seq {seq} hashes to {}… but the chain has {}…",
                    a.line,
                    a.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    short(&a.hash),
                    short(&stored)
                ),
            });
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Searching

/// A page of the trail, newest first. Unset fields do not filter.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Exact, or a prefix when it ends with `*` (`rule.*`).
    pub action: Option<String>,
    pub entity: Option<String>,
    pub entity_id: Option<String>,
    /// `at >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `at < until`.
    pub until: Option<DateTime<Utc>>,
    /// Clamped to 1..=1000.
    pub limit: i64,
    pub offset: i64,
}

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            actor: None,
            action: None,
            entity: None,
            entity_id: None,
            since: None,
            until: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// An audit event as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub actor_ip: Option<String>,
    pub action: String,
    pub entity: String,
    pub entity_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// Hex.
    pub hash: String,
}

fn push_audit_filters<'a>(b: &mut QueryBuilder<'a, Postgres>, f: &'a AuditFilter) {
    b.push(" WHERE true");
    if let Some(a) = &f.actor {
        b.push(" AND actor = ").push_bind(a);
    }
    if let Some(a) = &f.action {
        match a.strip_suffix('*') {
            Some(prefix) => {
                let escaped = prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                b.push(" AND action LIKE ").push_bind(format!("{escaped}%")).push(" ESCAPE '\\'");
            }
            None => {
                b.push(" AND action = ").push_bind(a);
            }
        }
    }
    if let Some(e) = &f.entity {
        b.push(" AND entity = ").push_bind(e);
    }
    if let Some(e) = &f.entity_id {
        b.push(" AND entity_id = ").push_bind(e);
    }
    if let Some(t) = f.since {
        b.push(" AND at >= ").push_bind(t);
    }
    if let Some(t) = f.until {
        b.push(" AND at < ").push_bind(t);
    }
}

impl Store {
    /// Searches the trail, newest first; returns the page and the total matching.
    pub async fn audit_search(&self, f: &AuditFilter) -> Result<(Vec<AuditRecord>, i64)> {
        let mut b = QueryBuilder::new(
            "SELECT seq, at, actor, actor_ip, action, entity, entity_id, before, after, encode(hash, 'hex') AS hash \
             FROM audit_events",
        );
        push_audit_filters(&mut b, f);
        b.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(f.limit.clamp(1, 1000))
            .push(" OFFSET ")
            .push_bind(f.offset.max(0));
        let items = b.build_query_as::<AuditRecord>().fetch_all(&self.pool).await?;
        let mut c = QueryBuilder::new("SELECT count(*) FROM audit_events");
        push_audit_filters(&mut c, f);
        let total: i64 = c.build_query_scalar().fetch_one(&self.pool).await?;
        Ok((items, total))
    }

    /// The last event's (seq, hash), if any.
    pub async fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>> {
        let row: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(s, h)| Ok((s as u64, hash32(&h).ok_or_else(|| anyhow!("audit head {s} has a malformed hash"))?)))
            .transpose()
    }
}
