//! Harness for end-to-end tests: runs the real `offsite` binary as child processes (so they can
//! be killed for real) against a fresh database, with real MQTT clients.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use offsite_store::testing::TestDb;
use offsite_wire::DeviceCredentials;

pub mod analytics;
pub mod faults;
pub mod mosquitto;

/// The `offsite` binary built next to this test executable (`make test` builds it first).
pub fn offsite_bin() -> PathBuf {
    if let Ok(p) = std::env::var("OFFSITE_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/offsite
    let bin = exe.parent().and_then(Path::parent).expect("target dir").join("offsite");
    assert!(bin.exists(), "{} is missing: run `cargo build -p offsite-cli` first (make test does)", bin.display());
    bin
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One installation: a data directory (CA, secrets), a fresh database and chosen ports.
pub struct Site {
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    pub tls_port: u16,
    pub plain_port: u16,
    pub http_port: u16,
    /// The portal's HTTPS port.
    pub https_port: u16,
    /// The HJ 212 gateway's port.
    pub hj212_port: u16,
    /// Where the processes' output goes, one file each (`log_tails`); apart from the data directory.
    logs: tempfile::TempDir,
    spawned: AtomicUsize,
}

impl Site {
    pub async fn new() -> Result<Self> {
        let db = TestDb::new().await?;
        let dir = tempfile::Builder::new().prefix("offsite-e2e-").tempdir_in("/tmp")?;
        let logs = tempfile::Builder::new().prefix("offsite-e2e-logs-").tempdir_in("/tmp")?;
        Ok(Self {
            db,
            dir,
            tls_port: free_port(),
            plain_port: free_port(),
            http_port: free_port(),
            https_port: free_port(),
            hj212_port: free_port(),
            logs,
            spawned: AtomicUsize::new(0),
        })
    }

    /// `offsite <args>` configured for this site; not yet started. Its output goes to a file of
    /// its own (`log_tails`), or to the test's with `OFFSITE_TEST_VERBOSE` set.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(offsite_bin());
        c.args(["--data-dir"]).arg(self.dir.path()).arg("--database-url").arg(self.db.url()).args(args);
        c.env("OFFSITE_BROKER__TLS_LISTEN", format!("127.0.0.1:{}", self.tls_port))
            .env("OFFSITE_BROKER__PLAIN_LISTEN", format!("127.0.0.1:{}", self.plain_port))
            .env("OFFSITE_PORTAL__LISTEN", format!("127.0.0.1:{}", self.http_port))
            .env("OFFSITE_PORTAL__HTTPS_LISTEN", format!("127.0.0.1:{}", self.https_port))
            .env("OFFSITE_HJ212__LISTEN", format!("127.0.0.1:{}", self.hj212_port))
            .env("OFFSITE_INTERNAL_MQTT__PORT", self.plain_port.to_string())
            .env("OFFSITE_INGEST__BATCH_MAX_DELAY_MS", "20")
            .env("RUST_LOG", "info,rumqttd=warn,sqlx=warn")
            .stdin(Stdio::null());
        if std::env::var_os("OFFSITE_TEST_VERBOSE").is_none() {
            match self.log_file(args) {
                Ok((out, err)) => c.stdout(out).stderr(err),
                Err(_) => c.stdout(Stdio::null()).stderr(Stdio::null()),
            };
        }
        c
    }

    fn log_file(&self, args: &[&str]) -> std::io::Result<(File, File)> {
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        let name = args.first().copied().unwrap_or("offsite");
        let out = File::create(self.logs.path().join(format!("{n:02}-{name}.log")))?;
        Ok((out.try_clone()?, out))
    }

    /// The last `lines` lines of each process's output, in the order they were started: for the
    /// message of a test that gives up waiting (the files go with the site).
    pub fn log_tails(&self, lines: usize) -> String {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(self.logs.path()) {
            Ok(d) => d.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => return format!("(no logs: {e})"),
        };
        files.sort();
        let mut text = String::new();
        for f in files {
            let body = std::fs::read_to_string(&f).unwrap_or_default();
            let all: Vec<&str> = body.lines().collect();
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            text.push_str(&format!("--- {name} (last {} of {} lines)\n", lines.min(all.len()), all.len()));
            for l in &all[all.len().saturating_sub(lines)..] {
                text.push_str(l);
                text.push('\n');
            }
        }
        text
    }

    /// Runs `offsite <args>` to completion, capturing its output.
    pub fn output(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).output()?)
    }

    pub fn spawn(&self, args: &[&str]) -> Result<Proc> {
        Ok(Proc(self.command(args).spawn().context("spawning offsite")?))
    }

    /// Provisions a device through the same CA the site's broker uses.
    pub async fn provision(&self, name: &str) -> Result<DeviceCredentials> {
        let pki = offsite_broker::Pki::load_or_create(&self.dir.path().join("pki"))?;
        Ok(offsite_broker::provision(&self.db.store, &pki, name, None).await?.1)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.http_port, path)
    }

    /// Writes a device's credentials as PEM files for command-line clients; returns (ca, cert, key).
    pub fn pem_files(&self, c: &DeviceCredentials) -> Result<(PathBuf, PathBuf, PathBuf)> {
        let d = self.dir.path().join(format!("creds-{}", c.device_id));
        std::fs::create_dir_all(&d)?;
        let (ca, cert, key) = (d.join("ca.pem"), d.join("device.pem"), d.join("device.key"));
        std::fs::write(&ca, &c.ca_pem)?;
        std::fs::write(&cert, &c.cert_pem)?;
        std::fs::write(&key, &c.key_pem)?;
        Ok((ca, cert, key))
    }
}

/// A child process that is killed (SIGKILL) when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self, timeout: Duration) -> Result<Option<i32>> {
        Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status()?;
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.0.try_wait()? {
                return Ok(s.code());
            }
            if t0.elapsed() > timeout {
                bail!("process did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls until `f` returns true or the timeout passes.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

pub async fn wait_port(port: u16, timeout: Duration) -> Result<()> {
    wait_for(&format!("port {port}"), timeout, || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await
}

/// Waits until the portal's /healthz answers 200.
pub async fn wait_healthy(site: &Site, timeout: Duration) -> Result<()> {
    let url = site.http("/healthz");
    wait_for("healthz", timeout, || {
        let url = url.clone();
        async move { reqwest::get(&url).await.map(|r| r.status().is_success()).unwrap_or(false) }
    })
    .await
}

/// Rows stored for one device: (metric key, ts ms, value), ordered.
pub async fn stored_rows(site: &Site, device: &str) -> Result<Vec<(String, i64, f64)>> {
    Ok(sqlx::query_as(
        "SELECT m.key, (extract(epoch FROM s.ts) * 1000)::int8, s.value FROM samples s \
         JOIN devices d ON d.key = s.device_key JOIN metrics m ON m.id = s.metric_id \
         WHERE d.id = $1 ORDER BY m.key, s.ts",
    )
    .bind(device)
    .fetch_all(site.db.store.pool())
    .await?)
}

/// Scrapes one counter value from the portal's /metrics (sum over label sets matching `labels`).
pub async fn metric_value(site: &Site, name: &str, labels: &str) -> Result<f64> {
    let text = reqwest::get(site.http("/metrics")).await?.text().await?;
    let mut total = 0.0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(name) {
            if (rest.starts_with(' ') && labels.is_empty()) || (rest.starts_with('{') && rest.contains(labels)) {
                total += rest.rsplit(' ').next().unwrap_or("0").parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    Ok(total)
}

/// True if the broker answers the connection with a successful CONNACK within 5 s.
pub async fn connack_ok(ev: &mut rumqttc::EventLoop) -> bool {
    use rumqttc::{ConnectReturnCode, Event, Packet};
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => return a.code == ConnectReturnCode::Success,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// A client that sends `user`'s session token on every request (logs in at `base`).
pub async fn login_client(base: &str, user: &str, password: &str) -> Result<reqwest::Client> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("login of {user} answered {}", resp.status());
    }
    let body: serde_json::Value = resp.json().await?;
    let token = body["token"].as_str().context("token in the login answer")?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    Ok(reqwest::Client::builder().default_headers(headers).build()?)
}

impl Site {
    /// The first administrator's password, generated by the site's first `up`.
    pub fn admin_password(&self) -> Result<String> {
        let p = self.dir.path().join("secrets/initial-admin.pass");
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    /// A client logged in as the first administrator (system and security administrator).
    pub async fn admin_client(&self) -> Result<reqwest::Client> {
        login_client(&format!("http://127.0.0.1:{}", self.http_port), "admin", &self.admin_password()?).await
    }
}

/// A picture for camera tests (a real JPEG, 160x90).
pub const CAMERA_JPEG: &[u8] = include_bytes!("../fixtures/camera-snapshot.jpg");

/// A camera agent's MQTT/TLS link as raw as a device's: publishes camera messages on its `event`
/// channel and collects what arrives on its `cmd` topic.
pub struct CameraDevice {
    client: rumqttc::AsyncClient,
    topic: String,
    /// Payloads the device received on its `cmd` topic.
    pub commands: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    poll: tokio::task::JoinHandle<()>,
}

impl CameraDevice {
    /// Connects with the device's certificate and token, subscribes to `cmd`, says it is online.
    pub async fn connect(port: u16, c: &DeviceCredentials) -> Result<Self> {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
        let mut o = MqttOptions::new(format!("{}-cam", c.device_id), "localhost", port);
        o.set_credentials(c.device_id.as_str(), &c.token);
        o.set_keep_alive(Duration::from_secs(10));
        // Snapshots make messages of a few hundred KiB.
        o.set_max_packet_size(1024 * 1024, 1024 * 1024);
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca: c.ca_pem.as_bytes().to_vec(),
            alpn: None,
            client_auth: Some((c.cert_pem.as_bytes().to_vec(), c.key_pem.as_bytes().to_vec())),
        }));
        let (client, mut ev) = AsyncClient::new(o, 100);
        if !connack_ok(&mut ev).await {
            bail!("camera device {} could not connect", c.device_id);
        }
        let (tx, commands) = tokio::sync::mpsc::unbounded_channel();
        let cmd_topic = format!("/tenants/{}/v1/cmd", c.device_id);
        let poll = tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == cmd_topic => {
                        let _ = tx.send(p.payload.to_vec());
                    }
                    Ok(Event::Incoming(Packet::Disconnect)) | Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    Ok(_) => {}
                }
            }
        });
        client.subscribe(format!("/tenants/{}/v1/cmd", c.device_id), QoS::AtLeastOnce).await?;
        client.publish(format!("/tenants/{}/v1/status", c.device_id), QoS::AtLeastOnce, true, r#"{"online":true}"#).await?;
        Ok(Self { client, topic: format!("/tenants/{}/v1/event", c.device_id), commands, poll })
    }

    pub async fn send(&self, m: &offsite_wire::CameraMessage) -> Result<()> {
        self.client.publish(&self.topic, rumqttc::QoS::AtLeastOnce, false, m.encode()).await?;
        Ok(())
    }
}

impl Drop for CameraDevice {
    fn drop(&mut self) {
        self.poll.abort();
    }
}

/// A snapshot message part carrying `jpeg` with its hash, taken now.
pub fn camera_snapshot(jpeg: &[u8], width: u32, height: u32, zones: Vec<offsite_wire::Zone>) -> offsite_wire::Snapshot {
    use base64::Engine;
    use sha2::Digest;
    offsite_wire::Snapshot {
        at: chrono::Utc::now(),
        width,
        height,
        sha256: sha2::Sha256::digest(jpeg).iter().map(|b| format!("{b:02x}")).collect(),
        jpeg_base64: base64::engine::general_purpose::STANDARD.encode(jpeg),
        boxes: vec![],
        zones,
    }
}
