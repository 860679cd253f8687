//! Notification delivery: the fan-out from events to notifications and deliveries (the store's
//! [`offsite_store::Store::fan_out_notifications`]), then sending due deliveries to the channels.
//!
//! - [`channels`]: what each channel kind sends and how (generic webhook with an HMAC signature,
//!   WeCom and DingTalk group robots, e-mail over SMTP), and how an answer is judged.
//! - [`worker`]: [`NotifyWorker`], the loop that runs both steps: every poll it fans out, then
//!   claims due deliveries and sends them concurrently, each bounded by a timeout, so a slow or
//!   failing channel holds up nothing but its own delivery. Failures are retried with
//!   [`Backoff`]; every attempt is recorded. Delivery is at least once: a receiver may see a
//!   message twice (after a crash between sending and recording), and can tell by the delivery id.

pub mod channels;
pub mod worker;

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts};
use serde::{Deserialize, Serialize};

pub use channels::{Outcome, Sender};
pub use worker::{Notifier, NotifyWorker};

/// The `[notifications]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifyConfig {
    /// Runs the notify worker in this process (the all-in-one and `offsite portal`).
    pub enabled: bool,
    /// How often the worker looks for new events and due deliveries.
    pub poll_interval_ms: u64,
    /// Source rows handled per fan-out transaction.
    pub fanout_batch: usize,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Limit of one attempt (HTTP request or SMTP conversation).
    pub request_timeout_s: u64,
    /// Waits before the 2nd, 3rd, ... attempt; the last one repeats.
    pub retry_delays_s: Vec<u64>,
    /// Attempts before a delivery is marked failed.
    pub max_attempts: u32,
    /// The portal's address as people reach it (e.g. `https://jg.example.gov.cn`), for links in
    /// messages; unset: links are paths only.
    pub public_url: Option<String>,
    pub smtp: SmtpConfig,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval_ms: 2000,
            fanout_batch: 500,
            concurrency: 16,
            request_timeout_s: 10,
            retry_delays_s: vec![10, 30, 120, 600, 3600],
            max_attempts: 8,
            public_url: None,
            smtp: SmtpConfig::default(),
        }
    }
}

impl NotifyConfig {
    pub fn backoff(&self) -> Backoff {
        Backoff {
            delays: self.retry_delays_s.iter().map(|s| Duration::from_secs(*s)).collect(),
            max_attempts: self.max_attempts,
        }
    }
}

/// The SMTP server e-mail channels send through. The password may come from the environment
/// (`OFFSITE_NOTIFICATIONS__SMTP__PASSWORD`) rather than the file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpConfig {
    /// Unset: e-mail channels fail with "SMTP not configured" (recorded, retried).
    pub host: Option<String>,
    pub port: u16,
    /// `Name <address>` or an address.
    pub from: String,
    /// Upgrade the connection with STARTTLS (and refuse a server that cannot).
    pub starttls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: 25,
            from: "非现场监管平台 <noreply@offsite.local>".into(),
            starttls: true,
            username: None,
            password: None,
        }
    }
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("starttls", &self.starttls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// When to try a failed delivery again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the 1st failure, the 2nd, ...; the last one repeats.
    pub delays: Vec<Duration>,
    /// Attempts in all; after the last failure the delivery is given up.
    pub max_attempts: u32,
}

impl Backoff {
    /// The wait after `failed` attempts have failed, or `None` to give up.
    pub fn after(&self, failed: u32) -> Option<Duration> {
        if failed >= self.max_attempts {
            return None;
        }
        let i = (failed.max(1) as usize - 1).min(self.delays.len().saturating_sub(1));
        Some(self.delays.get(i).copied().unwrap_or(Duration::from_secs(60)))
    }
}

/// Registered once per process in the default registry, whatever the number of workers.
pub(crate) static NOTIFICATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter("offsite_notifications_total", "In-app notifications written by the fan-out, by kind", &["kind"])
});

pub(crate) static DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "offsite_deliveries_total",
        "Delivery attempts by channel kind and outcome (delivered, retry, failed)",
        &["channel_kind", "outcome"],
    )
});

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    // A clash means the name is taken already; keep counting and say so rather than panic.
    if let Err(e) = prometheus::default_registry().register(Box::new(c.clone())) {
        tracing::warn!(metric = name, error = %e, "metric not registered");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_gives_up() {
        let b = NotifyConfig::default().backoff();
        let secs: Vec<Option<u64>> = (1..=9).map(|n| b.after(n).map(|d| d.as_secs())).collect();
        assert_eq!(
            secs,
            vec![Some(10), Some(30), Some(120), Some(600), Some(3600), Some(3600), Some(3600), None, None]
        );
        let fast = Backoff { delays: vec![Duration::from_millis(5)], max_attempts: 2 };
        assert_eq!(fast.after(1), Some(Duration::from_millis(5)));
        assert_eq!(fast.after(2), None);
    }

    #[test]
    fn the_password_stays_out_of_logs() {
        let c = SmtpConfig { password: Some("hunter2".into()), ..SmtpConfig::default() };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
