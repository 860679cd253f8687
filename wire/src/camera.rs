//! Cameras (`/tenants/<id>/v1/event`): what an edge agent in camera mode tells the platform about
//! the cameras it watches, and the zone layout the platform can push down (a `set_zones` command).
//!
//! One message type, [`CameraMessage`], carries a camera's events (raised and cleared), its
//! periodic status and its latest picture. A snapshot travels inside the message that it supports
//! (JPEG, base64), so an event and its evidence arrive together or not at all; the platform checks
//! the JPEG's SHA-256 against `sha256` and stores it by that hash.
//!
//! Zone polygons use coordinates normalised to the frame (0..=1, origin top left), so a layout
//! survives a change of resolution. Per-zone person counts are ordinary samples on the data
//! channel, metric `people.<camera>.<zone>` (see [`zone_metric`]), so rules apply to them unchanged.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Largest camera message (a snapshot included): the broker's packet limit is 1 MiB.
pub const MAX_CAMERA_MESSAGE: usize = 900 * 1024;

/// A camera's id within its device: 1..=32 of `[a-z0-9_-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CameraId(String);

/// A zone's id within its camera: same alphabet as [`CameraId`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ZoneId(String);

fn check_short_id(what: &str, s: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && s.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!("bad {what} {s:?}: 1..=32 of [a-z0-9_-], starting with a letter or digit"))
    }
}

macro_rules! short_id {
    ($t:ident, $what:literal) => {
        impl $t {
            pub fn parse(s: &str) -> Result<Self, String> {
                check_short_id($what, s)?;
                Ok(Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                check_short_id($what, &s)?;
                Ok(Self(s))
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
short_id!(CameraId, "camera id");
short_id!(ZoneId, "zone id");

/// The data-channel metric that carries a zone's person count.
pub fn zone_metric(camera: &CameraId, zone: &ZoneId) -> String {
    format!("people.{camera}.{zone}")
}

/// What a zone is for; it decides which events it can raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneKind {
    /// A service window's seat: empty too long within working hours = post unattended (脱岗).
    Window,
    /// A queue or waiting area: too many people for too long = crowding (人员聚集).
    Queue,
    /// Counted only.
    Other,
}

/// A point in normalised frame coordinates (0..=1).
pub type Point = [f32; 2];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Zone {
    pub id: ZoneId,
    /// For people (e.g. "1号窗口").
    pub name: String,
    pub kind: ZoneKind,
    /// At least three points, each coordinate within 0..=1.
    pub polygon: Vec<Point>,
}

impl Zone {
    /// Refuses a polygon of fewer than three points or with a coordinate outside 0..=1.
    pub fn check(&self) -> Result<(), String> {
        if self.polygon.len() < 3 {
            return Err(format!("zone {}: a polygon needs at least three points", self.id));
        }
        if self.polygon.iter().flatten().any(|c| !c.is_finite() || !(0.0..=1.0).contains(c)) {
            return Err(format!("zone {}: coordinates must be within 0..=1", self.id));
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 64 {
            return Err(format!("zone {}: a name of 1..=64 characters", self.id));
        }
        Ok(())
    }
}

/// What happened at a camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraEventKind {
    /// No frame for longer than the configured time (stream down, camera off).
    Offline,
    /// The picture is (nearly) black.
    Black,
    /// The picture has not changed at all for too long (a stuck encoder).
    Frozen,
    /// Sharpness dropped far below the reference: covered, smeared or out of focus.
    Covered,
    /// The scene differs from the reference: the camera was turned or moved.
    Moved,
    /// A window zone empty longer than allowed within working hours (脱岗).
    Unattended,
    /// More than the allowed number of people in a zone for too long (人员聚集).
    Crowding,
}

impl CameraEventKind {
    /// Stream-health events (they say the picture cannot be trusted) as opposed to hall events.
    pub fn is_health(self) -> bool {
        matches!(self, Self::Offline | Self::Black | Self::Frozen | Self::Covered | Self::Moved)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Black => "black",
            Self::Frozen => "frozen",
            Self::Covered => "covered",
            Self::Moved => "moved",
            Self::Unattended => "unattended",
            Self::Crowding => "crowding",
        }
    }
}

/// A detected person in normalised frame coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxN {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
}

/// A picture from the camera with what was seen in it (boxes and zone outlines are also drawn
/// into the JPEG; they are repeated here so a UI can draw them itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    pub width: u32,
    pub height: u32,
    /// Lower-case hex SHA-256 of the JPEG bytes.
    pub sha256: String,
    /// The JPEG, standard base64.
    pub jpeg_base64: String,
    #[serde(default)]
    pub boxes: Vec<BoxN>,
    #[serde(default)]
    pub zones: Vec<Zone>,
}

/// Whether person detection runs, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Detection {
    On { model: String },
    /// No model configured or it failed to load: health checks still run, people are not counted.
    Off { reason: String },
}

/// Device -> platform on the `event` channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CameraMessage {
    /// A condition started (`raised: true`) or ended. `seq` increases per device and lets the
    /// platform drop a redelivered message.
    Event {
        seq: u64,
        camera: CameraId,
        kind: CameraEventKind,
        raised: bool,
        at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        zone: Option<ZoneId>,
        /// For people, e.g. "1号窗口 无人 12 分钟".
        detail: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<Snapshot>,
    },
    /// Periodic (e.g. every 30 s) and on change: how the camera is doing.
    Status {
        seq: u64,
        camera: CameraId,
        at: DateTime<Utc>,
        /// For people (e.g. "大厅东侧").
        name: String,
        online: bool,
        /// Frames analysed per second over the last period.
        fps: f32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_frame_at: Option<DateTime<Utc>>,
        detection: Detection,
        zones: Vec<Zone>,
        /// Health conditions raised now (offline, black, ...).
        #[serde(default)]
        health: Vec<CameraEventKind>,
    },
    /// The latest picture (e.g. every few minutes), for camera lists and the wall.
    Snapshot { seq: u64, camera: CameraId, snapshot: Snapshot },
}

impl CameraMessage {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain struct serialises")
    }

    /// Parses a message; refuses one over [`MAX_CAMERA_MESSAGE`] or with a bad zone.
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        if b.len() > MAX_CAMERA_MESSAGE {
            return Err(format!("camera message of {} bytes exceeds {MAX_CAMERA_MESSAGE}", b.len()));
        }
        let m: CameraMessage = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        let zones: &[Zone] = match &m {
            CameraMessage::Status { zones, .. } => zones,
            CameraMessage::Event { snapshot: Some(s), .. } | CameraMessage::Snapshot { snapshot: s, .. } => &s.zones,
            CameraMessage::Event { .. } => &[],
        };
        zones.iter().try_for_each(Zone::check)?;
        Ok(m)
    }

    /// The message's number (from the device link's counter), by which the platform acknowledges it.
    pub fn seq(&self) -> u64 {
        match self {
            CameraMessage::Event { seq, .. } | CameraMessage::Status { seq, .. } | CameraMessage::Snapshot { seq, .. } => *seq,
        }
    }

    pub fn camera(&self) -> &CameraId {
        match self {
            CameraMessage::Event { camera, .. } | CameraMessage::Status { camera, .. } | CameraMessage::Snapshot { camera, .. } => camera,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_instead_of_validate() {
        assert!(CameraId::parse("hall-east").is_ok());
        assert!(CameraId::parse("").is_err());
        assert!(CameraId::parse("Hall").is_err());
        assert!(CameraId::parse("-x").is_err());
        assert!(ZoneId::parse(&"a".repeat(33)).is_err());
        assert!(serde_json::from_str::<CameraId>("\"a/b\"").is_err());
        assert_eq!(zone_metric(&CameraId::parse("c1").unwrap(), &ZoneId::parse("w1").unwrap()), "people.c1.w1");
    }

    #[test]
    fn messages_round_trip_and_bad_zones_are_refused() {
        let zone = Zone { id: ZoneId::parse("w1").unwrap(), name: "1号窗口".into(), kind: ZoneKind::Window, polygon: vec![[0.1, 0.1], [0.4, 0.1], [0.4, 0.5]] };
        let m = CameraMessage::Status {
            seq: 7,
            camera: CameraId::parse("c1").unwrap(),
            at: Utc::now(),
            name: "大厅".into(),
            online: true,
            fps: 5.0,
            last_frame_at: None,
            detection: Detection::Off { reason: "no model".into() },
            zones: vec![zone.clone()],
            health: vec![CameraEventKind::Black],
        };
        assert_eq!(CameraMessage::decode(&m.encode()).unwrap(), m);
        let mut bad = zone;
        bad.polygon[0] = [1.5, 0.0];
        let m = CameraMessage::Snapshot {
            seq: 8,
            camera: CameraId::parse("c1").unwrap(),
            snapshot: Snapshot { at: Utc::now(), width: 4, height: 4, sha256: String::new(), jpeg_base64: String::new(), boxes: vec![], zones: vec![bad] },
        };
        assert!(CameraMessage::decode(&m.encode()).is_err());
        assert!(CameraMessage::decode(&vec![b' '; MAX_CAMERA_MESSAGE + 1]).is_err());
    }
}
