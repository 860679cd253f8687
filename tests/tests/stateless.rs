//! Portal replicas keep no state of their own: two real `offsite portal` processes, each with its
//! own data directory (only `secrets/` copied, as a Kubernetes Secret would be mounted), on one
//! database and one S3-compatible bucket (moto_server with authentication on).
//!
//! - an attachment uploaded through portal 1 downloads byte-identical from portal 2, and a camera
//!   snapshot written by a separate `offsite ingest` is served by portal 2; the bytes are in the
//!   bucket, not in any data directory;
//! - a CAPTCHA drawn by portal 1 is accepted once by portal 2 and refused the second time;
//! - a warning written by another process reaches both portals' live streams, and still does
//!   after the database restarts (each portal re-LISTENs by itself).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use chrono::Utc;
use offsite_store::auth::{Login, NewUser, Role};
use offsite_store::files::{sha256_hex, FileStore};
use offsite_store::moto::MotoServer;
use offsite_store::s3::{S3Settings, S3Store};
use offsite_store::{Level, NewDevice, NewWarning, Store};
use offsite_tests::*;
use offsite_wire::{CameraEventKind, CameraId, CameraMessage, Detection, DeviceId};
use serde_json::{json, Value};

const PASSWORD: &str = "Test#Pass2026";
/// A 1x1 PNG.
const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/// `offsite portal` on `port` (plain HTTP only) with its own data directory.
fn spawn_portal(data_dir: &Path, db_url: &str, port: u16, moto: Option<&MotoServer>) -> Result<Proc> {
    let mut c = offsite_cmd(data_dir, db_url, "portal", moto)?;
    c.env("OFFSITE_PORTAL__LISTEN", format!("127.0.0.1:{port}"))
        .env("OFFSITE_PORTAL__HTTPS_LISTEN", "off");
    Ok(Proc(c.spawn().context("spawning offsite portal")?))
}

/// `offsite <tier>` with the files in `moto`'s bucket, its log in `<data_dir>/<tier>.log`.
fn offsite_cmd(data_dir: &Path, db_url: &str, tier: &str, moto: Option<&MotoServer>) -> Result<Command> {
    let mut c = Command::new(offsite_bin());
    c.arg("--data-dir")
        .arg(data_dir)
        .arg("--database-url")
        .arg(db_url)
        .arg(tier);
    c.env("RUST_LOG", "info,rumqttd=warn,sqlx=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let log = std::fs::File::create(data_dir.join(format!("{tier}-{}.log", rand_suffix())))?;
    c.stderr(Stdio::from(log));
    if let Some(m) = moto {
        c.env("OFFSITE_FILES__BACKEND", "s3")
            .env("OFFSITE_FILES__ENDPOINT", m.endpoint())
            .env("OFFSITE_FILES__BUCKET", &m.bucket)
            .env("OFFSITE_FILES__REGION", &m.region)
            .env("OFFSITE_FILES__ACCESS_KEY_ID", &m.access_key_id)
            .env("OFFSITE_FILES__SECRET_ACCESS_KEY", &m.secret_access_key);
    }
    Ok(c)
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// A second data directory for replica 2, sharing only the installation's secrets with the first.
fn replica_dir(first: &Path) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("offsite-replica-").tempdir_in("/tmp")?;
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets)?;
    for f in std::fs::read_dir(first.join("secrets"))? {
        let f = f?;
        std::fs::copy(f.path(), secrets.join(f.file_name()))?;
    }
    Ok(dir)
}

async fn wait_healthy_at(port: u16, data_dir: &Path, timeout: Duration) -> Result<()> {
    let url = format!("http://127.0.0.1:{port}/healthz");
    let healthy = wait_for(&format!("portal on {port}"), timeout, || {
        let url = url.clone();
        async move {
            reqwest::get(&url)
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        }
    })
    .await;
    // The data directory goes with the test: say what the processes logged.
    healthy.with_context(|| {
        let mut logs = String::new();
        for f in std::fs::read_dir(data_dir).into_iter().flatten().flatten() {
            if f.path().extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                logs.push_str(&format!(
                    "\n--- {}\n{}",
                    f.path().display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
        logs
    })
}

async fn add_user(store: &Store, name: &str, roles: &[Role], department_id: Option<i64>) -> Result<()> {
    store
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
    Ok(())
}

/// A client carrying `name`'s session (logged in through the store: sessions are in the
/// database, so the token works on every replica).
async fn client(store: &Store, name: &str) -> Result<reqwest::Client> {
    let token = match store.login(name, PASSWORD, None).await? {
        Login::Ok { token, .. } => token,
        _ => bail!("login of {name} refused"),
    };
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()?)
}

/// A multipart/form-data body of text fields and files: (boundary, body).
fn multipart(texts: &[(&str, &str)], files: &[(&str, &str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = format!("offsite-test-{}", rand_suffix());
    let mut body = Vec::new();
    for (k, v) in texts {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
    }
    for (field, name, mime, data) in files {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: {mime}\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (boundary, body)
}

/// The answer of a CAPTCHA, found the only way a client outside the server can: by trying every
/// answer against the digest the database keeps (5 characters of 23, hashed with aws-lc so that
/// an unoptimised test build takes seconds).
async fn solve_captcha(store: &Store, id: &str) -> Result<String> {
    let digest: Vec<u8> = sqlx::query_scalar("SELECT answer_sha256 FROM captcha_challenges WHERE id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await?;
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || {
        let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
        let hash = suite.tls13().context("a TLS 1.3 suite")?.common.hash_provider;
        let alphabet = offsite_portal_alphabet();
        let mut prefix = hash.start();
        prefix.update(format!("offsite-captcha-v1\n{id}\n").as_bytes());
        let n = alphabet.len();
        let mut answer = [0u8; 5];
        for i in 0..n.pow(5) {
            let mut k = i;
            for a in answer.iter_mut() {
                *a = alphabet[k % n];
                k /= n;
            }
            let mut h = prefix.fork();
            h.update(&answer);
            if h.finish().as_ref() == digest.as_slice() {
                return Ok(String::from_utf8_lossy(&answer).into_owned());
            }
        }
        bail!("no answer matches the CAPTCHA's digest")
    })
    .await?
}

/// The CAPTCHA's alphabet (portal::captcha::ALPHABET; the tests crate does not link the portal).
fn offsite_portal_alphabet() -> &'static [u8] {
    b"ACEFHJKLMNPRTUVWXY34679"
}

#[tokio::test]
async fn two_portals_share_files_in_the_bucket_and_captchas_in_the_database() -> Result<()> {
    let moto = MotoServer::start("offsite-files").await?;
    let site = Site::new().await?;
    let store = site.db.store.clone();
    store.seed_demo_registers().await?;
    let housing = store
        .department_by_code("housing-construction")
        .await?
        .context("housing department")?
        .id;
    add_user(&store, "mon", &[Role::Monitor], None).await?;
    add_user(&store, "h_housing", &[Role::Handler], Some(housing)).await?;
    let url = site.db.url();

    // Broker and ingest of the site (data directory 1), the files in the bucket.
    let mut broker = offsite_cmd(site.dir.path(), &url, "broker", None)?;
    broker
        .env("OFFSITE_BROKER__TLS_LISTEN", format!("127.0.0.1:{}", site.tls_port))
        .env("OFFSITE_BROKER__PLAIN_LISTEN", format!("127.0.0.1:{}", site.plain_port));
    let _broker = Proc(broker.spawn()?);
    wait_port(site.plain_port, Duration::from_secs(60)).await?;
    let mut ingest = offsite_cmd(site.dir.path(), &url, "ingest", Some(&moto))?;
    ingest
        .env("OFFSITE_INTERNAL_MQTT__PORT", site.plain_port.to_string())
        .env("OFFSITE_INGEST__BATCH_MAX_DELAY_MS", "20")
        .env("OFFSITE_HJ212__ENABLED", "false");
    let _ingest = Proc(ingest.spawn()?);

    let (p1, p2) = (free_port(), free_port());
    let _portal1 = spawn_portal(site.dir.path(), &url, p1, Some(&moto))?;
    wait_healthy_at(p1, site.dir.path(), Duration::from_secs(60)).await?;
    let dir2 = replica_dir(site.dir.path())?;
    let _portal2 = spawn_portal(dir2.path(), &url, p2, Some(&moto))?;
    wait_healthy_at(p2, dir2.path(), Duration::from_secs(60)).await?;
    let base1 = format!("http://127.0.0.1:{p1}");
    let base2 = format!("http://127.0.0.1:{p2}");
    let bucket = S3Store::new(S3Settings::parse(
        &moto.endpoint(),
        &moto.bucket,
        &moto.region,
        &moto.access_key_id,
        &moto.secret_access_key,
        true,
        "",
        Duration::from_secs(10),
    )?)?;

    // An attachment: uploaded through portal 1, downloaded from portal 2.
    let mon = client(&store, "mon").await?;
    let r = mon
        .post(format!("{base1}/api/v1/tasks"))
        .json(
            &json!({"title": "工地扬尘核查", "description": "PM10 超标", "level": 3, "department_id": housing,
                       "object_id": "demo-site-01", "item": "demo-dust"}),
        )
        .send()
        .await?;
    assert_eq!(r.status(), 201, "{}", r.text().await?);
    let task: Value = r.json().await?;
    let task_id = task["id"].as_i64().context("task id")?;
    let handler = client(&store, "h_housing").await?;
    let png = base64::engine::general_purpose::STANDARD.decode(PNG_B64)?;
    let (boundary, body) = multipart(&[], &[("file", "现场照片.png", "image/png", &png)]);
    let r = handler
        .post(format!("{base1}/api/v1/tasks/{task_id}/attachments"))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await?;
    assert_eq!(r.status(), 201, "{}", r.text().await?);
    let a: Value = r.json().await?;
    let sha = sha256_hex(&png);
    assert_eq!(a["sha256"].as_str(), Some(sha.as_str()));
    let got = handler
        .get(format!("{base2}/api/v1/tasks/{task_id}/attachments/{}", a["id"]))
        .send()
        .await?;
    assert_eq!(got.status(), 200);
    assert_eq!(
        got.bytes().await?.to_vec(),
        png,
        "byte-identical from the other replica"
    );
    assert!(bucket.exists(&sha).await?, "the bytes are in the bucket");
    for d in [site.dir.path(), dir2.path()] {
        assert!(
            !d.join("files").join(&sha[0..2]).exists(),
            "and in no data directory ({})",
            d.display()
        );
    }

    // A snapshot written by the ingest process, served by portal 2.
    let creds = site.provision("大厅摄像头").await?;
    let cam = CameraDevice::connect(site.tls_port, &creds).await?;
    let camera = CameraId::parse("c1").map_err(anyhow::Error::msg)?;
    cam.send(&CameraMessage::Status {
        seq: 1,
        camera: camera.clone(),
        at: Utc::now(),
        name: "大厅东侧".into(),
        online: true,
        fps: 5.0,
        last_frame_at: Some(Utc::now()),
        detection: Detection::Off {
            reason: "no model".into(),
        },
        zones: vec![],
        health: vec![],
    })
    .await?;
    cam.send(&CameraMessage::Event {
        seq: 2,
        camera,
        kind: CameraEventKind::Covered,
        raised: true,
        at: Utc::now(),
        zone: None,
        detail: "镜头被遮挡 covered".into(),
        snapshot: Some(camera_snapshot(CAMERA_JPEG, 160, 90, vec![])),
    })
    .await?;
    let pool = store.pool().clone();
    let mut snapshot_id = None;
    let t0 = Instant::now();
    while snapshot_id.is_none() && t0.elapsed() < Duration::from_secs(30) {
        snapshot_id = sqlx::query_scalar::<_, i64>("SELECT id FROM snapshots ORDER BY id DESC LIMIT 1")
            .fetch_optional(&pool)
            .await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let snapshot_id = snapshot_id.context("ingest stored no snapshot within 30 s")?;
    let r = mon
        .get(format!("{base2}/api/v1/snapshots/{snapshot_id}"))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await?.to_vec(),
        CAMERA_JPEG,
        "the snapshot ingest wrote, served by a portal"
    );
    assert!(bucket.exists(&sha256_hex(CAMERA_JPEG)).await?);
    assert!(!site
        .dir
        .path()
        .join("files")
        .join(&sha256_hex(CAMERA_JPEG)[0..2])
        .exists());

    // A CAPTCHA drawn by portal 1, answered on portal 2: accepted once, refused the second time.
    let anon = reqwest::Client::new();
    let c: Value = anon
        .get(format!("{base1}/api/v1/complaints/captcha"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(c["required"], true, "{c}");
    let cid = c["id"].as_str().context("captcha id")?.to_owned();
    let answer = solve_captcha(&store, &cid).await?;
    let png2 = [png.as_slice(), b"complaint"].concat();
    let complaint = |answer: String| {
        let (anon, cid, base2, png2) = (anon.clone(), cid.clone(), base2.clone(), png2.clone());
        async move {
            let (boundary, body) = multipart(
                &[
                    ("service_code", "noise"),
                    ("description", "夜间工地施工噪声扰民，持续两小时以上。"),
                    ("address", "杭州市西湖区文三路 100 号"),
                    ("contact_name", "张三"),
                    ("phone", "13800138000"),
                    ("captcha_id", cid.as_str()),
                    ("captcha_answer", answer.as_str()),
                ],
                &[("attachment", "现场.png", "image/png", &png2)],
            );
            let r = anon
                .post(format!("{base2}/api/v1/complaints"))
                .header("content-type", format!("multipart/form-data; boundary={boundary}"))
                .body(body)
                .send()
                .await?;
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            Ok::<_, anyhow::Error>((status, body))
        }
    };
    let (s, b) = complaint(answer.to_lowercase()).await?;
    assert_eq!(s, 201, "portal 2 accepts portal 1's CAPTCHA: {b}");
    let tracking_no = b["tracking_no"].as_str().context("tracking number")?.to_owned();
    let (s, b) = complaint(answer).await?;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("captcha")),
        "used once: {b}"
    );

    // The complaint's attachment, filed through portal 2, read through portal 1, kept in the bucket.
    let (complaint_id, attachment_id): (i64, i64) = sqlx::query_as(
        "SELECT c.id, a.id FROM complaints c JOIN complaint_attachments a ON a.complaint_id = c.id WHERE c.tracking_no = $1",
    )
    .bind(&tracking_no)
    .fetch_one(&pool)
    .await?;
    let r = mon
        .get(format!(
            "{base1}/api/v1/complaints/{complaint_id}/attachments/{attachment_id}"
        ))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await?.to_vec(), png2, "byte-identical from the other replica");
    assert!(bucket.exists(&sha256_hex(&png2)).await?);
    let in_row: Option<Vec<u8>> = sqlx::query_scalar("SELECT data FROM complaint_attachments WHERE id = $1")
        .bind(attachment_id)
        .fetch_one(&pool)
        .await?;
    assert_eq!(in_row, None, "only the digest is in the database");
    Ok(())
}

/// A fresh PostgreSQL cluster of this test's own, so that restarting it disturbs no other test.
struct OwnCluster {
    dir: tempfile::TempDir,
    pg: Option<offsite_store::embedded::EmbeddedPostgres>,
}

impl OwnCluster {
    async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("offsite-pg-").tempdir_in("/tmp")?;
        // The server runs as `postgres` when the tests run as root: it must reach the directory.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let pg = offsite_store::embedded::EmbeddedPostgres::ensure(dir.path(), &Default::default()).await?;
        pg.ensure_database("offsite").await?;
        Ok(Self { dir, pg: Some(pg) })
    }

    fn url(&self) -> String {
        self.pg.as_ref().expect("running").url("offsite")
    }

    fn options(&self) -> sqlx::postgres::PgConnectOptions {
        self.pg.as_ref().expect("running").connect_options("offsite")
    }

    async fn restart(&mut self) -> Result<()> {
        if let Some(pg) = self.pg.take() {
            pg.stop_now()?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.pg = Some(offsite_store::embedded::EmbeddedPostgres::ensure(self.dir.path(), &Default::default()).await?);
        Ok(())
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        if let Some(pg) = self.pg.take() {
            let _ = pg.stop_now();
        }
    }
}

/// Everything a live stream sends, as text, in order.
fn follow(client: reqwest::Client, url: String) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Ok(mut r) = client.get(&url).header("accept", "text/event-stream").send().await else {
            return;
        };
        while let Ok(Some(chunk)) = r.chunk().await {
            if tx.send(String::from_utf8_lossy(&chunk).into_owned()).is_err() {
                return;
            }
        }
    });
    rx
}

/// Reads `rx` into `seen` until it contains `needle` or `timeout` passes.
async fn saw(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: &mut String,
    needle: &str,
    timeout: Duration,
) -> bool {
    let t0 = Instant::now();
    while !seen.contains(needle) {
        let left = timeout.saturating_sub(t0.elapsed());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(s)) => seen.push_str(&s),
            _ => return false,
        }
    }
    true
}

fn new_warning(key: &str, device_key: i32) -> NewWarning {
    NewWarning {
        dedup_key: key.into(),
        source: "rules".into(),
        source_version: "1".into(),
        event: "threshold".into(),
        level: Level::YELLOW,
        device_key,
        metric_id: None,
        object_id: None,
        detail: "PM10 连续 10 分钟超过 150".into(),
        score: 1.0,
        at: Utc::now(),
        evidence: json!({}),
        group_window: chrono::TimeDelta::seconds(30),
    }
}

#[tokio::test]
async fn warnings_from_another_process_reach_both_portals_also_after_a_database_restart() -> Result<()> {
    let mut pg = OwnCluster::start().await?;
    let store = Store::connect(pg.options(), 4).await?;
    add_user(&store, "mon", &[Role::Monitor], None).await?;
    let device = store
        .insert_device(&NewDevice {
            id: DeviceId::parse("dust01")?,
            name: "扬尘 1".into(),
            object_id: None,
            token_sha256: [7; 32],
            cert_serial: None,
            cert_not_after: None,
        })
        .await?
        .key;
    let (d1, d2) = (
        tempfile::Builder::new().prefix("offsite-p1-").tempdir_in("/tmp")?,
        tempfile::Builder::new().prefix("offsite-p2-").tempdir_in("/tmp")?,
    );
    let (p1, p2) = (free_port(), free_port());
    let url = pg.url();
    let _portal1 = spawn_portal(d1.path(), &url, p1, None)?;
    let _portal2 = spawn_portal(d2.path(), &url, p2, None)?;
    wait_healthy_at(p1, d1.path(), Duration::from_secs(60)).await?;
    wait_healthy_at(p2, d2.path(), Duration::from_secs(60)).await?;
    let mon = client(&store, "mon").await?;
    let mut streams: Vec<_> = [p1, p2]
        .iter()
        .map(|p| {
            (
                follow(mon.clone(), format!("http://127.0.0.1:{p}/api/v1/warnings/stream")),
                String::new(),
            )
        })
        .collect();
    // The streams are open once the keep-alive or anything else arrives; give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // This test process is "another process": its write reaches both portals through NOTIFY.
    let w = store
        .upsert_warning(&new_warning("rules|dust01|pm10|before-restart", device))
        .await?
        .into_record();
    for (i, (rx, seen)) in streams.iter_mut().enumerate() {
        assert!(
            saw(rx, seen, "before-restart", Duration::from_secs(15)).await,
            "portal {} did not stream warning {}: {seen}",
            i + 1,
            w.id
        );
    }

    // Restart the database under both portals, streams left open.
    pg.restart().await?;
    let store = Store::connect(pg.options(), 4).await?;
    // New warnings until both streams carry one written after the restart (a change announced while
    // a portal was still reconnecting is lost to it, and streamed as `lagged` instead).
    let t0 = Instant::now();
    let mut n = 0;
    let mut got = [false, false];
    while !(got[0] && got[1]) && t0.elapsed() < Duration::from_secs(60) {
        n += 1;
        store
            .upsert_warning(&new_warning(&format!("rules|dust01|pm10|after-restart-{n}"), device))
            .await?;
        for (i, (rx, seen)) in streams.iter_mut().enumerate() {
            got[i] = got[i] || saw(rx, seen, "after-restart-", Duration::from_secs(1)).await;
        }
    }
    assert!(
        got[0] && got[1],
        "after the restart: portal 1 {}, portal 2 {} (after {n} warnings)",
        got[0],
        got[1]
    );
    eprintln!(
        "both portals streamed again {:?} after the database was back ({n} warnings written)",
        t0.elapsed()
    );
    assert!(
        streams.iter().all(|(_, seen)| seen.contains("lagged")),
        "each stream was told it may have missed changes"
    );
    Ok(())
}

#[tokio::test]
async fn a_portal_with_a_wrong_bucket_or_key_stops_at_start_and_says_why() -> Result<()> {
    let moto = MotoServer::start("offsite-files").await?;
    let site = Site::new().await?;
    let url = site.db.url();
    for (var, value, expect) in [
        (
            "OFFSITE_FILES__BUCKET",
            "no-such-bucket",
            "\"no-such-bucket\" does not exist",
        ),
        (
            "OFFSITE_FILES__SECRET_ACCESS_KEY",
            "not-the-secret",
            "files.secret_access_key",
        ),
    ] {
        let mut c = offsite_cmd(site.dir.path(), &url, "portal", Some(&moto))?;
        c.env("OFFSITE_PORTAL__LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("OFFSITE_PORTAL__HTTPS_LISTEN", "off")
            .env(var, value)
            .stderr(Stdio::piped());
        let out = tokio::time::timeout(Duration::from_secs(60), tokio::task::spawn_blocking(move || c.output()))
            .await
            .context("the portal did not stop within 60 s")???;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value}: the portal must not start");
        assert!(
            stderr.contains(expect),
            "{var}={value}: expected {expect:?} in:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    Ok(())
}
