//! Black-box tests: the real app on a random port against a fresh database, called over HTTP.

use std::time::Duration;

mod common;

use anyhow::Result;
use chrono::{DateTime, TimeZone, Utc};
use offsite_portal::{serve, AppState};
use offsite_store::testing::TestDb;
use offsite_store::{NewDevice, SampleRow};
use offsite_wire::DeviceId;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct App {
    base: String,
    http: reqwest::Client,
    db: TestDb,
    state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<()>>,
}

impl App {
    async fn spawn() -> Result<Self> {
        let db = TestDb::new().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let state = AppState::new(db.store.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        let http = authorized_client(&db).await?;
        Ok(Self { base, http, db, state, shutdown: Some(tx), server })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn get(&self, path: &str) -> Result<(StatusCode, Value)> {
        let resp = self.http.get(self.url(path)).send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        let json =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{path}: body is not JSON ({e}): {text:?}"))?;
        Ok((status, json))
    }

    async fn series(&self, query: &[(&str, &str)]) -> Result<(StatusCode, Value)> {
        let resp = self.http.get(self.url("/api/v1/series")).query(query).send().await?;
        let status = resp.status();
        Ok((status, resp.json().await?))
    }

    async fn add_device(&self, id: &str) -> Result<offsite_store::DeviceRecord> {
        self.db
            .store
            .insert_device(&NewDevice {
                id: DeviceId::parse(id)?,
                name: format!("工地 {id}"),
                object_id: Some(format!("obj-{id}")),
                token_sha256: [7; 32],
                cert_serial: None,
                cert_not_after: None,
            })
            .await
    }

    async fn metric_id(&self, key: &str) -> Result<i32> {
        Ok(self.db.store.metric_by_key(key).await?.expect("seeded metric").id)
    }
}

fn t(h: u32, m: u32, s: u32, ms: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, h, m, s).unwrap() + chrono::TimeDelta::milliseconds(ms as i64)
}

fn row(device_key: i32, metric_id: i32, ts: DateTime<Utc>, value: f64) -> SampleRow {
    SampleRow { device_key, metric_id, ts, received_at: ts, value, quality: 0 }
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

#[tokio::test]
async fn healthz_reports_database_state() -> Result<()> {
    let app = App::spawn().await?;
    let (status, body) = app.get("/healthz").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"status": "ok", "database": "ok"}));

    // Closing the shared pool makes the ping fail: the probe must say so, with a 503.
    app.db.store.pool().close().await;
    let (status, body) = app.get("/healthz").await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_ne!(body["database"], "ok");
    Ok(())
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() -> Result<()> {
    let app = App::spawn().await?;
    let (status, _) = app.get("/api/v1/devices/zzqunknown1").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/api/v1/no/such/path/zzqraw2").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let resp = app.http.get(app.url("/metrics")).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let ctype = resp.headers()[reqwest::header::CONTENT_TYPE].to_str()?.to_owned();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = resp.text().await?;
    assert!(text.contains("# TYPE offsite_http_requests_total counter"), "{text}");
    assert!(text.contains(r#"offsite_http_requests_total{route="/api/v1/devices/{id}",status="404"}"#), "{text}");
    assert!(text.contains(r#"offsite_http_requests_total{route="unmatched",status="404"}"#), "{text}");
    // Raw paths must never become label values.
    assert!(!text.contains("zzqunknown1") && !text.contains("zzqraw2"), "{text}");
    Ok(())
}

#[tokio::test]
async fn devices_list_paginates_and_validates() -> Result<()> {
    let app = App::spawn().await?;
    for id in ["dev3", "dev1", "dev2"] {
        app.add_device(id).await?;
    }
    app.db.store.revoke_device(&DeviceId::parse("dev2")?).await?;

    let (status, body) = app.get("/api/v1/devices").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 3);
    let ids: Vec<&str> = body["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["dev1", "dev2", "dev3"]);
    let d1 = &body["items"][0];
    assert_eq!(d1["name"], "工地 dev1");
    assert_eq!(d1["object_id"], "obj-dev1");
    assert_eq!(d1["online"], false);
    assert_eq!(d1["last_seen"], Value::Null);
    assert_eq!(d1["revoked"], false);
    assert!(d1.get("key").is_none() && d1.get("token_sha256").is_none(), "internal fields leaked: {d1}");
    let created = d1["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && DateTime::parse_from_rfc3339(created).is_ok(), "{created}");
    assert_eq!(body["items"][1]["revoked"], true);

    let (_, body) = app.get("/api/v1/devices?limit=2&offset=1").await?;
    assert_eq!(body["total"], 3);
    let ids: Vec<&str> = body["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["dev2", "dev3"]);
    let (_, body) = app.get("/api/v1/devices?offset=3").await?;
    assert_eq!((body["total"].as_i64(), body["items"].as_array().map(Vec::len)), (Some(3), Some(0)));
    let (status, _) = app.get("/api/v1/devices?limit=500").await?;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = app.get("/api/v1/devices?limit=501").await?;
    assert_eq!(assert_error(status, &body, StatusCode::BAD_REQUEST, "limit=501"), "bad_request");
    let (status, body) = app.get("/api/v1/devices?offset=-1").await?;
    assert_eq!(assert_error(status, &body, StatusCode::BAD_REQUEST, "offset=-1"), "bad_request");

    // One device; last_seen follows written samples.
    let rec = app.add_device("dev4").await?;
    let pm10 = app.metric_id("pm10").await?;
    app.db.store.write_samples(&[row(rec.key, pm10, t(1, 0, 0, 0), 1.0)]).await?;
    let (status, body) = app.get("/api/v1/devices/dev4").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], "dev4");
    assert_eq!(body["last_seen"], "2024-05-01T01:00:00Z");
    let (status, body) = app.get("/api/v1/devices/nosuchdev").await?;
    assert_eq!(assert_error(status, &body, StatusCode::NOT_FOUND, "unknown device"), "not_found");
    let (status, body) = app.get("/api/v1/devices/bad-id").await?;
    assert_eq!(assert_error(status, &body, StatusCode::BAD_REQUEST, "bad id"), "bad_request");
    Ok(())
}

#[tokio::test]
async fn metric_catalog_lists_seeded_metrics() -> Result<()> {
    let app = App::spawn().await?;
    let (status, body) = app.get("/api/v1/metrics").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items = body["items"].as_array().unwrap();
    assert_eq!(body["total"].as_u64(), Some(items.len() as u64));
    let pm10 = items.iter().find(|m| m["key"] == "pm10").expect("pm10 in catalog");
    assert_eq!(pm10["name_zh"], "可吸入颗粒物 PM10");
    assert_eq!(pm10["unit"], "μg/m³");
    Ok(())
}

#[tokio::test]
async fn series_raw_returns_written_points_in_order() -> Result<()> {
    let app = App::spawn().await?;
    let dev = app.add_device("site1").await?;
    let other = app.add_device("site2").await?;
    let (pm10, pm25) = (app.metric_id("pm10").await?, app.metric_id("pm25").await?);
    // Written out of order, plus noise that must not show up: another metric, another device,
    // and a point exactly at `to` (the range is half-open).
    app.db
        .store
        .write_samples(&[
            row(dev.key, pm10, t(0, 0, 30, 0), 30.0),
            row(dev.key, pm10, t(0, 0, 10, 0), 10.0),
            row(dev.key, pm10, t(0, 0, 20, 500), 20.5),
            row(dev.key, pm25, t(0, 0, 15, 0), 99.0),
            row(other.key, pm10, t(0, 0, 15, 0), 98.0),
            row(dev.key, pm10, t(0, 1, 0, 0), 97.0),
        ])
        .await?;

    // `from` given with the +08:00 offset the UI uses: it is 00:00Z.
    let q = [
        ("device", "site1"),
        ("metric", "pm10"),
        ("from", "2024-05-01T08:00:00+08:00"),
        ("to", "2024-05-01T00:01:00Z"),
    ];
    let (status, body) = app.series(&q).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["device"], "site1");
    assert_eq!(body["metric"], "pm10");
    assert_eq!(body["step_secs"], Value::Null);
    assert_eq!(body["from"], "2024-05-01T00:00:00Z");
    assert_eq!(body["total"], 3);
    let got: Vec<(String, f64, i64)> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["ts"].as_str().unwrap().to_owned(), p["value"].as_f64().unwrap(), p["quality"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("2024-05-01T00:00:10Z".to_owned(), 10.0, 0),
            ("2024-05-01T00:00:20.500Z".to_owned(), 20.5, 0),
            ("2024-05-01T00:00:30Z".to_owned(), 30.0, 0),
        ]
    );
    assert!(body["items"][0].get("count").is_none(), "raw points carry no bucket fields");

    let (_, body) = app.series(&[q.as_slice(), &[("limit", "2")]].concat()).await?;
    assert_eq!(body["total"], 2);
    assert_eq!(body["items"][1]["value"], 20.5);
    Ok(())
}

#[tokio::test]
async fn series_step_buckets_aggregate() -> Result<()> {
    let app = App::spawn().await?;
    let dev = app.add_device("site1").await?;
    let pm10 = app.metric_id("pm10").await?;
    app.db
        .store
        .write_samples(&[
            row(dev.key, pm10, t(0, 0, 10, 0), 1.0),
            row(dev.key, pm10, t(0, 0, 20, 0), 3.0),
            row(dev.key, pm10, t(0, 0, 50, 0), 5.0),
            row(dev.key, pm10, t(0, 1, 5, 0), 10.0),
            row(dev.key, pm10, t(0, 1, 59, 0), 20.0),
            row(dev.key, pm10, t(0, 3, 0, 0), 7.0),
        ])
        .await?;
    for step in ["60s", "1m", "60"] {
        let q = [
            ("device", "site1"),
            ("metric", "pm10"),
            ("from", "2024-05-01T00:00:00Z"),
            ("to", "2024-05-01T00:03:00Z"),
            ("step", step),
        ];
        let (status, body) = app.series(&q).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["step_secs"], 60, "step={step}");
        assert_eq!(body["total"], 2, "step={step}: {body}");
        let b0 = &body["items"][0];
        assert_eq!(
            (b0["ts"].as_str(), b0["value"].as_f64(), b0["min"].as_f64(), b0["max"].as_f64(), b0["count"].as_i64()),
            (Some("2024-05-01T00:00:00Z"), Some(3.0), Some(1.0), Some(5.0), Some(3)),
            "step={step}"
        );
        let b1 = &body["items"][1];
        assert_eq!(
            (b1["ts"].as_str(), b1["value"].as_f64(), b1["min"].as_f64(), b1["max"].as_f64(), b1["count"].as_i64()),
            (Some("2024-05-01T00:01:00Z"), Some(15.0), Some(10.0), Some(20.0), Some(2)),
            "step={step}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn series_unknown_device_or_metric_is_404() -> Result<()> {
    let app = App::spawn().await?;
    app.add_device("site1").await?;
    let (status, body) = app.series(&[("device", "ghost"), ("metric", "pm10")]).await?;
    assert_eq!(assert_error(status, &body, StatusCode::NOT_FOUND, "unknown device"), "not_found");
    let (status, body) = app.series(&[("device", "site1"), ("metric", "no.such.metric")]).await?;
    assert_eq!(assert_error(status, &body, StatusCode::NOT_FOUND, "unknown metric"), "not_found");
    // Defaults (last 24 h, raw) on a known pair: an empty series, not an error.
    let (status, body) = app.series(&[("device", "site1"), ("metric", "pm10")]).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 0);
    Ok(())
}

#[tokio::test]
async fn series_missing_device_is_json_400_in_both_languages() -> Result<()> {
    let app = App::spawn().await?;
    let (status, body) = app.series(&[("metric", "pm10")]).await?;
    assert_eq!(assert_error(status, &body, StatusCode::BAD_REQUEST, "missing device"), "bad_request");
    let zh = body["error"]["message_zh"].as_str().unwrap();
    assert!(zh.contains("device") && zh.contains("缺少"), "{zh}");
    let (status, body) = app.series(&[("device", "site1")]).await?;
    assert_eq!(assert_error(status, &body, StatusCode::BAD_REQUEST, "missing metric"), "bad_request");
    Ok(())
}

#[tokio::test]
async fn garbage_input_is_400_json_never_500() -> Result<()> {
    let app = App::spawn().await?;
    app.add_device("site1").await?;
    let cases = [
        "/api/v1/series?device=site1&metric=pm10&from=notatime",
        "/api/v1/series?device=site1&metric=pm10&to=2024-13-45T99:00:00Z",
        "/api/v1/series?device=site1&metric=pm10&limit=abc",
        "/api/v1/series?device=site1&metric=pm10&limit=100001",
        "/api/v1/series?device=site1&metric=pm10&limit=-5",
        "/api/v1/series?device=site1&metric=pm10&step=abc",
        "/api/v1/series?device=site1&metric=pm10&step=0s",
        "/api/v1/series?device=site1&metric=pm10&step=-60",
        "/api/v1/series?device=site1&metric=pm10&step=99999999999999999999d",
        // 2 days at 1 s is 172800 buckets, over the limit.
        "/api/v1/series?device=site1&metric=pm10&from=2024-05-01T00:00:00Z&to=2024-05-03T00:00:00Z&step=1s",
        "/api/v1/series?device=site1&metric=pm10&from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z",
        "/api/v1/series?device=site1&metric=pm10&from=2024-05-01T00:00:00Z&to=2024-05-01T00:00:00Z",
        "/api/v1/series?device=bad-id&metric=pm10",
        "/api/v1/series?device=site1&metric=a%2Fb",
        "/api/v1/series?device=site1&device=site2&metric=pm10",
        "/api/v1/devices?limit=abc",
        "/api/v1/devices?limit=-1",
        "/api/v1/devices?offset=1.5",
        "/api/v1/devices?offset=99999999999999999999",
        "/api/v1/devices/%FF",
    ];
    for path in cases {
        let (status, body) = app.get(path).await?;
        assert_eq!(assert_error(status, &body, StatusCode::BAD_REQUEST, path), "bad_request", "{path}");
    }

    // The remaining non-2xx paths are JSON too.
    let (status, body) = app.get("/api/v1/nope").await?;
    assert_eq!(assert_error(status, &body, StatusCode::NOT_FOUND, "unknown route"), "not_found");
    let resp = app.http.post(app.url("/healthz")).send().await?;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(resp.headers().contains_key(reqwest::header::ALLOW));
    let body: Value = resp.json().await?;
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let resp = app.http.post(app.url("/api/v1/devices")).body(vec![0u8; 2 * 1024 * 1024]).send().await?;
    // The length check runs before routing by method, so the oversized body is refused first.
    let status = resp.status();
    let body: Value = resp.json().await?;
    assert_eq!(assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "2 MiB body"), "payload_too_large");
    Ok(())
}

#[tokio::test]
async fn shutdown_drains_and_stops() -> Result<()> {
    let mut app = App::spawn().await?;
    let (status, _) = app.get("/healthz").await?;
    assert_eq!(status, StatusCode::OK);
    app.shutdown.take().unwrap().send(()).ok();
    let result = tokio::time::timeout(Duration::from_secs(10), &mut app.server).await??;
    result?;
    assert!(!app.state.is_ready(), "shutdown marks the app not ready");
    assert!(app.http.get(app.url("/healthz")).send().await.is_err(), "still accepting after shutdown");
    Ok(())
}

/// A client logged in as an operator who may do everything these tests exercise (system
/// administrator and monitoring center); access control has tests of its own.
async fn authorized_client(db: &TestDb) -> Result<reqwest::Client> {
    use offsite_store::auth::Role;
    common::add_user(&db.store, "operator", &[Role::SystemAdmin, Role::Monitor], None).await?;
    common::client(&db.store, "operator").await
}

/// The API description and its browsable UI are served without login, from the binary itself.
#[tokio::test]
async fn openapi_document_and_docs_ui_need_no_login() -> Result<()> {
    let app = App::spawn().await?;
    let anon = reqwest::Client::new();
    let doc: Value = anon.get(app.url("/api/openapi.json")).send().await?.json().await?;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/warnings/{id}"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/auth/login"]["post"]["security"].as_array().is_some_and(|s| s.is_empty()));
    let ui = anon.get(app.url("/api/docs/")).send().await?;
    assert_eq!(ui.status(), StatusCode::OK);
    let html = ui.text().await?;
    assert!(html.contains("swagger"), "Swagger UI page");
    assert!(!html.contains("https://"), "no asset is loaded from the internet");
    Ok(())
}

/// The public sees only what the API description marks public: every other operation, whatever
/// its method and path parameters, answers an anonymous caller 401 before doing anything.
#[tokio::test]
async fn the_public_sees_nothing_but_public_operations() -> Result<()> {
    use offsite_portal::openapi::{Access, ENDPOINTS};
    let app = App::spawn().await?;
    let anon = reqwest::Client::new();
    let mut leaks = Vec::new();
    let mut checked = 0;
    for (method, path, _, _, _, access, _) in ENDPOINTS {
        if *access != Access::Login {
            continue;
        }
        // Path parameters get plausible values, so a refusal is about the caller, not the shape.
        let concrete: String = path
            .split('/')
            .map(|seg| match seg {
                "{id}" | "{doc_id}" | "{attachment_id}" | "{level}" => "1",
                "{code}" | "{region_code}" => "330102",
                "{day}" => "2026-10-01",
                "{item}" => "ITEM-1",
                s if s.starts_with('{') => "x",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes())?;
        let mut req = anon.request(m, app.url(&concrete));
        if *method != "get" && *method != "delete" {
            req = req.json(&serde_json::json!({}));
        }
        let status = req.send().await?.status();
        checked += 1;
        if status != StatusCode::UNAUTHORIZED {
            leaks.push(format!("{method} {concrete}: {status}"));
        }
    }
    assert!(checked > 100, "only {checked} operations checked");
    assert!(leaks.is_empty(), "answered an anonymous caller:\n{}", leaks.join("\n"));
    Ok(())
}
