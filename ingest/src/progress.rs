//! A periodic progress line for ingest processes without a metrics endpoint: with several
//! replicas on one shared subscription it shows what each one took of the stream.

use std::time::Duration;

use tracing::info;

use crate::metrics;

/// Logs the data messages received and samples committed so far every `every`, when they changed.
pub fn spawn_log(every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = (0, 0);
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = (metrics::MESSAGES.get(), metrics::SAMPLES.get());
            if now != last {
                info!(messages = now.0, samples = now.1, "ingest progress");
                last = now;
            }
        }
    })
}
