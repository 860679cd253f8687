//! Who is calling: a session (cookie, with a CSRF token for changes) or a bearer token (a session
//! token from login, or a personal API token), and what their roles allow.
//!
//! Cookie sessions are what browsers use; state-changing requests on them must carry the session's
//! CSRF token in `X-CSRF-Token` (the cookie is SameSite=Strict too). Bearer requests need none: a
//! page on another site cannot make the browser attach an `Authorization` header.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use offsite_store::auth::{Role, Session};

use crate::error::ApiError;
use crate::AppState;

pub const SESSION_COOKIE: &str = "offsite_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub session: Session,
    /// The token presented (to log out).
    pub token: String,
    pub via: Via,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cookie,
    Bearer,
    ApiToken,
}

impl Principal {
    pub fn user_id(&self) -> i64 {
        self.session.user.id
    }

    pub fn username(&self) -> &str {
        &self.session.user.username
    }

    pub fn has(&self, role: Role) -> bool {
        self.session.user.roles.contains(&role)
    }

    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }

    /// Refuses unless the caller holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.has_any(roles) {
            Ok(())
        } else {
            Err(forbidden())
        }
    }
}

pub fn forbidden() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", "your role does not allow this", "您的角色无权执行此操作")
}

pub fn unauthorized() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "log in first", "请先登录")
}

/// The token a request presents, and how.
pub fn presented_token(headers: &HeaderMap) -> Option<(String, Via)> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let t = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))?.trim();
        let via = if t.starts_with("ost_") { Via::ApiToken } else { Via::Bearer };
        return Some((t.to_owned(), via));
    }
    for c in headers.get_all(header::COOKIE) {
        let Ok(s) = c.to_str() else { continue };
        for part in s.split(';') {
            if let Some(t) = part.trim().strip_prefix(SESSION_COOKIE).and_then(|r| r.strip_prefix('=')) {
                return Some((t.to_owned(), Via::Cookie));
            }
        }
    }
    None
}

/// The caller's address, when the server was started with connection info.
pub fn client_ip(parts: &Parts) -> Option<String> {
    parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some((token, via)) = presented_token(&parts.headers) else { return Err(unauthorized()) };
        let Some((session, api)) = state.store.session(&token).await.map_err(ApiError::from)? else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "session_expired",
                "the session has ended or the token is not valid; log in again",
                "会话已失效或令牌无效，请重新登录",
            ));
        };
        let via = if api { Via::ApiToken } else { via };
        let changes = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if via == Via::Cookie && changes {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if sent.is_empty() || !constant_time_eq(sent.as_bytes(), session.csrf_token.as_bytes()) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "missing or wrong X-CSRF-Token header for a cookie session",
                    "缺少或错误的 X-CSRF-Token 请求头",
                ));
            }
        }
        Ok(Principal { session, token, via })
    }
}

/// Login lockouts already audited: one `user.login_throttled` event per address per lockout, not
/// one per refused attempt (a client hammering the login would otherwise fill the trail). Kept in
/// memory: each portal replica records a lockout at most once; a restart may record it again.
#[derive(Clone, Default)]
pub struct LockoutsAudited(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>);

/// Beyond this many addresses locked out at once, further lockouts are not audited (they are still
/// refused and logged): memory stays bounded under a spray from many addresses.
const MAX_LOCKOUTS_AUDITED: usize = 10_000;

impl LockoutsAudited {
    /// True when this address's lockout is not yet in the trail; remembers it until `retry_after`.
    pub fn first(&self, address: &str, retry_after: std::time::Duration) -> bool {
        let now = std::time::Instant::now();
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, until| *until > now);
        if seen.contains_key(address) || seen.len() >= MAX_LOCKOUTS_AUDITED {
            return false;
        }
        seen.insert(address.to_owned(), now + retry_after);
        true
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller's IP address, if known (never fails).
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// Records a change refused for lack of a role (403 `forbidden`) or made with a valid cookie session
/// but without its CSRF token (403 `csrf`) as an `access.denied` audit event: who tried which
/// operation (`entity_id` = `METHOD /route/{template}`) from where, and why (`after.reason`: `role`
/// or `csrf`; a CSRF refusal also keeps the claimed `Origin`/`Referer`, since a forged request
/// comes from another site through the victim's browser). Only changes: a refused read changes
/// nothing and the web UI probes what a role may see, which would flood the trail.
pub async fn audit_denied(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let token = if changes { presented_token(req.headers()).map(|(t, _)| t) } else { None };
    let operation = req.extensions().get::<axum::extract::MatchedPath>().map(|m| format!("{} {}", req.method(), m.as_str()));
    let ip = req.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string());
    let claimed_origin = [header::ORIGIN, header::REFERER]
        .iter()
        .find_map(|h| req.headers().get(h))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).chars().take(200).collect::<String>());
    let resp = next.run(req).await;
    let code = resp.extensions().get::<crate::error::ErrorCode>().map(|c| c.0);
    let reason = match code {
        _ if resp.status() != StatusCode::FORBIDDEN => None,
        Some("forbidden") => Some("role"),
        Some("csrf") => Some("csrf"),
        _ => None,
    };
    if let (Some(reason), Some(token), Some(operation)) = (reason, token, operation) {
        // The session was valid a moment ago (a 403 comes after authentication).
        if let Ok(Some((session, _))) = state.store.session(&token).await {
            let mut why = serde_json::json!({ "reason": reason });
            if let (Some(o), "csrf") = (claimed_origin, reason) {
                why["origin"] = o.into();
            }
            let mut ev = offsite_store::AuditEvent::new(&session.user.username, "access.denied", "api")
                .id(operation)
                .after(why);
            if let Some(ip) = ip {
                ev = ev.ip(ip);
            }
            state.audit(ev).await;
        }
    }
    resp
}
