//! HJ 212 loggers against the real `offsite up`: registration from the command line, the gateway
//! accepting by the time /healthz answers, data stored, the 9014 reply, a 1062 command round trip.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use offsite_hj212::{Framer, Packet, MAX_DATA_LEN};
use offsite_tests::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const AIR_VECTOR: &str = "##0200QN=20261127100000000;ST=22;CN=2011;PW=123456;MN=SQ0000000000000000000001;Flag=5;CP=&&DataTime=20261127100000;a34004-Rtd=35.2,a34004-Flag=N;a34002-Rtd=58.0,a34002-Flag=N;a01001-Rtd=12.5,a01001-Flag=N&&7700\r\n";

async fn next_packet(s: &mut TcpStream, framer: &mut Framer) -> Result<Packet> {
    let mut buf = [0u8; 2048];
    loop {
        if let Some(f) = framer.next_frame() {
            return Ok(Packet::parse(&f?)?);
        }
        let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf))
            .await
            .context("no packet in time")??;
        anyhow::ensure!(n > 0, "the gateway closed the connection");
        framer.push(&buf[..n]);
    }
}

#[tokio::test]
async fn logger_registered_connects_stores_and_takes_commands() -> Result<()> {
    let site = Site::new().await?;
    let out = site
        .command(&[
            "device",
            "add",
            "工地扬尘 1号",
            "--hj212",
            "--mn",
            "SQ0000000000000000000001",
            "--pw",
            "123456",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(added["device_id"], "SQ0000000000000000000001");
    // Only the PW's digest is stored.
    let (mn, pw): (String, Vec<u8>) =
        sqlx::query_as("SELECT hj212_mn, hj212_pw_sha256 FROM devices WHERE id = $1")
            .bind("SQ0000000000000000000001")
            .fetch_one(site.db.store.pool())
            .await?;
    assert_eq!(
        (mn.as_str(), pw),
        (
            "SQ0000000000000000000001",
            offsite_store::hj212::pw_digest("123456").to_vec()
        )
    );
    // The MN is unique.
    assert!(!site
        .command(&[
            "device",
            "add",
            "again",
            "--hj212",
            "--mn",
            "SQ0000000000000000000001",
            "--pw",
            "x"
        ])
        .status()?
        .success());

    let _up = site.spawn(&["up"])?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    // Accepting by the time /healthz answers: no retry.
    let mut s = TcpStream::connect(("127.0.0.1", site.hj212_port))
        .await
        .context("the gateway accepts")?;
    let mut framer = Framer::new(MAX_DATA_LEN);
    s.write_all(AIR_VECTOR.as_bytes()).await?;
    let r = next_packet(&mut s, &mut framer).await?;
    assert_eq!(
        (r.cn.as_str(), r.qn.as_deref()),
        ("9014", Some("20261127100000000"))
    );
    let rows = stored_rows(&site, "SQ0000000000000000000001").await?;
    let at_ms = 1_795_744_800_000; // 2026-11-27T02:00:00Z
    assert_eq!(
        rows,
        vec![
            ("a01001-Rtd".into(), at_ms, 12.5),
            ("a34002-Rtd".into(), at_ms, 58.0),
            ("a34004-Rtd".into(), at_ms, 35.2)
        ]
    );
    assert!(metric_value(&site, "offsite_hj212_packets_total", "").await? >= 1.0);
    assert_eq!(
        metric_value(&site, "offsite_hj212_connections", "").await?,
        1.0
    );

    // A command from the command line reaches the logger over its open connection.
    let cmd = site
        .command(&[
            "device",
            "hj212",
            "SQ0000000000000000000001",
            "--interval",
            "60",
            "--wait",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let req = next_packet(&mut s, &mut framer).await?;
    assert_eq!(
        (req.cn.as_str(), req.cp.as_str()),
        ("1062", "RtdInterval=60")
    );
    s.write_all(&offsite_hj212::request_reply(&req, offsite_hj212::QnRtn::Ready).encode()?)
        .await?;
    s.write_all(&offsite_hj212::execution_reply(&req, offsite_hj212::ExeRtn::Ok).encode()?)
        .await?;
    let out = cmd.wait_with_output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        (answer["kind"].as_str(), answer["ok"].as_bool()),
        (Some("set_interval"), Some(true))
    );
    Ok(())
}

/// The edge agent's HJ 212 client mode (the demo's and the benchmark's logger) against the real
/// gateway: it logs in, its real-time data is stored under `<code>-Rtd`, and a 1062 from the
/// command line is applied and answered.
#[tokio::test]
async fn edge_agent_logger_mode_against_the_gateway() -> Result<()> {
    let site = Site::new().await?;
    let mn = "SQ0000000000000000000002";
    let out = site
        .command(&[
            "device",
            "add",
            "工地扬尘 2号",
            "--hj212",
            "--mn",
            mn,
            "--pw",
            "654321",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _up = site.spawn(&["up"])?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let config = site.dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[queue]\nfsync = \"never\"\n[[devices]]\nprotocol = \"hj212\"\n[devices.hj212]\n\
             server = \"127.0.0.1:{}\"\nmn = \"{mn}\"\npw = \"654321\"\nst = \"39\"\n\
             [[devices.sources]]\nname = \"dust\"\nkind = \"sim\"\ninterval_ms = 300\n",
            site.dir.path().join("agent"),
            site.hj212_port
        ),
    )?;
    let _agent = site.spawn(&["edge-agent", "--config", config.to_str().unwrap()])?;
    wait_for(
        "the logger's real-time values stored",
        Duration::from_secs(30),
        || async {
            stored_rows(&site, mn)
                .await
                .map(|r| r.iter().filter(|(k, _, _)| k.ends_with("-Rtd")).count() >= 3)
                .unwrap_or(false)
        },
    )
    .await?;
    let out = site.output(&["device", "hj212", mn, "--interval", "30", "--wait", "30"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(answer["ok"], true, "{answer}");
    Ok(())
}

/// One logger's connection to the gateway, sending real-time data the way a logger does.
struct RawLogger {
    mn: &'static str,
    pw: &'static str,
    stream: TcpStream,
    framer: Framer,
    sent: u32,
    started: chrono::DateTime<chrono::Utc>,
}

impl RawLogger {
    async fn connect(site: &Site, mn: &'static str, pw: &'static str) -> Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", site.hj212_port)).await?;
        let started = chrono::Utc::now() - chrono::Duration::seconds(60);
        Ok(Self {
            mn,
            pw,
            stream,
            framer: Framer::new(MAX_DATA_LEN),
            sent: 0,
            started,
        })
    }

    /// Sends one CN 2011 packet of `items` (`code-Rtd=v,code-Flag=F` each) measured now, and
    /// waits for its 9014: by then the gateway has committed the samples.
    async fn send_rtd(&mut self, items: &[(&str, f64, char)]) -> Result<()> {
        self.sent += 1;
        let now = chrono::Utc::now();
        // One DataTime per packet, a second apart, as a logger's successive uploads have.
        let measured = self.started + chrono::Duration::seconds(i64::from(self.sent));
        let mut cp = format!(
            "DataTime={}",
            offsite_hj212::utc_to_beijing(measured, false)
        );
        for (code, v, flag) in items {
            cp.push_str(&format!(";{code}-Rtd={v},{code}-Flag={flag}"));
        }
        // QNs of one logger differ: milliseconds plus the packet count.
        let qn = offsite_hj212::utc_to_beijing(
            now + chrono::Duration::milliseconds(i64::from(self.sent)),
            true,
        );
        let p = Packet {
            qn: Some(qn.clone()),
            st: Some("22".into()),
            cn: "2011".into(),
            pw: Some(self.pw.into()),
            mn: self.mn.into(),
            flag: Some(offsite_hj212::Flag(5)),
            pnum: None,
            pno: None,
            cp,
        };
        self.stream.write_all(&p.encode()?).await?;
        let r = next_packet(&mut self.stream, &mut self.framer).await?;
        anyhow::ensure!(
            (r.cn.as_str(), r.qn.as_deref()) == ("9014", Some(qn.as_str())),
            "{}: expected the 9014 of {qn}, got {} {:?}",
            self.mn,
            r.cn,
            r.qn
        );
        Ok(())
    }
}

/// The warnings of a device through the portal API.
async fn warnings_of(site: &Site, http: &reqwest::Client, device: &str) -> Result<Vec<Value>> {
    let list: Value = http
        .get(site.http(&format!("/api/v1/warnings?device={device}")))
        .send()
        .await?
        .json()
        .await?;
    Ok(list["items"].as_array().context("warning items")?.clone())
}

async fn add_logger(site: &Site, name: &str, mn: &str, pw: &str) -> Result<()> {
    let out = site.output(&["device", "add", name, "--hj212", "--mn", mn, "--pw", pw])?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Data flags through the real gateway and analytics: a value over a limit flagged N raises the
/// limit warning, flagged D a device-health warning and no limit warning, and an M flag on one of
/// a logger's instruments inhibits its data warnings. Loggers are of class `hj212` and covered by
/// the data-gap rule the platform ships with.
#[tokio::test]
async fn data_flags_decide_which_warnings_a_logger_raises() -> Result<()> {
    let site = Site::new().await?;
    let _up = site.spawn(&["up"])?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let (normal, fault, maint) = (
        "FLAGN00000000000000000001",
        "FLAGD00000000000000000001",
        "FLAGM00000000000000000001",
    );
    for (name, mn) in [("扬尘 N", normal), ("扬尘 D", fault), ("扬尘 M", maint)] {
        add_logger(&site, name, mn, "123456").await?;
    }
    let http = site.admin_client().await?;
    for mn in [normal, fault, maint] {
        let d = site
            .db
            .store
            .device(&offsite_wire::DeviceId::parse(mn)?)
            .await?
            .context("registered")?;
        assert_eq!(
            d.class.as_deref(),
            Some("hj212"),
            "loggers are registered with class hj212"
        );
    }
    let rules: Value = http
        .get(site.http("/api/v1/rules"))
        .send()
        .await?
        .json()
        .await?;
    assert!(
        rules["items"]
            .as_array()
            .context("rules")?
            .iter()
            .any(|r| r["scope"]["class"] == "hj212"
                && r["scope"]["metric"] == "*-Rtd"
                && r["condition"]["kind"] == "data_gap"),
        "the loggers' data-gap rule ships with the platform: {rules}"
    );
    let rule = serde_json::json!({"name": "PM2.5 超标", "scope": {"class": "hj212", "metric": "a34004-Rtd"}, "level": 2,
                      "condition": {"kind": "threshold", "above": 75, "for_s": 0, "hysteresis": 0}});
    let resp = http
        .post(site.http("/api/v1/rules"))
        .json(&rule)
        .send()
        .await?;
    assert_eq!(resp.status(), 201, "{}", resp.text().await?);
    let rule_event = format!("rule:{}", resp.json::<Value>().await?["id"]);
    // The analytics tier re-reads rules every 5 s.
    tokio::time::sleep(Duration::from_secs(6)).await;

    // The faulty and the maintained logger first; once the normal one's warning is there, the
    // analytics tier has seen their data too (it handles commits in order).
    let mut d = RawLogger::connect(&site, fault, "123456").await?;
    d.send_rtd(&[("a34004", 40.0, 'N')]).await?;
    d.send_rtd(&[("a34004", 300.0, 'D')]).await?;
    let mut m = RawLogger::connect(&site, maint, "123456").await?;
    m.send_rtd(&[("a21026", 1.0, 'M'), ("a34004", 40.0, 'N')])
        .await?;
    m.send_rtd(&[("a21026", 1.0, 'M'), ("a34004", 300.0, 'N')])
        .await?;
    let mut n = RawLogger::connect(&site, normal, "123456").await?;
    n.send_rtd(&[("a34004", 40.0, 'N')]).await?;
    n.send_rtd(&[("a34004", 300.0, 'N')]).await?;
    wait_for(
        "the limit warning of the N-flagged value",
        Duration::from_secs(30),
        || async {
            warnings_of(&site, &http, normal).await.is_ok_and(|ws| {
                ws.iter()
                    .any(|w| w["event"] == rule_event.as_str() && w["metric_key"] == "a34004-Rtd")
            })
        },
    )
    .await?;
    wait_for(
        "the device-health warning of the D-flagged value",
        Duration::from_secs(30),
        || async {
            warnings_of(&site, &http, fault)
                .await
                .is_ok_and(|ws| ws.iter().any(|w| w["event"] == "flag-fault"))
        },
    )
    .await?;
    let ws = warnings_of(&site, &http, fault).await?;
    assert!(
        ws.iter().all(|w| w["source"] == "health"),
        "a D-flagged value raises no limit warning: {ws:?}"
    );
    let ws = warnings_of(&site, &http, maint).await?;
    assert!(
        ws.is_empty(),
        "maintenance inhibits the logger's data warnings: {ws:?}"
    );
    Ok(())
}

/// A short data-gap rule for class `hj212` fires when a logger falls silent.
#[tokio::test]
async fn a_silent_logger_raises_the_data_gap_warning() -> Result<()> {
    let site = Site::new().await?;
    let _up = site.spawn(&["up"])?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let mn = "GAP0000000000000000000001";
    add_logger(&site, "水质排口", mn, "654321").await?;
    let http = site.admin_client().await?;
    let rule = serde_json::json!({"name": "数采仪 3 秒无数据", "scope": {"class": "hj212", "metric": "*-Rtd"}, "level": 3,
                      "condition": {"kind": "data_gap", "max_gap_s": 3}});
    let resp = http
        .post(site.http("/api/v1/rules"))
        .json(&rule)
        .send()
        .await?;
    assert_eq!(resp.status(), 201, "{}", resp.text().await?);
    let rule_event = format!("rule:{}", resp.json::<Value>().await?["id"]);
    tokio::time::sleep(Duration::from_secs(6)).await;

    let mut l = RawLogger::connect(&site, mn, "654321").await?;
    l.send_rtd(&[("w01018", 40.0, 'N'), ("w21003", 2.0, 'N')])
        .await?;
    // Still connected, but no data: the gap is about data, not the connection.
    wait_for("the data-gap warning", Duration::from_secs(40), || async {
        warnings_of(&site, &http, mn).await.is_ok_and(|ws| {
            ws.iter().any(|w| {
                w["event"] == rule_event.as_str()
                    && w["detail"].as_str().is_some_and(|d| d.contains("no data"))
            })
        })
    })
    .await?;
    drop(l);
    Ok(())
}
