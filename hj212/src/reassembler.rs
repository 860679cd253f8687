use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::{Flag, Packet, ParseError};

/// Most parts one message may announce; a larger PNUM is refused, so one message cannot claim
/// unbounded memory (1024-byte packets, so about 1 MB per message at most).
pub const MAX_PARTS: u32 = 1000;

/// Split packets (PNUM/PNO, Flag bit D) back into one: keyed by (MN, QN); CPs concatenated in PNO order with ";".
/// Bounded: at most `max_pending` open messages and each dropped after `max_age` (counted by the caller via `expire()`).
#[derive(Debug)]
pub struct Reassembler {
    max_pending: usize,
    max_age: Duration,
    open: HashMap<(String, String), Partial>,
    evicted: usize,
}

#[derive(Debug)]
struct Partial {
    started: Instant,
    pnum: u32,
    parts: BTreeMap<u32, Packet>,
}

impl Reassembler {
    pub fn new(max_pending: usize, max_age: Duration) -> Self {
        Reassembler {
            max_pending: max_pending.max(1),
            max_age,
            open: HashMap::new(),
            evicted: 0,
        }
    }

    /// Unsplit packets come straight back; a part returns None until its message is complete.
    /// A packet is a part when it carries PNUM and PNO (the D bit alone is not trusted: loggers get it wrong).
    pub fn push(&mut self, p: Packet, now: Instant) -> Result<Option<Packet>, ParseError> {
        let (pnum, pno) = match (p.pnum, p.pno) {
            (None, None) => return Ok(Some(p)),
            (Some(pnum), Some(pno)) => (pnum, pno),
            _ => {
                return Err(ParseError::BadSplit(
                    "PNUM and PNO must come together".into(),
                ))
            }
        };
        if pnum == 0 || pnum > MAX_PARTS || pno == 0 || pno > pnum {
            return Err(ParseError::BadSplit(format!("PNO {pno} of PNUM {pnum}")));
        }
        let qn = p.qn.clone().ok_or(ParseError::MissingField("QN"))?;
        let key = (p.mn.clone(), qn);
        if !self.open.contains_key(&key) && self.open.len() >= self.max_pending {
            // Full: the oldest message is the least likely to complete.
            if let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, m)| m.started)
                .map(|(k, _)| k.clone())
            {
                self.open.remove(&oldest);
                self.evicted += 1;
            }
        }
        let message = self.open.entry(key.clone()).or_insert_with(|| Partial {
            started: now,
            pnum,
            parts: BTreeMap::new(),
        });
        if message.pnum != pnum {
            return Err(ParseError::BadSplit(format!(
                "PNUM {pnum} differs from {} of the earlier parts",
                message.pnum
            )));
        }
        // A resent duplicate part keeps the first copy.
        message.parts.entry(pno).or_insert(p);
        if message.parts.len() < pnum as usize {
            return Ok(None);
        }
        let message = self.open.remove(&key).expect("present: just inserted");
        let mut parts = message.parts.into_values();
        let mut whole = parts.next().expect("pnum >= 1 parts");
        for part in parts {
            whole.cp.push(';');
            whole.cp.push_str(&part.cp);
        }
        whole.pnum = None;
        whole.pno = None;
        whole.flag = whole.flag.map(|f| Flag(f.0 & !2));
        Ok(Some(whole))
    }

    /// Drops stale partial messages; returns how many were dropped.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.open.len();
        let max_age = self.max_age;
        self.open
            .retain(|_, m| now.saturating_duration_since(m.started) < max_age);
        before - self.open.len()
    }

    /// Open (incomplete) messages.
    pub fn pending(&self) -> usize {
        self.open.len()
    }

    /// Messages dropped to make room for a new one since the last call (count them as lost).
    pub fn take_evicted(&mut self) -> usize {
        std::mem::take(&mut self.evicted)
    }
}
