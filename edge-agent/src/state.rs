//! What an agent keeps about a device besides its queue: settings changed by remote commands,
//! how far each finite source has got, and which commands it has applied.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use offsite_wire::SourceSettings;
use serde::{Deserialize, Serialize};

/// Remembered command ids, so a redelivered command is answered again but not applied twice.
const REMEMBERED_COMMANDS: usize = 64;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeviceState {
    /// Remote overrides of the configuration file's source settings.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceSettings>,
    /// Resume positions of sources (CSV rows consumed), valid once their samples are queued.
    #[serde(default)]
    pub checkpoints: BTreeMap<String, u64>,
    #[serde(default)]
    pub applied_commands: VecDeque<String>,
    /// Zones pushed by the platform (`set_zones`), per camera id; they replace the configuration's.
    #[serde(default)]
    pub camera_zones: BTreeMap<String, Vec<offsite_wire::Zone>>,
}

impl DeviceState {
    pub fn remember(&mut self, command_id: &str) {
        self.applied_commands.push_back(command_id.to_owned());
        while self.applied_commands.len() > REMEMBERED_COMMANDS {
            self.applied_commands.pop_front();
        }
    }

    pub fn applied(&self, command_id: &str) -> bool {
        self.applied_commands.iter().any(|c| c == command_id)
    }
}

/// The state file `state.json` in a device's directory.
pub struct StateFile {
    path: PathBuf,
    pub state: DeviceState,
}

impl StateFile {
    /// Loads the file; a missing file is an empty state, an unreadable one an error (settings a
    /// regulator changed remotely must not be silently forgotten).
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("state.json");
        let state = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parsing {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DeviceState::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Self { path, state })
    }

    /// Replaces the file atomically (temp file + rename). With `durable` the data and the rename
    /// are fsynced before returning: used for applied commands, which are acknowledged right after.
    /// Checkpoints are saved without it: an older checkpoint after a power cut only re-reads rows
    /// the platform already has, and it stores each sample once.
    pub fn save(&self, durable: bool) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(&self.state)?)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        if durable {
            if let Some(d) = self.path.parent() {
                std::fs::File::open(d)?.sync_all()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounded_memory_of_commands() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = StateFile::load(dir.path()).unwrap();
        f.state.sources.insert("dust".into(), SourceSettings { interval_ms: Some(200), enabled: Some(false) });
        f.state.checkpoints.insert("csv".into(), 42);
        for i in 0..100 {
            f.state.remember(&format!("c{i}"));
        }
        f.save(true).unwrap();
        let g = StateFile::load(dir.path()).unwrap();
        assert_eq!(g.state.sources["dust"].interval_ms, Some(200));
        assert_eq!(g.state.checkpoints["csv"], 42);
        assert!(g.state.applied("c99") && !g.state.applied("c0"));
        assert_eq!(g.state.applied_commands.len(), REMEMBERED_COMMANDS);
        std::fs::write(dir.path().join("state.json"), b"{not json").unwrap();
        assert!(StateFile::load(dir.path()).is_err());
    }
}
