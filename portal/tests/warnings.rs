//! Black-box tests of the warnings, rules, silences and maintenance endpoints and the live stream:
//! the real app on a random port against a fresh database, called over HTTP.

use std::time::Duration;

mod common;

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use offsite_portal::{serve, AppState};
use offsite_store::testing::TestDb;
use offsite_store::{Level, NewDevice, NewWarning, WarningChange, WarningRecord};
use offsite_wire::DeviceId;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

/// How long a change may take to reach a stream.
const EVENT_WAIT: Duration = Duration::from_secs(5);

struct App {
    base: String,
    http: reqwest::Client,
    db: TestDb,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<()>>,
}

impl App {
    /// The portal as its own process: it listens on the database for changes.
    async fn spawn() -> Result<Self> {
        Self::spawn_with(None).await
    }

    async fn spawn_with(live: Option<broadcast::Sender<WarningChange>>) -> Result<Self> {
        let db = TestDb::new().await?;
        // Rules refer to published catalog items.
        let item = offsite_store::CatalogFields {
            department: "生态环境局".into(),
            main_item: "大气污染物排放监管".into(),
            method: "非现场监管".into(),
            ..Default::default()
        };
        db.store.catalog_save_draft("GB3095-PM10", &item, None).await?;
        db.store.catalog_publish("GB3095-PM10", None).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut state = AppState::new(db.store.clone());
        if let Some(tx) = live {
            state = state.with_live(tx);
        }
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state, async move {
            let _ = rx.await;
        }));
        let http = authorized_client(&db).await?;
        Ok(Self { base, http, db, shutdown: Some(tx), server })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<(StatusCode, Value)> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        read(req.send().await?, path).await
    }

    async fn get(&self, path: &str) -> Result<(StatusCode, Value)> {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<(StatusCode, Value)> {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Result<(StatusCode, Value)> {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// A raw body with the given content type.
    async fn post_raw(&self, path: &str, ctype: Option<&str>, body: Vec<u8>) -> Result<(StatusCode, Value)> {
        let mut req = self.http.post(self.url(path)).body(body);
        if let Some(c) = ctype {
            req = req.header(reqwest::header::CONTENT_TYPE, c);
        }
        read(req.send().await?, path).await
    }

    async fn add_device(&self, id: &str) -> Result<i32> {
        let d = self
            .db
            .store
            .insert_device(&NewDevice {
                id: DeviceId::parse(id)?,
                name: format!("工地 {id}"),
                object_id: Some(format!("obj-{id}")),
                token_sha256: [7; 32],
                cert_serial: None,
                cert_not_after: None,
            })
            .await?;
        Ok(d.key)
    }

    async fn open(&self, w: &NewWarning) -> Result<WarningRecord> {
        Ok(self.db.store.upsert_warning(w).await?.into_record())
    }
}

async fn read(resp: reqwest::Response, what: &str) -> Result<(StatusCode, Value)> {
    let status = resp.status();
    let text = resp.text().await?;
    if text.is_empty() {
        return Ok((status, Value::Null));
    }
    let json = serde_json::from_str(&text).map_err(|e| anyhow!("{what}: body is not JSON ({e}): {text:?}"))?;
    Ok((status, json))
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap()
}

fn warning(key: &str, device_key: i32, source: &str, level: Level, at: DateTime<Utc>) -> NewWarning {
    NewWarning {
        dedup_key: key.into(),
        source: source.into(),
        source_version: "1.2".into(),
        event: format!("event-{key}"),
        level,
        device_key,
        metric_id: None,
        object_id: None,
        detail: format!("{key} seen"),
        score: 0.5,
        at,
        evidence: json!({"window": [151.0, 160.5, 170.25], "rule": key}),
        group_window: TimeDelta::seconds(30),
    }
}

/// Asserts the JSON error shape and returns the code.
fn assert_error(status: StatusCode, body: &Value, want: StatusCode, what: &str) -> String {
    assert_eq!(status, want, "{what}: {body}");
    let err = &body["error"];
    let code = err["code"].as_str().unwrap_or_else(|| panic!("{what}: no error.code in {body}"));
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: no message in {body}");
    assert!(err["message_zh"].as_str().is_some_and(|m| !m.is_empty()), "{what}: no message_zh in {body}");
    code.to_owned()
}

fn ids(body: &Value) -> Vec<i64> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {body}"))
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn warnings_list_filters_and_detail() -> Result<()> {
    let app = App::spawn().await?;
    let d1 = app.add_device("d1").await?;
    let d2 = app.add_device("d2").await?;
    let w1 = app.open(&warning("k1", d1, "rules", Level::RED, t0())).await?;
    let w2 = app.open(&warning("k2", d1, "model", Level::YELLOW, t0() + TimeDelta::hours(1))).await?;
    let w3 = app.open(&warning("k3", d2, "rules", Level::ORANGE, t0() + TimeDelta::hours(2))).await?;
    app.db.store.resolve_warning("k2", t0() + TimeDelta::hours(3), "cleared").await?.expect("resolved");
    let (w1, w2, w3) = (w1.id, w2.id, w3.id);

    let (status, body) = app.get("/api/v1/warnings").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 3);
    assert_eq!(ids(&body), [w3, w2, w1], "newest first");
    let item = &body["items"][2];
    assert_eq!(item["level"], 1);
    assert_eq!((item["level_name_zh"].as_str(), item["level_name_en"].as_str()), (Some("红色"), Some("red")));
    assert_eq!(item["device_id"], "d1");
    assert_eq!(item["object_id"], "obj-d1");
    assert_eq!(item["source"], "rules");
    assert_eq!(item["first_seen"], "2024-05-01T00:00:00Z");
    assert_eq!(item["open"], true);
    assert_eq!(item["evidence"]["window"][1], 160.5);
    assert!(item.get("device_key").is_none(), "internal key leaked: {item}");
    assert_eq!(body["items"][1]["resolved_at"], "2024-05-01T03:00:00Z");
    assert_eq!(body["items"][1]["resolution"], "cleared");

    for (query, want) in [
        ("open=true", vec![w3, w1]),
        ("open=false", vec![w2]),
        ("level=1", vec![w1]),
        ("level=2", vec![w3, w1]),
        ("level=4", vec![w3, w2, w1]),
        ("device=d1", vec![w2, w1]),
        ("object=obj-d2", vec![w3]),
        ("source=model", vec![w2]),
        ("since=2024-05-01T00:30:00Z", vec![w3, w2]),
        ("until=2024-05-01T08:30:00%2B08:00", vec![w1]),
        ("since=2024-05-01T00:30:00Z&until=2024-05-01T01:30:00Z", vec![w2]),
        ("open=true&device=d1", vec![w1]),
        ("level=&open=", vec![w3, w2, w1]),
    ] {
        let (status, body) = app.get(&format!("/api/v1/warnings?{query}")).await?;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(ids(&body), want, "{query}");
        assert_eq!(body["total"], want.len(), "{query}");
    }
    let group = app.db.store.warning(w3).await?.unwrap().group_id;
    let (_, body) = app.get(&format!("/api/v1/warnings?group={group}")).await?;
    assert_eq!(ids(&body), [w3]);
    let (_, body) = app.get("/api/v1/warnings?limit=1&offset=1").await?;
    assert_eq!((ids(&body), body["total"].as_i64()), (vec![w2], Some(3)));

    for bad in [
        "level=0",
        "level=5",
        "level=red",
        "open=maybe",
        "device=bad-id",
        "since=yesterday",
        "limit=0",
        "limit=1001",
        "offset=-1",
        "group=x",
    ] {
        let (status, body) = app.get(&format!("/api/v1/warnings?{bad}")).await?;
        assert_eq!(assert_error(status, &body, StatusCode::BAD_REQUEST, bad), "bad_request");
    }

    let (status, body) = app.get(&format!("/api/v1/warnings/{w1}")).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], w1);
    assert_eq!(body["evidence"], json!({"window": [151.0, 160.5, 170.25], "rule": "k1"}));
    assert_eq!(body["level_name_en"], "red");
    assert_eq!(body["source_version"], "1.2");

    let (status, body) = app.get("/api/v1/warnings/999999").await?;
    assert_eq!(assert_error(status, &body, StatusCode::NOT_FOUND, "unknown warning"), "not_found");
    assert!(body["error"]["message"].as_str().unwrap().contains("999999"), "{body}");
    let (status, body) = app.get("/api/v1/warnings/abc").await?;
    assert_eq!(assert_error(status, &body, StatusCode::BAD_REQUEST, "non-numeric id"), "bad_request");
    Ok(())
}

#[tokio::test]
async fn manual_resolve_once_then_conflict() -> Result<()> {
    let app = App::spawn().await?;
    let d1 = app.add_device("d1").await?;
    let w = app.open(&warning("k1", d1, "rules", Level::ORANGE, t0())).await?;
    let other = app.open(&warning("k2", d1, "rules", Level::ORANGE, t0())).await?;
    let path = format!("/api/v1/warnings/{}/resolve", w.id);

    // Refusals first: none of them may resolve anything.
    let (status, body) = app.post(&path, json!({"reason": "   "})).await?;
    assert_eq!(assert_error(status, &body, StatusCode::BAD_REQUEST, "blank reason"), "invalid");
    let (status, body) = app.post(&path, json!({})).await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "no reason");
    let (status, body) = app.post(&path, json!({"reason": 5})).await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "reason not a string");
    let (status, body) = app.post_raw(&path, Some("application/json"), b"{\"reason\": ".to_vec()).await?;
    assert_eq!(assert_error(status, &body, StatusCode::BAD_REQUEST, "truncated JSON"), "bad_request");
    let (status, body) = app.post_raw(&path, None, br#"{"reason":"x"}"#.to_vec()).await?;
    assert_error(status, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE, "no content type");
    let huge = format!(r#"{{"reason":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let (status, body) = app.post_raw(&path, Some("application/json"), huge.into_bytes()).await?;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "oversized body");
    assert!(app.db.store.warning(w.id).await?.unwrap().is_open(), "a refused request resolved the warning");

    let (status, body) = app.post(&path, json!({"reason": "现场已处理，洒水降尘"})).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], w.id);
    assert_eq!(body["resolution"], "manual");
    assert_eq!(body["open"], false);
    let resolved_at = body["resolved_at"].as_str().expect("resolved_at");
    assert!(resolved_at.ends_with('Z') && DateTime::parse_from_rfc3339(resolved_at).is_ok(), "{resolved_at}");
    let stored = app.db.store.warning(w.id).await?.unwrap();
    assert_eq!(stored.resolution.as_deref(), Some("manual"));
    assert!(app.db.store.warning(other.id).await?.unwrap().is_open(), "resolved the wrong warning");

    let (status, body) = app.post(&path, json!({"reason": "again"})).await?;
    assert_eq!(assert_error(status, &body, StatusCode::CONFLICT, "second resolve"), "conflict");
    let (status, body) = app.post("/api/v1/warnings/999999/resolve", json!({"reason": "x"})).await?;
    assert_error(status, &body, StatusCode::NOT_FOUND, "unknown warning");
    Ok(())
}

/// One Server-Sent Events connection, read frame by frame.
struct SseClient {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:?}", self.data))
    }
}

impl SseClient {
    async fn connect(app: &App, path: &str) -> Result<Self> {
        // No overall timeout: the body never ends by itself.
        let token = common::token(&app.db.store, "operator").await?;
        let resp = reqwest::Client::new()
            .get(app.url(path))
            .header("accept", "text/event-stream")
            .bearer_auth(token)
            .send()
            .await?;
        assert_eq!(resp.status(), StatusCode::OK);
        let ctype = resp.headers()[reqwest::header::CONTENT_TYPE].to_str()?.to_owned();
        assert!(ctype.starts_with("text/event-stream"), "{ctype}");
        Ok(Self { resp, buf: Vec::new() })
    }

    /// The next event (comment-only frames skipped), or an error if none comes within `within`.
    async fn next(&mut self, within: Duration) -> Result<SseEvent> {
        tokio::time::timeout(within, async {
            loop {
                if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                    let frame = String::from_utf8(self.buf.drain(..pos + 2).collect())?;
                    if let Some(ev) = parse_frame(&frame) {
                        return Ok(ev);
                    }
                    continue;
                }
                match self.resp.chunk().await? {
                    Some(bytes) => self.buf.extend_from_slice(&bytes),
                    None => bail!("the stream ended"),
                }
            }
        })
        .await
        .map_err(|_| anyhow!("no event within {within:?}"))?
    }

    /// Whether the server ends the stream within `within`.
    async fn ends(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async {
            loop {
                match self.resp.chunk().await {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return,
                }
            }
        })
        .await
        .is_ok()
    }
}

fn parse_frame(frame: &str) -> Option<SseEvent> {
    let (mut event, mut id, mut data) = (None, None, Vec::new());
    for line in frame.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_owned()),
            "id" => id = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            _ => {} // "" is a comment (keep-alive)
        }
    }
    if event.is_none() && data.is_empty() {
        return None;
    }
    Some(SseEvent { event: event.unwrap_or_else(|| "message".into()), id, data: data.join("\n") })
}

fn change(id: i64, kind: &str) -> WarningChange {
    WarningChange { id, kind: kind.into() }
}

#[tokio::test]
async fn stream_sends_changes_from_the_in_process_feed() -> Result<()> {
    let tx = broadcast::channel::<WarningChange>(16).0;
    let mut app = App::spawn_with(Some(tx.clone())).await?;
    let d1 = app.add_device("d1").await?;
    let mut all = SseClient::connect(&app, "/api/v1/warnings/stream").await?;
    let mut red_only = SseClient::connect(&app, "/api/v1/warnings/stream?level=1").await?;

    // Streams hold no pool connection while idle: more of them than the pool has connections
    // (8) must leave ordinary requests working.
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(SseClient::connect(&app, "/api/v1/warnings/stream").await?);
    }
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), app.get("/api/v1/warnings")).await??;
    assert_eq!(status, StatusCode::OK, "{body}");

    let yellow = app.open(&warning("k1", d1, "rules", Level::YELLOW, t0())).await?;
    tx.send(change(yellow.id, "opened"))?;
    let ev = all.next(EVENT_WAIT).await?;
    assert_eq!(ev.event, "opened");
    assert_eq!(ev.id.as_deref(), Some(yellow.id.to_string().as_str()));
    let w = ev.json();
    assert_eq!(w["id"], yellow.id);
    assert_eq!(w["device_id"], "d1");
    assert_eq!(w["level_name_en"], "yellow");
    assert_eq!(w["evidence"], json!({"window": [151.0, 160.5, 170.25], "rule": "k1"}));
    assert_eq!(w["first_seen"], "2024-05-01T00:00:00Z");

    // A change of a warning that does not exist is skipped, not sent as an empty event.
    tx.send(change(999_999, "opened"))?;
    let red = app.open(&warning("k2", d1, "rules", Level::RED, t0())).await?;
    tx.send(change(red.id, "opened"))?;
    let ev = all.next(EVENT_WAIT).await?;
    assert_eq!((ev.event.as_str(), ev.json()["id"].as_i64()), ("opened", Some(red.id)));
    // The level filter: the yellow warning never reached the red-only stream.
    let ev = red_only.next(EVENT_WAIT).await?;
    assert_eq!((ev.event.as_str(), ev.json()["id"].as_i64()), ("opened", Some(red.id)), "{ev:?}");

    let resolved = app.db.store.resolve_warning_by_id(red.id, Utc::now(), "manual", None, None).await?.unwrap();
    tx.send(change(resolved.id, "resolved"))?;
    let ev = all.next(EVENT_WAIT).await?;
    assert_eq!((ev.event.as_str(), ev.json()["open"].as_bool()), ("resolved", Some(false)));

    // A receiver that falls behind the broadcast is told so. This test runs on one thread, so
    // nothing is consumed while the loop sends more than the channel holds.
    for _ in 0..100 {
        tx.send(change(yellow.id, "repeated"))?;
    }
    let mut saw_lagged = false;
    for _ in 0..20 {
        let ev = all.next(EVENT_WAIT).await?;
        if ev.event == "lagged" {
            assert!(ev.json()["missed"].as_u64().is_some_and(|n| n > 0), "{ev:?}");
            saw_lagged = true;
            break;
        }
    }
    assert!(saw_lagged, "no lagged event after overflowing the broadcast");

    // Shutdown ends open streams instead of waiting on them forever.
    drop(idle);
    app.shutdown.take().unwrap().send(()).ok();
    assert!(all.ends(EVENT_WAIT).await, "the stream outlived the server");
    tokio::time::timeout(EVENT_WAIT, &mut app.server).await.map_err(|_| anyhow!("server did not stop"))???;
    Ok(())
}

#[tokio::test]
async fn stream_sends_changes_notified_by_the_database() -> Result<()> {
    // No in-process feed: the portal must pick changes up from PostgreSQL NOTIFY.
    let app = App::spawn().await?;
    let d1 = app.add_device("d1").await?;
    let mut stream = SseClient::connect(&app, "/api/v1/warnings/stream").await?;

    let w = app.open(&warning("k1", d1, "model", Level::BLUE, t0())).await?;
    let ev = stream.next(EVENT_WAIT).await?;
    assert_eq!(ev.event, "opened");
    assert_eq!(ev.id, Some(w.id.to_string()));
    assert_eq!(ev.json()["evidence"]["rule"], "k1");
    assert_eq!(ev.json()["level_name_zh"], "蓝色");

    app.open(&warning("k1", d1, "model", Level::BLUE, t0() + TimeDelta::minutes(1))).await?;
    let ev = stream.next(EVENT_WAIT).await?;
    assert_eq!((ev.event.as_str(), ev.json()["count"].as_i64()), ("repeated", Some(2)));

    let (status, body) = app.post(&format!("/api/v1/warnings/{}/resolve", w.id), json!({"reason": "误报"})).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ev = stream.next(EVENT_WAIT).await?;
    assert_eq!((ev.event.as_str(), ev.json()["resolution"].as_str()), ("resolved", Some("manual")));
    assert_eq!(ev.json()["resolution_note"].as_str(), Some("误报"), "the reason is kept");

    let (status, body) = app.get("/api/v1/warnings/stream?level=9").await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "stream level=9");
    Ok(())
}

fn threshold_rule(name: &str, level: u8) -> Value {
    json!({
        "name": name,
        "scope": {"metric": "pm10", "object": "obj-d1"},
        "level": level,
        "condition": {"kind": "threshold", "above": 150, "for_s": 600, "hysteresis": 10},
        "item": "GB3095-PM10"
    })
}

#[tokio::test]
async fn rules_crud_round_trip() -> Result<()> {
    let app = App::spawn().await?;
    let (status, body) = app.get("/api/v1/rules").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The migrations seed the HJ 212 loggers' data-gap rule.
    let seeded = body["total"].as_i64().expect("total");
    assert_eq!(seeded, 1, "{body}");

    let (status, created) = app.post("/api/v1/rules", threshold_rule("PM10 超标", 2)).await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["name"], "PM10 超标");
    assert_eq!(created["level"], 2);
    assert_eq!(created["enabled"], true);
    assert_eq!(created["scope"]["metric"], "pm10");
    assert_eq!(created["condition"]["kind"], "threshold");
    assert_eq!(created["condition"]["above"], 150.0);
    assert_eq!(created["item"], "GB3095-PM10");
    let mut unknown = threshold_rule("unknown item", 2);
    unknown["item"] = json!("NO-SUCH-ITEM");
    let (status, body) = app.post("/api/v1/rules", unknown).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("item:"));
    assert_eq!(app.db.store.rule(id).await?.expect("stored").name, "PM10 超标");

    let (status, body) = app
        .post(
            "/api/v1/rules",
            json!({"name": "断线", "level": 4,
        "condition": {"kind": "data_gap", "max_gap_s": 900}}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = app.get("/api/v1/rules").await?;
    assert_eq!(ids(&body)[1..], [id, body["items"][2]["id"].as_i64().unwrap()]);
    assert_eq!(body["total"], seeded + 2);

    let mut changed = threshold_rule("PM10 严重超标", 1);
    changed["enabled"] = json!(false);
    let (status, body) = app.put(&format!("/api/v1/rules/{id}"), changed).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["level"].as_i64(), body["enabled"].as_bool()), (Some(1), Some(false)));
    let (_, body) = app.get(&format!("/api/v1/rules/{id}")).await?;
    assert_eq!(body["name"], "PM10 严重超标");

    let (status, body) = app.put("/api/v1/rules/999999", threshold_rule("x", 1)).await?;
    assert_error(status, &body, StatusCode::NOT_FOUND, "update unknown rule");
    let (status, body) = app.call(Method::DELETE, &format!("/api/v1/rules/{id}"), None).await?;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert!(app.db.store.rule(id).await?.is_none(), "still stored after delete");
    let (status, body) = app.call(Method::DELETE, &format!("/api/v1/rules/{id}"), None).await?;
    assert_error(status, &body, StatusCode::NOT_FOUND, "second delete");
    let (status, body) = app.get(&format!("/api/v1/rules/{id}")).await?;
    assert_error(status, &body, StatusCode::NOT_FOUND, "deleted rule");
    Ok(())
}

#[tokio::test]
async fn rules_refuse_invalid_bodies() -> Result<()> {
    let app = App::spawn().await?;
    let gap = json!({"kind": "data_gap", "max_gap_s": 60});
    for (body, needle) in [
        (json!({"name": "x", "level": 0, "condition": gap}), "level"),
        (json!({"name": "x", "level": 5, "condition": gap}), "level"),
        (json!({"name": "x", "level": 1, "condition": {"kind": "threshold", "for_s": 60}}), "above"),
        (json!({"name": "x", "level": 1, "condition": {"kind": "sorcery", "x": 1}}), "sorcery"),
        (json!({"name": "", "level": 1, "condition": gap}), "name"),
        (json!({"name": "x", "level": 1}), "condition"),
        (json!({"name": "x", "level": 1, "condition": gap, "scope": {"device_id": "d1"}}), "device_id"),
        (json!({"name": "x", "level": 1, "condition": {"kind": "threshold", "above": 1, "for": 60}}), "for"),
        (
            json!({"name": "x", "level": 1, "condition": {"kind": "rate_of_change", "max_per_minute": -1}}),
            "max_per_minute",
        ),
        (json!("a rule"), "object"),
    ] {
        let (status, resp) = app.post("/api/v1/rules", body.clone()).await?;
        assert_eq!(assert_error(status, &resp, StatusCode::BAD_REQUEST, &body.to_string()), "invalid");
        let msg = resp["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: message {msg:?} does not name {needle:?}");
    }
    let (status, body) = app.post_raw("/api/v1/rules", Some("application/json"), b"{\"name\": \"x\",".to_vec()).await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "malformed JSON");
    assert_eq!(app.db.store.list_rules().await?.len(), 1, "a refused rule was stored (1: the seeded data-gap rule)");

    // An invalid replacement leaves the rule as it was.
    let (_, created) = app.post("/api/v1/rules", threshold_rule("ok", 3)).await?;
    let id = created["id"].as_i64().unwrap();
    let (status, body) =
        app.put(&format!("/api/v1/rules/{id}"), json!({"name": "x", "level": 9, "condition": gap})).await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid update");
    assert_eq!(app.db.store.rule(id).await?.unwrap().level, Level::YELLOW);
    Ok(())
}

#[tokio::test]
async fn silences_create_list_expire() -> Result<()> {
    let app = App::spawn().await?;
    let d1 = app.add_device("d1").await?;
    let (status, body) = app
        .post(
            "/api/v1/silences",
            json!({"device": "d1", "metric": "pm10", "duration_s": 3600,
        "reason": "设备检修"}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().expect("id");
    assert_eq!((body["device"].as_str(), body["metric"].as_str()), (Some("d1"), Some("pm10")));
    assert_eq!(body["object"], Value::Null);
    assert_eq!(body["reason"], "设备检修");
    let starts = DateTime::parse_from_rfc3339(body["starts_at"].as_str().unwrap())?;
    let ends = DateTime::parse_from_rfc3339(body["ends_at"].as_str().unwrap())?;
    assert_eq!(ends - starts, TimeDelta::hours(1));
    assert!((Utc::now() - starts.with_timezone(&Utc)).abs() < TimeDelta::minutes(1), "starts_at defaults to now");

    // A pending silence is stored but not active yet.
    let later = Utc::now() + TimeDelta::hours(2);
    let (status, pending) = app
        .post(
            "/api/v1/silences",
            json!({"event": "e1", "starts_at": later.to_rfc3339(),
        "ends_at": (later + TimeDelta::hours(1)).to_rfc3339(), "reason": "计划停工"}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{pending}");

    let (status, body) = app.get("/api/v1/silences").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body), [id], "only the active silence is listed");

    // The silence made over the API really silences: a warning for d1 on pm10 is marked.
    let pm10 = app.db.store.metric_by_key("pm10").await?.unwrap().id;
    let w = NewWarning { metric_id: Some(pm10), ..warning("k1", d1, "rules", Level::RED, Utc::now()) };
    assert_eq!(app.open(&w).await?.silenced_by, Some(id));

    let (status, _) = app.call(Method::DELETE, &format!("/api/v1/silences/{id}"), None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = app.get("/api/v1/silences").await?;
    assert_eq!(body["total"], 0, "{body}");
    let (status, body) = app.call(Method::DELETE, &format!("/api/v1/silences/{id}"), None).await?;
    assert_error(status, &body, StatusCode::NOT_FOUND, "expire twice");
    let (status, body) = app.call(Method::DELETE, "/api/v1/silences/999999", None).await?;
    assert_error(status, &body, StatusCode::NOT_FOUND, "expire unknown");

    for body in [
        json!({"device": "d1", "duration_s": 60, "reason": ""}),
        json!({"device": "d1", "duration_s": 60}),
        json!({"device": "d1", "reason": "r"}),
        json!({"device": "d1", "duration_s": 0, "reason": "r"}),
        json!({"device": "d1", "duration_s": 60, "ends_at": "2099-01-01T00:00:00Z", "reason": "r"}),
        json!({"starts_at": "2099-01-01T01:00:00Z", "ends_at": "2099-01-01T00:00:00Z", "reason": "r"}),
        json!({"starts_at": "2099-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z", "reason": "r"}),
        json!({"device_id": "d1", "duration_s": 60, "reason": "r"}),
        json!({"device": "bad-id", "duration_s": 60, "reason": "r"}),
        json!({"device": "", "duration_s": 60, "reason": "r"}),
        json!({"ends_at": "tomorrow", "reason": "r"}),
        json!({"duration_s": "60", "reason": "r"}),
    ] {
        let (status, resp) = app.post("/api/v1/silences", body.clone()).await?;
        assert_eq!(assert_error(status, &resp, StatusCode::BAD_REQUEST, &body.to_string()), "invalid");
    }
    let (status, body) = app.post_raw("/api/v1/silences", Some("application/json"), b"[".to_vec()).await?;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "malformed JSON");
    Ok(())
}

#[tokio::test]
async fn maintenance_create_and_list() -> Result<()> {
    let app = App::spawn().await?;
    app.add_device("d1").await?;
    let (status, body) =
        app.post("/api/v1/maintenance", json!({"object": "obj-d1", "duration_s": 600, "reason": "围挡施工"})).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().expect("id");
    assert_eq!((body["object"].as_str(), body["device"].as_str()), (Some("obj-d1"), None));
    let later = Utc::now() + TimeDelta::days(1);
    let (status, body) = app
        .post(
            "/api/v1/maintenance",
            json!({"device": "d1", "starts_at": later.to_rfc3339(),
        "ends_at": (later + TimeDelta::hours(1)).to_rfc3339(), "reason": "明日检修"}),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) = app.get("/api/v1/maintenance").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body), [id]);
    assert_eq!(body["items"][0]["reason"], "围挡施工");
    assert!(app.db.store.in_maintenance("d1", Some("obj-d1"), Utc::now()).await?);

    for body in [
        json!({"duration_s": 60, "reason": "r"}),
        json!({"device": "d1", "duration_s": 60, "reason": " "}),
        json!({"device": "d1", "reason": "r"}),
        json!({"device": "d1", "starts_at": "2099-01-02T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z", "reason": "r"}),
        json!({"device": "d1", "duration_s": 60, "reason": "r", "metric": "pm10"}),
    ] {
        let (status, resp) = app.post("/api/v1/maintenance", body.clone()).await?;
        assert_eq!(assert_error(status, &resp, StatusCode::BAD_REQUEST, &body.to_string()), "invalid");
    }
    let (_, body) = app.get("/api/v1/maintenance").await?;
    assert_eq!(body["total"], 1, "a refused window was stored: {body}");
    Ok(())
}

/// A client logged in as an operator who may do everything these tests exercise (system
/// administrator and monitoring center); access control has tests of its own.
async fn authorized_client(db: &TestDb) -> Result<reqwest::Client> {
    use offsite_store::auth::Role;
    common::add_user(&db.store, "operator", &[Role::SystemAdmin, Role::Monitor], None).await?;
    common::client(&db.store, "operator").await
}
