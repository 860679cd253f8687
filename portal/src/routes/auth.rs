//! `/api/v1/auth/*`: login (token + HttpOnly cookie), logout, who am I, password change, personal
//! API tokens. And `/api/v1/users`: accounts, managed by the security administrator.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use offsite_store::auth::{check_password_policy, Login, NewUser, Role, UserRecord};
use offsite_store::AuditEvent;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{forbidden, ClientIp, Principal, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
}

#[derive(Serialize)]
pub struct UserView {
    id: i64,
    username: String,
    display_name: String,
    roles: Vec<Role>,
    roles_zh: Vec<&'static str>,
    department_id: Option<i64>,
    region_codes: Vec<String>,
    disabled: bool,
    must_change_password: bool,
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> Self {
        Self {
            roles_zh: u.roles.iter().map(|r| r.name_zh()).collect(),
            id: u.id,
            username: u.username,
            display_name: u.display_name,
            roles: u.roles,
            department_id: u.department_id,
            region_codes: u.region_codes,
            disabled: u.disabled,
            must_change_password: u.must_change_password,
        }
    }
}

/// `Secure` only over HTTPS: a browser would drop a Secure cookie set over plain HTTP (the demo).
fn session_cookie(token: &str, expires: DateTime<Utc>, https: bool) -> HeaderValue {
    let max_age = (expires - Utc::now()).num_seconds().max(0);
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    https: Option<axum::Extension<crate::tls::OverHttps>>,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Response> {
    if body.username.is_empty() || body.password.is_empty() || body.username.len() > 64 || body.password.len() > 1024 {
        return Err(ApiError::bad_request("username and password are required", "请填写用户名和密码"));
    }
    match state.store.login(&body.username, &body.password, ip.as_deref()).await? {
        Login::Ok { token, session } => {
            tracing::info!(user = %session.user.username, ip = ?ip, "login");
            state.audit(with_ip(AuditEvent::new(&session.user.username, "user.login", "user").id(session.user.id.to_string()), &ip)).await;
            let mut resp = Json(json!({
                "token": token,
                "csrf_token": session.csrf_token,
                "expires_at": session.expires_at,
                "user": UserView::from(session.user.clone()),
            }))
            .into_response();
            resp.headers_mut().insert(header::SET_COOKIE, session_cookie(&token, session.expires_at, https.is_some()));
            Ok(resp)
        }
        Login::Refused => {
            tracing::warn!(user = %body.username, ip = ?ip, "login refused");
            state.audit(with_ip(AuditEvent::new(&body.username, "user.login_failed", "user"), &ip)).await;
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "login_failed", "wrong user name or password", "用户名或密码错误"))
        }
        Login::Throttled { retry_after_s } => {
            let address = ip.clone().unwrap_or_else(|| "unknown".into());
            let window = std::time::Duration::from_secs(retry_after_s.max(1) as u64);
            if state.lockouts_audited.first(&address, window) {
                tracing::warn!(user = %body.username, ip = ?ip, retry_after_s, "login locked out");
                let ev = AuditEvent::new(&body.username, "user.login_throttled", "user")
                    .after(json!({ "retry_after_s": retry_after_s }));
                state.audit(with_ip(ev, &ip)).await;
            }
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                format!("too many failed logins; try again in {retry_after_s} s"),
                format!("登录失败次数过多，请 {retry_after_s} 秒后再试"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Ok(resp)
        }
    }
}

pub async fn logout(State(state): State<AppState>, ClientIp(ip): ClientIp, p: Principal) -> ApiResult<Response> {
    state.store.logout(&p.token).await?;
    state.audit(with_ip(AuditEvent::new(p.username(), "user.logout", "user").id(p.user_id().to_string()), &ip)).await;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("offsite_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(resp)
}

pub async fn me(p: Principal) -> Json<serde_json::Value> {
    Json(json!({ "user": UserView::from(p.session.user.clone()), "csrf_token": p.session.csrf_token }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    current: String,
    new: String,
}

pub async fn change_password(State(state): State<AppState>, p: Principal, ApiJson(b): ApiJson<PasswordBody>) -> ApiResult<StatusCode> {
    // Checked without logging in again: a login would open a session nobody uses.
    if !state.store.check_password(p.user_id(), &b.current).await? {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "wrong_password", "the current password is wrong", "当前密码错误"));
    }
    policy(p.username(), &b.new)?;
    state.store.set_password(p.user_id(), &b.new, false).await?;
    state.audit(AuditEvent::new(p.username(), "user.password_change", "user").id(p.user_id().to_string())).await;
    Ok(StatusCode::NO_CONTENT)
}

fn policy(username: &str, password: &str) -> Result<(), ApiError> {
    check_password_policy(username, password).map_err(|e| ApiError::bad_request(format!("password: {}", e.en), format!("password：{}", e.zh)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    name: String,
}

pub async fn create_token(State(state): State<AppState>, p: Principal, ApiJson(b): ApiJson<TokenBody>) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let name = b.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request("name: 1 to 100 characters", "name：须为 1 至 100 个字符"));
    }
    let (id, token) = state.store.create_api_token(p.user_id(), name).await?;
    state.audit(AuditEvent::new(p.username(), "token.create", "api_token").id(id.to_string()).after(json!({"name": name}))).await;
    Ok((StatusCode::CREATED, Json(json!({ "id": id, "name": name, "token": token }))))
}

/// The caller's own tokens in force: name and dates only, the secret was shown once at creation.
pub async fn list_tokens(State(state): State<AppState>, p: Principal) -> ApiResult<Json<serde_json::Value>> {
    let items = state.store.list_api_tokens(p.user_id()).await?;
    let total = items.len();
    Ok(Json(json!({ "items": items, "total": total })))
}

pub async fn revoke_token(State(state): State<AppState>, p: Principal, ApiPath(id): ApiPath<i64>) -> ApiResult<StatusCode> {
    if state.store.revoke_api_token(p.user_id(), id).await? {
        state.audit(AuditEvent::new(p.username(), "token.revoke", "api_token").id(id.to_string())).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no token {id}"), format!("令牌 {id} 不存在")))
    }
}

// --- accounts (security administrator) ---

pub async fn list_users(State(state): State<AppState>, p: Principal) -> ApiResult<Json<serde_json::Value>> {
    p.require(&[Role::SecurityAdmin])?;
    let users: Vec<UserView> = state.store.list_users().await?.into_iter().map(UserView::from).collect();
    let total = users.len();
    Ok(Json(json!({ "items": users, "total": total })))
}

pub async fn create_user(State(state): State<AppState>, p: Principal, ApiJson(u): ApiJson<NewUser>) -> ApiResult<(StatusCode, Json<UserView>)> {
    p.require(&[Role::SecurityAdmin])?;
    if !(2..=64).contains(&u.username.len()) || !u.username.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        return Err(ApiError::bad_request("username: 2-64 characters of A-Z a-z 0-9 _ . -", "username：须为 2 至 64 个字母、数字或 _ . -"));
    }
    policy(&u.username, &u.password)?;
    if state.store.user_by_name(&u.username).await?.is_some() {
        return Err(ApiError::conflict(format!("user {} exists", u.username), format!("用户 {} 已存在", u.username)));
    }
    let rec = state.store.insert_user(&NewUser { must_change_password: true, ..u }).await?;
    let after = serde_json::to_value(UserView::from(rec.clone())).unwrap_or_default();
    state.audit(AuditEvent::new(p.username(), "user.create", "user").id(rec.id.to_string()).after(after)).await;
    Ok((StatusCode::CREATED, Json(rec.into())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesBody {
    roles: Vec<Role>,
}

pub async fn set_roles(State(state): State<AppState>, p: Principal, ApiPath(id): ApiPath<i64>, ApiJson(b): ApiJson<RolesBody>) -> ApiResult<Json<UserView>> {
    p.require(&[Role::SecurityAdmin])?;
    // Separated powers: nobody grants themselves a role.
    if id == p.user_id() {
        return Err(forbidden());
    }
    let before = state.store.user(id).await?.map(|u| json!({"roles": u.roles}));
    if !state.store.set_user_roles(id, &b.roles).await? {
        return Err(ApiError::not_found(format!("no user {id}"), format!("用户 {id} 不存在")));
    }
    let mut ev = AuditEvent::new(p.username(), "user.roles", "user").id(id.to_string()).after(json!({"roles": b.roles}));
    if let Some(b) = before {
        ev = ev.before(b);
    }
    state.audit(ev).await;
    Ok(Json(state.store.user(id).await?.map(UserView::from).ok_or_else(ApiError::internal)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    password: String,
}

pub async fn reset_password(State(state): State<AppState>, p: Principal, ApiPath(id): ApiPath<i64>, ApiJson(b): ApiJson<ResetBody>) -> ApiResult<StatusCode> {
    p.require(&[Role::SecurityAdmin])?;
    let Some(u) = state.store.user(id).await? else {
        return Err(ApiError::not_found(format!("no user {id}"), format!("用户 {id} 不存在")));
    };
    policy(&u.username, &b.password)?;
    state.store.set_password(id, &b.password, true).await?;
    state.audit(AuditEvent::new(p.username(), "user.password_reset", "user").id(id.to_string())).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisableBody {
    disabled: bool,
}

pub async fn set_disabled(State(state): State<AppState>, p: Principal, ApiPath(id): ApiPath<i64>, ApiJson(b): ApiJson<DisableBody>) -> ApiResult<StatusCode> {
    p.require(&[Role::SecurityAdmin])?;
    if id == p.user_id() {
        return Err(forbidden());
    }
    if state.store.set_user_disabled(id, b.disabled).await? {
        state.audit(AuditEvent::new(p.username(), "user.disable", "user").id(id.to_string()).after(json!({"disabled": b.disabled}))).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no user {id}"), format!("用户 {id} 不存在")))
    }
}

fn with_ip(ev: AuditEvent, ip: &Option<String>) -> AuditEvent {
    match ip {
        Some(ip) => ev.ip(ip.clone()),
        None => ev,
    }
}

// --- the audit trail (audit administrator only: separated powers) ---

pub async fn audit_search(
    State(state): State<AppState>,
    p: Principal,
    crate::extract::ApiQuery(f): crate::extract::ApiQuery<offsite_store::AuditFilter>,
) -> ApiResult<Json<serde_json::Value>> {
    p.require(&[Role::AuditAdmin])?;
    let (items, total) = state.store.audit_search(&f).await?;
    Ok(Json(json!({ "items": items, "total": total })))
}
