//! Transport: `offsite certs init`, the portal over HTTPS (a client trusting only the generated
//! CA), the HTTP -> HTTPS redirect, security headers, cookie attributes, body limits, the per-IP
//! login limit, and `offsite up` with default listeners.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use offsite_tests::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 exchange as a client sees it.
struct Answer {
    status: u16,
    /// Header names lower-cased, in arrival order.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A TLS client that trusts `ca_pem` and nothing else (no system roots).
fn tls_client(ca_pem: &[u8]) -> Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Sends `request` (head and body as given) over TLS to `localhost:port` and reads the answer
/// until the server closes (the request says `Connection: close`).
async fn https_raw(port: u16, ca_pem: &[u8], request: &[u8]) -> Result<Answer> {
    https_raw_from(Ipv4Addr::LOCALHOST, port, ca_pem, request).await
}

/// As [`https_raw`], from the loopback source address `from` (another client, as the server sees it).
async fn https_raw_from(
    from: Ipv4Addr,
    port: u16,
    ca_pem: &[u8],
    request: &[u8],
) -> Result<Answer> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    let tcp = socket.connect((Ipv4Addr::LOCALHOST, port).into()).await?;
    let mut tls = tls_client(ca_pem)?
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    tls.write_all(request).await?;
    tls.flush().await?;
    let mut raw = Vec::new();
    // A server that refuses a body early may reset the connection after answering.
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut raw)).await;
    parse_answer(&raw)
}

async fn https(
    port: u16,
    ca_pem: &[u8],
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<Answer> {
    https_from(Ipv4Addr::LOCALHOST, port, ca_pem, method, path, json).await
}

async fn https_from(
    from: Ipv4Addr,
    port: u16,
    ca_pem: &[u8],
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<Answer> {
    let body = json.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    https_raw_from(from, port, ca_pem, req.as_bytes()).await
}

fn parse_answer(raw: &[u8]) -> Result<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no complete HTTP answer")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("no status line")?;
    let status = status_line
        .split(' ')
        .nth(1)
        .context("no status code")?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

async fn wait_https(site: &Site, ca: &[u8]) -> Result<()> {
    wait_for("portal over HTTPS", Duration::from_secs(90), || async {
        https(site.https_port, ca, "GET", "/healthz", None)
            .await
            .map(|a| a.status == 200)
            .unwrap_or(false)
    })
    .await
}

/// `offsite certs init` twice, then with a new host (refused without --force, done with it).
fn certs_init_cycle(site: &Site) -> Result<()> {
    let pki = site.dir.path().join("pki");
    let first = site.output(&["certs", "init", "--host", "portal.example.test"])?;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let key = std::fs::read(pki.join("server.key"))?;
    let ca_key = std::fs::read(pki.join("ca.key"))?;
    let again = site.output(&["certs", "init", "--host", "portal.example.test"])?;
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing changed"));
    assert_eq!(
        std::fs::read(pki.join("server.key"))?,
        key,
        "a second run keeps the key"
    );

    let widened = site.output(&["certs", "init", "--host", "other.example.test"])?;
    assert!(
        !widened.status.success(),
        "a new name needs --force, since it replaces the key"
    );
    assert!(String::from_utf8_lossy(&widened.stderr).contains("--force"));
    assert_eq!(std::fs::read(pki.join("server.key"))?, key);
    let forced = site.output(&["certs", "init", "--host", "other.example.test", "--force"])?;
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_ne!(
        std::fs::read(pki.join("server.key"))?,
        key,
        "--force issues a new key"
    );
    assert_eq!(
        std::fs::read(pki.join("ca.key"))?,
        ca_key,
        "the CA is never replaced"
    );
    // Both names are in the certificate now (names are kept, not replaced).
    let then = site.output(&[
        "certs",
        "init",
        "--host",
        "portal.example.test",
        "--host",
        "other.example.test",
    ])?;
    assert!(String::from_utf8_lossy(&then.stdout).contains("nothing changed"));
    Ok(())
}

/// HTTPS with a client trusting only the generated CA; HSTS there and not on plain HTTP; frame
/// and type options everywhere; cookie attributes per transport; a declared oversized body gets
/// 413 before it is read; the per-address login limit.
#[tokio::test]
async fn portal_over_https_with_the_generated_ca() -> Result<()> {
    let site = Site::new().await?;
    certs_init_cycle(&site)?;
    let _up = site.spawn(&["up"])?;
    let ca = std::fs::read(site.dir.path().join("pki/ca.pem"))?;
    wait_https(&site, &ca).await?;

    let a = https(site.https_port, &ca, "GET", "/healthz", None).await?;
    assert_eq!(a.status, 200);
    assert!(a
        .header("strict-transport-security")
        .is_some_and(|v| v.contains("max-age=")));
    assert_eq!(a.header("x-frame-options"), Some("DENY"));
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    assert!(a
        .header("content-security-policy")
        .is_some_and(|v| v.contains("frame-ancestors 'none'")));

    // A client that trusts another CA refuses the portal's certificate.
    let stranger = tempfile::tempdir()?;
    let other = offsite_broker::Pki::load_or_create(&stranger.path().join("pki"))?;
    let refused = https(
        site.https_port,
        other.ca_pem().as_bytes(),
        "GET",
        "/healthz",
        None,
    )
    .await;
    assert!(
        refused.is_err(),
        "a certificate from another CA must not be accepted"
    );
    // The server counts the failed handshake.
    let failures = "offsite_portal_tls_handshake_failures_total";
    wait_for(
        "a counted handshake failure",
        Duration::from_secs(10),
        || async {
            metric_value(&site, failures, "reason=\"error\"")
                .await
                .unwrap_or(0.0)
                >= 1.0
        },
    )
    .await?;

    // Plain HTTP (on in this site): same headers, no HSTS.
    let plain = reqwest::get(site.http("/healthz")).await?;
    assert!(plain.status().is_success());
    assert!(
        plain.headers().get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
    assert_eq!(
        plain
            .headers()
            .get("x-frame-options")
            .map(|v| v.to_str().unwrap()),
        Some("DENY")
    );
    assert_eq!(
        plain
            .headers()
            .get("x-content-type-options")
            .map(|v| v.to_str().unwrap()),
        Some("nosniff")
    );

    // Session cookie: HttpOnly and SameSite=Strict always, Secure over HTTPS only.
    let password = site.admin_password()?;
    let login = serde_json::json!({"username": "admin", "password": password}).to_string();
    let a = https(
        site.https_port,
        &ca,
        "POST",
        "/api/v1/auth/login",
        Some(&login),
    )
    .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let cookie = a
        .header("set-cookie")
        .context("session cookie over HTTPS")?;
    for attr in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(
            cookie.split(';').any(|p| p.trim() == attr),
            "{attr} missing in {cookie}"
        );
    }
    let r = reqwest::Client::new()
        .post(site.http("/api/v1/auth/login"))
        .body(login.clone())
        .header("content-type", "application/json")
        .send()
        .await?;
    assert!(r.status().is_success());
    let cookie = r
        .headers()
        .get("set-cookie")
        .context("session cookie over HTTP")?
        .to_str()?
        .to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        !cookie.split(';').any(|p| p.trim() == "Secure"),
        "no Secure over plain HTTP: {cookie}"
    );

    // 2 MiB declared on a JSON endpoint (limit 1 MiB): refused from the header alone.
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"username\":\"",
        2 * 1024 * 1024
    );
    let a = https_raw(site.https_port, &ca, head.as_bytes()).await?;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(
        a.body.contains("payload_too_large"),
        "JSON error: {}",
        a.body
    );

    // Per address, over HTTPS (so the TLS listener passes the client address on): 20 failures
    // under 20 different names from 127.0.0.1 lock that address out, even for the right
    // password; 127.0.0.2 (another client) still logs in.
    let (here, elsewhere) = (Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2));
    let port = site.https_port;
    for i in 0..20 {
        let body = serde_json::json!({"username": format!("guess{i}"), "password": "Wrong@2026"})
            .to_string();
        let a = https_from(here, port, &ca, "POST", "/api/v1/auth/login", Some(&body)).await?;
        assert_eq!(a.status, 401, "failure {i}: {}", a.body);
    }
    let a = https_from(here, port, &ca, "POST", "/api/v1/auth/login", Some(&login)).await?;
    assert_eq!(a.status, 429, "the address is throttled: {}", a.body);
    assert!(a.header("retry-after").is_some());
    let a = https_from(
        elsewhere,
        port,
        &ca,
        "POST",
        "/api/v1/auth/login",
        Some(&login),
    )
    .await?;
    assert_eq!(a.status, 200, "another address is not affected: {}", a.body);

    // A public endpoint (complaint tracking, 60 per 10 minutes per address): the 61st lookup
    // from one address is refused, another address is still answered.
    let track = "/api/v1/complaints/track/TS-NO-SUCH";
    for i in 0..60 {
        let a = https_from(here, port, &ca, "GET", track, None).await?;
        assert_eq!(a.status, 404, "lookup {i}: {}", a.body);
    }
    assert_eq!(
        https_from(here, port, &ca, "GET", track, None)
            .await?
            .status,
        429
    );
    assert_eq!(
        https_from(elsewhere, port, &ca, "GET", track, None)
            .await?
            .status,
        404
    );
    Ok(())
}

/// With `redirect_http`, the plain listener answers 308 to the same path on the HTTPS port.
#[tokio::test]
async fn plain_http_redirects_to_https() -> Result<()> {
    let site = Site::new().await?;
    let mut c = site.command(&["up"]);
    c.env("OFFSITE_PORTAL__REDIRECT_HTTP", "true");
    let _up = Proc(c.spawn()?);
    wait_port(site.https_port, Duration::from_secs(90)).await?;
    let ca = std::fs::read(site.dir.path().join("pki/ca.pem"))?;
    wait_https(&site, &ca).await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let r = client
        .get(site.http("/api/v1/devices?page=2"))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 308);
    let location = r.headers().get("location").context("Location")?.to_str()?;
    assert_eq!(
        location,
        format!(
            "https://127.0.0.1:{}/api/v1/devices?page=2",
            site.https_port
        )
    );
    assert!(r.headers().get("strict-transport-security").is_none());
    // A Host header that is not a host name is refused, not echoed into Location.
    let r = client
        .get(site.http("/"))
        .header("host", "evil.example/@x")
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);
    Ok(())
}

/// Listening TCP ports of process `pid` (its socket inodes matched against /proc/net/tcp{,6}),
/// each with whether it listens on 127.0.0.1 only.
fn listening_sockets(pid: u32) -> Result<BTreeSet<(u16, bool)>> {
    let mut inodes = BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(fd?.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
            inodes.insert(n.to_owned());
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1 (ADDR:PORT in hex), st field 3 (0A = LISTEN), inode field 9.
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let (addr, port) = f[1].rsplit_once(':').context("port")?;
                // /proc/net/tcp writes 127.0.0.1 as 0100007F (host byte order, little-endian here).
                ports.insert((u16::from_str_radix(port, 16)?, addr == "0100007F"));
            }
        }
    }
    Ok(ports)
}

/// `offsite up` with default listeners: HTTPS on, no plain HTTP and no plain MQTT listener. (Only the
/// HTTPS address is the harness's, so that tests can run side by side.)
#[tokio::test]
async fn up_with_default_portal_settings_has_no_plain_http() -> Result<()> {
    let site = Site::new().await?;
    let mut c = site.command(&["up"]);
    c.env_remove("OFFSITE_PORTAL__LISTEN");
    // Nor the broker's internal plain listener, unless configured.
    c.env_remove("OFFSITE_BROKER__PLAIN_LISTEN");
    let up = Proc(c.spawn()?);
    // The CA is made at the first start.
    wait_port(site.https_port, Duration::from_secs(90)).await?;
    let ca = std::fs::read(site.dir.path().join("pki/ca.pem"))?;
    wait_https(&site, &ca).await?;
    let sockets = listening_sockets(up.0.id())?;
    let ports: BTreeSet<u16> = sockets.iter().map(|(p, _)| *p).collect();
    let configured: BTreeSet<u16> = [
        site.tls_port,
        site.plain_port,
        site.https_port,
        site.hj212_port,
    ]
    .into();
    assert!(ports.contains(&site.https_port), "HTTPS is on: {ports:?}");
    assert!(!ports.contains(&site.http_port), "no plain HTTP: {ports:?}");
    // The broker's device front relays to rumqttd's TLS listeners on loopback ports of its own
    // choosing: allowed, but only on 127.0.0.1 and only if they present our server certificate.
    let connector = tls_client(&ca)?;
    for (extra, loopback) in sockets.iter().filter(|(p, _)| !configured.contains(p)) {
        if !loopback {
            bail!("listening on unconfigured port {extra} beyond loopback (all: {ports:?})");
        }
        let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, *extra)).await?;
        let tls = tokio::time::timeout(
            Duration::from_secs(10),
            connector.connect(ServerName::try_from("localhost")?, tcp),
        )
        .await;
        if !matches!(tls, Ok(Ok(_))) {
            bail!("unconfigured loopback port {extra} is not one of the broker's TLS listeners (all: {ports:?})");
        }
    }
    assert!(
        reqwest::get(site.http("/healthz")).await.is_err(),
        "nothing answers plain HTTP"
    );
    Ok(())
}

/// A portal of its own (`offsite portal`): without certificates it refuses to start and says how
/// to get them; after `offsite certs init` it serves HTTPS.
#[tokio::test]
async fn split_portal_needs_certificates_and_then_serves_https() -> Result<()> {
    let site = Site::new().await?;
    // The schema and first administrator come from a first `up`.
    let mut up = site.spawn(&["up"])?;
    wait_healthy(&site, Duration::from_secs(90)).await?;
    up.terminate(Duration::from_secs(30))?;
    std::fs::remove_dir_all(site.dir.path().join("pki"))?;

    let out = site.output(&["portal"])?;
    assert!(!out.status.success(), "no certificate, no HTTPS portal");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("offsite certs init"),
        "the error says what to do: {err}"
    );

    assert!(site.output(&["certs", "init"])?.status.success());
    let _portal = site.spawn(&["portal"])?;
    let ca = std::fs::read(site.dir.path().join("pki/ca.pem"))?;
    wait_https(&site, &ca).await?;
    let a = https(site.https_port, &ca, "GET", "/healthz", None).await?;
    assert_eq!(a.status, 200);
    assert!(a.header("strict-transport-security").is_some());
    Ok(())
}
