//! The one outbound HTTP(S) client shape of the platform (hyper + rustls with aws-lc-rs and the
//! system's trust store): the S3-compatible file store (`s3.rs`) and the workflow's notification
//! channels both build theirs here, so TLS settings cannot drift apart.

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;

pub type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// A client for `http://` and `https://` URLs with `connect_timeout`. Server certificates are
/// checked against the system's trust store (where an intranet adds its own CA); without one,
/// https:// fails verification and `what` names who will notice in the warning logged once here.
pub fn client(connect_timeout: Duration, what: &str) -> Result<HttpsClient> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.enforce_http(false);
    connector.set_connect_timeout(Some(connect_timeout));
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_provider_and_native_roots(provider.clone()) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no system CA certificates: https:// {what} will fail verification");
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .context("TLS settings")?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        }
    };
    let https = builder.https_or_http().enable_http1().wrap_connector(connector);
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https))
}
