//! From a device's sample to a warning on the live stream, through the real binary: MQTT/TLS,
//! ingest, the analytics tier (rules from the API, the ONNX anomaly detector) and the portal's SSE.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use offsite_edge_agent::{DeviceLink, Endpoint, LinkOptions};
use offsite_tests::*;
use offsite_wire::{MetricKey, Sample};
use serde_json::{json, Value};

/// A minimal Server-Sent Events reader over a streaming response.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn connect(http: &reqwest::Client, url: &str) -> Result<Self> {
        let resp = http.get(url).send().await?;
        if !resp.status().is_success() {
            bail!("stream answered {}", resp.status());
        }
        Ok(Self { resp, buf: String::new() })
    }

    /// The next event (name, JSON data) for which `want` holds, within `timeout`.
    async fn next_matching(&mut self, timeout: Duration, want: impl Fn(&str, &Value) -> bool) -> Result<(String, Value)> {
        tokio::time::timeout(timeout, async {
            loop {
                while let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let mut event = "message".to_owned();
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(e) = line.strip_prefix("event:") {
                            event = e.trim().to_owned();
                        } else if let Some(d) = line.strip_prefix("data:") {
                            data.push_str(d.trim());
                        }
                    }
                    if let Ok(v) = serde_json::from_str::<Value>(&data) {
                        if want(&event, &v) {
                            return Ok((event, v));
                        }
                    }
                }
                match self.resp.chunk().await? {
                    Some(c) => self.buf.push_str(&String::from_utf8_lossy(&c)),
                    None => bail!("stream ended"),
                }
            }
        })
        .await
        .context("no matching event in time")?
    }
}

fn sample(ts_ms: i64, metric: &str, value: f64) -> Sample {
    Sample { ts: chrono::DateTime::from_timestamp_millis(ts_ms).unwrap(), metric: MetricKey::parse(metric).unwrap(), value }
}

#[tokio::test]
async fn rule_and_anomaly_warnings_reach_the_live_stream_with_evidence() -> Result<()> {
    let site = Site::new().await?;
    let _up = site.spawn(&["up"])?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let d = site.provision("工地扬尘监测仪").await?;
    let id = d.device_id.to_string();
    let http = site.admin_client().await?;
    let mut sse = Sse::connect(&http, &site.http("/api/v1/warnings/stream")).await?;

    // A rule through the API: PM10 above 150.
    let rule = json!({"name": "PM10 超标", "scope": {"metric": "pm10"}, "level": 2,
                      "condition": {"kind": "threshold", "above": 150, "for_s": 0, "hysteresis": 10}});
    let resp = http.post(site.http("/api/v1/rules")).json(&rule).send().await?;
    assert_eq!(resp.status(), 201, "{}", resp.text().await?);
    // The analytics tier re-reads rules every 5 s.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let link = DeviceLink::connect(&d, &Endpoint { host: "localhost".into(), port: site.tls_port }, LinkOptions::default(), None)?;
    let now = Utc::now().timestamp_millis();
    link.publish(vec![sample(now - 1000, "pm10", 80.0), sample(now, "pm10", 230.0)]).await?;
    let (_, w) = sse
        .next_matching(Duration::from_secs(30), |e, v| e == "opened" && v["source"] == "rules" && v["device_id"] == id.as_str())
        .await?;
    assert_eq!(w["level"], 2);
    assert_eq!(w["metric_key"], "pm10");
    let series = w["evidence"]["series"].as_array().context("evidence series")?;
    assert!(series.iter().any(|p| p[1] == 230.0), "the offending value is in the evidence: {series:?}");
    // Back below the limit minus the hysteresis: resolved automatically.
    link.publish(vec![sample(now + 1000, "pm10", 60.0)]).await?;
    sse.next_matching(Duration::from_secs(30), |e, v| e == "resolved" && v["id"] == w["id"]).await?;

    // The ONNX anomaly detector: seven hours of a regular temperature series, then a jump.
    let start = now - 7 * 3_600_000;
    let normal: Vec<Sample> = (0..420)
        .map(|i| sample(start + i * 60_000, "temperature", 20.0 + 3.0 * (i as f64 / 60.0).sin() + (i % 5) as f64 * 0.05))
        .collect();
    for chunk in normal.chunks(100) {
        link.publish(chunk.to_vec()).await?;
    }
    link.publish(vec![sample(start + 420 * 60_000, "temperature", 95.0)]).await?;
    let (_, a) = sse
        .next_matching(Duration::from_secs(30), |e, v| e == "opened" && v["source"] == "anomaly-onnx" && v["device_id"] == id.as_str())
        .await?;
    assert_eq!(a["metric_key"], "temperature");
    assert_eq!(a["evidence"]["version"], "1", "model version recorded");
    assert!(a["evidence"]["score"].as_f64().unwrap() >= 0.35);
    assert!(link.flush(Duration::from_secs(10)).await);

    // The same warnings through the REST API.
    let list: Value = http.get(site.http(&format!("/api/v1/warnings?device={id}"))).send().await?.json().await?;
    assert_eq!(list["total"], 2, "{list}");
    let metrics = http.get(site.http("/metrics")).send().await?.text().await?;
    assert!(metrics.contains("offsite_warnings_total{level=\"2\",source=\"rules\"} 1"), "warnings counted");
    assert!(metrics.contains("offsite_detect_seconds_count"));
    Ok(())
}
