//! Debian's mosquitto as the external broker (issue 11): the shipped configuration
//! (`offsite certs mosquitto`) keeps devices on their own topics, `offsite ingest` replicas share
//! the stream through `$share`, and killing one loses nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use offsite_edge_agent::{DeviceLink, Endpoint, LinkOptions};
use offsite_tests::mosquitto::{ingest_connected, ingest_messages, spawn_ingest, Mosquitto};
use offsite_tests::*;
use offsite_wire::{DeviceCredentials, MetricKey, Sample};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};

fn tls_client(
    port: u16,
    ca: &str,
    cert: Option<(&str, &str)>,
    client_id: &str,
) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(client_id, "localhost", port);
    o.set_keep_alive(Duration::from_secs(10));
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: ca.as_bytes().to_vec(),
        alpn: None,
        client_auth: cert.map(|(c, k)| (c.as_bytes().to_vec(), k.as_bytes().to_vec())),
    }));
    AsyncClient::new(o, 100)
}

fn device_client(port: u16, c: &DeviceCredentials, client_id: &str) -> (AsyncClient, EventLoop) {
    tls_client(port, &c.ca_pem, Some((&c.cert_pem, &c.key_pem)), client_id)
}

fn internal_client(port: u16, user: &str, password: &str) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(
        format!("probe-internal-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    o.set_credentials(user, password);
    AsyncClient::new(o, 10)
}

async fn device_online(site: &Site, device: &str) -> Result<Option<bool>> {
    Ok(sqlx::query_scalar(
        "SELECT s.online FROM device_status s JOIN devices d ON d.key = s.device_key WHERE d.id = $1",
    )
    .bind(device)
    .fetch_optional(site.db.store.pool())
    .await?)
}

fn sample(ts_ms: i64, value: f64) -> Sample {
    Sample {
        ts: DateTime::from_timestamp_millis(ts_ms).unwrap(),
        metric: MetricKey::parse("pm10").unwrap(),
        value,
    }
}

/// What a client saw for `within`: the publishes it received (topic, payload) and, in order, the
/// acknowledgements and errors (how the broker handled its own requests).
async fn collect(ev: &mut EventLoop, within: Duration) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let (mut got, mut seen) = (Vec::new(), Vec::new());
    let _ = tokio::time::timeout(within, async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    got.push((p.topic.clone(), p.payload.to_vec()))
                }
                Ok(Event::Incoming(Packet::SubAck(a))) => {
                    seen.push(format!("suback {:?}", a.return_codes))
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => seen.push("puback".into()),
                Ok(_) => {}
                Err(e) => {
                    seen.push(format!("error {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
            }
        }
    })
    .await;
    (got, seen)
}

#[tokio::test]
async fn devices_are_confined_and_acknowledged_through_mosquitto() -> Result<()> {
    let site = Site::new().await?;
    let m = Mosquitto::start(&site).await?;
    let ingest_log = site.dir.path().join("ingest.log");
    let _ingest = spawn_ingest(&site, &m, &ingest_log)?;
    wait_for("ingest connected", Duration::from_secs(60), || async {
        ingest_connected(&ingest_log)
    })
    .await?;
    let a = site.provision("A").await?;
    let b = site.provision("B").await?;
    let endpoint = Endpoint {
        host: "localhost".into(),
        port: m.tls_port,
    };
    let now = Utc::now().timestamp_millis();

    // B's own data, stored and acknowledged through mosquitto; B's status says online.
    let opts = LinkOptions {
        resend_after: Duration::from_secs(3),
        ..LinkOptions::default()
    };
    let link_b = DeviceLink::connect(&b, &endpoint, opts.clone(), None)?;
    link_b.publish(vec![sample(now, 1.0)]).await?;
    assert!(
        link_b.flush(Duration::from_secs(30)).await,
        "B's batch acknowledged through mosquitto"
    );
    assert_eq!(
        stored_rows(&site, b.device_id.as_str()).await?,
        vec![("pm10".into(), now, 1.0)]
    );
    wait_for("B online", Duration::from_secs(10), || async {
        device_online(&site, b.device_id.as_str())
            .await
            .ok()
            .flatten()
            == Some(true)
    })
    .await?;

    // A, with its own certificate, watches B's ack and cmd and publishes on B's data topic.
    let (spy, mut spy_ev) = device_client(m.tls_port, &a, "spy");
    assert!(
        connack_ok(&mut spy_ev).await,
        "A connects with its certificate"
    );
    spy.subscribe(format!("/tenants/{}/v1/ack", b.device_id), QoS::AtLeastOnce)
        .await?;
    spy.subscribe(format!("/tenants/{}/v1/cmd", b.device_id), QoS::AtLeastOnce)
        .await?;
    let spoof = format!(
        r#"{{"seq":1,"samples":[{{"ts":{},"metric":"pm10","value":999}}]}}"#,
        now + 1
    );
    spy.publish(
        format!("/tenants/{}/v1/data", b.device_id),
        QoS::AtLeastOnce,
        false,
        spoof,
    )
    .await?;
    spy.publish(
        format!("/tenants/{}/v1/status", b.device_id),
        QoS::AtLeastOnce,
        true,
        r#"{"online":false}"#,
    )
    .await?;
    // While A listens: B sends again (an ack on B's topic) and the platform commands B.
    link_b.publish(vec![sample(now + 2, 2.0)]).await?;
    assert!(link_b.flush(Duration::from_secs(30)).await);
    let pass = offsite_broker::internal_password(site.dir.path())?;
    let (cmd, mut cmd_ev) =
        internal_client(m.internal_port, offsite_broker::INTERNAL_USERNAME, &pass);
    assert!(
        connack_ok(&mut cmd_ev).await,
        "the internal account connects with its password"
    );
    cmd.publish(
        format!("/tenants/{}/v1/cmd", b.device_id),
        QoS::AtLeastOnce,
        false,
        r#"{"id":"x"}"#,
    )
    .await?;
    let cmd_poll = tokio::spawn(async move { collect(&mut cmd_ev, Duration::from_secs(3)).await });
    let (seen_by_a, handled) = collect(&mut spy_ev, Duration::from_secs(3)).await;
    cmd_poll.await?;
    eprintln!("how mosquitto answered A's foreign subscriptions and publishes: {handled:?}");
    // mosquitto 2.0 grants the subscriptions and acknowledges the publishes, keeps the connection
    // and drops what the ACL denies (deploy/mosquitto/README.md says so; this keeps it true).
    assert!(
        !handled.iter().any(|h| h.starts_with("error")),
        "A's connection stays open: {handled:?}"
    );
    assert_eq!(
        handled.iter().filter(|h| *h == "puback").count(),
        2,
        "{handled:?}"
    );
    assert!(
        seen_by_a.is_empty(),
        "A received B's messages: {seen_by_a:?}"
    );
    // Nothing of A's publishes reached B's series or B's presence.
    assert_eq!(
        stored_rows(&site, b.device_id.as_str()).await?,
        vec![("pm10".into(), now, 1.0), ("pm10".into(), now + 2, 2.0)],
        "only B's own samples are stored for B"
    );
    assert_eq!(
        device_online(&site, b.device_id.as_str()).await?,
        Some(true),
        "A could not say B is offline"
    );
    assert!(stored_rows(&site, a.device_id.as_str()).await?.is_empty());
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(site.db.store.pool())
        .await?;
    assert_eq!(dead, 0, "the spoofed batch never reached ingest");

    // A certificate for A's id from another CA: the TLS handshake fails.
    let other = tempfile::tempdir()?;
    let rogue_ca = offsite_broker::Pki::load_or_create(other.path())?;
    let rogue = rogue_ca.issue_device(&a.device_id, 30)?;
    let (_c, mut ev) = tls_client(
        m.tls_port,
        &a.ca_pem,
        Some((&rogue.cert_pem, &rogue.key_pem)),
        "rogue",
    );
    assert!(
        !connack_ok(&mut ev).await,
        "a certificate from another CA is refused"
    );
    // No certificate at all, even with a device's id and token.
    let mut o = MqttOptions::new("anon", "localhost", m.tls_port);
    o.set_credentials(a.device_id.as_str(), &a.token);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: a.ca_pem.as_bytes().to_vec(),
        alpn: None,
        client_auth: None,
    }));
    let (_c, mut ev) = AsyncClient::new(o, 10);
    assert!(
        !connack_ok(&mut ev).await,
        "a TLS client without a certificate is refused"
    );
    // The internal listener: no anonymous access, no device token, no guessed password.
    let (_c, mut ev) = AsyncClient::new(
        MqttOptions::new("anon-internal", "127.0.0.1", m.internal_port),
        10,
    );
    assert!(
        !connack_ok(&mut ev).await,
        "anonymous access to the internal listener is refused"
    );
    let (_c, mut ev) = internal_client(m.internal_port, a.device_id.as_str(), &a.token);
    assert!(
        !connack_ok(&mut ev).await,
        "a device token is not an internal account"
    );
    let (_c, mut ev) = internal_client(m.internal_port, offsite_broker::INTERNAL_USERNAME, "guess");
    assert!(
        !connack_ok(&mut ev).await,
        "a wrong internal password is refused"
    );

    // The client id is the certificate's CN whatever the client asked for (A's "spy" connection
    // ran as A), so no device can take over another's session by its client id.
    let log = m.log_text();
    assert!(
        log.contains(&format!(" as {} ", a.device_id)),
        "mosquitto names A's connection by its certificate: {log}"
    );
    assert!(
        !log.contains(" as spy "),
        "the client id a device asks for is replaced: {log}"
    );

    // A command recorded while a device was away reaches it when it says it is online: ingest
    // redelivers on the device's status message, which mosquitto carries like any publish.
    let c = site.provision("C").await?;
    let c_key: i32 = sqlx::query_scalar("SELECT key FROM devices WHERE id = $1")
        .bind(c.device_id.as_str())
        .fetch_one(site.db.store.pool())
        .await?;
    let body = serde_json::json!({"id": "cmd-while-away", "kind": "ping"});
    site.db
        .store
        .insert_command("cmd-while-away", c_key, "ping", &body, None)
        .await?;
    let mut cam = CameraDevice::connect(m.tls_port, &c).await?;
    let got = tokio::time::timeout(Duration::from_secs(15), cam.commands.recv()).await?;
    let got: serde_json::Value = serde_json::from_slice(&got.expect("a command"))?;
    assert_eq!(
        got["id"], "cmd-while-away",
        "the pending command was redelivered through mosquitto"
    );

    // Presence follows the last will: B dropping without a goodbye is offline.
    link_b.abort();
    wait_for(
        "B offline by its last will",
        Duration::from_secs(15),
        || async {
            device_online(&site, b.device_id.as_str())
                .await
                .ok()
                .flatten()
                == Some(false)
        },
    )
    .await?;
    Ok(())
}

/// Sends `batches` batches of 10 samples from `link`, each at its own device times.
async fn send(
    link: &DeviceLink,
    device_no: i64,
    batches: i64,
    base_ms: i64,
) -> Result<BTreeSet<(i64, u64)>> {
    let mut sent = BTreeSet::new();
    for b in 0..batches {
        let mut samples = Vec::new();
        for k in 0..10 {
            let ts = base_ms + b * 10 + k;
            let v = (device_no * 1_000_000 + ts - base_ms) as f64;
            samples.push(sample(ts, v));
            sent.insert((ts, v.to_bits()));
        }
        link.publish(samples).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(sent)
}

#[tokio::test]
async fn two_ingest_replicas_share_the_stream_and_a_sigkill_loses_nothing() -> Result<()> {
    let site = Site::new().await?;
    let m = Mosquitto::start(&site).await?;
    let logs = [
        site.dir.path().join("ingest-1.log"),
        site.dir.path().join("ingest-2.log"),
    ];
    let mut first = spawn_ingest(&site, &m, &logs[0])?;
    let _second = spawn_ingest(&site, &m, &logs[1])?;
    for l in &logs {
        wait_for("ingest connected", Duration::from_secs(60), || async {
            ingest_connected(l)
        })
        .await?;
    }
    // The subscription follows the CONNACK.
    tokio::time::sleep(Duration::from_millis(500)).await;

    const DEVICES: i64 = 8;
    const BATCHES: i64 = 150;
    let endpoint = Endpoint {
        host: "localhost".into(),
        port: m.tls_port,
    };
    let opts = LinkOptions {
        resend_after: Duration::from_secs(3),
        window: 20,
        ..LinkOptions::default()
    };
    let base = Utc::now().timestamp_millis() - 60_000;
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let c = site.provision(&format!("share-{i}")).await?;
        let link = std::sync::Arc::new(DeviceLink::connect(&c, &endpoint, opts.clone(), None)?);
        devices.push((c, link));
    }
    let mut senders = Vec::new();
    for (i, (_, link)) in devices.iter().enumerate() {
        let link = link.clone();
        senders.push(tokio::spawn(async move {
            send(&link, i as i64, BATCHES, base).await
        }));
    }
    // Both replicas take part of the stream before one of them is killed.
    wait_for(
        "both replicas receiving",
        Duration::from_secs(60),
        || async { ingest_messages(&logs[0]) > 0 && ingest_messages(&logs[1]) > 0 },
    )
    .await?;
    let before = (ingest_messages(&logs[0]), ingest_messages(&logs[1]));
    first.kill9();

    let mut sent = Vec::new();
    for s in senders {
        sent.push(s.await??);
    }
    for (c, link) in &devices {
        assert!(
            link.flush(Duration::from_secs(90)).await,
            "every batch of {} acknowledged",
            c.device_id
        );
    }
    let mut total = 0;
    for ((c, _), sent) in devices.iter().zip(&sent) {
        let stored: BTreeSet<(i64, u64)> = stored_rows(&site, c.device_id.as_str())
            .await?
            .into_iter()
            .map(|(_, ts, v)| (ts, v.to_bits()))
            .collect();
        let rows = stored_rows(&site, c.device_id.as_str()).await?.len();
        assert_eq!(rows, stored.len(), "no duplicate rows for {}", c.device_id);
        assert_eq!(&stored, sent, "stored = sent for {}", c.device_id);
        total += rows;
    }
    assert_eq!(total as i64, DEVICES * BATCHES * 10);
    let after = ingest_messages(&logs[1]);
    eprintln!("replica messages before the kill: {before:?}; survivor at the end: {after}; samples {total}");
    assert!(
        after > before.1,
        "the surviving replica took over the stream"
    );
    for (_, link) in devices {
        if let Ok(l) = std::sync::Arc::try_unwrap(link) {
            l.abort();
        }
    }
    Ok(())
}
