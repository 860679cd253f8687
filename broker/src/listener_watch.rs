//! Notices when one of rumqttd's listener threads panics, so the process can stop and be restarted.
//!
//! rumqttd 0.20 can still panic in a listener (the stale last-will entry, RELIABILITY.md
//! "Transport": a client on one device listener thread saying DISCONNECT and closing while a
//! device on the other connects). The first panic poisons that listener's lock, and from then on every new
//! connection on it panics too: the broker admits no device again until the process restarts.
//! Nothing in rumqttd's API can reset that state, so the broker's callers (`offsite broker`,
//! `offsite up`) stop when this reports a panic and let their supervisor (systemd `Restart=`,
//! Kubernetes) start them again; devices keep every unacknowledged sample meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Once};
use std::time::Duration;

use prometheus::IntCounter;

/// rumqttd names each listener's thread after its server settings; ours all start with this.
pub(crate) const LISTENER_THREAD_PREFIX: &str = "offsite-mqtt-";

static PANICS: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

static PANICS_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    let c = IntCounter::new(
        "offsite_broker_listener_panics_total",
        "Panics in rumqttd's listener threads (after one, the broker stops to be restarted)",
    )
    .expect("static metric definition is valid");
    if let Err(e) = prometheus::register(Box::new(c.clone())) {
        tracing::warn!(error = %e, "registering offsite_broker_listener_panics_total");
    }
    c
});

/// Installs the panic hook (once per process), chained before the previous hook so the panic is
/// still printed as usual.
pub(crate) fn install() {
    LazyLock::force(&PANICS_TOTAL);
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if is_listener_thread(std::thread::current().name()) {
                PANICS.fetch_add(1, Ordering::Relaxed);
                PANICS_TOTAL.inc();
            }
            previous(info);
        }));
    });
}

fn is_listener_thread(name: Option<&str>) -> bool {
    name.is_some_and(|n| n.starts_with(LISTENER_THREAD_PREFIX))
}

/// Panics seen in rumqttd's listener threads since the process started.
pub fn listener_panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// Resolves once a listener thread has panicked (checked every half second).
pub async fn listener_panicked() {
    let mut every = tokio::time::interval(Duration::from_millis(500));
    loop {
        every.tick().await;
        if listener_panics() > 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listener_threads_count() {
        assert!(is_listener_thread(Some("offsite-mqtt-tls-0")));
        assert!(is_listener_thread(Some("offsite-mqtt-internal")));
        assert!(!is_listener_thread(Some("offsite-broker-meters")));
        assert!(!is_listener_thread(None));
    }
}
