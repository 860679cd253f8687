//! Public, no login: `GET /api/public/v1/catalog`, the regulatory item catalog in force (监管事项目录
//! 清单) for the public service portal. Only published versions are shown, and only what a citizen
//! needs to know what is supervised and how: never drafts, nor who wrote or published an item.
//! Rate-limited per client address like the other public endpoints, and cacheable for a minute.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use offsite_store::calendar::china;
use offsite_store::{CatalogItem, RateLimit};
use serde::{Deserialize, Serialize};

use crate::auth::ClientIp;
use crate::error::ApiResult;
use crate::extract::ApiQuery;
use crate::AppState;

/// Catalog reads per address: a person paging and searching stays far below it.
pub const CATALOG_LIMIT: RateLimit = RateLimit { max: 300, window: Duration::from_secs(600) };
/// Items per page when `limit` is not given, and at most.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 100;
/// A search text is cut to this many characters.
const QUERY_MAX_CHARS: usize = 100;

/// A published catalog item as the public sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicCatalogItem {
    pub code: String,
    pub version: i32,
    pub department: String,
    pub main_item: String,
    pub sub_item: Option<String>,
    pub method: String,
    pub measures: Option<String>,
    pub object_type: Option<String>,
    pub legal_basis: Option<String>,
    pub process: Option<String>,
    pub result: Option<String>,
    pub level: Option<String>,
    /// The day (Asia/Shanghai) this version took effect.
    pub published_date: Option<String>,
}

impl From<CatalogItem> for PublicCatalogItem {
    fn from(i: CatalogItem) -> Self {
        let f = i.fields;
        Self {
            code: i.code,
            version: i.version,
            department: f.department,
            main_item: f.main_item,
            sub_item: f.sub_item,
            method: f.method,
            measures: f.measures,
            object_type: f.object_type,
            legal_basis: f.legal_basis,
            process: f.process,
            result: f.result,
            level: f.level,
            published_date: i.published_at.map(|t| t.with_timezone(&china()).format("%Y-%m-%d").to_string()),
        }
    }
}

impl PublicCatalogItem {
    /// Whether every word of the search (split on white space) appears, ignoring case, in the
    /// code, department, items, method or object type.
    pub fn matches(&self, words: &[String]) -> bool {
        let hay = [
            Some(self.code.as_str()),
            Some(self.department.as_str()),
            Some(self.main_item.as_str()),
            self.sub_item.as_deref(),
            Some(self.method.as_str()),
            self.object_type.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("\n")
        .to_lowercase();
        words.iter().all(|w| hay.contains(w.as_str()))
    }
}

/// The search's words, lower-cased; none for a blank search.
pub fn search_words(q: Option<&str>) -> Vec<String> {
    let q: String = q.unwrap_or_default().chars().take(QUERY_MAX_CHARS).collect();
    q.split_whitespace().map(str::to_lowercase).collect()
}

#[derive(Debug, Default, Deserialize)]
pub struct CatalogQuery {
    q: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

#[derive(Debug, Serialize)]
struct CatalogPage {
    items: Vec<PublicCatalogItem>,
    total: usize,
}

pub async fn catalog(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiQuery(q): ApiQuery<CatalogQuery>,
) -> ApiResult<Response> {
    let ip = ip.unwrap_or_else(|| "unknown".to_owned());
    if let Some(r) = crate::routes::complaints::rate(&state, "public_catalog", &ip, CATALOG_LIMIT).await? {
        return Ok(r);
    }
    let words = search_words(q.q.as_deref());
    // catalog_current holds published versions only: a draft never reaches this list.
    let found: Vec<PublicCatalogItem> = state
        .store
        .catalog_current()
        .await?
        .into_iter()
        .map(PublicCatalogItem::from)
        .filter(|i| i.matches(&words))
        .collect();
    let total = found.len();
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let items = found.into_iter().skip(q.offset.unwrap_or(0)).take(limit).collect();
    let mut resp = Json(CatalogPage { items, total }).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> PublicCatalogItem {
        PublicCatalogItem {
            code: "ENV-001".into(),
            version: 2,
            department: "市生态环境局".into(),
            main_item: "大气污染防治监管".into(),
            sub_item: Some("扬尘在线监测".into()),
            method: "非现场监管".into(),
            measures: None,
            object_type: Some("建筑工地".into()),
            legal_basis: Some("《大气污染防治法》".into()),
            process: None,
            result: None,
            level: Some("市级".into()),
            published_date: Some("2026-05-01".into()),
        }
    }

    #[test]
    fn every_word_must_appear_somewhere() {
        let i = item();
        assert!(i.matches(&search_words(None)));
        assert!(i.matches(&search_words(Some("  "))));
        assert!(i.matches(&search_words(Some("扬尘 工地"))));
        assert!(i.matches(&search_words(Some("env-001"))));
        assert!(!i.matches(&search_words(Some("扬尘 噪声"))));
        // The legal basis is shown but not searched.
        assert!(!i.matches(&search_words(Some("防治法"))));
    }

    #[test]
    fn long_searches_are_cut() {
        let long = "字".repeat(500);
        assert_eq!(search_words(Some(&long))[0].chars().count(), QUERY_MAX_CHARS);
    }
}
