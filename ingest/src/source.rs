//! Where messages come from and where acknowledgements go: the broker's in-process link
//! (all-in-one) or an MQTT shared subscription (ingest as its own process, N replicas).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use offsite_wire::{client_id, Channel};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tracing::{info, warn};

use crate::fairness::{self, DeviceGate};
use crate::metrics;

/// The per-device budget check, before a message joins the queue all devices share. A refused
/// message is simply not forwarded: it is never acknowledged, so the device resends it later.
fn admitted(gate: &DeviceGate, topic: &[u8], payload: &[u8]) -> bool {
    // Topics of no device are the processor's to refuse (bad_topic), with a dead letter.
    let Some(device) = fairness::topic_device(topic) else { return true };
    let samples = if topic.ends_with(b"/data") { fairness::estimate_samples(payload) } else { 0 };
    gate.admit(device, samples)
}

/// One message as received from the broker.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub topic: Bytes,
    pub payload: Bytes,
    pub received_at: DateTime<Utc>,
}

/// Publishes acknowledgements to devices.
#[derive(Clone)]
pub enum AckSink {
    /// Through a thread that owns the broker link's sending half.
    Link(flume::Sender<(String, Vec<u8>)>),
    /// Over connections of their own that publish and subscribe to nothing, a device's
    /// acknowledgements always on the same one (so they stay in order).
    Mqtt(Arc<[AsyncClient]>),
}

impl AckSink {
    pub async fn publish(&self, topic: String, payload: Vec<u8>) {
        match self {
            AckSink::Link(tx) => {
                let _ = tx.send_async((topic, payload)).await;
            }
            AckSink::Mqtt(clients) => {
                let mut h = DefaultHasher::new();
                topic.hash(&mut h);
                let c = &clients[(h.finish() % clients.len() as u64) as usize];
                if let Err(e) = c.publish(topic, QoS::AtLeastOnce, false, payload).await {
                    warn!(error = %e, "publishing acknowledgement");
                }
            }
        }
    }
}

/// Waits until an in-process link's buffer has room under `publish_window::LINK_BACKLOG` (see
/// `offsite_wire::publish_window`: an overflowing buffer grows for good and is passed on to a
/// device connection). Gives up after a few seconds, so a link whose router has stopped fails on
/// the publish that follows rather than hanging here.
pub fn wait_for_link_room(tx: &rumqttd::local::LinkTx) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tx.buffer().len() >= offsite_wire::publish_window::LINK_BACKLOG && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The filters ingest subscribes to.
fn filters() -> [String; 4] {
    [
        Channel::Data.all_devices_filter(),
        Channel::Status.all_devices_filter(),
        Channel::CmdAck.all_devices_filter(),
        Channel::Event.all_devices_filter(),
    ]
}

/// Reads an in-process broker link.
pub struct LinkSource;

impl LinkSource {
    /// Subscribes the link and starts forwarding into `queue`. Returns the sink for acknowledgements.
    pub fn start(
        mut tx: rumqttd::local::LinkTx,
        mut rx: rumqttd::local::LinkRx,
        queue: flume::Sender<Incoming>,
        gate: DeviceGate,
    ) -> anyhow::Result<AckSink> {
        for f in filters() {
            tx.subscribe(f)?;
        }
        let (ack_tx, ack_rx) = flume::bounded::<(String, Vec<u8>)>(100_000);
        // LinkTx::publish may block on the router's channel: keep it off the async runtime.
        std::thread::Builder::new().name("ingest-acks".into()).spawn(move || {
            while let Ok((topic, payload)) = ack_rx.recv() {
                wait_for_link_room(&tx);
                if let Err(e) = tx.publish(topic, payload) {
                    warn!(error = %e, "broker link closed; acknowledgements stop");
                    break;
                }
            }
        })?;
        tokio::spawn(async move {
            loop {
                match rx.next().await {
                    Ok(Some(rumqttd::Notification::Forward(f))) => {
                        if !admitted(&gate, &f.publish.topic, &f.publish.payload) {
                            continue;
                        }
                        let msg = Incoming { topic: f.publish.topic, payload: f.publish.payload, received_at: Utc::now() };
                        metrics::QUEUE_DEPTH.set(queue.len() as i64);
                        if queue.send_async(msg).await.is_err() {
                            break;
                        }
                    }
                    Ok(Some(rumqttd::Notification::Unschedule)) => {
                        // Without this the router stops scheduling the link (see environment notes).
                        if rx.ready().is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, "broker link closed");
                        break;
                    }
                }
            }
        });
        Ok(AckSink::Link(ack_tx))
    }
}

#[derive(Debug, Clone)]
pub struct MqttSourceConfig {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    /// Shared-subscription group: replicas in one group split the stream.
    pub group: String,
    pub client_id: String,
}

/// Reads the broker over MQTT with a shared subscription.
pub struct MqttSource;

impl MqttSource {
    pub fn start(cfg: MqttSourceConfig, queue: flume::Sender<Incoming>, gate: DeviceGate) -> AckSink {
        let opts = internal_options(&cfg, &cfg.client_id);
        let (sub_client, mut events) = AsyncClient::new(opts, 10_000);
        let acks: Arc<[AsyncClient]> = (0..ACK_CONNECTIONS).map(|i| ack_connection(&cfg, i)).collect();
        metrics::BROKER_CONNECTED.set(0);
        tokio::spawn(async move {
            // SUBACKs since the last CONNACK: once all are in, the retained statuses are read.
            let mut subacks = 0;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subacks += 1;
                        if subacks == filters().len() {
                            crate::presence_replay::spawn(&cfg, queue.clone());
                        }
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        info!(host = %cfg.host, port = cfg.port, "ingest connected to broker");
                        metrics::BROKER_CONNECTED.set(1);
                        subacks = 0;
                        for f in filters() {
                            let filter = format!("$share/{}/{}", cfg.group, f);
                            if let Err(e) = sub_client.subscribe(filter, QoS::AtLeastOnce).await {
                                warn!(error = %e, "subscribe");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if !admitted(&gate, p.topic.as_bytes(), &p.payload) {
                            continue;
                        }
                        let msg = Incoming { topic: Bytes::from(p.topic.into_bytes()), payload: p.payload, received_at: Utc::now() };
                        metrics::QUEUE_DEPTH.set(queue.len() as i64);
                        if queue.send_async(msg).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        metrics::BROKER_CONNECTED.set(0);
                        warn!(error = %e, "broker connection lost; retrying");
                        events.mqtt_options.set_client_id(client_id::for_connection(&cfg.client_id));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        AckSink::Mqtt(acks)
    }
}

/// Options of a platform connection to the broker's internal listener: a new client id for every
/// connection (see `offsite_wire::client_id`), a clean session, messages up to 1 MiB.
pub(crate) fn internal_options(cfg: &MqttSourceConfig, base: &str) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id::for_connection(base), cfg.host.clone(), cfg.port);
    opts.set_credentials(cfg.username.clone(), cfg.password.clone());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(true);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts
}

/// Connections that publish acknowledgements. Each carries at most `PUBLISH_WINDOW` per pass of
/// rumqttd's router over its connections; two carried the 30-minute soak's calibration (141,312
/// samples/s, about 14,000 acknowledgements a second, RELIABILITY.md "Soak"), where one connection
/// with 64 in flight fell behind at 5,000.
const ACK_CONNECTIONS: usize = 2;

/// A connection that only publishes, with `offsite_wire::publish_window::PUBLISH_WINDOW` in flight:
/// nothing else comes in on it, so its buffer in the broker never overflows.
fn ack_connection(cfg: &MqttSourceConfig, i: usize) -> AsyncClient {
    let base = format!("{}-acks{i}", cfg.client_id);
    let mut opts = internal_options(cfg, &base);
    opts.set_inflight(offsite_wire::publish_window::PUBLISH_WINDOW);
    let (client, mut events) = AsyncClient::new(opts, 10_000);
    tokio::spawn(async move {
        loop {
            if let Err(e) = events.poll().await {
                warn!(error = %e, "acknowledgement connection lost; retrying");
                events.mqtt_options.set_client_id(client_id::for_connection(&base));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    client
}
