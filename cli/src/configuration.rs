//! Configuration: defaults, then a TOML file (`--config`), then environment variables
//! `OFFSITE_<SECTION>__<KEY>` (e.g. `OFFSITE_PORTAL__LISTEN=0.0.0.0:8080`), then command-line flags.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use offsite_broker::BrokerConfig;
use offsite_ingest::IngestConfig;
use offsite_portal::{ComplaintsConfig, PortalConfig};
use offsite_workflow::notify::NotifyConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Holds the embedded PostgreSQL cluster, the CA and secrets.
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub broker: BrokerConfig,
    pub ingest: IngestConfig,
    pub portal: PortalConfig,
    pub analytics: AnalyticsConfig,
    pub auth: AuthConfig,
    /// How a tier running as its own process reaches the broker's internal listener.
    pub internal_mqtt: InternalMqttConfig,
    pub demo: DemoConfig,
    /// The task scheduler (time-limit checkpoints, red-warning auto-dispatch, escalation).
    pub workflow: offsite_workflow::scheduler::SchedulerConfig,
    pub log: LogConfig,
    /// In-app notifications and outbound channels (webhook, WeCom, DingTalk, e-mail).
    pub notifications: NotifyConfig,
    /// The public complaint form (`[complaints] captcha`).
    pub complaints: ComplaintsConfig,
    /// The HJ 212-2017 gateway for data loggers (`[hj212] enabled, listen, idle_timeout_s, max_connections`).
    pub hj212: offsite_ingest::hj212::Hj212Config,
    /// Probes and metrics of tier processes without a portal (`[ops] listen`; off by default).
    pub ops: crate::ops_http::OpsConfig,
    /// Where attachments, documents and snapshots are kept (`[files] backend = "local" | "s3"`).
    pub files: crate::files::FilesConfig,
    /// Whether the file or the environment set `broker.plain_listen`: `offsite up` turns the
    /// internal plain listener off unless asked for it (nothing in the all-in-one needs it).
    #[serde(skip)]
    pub plain_listen_given: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("offsite-data"),
            database: DatabaseConfig::default(),
            broker: BrokerConfig::default(),
            ingest: IngestConfig::default(),
            portal: PortalConfig::default(),
            analytics: AnalyticsConfig::default(),
            auth: AuthConfig::default(),
            internal_mqtt: InternalMqttConfig::default(),
            demo: DemoConfig::default(),
            workflow: offsite_workflow::scheduler::SchedulerConfig::default(),
            log: LogConfig::default(),
            notifications: NotifyConfig::default(),
            complaints: ComplaintsConfig::default(),
            hj212: offsite_ingest::hj212::Hj212Config::default(),
            ops: crate::ops_http::OpsConfig::default(),
            files: crate::files::FilesConfig::default(),
            plain_listen_given: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `postgres://...` of an existing server; empty = run the embedded cluster in the data directory.
    pub url: Option<String>,
    /// Where `initdb`/`pg_ctl` live for the embedded cluster; found automatically if unset.
    pub pg_bin_dir: Option<PathBuf>,
    /// Also listen on TCP (e.g. `127.0.0.1`) with the embedded cluster; Unix socket only if unset.
    pub embedded_tcp_listen: Option<String>,
    pub embedded_port: u16,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: None, pg_bin_dir: None, embedded_tcp_listen: None, embedded_port: 5432, max_connections: 20 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct InternalMqttConfig {
    pub host: String,
    pub port: u16,
    pub username: String,
    /// Read from `<data_dir>/secrets/mqtt-internal.pass` when unset.
    pub password: Option<String>,
    /// Shared-subscription group of ingest replicas.
    pub group: String,
}

impl Default for InternalMqttConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 1883,
            username: "offsite-internal".into(),
            password: None,
            group: "ingest".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DemoConfig {
    pub devices: usize,
    /// Sampling interval of each simulated device.
    pub interval_ms: u64,
    /// Probability per sample that an anomaly is injected.
    pub anomaly_rate: f64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self { devices: 60, interval_ms: 1000, anomaly_rate: 0.002 }
    }
}

/// The analytics tier (detectors and warnings) in the all-in-one process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalyticsConfig {
    pub enabled: bool,
    /// Committed batches waiting for the detectors; beyond it they are counted and skipped, never
    /// holding ingest up.
    pub queue_capacity: usize,
    /// Warnings of one regulated object within this many seconds form a group.
    pub group_window_s: u64,
    /// Recent values of a series kept as a warning's evidence.
    pub evidence_samples: usize,
    /// Shards per installation (a device's samples go to shard `device_key % shards`); fixed once
    /// analytics has run. See crate::analytics_cmd.
    pub shards: u32,
    /// How committed samples reach analytics: `in_process` or `shards` (ingest publishes them to
    /// MQTT per shard for `offsite analytics` replicas).
    pub feed: AnalyticsFeed,
    /// This replica's name in the shard leases; unset: host name and a random suffix.
    pub replica: Option<String>,
    pub lease_s: u64,
    pub renew_s: u64,
    /// How far the shard checkpoint trails the newest analysed receive time.
    pub checkpoint_margin_s: u64,
    /// How far back a shard's replay reaches at most.
    pub max_replay_s: u64,
}

/// `[analytics] feed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalyticsFeed {
    InProcess,
    Shards,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            queue_capacity: 1000,
            group_window_s: 30,
            evidence_samples: 30,
            shards: 16,
            feed: AnalyticsFeed::InProcess,
            replica: None,
            lease_s: 15,
            renew_s: 5,
            checkpoint_margin_s: 10,
            max_replay_s: 3600,
        }
    }
}

/// Accounts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// Password of the first administrator (`admin`), used only when the database has no users
    /// yet. Unset: asked on the terminal, or without one generated and written to
    /// `<data_dir>/secrets/initial-admin.pass`. There is no default password.
    pub initial_admin_password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info,offsite_ingest=debug`; `RUST_LOG` wins when set.
    pub filter: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { filter: "info,rumqttd=warn,sqlx=warn".into(), format: "text".into() }
    }
}

impl Config {
    pub fn load(file: Option<&Path>, data_dir: Option<&Path>) -> Result<Self> {
        // What the operator said (file, environment), kept apart to know what they set.
        let mut fig = Figment::new();
        if let Some(f) = file {
            if !f.exists() {
                anyhow::bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("OFFSITE_").split("__").filter(|k| {
            // Only our sections; other OFFSITE_* variables (tests, tools) are not config.
            let k = k.as_str().to_ascii_lowercase();
            ["data_dir", "database", "broker", "ingest", "portal", "analytics", "auth", "internal_mqtt", "demo", "workflow", "log", "notifications", "complaints", "hj212", "ops", "files"]
                .iter()
                .any(|s| k == *s || k.starts_with(&format!("{s}.")))
        }));
        let plain_listen_given = fig.find_value("broker.plain_listen").is_ok();
        let mut cfg: Config =
            Figment::from(Serialized::defaults(Config::default())).merge(fig).extract().context("reading configuration")?;
        cfg.plain_listen_given = plain_listen_given;
        if let Some(d) = data_dir {
            cfg.data_dir = d.to_path_buf();
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("offsite.toml");
        std::fs::write(&f, "[portal]\nlisten = \"127.0.0.1:9000\"\n[demo]\ndevices = 7\n").unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("OFFSITE_DEMO__DEVICES", "9");
            jail.set_env("OFFSITE_TEST_SOMETHING", "ignored");
            let c = Config::load(Some(&f), None).unwrap();
            assert_eq!(c.portal.listen.map(|a| a.port()), Some(9000));
            assert_eq!(c.portal.https_listen.map(|a| a.port()), Some(8443));
            assert_eq!(c.demo.devices, 9);
            assert_eq!(c.broker.tls_listen.unwrap().port(), 8883);
            Ok(())
        });
    }

    #[test]
    fn ops_listen_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(Config::load(None, None).unwrap().ops.listen, None);
            jail.set_env("OFFSITE_OPS__LISTEN", "0.0.0.0:9100");
            assert_eq!(Config::load(None, None).unwrap().ops.listen.map(|a| a.port()), Some(9100));
            Ok(())
        });
    }

    #[test]
    fn plain_listen_given_only_when_set() {
        figment::Jail::expect_with(|jail| {
            assert!(!Config::load(None, None).unwrap().plain_listen_given);
            jail.set_env("OFFSITE_BROKER__PLAIN_LISTEN", "127.0.0.1:1884");
            assert!(Config::load(None, None).unwrap().plain_listen_given);
            Ok(())
        });
    }

    #[test]
    fn example_file_matches_defaults() {
        let f = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/offsite.example.toml");
        figment::Jail::expect_with(|_| {
            let c = Config::load(Some(&f), None).unwrap();
            let d = Config::default();
            assert_eq!(serde_json::to_value(&c).unwrap(), serde_json::to_value(&d).unwrap());
            Ok(())
        });
    }

    /// The sample configurations under deploy/ are read the way the binary reads them.
    #[test]
    fn deploy_samples_parse() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let systemd = root.join("systemd/offsite.toml");
        let yaml = std::fs::read_to_string(root.join("k8s/base/configmap.yaml")).unwrap();
        // The ConfigMap's `offsite.toml: |` block, indented four spaces.
        let block: String = yaml
            .split("offsite.toml: |\n")
            .nth(1)
            .expect("configmap has offsite.toml")
            .lines()
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let k8s = dir.path().join("offsite.toml");
        std::fs::write(&k8s, block).unwrap();
        figment::Jail::expect_with(|_| {
            let c = Config::load(Some(&systemd), None).unwrap();
            assert_eq!(c.data_dir, std::path::PathBuf::from("/var/lib/offsite"));
            assert_eq!(c.ops.listen.map(|a| a.port()), Some(9100));
            assert!(c.plain_listen_given);
            let c = Config::load(Some(&k8s), None).unwrap();
            assert_eq!(c.ops.listen.map(|a| a.port()), Some(9100));
            assert_eq!(c.internal_mqtt.host, "offsite-broker-internal");
            assert_eq!(c.portal.listen, None);
            assert_eq!(c.portal.https_listen.map(|a| a.port()), Some(8443));
            Ok(())
        });
    }

    #[test]
    fn smtp_password_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("OFFSITE_NOTIFICATIONS__SMTP__PASSWORD", "from-env");
            jail.set_env("OFFSITE_NOTIFICATIONS__SMTP__HOST", "smtp.example.cn");
            let c = Config::load(None, None).unwrap();
            assert_eq!(c.notifications.smtp.password.as_deref(), Some("from-env"));
            assert_eq!(c.notifications.smtp.host.as_deref(), Some("smtp.example.cn"));
            assert_eq!(c.notifications.retry_delays_s, vec![10, 30, 120, 600, 3600]);
            Ok(())
        });
    }

    #[test]
    fn complaint_captcha_is_on_unless_turned_off() {
        figment::Jail::expect_with(|jail| {
            assert!(Config::load(None, None).unwrap().complaints.captcha);
            jail.set_env("OFFSITE_COMPLAINTS__CAPTCHA", "false");
            assert!(!Config::load(None, None).unwrap().complaints.captcha);
            Ok(())
        });
    }

    #[test]
    fn device_budget_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("offsite.toml");
        std::fs::write(&f, "[ingest]\ndevice_max_samples_per_s = 200\ndevice_burst_s = 2.5\n").unwrap();
        figment::Jail::expect_with(|jail| {
            let c = Config::load(Some(&f), None).unwrap();
            assert_eq!((c.ingest.device_max_samples_per_s, c.ingest.device_burst_s), (200.0, 2.5));
            jail.set_env("OFFSITE_INGEST__DEVICE_MAX_SAMPLES_PER_S", "0");
            assert_eq!(Config::load(Some(&f), None).unwrap().ingest.device_max_samples_per_s, 0.0);
            Ok(())
        });
    }
}
