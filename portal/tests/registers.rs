//! The registers over HTTP: scoped objects, credit-code validation with named fields, CSV import
//! with a per-row report and export, the catalog's draft/publish history.

mod common;

use anyhow::Result;
use offsite_portal::{serve, AppState};
use offsite_store::auth::Role;
use offsite_store::testing::TestDb;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

struct App {
    base: String,
    db: TestDb,
    _stop: oneshot::Sender<()>,
}

async fn app() -> Result<App> {
    let db = TestDb::new().await?;
    db.store.seed_demo_registers().await?;
    let housing = db.store.department_by_code("housing-construction").await?.unwrap().id;
    for (name, role, dept) in [("sys", Role::SystemAdmin, None), ("h1", Role::Handler, Some(housing))] {
        common::add_user(&db.store, name, &[role], dept).await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, AppState::new(db.store.clone()).with_live(offsite_portal::live::channel()), async move {
        let _ = rx.await;
    }));
    Ok(App { base, db, _stop: tx })
}

impl App {
    async fn client(&self, user: &str) -> Result<reqwest::Client> {
        common::client(&self.db.store, user).await
    }

    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }
}

#[tokio::test]
async fn objects_are_scoped_validated_imported_and_exported() -> Result<()> {
    let app = app().await?;
    let sys = app.client("sys").await?;
    let h1 = app.client("h1").await?;

    // The seed puts the odd demo sites under 住建局, the even ones under 生态环境局.
    let all: Value = sys.get(app.url("/api/v1/objects?limit=100")).send().await?.json().await?;
    let mine: Value = h1.get(app.url("/api/v1/objects?limit=100")).send().await?.json().await?;
    let (all_n, mine_n) = (all["total"].as_i64().unwrap(), mine["total"].as_i64().unwrap());
    assert!(mine_n > 0 && mine_n < all_n, "handler sees {mine_n} of {all_n}");
    let theirs = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .find(|id| !mine["items"].as_array().unwrap().iter().any(|m| m["id"] == id.as_str()))
        .unwrap();
    assert_eq!(h1.get(app.url(&format!("/api/v1/objects/{theirs}"))).send().await?.status(), StatusCode::NOT_FOUND);

    // A wrong check character is a 400 naming the field, in both languages.
    let bad = json!({"id": "new-site", "name": "新工地", "credit_code": "91350100M000100Y44"});
    let r = sys.post(app.url("/api/v1/objects")).json(&bad).send().await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await?;
    assert!(e.to_string().contains("credit_code"), "{e}");
    assert!(e["error"]["message_zh"].as_str().is_some());
    let good = json!({"id": "new-site", "name": "新工地", "credit_code": "91350100M000100Y43"});
    assert_eq!(sys.post(app.url("/api/v1/objects")).json(&good).send().await?.status(), StatusCode::CREATED);
    // Handlers cannot change the register.
    assert_eq!(h1.post(app.url("/api/v1/objects")).json(&good).send().await?.status(), StatusCode::FORBIDDEN);

    // Import: good rows stored, broken rows reported by row and field.
    let csv = "id,name,credit_code,lon,lat\nimp-1,导入工地一,,120.1,30.2\nimp-2,,,120.2,30.2\nimp-3,导入工地三,91350100M000100Y44,120.3,30.2\nimp-4,导入工地四,,500,30.2\n";
    let report: Value = sys.post(app.url("/api/v1/objects/import")).body(csv).send().await?.json().await?;
    assert_eq!(report["inserted"], 1, "{report}");
    let rows: Vec<(i64, String)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_i64().unwrap(), e["field"].as_str().unwrap().to_owned()))
        .collect();
    assert!(rows.contains(&(3, "name".into())) && rows.contains(&(4, "credit_code".into())) && rows.contains(&(5, "lon".into())), "{rows:?}");
    let exported = sys.get(app.url("/api/v1/objects/export")).send().await?;
    assert!(exported.headers()["content-type"].to_str()?.starts_with("text/csv"));
    let text = exported.text().await?;
    assert!(text.contains("imp-1") && text.contains("new-site"));
    let scoped = h1.get(app.url("/api/v1/objects/export")).send().await?.text().await?;
    assert!(!scoped.contains(&theirs), "export follows the scope");
    Ok(())
}

#[tokio::test]
async fn catalog_versions_and_history() -> Result<()> {
    let app = app().await?;
    let sys = app.client("sys").await?;
    let fields = |measures: &str| {
        json!({"department": "住建局", "main_item": "建筑施工扬尘监管", "method": "非现场监管", "measures": measures, "level": "市级"})
    };
    let d1: Value = sys.put(app.url("/api/v1/catalog/ITEM-1/draft")).json(&fields("在线监测")).send().await?.json().await?;
    assert_eq!(d1["status"], "draft");
    assert_eq!(sys.post(app.url("/api/v1/catalog/ITEM-1/publish")).send().await?.status(), StatusCode::OK);
    sys.put(app.url("/api/v1/catalog/ITEM-1/draft")).json(&fields("在线监测与视频巡查")).send().await?;
    sys.post(app.url("/api/v1/catalog/ITEM-1/publish")).send().await?;
    let hist: Value = sys.get(app.url("/api/v1/catalog/ITEM-1/history")).send().await?.json().await?;
    assert_eq!(hist["total"], 2, "{hist}");
    let current: Value = sys.get(app.url("/api/v1/catalog")).send().await?.json().await?;
    let item = current["items"].as_array().unwrap().iter().find(|i| i["code"] == "ITEM-1").unwrap();
    assert_eq!(item["version"], 2);
    assert!(item.to_string().contains("在线监测与视频巡查"), "{item}");
    Ok(())
}

#[tokio::test]
async fn drafts_are_listed_and_departments_edited_and_deleted() -> Result<()> {
    let app = app().await?;
    let sys = app.client("sys").await?;
    let fields = json!({"department": "住建局", "main_item": "渣土运输监管", "method": "非现场监管"});
    sys.put(app.url("/api/v1/catalog/NEW-1/draft")).json(&fields).send().await?.error_for_status()?;
    let drafts: Value = sys.get(app.url("/api/v1/catalog/drafts")).send().await?.json().await?;
    assert!(drafts["items"].as_array().unwrap().iter().any(|i| i["code"] == "NEW-1"), "{drafts}");
    let current: Value = sys.get(app.url("/api/v1/catalog")).send().await?.json().await?;
    assert!(!current.to_string().contains("NEW-1"), "a draft is not current: {current}");

    let d: Value = sys.post(app.url("/api/v1/departments")).json(&json!({"code": "tmp", "name": "临时部门"})).send().await?.json().await?;
    let id = d["id"].as_i64().unwrap();
    let u: Value = sys
        .put(app.url(&format!("/api/v1/departments/{id}")))
        .json(&json!({"code": "tmp2", "name": "临时部门（改）"}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!((u["code"].as_str(), u["name"].as_str()), (Some("tmp2"), Some("临时部门（改）")), "{u}");
    // Under itself: refused, naming the field.
    let r = sys.put(app.url(&format!("/api/v1/departments/{id}"))).json(&json!({"code": "tmp2", "name": "x", "parent_id": id})).send().await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await?.contains("parent_id"));
    // A department with objects cannot go; an empty one can, once.
    let housing = app.db.store.department_by_code("housing-construction").await?.unwrap().id;
    let r = sys.delete(app.url(&format!("/api/v1/departments/{housing}"))).send().await?;
    assert!(r.status().is_client_error() && r.status() != StatusCode::NOT_FOUND, "{}", r.status());
    assert_eq!(sys.delete(app.url(&format!("/api/v1/departments/{id}"))).send().await?.status(), StatusCode::NO_CONTENT);
    assert_eq!(sys.delete(app.url(&format!("/api/v1/departments/{id}"))).send().await?.status(), StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn objects_round_trip_through_xlsx() -> Result<()> {
    let app = app().await?;
    let sys = app.client("sys").await?;
    let x = sys.get(app.url("/api/v1/objects/export?format=xlsx")).send().await?;
    assert_eq!(x.status(), StatusCode::OK);
    assert!(x.headers()["content-type"].to_str()?.contains("spreadsheetml"));
    let bytes = x.bytes().await?;
    assert!(bytes.starts_with(b"PK"), "an XLSX (zip) file");
    // Re-importing the export changes nothing and reports no error.
    let report: Value = sys.post(app.url("/api/v1/objects/import?dry_run=true")).body(bytes.to_vec()).send().await?.json().await?;
    assert_eq!(report["errors"].as_array().map(Vec::len), Some(0), "{report}");
    assert_eq!(report["inserted"], 0);
    assert!(report["unchanged"].as_i64().unwrap() >= 10, "{report}");
    // A broken spreadsheet is a 400 naming the file.
    let r = sys.post(app.url("/api/v1/objects/import")).body(b"PK\x03\x04garbage".to_vec()).send().await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let bad = sys.get(app.url("/api/v1/objects/export?format=pdf")).send().await?;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn device_metadata_import_and_export() -> Result<()> {
    let app = app().await?;
    for (id, object) in [("devx1", "demo-site-01"), ("devx2", "demo-site-02")] {
        app.db
            .store
            .insert_device(&offsite_store::NewDevice {
                id: offsite_wire::DeviceId::parse(id)?,
                name: id.into(),
                object_id: Some(object.into()),
                token_sha256: [5; 32],
                cert_serial: None,
                cert_not_after: None,
            })
            .await?;
    }
    let sys = app.client("sys").await?;
    let csv = "id,location,lon,lat,installed_at,model,metrics,class\n\
               devx1,东门,120.15,30.25,2026-03-01,DM-200,pm10 pm25 noise,dust-monitor\n\
               devx2,,500,30,,,,\n\
               nosuch,,,,,,,\n\
               devx2,,,,yesterday,,,\n";
    let r: Value = sys.post(app.url("/api/v1/devices/import")).body(csv).send().await?.json().await?;
    assert_eq!(r["updated"], 1, "{r}");
    let errs: Vec<(i64, String)> =
        r["errors"].as_array().unwrap().iter().map(|e| (e["row"].as_i64().unwrap(), e["field"].as_str().unwrap().to_owned())).collect();
    assert_eq!(errs, vec![(3, "lon".into()), (4, "id".into()), (5, "installed_at".into())]);
    let m: Value = sys.get(app.url("/api/v1/devices/devx1/metadata")).send().await?.json().await?;
    assert_eq!((m["model"].as_str(), m["lon"].as_f64()), (Some("DM-200"), Some(120.15)));
    let out = sys.get(app.url("/api/v1/devices/export")).send().await?.text().await?;
    assert!(out.contains("devx1") && out.contains("DM-200") && out.contains("dust-monitor"), "{out}");
    // The handler of 住建局 (odd demo sites) exports only its own devices, and cannot import.
    let h1 = app.client("h1").await?;
    let mine = h1.get(app.url("/api/v1/devices/export")).send().await?.text().await?;
    assert!(mine.contains("devx1") && !mine.contains("devx2"), "{mine}");
    assert_eq!(h1.post(app.url("/api/v1/devices/import")).body(csv).send().await?.status(), StatusCode::FORBIDDEN);
    let x = sys.get(app.url("/api/v1/devices/export?format=xlsx")).send().await?.bytes().await?;
    assert!(x.starts_with(b"PK"));
    Ok(())
}

#[tokio::test]
async fn the_public_catalog_shows_published_items_only_without_internal_fields() -> Result<()> {
    let app = app().await?;
    let sys = app.client("sys").await?;
    let fields = |measures: &str| {
        json!({"department": "住建局", "main_item": "建筑施工扬尘监管", "sub_item": "PM10 在线监测", "method": "非现场监管",
               "measures": measures, "object_type": "建筑工地", "legal_basis": "《大气污染防治法》", "level": "市级"})
    };
    // ITEM-PUB: version 1 published, then a version 2 draft; ITEM-DRAFT: only ever a draft.
    sys.put(app.url("/api/v1/catalog/ITEM-PUB/draft")).json(&fields("在线监测")).send().await?.error_for_status()?;
    sys.post(app.url("/api/v1/catalog/ITEM-PUB/publish")).send().await?.error_for_status()?;
    sys.put(app.url("/api/v1/catalog/ITEM-PUB/draft"))
        .json(&fields("尚未发布的草稿措施"))
        .send()
        .await?
        .error_for_status()?;
    let mut secret = fields("只在草稿里的措施");
    secret["main_item"] = json!("未发布事项");
    sys.put(app.url("/api/v1/catalog/ITEM-DRAFT/draft")).json(&secret).send().await?.error_for_status()?;

    // No login at all.
    let anon = reqwest::Client::new();
    let calls = std::cell::Cell::new(0_i64);
    let get = |q: &str| {
        calls.set(calls.get() + 1);
        anon.get(app.url(&format!("/api/public/v1/catalog{q}"))).send()
    };
    let r = get("").await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    let all: Value = r.json().await?;
    let items = all["items"].as_array().unwrap();
    let codes: Vec<&str> = items.iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&"ITEM-PUB"), "{all}");
    assert!(!codes.contains(&"ITEM-DRAFT"), "a draft is public: {all}");
    let text = all.to_string();
    assert!(!text.contains("草稿") && !text.contains("未发布事项"), "draft content is public: {text}");
    let item = items.iter().find(|i| i["code"] == "ITEM-PUB").unwrap();
    assert_eq!(item["version"], 1);
    assert_eq!(item["measures"], "在线监测");
    assert_eq!(item["legal_basis"], "《大气污染防治法》");
    assert!(item["published_date"].as_str().is_some_and(|d| d.len() == 10), "{item}");
    // Nothing about who wrote or published what, nor the workflow's state.
    let public = "code version department main_item sub_item method measures object_type legal_basis process result \
                  level published_date";
    for i in items {
        for k in i.as_object().unwrap().keys() {
            assert!(public.split_whitespace().any(|p| p == k), "internal field {k} is public: {i}");
        }
    }
    assert!(item.get("created_by").is_none() && item.get("published_by").is_none() && item.get("status").is_none());

    // Search (every word, any case) and pages.
    let found: Value = get("?q=pm10%20ITEM-pub").await?.json().await?;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["items"][0]["code"], "ITEM-PUB");
    let none: Value = get("?q=%E6%9C%AA%E5%8F%91%E5%B8%83").await?.json().await?; // 未发布
    assert_eq!(none["total"], 0, "{none}");
    let page: Value = get("?limit=1&offset=1").await?.json().await?;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["total"], all["total"]);
    assert!(all["total"].as_i64().unwrap() >= 2, "the demo catalog and ITEM-PUB: {all}");

    // Rate-limited per address like the other public endpoints.
    let limit = offsite_portal::routes::public_catalog::CATALOG_LIMIT.max;
    loop {
        let r = get("?limit=1").await?;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
            break;
        }
        assert_eq!(r.status(), StatusCode::OK);
        assert!(calls.get() <= limit, "still answering after {} calls", calls.get());
    }
    assert_eq!(calls.get(), limit + 1);
    Ok(())
}
