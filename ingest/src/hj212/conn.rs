//! One logger connection: framing, login, data to the processor, replies after the commit,
//! platform commands down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use offsite_hj212::{DataFlag, ExeRtn, Framer, Packet, QnRtn, Reassembler, MAX_DATA_LEN};
use offsite_store::{samples::quality, DeadLetter};
use offsite_wire::{CommandAck, CommandAction, MetricKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{metrics, Shared};
use crate::GatewayWork;

/// A platform command for a logged-in logger.
pub(crate) struct Downlink {
    pub command_id: String,
    pub action: CommandAction,
}

/// Where the command poller reaches a logged-in connection.
pub(crate) struct LoggerHandle {
    pub conn_id: u64,
    pub tx: mpsc::Sender<Downlink>,
}

/// A logger is expected to answer a request within this long (the standard's default timeout).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open split messages per connection, and how long a part waits for the rest.
const SPLIT_PENDING: usize = 16;
const SPLIT_MAX_AGE: Duration = Duration::from_secs(120);

/// The logger a connection is bound to after its first good login.
struct Session {
    device_key: i32,
    device_id: String,
    mn: String,
    /// The PW it logged in with: later packets are compared with this, not hashed again.
    pw: String,
    /// Its system code, used in what we send it.
    st: String,
}

struct Conn {
    id: u64,
    peer: SocketAddr,
    shared: Arc<Shared>,
    out: mpsc::Sender<Vec<u8>>,
    session: Option<Session>,
    auth_failures: u32,
    reassembler: Reassembler,
    /// QN of a request we sent -> the command it carries.
    in_flight: HashMap<String, String>,
    cmd_rx: Option<mpsc::Receiver<Downlink>>,
}

pub(crate) async fn serve(id: u64, stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let (mut rd, wr) = stream.into_split();
    let (out, out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(write_loop(wr, out_rx, peer));
    let mut c = Conn {
        id,
        peer,
        shared: shared.clone(),
        out,
        session: None,
        auth_failures: 0,
        reassembler: Reassembler::new(SPLIT_PENDING, SPLIT_MAX_AGE),
        in_flight: HashMap::new(),
        cmd_rx: None,
    };
    debug!(%peer, "HJ 212 connection opened");
    c.read_loop(&mut rd).await;
    c.logout().await;
    // The writer ends once every reply (some wait for a commit) has been sent.
    drop(c);
    let _ = writer.await;
    debug!(%peer, "HJ 212 connection closed");
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>, peer: SocketAddr) {
    while let Some(bytes) = rx.recv().await {
        match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "HJ 212 write failed");
                break;
            }
            Err(_) => {
                warn!(%peer, "HJ 212 logger does not read its replies; closing");
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
}

/// Quality bits of a value from its data flag (N and no flag: a normal measurement).
pub(crate) fn flag_quality(flag: Option<DataFlag>) -> i16 {
    match flag {
        None | Some(DataFlag::Normal) => 0,
        Some(DataFlag::Stopped) => quality::FLAG_STOPPED,
        Some(DataFlag::Maintenance) => quality::FLAG_MAINTENANCE,
        Some(DataFlag::ManuallySet) => quality::FLAG_MANUAL,
        Some(DataFlag::Fault) => quality::FLAG_FAULT,
        Some(DataFlag::Calibration) => quality::FLAG_CALIBRATION,
        Some(DataFlag::OverRange) => quality::FLAG_OVER_RANGE,
        Some(DataFlag::CommFault) => quality::FLAG_COMM_FAULT,
    }
}

impl Conn {
    async fn read_loop(&mut self, rd: &mut tokio::net::tcp::OwnedReadHalf) {
        let cfg = self.shared.cfg.clone();
        let idle = Duration::from_secs(cfg.idle_timeout_s.max(1));
        let partial_limit = Duration::from_secs(cfg.partial_timeout_s.max(1));
        // Beyond one largest packet plus its envelope, held bytes can only be an attack or garbage.
        let max_pending = 2 * (MAX_DATA_LEN + 12);
        let mut framer = Framer::new(MAX_DATA_LEN);
        let mut buf = vec![0u8; 4096];
        let mut partial_since: Option<Instant> = None;
        let opened = Instant::now();
        loop {
            let mut wait = match partial_since {
                Some(t) => partial_limit.saturating_sub(t.elapsed()).min(idle),
                None => idle,
            };
            // An anonymous connection gets as long to log in as a packet gets to arrive: idle
            // sockets of strangers must not use up max_connections.
            if self.session.is_none() {
                wait = wait.min(partial_limit.saturating_sub(opened.elapsed()));
            }
            let read = tokio::select! {
                r = tokio::time::timeout(wait, rd.read(&mut buf)) => r,
                Some(d) = async { self.cmd_rx.as_mut()?.recv().await }, if self.cmd_rx.is_some() => {
                    self.send_command(d).await;
                    continue;
                }
                _ = self.shared.stop.cancelled() => return,
            };
            let n = match read {
                Err(_) if partial_since.is_some_and(|t| t.elapsed() >= partial_limit) => {
                    self.refuse(
                        "partial_timeout",
                        "a packet started but did not finish in time; closing",
                        None,
                    );
                    return;
                }
                Err(_) if self.session.is_none() && opened.elapsed() >= partial_limit => {
                    self.refuse(
                        "not_logged_in",
                        "no successful login within the partial timeout; closing",
                        None,
                    );
                    return;
                }
                Err(_) => {
                    self.refuse(
                        "idle",
                        "nothing received within the idle timeout; closing",
                        None,
                    );
                    return;
                }
                Ok(Ok(0)) => {
                    if framer.pending() > 0 {
                        self.refuse(
                            "truncated",
                            &format!(
                                "connection closed inside a packet ({} bytes)",
                                framer.pending()
                            ),
                            None,
                        );
                    }
                    return;
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    debug!(peer = %self.peer, error = %e, "HJ 212 read failed");
                    return;
                }
            };
            framer.push(&buf[..n]);
            while let Some(frame) = framer.next_frame() {
                partial_since = None;
                let flow = match frame {
                    Ok(data) => self.on_frame(data).await,
                    Err(e) => {
                        let raw = match &e {
                            offsite_hj212::FrameError::BadCrc { data, .. } => Some(data.clone()),
                            _ => None,
                        };
                        self.refuse(e.as_str(), &e.to_string(), raw.clone());
                        // A packet that parses despite its CRC gets the standard "bad CRC" answer.
                        if let Some(p) = raw
                            .and_then(|d| Packet::parse(&d).ok())
                            .filter(|p| p.reply_wanted())
                        {
                            self.reply(offsite_hj212::request_reply(&p, QnRtn::BadCrc), "9011")
                                .await;
                        }
                        ControlFlow::Continue(())
                    }
                };
                if flow.is_break() {
                    return;
                }
            }
            if framer.pending() == 0 {
                partial_since = None;
            } else if partial_since.is_none() {
                partial_since = Some(Instant::now());
            }
            if framer.pending() > max_pending {
                self.refuse(
                    "oversized",
                    &format!(
                        "{} bytes held without a complete packet; closing",
                        framer.pending()
                    ),
                    None,
                );
                return;
            }
        }
    }

    /// Counts and logs refused input; keeps it as a dead letter when the logger is known.
    fn refuse(&self, reason: &'static str, detail: &str, raw: Option<Vec<u8>>) {
        metrics::REJECTED.with_label_values(&[reason]).inc();
        let mn = self.session.as_ref().map(|s| s.mn.as_str());
        warn!(peer = %self.peer, mn, reason, detail, "HJ 212 input refused");
        if let Some(s) = &self.session {
            let dead = DeadLetter {
                device_id: Some(s.device_id.clone()),
                topic: format!("hj212/{}", s.mn),
                reason,
                detail: detail.to_owned(),
                payload: raw.unwrap_or_default(),
            };
            let w = GatewayWork {
                device_key: s.device_key,
                device_id: s.device_id.clone(),
                received_at: Utc::now(),
                samples: Vec::new(),
                dead: vec![dead],
                online: None,
                committed: None,
            };
            // Never wait here: refusing must not stall on a busy processor; a full queue is logged.
            if self.shared.sink.try_send(w).is_err() {
                warn!(peer = %self.peer, reason, "ingest queue full; dead letter not kept");
            }
        }
    }

    async fn reply(&self, p: Packet, cn: &'static str) {
        match p.encode() {
            Ok(bytes) => {
                if self.out.send(bytes).await.is_ok() {
                    metrics::REPLIES.with_label_values(&[cn]).inc();
                }
            }
            Err(e) => warn!(peer = %self.peer, error = %e, "HJ 212 reply not encodable"),
        }
    }

    async fn on_frame(&mut self, data: Vec<u8>) -> ControlFlow<()> {
        let p = match Packet::parse(&data) {
            Ok(p) => p,
            Err(e) => {
                self.refuse(e.as_str(), &e.to_string(), Some(data));
                return ControlFlow::Continue(());
            }
        };
        metrics::PACKETS.inc();
        let Some(session) = &mut self.session else {
            return self.login(p, data).await;
        };
        if p.mn != session.mn {
            let detail = format!("MN {} on a connection logged in as {}", p.mn, session.mn);
            self.refuse("mn_mismatch", &detail, Some(data));
            if p.reply_wanted() {
                self.reply(offsite_hj212::request_reply(&p, QnRtn::BadMn), "9011")
                    .await;
            }
            return ControlFlow::Continue(());
        }
        if p.pw.as_deref().is_some_and(|pw| pw != session.pw) {
            self.refuse(
                "bad_password",
                "PW differs from the one this connection logged in with",
                Some(data),
            );
            if p.reply_wanted() {
                self.reply(offsite_hj212::request_reply(&p, QnRtn::BadPassword), "9011")
                    .await;
            }
            return ControlFlow::Continue(());
        }
        if let Some(st) = &p.st {
            session.st.clone_from(st);
        }
        self.after_login(p, data).await;
        ControlFlow::Continue(())
    }

    /// The first packet (and each until one succeeds) logs the connection in by MN + PW.
    async fn login(&mut self, p: Packet, data: Vec<u8>) -> ControlFlow<()> {
        let logger = match self.shared.store.hj212_logger(&p.mn).await {
            Ok(l) => l,
            Err(e) => {
                // The registry is unreachable: close without an answer; the logger reconnects.
                warn!(peer = %self.peer, error = %format!("{e:#}"), "HJ 212 login lookup failed; closing");
                return ControlFlow::Break(());
            }
        };
        let failure = match &logger {
            None => Some(("unknown_mn", QnRtn::BadMn)),
            Some(l) if l.revoked => Some(("revoked", QnRtn::Rejected)),
            Some(l) if !p.pw.as_deref().is_some_and(|pw| l.password_matches(pw)) => {
                Some(("bad_password", QnRtn::BadPassword))
            }
            Some(_) => None,
        };
        if let Some((reason, rtn)) = failure {
            self.auth_failures += 1;
            metrics::AUTH_FAILURES.with_label_values(&[reason]).inc();
            warn!(peer = %self.peer, mn = %p.mn, reason, failures = self.auth_failures, "HJ 212 login refused");
            if let Some(l) = &logger {
                // A known device: keep what it sent, like any refused message of a registered device.
                let dead = DeadLetter {
                    device_id: Some(l.id.to_string()),
                    topic: format!("hj212/{}", l.mn),
                    reason,
                    detail: "HJ 212 login refused".into(),
                    payload: data,
                };
                let w = GatewayWork {
                    device_key: l.key,
                    device_id: l.id.to_string(),
                    received_at: Utc::now(),
                    samples: Vec::new(),
                    dead: vec![dead],
                    online: None,
                    committed: None,
                };
                let _ = self.shared.sink.try_send(w);
            }
            // The refusal is sent whatever the Flag: the logger must learn why it gets no data replies.
            self.reply(offsite_hj212::request_reply(&p, rtn), "9011")
                .await;
            if self.auth_failures >= self.shared.cfg.max_auth_failures.max(1) {
                info!(peer = %self.peer, mn = %p.mn, "HJ 212 connection closed after repeated login failures");
                return ControlFlow::Break(());
            }
            return ControlFlow::Continue(());
        }
        let l = logger.expect("checked above");
        let (tx, rx) = mpsc::channel(16);
        self.cmd_rx = Some(rx);
        self.shared.loggers.lock().unwrap().insert(
            l.key,
            LoggerHandle {
                conn_id: self.id,
                tx,
            },
        );
        info!(peer = %self.peer, mn = %l.mn, device = %l.id, "HJ 212 logger logged in");
        self.session = Some(Session {
            device_key: l.key,
            device_id: l.id.to_string(),
            mn: l.mn.clone(),
            pw: p.pw.clone().unwrap_or_default(),
            st: p.st.clone().unwrap_or_else(|| "22".into()),
        });
        let online = GatewayWork {
            device_key: l.key,
            device_id: l.id.to_string(),
            received_at: Utc::now(),
            samples: Vec::new(),
            dead: Vec::new(),
            online: Some(true),
            committed: None,
        };
        let _ = self.shared.sink.send_async(online).await;
        self.after_login(p, data).await;
        ControlFlow::Continue(())
    }

    async fn logout(&mut self) {
        let Some(s) = self.session.take() else { return };
        let mine = {
            let mut loggers = self.shared.loggers.lock().unwrap();
            let mine = loggers
                .get(&s.device_key)
                .is_some_and(|h| h.conn_id == self.id);
            if mine {
                loggers.remove(&s.device_key);
            }
            mine
        };
        // A newer connection of the same logger keeps it online.
        if mine {
            let w = GatewayWork {
                device_key: s.device_key,
                device_id: s.device_id.clone(),
                received_at: Utc::now(),
                samples: Vec::new(),
                dead: Vec::new(),
                online: Some(false),
                committed: None,
            };
            let _ = self.shared.sink.try_send(w);
        }
    }

    async fn after_login(&mut self, p: Packet, data: Vec<u8>) {
        let now = Instant::now();
        let expired = self.reassembler.expire(now);
        if expired > 0 {
            self.refuse(
                "split_expired",
                &format!("{expired} split message(s) never completed"),
                None,
            );
        }
        let pushed = self.reassembler.push(p, now);
        let evicted = self.reassembler.take_evicted();
        if evicted > 0 {
            self.refuse(
                "split_expired",
                &format!("{evicted} split message(s) dropped for room"),
                None,
            );
        }
        let whole = match pushed {
            Ok(Some(w)) => w,
            Ok(None) => return,
            Err(e) => return self.refuse(e.as_str(), &e.to_string(), Some(data)),
        };
        match whole.cn.as_str() {
            cn if cn.starts_with('2') && cn.len() == 4 => self.on_upload(whole, data).await,
            "9011" | "9012" => self.on_command_reply(whole).await,
            // Answers to notifications we never send, or acknowledgements: nothing to do.
            "9013" | "9014" => debug!(peer = %self.peer, cn = %whole.cn, "HJ 212 reply ignored"),
            _ => {
                self.refuse(
                    "unsupported_cn",
                    &format!("CN {} is not handled", whole.cn),
                    Some(data),
                );
                if whole.reply_wanted() {
                    self.reply(offsite_hj212::request_reply(&whole, QnRtn::BadCn), "9011")
                        .await;
                }
            }
        }
    }

    /// CN 2011/2051/2061/2031/2021/... : every value becomes a sample `<code>-<suffix>` at DataTime.
    async fn on_upload(&mut self, p: Packet, data: Vec<u8>) {
        let s = self.session.as_ref().expect("logged in");
        let cp = match p.parse_cp() {
            Ok(cp) => cp,
            Err(e) => return self.refuse(e.as_str(), &e.to_string(), Some(data)),
        };
        let mut samples = Vec::with_capacity(cp.values.len());
        let mut dead = Vec::new();
        if !cp.values.is_empty() {
            let Some(ts) = cp.data_time else {
                return self.refuse(
                    "missing_data_time",
                    &format!("CN {} values without DataTime", p.cn),
                    Some(data),
                );
            };
            let mut bad = Vec::new();
            for v in &cp.values {
                let key = format!("{}-{}", v.code, v.suffix);
                if MetricKey::check(&key).is_err() || !v.value.is_finite() {
                    bad.push(key);
                    continue;
                }
                samples.push((key, ts, v.value, flag_quality(v.flag)));
            }
            if !bad.is_empty() {
                metrics::REJECTED.with_label_values(&["bad_metric"]).inc();
                warn!(peer = %self.peer, mn = %s.mn, ?bad, "HJ 212 values with unusable names or values skipped");
                dead.push(DeadLetter {
                    device_id: Some(s.device_id.clone()),
                    topic: format!("hj212/{}", s.mn),
                    reason: "bad_metric",
                    detail: format!("unusable value names or values: {}", bad.join(", ")),
                    payload: data,
                });
            }
        }
        metrics::SAMPLES.inc_by(samples.len() as u64);
        let (committed, done) = oneshot::channel();
        let w = GatewayWork {
            device_key: s.device_key,
            device_id: s.device_id.clone(),
            received_at: Utc::now(),
            samples,
            dead,
            online: None,
            committed: Some(committed),
        };
        // A logger over its budget waits here, unread: only its own TCP stream slows down.
        let wait = self.shared.gate.pace(&w.device_id, w.device_key, w.samples.len().max(1) as u64);
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.shared.stop.cancelled() => return,
            }
        }
        // Waiting here is the back-pressure: a busy database slows the loggers' reads, not memory.
        if self.shared.sink.send_async(w).await.is_err() {
            return;
        }
        if p.reply_wanted() {
            let out = self.out.clone();
            let reply = offsite_hj212::data_reply(&p).encode();
            tokio::spawn(async move {
                // 9014 only once the values are committed: a logger may drop data it saw answered.
                if done.await.is_ok() {
                    if let Ok(bytes) = reply {
                        if out.send(bytes).await.is_ok() {
                            metrics::REPLIES.with_label_values(&["9014"]).inc();
                        }
                    }
                }
            });
        }
    }

    /// Sends a platform command as CN 1012 / 1062 and remembers its QN for the logger's answers.
    async fn send_command(&mut self, d: Downlink) {
        let Some(s) = &self.session else { return };
        let now = Utc::now();
        let request = match d.action {
            CommandAction::SyncClock => {
                offsite_hj212::set_time_request(&s.mn, &s.pw, &s.st, now, now)
            }
            CommandAction::SetInterval { seconds } if (30..=3600).contains(&seconds) => {
                offsite_hj212::set_interval_request(&s.mn, &s.pw, &s.st, now, seconds)
            }
            CommandAction::SetInterval { seconds } => {
                let error = format!(
                    "实时数据间隔须为 30..3600 秒 / RtdInterval must be 30..3600 s, got {seconds}"
                );
                return self
                    .record(&d.command_id, false, Some(error), serde_json::json!({}))
                    .await;
            }
            other => {
                let error = format!("HJ 212 数采仪不支持此命令 / not an HJ 212 command: {other:?}");
                return self
                    .record(&d.command_id, false, Some(error), serde_json::json!({}))
                    .await;
            }
        };
        let cn = if request.cn == "1012" { "1012" } else { "1062" };
        if let Some(qn) = &request.qn {
            self.in_flight.insert(qn.clone(), d.command_id.clone());
        }
        info!(peer = %self.peer, mn = %s.mn, command = %d.command_id, cn, "HJ 212 command sent");
        metrics::COMMANDS.with_label_values(&["sent"]).inc();
        self.reply(request, cn).await;
    }

    /// 9011 (accepted or refused) and 9012 (result) from the logger for a request we sent.
    async fn on_command_reply(&mut self, p: Packet) {
        let Some(qn) = p.qn.clone() else {
            return debug!(peer = %self.peer, "HJ 212 reply without QN ignored");
        };
        let Some(command_id) = self.in_flight.get(&qn).cloned() else {
            return debug!(peer = %self.peer, qn, "HJ 212 reply to no request of ours ignored");
        };
        let cp = match p.parse_cp() {
            Ok(cp) => cp,
            Err(e) => return self.refuse(e.as_str(), &e.to_string(), None),
        };
        let field = |name: &str| cp.field(name).map(str::to_owned);
        if p.cn == "9011" {
            let rtn: Option<u32> = field("QnRtn").and_then(|v| v.parse().ok());
            if rtn == Some(QnRtn::Ready as u32) {
                // Accepted: the result follows as 9012.
                return;
            }
            self.in_flight.remove(&qn);
            let error = format!(
                "数采仪拒绝请求 / the logger refused the request: QnRtn={}",
                rtn.map_or("?".into(), |r| r.to_string())
            );
            self.record(
                &command_id,
                false,
                Some(error),
                serde_json::json!({ "qn": qn, "qn_rtn": rtn }),
            )
            .await;
        } else {
            self.in_flight.remove(&qn);
            let rtn: Option<u32> = field("ExeRtn").and_then(|v| v.parse().ok());
            let ok = rtn == Some(ExeRtn::Ok as u32);
            let error = (!ok).then(|| {
                format!(
                    "数采仪执行失败 / the logger failed: ExeRtn={}",
                    rtn.map_or("?".into(), |r| r.to_string())
                )
            });
            self.record(
                &command_id,
                ok,
                error,
                serde_json::json!({ "qn": qn, "qn_rtn": 1, "exe_rtn": rtn }),
            )
            .await;
        }
    }

    async fn record(
        &self,
        command_id: &str,
        ok: bool,
        error: Option<String>,
        state: serde_json::Value,
    ) {
        let Some(s) = &self.session else { return };
        metrics::COMMANDS
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
        let ack = CommandAck {
            id: command_id.to_owned(),
            ok,
            error,
            state: Some(state),
        };
        match self
            .shared
            .store
            .record_command_ack(s.device_key, &ack, Utc::now())
            .await
        {
            Ok(true) => info!(mn = %s.mn, command = command_id, ok, "HJ 212 command answered"),
            Ok(false) => {
                debug!(mn = %s.mn, command = command_id, "HJ 212 command already answered")
            }
            Err(e) => {
                warn!(mn = %s.mn, command = command_id, error = %format!("{e:#}"), "recording an HJ 212 command answer")
            }
        }
    }
}
