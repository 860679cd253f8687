//! The `offsite` command line: device management, the embedded database, the demo's promise.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Result;
use offsite_tests::*;
use offsite_wire::DeviceCredentials;
use serde_json::Value;

#[tokio::test]
async fn device_add_list_rotate_revoke() -> Result<()> {
    let site = Site::new().await?;
    let out = site
        .command(&["device", "add", "扬尘监测仪 1号", "--object", "site-7", "--class", "dust-monitor"])
        .stdout(Stdio::piped())
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let creds: DeviceCredentials = serde_json::from_slice(&out.stdout)?;
    assert!(creds.cert_pem.contains("BEGIN CERTIFICATE") && creds.key_pem.contains("PRIVATE KEY"));
    let rec = site.db.store.device(&creds.device_id).await?.expect("stored");
    assert_eq!((rec.name.as_str(), rec.object_id.as_deref()), ("扬尘监测仪 1号", Some("site-7")));
    assert_eq!(rec.class.as_deref(), Some("dust-monitor"));
    assert!(!site.command(&["device", "add", "x", "--class", "bad class"]).status()?.success());
    // Only the digest is stored.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_sha256 FROM devices WHERE id = $1").bind(creds.device_id.as_str()).fetch_one(site.db.store.pool()).await?;
    assert_eq!(stored, offsite_broker::token_digest(&creds.token).to_vec());

    let out = site.command(&["device", "list", "--json"]).stdout(Stdio::piped()).output()?;
    let listed: Vec<Value> = String::from_utf8(out.stdout)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], creds.device_id.as_str());

    let out = site.command(&["device", "rotate", creds.device_id.as_str()]).stdout(Stdio::piped()).output()?;
    assert!(out.status.success());
    let rotated: DeviceCredentials = serde_json::from_slice(&out.stdout)?;
    assert_ne!(rotated.token, creds.token);

    assert!(site.command(&["device", "revoke", creds.device_id.as_str()]).status()?.success());
    assert!(site.db.store.device(&creds.device_id).await?.unwrap().revoked_at.is_some());
    // Each change from the command line is in the audit trail, and the chain verifies.
    let filter = offsite_store::AuditFilter { entity_id: Some(creds.device_id.to_string()), ..Default::default() };
    let (events, _) = site.db.store.audit_search(&filter).await?;
    let mut actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    actions.sort();
    assert_eq!(actions, vec!["device.provision", "device.revoke", "device.rotate"]);
    assert!(events.iter().all(|e| e.actor.starts_with("cli:")));
    let verify = site.output(&["audit", "verify"])?;
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    assert!(!site.command(&["device", "revoke", "nosuchdevice"]).status()?.success());
    assert!(!site.command(&["device", "revoke", "bad-id"]).status()?.success());
    Ok(())
}

fn pg_running(data_dir: &std::path::Path) -> bool {
    data_dir.join("postgres/postmaster.pid").exists()
}

/// `demo` with the embedded PostgreSQL (no database URL): within 30 s of /healthz answering,
/// 60 devices are online and at least 1,000 samples are committed; the demo city is there (eight
/// departments, sixty objects, this year's holidays, tasks in every state) and red warnings keep
/// becoming tasks; SIGTERM stops everything, PostgreSQL included.
#[tokio::test]
async fn demo_on_embedded_postgres_meets_its_promise() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("offsite-demo-").tempdir_in("/tmp")?;
    let (http, tls, plain, hj212) = (free_port(), free_port(), free_port(), free_port());
    let mut c = Command::new(offsite_bin());
    c.arg("--data-dir").arg(dir.path()).args(["demo", "--duration", "300"]);
    c.env("OFFSITE_BROKER__TLS_LISTEN", format!("127.0.0.1:{tls}"))
        .env("OFFSITE_HJ212__LISTEN", format!("127.0.0.1:{hj212}"))
        .env("OFFSITE_BROKER__PLAIN_LISTEN", format!("127.0.0.1:{plain}"))
        .env("OFFSITE_PORTAL__LISTEN", format!("127.0.0.1:{http}"))
        .env("OFFSITE_PORTAL__HTTPS_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env_remove("OFFSITE_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut demo = Proc(c.spawn()?);
    let base = format!("http://127.0.0.1:{http}");
    wait_for("healthz", Duration::from_secs(90), || {
        let u = format!("{base}/healthz");
        async move { reqwest::get(&u).await.map(|r| r.status().is_success()).unwrap_or(false) }
    })
    .await?;
    assert!(pg_running(dir.path()), "embedded cluster runs inside the data directory");
    let admin = login_client(&base, "admin", "Demo@2026").await?;
    let t0 = std::time::Instant::now();
    let mut last = (0, 0.0);
    while t0.elapsed() < Duration::from_secs(30) {
        let d: Value = admin.get(format!("{base}/api/v1/devices?limit=500")).send().await?.json().await?;
        let online = d["items"].as_array().unwrap().iter().filter(|i| i["online"] == true).count();
        let text = reqwest::get(format!("{base}/metrics")).await?.text().await?;
        let committed: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("offsite_ingest_samples_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        last = (online, committed);
        if online >= 60 && committed >= 1000.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(last.0 >= 60 && last.1 >= 1000.0, "after 30 s: {} online, {} committed", last.0, last.1);
    // The fleet runs through the edge agent: its queue gauge is on the platform's /metrics for
    // every demo device.
    let text = reqwest::get(format!("{base}/metrics")).await?.text().await?;
    let queues = text.lines().filter(|l| l.starts_with("offsite_edge_queue_depth{device=\"")).count();
    // The hall cameras (when setup placed their clips) are devices of the same agent.
    let cameras = std::fs::read(dir.path().join("demo/cameras.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Map<String, Value>>(&b).ok())
        .map_or(0, |m| m.len());
    // ... and so are the two HJ 212 loggers (labelled hj212-<MN>).
    assert_eq!(queues, 60 + cameras + 2, "offsite_edge_queue_depth per demo device");
    let fleet: Vec<Value> = serde_json::from_slice(&std::fs::read(dir.path().join("demo/fleet.json"))?)?;
    for d in &fleet {
        let id = d["device_id"].as_str().unwrap();
        assert!(text.contains(&format!("offsite_edge_queue_depth{{device=\"{id}\"}}")), "no queue gauge for {id}");
        assert!(dir.path().join("demo/agent").join(id).join("queue").is_dir(), "no disk queue for {id}");
    }
    // The demo comes with rules, so warnings appear without setting anything up.
    let rules: Value = admin.get(format!("{base}/api/v1/rules")).send().await?.json().await?;
    // 8 city rules, 3 on the HJ 212 loggers' real-time values, the loggers' seeded data-gap rule.
    assert_eq!(rules["items"].as_array().map(Vec::len), Some(12), "{rules}");
    // The demo's HJ 212 loggers report through the gateway, under the standard's codes.
    for (mn, code) in [("DEMO39DUST00000000000001", "a34002-Rtd"), ("DEMO32WATER0000000000001", "w01018-Rtd")] {
        wait_for(&format!("{code} of logger {mn}"), Duration::from_secs(30), || {
            let (admin, url) = (admin.clone(), format!("{base}/api/v1/devices/{mn}/latest"));
            async move {
                let Ok(r) = admin.get(&url).send().await else { return false };
                r.json::<Value>().await.is_ok_and(|v| v["items"].as_array().is_some_and(|i| i.iter().any(|m| m["metric"] == code)))
            }
        })
        .await?;
    }
    // One account per role, all with the demo password; a department's handler sees its own
    // department's devices: some, not all.
    let count = |c: reqwest::Client| {
        let url = format!("{base}/api/v1/devices?limit=500");
        async move { anyhow::Ok(c.get(url).send().await?.json::<Value>().await?["total"].as_i64().unwrap_or(-1)) }
    };
    assert_eq!(count(admin.clone()).await?, 60 + cameras as i64 + 2, "the fleet, the cameras, the two HJ 212 loggers");
    let h1 = count(login_client(&base, "handler1", "Demo@2026").await?).await?;
    assert!(h1 > 0 && h1 < 60, "handler1 sees {h1} of 60 devices");
    for user in ["secadmin", "auditor", "monitor", "monlead", "handler2", "handler3", "handler4", "leader1", "reviewer", "resup"] {
        login_client(&base, user, "Demo@2026").await?;
    }
    // The demo city.
    let get = |path: &str| {
        let (c, url) = (admin.clone(), format!("{base}{path}"));
        async move { anyhow::Ok(c.get(url).send().await?.json::<Value>().await?) }
    };
    let depts = get("/api/v1/departments").await?;
    assert_eq!(depts["items"].as_array().map(Vec::len), Some(8), "{depts}");
    assert_eq!(get("/api/v1/objects?limit=1").await?["total"], 60);
    let holidays = get("/api/v1/calendar").await?;
    assert!(holidays["items"].as_array().is_some_and(|d| !d.is_empty()), "this year's holidays: {holidays}");
    for state in ["dispatched", "signed", "in_progress", "feedback", "closed", "archived", "returned"] {
        let t = get(&format!("/api/v1/tasks?state={state}&limit=1")).await?;
        assert!(t["total"].as_i64().unwrap_or(0) >= 1, "no {state} task in the demo: {t}");
    }
    // Red warnings become tasks by themselves while the demo runs.
    let started = chrono::Utc::now() - chrono::Duration::seconds(60);
    wait_for("an automatically dispatched task", Duration::from_secs(90), || {
        let get = get.clone();
        async move {
            let Ok(t) = get("/api/v1/tasks?source=warning&limit=20").await else { return false };
            t["items"].as_array().is_some_and(|items| {
                items.iter().any(|t| {
                    t["dispatched_by"] == "system:auto-dispatch"
                        && t["dispatched_at"].as_str().and_then(|s| s.parse::<chrono::DateTime<chrono::Utc>>().ok()).is_some_and(|d| d > started)
                })
            })
        }
    })
    .await?;
    assert_eq!(demo.terminate(Duration::from_secs(30))?, Some(0));
    assert!(!pg_running(dir.path()), "demo stops the PostgreSQL it started");
    Ok(())
}

#[test]
fn help_everywhere() {
    for args in [
        vec!["--help"],
        vec!["up", "--help"],
        vec!["demo", "--help"],
        vec!["device", "--help"],
        vec!["device", "add", "--help"],
        vec!["bench", "ingest", "--help"],
        vec!["bench", "broker", "--help"],
        vec!["bench", "edge", "--help"],
        vec!["edge-agent", "--help"],
        vec!["device", "config", "--help"],
        vec!["device", "commands", "--help"],
        vec!["certs", "init", "--help"],
    ] {
        let out = Command::new(offsite_bin()).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{args:?}");
    }
}

/// The first run creates the first administrator from the configured password, or generates one
/// into a private file; never a built-in default.
#[tokio::test]
async fn first_administrator_from_config_or_generated() -> Result<()> {
    let login = |site: &Site, password: String| {
        let url = site.http("/api/v1/auth/login");
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&serde_json::json!({"username": "admin", "password": password}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    let site = Site::new().await?;
    let mut up = site.command(&["up"]);
    up.env("OFFSITE_AUTH__INITIAL_ADMIN_PASSWORD", "First#Chief2026");
    let mut p = Proc(up.spawn()?);
    wait_healthy(&site, Duration::from_secs(60)).await?;
    assert_eq!(login(&site, "First#Chief2026".into()).await?, 200);
    assert_eq!(login(&site, "Demo@2026".into()).await?, 401, "no default password");
    p.terminate(Duration::from_secs(20))?;

    let site = Site::new().await?;
    let _p = site.spawn(&["up"])?;
    wait_healthy(&site, Duration::from_secs(60)).await?;
    let file = site.dir.path().join("secrets/initial-admin.pass");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file)?.permissions().mode() & 0o777, 0o600);
    let generated = std::fs::read_to_string(&file)?;
    assert_eq!(login(&site, generated).await?, 200);

    // A weak configured password is refused at start, with a reason.
    let site = Site::new().await?;
    let out = site.command(&["up"]).env("OFFSITE_AUTH__INITIAL_ADMIN_PASSWORD", "admin").stderr(Stdio::piped()).output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
    Ok(())
}
