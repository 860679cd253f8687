//! Debian's mosquitto as the external broker of a [`Site`], configured by the real
//! `offsite certs mosquitto`, and `offsite ingest` replicas pointed at its internal listener.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{free_port, wait_port, Proc, Site};

/// A running mosquitto with the installation's configuration.
pub struct Mosquitto {
    pub proc: Proc,
    /// Devices' MQTT/TLS port.
    pub tls_port: u16,
    /// The internal account's port.
    pub internal_port: u16,
    /// Its stderr (connection messages, refusals).
    pub log: PathBuf,
    pub conf_dir: PathBuf,
}

impl Mosquitto {
    /// `offsite certs init`, `offsite certs mosquitto`, then `mosquitto -c` on free ports.
    pub async fn start(site: &Site) -> Result<Self> {
        let out = site.output(&["certs", "init"])?;
        if !out.status.success() {
            bail!(
                "offsite certs init: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let (tls_port, internal_port) = (free_port(), free_port());
        let conf_dir = site.dir.path().join("mosquitto");
        let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?
            .trim()
            .to_owned();
        let (dev, int) = (
            format!("127.0.0.1:{tls_port}"),
            format!("127.0.0.1:{internal_port}"),
        );
        let args = [
            "certs",
            "mosquitto",
            "--dir",
            conf_dir.to_str().context("utf-8 path")?,
            "--device-listen",
            &dev,
            "--internal-listen",
            &int,
            "--user",
            &user,
        ];
        let out = site.output(&args)?;
        if !out.status.success() {
            bail!(
                "offsite certs mosquitto: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let log = site.dir.path().join("mosquitto.log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(conf_dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting mosquitto (scripts/setup.sh installs it)")?;
        let proc = Proc(child);
        wait_port(internal_port, Duration::from_secs(10)).await?;
        wait_port(tls_port, Duration::from_secs(10)).await?;
        Ok(Self {
            proc,
            tls_port,
            internal_port,
            log,
            conf_dir,
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `offsite ingest` on `m`'s internal listener (JSON logs into `log`, HJ 212 gateway off so
/// replicas can share a machine).
pub fn spawn_ingest(site: &Site, m: &Mosquitto, log: &std::path::Path) -> Result<Proc> {
    let mut c = site.command(&["ingest"]);
    c.env("OFFSITE_INTERNAL_MQTT__HOST", "127.0.0.1")
        .env("OFFSITE_INTERNAL_MQTT__PORT", m.internal_port.to_string())
        .env("OFFSITE_HJ212__ENABLED", "false")
        .env("OFFSITE_ANALYTICS__ENABLED", "false")
        .env("OFFSITE_LOG__FORMAT", "json")
        .env("RUST_LOG", "info,sqlx=warn")
        .stderr(std::fs::File::create(log)?)
        .stdout(Stdio::null());
    Ok(Proc(c.spawn().context("spawning offsite ingest")?))
}

/// The highest `messages` an ingest process reported in its progress lines.
pub fn ingest_messages(log: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "ingest progress")
        .filter_map(|v| v["fields"]["messages"].as_u64())
        .max()
        .unwrap_or(0)
}

/// Whether an ingest process logged its connection to the broker.
pub fn ingest_connected(log: &std::path::Path) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("ingest connected to broker")
}
