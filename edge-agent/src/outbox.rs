//! Where a link keeps batches until the platform acknowledges them: on disk for the agent
//! (survives restarts and power cuts), in memory for load generators that measure the platform.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use crate::queue::{DiskQueue, Dropped, PendingInfo};

/// Batches in sequence order, kept until acknowledged.
pub trait Outbox: Send + 'static {
    /// Keeps a batch; `seq` is above every earlier one. Returns what the budget pushed out.
    fn append(&mut self, seq: u64, appended_ms: i64, payload: &[u8]) -> io::Result<Dropped>;
    /// Forgets an acknowledged batch; true if it was pending.
    fn ack(&mut self, seq: u64) -> io::Result<bool>;
    fn pending(&self) -> usize;
    fn bytes(&self) -> u64;
    fn oldest_pending(&self) -> Option<PendingInfo>;
    /// Pending sequence numbers after `after`, ascending, at most `limit`.
    fn pending_after(&self, after: Option<u64>, limit: usize) -> Vec<u64>;
    fn read(&mut self, seq: u64) -> io::Result<Option<Vec<u8>>>;
    fn last_seq(&self) -> Option<u64>;
    /// Batches dropped by the budget over the outbox's life.
    fn dropped_total(&self) -> Dropped;
    /// Makes appended batches durable if the policy deferred it; called periodically.
    fn sync_if_due(&mut self) -> io::Result<()>;
}

impl Outbox for DiskQueue {
    fn append(&mut self, seq: u64, appended_ms: i64, payload: &[u8]) -> io::Result<Dropped> {
        DiskQueue::append(self, seq, appended_ms, payload)
    }
    fn ack(&mut self, seq: u64) -> io::Result<bool> {
        DiskQueue::ack(self, seq)
    }
    fn pending(&self) -> usize {
        DiskQueue::pending(self)
    }
    fn bytes(&self) -> u64 {
        DiskQueue::bytes(self)
    }
    fn oldest_pending(&self) -> Option<PendingInfo> {
        DiskQueue::oldest_pending(self)
    }
    fn pending_after(&self, after: Option<u64>, limit: usize) -> Vec<u64> {
        DiskQueue::pending_after(self, after, limit)
    }
    fn read(&mut self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        DiskQueue::read(self, seq)
    }
    fn last_seq(&self) -> Option<u64> {
        DiskQueue::last_seq(self)
    }
    fn dropped_total(&self) -> Dropped {
        DiskQueue::dropped_total(self)
    }
    fn sync_if_due(&mut self) -> io::Result<()> {
        if self.sync_due() {
            self.sync()?;
        }
        Ok(())
    }
}

/// Unbounded, volatile: for benchmarks and tests of the platform, never for a real device.
#[derive(Default)]
pub struct MemoryOutbox {
    batches: BTreeMap<u64, (i64, Arc<Vec<u8>>)>,
    bytes: u64,
    last: Option<u64>,
}

impl Outbox for MemoryOutbox {
    fn append(&mut self, seq: u64, appended_ms: i64, payload: &[u8]) -> io::Result<Dropped> {
        if self.last.is_some_and(|l| seq <= l) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "sequence numbers must increase"));
        }
        self.last = Some(seq);
        self.bytes += payload.len() as u64;
        self.batches.insert(seq, (appended_ms, Arc::new(payload.to_vec())));
        Ok(Dropped::default())
    }
    fn ack(&mut self, seq: u64) -> io::Result<bool> {
        Ok(self.batches.remove(&seq).map(|(_, p)| self.bytes -= p.len() as u64).is_some())
    }
    fn pending(&self) -> usize {
        self.batches.len()
    }
    fn bytes(&self) -> u64 {
        self.bytes
    }
    fn oldest_pending(&self) -> Option<PendingInfo> {
        self.batches.iter().next().map(|(s, (t, p))| PendingInfo { seq: *s, appended_ms: *t, len: p.len() as u32 })
    }
    fn pending_after(&self, after: Option<u64>, limit: usize) -> Vec<u64> {
        let range = match after {
            Some(a) => self.batches.range(a.saturating_add(1)..),
            None => self.batches.range(..),
        };
        range.take(limit).map(|(s, _)| *s).collect()
    }
    fn read(&mut self, seq: u64) -> io::Result<Option<Vec<u8>>> {
        Ok(self.batches.get(&seq).map(|(_, p)| p.to_vec()))
    }
    fn last_seq(&self) -> Option<u64> {
        self.last
    }
    fn dropped_total(&self) -> Dropped {
        Dropped::default()
    }
    fn sync_if_due(&mut self) -> io::Result<()> {
        Ok(())
    }
}
