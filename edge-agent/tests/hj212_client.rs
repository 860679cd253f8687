//! HJ 212 client mode against a small real TCP server written here with the hj212 crate: what the
//! emulated data logger sends, how it resends, that nothing is lost while the server is away or the
//! agent restarts, and how it answers 1062 and 1012.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use offsite_edge_agent::{Agent, AgentConfig};
use offsite_hj212::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const PW: &str = "123456";
const ST: &str = "39";

/// One logger connection as the platform sees it.
struct Peer {
    stream: TcpStream,
    framer: Framer,
}

enum Next {
    Packet(Packet),
    Closed,
}

impl Peer {
    async fn accept(listener: &TcpListener) -> Result<Peer> {
        let (stream, _) = timeout(Duration::from_secs(10), listener.accept())
            .await
            .context("no connection")??;
        Ok(Peer {
            stream,
            framer: Framer::new(MAX_DATA_LEN),
        })
    }

    /// The next packet (its length and CRC verified by the framer), or the logger closing.
    async fn next(&mut self, within: Duration) -> Result<Next> {
        let mut buf = [0u8; 2048];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(frame) = self.framer.next_frame() {
                let data = frame.context("the logger sent a bad frame")?;
                return Ok(Next::Packet(Packet::parse(&data)?));
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .context("no packet in time")??;
            if n == 0 {
                return Ok(Next::Closed);
            }
            self.framer.push(&buf[..n]);
        }
    }

    async fn packet(&mut self, within: Duration) -> Result<Packet> {
        match self.next(within).await? {
            Next::Packet(p) => Ok(p),
            Next::Closed => bail!("the logger closed the connection"),
        }
    }

    async fn send(&mut self, p: &Packet) -> Result<()> {
        self.stream.write_all(&p.encode()?).await?;
        Ok(())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An agent configuration with one HJ 212 device; `interval_ms` 0 means no sources.
fn config(dir: &Path, port: u16, mn: &str, interval_ms: u64, reply_timeout_ms: u64) -> AgentConfig {
    let mut text = format!(
        "data_dir = {dir:?}\n[queue]\nfsync = \"never\"\n[[devices]]\nprotocol = \"hj212\"\n[devices.hj212]\n\
         server = \"127.0.0.1:{port}\"\nmn = \"{mn}\"\npw = \"{PW}\"\nst = \"{ST}\"\nreply_timeout_ms = {reply_timeout_ms}\n\
         reconnect_delay_ms = 100\nmax_reconnect_delay_ms = 400\n"
    );
    if interval_ms > 0 {
        text.push_str(&format!(
            "[[devices.sources]]\nname = \"dust\"\nkind = \"sim\"\ninterval_ms = {interval_ms}\n"
        ));
    }
    let cfg: AgentConfig = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    cfg
}

/// Samples the agent read from its sources for this device, from its Prometheus counter.
fn samples_read(mn: &str) -> f64 {
    let device = format!("hj212-{mn}");
    prometheus::gather()
        .iter()
        .filter(|f| f.name() == "offsite_edge_samples_total")
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "device" && l.value() == device)
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[tokio::test]
async fn real_time_data_arrives_with_codes_beijing_time_and_crc() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let agent = Agent::start(
        &config(dir.path(), port, "SQTEST0001", 200, 5000),
        dir.path(),
    )
    .await?;
    let mut peer = Peer::accept(&listener).await?;
    let mut last_qn = String::new();
    for _ in 0..3 {
        let p = peer.packet(Duration::from_secs(5)).await?;
        let now = Utc::now();
        assert_eq!((p.cn.as_str(), p.mn.as_str()), ("2011", "SQTEST0001"));
        assert_eq!(
            (p.st.as_deref(), p.pw.as_deref(), p.flag),
            (Some(ST), Some(PW), Some(Flag(5)))
        );
        let qn = p.qn.clone().context("QN")?;
        // QN is Beijing time with milliseconds, and new for every upload.
        let qn_time = beijing_to_utc(&qn).context("QN is a time")?;
        assert!(
            (now - qn_time).num_seconds().abs() <= 5,
            "QN {qn} is not Beijing time near {now}"
        );
        assert!(qn > last_qn);
        last_qn = qn;
        let cp = p.parse_cp()?;
        let data_time = cp.data_time.context("DataTime")?;
        assert!(
            (now - data_time).num_seconds().abs() <= 5,
            "DataTime {data_time} is not the sample time near {now}"
        );
        let codes: BTreeSet<&str> = cp.values.iter().map(|v| v.code.as_str()).collect();
        assert_eq!(codes, BTreeSet::from(["a34002", "a34004", "LA", "a01001"]));
        for v in &cp.values {
            assert_eq!(
                (v.suffix.as_str(), v.flag),
                ("Rtd", Some(DataFlag::Normal)),
                "{v:?}"
            );
            assert!(v.value.is_finite());
        }
        peer.send(&data_reply(&p)).await?;
    }
    agent.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_upload_without_9014_is_resent_then_sent_first_on_a_new_connection() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let agent = Agent::start(
        &config(dir.path(), port, "SQTEST0002", 100, 300),
        dir.path(),
    )
    .await?;
    let mut peer = Peer::accept(&listener).await?;
    let first = peer.packet(Duration::from_secs(5)).await?;
    // Three retries of the same upload (same QN), nothing newer while it is unanswered.
    for retry in 1..=3 {
        let again = peer.packet(Duration::from_secs(3)).await?;
        assert_eq!(again, first, "retry {retry}");
    }
    // Then the logger gives up on this connection...
    match peer.next(Duration::from_secs(3)).await? {
        Next::Closed => {}
        Next::Packet(p) => bail!("expected the logger to close after 3 retries, got {p:?}"),
    }
    // ...and starts the next one with the same upload.
    let mut peer = Peer::accept(&listener).await?;
    let p = peer.packet(Duration::from_secs(5)).await?;
    assert_eq!(p, first);
    peer.send(&data_reply(&p)).await?;
    let next = peer.packet(Duration::from_secs(5)).await?;
    assert_ne!(next.qn, first.qn);
    agent.stop().await;
    Ok(())
}

#[tokio::test]
async fn nothing_is_lost_while_the_server_is_down_or_the_agent_restarts() -> Result<()> {
    let mn = "SQTEST0003";
    let dir = tempfile::tempdir()?;
    let port = free_port();
    // Server down: the first agent reads and queues, then stops with everything unsent.
    let agent = Agent::start(&config(dir.path(), port, mn, 100, 2000), dir.path()).await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    agent.stop().await;
    let before_restart = samples_read(mn);
    assert!(
        before_restart >= 20.0,
        "the sources read only {before_restart} samples"
    );
    // A second agent on the same data directory goes on reading while the server is still down.
    let agent = Agent::start(&config(dir.path(), port, mn, 100, 2000), dir.path()).await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // The server comes back; the agent is stopped while it is still sending.
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let mut uploads: BTreeMap<String, usize> = BTreeMap::new();
    let mut peer = Peer::accept(&listener).await?;
    for _ in 0..5 {
        let p = peer.packet(Duration::from_secs(5)).await?;
        uploads.insert(p.qn.clone().context("QN")?, p.parse_cp()?.values.len());
        peer.send(&data_reply(&p)).await?;
    }
    agent.stop().await;
    drop(peer);
    // A third agent, without sources, sends what is left.
    let read = samples_read(mn);
    let agent = Agent::start(&config(dir.path(), port, mn, 0, 2000), dir.path()).await?;
    let mut peer = Peer::accept(&listener).await?;
    while (uploads.values().sum::<usize>() as f64) < read {
        let p = peer
            .packet(Duration::from_secs(10))
            .await
            .with_context(|| {
                format!(
                    "{} of {read} samples arrived",
                    uploads.values().sum::<usize>()
                )
            })?;
        assert_eq!(p.cn, "2011");
        // A resend of an upload whose 9014 the stopped agent never read counts once.
        uploads.insert(p.qn.clone().context("QN")?, p.parse_cp()?.values.len());
        peer.send(&data_reply(&p)).await?;
    }
    assert_eq!(uploads.values().sum::<usize>() as f64, read);
    // And nothing more: the queue is empty.
    assert!(peer.packet(Duration::from_millis(800)).await.is_err());
    agent.stop().await;
    Ok(())
}

#[tokio::test]
async fn requests_1062_and_1012_are_answered_and_1062_changes_the_interval() -> Result<()> {
    let mn = "SQTEST0004";
    let dir = tempfile::tempdir()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let agent = Agent::start(&config(dir.path(), port, mn, 200, 5000), dir.path()).await?;
    let mut peer = Peer::accept(&listener).await?;

    /// Sends `req` and returns its 9011 and 9012 (if any), answering uploads on the way.
    async fn ask(
        peer: &mut Peer,
        req: &Packet,
        want_9012: bool,
    ) -> Result<(Packet, Option<Packet>)> {
        peer.send(req).await?;
        let (mut qn_rtn, mut exe_rtn) = (None, None);
        while qn_rtn.is_none() || (want_9012 && exe_rtn.is_none()) {
            let p = peer.packet(Duration::from_secs(5)).await?;
            match p.cn.as_str() {
                "2011" => peer.send(&data_reply(&p)).await?,
                "9011" => qn_rtn = Some(p),
                "9012" => exe_rtn = Some(p),
                other => bail!("unexpected CN {other}"),
            }
        }
        Ok((qn_rtn.unwrap(), exe_rtn))
    }

    let first = peer.packet(Duration::from_secs(5)).await?;
    peer.send(&data_reply(&first)).await?;
    let now = Utc::now();

    let sync = set_time_request(mn, PW, ST, now, now);
    let (r, e) = ask(&mut peer, &sync, true).await?;
    assert_eq!(
        (r.qn.as_ref(), r.cp.as_str(), r.st.as_deref()),
        (sync.qn.as_ref(), "QnRtn=1", Some("91"))
    );
    assert_eq!(e.unwrap().cp, "ExeRtn=1");

    let mut bad = set_interval_request(mn, PW, ST, now + chrono::Duration::milliseconds(1), 60);
    bad.cp = "RtdInterval=5".into();
    let (r, _) = ask(&mut peer, &bad, false).await?;
    assert_eq!((r.qn.as_ref(), r.cp.as_str()), (bad.qn.as_ref(), "QnRtn=2"));

    let set = set_interval_request(mn, PW, ST, now + chrono::Duration::milliseconds(2), 30);
    let (r, e) = ask(&mut peer, &set, true).await?;
    assert_eq!((r.qn.as_ref(), r.cp.as_str()), (set.qn.as_ref(), "QnRtn=1"));
    let e = e.unwrap();
    assert_eq!(
        (e.qn.as_ref(), e.cp.as_str()),
        (set.qn.as_ref(), "ExeRtn=1")
    );

    // At 200 ms about 12 uploads would come in 2.5 s; at 30 s at most the one polled right at the
    // change (and one read before it, still queued).
    let mut uploads = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(Ok(p)) = tokio::time::timeout_at(until, peer.packet(Duration::from_secs(10))).await
    {
        assert_eq!(p.cn, "2011");
        uploads += 1;
        peer.send(&data_reply(&p)).await?;
    }
    assert!(
        uploads <= 2,
        "{uploads} uploads after the interval became 30 s"
    );
    // Kept across restarts, like a command's settings.
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(
        dir.path().join(format!("hj212-{mn}")).join("state.json"),
    )?)?;
    assert_eq!(state["sources"]["dust"]["interval_ms"], 30_000);
    agent.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_csv_recording_is_sent_with_its_own_times_in_beijing_time() -> Result<()> {
    let mn = "SQTEST0005";
    let dir = tempfile::tempdir()?;
    // Recorded in UTC; 23:59:30 UTC is already the next day in Beijing.
    std::fs::write(
        dir.path().join("rec.csv"),
        "timestamp,pm10,so2\n2026-11-26T23:59:30Z,61.5,7\n2026-11-26T23:59:31Z,62.25,8\n",
    )?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let mut cfg = config(dir.path(), port, mn, 0, 5000);
    let source = "name = \"rec\"\nkind = \"csv\"\npath = \"rec.csv\"\nspeed = 0.0\ntimestamps = \"original\"\ninterval_ms = 100\n";
    cfg.devices[0].sources.push(toml::from_str(source)?);
    let agent = Agent::start(&cfg, dir.path()).await?;
    let mut peer = Peer::accept(&listener).await?;
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = peer.packet(Duration::from_secs(5)).await?;
        peer.send(&data_reply(&p)).await?;
        got.push(p.cp);
    }
    assert_eq!(
        got,
        [
            "DataTime=20261127075930;a34002-Rtd=61.5,a34002-Flag=N;a21026-Rtd=7,a21026-Flag=N",
            "DataTime=20261127075931;a34002-Rtd=62.25,a34002-Flag=N;a21026-Rtd=8,a21026-Flag=N",
        ]
    );
    agent.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_refused_upload_is_kept_and_sent_again_on_a_new_connection() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let agent = Agent::start(
        &config(dir.path(), port, "SQTEST0006", 100, 5000),
        dir.path(),
    )
    .await?;
    let mut peer = Peer::accept(&listener).await?;
    let first = peer.packet(Duration::from_secs(5)).await?;
    // What the gateway says to a wrong PW.
    peer.send(&request_reply(&first, QnRtn::BadPassword))
        .await?;
    match peer.next(Duration::from_secs(3)).await? {
        Next::Closed => {}
        Next::Packet(p) => bail!("expected the logger to hang up after a refusal, got {p:?}"),
    }
    let mut peer = Peer::accept(&listener).await?;
    assert_eq!(peer.packet(Duration::from_secs(5)).await?, first);
    agent.stop().await;
    Ok(())
}
