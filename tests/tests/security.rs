//! Identity: a device writes only its own data; bad, revoked and missing credentials are refused.

use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use offsite_edge_agent::{DeviceLink, Endpoint, LinkOptions};
use offsite_tests::*;
use offsite_wire::{DeviceCredentials, MetricKey, Sample};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

/// Connects a raw TLS client; returns Ok(true) if a successful CONNACK arrives within 5 s.
async fn try_connect(port: u16, c: &DeviceCredentials, user: Option<(&str, &str)>, with_cert: bool) -> Result<(AsyncClient, rumqttc::EventLoop, bool)> {
    let mut o = MqttOptions::new(format!("probe{}", rand_id()), "localhost", port);
    if let Some((u, p)) = user {
        o.set_credentials(u, p);
    }
    o.set_keep_alive(Duration::from_secs(10));
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: c.ca_pem.as_bytes().to_vec(),
        alpn: None,
        client_auth: with_cert.then(|| (c.cert_pem.as_bytes().to_vec(), c.key_pem.as_bytes().to_vec())),
    }));
    let (client, mut ev) = AsyncClient::new(o, 100);
    let ok = connack_ok(&mut ev).await;
    Ok((client, ev, ok))
}

fn rand_id() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}

#[tokio::test]
async fn devices_are_confined_and_credentials_checked() -> Result<()> {
    let site = Site::new().await?;
    let _up = site.spawn(&["up"])?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let a = site.provision("A").await?;
    let b = site.provision("B").await?;
    let now = Utc::now().timestamp_millis();

    // A, authenticated, publishes a valid batch on B's topic: the broker drops it and A's connection.
    let (client, mut ev, ok) = try_connect(site.tls_port, &a, Some((a.device_id.as_str(), &a.token)), true).await?;
    assert!(ok, "A with good credentials connects");
    let spoof = format!(r#"{{"seq":1,"samples":[{{"ts":{now},"metric":"pm10","value":999}}]}}"#);
    client.publish(format!("/tenants/{}/v1/data", b.device_id), QoS::AtLeastOnce, false, spoof).await?;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return false,
                Ok(_) => {}
                Err(_) => return true,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(closed, "the broker closes a connection that publishes outside its tenant");

    // B's own data arrives; nothing of A's lands in B's series.
    let link = DeviceLink::connect(&b, &Endpoint { host: "localhost".into(), port: site.tls_port }, LinkOptions::default(), None)?;
    link.publish(vec![Sample { ts: chrono::DateTime::from_timestamp_millis(now).unwrap(), metric: MetricKey::parse("pm10")?, value: 1.0 }]).await?;
    assert!(link.flush(Duration::from_secs(20)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored_rows(&site, b.device_id.as_str()).await?, vec![("pm10".into(), now, 1.0)]);
    assert!(stored_rows(&site, a.device_id.as_str()).await?.is_empty());

    // Wrong token, missing user/password, missing client certificate.
    assert!(!try_connect(site.tls_port, &a, Some((a.device_id.as_str(), "wrong")), true).await?.2, "wrong token refused");
    assert!(!try_connect(site.tls_port, &a, None, true).await?.2, "missing credentials refused");
    assert!(!try_connect(site.tls_port, &a, Some((a.device_id.as_str(), &a.token)), false).await?.2, "missing certificate refused");
    // Someone else's token with my certificate.
    assert!(!try_connect(site.tls_port, &a, Some((a.device_id.as_str(), &b.token)), true).await?.2, "another device's token refused");

    // Rotation: the old token stops working, the new one works.
    let pki = offsite_broker::Pki::load_or_create(&site.dir.path().join("pki"))?;
    let a2 = offsite_broker::rotate(&site.db.store, &pki, &a.device_id).await?.expect("rotated");
    assert!(!try_connect(site.tls_port, &a, Some((a.device_id.as_str(), &a.token)), true).await?.2, "old token refused after rotate");
    assert!(try_connect(site.tls_port, &a2, Some((a2.device_id.as_str(), &a2.token)), true).await?.2, "new credentials work");

    // Revocation takes effect on the next attempt.
    site.db.store.revoke_device(&a.device_id).await?;
    assert!(!try_connect(site.tls_port, &a2, Some((a2.device_id.as_str(), &a2.token)), true).await?.2, "revoked device refused");

    let refused = metric_value(&site, "offsite_broker_auth_failures_total", "").await?;
    assert!(refused >= 4.0, "auth failures counted: {refused}");
    Ok(())
}

#[tokio::test]
async fn internal_listener_needs_the_internal_account() -> Result<()> {
    let site = Site::new().await?;
    let _up = site.spawn(&["up"])?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let connect = |pass: String| {
        let port = site.plain_port;
        async move {
            let mut o = MqttOptions::new(format!("internal{}", rand_id()), "127.0.0.1", port);
            o.set_credentials("offsite-internal", pass);
            let (_c, mut ev) = AsyncClient::new(o, 10);
            connack_ok(&mut ev).await
        }
    };
    let pass = std::fs::read_to_string(site.dir.path().join("secrets/mqtt-internal.pass"))?.trim().to_owned();
    assert!(connect(pass).await);
    assert!(!connect("guess".into()).await);
    Ok(())
}

/// The device front in processes of its own (`[broker] front_processes`, used where the open-files
/// limit is too low for it in the broker): confinement, delivery and the front's metrics are the
/// same, and the front processes go away with the broker.
#[tokio::test]
async fn front_processes_keep_devices_confined() -> Result<()> {
    let site = Site::new().await?;
    let mut c = site.command(&["up"]);
    c.env("OFFSITE_BROKER__FRONT_PROCESSES", "2");
    let mut up = Proc(c.spawn()?);
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let a = site.provision("A").await?;
    let b = site.provision("B").await?;
    let now = Utc::now().timestamp_millis();

    let (client, mut ev, ok) = try_connect(site.tls_port, &a, Some((a.device_id.as_str(), &a.token)), true).await?;
    assert!(ok, "A connects through a front process");
    client.publish(format!("/tenants/{}/v1/data", b.device_id), QoS::AtLeastOnce, false, "{}").await?;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return false,
                Ok(_) => {}
                Err(_) => return true,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(closed, "a publish outside its tenant still closes the connection");
    assert!(!try_connect(site.tls_port, &a, Some((a.device_id.as_str(), "wrong")), true).await?.2, "wrong token refused");

    let link = DeviceLink::connect(&b, &Endpoint { host: "localhost".into(), port: site.tls_port }, LinkOptions::default(), None)?;
    link.publish(vec![Sample { ts: chrono::DateTime::from_timestamp_millis(now).unwrap(), metric: MetricKey::parse("pm10")?, value: 2.0 }]).await?;
    assert!(link.flush(Duration::from_secs(20)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored_rows(&site, b.device_id.as_str()).await?, vec![("pm10".into(), now, 2.0)]);

    // The front processes report every second; the broker's /metrics adds them up.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let accepted = metric_value(&site, "offsite_broker_front_accepted_total", "").await?;
        if accepted >= 3.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "front connections not counted by the broker: {accepted}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Without their broker the front processes exit and free the device port.
    up.kill9();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpListener::bind(("127.0.0.1", site.tls_port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the device port is still held after the broker died");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
