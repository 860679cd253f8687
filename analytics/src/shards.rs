//! Which shards this analytics replica owns, and how their samples reach it.
//!
//! Every replica (the all-in-one's single one included) runs the same lease round: heartbeat,
//! renew, give back surplus, claim up to its fair share (`offsite_store::analytics_shards`). A
//! shard it acquires is replayed from the database from its checkpoint while its live feed is
//! held (`replay.rs`; the other shards flow meanwhile); the owner moves the checkpoint forward as
//! it analyses.
//!
//! Invariant (what "nothing lost" means here): a sample of shard n that was committed within
//! `checkpoint_margin` of its `received_at` is analysed by whoever owns n, live or by replay,
//! unless n went unowned for longer than `max_replay`. The checkpoint is always at least
//! `checkpoint_margin` behind the newest `received_at` the owner analysed, which covers the
//! commit -> publish -> deliver delay and writers committing out of order. A sample may be
//! analysed twice (replay overlapping the feed, a handover, a redelivery): the per-series guard
//! and the store's covered-episode check keep that from doubling a warning.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use offsite_store::analytics_shards::{
    decode_feed, feed_topic, parse_feed_topic, Shard, ShardCount,
};
use offsite_wire::client_id;
use prometheus::{
    register_int_counter, register_int_counter_vec, register_int_gauge, IntCounter, IntCounterVec,
    IntGauge,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tracing::{info, warn};

use crate::live::Committed;

/// `[analytics]` settings of the shard leases.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub shards: ShardCount,
    /// This replica's name in the leases table (stable across restarts where it can be: a
    /// restarted replica then takes its own unexpired leases back at once).
    pub replica: String,
    /// Fed in-process (the all-in-one, or ingest with analytics beside it): nobody else can see
    /// this stream, so this replica takes every shard, live lease or not, except from another
    /// in-process replica (a second such process waits for the first one's leases to lapse).
    pub exclusive: bool,
    pub lease: Duration,
    pub renew_every: Duration,
    /// How far behind the newest analysed `received_at` the checkpoint stays.
    pub checkpoint_margin: Duration,
    /// A replay reaches back at most this far.
    pub max_replay: Duration,
}

impl ShardConfig {
    /// One replica fed in-process that owns every shard.
    pub fn in_process(shards: ShardCount, replica: String) -> Self {
        Self {
            shards,
            replica,
            exclusive: true,
            lease: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            checkpoint_margin: Duration::from_secs(10),
            max_replay: Duration::from_secs(3600),
        }
    }
}

pub static OWNED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "offsite_analytics_shards_owned",
        "Analytics shards this replica owns"
    )
    .unwrap()
});
pub static REPLAYED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "offsite_analytics_replayed_samples_total",
        "Samples replayed from the database on acquiring a shard"
    )
    .unwrap()
});
pub static SKIPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offsite_analytics_skipped_total",
        "Samples or raises not acted on: duplicate_sample (already analysed), covered_raise (its warning episode already saw it), not_owned (shard owned elsewhere)",
        &["reason"]
    )
    .unwrap()
});
pub static LEASE_CHANGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offsite_analytics_lease_changes_total",
        "Shard lease changes of this replica: acquired, released (surplus or shutdown), lost (taken or lapsed)",
        &["change"]
    )
    .unwrap()
});
pub static FEED_REJECTED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "offsite_analytics_feed_rejected_total",
        "Analytics feed messages that could not be decoded"
    )
    .unwrap()
});

pub static REPLAYING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "offsite_analytics_replaying_shards",
        "Owned shards still catching up from their checkpoints (their live rows are held)"
    )
    .unwrap()
});
pub static REPLAY_HELD_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "offsite_analytics_replay_held_dropped_total",
        "Live rows of a replaying shard dropped over the hold bound (the replay reads them from the table instead)"
    )
    .unwrap()
});
pub static IN_PROCESS_WAITING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "offsite_analytics_in_process_waiting",
        "1 while another process's in-process analytics holds shards this in-process one cannot take"
    )
    .unwrap()
});

/// The replica name of in-process analytics: one per process (`in-process-<host>-<random>`), so a
/// second ingest with analytics beside it cannot renew the first one's leases as its own, and a
/// dead one's leases lapse normally.
pub fn in_process_replica() -> String {
    // Services rarely export HOSTNAME (pods do); the kernel knows it anyway.
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("in-process-{host}-{:08x}", rand::random::<u32>())
}

pub(crate) fn register() {
    LazyLock::force(&REPLAYING);
    LazyLock::force(&REPLAY_HELD_DROPPED);
    LazyLock::force(&IN_PROCESS_WAITING);
    LazyLock::force(&OWNED);
    LazyLock::force(&REPLAYED);
    LazyLock::force(&SKIPPED);
    LazyLock::force(&LEASE_CHANGES);
    LazyLock::force(&FEED_REJECTED);
}

/// How the replica follows the shards it owns.
pub enum FeedControl {
    /// The in-process tap carries every shard; nothing to subscribe.
    InProcess,
    Mqtt(MqttFeed),
}

impl FeedControl {
    pub(crate) async fn subscribe(&self, shards: &[Shard]) -> Result<()> {
        match self {
            FeedControl::InProcess => Ok(()),
            FeedControl::Mqtt(f) => f.subscribe(shards).await,
        }
    }

    pub(crate) async fn unsubscribe(&self, shards: &[Shard]) {
        if let FeedControl::Mqtt(f) = self {
            f.unsubscribe(shards).await
        }
    }

    /// True once after the MQTT connection came back: whatever was published meanwhile was not
    /// delivered (clean session), so the owned shards are replayed from their checkpoints.
    pub(crate) fn take_reconnected(&self) -> bool {
        match self {
            FeedControl::InProcess => false,
            FeedControl::Mqtt(f) => f
                .reconnected
                .swap(false, std::sync::atomic::Ordering::SeqCst),
        }
    }
}

/// Where the MQTT feed connects (the broker's internal account).
#[derive(Debug, Clone)]
pub struct MqttFeedConfig {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub client_id: String,
    pub shards: ShardCount,
}

/// The subscriber side of the shard feed: one topic per owned shard, QoS 1, clean session.
pub struct MqttFeed {
    client: AsyncClient,
    subscribed: Arc<Mutex<BTreeSet<Shard>>>,
    subacks: flume::Receiver<()>,
    reconnected: Arc<std::sync::atomic::AtomicBool>,
}

impl MqttFeed {
    /// Connects and forwards decoded batches to `out` (the engine's queue).
    pub fn start(cfg: MqttFeedConfig, out: flume::Sender<Committed>) -> Self {
        // A new client id for every connection: see `offsite_wire::client_id`.
        let mut opts = MqttOptions::new(
            client_id::for_connection(&cfg.client_id),
            cfg.host.clone(),
            cfg.port,
        );
        opts.set_credentials(cfg.username.clone(), cfg.password.clone());
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(opts, 1000);
        let subscribed: Arc<Mutex<BTreeSet<Shard>>> = Default::default();
        let (suback_tx, subacks) = flume::unbounded();
        let reconnected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sub, resub, again) = (subscribed.clone(), client.clone(), reconnected.clone());
        tokio::spawn(async move {
            let mut connected_once = false;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        info!(host = %cfg.host, port = cfg.port, "analytics feed connected");
                        let topics: Vec<Shard> = sub
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .iter()
                            .copied()
                            .collect();
                        if connected_once {
                            again.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        connected_once = true;
                        if !topics.is_empty() {
                            let filters = topics.iter().map(|s| {
                                rumqttc::SubscribeFilter::new(feed_topic(*s), QoS::AtLeastOnce)
                            });
                            if let Err(e) = resub.subscribe_many(filters).await {
                                warn!(error = %e, "resubscribing the analytics feed");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = suback_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let rows = match parse_feed_topic(&p.topic, cfg.shards)
                            .map_err(|e| e.to_string())
                            .and_then(|_| decode_feed(&p.payload).map_err(|e| e.to_string()))
                        {
                            Ok(rows) => rows,
                            Err(e) => {
                                FEED_REJECTED.inc();
                                warn!(topic = %p.topic, error = %e, "analytics feed message refused");
                                continue;
                            }
                        };
                        if out.send_async((Instant::now(), rows)).await.is_err() {
                            break;
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
        Self {
            client,
            subscribed,
            subacks,
            reconnected,
        }
    }

    /// Subscribes and waits for the broker's SUBACK: a replay that starts after it misses nothing
    /// committed later.
    async fn subscribe(&self, shards: &[Shard]) -> Result<()> {
        if shards.is_empty() {
            return Ok(());
        }
        self.subscribed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(shards.iter().copied());
        while self.subacks.try_recv().is_ok() {}
        let filters: Vec<_> = shards
            .iter()
            .map(|s| rumqttc::SubscribeFilter::new(feed_topic(*s), QoS::AtLeastOnce))
            .collect();
        self.client.subscribe_many(filters).await?;
        match tokio::time::timeout(Duration::from_secs(10), self.subacks.recv_async()).await {
            Ok(Ok(())) => Ok(()),
            _ => bail!("no SUBACK from the broker for the analytics feed"),
        }
    }

    async fn unsubscribe(&self, shards: &[Shard]) {
        {
            let mut set = self.subscribed.lock().unwrap_or_else(|e| e.into_inner());
            for s in shards {
                set.remove(s);
            }
        }
        for s in shards {
            if let Err(e) = self.client.unsubscribe(feed_topic(*s)).await {
                warn!(error = %e, "unsubscribing the analytics feed");
            }
        }
    }
}
