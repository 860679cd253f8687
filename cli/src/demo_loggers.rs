//! The demo's HJ 212-2017 data loggers: a construction-site dust monitor and a waste-water outlet,
//! registered like real loggers (MN/PW, class `hj212`) and emulated in-process by the edge agent's
//! HJ 212 client mode against the demo's own gateway, so the demo shows the whole HJ 212 path:
//! packets, 9014 replies, `<code>-Rtd` metrics, limit rules on them, and data flags (some values
//! are sent as D or M on a schedule, which opens device-health warnings or inhibits data warnings).

use std::net::SocketAddr;

use anyhow::Result;
use offsite_edge_agent::config::{DeviceConfig, DeviceProtocol};
use offsite_edge_agent::hj212::Hj212Config;
use offsite_edge_agent::sources::SourceConfig;
use offsite_store::hj212::{device_id_for_mn, LOGGER_CLASS};
use offsite_store::rules::{Condition, Level, NewRule, Scope};
use offsite_store::Store;
use serde_json::{json, Value};
use tracing::info;

/// One emulated logger of the demo.
pub struct DemoLogger {
    pub name: &'static str,
    pub mn: &'static str,
    pub pw: &'static str,
    /// System code: 39 construction-site dust, 32 water pollution source.
    pub st: &'static str,
    /// The demo city object it monitors.
    pub object_id: &'static str,
    /// Seed of its simulated instruments.
    seed: u64,
}

/// The PW of every demo logger (published, like the demo accounts' password).
pub const DEMO_PW: &str = "123456";

pub const LOGGERS: [DemoLogger; 2] = [
    DemoLogger {
        name: "演示扬尘数采仪 (HJ 212)",
        mn: "DEMO39DUST00000000000001",
        pw: DEMO_PW,
        st: "39",
        object_id: "demo-site-01",
        seed: 39,
    },
    DemoLogger {
        name: "演示废水排口数采仪 (HJ 212)",
        mn: "DEMO32WATER0000000000001",
        pw: DEMO_PW,
        st: "32",
        object_id: "ps-01",
        seed: 32,
    },
];

/// How often the emulated loggers send real-time data. Real loggers send every 30 s or more; the
/// demo is faster so warnings appear within a minute or two.
const INTERVAL_MS: u64 = 5000;

impl DemoLogger {
    /// The simulated instruments as (pollutants, auxiliary values): metric names the agent maps to
    /// pollutant codes. Only pollutants get level shifts (over the demo limits); temperature, pH
    /// and the like stay plausible.
    fn instruments(&self) -> (Value, Value) {
        match self.st {
            // a34002 PM10, a34004 PM2.5; a01001 temperature, a01002 humidity, LA noise.
            "39" => (
                json!([
                    {"key": "pm10", "base": 90.0, "daily_amplitude": 15.0, "noise": 8.0, "min": 0.0},
                    {"key": "pm25", "base": 45.0, "daily_amplitude": 8.0, "noise": 4.0, "min": 0.0}
                ]),
                json!([
                    {"key": "temperature", "base": 16.0, "daily_amplitude": 4.0, "noise": 0.3},
                    {"key": "humidity", "base": 60.0, "daily_amplitude": 10.0, "noise": 2.0, "min": 0.0, "max": 100.0},
                    {"key": "noise", "base": 62.0, "daily_amplitude": 6.0, "noise": 2.0, "min": 0.0}
                ]),
            ),
            // w01018 COD, w21003 NH3-N; w01001 pH, w00000 flow.
            _ => (
                json!([
                    {"key": "cod", "base": 40.0, "daily_amplitude": 6.0, "noise": 3.0, "min": 0.0},
                    {"key": "ammonia_nitrogen", "base": 4.0, "daily_amplitude": 0.8, "noise": 0.3, "min": 0.0}
                ]),
                json!([
                    {"key": "ph", "base": 7.2, "daily_amplitude": 0.2, "noise": 0.05, "min": 0.0, "max": 14.0},
                    {"key": "flow", "base": 120.0, "daily_amplitude": 40.0, "noise": 5.0, "min": 0.0}
                ]),
            ),
        }
    }

    /// When values carry a flag other than N. The dust monitor reports an instrument fault (D) for
    /// one minute in every ten: a device-health warning, and none of those values can raise a
    /// limit warning. The outlet has a two-minute maintenance window (M) in every ten: its data
    /// warnings are inhibited meanwhile.
    fn flag_periods(&self) -> Value {
        match self.st {
            "39" => json!([{"flag": "D", "every_s": 600, "for_s": 60, "offset_s": 300}]),
            _ => json!([{"flag": "M", "every_s": 600, "for_s": 120, "offset_s": 0}]),
        }
    }

    /// The edge agent device that emulates this logger against `server`.
    fn device(&self, server: SocketAddr) -> Result<DeviceConfig> {
        let (pollutants, auxiliary) = self.instruments();
        let pollutants: SourceConfig = serde_json::from_value(json!({
            "name": "pollutants",
            "kind": "sim",
            "interval_ms": INTERVAL_MS,
            "seed": self.seed,
            // Level shifts of 1.5x the base: over the demo limits for 20-60 samples.
            "anomaly_rate": 0.05,
            "anomalies": ["level_shift"],
            "metrics": pollutants,
        }))?;
        let auxiliary: SourceConfig = serde_json::from_value(json!({
            "name": "auxiliary",
            "kind": "sim",
            "interval_ms": INTERVAL_MS,
            "seed": self.seed + 100,
            "metrics": auxiliary,
        }))?;
        let hj212: Hj212Config = serde_json::from_value(json!({
            "server": server.to_string(),
            "mn": self.mn,
            "pw": self.pw,
            "st": self.st,
            "flag_periods": self.flag_periods(),
        }))?;
        hj212.validate()?;
        Ok(DeviceConfig {
            protocol: DeviceProtocol::Hj212,
            credentials: None,
            hj212: Some(hj212),
            sources: vec![pollutants, auxiliary],
            cameras: vec![],
        })
    }
}

/// Registers the demo loggers (once; a registered MN is kept as it is, its PW included) and puts
/// each at its object with class `hj212`.
pub async fn provision(store: &Store) -> Result<()> {
    let mut added = 0;
    for l in &LOGGERS {
        let id = device_id_for_mn(l.mn);
        match store.device(&id).await? {
            Some(_) => {
                store.set_device_object(&id, Some(l.object_id)).await?;
                store.set_device_class(&id, Some(LOGGER_CLASS)).await?;
            }
            None => {
                store
                    .insert_hj212_logger(l.name, Some(l.object_id.into()), l.mn, l.pw)
                    .await?;
                added += 1;
            }
        }
    }
    if added > 0 {
        info!(loggers = added, "demo HJ 212 loggers registered");
    }
    seed_rules(store).await
}

/// Limit rules on the loggers' real-time values (`<code>-Rtd`), added by name.
async fn seed_rules(store: &Store) -> Result<()> {
    let existing: Vec<String> = store
        .list_rules()
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect();
    // (name, metric, level, above, for_s, hysteresis, item)
    let rules: [(&str, &str, Level, f64, u64, f64, &str); 3] = [
        (
            "数采仪 PM10 超标 (a34002-Rtd >150 μg/m³, 15 s)",
            "a34002-Rtd",
            Level::ORANGE,
            150.0,
            15,
            10.0,
            "demo-dust",
        ),
        (
            "排口 COD 超标 (w01018-Rtd >90 mg/L, 15 s)",
            "w01018-Rtd",
            Level::ORANGE,
            90.0,
            15,
            5.0,
            "demo-wastewater",
        ),
        (
            "排口氨氮超标 (w21003-Rtd >8 mg/L, 15 s)",
            "w21003-Rtd",
            Level::YELLOW,
            8.0,
            15,
            0.5,
            "demo-wastewater",
        ),
    ];
    for (name, metric, level, above, for_s, hysteresis, item) in rules {
        if existing.iter().any(|e| e == name) {
            continue;
        }
        store
            .insert_rule(&NewRule {
                name: name.into(),
                scope: Scope {
                    class: Some(LOGGER_CLASS.into()),
                    metric: Some(metric.into()),
                    ..Scope::default()
                },
                level,
                condition: Condition::Threshold {
                    above: Some(above),
                    below: None,
                    for_s,
                    hysteresis,
                },
                item: Some(item.into()),
                enabled: true,
            })
            .await?;
    }
    Ok(())
}

/// The agent devices emulating the loggers, connecting to the gateway listening on `gateway`.
pub fn devices(gateway: SocketAddr) -> Result<Vec<DeviceConfig>> {
    // A gateway on every interface is reached over loopback.
    let server = match gateway.ip().is_unspecified() {
        true => SocketAddr::from(([127, 0, 0, 1], gateway.port())),
        false => gateway,
    };
    LOGGERS.iter().map(|l| l.device(server)).collect()
}

/// What the person at the terminal is told about the loggers.
pub fn summary(gateway: SocketAddr) -> Vec<String> {
    let mut out: Vec<String> = LOGGERS
        .iter()
        .map(|l| {
            format!(
                "HJ 212 数采仪 / logger {} MN={} PW={} ST={} at {} (class {LOGGER_CLASS})",
                l.name, l.mn, l.pw, l.st, l.object_id
            )
        })
        .collect();
    out.push(format!(
        "接入真实数采仪 / point a real logger at this host's port {}: register it first with \
         `offsite device add NAME --hj212 --mn MN --pw PW --object OBJECT`",
        gateway.port()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_loggers_make_valid_agent_devices() {
        let devices = devices("0.0.0.0:9212".parse().unwrap()).unwrap();
        assert_eq!(devices.len(), 2);
        let h = devices[0].hj212.as_ref().unwrap();
        assert_eq!(h.server, "127.0.0.1:9212");
        // The dust logger's instruments map to the standard's codes.
        for (metric, code) in [
            ("pm10", "a34002"),
            ("pm25", "a34004"),
            ("temperature", "a01001"),
            ("humidity", "a01002"),
            ("noise", "LA"),
        ] {
            assert_eq!(h.code_for(metric), code);
        }
        let w = devices[1].hj212.as_ref().unwrap();
        for (metric, code) in [
            ("cod", "w01018"),
            ("ammonia_nitrogen", "w21003"),
            ("ph", "w01001"),
            ("flow", "w00000"),
        ] {
            assert_eq!(w.code_for(metric), code);
        }
        // Each logger sends some values with a flag other than N.
        assert!(!h.flag_periods.is_empty() && !w.flag_periods.is_empty());
        // The MNs are their device ids, so operators recognise them.
        for l in &LOGGERS {
            assert_eq!(device_id_for_mn(l.mn).as_str(), l.mn);
        }
    }
}
