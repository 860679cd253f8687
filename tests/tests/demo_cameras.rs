//! `offsite demo` with the clips setup places in demo-media/ and the YOLOX model: both hall cameras
//! come online with person detection on, the indoor clip's empty service window raises a camera
//! warning (post unattended) with its JPEG snapshot and vtest.avi's footpath one for crowding,
//! through the real broker, ingest and database of the all-in-one process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use offsite_tests::*;
use serde_json::Value;

/// A file setup places in the checkout (tests run from tests/).
fn placed_by_setup(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[tokio::test]
async fn demo_cameras_come_online_with_detection_and_raise_unattended_and_crowding() -> Result<()> {
    for rel in [
        "demo-media/vtest.avi",
        "demo-media/one-by-one-person-detection.mp4",
        "models/yolox-nano/yolox_nano.onnx",
    ] {
        let p = placed_by_setup(rel);
        assert!(
            p.is_file(),
            "demo material missing: {} (run scripts/setup.sh, which places it)",
            p.display()
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("offsite-democam-")
        .tempdir_in("/tmp")?;
    let (http, tls, plain) = (free_port(), free_port(), free_port());
    let mut c = Command::new(offsite_bin());
    // Few simulated devices: the cameras are what is tested.
    c.arg("--data-dir")
        .arg(dir.path())
        .args(["demo", "--devices", "4", "--duration", "400"]);
    c.env("OFFSITE_BROKER__TLS_LISTEN", format!("127.0.0.1:{tls}"))
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
        async move {
            reqwest::get(&u)
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        }
    })
    .await?;
    let admin = login_client(&base, "admin", "Demo@2026").await?;
    let get = |path: &str| {
        let (c, url) = (admin.clone(), format!("{base}{path}"));
        async move { anyhow::Ok(c.get(url).send().await?.json::<Value>().await?) }
    };

    // Both cameras online, analysing, with person detection on and their zones.
    let t0 = Instant::now();
    let cams = loop {
        let cams = get("/api/v1/cameras").await?;
        let items = cams["items"].as_array().cloned().unwrap_or_default();
        if items.len() == 2
            && items.iter().all(|c| {
                c["online"] == true
                    && c["detection"]["state"] == "on"
                    && c["fps"].as_f64().unwrap_or(0.0) > 0.0
            })
        {
            break cams;
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(120),
            "after 120 s the demo cameras are not both online with detection on: {cams}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let ids: Vec<&str> = cams["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["camera_id"].as_str())
        .collect();
    assert!(
        ids.contains(&"hall-01-window") && ids.contains(&"hall-02-plaza"),
        "{cams}"
    );
    for c in cams["items"].as_array().unwrap() {
        let kinds: Vec<&str> = c["zones"]
            .as_array()
            .map(|z| z.iter().filter_map(|z| z["kind"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            kinds.contains(&"window") && kinds.contains(&"queue"),
            "zones of {}: {}",
            c["camera_id"],
            c["zones"]
        );
        assert!(
            c["object_id"]
                .as_str()
                .is_some_and(|o| o.starts_with("hall-")),
            "a service hall's camera: {c}"
        );
    }

    // The indoor clip's table stands empty at the start of every loop: post unattended; and
    // vtest.avi's footpath holds more than two pedestrians for a while: crowding.
    let t0 = Instant::now();
    let (unattended, crowding) = loop {
        let w = get("/api/v1/warnings?source=camera&limit=200").await?;
        let find = |event: &str| {
            w["items"]
                .as_array()
                .and_then(|i| i.iter().find(|w| w["event"] == event).cloned())
        };
        if let (Some(u), Some(c)) = (find("unattended"), find("crowding")) {
            break (u, c);
        }
        ensure!(
            t0.elapsed() < Duration::from_secs(150),
            "after 150 s the demo cameras have not raised both post unattended and crowding: {w}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(
        crowding["evidence"]["camera"], "hall-02-plaza",
        "{crowding}"
    );
    assert_eq!(crowding["evidence"]["zone"], "queue", "{crowding}");
    assert_eq!(
        unattended["evidence"]["camera"], "hall-01-window",
        "{unattended}"
    );
    assert_eq!(unattended["evidence"]["zone"], "window-1", "{unattended}");
    let sid = unattended["evidence"]["snapshot_id"].as_i64();
    ensure!(
        sid.is_some(),
        "the warning names its snapshot: {unattended}"
    );
    let jpeg = admin
        .get(format!("{base}/api/v1/snapshots/{}", sid.unwrap()))
        .send()
        .await?;
    assert!(
        jpeg.status().is_success(),
        "snapshot answered {}",
        jpeg.status()
    );
    let bytes = jpeg.bytes().await?;
    assert!(
        bytes.starts_with(&[0xFF, 0xD8]) && bytes.len() > 1000,
        "a JPEG snapshot ({} bytes)",
        bytes.len()
    );

    // People are counted as ordinary samples of the camera's device (people.<camera>.<zone>).
    let device = unattended["device_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let latest = get(&format!("/api/v1/devices/{device}/latest")).await?;
    for key in [
        "people.hall-01-window.window-1",
        "people.hall-01-window.waiting",
    ] {
        assert!(
            latest.to_string().contains(key),
            "no {key} sample of {device}: {latest}"
        );
    }
    assert_eq!(demo.terminate(Duration::from_secs(30))?, Some(0));
    Ok(())
}
