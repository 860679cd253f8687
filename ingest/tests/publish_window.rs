//! The platform's own publishing stays within rumqttd's 200-packet connection buffer
//! (`offsite_wire::publish_window`). A grown buffer is never shrunk and is passed on to device
//! connections, which is how the broker's RSS crept in the 30-minute soak. Two paths:
//!
//! - all-in-one: a link paced by `wait_for_link_room` never makes its buffer grow, while the same
//!   link publishing as fast as it can does (the control, which shows the test still exercises
//!   the overflow);
//! - ingest as its own process: the acknowledgement connections `MqttSource` opens never have
//!   more QoS 1 publishes unacknowledged by the broker than `PUBLISH_WINDOW`, counted on the wire
//!   by a proxy in front of the broker's internal listener, while a client with rumqttd's old
//!   window of 1,000 through the same proxy goes past 200 (the control).

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use offsite_broker::{BrokerBuilder, BrokerConfig, Pki};
use offsite_ingest::{DeviceGate, IngestConfig, MqttSource, MqttSourceConfig};
use offsite_store::testing::TestDb;
use offsite_wire::publish_window::PUBLISH_WINDOW;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// rumqttd's connection buffer capacity (`MAX_CHANNEL_CAPACITY`).
const RUMQTTD_LINK_BUFFER: usize = 200;
/// Paced: this many messages. Unpaced: until the buffer overflows, or this many times more.
const MESSAGES: usize = 50_000;
/// Acknowledgements published over MQTT, by ingest's connections and by the control client each.
const MQTT_ACKS: u64 = 60_000;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real broker with its internal plain listener, not yet spawned (links are taken before).
struct TestBroker {
    _dir: tempfile::TempDir,
    _db: TestDb,
    plain: SocketAddr,
    internal: String,
    builder: BrokerBuilder,
}

impl TestBroker {
    async fn new() -> TestBroker {
        offsite_broker::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(&dir.path().join("pki")).unwrap();
        let db = TestDb::new().await.unwrap();
        let plain = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cfg = BrokerConfig {
            tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], free_port()))),
            plain_listen: Some(plain),
            ..BrokerConfig::default()
        };
        let internal = offsite_broker::internal_password(dir.path()).unwrap();
        let builder = BrokerBuilder::new(&cfg, &pki, db.store.clone(), internal.clone()).unwrap();
        TestBroker {
            _dir: dir,
            _db: db,
            plain,
            internal,
            builder,
        }
    }
}

/// Publishes acknowledgement-sized messages and returns the largest capacity the link's buffer
/// had after any of them: paced, `MESSAGES` of them; unpaced, until the buffer overflows (the
/// router lags behind a tight loop now and then, not on every run of 20,000) or 20 x `MESSAGES`.
fn publish(tx: &mut rumqttd::local::LinkTx, paced: bool) -> usize {
    let mut largest = 0;
    let count = if paced { MESSAGES } else { 20 * MESSAGES };
    for i in 0..count {
        if paced {
            offsite_ingest::wait_for_link_room(tx);
        }
        tx.publish(
            format!("/tenants/dev-{}/v1/ack", i % 100),
            br#"{"seq":1,"ok":true}"#.to_vec(),
        )
        .unwrap();
        largest = largest.max(tx.buffer().capacity());
        if !paced && largest > RUMQTTD_LINK_BUFFER {
            break;
        }
    }
    largest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_link_publishing_never_grows_the_broker_buffer() {
    let mut broker = TestBroker::new().await;
    let (mut tx, _rx) = broker.builder.link("paced-acks").unwrap();
    let _broker = broker.builder.spawn().unwrap();

    let (paced, unpaced) = tokio::task::spawn_blocking(move || {
        let paced = publish(&mut tx, true);
        let unpaced = publish(&mut tx, false);
        (paced, unpaced)
    })
    .await
    .unwrap();
    println!("largest link buffer: paced {paced}, unpaced {unpaced} packets");
    assert!(
        unpaced > RUMQTTD_LINK_BUFFER,
        "publishing unpaced never overflowed the buffer ({unpaced}): the test no longer shows the overflow"
    );
    assert!(
        paced <= RUMQTTD_LINK_BUFFER,
        "the paced link's buffer grew to {paced} packets"
    );
}

/// One connection through the proxy: the client's SUBSCRIBEs and QoS 1 publishes, the broker's
/// PUBACKs, and the most publishes that were ever sent but not yet acknowledged.
#[derive(Default)]
struct Connection {
    subscribed: AtomicU64,
    published: AtomicU64,
    acked: AtomicU64,
    unacked: AtomicI64,
    most_unacked: AtomicI64,
}

/// A TCP proxy in front of the broker that counts, per connection, what `Connection` holds. A
/// publish is counted before the broker can see it and its PUBACK before the client can, so the
/// count is never below what the broker holds unacknowledged nor above the client's own window.
struct Proxy {
    port: u16,
    connections: Arc<Mutex<Vec<Arc<Connection>>>>,
}

impl Proxy {
    async fn start(broker: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections: Arc<Mutex<Vec<Arc<Connection>>>> = Arc::default();
        let list = connections.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(upstream) = tokio::net::TcpStream::connect(broker).await else {
                    continue;
                };
                let conn = Arc::new(Connection::default());
                list.lock().unwrap().push(conn.clone());
                let (client_rd, client_wr) = client.into_split();
                let (broker_rd, broker_wr) = upstream.into_split();
                let up = conn.clone();
                tokio::spawn(relay(client_rd, broker_wr, move |first| {
                    if first >> 4 == 8 {
                        up.subscribed.fetch_add(1, Ordering::SeqCst);
                    }
                    // PUBLISH at QoS 1 or 2.
                    if first >> 4 == 3 && (first >> 1) & 3 != 0 {
                        up.published.fetch_add(1, Ordering::SeqCst);
                        let now = up.unacked.fetch_add(1, Ordering::SeqCst) + 1;
                        up.most_unacked.fetch_max(now, Ordering::SeqCst);
                    }
                }));
                tokio::spawn(relay(broker_rd, client_wr, move |first| {
                    if first >> 4 == 4 {
                        conn.acked.fetch_add(1, Ordering::SeqCst);
                        conn.unacked.fetch_sub(1, Ordering::SeqCst);
                    }
                }));
            }
        });
        Proxy { port, connections }
    }

    fn connections(&self) -> Vec<Arc<Connection>> {
        self.connections.lock().unwrap().clone()
    }

    fn total(&self, f: impl Fn(&Connection) -> u64) -> u64 {
        self.connections().iter().map(|c| f(c)).sum()
    }

    fn most_unacked(&self) -> i64 {
        self.connections()
            .iter()
            .map(|c| c.most_unacked.load(Ordering::SeqCst))
            .max()
            .unwrap_or(0)
    }

    /// Waits until the broker has acknowledged `n` publishes through this proxy.
    async fn wait_acked(&self, n: u64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let acked = self.total(|c| c.acked.load(Ordering::SeqCst));
            if acked >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: only {acked} of {n} publishes acknowledged in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Copies one direction of a connection, calling `on_packet` with the first byte of every MQTT
/// packet before the bytes that hold it are passed on.
async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut on_packet: impl FnMut(u8),
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        let whole = split_packets(&pending, &mut on_packet);
        pending.drain(..whole);
        if to.write_all(&chunk[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Calls `on_packet` with the first byte of each whole MQTT packet at the start of `bytes`;
/// returns how many bytes those packets take.
fn split_packets(bytes: &[u8], on_packet: &mut impl FnMut(u8)) -> usize {
    let mut at = 0;
    loop {
        let rest = &bytes[at..];
        // The remaining length: one to four bytes of seven bits, least significant first.
        let mut len = 0usize;
        let mut header = None;
        for (i, b) in rest.iter().enumerate().skip(1).take(4) {
            len |= ((b & 0x7f) as usize) << (7 * (i - 1));
            if b & 0x80 == 0 {
                header = Some(i + 1);
                break;
            }
        }
        let Some(header) = header else { return at };
        if rest.len() < header + len {
            return at;
        }
        on_packet(rest[0]);
        at += header + len;
    }
}

#[test]
fn packets_are_split_across_reads() {
    // PINGREQ, a PUBLISH at QoS 1 with a 200-byte remaining length (two length bytes), PUBACK.
    let mut stream = vec![0xc0, 0x00, 0x32, 0xc8, 0x01];
    stream.extend(std::iter::repeat_n(0u8, 200));
    stream.extend([0x40, 0x02, 0x00, 0x01]);
    let mut seen = Vec::new();
    let mut pending = Vec::new();
    for piece in stream.chunks(3) {
        pending.extend_from_slice(piece);
        let whole = split_packets(&pending, &mut |b| seen.push(b));
        pending.drain(..whole);
    }
    assert_eq!(seen, vec![0xc0, 0x32, 0x40]);
    assert!(pending.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_acknowledgements_stay_within_the_publish_window() {
    let broker = TestBroker::new().await;
    let (plain, internal) = (broker.plain, broker.internal.clone());
    let _broker = broker.builder.spawn().unwrap();

    // Ingest's connections, through the proxy: a shared subscription and the acknowledgement
    // connections, each publishing as fast as `AckSink::publish` is called.
    let ingest_proxy = Proxy::start(plain).await;
    let (queue, _queue) = flume::bounded(1_000);
    let acks = MqttSource::start(
        MqttSourceConfig {
            host: "127.0.0.1".into(),
            port: ingest_proxy.port,
            username: offsite_broker::INTERNAL_USERNAME.into(),
            password: internal.clone(),
            group: "ingest".into(),
            client_id: "offsite-ingest-window".into(),
        },
        queue,
        DeviceGate::new(&IngestConfig::default()),
    );
    for i in 0..MQTT_ACKS {
        acks.publish(
            format!("/tenants/dev-{}/v1/ack", i % 1_000),
            br#"{"seq":1,"ok":true}"#.to_vec(),
        )
        .await;
    }
    ingest_proxy
        .wait_acked(MQTT_ACKS, "ingest's acknowledgement connections")
        .await;
    let connections = ingest_proxy.connections();
    let publishing = connections
        .iter()
        .filter(|c| c.published.load(Ordering::SeqCst) > 0);
    let busy = publishing.clone().count();
    let publishing_and_subscribed = publishing
        .filter(|c| c.subscribed.load(Ordering::SeqCst) > 0)
        .count();
    let subscribed = connections
        .iter()
        .filter(|c| c.subscribed.load(Ordering::SeqCst) > 0)
        .count();
    let ingest_most = ingest_proxy.most_unacked();

    // The control: one client with the window ingest's data connection had before (1,000).
    let control_proxy = Proxy::start(plain).await;
    let mut opts = rumqttc::MqttOptions::new("window-control", "127.0.0.1", control_proxy.port);
    opts.set_credentials(offsite_broker::INTERNAL_USERNAME, internal);
    opts.set_inflight(1_000);
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 10_000);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    for i in 0..MQTT_ACKS {
        client
            .publish(
                format!("/tenants/dev-{}/v1/ack", i % 1_000),
                rumqttc::QoS::AtLeastOnce,
                false,
                br#"{"seq":1,"ok":true}"#.to_vec(),
            )
            .await
            .unwrap();
    }
    control_proxy
        .wait_acked(MQTT_ACKS, "the control client")
        .await;
    let control_most = control_proxy.most_unacked();

    println!(
        "most publishes unacknowledged on one connection: ingest {ingest_most} ({busy} connections carried {MQTT_ACKS}), control {control_most}"
    );
    assert_eq!(
        ingest_proxy.total(|c| c.published.load(Ordering::SeqCst)),
        MQTT_ACKS
    );
    // Only a connection that nothing comes in on is bounded by its own window.
    assert!(
        subscribed >= 1,
        "ingest's shared subscription did not go through the proxy"
    );
    assert_eq!(
        publishing_and_subscribed, 0,
        "acknowledgements went out on a connection that also subscribes"
    );
    assert!(
        control_most > RUMQTTD_LINK_BUFFER as i64,
        "the control never had more than {control_most} unacknowledged: the test no longer shows a connection outrunning the broker"
    );
    assert!(
        ingest_most <= i64::from(PUBLISH_WINDOW),
        "an acknowledgement connection had {ingest_most} publishes unacknowledged (window {PUBLISH_WINDOW}, rumqttd's buffer {RUMQTTD_LINK_BUFFER})"
    );
}
