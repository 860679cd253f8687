//! The agent's configuration file (TOML), with `OFFSITE_AGENT_<SECTION>__<KEY>` environment
//! overrides. `deploy/edge-agent.example.toml` is the annotated example.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use offsite_wire::DeviceCredentials;
use serde::{Deserialize, Serialize};

use crate::publisher::{Endpoint, LinkOptions};
use crate::queue::{FsyncPolicy, QueueConfig};
use crate::sources::SourceConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Queues and persisted settings, one subdirectory per device.
    pub data_dir: PathBuf,
    /// Prometheus `/metrics` of the agent; off when unset.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds between health samples (queue depth, oldest unacknowledged age, drops, source errors).
    #[serde(default = "default_health_interval_s")]
    pub health_interval_s: u64,
    /// Samples of all sources of a device are gathered this long into one batch.
    #[serde(default = "default_batch_interval_ms")]
    pub batch_interval_ms: u64,
    /// A batch is cut early at this many samples.
    #[serde(default = "default_max_batch_samples")]
    pub max_batch_samples: usize,
    #[serde(default)]
    pub broker: BrokerSection,
    #[serde(default)]
    pub queue: QueueSection,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
}

fn default_health_interval_s() -> u64 {
    60
}
fn default_batch_interval_ms() -> u64 {
    1000
}
fn default_max_batch_samples() -> usize {
    1000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSection {
    /// Must match the broker certificate's name.
    pub host: String,
    pub port: u16,
    pub keep_alive_s: u64,
    /// Resend from the oldest pending batch when its acknowledgement is this late.
    pub resend_after_s: u64,
    /// First reconnect wait; it doubles per failed attempt up to `max_reconnect_delay_ms`.
    pub reconnect_delay_ms: u64,
    pub max_reconnect_delay_ms: u64,
    /// Pace of sending per device, batches per second; bounds the backlog burst after an outage.
    pub max_batches_per_second: f64,
    /// Batches on the wire without acknowledgement, per device.
    pub window: usize,
    /// Random wait up to this before sending a backlog after a reconnect.
    pub reconnect_jitter_ms: u64,
}

impl Default for BrokerSection {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 8883,
            keep_alive_s: 30,
            resend_after_s: 30,
            reconnect_delay_ms: 1000,
            max_reconnect_delay_ms: 30_000,
            max_batches_per_second: 20.0,
            window: 32,
            reconnect_jitter_ms: 3000,
        }
    }
}

impl BrokerSection {
    pub fn endpoint(&self) -> Endpoint {
        Endpoint { host: self.host.clone(), port: self.port }
    }

    pub fn link_options(&self) -> LinkOptions {
        LinkOptions {
            keep_alive: Duration::from_secs(self.keep_alive_s.max(5)),
            resend_after: Duration::from_secs(self.resend_after_s.max(1)),
            reconnect_delay: Duration::from_millis(self.reconnect_delay_ms.max(10)),
            max_reconnect_delay: Duration::from_millis(self.max_reconnect_delay_ms.max(self.reconnect_delay_ms).max(10)),
            inflight: self.window.clamp(1, u16::MAX as usize) as u16,
            window: self.window.max(1),
            max_batches_per_second: self.max_batches_per_second.max(0.0),
            reconnect_jitter: Duration::from_millis(self.reconnect_jitter_ms),
        }
    }
}

/// Per device: the bounded on-disk queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSection {
    /// Disk budget per device; when full the oldest batches are dropped (and counted).
    pub max_bytes: u64,
    pub segment_bytes: u64,
    /// `always`: every batch is on disk before it is sent (survives a power cut);
    /// `interval`: synced every `fsync_interval_ms` (a power cut loses at most that much);
    /// `never`: left to the OS (survives an agent crash, not a power cut).
    pub fsync: String,
    pub fsync_interval_ms: u64,
}

impl Default for QueueSection {
    fn default() -> Self {
        Self { max_bytes: 64 << 20, segment_bytes: 1 << 20, fsync: "always".into(), fsync_interval_ms: 1000 }
    }
}

impl QueueSection {
    pub fn queue_config(&self) -> Result<QueueConfig> {
        let fsync = match self.fsync.as_str() {
            "always" => FsyncPolicy::Always,
            "interval" => FsyncPolicy::EveryMs(self.fsync_interval_ms.max(1)),
            "never" => FsyncPolicy::Never,
            other => bail!("queue.fsync: {other:?} is not one of always, interval, never"),
        };
        if self.max_bytes < 64 << 10 {
            bail!("queue.max_bytes: at least 64 KiB");
        }
        Ok(QueueConfig { max_bytes: self.max_bytes, segment_bytes: self.segment_bytes.max(4096), fsync })
    }
}

/// One device served by this agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// How the device reaches the platform: `mqtt` (default) or `hj212` (emulates an HJ 212-2017
    /// data logger over TCP; needs the `[devices.hj212]` section).
    #[serde(default)]
    pub protocol: DeviceProtocol,
    /// MQTT devices: the bundle `offsite device add --out FILE` wrote, as a path or inline.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// HJ 212 devices: server, MN, PW and the metric -> pollutant code map.
    #[serde(default)]
    pub hj212: Option<crate::hj212::Hj212Config>,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Camera mode (feature `camera`).
    #[serde(default)]
    pub cameras: Vec<crate::camera_config::CameraConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceProtocol {
    #[default]
    Mqtt,
    Hj212,
}

impl DeviceConfig {
    /// An MQTT device (what every device was before HJ 212 client mode).
    pub fn mqtt(credentials: Credentials, sources: Vec<SourceConfig>, cameras: Vec<crate::camera_config::CameraConfig>) -> Self {
        Self { protocol: DeviceProtocol::Mqtt, credentials: Some(credentials), hj212: None, sources, cameras }
    }

    /// The MQTT credentials; an error for an HJ 212 device or when they are missing.
    pub fn mqtt_credentials(&self, base: &Path) -> Result<DeviceCredentials> {
        match (&self.protocol, &self.credentials) {
            (DeviceProtocol::Mqtt, Some(c)) => c.load(base),
            (DeviceProtocol::Mqtt, None) => bail!("an MQTT device needs `credentials`"),
            (DeviceProtocol::Hj212, _) => bail!("an HJ 212 device has no MQTT credentials"),
        }
    }

    /// How the device is named in logs, metrics and the data directory.
    pub fn label(&self, base: &Path) -> Result<String> {
        match (&self.protocol, &self.hj212) {
            (DeviceProtocol::Hj212, Some(h)) => Ok(h.label()),
            _ => Ok(self.mqtt_credentials(base)?.device_id.as_str().to_owned()),
        }
    }

    fn validate(&self) -> Result<()> {
        match self.protocol {
            DeviceProtocol::Mqtt => {
                if self.credentials.is_none() {
                    bail!("an MQTT device needs `credentials`");
                }
                if self.hj212.is_some() {
                    bail!("[devices.hj212] is set but protocol is not \"hj212\"");
                }
            }
            DeviceProtocol::Hj212 => {
                let Some(h) = &self.hj212 else { bail!("protocol \"hj212\" needs a [devices.hj212] section") };
                h.validate()?;
                if self.credentials.is_some() {
                    bail!("an HJ 212 device authenticates with MN and PW, not `credentials`");
                }
                if !self.cameras.is_empty() {
                    bail!("an HJ 212 device cannot have cameras");
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Credentials {
    File(PathBuf),
    Inline(DeviceCredentials),
}

impl Credentials {
    pub fn load(&self, base: &Path) -> Result<DeviceCredentials> {
        match self {
            Credentials::Inline(c) => Ok(c.clone()),
            Credentials::File(p) => {
                let p = base.join(p);
                let bytes = std::fs::read(&p).with_context(|| format!("reading credentials {}", p.display()))?;
                serde_json::from_slice(&bytes).with_context(|| format!("parsing credentials {}", p.display()))
            }
        }
    }
}

impl AgentConfig {
    /// Reads `path` and applies environment overrides; relative paths inside resolve against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<(Self, PathBuf)> {
        use figment::providers::{Env, Format, Toml};
        let cfg: AgentConfig = figment::Figment::new()
            .merge(Toml::file_exact(path))
            .merge(Env::prefixed("OFFSITE_AGENT_").split("__"))
            .extract()
            .with_context(|| format!("reading agent configuration {}", path.display()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        cfg.validate()?;
        Ok((cfg, base))
    }

    pub fn validate(&self) -> Result<()> {
        self.queue.queue_config()?;
        if self.devices.is_empty() {
            bail!("no [[devices]] configured");
        }
        for d in &self.devices {
            d.validate()?;
            let mut names = std::collections::HashSet::new();
            for s in &d.sources {
                s.validate()?;
                if !names.insert(&s.name) {
                    bail!("source name {:?} used twice for one device", s.name);
                }
            }
            let mut cams = std::collections::HashSet::new();
            for c in &d.cameras {
                c.validate()?;
                if !cams.insert(&c.id) {
                    bail!("camera id {} used twice for one device", c.id);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/edge-agent.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let cfg: AgentConfig = toml::from_str(&text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.devices.len(), 3);
        let hj212 = cfg.devices[2].hj212.as_ref().unwrap();
        assert_eq!((cfg.devices[2].protocol, hj212.rtd_interval_s), (DeviceProtocol::Hj212, Some(60)));
        assert_eq!(hj212.code_for("tsp"), "a34001");
        assert_eq!(cfg.devices[0].sources.len(), 2);
        assert_eq!(cfg.devices[0].cameras.len(), 1);
        assert_eq!(cfg.devices[0].cameras[0].zones.len(), 2);
        assert!(!cfg.devices[0].sources[1].enabled);
        assert!(matches!(cfg.devices[0].credentials, Some(Credentials::File(_))));
        assert_eq!(cfg.broker.port, 8883);
        assert!(matches!(cfg.queue.queue_config().unwrap().fsync, FsyncPolicy::Always));
    }

    #[test]
    fn refuses_unknown_keys_duplicate_sources_and_bad_fsync() {
        let base = "data_dir = \"d\"\n[[devices]]\ncredentials = \"c.json\"\n";
        assert!(toml::from_str::<AgentConfig>(&format!("colour = 1\n{base}")).is_err());
        let dup = format!("{base}[[devices.sources]]\nname = \"a\"\nkind = \"sim\"\n[[devices.sources]]\nname = \"a\"\nkind = \"sim\"\n");
        assert!(toml::from_str::<AgentConfig>(&dup).unwrap().validate().is_err());
        let fsync = "data_dir = \"d\"\n[queue]\nfsync = \"sometimes\"\n[[devices]]\ncredentials = \"c.json\"\n";
        assert!(toml::from_str::<AgentConfig>(fsync).unwrap().validate().is_err());
    }
}
