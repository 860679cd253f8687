//! One device's MQTT connection: TLS with the device certificate, token as password, last will,
//! batches published QoS 1 and kept until the platform's acknowledgement names their sequence.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use offsite_wire::{encode_batch, Ack, Batch, Channel, DeviceCredentials, Sample, Status, Topic};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tracing::{debug, info, warn};

#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host name matching the broker's certificate (`localhost` for the all-in-one install).
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub keep_alive: Duration,
    /// Resend a batch that has not been acknowledged after this long, even without a reconnect.
    pub resend_after: Duration,
    /// Delay between reconnect attempts.
    pub reconnect_delay: Duration,
    pub inflight: u16,
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(30),
            resend_after: Duration::from_secs(30),
            reconnect_delay: Duration::from_millis(500),
            inflight: 100,
        }
    }
}

struct Pending {
    payload: Arc<Vec<u8>>,
    sent_at: Instant,
    /// Oldest sample time in the batch, ms since the epoch (for latency figures).
    oldest_ts_ms: i64,
}

#[derive(Default)]
struct Shared {
    unacked: Mutex<BTreeMap<u64, Pending>>,
    connected: AtomicBool,
    sent: AtomicU64,
    acked: AtomicU64,
    rejected: AtomicU64,
    resent: AtomicU64,
    connects: AtomicU64,
}

/// Counters of one link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub acked: u64,
    pub rejected: u64,
    pub resent: u64,
    pub unacked: u64,
    pub connects: u64,
    pub connected: bool,
}

/// A connected (or reconnecting) device.
pub struct DeviceLink {
    creds_id: offsite_wire::DeviceId,
    client: AsyncClient,
    shared: Arc<Shared>,
    next_seq: AtomicU64,
    data_topic: String,
    task: tokio::task::JoinHandle<()>,
}

impl DeviceLink {
    /// Starts connecting in the background; batches published before the connection is up are
    /// kept and sent once it is.
    pub fn connect(
        creds: &DeviceCredentials,
        endpoint: &Endpoint,
        opts: LinkOptions,
        latency_ms: Option<flume::Sender<f64>>,
    ) -> Result<Self> {
        let id = creds.device_id.clone();
        let mut mo = MqttOptions::new(id.as_str(), endpoint.host.clone(), endpoint.port);
        mo.set_credentials(id.as_str(), creds.token.clone());
        mo.set_keep_alive(opts.keep_alive);
        // Application-level resend covers redelivery; a persistent session would make rumqttc
        // resend a refused publish forever.
        mo.set_clean_session(true);
        mo.set_inflight(opts.inflight);
        mo.set_max_packet_size(1 << 20, 1 << 20);
        let status_topic = Topic::new(id.clone(), Channel::Status).render();
        mo.set_last_will(LastWill::new(&status_topic, Status { online: false }.encode(), QoS::AtLeastOnce, true));
        mo.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca: creds.ca_pem.as_bytes().to_vec(),
            alpn: None,
            client_auth: Some((creds.cert_pem.as_bytes().to_vec(), creds.key_pem.as_bytes().to_vec())),
        }));
        let (client, events) = AsyncClient::new(mo, 1000);
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(event_loop(
            id.clone(),
            client.clone(),
            events,
            shared.clone(),
            opts,
            latency_ms,
            status_topic,
        ));
        // Sequence numbers start at the clock (µs) so a restarted agent never reuses one.
        let start = chrono::Utc::now().timestamp_micros().max(1) as u64;
        Ok(Self {
            data_topic: Topic::new(id.clone(), Channel::Data).render(),
            creds_id: id,
            client,
            shared,
            next_seq: AtomicU64::new(start),
            task,
        })
    }

    pub fn device_id(&self) -> &offsite_wire::DeviceId {
        &self.creds_id
    }

    /// Queues a batch and publishes it; returns its sequence number.
    pub async fn publish(&self, samples: Vec<Sample>) -> Result<u64> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let oldest_ts_ms = samples.iter().map(|s| s.ts.timestamp_millis()).min().unwrap_or(0);
        let payload = Arc::new(encode_batch(&Batch { seq, samples }));
        self.shared
            .unacked
            .lock()
            .unwrap()
            .insert(seq, Pending { payload: payload.clone(), sent_at: Instant::now(), oldest_ts_ms });
        self.shared.sent.fetch_add(1, Ordering::Relaxed);
        if self.shared.connected.load(Ordering::Relaxed) {
            self.client.publish(&self.data_topic, QoS::AtLeastOnce, false, payload.to_vec()).await?;
        }
        Ok(seq)
    }

    pub fn stats(&self) -> LinkStats {
        let s = &self.shared;
        LinkStats {
            sent: s.sent.load(Ordering::Relaxed),
            acked: s.acked.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            resent: s.resent.load(Ordering::Relaxed),
            unacked: s.unacked.lock().unwrap().len() as u64,
            connects: s.connects.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
        }
    }

    /// Waits until every batch is acknowledged or the timeout passes; true if all are.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.shared.unacked.lock().unwrap().is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.shared.unacked.lock().unwrap().is_empty()
    }

    /// Says offline and disconnects.
    pub async fn close(self) {
        let topic = Topic::new(self.creds_id.clone(), Channel::Status).render();
        let _ = self.client.publish(topic, QoS::AtLeastOnce, true, Status { online: false }.encode()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
    }

    /// Drops the connection without a goodbye (the broker publishes the last will).
    pub fn abort(self) {
        self.task.abort();
    }
}

async fn event_loop(
    id: offsite_wire::DeviceId,
    client: AsyncClient,
    mut events: rumqttc::EventLoop,
    shared: Arc<Shared>,
    opts: LinkOptions,
    latency_ms: Option<flume::Sender<f64>>,
    status_topic: String,
) {
    let ack_topic = Topic::new(id.clone(), Channel::Ack).render();
    let data_topic = Topic::new(id.clone(), Channel::Data).render();
    let mut resend_tick = tokio::time::interval(opts.resend_after.min(Duration::from_secs(5)));
    loop {
        let ev = tokio::select! {
            ev = events.poll() => ev,
            _ = resend_tick.tick() => {
                if shared.connected.load(Ordering::Relaxed) {
                    resend(&client, &shared, &data_topic, Some(opts.resend_after));
                }
                continue;
            }
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                shared.connects.fetch_add(1, Ordering::Relaxed);
                shared.connected.store(true, Ordering::Relaxed);
                info!(device = %id, "connected");
                let c = client.clone();
                let (ack_topic, status_topic) = (ack_topic.clone(), status_topic.clone());
                let shared2 = shared.clone();
                let data_topic = data_topic.clone();
                // Publishing from inside the event loop would deadlock on a full request channel.
                tokio::spawn(async move {
                    let _ = c.subscribe(&ack_topic, QoS::AtLeastOnce).await;
                    let _ = c.publish(&status_topic, QoS::AtLeastOnce, true, Status { online: true }.encode()).await;
                    resend(&c, &shared2, &data_topic, None);
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => match Ack::decode(&p.payload) {
                Ok(ack) => {
                    let now_ms = chrono::Utc::now().timestamp_millis();
                    let mut u = shared.unacked.lock().unwrap();
                    for seq in &ack.seqs {
                        if let Some(p) = u.remove(seq) {
                            shared.acked.fetch_add(1, Ordering::Relaxed);
                            if let Some(l) = &latency_ms {
                                let _ = l.try_send((now_ms - p.oldest_ts_ms) as f64);
                            }
                        }
                    }
                    for r in &ack.rejected {
                        if u.remove(&r.seq).is_some() {
                            shared.rejected.fetch_add(1, Ordering::Relaxed);
                            warn!(device = %id, seq = r.seq, reason = %r.reason, "platform refused a batch");
                        }
                    }
                }
                Err(e) => warn!(device = %id, error = %e, "malformed ack"),
            },
            Ok(_) => {}
            Err(e) => {
                if shared.connected.swap(false, Ordering::Relaxed) {
                    warn!(device = %id, error = %e, "connection lost");
                } else {
                    debug!(device = %id, error = %e, "connect failed");
                }
                tokio::time::sleep(opts.reconnect_delay).await;
            }
        }
    }
}

/// Republishes unacknowledged batches in order: all of them after a reconnect, or only those
/// older than `older_than`.
fn resend(client: &AsyncClient, shared: &Arc<Shared>, topic: &str, older_than: Option<Duration>) {
    let batch: Vec<(u64, Arc<Vec<u8>>)> = {
        let mut u = shared.unacked.lock().unwrap();
        u.iter_mut()
            .filter(|(_, p)| older_than.is_none_or(|d| p.sent_at.elapsed() >= d))
            .map(|(s, p)| {
                p.sent_at = Instant::now();
                (*s, p.payload.clone())
            })
            .collect()
    };
    if batch.is_empty() {
        return;
    }
    shared.resent.fetch_add(batch.len() as u64, Ordering::Relaxed);
    let c = client.clone();
    let topic = topic.to_owned();
    tokio::spawn(async move {
        for (_, payload) in batch {
            if c.publish(&topic, QoS::AtLeastOnce, false, payload.to_vec()).await.is_err() {
                break;
            }
        }
    });
}
