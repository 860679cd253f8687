//! The monitoring wall's figures in one read: open warnings per level and per region, and how many
//! devices are online, over the caller's visible devices.

use serde::Serialize;

use crate::{Result, Store};

/// One region's line on the wall. Devices and warnings of objects without a region (or devices
/// without an object) fall under `region_code: None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionFigures {
    pub region_code: Option<String>,
    pub region_name: Option<String>,
    /// Open warnings by level: index 0 = red (level 1) .. 3 = blue (level 4).
    pub open_by_level: [i64; 4],
    pub devices: i64,
    pub devices_online: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WallSummary {
    pub open_by_level: [i64; 4],
    pub devices: i64,
    pub devices_online: i64,
    /// Regions with a device or an open warning, most red warnings first, then by code.
    pub regions: Vec<RegionFigures>,
    /// Cameras of those devices, and how many are online (the wall's camera panel).
    pub cameras: crate::cameras::CameraCounts,
}

impl Store {
    /// The wall's figures over `device_keys` (`None`: every device). Revoked devices are left out
    /// of the device counts but their open warnings still count: someone must still close them.
    pub async fn wall_summary(&self, device_keys: Option<&[i32]>) -> Result<WallSummary> {
        // The region of a warning is its object's (the device's object when the warning names none).
        let warnings: Vec<(Option<String>, i16, i64)> = sqlx::query_as(
            "SELECT o.region_code, w.level, count(*) \
             FROM warnings w JOIN devices d ON d.key = w.device_key \
             LEFT JOIN objects o ON o.id = coalesce(w.object_id, d.object_id) \
             WHERE w.resolved_at IS NULL AND ($1::int[] IS NULL OR w.device_key = ANY($1)) \
             GROUP BY 1, 2",
        )
        .bind(device_keys)
        .fetch_all(&self.pool)
        .await?;
        let devices: Vec<(Option<String>, i64, i64)> = sqlx::query_as(
            "SELECT o.region_code, count(*), count(*) FILTER (WHERE s.online) \
             FROM devices d LEFT JOIN device_status s ON s.device_key = d.key \
             LEFT JOIN objects o ON o.id = d.object_id \
             WHERE d.revoked_at IS NULL AND ($1::int[] IS NULL OR d.key = ANY($1)) \
             GROUP BY 1",
        )
        .bind(device_keys)
        .fetch_all(&self.pool)
        .await?;
        let names: Vec<(String, String)> = sqlx::query_as("SELECT code, name FROM regions")
            .fetch_all(&self.pool)
            .await?;
        let mut summary = summarize(&warnings, &devices, &names);
        summary.cameras = self.camera_counts(device_keys).await?;
        Ok(summary)
    }
}

/// Folds the grouped counts into the wall's shape (a plain function, tested without a database).
fn summarize(
    warnings: &[(Option<String>, i16, i64)],
    devices: &[(Option<String>, i64, i64)],
    names: &[(String, String)],
) -> WallSummary {
    let mut regions: Vec<RegionFigures> = Vec::new();
    fn entry<'a>(regions: &'a mut Vec<RegionFigures>, code: &Option<String>) -> &'a mut RegionFigures {
        if let Some(i) = regions.iter().position(|r| &r.region_code == code) {
            return &mut regions[i];
        }
        regions.push(RegionFigures {
            region_code: code.clone(),
            region_name: None,
            open_by_level: [0; 4],
            devices: 0,
            devices_online: 0,
        });
        regions.last_mut().expect("just pushed")
    }
    let mut open_by_level = [0i64; 4];
    for (code, level, n) in warnings {
        let Some(i) = usize::try_from(*level)
            .ok()
            .and_then(|l| l.checked_sub(1))
            .filter(|i| *i < 4)
        else {
            continue;
        };
        open_by_level[i] += n;
        entry(&mut regions, code).open_by_level[i] += n;
    }
    let (mut total, mut online) = (0, 0);
    for (code, n, up) in devices {
        total += n;
        online += up;
        let r = entry(&mut regions, code);
        r.devices += n;
        r.devices_online += up;
    }
    for r in &mut regions {
        r.region_name = r
            .region_code
            .as_ref()
            .and_then(|c| names.iter().find(|(code, _)| code == c))
            .map(|(_, n)| n.clone());
    }
    regions.sort_by(|a, b| {
        b.open_by_level[0]
            .cmp(&a.open_by_level[0])
            .then(
                b.open_by_level
                    .iter()
                    .sum::<i64>()
                    .cmp(&a.open_by_level.iter().sum::<i64>()),
            )
            .then(a.region_code.is_none().cmp(&b.region_code.is_none()))
            .then(a.region_code.cmp(&b.region_code))
    });
    WallSummary {
        open_by_level,
        devices: total,
        devices_online: online,
        regions,
        cameras: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_counts_per_region_and_orders_by_red() {
        let s = summarize(
            &[
                (Some("330102".into()), 3, 2),
                (Some("330105".into()), 1, 1),
                (None, 2, 4),
                (Some("330105".into()), 9, 7), // not a level: ignored
            ],
            &[(Some("330102".into()), 10, 7), (None, 3, 0)],
            &[("330102".into(), "上城区".into()), ("330105".into(), "拱墅区".into())],
        );
        assert_eq!(s.open_by_level, [1, 4, 2, 0]);
        assert_eq!((s.devices, s.devices_online), (13, 7));
        let codes: Vec<_> = s.regions.iter().map(|r| r.region_code.as_deref()).collect();
        assert_eq!(codes, [Some("330105"), None, Some("330102")]);
        assert_eq!(s.regions[2].region_name.as_deref(), Some("上城区"));
        assert_eq!((s.regions[2].devices, s.regions[2].devices_online), (10, 7));
        assert_eq!(s.regions[1].open_by_level, [0, 4, 0, 0]);
    }
}
