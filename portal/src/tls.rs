//! HTTPS for the portal: rustls server configuration from PEM files, a listener that does TLS
//! handshakes off the accept path, the HTTP -> HTTPS redirect, and the security headers every
//! response carries.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client that opens TCP and then says nothing must not hold a handshake slot for longer.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; beyond it new connections wait in the kernel's backlog.
const MAX_PENDING_HANDSHAKES: usize = 256;
/// One year, as browsers' preload lists expect; sent only over HTTPS (RFC 6797 section 7.2).
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000; includeSubDomains";

static HANDSHAKE_FAILURES: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    let c = prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "offsite_portal_tls_handshake_failures_total",
            "TLS handshakes to the portal that failed",
        ),
        &["reason"],
    )
    .expect("valid metric");
    // Registration fails only if registered already (another instance in this process): fine.
    let _ = prometheus::register(Box::new(c.clone()));
    c
});

/// The HTTPS server configuration: certificate chain and private key from PEM files, HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the portal certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing the portal certificate {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the portal key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the portal certificate does not match its key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and completes their TLS handshakes in tasks of their own, so one slow
/// or silent client never delays the others; [`axum::serve`] sees only finished handshakes.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> Result<Self> {
        let local = tcp.local_addr().context("HTTPS listener address")?;
        // Registered now, so /metrics shows the counter at 0 before the first failure.
        LazyLock::force(&HANDSHAKE_FAILURES);
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accepting an HTTPS connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            HANDSHAKE_FAILURES.with_label_values(&["error"]).inc();
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            HANDSHAKE_FAILURES.with_label_values(&["timeout"]).inc();
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task ended (it only does when aborted): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Marks a request that arrived over HTTPS (the session cookie is then `Secure`).
#[derive(Debug, Clone, Copy)]
pub struct OverHttps;

/// Headers on every response: no framing, no MIME sniffing, no referrer to other sites, and the
/// web UI's CSP where a handler set none (API JSON needs nothing the UI's policy forbids). The
/// API documentation page keeps its own inline bootstrap, so it gets no CSP from here.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let docs = req.uri().path().starts_with("/api/docs");
    let https = req.extensions().get::<OverHttps>().is_some();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("same-origin"));
    if !docs {
        h.entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(
                crate::web::CONTENT_SECURITY_POLICY,
            ));
    }
    if https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
        );
    }
    resp
}

/// The plain listener when `redirect_http` is on: every request is sent to the same host and
/// path on the HTTPS port (308 keeps the method and body).
pub fn redirect_router(https_port: u16) -> axum::Router {
    axum::Router::new()
        .fallback(move |req: Request| async move { redirect(&req, https_port) })
        .layer(axum::middleware::from_fn(security_headers))
}

fn redirect(req: &Request, https_port: u16) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_without_port);
    let Some(host) = host else {
        return crate::ApiError::bad_request(
            "missing or invalid Host header",
            "缺少或无效的 Host 请求头",
        )
        .into_response();
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    match HeaderValue::from_str(&format!("https://{host}{port}{path}")) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => {
            crate::ApiError::bad_request("invalid request target", "无效的请求地址").into_response()
        }
    }
}

/// The host part of a Host header (`name`, `name:port`, `[v6]:port`), if it is a plain host name
/// or address: anything else could smuggle another target into the Location header.
fn host_without_port(h: &str) -> Option<&str> {
    let host = if h.starts_with('[') {
        &h[..=h.find(']')?]
    } else {
        h.rsplit_once(':').map(|(n, _)| n).unwrap_or(h)
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':');
    (!host.is_empty() && host.len() <= 255 && host.chars().all(allowed)).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::host_without_port;

    #[test]
    fn hosts_are_parsed_and_odd_ones_refused() {
        assert_eq!(
            host_without_port("portal.example.cn:8080"),
            Some("portal.example.cn")
        );
        assert_eq!(host_without_port("127.0.0.1"), Some("127.0.0.1"));
        assert_eq!(host_without_port("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_without_port("evil.example/@x:80"), None);
        assert_eq!(host_without_port(""), None);
    }
}
