//! Where the agent's samples come from: simulated signals, replayed CSV recordings and Modbus TCP
//! devices, all behind one poll-based interface.
//!
//! The runner owns the schedule: it calls [`Source::poll`] every `interval_ms` with the current
//! time and queues what comes back. Sources therefore never sleep or spawn, which keeps them
//! deterministic under test (pass any `now`) and lets the runner decide about back-off.

pub mod csv;
pub mod modbus;
pub mod sim;

use std::path::Path;

use chrono::{DateTime, Utc};
use offsite_wire::Sample;
use serde::{Deserialize, Serialize};

pub use self::csv::{CsvConfig, CsvSource, TimestampMode};
pub use self::modbus::{ModbusConfig, ModbusSource, RegisterConfig, RegisterTable, RegisterType, WordOrder};
pub use self::sim::{SimConfig, SimSource};

/// Common fields of every source in the agent's TOML config, `[[devices.sources]]`.
///
/// Unknown keys are rejected by the kind-specific part (the `deny_unknown_fields` on each kind's
/// struct sees every key the common part did not take), so typos do not go unnoticed.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SourceConfig {
    /// Unique within a device: 1..=32 of `[A-Za-z0-9_-]`.
    pub name: String,
    /// How often the runner polls, in milliseconds.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(flatten)]
    pub kind: SourceKind,
}

fn default_interval_ms() -> u64 {
    1000
}

fn yes() -> bool {
    true
}

/// The kind-specific part of a source's config, chosen by its `kind` key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceKind {
    Sim(SimConfig),
    Csv(CsvConfig),
    Modbus(ModbusConfig),
}

impl SourceConfig {
    pub const MAX_NAME_LEN: usize = 32;

    /// Checks everything that can be checked without touching files or the network.
    pub fn validate(&self) -> Result<(), SourceError> {
        let name = &self.name;
        if name.is_empty() || name.len() > Self::MAX_NAME_LEN {
            return Err(SourceError::Config(format!(
                "source name {name:?} must be 1..={} characters long",
                Self::MAX_NAME_LEN
            )));
        }
        if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))) {
            return Err(SourceError::Config(format!(
                "source name {name:?} contains {c:?}; allowed: ASCII letters, digits, '_', '-'"
            )));
        }
        if self.interval_ms == 0 {
            return Err(SourceError::Config(format!("source {name}: interval_ms must be at least 1")));
        }
        let kind = match &self.kind {
            SourceKind::Sim(c) => c.validate(),
            SourceKind::Csv(c) => c.validate(),
            SourceKind::Modbus(c) => c.validate(),
        };
        // Say which source is wrong; a device may have several of the same kind.
        kind.map_err(|e| match e {
            SourceError::Config(m) => SourceError::Config(format!("source {name}: {m}")),
            other => other,
        })
    }
}

/// Why a source could not be built or polled. Poll errors are transient from the runner's point
/// of view: it counts them and polls again at the next interval.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The configuration is unusable (bad name, missing column, inconsistent options, ...).
    #[error("invalid source config: {0}")]
    Config(String),
    /// Reading a file failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Input data could not be understood (a CSV row, a timestamp, ...).
    #[error("{context}: {message}")]
    Parse { context: String, message: String },
    /// A Modbus device could not be reached, timed out, or answered with an exception.
    #[error("modbus {address}: {message}")]
    Modbus { address: String, message: String },
}

/// A built source, ready to be polled.
// A handful per agent: the CSV variant's size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Source {
    Sim(SimSource),
    Csv(CsvSource),
    Modbus(ModbusSource),
}

impl Source {
    /// Validates `cfg` and builds the source. `base_dir`: relative paths in the config (CSV files)
    /// resolve against it. A CSV file is opened (and its header checked) here, so a wrong path or
    /// column shows up at start-up; Modbus devices are only contacted by `poll`.
    pub fn build(cfg: &SourceConfig, base_dir: &Path) -> Result<Source, SourceError> {
        cfg.validate()?;
        Ok(match &cfg.kind {
            SourceKind::Sim(c) => Source::Sim(SimSource::new(c)?),
            SourceKind::Csv(c) => Source::Csv(CsvSource::open(c, base_dir)?),
            SourceKind::Modbus(c) => Source::Modbus(ModbusSource::new(c)?),
        })
    }

    /// The samples due at `now`. Never panics on bad input; on error nothing is lost that a later
    /// poll could still deliver (a Modbus source reconnects on the next poll).
    pub async fn poll(&mut self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        match self {
            Source::Sim(s) => Ok(s.poll(now)),
            Source::Csv(s) => s.poll(now),
            Source::Modbus(s) => s.poll(now).await,
        }
    }

    /// True once a finite source (CSV without `repeat`) has emitted everything.
    pub fn finished(&self) -> bool {
        match self {
            Source::Csv(s) => s.finished(),
            Source::Sim(_) | Source::Modbus(_) => false,
        }
    }

    /// Resume position to persist once the samples returned by `poll` are safely queued, and to
    /// hand to [`Source::restore`] after a restart: the CSV rows consumed so far; None for sources
    /// without a position.
    pub fn checkpoint(&self) -> Option<u64> {
        match self {
            Source::Csv(s) => Some(s.checkpoint()),
            Source::Sim(_) | Source::Modbus(_) => None,
        }
    }

    /// Resumes from a checkpoint; a no-op for sources without a position. Call before the first poll.
    pub fn restore(&mut self, checkpoint: u64) {
        if let Source::Csv(s) = self {
            s.restore(checkpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Devices {
        devices: Vec<Device>,
    }

    #[derive(Deserialize)]
    struct Device {
        sources: Vec<SourceConfig>,
    }

    fn parse(toml_text: &str) -> Result<Vec<SourceConfig>, toml::de::Error> {
        let d: Devices = toml::from_str(toml_text)?;
        Ok(d.devices.into_iter().flat_map(|d| d.sources).collect())
    }

    #[test]
    fn toml_for_every_kind() {
        let sources = parse(
            r#"
            [[devices]]
            [[devices.sources]]
            name = "sim-1"
            kind = "sim"
            seed = 42
            anomaly_rate = 0.01
            anomalies = ["spike", "dropout"]

            [[devices.sources]]
            name = "replay"
            kind = "csv"
            interval_ms = 200
            path = "data/x.csv"
            speed = 60
            repeat = true

            [[devices.sources]]
            name = "plc"
            kind = "modbus"
            enabled = false
            address = "10.0.0.5:502"
            unit = 3
            [[devices.sources.registers]]
            metric = "flow"
            table = "input"
            address = 10
            type = "f32"
            word_order = "little"
            scale = 0.1
            [[devices.sources.registers]]
            metric = "level"
            address = 0
            "#,
        )
        .expect("valid config");
        assert_eq!(sources.len(), 3);
        for s in &sources {
            s.validate().expect("valid");
        }
        let SourceKind::Sim(sim) = &sources[0].kind else { panic!("sim expected") };
        assert_eq!((sim.seed, sim.anomaly_rate, sim.anomalies.len()), (42, 0.01, 2));
        assert_eq!((sources[0].interval_ms, sources[0].enabled), (1000, true));

        let SourceKind::Csv(csv) = &sources[1].kind else { panic!("csv expected") };
        assert_eq!((csv.speed, csv.repeat, csv.timestamps), (60.0, true, TimestampMode::Shift));
        assert_eq!((csv.timestamp_column.as_str(), csv.max_rows_per_poll), ("timestamp", 1000));
        assert_eq!(sources[1].interval_ms, 200);

        let SourceKind::Modbus(mb) = &sources[2].kind else { panic!("modbus expected") };
        assert!(!sources[2].enabled);
        assert_eq!((mb.unit, mb.timeout_ms, mb.registers.len()), (3, 1000, 2));
        let (flow, level) = (&mb.registers[0], &mb.registers[1]);
        assert_eq!(
            (flow.table, flow.data_type, flow.word_order, flow.scale),
            (RegisterTable::Input, RegisterType::F32, WordOrder::Little, 0.1)
        );
        assert_eq!(
            (level.table, level.data_type, level.word_order, level.scale, level.offset),
            (RegisterTable::Holding, RegisterType::U16, WordOrder::Big, 1.0, 0.0)
        );

        // Round trip through the serializer (the config may be pushed remotely).
        let back = toml::to_string(&Devices2 { sources: sources.clone() }).expect("serializable");
        let again: Devices2 = toml::from_str(&back).expect("re-parsable");
        assert_eq!(again.sources.len(), 3);
    }

    #[derive(Serialize, Deserialize)]
    struct Devices2 {
        sources: Vec<SourceConfig>,
    }

    #[test]
    fn typos_and_bad_values_are_rejected() {
        let one = |body: &str| parse(&format!("[[devices]]\n[[devices.sources]]\n{body}"));
        assert!(one("name = \"a\"\nkind = \"sim\"\nsede = 3").is_err(), "unknown key");
        assert!(one("name = \"a\"\nkind = \"sim\"\nintervall_ms = 3").is_err(), "unknown common key");
        assert!(one("name = \"a\"\nkind = \"opcua\"").is_err(), "unknown kind");
        assert!(one("name = \"a\"\nkind = \"csv\"").is_err(), "csv needs a path");

        let invalid = |body: &str| one(body).expect("parses")[0].validate().unwrap_err().to_string();
        assert!(invalid("name = \"a b\"\nkind = \"sim\"").contains("' '"));
        assert!(invalid(&format!("name = \"{}\"\nkind = \"sim\"", "x".repeat(33))).contains("1..=32"));
        assert!(invalid("name = \"a\"\nkind = \"sim\"\ninterval_ms = 0").contains("interval_ms"));
        let msg = invalid("name = \"r\"\nkind = \"csv\"\npath = \"x.csv\"\nrepeat = true\ntimestamps = \"original\"");
        assert!(msg.contains("source r") && msg.contains("repeat"), "{msg}");
        assert!(invalid("name = \"m\"\nkind = \"modbus\"\naddress = \"h:1\"\nregisters = []").contains("registers"));
    }

    #[tokio::test]
    async fn build_and_poll_a_sim_source() {
        let cfg = &parse("[[devices]]\n[[devices.sources]]\nname = \"s\"\nkind = \"sim\"").expect("parses")[0];
        let mut src = Source::build(cfg, Path::new(".")).expect("builds");
        let samples = src.poll(Utc::now()).await.expect("polls");
        assert_eq!(samples.len(), 4, "construction_site profile by default");
        assert!(!src.finished());
        assert_eq!(src.checkpoint(), None);
        src.restore(5); // no-op
    }
}
