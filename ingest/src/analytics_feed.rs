//! The analytics shard feed (split mode): after each commit, the committed rows, grouped by shard,
//! go to `offsite/analytics/v1/shard/<n>` at QoS 1, so that every sample of a device reaches the
//! one analytics replica that owns its shard, whatever the broker (plain topics, no broker-specific
//! shared-subscription strategy).
//!
//! The publisher has an MQTT connection of its own: the writer waits for room on its queue
//! ([`Tap::Lossless`]), and if it shared ingest's source connection a slow broker could block the
//! very loop that feeds the writer.

use std::sync::LazyLock;
use std::time::Duration;

use offsite_store::analytics_shards::{encode_feed, feed_topic, split_by_shard, ShardCount};
use prometheus::{register_int_counter_vec, IntCounterVec};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{Committed, MqttSourceConfig, Tap};

/// Rows per feed message at most (34 bytes each: well under the broker's payload limit).
const ROWS_PER_MESSAGE: usize = 2000;

pub static FEED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offsite_ingest_analytics_feed_total",
        "Committed rows published to the analytics shard feed, by outcome",
        &["outcome"]
    )
    .unwrap()
});

/// A running feed publisher.
pub struct AnalyticsFeed {
    publisher: JoinHandle<()>,
    client: AsyncClient,
}

impl AnalyticsFeed {
    /// Connects (the internal account: `cfg.group` is unused) and returns the tap the writers
    /// hand committed rows to.
    pub fn start(cfg: MqttSourceConfig, shards: ShardCount, capacity: usize) -> (Self, Tap) {
        LazyLock::force(&FEED);
        let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
        opts.set_credentials(cfg.username.clone(), cfg.password.clone());
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_inflight(1000);
        let (client, mut events) = AsyncClient::new(opts, 1000);
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        info!(host = %cfg.host, port = cfg.port, "analytics feed connected")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, "analytics feed connection lost; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        let (tx, rx) = flume::bounded::<Committed>(capacity.max(1));
        let c = client.clone();
        let publisher = tokio::spawn(async move {
            while let Ok((_, rows)) = rx.recv_async().await {
                for (shard, rows) in split_by_shard(&rows, shards) {
                    for chunk in rows.chunks(ROWS_PER_MESSAGE) {
                        // Waits when the client's queue is full: back-pressure to the writers.
                        match c
                            .publish(
                                feed_topic(shard),
                                QoS::AtLeastOnce,
                                false,
                                encode_feed(chunk),
                            )
                            .await
                        {
                            Ok(()) => FEED
                                .with_label_values(&["published"])
                                .inc_by(chunk.len() as u64),
                            Err(e) => {
                                FEED.with_label_values(&["failed"])
                                    .inc_by(chunk.len() as u64);
                                warn!(error = %e, "publishing to the analytics feed");
                            }
                        }
                    }
                }
            }
        });
        (Self { publisher, client }, Tap::Lossless(tx))
    }

    /// After ingest has stopped (its writers dropped the tap): publishes what is queued, then
    /// disconnects.
    pub async fn shutdown(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.publisher).await;
        // Give the event loop a moment to send the last QoS 1 messages.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = self.client.disconnect().await;
    }
}
