//! The demo's hall cameras: the clips setup placed in `demo-media/` (vtest.avi from Debian's
//! opencv-doc, the indoor clip from the shared test material), each looped and served over RTSP
//! by the in-process server, watched by one camera device of a service hall in the demo city.
//!
//! Their zones and hall rules are chosen so the demo's hall events fire within a minute or two:
//! the indoor clip's table is a window that stands empty for a while at every loop (post
//! unattended after a few seconds, at any hour), and vtest.avi's footpath is a queue area that
//! often holds a few pedestrians (crowding above a low threshold).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use offsite_edge_agent::camera_config::CameraConfig;
use serde_json::json;

/// One demo camera: the clip it plays and how it is set up.
pub struct DemoCamera {
    /// The file in `demo-media/`.
    pub clip: &'static str,
    /// Camera id, also the RTSP mount (`/<id>`).
    pub camera_id: &'static str,
    /// The camera's and its device's name for people.
    pub name: &'static str,
    /// The demo city's service hall it watches.
    pub object_id: &'static str,
    /// The `zones` and `hall` sections of its configuration.
    zones: fn() -> serde_json::Value,
    hall: fn() -> serde_json::Value,
}

/// The demo's cameras, whether or not their clips are present.
pub const CAMERAS: [DemoCamera; 2] = [
    DemoCamera {
        clip: "one-by-one-person-detection.mp4",
        camera_id: "hall-01-window",
        name: "便民服务中心01号 窗口摄像头",
        object_id: "hall-01",
        zones: indoor_zones,
        hall: indoor_hall,
    },
    DemoCamera {
        clip: "vtest.avi",
        camera_id: "hall-02-plaza",
        name: "便民服务中心02号 门前广场摄像头",
        object_id: "hall-02",
        zones: plaza_zones,
        hall: plaza_hall,
    },
];

/// The indoor clip: a standing table (the service window) in the middle, where people arrive one
/// at a time and leave it empty in between; the floor to its left is the waiting area.
fn indoor_zones() -> serde_json::Value {
    json!([
        {"id": "window-1", "name": "1号窗口", "kind": "window",
         "polygon": [[0.40, 0.05], [0.75, 0.05], [0.75, 0.95], [0.40, 0.95]]},
        {"id": "waiting", "name": "等候区", "kind": "queue",
         "polygon": [[0.0, 0.50], [0.40, 0.50], [0.40, 1.0], [0.0, 1.0]]}
    ])
}

/// A few empty seconds are enough, at any hour of any day, so the demo shows 脱岗 at once.
fn indoor_hall() -> serde_json::Value {
    json!({"unattended_after_s": 6, "working_hours": ["00:00-23:59"], "weekdays_only": false,
           "crowding_above": 4, "crowding_for_s": 30})
}

/// vtest.avi: a footpath across a lawn with pedestrians; the path is the queue area, the crossing
/// by the lamp post a (rarely staffed) window.
fn plaza_zones() -> serde_json::Value {
    json!([
        {"id": "queue", "name": "排队区", "kind": "queue",
         "polygon": [[0.0, 0.25], [1.0, 0.25], [1.0, 0.80], [0.0, 0.80]]},
        {"id": "window-2", "name": "2号窗口", "kind": "window",
         "polygon": [[0.45, 0.30], [0.70, 0.30], [0.70, 0.65], [0.45, 0.65]]}
    ])
}

/// More than two people on the path for a few seconds counts as crowding, so it happens often.
fn plaza_hall() -> serde_json::Value {
    json!({"unattended_after_s": 60, "working_hours": ["00:00-23:59"], "weekdays_only": false,
           "crowding_above": 2, "crowding_for_s": 5})
}

impl DemoCamera {
    /// The clip setup placed, if it is there.
    pub fn clip_path(&self) -> Option<PathBuf> {
        crate::assets::demo_media(self.clip)
    }

    /// The RTSP mount point the clip is served at.
    pub fn mount(&self) -> String {
        format!("/{}", self.camera_id)
    }

    /// The camera's configuration reading `url`, with person detection by `model` (none: off).
    /// Analysed at 5 fps with motion gating on, so two cameras stay light on a small machine.
    pub fn config(&self, url: &str, model: Option<&Path>) -> Result<CameraConfig> {
        let mut c = json!({
            "id": self.camera_id,
            "name": self.name,
            "source": url,
            "analysis_fps": 5.0,
            "motion_gating": true,
            "offline_after_s": 20,
            "snapshot_interval_s": 60,
            // Often: a camera is taken as offline (its events held back) until a status arrives,
            // and the first one can go before the device's link is up.
            "status_interval_s": 5,
            "zones": (self.zones)(),
            "hall": (self.hall)(),
        });
        if let Some(m) = model {
            c["model"] = json!(m);
        }
        let c: CameraConfig =
            serde_json::from_value(c).with_context(|| format!("demo camera {}", self.camera_id))?;
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_camera_has_a_valid_configuration_with_a_window_and_a_queue_zone() {
        use offsite_wire::ZoneKind;
        let objects: Vec<String> = crate::demo_city::objects()
            .into_iter()
            .map(|o| o.id)
            .collect();
        for cam in &CAMERAS {
            let c = cam
                .config("rtsp://127.0.0.1:8554/x", Some(Path::new("m.onnx")))
                .unwrap();
            assert!(
                c.motion_gating && c.analysis_fps <= 5.0,
                "{} stays light",
                cam.camera_id
            );
            assert!(
                c.zones.iter().any(|z| z.kind == ZoneKind::Window),
                "{} has a window zone",
                cam.camera_id
            );
            assert!(
                c.zones.iter().any(|z| z.kind == ZoneKind::Queue),
                "{} has a queue zone",
                cam.camera_id
            );
            assert!(
                !c.hall.weekdays_only && c.hall.working_hours.len() == 1,
                "{} works every day",
                cam.camera_id
            );
            assert!(
                objects.contains(&cam.object_id.to_owned()),
                "{} watches a demo city object",
                cam.camera_id
            );
            assert_eq!(c.model.as_deref(), Some(Path::new("m.onnx")));
            assert!(cam.config("rtsp://x/y", None).unwrap().model.is_none());
        }
    }
}
