//! Application profiles: the weights NAB gives true positives, false positives and missed windows.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// One NAB application profile (a `CostMatrix` of `config/profiles.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    pub name: String,
    pub tp_weight: f64,
    pub fp_weight: f64,
    pub fn_weight: f64,
}

/// The order NAB's scoreboard lists the profiles in; other names follow alphabetically.
const CANONICAL_ORDER: [&str; 3] = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"];

impl Profile {
    pub fn new(name: impl Into<String>, tp_weight: f64, fp_weight: f64, fn_weight: f64) -> Self {
        Profile {
            name: name.into(),
            tp_weight,
            fp_weight,
            fn_weight,
        }
    }

    /// `standard`: tp 1, fp 0.11, fn 1.
    pub fn standard() -> Self {
        Profile::new("standard", 1.0, 0.11, 1.0)
    }

    /// `reward_low_FP_rate`: tp 1, fp 0.22, fn 1.
    pub fn reward_low_fp_rate() -> Self {
        Profile::new("reward_low_FP_rate", 1.0, 0.22, 1.0)
    }

    /// `reward_low_FN_rate`: tp 1, fp 0.11, fn 2.
    pub fn reward_low_fn_rate() -> Self {
        Profile::new("reward_low_FN_rate", 1.0, 0.11, 2.0)
    }

    /// The three NAB profiles, in scoreboard order.
    pub fn standard_set() -> Vec<Profile> {
        vec![
            Profile::standard(),
            Profile::reward_low_fp_rate(),
            Profile::reward_low_fn_rate(),
        ]
    }

    /// Read a NAB `profiles.json`.
    pub fn load(path: &Path) -> Result<Vec<Profile>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading profiles file {}", path.display()))?;
        Profile::parse_json(&text).with_context(|| format!("parsing profiles file {}", path.display()))
    }

    /// Parse the `profiles.json` format:
    /// `{"<name>": {"CostMatrix": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0, ...}}, ...}`.
    /// A profile object without the `CostMatrix` level is accepted too.
    pub fn parse_json(text: &str) -> Result<Vec<Profile>> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let obj = value
            .as_object()
            .context("profiles: expected a JSON object of profiles")?;
        let mut profiles = Vec::with_capacity(obj.len());
        for (name, body) in obj {
            let matrix = body.get("CostMatrix").unwrap_or(body);
            let weight = |key: &str| -> Result<f64> {
                matrix
                    .get(key)
                    .and_then(|v| v.as_f64())
                    .with_context(|| format!("profile {name}: missing or non-numeric {key}"))
            };
            let profile = Profile::new(
                name.clone(),
                weight("tpWeight")?,
                weight("fpWeight")?,
                weight("fnWeight")?,
            );
            if !(profile.tp_weight.is_finite() && profile.fp_weight.is_finite() && profile.fn_weight.is_finite()) {
                bail!("profile {name}: weights must be finite");
            }
            profiles.push(profile);
        }
        if profiles.is_empty() {
            bail!("profiles: no profile defined");
        }
        profiles.sort_by_key(|p| {
            let rank = CANONICAL_ORDER
                .iter()
                .position(|n| *n == p.name)
                .unwrap_or(CANONICAL_ORDER.len());
            (rank, p.name.clone())
        });
        Ok(profiles)
    }
}
