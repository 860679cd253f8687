//! Per-device fairness through the real broker (TLS, device certificates and tokens) into ingest
//! and a real PostgreSQL: one device floods as fast as it can while ten others send at a modest
//! rate. The ten keep being acknowledged and stored during the flood; the flooder's excess is
//! refused unacknowledged and counted, nothing it was told is stored is missing, and its
//! flooding warning opens during the flood and resolves once it is calm.
//!
//! Prints the normal devices' acknowledgement latency without and with the flood (the figure in
//! RELIABILITY.md "Fairness"); no time is asserted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use offsite_broker::{BrokerBuilder, BrokerConfig, BrokerHandle, Pki};
use offsite_ingest::fairness::flooding_key;
use offsite_ingest::{metrics, CameraSink, DeviceGate, Incoming, Ingest, IngestConfig, LinkSource};
use offsite_store::testing::TestDb;
use offsite_store::{Store, WarningFilter};
use offsite_wire::{
    encode_batch, Ack, Batch, Channel, DeviceCredentials, MetricKey, Sample, Topic,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

const NORMAL_DEVICES: usize = 10;
/// Normal devices: a batch of this many samples every `NORMAL_PERIOD`.
const NORMAL_SAMPLES: usize = 10;
const NORMAL_PERIOD: Duration = Duration::from_millis(100);
const FLOOD_SAMPLES: usize = 20;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ingest_config() -> IngestConfig {
    IngestConfig {
        batch_max_delay_ms: 20,
        // Far above a normal device here (10 messages/s, 100 samples/s), far below a flood.
        device_max_messages_per_s: 50.0,
        device_max_samples_per_s: 500.0,
        device_burst_s: 1.0,
        device_calm_s: 2.0,
        ..IngestConfig::default()
    }
}

struct Platform {
    _dir: tempfile::TempDir,
    db: TestDb,
    broker: BrokerHandle,
    ingest: Option<Ingest>,
}

/// How ingest reads the broker: its in-process link (all-in-one) or an MQTT shared subscription
/// on the internal listener (ingest as its own process).
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Link,
    SharedSubscription,
}

impl Platform {
    async fn start(icfg: IngestConfig) -> Platform {
        Self::start_via(icfg, Via::Link).await
    }

    async fn start_via(icfg: IngestConfig, via: Via) -> Platform {
        offsite_broker::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(&dir.path().join("pki")).unwrap();
        let db = TestDb::new().await.unwrap();
        let bcfg = BrokerConfig {
            tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], free_port()))),
            plain_listen: Some(SocketAddr::from(([127, 0, 0, 1], free_port()))),
            ..BrokerConfig::default()
        };
        let internal = offsite_broker::internal_password(dir.path()).unwrap();
        let mut builder =
            BrokerBuilder::new(&bcfg, &pki, db.store.clone(), internal.clone()).unwrap();
        let (link_tx, link_rx) = builder.link("offsite-ingest").unwrap();
        let gate = DeviceGate::new(&icfg);
        let (queue_tx, queue_rx) = flume::bounded::<Incoming>(icfg.queue_capacity);
        let acks = match via {
            Via::Link => LinkSource::start(link_tx, link_rx, queue_tx, gate.clone()).unwrap(),
            Via::SharedSubscription => {
                drop((link_tx, link_rx));
                let plain = bcfg.plain_listen.unwrap();
                offsite_ingest::MqttSource::start(
                    offsite_ingest::MqttSourceConfig {
                        host: plain.ip().to_string(),
                        port: plain.port(),
                        username: offsite_broker::INTERNAL_USERNAME.into(),
                        password: internal,
                        group: "ingest".into(),
                        client_id: "offsite-ingest-test".into(),
                    },
                    queue_tx,
                    gate.clone(),
                )
            }
        };
        let broker = builder.spawn().unwrap();
        let ingest = Ingest::start(
            db.store.clone(),
            icfg,
            queue_rx,
            acks,
            None,
            CameraSink::default(),
            gate,
        )
        .await
        .unwrap();
        Platform {
            _dir: dir,
            db,
            broker,
            ingest: Some(ingest),
        }
    }

    fn store(&self) -> &Store {
        &self.db.store
    }

    async fn provision(&self, name: &str) -> DeviceCredentials {
        let pki = Pki::load_or_create(&self._dir.path().join("pki")).unwrap();
        offsite_broker::provision(self.store(), &pki, name, None)
            .await
            .unwrap()
            .1
    }

    /// The seqs of `device` whose samples are stored, with how many samples each.
    async fn stored(&self, device: &str) -> BTreeMap<u64, usize> {
        let key = self
            .store()
            .device_auth(device)
            .await
            .unwrap()
            .expect("a registered device")
            .key;
        let Some(metric) = self.store().metric_by_key("flow").await.unwrap() else {
            return BTreeMap::new();
        };
        let from = Utc::now() - chrono::Duration::days(1);
        let to = Utc::now() + chrono::Duration::days(1);
        let points = self
            .store()
            .series(key, metric.id, from, to, None, 10_000_000)
            .await
            .unwrap();
        let mut by_seq = BTreeMap::new();
        for p in points {
            *by_seq.entry(p.value as u64).or_insert(0) += 1;
        }
        by_seq
    }

    async fn flooding_warning(
        &self,
        device: &str,
        open: bool,
    ) -> Option<offsite_store::WarningRecord> {
        let f = WarningFilter {
            open: Some(open),
            device_id: Some(device.to_owned()),
            limit: 100,
            ..Default::default()
        };
        let (list, _) = self.store().warnings(&f).await.unwrap();
        list.into_iter()
            .find(|w| w.dedup_key == flooding_key(device))
    }
}

/// A device connection that records when each of its seqs was acknowledged.
struct Device {
    creds: DeviceCredentials,
    client: AsyncClient,
    topic: String,
    acked: Arc<Mutex<HashMap<u64, Instant>>>,
    /// Sequence numbers refused for good (none are expected: throttling never refuses).
    rejected: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    /// Fixed when the device connects: a batch's timestamps depend on its seq alone, so two
    /// batches can never share one (a timestamp taken at each send would let two batches sent a
    /// whole second apart collide, and the second would be stored only in part).
    base: chrono::DateTime<Utc>,
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Device {
    async fn connect(port: u16, creds: DeviceCredentials) -> Device {
        let mut o = MqttOptions::new(format!("{}-c", creds.device_id), "localhost", port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_inflight(200);
        // One acknowledgement may name thousands of seqs (the no-budget comparison acknowledges floods).
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca: creds.ca_pem.clone().into_bytes(),
            alpn: None,
            client_auth: Some((
                creds.cert_pem.clone().into_bytes(),
                creds.key_pem.clone().into_bytes(),
            )),
        }));
        o.set_credentials(creds.device_id.as_str(), creds.token.as_str());
        let (client, mut eventloop) = AsyncClient::new(o, 1000);
        let acked = Arc::new(Mutex::new(HashMap::new()));
        let rejected = Arc::new(AtomicU64::new(0));
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let mut subscribed_tx = Some(subscribed_tx);
        let ack_topic = Topic::new(creds.device_id.clone(), Channel::Ack).render();
        let (a, r, c) = (acked.clone(), rejected.clone(), client.clone());
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        c.subscribe(ack_topic.clone(), QoS::AtLeastOnce)
                            .await
                            .unwrap();
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(t) = subscribed_tx.take() {
                            let _ = t.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let ack = Ack::decode(&p.payload).expect("a well-formed acknowledgement");
                        let now = Instant::now();
                        let mut a = a.lock().unwrap();
                        for s in ack.seqs {
                            a.entry(s).or_insert(now);
                        }
                        r.fetch_add(ack.rejected.len() as u64, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => panic!("device connection failed: {e}"),
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .expect("subscribed in time")
            .unwrap();
        let topic = Topic::new(creds.device_id.clone(), Channel::Data).render();
        Device {
            creds,
            client,
            topic,
            acked,
            rejected,
            task,
            base: Utc::now() - chrono::Duration::hours(1),
        }
    }

    fn id(&self) -> &str {
        self.creds.device_id.as_str()
    }

    /// A batch whose samples carry its seq as value, at timestamps no other batch uses.
    fn batch(&self, seq: u64, samples: usize) -> Vec<u8> {
        let base = self.base;
        let metric = MetricKey::parse("flow").unwrap();
        encode_batch(&Batch {
            seq,
            samples: (0..samples)
                .map(|i| Sample {
                    ts: base - chrono::Duration::milliseconds((seq * 1000 + i as u64) as i64),
                    metric: metric.clone(),
                    value: seq as f64,
                })
                .collect(),
        })
    }

    async fn send(&self, seq: u64, samples: usize) {
        self.client
            .publish(
                &self.topic,
                QoS::AtLeastOnce,
                false,
                self.batch(seq, samples),
            )
            .await
            .unwrap();
    }

    /// Sends `count` batches from `first`, one per period, and waits for all their acknowledgements;
    /// returns each batch's latency from publishing to acknowledgement.
    async fn run_normal(&self, first: u64, count: u64) -> Vec<Duration> {
        let mut sent = Vec::new();
        let mut tick = tokio::time::interval(NORMAL_PERIOD);
        for seq in first..first + count {
            tick.tick().await;
            sent.push((seq, Instant::now()));
            self.send(seq, NORMAL_SAMPLES).await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            {
                let a = self.acked.lock().unwrap();
                if sent.iter().all(|(s, _)| a.contains_key(s)) {
                    return sent.iter().map(|(s, t)| a[s].duration_since(*t)).collect();
                }
            }
            assert!(
                Instant::now() < deadline,
                "device {}: not every batch acknowledged within 30 s",
                self.id()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

async fn run_fleet(devices: &[Device], first: u64, count: u64) -> Vec<Duration> {
    let runs = devices.iter().map(|d| d.run_normal(first, count));
    futures_join_all(runs).await.into_iter().flatten().collect()
}

/// Joins futures without another dependency.
async fn futures_join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let pinned: Vec<_> = fs.map(Box::pin).collect();
    let mut pending: Vec<_> = pinned.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in pending.iter_mut().enumerate() {
            if let Some(fut) = f {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *f = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for r in results {
        out.push(r.expect("every future finished"));
    }
    out
}

fn throttled_messages() -> u64 {
    metrics::THROTTLED
        .with_label_values(&["mqtt", "messages"])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_device_does_not_starve_the_others() {
    flood_scenario(Platform::start(ingest_config()).await, "link").await;
}

/// The same through the split tiers' source: the budget is checked in `MqttSource` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_device_does_not_starve_the_others_through_a_shared_subscription() {
    let p = Platform::start_via(ingest_config(), Via::SharedSubscription).await;
    // Ingest subscribes once connected: wait until a batch is acknowledged.
    let port = p.broker.tls_addr().unwrap().port();
    let probe = Device::connect(port, p.provision("探测设备").await).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !probe.acked.lock().unwrap().contains_key(&1) {
        assert!(
            Instant::now() < deadline,
            "ingest never subscribed over MQTT"
        );
        probe.send(1, 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    flood_scenario(p, "shared subscription").await;
}

async fn flood_scenario(p: Platform, via: &str) {
    let port = p.broker.tls_addr().unwrap().port();
    let mut normal = Vec::new();
    for i in 0..NORMAL_DEVICES {
        let creds = p.provision(&format!("正常设备 {i}")).await;
        normal.push(Device::connect(port, creds).await);
    }
    let flooder = Arc::new(Device::connect(port, p.provision("洪泛设备").await).await);

    // Without the flood: the baseline latency.
    let quiet = run_fleet(&normal, 1, 20).await;

    // The flood: as fast as the connection takes it, until told to stop.
    let throttled_before = throttled_messages();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (f, stop, sent) = (flooder.clone(), stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut seq = 1;
            while !stop.load(Ordering::Relaxed) {
                f.send(seq, FLOOD_SAMPLES).await;
                sent.store(seq, Ordering::Relaxed);
                seq += 1;
                if seq % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // Let the flooder spend its burst, so what follows happens while it is being throttled.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent_before_normal = sent.load(Ordering::Relaxed);
    let loud = run_fleet(&normal, 1000, 30).await;
    let sent_after_normal = sent.load(Ordering::Relaxed);
    assert!(
        sent_after_normal > sent_before_normal && !flood.is_finished(),
        "the flood must still be going while the normal devices are acknowledged"
    );
    // Its warning is open during the flood.
    let deadline = Instant::now() + Duration::from_secs(10);
    let warning = loop {
        if let Some(w) = p.flooding_warning(flooder.id(), true).await {
            break w;
        }
        assert!(
            Instant::now() < deadline,
            "no open flooding warning during the flood"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.store(true, Ordering::Relaxed);
    flood.await.unwrap();
    let throttled = throttled_messages() - throttled_before;

    // After the flood, let the last admitted batches be committed and acknowledged.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked: HashSet<u64> = flooder.acked.lock().unwrap().keys().copied().collect();
    let offered = sent.load(Ordering::Relaxed);
    let stored = p.stored(flooder.id()).await;
    for seq in &acked {
        assert_eq!(
            stored.get(seq),
            Some(&FLOOD_SAMPLES),
            "flooder batch {seq} acknowledged but not (wholly) stored"
        );
    }
    for (seq, n) in &stored {
        assert!(
            *seq >= 1 && *seq <= offered,
            "stored a batch never sent: {seq}"
        );
        assert_eq!(
            *n, FLOOD_SAMPLES,
            "batch {seq} stored {n} samples (duplicates or a partial batch)"
        );
    }
    assert!(
        (acked.len() as u64) < offered,
        "the flooder's excess was acknowledged: {} of {offered}",
        acked.len()
    );
    assert!(throttled > 0, "no throttled message counted");
    assert_eq!(
        flooder.rejected.load(Ordering::Relaxed),
        0,
        "throttling must not refuse batches for good"
    );
    assert_eq!(
        warning.level,
        offsite_store::Level::ORANGE,
        "flooding is orange"
    );
    assert_eq!(warning.evidence["budget_samples_per_s"], 500.0);
    assert!(
        warning.evidence["offered_messages_per_s"].as_f64().unwrap() > 50.0,
        "{}",
        warning.evidence
    );

    // Every normal device's batches are stored, whole.
    for d in &normal {
        let s = p.stored(d.id()).await;
        assert_eq!(s.len(), 50, "device {}: {} batches stored", d.id(), s.len());
        assert!(
            s.values().all(|n| *n == NORMAL_SAMPLES),
            "device {}: a partial or doubled batch",
            d.id()
        );
        assert_eq!(d.rejected.load(Ordering::Relaxed), 0);
    }

    // Calm again: the warning resolves after device_calm_s (2 s) and a sweep.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if p.flooding_warning(flooder.id(), true).await.is_none() {
            let w = p
                .flooding_warning(flooder.id(), false)
                .await
                .expect("the warning was resolved, not deleted");
            assert_eq!(w.id, warning.id);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the flooding warning did not resolve after the flood"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A calm device is admitted again: one more batch is acknowledged and stored.
    let next = offered + 1;
    flooder.send(next, FLOOD_SAMPLES).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flooder.acked.lock().unwrap().contains_key(&next) {
        assert!(
            Instant::now() < deadline,
            "the calmed device's batch was not acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "fairness ({via}): {NORMAL_DEVICES} normal devices (10 batches/s each): ack latency p50 {:.1} ms, p99 {:.1} ms without \
         the flood; p50 {:.1} ms, p99 {:.1} ms during it. Flooder: {offered} batches of {FLOOD_SAMPLES} offered, {} \
         acknowledged, {throttled} throttled",
        ms(percentile(quiet.clone(), 0.5)),
        ms(percentile(quiet, 0.99)),
        ms(percentile(loud.clone(), 0.5)),
        ms(percentile(loud, 0.99)),
        acked.len(),
    );
    drop(normal);
    let mut p = p;
    p.ingest.take().unwrap().shutdown().await;
}

/// The same flood with the budget off, for comparison (RELIABILITY.md "Fairness"): run by hand with
/// `--ignored --nocapture`. Asserts only that the normal devices are all acknowledged in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn the_same_flood_without_a_budget() {
    let icfg = IngestConfig {
        device_max_messages_per_s: 0.0,
        device_max_samples_per_s: 0.0,
        ..ingest_config()
    };
    let p = Platform::start(icfg).await;
    let port = p.broker.tls_addr().unwrap().port();
    let mut normal = Vec::new();
    for i in 0..NORMAL_DEVICES {
        normal.push(Device::connect(port, p.provision(&format!("正常设备 {i}")).await).await);
    }
    let flooder = Arc::new(Device::connect(port, p.provision("洪泛设备").await).await);
    let quiet = run_fleet(&normal, 1, 20).await;
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (f, stop) = (flooder.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seq = 1;
            while !stop.load(Ordering::Relaxed) {
                f.send(seq, FLOOD_SAMPLES).await;
                seq += 1;
                if seq % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            seq - 1
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let loud = run_fleet(&normal, 1000, 30).await;
    stop.store(true, Ordering::Relaxed);
    let offered = flood.await.unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "no budget: ack latency p50 {:.1} ms, p99 {:.1} ms without the flood; p50 {:.1} ms, p99 {:.1} ms during it. \
         Flooder: {offered} batches offered, {} acknowledged",
        ms(percentile(quiet.clone(), 0.5)),
        ms(percentile(quiet, 0.99)),
        ms(percentile(loud.clone(), 0.5)),
        ms(percentile(loud, 0.99)),
        flooder.acked.lock().unwrap().len(),
    );
    drop(normal);
    let mut p = p;
    p.ingest.take().unwrap().shutdown().await;
}

mod hj212_flood {
    //! The HJ 212 path: a logger that floods packets is paced (its connection is not read until its
    //! budget allows), so it slows down and loses nothing, while another logger's packets are
    //! answered on time throughout.

    use super::*;
    use offsite_hj212::{crc16, Framer, Packet, MAX_DATA_LEN};
    use offsite_ingest::hj212::{Hj212Config, Hj212Gateway};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const FLOOD_PACKETS: usize = 300;
    const METRIC: &str = "a34004-Rtd";

    fn frame(data: &str) -> Vec<u8> {
        format!(
            "##{:04}{data}{:04X}\r\n",
            data.len(),
            crc16(data.as_bytes())
        )
        .into_bytes()
    }

    /// A packet with its own DataTime (local time, UTC+8) `back` seconds before a day ago; the QN
    /// names it.
    fn upload(mn: &str, back: usize) -> (String, Vec<u8>) {
        // One base for the whole test, so packets never share a DataTime (it has whole seconds).
        static BASE: std::sync::LazyLock<chrono::DateTime<Utc>> = std::sync::LazyLock::new(|| {
            Utc::now() + chrono::Duration::hours(8) - chrono::Duration::days(1)
        });
        let t = *BASE - chrono::Duration::seconds(back as i64);
        let dt = t.format("%Y%m%d%H%M%S").to_string();
        let qn = format!("{dt}000");
        let data =
            format!("QN={qn};ST=22;CN=2011;PW=123456;MN={mn};Flag=5;CP=&&DataTime={dt};{METRIC}={back}.0,a34004-Flag=N&&");
        (qn, frame(&data))
    }

    /// Reads 9014 answers off a logger's connection: (QN, when).
    fn answers(
        mut rd: tokio::net::tcp::OwnedReadHalf,
    ) -> tokio::sync::mpsc::UnboundedReceiver<(String, Instant)> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut framer = Framer::new(MAX_DATA_LEN);
            let mut buf = vec![0u8; 4096];
            loop {
                while let Some(f) = framer.next_frame() {
                    let p =
                        Packet::parse(&f.expect("well-formed frames from the platform")).unwrap();
                    if p.cn == "9014" {
                        let _ = tx.send((p.qn.unwrap_or_default(), Instant::now()));
                    }
                }
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => framer.push(&buf[..n]),
                }
            }
        });
        rx
    }

    async fn stored(store: &Store, key: i32) -> usize {
        let Some(m) = store.metric_by_key(METRIC).await.unwrap() else {
            return 0;
        };
        let from = Utc::now() - chrono::Duration::days(3);
        store
            .series(key, m.id, from, Utc::now(), None, 1_000_000)
            .await
            .unwrap()
            .len()
    }

    async fn flooding_warning(
        store: &Store,
        key: i32,
        open: bool,
    ) -> Option<offsite_store::WarningRecord> {
        let f = WarningFilter {
            open: Some(open),
            source: Some("health".into()),
            limit: 1000,
            ..Default::default()
        };
        let (list, _) = store.warnings(&f).await.unwrap();
        list.into_iter()
            .find(|w| w.device_key == key && w.event == "flooding")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flooding_logger_is_paced_and_the_others_are_answered() {
        let db = TestDb::new().await.unwrap();
        let store = db.store.clone();
        let icfg = ingest_config();
        let gate = DeviceGate::new(&icfg);
        let (_source, rx) = flume::bounded::<Incoming>(16);
        let (acks, _) = flume::unbounded();
        let ingest = Ingest::start(
            store.clone(),
            icfg,
            rx,
            offsite_ingest::AckSink::Link(acks),
            None,
            CameraSink::default(),
            gate,
        )
        .await
        .unwrap();
        let gcfg = Hj212Config {
            listen: "127.0.0.1:0".into(),
            ..Hj212Config::default()
        };
        let gateway = Hj212Gateway::start(store.clone(), gcfg, ingest.gateway_sink())
            .await
            .unwrap();
        let (flood_mn, calm_mn) = ("FLOOD000000000000000001", "CALM0000000000000000001");
        let mut keys = Vec::new();
        for mn in [flood_mn, calm_mn] {
            store
                .insert_hj212_logger("测试数采仪", None, mn, "123456")
                .await
                .unwrap();
            keys.push(store.hj212_logger(mn).await.unwrap().unwrap().key);
        }
        let (flood_key, calm_key) = (keys[0], keys[1]);
        let throttled_before = metrics::THROTTLED
            .with_label_values(&["hj212", "messages"])
            .get();

        // The flooder writes all its packets at once; the gateway reads them at its budget's pace.
        let (flood_rd, mut flood_wr) = TcpStream::connect(gateway.local_addr())
            .await
            .unwrap()
            .into_split();
        let mut flood_answers = answers(flood_rd);
        let flood = tokio::spawn(async move {
            for i in 0..FLOOD_PACKETS {
                flood_wr.write_all(&upload(flood_mn, i).1).await.unwrap();
            }
            flood_wr
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;

        // Meanwhile a normal logger: one packet every 100 ms, each answered after its commit.
        let (calm_rd, mut calm_wr) = TcpStream::connect(gateway.local_addr())
            .await
            .unwrap()
            .into_split();
        let mut calm_answers = answers(calm_rd);
        let mut sent = HashMap::new();
        let mut tick = tokio::time::interval(NORMAL_PERIOD);
        for i in 0..30 {
            tick.tick().await;
            let (qn, bytes) = upload(calm_mn, i);
            sent.insert(qn, Instant::now());
            calm_wr.write_all(&bytes).await.unwrap();
        }
        let mut latencies = Vec::new();
        while latencies.len() < sent.len() {
            let (qn, at) = tokio::time::timeout(Duration::from_secs(10), calm_answers.recv())
                .await
                .expect("the normal logger's packets answered during the flood")
                .unwrap();
            latencies.push(at.duration_since(sent[&qn]));
        }
        let mut flood_answered = 0;
        while flood_answers.try_recv().is_ok() {
            flood_answered += 1;
        }
        assert!(
            flood_answered < FLOOD_PACKETS,
            "the flooder must still be waiting while the normal logger is answered ({flood_answered} answered)"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let warning = loop {
            if let Some(w) = flooding_warning(&store, flood_key, true).await {
                break w;
            }
            assert!(
                Instant::now() < deadline,
                "no open flooding warning for the logger"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(warning.dedup_key, flooding_key(&warning.device_id));
        assert!(
            flooding_warning(&store, calm_key, true).await.is_none(),
            "the normal logger is not flooding"
        );

        // Paced, not refused: every flooded packet is answered and stored in the end.
        while flood_answered < FLOOD_PACKETS {
            tokio::time::timeout(Duration::from_secs(20), flood_answers.recv())
                .await
                .expect("every flooded packet answered in the end")
                .unwrap();
            flood_answered += 1;
        }
        let _keep = flood.await.unwrap();
        assert_eq!(stored(&store, flood_key).await, FLOOD_PACKETS);
        assert_eq!(stored(&store, calm_key).await, 30);
        let throttled = metrics::THROTTLED
            .with_label_values(&["hj212", "messages"])
            .get()
            - throttled_before;
        assert!(throttled > 0, "the flooder's excess was not counted");

        let deadline = Instant::now() + Duration::from_secs(15);
        while flooding_warning(&store, flood_key, true).await.is_some() {
            assert!(
                Instant::now() < deadline,
                "the logger's flooding warning did not resolve once it was calm"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "fairness (HJ 212): normal logger 9014 latency p50 {:.1} ms, p99 {:.1} ms during a flood of \
             {FLOOD_PACKETS} packets ({throttled} paced)",
            percentile(latencies.clone(), 0.5).as_secs_f64() * 1000.0,
            percentile(latencies, 0.99).as_secs_f64() * 1000.0,
        );
        gateway.shutdown().await;
        ingest.shutdown().await;
    }
}

/// A flooding warning left open by a process that stopped (its buckets gone with it) is taken over
/// by the next one and resolved once the device has been calm for `device_calm_s`.
#[tokio::test]
async fn a_flooding_warning_left_by_a_restart_resolves() {
    let db = TestDb::new().await.unwrap();
    let store = db.store.clone();
    store
        .insert_hj212_logger("测试数采仪", None, "LEFT0000000000000000001", "123456")
        .await
        .unwrap();
    let logger = store
        .hj212_logger("LEFT0000000000000000001")
        .await
        .unwrap()
        .unwrap();
    let device = store.device_by_key(logger.key).await.unwrap().unwrap().id;
    let left = store
        .upsert_warning(&offsite_store::NewWarning {
            dedup_key: flooding_key(&device),
            source: "health".into(),
            source_version: "1".into(),
            event: "flooding".into(),
            level: offsite_store::Level::ORANGE,
            device_key: logger.key,
            metric_id: None,
            object_id: None,
            detail: "left by an earlier process".into(),
            score: 1.0,
            at: Utc::now(),
            evidence: serde_json::json!({}),
            group_window: chrono::Duration::seconds(30),
        })
        .await
        .unwrap();
    let icfg = ingest_config();
    let gate = DeviceGate::new(&icfg);
    let (_source, rx) = flume::bounded::<Incoming>(16);
    let (acks, _) = flume::unbounded();
    let ingest = Ingest::start(
        store.clone(),
        icfg,
        rx,
        offsite_ingest::AckSink::Link(acks),
        None,
        CameraSink::default(),
        gate,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let w = store.warning(left.record().id).await.unwrap().unwrap();
        if !w.is_open() {
            assert_eq!(w.resolution.as_deref(), Some("cleared"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the flooding warning left open was never resolved"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ingest.shutdown().await;
}
