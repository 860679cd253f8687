//! Camera events (raised and cleared, with their snapshots) kept on disk until the platform
//! acknowledges them, like the device's batches: an unattended-post event seen while the link is
//! down, or just before the agent restarts, still reaches the platform. Status messages and
//! periodic pictures are not kept: the next one says the same, newer.
//!
//! Events go one at a time, in order (stop-and-wait), so a raise and its clear never swap; the
//! platform drops a repeat by its number, so resending after a lost acknowledgement is harmless.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::metrics as m;
use crate::queue::{DiskQueue, FsyncPolicy, QueueConfig};
use crate::DeviceLink;

/// How long an event waits for its acknowledgement before it is sent again.
const RESEND_AFTER: Duration = Duration::from_secs(10);
/// Disk budget for one device's unacknowledged events (each up to a snapshot's size): the
/// oldest go first when it is full, counted on `offsite_edge_dropped_total`.
const BUDGET_BYTES: u64 = 64 << 20;

pub struct EventOutbox {
    device: String,
    queue: Mutex<DiskQueue>,
    wake: Notify,
}

impl EventOutbox {
    /// Opens (or recovers) the event queue in `dir` and starts sending what it holds.
    pub fn start(
        dir: &Path,
        device: &str,
        link: Arc<DeviceLink>,
    ) -> Result<(Arc<Self>, JoinHandle<()>)> {
        let cfg = QueueConfig {
            max_bytes: BUDGET_BYTES,
            segment_bytes: 4 << 20,
            fsync: FsyncPolicy::Always,
        };
        let queue =
            DiskQueue::open(dir, cfg).with_context(|| format!("opening {}", dir.display()))?;
        if queue.pending() > 0 {
            info!(
                device,
                events = queue.pending(),
                "unacknowledged camera events from before the restart will be sent"
            );
        }
        m::CAMERA_EVENTS_PENDING
            .with_label_values(&[device])
            .set(queue.pending() as i64);
        let outbox = Arc::new(Self {
            device: device.to_owned(),
            queue: Mutex::new(queue),
            wake: Notify::new(),
        });
        let task = tokio::spawn(send_loop(outbox.clone(), link));
        Ok((outbox, task))
    }

    /// Keeps an encoded event (durably) until the platform acknowledges `seq`.
    pub fn push(&self, seq: u64, payload: &[u8]) -> Result<()> {
        let dropped = {
            let mut q = self.queue.lock().unwrap();
            let d = q.append(seq, chrono::Utc::now().timestamp_millis(), payload)?;
            m::CAMERA_EVENTS_PENDING
                .with_label_values(&[&self.device])
                .set(q.pending() as i64);
            d
        };
        if dropped.batches > 0 {
            m::DROPPED
                .with_label_values(&[&self.device])
                .inc_by(dropped.batches);
            warn!(device = %self.device, events = dropped.batches, "camera event budget full: oldest unacknowledged events dropped");
        }
        self.wake.notify_one();
        Ok(())
    }

    fn ack(&self, seq: u64) {
        let mut q = self.queue.lock().unwrap();
        match q.ack(seq) {
            Ok(_) => m::CAMERA_EVENTS_PENDING
                .with_label_values(&[&self.device])
                .set(q.pending() as i64),
            Err(e) => {
                warn!(device = %self.device, seq, error = %e, "recording a camera event's acknowledgement")
            }
        }
    }

    /// The oldest unacknowledged event.
    fn head(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let mut q = self.queue.lock().unwrap();
        let Some(&seq) = q.pending_after(None, 1).first() else {
            return Ok(None);
        };
        Ok(q.read(seq)?.map(|p| (seq, p)))
    }
}

async fn send_loop(outbox: Arc<EventOutbox>, link: Arc<DeviceLink>) {
    let acks = link.message_acks();
    loop {
        while let Ok(seq) = acks.try_recv() {
            outbox.ack(seq);
        }
        let head = match outbox.head() {
            Ok(h) => h,
            Err(e) => {
                warn!(device = %outbox.device, error = %format!("{e:#}"), "reading the camera event queue");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some((seq, payload)) = head else {
            tokio::select! {
                _ = outbox.wake.notified() => {}
                a = acks.recv_async() => match a {
                    Ok(seq) => outbox.ack(seq),
                    Err(_) => return,
                },
            }
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(5), link.publish_event_bytes(payload)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(device = %outbox.device, seq, error = %format!("{e:#}"), "sending a camera event")
            }
            Err(_) => {
                warn!(device = %outbox.device, seq, "MQTT client busy; camera event kept for later")
            }
        }
        // Wait for this event's acknowledgement (others' are recorded on the way), then go on,
        // or send it again.
        let until = tokio::time::Instant::now() + RESEND_AFTER;
        loop {
            match tokio::time::timeout_at(until, acks.recv_async()).await {
                Ok(Ok(a)) => {
                    outbox.ack(a);
                    if a == seq {
                        break;
                    }
                }
                Ok(Err(_)) => return,
                Err(_) => break,
            }
        }
    }
}
