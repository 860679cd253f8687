//! Devices -> broker -> ingest -> PostgreSQL through the real binary, real MQTT clients
//! (rumqttc and mosquitto_pub) and a real database.

use std::time::Duration;

use anyhow::Result;
use chrono::{SubsecRound, Utc};
use offsite_edge_agent::{DeviceLink, Endpoint, LinkOptions};
use offsite_tests::*;
use offsite_wire::{MetricKey, Sample};
use serde_json::Value;

fn endpoint(site: &Site) -> Endpoint {
    Endpoint { host: "localhost".into(), port: site.tls_port }
}

fn sample(ts_ms: i64, metric: &str, value: f64) -> Sample {
    Sample { ts: chrono::DateTime::from_timestamp_millis(ts_ms).unwrap(), metric: MetricKey::parse(metric).unwrap(), value }
}

fn mosquitto_pub(site: &Site, c: &offsite_wire::DeviceCredentials, topic: &str, msg: &str) -> Result<std::process::Output> {
    let (ca, cert, key) = site.pem_files(c)?;
    // -f, not -m: a message can be larger than the argument list allows.
    let file = site.dir.path().join("message.json");
    std::fs::write(&file, msg)?;
    Ok(std::process::Command::new("mosquitto_pub")
        .arg("--cafile").arg(&ca).arg("--cert").arg(&cert).arg("--key").arg(&key)
        .args(["-h", "localhost", "-p", &site.tls_port.to_string(), "-u", c.device_id.as_str(), "-P", &c.token])
        .args(["-q", "1", "-t", topic, "-f"])
        .arg(&file)
        .output()?)
}

#[tokio::test]
async fn stores_exact_rows_from_rumqttc_and_mosquitto_pub() -> Result<()> {
    let site = Site::new().await?;
    let mut up = site.spawn(&["up"])?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let a = site.provision("设备A").await?;
    let b = site.provision("设备B").await?;

    // rumqttc, through the edge agent's publisher.
    let t = Utc::now().trunc_subsecs(3).timestamp_millis() - 60_000;
    let link = DeviceLink::connect(&a, &endpoint(&site), LinkOptions::default(), None)?;
    link.publish(vec![sample(t, "pm10", 35.5), sample(t, "pm25", 20.25), sample(t + 1000, "pm10", 36.0)]).await?;
    assert!(link.flush(Duration::from_secs(20)).await, "batch not acknowledged: {:?}", link.stats());
    assert_eq!(
        stored_rows(&site, a.device_id.as_str()).await?,
        vec![("pm10".into(), t, 35.5), ("pm10".into(), t + 1000, 36.0), ("pm25".into(), t, 20.25)]
    );

    // mosquitto_pub, twice with the same batch: stored once.
    let ts = chrono::DateTime::from_timestamp_millis(t).unwrap().to_rfc3339();
    let topic = format!("/tenants/{}/v1/data", b.device_id);
    let msg = format!(r#"{{"seq":1,"samples":[{{"ts":"{ts}","metric":"noise","value":61.5}},{{"ts":{},"metric":"noise","value":62}}]}}"#, t + 500);
    for _ in 0..2 {
        let out = mosquitto_pub(&site, &b, &topic, &msg)?;
        assert!(out.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_for("mosquitto_pub rows", Duration::from_secs(20), || async {
        metric_value(&site, "offsite_ingest_duplicates_total", "").await.unwrap_or(0.0) >= 2.0
    })
    .await?;
    assert_eq!(
        stored_rows(&site, b.device_id.as_str()).await?,
        vec![("noise".into(), t, 61.5), ("noise".into(), t + 500, 62.0)]
    );

    // The API sees A online, and out-of-range values are stored flagged.
    let devices: Value = site.admin_client().await?.get(site.http("/api/v1/devices")).send().await?.json().await?;
    let item = devices["items"].as_array().unwrap().iter().find(|d| d["id"] == a.device_id.as_str()).unwrap().clone();
    assert_eq!(item["online"], true, "{item}");
    assert!(item["last_seen"].is_string());
    link.publish(vec![sample(t + 2000, "humidity", 180.0)]).await?;
    assert!(link.flush(Duration::from_secs(20)).await);
    let q: i16 = sqlx::query_scalar("SELECT quality FROM samples s JOIN metrics m ON m.id = s.metric_id WHERE m.key = 'humidity'")
        .fetch_one(site.db.store.pool())
        .await?;
    assert_eq!(q, offsite_store::samples::quality::OUT_OF_RANGE);

    link.close().await;
    wait_for("A offline after goodbye", Duration::from_secs(10), || async {
        let d = site.db.store.device(&a.device_id).await.ok().flatten();
        d.is_some_and(|d| !d.online)
    })
    .await?;
    assert_eq!(up.terminate(Duration::from_secs(20))?, Some(0), "up exits cleanly on SIGTERM");
    Ok(())
}

#[tokio::test]
async fn bad_payloads_are_dead_lettered_and_counted() -> Result<()> {
    let site = Site::new().await?;
    let _up = site.spawn(&["up"])?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let d = site.provision("坏数据设备").await?;
    let topic = format!("/tenants/{}/v1/data", d.device_id);
    let now = Utc::now().timestamp_millis();
    let big = format!(r#"{{"seq":9,"samples":[{{"ts":{now},"metric":"pm10","value":1}}],"pad":"{}"}}"#, "x".repeat(300_000));
    let cases = [
        ("malformed", "this is not json".to_string()),
        ("non_finite", format!(r#"{{"seq":2,"samples":[{{"ts":{now},"metric":"pm10","value":"NaN"}}]}}"#)),
        ("non_finite", format!(r#"{{"seq":3,"samples":[{{"ts":{now},"metric":"pm10","value":1e400}}]}}"#)),
        ("bad_timestamp", r#"{"seq":4,"samples":[{"ts":1,"metric":"pm10","value":1}]}"#.to_string()),
        ("bad_metric", format!(r#"{{"seq":5,"samples":[{{"ts":{now},"metric":"pm 10","value":1}}]}}"#)),
        ("empty", r#"{"seq":6,"samples":[]}"#.to_string()),
        ("too_large", big),
    ];
    for (_, msg) in &cases {
        let out = mosquitto_pub(&site, &d, &topic, msg)?;
        assert!(out.status.success(), "mosquitto_pub: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_for("dead letters", Duration::from_secs(20), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM dead_letters").fetch_one(site.db.store.pool()).await.unwrap_or(0)
            >= cases.len() as i64
    })
    .await?;
    let counts = site.db.store.dead_letter_counts().await?;
    for reason in ["malformed", "non_finite", "bad_timestamp", "bad_metric", "empty", "too_large"] {
        let want = cases.iter().filter(|(r, _)| *r == reason).count() as i64;
        let got = counts.iter().find(|(r, _)| r == reason).map(|(_, n)| *n).unwrap_or(0);
        assert_eq!(got, want, "dead letters for {reason}: {counts:?}");
        let counted = metric_value(&site, "offsite_ingest_rejected_total", &format!("reason=\"{reason}\"")).await?;
        assert_eq!(counted, want as f64, "counter for {reason}");
    }
    // The raw payload is kept.
    let p: Vec<u8> = sqlx::query_scalar("SELECT payload FROM dead_letters WHERE reason = 'malformed'").fetch_one(site.db.store.pool()).await?;
    assert_eq!(p, b"this is not json");
    assert_eq!(site.db.store.sample_count().await?, 0);
    // The platform still works for this device afterwards.
    let link = DeviceLink::connect(&d, &endpoint(&site), LinkOptions::default(), None)?;
    link.publish(vec![sample(now, "pm10", 5.0)]).await?;
    assert!(link.flush(Duration::from_secs(20)).await);
    assert_eq!(site.db.store.sample_count().await?, 1);
    Ok(())
}

#[tokio::test]
async fn ingest_killed_mid_stream_loses_nothing() -> Result<()> {
    let site = Site::new().await?;
    let _broker = site.spawn(&["broker"])?;
    wait_port(site.tls_port, Duration::from_secs(60)).await?;
    wait_port(site.plain_port, Duration::from_secs(10)).await?;
    let mut ingest = site.spawn(&["ingest"])?;
    let d = site.provision("断电测试").await?;
    let opts = LinkOptions { resend_after: Duration::from_secs(2), ..LinkOptions::default() };
    let link = DeviceLink::connect(&d, &endpoint(&site), opts, None)?;
    let t0 = Utc::now().timestamp_millis() - 3_600_000;
    let (batches, per) = (150i64, 10i64);
    for i in 0..batches {
        let samples = (0..per).map(|k| sample(t0 + (i * per + k) * 1000, "pm10", (i * per + k) as f64)).collect();
        link.publish(samples).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        if i == 50 {
            ingest.kill9();
        }
        if i == 70 {
            ingest = site.spawn(&["ingest"])?;
        }
    }
    assert!(link.flush(Duration::from_secs(90)).await, "not all batches acknowledged: {:?}", link.stats());
    let rows = stored_rows(&site, d.device_id.as_str()).await?;
    assert_eq!(rows.len() as i64, batches * per, "stored count equals sent count");
    for (i, (_, ts, v)) in rows.iter().enumerate() {
        assert_eq!((*ts, *v), (t0 + i as i64 * 1000, i as f64), "row {i}");
    }
    let s = link.stats();
    assert!(s.resent > 0, "the kill should have forced resends: {s:?}");
    Ok(())
}
