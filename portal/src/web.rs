//! The web UI (portal/web, built by Vite into portal/web/dist) served by the portal itself, so one
//! `offsite` binary carries the whole product and nothing is fetched from another host.
//!
//! Release builds embed the files at compile time; debug builds read them from the folder at run
//! time (rust-embed's default), so `npm run build` shows up without recompiling. A build without
//! the folder still compiles and answers with a page that says the UI was not built.
//!
//! Any GET outside the API that is not a file gets `index.html` (the single-page app's history
//! routing), except paths that look like files (a dot in the last segment): a missing script must
//! be a 404, not HTML the browser then refuses as a script.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web/dist"]
#[allow_missing = true]
struct Dist;

/// Only this origin: every script, style sheet, font and image is bundled. Element Plus and ECharts
/// set `style` attributes at run time, hence 'unsafe-inline' for styles (never for scripts).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; \
     connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'self'; \
     form-action 'self'; frame-ancestors 'none'";

/// Vite names everything under `assets/` after its content hash: such a file never changes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `index.html` names the current hashed assets, so browsers must revalidate it every time.
const REVALIDATE: &str = "no-cache";

/// Marks the page served when the UI was not built (tests and operators can tell it apart).
pub const NOT_BUILT_HEADER: &str = "x-offsite-ui";

/// The router's fallback: the UI for GET/HEAD outside the API, the JSON 404 otherwise.
pub async fn fallback(req: Request) -> Response {
    let path = req.uri().path();
    if !(req.method() == Method::GET || req.method() == Method::HEAD) || is_server_path(path) {
        return crate::not_found().await.into_response();
    }
    let file = path.trim_start_matches('/');
    if !file.is_empty() {
        if let Some(resp) = asset(file, req.headers()) {
            return resp;
        }
        if looks_like_file(file) {
            return crate::not_found().await.into_response();
        }
    }
    match asset("index.html", req.headers()) {
        Some(resp) => resp,
        None => not_built(),
    }
}

/// Paths the server answers itself; never the UI's.
fn is_server_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/healthz" || path == "/readyz" || path == "/metrics"
}

fn looks_like_file(path: &str) -> bool {
    path.rsplit('/').next().is_some_and(|last| last.contains('.'))
}

fn asset(file: &str, request: &HeaderMap) -> Option<Response> {
    let found = Dist::get(file)?;
    let etag = format!("\"{}\"", hex::encode(found.metadata.sha256_hash()));
    let cache = if file.starts_with("assets/") { IMMUTABLE } else { REVALIDATE };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(file)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    security_headers(&mut headers);
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if unchanged {
        return Some((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    Some((StatusCode::OK, headers, Body::from(found.data.into_owned())).into_response())
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
}

/// The types Vite emits; anything else is served as bytes (and `nosniff` keeps it that way).
fn content_type(file: &str) -> &'static str {
    let ext = file.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "txt" => "text/plain; charset=utf-8",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

/// What a binary built without `make web` shows instead of the UI: the API still works.
fn not_built() -> Response {
    const PAGE: &str = r#"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>网页界面未构建 · Web UI not built</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto; padding: 0 1em">
<h1>网页界面未构建</h1>
<p>此 offsite 程序构建时没有包含网页界面。接口（/api/v1）照常工作。请在源码目录运行 <code>make web</code> 后重新构建（<code>make build</code>）。</p>
<h2 lang="en">The web UI was not built</h2>
<p lang="en">This offsite binary was built without its web UI. The API (/api/v1) works as usual. Run <code>make web</code> in the source tree, then rebuild (<code>make build</code>).</p>
</body></html>
"#;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
    headers.insert(NOT_BUILT_HEADER, HeaderValue::from_static("not-built"));
    security_headers(&mut headers);
    (StatusCode::OK, headers, PAGE).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_are_not_the_ui() {
        assert!(is_server_path("/api/v1/nope"));
        assert!(is_server_path("/api"));
        assert!(is_server_path("/healthz"));
        assert!(!is_server_path("/apiary"));
        assert!(!is_server_path("/tasks/123"));
        assert!(!is_server_path("/public/complaints"));
    }

    #[test]
    fn file_like_paths_are_not_routes() {
        assert!(looks_like_file("assets/index-abc.js"));
        assert!(!looks_like_file("tasks/123"));
        assert!(!looks_like_file("v1.2/tasks"));
    }

    #[test]
    fn hashed_assets_get_their_types() {
        assert_eq!(content_type("assets/a.JS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("assets/font.woff2"), "font/woff2");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }
}
