//! Accounts: users with argon2id password hashes and a password policy, roles with separated
//! powers, sessions (cookie or bearer) with a CSRF token, personal API tokens, login throttling.

use anyhow::{bail, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Store;

/// What a user may do. The three administrators have separated powers (三员分立): the system
/// administrator runs the system but cannot read the audit log, the security administrator manages
/// accounts and roles, the audit administrator only reads the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    SystemAdmin,
    SecurityAdmin,
    AuditAdmin,
    /// Monitoring center operator (监控中心).
    Monitor,
    /// Department handler (承办人).
    Handler,
    /// Department leader (部门负责人).
    Leader,
    Reviewer,
    /// Re-supervision (再监管): reads across departments, changes nothing.
    Resupervision,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::SystemAdmin,
        Role::SecurityAdmin,
        Role::AuditAdmin,
        Role::Monitor,
        Role::Handler,
        Role::Leader,
        Role::Reviewer,
        Role::Resupervision,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::SystemAdmin => "system_admin",
            Role::SecurityAdmin => "security_admin",
            Role::AuditAdmin => "audit_admin",
            Role::Monitor => "monitor",
            Role::Handler => "handler",
            Role::Leader => "leader",
            Role::Reviewer => "reviewer",
            Role::Resupervision => "resupervision",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            Role::SystemAdmin => "系统管理员",
            Role::SecurityAdmin => "安全管理员",
            Role::AuditAdmin => "审计管理员",
            Role::Monitor => "监控中心值班员",
            Role::Handler => "部门承办人",
            Role::Leader => "部门负责人",
            Role::Reviewer => "审核人",
            Role::Resupervision => "再监管",
        }
    }
}

/// Why a password is refused, in both languages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{en}")]
pub struct PolicyError {
    pub en: String,
    pub zh: String,
}

/// At least 8 characters from at least three of: upper case, lower case, digits, symbols; not the
/// user name.
pub fn check_password_policy(username: &str, password: &str) -> Result<(), PolicyError> {
    let n = password.chars().count();
    if !(8..=128).contains(&n) {
        return Err(PolicyError {
            en: "password must be 8 to 128 characters".into(),
            zh: "密码长度须为 8 至 128 个字符".into(),
        });
    }
    let classes = [
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if classes.iter().filter(|c| **c).count() < 3 {
        return Err(PolicyError {
            en: "password must mix at least three of: upper case, lower case, digits, symbols".into(),
            zh: "密码须包含大写字母、小写字母、数字、符号中的至少三类".into(),
        });
    }
    if password.to_lowercase().contains(&username.to_lowercase()) {
        return Err(PolicyError { en: "password must not contain the user name".into(), zh: "密码不得包含用户名".into() });
    }
    Ok(())
}

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A fresh random token (32 bytes, URL-safe base64) and its digest for storage.
pub fn new_token(prefix: &str) -> (String, [u8; 32]) {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    let t = format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b));
    let d = token_digest(&t);
    (t, d)
}

pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub department_id: Option<i64>,
    pub region_codes: Vec<String>,
    pub disabled: bool,
    pub must_change_password: bool,
    pub created_at: DateTime<Utc>,
    pub password_changed_at: DateTime<Utc>,
    #[sqlx(skip)]
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NewUser {
    pub username: String,
    #[serde(default)]
    pub display_name: String,
    pub password: String,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub department_id: Option<i64>,
    #[serde(default)]
    pub region_codes: Vec<String>,
    #[serde(default)]
    pub must_change_password: bool,
}

/// An authenticated session.
/// A personal API token as its owner sees it in a list: never the secret nor its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ApiTokenInfo {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user: UserRecord,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// The outcome of a login attempt.
#[derive(Debug)]
pub enum Login {
    Ok { token: String, session: Session },
    Refused,
    /// Too many recent failures for this user name or address; try again after this many seconds.
    Throttled { retry_after_s: i64 },
}

/// Failures within [`THROTTLE_WINDOW_MIN`] minutes that lock a user name or an address out.
pub const THROTTLE_FAILURES: i64 = 5;
pub const THROTTLE_WINDOW_MIN: i64 = 15;
/// Sessions end after this long without use, and at most after [`SESSION_MAX_H`].
pub const SESSION_IDLE_MIN: i64 = 120;
pub const SESSION_MAX_H: i64 = 12;
/// How stale a session's `last_seen` (or a token's `last_used`) may get before a request writes it.
pub const LAST_SEEN_EVERY_S: i64 = 60;

const USER_COLS: &str = "id, username, display_name, department_id, region_codes, disabled, must_change_password, \
     created_at, password_changed_at";
/// The account's roles as a column (`users` in the FROM clause).
const ROLE_NAMES: &str = "ARRAY(SELECT role FROM user_roles r WHERE r.user_id = users.id ORDER BY role) AS role_names";

#[derive(sqlx::FromRow)]
struct UserWithRoles {
    #[sqlx(flatten)]
    user: UserRecord,
    role_names: Vec<String>,
}

impl UserWithRoles {
    fn into_record(self) -> UserRecord {
        let mut u = self.user;
        u.roles = self.role_names.iter().filter_map(|r| Role::parse(r)).collect();
        u.roles.sort();
        u
    }
}

impl Store {
    pub async fn user_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&self.pool).await?)
    }

    /// Creates an account; the password must meet the policy.
    pub async fn insert_user(&self, u: &NewUser) -> Result<UserRecord> {
        if let Err(e) = check_password_policy(&u.username, &u.password) {
            bail!(e);
        }
        let hash = hash_password(&u.password)?;
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, display_name, password_hash, department_id, region_codes, must_change_password) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&u.username)
        .bind(&u.display_name)
        .bind(&hash)
        .bind(u.department_id)
        .bind(&u.region_codes)
        .bind(u.must_change_password)
        .fetch_one(&mut *tx)
        .await?;
        for r in &u.roles {
            sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(r.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.user(id).await?.ok_or_else(|| anyhow::anyhow!("user {id} vanished"))
    }

    /// An account with its roles, in one statement (every request reads its caller).
    pub async fn user(&self, id: i64) -> Result<Option<UserRecord>> {
        let u: Option<UserWithRoles> = sqlx::query_as(&format!("SELECT {USER_COLS}, {ROLE_NAMES} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(u.map(UserWithRoles::into_record))
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRecord>> {
        let u: Option<UserWithRoles> =
            sqlx::query_as(&format!("SELECT {USER_COLS}, {ROLE_NAMES} FROM users WHERE username = $1"))
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        Ok(u.map(UserWithRoles::into_record))
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>> {
        let users: Vec<UserRecord> =
            sqlx::query_as(&format!("SELECT {USER_COLS} FROM users ORDER BY id")).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            if let Some(u) = self.with_roles(Some(u)).await? {
                out.push(u);
            }
        }
        Ok(out)
    }

    async fn with_roles(&self, u: Option<UserRecord>) -> Result<Option<UserRecord>> {
        let Some(mut u) = u else { return Ok(None) };
        let roles: Vec<String> = sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
            .bind(u.id)
            .fetch_all(&self.pool)
            .await?;
        u.roles = roles.iter().filter_map(|r| Role::parse(r)).collect();
        u.roles.sort();
        Ok(Some(u))
    }

    pub async fn set_user_roles(&self, id: i64, roles: &[Role]) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1 FOR UPDATE").bind(id).fetch_optional(&mut *tx).await?;
        if exists.is_none() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM user_roles WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
        for r in roles {
            sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)").bind(id).bind(r.as_str()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn set_user_disabled(&self, id: i64, disabled: bool) -> Result<bool> {
        let r = sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1").bind(id).bind(disabled).execute(&self.pool).await?;
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id).execute(&self.pool).await?;
        }
        Ok(r.rows_affected() == 1)
    }

    /// Sets a new password (policy checked); every session of the user ends. `must_change` marks an
    /// administrator's reset, which the user must replace at next login.
    pub async fn set_password(&self, id: i64, password: &str, must_change: bool) -> Result<bool> {
        let Some(u) = self.user(id).await? else { return Ok(false) };
        if let Err(e) = check_password_policy(&u.username, password) {
            bail!(e);
        }
        let hash = hash_password(password)?;
        sqlx::query("UPDATE users SET password_hash = $2, must_change_password = $3, password_changed_at = now() WHERE id = $1")
            .bind(id)
            .bind(&hash)
            .bind(must_change)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id).execute(&self.pool).await?;
        Ok(true)
    }

    /// Checks the password of `username`; on success opens a session. Throttled after
    /// [`THROTTLE_FAILURES`] failures of the name or the address within the window, whatever the
    /// password (so guessing gains nothing).
    pub async fn login(&self, username: &str, password: &str, ip: Option<&str>) -> Result<Login> {
        let window = Utc::now() - Duration::minutes(THROTTLE_WINDOW_MIN);
        let (by_user, by_ip, oldest): (i64, i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE username = $1), count(*) FILTER (WHERE $2::text IS NOT NULL AND ip = $2), \
             min(at) FROM login_failures WHERE at > $3 AND (username = $1 OR ($2::text IS NOT NULL AND ip = $2))",
        )
        .bind(username)
        .bind(ip)
        .bind(window)
        .fetch_one(&self.pool)
        .await?;
        if by_user >= THROTTLE_FAILURES || by_ip >= THROTTLE_FAILURES * 4 {
            let until = oldest.unwrap_or_else(Utc::now) + Duration::minutes(THROTTLE_WINDOW_MIN);
            return Ok(Login::Throttled { retry_after_s: (until - Utc::now()).num_seconds().max(1) });
        }
        let row: Option<(i64, String, bool)> =
            sqlx::query_as("SELECT id, password_hash, disabled FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        // Verify against a dummy hash for unknown users so timing does not tell which names exist.
        let ok = match &row {
            Some((_, hash, disabled)) => verify_password(password, hash) && !disabled,
            None => {
                let _ = verify_password(password, &DUMMY_HASH);
                false
            }
        };
        if !ok {
            sqlx::query("INSERT INTO login_failures (username, ip) VALUES ($1, $2)")
                .bind(username)
                .bind(ip)
                .execute(&self.pool)
                .await?;
            return Ok(Login::Refused);
        }
        let (id, _, _) = row.expect("checked above");
        sqlx::query("DELETE FROM login_failures WHERE username = $1").bind(username).execute(&self.pool).await?;
        let (token, digest) = new_token("");
        let (csrf, _) = new_token("");
        let expires = Utc::now() + Duration::hours(SESSION_MAX_H);
        sqlx::query("INSERT INTO sessions (token_sha256, user_id, csrf_token, expires_at, ip) VALUES ($1, $2, $3, $4, $5)")
            .bind(&digest[..])
            .bind(id)
            .bind(&csrf)
            .bind(expires)
            .bind(ip)
            .execute(&self.pool)
            .await?;
        let user = self.user(id).await?.ok_or_else(|| anyhow::anyhow!("user vanished"))?;
        Ok(Login::Ok { token, session: Session { user, csrf_token: csrf, expires_at: expires } })
    }

    /// The session a token opens (session token or personal API token), if valid now.
    pub async fn session(&self, token: &str) -> Result<Option<(Session, bool)>> {
        let digest = token_digest(token);
        let now = Utc::now();
        // Reading a session is a plain SELECT: `last_seen` (which only serves the idle timeout) is
        // written at most once a minute, so concurrent requests of one session do not queue on
        // its row and a read-only request commits nothing.
        let s: Option<(i64, String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT user_id, csrf_token, expires_at, last_seen FROM sessions WHERE token_sha256 = $1 \
             AND expires_at > $2 AND last_seen > $2 - make_interval(mins => $3)",
        )
        .bind(&digest[..])
        .bind(now)
        .bind(SESSION_IDLE_MIN as i32)
        .fetch_optional(&self.pool)
        .await?;
        let (user_id, csrf, expires, api) = match s {
            Some((u, c, e, seen)) => {
                if now - seen > Duration::seconds(LAST_SEEN_EVERY_S) {
                    sqlx::query("UPDATE sessions SET last_seen = $2 WHERE token_sha256 = $1 AND last_seen < $2")
                        .bind(&digest[..])
                        .bind(now)
                        .execute(&self.pool)
                        .await?;
                }
                (u, c, e, false)
            }
            None => {
                let t: Option<(i64, Option<DateTime<Utc>>)> = sqlx::query_as(
                    "SELECT user_id, last_used FROM api_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL",
                )
                .bind(&digest[..])
                .fetch_optional(&self.pool)
                .await?;
                match t {
                    Some((u, last_used)) => {
                        if last_used.is_none_or(|l| now - l > Duration::seconds(LAST_SEEN_EVERY_S)) {
                            sqlx::query("UPDATE api_tokens SET last_used = $2 WHERE token_sha256 = $1")
                                .bind(&digest[..])
                                .bind(now)
                                .execute(&self.pool)
                                .await?;
                        }
                        (u, String::new(), now + Duration::days(3650), true)
                    }
                    None => return Ok(None),
                }
            }
        };
        match self.user(user_id).await? {
            Some(user) if !user.disabled => Ok(Some((Session { user, csrf_token: csrf, expires_at: expires }, api))),
            _ => Ok(None),
        }
    }

    /// Whether `password` is user `id`'s current password (no session, no throttling record).
    pub async fn check_password(&self, id: i64, password: &str) -> Result<bool> {
        let hash: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        Ok(hash.is_some_and(|h| verify_password(password, &h)))
    }

    pub async fn logout(&self, token: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1").bind(&token_digest(token)[..]).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    /// Issues a personal API token for machine clients; the token is shown once.
    pub async fn create_api_token(&self, user_id: i64, name: &str) -> Result<(i64, String)> {
        let (token, digest) = new_token("ost_");
        let id: i64 = sqlx::query_scalar("INSERT INTO api_tokens (user_id, name, token_sha256) VALUES ($1, $2, $3) RETURNING id")
            .bind(user_id)
            .bind(name)
            .bind(&digest[..])
            .fetch_one(&self.pool)
            .await?;
        Ok((id, token))
    }

    /// The user's tokens still in force (revoked ones are gone for good), newest first.
    pub async fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiTokenInfo>> {
        Ok(sqlx::query_as(
            "SELECT id, name, created_at, last_used FROM api_tokens \
             WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn revoke_api_token(&self, user_id: i64, id: i64) -> Result<bool> {
        let r = sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}

/// A real argon2id hash of a random string, to spend the same time on unknown user names.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password(&new_token("").0).unwrap_or_default());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_policy() {
        assert!(check_password_policy("admin", "Demo@2026").is_ok());
        assert!(check_password_policy("admin", "short1A").is_err());
        assert!(check_password_policy("admin", "alllowercaseletters").is_err());
        assert!(check_password_policy("admin", "Admin@2026x").is_err(), "contains the user name");
        assert!(check_password_policy("bob", "Passw0rdOK").is_ok());
    }

    #[test]
    fn hashes_verify_and_roles_round_trip() {
        let h = hash_password("Demo@2026").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("Demo@2026", &h) && !verify_password("Demo@2027", &h));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(serde_json::to_string(&Role::AuditAdmin).unwrap(), "\"audit_admin\"");
    }
}
