//! Test support: `moto_server`, a local S3-compatible object store, on a free port.
//!
//! `scripts/setup.sh` installs the pinned `moto[server]` into `tests/moto/.venv` of the checkout
//! (`OFFSITE_MOTO_SERVER` names another executable). A test without it fails and says how to get
//! it: these tests must be able to fail, so they never skip.
//!
//! [`MotoServer::start`] runs it with authentication on: one IAM user with an access key allowed
//! everything on S3 is made (while moto still admits a few unauthenticated calls), the bucket is
//! created, and from then on every request must carry a valid SigV4 signature of that key, so the
//! tests prove the signing as a real store would check it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Calls moto admits without authentication at start: CreateUser, CreateAccessKey, PutUserPolicy
/// and CreateBucket.
const SETUP_CALLS: u32 = 4;

/// A running `moto_server`; killed when dropped.
pub struct MotoServer {
    child: Child,
    pub port: u16,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub bucket: String,
    pub region: String,
}

/// The `moto_server` executable.
pub fn moto_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OFFSITE_MOTO_SERVER") {
        return p.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/moto/.venv/bin/moto_server")
}

impl MotoServer {
    /// Starts moto on a free loopback port, with an access key and a bucket `bucket`.
    pub async fn start(bucket: &str) -> Result<Self> {
        let bin = moto_server_bin();
        if !bin.exists() {
            bail!(
                "{} is missing: run scripts/setup.sh (it installs moto[server] into tests/moto/.venv)",
                bin.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_CALLS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut m = Self {
            child,
            port,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            bucket: bucket.to_owned(),
            region: "us-east-1".to_owned(),
        };
        let t0 = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("moto_server did not listen on port {port} within 30 s");
            }
            if let Some(s) = m.child.try_wait()? {
                bail!("moto_server exited at start ({s})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // IAM's query API: moto picks the service from the credential scope, and checks no
        // signature during setup.
        let iam = |body: String| {
            let auth = "AWS4-HMAC-SHA256 Credential=SETUP/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0";
            call(
                port,
                "POST",
                "/",
                Some(auth),
                Some(("application/x-www-form-urlencoded", body)),
            )
        };
        let (s, b) = iam("Action=CreateUser&UserName=offsite&Version=2010-05-08".into()).await?;
        if s != 200 {
            bail!("moto CreateUser answered {s}: {b}");
        }
        let (s, b) = iam("Action=CreateAccessKey&UserName=offsite&Version=2010-05-08".into()).await?;
        if s != 200 {
            bail!("moto CreateAccessKey answered {s}: {b}");
        }
        m.access_key_id = between(&b, "<AccessKeyId>", "</AccessKeyId>").context("AccessKeyId in moto's answer")?;
        m.secret_access_key =
            between(&b, "<SecretAccessKey>", "</SecretAccessKey>").context("SecretAccessKey in moto's answer")?;
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        let form = format!(
            "Action=PutUserPolicy&UserName=offsite&PolicyName=s3&PolicyDocument={}&Version=2010-05-08",
            form_encode(policy)
        );
        let (s, b) = iam(form).await?;
        if s != 200 {
            bail!("moto PutUserPolicy answered {s}: {b}");
        }
        let (s, b) = call(port, "PUT", &format!("/{bucket}"), None, None).await?;
        if s != 200 {
            bail!("moto CreateBucket answered {s}: {b}");
        }
        Ok(m)
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// One plain HTTP/1.1 request (unsigned; moto admits it only during setup).
async fn call(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<(&str, String)>,
) -> Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    let body = match body {
        Some((ct, b)) => {
            req.push_str(&format!("Content-Type: {ct}\r\n"));
            b
        }
        None => String::new(),
    };
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .context("moto did not answer")??;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("an HTTP status line from moto")?;
    Ok((status, text))
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn between(s: &str, a: &str, b: &str) -> Option<String> {
    let i = s.find(a)? + a.len();
    let j = s[i..].find(b)? + i;
    Some(s[i..j].to_owned())
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
