//! The web UI served by the portal itself: `/` and the app's own routes get the UI (the built
//! index.html, or the page saying it was not built), with a same-origin CSP; the API's unknown
//! paths stay JSON 404s; hashed assets are cached for good and a missing one is a 404, not HTML.

use anyhow::Result;
use offsite_portal::{serve, AppState};
use offsite_store::testing::TestDb;
use reqwest::header;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;

async fn app() -> Result<(String, TestDb, oneshot::Sender<()>)> {
    let db = TestDb::new().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = oneshot::channel::<()>();
    let state = AppState::new(db.store.clone()).with_live(offsite_portal::live::channel());
    tokio::spawn(serve(listener, state, async move {
        let _ = rx.await;
    }));
    Ok((base, db, tx))
}

/// The first `/assets/...` file index.html names, if the UI was built.
fn first_asset(html: &str) -> Option<&str> {
    let start = html.find("/assets/")?;
    let end = html[start..].find('"')? + start;
    Some(&html[start..end])
}

#[tokio::test]
async fn ui_at_root_and_app_routes_api_stays_json() -> Result<()> {
    let (base, _db, _stop) = app().await?;
    let c = reqwest::Client::new();

    let root = c.get(format!("{base}/")).send().await?;
    assert_eq!(root.status(), StatusCode::OK);
    let headers = root.headers().clone();
    assert!(headers[header::CONTENT_TYPE].to_str()?.starts_with("text/html"));
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str()?;
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self';"), "{csp}");
    let built = !headers.contains_key(offsite_portal::web::NOT_BUILT_HEADER);
    let html = root.text().await?;
    if built {
        assert!(html.contains(r#"<div id="app">"#), "{html}");
    } else {
        assert!(html.contains("网页界面未构建") && html.contains("make web"), "{html}");
    }

    // A route of the app itself: the same page, so a reload keeps working.
    let deep = c.get(format!("{base}/tasks/123")).send().await?;
    assert_eq!(deep.status(), StatusCode::OK);
    assert_eq!(deep.text().await?, html);

    // The API's unknown paths, and non-GET requests, keep the JSON 404.
    for r in [c.get(format!("{base}/api/v1/nope")), c.post(format!("{base}/tasks/123"))] {
        let resp = r.send().await?;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert!(resp.headers()[header::CONTENT_TYPE].to_str()?.starts_with("application/json"));
        let body: Value = resp.json().await?;
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    }

    // A file that is not there is a 404, not index.html.
    let missing = c.get(format!("{base}/assets/nope-0000.js")).send().await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    if let Some(asset) = first_asset(&html) {
        let resp = c.get(format!("{base}{asset}")).send().await?;
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
        assert!(resp.headers()[header::CACHE_CONTROL].to_str()?.contains("immutable"));
        let etag = resp.headers()[header::ETAG].clone();
        let again = c.get(format!("{base}{asset}")).header(header::IF_NONE_MATCH, etag).send().await?;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }
    Ok(())
}
