//! The one error shape every endpoint returns:
//! `{"error":{"code":"...","message":"...","message_zh":"..."}}`.
//!
//! The product is Chinese-first, so every error carries a zh-CN message next to the English one.
//! Internal failures are logged here and answered with a generic message: database errors can name
//! hosts, users or SQL, none of which a browser should see.

use std::borrow::Cow;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub message_zh: Cow<'static, str>,
}

/// The `code` of an error response, kept as a response extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    message_zh: &'a str,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
        message_zh: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self { status, code, message: message.into(), message_zh: message_zh.into() }
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>, message_zh: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message, message_zh)
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>, message_zh: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message, message_zh)
    }

    /// 400 with code `invalid`: well-formed, but a value is not acceptable (an invalid rule, a
    /// silence that ends before it starts, a bad credit code). Validation errors are 400s naming
    /// the field, one status for every validation failure, as clients expect.
    pub fn unprocessable(message: impl Into<Cow<'static, str>>, message_zh: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message, message_zh)
    }

    /// 409: the request conflicts with the resource's current state (resolving a resolved warning).
    pub fn conflict(message: impl Into<Cow<'static, str>>, message_zh: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message, message_zh)
    }

    /// 503: a dependency of this endpoint is not available in this process.
    pub fn unavailable(message: impl Into<Cow<'static, str>>, message_zh: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message, message_zh)
    }

    /// A generic 500. Callers log the cause before building this (see the `From` impl).
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error", "服务器内部错误")
    }

    /// The error for a bare status produced outside our handlers (axum's 405, tower-http's 413
    /// and timeout responses, a caught panic), so clients get JSON whatever failed.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::bad_request("bad request", "请求无效"),
            StatusCode::NOT_FOUND => Self::not_found("not found", "资源不存在"),
            StatusCode::METHOD_NOT_ALLOWED => {
                Self::new(status, "method_not_allowed", "method not allowed", "不支持该请求方法")
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(status, "payload_too_large", "request body too large", "请求体过大")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                status,
                "unsupported_media_type",
                "the request body must be JSON (Content-Type: application/json)",
                "请求体必须是 JSON（Content-Type: application/json）",
            ),
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
                Self::new(status, "timeout", "the request took too long", "请求处理超时")
            }
            s if s.is_server_error() => Self { status: s, ..Self::internal() },
            s => Self::new(s, "bad_request", "request refused", "请求被拒绝"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { error: Inner { code: self.code, message: &self.message, message_zh: &self.message_zh } };
        let mut resp = (self.status, Json(body)).into_response();
        // Middleware (the audit of refusals) reads the code without parsing the body.
        resp.extensions_mut().insert(ErrorCode(self.code));
        // Error bodies depend on the request only; don't let proxies cache them.
        resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
        resp
    }
}

/// Store and other internal failures: log the full chain, answer generically.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        // A value the store refused (bad credit code, unknown region, duplicate id): the caller's
        // mistake, named by field.
        if let Some(f) = e.downcast_ref::<offsite_store::FieldError>() {
            return Self::bad_request(format!("{}: {}", f.field, f.message_en), format!("{}：{}", f.field, f.message_zh));
        }
        tracing::error!(error = format!("{e:#}"), "request failed");
        Self::internal()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
