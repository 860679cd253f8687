//! Delivery end to end against real servers on loopback: a PostgreSQL test database, an HTTP
//! receiver (axum) that checks webhook and DingTalk signatures and plays WeCom and DingTalk robots,
//! and an SMTP sink written here. A task event goes through the fan-out to every kind of channel;
//! a flaky receiver is retried with backoff until it takes the message, every attempt recorded; a
//! slow one delays nobody else; a dead one is given up after the last attempt.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use chrono::Utc;
use hmac::{Hmac, Mac};
use offsite_store::notifications::{ChannelSettings, DeliveryRecord, DeliveryState, NoticeKind};
use offsite_store::testing::TestDb;
use offsite_store::Store;
use offsite_workflow::notify::{Backoff, Notifier, NotifyConfig, NotifyWorker, SmtpConfig};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const WEBHOOK_SECRET: &str = "whsec-测试-2026";
const DINGTALK_SECRET: &str = "SEC0123456789abcdef";

/// What the HTTP receiver saw.
#[derive(Default)]
struct Inbox {
    /// (path, headers, body) of every request that passed the receiver's checks.
    accepted: Mutex<Vec<(String, HeaderMap, Value)>>,
    /// Requests refused for a bad signature.
    bad_signatures: AtomicUsize,
    /// Requests to the flaky robot so far.
    flaky_calls: AtomicUsize,
    down_calls: AtomicUsize,
}

fn hmac(secret: &str, data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

async fn webhook(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let expected = format!("sha256={}", hex::encode(hmac(WEBHOOK_SECRET, &body)));
    let sent = headers.get("x-offsite-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    let ts_ok = headers
        .get("x-offsite-timestamp")
        .and_then(|v| v.to_str().ok()?.parse::<i64>().ok())
        .is_some_and(|ts| (Utc::now().timestamp() - ts).abs() < 300);
    if sent != expected || !ts_ok {
        inbox.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    inbox.accepted.lock().unwrap().push(("/hook".into(), headers, v));
    StatusCode::NO_CONTENT
}

/// A WeCom group robot: wants markdown content.
async fn wecom(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, Json(v): Json<Value>) -> Json<Value> {
    if v["msgtype"] != "markdown" || !v["markdown"]["content"].is_string() {
        return Json(json!({"errcode": 40008, "errmsg": "invalid message type"}));
    }
    inbox.accepted.lock().unwrap().push(("/wecom".into(), headers, v));
    Json(json!({"errcode": 0, "errmsg": "ok"}))
}

/// A DingTalk group robot with signing: checks `timestamp` and `sign` as DingTalk does.
async fn dingtalk(
    State(inbox): State<Arc<Inbox>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(v): Json<Value>,
) -> Json<Value> {
    let ts: i64 = q.get("timestamp").and_then(|t| t.parse().ok()).unwrap_or(0);
    let expected = base64::engine::general_purpose::STANDARD
        .encode(hmac(DINGTALK_SECRET, format!("{ts}\n{DINGTALK_SECRET}").as_bytes()));
    let fresh = (Utc::now().timestamp_millis() - ts).abs() < 3_600_000;
    if q.get("access_token").map(String::as_str) != Some("tok") || q.get("sign") != Some(&expected) || !fresh {
        inbox.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return Json(json!({"errcode": 310000, "errmsg": "sign not match"}));
    }
    if v["msgtype"] != "markdown" || !v["markdown"]["title"].is_string() || !v["markdown"]["text"].is_string() {
        return Json(json!({"errcode": 40035, "errmsg": "missing markdown"}));
    }
    inbox.accepted.lock().unwrap().push(("/dingtalk".into(), headers, v));
    Json(json!({"errcode": 0, "errmsg": "ok"}))
}

/// Fails twice with 500, then answers 200 with a robot error, then takes the message.
async fn flaky(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, Json(v): Json<Value>) -> (StatusCode, Json<Value>) {
    match inbox.flaky_calls.fetch_add(1, Ordering::SeqCst) {
        0 | 1 => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "busy"}))),
        2 => (StatusCode::OK, Json(json!({"errcode": 45009, "errmsg": "api freq out of limit"}))),
        _ => {
            inbox.accepted.lock().unwrap().push(("/flaky".into(), headers, v));
            (StatusCode::OK, Json(json!({"errcode": 0, "errmsg": "ok"})))
        }
    }
}

async fn slow() -> StatusCode {
    tokio::time::sleep(Duration::from_secs(20)).await;
    StatusCode::OK
}

async fn down(State(inbox): State<Arc<Inbox>>) -> StatusCode {
    inbox.down_calls.fetch_add(1, Ordering::SeqCst);
    StatusCode::BAD_GATEWAY
}

async fn receiver() -> Result<(SocketAddr, Arc<Inbox>)> {
    let inbox = Arc::new(Inbox::default());
    let app = Router::new()
        .route("/hook", post(webhook))
        .route("/wecom", post(wecom))
        .route("/dingtalk", post(dingtalk))
        .route("/flaky", post(flaky))
        .route("/slow", post(slow))
        .route("/down", post(down))
        .with_state(inbox.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, inbox))
}

/// A mail received by the sink.
#[derive(Debug, Clone)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// Enough of an SMTP server to take mail: greeting, EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
async fn smtp_sink() -> Result<(SocketAddr, Arc<Mutex<Vec<Mail>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mails = Arc::new(Mutex::new(Vec::new()));
    let store = mails.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let _ = w.write_all(b"220 sink.test ESMTP ready\r\n").await;
                let (mut from, mut to) = (String::new(), Vec::new());
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_string();
                    let upper = cmd.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
                    } else if upper.starts_with("HELO") {
                        b"250 sink.test\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        from = address(&cmd[10..]);
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        to.push(address(&cmd[8..]));
                        b"250 OK\r\n"
                    } else if upper == "DATA" {
                        let _ = w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" || line == ".\n" {
                                break;
                            }
                            // Dot-stuffing.
                            data.push_str(line.strip_prefix('.').unwrap_or(&line));
                        }
                        store.lock().unwrap().push(Mail { from: from.clone(), to: std::mem::take(&mut to), data });
                        b"250 OK queued\r\n"
                    } else if upper == "RSET" || upper == "NOOP" {
                        b"250 OK\r\n"
                    } else if upper == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"502 not implemented\r\n"
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((addr, mails))
}

/// `<a@b>` plus any parameters -> `a@b`.
fn address(s: &str) -> String {
    let s = s.trim();
    let inner = s.strip_prefix('<').and_then(|r| r.split('>').next()).unwrap_or(s);
    inner.to_string()
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`) in an unfolded header.
fn decode_header(v: &str) -> String {
    let mut out = String::new();
    let mut bytes = Vec::new();
    for token in v.split_whitespace() {
        let parts: Vec<&str> = token.split('?').collect();
        if parts.len() == 5 && parts[0] == "=" && parts[4] == "=" {
            match parts[2].to_ascii_lowercase().as_str() {
                "b" => bytes.extend(base64::engine::general_purpose::STANDARD.decode(parts[3]).unwrap()),
                _ => bytes.extend(quoted_printable(&parts[3].replace('_', " "))),
            }
        } else {
            out.push_str(&String::from_utf8(std::mem::take(&mut bytes)).unwrap());
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(token);
        }
    }
    out.push_str(&String::from_utf8(bytes).unwrap());
    out
}

fn quoted_printable(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() + 1 {
            if b.get(i + 1) == Some(&b'\r') || b.get(i + 1) == Some(&b'\n') {
                // Soft line break.
                i += if b.get(i + 1) == Some(&b'\r') { 3 } else { 2 };
                continue;
            }
            if let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Headers (unfolded, lower-case names) and the decoded text body of a simple text/plain message.
fn parse_mail(data: &str) -> (HashMap<String, String>, String) {
    let data = data.replace("\r\n", "\n");
    let (head, body) = data.split_once("\n\n").unwrap();
    let mut headers: HashMap<String, String> = HashMap::new();
    let mut last = String::new();
    for l in head.lines() {
        if l.starts_with([' ', '\t']) {
            headers.get_mut(&last).unwrap().push_str(l);
        } else if let Some((k, v)) = l.split_once(':') {
            last = k.trim().to_ascii_lowercase();
            headers.insert(last.clone(), v.trim().to_string());
        }
    }
    let body = match headers.get("content-transfer-encoding").map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("base64") => String::from_utf8(
            base64::engine::general_purpose::STANDARD.decode(body.split_whitespace().collect::<String>()).unwrap(),
        )
        .unwrap(),
        Some("quoted-printable") => String::from_utf8(quoted_printable(body)).unwrap(),
        _ => body.to_string(),
    };
    (headers, body)
}

struct World {
    db: TestDb,
    ecology: i64,
}

async fn world() -> Result<World> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    let ecology = db.store.department_by_code("ecology").await?.unwrap().id;
    Ok(World { db, ecology })
}

async fn channel(
    store: &Store,
    dept: i64,
    kind: &str,
    url: Option<String>,
    recipients: &[&str],
    secret: Option<&str>,
) -> Result<i64> {
    let recipients: Vec<String> = recipients.iter().map(|s| s.to_string()).collect();
    let s = ChannelSettings::parse(kind, &format!("{kind} 通道"), url.as_deref(), &recipients, None, true)?;
    Ok(store.insert_channel(dept, &s, secret, "admin").await?.unwrap().id)
}

/// A new task for `dept`, announced by a `dispatched` event.
async fn dispatch(store: &Store, dept: i64) -> Result<i64> {
    let now = Utc::now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO tasks (task_no, title, source, level, department_id, state, sign_limit, handle_limit,
                            dispatched_at, dispatched_by, sign_due)
         VALUES ('RW20260501000077', '河道排污口水质超标', 'warning', 1, $1, 'dispatched', '30m', '24h', $2, 'mon', $3)
         RETURNING id",
    )
    .bind(dept)
    .bind(now)
    .bind(now + chrono::Duration::minutes(30))
    .fetch_one(store.pool())
    .await?;
    sqlx::query("INSERT INTO task_departments (task_id, department_id, role) VALUES ($1, $2, 'lead')")
        .bind(id)
        .bind(dept)
        .execute(store.pool())
        .await?;
    sqlx::query(
        "INSERT INTO task_events (task_id, at, actor, action, department_id) VALUES ($1, now(), 'mon', 'dispatched', $2)",
    )
    .bind(id)
    .bind(dept)
    .execute(store.pool())
    .await?;
    Ok(id)
}

async fn deliveries_of(store: &Store, channel: i64) -> Result<Vec<DeliveryRecord>> {
    Ok(store.channel_deliveries(channel, 100, 0).await?.0)
}

/// Waits until `check` holds (or fails the test after `limit`).
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fast_config(smtp_port: u16) -> NotifyConfig {
    NotifyConfig {
        public_url: Some("https://jg.example.gov.cn".into()),
        smtp: SmtpConfig {
            host: Some("127.0.0.1".into()),
            port: smtp_port,
            from: "非现场监管平台 <noreply@jg.example.gov.cn>".into(),
            starttls: false,
            username: None,
            password: None,
        },
        ..NotifyConfig::default()
    }
}

#[tokio::test]
async fn every_channel_kind_receives_a_new_task() -> Result<()> {
    let w = world().await?;
    let s = &w.db.store;
    let (http, inbox) = receiver().await?;
    let (smtp, mails) = smtp_sink().await?;
    let hook = channel(s, w.ecology, "webhook", Some(format!("http://{http}/hook")), &[], Some(WEBHOOK_SECRET)).await?;
    let wecom = channel(s, w.ecology, "wecom", Some(format!("http://{http}/wecom?key=k1")), &[], None).await?;
    let ding = channel(
        s,
        w.ecology,
        "dingtalk",
        Some(format!("http://{http}/dingtalk?access_token=tok")),
        &[],
        Some(DINGTALK_SECRET),
    )
    .await?;
    let mail = channel(s, w.ecology, "email", None, &["duty@eco.example.cn", "chief@eco.example.cn"], None).await?;
    let task = dispatch(s, w.ecology).await?;

    let cfg = fast_config(smtp.port());
    let worker = NotifyWorker::spawn_notifier(
        Notifier::with(s.clone(), &cfg, cfg.backoff(), Duration::from_secs(5))?,
        Duration::from_millis(50),
    );
    eventually(Duration::from_secs(20), "four deliveries", || async {
        let mut done = 0;
        for c in [hook, wecom, ding, mail] {
            done += deliveries_of(s, c).await?.iter().filter(|d| d.state() == DeliveryState::Delivered).count();
        }
        Ok(done == 4)
    })
    .await?;
    worker.shutdown().await;
    assert_eq!(inbox.bad_signatures.load(Ordering::SeqCst), 0, "every signature verified");

    let accepted = inbox.accepted.lock().unwrap().clone();
    let by_path: HashMap<&str, &(String, HeaderMap, Value)> = accepted.iter().map(|a| (a.0.as_str(), a)).collect();
    let (_, headers, body) = by_path["/hook"];
    assert_eq!(body["event"], "new_task");
    assert_eq!(body["task_id"], task);
    assert_eq!(body["link"], format!("https://jg.example.gov.cn/tasks/{task}"));
    assert!(body["title"].as_str().unwrap().contains("河道排污口水质超标"), "{body}");
    assert!(body["body"].as_str().unwrap().contains("一级（红色）"), "{body}");
    let delivery_id = deliveries_of(s, hook).await?[0].id;
    assert_eq!(body["delivery_id"], delivery_id);
    assert_eq!(headers["x-offsite-delivery"], delivery_id.to_string().as_str());
    assert_eq!(headers["x-offsite-event"], "new_task");
    let content = by_path["/wecom"].2["markdown"]["content"].as_str().unwrap();
    assert!(content.starts_with("### 新任务：RW20260501000077"), "{content}");
    assert_eq!(
        by_path["/dingtalk"].2["markdown"]["title"].as_str().unwrap(),
        "新任务：RW20260501000077「河道排污口水质超标」"
    );

    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.from, "noreply@jg.example.gov.cn");
    let mut to = m.to.clone();
    to.sort();
    assert_eq!(to, vec!["chief@eco.example.cn", "duty@eco.example.cn"]);
    let (headers, text) = parse_mail(&m.data);
    assert_eq!(decode_header(&headers["subject"]), "【非现场监管】新任务：RW20260501000077「河道排污口水质超标」");
    assert!(headers["content-type"].to_ascii_lowercase().contains("charset=utf-8"), "{headers:?}");
    assert!(text.contains(&format!("查看详情：https://jg.example.gov.cn/tasks/{task}")), "{text}");
    assert!(text.contains("New task: RW20260501000077"), "English below: {text}");

    // Every attempt is on record, and the counters moved.
    for c in [hook, wecom, ding, mail] {
        let d = &deliveries_of(s, c).await?[0];
        assert_eq!(d.kind, NoticeKind::NewTask);
        assert_eq!(d.attempt_log.len(), 1);
        assert!(d.attempt_log[0].ok);
    }
    assert_eq!(deliveries_of(s, mail).await?[0].last_status, Some(250));
    let families = prometheus::default_registry().gather();
    let delivered: f64 = families
        .iter()
        .filter(|f| f.name() == "offsite_deliveries_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.name() == "outcome" && l.value() == "delivered"))
        .map(|m| m.get_counter().get_value())
        .sum();
    assert!(delivered >= 4.0, "{delivered}");
    Ok(())
}

#[tokio::test]
async fn failures_are_retried_with_backoff_and_a_slow_channel_blocks_nobody() -> Result<()> {
    let w = world().await?;
    let s = &w.db.store;
    let (http, inbox) = receiver().await?;
    let flaky = channel(s, w.ecology, "wecom", Some(format!("http://{http}/flaky")), &[], None).await?;
    let slow = channel(s, w.ecology, "webhook", Some(format!("http://{http}/slow")), &[], None).await?;
    let fast = channel(s, w.ecology, "webhook", Some(format!("http://{http}/hook")), &[], Some(WEBHOOK_SECRET)).await?;
    let dead = channel(s, w.ecology, "dingtalk", Some(format!("http://{http}/down")), &[], None).await?;
    dispatch(s, w.ecology).await?;

    let cfg = NotifyConfig { max_attempts: 4, ..fast_config(1) };
    let backoff = Backoff { delays: vec![Duration::from_millis(300), Duration::from_millis(600)], max_attempts: 4 };
    let timeout = Duration::from_millis(800);
    let worker =
        NotifyWorker::spawn_notifier(Notifier::with(s.clone(), &cfg, backoff, timeout)?, Duration::from_millis(50));

    // The fast channel is delivered while the slow one is still waiting for its first answer.
    eventually(Duration::from_secs(10), "the fast channel", || async {
        Ok(deliveries_of(s, fast).await?.first().is_some_and(|d| d.state() == DeliveryState::Delivered))
    })
    .await?;
    let fast_done = deliveries_of(s, fast).await?[0].attempt_log[0].at;
    eventually(Duration::from_secs(30), "the flaky robot to take it and the dead one to be given up", || async {
        Ok(deliveries_of(s, flaky).await?.first().is_some_and(|d| d.state() == DeliveryState::Delivered)
            && deliveries_of(s, dead).await?.first().is_some_and(|d| d.state() == DeliveryState::Failed)
            && deliveries_of(s, slow).await?.first().is_some_and(|d| d.attempts >= 2))
    })
    .await?;
    worker.shutdown().await;

    let f = &deliveries_of(s, flaky).await?[0];
    let log: Vec<(bool, Option<i32>)> = f.attempt_log.iter().map(|a| (a.ok, a.status)).collect();
    assert_eq!(log, vec![(false, Some(500)), (false, Some(500)), (false, Some(200)), (true, Some(200))]);
    assert_eq!(f.attempts, 4);
    assert!(f.attempt_log[2].error.as_deref().unwrap().contains("errcode 45009"), "{:?}", f.attempt_log[2]);
    assert_eq!(f.last_error, None);
    // Waits between attempts follow the backoff: 300 ms, then 600 ms (the last delay repeats).
    let gaps: Vec<i64> = f.attempt_log.windows(2).map(|p| (p[1].at - p[0].at).num_milliseconds()).collect();
    assert!(gaps[0] >= 300 && gaps[1] >= 600 && gaps[2] >= 600, "{gaps:?}");
    assert_eq!(inbox.flaky_calls.load(Ordering::SeqCst), 4);

    let d = &deliveries_of(s, dead).await?[0];
    assert_eq!(d.attempts, 4, "max_attempts");
    assert!(d.attempt_log.iter().all(|a| !a.ok && a.status == Some(502)));
    assert!(d.failed_at.is_some());
    assert_eq!(inbox.down_calls.load(Ordering::SeqCst), 4, "not tried again once failed");

    let sl = &deliveries_of(s, slow).await?[0];
    assert!(sl.attempt_log.iter().all(|a| !a.ok && a.error.as_deref().unwrap_or("").contains("timed out")), "{sl:?}");
    assert!(fast_done < sl.attempt_log[0].at, "the fast channel did not wait for the slow one");
    Ok(())
}

#[tokio::test]
async fn two_workers_deliver_each_message_once() -> Result<()> {
    let w = world().await?;
    let s = &w.db.store;
    let (http, inbox) = receiver().await?;
    let hook = channel(s, w.ecology, "webhook", Some(format!("http://{http}/hook")), &[], Some(WEBHOOK_SECRET)).await?;
    for _ in 0..30 {
        s.queue_delivery(hook, &offsite_store::notifications::NoticeContent::channel_test("群", "admin", Utc::now()))
            .await?;
    }
    let cfg = fast_config(1);
    let a = Notifier::with(s.clone(), &cfg, cfg.backoff(), Duration::from_secs(5))?;
    let b = Notifier::with(s.clone(), &cfg, cfg.backoff(), Duration::from_secs(5))?;
    let mut sent = 0;
    while sent < 30 {
        let (x, y) = tokio::join!(a.deliver_due(), b.deliver_due());
        let n = x? + y?;
        assert!(n > 0, "deliveries left behind");
        sent += n;
    }
    assert_eq!(sent, 30);
    let ids: std::collections::BTreeSet<i64> =
        inbox.accepted.lock().unwrap().iter().map(|(_, _, v)| v["delivery_id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 30);
    assert_eq!(inbox.accepted.lock().unwrap().len(), 30, "each once");
    Ok(())
}
