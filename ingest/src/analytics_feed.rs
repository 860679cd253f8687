//! The analytics shard feed (split mode): after each commit, the committed rows, grouped by shard,
//! go to `offsite/analytics/v1/shard/<n>` at QoS 1, so that every sample of a device reaches the
//! one analytics replica that owns its shard, whatever the broker (plain topics, no broker-specific
//! shared-subscription strategy).
//!
//! The writer acknowledges devices only once the broker has acknowledged (PUBACK) the batch's
//! rows on the feed ([`Tap::Lossless`]): a kill between commit and publish leaves the batch
//! unacknowledged, the device resends it, and it is published again (the analytics replica skips
//! what it has already analysed). The publisher has an MQTT connection of its own: if it shared
//! ingest's source connection, a slow broker could block the very loop that feeds the writer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use offsite_store::analytics_shards::{encode_feed, feed_topic, split_by_shard, ShardCount};
use prometheus::{register_int_counter_vec, IntCounterVec};
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use offsite_wire::client_id;

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

/// How long the publisher waits for the broker's PUBACKs of one batch before publishing it again.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Matches PUBACKs to publishes: rumqttc numbers a QoS 1 publish when it sends it, in request
/// order, so waiters queue in `order` until `Outgoing::Publish(pkid)` names them.
#[derive(Default)]
struct Confirmations {
    order: VecDeque<oneshot::Sender<()>>,
    inflight: HashMap<u16, oneshot::Sender<()>>,
}

/// A running feed publisher.
pub struct AnalyticsFeed {
    publisher: JoinHandle<()>,
    /// Drives the connection; kept open by `_client` until shutdown aborts it.
    connection: JoinHandle<()>,
    _client: AsyncClient,
}

impl AnalyticsFeed {
    /// Connects (the internal account: `cfg.group` is unused) and returns the tap the writers
    /// hand committed rows to.
    pub fn start(cfg: MqttSourceConfig, shards: ShardCount, capacity: usize) -> (Self, Tap) {
        LazyLock::force(&FEED);
        let mut opts = crate::source::internal_options(&cfg, &cfg.client_id);
        // See `offsite_wire::publish_window`: a wider window grows the broker's buffers for good.
        opts.set_inflight(offsite_wire::publish_window::PUBLISH_WINDOW);
        let (client, mut events) = AsyncClient::new(opts, 1000);
        let confirmations: Arc<Mutex<Confirmations>> = Default::default();
        let conf = confirmations.clone();
        let connection = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        info!(host = %cfg.host, port = cfg.port, "analytics feed connected")
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        let mut c = conf.lock().unwrap_or_else(|e| e.into_inner());
                        // A number already waiting is a retransmission after a reconnect.
                        if !c.inflight.contains_key(&pkid) {
                            if let Some(w) = c.order.pop_front() {
                                c.inflight.insert(pkid, w);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(a))) => {
                        let w = conf
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .inflight
                            .remove(&a.pkid);
                        if let Some(w) = w {
                            let _ = w.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, "analytics feed connection lost; retrying");
                        events
                            .mqtt_options
                            .set_client_id(client_id::for_connection(&cfg.client_id));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        let (tx, rx) = flume::bounded::<(Committed, oneshot::Sender<()>)>(capacity.max(1));
        let c = client.clone();
        let publisher = tokio::spawn(async move {
            while let Ok(((_, rows), done)) = rx.recv_async().await {
                let mut messages: Vec<(String, Vec<u8>, usize)> = Vec::new();
                for (shard, rows) in split_by_shard(&rows, shards) {
                    for chunk in rows.chunks(ROWS_PER_MESSAGE) {
                        messages.push((feed_topic(shard), encode_feed(chunk), chunk.len()));
                    }
                }
                // Until the broker has acknowledged every message of the batch; after a timeout
                // (a lost connection) the whole batch again: the replicas skip what they have seen.
                loop {
                    let mut waits = Vec::with_capacity(messages.len());
                    for (topic, payload, n) in &messages {
                        let (w, confirmed) = oneshot::channel();
                        confirmations
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .order
                            .push_back(w);
                        // Waits when the client's queue is full: back-pressure to the writers.
                        if let Err(e) = c
                            .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                            .await
                        {
                            warn!(error = %e, "publishing to the analytics feed");
                        }
                        waits.push((confirmed, *n));
                    }
                    let all = async {
                        for (w, n) in waits {
                            w.await.ok()?;
                            FEED.with_label_values(&["published"]).inc_by(n as u64);
                        }
                        Some(())
                    };
                    if let Ok(Some(())) = tokio::time::timeout(CONFIRM_TIMEOUT, all).await {
                        break;
                    }
                    FEED.with_label_values(&["republished"])
                        .inc_by(rows.len() as u64);
                    warn!(
                        rows = rows.len(),
                        "analytics feed not acknowledged in time; publishing the batch again"
                    );
                    // Forget the stale waiters so the next numbers match the next publishes.
                    let mut conf = confirmations.lock().unwrap_or_else(|e| e.into_inner());
                    conf.order.clear();
                    conf.inflight.clear();
                }
                let _ = done.send(());
            }
        });
        (
            Self {
                publisher,
                connection,
                _client: client,
            },
            Tap::Lossless(tx),
        )
    }

    /// After ingest has stopped (its writers dropped the tap): publishes what is queued, then
    /// closes the connection (no DISCONNECT packet: see `offsite_wire::client_id`).
    pub async fn shutdown(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.publisher).await;
        // Give the event loop a moment to send the last QoS 1 messages.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.connection.abort();
    }
}
