//! Cases over HTTP: opening from a signed task, the five stages in order with documents, 409 with a
//! reason out of order, decision validation, department scope, roles, the credit class on the object
//! changing after a decision, and the public disclosure list showing only what is marked.

use std::sync::Arc;
use std::time::Duration;

mod common;

use anyhow::Result;
use offsite_portal::{serve, AppState};
use offsite_store::auth::Role;
use offsite_store::files::LocalDirStore;
use offsite_store::testing::TestDb;
use offsite_store::{AuditFilter, Store};
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

const DUST_BASIS: &str = "《中华人民共和国大气污染防治法》第六十九条";

struct App {
    base: String,
    db: TestDb,
    housing: i64,
    ecology: i64,
    anon: reqwest::Client,
    _files: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn app() -> Result<App> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    let housing = db.store.department_by_code("housing-construction").await?.unwrap().id;
    let ecology = db.store.department_by_code("ecology").await?.unwrap().id;
    let users = [
        ("sysadmin", Role::SystemAdmin, None),
        ("sec", Role::SecurityAdmin, None),
        ("mon", Role::Monitor, None),
        ("h_housing", Role::Handler, Some(housing)),
        ("l_housing", Role::Leader, Some(housing)),
        ("h_ecology", Role::Handler, Some(ecology)),
        ("rev", Role::Reviewer, None),
    ];
    for (name, role, dept) in users {
        common::add_user(&db.store, name, &[role], dept).await?;
    }
    let files = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    let audit = offsite_store::AuditLog::start(db.store.clone(), None, Duration::from_secs(60));
    let state = AppState::new(db.store.clone())
        .with_live(offsite_portal::live::channel())
        .with_audit(audit)
        .with_files(Arc::new(LocalDirStore::new(files.path())));
    tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    let anon = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    Ok(App { base, db, housing, ecology, anon, _files: files, _stop: tx })
}

/// A task in `state` about `object`, inserted directly (the tasks API is another module's).
async fn task(store: &Store, state: &str, object: &str, department: i64) -> Result<i64> {
    let signed = !matches!(state, "dispatched" | "returned");
    let no = format!("RW20260301{:06}", rand_no());
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO tasks (task_no, title, source, level, item, object_id, department_id, state, sign_limit, \
         handle_limit, dispatched_at, dispatched_by, sign_due, signed_at, handle_due) \
         VALUES ($1, '扬尘超标核查', 'warning', 2, 'demo-dust', $2, $3, $4, '2h', '3wd', now() - interval '1 day', \
         'mon', now(), CASE WHEN $5 THEN now() - interval '20 hours' END, \
         CASE WHEN $5 THEN now() + interval '2 days' END) RETURNING id",
    )
    .bind(no)
    .bind(object)
    .bind(department)
    .bind(state)
    .bind(signed)
    .fetch_one(store.pool())
    .await?;
    // As the tasks API does: the lead department is listed with the task.
    sqlx::query("INSERT INTO task_departments (task_id, department_id, role) VALUES ($1, $2, 'lead')")
        .bind(id)
        .bind(department)
        .execute(store.pool())
        .await?;
    Ok(id)
}

fn rand_no() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

fn pdf(text: &str) -> Vec<u8> {
    format!("%PDF-1.4\n% {text}\n%%EOF\n").into_bytes()
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn client(&self, user: &str) -> Result<reqwest::Client> {
        common::client(&self.db.store, user).await
    }

    async fn get(&self, user: &str, path: &str) -> Result<(StatusCode, Value)> {
        let r = self.client(user).await?.get(self.url(path)).send().await?;
        Ok((r.status(), r.json().await.unwrap_or(Value::Null)))
    }

    async fn post(&self, user: &str, path: &str, body: Value) -> Result<(StatusCode, Value)> {
        let r = self.client(user).await?.post(self.url(path)).json(&body).send().await?;
        Ok((r.status(), r.json().await.unwrap_or(Value::Null)))
    }

    async fn upload(
        &self,
        user: &str,
        case: i64,
        name: &str,
        data: Vec<u8>,
        stage: Option<&str>,
    ) -> Result<(StatusCode, Value)> {
        let mut form = Form::new().part("file", Part::bytes(data).file_name(name.to_owned()));
        if let Some(s) = stage {
            form = form.text("stage", s.to_owned());
        }
        let r = self
            .client(user)
            .await?
            .post(self.url(&format!("/api/v1/cases/{case}/documents")))
            .multipart(form)
            .send()
            .await?;
        Ok((r.status(), r.json().await.unwrap_or(Value::Null)))
    }

    async fn open(&self, user: &str, task: i64) -> Result<(StatusCode, Value)> {
        self.post(user, &format!("/api/v1/tasks/{task}/case"), json!({"note": "现场核查发现未落实扬尘防治措施"})).await
    }

    async fn advance(&self, user: &str, case: i64, body: Value) -> Result<(StatusCode, Value)> {
        self.post(user, &format!("/api/v1/cases/{case}/advance"), body).await
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

    /// Opens a case on `object` (housing's) and takes it to `decided` with `decision`.
    async fn decided_case(&self, object: &str, decision: Value) -> Result<i64> {
        let t = task(&self.db.store, "in_progress", object, self.housing).await?;
        let (st, c) = self.open("h_housing", t).await?;
        assert_eq!(st, StatusCode::CREATED, "{c}");
        let id = c["id"].as_i64().unwrap();
        let (st, body) = self.advance("h_housing", id, json!({"stage": "investigating"})).await?;
        assert_eq!(st, StatusCode::OK, "{body}");
        let mut d = decision;
        d["stage"] = json!("decided");
        let (st, body) = self.advance("h_housing", id, d).await?;
        assert_eq!(st, StatusCode::OK, "{body}");
        Ok(id)
    }
}

fn assert_invalid(status: StatusCode, body: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid", "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").starts_with(field), "should name {field}: {body}");
    assert!(body["error"]["message_zh"].as_str().unwrap_or("").starts_with(field), "{body}");
}

#[tokio::test]
async fn a_case_from_a_signed_task_through_all_five_stages() -> Result<()> {
    let app = app().await?;
    let t = task(&app.db.store, "signed", "demo-site-01", app.housing).await?;
    let (_, obj) = app.get("h_housing", "/api/v1/objects/demo-site-01").await?;
    assert_eq!((obj["credit_class"].as_str(), obj["credit_points"].as_i64()), (Some("A"), Some(100)), "{obj}");

    let (st, c) = app.open("h_housing", t).await?;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let id = c["id"].as_i64().unwrap();
    assert_eq!((c["stage"].as_str(), c["stage_zh"].as_str()), (Some("filed"), Some("立案")));
    assert_eq!((c["object_id"].as_str(), c["item"].as_str()), (Some("demo-site-01"), Some("demo-dust")));
    assert_eq!(c["department_id"].as_i64(), Some(app.housing));
    assert!(c["case_no"].as_str().unwrap().starts_with("AJ"), "{c}");
    assert_eq!(c["stages"][0]["handler"], "h_housing");
    assert_eq!(c["stages"][0]["note"], "现场核查发现未落实扬尘防治措施");
    assert!(app.audited("case.open", &id.to_string()).await?, "opening audited");
    let (_, task) = app.get("h_housing", &format!("/api/v1/tasks/{t}")).await?;
    let opened = task["events"].as_array().unwrap().iter().find(|e| e["action"] == "case_opened").cloned();
    assert_eq!(opened.map(|e| e["detail"]["case_id"].clone()), Some(json!(id)), "the task's timeline names the case: {task}");

    // One case per task.
    let (st, body) = app.open("l_housing", t).await?;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");

    let filing = pdf("立案审批表");
    let (st, d) = app.upload("h_housing", id, "立案审批表.pdf", filing.clone(), None).await?;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    assert_eq!((d["stage"].as_str(), d["content_type"].as_str()), (Some("filed"), Some("application/pdf")));
    assert_eq!(d["size"].as_u64(), Some(filing.len() as u64));
    assert!(app.audited("case.document", &id.to_string()).await?, "upload audited");

    // Out of order: 409 with the reason in both languages.
    for (stage, zh) in [("decided", "调查取证"), ("closed", "调查取证"), ("filed", "立案")] {
        let (st, body) = app.advance("h_housing", id, json!({"stage": stage})).await?;
        assert_eq!(st, StatusCode::CONFLICT, "{stage}: {body}");
        assert!(body["error"]["message_zh"].as_str().unwrap().contains(zh), "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    let (st, body) = app.advance("h_housing", id, json!({"stage": "archived"})).await?;
    assert_invalid(st, &body, "stage");

    let (st, body) = app.advance("h_housing", id, json!({"stage": "investigating", "penalty": "warning"})).await?;
    assert_invalid(st, &body, "penalty");
    let (st, c) = app.advance("l_housing", id, json!({"stage": "investigating", "note": "调取监测数据"})).await?;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["stage"], "investigating");
    let (st, _) = app.upload("h_housing", id, "询问笔录.png", offsite_png(), None).await?;
    assert_eq!(st, StatusCode::CREATED);
    // A document for a stage not reached yet.
    let (st, body) = app.upload("h_housing", id, "处罚决定书.pdf", pdf("决定书"), Some("decided")).await?;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");

    // The decision: validated, then recorded with the catalog's legal basis.
    let (st, body) = app.advance("h_housing", id, json!({"stage": "decided"})).await?;
    assert_invalid(st, &body, "penalty");
    let (st, body) = app.advance("h_housing", id, json!({"stage": "decided", "penalty": "fine"})).await?;
    assert_invalid(st, &body, "amount_yuan");
    let (st, body) =
        app.advance("h_housing", id, json!({"stage": "decided", "penalty": "fine", "amount_yuan": 0})).await?;
    assert_invalid(st, &body, "amount_yuan");
    let (st, body) =
        app.advance("h_housing", id, json!({"stage": "decided", "penalty": "warning", "amount_yuan": 100})).await?;
    assert_invalid(st, &body, "amount_yuan");
    let (st, body) = app.advance("h_housing", id, json!({"stage": "decided", "penalty": "jail"})).await?;
    assert_invalid(st, &body, "penalty");
    let (st, body) = app.advance("h_housing", id, json!({"stage": "executing"})).await?;
    assert_eq!(st, StatusCode::CONFLICT, "refused decisions leave the case where it was: {body}");

    let (st, c) = app
        .advance(
            "h_housing",
            id,
            json!({"stage": "decided", "note": "处罚决定书已送达", "penalty": "fine", "amount_yuan": "50000", "disclose": true}),
        )
        .await?;
    assert_eq!(st, StatusCode::OK, "{c}");
    let d = &c["decision"];
    assert_eq!(d["legal_basis"], DUST_BASIS);
    assert_eq!((d["penalty"].as_str(), d["penalty_zh"].as_str()), (Some("fine"), Some("罚款")));
    assert_eq!((d["amount_fen"].as_i64(), d["amount_yuan"].as_str()), (Some(5_000_000), Some("50000.00")));
    assert_eq!((d["disclose"].as_bool(), d["credit_severity"].as_str()), (Some(true), Some("serious")));
    let (st, _) = app.upload("h_housing", id, "处罚决定书.pdf", pdf("决定书"), None).await?;
    assert_eq!(st, StatusCode::CREATED);

    // The object's class follows the decision: 100 - 20 = 80, B.
    let (_, obj) = app.get("h_housing", "/api/v1/objects/demo-site-01").await?;
    assert_eq!((obj["credit_class"].as_str(), obj["credit_points"].as_i64()), (Some("B"), Some(80)), "{obj}");
    let (_, list) = app.get("mon", "/api/v1/objects?q=demo-site-01").await?;
    assert_eq!(list["items"][0]["credit_class"], "B", "{list}");
    let (st, credit) = app.get("rev", "/api/v1/objects/demo-site-01/credit").await?;
    assert_eq!(st, StatusCode::OK, "{credit}");
    assert_eq!((credit["credit_class"].as_str(), credit["credit_points"].as_i64()), (Some("B"), Some(80)));
    assert_eq!(credit["records"].as_array().unwrap().len(), 1);
    let r = &credit["records"][0];
    assert_eq!(
        (r["severity"].as_str(), r["deduction"].as_i64(), r["in_force"].as_bool()),
        (Some("serious"), Some(20), Some(true))
    );
    assert_eq!(r["case_no"], c["case_no"]);

    let (st, c) = app.advance("h_housing", id, json!({"stage": "executing", "note": "罚款已缴纳"})).await?;
    assert_eq!((st, c["stage"].as_str()), (StatusCode::OK, Some("executing")));
    let (st, _) = app.upload("h_housing", id, "缴款凭证.jpg", vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3], None).await?;
    assert_eq!(st, StatusCode::CREATED);
    let (st, c) = app.advance("h_housing", id, json!({"stage": "closed", "note": "结案"})).await?;
    assert_eq!((st, c["stage"].as_str()), (StatusCode::OK, Some("closed")));
    assert!(c["closed_at"].is_string());
    let (st, body) = app.advance("h_housing", id, json!({"stage": "closed"})).await?;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert!(app.audited("case.advance", &id.to_string()).await?);

    // The whole file: five stages, each with its documents.
    let (st, c) = app.get("mon", &format!("/api/v1/cases/{id}")).await?;
    assert_eq!(st, StatusCode::OK);
    let stages: Vec<&str> = c["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["filed", "investigating", "decided", "executing", "closed"]);
    let per_stage: Vec<usize> =
        c["stages"].as_array().unwrap().iter().map(|s| s["documents"].as_array().unwrap().len()).collect();
    assert_eq!(per_stage, [1, 1, 1, 1, 0]);
    assert_eq!(c["stages"][1]["note"], "调取监测数据");
    assert_eq!(c["stages"][1]["handler"], "l_housing");
    assert_eq!(c["documents"].as_array().unwrap().len(), 4);

    // Download gives the bytes back, with the type and name.
    let url = c["stages"][0]["documents"][0]["url"].as_str().unwrap().to_owned();
    let r = app.client("rev").await?.get(app.url(&url)).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert!(r.headers()["content-disposition"].to_str()?.contains("filename*=UTF-8''"), "{:?}", r.headers());
    assert_eq!(r.bytes().await?.to_vec(), filing);
    let (st, _) = app.get("rev", &format!("/api/v1/cases/{id}/documents/999999")).await?;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Listing with filters.
    let (_, l) = app.get("h_housing", "/api/v1/cases?stage=closed").await?;
    assert_eq!((l["total"].as_i64(), l["items"][0]["id"].as_i64()), (Some(1), Some(id)));
    let (_, l) = app.get("h_housing", "/api/v1/cases?stage=filed").await?;
    assert_eq!(l["total"], 0);
    let (_, l) = app.get("mon", "/api/v1/cases?object_id=demo-site-03").await?;
    assert_eq!(l["total"], 0);
    let (st, body) = app.get("mon", "/api/v1/cases?stage=nope").await?;
    assert_invalid(st, &body, "stage");
    Ok(())
}

fn offsite_png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend_from_slice(b"not really an image, but it starts like one");
    v
}

#[tokio::test]
async fn opening_needs_a_signed_task_and_the_right_people() -> Result<()> {
    let app = app().await?;
    let s = &app.db.store;
    for state in ["dispatched", "returned"] {
        let t = task(s, state, "demo-site-01", app.housing).await?;
        let (st, body) = app.open("h_housing", t).await?;
        assert_eq!(st, StatusCode::CONFLICT, "{state}: {body}");
        assert!(body["error"]["message_zh"].as_str().unwrap().contains("签收"), "{body}");
    }
    let t = task(s, "signed", "demo-site-01", app.housing).await?;
    // Another department does not see the task; read-only roles may not open; nobody opens a missing task.
    assert_eq!(app.open("h_ecology", t).await?.0, StatusCode::NOT_FOUND);
    assert_eq!(app.open("mon", t).await?.0, StatusCode::FORBIDDEN);
    assert_eq!(app.open("rev", t).await?.0, StatusCode::FORBIDDEN);
    assert_eq!(app.open("sec", t).await?.0, StatusCode::FORBIDDEN);
    assert_eq!(app.open("h_housing", 999_999).await?.0, StatusCode::NOT_FOUND);
    assert_eq!(
        app.anon.post(app.url(&format!("/api/v1/tasks/{t}/case"))).send().await?.status(),
        StatusCode::UNAUTHORIZED
    );
    // The system administrator may, and with no body at all.
    let r = app.client("sysadmin").await?.post(app.url(&format!("/api/v1/tasks/{t}/case"))).send().await?;
    assert_eq!(r.status(), StatusCode::CREATED);
    // A task without a registered object has no party.
    let t = task(s, "signed", "unregistered-site", app.housing).await?;
    assert_eq!(app.open("h_housing", t).await?.0, StatusCode::CONFLICT);
    Ok(())
}

#[tokio::test]
async fn departments_see_and_change_only_their_own_cases() -> Result<()> {
    let app = app().await?;
    let t = task(&app.db.store, "signed", "demo-site-01", app.housing).await?;
    let (_, c) = app.open("h_housing", t).await?;
    let id = c["id"].as_i64().unwrap();
    let (st, d) = app.upload("h_housing", id, "a.pdf", pdf("a"), None).await?;
    assert_eq!(st, StatusCode::CREATED);
    let doc = d["id"].as_i64().unwrap();

    // Ecology sees nothing of housing's case: 404 everywhere, and an empty list.
    assert_eq!(app.get("h_ecology", &format!("/api/v1/cases/{id}")).await?.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("h_ecology", &format!("/api/v1/cases/{id}/documents/{doc}")).await?.0, StatusCode::NOT_FOUND);
    assert_eq!(app.advance("h_ecology", id, json!({"stage": "investigating"})).await?.0, StatusCode::NOT_FOUND);
    assert_eq!(app.upload("h_ecology", id, "b.pdf", pdf("b"), None).await?.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("h_ecology", "/api/v1/objects/demo-site-01/credit").await?.0, StatusCode::NOT_FOUND);
    let (_, l) = app.get("h_ecology", "/api/v1/cases").await?;
    assert_eq!((l["total"].as_i64(), l["items"].as_array().map(Vec::len)), (Some(0), Some(0)));
    let (_, l) = app.get("h_housing", "/api/v1/cases").await?;
    assert_eq!(l["total"], 1);

    // Everyone-seeing roles read it but only workers change it.
    for user in ["mon", "rev", "sysadmin"] {
        assert_eq!(app.get(user, &format!("/api/v1/cases/{id}")).await?.0, StatusCode::OK, "{user}");
        let (_, l) = app.get(user, &format!("/api/v1/cases?department_id={}", app.housing)).await?;
        assert_eq!(l["total"], 1, "{user}");
        let (_, l) = app.get(user, &format!("/api/v1/cases?department_id={}", app.ecology)).await?;
        assert_eq!(l["total"], 0, "{user}");
    }
    for user in ["mon", "rev"] {
        assert_eq!(app.advance(user, id, json!({"stage": "investigating"})).await?.0, StatusCode::FORBIDDEN, "{user}");
        assert_eq!(app.upload(user, id, "c.pdf", pdf("c"), None).await?.0, StatusCode::FORBIDDEN, "{user}");
    }
    assert_eq!(app.get("sec", &format!("/api/v1/cases/{id}")).await?.0, StatusCode::FORBIDDEN);
    assert_eq!(app.get("sec", "/api/v1/cases").await?.0, StatusCode::FORBIDDEN);
    let (st, _) = app.advance("sysadmin", id, json!({"stage": "investigating"})).await?;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(app.anon.get(app.url("/api/v1/cases")).send().await?.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn documents_are_checked_by_content_and_size() -> Result<()> {
    let app = app().await?;
    let t = task(&app.db.store, "signed", "demo-site-01", app.housing).await?;
    let (_, c) = app.open("h_housing", t).await?;
    let id = c["id"].as_i64().unwrap();
    let (st, body) = app.upload("h_housing", id, "notes.pdf", b"just text, named like a PDF".to_vec(), None).await?;
    assert_invalid(st, &body, "file");
    // A zip is a document only when named as an office file.
    let zip = b"PK\x03\x04 office document".to_vec();
    let (st, body) = app.upload("h_housing", id, "evidence.zip", zip.clone(), None).await?;
    assert_invalid(st, &body, "file");
    let (st, d) = app.upload("h_housing", id, "现场检查笔录.docx", zip, None).await?;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    assert_eq!(d["content_type"], "application/vnd.openxmlformats-officedocument.wordprocessingml.document");
    assert_eq!(d["filename"], "现场检查笔录.docx");
    let mut big = pdf("big");
    big.resize(offsite_portal::routes::cases::DOCUMENT_MAX_BYTES + 1, b' ');
    let (st, _) = app.upload("h_housing", id, "big.pdf", big, None).await?;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    // Just under the limit passes the body limit of the route.
    let mut large = pdf("large");
    large.resize(offsite_portal::routes::cases::DOCUMENT_MAX_BYTES - 1024, b' ');
    let (st, body) = app.upload("h_housing", id, "large.pdf", large, None).await?;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, body) = app.upload("h_housing", id, "a.pdf", pdf("a"), Some("nonsense")).await?;
    assert_invalid(st, &body, "stage");
    Ok(())
}

#[tokio::test]
async fn only_decisions_marked_for_disclosure_are_public() -> Result<()> {
    let app = app().await?;
    let (st, empty) = app.anon.get(app.url("/api/public/v1/disclosures")).send().await.map(|r| (r.status(), r))?;
    assert_eq!(st, StatusCode::OK);
    let empty: Value = empty.json().await?;
    assert_eq!((empty["total"].as_i64(), empty["items"].as_array().map(Vec::len)), (Some(0), Some(0)));

    let public =
        app.decided_case("demo-site-01", json!({"penalty": "fine", "amount_yuan": 12345.6, "disclose": true})).await?;
    app.decided_case("demo-site-03", json!({"penalty": "fine", "amount_yuan": 800, "disclose": false})).await?;
    app.decided_case("demo-site-05", json!({"penalty": "warning", "legal_basis": "《建设工程安全生产管理条例》"}))
        .await?;
    let revoked = app.decided_case("demo-site-07", json!({"penalty": "revocation", "disclose": true})).await?;

    let r = app.anon.get(app.url("/api/public/v1/disclosures")).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await?;
    let v: Value = serde_json::from_str(&text)?;
    assert_eq!(v["total"], 2, "{v}");
    let nos: Vec<&str> = v["items"].as_array().unwrap().iter().map(|i| i["case_no"].as_str().unwrap()).collect();
    let store = &app.db.store;
    let case_no = |id: i64| async move { store.case(id).await.unwrap().unwrap().case_no };
    assert_eq!(nos, [case_no(revoked).await, case_no(public).await], "newest first");
    let fine = &v["items"][1];
    assert_eq!((fine["penalty"].as_str(), fine["amount_yuan"].as_str()), (Some("fine"), Some("12345.60")));
    assert_eq!(fine["legal_basis"], DUST_BASIS);
    assert_eq!(fine["item_name"], "对建设工地扬尘污染防治的监督检查");
    assert!(fine["object_name"].as_str().unwrap().contains("示范建设工地01号"), "{fine}");
    assert!(fine["credit_code"].is_string());
    assert!(fine["decision_date"].as_str().unwrap().len() == 10, "{fine}");
    assert_eq!(v["items"][0]["penalty_zh"], "吊销许可证");
    // Nothing about people: no handler, no note, no internal ids.
    for needle in ["h_housing", "现场核查", "task", "department"] {
        assert!(!text.contains(needle), "the public list leaks {needle}: {text}");
    }
    // Paged.
    let v: Value = app.anon.get(app.url("/api/public/v1/disclosures?limit=1&offset=1")).send().await?.json().await?;
    assert_eq!(
        (v["total"].as_i64(), v["items"][0]["case_no"].as_str()),
        (Some(2), Some(case_no(public).await.as_str()))
    );

    // The revocation (40 points) puts its object in class C.
    let (_, obj) = app.get("mon", "/api/v1/objects/demo-site-07").await?;
    assert_eq!((obj["credit_class"].as_str(), obj["credit_points"].as_i64()), (Some("C"), Some(60)));
    let (_, obj) = app.get("mon", "/api/v1/objects/demo-site-05").await?;
    assert_eq!((obj["credit_class"].as_str(), obj["credit_points"].as_i64()), (Some("A"), Some(95)));
    Ok(())
}
