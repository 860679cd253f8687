//! The broker end to end: a real rumqttd, real rumqttc clients over TLS, a real database.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use offsite_broker::metrics::{self, AuthFailure};
use offsite_broker::rumqttd::local::LinkTx;
use offsite_broker::{next_publish, BrokerBuilder, BrokerConfig, BrokerHandle, Pki, INTERNAL_USERNAME};
use offsite_store::testing::TestDb;
use offsite_wire::{Channel, DeviceCredentials, DeviceId, Topic};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);
/// How long to wait for something that must not happen.
const QUIET: Duration = Duration::from_millis(700);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().expect("local addr").port()
}

/// A message an in-process subscriber received.
#[derive(Debug, Clone, PartialEq)]
struct Msg {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

struct Env {
    _dir: tempfile::TempDir,
    db: TestDb,
    pki: Pki,
    broker: BrokerHandle,
    internal_password: String,
    /// Everything published on `/tenants/+/v1/data` and `/tenants/+/v1/status`.
    received: mpsc::UnboundedReceiver<Msg>,
    /// An in-process link, e.g. to send acks into a device's topics.
    platform: LinkTx,
}

impl Env {
    async fn new() -> Result<Env> {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
        }
        let dir = tempfile::tempdir()?;
        let pki = Pki::load_or_create(&dir.path().join("pki"))?;
        let db = TestDb::new().await?;
        let internal_password = offsite_broker::internal_password(dir.path())?;
        let cfg = BrokerConfig {
            tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], free_port()))),
            plain_listen: Some(SocketAddr::from(([127, 0, 0, 1], free_port()))),
            ..BrokerConfig::default()
        };
        let mut builder = BrokerBuilder::new(&cfg, &pki, db.store.clone(), internal_password.clone())?;
        let (mut sub_tx, mut sub_rx) = builder.link("test-subscriber")?;
        sub_tx.subscribe(Channel::Data.all_devices_filter())?;
        sub_tx.subscribe(Channel::Status.all_devices_filter())?;
        let (platform, _platform_rx) = builder.link("test-platform")?;
        let broker = builder.spawn()?;
        let (tx, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let _keep = sub_tx;
            while let Ok(Some(p)) = next_publish(&mut sub_rx).await {
                let msg = Msg {
                    topic: String::from_utf8_lossy(&p.topic).into_owned(),
                    payload: p.payload.to_vec(),
                    retain: p.retain,
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        Ok(Env { _dir: dir, db, pki, broker, internal_password, received, platform })
    }

    async fn provision(&self, name: &str) -> Result<DeviceCredentials> {
        Ok(offsite_broker::provision(&self.db.store, &self.pki, name, None).await?.1)
    }

    fn tls_port(&self) -> u16 {
        self.broker.tls_addr().expect("tls listener").port()
    }

    fn plain_port(&self) -> u16 {
        self.broker.plain_addr().expect("plain listener").port()
    }

    /// Next message for the subscriber, or `None` after `wait`.
    async fn next_msg(&mut self, wait: Duration) -> Option<Msg> {
        timeout(wait, self.received.recv()).await.ok().flatten()
    }
}

/// Options for a device connection: TLS with its certificate, user name = id, password = token.
fn device_options(port: u16, creds: &DeviceCredentials, client_id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "localhost", port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: creds.ca_pem.clone().into_bytes(),
        alpn: None,
        client_auth: Some((creds.cert_pem.clone().into_bytes(), creds.key_pem.clone().into_bytes())),
    }));
    o.set_credentials(creds.device_id.as_str(), creds.token.as_str());
    o
}

/// A connected client whose event loop runs in a task; events (or the first error, after which
/// the loop stops instead of reconnecting) arrive on `events`. Dropping it aborts the loop,
/// which closes the socket without DISCONNECT.
struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    task: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Waits for the next incoming packet matching `pick`; errors if the connection ends first.
    async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(&Packet) -> Option<T>) -> Result<T> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => bail!("timed out waiting for {what}"),
                Ok(None) => bail!("event loop ended before {what}"),
                Ok(Some(Err(e))) => bail!("connection failed before {what}: {e}"),
                Ok(Some(Ok(Event::Incoming(p)))) => {
                    if let Some(v) = pick(&p) {
                        return Ok(v);
                    }
                }
                Ok(Some(Ok(Event::Outgoing(_)))) => {}
            }
        }
    }

    /// Waits until the connection ends; returns whether a PUBACK arrived before that.
    async fn expect_closed(&mut self) -> Result<bool> {
        let mut got_puback = false;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => bail!("connection still open after {WAIT:?}"),
                Ok(None) | Ok(Some(Err(_))) => return Ok(got_puback),
                Ok(Some(Ok(Event::Incoming(Packet::PubAck(_))))) => got_puback = true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// Connects and waits for a successful CONNACK.
async fn connect(opts: MqttOptions) -> Result<Client> {
    let (client, eventloop) = AsyncClient::new(opts, 16);
    let mut c = spawn_loop(client, eventloop);
    let code = c
        .expect("CONNACK", |p| match p {
            Packet::ConnAck(a) => Some(a.code),
            _ => None,
        })
        .await?;
    if code != ConnectReturnCode::Success {
        bail!("refused with {code:?}");
    }
    Ok(c)
}

fn spawn_loop(client: AsyncClient, mut eventloop: EventLoop) -> Client {
    let (tx, events) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(ev) => {
                    if tx.send(Ok(ev)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    Client { client, events, task }
}

/// Asserts the connection attempt is refused (no successful CONNACK); returns the error text.
async fn assert_refused(opts: MqttOptions) -> String {
    match connect(opts).await {
        Ok(_) => panic!("connection was accepted"),
        Err(e) => e.to_string(),
    }
}

fn data_topic(id: &DeviceId) -> String {
    Topic::new(id.clone(), Channel::Data).render()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_publishes_and_platform_receives() -> Result<()> {
    let mut env = Env::new().await?;
    let creds = env.provision("pump 1").await?;
    let successes = metrics::auth_successes();

    let mut dev = connect(device_options(env.tls_port(), &creds, "c1")).await?;
    assert!(metrics::auth_successes() > successes);
    let topic = data_topic(&creds.device_id);
    dev.client.publish(topic.as_str(), QoS::AtLeastOnce, false, b"hello".to_vec()).await?;
    dev.expect("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(())).await?;
    let msg = env.next_msg(WAIT).await.context("subscriber got nothing")?;
    assert_eq!(msg, Msg { topic, payload: b"hello".to_vec(), retain: false });

    // The router's meter, minus the in-process links, counts the one device.
    wait_for(|| env.broker.connections() == 1, "connection gauge to reach 1").await?;

    // Platform -> device on the device's own ack topic (a per-device subscription).
    let ack_topic = Topic::new(creds.device_id.clone(), Channel::Ack).render();
    dev.client.subscribe(ack_topic.as_str(), QoS::AtLeastOnce).await?;
    dev.expect("SUBACK", |p| matches!(p, Packet::SubAck(_)).then_some(())).await?;
    env.platform.publish(ack_topic.clone(), br#"{"seqs":[1]}"#.to_vec())?;
    let got = dev
        .expect("ack publish", |p| match p {
            Packet::Publish(p) => Some((p.topic.clone(), p.payload.to_vec())),
            _ => None,
        })
        .await?;
    assert_eq!(got, (ack_topic, br#"{"seqs":[1]}"#.to_vec()));

    // rumqttd pushes meters only for intervals with publishes; let one quiet interval pass so
    // this also checks that the count still follows a disconnection on an idle broker.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(dev);
    wait_for(|| env.broker.connections() == 0, "connection gauge to drop to 0").await?;
    Ok(())
}

async fn wait_for(mut cond: impl FnMut() -> bool, what: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_confined_to_their_own_topics() -> Result<()> {
    let mut env = Env::new().await?;
    let a = env.provision("a").await?;
    let b = env.provision("b").await?;

    // A publishes into B's topic: refused, and the broker drops A's connection without PUBACK.
    let mut dev_a = connect(device_options(env.tls_port(), &a, "a")).await?;
    dev_a.client.publish(data_topic(&b.device_id), QoS::AtLeastOnce, false, b"forged".to_vec()).await?;
    assert!(!dev_a.expect_closed().await?, "the forged publish was acknowledged");

    // A subscribing to B's topics is refused the same way.
    let mut dev_a = connect(device_options(env.tls_port(), &a, "a")).await?;
    dev_a.client.subscribe(format!("/tenants/{}/v1/ack", b.device_id), QoS::AtLeastOnce).await?;
    dev_a.expect_closed().await?;
    let mut dev_a = connect(device_options(env.tls_port(), &a, "a")).await?;
    dev_a.client.subscribe("/tenants/+/v1/ack", QoS::AtLeastOnce).await?;
    dev_a.expect_closed().await?;

    // B's own message arrives, and it is the first thing the subscriber sees: the forged one never did.
    let mut dev_b = connect(device_options(env.tls_port(), &b, "b")).await?;
    dev_b.client.publish(data_topic(&b.device_id), QoS::AtLeastOnce, false, b"genuine".to_vec()).await?;
    dev_b.expect("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(())).await?;
    let msg = env.next_msg(WAIT).await.context("subscriber got nothing")?;
    assert_eq!(msg.topic, data_topic(&b.device_id));
    assert_eq!(msg.payload, b"genuine");
    assert_eq!(env.next_msg(QUIET).await, None);
    Ok(())
}

/// Runs `attempt` and checks it is refused and counted under `reason`.
async fn assert_refused_as(reason: AuthFailure, opts: MqttOptions) {
    let before = metrics::auth_failures(reason);
    let err = assert_refused(opts).await;
    // Other tests run in parallel in this process, so only "at least one more" is certain.
    assert!(metrics::auth_failures(reason) > before, "refusal ({err}) not counted as {}", reason.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused_and_counted() -> Result<()> {
    let env = Env::new().await?;
    let creds = env.provision("dev").await?;
    let port = env.tls_port();

    // Wrong token.
    let mut o = device_options(port, &creds, "x");
    o.set_credentials(creds.device_id.as_str(), offsite_broker::new_token());
    assert_refused_as(AuthFailure::BadToken, o).await;

    // A user name that is no device id, and one that is not registered.
    let mut o = device_options(port, &creds, "x");
    o.set_credentials("not-an-id", creds.token.as_str());
    assert_refused_as(AuthFailure::BadUsername, o).await;
    let mut o = device_options(port, &creds, "x");
    o.set_credentials("dnosuchdevice", creds.token.as_str());
    assert_refused_as(AuthFailure::UnknownDevice, o).await;

    // No credentials at all: rumqttd refuses before asking the hook, so nothing is counted.
    let mut o = MqttOptions::new("x", "localhost", port);
    o.set_transport(device_options(port, &creds, "x").transport());
    assert_refused(o).await;

    // No client certificate: the TLS handshake itself fails.
    let mut o = device_options(port, &creds, "x");
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: creds.ca_pem.clone().into_bytes(),
        alpn: None,
        client_auth: None,
    }));
    assert_refused(o).await;

    // The right credentials still work after all that.
    connect(device_options(port, &creds, "x")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_revocation_apply_at_the_next_connection() -> Result<()> {
    let env = Env::new().await?;
    let creds = env.provision("dev").await?;
    let port = env.tls_port();
    connect(device_options(port, &creds, "r")).await?;

    let new = offsite_broker::rotate(&env.db.store, &env.pki, &creds.device_id).await?.context("device exists")?;
    assert_ne!(new.token, creds.token);
    assert_refused_as(AuthFailure::BadToken, device_options(port, &creds, "r")).await;
    connect(device_options(port, &new, "r")).await?;

    assert!(env.db.store.revoke_device(&creds.device_id).await?);
    assert_refused_as(AuthFailure::Revoked, device_options(port, &new, "r")).await;
    // A revoked device cannot be rotated back to life.
    assert!(offsite_broker::rotate(&env.db.store, &env.pki, &creds.device_id).await?.is_none());
    Ok(())
}

fn internal_options(port: u16, user: &str, password: &str) -> MqttOptions {
    let mut o = MqttOptions::new("svc", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_credentials(user, password);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_listener_admits_only_the_internal_account() -> Result<()> {
    let mut env = Env::new().await?;
    let port = env.plain_port();
    let before = metrics::auth_failures(AuthFailure::BadInternal);
    assert_refused(internal_options(port, INTERNAL_USERNAME, "wrong")).await;
    assert_refused(internal_options(port, "someone", &env.internal_password)).await;
    assert!(metrics::auth_failures(AuthFailure::BadInternal) >= before + 2);
    // A device's credentials are no good here either.
    let creds = env.provision("dev").await?;
    assert_refused(internal_options(port, creds.device_id.as_str(), &creds.token)).await;

    // The internal account is not confined to a tenant.
    let mut svc = connect(internal_options(port, INTERNAL_USERNAME, &env.internal_password)).await?;
    let topic = data_topic(&creds.device_id);
    svc.client.publish(topic.as_str(), QoS::AtLeastOnce, false, b"internal".to_vec()).await?;
    svc.expect("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(())).await?;
    let msg = env.next_msg(WAIT).await.context("subscriber got nothing")?;
    assert_eq!((msg.topic.as_str(), msg.payload.as_slice()), (topic.as_str(), &b"internal"[..]));
    Ok(())
}

/// Documents two rumqttd behaviours the status channel relies on: the last will is published
/// when a connection drops (not after a clean DISCONNECT), and retained messages reach later
/// subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_and_retained_status() -> Result<()> {
    let mut env = Env::new().await?;
    let creds = env.provision("dev").await?;
    let status = Topic::new(creds.device_id.clone(), Channel::Status).render();

    let mut o = device_options(env.tls_port(), &creds, "w");
    o.set_last_will(LastWill::new(status.as_str(), br#"{"online":false}"#.to_vec(), QoS::AtLeastOnce, true));
    let mut dev = connect(o.clone()).await?;
    dev.client.publish(status.as_str(), QoS::AtLeastOnce, true, br#"{"online":true}"#.to_vec()).await?;
    dev.expect("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(())).await?;
    let msg = env.next_msg(WAIT).await.context("no online status")?;
    assert_eq!(msg.payload, br#"{"online":true}"#);

    // Dropped without DISCONNECT: the will goes out.
    drop(dev);
    let msg = env.next_msg(WAIT).await.context("no last will after the connection dropped")?;
    assert_eq!((msg.topic.as_str(), msg.payload.as_slice()), (status.as_str(), &br#"{"online":false}"#[..]));

    // A later subscriber gets the retained will, flagged as retained.
    let mut svc = connect(internal_options(env.plain_port(), INTERNAL_USERNAME, &env.internal_password)).await?;
    svc.client.subscribe(Channel::Status.all_devices_filter(), QoS::AtLeastOnce).await?;
    let (topic, payload, retain) = svc
        .expect("retained status", |p| match p {
            Packet::Publish(p) => Some((p.topic.clone(), p.payload.to_vec(), p.retain)),
            _ => None,
        })
        .await?;
    assert_eq!((topic.as_str(), payload.as_slice(), retain), (status.as_str(), &br#"{"online":false}"#[..], true));

    // A clean DISCONNECT discards the will.
    let dev = connect(o).await?;
    dev.client.disconnect().await?;
    let mut dev = dev;
    let _ = dev.expect_closed().await;
    assert_eq!(env.next_msg(QUIET).await, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_certificates_carry_the_device_id() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::prelude::*;

    let dir = tempfile::tempdir()?;
    let pki_dir = dir.path().join("pki");
    let pki = Pki::load_or_create(&pki_dir)?;
    let again = Pki::load_or_create(&pki_dir)?;
    assert_eq!(pki.ca_pem(), again.ca_pem(), "the CA is created once");
    for key in ["ca.key", "server.key"] {
        let mode = std::fs::metadata(pki_dir.join(key))?.permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key} must be private");
    }

    let id = DeviceId::parse("dtest0000001")?;
    let issued = pki.issue_device(&id, 825)?;
    let (_, pem) = parse_x509_pem(issued.cert_pem.as_bytes())?;
    let cert = pem.parse_x509()?;
    let org: Vec<_> = cert.subject().iter_organization().map(|a| a.as_str().map(str::to_owned)).collect::<Result<_, _>>()?;
    let cn: Vec<_> = cert.subject().iter_common_name().map(|a| a.as_str().map(str::to_owned)).collect::<Result<_, _>>()?;
    assert_eq!(org, vec![id.to_string()]);
    assert_eq!(cn, vec![id.to_string()]);
    let issuer_cn = cert.issuer().iter_common_name().next().context("issuer CN")?.as_str()?.to_owned();
    assert_eq!(issuer_cn, "offsite device CA");
    let eku = cert.extended_key_usage()?.context("extended key usage")?;
    assert!(eku.value.client_auth && !eku.value.server_auth);
    assert_eq!(cert.validity().not_after.timestamp(), issued.not_after.timestamp());
    let days = (issued.not_after - chrono::Utc::now()).num_days();
    assert!((824..=825).contains(&days), "{days} days");
    assert_eq!(hex::encode(cert.raw_serial()), issued.serial_hex);
    assert_ne!(pki.issue_device(&id, 825)?.serial_hex, issued.serial_hex);
    // Chain validity itself is exercised by the TLS tests; here, that the issuer is our CA.
    let (_, ca_pem) = parse_x509_pem(pki.ca_pem().as_bytes())?;
    let ca = ca_pem.parse_x509()?;
    assert_eq!(cert.issuer().to_string(), ca.subject().to_string());
    assert!(ca.is_ca());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_follows_the_configured_hosts() -> Result<()> {
    use x509_parser::prelude::*;

    fn sans(pem: &str) -> Vec<String> {
        let (_, pem) = parse_x509_pem(pem.as_bytes()).expect("PEM");
        let cert = pem.parse_x509().expect("certificate");
        let ext = cert.subject_alternative_name().expect("SAN extension").expect("SANs present");
        ext.value
            .general_names
            .iter()
            .map(|g| match g {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).expect("4 bytes")).to_string()
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    let dir = tempfile::tempdir()?;
    let pki_dir = dir.path().join("pki");
    let pki = Pki::load_or_create(&pki_dir)?;
    let first = std::fs::read_to_string(pki.server_cert_path())?;
    let first_sans = sans(&first);
    assert_eq!(first_sans, ["localhost", "127.0.0.1"]);

    let hosts = vec!["mqtt.example.org".to_owned(), "10.1.2.3".to_owned()];
    let again = Pki::load_or_create_for_hosts(&pki_dir, &hosts)?;
    assert_eq!(again.ca_pem(), pki.ca_pem());
    let second = std::fs::read_to_string(pki.server_cert_path())?;
    assert_ne!(second, first, "the certificate was not reissued for new hosts");
    let second_sans = sans(&second);
    assert_eq!(second_sans, ["localhost", "127.0.0.1", "mqtt.example.org", "10.1.2.3"]);

    // Nothing changes when the names are already there.
    Pki::load_or_create_for_hosts(&pki_dir, &hosts)?;
    Pki::load_or_create(&pki_dir)?;
    assert_eq!(std::fs::read_to_string(pki.server_cert_path())?, second);

    // Another host list widens the certificate rather than dropping the earlier names.
    Pki::load_or_create_for_hosts(&pki_dir, &["broker.lan".to_owned()])?;
    let third = sans(&std::fs::read_to_string(pki.server_cert_path())?);
    assert_eq!(third, ["localhost", "127.0.0.1", "broker.lan", "mqtt.example.org", "10.1.2.3"]);
    Ok(())
}
