//! `[[devices.cameras]]`: the cameras a device watches (camera mode). Parsed here even in a
//! sensor-only build, so such a build can refuse a camera configuration with a clear message
//! instead of an "unknown key".

use std::path::PathBuf;

use chrono::NaiveTime;
use offsite_wire::{CameraId, Zone};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub id: CameraId,
    /// For people, e.g. "大厅东侧".
    pub name: String,
    /// `rtsp://…`, `test:<videotestsrc pattern>` or a video file path (played in a loop).
    pub source: CameraSource,
    /// RTSP lower transport.
    #[serde(default)]
    pub transport: RtspTransport,
    /// Frames analysed per second (the stream is thinned to this).
    #[serde(default = "default_analysis_fps")]
    pub analysis_fps: f64,
    /// No frame for this long = the camera is reported offline.
    #[serde(default = "default_offline_after_s")]
    pub offline_after_s: u64,
    #[serde(default)]
    pub zones: Vec<Zone>,
    #[serde(default)]
    pub hall: HallSection,
    #[serde(default)]
    pub health: HealthSection,
    /// Seconds between latest-picture messages.
    #[serde(default = "default_snapshot_interval_s")]
    pub snapshot_interval_s: u64,
    /// Seconds between status messages (also sent on every change).
    #[serde(default = "default_status_interval_s")]
    pub status_interval_s: u64,
    /// A YOLOX-family ONNX model; without one person detection is off and only health checks run.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Inference is skipped on frames where nothing moved in any zone, but never for longer than this.
    #[serde(default = "default_recheck_ms")]
    pub motion_recheck_ms: u64,
    /// Motion gating off: every analysed frame goes to the detector (benchmarks, debugging).
    #[serde(default = "default_true")]
    pub motion_gating: bool,
}

fn default_analysis_fps() -> f64 {
    5.0
}
fn default_offline_after_s() -> u64 {
    30
}
fn default_snapshot_interval_s() -> u64 {
    300
}
fn default_status_interval_s() -> u64 {
    30
}
fn default_recheck_ms() -> u64 {
    2000
}
fn default_true() -> bool {
    true
}

impl CameraConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(0.1..=30.0).contains(&self.analysis_fps) {
            anyhow::bail!("camera {}: analysis_fps must be within 0.1..=30", self.id);
        }
        if self.offline_after_s == 0 {
            anyhow::bail!("camera {}: offline_after_s must be at least 1", self.id);
        }
        let mut ids = std::collections::HashSet::new();
        for z in &self.zones {
            z.check().map_err(|e| anyhow::anyhow!("camera {}: {e}", self.id))?;
            if !ids.insert(&z.id) {
                anyhow::bail!("camera {}: zone {} used twice", self.id, z.id);
            }
        }
        Ok(())
    }
}

/// Where a camera's pictures come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CameraSource {
    /// An RTSP URL (H.264, H.265 or MJPEG; whatever decodebin can decode).
    Rtsp(String),
    /// A GStreamer test pattern (`videotestsrc pattern=…`), e.g. `test:ball`.
    Test(String),
    /// A video file, played in a loop.
    File(PathBuf),
}

impl TryFrom<String> for CameraSource {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.starts_with("rtsp://") || s.starts_with("rtsps://") {
            if s.len() <= "rtsp://".len() || s.contains(char::is_whitespace) {
                return Err(format!("bad RTSP URL {s:?}"));
            }
            return Ok(Self::Rtsp(s));
        }
        if let Some(pattern) = s.strip_prefix("test:") {
            // Goes into a pipeline description: only a plain word.
            if pattern.is_empty() || !pattern.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(format!("bad test pattern {pattern:?} (a videotestsrc pattern name, e.g. ball)"));
            }
            return Ok(Self::Test(pattern.to_owned()));
        }
        if s.trim().is_empty() || s.contains("://") {
            return Err(format!("camera source {s:?}: rtsp://…, test:<pattern> or a file path"));
        }
        Ok(Self::File(PathBuf::from(s)))
    }
}

impl From<CameraSource> for String {
    fn from(s: CameraSource) -> String {
        match s {
            CameraSource::Rtsp(u) => u,
            CameraSource::Test(p) => format!("test:{p}"),
            CameraSource::File(p) => p.display().to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RtspTransport {
    /// Interleaved in the RTSP connection: passes firewalls and NAT, no packet loss.
    #[default]
    Tcp,
    Udp,
}

/// The hall rules of one camera (times of day are Asia/Shanghai).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HallSection {
    /// A window zone empty this long within working hours = post unattended (脱岗).
    pub unattended_after_s: u64,
    /// E.g. `["09:00-12:00", "13:30-17:30"]`.
    pub working_hours: Vec<TimeRange>,
    pub weekdays_only: bool,
    /// More than this many people in a queue zone ...
    pub crowding_above: u32,
    /// ... for this long = crowding (人员聚集).
    pub crowding_for_s: u64,
}

impl Default for HallSection {
    fn default() -> Self {
        Self {
            unattended_after_s: 600,
            working_hours: vec![
                TimeRange::try_from("09:00-12:00".to_owned()).expect("valid"),
                TimeRange::try_from("13:30-17:30".to_owned()).expect("valid"),
            ],
            weekdays_only: true,
            crowding_above: 8,
            crowding_for_s: 120,
        }
    }
}

/// `HH:MM-HH:MM`, start before end, within one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeRange {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl TryFrom<String> for TimeRange {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (a, b) = s.split_once('-').ok_or_else(|| format!("time range {s:?}: HH:MM-HH:MM"))?;
        let t = |x: &str| {
            NaiveTime::parse_from_str(x.trim(), "%H:%M").map_err(|_| format!("time range {s:?}: HH:MM-HH:MM"))
        };
        let (start, end) = (t(a)?, t(b)?);
        if start >= end {
            return Err(format!("time range {s:?}: the start must be before the end"));
        }
        Ok(Self { start, end })
    }
}

impl From<TimeRange> for String {
    fn from(r: TimeRange) -> String {
        format!("{}-{}", r.start.format("%H:%M"), r.end.format("%H:%M"))
    }
}

/// Thresholds of the stream-health checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSection {
    /// Mean brightness (0..255) below which the picture counts as black.
    pub black_below: f32,
    /// Median change between frames (0..255) over `frozen_after_s` below which the picture is frozen.
    pub frozen_change_below: f32,
    /// The window of that median.
    pub frozen_after_s: u64,
    /// Sharpness (Laplacian variance) below this fraction of the reference = covered or out of focus.
    pub covered_ratio: f32,
    /// Sharpness below this is covered whatever the reference (a camera that starts covered).
    pub covered_floor: f32,
    /// Similarity to the reference scene (correlation of thumbnails) below which it has moved.
    pub moved_similarity_below: f32,
    /// A condition must last this long before it is raised, and be gone this long before it clears.
    pub hold_s: u64,
    /// Seconds of healthy pictures from which the reference sharpness and scene are learned.
    pub reference_after_s: u64,
}

impl Default for HealthSection {
    fn default() -> Self {
        Self {
            black_below: 20.0,
            frozen_change_below: 0.05,
            frozen_after_s: 10,
            covered_ratio: 0.25,
            covered_floor: 8.0,
            moved_similarity_below: 0.4,
            hold_s: 3,
            reference_after_s: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_times_parse_instead_of_validate() {
        let p = |s: &str| CameraSource::try_from(s.to_owned());
        assert_eq!(p("rtsp://10.0.0.5/live").unwrap(), CameraSource::Rtsp("rtsp://10.0.0.5/live".into()));
        assert_eq!(p("test:ball").unwrap(), CameraSource::Test("ball".into()));
        assert!(p("test:ball ! fakesink").is_err());
        assert!(p("http://x/y").is_err());
        assert_eq!(p("clips/hall.mp4").unwrap(), CameraSource::File("clips/hall.mp4".into()));
        assert!(TimeRange::try_from("17:30-09:00".to_owned()).is_err());
        let r = TimeRange::try_from("09:00-12:00".to_owned()).unwrap();
        assert_eq!(String::from(r), "09:00-12:00");
    }

    #[test]
    fn a_camera_section_parses_with_defaults_and_refuses_bad_zones() {
        let text = r#"
id = "hall-east"
name = "大厅东侧"
source = "rtsp://cam/1"
transport = "udp"
[[zones]]
id = "w1"
name = "1号窗口"
kind = "window"
polygon = [[0.1, 0.1], [0.4, 0.1], [0.4, 0.5]]
"#;
        let c: CameraConfig = toml::from_str(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.transport, RtspTransport::Udp);
        assert_eq!(c.analysis_fps, 5.0);
        assert_eq!(c.hall.working_hours.len(), 2);
        let bad: CameraConfig = toml::from_str(&text.replace("0.4, 0.5", "1.4, 0.5")).unwrap();
        assert!(bad.validate().is_err());
        assert!(toml::from_str::<CameraConfig>(&text.replace("udp", "carrier-pigeon")).is_err());
    }
}
