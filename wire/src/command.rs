//! Commands down (`/tenants/<id>/v1/cmd`) and their results up (`/tenants/<id>/v1/cmd/ack`).
//!
//! A command carries an id chosen by the platform; the device answers with the same id, so the
//! platform can record which command a result belongs to. Applying a command twice is harmless:
//! the platform may deliver it again after a reconnect.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Platform -> device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// 1..=64 characters of `[A-Za-z0-9_-]`.
    pub id: String,
    #[serde(flatten)]
    pub action: CommandAction,
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommandAction {
    /// Change sources of the device: sampling interval, on/off. Sources not named keep their settings.
    Configure { sources: BTreeMap<String, SourceSettings> },
    /// Replace a camera's zones (the zone editor). The device answers with the zones it now uses.
    SetZones { camera: crate::CameraId, zones: Vec<crate::Zone> },
    /// HJ 212 loggers: set the logger's clock to the platform's (CN 1012), sent by the HJ 212 gateway.
    SyncClock,
    /// HJ 212 loggers: set the real-time data interval (CN 1062, RtdInterval 30..=3600 s).
    SetInterval { seconds: u32 },
}

/// Settings of one source; a field left out keeps its current value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Device -> platform: the outcome of one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandAck {
    pub id: String,
    pub ok: bool,
    /// Why it was refused, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The device's settings after applying it (for `configure`: every source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_json::Value>,
}

/// Longest command id.
pub const MAX_COMMAND_ID: usize = 64;

/// Whether `id` is an acceptable command id.
pub fn valid_command_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_COMMAND_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain struct serialises")
    }
    /// Parses a command; refuses a bad id.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let c: Command = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        if !valid_command_id(&c.id) {
            return Err(format!("bad command id {:?}", c.id));
        }
        Ok(c)
    }
}

impl CommandAck {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain struct serialises")
    }
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let a: CommandAck = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        if !valid_command_id(&a.id) {
            return Err(format!("bad command id {:?}", a.id));
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_round_trip_and_shape() {
        let mut sources = BTreeMap::new();
        sources.insert("dust".to_owned(), SourceSettings { interval_ms: Some(5000), enabled: None });
        let c = Command { id: "c-1".into(), action: CommandAction::Configure { sources } };
        let text = String::from_utf8(c.encode()).unwrap();
        assert_eq!(text, r#"{"id":"c-1","kind":"configure","sources":{"dust":{"interval_ms":5000}}}"#);
        assert_eq!(Command::decode(text.as_bytes()).unwrap(), c);
    }

    #[test]
    fn hj212_command_shapes() {
        let c = Command { id: "c-2".into(), action: CommandAction::SetInterval { seconds: 60 } };
        assert_eq!(String::from_utf8(c.encode()).unwrap(), r#"{"id":"c-2","kind":"set_interval","seconds":60}"#);
        let c = Command { id: "c-3".into(), action: CommandAction::SyncClock };
        assert_eq!(String::from_utf8(c.encode()).unwrap(), r#"{"id":"c-3","kind":"sync_clock"}"#);
        assert_eq!(Command::decode(br#"{"id":"c-3","kind":"sync_clock"}"#).unwrap(), c);
    }

    #[test]
    fn refuses_bad_ids_and_kinds() {
        assert!(Command::decode(br#"{"id":"a/b","kind":"configure","sources":{}}"#).is_err());
        assert!(Command::decode(br#"{"id":"","kind":"configure","sources":{}}"#).is_err());
        assert!(Command::decode(br#"{"id":"x","kind":"reboot"}"#).is_err());
        assert!(CommandAck::decode(br#"{"id":"x","ok":true}"#).is_ok());
        assert!(CommandAck::decode(br#"{"id":"x y","ok":true}"#).is_err());
    }
}
