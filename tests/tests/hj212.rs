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
