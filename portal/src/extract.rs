//! Extractors whose rejections are our JSON errors instead of axum's plain-text ones.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Json, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Like [`Query`], but a malformed query string is a JSON 400.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // `%00` is the only way a query string carries NUL (raw control bytes are not valid in a URI).
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(nul_refused());
        }
        // The serde message names the field and the problem ("limit: invalid digit found in
        // string"); it only echoes what the client sent, so it is safe to return.
        Query::<T>::try_from_uri(&parts.uri).map(|Query(v)| ApiQuery(v)).map_err(|e| {
            let detail = e.body_text();
            ApiError::bad_request(format!("invalid query string: {detail}"), format!("查询参数无效：{detail}"))
        })
    }
}

/// Like [`Path`], but a bad path segment (e.g. invalid percent-encoding) is a JSON 400.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.path().contains("%00") {
            return Err(nul_refused());
        }
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            // A missing parameter is a routing bug on our side, not the client's.
            Err(e) if e.status().is_server_error() => Err(anyhow::anyhow!("path extraction: {}", e.body_text()).into()),
            Err(e) => {
                let detail = e.body_text();
                Err(ApiError::bad_request(format!("invalid path: {detail}"), format!("路径参数无效：{detail}")))
            }
        }
    }
}

/// Like [`Json`], but every rejection is our JSON error: malformed JSON is a 400, JSON of the wrong
/// shape (missing field, unknown variant, out-of-range value) a 400 with code `invalid`, a missing or wrong
/// `Content-Type` a 415 and an oversized body a 413. The message names the problem.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_type(req.headers()) {
            return Err(ApiError::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
        let body = Bytes::from_request(req, state).await.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE),
            s if s.is_server_error() => anyhow::anyhow!("reading a JSON body: {}", e.body_text()).into(),
            s => ApiError::new(s, "bad_request", format!("unreadable request body: {}", e.body_text()), "无法读取请求体"),
        })?;
        if has_nul_escape(&body) {
            return Err(nul_refused());
        }
        match Json::<T>::from_bytes(&body) {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

/// `application/json` or any `+json` type, as axum's own `Json` accepts.
fn has_json_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Whether a JSON text holds a string with the NUL character: PostgreSQL text cannot store it,
/// so it would surface as a database error (a 500) instead of the caller's mistake. In valid JSON
/// NUL can only appear as the escape `\u0000`; an escaped backslash before `u0000` is plain text.
pub fn has_nul_escape(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json.get(i + 1) == Some(&b'u') && json.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            // Skip the escaped character, so `\\u0000` is not mistaken for an escape.
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// The refusal of text holding NUL, which no field of ours accepts.
pub fn nul_refused() -> ApiError {
    ApiError::bad_request("text must not contain the NUL character (\\u0000, %00)", "文本不能包含空字符（\\u0000、%00）")
}

/// `Option<ApiJson<T>>`: actions whose body is optional (`POST /tasks/{id}/sign` with nothing,
/// or with a note). No body and no `Content-Type` is `None`; a body without a JSON type is a 415.
impl<T, S> axum::extract::OptionalFromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let headers = req.headers();
        if !headers.contains_key(axum::http::header::CONTENT_TYPE) {
            let length = headers
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            return if length == 0 { Ok(None) } else { Err(ApiError::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)) };
        }
        <ApiJson<T> as FromRequest<S>>::from_request(req, state).await.map(Some)
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    // axum's texts only echo what the client sent (serde's path and problem, line and column).
    let detail = e.body_text();
    match e {
        JsonRejection::JsonDataError(_) => {
            ApiError::unprocessable(format!("invalid request body: {detail}"), format!("请求体内容无效：{detail}"))
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request(format!("malformed JSON: {detail}"), format!("请求体不是有效的 JSON：{detail}"))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        other => match other.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE),
            s if s.is_server_error() => anyhow::anyhow!("reading a JSON body: {detail}").into(),
            s => ApiError::new(s, "bad_request", format!("unreadable request body: {detail}"), "无法读取请求体"),
        },
    }
}

/// Parses an optional integer query parameter; absent or empty (`?limit=`, as form-built URLs
/// send) means "use the default".
pub fn int_param(name: &str, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!("{name} must be an integer, got {s:?}"), format!("参数 {name} 必须是整数"))
        }),
    }
}

/// `limit` (1..=`max`, default `default`) and `offset` (>= 0, default 0) of a list endpoint.
pub fn page_params(limit: Option<&str>, offset: Option<&str>, default: i64, max: i64) -> Result<(i64, i64), ApiError> {
    let limit = int_param("limit", limit)?.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {max}"), format!("limit 必须在 1 到 {max} 之间")));
    }
    let offset = int_param("offset", offset)?.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request("offset must not be negative", "offset 不能为负数"));
    }
    Ok((limit, offset))
}

#[cfg(test)]
mod tests {
    use super::has_nul_escape;

    #[test]
    fn finds_nul_escapes_only_where_they_are_escapes() {
        assert!(has_nul_escape(br#"{"name":"a\u0000b"}"#));
        assert!(has_nul_escape(br#"["\\\u0000"]"#));
        assert!(!has_nul_escape(br#"{"name":"a\\u0000b"}"#));
        assert!(has_nul_escape(br#"{"name":"\u00001"}"#));
        assert!(!has_nul_escape(br#"{"name":"\u0001 \u1000"}"#));
        assert!(!has_nul_escape(b"\\"));
    }
}
