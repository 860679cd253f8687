//! Accounts over HTTP: login (token and cookie), CSRF on cookie sessions, throttling, logout,
//! passwords, API tokens, and the security administrator's account management.

use std::time::Duration;

use anyhow::Result;
use offsite_portal::{serve, AppState};
use offsite_store::auth::{NewUser, Role};
use offsite_store::testing::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

struct App {
    base: String,
    http: reqwest::Client,
    db: TestDb,
    _shutdown: oneshot::Sender<()>,
}

impl App {
    async fn spawn() -> Result<Self> {
        let db = TestDb::new().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = oneshot::channel::<()>();
        let audit = offsite_store::AuditLog::start(db.store.clone(), None, Duration::from_secs(60));
        tokio::spawn(serve(listener, AppState::new(db.store.clone()).with_audit(audit), async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Self { base, http, db, _shutdown: tx })
    }

    async fn user(&self, name: &str, roles: &[Role]) -> Result<i64> {
        let u = self
            .db
            .store
            .insert_user(&NewUser {
                username: name.into(),
                display_name: name.into(),
                password: "Demo@2026".into(),
                roles: roles.to_vec(),
                department_id: None,
                region_codes: vec![],
                must_change_password: false,
            })
            .await?;
        Ok(u.id)
    }

    /// Sends a request with optional bearer token, cookie and CSRF header.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        bearer: Option<&str>,
        cookie: Option<&str>,
        csrf: Option<&str>,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Value)> {
        let mut r = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            r = r.json(&b);
        }
        if let Some(t) = bearer {
            r = r.bearer_auth(t);
        }
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        let resp = r.send().await?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp.text().await?;
        Ok((status, headers, if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? }))
    }

    async fn login(&self, user: &str, password: &str) -> Result<(StatusCode, reqwest::header::HeaderMap, Value)> {
        self.call(Method::POST, "/api/v1/auth/login", Some(json!({"username": user, "password": password})), None, None, None).await
    }
}

#[tokio::test]
async fn login_bearer_cookie_csrf_and_logout() -> Result<()> {
    let app = App::spawn().await?;
    app.user("monitor", &[Role::Monitor]).await?;
    let (s, h, body) = app.login("monitor", "Demo@2026").await?;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(body["user"]["roles"], json!(["monitor"]));
    let cookie_header = h.get("set-cookie").unwrap().to_str()?.to_owned();
    assert!(cookie_header.contains("HttpOnly") && cookie_header.contains("SameSite=Strict"), "{cookie_header}");
    let cookie = cookie_header.split(';').next().unwrap().to_owned();

    // Either way of presenting the session works for reads.
    let (s, _, me) = app.call(Method::GET, "/api/v1/auth/me", None, Some(&token), None, None).await?;
    assert_eq!((s, me["user"]["username"].as_str()), (StatusCode::OK, Some("monitor")));
    let (s, _, _) = app.call(Method::GET, "/api/v1/auth/me", None, None, Some(&cookie), None).await?;
    assert_eq!(s, StatusCode::OK);
    // No credentials: 401.
    let (s, _, e) = app.call(Method::GET, "/api/v1/auth/me", None, None, None, None).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(e["error"]["message_zh"].as_str().is_some());

    // A change through the cookie needs the CSRF token; through the bearer token it does not.
    let body = Some(json!({"name": "ci"}));
    let (s, _, e) = app.call(Method::POST, "/api/v1/auth/tokens", body.clone(), None, Some(&cookie), None).await?;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(e["error"]["code"], "csrf");
    let (s, _, _) = app.call(Method::POST, "/api/v1/auth/tokens", body.clone(), None, Some(&cookie), Some("wrong")).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = app.call(Method::POST, "/api/v1/auth/tokens", body.clone(), None, Some(&cookie), Some(&csrf)).await?;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, t) = app.call(Method::POST, "/api/v1/auth/tokens", body, Some(&token), None, None).await?;
    assert_eq!(s, StatusCode::CREATED);

    // A personal API token authenticates; revoked, it does not.
    let api = t["token"].as_str().unwrap().to_owned();
    assert!(api.starts_with("ost_"));
    let (s, _, _) = app.call(Method::GET, "/api/v1/auth/me", None, Some(&api), None, None).await?;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = app.call(Method::DELETE, &format!("/api/v1/auth/tokens/{}", t["id"]), None, Some(&token), None, None).await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = app.call(Method::GET, "/api/v1/auth/me", None, Some(&api), None, None).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Logout ends the session for both ways of presenting it.
    let (s, _, _) = app.call(Method::POST, "/api/v1/auth/logout", None, Some(&token), None, None).await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = app.call(Method::GET, "/api/v1/auth/me", None, None, Some(&cookie), None).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn repeated_failures_are_throttled_even_with_the_right_password() -> Result<()> {
    let app = App::spawn().await?;
    app.user("handler1", &[Role::Handler]).await?;
    for _ in 0..5 {
        let (s, _, _) = app.login("handler1", "Wrong@2026").await?;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, h, e) = app.login("handler1", "Demo@2026").await?;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{e}");
    assert!(h.get("retry-after").is_some());
    // Unknown users answer like wrong passwords (no way to probe which names exist).
    let other = App::spawn().await?;
    let (s, _, e) = other.login("nobody", "Demo@2026").await?;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("login_failed")));
    // Malformed logins are 400s, never 500s.
    let (s, _, _) = other.call(Method::POST, "/api/v1/auth/login", Some(json!({"username": "x"})), None, None, None).await?;
    assert!(s.is_client_error());
    Ok(())
}

#[tokio::test]
async fn passwords_and_account_management_follow_separated_powers() -> Result<()> {
    let app = App::spawn().await?;
    app.user("secadmin", &[Role::SecurityAdmin]).await?;
    app.user("admin", &[Role::SystemAdmin]).await?;
    let h = app.user("handler2", &[Role::Handler]).await?;
    let sec = app.login("secadmin", "Demo@2026").await?.2["token"].as_str().unwrap().to_owned();
    let adm = app.login("admin", "Demo@2026").await?.2["token"].as_str().unwrap().to_owned();
    let hnd = app.login("handler2", "Demo@2026").await?.2["token"].as_str().unwrap().to_owned();

    // Only the security administrator manages accounts.
    for t in [&adm, &hnd] {
        let (s, _, _) = app.call(Method::GET, "/api/v1/users", None, Some(t), None, None).await?;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    let (s, _, list) = app.call(Method::GET, "/api/v1/users", None, Some(&sec), None, None).await?;
    assert_eq!((s, list["total"].as_u64()), (StatusCode::OK, Some(3)));
    assert!(!list.to_string().contains("argon2") && !list.to_string().contains("password_hash"), "no password material in the listing");
    let weak = json!({"username": "newbie", "password": "weak", "roles": ["reviewer"]});
    let (s, _, e) = app.call(Method::POST, "/api/v1/users", Some(weak), Some(&sec), None, None).await?;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["error"]["message"].as_str().unwrap().contains("password"));
    let ok = json!({"username": "newbie", "password": "Strong#Pass1", "roles": ["reviewer"]});
    let (s, _, u) = app.call(Method::POST, "/api/v1/users", Some(ok), Some(&sec), None, None).await?;
    assert_eq!((s, u["must_change_password"].as_bool()), (StatusCode::CREATED, Some(true)));
    // Nobody grants themselves roles.
    let me = app.call(Method::GET, "/api/v1/auth/me", None, Some(&sec), None, None).await?.2["user"]["id"].as_i64().unwrap();
    let (s, _, _) = app.call(Method::PUT, &format!("/api/v1/users/{me}/roles"), Some(json!({"roles": ["audit_admin"]})), Some(&sec), None, None).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // A user changes their own password (current one required); all their sessions end.
    let (s, _, _) = app.call(Method::POST, "/api/v1/auth/password", Some(json!({"current": "nope", "new": "Better#Pass2"})), Some(&hnd), None, None).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = app.call(Method::POST, "/api/v1/auth/password", Some(json!({"current": "Demo@2026", "new": "Better#Pass2"})), Some(&hnd), None, None).await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = app.call(Method::GET, "/api/v1/auth/me", None, Some(&hnd), None, None).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "sessions end with a password change");
    assert_eq!(app.login("handler2", "Better#Pass2").await?.0, StatusCode::OK);

    // The security administrator resets it; the user must change it at next login.
    let (s, _, _) = app.call(Method::POST, &format!("/api/v1/users/{h}/password"), Some(json!({"password": "Reset#Pass3"})), Some(&sec), None, None).await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, b) = app.login("handler2", "Reset#Pass3").await?;
    assert_eq!((s, b["user"]["must_change_password"].as_bool()), (StatusCode::OK, Some(true)));

    // Disabled accounts cannot log in.
    let (s, _, _) = app.call(Method::PUT, &format!("/api/v1/users/{h}/disabled"), Some(json!({"disabled": true})), Some(&sec), None, None).await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.login("handler2", "Reset#Pass3").await?.0, StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn only_the_audit_administrator_reads_the_trail() -> Result<()> {
    let app = App::spawn().await?;
    app.user("auditor", &[Role::AuditAdmin]).await?;
    app.user("admin", &[Role::SystemAdmin]).await?;
    let aud = app.login("auditor", "Demo@2026").await?.2["token"].as_str().unwrap().to_owned();
    let adm = app.login("admin", "Demo@2026").await?.2["token"].as_str().unwrap().to_owned();
    app.login("admin", "Wrong@2026").await?;
    // Batches commit in their own time: wait until both kinds of event are there.
    let mut actions: Vec<String> = vec![];
    for _ in 0..300 {
        let (s, _, v) = app.call(Method::GET, "/api/v1/audit?action=user.*", None, Some(&aud), None, None).await?;
        assert_eq!(s, StatusCode::OK, "{v}");
        actions = v["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect();
        if actions.iter().any(|a| a == "user.login") && actions.iter().any(|a| a == "user.login_failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(actions.iter().any(|a| a == "user.login") && actions.iter().any(|a| a == "user.login_failed"), "{actions:?}");
    // The system administrator cannot read (nor, having no endpoint, change) the trail.
    let (s, _, _) = app.call(Method::GET, "/api/v1/audit", None, Some(&adm), None, None).await?;
    assert_eq!(s, StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn a_person_lists_only_their_own_tokens_in_force_without_secrets() -> Result<()> {
    let app = App::spawn().await?;
    app.user("alice", &[Role::Handler]).await?;
    app.user("bob", &[Role::Monitor]).await?;
    let session = |name: &'static str| {
        let app = &app;
        async move {
            let (_, _, b) = app.login(name, "Demo@2026").await?;
            anyhow::Ok(b["token"].as_str().unwrap().to_owned())
        }
    };
    let (alice, bob) = (session("alice").await?, session("bob").await?);
    let create = |who: String, name: &'static str| {
        let app = &app;
        async move {
            let (s, _, t) = app
                .call(Method::POST, "/api/v1/auth/tokens", Some(json!({"name": name})), Some(&who), None, None)
                .await?;
            assert_eq!(s, StatusCode::CREATED, "{t}");
            anyhow::Ok(t)
        }
    };
    let first = create(alice.clone(), "报表对接").await?;
    let second = create(alice.clone(), "脚本").await?;
    create(bob.clone(), "bob 的令牌").await?;

    // Without a login: 401.
    let (s, _, _) = app.call(Method::GET, "/api/v1/auth/tokens", None, None, None, None).await?;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let list = |who: String| {
        let app = &app;
        async move {
            let (s, _, v) = app.call(Method::GET, "/api/v1/auth/tokens", None, Some(&who), None, None).await?;
            assert_eq!(s, StatusCode::OK, "{v}");
            anyhow::Ok(v)
        }
    };
    let v = list(alice.clone()).await?;
    assert_eq!(v["total"], 2);
    let items = v["items"].as_array().unwrap();
    // Newest first; never the secret nor its digest.
    assert_eq!(items.iter().map(|i| i["name"].as_str().unwrap()).collect::<Vec<_>>(), ["脚本", "报表对接"]);
    assert_eq!(items[0]["id"], second["id"]);
    for i in items {
        let keys: Vec<&str> = i.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "{i}");
        for k in ["id", "name", "created_at", "last_used"] {
            assert!(keys.contains(&k), "{k} missing in {i}");
        }
        assert!(i["created_at"].as_str().is_some());
        assert!(i["last_used"].is_null(), "not used yet: {i}");
    }
    let text = v.to_string();
    for secret in [first["token"].as_str().unwrap(), second["token"].as_str().unwrap(), "ost_"] {
        assert!(!text.contains(secret), "the list shows a secret: {text}");
    }

    // Using a token records when.
    let (s, _, _) = app.call(Method::GET, "/api/v1/auth/me", None, first["token"].as_str(), None, None).await?;
    assert_eq!(s, StatusCode::OK);
    let v = list(alice.clone()).await?;
    let used = v["items"].as_array().unwrap().iter().find(|i| i["id"] == first["id"]).unwrap().clone();
    assert!(used["last_used"].as_str().is_some(), "{used}");

    // Bob sees his own only, and cannot revoke Alice's.
    let v = list(bob.clone()).await?;
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["name"], "bob 的令牌");
    let path = format!("/api/v1/auth/tokens/{}", first["id"]);
    let (s, _, _) = app.call(Method::DELETE, &path, None, Some(&bob), None, None).await?;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A revoked token leaves the list.
    let (s, _, _) = app.call(Method::DELETE, &path, None, Some(&alice), None, None).await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let v = list(alice).await?;
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["id"], second["id"]);
    Ok(())
}
