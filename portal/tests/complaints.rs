//! Complaints over HTTP: the public path (CAPTCHA, attachments checked by content, tracking number,
//! rate limits), the public status page leaking nothing private, masked contact details for staff,
//! the monitoring center's audited call-back view and closing, department scope, encryption at rest.

use std::time::Duration;

mod common;

use anyhow::Result;
use base64::Engine;
use offsite_portal::{serve, AppState};
use offsite_store::auth::Role;
use offsite_store::testing::TestDb;
use offsite_store::AuditFilter;
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const PHONE: &str = "13987654321";
const NAME: &str = "张三丰";
const ADDRESS: &str = "杭州市上城区望江路88号工地东门";
const DESCRIPTION: &str = "夜间施工噪声很大，渣土车不覆盖，扬尘严重。";
/// A 1 x 1 PNG.
const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

struct App {
    base: String,
    db: TestDb,
    state: AppState,
    anon: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

fn id_number() -> String {
    let first17 = "33010219850317432";
    let check = offsite_store::complaints::id_check_char(first17.as_bytes()) as char;
    format!("{first17}{check}")
}

fn png() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(PNG_B64).unwrap()
}

async fn app() -> Result<App> {
    app_with_captcha(true).await
}

async fn app_with_captcha(captcha: bool) -> Result<App> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    let housing = db.store.department_by_code("housing-construction").await?.unwrap().id;
    let ecology = db.store.department_by_code("ecology").await?.unwrap().id;
    let users = [
        ("mon", Role::Monitor, None),
        ("h_housing", Role::Handler, Some(housing)),
        ("h_ecology", Role::Handler, Some(ecology)),
        ("sec", Role::SecurityAdmin, None),
        ("rev", Role::Reviewer, None),
    ];
    for (name, role, dept) in users {
        common::add_user(&db.store, name, &[role], dept).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    let audit = offsite_store::AuditLog::start(db.store.clone(), None, Duration::from_secs(60));
    let state = AppState::new(db.store.clone())
        .with_live(offsite_portal::live::channel())
        .with_audit(audit)
        .with_secret_key([7u8; 32])
        .with_captcha(captcha)
        .keep_captcha_answers();
    tokio::spawn(serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    let anon = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    Ok(App { base, db, state, anon, _stop: tx })
}

impl App {
    async fn client(&self, user: &str) -> Result<reqwest::Client> {
        common::client(&self.db.store, user).await
    }

    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    /// A fresh CAPTCHA over HTTP, solved by reading the answer the server keeps (not over HTTP).
    async fn captcha(&self) -> Result<(String, String)> {
        let r = self.anon.get(self.url("/api/v1/complaints/captcha")).send().await?;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await?;
        let id = v["id"].as_str().unwrap().to_owned();
        let answer = self.state.captchas().answer(&id).expect("a pending CAPTCHA");
        Ok((id, answer))
    }

    /// Posts the complaint form: the good fields, with `over` replacing or removing (empty value)
    /// some, and `files` as attachments.
    async fn submit(
        &self,
        captcha: &(String, String),
        over: &[(&str, &str)],
        files: Vec<(&str, Vec<u8>)>,
    ) -> Result<(StatusCode, Value)> {
        let id = id_number();
        let good = [
            ("service_code", "noise"),
            ("description", DESCRIPTION),
            ("address", ADDRESS),
            ("lon", "120.171717"),
            ("lat", "30.242424"),
            ("object_id", "demo-site-01"),
            ("contact_name", NAME),
            ("phone", PHONE),
            ("id_number", id.as_str()),
            ("captcha_id", captcha.0.as_str()),
            ("captcha_answer", captcha.1.as_str()),
        ];
        let mut form = Form::new();
        for (k, v) in good {
            let v = over.iter().find(|(o, _)| *o == k).map(|(_, v)| *v).unwrap_or(v);
            if !v.is_empty() {
                form = form.text(k, v.to_owned());
            }
        }
        for (name, data) in files {
            let mime = if name.ends_with(".pdf") { "application/pdf" } else { "image/png" };
            form = form.part("attachment", Part::bytes(data).file_name(name.to_owned()).mime_str(mime)?);
        }
        let r = self.anon.post(self.url("/api/v1/complaints")).multipart(form).send().await?;
        let status = r.status();
        let body = r.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    async fn audited(&self, action: &str, entity_id: &str) -> Result<bool> {
        for _ in 0..100 {
            let f =
                AuditFilter { action: Some(action.into()), entity_id: Some(entity_id.into()), ..Default::default() };
            if self.db.store.audit_search(&f).await?.1 > 0 {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(false)
    }
}

fn assert_field_error(status: StatusCode, body: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or("");
    assert!(msg.starts_with(field), "error should name {field}: {body}");
    assert!(body["error"]["message_zh"].as_str().is_some_and(|m| m.starts_with(field)), "{body}");
}

#[tokio::test]
async fn the_public_complaint_path_from_captcha_to_closed() -> Result<()> {
    let app = app().await?;

    // The services (Open311) and an image CAPTCHA, both without login.
    let services: Value = app.anon.get(app.url("/api/v1/complaints/services")).send().await?.json().await?;
    assert!(services["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["service_code"] == "noise" && s["service_name_zh"] == "噪声扰民"));
    let r = app.anon.get(app.url("/api/v1/complaints/captcha")).send().await?;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let c: Value = r.json().await?;
    let image = c["image"].as_str().unwrap();
    let svg =
        base64::engine::general_purpose::STANDARD.decode(image.strip_prefix("data:image/svg+xml;base64,").unwrap())?;
    let svg = String::from_utf8(svg)?;
    let answer = app.state.captchas().answer(c["id"].as_str().unwrap()).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<path"), "an SVG drawn with paths");
    assert!(
        !svg.contains("<text") && !svg.contains("href") && !svg.contains(&answer),
        "no text, fonts or links in the image"
    );

    // A wrong answer is refused and uses the CAPTCHA up.
    let cap = app.captcha().await?;
    let (s, b) = app.submit(&(cap.0.clone(), "WRONG".into()), &[], vec![]).await?;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("captcha")), "{b}");
    let (s, b) = app.submit(&cap, &[], vec![]).await?;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("captcha")),
        "used up by the wrong try: {b}"
    );
    // An expired one, an unknown one, none at all.
    let cap = app.captcha().await?;
    app.state.captchas().expire(&cap.0).await?;
    let (s, b) = app.submit(&cap, &[], vec![]).await?;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("captcha")), "{b}");
    let (s, b) = app.submit(&("0123456789abcdef0123456789abcdef".into(), "ACE34".into()), &[], vec![]).await?;
    assert_eq!((s, b["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("captcha")), "{b}");
    let (s, b) = app.submit(&(String::new(), String::new()), &[], vec![]).await?;
    assert_field_error(s, &b, "captcha_answer");

    // Attachments: a text file named .png is refused by content; over 5 MiB is too large.
    let cap = app.captcha().await?;
    let (s, b) = app.submit(&cap, &[], vec![("photo.png", b"just some text, not an image".to_vec())]).await?;
    assert_field_error(s, &b, "attachment");
    let cap = app.captcha().await?;
    let mut big = png();
    big.resize(5 * 1024 * 1024 + 1, 0);
    let (s, b) = app.submit(&cap, &[], vec![("big.png", big)]).await?;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    let cap = app.captcha().await?;
    let (s, b) =
        app.submit(&cap, &[], vec![("a.png", png()), ("b.png", png()), ("c.png", png()), ("d.png", png())]).await?;
    assert_field_error(s, &b, "attachment");

    // Phone and ID number are checked, the error names the field.
    let cap = app.captcha().await?;
    let (s, b) = app.submit(&cap, &[("phone", "12345")], vec![]).await?;
    assert_field_error(s, &b, "phone");
    let cap = app.captcha().await?;
    let mut bad_id = id_number();
    let last = if bad_id.ends_with('1') { "2" } else { "1" };
    bad_id.replace_range(17.., last);
    let (s, b) = app.submit(&cap, &[("id_number", &bad_id)], vec![]).await?;
    assert_field_error(s, &b, "id_number");
    let cap = app.captcha().await?;
    let (s, b) = app.submit(&cap, &[("service_code", "parking")], vec![]).await?;
    assert_field_error(s, &b, "service_code");
    let cap = app.captcha().await?;
    let (s, b) = app.submit(&cap, &[("lon", "500")], vec![]).await?;
    assert_field_error(s, &b, "lon");
    let cap = app.captcha().await?;
    let (s, b) = app.submit(&cap, &[("description", "")], vec![]).await?;
    assert_field_error(s, &b, "description");

    // The real thing, with a photo: a tracking number.
    let cap = app.captcha().await?;
    let (s, b) = app.submit(&cap, &[], vec![("现场照片.png", png())]).await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["status"], "open");
    let no = b["tracking_no"].as_str().unwrap().to_owned();
    assert!(no.starts_with("TS") && no.len() == 20, "{no}");
    // The CAPTCHA is used once only.
    let (s, _) = app.submit(&cap, &[], vec![]).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // The public status page: status and public notes only.
    let private = [
        PHONE,
        "139****4321",
        &id_number(),
        "330102********",
        NAME,
        "张**",
        ADDRESS,
        DESCRIPTION,
        "127.0.0.1",
        "现场照片",
        "demo-site-01",
        "120.171717",
        "30.242424",
    ];
    let r = app.anon.get(app.url(&format!("/api/v1/complaints/track/{}", no.to_lowercase()))).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await?;
    let text = t.to_string();
    for p in private {
        assert!(!text.contains(p), "the status page leaks {p:?}: {text}");
    }
    let mut keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "closed_at",
            "created_at",
            "notes",
            "service_code",
            "service_name",
            "service_name_zh",
            "status",
            "status_zh",
            "tracking_no"
        ]
    );
    assert_eq!((t["status"].as_str(), t["notes"].as_array().map(Vec::len)), (Some("open"), Some(0)));
    // Unknown and malformed numbers: the same 404.
    for bad in ["TS20260101ABCDEFGHJK", "nonsense"] {
        let r = app.anon.get(app.url(&format!("/api/v1/complaints/track/{bad}"))).send().await?;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    // Staff see it masked; every role, the monitoring center included.
    let mon = app.client("mon").await?;
    let list: Value = mon.get(app.url("/api/v1/complaints?status=open")).send().await?.json().await?;
    let item = list["items"].as_array().unwrap().iter().find(|i| i["tracking_no"] == no.as_str()).unwrap().clone();
    let id = item["id"].as_i64().unwrap();
    let d: Value = mon.get(app.url(&format!("/api/v1/complaints/{id}"))).send().await?.json().await?;
    assert_eq!(d["phone"], "139****4321", "{d}");
    assert_eq!(d["id_number"], format!("330102********{}", &id_number()[14..]));
    assert_eq!(d["contact_name"], "张**");
    assert!(!d.to_string().contains(PHONE) && !d.to_string().contains(&id_number()), "{d}");
    // The Open311 form.
    let o = &d["open311"];
    assert_eq!(
        (o["service_request_id"].as_str(), o["service_code"].as_str(), o["status"].as_str()),
        (Some(no.as_str()), Some("noise"), Some("open"))
    );
    assert_eq!(
        (o["lat"].as_f64(), o["long"].as_f64(), o["address_string"].as_str()),
        (Some(30.242424), Some(120.171717), Some(ADDRESS))
    );
    assert_eq!(o["description"], DESCRIPTION);
    // The attachment, typed by content, downloadable.
    let att = &d["attachments"][0];
    assert_eq!(
        (att["content_type"].as_str(), att["size"].as_i64()),
        (Some("image/png"), Some(png().len() as i64)),
        "{d}"
    );
    let r = mon.get(app.url(&format!("/api/v1/complaints/{id}/attachments/{}", att["id"]))).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.headers()["content-disposition"].to_str()?.starts_with("attachment"));
    assert_eq!(r.bytes().await?.to_vec(), png());

    // The department responsible for the object sees it, masked; another department does not.
    let housing = app.client("h_housing").await?;
    let d: Value = housing.get(app.url(&format!("/api/v1/complaints/{id}"))).send().await?.json().await?;
    assert_eq!(d["phone"], "139****4321", "{d}");
    let ecology = app.client("h_ecology").await?;
    assert_eq!(ecology.get(app.url(&format!("/api/v1/complaints/{id}"))).send().await?.status(), StatusCode::NOT_FOUND);
    let theirs: Value = ecology.get(app.url("/api/v1/complaints")).send().await?.json().await?;
    assert_eq!(theirs["total"], 0, "{theirs}");
    let r = ecology.get(app.url(&format!("/api/v1/complaints/{id}/attachments/{}", att["id"]))).send().await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Separated powers: the security administrator sees no complaints.
    let sec = app.client("sec").await?;
    assert_eq!(sec.get(app.url("/api/v1/complaints")).send().await?.status(), StatusCode::FORBIDDEN);
    // Only the monitoring center reads the contact details, and it is audited.
    for who in [&housing, &app.client("rev").await?] {
        assert_eq!(
            who.get(app.url(&format!("/api/v1/complaints/{id}/contact"))).send().await?.status(),
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        app.anon.get(app.url(&format!("/api/v1/complaints/{id}"))).send().await?.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = mon.get(app.url(&format!("/api/v1/complaints/{id}/contact"))).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    let contact: Value = r.json().await?;
    assert_eq!((contact["phone"].as_str(), contact["contact_name"].as_str()), (Some(PHONE), Some(NAME)));
    assert_eq!(contact["id_number"].as_str(), Some(id_number().as_str()));
    assert!(app.audited("complaint.contact_viewed", &id.to_string()).await?, "contact view audited");

    // Stored encrypted: neither the bytes nor any text of the row holds the numbers.
    let (phone_enc, id_enc, row): (Vec<u8>, Vec<u8>, String) =
        sqlx::query_as("SELECT phone_enc, id_number_enc, row_to_json(c)::text FROM complaints c WHERE id = $1")
            .bind(id)
            .fetch_one(app.db.store.pool())
            .await?;
    for (bytes, plain) in [(&phone_enc, PHONE.to_owned()), (&id_enc, id_number())] {
        assert!(!bytes.windows(plain.len()).any(|w| w == plain.as_bytes()), "ciphertext holds the plaintext");
        assert!(
            !bytes.windows(4).any(|w| w == &plain.as_bytes()[plain.len() - 4..]),
            "ciphertext holds the last digits"
        );
    }
    assert!(!row.contains(PHONE) && !row.contains(&id_number()), "{row}");
    assert!(!row.contains(&hex(PHONE.as_bytes())), "not hex-encoded plaintext either");

    // Closing: the monitoring center only, with a reason; a public note for the complainant.
    let close =
        json!({"reason": "现场核查：夜间施工已停止（内部）", "public_note": "经核查，问题已整改，感谢您的监督。"});
    assert_eq!(
        housing.post(app.url(&format!("/api/v1/complaints/{id}/close"))).json(&close).send().await?.status(),
        StatusCode::FORBIDDEN
    );
    let r = mon.post(app.url(&format!("/api/v1/complaints/{id}/close"))).json(&json!({"reason": ""})).send().await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await?.contains("reason"));
    let r = mon.post(app.url(&format!("/api/v1/complaints/{id}/close"))).json(&close).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    let closed: Value = r.json().await?;
    assert_eq!((closed["status"].as_str(), closed["open311"]["status"].as_str()), (Some("closed"), Some("closed")));
    assert_eq!(closed["open311"]["status_notes"], "经核查，问题已整改，感谢您的监督。");
    assert_eq!(closed["close_reason"], "现场核查：夜间施工已停止（内部）");
    assert_eq!(
        mon.post(app.url(&format!("/api/v1/complaints/{id}/close"))).json(&close).send().await?.status(),
        StatusCode::CONFLICT
    );
    assert!(app.audited("complaint.close", &id.to_string()).await?, "closing audited");

    // The status page now shows closed and the public note, still nothing private or internal.
    let t: Value = app.anon.get(app.url(&format!("/api/v1/complaints/track/{no}"))).send().await?.json().await?;
    assert_eq!(t["status"], "closed");
    assert!(t["closed_at"].is_string());
    assert_eq!(t["notes"].as_array().unwrap().len(), 1, "{t}");
    assert_eq!(t["notes"][0]["note"], "经核查，问题已整改，感谢您的监督。");
    let text = t.to_string();
    for p in private.iter().copied().chain(["内部", "mon", "reason", "by"]) {
        assert!(!text.contains(p), "the status page leaks {p:?}: {text}");
    }
    let closed_list: Value = mon.get(app.url("/api/v1/complaints?status=closed")).send().await?.json().await?;
    assert_eq!(closed_list["total"], 1);
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn submissions_and_lookups_are_rate_limited_per_address() -> Result<()> {
    let app = app().await?;
    // A complaint without object, contact or attachments is fine too; nobody but the roles that
    // see everything sees it.
    let mut last = String::new();
    for i in 0..5 {
        let cap = app.captcha().await?;
        let desc = format!("第 {i} 次投诉");
        let (s, b) = app
            .submit(
                &cap,
                &[("object_id", ""), ("phone", ""), ("id_number", ""), ("contact_name", ""), ("description", &desc)],
                vec![],
            )
            .await?;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        last = b["tracking_no"].as_str().unwrap().to_owned();
    }
    let cap = app.captcha().await?;
    let form = Form::new()
        .text("service_code", "dust")
        .text("description", "再来一次")
        .text("captcha_id", cap.0)
        .text("captcha_answer", cap.1);
    let r = app.anon.post(app.url("/api/v1/complaints")).multipart(form).send().await?;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers()["retry-after"].to_str()?.parse::<u64>()? > 0);
    let b: Value = r.json().await?;
    assert_eq!(b["error"]["code"], "throttled");

    let mon = app.client("mon").await?;
    let all: Value = mon.get(app.url("/api/v1/complaints")).send().await?.json().await?;
    assert_eq!(all["total"], 5);
    let housing = app.client("h_housing").await?;
    let mine: Value = housing.get(app.url("/api/v1/complaints")).send().await?.json().await?;
    assert_eq!(mine["total"], 0, "complaints about no object are not a department's");
    let d: Value =
        mon.get(app.url(&format!("/api/v1/complaints/{}", all["items"][0]["id"]))).send().await?.json().await?;
    assert!(
        d["phone"].is_null() && d["id_number"].is_null() && d["attachments"].as_array().is_some_and(Vec::is_empty),
        "{d}"
    );

    // Lookups: limited too (60 per 10 minutes).
    let mut statuses = Vec::new();
    for _ in 0..61 {
        statuses.push(app.anon.get(app.url(&format!("/api/v1/complaints/track/{last}"))).send().await?.status());
    }
    assert!(statuses[..60].iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert_eq!(statuses[60], StatusCode::TOO_MANY_REQUESTS);
    Ok(())
}

#[tokio::test]
async fn the_intake_alone_takes_large_bodies_and_wants_multipart() -> Result<()> {
    let app = app().await?;
    // JSON is not the intake's format.
    let r = app.anon.post(app.url("/api/v1/complaints")).json(&json!({"service_code": "dust"})).send().await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Over the intake's limit: refused on the declared length.
    let r = app
        .anon
        .post(app.url("/api/v1/complaints"))
        .header("content-type", "multipart/form-data; boundary=x")
        .body(vec![b'a'; 12 * 1024 * 1024])
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    // Other routes keep the 1 MiB limit.
    let mon = app.client("mon").await?;
    let big = json!({"reason": "x".repeat(2 * 1024 * 1024)});
    let r = mon.post(app.url("/api/v1/complaints/1/close")).json(&big).send().await?;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A PDF is accepted, by its content.
    let cap = app.captcha().await?;
    let (s, b) = app
        .submit(
            &cap,
            &[],
            vec![("report.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec())],
        )
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    Ok(())
}

/// An operator may turn the CAPTCHA off (`[complaints] captcha = false`): the form is told so and
/// a submission without an answer is accepted; with it on (the default) the same one is refused.
#[tokio::test]
async fn captcha_can_be_turned_off_by_the_operator() -> Result<()> {
    let no_answer = (String::new(), String::new());
    let on = app().await?;
    let c: Value = on.anon.get(on.url("/api/v1/complaints/captcha")).send().await?.json().await?;
    assert_eq!(c["required"], true, "{c}");
    let (s, b) = on.submit(&no_answer, &[], vec![]).await?;
    assert_field_error(s, &b, "captcha_answer");

    let off = app_with_captcha(false).await?;
    let r = off.anon.get(off.url("/api/v1/complaints/captcha")).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await?, json!({"required": false}));
    let (s, b) = off.submit(&no_answer, &[], vec![]).await?;
    assert!(s.is_success(), "{s} {b}");
    let no = b["tracking_no"].as_str().expect("a tracking number");
    let tracked: Value = off.anon.get(off.url(&format!("/api/v1/complaints/track/{no}"))).send().await?.json().await?;
    assert_eq!(tracked["tracking_no"], no, "{tracked}");
    Ok(())
}
