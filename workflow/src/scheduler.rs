//! The task scheduler as a service: one pass of `Store::run_scheduler` every `interval`, with the
//! wall clock. Several replicas may run it; the store's advisory lock lets one work per pass.
//! A failing pass is logged and counted, and the next one tries again.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::Utc;
use offsite_store::tasks::SchedulerPolicy;
use offsite_store::{Level, Store};
use prometheus::{register_int_counter, register_int_counter_vec, IntCounter, IntCounterVec};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

static PASSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offsite_scheduler_passes_total", "Scheduler passes by outcome (ran, skipped, error)", &["outcome"])
        .expect("metric registers once")
});
static CHECKPOINTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offsite_scheduler_checkpoints_total",
        "Task checkpoints fired (remind, supervise, escalate)",
        &["stage"]
    )
    .expect("metric registers once")
});
static AUTO_DISPATCHED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offsite_scheduler_auto_dispatched_total", "Red warnings dispatched as tasks automatically")
        .expect("metric registers once")
});
static ESCALATED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offsite_scheduler_escalated_warnings_total", "Warnings escalated because nobody acknowledged them")
        .expect("metric registers once")
});

/// `[workflow]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    pub enabled: bool,
    /// Seconds between passes.
    pub interval_s: u64,
    /// Escalate open warnings nobody acknowledged within this many minutes (0: never).
    pub ack_escalate_minutes: u64,
    /// Only warnings of this level or more severe (1 red .. 4 blue) escalate.
    pub ack_escalate_level: u8,
    /// At most this much of each kind of work per pass.
    pub batch: i64,
    /// Camera snapshots are kept this many days unless a task or case holds them.
    pub snapshot_retention_days: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self { enabled: true, interval_s: 5, ack_escalate_minutes: 15, ack_escalate_level: 2, batch: 500, snapshot_retention_days: 30 }
    }
}

impl SchedulerConfig {
    pub fn policy(&self) -> SchedulerPolicy {
        SchedulerPolicy {
            ack_escalate_after: (self.ack_escalate_minutes > 0).then(|| chrono::Duration::minutes(self.ack_escalate_minutes as i64)),
            ack_escalate_level: Level::new(self.ack_escalate_level.clamp(1, 4)).expect("clamped"),
            batch: self.batch.max(1),
        }
    }
}

/// Runs passes until `stop` turns true.
pub fn spawn(store: Store, cfg: SchedulerConfig, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let policy = cfg.policy();
        let mut tick = tokio::time::interval(Duration::from_secs(cfg.interval_s.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tick.tick() => {}
            }
            match store.run_scheduler(Utc::now(), &policy).await {
                Ok(r) if r.skipped => PASSES.with_label_values(&["skipped"]).inc(),
                Ok(r) => {
                    PASSES.with_label_values(&["ran"]).inc();
                    for f in &r.fired {
                        CHECKPOINTS.with_label_values(&[&f.stage]).inc();
                    }
                    AUTO_DISPATCHED.inc_by(r.auto_dispatched.len() as u64);
                    ESCALATED.inc_by(r.escalated_warnings.len() as u64);
                    if !r.fired.is_empty() || !r.auto_dispatched.is_empty() || !r.escalated_warnings.is_empty() {
                        info!(
                            checkpoints = r.fired.len(),
                            auto_dispatched = r.auto_dispatched.len(),
                            escalated = r.escalated_warnings.len(),
                            "scheduler pass"
                        );
                    }
                }
                Err(e) => {
                    PASSES.with_label_values(&["error"]).inc();
                    warn!(error = %format!("{e:#}"), "scheduler pass failed; retrying next tick");
                }
            }
        }
    })
}
