//! HJ 212 client mode: the agent emulates an HJ 212-2017 data logger (数采仪), for the demo, the
//! tests and sites whose platform speaks only HJ 212.
//!
//! ```text
//! source tasks --readings--> logger task --CN=2011 frames--> DiskQueue --one at a time--> TCP server
//!                                 ^                                                        |
//!                                 \----------- 9014 (ack), 1012 / 1062 requests -----------/
//! ```
//!
//! Every upload asks for a reply (Flag=5) and stays in the on-disk queue until its 9014 arrives, so
//! nothing is lost across disconnects or restarts. Uploads go one at a time, oldest first (the
//! standard's stop-and-wait): an upload without its 9014 after `reply_timeout_ms` is sent again,
//! up to `retries` times; then the connection is taken for broken, dropped and made again with
//! backoff, and the same upload goes first.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use offsite_hj212::{
    execution_reply, request_reply, utc_to_beijing, DataFlag, ExeRtn, Flag, Framer, Packet, QnRtn,
    MAX_CP_LEN, MAX_DATA_LEN, MAX_RTD_INTERVAL, MIN_RTD_INTERVAL,
};
use offsite_wire::{Sample, SourceSettings};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::agent::{publish_settings, spawn_sources, stopped, Reading, SourceSlot};
use crate::config::{AgentConfig, DeviceConfig};
use crate::metrics as m;
use crate::queue::DiskQueue;
use crate::state::StateFile;

/// `[devices.hj212]` of a device with `protocol = "hj212"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hj212Config {
    /// The platform's HJ 212 gateway, `host:port`.
    pub server: String,
    /// The logger's MN (device id at the platform).
    pub mn: String,
    /// The logger's PW.
    pub pw: String,
    /// System code: 22 air quality, 39 construction-site dust, 31/32 air/water pollution source...
    #[serde(default = "default_st")]
    pub st: String,
    /// Real-time data interval (CN 2011) in seconds, 30..=3600; sets every source's polling
    /// interval. Unset: the sources' own `interval_ms`. A 1062 from the platform overrides both.
    #[serde(default)]
    pub rtd_interval_s: Option<u32>,
    /// How long to wait for the 9014 of an upload (the standard's default: 10 s).
    #[serde(default = "default_reply_timeout_ms")]
    pub reply_timeout_ms: u64,
    /// Sends again after a timeout before the connection is dropped (the standard's default: 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First wait before reconnecting; doubles per failure up to `max_reconnect_delay_ms`.
    #[serde(default = "default_reconnect_delay_ms")]
    pub reconnect_delay_ms: u64,
    #[serde(default = "default_max_reconnect_delay_ms")]
    pub max_reconnect_delay_ms: u64,
    /// Metric -> pollutant code, over the defaults (`pm10` -> `a34002`, ...). A metric with no
    /// code is sent under its own name, never dropped.
    #[serde(default)]
    pub codes: BTreeMap<String, String>,
    /// Periods in which values carry a data flag other than N (a maintenance window, a faulty
    /// instrument), so a demo or test logger can show what flags do at the platform.
    #[serde(default)]
    pub flag_periods: Vec<FlagPeriod>,
}

/// `[[devices.hj212.flag_periods]]`: values whose time falls in the first `for_s` seconds of
/// every `every_s`-second cycle (cycles start at `offset_s` past the Unix epoch) are sent with
/// `flag`. The first matching period wins; values outside every period are flagged N.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagPeriod {
    pub flag: ScheduledFlag,
    pub every_s: u64,
    pub for_s: u64,
    #[serde(default)]
    pub offset_s: u64,
    /// Metrics (names before the code mapping) the flag applies to; empty: all.
    #[serde(default)]
    pub metrics: Vec<String>,
}

impl FlagPeriod {
    fn covers(&self, ts: DateTime<Utc>, metric: &str) -> bool {
        if self.every_s == 0
            || (!self.metrics.is_empty() && !self.metrics.iter().any(|m| m == metric))
        {
            return false;
        }
        let into_cycle = (ts.timestamp() - self.offset_s as i64).rem_euclid(self.every_s as i64);
        into_cycle < self.for_s as i64
    }
}

/// A data flag letter of HJ 212-2017 (N, F, M, S, D, C, T, B), parsed when the config is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ScheduledFlag(pub DataFlag);

impl TryFrom<String> for ScheduledFlag {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        DataFlag::parse(&s)
            .map(ScheduledFlag)
            .ok_or_else(|| format!("{s:?} is no HJ 212 data flag (N, F, M, S, D, C, T, B)"))
    }
}

impl From<ScheduledFlag> for String {
    fn from(f: ScheduledFlag) -> String {
        f.0.letter().to_string()
    }
}

fn default_st() -> String {
    "22".into()
}
fn default_reply_timeout_ms() -> u64 {
    10_000
}
fn default_retries() -> u32 {
    3
}
fn default_reconnect_delay_ms() -> u64 {
    1000
}
fn default_max_reconnect_delay_ms() -> u64 {
    30_000
}

/// Pollutant codes of HJ 212-2017 for the simulator's and common metric names.
const DEFAULT_CODES: &[(&str, &str)] = &[
    ("pm10", "a34002"),
    ("pm25", "a34004"),
    ("pm2_5", "a34004"),
    ("tsp", "a34001"),
    ("noise", "LA"),
    ("temperature", "a01001"),
    ("humidity", "a01002"),
    ("pressure", "a01006"),
    ("wind_speed", "a01007"),
    ("wind_direction", "a01008"),
    ("so2", "a21026"),
    ("no2", "a21004"),
    ("nox", "a21002"),
    ("co", "a21005"),
    ("o2", "a19001"),
    ("nmhc", "a24088"),
    ("flow", "w00000"),
    ("ph", "w01001"),
    ("cod", "w01018"),
    ("ammonia_nitrogen", "w21003"),
    ("total_phosphorus", "w21011"),
];

/// A CP code or metric name we can write: no separator of the packet or CP syntax in it.
fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 32
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

impl Hj212Config {
    /// Logs, metrics and the data directory name the device by its MN.
    pub fn label(&self) -> String {
        format!("hj212-{}", self.mn)
    }

    /// The code a metric is sent under.
    pub fn code_for(&self, metric: &str) -> String {
        self.codes
            .get(metric)
            .map(String::as_str)
            .or_else(|| {
                DEFAULT_CODES
                    .iter()
                    .find(|(name, _)| *name == metric)
                    .map(|(_, code)| *code)
            })
            .unwrap_or(metric)
            .to_owned()
    }

    pub fn validate(&self) -> Result<()> {
        if self
            .server
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            bail!("hj212.server {:?}: want host:port", self.server);
        }
        // A packet with the MN, PW and ST as configured must encode: the same strict checks.
        let probe = Packet {
            qn: None,
            st: Some(self.st.clone()),
            cn: "2011".into(),
            pw: Some(self.pw.clone()),
            mn: self.mn.clone(),
            flag: None,
            pnum: None,
            pno: None,
            cp: String::new(),
        };
        probe
            .encode()
            .map_err(|e| anyhow::anyhow!("hj212 mn/pw/st: {e}"))?;
        if !self.st.bytes().all(|b| b.is_ascii_digit()) {
            bail!(
                "hj212.st {:?}: a system code is digits (22, 39, ...)",
                self.st
            );
        }
        if let Some(s) = self.rtd_interval_s {
            if !(MIN_RTD_INTERVAL..=MAX_RTD_INTERVAL).contains(&s) {
                bail!("hj212.rtd_interval_s {s}: the standard allows {MIN_RTD_INTERVAL}..={MAX_RTD_INTERVAL}");
            }
        }
        for (metric, code) in &self.codes {
            if !valid_code(code) {
                bail!("hj212.codes.{metric} = {code:?}: a code is letters, digits, '_' or '.'");
            }
        }
        for (i, p) in self.flag_periods.iter().enumerate() {
            if p.every_s == 0 || p.for_s > p.every_s {
                bail!("hj212.flag_periods[{i}]: want every_s > 0 and for_s <= every_s");
            }
        }
        Ok(())
    }

    /// The data flag of a value of `metric` measured at `ts`.
    pub fn flag_at(&self, ts: DateTime<Utc>, metric: &str) -> DataFlag {
        self.flag_periods
            .iter()
            .find(|p| p.covers(ts, metric))
            .map_or(DataFlag::Normal, |p| p.flag.0)
    }
}

/// A logger device while it runs.
pub(crate) struct RunningLogger {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    sources: Vec<JoinHandle<()>>,
}

impl RunningLogger {
    /// Stops the sources, queues what they read, saves state and closes the connection. What is
    /// not acknowledged stays queued for the next start.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for s in self.sources {
            let _ = s.await;
        }
        let _ = self.task.await;
    }
}

/// Opens the device's queue and state and starts its sources and its logger task.
pub(crate) fn start(
    cfg: &AgentConfig,
    d: &DeviceConfig,
    h: &Hj212Config,
    base: &Path,
    data_dir: &Path,
) -> Result<RunningLogger> {
    let dev = h.label();
    let dir = data_dir.join(&dev);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let queue = DiskQueue::open(&dir.join("queue"), cfg.queue.queue_config()?)
        .with_context(|| format!("opening the queue of {dev}"))?;
    if queue.pending() > 0 {
        info!(device = %dev, packets = queue.pending(), "unacknowledged HJ 212 uploads from before the restart will be sent");
    }
    let state = StateFile::load(&dir)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (read_tx, read_rx) = mpsc::channel::<Reading>(64);
    let interval_ms = h.rtd_interval_s.map(|s| u64::from(s) * 1000);
    let (slots, tasks) = spawn_sources(&d.sources, interval_ms, base, &dev, &state, &read_tx, &stop_rx)?;
    drop(read_tx);
    let logger = Logger {
        backoff: Duration::from_millis(h.reconnect_delay_ms.max(10)),
        last_dropped: queue.dropped_total().batches,
        cfg: h.clone(),
        dev,
        queue,
        state,
        slots,
        last_qn: String::new(),
        warned_codes: HashSet::new(),
    };
    m::HJ212_RESENDS.with_label_values(&[&logger.dev]);
    m::ACKED.with_label_values(&[&logger.dev]);
    m::DROPPED.with_label_values(&[&logger.dev]);
    let task = tokio::spawn(logger.run(read_rx, stop_rx));
    Ok(RunningLogger {
        stop: stop_tx,
        task,
        sources: tasks,
    })
}

/// The upload on the wire, waiting for its 9014.
struct Inflight {
    seq: u64,
    qn: Option<String>,
    frame: Vec<u8>,
    sends: u32,
    deadline: Instant,
}

struct Connection {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    framer: Framer,
}

/// What the server's bytes asked of us.
enum Verdict {
    Continue,
    /// The server refused us (9011 other than ready for our upload): reconnect later.
    Refused,
}

struct Logger {
    dev: String,
    cfg: Hj212Config,
    queue: DiskQueue,
    state: StateFile,
    slots: Vec<SourceSlot>,
    /// QNs must differ between uploads; two readings within one millisecond get the next one.
    last_qn: String,
    backoff: Duration,
    last_dropped: u64,
    /// Metrics sent under their own name (no code known), logged once each.
    warned_codes: HashSet<String>,
}

/// A server's write must not hold the logger forever (a peer that stops reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Logger {
    async fn run(mut self, mut readings: mpsc::Receiver<Reading>, mut stop: watch::Receiver<bool>) {
        let mut conn: Option<Connection> = None;
        let mut inflight: Option<Inflight> = None;
        let mut next_connect = Instant::now();
        let mut gauges = tokio::time::interval(Duration::from_secs(1));
        let mut buf = vec![0u8; 4096];
        let mut stopping = false;
        // A device without sources has none to wait for: it runs (answering requests) until stopped.
        let mut sources_done = false;
        loop {
            if let (Some(c), None) = (conn.as_mut(), inflight.as_ref()) {
                match self.send_oldest(c).await {
                    Ok(sent) => inflight = sent,
                    Err(e) => {
                        warn!(device = %self.dev, error = %format!("{e:#}"), "HJ 212 send failed; reconnecting");
                        self.disconnect(&mut conn, &mut inflight, &mut next_connect);
                    }
                }
            }
            let deadline = inflight.as_ref().map(|i| i.deadline);
            tokio::select! {
                r = readings.recv(), if !sources_done => match r {
                    Some(r) => self.enqueue(r),
                    None => {
                        sources_done = true;
                        if stopping {
                            self.finish();
                            return;
                        }
                    }
                },
                n = read_some(conn.as_mut(), &mut buf) => match n {
                    Ok(0) => {
                        info!(device = %self.dev, "HJ 212 server closed the connection");
                        self.disconnect(&mut conn, &mut inflight, &mut next_connect);
                    }
                    Ok(n) => {
                        let c = conn.as_mut().expect("read from a connection");
                        c.framer.push(&buf[..n]);
                        if let Verdict::Refused = self.incoming(c, &mut inflight).await {
                            self.disconnect(&mut conn, &mut inflight, &mut next_connect);
                        }
                    }
                    Err(e) => {
                        warn!(device = %self.dev, error = %e, "HJ 212 connection failed");
                        self.disconnect(&mut conn, &mut inflight, &mut next_connect);
                    }
                },
                _ = sleep_until(deadline) => {
                    let i = inflight.as_mut().expect("deadline of an upload");
                    if i.sends > self.cfg.retries {
                        warn!(device = %self.dev, qn = ?i.qn, sends = i.sends, "no 9014 for the upload; reconnecting, the upload stays queued");
                        self.disconnect(&mut conn, &mut inflight, &mut next_connect);
                    } else {
                        m::HJ212_RESENDS.with_label_values(&[&self.dev]).inc();
                        i.sends += 1;
                        i.deadline = Instant::now() + self.reply_timeout();
                        let frame = i.frame.clone();
                        let c = conn.as_mut().expect("an upload is in flight on a connection");
                        if let Err(e) = write_frame(c, &frame).await {
                            warn!(device = %self.dev, error = %format!("{e:#}"), "HJ 212 resend failed; reconnecting");
                            self.disconnect(&mut conn, &mut inflight, &mut next_connect);
                        }
                    }
                },
                _ = tokio::time::sleep_until(next_connect), if conn.is_none() && !stopping => {
                    match self.connect().await {
                        Ok(c) => {
                            info!(device = %self.dev, server = %self.cfg.server, "connected to the HJ 212 server");
                            m::CONNECTED.with_label_values(&[&self.dev]).set(1);
                            conn = Some(c);
                        }
                        Err(e) => {
                            warn!(device = %self.dev, server = %self.cfg.server, error = %format!("{e:#}"), retry_in_ms = self.backoff.as_millis() as u64, "cannot reach the HJ 212 server");
                            next_connect = Instant::now() + self.next_backoff();
                        }
                    }
                }
                _ = gauges.tick() => self.update_gauges(),
                _ = stopped(&mut stop), if !stopping => {
                    // Sources see the same signal; keep queueing their readings until they are gone.
                    stopping = true;
                    if sources_done {
                        self.finish();
                        return;
                    }
                }
            }
        }
    }

    fn reply_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.reply_timeout_ms.max(10))
    }

    /// The current wait, and doubles the next one.
    fn next_backoff(&mut self) -> Duration {
        let now = self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_millis(
            self.cfg.max_reconnect_delay_ms.max(10),
        ));
        now
    }

    async fn connect(&self) -> Result<Connection> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.cfg.server))
            .await
            .context("connect timed out")??;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        Ok(Connection {
            read,
            write,
            framer: Framer::new(MAX_DATA_LEN),
        })
    }

    fn disconnect(
        &mut self,
        conn: &mut Option<Connection>,
        inflight: &mut Option<Inflight>,
        next_connect: &mut Instant,
    ) {
        *conn = None;
        *inflight = None;
        m::CONNECTED.with_label_values(&[&self.dev]).set(0);
        *next_connect = Instant::now() + self.next_backoff();
    }

    /// Sends the oldest queued upload, if any.
    async fn send_oldest(&mut self, c: &mut Connection) -> Result<Option<Inflight>> {
        let Some(&seq) = self.queue.pending_after(None, 1).first() else {
            return Ok(None);
        };
        let Some(frame) = self.queue.read(seq).context("reading the queue")? else {
            return Ok(None);
        };
        let qn = qn_of(&frame);
        write_frame(c, &frame).await?;
        Ok(Some(Inflight {
            seq,
            qn,
            frame,
            sends: 1,
            deadline: Instant::now() + self.reply_timeout(),
        }))
    }

    /// Handles every complete packet the server sent.
    async fn incoming(&mut self, c: &mut Connection, inflight: &mut Option<Inflight>) -> Verdict {
        while let Some(frame) = c.framer.next_frame() {
            let data = match frame {
                Ok(data) => data,
                Err(e) => {
                    m::HJ212_BAD_INPUT
                        .with_label_values(&[&self.dev, e.as_str()])
                        .inc();
                    warn!(device = %self.dev, error = %e, "bad bytes from the HJ 212 server");
                    continue;
                }
            };
            let p = match Packet::parse(&data) {
                Ok(p) => p,
                Err(e) => {
                    m::HJ212_BAD_INPUT
                        .with_label_values(&[&self.dev, e.as_str()])
                        .inc();
                    warn!(device = %self.dev, error = %e, packet = %String::from_utf8_lossy(&data), "bad packet from the HJ 212 server");
                    continue;
                }
            };
            if p.mn != self.cfg.mn {
                m::HJ212_BAD_INPUT
                    .with_label_values(&[&self.dev, "other_mn"])
                    .inc();
                warn!(device = %self.dev, mn = %p.mn, cn = %p.cn, "packet for another MN ignored");
                continue;
            }
            let ours = inflight
                .as_ref()
                .is_some_and(|i| i.qn.is_some() && i.qn == p.qn);
            match p.cn.as_str() {
                "9014" if ours => {
                    let i = inflight.take().expect("checked");
                    if let Err(e) = self.queue.ack(i.seq) {
                        warn!(device = %self.dev, error = %e, "marking an upload as answered");
                    }
                    m::ACKED.with_label_values(&[&self.dev]).inc();
                    self.backoff = Duration::from_millis(self.cfg.reconnect_delay_ms.max(10));
                }
                "9011" if ours => {
                    let rtn = p
                        .parse_cp()
                        .ok()
                        .and_then(|cp| cp.field("QnRtn").map(str::to_owned));
                    if rtn.as_deref() != Some("1") {
                        let rtn = rtn.unwrap_or_default();
                        m::HJ212_REFUSED.with_label_values(&[&self.dev, &rtn]).inc();
                        warn!(device = %self.dev, qn_rtn = %rtn, "HJ 212 server refused the upload (3: bad PW, 4: bad MN); the upload stays queued");
                        return Verdict::Refused;
                    }
                }
                "9014" | "9011" | "9012" | "9013" => {
                    m::HJ212_BAD_INPUT
                        .with_label_values(&[&self.dev, "unmatched_reply"])
                        .inc();
                    warn!(device = %self.dev, cn = %p.cn, qn = ?p.qn, "reply to no upload in flight ignored");
                }
                _ => {
                    if let Err(e) = self.request(c, &p).await {
                        warn!(device = %self.dev, error = %format!("{e:#}"), "answering an HJ 212 request");
                    }
                }
            }
        }
        Verdict::Continue
    }

    /// A platform request: 9011 (accepted or not), and for an accepted one the work, then 9012.
    async fn request(&mut self, c: &mut Connection, p: &Packet) -> Result<()> {
        let outcome = match p.cn.as_str() {
            "1012" => match p.parse_cp().ok().and_then(|cp| {
                cp.field("SystemTime")
                    .and_then(offsite_hj212::beijing_to_utc)
            }) {
                Some(t) => {
                    // The host's clock is the operating system's to set; an emulated logger only
                    // reports how far off it was.
                    let off_ms = (t - Utc::now()).num_milliseconds();
                    info!(device = %self.dev, platform_time = %t, offset_ms = off_ms, "HJ 212 clock sync (1012)");
                    Ok(())
                }
                None => Err("SystemTime missing or not YYYYMMDDhhmmss"),
            },
            "1062" => match p
                .parse_cp()
                .ok()
                .and_then(|cp| cp.field("RtdInterval").and_then(|v| v.parse::<u32>().ok()))
            {
                Some(s) if (MIN_RTD_INTERVAL..=MAX_RTD_INTERVAL).contains(&s) => {
                    self.set_interval(s)
                }
                _ => Err("RtdInterval missing or outside 30..=3600"),
            },
            _ => Err("unsupported command"),
        };
        let label = match outcome {
            Ok(()) => "applied",
            Err(_) => "refused",
        };
        m::HJ212_REQUESTS
            .with_label_values(&[&self.dev, &p.cn, label])
            .inc();
        match outcome {
            Ok(()) => {
                info!(device = %self.dev, cn = %p.cn, cp = %p.cp, "HJ 212 request applied");
                write_packet(c, &request_reply(p, QnRtn::Ready)).await?;
                write_packet(c, &execution_reply(p, ExeRtn::Ok)).await
            }
            Err(why) => {
                warn!(device = %self.dev, cn = %p.cn, cp = %p.cp, why, "HJ 212 request refused");
                let rtn = if matches!(p.cn.as_str(), "1012" | "1062") {
                    QnRtn::Rejected
                } else {
                    QnRtn::BadCn
                };
                write_packet(c, &request_reply(p, rtn)).await
            }
        }
    }

    /// 1062: every source polls at the new interval; persisted before the reply, like a command.
    fn set_interval(&mut self, seconds: u32) -> Result<(), &'static str> {
        let ms = u64::from(seconds) * 1000;
        let before = self.state.state.clone();
        for slot in &self.slots {
            let o = self
                .state
                .state
                .sources
                .entry(slot.name.clone())
                .or_default();
            o.interval_ms = Some(ms);
        }
        if let Err(e) = self.state.save(true) {
            warn!(device = %self.dev, error = %format!("{e:#}"), "saving the new interval");
            self.state.state = before;
            return Err("cannot persist the interval");
        }
        for slot in &self.slots {
            let new = SourceSettings {
                interval_ms: Some(ms),
                ..*slot.settings.borrow()
            };
            slot.settings.send_replace(new);
            publish_settings(&self.dev, &slot.name, new);
        }
        Ok(())
    }

    /// Turns one reading into CN=2011 uploads (one per sample time, split when the CP would be too
    /// long) and queues them; then records where the source stands.
    fn enqueue(&mut self, r: Reading) {
        let mut by_time: BTreeMap<DateTime<Utc>, Vec<Sample>> = BTreeMap::new();
        for s in r.samples {
            by_time.entry(s.ts).or_default().push(s);
        }
        for (ts, samples) in by_time {
            for cp in self.cps(ts, &samples) {
                let packet = Packet {
                    qn: Some(self.next_qn()),
                    st: Some(self.cfg.st.clone()),
                    cn: "2011".into(),
                    pw: Some(self.cfg.pw.clone()),
                    mn: self.cfg.mn.clone(),
                    flag: Some(Flag(5)),
                    pnum: None,
                    pno: None,
                    cp,
                };
                let frame = match packet.encode() {
                    Ok(f) => f,
                    Err(e) => {
                        // Only a configuration the checks let through could do this.
                        warn!(device = %self.dev, error = %e, "an upload could not be encoded; its samples are lost");
                        continue;
                    }
                };
                let seq = self.queue.last_seq().map_or(1, |s| s + 1);
                if let Err(e) = self
                    .queue
                    .append(seq, Utc::now().timestamp_millis(), &frame)
                {
                    warn!(device = %self.dev, error = %e, "queueing an upload failed; its samples are lost");
                }
            }
        }
        if let Some(cp) = r.checkpoint {
            self.state
                .state
                .checkpoints
                .insert(self.slots[r.source].name.clone(), cp);
            if let Err(e) = self.state.save(false) {
                warn!(device = %self.dev, error = %format!("{e:#}"), "saving source positions");
            }
        }
    }

    /// The CP texts for the samples of one instant: `DataTime=...;code-Rtd=v,code-Flag=N;...`.
    fn cps(&mut self, ts: DateTime<Utc>, samples: &[Sample]) -> Vec<String> {
        let head = format!("DataTime={}", utc_to_beijing(ts, false));
        let mut out = Vec::new();
        let mut cp = head.clone();
        for s in samples {
            let metric = s.metric.as_str();
            let code = self.cfg.code_for(metric);
            if !valid_code(&code) {
                warn!(device = %self.dev, metric, "metric name cannot be an HJ 212 code; sample not sent");
                continue;
            }
            if code == metric
                && !DEFAULT_CODES.iter().any(|(_, c)| *c == code)
                && self.warned_codes.insert(code.clone())
            {
                info!(device = %self.dev, metric, "no HJ 212 code configured for the metric; sent under its own name");
            }
            if !s.value.is_finite() {
                continue;
            }
            let flag = self.cfg.flag_at(ts, metric).letter();
            let item = format!(";{code}-Rtd={},{code}-Flag={flag}", round3(s.value));
            if cp.len() + item.len() > MAX_CP_LEN && cp != head {
                out.push(std::mem::replace(&mut cp, head.clone()));
            }
            cp.push_str(&item);
        }
        if cp != head {
            out.push(cp);
        }
        out
    }

    fn next_qn(&mut self) -> String {
        let mut now = Utc::now();
        let mut qn = utc_to_beijing(now, true);
        while qn <= self.last_qn {
            now += chrono::Duration::milliseconds(1);
            qn = utc_to_beijing(now, true);
        }
        self.last_qn = qn.clone();
        qn
    }

    fn update_gauges(&mut self) {
        m::QUEUE_DEPTH
            .with_label_values(&[&self.dev])
            .set(self.queue.pending() as i64);
        m::QUEUE_BYTES
            .with_label_values(&[&self.dev])
            .set(self.queue.bytes() as i64);
        let oldest = self.queue.oldest_pending().map_or(0.0, |p| {
            (Utc::now().timestamp_millis() - p.appended_ms).max(0) as f64 / 1000.0
        });
        m::UNACKED_OLDEST
            .with_label_values(&[&self.dev])
            .set(oldest);
        let dropped = self.queue.dropped_total().batches;
        m::DROPPED
            .with_label_values(&[&self.dev])
            .inc_by(dropped.saturating_sub(self.last_dropped));
        self.last_dropped = self.last_dropped.max(dropped);
        if self.queue.sync_due() {
            if let Err(e) = self.queue.sync() {
                warn!(device = %self.dev, error = %e, "syncing the queue");
            }
        }
    }

    fn finish(&mut self) {
        if let Err(e) = self.queue.sync() {
            warn!(device = %self.dev, error = %e, "syncing the queue");
        }
        if let Err(e) = self.state.save(true) {
            warn!(device = %self.dev, error = %format!("{e:#}"), "saving agent state");
        }
        self.update_gauges();
        m::CONNECTED.with_label_values(&[&self.dev]).set(0);
    }
}

/// Values as a logger prints them: at most 3 decimals.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The QN of one of our own queued frames.
fn qn_of(frame: &[u8]) -> Option<String> {
    let mut f = Framer::new(MAX_DATA_LEN);
    f.push(frame);
    let data = f.next_frame()?.ok()?;
    Packet::parse(&data).ok()?.qn
}

async fn read_some(conn: Option<&mut Connection>, buf: &mut [u8]) -> std::io::Result<usize> {
    match conn {
        Some(c) => c.read.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn write_frame(c: &mut Connection, frame: &[u8]) -> Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, c.write.write_all(frame))
        .await
        .context("write timed out")??;
    Ok(())
}

async fn write_packet(c: &mut Connection, p: &Packet) -> Result<()> {
    let frame = p
        .encode()
        .map_err(|e| anyhow::anyhow!("encoding {}: {e}", p.cn))?;
    write_frame(c, &frame).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Hj212Config {
        toml::from_str("server = \"127.0.0.1:9212\"\nmn = \"SQ01\"\npw = \"123456\"\n[codes]\nnoise = \"N01\"\n").unwrap()
    }

    #[test]
    fn defaults_and_codes() {
        let c = config();
        assert_eq!(
            (c.st.as_str(), c.reply_timeout_ms, c.retries),
            ("22", 10_000, 3)
        );
        assert_eq!(c.code_for("pm10"), "a34002");
        assert_eq!(c.code_for("pm25"), "a34004");
        assert_eq!(c.code_for("temperature"), "a01001");
        assert_eq!(c.code_for("noise"), "N01");
        assert_eq!(c.code_for("agent.queue_depth"), "agent.queue_depth");
        c.validate().unwrap();
    }

    #[test]
    fn validation() {
        let mut c = config();
        c.mn = "has space".into();
        assert!(c.validate().is_err());
        let mut c = config();
        c.pw = "a;b".into();
        assert!(c.validate().is_err());
        let mut c = config();
        c.rtd_interval_s = Some(5);
        assert!(c.validate().is_err());
        let mut c = config();
        c.server = "nohost".into();
        assert!(c.validate().is_err());
        let mut c = config();
        c.codes.insert("pm10".into(), "a-1".into());
        assert!(c.validate().is_err());
        assert!(toml::from_str::<Hj212Config>(
            "server = \"h:1\"\nmn = \"A\"\npw = \"1\"\ncolour = 1\n"
        )
        .is_err());
    }

    #[test]
    fn flag_periods_mark_values_in_their_window() {
        let c: Hj212Config = toml::from_str(
            "server = \"h:1\"\nmn = \"A\"\npw = \"1\"\n\
             [[flag_periods]]\nflag = \"M\"\nevery_s = 600\nfor_s = 60\noffset_s = 120\n\
             [[flag_periods]]\nflag = \"D\"\nevery_s = 100\nfor_s = 10\nmetrics = [\"pm10\"]\n",
        )
        .unwrap();
        c.validate().unwrap();
        let at = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap();
        assert_eq!(c.flag_at(at(600 * 7 + 120), "noise"), DataFlag::Maintenance);
        assert_eq!(c.flag_at(at(600 * 7 + 179), "noise"), DataFlag::Maintenance);
        assert_eq!(c.flag_at(at(600 * 7 + 180), "noise"), DataFlag::Normal);
        assert_eq!(c.flag_at(at(600 * 7 + 119), "noise"), DataFlag::Normal);
        assert_eq!(c.flag_at(at(1005), "pm10"), DataFlag::Fault);
        assert_eq!(c.flag_at(at(1005), "noise"), DataFlag::Normal);
        // The first period that covers a value wins.
        assert_eq!(c.flag_at(at(120), "pm10"), DataFlag::Maintenance);
        assert!(toml::from_str::<Hj212Config>(
            "server = \"h:1\"\nmn = \"A\"\npw = \"1\"\n[[flag_periods]]\nflag = \"X\"\nevery_s = 1\nfor_s = 1\n"
        )
        .is_err());
        let mut bad = c.clone();
        bad.flag_periods[0].for_s = 601;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn qn_of_reads_our_frames() {
        let p = Packet {
            qn: Some("20261127100000000".into()),
            st: Some("22".into()),
            cn: "2011".into(),
            pw: Some("1".into()),
            mn: "A".into(),
            flag: Some(Flag(5)),
            pnum: None,
            pno: None,
            cp: String::new(),
        };
        assert_eq!(
            qn_of(&p.encode().unwrap()).as_deref(),
            Some("20261127100000000")
        );
        assert_eq!(qn_of(b"garbage"), None);
    }
}
