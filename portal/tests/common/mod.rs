//! Shared by the portal's black-box tests: accounts and clients that carry their session.

#![allow(dead_code)]

use std::time::Duration;

use anyhow::Result;
use offsite_store::auth::{Login, NewUser, Role};
use offsite_store::Store;

/// The password every test account gets.
pub const PASSWORD: &str = "Test#Pass2026";

/// Creates an account with one role (and a department for handlers and leaders).
pub async fn add_user(store: &Store, name: &str, roles: &[Role], department_id: Option<i64>) -> Result<i64> {
    let u = store
        .insert_user(&NewUser {
            username: name.into(),
            display_name: name.into(),
            password: PASSWORD.into(),
            roles: roles.to_vec(),
            department_id,
            region_codes: vec![],
            must_change_password: false,
        })
        .await?;
    Ok(u.id)
}

/// A session token for `name` (logged in directly through the store).
pub async fn token(store: &Store, name: &str) -> Result<String> {
    match store.login(name, PASSWORD, None).await? {
        Login::Ok { token, .. } => Ok(token),
        _ => anyhow::bail!("test login of {name} refused"),
    }
}

/// A client sending `name`'s bearer token on every request.
pub async fn client(store: &Store, name: &str) -> Result<reqwest::Client> {
    let t = token(store, name).await?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {t}").parse()?);
    Ok(reqwest::Client::builder().timeout(Duration::from_secs(30)).default_headers(headers).build()?)
}
