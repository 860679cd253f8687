//! Hostile callers: injection and script payloads in every text field and query parameter the
//! API description lists, path traversal on downloads, oversized bodies, writes on a cookie
//! session without the CSRF token, forged and expired credentials, and roles trying what they
//! lack. The real app on a random port against a fresh database; the operations come from
//! `openapi::ENDPOINTS`, so a new endpoint is attacked without anyone remembering to add it.

use std::time::Duration;

mod common;

use anyhow::Result;
use offsite_portal::openapi::{document, Access, ENDPOINTS};
use offsite_portal::{serve, AppState};
use offsite_store::auth::Role;
use offsite_store::testing::TestDb;
use offsite_store::warnings::NewWarning;
use offsite_store::{Level, NewDevice, NewObject};
use offsite_wire::DeviceId;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// SQL injection, script injection, LIKE wildcards, quoting and the NUL character (which
/// PostgreSQL text cannot hold).
const PAYLOADS: &[&str] = &[
    "'; DROP TABLE users; --",
    "x' OR '1'='1",
    "1) OR (1=1",
    "%' OR 1=1 --",
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(document.cookie)>",
    "\\'\\\"\\\\",
    "a\u{0}b",
];

struct World {
    base: String,
    db: TestDb,
    _stop: oneshot::Sender<()>,
    device: String,
}

async fn world() -> Result<World> {
    let db = TestDb::new().await?;
    let s = &db.store;
    s.seed_demo_registers().await?;
    let housing = s.department_by_code("housing-construction").await?.unwrap();
    s.insert_object(&NewObject {
        id: "site-a".into(),
        name: "工地 A".into(),
        credit_code: None,
        object_type: Some("construction-site".into()),
        address: None,
        lon: None,
        lat: None,
        region_code: None,
        department_id: Some(housing.id),
    })
    .await?;
    s.insert_device(&NewDevice {
        id: DeviceId::parse("deva")?,
        name: "deva".into(),
        object_id: Some("site-a".into()),
        token_sha256: [3; 32],
        cert_serial: None,
        cert_not_after: None,
    })
    .await?;
    common::add_user(s, "operator", &[Role::SystemAdmin, Role::Monitor], None).await?;
    for (name, role) in [
        ("secadmin", Role::SecurityAdmin),
        ("auditor", Role::AuditAdmin),
        ("resup", Role::Resupervision),
    ] {
        common::add_user(s, name, &[role], None).await?;
    }
    common::add_user(s, "handlera", &[Role::Handler], Some(housing.id)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    let audit = offsite_store::AuditLog::start(db.store.clone(), None, Duration::from_secs(60));
    let state = AppState::new(db.store.clone())
        .with_live(offsite_portal::live::channel())
        .with_audit(audit);
    tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    Ok(World {
        base,
        db,
        _stop: tx,
        device: "deva".into(),
    })
}

impl World {
    /// `path` with its parameters filled by values that exist where it matters.
    fn concrete(&self, path: &str) -> String {
        path.split('/')
            .map(|seg| match seg {
                "{id}" | "{doc_id}" | "{attachment_id}" | "{level}" => "1".to_owned(),
                "{code}" | "{region_code}" => "330102".to_owned(),
                "{day}" => "2026-10-01".to_owned(),
                "{item}" => "ITEM-1".to_owned(),
                "{device}" => self.device.clone(),
                s if s.starts_with('{') => "x".to_owned(),
                s => s.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    async fn send(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, String)> {
        let m = Method::from_bytes(method.to_uppercase().as_bytes())?;
        let mut r = Self::http().request(m, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await?;
        let status = resp.status();
        // The live stream never ends; only its status matters.
        let text = if path.ends_with("/stream") {
            String::new()
        } else {
            resp.text().await.unwrap_or_default()
        };
        Ok((status, text))
    }

    /// A digest of every row that no request of a walk targets: the rows the fixture made, less
    /// those the walk addresses by `{id}` = 1. Any change means a payload reached another row.
    async fn untouched_rows(&self) -> Result<String> {
        let (digest,): (String,) = sqlx::query_as(
            "SELECT md5(concat_ws('|', \
               (SELECT string_agg(concat_ws(',', id, username, password_hash, display_name, disabled), ';' ORDER BY id) FROM users), \
               (SELECT string_agg(concat_ws(',', user_id, role), ';' ORDER BY user_id, role) FROM user_roles), \
               (SELECT string_agg(concat_ws(',', id, code, name, parent_id), ';' ORDER BY id) FROM departments WHERE id <> 1 AND code NOT LIKE 'evil-%'), \
               (SELECT string_agg(concat_ws(',', id, name, department_id, region_code), ';' ORDER BY id) FROM objects WHERE id NOT LIKE 'evil-%'), \
               (SELECT string_agg(concat_ws(',', id, name, object_id, revoked_at), ';' ORDER BY id) FROM devices), \
               (SELECT string_agg(concat_ws(',', code, name, parent_code), ';' ORDER BY code) FROM regions WHERE code <> '330102') \
             ))",
        )
        .fetch_one(self.db.store.pool())
        .await?;
        Ok(digest)
    }
}

/// Every string in `v` replaced by `with`.
fn with_strings(v: &Value, with: &str) -> Value {
    match v {
        Value::String(_) => Value::String(with.to_owned()),
        Value::Array(a) => Value::Array(a.iter().map(|x| with_strings(x, with)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), with_strings(x, with)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The JSON example of an operation's request body, from the API description.
fn example_body(doc: &Value, method: &str, path: &str) -> Option<Value> {
    doc["paths"][path][method]["requestBody"]["content"]["application/json"]["example"]
        .as_object()
        .map(|o| Value::Object(o.clone()))
}

/// Query parameters the list and search endpoints take (filters, sorting, search, paging,
/// formats); an endpoint ignores the ones it does not know.
const QUERY_PARAMS: &[&str] = &[
    "q",
    "search",
    "sort",
    "order",
    "state",
    "stage",
    "status",
    "source",
    "level",
    "device",
    "device_id",
    "metric",
    "object",
    "object_id",
    "group",
    "open",
    "overdue",
    "unread",
    "department_id",
    "region_code",
    "item",
    "kind",
    "event",
    "actor",
    "action",
    "entity",
    "entity_id",
    "since",
    "until",
    "from",
    "to",
    "step",
    "format",
    "year",
    "limit",
    "offset",
    "dry_run",
    "publish",
];

#[tokio::test]
async fn injection_payloads_in_every_field_and_filter_never_fail_the_server_nor_touch_other_rows(
) -> Result<()> {
    let w = world().await?;
    let token = common::token(&w.db.store, "operator").await?;
    let doc = document();
    let before = w.untouched_rows().await?;
    let mut failures = Vec::new();
    let mut bodies = 0;
    let mut queries = 0;
    for (method, path, _, _, _, _, _) in ENDPOINTS {
        let concrete = w.concrete(path);
        // Deleting id 1 and logging out would only end the walk early; neither takes text.
        if *method == "delete" || path.ends_with("/logout") {
            continue;
        }
        if *method == "get" {
            if path.ends_with("/stream") {
                continue;
            }
            for param in QUERY_PARAMS {
                for payload in PAYLOADS {
                    let url = reqwest::Url::parse_with_params(
                        &format!("{}{concrete}", w.base),
                        &[(*param, *payload)],
                    )?;
                    let q = format!("{}?{}", concrete, url.query().unwrap_or(""));
                    let (status, text) = w.send(Some(&token), method, &q, None).await?;
                    queries += 1;
                    if status.is_server_error() {
                        failures.push(format!("GET {q}: {status} {text}"));
                    }
                }
            }
            continue;
        }
        let Some(example) = example_body(&doc, method, path) else {
            continue;
        };
        for payload in PAYLOADS {
            let body = with_strings(&example, payload);
            let (status, text) = w.send(Some(&token), method, &concrete, Some(&body)).await?;
            bodies += 1;
            if status.is_server_error() {
                failures.push(format!(
                    "{} {concrete} {body}: {status} {text}",
                    method.to_uppercase()
                ));
            }
        }
    }
    assert!(
        bodies > 200 && queries > 10_000,
        "only {bodies} bodies and {queries} queries sent"
    );
    assert!(
        failures.is_empty(),
        "{} server errors:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        w.untouched_rows().await?,
        before,
        "a payload changed a row it did not address"
    );
    Ok(())
}

#[tokio::test]
async fn stored_payloads_come_back_as_the_same_inert_text() -> Result<()> {
    let w = world().await?;
    let token = common::token(&w.db.store, "operator").await?;
    let before = w.untouched_rows().await?;
    for (i, payload) in PAYLOADS
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.contains('\0'))
    {
        // A department and a regulated object named by the payload.
        let dept = json!({"code": format!("evil-{i}"), "name": payload, "parent_id": null});
        let (s, text) = w
            .send(Some(&token), "post", "/api/v1/departments", Some(&dept))
            .await?;
        assert!(s.is_success(), "department {payload:?}: {s} {text}");
        let obj = json!({"id": format!("evil-{i}"), "name": payload, "address": payload});
        let (s, text) = w
            .send(Some(&token), "post", "/api/v1/objects", Some(&obj))
            .await?;
        assert!(s.is_success(), "object {payload:?}: {s} {text}");
        let resp = World::http()
            .get(format!("{}/api/v1/objects/evil-{i}", w.base))
            .bearer_auth(&token)
            .send()
            .await?;
        // JSON, never HTML a browser would run.
        let ctype = resp.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()?
            .to_owned();
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let o: Value = resp.json().await?;
        assert_eq!(
            (o["name"].as_str(), o["address"].as_str()),
            (Some(*payload), Some(*payload)),
            "{o}"
        );
        let (_, list) = w
            .send(Some(&token), "get", "/api/v1/departments", None)
            .await?;
        let list: Value = serde_json::from_str(&list)?;
        let items = list
            .as_array()
            .or_else(|| list["items"].as_array())
            .expect("a list of departments");
        assert!(
            items
                .iter()
                .any(|d| d["name"] == *payload && d["code"] == format!("evil-{i}")),
            "{payload:?} not found verbatim"
        );
        // The search finds the payload as text, not as SQL: a LIKE wildcard matches nothing extra.
        let (s, text) = w
            .send(
                Some(&token),
                "get",
                &format!("/api/v1/objects?q={}", urlencode(payload)),
                None,
            )
            .await?;
        assert_eq!(s, StatusCode::OK, "{text}");
    }
    // The fixture's rows are as they were (new rows were added, none changed).
    assert_eq!(w.untouched_rows().await?, before);
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Sends `target` exactly as written (no client normalises `..` away) and returns status and body.
async fn raw_get(base: &str, target: &str, token: &str) -> Result<(u16, String)> {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, text))
}

#[tokio::test]
async fn path_traversal_on_downloads_reaches_no_file() -> Result<()> {
    let w = world().await?;
    let token = common::token(&w.db.store, "operator").await?;
    // A task with a real attachment, uploaded under a traversal name.
    let housing =
        w.db.store
            .department_by_code("housing-construction")
            .await?
            .unwrap();
    let task =
        json!({"title": "核查", "level": 3, "department_id": housing.id, "source": "manual"});
    let (s, text) = w
        .send(Some(&token), "post", "/api/v1/tasks", Some(&task))
        .await?;
    assert!(s.is_success(), "{s} {text}");
    let task_id = serde_json::from_str::<Value>(&text)?["id"]
        .as_i64()
        .expect("task id");
    let pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(pdf.clone()).file_name("../../../../etc/passwd.pdf"),
    );
    let resp = World::http()
        .post(format!("{}/api/v1/tasks/{task_id}/attachments", w.base))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let a: Value = resp.json().await?;
    let name = a["filename"].as_str().unwrap_or_default();
    assert!(
        !name.contains('/') && !name.contains(".."),
        "stored name {name:?}"
    );
    let resp = World::http()
        .get(format!(
            "{}/api/v1/tasks/{task_id}/attachments/{}",
            w.base, a["id"]
        ))
        .bearer_auth(&token)
        .send()
        .await?;
    let disposition = resp.headers()[reqwest::header::CONTENT_DISPOSITION]
        .to_str()?
        .to_owned();
    assert!(!disposition.contains('/'), "{disposition}");
    assert_eq!(resp.bytes().await?.to_vec(), pdf);

    let traversals = [
        "../../../../etc/passwd",
        "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "..%252F..%252Fetc%252Fpasswd",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        "....//....//etc/passwd",
        "..\\..\\..\\etc\\passwd",
        "1%00.pdf",
    ];
    let prefixes = [
        format!("/api/v1/tasks/{task_id}/attachments/"),
        "/api/v1/snapshots/".to_owned(),
        "/api/v1/complaints/1/attachments/".to_owned(),
        "/api/v1/cases/1/documents/".to_owned(),
        "/assets/".to_owned(),
        "/".to_owned(),
    ];
    for prefix in &prefixes {
        for t in traversals {
            let target = format!("{prefix}{t}");
            let (status, text) = raw_get(&w.base, &target, &token).await?;
            assert!(!text.contains("root:x:0:0"), "{target} served /etc/passwd");
            assert!(
                !text.contains("[workspace]") && !text.contains("[package]"),
                "{target} served a source file"
            );
            assert!((200..500).contains(&status), "{target}: {status}\n{text}");
            // The API refuses (400 bad id, 404 nothing there); only the web UI may answer 200
            // with its own index page.
            if prefix.starts_with("/api/") {
                assert!(matches!(status, 400 | 404), "{target}: {status}\n{text}");
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() -> Result<()> {
    let w = world().await?;
    let token = common::token(&w.db.store, "operator").await?;
    let housing =
        w.db.store
            .department_by_code("housing-construction")
            .await?
            .unwrap();
    let task =
        json!({"title": "核查", "level": 3, "department_id": housing.id, "source": "manual"});
    let (_, text) = w
        .send(Some(&token), "post", "/api/v1/tasks", Some(&task))
        .await?;
    let task_id = serde_json::from_str::<Value>(&text)?["id"]
        .as_i64()
        .expect("task id");
    let http = World::http();

    // An attachment one byte over 20 MiB.
    let mut big = b"%PDF-1.4\n".to_vec();
    big.resize((20 << 20) + 1, b' ');
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(big).file_name("big.pdf"),
    );
    let resp = http
        .post(format!("{}/api/v1/tasks/{task_id}/attachments", w.base))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let e: Value = resp.json().await?;
    assert!(e["error"]["message_zh"].as_str().is_some(), "{e}");

    // JSON and CSV bodies over the 1 MiB API limit.
    let huge = "x".repeat(offsite_portal::BODY_LIMIT_BYTES + 1);
    let resp = http
        .post(format!("{}/api/v1/rules", w.base))
        .bearer_auth(&token)
        .json(&json!({"name": huge}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let e: Value = resp.json().await?;
    assert!(e["error"]["code"].as_str().is_some(), "{e}");
    let resp = http
        .post(format!("{}/api/v1/objects/import", w.base))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .body(format!("id,name\n{huge}"))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A public complaint over its own limit: refused before anything is read or stored.
    let mut blob = b"\xff\xd8\xff".to_vec();
    blob.resize(64 << 20, 0);
    let form = reqwest::multipart::Form::new()
        .text("service_code", "dust")
        .text("description", "扬尘")
        .part(
            "attachment",
            reqwest::multipart::Part::bytes(blob).file_name("a.jpg"),
        );
    let resp = http
        .post(format!("{}/api/v1/complaints", w.base))
        .multipart(form)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM complaints")
        .fetch_one(w.db.store.pool())
        .await?;
    assert_eq!(n, 0);
    Ok(())
}

/// Logs `user` in over HTTP and returns the session cookie and its CSRF token.
async fn cookie_login(w: &World, user: &str) -> Result<(String, String)> {
    let resp = World::http()
        .post(format!("{}/api/v1/auth/login", w.base))
        .json(&json!({"username": user, "password": common::PASSWORD}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp.headers()["set-cookie"]
        .to_str()?
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body: Value = resp.json().await?;
    Ok((cookie, body["csrf_token"].as_str().unwrap().to_owned()))
}

#[tokio::test]
async fn every_write_on_a_cookie_session_needs_the_csrf_token() -> Result<()> {
    let w = world().await?;
    let (cookie, csrf) = cookie_login(&w, "operator").await?;
    let doc = document();
    let before = w.untouched_rows().await?;
    let mut failures = Vec::new();
    let mut checked = 0;
    for (method, path, _, _, _, access, _) in ENDPOINTS {
        if *access != Access::Login || *method == "get" {
            continue;
        }
        let concrete = w.concrete(path);
        let m = Method::from_bytes(method.to_uppercase().as_bytes())?;
        for sent in [None, Some("forged"), Some(&csrf[..csrf.len() - 1])] {
            let mut r = World::http()
                .request(m.clone(), format!("{}{concrete}", w.base))
                .header("cookie", &cookie);
            if let Some(t) = sent {
                r = r.header("x-csrf-token", t);
            }
            if let Some(b) = example_body(&doc, method, path) {
                r = r.json(&b);
            }
            let resp = r.send().await?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            checked += 1;
            if status != StatusCode::FORBIDDEN || body["error"]["code"] != "csrf" {
                failures.push(format!(
                    "{method} {concrete} with {sent:?}: {status} {body}"
                ));
            }
        }
    }
    assert!(checked > 200, "only {checked} requests");
    assert!(
        failures.is_empty(),
        "a cookie write went through without its CSRF token:\n{}",
        failures.join("\n")
    );
    assert_eq!(w.untouched_rows().await?, before);
    // A forged request as a browser sends it: from another site, through the victim's cookie.
    let resp = World::http()
        .post(format!("{}/api/v1/notifications/read-all", w.base))
        .header("cookie", &cookie)
        .header("origin", "https://attacker.invalid")
        .header("x-csrf-token", "forged")
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    checked += 1;
    // Each refusal is in the audit trail: whose session, which operation, why.
    let want = checked as i64;
    let mut got = 0;
    for _ in 0..100 {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM audit_events WHERE action = 'access.denied' AND after->>'reason' = 'csrf' \
             AND actor = 'operator' AND (entity_id LIKE 'POST /api/v1/%' OR entity_id LIKE 'PUT /api/v1/%' \
             OR entity_id LIKE 'PATCH /api/v1/%' OR entity_id LIKE 'DELETE /api/v1/%')",
        )
        .fetch_one(w.db.store.pool())
        .await?;
        got = n;
        if got >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, want, "CSRF refusals audited");
    let (origin, entity_id, ip): (Option<String>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT after->>'origin', entity_id, actor_ip FROM audit_events \
         WHERE action = 'access.denied' AND after ? 'origin' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(w.db.store.pool())
    .await?;
    assert_eq!(origin.as_deref(), Some("https://attacker.invalid"));
    assert_eq!(entity_id.as_deref(), Some("POST /api/v1/notifications/read-all"));
    assert!(ip.is_some(), "the refused request's address is kept");
    // The session itself still works, with the token.
    let resp = World::http()
        .post(format!("{}/api/v1/notifications/read-all", w.base))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({}))
        .send()
        .await?;
    assert!(resp.status().is_success(), "{}", resp.status());
    Ok(())
}

#[tokio::test]
async fn forged_expired_and_idle_credentials_get_401_everywhere() -> Result<()> {
    let w = world().await?;
    let valid = common::token(&w.db.store, "operator").await?;
    let expired = common::token(&w.db.store, "operator").await?;
    let idle = common::token(&w.db.store, "operator").await?;
    let pool = w.db.store.pool();
    let digest = |t: &str| -> Vec<u8> {
        use sha2::Digest;
        sha2::Sha256::digest(t.as_bytes()).to_vec()
    };
    sqlx::query(
        "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE token_sha256 = $1",
    )
    .bind(digest(&expired))
    .execute(pool)
    .await?;
    sqlx::query(
        "UPDATE sessions SET last_seen = now() - interval '3 hours' WHERE token_sha256 = $1",
    )
    .bind(digest(&idle))
    .execute(pool)
    .await?;
    // One character changed, an API token never issued, and a revoked API token.
    let mut tampered = valid.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered)?;
    let (s, text) = w
        .send(
            Some(&valid),
            "post",
            "/api/v1/auth/tokens",
            Some(&json!({"name": "ci"})),
        )
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{text}");
    let t: Value = serde_json::from_str(&text)?;
    let revoked = t["token"].as_str().unwrap().to_owned();
    let (s, _) = w
        .send(
            Some(&valid),
            "delete",
            &format!("/api/v1/auth/tokens/{}", t["id"]),
            None,
        )
        .await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let forged_api = format!("ost_{}", "A".repeat(43));
    let credentials: [(&str, String); 6] = [
        ("expired session", format!("Bearer {expired}")),
        ("idle session", format!("Bearer {idle}")),
        ("tampered session", format!("Bearer {tampered}")),
        ("revoked api token", format!("Bearer {revoked}")),
        ("forged api token", format!("Bearer {forged_api}")),
        (
            "cookie of an expired session",
            format!("offsite_session={expired}"),
        ),
    ];
    let doc = document();
    let mut failures = Vec::new();
    for (method, path, _, _, _, access, _) in ENDPOINTS {
        if *access != Access::Login {
            continue;
        }
        let concrete = w.concrete(path);
        let m = Method::from_bytes(method.to_uppercase().as_bytes())?;
        for (what, cred) in &credentials {
            let header = if what.starts_with("cookie") {
                "cookie"
            } else {
                "authorization"
            };
            let mut r = World::http()
                .request(m.clone(), format!("{}{concrete}", w.base))
                .header(header, cred);
            if let Some(b) = example_body(&doc, method, path) {
                r = r.json(&b);
            }
            let status = tokio::time::timeout(Duration::from_secs(10), r.send())
                .await??
                .status();
            if status != StatusCode::UNAUTHORIZED {
                failures.push(format!("{what}: {method} {concrete}: {status}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "accepted a dead or forged credential:\n{}",
        failures.join("\n")
    );
    // The valid session is unaffected.
    let (s, _) = w.send(Some(&valid), "get", "/api/v1/auth/me", None).await?;
    assert_eq!(s, StatusCode::OK);
    Ok(())
}

/// Operations everybody may call on their own account and inbox.
fn own_account(path: &str) -> bool {
    path.starts_with("/api/v1/auth/") || path.starts_with("/api/v1/notifications")
}

#[tokio::test]
async fn roles_trying_every_change_they_lack_are_refused_and_audited() -> Result<()> {
    let w = world().await?;
    let doc = document();
    // Warning 1 and task 1 exist, so a refusal is about the role, not a missing row. No
    // complaint or case exists: there, "not found" is the honest answer to anyone.
    let dev =
        w.db.store
            .device(&DeviceId::parse("deva")?)
            .await?
            .expect("fixture device");
    let warning =
        w.db.store
            .upsert_warning(&NewWarning {
                dedup_key: "rules|deva|pm10|rule:1".into(),
                source: "rules".into(),
                source_version: "1".into(),
                event: "rule:1".into(),
                level: Level::ORANGE,
                device_key: dev.key,
                metric_id: None,
                object_id: Some("site-a".into()),
                detail: "PM10 超标".into(),
                score: 1.0,
                at: chrono::Utc::now(),
                evidence: json!({}),
                group_window: chrono::Duration::seconds(30),
            })
            .await?;
    assert_eq!(warning.record().id, 1);
    let operator = common::token(&w.db.store, "operator").await?;
    let housing =
        w.db.store
            .department_by_code("housing-construction")
            .await?
            .unwrap();
    let task =
        json!({"title": "核查", "level": 3, "department_id": housing.id, "source": "manual"});
    let (s, text) = w
        .send(Some(&operator), "post", "/api/v1/tasks", Some(&task))
        .await?;
    assert!(
        s.is_success() && serde_json::from_str::<Value>(&text)?["id"] == 1,
        "{s} {text}"
    );
    let absent = |path: &str| {
        path.starts_with("/api/v1/complaints/{id}") || path.starts_with("/api/v1/cases/{id}")
    };
    let before = w.untouched_rows().await?;
    let mut failures = Vec::new();
    let mut refused = 0;
    // The audit administrator and re-supervision change nothing; the security administrator
    // only accounts.
    for user in ["auditor", "resup", "secadmin"] {
        let token = common::token(&w.db.store, user).await?;
        for (method, path, _, _, _, access, _) in ENDPOINTS {
            if *access != Access::Login || *method == "get" || own_account(path) {
                continue;
            }
            if user == "secadmin" && path.starts_with("/api/v1/users") {
                continue;
            }
            let concrete = w.concrete(path).replace("/devices/1/", "/devices/deva/");
            let body = example_body(&doc, method, path).or(Some(json!({})));
            let (status, text) = w
                .send(Some(&token), method, &concrete, body.as_ref())
                .await?;
            if status == StatusCode::FORBIDDEN {
                refused += 1;
            } else if !(status == StatusCode::NOT_FOUND && absent(path)) {
                failures.push(format!("{user} {method} {concrete}: {status} {text}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "a role got past a change it lacks:\n{}",
        failures.join("\n")
    );
    assert!(refused > 150, "only {refused} refusals");
    assert_eq!(w.untouched_rows().await?, before);
    // Each refused change is in the audit trail, with who tried what.
    let want = refused as i64;
    let mut got = 0;
    for _ in 0..100 {
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM audit_events WHERE action = 'access.denied'")
                .fetch_one(w.db.store.pool())
                .await?;
        got = n;
        if got >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, want, "refused changes audited");
    let (actor, entity_id): (String, Option<String>) = sqlx::query_as(
        "SELECT actor, entity_id FROM audit_events WHERE action = 'access.denied' AND actor = 'auditor' ORDER BY seq LIMIT 1",
    )
    .fetch_one(w.db.store.pool())
    .await?;
    assert_eq!(actor, "auditor");
    assert!(
        entity_id.is_some_and(|e| e.starts_with("POST /api/v1/") || e.starts_with("PUT /api/v1/"))
    );
    Ok(())
}

#[tokio::test]
async fn public_complaint_form_takes_payloads_as_text_and_refuses_nul() -> Result<()> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (_stop, rx) = oneshot::channel::<()>();
    let state = AppState::new(db.store.clone())
        .with_live(offsite_portal::live::channel())
        .with_captcha(false);
    tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    let fields = [
        "description",
        "address",
        "contact_name",
        "object_id",
        "service_code",
        "phone",
        "id_number",
    ];
    let mut failures = Vec::new();
    let mut stored = 0;
    for field in fields {
        for payload in PAYLOADS {
            // This walk is about content, not the per-address quota (tested in complaints.rs).
            sqlx::query("DELETE FROM public_rate_hits")
                .execute(db.store.pool())
                .await?;
            sqlx::query("UPDATE complaints SET created_at = created_at - interval '1 day'")
                .execute(db.store.pool())
                .await?;
            let mut form = reqwest::multipart::Form::new();
            for (k, v) in [("service_code", "noise"), ("description", "夜间施工噪声")] {
                if k != field {
                    form = form.text(k, v);
                }
            }
            form = form.text(field, payload.to_string());
            let resp = World::http()
                .post(format!("{base}/api/v1/complaints"))
                .multipart(form)
                .send()
                .await?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if payload.contains('\0') {
                if status != StatusCode::BAD_REQUEST {
                    failures.push(format!("{field} with NUL: {status} {body}"));
                }
                continue;
            }
            if status.is_server_error() {
                failures.push(format!("{field} = {payload:?}: {status} {body}"));
            }
            if status.is_success() && field == "description" {
                // The public tracking page gives the text back as it was sent, as JSON.
                let no = body["tracking_no"]
                    .as_str()
                    .or(body["service_request_id"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                let (_, row): (i64, String) =
                    sqlx::query_as("SELECT id, description FROM complaints WHERE tracking_no = $1")
                        .bind(&no)
                        .fetch_one(db.store.pool())
                        .await?;
                assert_eq!(row, *payload);
                stored += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        stored,
        PAYLOADS.len() - 1,
        "every description payload stored verbatim"
    );
    Ok(())
}

#[tokio::test]
async fn a_login_lockout_is_audited_once_not_per_attempt() -> Result<()> {
    let w = world().await?;
    let login = |password: &'static str| {
        World::http()
            .post(format!("{}/api/v1/auth/login", w.base))
            .json(&json!({"username": "operator", "password": password}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(login("Wrong@2026").await?.status(), StatusCode::UNAUTHORIZED);
    }
    // Locked out now, even with the right password; a client that keeps trying adds no events.
    for _ in 0..10 {
        assert_eq!(login(common::PASSWORD).await?.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let count = |action: &'static str| {
        let pool = w.db.store.pool().clone();
        async move {
            let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM audit_events WHERE action = $1 AND actor = 'operator'")
                .bind(action)
                .fetch_one(&pool)
                .await?;
            anyhow::Ok(n)
        }
    };
    let mut failed = 0;
    for _ in 0..100 {
        failed = count("user.login_failed").await?;
        if failed >= 5 && count("user.login_throttled").await? >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(failed, 5, "each failed login audited");
    assert_eq!(count("user.login_throttled").await?, 1, "the lockout audited once");
    let (ip, retry): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT actor_ip, after->>'retry_after_s' FROM audit_events WHERE action = 'user.login_throttled'",
    )
    .fetch_one(w.db.store.pool())
    .await?;
    assert!(ip.is_some(), "the locked-out address is kept");
    assert!(retry.is_some_and(|s| s.parse::<i64>().is_ok_and(|n| n > 0)));
    Ok(())
}
