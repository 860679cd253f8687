//! The portal: the HTTP API the web UI and operators use (devices, series, warnings and their
//! live stream, rules, silences, maintenance windows), plus `/healthz` and `/metrics`. Every
//! response outside `/metrics` and the SSE stream is JSON, errors included.

pub mod access;
pub mod auth;
pub mod captcha;
pub mod commands;
pub mod error;
pub mod extract;
pub mod live;
pub mod openapi;
pub mod provision;
pub mod routes;
pub mod time;
pub mod tls;
pub mod web;
pub mod xlsx;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use offsite_store::{Store, WarningChange};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, ApiResult};

/// Request bodies are small JSON documents (a rule, a silence); nothing legitimate sends more.
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;
/// Longer than any sane series query; bounds how long graceful shutdown can wait. It bounds the time
/// to the response head only, so it does not cut SSE streams (they end on shutdown instead).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`serve`] waits for its own warnings listener before accepting requests anyway.
pub const LIVE_CONNECT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortalConfig {
    /// Plain HTTP. Off by default (`"off"`): people reach the portal over HTTPS; `offsite demo`
    /// turns it on at 127.0.0.1:8080.
    #[serde(with = "offsite_wire::listen")]
    pub listen: Option<SocketAddr>,
    /// HTTPS with `tls_cert`/`tls_key`; `"off"` turns it off.
    #[serde(with = "offsite_wire::listen")]
    pub https_listen: Option<SocketAddr>,
    /// PEM certificate chain for HTTPS; unset: the installation's server certificate
    /// (`<data_dir>/pki/server.pem`, made by `offsite certs init` or the first start).
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for HTTPS; unset: `<data_dir>/pki/server.key`.
    pub tls_key: Option<std::path::PathBuf>,
    /// The plain listener only redirects to HTTPS instead of serving the portal.
    pub redirect_http: bool,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            listen: None,
            https_listen: Some(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8443))),
            tls_cert: None,
            tls_key: None,
            redirect_http: false,
        }
    }
}

/// The public complaint form (`[complaints]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComplaintsConfig {
    /// Whether a submission must solve the image CAPTCHA. On by default; an operator may turn it
    /// off (e.g. behind another bot defence, or for automated browser tests), which is logged as a
    /// warning at start. The form learns it from `GET /api/v1/complaints/captcha`.
    pub captcha: bool,
}

impl Default for ComplaintsConfig {
    fn default() -> Self {
        Self { captcha: true }
    }
}

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// False once shutdown has begun, so `/healthz` turns load balancers away while in-flight
    /// requests finish.
    pub ready: Arc<AtomicBool>,
    /// Live warning changes; `None` until [`AppState::with_live`] or [`serve`] provides them.
    live: Option<broadcast::Sender<WarningChange>>,
    /// Turns true when shutdown begins, so long-lived responses (SSE) end and graceful shutdown
    /// does not wait on them forever.
    closing: Arc<watch::Sender<bool>>,
    /// Where changes are recorded; `None` only in tests that do not look at the trail.
    audit: Option<offsite_store::AuditLog>,
    /// Encrypts complainants' phone and ID numbers. [`AppState::new`] draws a random key per
    /// process, fine for tests only: what it encrypted is unreadable after a restart. Real use must
    /// configure a persistent key with [`AppState::with_secret_key`].
    contact_cipher: routes::complaints::ContactCipher,
    /// The public complaint form's CAPTCHAs (answers in the database, shared by replicas).
    captchas: captcha::CaptchaStore,
    /// False when the operator turned the CAPTCHA off (`[complaints] captcha = false`).
    captcha_required: bool,
    /// Where attachments and documents are kept. [`AppState::new`] uses a directory under the
    /// system's temporary directory, fine for tests only; real use configures
    /// [`AppState::with_files`] (the CLI: `<data_dir>/files`).
    files: Arc<dyn offsite_store::files::FileStore>,
    /// Signs device credentials; `None` where this process has no access to the device CA.
    provisioner: Option<Arc<dyn provision::DeviceProvisioner>>,
    /// Publishes commands to devices; `None`: commands are recorded and sent on reconnection.
    commands: Option<Arc<dyn commands::CommandPublisher>>,
    /// Addresses whose login lockout is already in the audit trail (auth::LockoutsAudited).
    pub lockouts_audited: auth::LockoutsAudited,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("store", &self.store).finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(store: Store) -> Self {
        let captchas = captcha::CaptchaStore::new(store.clone());
        Self {
            store,
            ready: Arc::new(AtomicBool::new(true)),
            live: None,
            closing: Arc::new(watch::channel(false).0),
            audit: None,
            contact_cipher: routes::complaints::ContactCipher::random(),
            captchas,
            captcha_required: true,
            files: Arc::new(offsite_store::files::LocalDirStore::new(
                std::env::temp_dir().join(format!("offsite-files-{}", std::process::id())),
            )),
            provisioner: None,
            commands: None,
            lockouts_audited: auth::LockoutsAudited::default(),
        }
    }

    /// Sends device commands (the zone editor's `set_zones`) through this publisher.
    pub fn with_commands(mut self, commands: Arc<dyn commands::CommandPublisher>) -> Self {
        self.commands = Some(commands);
        self
    }

    pub fn commands(&self) -> Option<&Arc<dyn commands::CommandPublisher>> {
        self.commands.as_ref()
    }

    /// Keeps uploaded files in this store.
    pub fn with_files(mut self, files: Arc<dyn offsite_store::files::FileStore>) -> Self {
        self.files = files;
        self
    }

    pub fn files(&self) -> &Arc<dyn offsite_store::files::FileStore> {
        &self.files
    }

    /// Lets administrators register devices and rotate their credentials through the API.
    pub fn with_provisioner(mut self, provisioner: Arc<dyn provision::DeviceProvisioner>) -> Self {
        self.provisioner = Some(provisioner);
        self
    }

    pub fn provisioner(&self) -> Option<&Arc<dyn provision::DeviceProvisioner>> {
        self.provisioner.as_ref()
    }

    /// The key (32 bytes, AES-256-GCM) that encrypts complainants' contact details at rest; the CLI
    /// keeps it in `<data_dir>/secrets/complaints.key`. Every replica must use the same key.
    pub fn with_secret_key(mut self, key: [u8; 32]) -> Self {
        self.contact_cipher = routes::complaints::ContactCipher::new(key);
        self
    }

    pub fn contact_cipher(&self) -> &routes::complaints::ContactCipher {
        &self.contact_cipher
    }

    /// The CAPTCHAs awaiting an answer. Reachable from Rust only (no route exposes the answers):
    /// tests solve CAPTCHAs with [`captcha::CaptchaStore::answer`] after [`AppState::keep_captcha_answers`].
    pub fn captchas(&self) -> &captcha::CaptchaStore {
        &self.captchas
    }

    /// Remembers the answers of the CAPTCHAs this process draws, so Rust callers can solve them.
    /// For tests only; never set by the CLI.
    pub fn keep_captcha_answers(mut self) -> Self {
        self.captchas = self.captchas.keep_answers();
        self
    }

    /// Whether complaint submissions must solve the CAPTCHA (on unless configured off).
    pub fn with_captcha(mut self, required: bool) -> Self {
        self.captcha_required = required;
        self
    }

    pub fn captcha_required(&self) -> bool {
        self.captcha_required
    }

    /// Records every change made through the API in this audit trail.
    pub fn with_audit(mut self, audit: offsite_store::AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Appends an event to the audit trail (queued; committed in the writer's next batch).
    pub async fn audit(&self, ev: offsite_store::AuditEvent) {
        if let Some(a) = &self.audit {
            if let Err(e) = a.record_nowait(ev).await {
                tracing::error!(error = %format!("{e:#}"), "audit trail unavailable");
            }
        }
    }

    /// Uses an in-process feed of warning changes (the all-in-one process passes the one its
    /// detectors publish to) instead of listening on the database.
    pub fn with_live(mut self, tx: broadcast::Sender<WarningChange>) -> Self {
        self.live = Some(tx);
        self
    }

    /// The live feed, if one is set.
    pub fn live(&self) -> Option<&broadcast::Sender<WarningChange>> {
        self.live.as_ref()
    }

    /// A receiver of live warning changes; `None` without a live feed.
    pub fn subscribe_changes(&self) -> Option<broadcast::Receiver<WarningChange>> {
        self.live.as_ref().map(broadcast::Sender::subscribe)
    }

    /// Marks the app not ready and ends open SSE streams.
    pub fn begin_shutdown(&self) {
        self.set_ready(false);
        self.closing.send_replace(true);
    }

    /// Watches for [`AppState::begin_shutdown`].
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

pub fn router(state: AppState) -> Router {
    routes::metrics::init();
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::metrics::metrics))
        .route("/api/v1/auth/login", post(routes::auth::login))
        .route("/api/v1/complaints/services", get(routes::complaints::services))
        .route("/api/v1/complaints/captcha", get(routes::complaints::captcha))
        .route(
            "/api/v1/complaints",
            get(routes::complaints::list)
                .post(routes::complaints::submit)
                .layer(axum::extract::DefaultBodyLimit::max(routes::complaints::UPLOAD_BODY_LIMIT)),
        )
        .route("/api/v1/complaints/track/{tracking_no}", get(routes::complaints::track))
        .route("/api/v1/complaints/{id}", get(routes::complaints::get))
        .route("/api/v1/complaints/{id}/contact", get(routes::complaints::contact))
        .route("/api/v1/complaints/{id}/close", post(routes::complaints::close))
        .route("/api/v1/complaints/{id}/attachments/{attachment_id}", get(routes::complaints::attachment))
        .route("/api/v1/auth/logout", post(routes::auth::logout))
        .route("/api/v1/auth/me", get(routes::auth::me))
        .route("/api/v1/auth/password", post(routes::auth::change_password))
        .route("/api/v1/auth/tokens", get(routes::auth::list_tokens).post(routes::auth::create_token))
        .route("/api/v1/auth/tokens/{id}", delete(routes::auth::revoke_token))
        .route("/api/v1/users", get(routes::auth::list_users).post(routes::auth::create_user))
        .route("/api/v1/users/{id}/roles", axum::routing::put(routes::auth::set_roles))
        .route("/api/v1/users/{id}/password", post(routes::auth::reset_password))
        .route("/api/v1/users/{id}/disabled", axum::routing::put(routes::auth::set_disabled))
        .route("/api/v1/audit", get(routes::auth::audit_search))
        .route("/api/v1/regions", get(routes::registers::regions).post(routes::registers::upsert_region))
        .route("/api/v1/departments", get(routes::registers::departments).post(routes::registers::create_department))
        .route("/api/v1/regions/{code}", delete(routes::registers::delete_region))
        .route("/api/v1/departments/{id}", axum::routing::put(routes::registers::update_department).delete(routes::registers::delete_department))
        .route("/api/v1/departments/{id}/regions", axum::routing::put(routes::registers::set_department_regions))
        .route("/api/v1/objects", get(routes::registers::objects).post(routes::registers::create_object))
        .route("/api/v1/objects/import", post(routes::registers::import_objects))
        .route("/api/v1/objects/export", get(routes::registers::export_objects))
        .route(
            "/api/v1/objects/{id}",
            get(routes::registers::object).put(routes::registers::update_object).delete(routes::registers::delete_object),
        )
        .route("/api/v1/catalog", get(routes::registers::catalog))
        .route("/api/v1/catalog/drafts", get(routes::registers::catalog_drafts))
        .route("/api/v1/catalog/import", post(routes::registers::import_catalog))
        .route("/api/v1/catalog/export", get(routes::registers::export_catalog))
        .route("/api/v1/catalog/{code}/history", get(routes::registers::catalog_history))
        .route("/api/v1/catalog/{code}/draft", axum::routing::put(routes::registers::catalog_draft))
        .route("/api/v1/catalog/{code}/publish", post(routes::registers::catalog_publish))
        .route("/api/v1/devices", get(routes::devices::list).post(routes::device_registry::register))
        .route("/api/v1/devices/export", get(routes::device_registry::export))
        .route("/api/v1/devices/import", post(routes::device_registry::import))
        .route("/api/v1/devices/{id}", get(routes::devices::get))
        .route("/api/v1/devices/{id}/latest", get(routes::devices::latest))
        .route("/api/v1/devices/{id}/rotate", post(routes::device_registry::rotate))
        .route("/api/v1/devices/{id}/revoke", post(routes::device_registry::revoke))
        .route("/api/v1/devices/{id}/commands", get(routes::device_commands::list).post(routes::device_commands::send))
        .route(
            "/api/v1/devices/{id}/metadata",
            get(routes::device_registry::get_metadata).put(routes::device_registry::put_metadata),
        )
        .route("/api/v1/metrics", get(routes::devices::metric_catalog))
        .route("/api/v1/metrics/departments", get(routes::dept_metrics::departments_figures))
        .route("/api/v1/metrics/departments/export", get(routes::dept_metrics::export_figures))
        .route("/api/v1/series", get(routes::series::series))
        .route("/api/v1/warnings", get(routes::warnings::list))
        .route("/api/v1/warnings/stream", get(routes::warnings::stream))
        .route("/api/v1/wall/summary", get(routes::wall::summary))
        .route("/api/v1/cameras", get(routes::cameras::list))
        .route("/api/v1/cameras/{device}/{camera}/zones", axum::routing::put(routes::cameras::put_zones))
        .route("/api/v1/snapshots/{id}", get(routes::cameras::snapshot))
        .route("/api/v1/warnings/{id}", get(routes::warnings::get))
        .route("/api/v1/warnings/{id}/resolve", post(routes::warnings::resolve))
        .route("/api/v1/models", get(routes::models::list))
        .route("/api/v1/rules", get(routes::rules::list).post(routes::rules::create))
        .route("/api/v1/rules/{id}", get(routes::rules::get).put(routes::rules::update).delete(routes::rules::delete))
        .route("/api/v1/silences", get(routes::silences::list_silences).post(routes::silences::create_silence))
        .route("/api/v1/silences/{id}", delete(routes::silences::expire_silence))
        .route(
            "/api/v1/maintenance",
            get(routes::silences::list_maintenance).post(routes::silences::create_maintenance),
        )
        .route("/api/v1/warnings/precision", get(routes::triage::precision))
        .route("/api/v1/warnings/{id}/acknowledge", post(routes::triage::acknowledge))
        .route("/api/v1/warnings/{id}/dispatch", post(routes::triage::dispatch))
        .route("/api/v1/warnings/{id}/merge", post(routes::triage::merge))
        .route("/api/v1/warnings/{id}/false-positive", post(routes::triage::false_positive))
        .route("/api/v1/complaints/{id}/task", post(routes::triage::complaint_task))
        .route("/api/v1/complaints/{id}/callback", post(routes::triage::callback))
        .route("/api/v1/tasks", get(routes::tasks::list).post(routes::tasks::create))
        .route("/api/v1/tasks/{id}", get(routes::tasks::get))
        .route("/api/v1/tasks/{id}/sign", post(routes::tasks::sign))
        .route("/api/v1/tasks/{id}/start", post(routes::tasks::start))
        .route("/api/v1/tasks/{id}/return", post(routes::tasks::return_task))
        .route("/api/v1/tasks/{id}/redispatch", post(routes::tasks::redispatch))
        .route("/api/v1/tasks/{id}/transfer", post(routes::tasks::transfer))
        .route("/api/v1/tasks/{id}/extension", post(routes::tasks::request_extension))
        .route("/api/v1/tasks/{id}/extension/approve", post(routes::tasks::approve_extension))
        .route("/api/v1/tasks/{id}/extension/refuse", post(routes::tasks::refuse_extension))
        .route("/api/v1/tasks/{id}/feedback", post(routes::tasks::feedback))
        .route("/api/v1/tasks/{id}/co-feedback", post(routes::tasks::co_feedback))
        .route("/api/v1/tasks/{id}/approve", post(routes::tasks::approve))
        .route("/api/v1/tasks/{id}/reject", post(routes::tasks::reject))
        .route("/api/v1/tasks/{id}/archive", post(routes::tasks::archive))
        .route("/api/v1/tasks/{id}/comments", post(routes::tasks::comment))
        .route(
            "/api/v1/tasks/{id}/attachments",
            post(routes::tasks::upload)
                .layer(axum::extract::DefaultBodyLimit::max(routes::tasks::UPLOAD_BODY_LIMIT)),
        )
        .route("/api/v1/tasks/{id}/attachments/{attachment_id}", get(routes::tasks::download))
        .route("/api/v1/task-policies", get(routes::workflow_admin::policies).put(routes::workflow_admin::put_policy))
        .route("/api/v1/task-policies/{item}/{level}", delete(routes::workflow_admin::delete_policy))
        .route("/api/v1/calendar", get(routes::workflow_admin::calendar))
        .route(
            "/api/v1/calendar/{day}",
            axum::routing::put(routes::workflow_admin::put_day).delete(routes::workflow_admin::delete_day),
        )
        .route(
            "/api/v1/responsibilities",
            get(routes::workflow_admin::responsibilities).put(routes::workflow_admin::put_responsibility),
        )
        .route(
            "/api/v1/responsibilities/{item}/{region_code}",
            delete(routes::workflow_admin::delete_responsibility),
        )
        .route("/api/v1/tasks/{id}/case", post(routes::cases::open))
        .route("/api/v1/cases", get(routes::cases::list))
        .route("/api/v1/cases/{id}", get(routes::cases::get))
        .route("/api/v1/cases/{id}/advance", post(routes::cases::advance))
        .route(
            "/api/v1/cases/{id}/documents",
            post(routes::cases::upload)
                .layer(axum::extract::DefaultBodyLimit::max(routes::cases::UPLOAD_BODY_LIMIT)),
        )
        .route("/api/v1/cases/{id}/documents/{doc_id}", get(routes::cases::download))
        .route("/api/v1/objects/{id}/credit", get(routes::cases::credit))
        .route("/api/public/v1/disclosures", get(routes::cases::disclosures))
        .route("/api/public/v1/catalog", get(routes::public_catalog::catalog))
        .route("/api/v1/notifications", get(routes::notifications::list))
        .route("/api/v1/notifications/unread-count", get(routes::notifications::unread_count))
        .route("/api/v1/notifications/read-all", post(routes::notifications::mark_all_read))
        .route("/api/v1/notifications/{id}/read", post(routes::notifications::mark_read))
        .route(
            "/api/v1/departments/{id}/channels",
            get(routes::notifications::list_channels).post(routes::notifications::create_channel),
        )
        .route(
            "/api/v1/channels/{id}",
            axum::routing::put(routes::notifications::update_channel).delete(routes::notifications::delete_channel),
        )
        .route("/api/v1/channels/{id}/test", post(routes::notifications::test_channel))
        .route("/api/v1/channels/{id}/deliveries", get(routes::notifications::deliveries))
        .merge(openapi::swagger_ui())
        // Outside the API: the web UI (its files, else index.html for the app's own routes).
        .fallback(web::fallback)
        // `Router::layer` wraps each route after matching, so the metrics middleware sees
        // `MatchedPath`. The last layer added is the outermost: tracing sees everything, the
        // counter sees the final status, and JSON normalisation covers the statuses the inner
        // layers produce (timeout, body limit, caught panic).
        .layer(middleware::from_fn_with_state(state.clone(), auth::audit_denied))
        .layer(CatchPanicLayer::custom(panic_response))
        // BODY_LIMIT_BYTES, except the complaint intake (attachments).
        .layer(middleware::from_fn(routes::complaints::body_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, REQUEST_TIMEOUT))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(routes::metrics::track))
        .layer(middleware::from_fn(tls::security_headers))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The sockets a portal serves on: plain HTTP (the portal itself, or only a redirect to HTTPS)
/// and HTTPS.
pub struct Listeners {
    pub http: Option<tokio::net::TcpListener>,
    pub https: Option<(tokio::net::TcpListener, Arc<rustls::ServerConfig>)>,
    /// The plain listener answers every request with a redirect to the HTTPS port.
    pub redirect_http: bool,
}

/// Serves until `shutdown` resolves, then stops accepting, marks the app not ready, ends SSE
/// streams and lets in-flight requests finish (each bounded by [`REQUEST_TIMEOUT`]).
///
/// Without a live feed ([`AppState::with_live`]) it starts its own warnings listener for the
/// lifetime of the server, and waits up to [`LIVE_CONNECT_WAIT`] for it before serving, so that
/// changes made right after startup reach the streams.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve_all(Listeners { http: Some(listener), https: None, redirect_http: false }, state, shutdown).await
}

/// [`serve`] on every listener of `listeners` at once; all stop together.
pub async fn serve_all(
    listeners: Listeners,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if listeners.http.is_none() && listeners.https.is_none() {
        anyhow::bail!("the portal has no listener: set portal.listen or portal.https_listen");
    }
    let (state, _listener_task) = if state.live.is_some() {
        (state, None)
    } else {
        let tx = live::channel();
        let (task, mut connected) = live::spawn_listener(state.store.clone(), tx.clone());
        if tokio::time::timeout(LIVE_CONNECT_WAIT, connected.wait_for(|c| *c)).await.is_err() {
            tracing::warn!("warnings listener not connected yet; live streams start once it is");
        }
        (state.with_live(tx), Some(live::AbortOnDrop(task)))
    };
    let app = router(state.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let mut servers = tokio::task::JoinSet::new();
    let https_port = match &listeners.https {
        Some((l, _)) => Some(l.local_addr().context("HTTPS listener address")?.port()),
        None => None,
    };
    if let Some(listener) = listeners.http {
        let addr = listener.local_addr().context("portal listener address")?;
        let plain = match (listeners.redirect_http, https_port) {
            (true, Some(port)) => {
                tracing::info!(%addr, "portal redirecting plain HTTP to HTTPS");
                tls::redirect_router(port)
            }
            _ => {
                tracing::info!(%addr, "portal listening (plain HTTP)");
                app.clone()
            }
        };
        // Connection info gives handlers the client address (login throttling, audit).
        let serving = axum::serve(listener, plain.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stopped());
        servers.spawn(async move { serving.await.context("serving the portal over HTTP") });
    }
    if let Some((listener, config)) = listeners.https {
        let listener = tls::TlsListener::new(listener, config)?;
        tracing::info!(addr = %axum::serve::Listener::local_addr(&listener)?, "portal listening (HTTPS)");
        let app = app.layer(axum::Extension(tls::OverHttps));
        // `tap_io` only so that axum's ConnectInfo<SocketAddr> applies to this listener too.
        let listener = axum::serve::ListenerExt::tap_io(listener, |_| {});
        let serving = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(stopped());
        servers.spawn(async move { serving.await.context("serving the portal over HTTPS") });
    }
    let mut result = Ok(());
    tokio::select! {
        _ = shutdown => {}
        Some(first) = servers.join_next() => {
            result = first.context("portal server task")?;
        }
    }
    state.begin_shutdown();
    tracing::info!("portal shutting down");
    let _ = stop_tx.send(true);
    while let Some(r) = servers.join_next().await {
        if let Ok(Err(e)) = r {
            result = result.and(Err(e));
        }
    }
    tracing::info!("portal stopped");
    result
}

/// Binds `config.listen` and serves; the convenience the CLI uses.
pub async fn run(
    config: &PortalConfig,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = config.listen.context("portal.listen is off")?;
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the portal to {addr}"))?;
    serve(listener, AppState::new(store), shutdown).await
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint", "接口不存在")
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // The panic message itself is already printed by the panic hook; don't send it out.
    tracing::error!("handler panicked");
    ApiError::internal().into_response()
}

/// Replaces any non-JSON error body (axum's 405, tower-http's 413/504) with our JSON error, so
/// clients can rely on one error shape.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let mut fixed = ApiError::from_status(status).into_response();
    // Keep headers that matter to the client, such as `Allow` on a 405.
    if let Some(allow) = resp.headers().get(header::ALLOW) {
        fixed.headers_mut().insert(header::ALLOW, allow.clone());
    }
    fixed
}
