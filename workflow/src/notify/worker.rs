//! The notify worker: a spawned task that, every poll, fans new events out into notifications and
//! deliveries, then claims due deliveries and sends them, at most `concurrency` at a time, each
//! bounded by the request timeout. Nothing waits on a delivery but its own task, so a slow or
//! failing channel delays nothing else. Several processes may each run a worker: the fan-out
//! serialises on its cursors and claiming skips rows another worker holds.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use offsite_store::notifications::{ClaimedDelivery, DeliveryAttempt};
use offsite_store::Store;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::channels::{Outcome, Sender};
use super::{Backoff, NotifyConfig, DELIVERIES, NOTIFICATIONS};

/// Fan-out transactions per poll at most, so a backlog cannot starve delivery.
const MAX_FANOUT_ROUNDS: usize = 20;

/// The two steps of the worker, callable one at a time (the worker loop, tests).
#[derive(Clone)]
pub struct Notifier {
    store: Store,
    sender: Sender,
    backoff: Backoff,
    fanout_batch: usize,
    request_timeout: Duration,
    /// Bounds deliveries in flight.
    slots: Arc<Semaphore>,
    concurrency: usize,
}

impl Notifier {
    pub fn new(store: Store, cfg: &NotifyConfig) -> Result<Self> {
        let request_timeout = Duration::from_secs(cfg.request_timeout_s.max(1));
        Self::with(store, cfg, cfg.backoff(), request_timeout)
    }

    /// With explicit retry delays and timeout (tests use milliseconds).
    pub fn with(store: Store, cfg: &NotifyConfig, backoff: Backoff, request_timeout: Duration) -> Result<Self> {
        let sender = Sender::new(&cfg.smtp, cfg.public_url.as_deref(), request_timeout)?;
        let concurrency = cfg.concurrency.max(1);
        Ok(Self {
            store,
            sender,
            backoff,
            fanout_batch: cfg.fanout_batch.max(1),
            request_timeout,
            slots: Arc::new(Semaphore::new(concurrency)),
            concurrency,
        })
    }

    /// Turns every new event into notifications and deliveries (in rounds of `fanout_batch`);
    /// returns how many source rows it handled.
    pub async fn fan_out(&self) -> Result<usize> {
        let mut handled = 0;
        for _ in 0..MAX_FANOUT_ROUNDS {
            let r = self.store.fan_out_notifications_report(self.fanout_batch).await?;
            handled += r.sources;
            for (kind, n) in &r.notifications {
                NOTIFICATIONS.with_label_values(&[kind.as_str()]).inc_by(*n as u64);
            }
            if r.sources > 0 {
                let written: usize = r.notifications.values().sum();
                debug!(sources = r.sources, notifications = written, deliveries = r.deliveries, "fanned out");
            }
            // Each source is read up to a batch per round; less than a full batch overall means
            // there is nothing left (or too little to be worth another round now).
            if r.sources < self.fanout_batch {
                break;
            }
        }
        Ok(handled)
    }

    /// Claims as many due deliveries as there are free slots and starts sending them; returns
    /// the tasks (the worker does not wait for them).
    pub async fn start_due(&self) -> Result<Vec<JoinHandle<()>>> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(Vec::new());
        }
        // The lease outlives the attempt, so no other worker claims it meanwhile.
        let lease = self.request_timeout * 2 + Duration::from_secs(30);
        let claimed = self.store.claim_due_deliveries(Utc::now(), free, lease).await?;
        let mut tasks = Vec::with_capacity(claimed.len());
        for d in claimed {
            let permit = self.slots.clone().acquire_owned().await.expect("the semaphore is never closed");
            let this = self.clone();
            tasks.push(tokio::spawn(async move {
                this.deliver(d).await;
                drop(permit);
            }));
        }
        Ok(tasks)
    }

    /// Sends everything due now and waits for the attempts to be recorded; returns how many
    /// attempts were made.
    pub async fn deliver_due(&self) -> Result<usize> {
        let tasks = self.start_due().await?;
        let n = tasks.len();
        for t in tasks {
            let _ = t.await;
        }
        Ok(n)
    }

    /// One attempt: send, judge, record, count.
    async fn deliver(&self, d: ClaimedDelivery) {
        let outcome = match tokio::time::timeout(self.request_timeout, self.sender.send(&d)).await {
            Ok(o) => o,
            Err(_) => Outcome::failed(None, format!("timed out after {} ms", self.request_timeout.as_millis())),
        };
        let now = Utc::now();
        let attempt_no = u32::try_from(d.attempts).unwrap_or(0) + 1;
        let (label, next) = if outcome.ok {
            ("delivered", None)
        } else {
            match self.backoff.after(attempt_no) {
                Some(wait) => {
                    ("retry", Some(now + chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::hours(1))))
                }
                None => ("failed", None),
            }
        };
        DELIVERIES.with_label_values(&[d.channel.kind.as_str(), label]).inc();
        match label {
            "delivered" => {
                info!(delivery = d.id, channel = d.channel.id, kind = %d.kind, attempt = attempt_no, "delivered")
            }
            "retry" => warn!(
                delivery = d.id, channel = d.channel.id, kind = %d.kind, attempt = attempt_no,
                status = ?outcome.status, error = outcome.error.as_deref().unwrap_or(""), next = ?next,
                "delivery failed; will retry"
            ),
            _ => warn!(
                delivery = d.id, channel = d.channel.id, kind = %d.kind, attempt = attempt_no,
                status = ?outcome.status, error = outcome.error.as_deref().unwrap_or(""),
                "delivery failed; giving up"
            ),
        }
        let attempt = DeliveryAttempt {
            delivery_id: d.id,
            at: now,
            ok: outcome.ok,
            status: outcome.status,
            error: outcome.error,
            next_attempt_at: next,
        };
        if let Err(e) = self.store.record_delivery_attempt(&attempt).await {
            // The lease runs out and the delivery is tried again: at least once.
            warn!(delivery = d.id, error = %format!("{e:#}"), "could not record a delivery attempt");
        }
    }

    /// Waits until no delivery is in flight (or `limit` passes).
    async fn drain(&self, limit: Duration) {
        let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(limit, self.slots.acquire_many(all)).await;
    }
}

/// The running worker; [`NotifyWorker::shutdown`] stops it.
pub struct NotifyWorker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl NotifyWorker {
    /// Starts the loop in the background.
    pub fn spawn(store: Store, cfg: &NotifyConfig) -> Result<Self> {
        let notifier = Notifier::new(store, cfg)?;
        Ok(Self::spawn_notifier(notifier, Duration::from_millis(cfg.poll_interval_ms.max(10))))
    }

    /// Starts the loop around a prepared [`Notifier`].
    pub fn spawn_notifier(notifier: Notifier, poll: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            info!(poll_ms = poll.as_millis() as u64, "notify worker started");
            loop {
                if let Err(e) = notifier.fan_out().await {
                    warn!(error = %format!("{e:#}"), "notification fan-out failed");
                }
                if let Err(e) = notifier.start_due().await {
                    warn!(error = %format!("{e:#}"), "claiming deliveries failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
            // Let attempts in flight finish and be recorded (each is bounded by its timeout).
            notifier.drain(notifier.request_timeout + Duration::from_secs(2)).await;
            info!("notify worker stopped");
        });
        Self { stop, task }
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
