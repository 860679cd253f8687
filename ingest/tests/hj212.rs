//! The HJ 212 gateway over real TCP sockets, writing through ingest's real processor and writers
//! into a real PostgreSQL database (the store's test cluster).

use std::time::Duration;

use chrono::{TimeZone, Utc};
use offsite_hj212::{crc16, Flag, Framer, Packet, MAX_DATA_LEN};
use offsite_ingest::hj212::{metrics as gw_metrics, Hj212Config, Hj212Gateway};
use offsite_ingest::{AckSink, CameraSink, Incoming, Ingest, IngestConfig};
use offsite_store::samples::quality;
use offsite_store::testing::TestDb;
use offsite_store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const AIR_VECTOR: &str = "##0200QN=20261127100000000;ST=22;CN=2011;PW=123456;MN=SQ0000000000000000000001;Flag=5;CP=&&DataTime=20261127100000;a34004-Rtd=35.2,a34004-Flag=N;a34002-Rtd=58.0,a34002-Flag=N;a01001-Rtd=12.5,a01001-Flag=N&&7700\r\n";
const LENIENT_VECTOR: &str = "##0109ST=32;CN=2011;PW=123456;MN=NJGDKYYC202101q0001w0001;CP=&&DataTime=20210305003817000;ele01-Rtd=1;ele02-Rtd=0&&8C41\r\n";
const STANDARD_VECTOR: &str = "##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C80\r\n";

struct Platform {
    db: TestDb,
    gateway: Option<Hj212Gateway>,
    ingest: Option<Ingest>,
    _source: flume::Sender<Incoming>,
}

impl Platform {
    async fn start(cfg: Hj212Config) -> Platform {
        let db = TestDb::new().await.unwrap();
        // Long retention: the lenient vector is from 2021.
        let icfg = IngestConfig {
            batch_max_delay_ms: 20,
            retention_days: 36500,
            ..IngestConfig::default()
        };
        let (source, rx) = flume::bounded(16);
        let (acks, _) = flume::unbounded();
        let gate = offsite_ingest::DeviceGate::new(&icfg);
        let ingest = Ingest::start(
            db.store.clone(),
            icfg,
            rx,
            AckSink::Link(acks),
            None,
            CameraSink {
                files: None,
                live: None,
            },
            gate,
        )
        .await
        .unwrap();
        let cfg = Hj212Config {
            listen: "127.0.0.1:0".into(),
            ..cfg
        };
        let gateway = Hj212Gateway::start(db.store.clone(), cfg, ingest.gateway_sink())
            .await
            .unwrap();
        Platform {
            db,
            gateway: Some(gateway),
            ingest: Some(ingest),
            _source: source,
        }
    }

    fn store(&self) -> &Store {
        &self.db.store
    }

    async fn connect(&self) -> Logger {
        let s = TcpStream::connect(self.gateway.as_ref().unwrap().local_addr())
            .await
            .unwrap();
        Logger {
            s,
            framer: Framer::new(MAX_DATA_LEN),
        }
    }

    async fn register(&self, mn: &str, pw: &str) -> i32 {
        self.store()
            .insert_hj212_logger("测试数采仪", None, mn, pw)
            .await
            .unwrap();
        self.store().hj212_logger(mn).await.unwrap().unwrap().key
    }

    /// The newest value of each metric of a device, waiting until `n` metrics are there.
    async fn latest(&self, key: i32, n: usize) -> Vec<offsite_store::LatestValue> {
        for _ in 0..100 {
            let l = self.store().device_latest(key).await.unwrap();
            if l.len() >= n {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} metrics never stored for device {key}");
    }

    async fn stop(mut self) {
        self.gateway.take().unwrap().shutdown().await;
        self.ingest.take().unwrap().shutdown().await;
    }
}

struct Logger {
    s: TcpStream,
    framer: Framer,
}

impl Logger {
    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// The next frame the platform sends, as its whole text, or None if the connection closed.
    async fn recv(&mut self) -> Option<String> {
        let mut buf = [0u8; 2048];
        loop {
            if let Some(f) = self.framer.next_frame() {
                let data = f.expect("the platform sends well-formed frames");
                return Some(frame_text(&data));
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut buf))
                .await
                .expect("an answer in time")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.framer.push(&buf[..n]);
        }
    }

    async fn recv_packet(&mut self) -> Packet {
        let text = self.recv().await.expect("a frame");
        Packet::parse(data_of(&text).as_bytes()).unwrap()
    }

    /// Waits for the platform to close the connection (reading whatever it still sends).
    async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 2048];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// A frame around a data segment, as a logger sends it.
fn frame(data: &str) -> Vec<u8> {
    format!(
        "##{:04}{data}{:04X}\r\n",
        data.len(),
        crc16(data.as_bytes())
    )
    .into_bytes()
}

fn frame_text(data: &[u8]) -> String {
    String::from_utf8(frame(std::str::from_utf8(data).unwrap())).unwrap()
}

fn data_of(frame: &str) -> &str {
    &frame[6..frame.len() - 6]
}

fn rejected(reason: &str) -> u64 {
    gw_metrics::REJECTED.with_label_values(&[reason]).get()
}

fn fast_cfg() -> Hj212Config {
    Hj212Config {
        idle_timeout_s: 30,
        partial_timeout_s: 1,
        ..Hj212Config::default()
    }
}

fn air(qn: &str, data_time: &str, cp_values: &str, flag: u8) -> String {
    format!("QN={qn};ST=22;CN=2011;PW=123456;MN=SQ0000000000000000000001;Flag={flag};CP=&&DataTime={data_time};{cp_values}&&")
}

#[tokio::test]
async fn air_vector_stored_in_utc_and_answered_byte_exact() {
    let p = Platform::start(fast_cfg()).await;
    let key = p.register("SQ0000000000000000000001", "123456").await;
    let mut l = p.connect().await;
    l.send(AIR_VECTOR.as_bytes()).await;
    let reply = l.recv().await.unwrap();
    let expected_data =
        "QN=20261127100000000;ST=91;CN=9014;PW=123456;MN=SQ0000000000000000000001;Flag=4;CP=&&&&";
    assert_eq!(
        reply,
        format!(
            "##0087{expected_data}{:04X}\r\n",
            crc16(expected_data.as_bytes())
        )
    );
    // The reply comes after the commit: the rows are there now.
    let latest = p.store().device_latest(key).await.unwrap();
    let at = Utc.with_ymd_and_hms(2026, 11, 27, 2, 0, 0).unwrap();
    let got: Vec<_> = latest
        .iter()
        .map(|v| (v.metric.as_str(), v.ts, v.value, v.quality))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a01001-Rtd", at, 12.5, 0),
            ("a34002-Rtd", at, 58.0, 0),
            ("a34004-Rtd", at, 35.2, 0)
        ]
    );
    let d = p.store().device_by_key(key).await.unwrap().unwrap();
    assert!(
        d.online && d.last_seen.is_some(),
        "the logger is online with a last_seen: {d:?}"
    );
    p.stop().await;
}

#[tokio::test]
async fn lenient_vector_accepted_without_reply() {
    let p = Platform::start(fast_cfg()).await;
    let key = p.register("NJGDKYYC202101q0001w0001", "123456").await;
    let mut l = p.connect().await;
    l.send(LENIENT_VECTOR.as_bytes()).await;
    let latest = p.latest(key, 2).await;
    let at = Utc.with_ymd_and_hms(2021, 3, 4, 16, 38, 17).unwrap();
    let got: Vec<_> = latest
        .iter()
        .map(|v| (v.metric.as_str(), v.ts, v.value))
        .collect();
    assert_eq!(got, vec![("ele01-Rtd", at, 1.0), ("ele02-Rtd", at, 0.0)]);
    // No Flag, so no reply: the next thing on the wire answers the next packet.
    l.send(&frame("QN=20210305003818000;ST=32;CN=2011;PW=123456;MN=NJGDKYYC202101q0001w0001;Flag=5;CP=&&DataTime=20210305003818000;ele01-Rtd=2&&")).await;
    let r = l.recv_packet().await;
    assert_eq!(
        (r.cn.as_str(), r.qn.as_deref()),
        ("9014", Some("20210305003818000"))
    );
    p.stop().await;
}

#[tokio::test]
async fn standard_vector_is_a_platform_request_refused_as_bad_cn() {
    let p = Platform::start(fast_cfg()).await;
    p.register("010000A8900016F000169DC0", "100000").await;
    let mut l = p.connect().await;
    let before = rejected("unsupported_cn");
    l.send(STANDARD_VECTOR.as_bytes()).await;
    let r = l.recv().await.unwrap();
    let expected = "QN=20160801085857223;ST=91;CN=9011;PW=100000;MN=010000A8900016F000169DC0;Flag=4;CP=&&QnRtn=8&&";
    assert_eq!(data_of(&r), expected);
    assert!(rejected("unsupported_cn") > before);
    p.stop().await;
}

#[tokio::test]
async fn unknown_mn_and_wrong_pw_refused_then_closed() {
    let p = Platform::start(fast_cfg()).await;
    p.register("SQ0000000000000000000001", "123456").await;
    let unknown = gw_metrics::AUTH_FAILURES
        .with_label_values(&["unknown_mn"])
        .get();
    let bad_pw = gw_metrics::AUTH_FAILURES
        .with_label_values(&["bad_password"])
        .get();
    let mut l = p.connect().await;
    l.send(&frame("QN=20261127100000001;ST=22;CN=2011;PW=123456;MN=NOSUCHLOGGER;Flag=5;CP=&&DataTime=20261127100000;a34004-Rtd=1&&")).await;
    let r = l.recv_packet().await;
    assert_eq!(
        (r.cn.as_str(), r.cp.as_str(), r.qn.as_deref()),
        ("9011", "QnRtn=4", Some("20261127100000001"))
    );
    // A refused login gets its answer even without Flag bit A.
    l.send(&frame(
        &air("20261127100000002", "20261127100000", "a34004-Rtd=1", 4)
            .replace("PW=123456", "PW=654321"),
    ))
    .await;
    let r = l.recv_packet().await;
    assert_eq!((r.cn.as_str(), r.cp.as_str()), ("9011", "QnRtn=3"));
    l.send(&frame(
        &air("20261127100000003", "20261127100000", "a34004-Rtd=1", 5)
            .replace("PW=123456", "PW=000000"),
    ))
    .await;
    let r = l.recv_packet().await;
    assert_eq!((r.cn.as_str(), r.cp.as_str()), ("9011", "QnRtn=3"));
    assert!(l.closed().await, "closed after the third failure");
    assert!(
        gw_metrics::AUTH_FAILURES
            .with_label_values(&["unknown_mn"])
            .get()
            > unknown
    );
    assert!(
        gw_metrics::AUTH_FAILURES
            .with_label_values(&["bad_password"])
            .get()
            >= bad_pw + 2
    );
    // Nothing of the refused packets was stored.
    let key = p
        .store()
        .hj212_logger("SQ0000000000000000000001")
        .await
        .unwrap()
        .unwrap()
        .key;
    assert!(p.store().device_latest(key).await.unwrap().is_empty());
    p.stop().await;
}

#[tokio::test]
async fn revoked_logger_is_refused() {
    let p = Platform::start(fast_cfg()).await;
    p.register("SQ0000000000000000000001", "123456").await;
    p.store()
        .revoke_device(&offsite_wire::DeviceId::parse("SQ0000000000000000000001").unwrap())
        .await
        .unwrap();
    let mut l = p.connect().await;
    l.send(AIR_VECTOR.as_bytes()).await;
    let r = l.recv_packet().await;
    assert_eq!((r.cn.as_str(), r.cp.as_str()), ("9011", "QnRtn=2"));
    p.stop().await;
}

#[tokio::test]
async fn malformed_input_is_counted_and_the_connection_still_answers() {
    let p = Platform::start(fast_cfg()).await;
    p.register("SQ0000000000000000000001", "123456").await;
    let mut l = p.connect().await;
    l.send(AIR_VECTOR.as_bytes()).await;
    assert_eq!(l.recv_packet().await.cn, "9014");

    let good = |n: usize| {
        frame(&air(
            &format!("202611271001000{n:02}"),
            "20261127100100",
            "a34004-Rtd=30",
            5,
        ))
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad_crc", AIR_VECTOR.replace("7700\r\n", "7701\r\n").into_bytes()),
        ("bad_length", b"##01x0QN=1;CN=2011&&&&0000\r\n".to_vec()),
        ("garbage", b"\x00\xffnot a packet at all ".to_vec()),
        ("oversized", format!("##9999{}", "A".repeat(64)).into_bytes()),
        ("no_terminator", {
            let mut f = good(90);
            let n = f.len();
            f[n - 2] = b'X';
            f
        }),
        (
            "missing_data_time",
            frame("QN=20261127100100091;ST=22;CN=2011;PW=123456;MN=SQ0000000000000000000001;Flag=4;CP=&&a34004-Rtd=1&&"),
        ),
    ];
    for (i, (reason, bad)) in cases.into_iter().enumerate() {
        let before = rejected(reason);
        l.send(&bad).await;
        l.send(&good(i)).await;
        // A packet that still parses despite its CRC gets 9011 QnRtn=9 first.
        let mut r = l.recv_packet().await;
        if reason == "bad_crc" {
            assert_eq!((r.cn.as_str(), r.cp.as_str()), ("9011", "QnRtn=9"));
            r = l.recv_packet().await;
        }
        assert_eq!(
            (r.cn.as_str(), r.qn.unwrap()),
            ("9014", format!("202611271001000{i:02}")),
            "after {reason}"
        );
        assert!(rejected(reason) > before, "{reason} counted");
    }
    // The logger is known, so what it sent is kept as dead letters with their reasons.
    let kept = p.store().dead_letter_counts().await.unwrap();
    for reason in ["bad_crc", "missing_data_time", "no_terminator"] {
        assert!(
            kept.iter().any(|(r, n)| r == reason && *n >= 1),
            "{reason} kept: {kept:?}"
        );
    }
    p.stop().await;
}

#[tokio::test]
async fn many_concurrent_loggers_each_answered() {
    const LOGGERS: usize = 300;
    let p = Platform::start(fast_cfg()).await;
    for i in 0..LOGGERS {
        p.register(&format!("CC{i:022}"), "pw").await;
    }
    let addr = p.gateway.as_ref().unwrap().local_addr();
    // All connected at once, then all send: the gateway must hold them side by side.
    let mut loggers = Vec::new();
    for _ in 0..LOGGERS {
        loggers.push(Logger {
            s: TcpStream::connect(addr).await.unwrap(),
            framer: Framer::new(MAX_DATA_LEN),
        });
    }
    let tasks: Vec<_> = loggers
        .into_iter()
        .enumerate()
        .map(|(i, mut l)| {
            tokio::spawn(async move {
                let data = format!(
                    "QN=20261127100000000;ST=39;CN=2011;PW=pw;MN=CC{i:022};Flag=5;CP=&&DataTime=20261127100000;a34001-Rtd={i}&&"
                );
                l.send(&frame(&data)).await;
                l.recv_packet().await.cn
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "9014");
    }
    let stored: i64 = stored_values(p.store()).await;
    assert_eq!(stored, LOGGERS as i64);
    p.stop().await;
}

/// Values stored across the concurrent test's loggers.
async fn stored_values(store: &Store) -> i64 {
    let mut n = 0;
    for i in 0..300 {
        let key = store
            .hj212_logger(&format!("CC{i:022}"))
            .await
            .unwrap()
            .unwrap()
            .key;
        n += store.device_latest(key).await.unwrap().len() as i64;
    }
    n
}

#[tokio::test]
async fn slow_loris_and_truncated_packets_close_cleanly() {
    let p = Platform::start(fast_cfg()).await;
    p.register("SQ0000000000000000000001", "123456").await;
    let before = rejected("partial_timeout");
    let mut l = p.connect().await;
    // Half a packet, then a byte now and then: the packet must be whole within partial_timeout_s.
    l.send(&AIR_VECTOR.as_bytes()[..50]).await;
    for b in &AIR_VECTOR.as_bytes()[50..54] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if l.s.write_all(&[*b]).await.is_err() {
            break;
        }
    }
    assert!(l.closed().await);
    assert!(rejected("partial_timeout") > before);

    let before = rejected("truncated");
    let mut l = p.connect().await;
    l.send(&AIR_VECTOR.as_bytes()[..100]).await;
    l.s.shutdown().await.unwrap();
    assert!(l.closed().await);
    for _ in 0..100 {
        if rejected("truncated") > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rejected("truncated") > before);
    p.stop().await;
}

#[tokio::test]
async fn idle_and_anonymous_connections_are_closed() {
    let p = Platform::start(Hj212Config {
        idle_timeout_s: 1,
        partial_timeout_s: 5,
        ..fast_cfg()
    })
    .await;
    p.register("SQ0000000000000000000001", "123456").await;
    let before = rejected("idle");
    let mut l = p.connect().await;
    l.send(AIR_VECTOR.as_bytes()).await;
    assert_eq!(l.recv_packet().await.cn, "9014");
    assert!(l.closed().await, "a silent logged-in connection is closed");
    assert!(rejected("idle") > before);
    p.stop().await;

    // A stranger that never logs in is cut off after partial_timeout_s, long before idle_timeout_s.
    let p = Platform::start(Hj212Config {
        idle_timeout_s: 3600,
        partial_timeout_s: 1,
        ..fast_cfg()
    })
    .await;
    let before = rejected("not_logged_in");
    let mut l = p.connect().await;
    assert!(l.closed().await);
    assert!(rejected("not_logged_in") > before);
    p.stop().await;
}

#[tokio::test]
async fn split_packets_reassembled_and_flags_stored_as_quality() {
    let p = Platform::start(fast_cfg()).await;
    let key = p.register("SQ0000000000000000000001", "123456").await;
    let mut l = p.connect().await;
    let part = |pno: u32, cp: &str| Packet {
        qn: Some("20261127110000000".into()),
        st: Some("22".into()),
        cn: "2051".into(),
        pw: Some("123456".into()),
        mn: "SQ0000000000000000000001".into(),
        flag: Some(Flag(7)),
        pnum: Some(2),
        pno: Some(pno),
        cp: cp.into(),
    };
    l.send(
        &part(1, "DataTime=20261127110000;a34004-Avg=40.0,a34004-Flag=M")
            .encode()
            .unwrap(),
    )
    .await;
    l.send(
        &part(
            2,
            "DataTime=20261127110000;a34002-Avg=80.0,a34002-Flag=D;SB1-RS=1",
        )
        .encode()
        .unwrap(),
    )
    .await;
    let r = l.recv_packet().await;
    assert_eq!(
        (r.cn.as_str(), r.qn.as_deref()),
        ("9014", Some("20261127110000000"))
    );
    let latest = p.store().device_latest(key).await.unwrap();
    let at = Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap();
    let got: Vec<_> = latest
        .iter()
        .map(|v| (v.metric.as_str(), v.ts, v.value, v.quality))
        .collect();
    assert_eq!(
        got,
        vec![
            ("SB1-RS", at, 1.0, 0),
            ("a34002-Avg", at, 80.0, quality::FLAG_FAULT),
            ("a34004-Avg", at, 40.0, quality::FLAG_MAINTENANCE),
        ]
    );
    p.stop().await;
}

async fn answered(store: &Store, id: &str) -> offsite_store::CommandRecord {
    for _ in 0..200 {
        let c = store.command(id).await.unwrap().unwrap();
        if c.acked_at.is_some() {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("command {id} never answered");
}

#[tokio::test]
async fn clock_sync_and_interval_commands_round_trip() {
    use offsite_wire::{Command, CommandAction};
    let p = Platform::start(fast_cfg()).await;
    let key = p.register("SQ0000000000000000000001", "123456").await;
    let mut l = p.connect().await;
    l.send(AIR_VECTOR.as_bytes()).await;
    assert_eq!(l.recv_packet().await.cn, "9014");

    let cmd = Command {
        id: "c-interval".into(),
        action: CommandAction::SetInterval { seconds: 60 },
    };
    p.store()
        .insert_command(
            &cmd.id,
            key,
            "set_interval",
            &serde_json::to_value(&cmd).unwrap(),
            Some("test"),
        )
        .await
        .unwrap();
    let req = l.recv_packet().await;
    assert_eq!(
        (req.cn.as_str(), req.cp.as_str(), req.mn.as_str()),
        ("1062", "RtdInterval=60", "SQ0000000000000000000001")
    );
    assert!(req.reply_wanted());
    l.send(
        &offsite_hj212::request_reply(&req, offsite_hj212::QnRtn::Ready)
            .encode()
            .unwrap(),
    )
    .await;
    l.send(
        &offsite_hj212::execution_reply(&req, offsite_hj212::ExeRtn::Ok)
            .encode()
            .unwrap(),
    )
    .await;
    let c = answered(p.store(), "c-interval").await;
    assert_eq!(c.ok, Some(true));
    assert_eq!(c.state.unwrap()["exe_rtn"], 1);

    let cmd = Command {
        id: "c-clock".into(),
        action: CommandAction::SyncClock,
    };
    p.store()
        .insert_command(
            &cmd.id,
            key,
            "sync_clock",
            &serde_json::to_value(&cmd).unwrap(),
            Some("test"),
        )
        .await
        .unwrap();
    let req = l.recv_packet().await;
    assert_eq!(req.cn, "1012");
    let set_to =
        offsite_hj212::beijing_to_utc(req.parse_cp().unwrap().field("SystemTime").unwrap())
            .unwrap();
    assert!(
        (Utc::now() - set_to).num_seconds().abs() < 60,
        "the platform's time in Beijing time: {set_to}"
    );
    // The logger refuses this one: recorded as failed.
    l.send(
        &offsite_hj212::request_reply(&req, offsite_hj212::QnRtn::Rejected)
            .encode()
            .unwrap(),
    )
    .await;
    let c = answered(p.store(), "c-clock").await;
    assert_eq!(c.ok, Some(false));
    assert!(c.error.unwrap().contains("QnRtn=2"));
    p.stop().await;
}
