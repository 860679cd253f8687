//! One device's MQTT connection: TLS with the device certificate, token as password, last will,
//! and a sender that drains the device's outbox in sequence order.
//!
//! Delivery is go-back-N over the outbox: at most `window` batches are unacknowledged on the
//! wire; after a reconnect, or when the oldest one waits longer than `resend_after`, sending starts
//! again from the oldest pending batch. The platform stores each sample once, so a resend never
//! duplicates data; the outbox forgets a batch only when an acknowledgement names its sequence.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use offsite_wire::{
    encode_batch, valid_command_id, Ack, Batch, Channel, Command, CommandAck, DeviceCredentials, DeviceId, Sample,
    Status, Topic,
};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::outbox::{MemoryOutbox, Outbox};
use crate::queue::Dropped;

#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host name matching the broker's certificate (`localhost` for the all-in-one install).
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub keep_alive: Duration,
    /// Start again from the oldest pending batch when it has waited this long for its acknowledgement.
    pub resend_after: Duration,
    /// First wait before reconnecting; doubles with each failed attempt up to `max_reconnect_delay`.
    pub reconnect_delay: Duration,
    /// Longest wait between reconnect attempts. Growing waits keep a fleet that lost its broker
    /// from hammering it (and its TLS handshakes) while it is away or just back.
    pub max_reconnect_delay: Duration,
    /// MQTT in-flight limit of the client.
    pub inflight: u16,
    /// Batches sent and not yet acknowledged, at most.
    pub window: usize,
    /// Pace of sending, batches per second (0: unlimited). Bounds how hard a device that returns
    /// with a backlog hits the platform.
    pub max_batches_per_second: f64,
    /// After a reconnect, wait a random time up to this before sending the backlog, so a fleet that
    /// comes back together does not send together.
    pub reconnect_jitter: Duration,
}

/// Seconds a connection attempt (TCP, TLS, CONNECT -> CONNACK) may take before the client gives up.
pub const CONNECT_TIMEOUT_S: u64 = 60;

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(30),
            resend_after: Duration::from_secs(30),
            reconnect_delay: Duration::from_millis(500),
            max_reconnect_delay: Duration::from_secs(30),
            inflight: 100,
            window: 100,
            max_batches_per_second: 0.0,
            reconnect_jitter: Duration::ZERO,
        }
    }
}

/// Optional channels a link reports into.
#[derive(Default, Clone)]
pub struct LinkHooks {
    /// Milliseconds from publishing a batch to its acknowledgement.
    pub latency_ms: Option<flume::Sender<f64>>,
    /// Commands received on the device's command topic.
    pub commands: Option<flume::Sender<Command>>,
}

struct Window {
    outbox: Box<dyn Outbox>,
    /// Sent and not yet acknowledged: seq -> when sent.
    inflight: BTreeMap<u64, Instant>,
    /// Last seq sent in the current pass.
    cursor: Option<u64>,
    /// Publish times for latency figures (only with a latency hook).
    published_at: HashMap<u64, i64>,
}

struct Shared {
    window: Mutex<Window>,
    wake: Notify,
    connected: AtomicBool,
    /// Set by `close`, so the disconnect it causes is not reported as a lost connection.
    closing: AtomicBool,
    /// Bumped on every connection so the sender restarts from the oldest pending batch.
    generation: AtomicU64,
    appended: AtomicU64,
    transmitted: AtomicU64,
    acked: AtomicU64,
    rejected: AtomicU64,
    restarts: AtomicU64,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    /// The wait before the next reconnect attempt (ms); 0 while connected.
    backoff_ms: AtomicU64,
    dropped: AtomicU64,
    /// Acknowledged numbers that are not batches (camera events), for whoever waits on them;
    /// bounded, and a full channel only costs a resend (the platform drops repeats).
    other_acks: (flume::Sender<u64>, flume::Receiver<u64>),
}

/// Counters and gauges of one link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Batches put into the outbox by this process.
    pub sent: u64,
    /// Batch transmissions, resends included.
    pub transmitted: u64,
    pub acked: u64,
    pub rejected: u64,
    /// Times sending went back to the oldest pending batch (timeouts, not reconnects).
    pub resent: u64,
    /// Batches waiting for their acknowledgement (in the outbox).
    pub unacked: u64,
    pub outbox_bytes: u64,
    /// When the oldest pending batch was appended (ms since the epoch).
    pub oldest_unacked_ms: Option<i64>,
    /// Batches dropped by the outbox budget over its life.
    pub dropped_total: u64,
    pub connects: u64,
    /// Connection attempts that failed or connections that were lost.
    pub connect_failures: u64,
    /// The current wait before the next reconnect attempt (ms); 0 while connected.
    pub backoff_ms: u64,
    pub connected: bool,
}

/// A connected (or reconnecting) device.
pub struct DeviceLink {
    id: DeviceId,
    client: AsyncClient,
    shared: Arc<Shared>,
    /// One counter for batches and camera messages: the platform acknowledges both by number, so
    /// a camera message's acknowledgement can never be taken for a batch's.
    next_seq: Arc<AtomicU64>,
    data_topic: String,
    latency: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DeviceLink {
    /// A link whose pending batches live in memory (load generators and tests of the platform).
    pub fn connect(
        creds: &DeviceCredentials,
        endpoint: &Endpoint,
        opts: LinkOptions,
        latency_ms: Option<flume::Sender<f64>>,
    ) -> Result<Self> {
        Self::start(creds, endpoint, opts, Box::new(MemoryOutbox::default()), LinkHooks { latency_ms, commands: None })
    }

    /// Starts connecting in the background and sending what `outbox` holds, oldest first.
    pub fn start(
        creds: &DeviceCredentials,
        endpoint: &Endpoint,
        opts: LinkOptions,
        outbox: Box<dyn Outbox>,
        hooks: LinkHooks,
    ) -> Result<Self> {
        let id = creds.device_id.clone();
        let mut mo = MqttOptions::new(id.as_str(), endpoint.host.clone(), endpoint.port);
        mo.set_credentials(id.as_str(), creds.token.clone());
        mo.set_keep_alive(opts.keep_alive);
        // The outbox covers redelivery; a persistent session would make rumqttc resend a refused
        // publish forever.
        mo.set_clean_session(true);
        mo.set_inflight(opts.inflight.max(1));
        mo.set_max_packet_size(1 << 20, 1 << 20);
        let status_topic = Topic::new(id.clone(), Channel::Status).render();
        mo.set_last_will(LastWill::new(&status_topic, Status { online: false }.encode(), QoS::AtLeastOnce, true));
        mo.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca: creds.ca_pem.as_bytes().to_vec(),
            alpn: None,
            client_auth: Some((creds.cert_pem.as_bytes().to_vec(), creds.key_pem.as_bytes().to_vec())),
        }));
        let (client, mut events) = AsyncClient::new(mo, 1000);
        // TLS and CONNACK may take the broker many seconds when a whole fleet reconnects at once.
        // A client that gives up meanwhile costs a retry, and against rumqttd 0.20 worse: a link
        // closed before its CONNACK leaves a stale last-will entry, and the same client id's next
        // connect panics the broker's listener for every device (rumqtt issue #1062).
        let mut net = rumqttc::NetworkOptions::new();
        net.set_connection_timeout(CONNECT_TIMEOUT_S);
        events.set_network_options(net);
        // Sequence numbers start at the clock (µs) and above anything the outbox has seen, so a
        // restarted agent never reuses one.
        let clock = chrono::Utc::now().timestamp_micros().max(1) as u64;
        let start = clock.max(outbox.last_seq().map_or(0, |s| s + 1));
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(outbox.dropped_total().batches),
            window: Mutex::new(Window { outbox, inflight: BTreeMap::new(), cursor: None, published_at: HashMap::new() }),
            wake: Notify::new(),
            connected: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            appended: AtomicU64::new(0),
            transmitted: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            backoff_ms: AtomicU64::new(0),
            other_acks: flume::bounded(1024),
        });
        let data_topic = Topic::new(id.clone(), Channel::Data).render();
        let latency = hooks.latency_ms.is_some();
        let tasks = vec![
            tokio::spawn(event_loop(id.clone(), client.clone(), events, shared.clone(), opts.clone(), hooks)),
            tokio::spawn(sender(client.clone(), shared.clone(), opts, data_topic.clone())),
        ];
        Ok(Self { id, client, shared, next_seq: Arc::new(AtomicU64::new(start)), data_topic, latency, tasks })
    }

    pub fn device_id(&self) -> &DeviceId {
        &self.id
    }

    /// Puts a batch into the outbox (durably, for a disk outbox) and returns its sequence number
    /// and what the outbox budget dropped to make room. It is sent as soon as the window allows.
    pub async fn publish(&self, samples: Vec<Sample>) -> Result<(u64, Dropped)> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let payload = encode_batch(&Batch { seq, samples });
        let now_ms = chrono::Utc::now().timestamp_millis();
        let dropped = {
            let mut w = self.shared.window.lock().unwrap();
            let d = w.outbox.append(seq, now_ms, &payload)?;
            if self.latency {
                w.published_at.insert(seq, now_ms);
            }
            d
        };
        self.shared.appended.fetch_add(1, Ordering::Relaxed);
        self.shared.dropped.fetch_add(dropped.batches, Ordering::Relaxed);
        if dropped.batches > 0 {
            warn!(device = %self.id, batches = dropped.batches, "outbox full: oldest batches dropped");
        }
        self.shared.wake.notify_one();
        Ok((seq, dropped))
    }

    /// Syncs the outbox if its policy deferred it (call periodically).
    pub fn sync_outbox(&self) -> std::io::Result<()> {
        self.shared.window.lock().unwrap().outbox.sync_if_due()
    }

    /// Reports a command's outcome on the device's `cmd/ack` topic.
    pub async fn answer(&self, ack: &CommandAck) -> Result<()> {
        let topic = Topic::new(self.id.clone(), Channel::CmdAck).render();
        self.client.publish(topic, QoS::AtLeastOnce, false, ack.encode()).await?;
        Ok(())
    }

    /// The link's sequence numbers, for messages other than batches (camera messages).
    pub fn seq_counter(&self) -> Arc<AtomicU64> {
        self.next_seq.clone()
    }

    /// Publishes a camera message on the device's `event` channel (QoS 1), once. Events that
    /// must not be lost go through the camera's event outbox, which resends until
    /// [`DeviceLink::message_acks`] names them.
    pub async fn publish_event(&self, msg: &offsite_wire::CameraMessage) -> Result<()> {
        self.publish_event_bytes(msg.encode()).await
    }

    /// [`DeviceLink::publish_event`] for a message already encoded (as kept on disk).
    pub async fn publish_event_bytes(&self, payload: Vec<u8>) -> Result<()> {
        let topic = Topic::new(self.id.clone(), Channel::Event).render();
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await?;
        Ok(())
    }

    /// Sequence numbers the platform acknowledged (or refused) that are not batches: the
    /// camera messages it has durably handled.
    pub fn message_acks(&self) -> flume::Receiver<u64> {
        self.shared.other_acks.1.clone()
    }

    pub fn stats(&self) -> LinkStats {
        let s = &self.shared;
        let (unacked, outbox_bytes, oldest) = {
            let w = s.window.lock().unwrap();
            (w.outbox.pending() as u64, w.outbox.bytes(), w.outbox.oldest_pending().map(|p| p.appended_ms))
        };
        LinkStats {
            sent: s.appended.load(Ordering::Relaxed),
            transmitted: s.transmitted.load(Ordering::Relaxed),
            acked: s.acked.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            resent: s.restarts.load(Ordering::Relaxed),
            unacked,
            outbox_bytes,
            oldest_unacked_ms: oldest,
            dropped_total: s.dropped.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
            connect_failures: s.connect_failures.load(Ordering::Relaxed),
            backoff_ms: s.backoff_ms.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
        }
    }

    /// Waits until every batch is acknowledged or the timeout passes; true if all are.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.shared.window.lock().unwrap().outbox.pending() == 0 {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Says offline and disconnects; pending batches stay in the outbox.
    pub async fn close(self) {
        let topic = Topic::new(self.id.clone(), Channel::Status).render();
        let _ = self.client.publish(topic, QoS::AtLeastOnce, true, Status { online: false }.encode()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.shared.closing.store(true, Ordering::Relaxed);
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = self.shared.window.lock().unwrap().outbox.sync_if_due();
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Drops the connection without a goodbye (the broker publishes the last will).
    pub fn abort(self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// The topic batches go to.
    pub fn data_topic(&self) -> &str {
        &self.data_topic
    }
}

async fn event_loop(
    id: DeviceId,
    client: AsyncClient,
    mut events: rumqttc::EventLoop,
    shared: Arc<Shared>,
    opts: LinkOptions,
    hooks: LinkHooks,
) {
    let ack_topic = Topic::new(id.clone(), Channel::Ack).render();
    let cmd_topic = Topic::new(id.clone(), Channel::Cmd).render();
    let status_topic = Topic::new(id.clone(), Channel::Status).render();
    let mut backoff = Backoff::new(opts.reconnect_delay, opts.max_reconnect_delay);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                shared.connects.fetch_add(1, Ordering::Relaxed);
                backoff.reset();
                shared.backoff_ms.store(0, Ordering::Relaxed);
                info!(device = %id, "connected");
                let c = client.clone();
                let (ack_topic, cmd_topic, status_topic) = (ack_topic.clone(), cmd_topic.clone(), status_topic.clone());
                let shared = shared.clone();
                let want_commands = hooks.commands.is_some();
                // Requests leave in order, so the broker has the subscriptions before the first
                // batch arrives and no acknowledgement is missed. Publishing from inside the event
                // loop would deadlock on a full request channel, hence the task.
                tokio::spawn(async move {
                    let _ = c.subscribe(&ack_topic, QoS::AtLeastOnce).await;
                    if want_commands {
                        let _ = c.subscribe(&cmd_topic, QoS::AtLeastOnce).await;
                    }
                    let _ = c.publish(&status_topic, QoS::AtLeastOnce, true, Status { online: true }.encode()).await;
                    shared.generation.fetch_add(1, Ordering::Relaxed);
                    shared.connected.store(true, Ordering::Relaxed);
                    shared.wake.notify_one();
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => match Ack::decode(&p.payload) {
                Ok(ack) => on_ack(&id, &shared, &ack, hooks.latency_ms.as_ref()),
                Err(e) => warn!(device = %id, error = %e, "malformed acknowledgement"),
            },
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == cmd_topic => {
                on_command(&id, &client, &p.payload, hooks.commands.as_ref());
            }
            Ok(_) => {}
            Err(e) => {
                if shared.closing.load(Ordering::Relaxed) {
                    shared.connected.store(false, Ordering::Relaxed);
                    return;
                }
                shared.connect_failures.fetch_add(1, Ordering::Relaxed);
                let (wait, ceiling) = backoff.next();
                shared.backoff_ms.store(ceiling.as_millis() as u64, Ordering::Relaxed);
                if shared.connected.swap(false, Ordering::Relaxed) {
                    warn!(device = %id, error = %e, retry_in_ms = wait.as_millis() as u64, "connection lost");
                } else {
                    info!(device = %id, error = %e, retry_in_ms = wait.as_millis() as u64, "connect failed");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn on_ack(id: &DeviceId, shared: &Shared, ack: &Ack, latency: Option<&flume::Sender<f64>>) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut w = shared.window.lock().unwrap();
    for (seq, refused) in ack.seqs.iter().map(|s| (*s, None)).chain(ack.rejected.iter().map(|r| (r.seq, Some(r.reason)))) {
        w.inflight.remove(&seq);
        match w.outbox.ack(seq) {
            Ok(true) => {
                if let Some(reason) = refused {
                    shared.rejected.fetch_add(1, Ordering::Relaxed);
                    warn!(device = %id, seq, %reason, "platform refused a batch");
                } else {
                    shared.acked.fetch_add(1, Ordering::Relaxed);
                }
                if let (Some(l), Some(t)) = (latency, w.published_at.remove(&seq)) {
                    let _ = l.try_send((now_ms - t) as f64);
                }
            }
            Ok(false) => {
                let _ = shared.other_acks.0.try_send(seq);
            }
            Err(e) => warn!(device = %id, seq, error = %e, "recording an acknowledgement"),
        }
    }
    drop(w);
    shared.wake.notify_one();
}

fn on_command(id: &DeviceId, client: &AsyncClient, payload: &[u8], out: Option<&flume::Sender<Command>>) {
    let Some(out) = out else { return };
    match Command::decode(payload) {
        Ok(c) => {
            if out.try_send(c).is_err() {
                warn!(device = %id, "command queue full; the platform will resend");
            }
        }
        Err(e) => {
            // Answer when the command says who it is, so the sender sees why.
            let cid = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
                .filter(|i| valid_command_id(i));
            warn!(device = %id, error = %e, "malformed command");
            if let Some(cid) = cid {
                let ack = CommandAck { id: cid, ok: false, error: Some(format!("malformed command: {e}")), state: None };
                let topic = Topic::new(id.clone(), Channel::CmdAck).render();
                let c = client.clone();
                tokio::spawn(async move {
                    let _ = c.publish(topic, QoS::AtLeastOnce, false, ack.encode()).await;
                });
            }
        }
    }
}

/// Drains the outbox in order within the window and the pace.
async fn sender(client: AsyncClient, shared: Arc<Shared>, opts: LinkOptions, topic: String) {
    let mut pace = Pace::new(opts.max_batches_per_second);
    let mut generation = 0;
    let tick = opts.resend_after.min(Duration::from_secs(1));
    loop {
        if !shared.connected.load(Ordering::Relaxed) {
            let _ = tokio::time::timeout(tick, shared.wake.notified()).await;
            continue;
        }
        let g = shared.generation.load(Ordering::Relaxed);
        if g != generation {
            generation = g;
            {
                let mut w = shared.window.lock().unwrap();
                w.inflight.clear();
                w.cursor = None;
            }
            if !opts.reconnect_jitter.is_zero() {
                let ms = rand::random::<u64>() % (opts.reconnect_jitter.as_millis() as u64 + 1);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        let next = {
            let mut w = shared.window.lock().unwrap();
            if w.inflight.values().min().is_some_and(|t| t.elapsed() >= opts.resend_after) {
                w.inflight.clear();
                w.cursor = None;
                shared.restarts.fetch_add(1, Ordering::Relaxed);
            }
            if w.inflight.len() >= opts.window.max(1) {
                None
            } else {
                let cursor = w.cursor;
                match w.outbox.pending_after(cursor, 1).first().copied() {
                    Some(seq) => match w.outbox.read(seq) {
                        Ok(Some(p)) => Some((seq, p)),
                        Ok(None) => None,
                        Err(e) => {
                            warn!(seq, error = %e, "reading a queued batch; skipping it this pass");
                            w.cursor = Some(seq);
                            None
                        }
                    },
                    None => None,
                }
            }
        };
        let Some((seq, payload)) = next else {
            let _ = tokio::time::timeout(tick, shared.wake.notified()).await;
            continue;
        };
        pace.wait().await;
        // The connection may have dropped while pacing: a publish queued now would go out first on
        // the next connection, ahead of the older batches, so start the pass again instead.
        if !shared.connected.load(Ordering::Relaxed) || shared.generation.load(Ordering::Relaxed) != generation {
            continue;
        }
        if client.publish(&topic, QoS::AtLeastOnce, false, payload).await.is_err() {
            tokio::time::sleep(opts.reconnect_delay).await;
            continue;
        }
        shared.transmitted.fetch_add(1, Ordering::Relaxed);
        let mut w = shared.window.lock().unwrap();
        // Only if still pending: the acknowledgement of an earlier transmission may have won.
        if w.outbox.pending_after(seq.checked_sub(1), 1).first() == Some(&seq) {
            w.inflight.insert(seq, Instant::now());
        }
        w.cursor = Some(seq);
    }
}

/// Exponential reconnect backoff: the ceiling doubles per failure up to the maximum, and each wait
/// is drawn from the upper half of the ceiling so devices that lost the broker together spread out.
struct Backoff {
    first: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Self {
        let first = first.max(Duration::from_millis(10));
        Self { first, max: max.max(first), ceiling: first }
    }

    fn reset(&mut self) {
        self.ceiling = self.first;
    }

    /// The wait before the next attempt and the ceiling it was drawn under.
    fn next(&mut self) -> (Duration, Duration) {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        let half = ceiling / 2;
        let spread = rand::random::<u64>() % (half.as_millis() as u64 + 1);
        (half + Duration::from_millis(spread), ceiling)
    }
}

/// Spaces sends evenly at a fixed rate (no bursts beyond one).
struct Pace {
    interval: Option<Duration>,
    next: tokio::time::Instant,
}

impl Pace {
    fn new(per_second: f64) -> Self {
        let interval = (per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / per_second));
        Self { interval, next: tokio::time::Instant::now() }
    }

    async fn wait(&mut self) {
        let Some(i) = self.interval else { return };
        let now = tokio::time::Instant::now();
        if self.next > now {
            tokio::time::sleep_until(self.next).await;
        }
        self.next = self.next.max(now) + i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits double per failure up to the maximum, stay in the upper half of their ceiling, and
    /// start over after a successful connection.
    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_millis(1500));
        let ceilings: Vec<u64> = (0..6).map(|_| b.next().1.as_millis() as u64).collect();
        assert_eq!(ceilings, vec![200, 400, 800, 1500, 1500, 1500]);
        for _ in 0..100 {
            let (wait, ceiling) = b.next();
            assert!(wait >= ceiling / 2 && wait <= ceiling, "{wait:?} outside the upper half of {ceiling:?}");
        }
        b.reset();
        assert_eq!(b.next().1, Duration::from_millis(200));
    }

    /// A backlog drains at the configured pace, not in one burst (virtual time, no sleeping).
    #[tokio::test(start_paused = true)]
    async fn pace_spaces_sends_evenly() {
        let mut p = Pace::new(10.0);
        let t0 = tokio::time::Instant::now();
        for _ in 0..21 {
            p.wait().await;
        }
        assert_eq!(t0.elapsed(), Duration::from_secs(2), "21 sends at 10/s span 2 s");
        let mut unlimited = Pace::new(0.0);
        let t1 = tokio::time::Instant::now();
        for _ in 0..1000 {
            unlimited.wait().await;
        }
        assert_eq!(t1.elapsed(), Duration::ZERO);
    }
}
