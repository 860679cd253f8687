//! What each channel kind sends, and how an answer is judged.
//!
//! - **Generic webhook**: `POST` of a JSON document ([`WebhookBody`]) with
//!   `X-Offsite-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the channel secret>`
//!   (when a secret is set), `X-Offsite-Timestamp` (Unix seconds), `X-Offsite-Event` and
//!   `X-Offsite-Delivery` (the delivery id: the same on every retry, so a receiver can drop
//!   repeats). Any 2xx is success.
//! - **WeCom (企业微信) group robot**: `POST {"msgtype":"markdown","markdown":{"content":...}}` to the
//!   robot's URL (it carries the key).
//! - **DingTalk (钉钉) group robot**: `POST {"msgtype":"markdown","markdown":{"title":..,"text":..}}`;
//!   with a secret ("加签"), `&timestamp=<ms>&sign=<urlencoded base64 HMAC-SHA256 of
//!   "<ms>\n<secret>" keyed with the secret>` is appended to the URL, as DingTalk documents.
//!   Both robots answer HTTP 200 with `{"errcode":..,"errmsg":..}`: a non-zero `errcode` is a
//!   failure.
//! - **E-mail**: one message to the channel's recipients through the configured SMTP server,
//!   subject and body in Chinese (UTF-8) with the English text below.

use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use offsite_store::calendar::china;
use offsite_store::notifications::{ChannelKind, ClaimedDelivery, NoticeContent};
use serde::Serialize;
use sha2::Sha256;

use super::SmtpConfig;

pub const SIGNATURE_HEADER: &str = "x-offsite-signature";
pub const TIMESTAMP_HEADER: &str = "x-offsite-timestamp";
pub const EVENT_HEADER: &str = "x-offsite-event";
pub const DELIVERY_HEADER: &str = "x-offsite-delivery";

/// WeCom refuses markdown content over 4096 bytes; DingTalk's limit is larger. Stay under both.
const ROBOT_MAX_BYTES: usize = 4000;
/// How much of an answer is kept as the error of a failed attempt.
const ANSWER_EXCERPT: usize = 300;

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// HTTP status or SMTP reply code.
    pub status: Option<i32>,
    pub error: Option<String>,
}

impl Outcome {
    fn ok(status: Option<i32>) -> Self {
        Self { ok: true, status, error: None }
    }

    pub fn failed(status: Option<i32>, error: impl Into<String>) -> Self {
        Self { ok: false, status, error: Some(error.into()) }
    }
}

/// What a generic webhook receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookBody<'a> {
    /// The same on every retry of one delivery.
    pub delivery_id: i64,
    /// The notification kind (`new_task`, `red_warning`, ...).
    pub event: &'a str,
    pub title: &'a str,
    pub title_en: &'a str,
    pub body: &'a str,
    pub body_en: &'a str,
    /// Absolute when `notifications.public_url` is set, else a path in the web UI.
    pub link: Option<String>,
    pub task_id: Option<i64>,
    pub warning_id: Option<i64>,
    /// When the event happened (RFC 3339, UTC).
    pub at: String,
}

/// Hex HMAC-SHA256 of `body` keyed with `secret`: the webhook signature (after `sha256=`).
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// DingTalk's signature: base64 HMAC-SHA256 of `"<ms>\n<secret>"` keyed with the secret.
pub fn dingtalk_signature(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The robot URL with DingTalk's `timestamp` and `sign` appended.
pub fn dingtalk_signed_url(url: &str, secret: &str, timestamp_ms: i64) -> String {
    let sign = dingtalk_signature(secret, timestamp_ms);
    let sign = percent_encoding::utf8_percent_encode(&sign, percent_encoding::NON_ALPHANUMERIC);
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}timestamp={timestamp_ms}&sign={sign}")
}

/// A time for people: Beijing time, to the minute.
fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&china()).format("%Y-%m-%d %H:%M").to_string()
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

type HttpClient = offsite_store::https::HttpsClient;

/// Longest robot or webhook answer read (the rest is not needed to judge it).
const ANSWER_MAX_BYTES: usize = 64 << 10;

/// Sends deliveries; cheap to share between tasks.
#[derive(Clone)]
pub struct Sender {
    http: HttpClient,
    timeout: Duration,
    smtp: Option<Smtp>,
    public_url: Option<String>,
}

#[derive(Clone)]
struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Sender {
    /// `timeout` bounds each HTTP request and SMTP command.
    pub fn new(smtp: &SmtpConfig, public_url: Option<&str>, timeout: Duration) -> Result<Self> {
        // reqwest and lettre use rustls with the process-wide provider; the broker installs the
        // same one, and whoever comes first wins.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = http_client(timeout)?;
        let smtp = match smtp.host.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
            None => None,
            Some(host) => {
                let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(smtp.port)
                    .timeout(Some(timeout));
                if smtp.starttls {
                    b = b.tls(Tls::Required(TlsParameters::new(host.to_owned()).context("SMTP TLS settings")?));
                }
                if let (Some(u), Some(p)) = (&smtp.username, &smtp.password) {
                    b = b.credentials(Credentials::new(u.clone(), p.clone()));
                }
                let from: Mailbox =
                    smtp.from.parse().with_context(|| format!("notifications.smtp.from {:?}", smtp.from))?;
                Some(Smtp { transport: b.build(), from })
            }
        };
        let public_url = public_url.map(|u| u.trim().trim_end_matches('/').to_owned()).filter(|u| !u.is_empty());
        Ok(Self { http, timeout, smtp, public_url })
    }

    /// The link as the receiver should see it.
    fn link(&self, c: &NoticeContent) -> Option<String> {
        let path = c.link.as_deref()?;
        Some(match &self.public_url {
            Some(base) => format!("{base}{path}"),
            None => path.to_owned(),
        })
    }

    /// Markdown for the group robots: the Chinese title and body, the English title, the link.
    pub fn markdown(&self, c: &NoticeContent) -> String {
        let mut s = format!("### {}\n\n", c.title_zh);
        if !c.body_zh.is_empty() {
            s.push_str(&format!("{}\n\n", c.body_zh));
        }
        s.push_str(&format!("> {}\n\n", c.title_en));
        if let Some(link) = self.link(c) {
            s.push_str(&format!("[查看详情 / Details]({link})\n\n"));
        }
        s.push_str(&format!("<font color=\"comment\">{}（北京时间）</font>", local(c.at)));
        cut(&s, ROBOT_MAX_BYTES).to_owned()
    }

    pub fn webhook_body(&self, d: &ClaimedDelivery) -> Vec<u8> {
        let c = &d.content;
        let body = WebhookBody {
            delivery_id: d.id,
            event: d.kind.as_str(),
            title: &c.title_zh,
            title_en: &c.title_en,
            body: &c.body_zh,
            body_en: &c.body_en,
            link: self.link(c),
            task_id: c.task_id,
            warning_id: c.warning_id,
            at: c.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        };
        serde_json::to_vec(&body).expect("serialisable")
    }

    /// One attempt at a delivery. Never panics and never errs: every failure is an [`Outcome`].
    pub async fn send(&self, d: &ClaimedDelivery) -> Outcome {
        let ch = &d.channel;
        match ch.kind {
            ChannelKind::Email => self.email(d).await,
            kind => {
                let Some(url) = ch.url.as_deref() else {
                    return Outcome::failed(None, "channel has no URL");
                };
                let (url, body, headers) = match kind {
                    ChannelKind::Webhook => {
                        let body = self.webhook_body(d);
                        let mut headers = vec![
                            (TIMESTAMP_HEADER, Utc::now().timestamp().to_string()),
                            (EVENT_HEADER, d.kind.as_str().to_owned()),
                            (DELIVERY_HEADER, d.id.to_string()),
                        ];
                        if let Some(secret) = ch.secret.as_deref() {
                            headers.push((SIGNATURE_HEADER, format!("sha256={}", webhook_signature(secret, &body))));
                        }
                        (url.to_owned(), body, headers)
                    }
                    ChannelKind::Wecom => {
                        let body = serde_json::json!({"msgtype": "markdown", "markdown": {"content": self.markdown(&d.content)}});
                        (url.to_owned(), serde_json::to_vec(&body).expect("serialisable"), Vec::new())
                    }
                    _ => {
                        let body = serde_json::json!({
                            "msgtype": "markdown",
                            "markdown": {"title": d.content.title_zh, "text": self.markdown(&d.content)},
                        });
                        let url = match ch.secret.as_deref() {
                            Some(secret) => dingtalk_signed_url(url, secret, Utc::now().timestamp_millis()),
                            None => url.to_owned(),
                        };
                        (url, serde_json::to_vec(&body).expect("serialisable"), Vec::new())
                    }
                };
                self.post(kind, &url, body, headers).await
            }
        }
    }

    async fn post(&self, kind: ChannelKind, url: &str, body: Vec<u8>, headers: Vec<(&str, String)>) -> Outcome {
        // A channel URL is what the administrator typed: no redirects are followed (the client
        // follows none), and errors never repeat the URL (it holds robot keys).
        let mut req = hyper::Request::post(url)
            .header(hyper::header::CONTENT_TYPE, "application/json; charset=utf-8")
            .header(hyper::header::USER_AGENT, concat!("offsite-notify/", env!("CARGO_PKG_VERSION")));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = match req.body(http_body_util::Full::new(bytes::Bytes::from(body))) {
            Ok(r) => r,
            Err(_) => return Outcome::failed(None, "the channel URL is not a valid http(s) URL"),
        };
        let resp = match tokio::time::timeout(self.timeout, self.http.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Outcome::failed(None, describe(&e)),
            Err(_) => return Outcome::failed(None, "timed out"),
        };
        let status = resp.status();
        let code = Some(i32::from(status.as_u16()));
        use http_body_util::BodyExt;
        let limited = http_body_util::Limited::new(resp.into_body(), ANSWER_MAX_BYTES);
        let text = match tokio::time::timeout(self.timeout, limited.collect()).await {
            Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            _ => String::new(),
        };
        if !status.is_success() {
            return Outcome::failed(code, format!("HTTP {}: {}", status.as_u16(), cut(text.trim(), ANSWER_EXCERPT)));
        }
        if kind == ChannelKind::Webhook {
            return Outcome::ok(code);
        }
        // The robots answer 200 with an error code in the body.
        match serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| {
            let errcode = v.get("errcode")?.as_i64()?;
            Some((errcode, v.get("errmsg").and_then(|m| m.as_str()).unwrap_or("").to_owned()))
        }) {
            Some((0, _)) => Outcome::ok(code),
            Some((errcode, errmsg)) => {
                Outcome::failed(code, format!("errcode {errcode}: {}", cut(&errmsg, ANSWER_EXCERPT)))
            }
            None => Outcome::failed(code, format!("unexpected answer: {}", cut(text.trim(), ANSWER_EXCERPT))),
        }
    }

    /// The message an e-mail channel sends.
    pub fn email_message(&self, from: Mailbox, to: &[String], d: &ClaimedDelivery) -> Result<Message> {
        let c = &d.content;
        let mut b = Message::builder().from(from).subject(format!("【非现场监管】{}", c.title_zh));
        for r in to {
            b = b.to(r.parse().with_context(|| format!("recipient {r:?}"))?);
        }
        let mut text = format!("{}\n\n", c.title_zh);
        if !c.body_zh.is_empty() {
            text.push_str(&format!("{}\n\n", c.body_zh));
        }
        if let Some(link) = self.link(c) {
            text.push_str(&format!("查看详情：{link}\n\n"));
        }
        text.push_str(&format!("时间：{}（北京时间）\n\n---\n{}\n", local(c.at), c.title_en));
        if !c.body_en.is_empty() {
            text.push_str(&format!("{}\n", c.body_en));
        }
        text.push_str("\n此邮件由系统自动发送，请勿回复。/ Sent automatically; please do not reply.\n");
        Ok(b.header(ContentType::TEXT_PLAIN).body(text)?)
    }

    async fn email(&self, d: &ClaimedDelivery) -> Outcome {
        let Some(smtp) = &self.smtp else {
            return Outcome::failed(None, "SMTP not configured (notifications.smtp.host)");
        };
        let msg = match self.email_message(smtp.from.clone(), &d.channel.recipients, d) {
            Ok(m) => m,
            Err(e) => return Outcome::failed(None, format!("{e:#}")),
        };
        match smtp.transport.send(msg).await {
            Ok(resp) => Outcome::ok(Some(i32::from(u16::from(resp.code())))),
            Err(e) => Outcome::failed(e.status().map(|c| i32::from(u16::from(c))), cut(&e.to_string(), ANSWER_EXCERPT)),
        }
    }
}

/// A transport error without the URL.
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let what = if e.is_connect() { "could not connect" } else { "request failed" };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    // The innermost cause says why (connection refused, certificate unknown, ...).
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {}", cut(&detail, ANSWER_EXCERPT))
    }
}

/// HTTP and HTTPS with the system's trust store and an explicit provider. Without any system
/// roots (a bare container), HTTPS channels fail verification, and say so, until roots are added.
fn http_client(timeout: Duration) -> Result<HttpClient> {
    offsite_store::https::client(timeout, "notification channels")
}

#[cfg(test)]
mod tests {
    use offsite_store::notifications::{ChannelEndpoint, NoticeKind};

    use super::*;

    #[test]
    fn signatures_match_independent_computations() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            webhook_signature("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let url = dingtalk_signed_url("https://robot.example/send?access_token=t", "SECabc", 1_700_000_000_000);
        let sign = url.split("&sign=").nth(1).unwrap();
        assert!(url.contains("&timestamp=1700000000000&sign="), "{url}");
        // URL-encoded base64: no raw '+', '/' or '='.
        assert!(!sign.contains(['+', '/', '=']), "{sign}");
        let decoded = percent_encoding::percent_decode_str(sign).decode_utf8().unwrap();
        assert_eq!(decoded, dingtalk_signature("SECabc", 1_700_000_000_000));
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(decoded.as_bytes()).unwrap().len(), 32);
        assert!(
            dingtalk_signed_url("https://r.example/send", "s", 1).starts_with("https://r.example/send?timestamp=1&")
        );
    }

    fn delivery(kind: ChannelKind) -> ClaimedDelivery {
        ClaimedDelivery {
            id: 7,
            kind: NoticeKind::NewTask,
            content: NoticeContent {
                kind: NoticeKind::NewTask,
                title_zh: "新任务：RW1「扬尘」".into(),
                title_en: "New task: RW1".into(),
                body_zh: "等级：二级（橙色）".into(),
                body_en: "level 2 (orange)".into(),
                link: Some("/tasks/1".into()),
                task_id: Some(1),
                warning_id: None,
                at: DateTime::parse_from_rfc3339("2026-05-01T02:00:00Z").unwrap().with_timezone(&Utc),
            },
            attempts: 0,
            channel: ChannelEndpoint {
                id: 1,
                department_id: 1,
                kind,
                name: "群".into(),
                url: Some("http://127.0.0.1:1/".into()),
                secret: None,
                recipients: vec![],
            },
        }
    }

    #[test]
    fn bodies_carry_the_notice() {
        let s = Sender::new(&SmtpConfig::default(), Some("https://jg.example.cn/"), Duration::from_secs(1)).unwrap();
        let d = delivery(ChannelKind::Webhook);
        let v: serde_json::Value = serde_json::from_slice(&s.webhook_body(&d)).unwrap();
        assert_eq!(v["event"], "new_task");
        assert_eq!(v["delivery_id"], 7);
        assert_eq!(v["link"], "https://jg.example.cn/tasks/1");
        assert_eq!(v["at"], "2026-05-01T02:00:00Z");
        let md = s.markdown(&d.content);
        assert!(md.starts_with("### 新任务"), "{md}");
        assert!(md.contains("2026-05-01 10:00（北京时间）"), "Beijing time: {md}");
        let long = NoticeContent { body_zh: "长".repeat(3000), ..d.content.clone() };
        assert!(s.markdown(&long).len() <= ROBOT_MAX_BYTES);
    }

    #[tokio::test]
    async fn unreachable_and_unconfigured_channels_fail_cleanly() {
        let s = Sender::new(&SmtpConfig::default(), None, Duration::from_secs(2)).unwrap();
        // Port 1 on loopback: nothing listens.
        let o = s.send(&delivery(ChannelKind::Webhook)).await;
        assert!(!o.ok && o.status.is_none(), "{o:?}");
        assert!(o.error.as_deref().unwrap().starts_with("could not connect"), "{o:?}");
        let o = s.send(&delivery(ChannelKind::Email)).await;
        assert_eq!(o, Outcome::failed(None, "SMTP not configured (notifications.smtp.host)"));
    }
}
