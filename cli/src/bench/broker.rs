//! `offsite bench broker`: the same QoS 1 load (TLS devices with client certificates, each confined
//! to its own topics; one internal subscriber) through our broker and through Debian's mosquitto.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use offsite_broker::BrokerBuilder;
use offsite_wire::{Channel, DeviceCredentials, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::json;

use super::support::{free_port, round, scratch_dir};
use crate::configuration::Config;
use crate::startup::{self, Database};

#[derive(clap::Args)]
pub struct Args {
    /// Publishing devices.
    #[arg(long, default_value_t = 20)]
    publishers: usize,
    /// Messages per publisher.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 200)]
    payload: usize,
    #[arg(long)]
    json: bool,
}

const INTERNAL_USER: &str = "offsite-internal";

pub async fn run(base: Config, a: Args) -> Result<()> {
    let dir = scratch_dir("broker")?;
    let mut cfg = base;
    cfg.data_dir = dir.path().to_path_buf();
    cfg.database.url = None;
    let db = Database::open(&cfg).await?;
    let r = both(&cfg, &db, &a, dir.path()).await;
    db.close().await?;
    let (ours, direct, theirs) = r?;
    println!(
        "{}",
        json!({
            "ours_msgs_per_sec": round(ours, 0),
            "mosquitto_msgs_per_sec": round(theirs, 0),
            "ratio": round(ours / theirs, 3),
            // The same broker with devices connecting to rumqttd directly (no device front), in
            // the same run: what the front costs on the data path.
            "ours_without_front_msgs_per_sec": round(direct, 0),
            "front_ratio": round(ours / direct, 3),
            "publishers": a.publishers,
            "messages": a.publishers as u64 * a.messages,
            "payload_bytes": a.payload,
            "qos": 1,
        })
    );
    Ok(())
}

async fn both(cfg: &Config, db: &Database, a: &Args, dir: &Path) -> Result<(f64, f64, f64)> {
    let pki = startup::pki(cfg)?;
    let mut creds = Vec::new();
    for i in 0..a.publishers {
        creds.push(offsite_broker::provision(&db.store, &pki, &format!("bench-broker-{i}"), None).await?.1);
    }
    let internal = offsite_broker::internal_password(&cfg.data_dir)?;

    // Ours, in this process (rumqttd runs on its own threads).
    let (tls, plain) = (free_port()?, free_port()?);
    let mut bc = cfg.broker.clone();
    bc.tls_listen = Some(format!("127.0.0.1:{tls}").parse()?);
    bc.plain_listen = Some(format!("127.0.0.1:{plain}").parse()?);
    let _ours = BrokerBuilder::new(&bc, &pki, db.store.clone(), internal.clone())?.spawn()?;
    eprintln!("bench broker: ours on {tls} (TLS) / {plain} (internal)");
    let ours = load(&creds, tls, plain, &internal, a).await.context("load through our broker")?;
    eprintln!("bench broker: ours {ours:.0} msg/s");

    // Ours again, devices straight to rumqttd's listener (as before the device front).
    let (dtls, dplain) = (free_port()?, free_port()?);
    bc.tls_listen = Some(format!("127.0.0.1:{dtls}").parse()?);
    bc.plain_listen = Some(format!("127.0.0.1:{dplain}").parse()?);
    let _direct = BrokerBuilder::without_device_front(&bc, &pki, db.store.clone(), internal.clone())?.spawn()?;
    let direct = load(&creds, dtls, dplain, &internal, a).await.context("load through our broker without its front")?;
    eprintln!("bench broker: ours without the front {direct:.0} msg/s");

    // Debian's mosquitto, configured for the same identity rules.
    let (mtls, mplain) = (free_port()?, free_port()?);
    let mut child = spawn_mosquitto(dir, &pki, mtls, mplain, &internal)?;
    let r = load(&creds, mtls, mplain, &internal, a).await.context("load through mosquitto");
    let _ = child.kill();
    let _ = child.wait();
    let theirs = r?;
    eprintln!("bench broker: mosquitto {theirs:.0} msg/s");
    Ok((ours, direct, theirs))
}

fn spawn_mosquitto(dir: &Path, pki: &offsite_broker::Pki, tls: u16, plain: u16, internal: &str) -> Result<std::process::Child> {
    let m = dir.join("mosquitto");
    std::fs::create_dir_all(&m)?;
    let pw = m.join("passwd");
    let st = std::process::Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&pw)
        .args([INTERNAL_USER, internal])
        .stdout(Stdio::null())
        .status()
        .context("running mosquitto_passwd (install the mosquitto package)")?;
    if !st.success() {
        bail!("mosquitto_passwd failed");
    }
    let acl = m.join("acl");
    std::fs::write(&acl, format!("user {INTERNAL_USER}\ntopic read /tenants/#\n\npattern readwrite /tenants/%u/#\n"))?;
    let conf = m.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nper_listener_settings true\npersistence false\nmax_queued_messages 1000000\n\
             log_dest stderr\nlog_type error\n\
             listener {tls} 127.0.0.1\nallow_anonymous false\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n\
             require_certificate true\nuse_identity_as_username true\nacl_file {acl}\n\
             listener {plain} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\nacl_file {acl}\n",
            ca = pki.ca_path().display(),
            cert = pki.server_cert_path().display(),
            key = pki.server_key_path().display(),
            acl = acl.display(),
            pw = pw.display(),
        ),
    )?;
    let child = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .spawn()
        .context("starting mosquitto (install the mosquitto package)")?;
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", plain)).is_err() {
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("mosquitto did not start listening");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

/// Publishes `messages` QoS 1 messages from each device and times until the subscriber has all.
async fn load(creds: &[DeviceCredentials], tls: u16, plain: u16, internal: &str, a: &Args) -> Result<f64> {
    let total = creds.len() as u64 * a.messages;
    let received = Arc::new(AtomicU64::new(0));
    let (sub, mut sub_ev) = {
        let mut o = MqttOptions::new(format!("bench-sub-{}", rand::random::<u32>()), "127.0.0.1", plain);
        o.set_credentials(INTERNAL_USER, internal);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_inflight(1000);
        AsyncClient::new(o, 10_000)
    };
    let filter = Channel::Data.all_devices_filter();
    let (sub_ready_tx, sub_ready_rx) = tokio::sync::oneshot::channel();
    let rc = received.clone();
    let sub_task = tokio::spawn(async move {
        let mut ready = Some(sub_ready_tx);
        loop {
            match sub_ev.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    rc.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "bench subscriber");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    sub.subscribe(&filter, QoS::AtLeastOnce).await?;
    tokio::time::timeout(Duration::from_secs(10), sub_ready_rx).await.context("subscriber not ready")??;

    let payload = vec![b'x'; a.payload];
    let mut clients = Vec::new();
    let mut loops = Vec::new();
    let connected = Arc::new(AtomicU64::new(0));
    for c in creds {
        let mut o = MqttOptions::new(c.device_id.as_str(), "localhost", tls);
        o.set_credentials(c.device_id.as_str(), c.token.clone());
        o.set_keep_alive(Duration::from_secs(30));
        o.set_inflight(100);
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca: c.ca_pem.as_bytes().to_vec(),
            alpn: None,
            client_auth: Some((c.cert_pem.as_bytes().to_vec(), c.key_pem.as_bytes().to_vec())),
        }));
        let (client, mut ev) = AsyncClient::new(o, 1000);
        let conn = connected.clone();
        loops.push(tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        conn.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "bench publisher");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
        clients.push((client, Topic::new(c.device_id.clone(), Channel::Data).render()));
    }
    let t0 = Instant::now();
    while connected.load(Ordering::Relaxed) < creds.len() as u64 {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("publishers did not connect");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let start = Instant::now();
    let mut pubs = Vec::new();
    for (client, topic) in clients {
        let (payload, n) = (payload.clone(), a.messages);
        pubs.push(tokio::spawn(async move {
            for _ in 0..n {
                client.publish(&topic, QoS::AtLeastOnce, false, payload.clone()).await?;
            }
            Ok::<_, anyhow::Error>(client)
        }));
    }
    let mut last = (Instant::now(), 0u64);
    loop {
        let got = received.load(Ordering::Relaxed);
        if got >= total {
            break;
        }
        if got != last.1 {
            last = (Instant::now(), got);
        } else if last.0.elapsed() > Duration::from_secs(20) {
            bail!("stalled: subscriber received {got} of {total}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    for p in pubs {
        if let Ok(Ok(c)) = p.await {
            let _ = c.disconnect().await;
        }
    }
    for l in loops {
        l.abort();
    }
    sub_task.abort();
    Ok(total as f64 / secs)
}
