//! Extractors whose rejections are our JSON errors instead of axum's plain-text ones.

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
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
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
