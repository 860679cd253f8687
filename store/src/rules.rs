//! Warning rules as stored: data, not code. The analytics tier evaluates them; the portal edits
//! them. Shapes here are the contract between the two (and the JSON the API speaks).

use serde::{Deserialize, Serialize};

/// Warning level, 1 (most severe) to 4. Cannot be out of range once built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Level(u8);

impl Level {
    pub const RED: Level = Level(1);
    pub const ORANGE: Level = Level(2);
    pub const YELLOW: Level = Level(3);
    pub const BLUE: Level = Level(4);

    pub fn new(n: u8) -> Result<Self, String> {
        if (1..=4).contains(&n) {
            Ok(Level(n))
        } else {
            Err(format!("warning level must be 1..=4 (red, orange, yellow, blue), got {n}"))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// 红 / 橙 / 黄 / 蓝.
    pub fn name_zh(self) -> &'static str {
        ["红色", "橙色", "黄色", "蓝色"][self.0 as usize - 1]
    }

    pub fn name_en(self) -> &'static str {
        ["red", "orange", "yellow", "blue"][self.0 as usize - 1]
    }
}

impl TryFrom<u8> for Level {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        Level::new(n)
    }
}

impl From<Level> for u8 {
    fn from(l: Level) -> u8 {
        l.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub scope: Scope,
    pub level: Level,
    pub condition: Condition,
    /// Regulatory item the rule enforces (catalog code), if any.
    #[serde(default)]
    pub item: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// Which series a rule applies to; an unset field matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default)]
    pub device: Option<String>,
    /// A regulated object (site): every device of it.
    #[serde(default)]
    pub object: Option<String>,
    /// A device class: every device of that kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// A metric key, or `*SUFFIX` for every metric ending in SUFFIX (`*-Rtd`).
    #[serde(default)]
    pub metric: Option<String>,
}

/// What a scope is matched against: one series' device, its object and class, and the metric.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub device_id: &'a str,
    pub object_id: Option<&'a str>,
    pub class: Option<&'a str>,
    pub metric_key: &'a str,
}

impl Scope {
    pub fn matches(&self, t: Target<'_>) -> bool {
        self.device.as_deref().is_none_or(|d| d == t.device_id)
            && self.object.as_deref().is_none_or(|o| t.object_id == Some(o))
            && self.class.as_deref().is_none_or(|c| t.class == Some(c))
            && self.metric.as_deref().is_none_or(|k| match k.strip_prefix('*') {
                // `*-Rtd`: every metric with that suffix (metric keys never contain `*`), so one
                // rule covers all real-time values of HJ 212 loggers whatever their pollutants.
                Some(suffix) => t.metric_key.ends_with(suffix),
                None => k == t.metric_key,
            })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Condition {
    /// Value above `above` (or below `below`) continuously for `for_s` seconds; clears once it is
    /// back by more than `hysteresis` (so a value hovering at the limit does not flap).
    Threshold {
        #[serde(default)]
        above: Option<f64>,
        #[serde(default)]
        below: Option<f64>,
        #[serde(default)]
        for_s: u64,
        #[serde(default)]
        hysteresis: f64,
    },
    /// Change faster than `max_per_minute` between consecutive samples.
    RateOfChange { max_per_minute: f64 },
    /// Value stuck (within `epsilon`) for `for_s` seconds: a frozen or disconnected sensor.
    FlatLine {
        for_s: u64,
        #[serde(default)]
        epsilon: f64,
    },
    /// No sample for `max_gap_s` seconds.
    DataGap { max_gap_s: u64 },
}

impl Rule {
    /// Checks what serde cannot: a threshold needs a bound, durations and limits are sane.
    pub fn validate(&self) -> Result<(), String> {
        match &self.condition {
            Condition::Threshold { above, below, hysteresis, .. } => {
                if above.is_none() && below.is_none() {
                    return Err("threshold rule needs `above` or `below`".into());
                }
                if !(hysteresis.is_finite() && *hysteresis >= 0.0) {
                    return Err("hysteresis must be >= 0".into());
                }
            }
            Condition::RateOfChange { max_per_minute } if !(max_per_minute.is_finite() && *max_per_minute > 0.0) => {
                return Err("max_per_minute must be > 0".into());
            }
            Condition::FlatLine { for_s, epsilon } if *for_s == 0 || !(epsilon.is_finite() && *epsilon >= 0.0) => {
                return Err("flat line needs for_s > 0 and epsilon >= 0".into());
            }
            Condition::DataGap { max_gap_s } if *max_gap_s == 0 => return Err("max_gap_s must be > 0".into()),
            _ => {}
        }
        Ok(())
    }

    /// The event name warnings from this rule carry (part of their dedup key).
    pub fn event(&self) -> String {
        format!("rule:{}", self.id)
    }
}

// ---------------------------------------------------------------------------------------------
// Storage: the `rules` table. `Level` is a smallint there; scope and condition are JSON in the
// serde shapes above. Every change notifies the `offsite_rules` channel (a trigger does it, so
// writes from any process are seen) with the rule id as payload.

/// Channel that carries the id of every inserted, updated or deleted rule.
pub const RULES_CHANNEL: &str = "offsite_rules";

impl sqlx::Type<sqlx::Postgres> for Level {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <i16 as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <i16 as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Level {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let n = <i16 as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Level::new(u8::try_from(n).map_err(|_| format!("warning level out of range: {n}"))?)?)
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Level {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <i16 as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&i16::from(self.0), buf)
    }
}

/// A rule to write (insert or replace). Validated like [`Rule::validate`] before writing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRule {
    pub name: String,
    #[serde(default)]
    pub scope: Scope,
    pub level: Level,
    pub condition: Condition,
    #[serde(default)]
    pub item: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl NewRule {
    /// The name's length and everything [`Rule::validate`] checks.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.name.chars().count();
        if n == 0 || n > 200 || self.name.trim().is_empty() {
            return Err("rule name must be 1..=200 characters".into());
        }
        self.to_rule(0).validate()
    }

    fn to_rule(&self, id: i64) -> Rule {
        Rule {
            id,
            name: self.name.clone(),
            scope: self.scope.clone(),
            level: self.level,
            condition: self.condition.clone(),
            item: self.item.clone(),
            enabled: self.enabled,
        }
    }
}

#[derive(sqlx::FromRow)]
struct RuleRow {
    id: i64,
    name: String,
    scope: sqlx::types::Json<Scope>,
    level: Level,
    condition: sqlx::types::Json<Condition>,
    item: Option<String>,
    enabled: bool,
}

impl From<RuleRow> for Rule {
    fn from(r: RuleRow) -> Rule {
        Rule {
            id: r.id,
            name: r.name,
            scope: r.scope.0,
            level: r.level,
            condition: r.condition.0,
            item: r.item,
            enabled: r.enabled,
        }
    }
}

const RULE_COLUMNS: &str = "id, name, scope, level, condition, item, enabled";

impl crate::Store {
    /// Every rule, enabled or not, by id.
    pub async fn list_rules(&self) -> anyhow::Result<Vec<Rule>> {
        let rows: Vec<RuleRow> =
            sqlx::query_as(&format!("SELECT {RULE_COLUMNS} FROM rules ORDER BY id")).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(Rule::from).collect())
    }

    pub async fn rule(&self, id: i64) -> anyhow::Result<Option<Rule>> {
        let row: Option<RuleRow> = sqlx::query_as(&format!("SELECT {RULE_COLUMNS} FROM rules WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Rule::from))
    }

    /// Inserts a rule; refuses an invalid one without writing.
    pub async fn insert_rule(&self, r: &NewRule) -> anyhow::Result<Rule> {
        r.validate().map_err(|e| anyhow::anyhow!("invalid rule: {e}"))?;
        let row: RuleRow = sqlx::query_as(&format!(
            "INSERT INTO rules (name, scope, level, condition, item, enabled) VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING {RULE_COLUMNS}"
        ))
        .bind(&r.name)
        .bind(sqlx::types::Json(&r.scope))
        .bind(r.level)
        .bind(sqlx::types::Json(&r.condition))
        .bind(&r.item)
        .bind(r.enabled)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    /// Replaces a rule; `None` if there is no such rule. Refuses an invalid one without writing.
    pub async fn update_rule(&self, id: i64, r: &NewRule) -> anyhow::Result<Option<Rule>> {
        r.validate().map_err(|e| anyhow::anyhow!("invalid rule: {e}"))?;
        let row: Option<RuleRow> = sqlx::query_as(&format!(
            "UPDATE rules SET name = $2, scope = $3, level = $4, condition = $5, item = $6, enabled = $7, \
             updated_at = now() WHERE id = $1 RETURNING {RULE_COLUMNS}"
        ))
        .bind(id)
        .bind(&r.name)
        .bind(sqlx::types::Json(&r.scope))
        .bind(r.level)
        .bind(sqlx::types::Json(&r.condition))
        .bind(&r.item)
        .bind(r.enabled)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Rule::from))
    }

    /// Deletes a rule; false if there was none. Its past warnings keep their event name (`rule:<id>`).
    pub async fn delete_rule(&self, id: i64) -> anyhow::Result<bool> {
        let r = sqlx::query("DELETE FROM rules WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_refuse() {
        assert_eq!(Level::new(1).unwrap(), Level::RED);
        assert!(Level::new(0).is_err() && Level::new(5).is_err());
        assert_eq!(serde_json::to_string(&Level::YELLOW).unwrap(), "3");
        assert!(serde_json::from_str::<Level>("7").is_err());
        assert_eq!((Level::ORANGE.name_zh(), Level::BLUE.name_en()), ("橙色", "blue"));
    }

    #[test]
    fn a_star_metric_scope_matches_a_suffix() {
        let scope = Scope { class: Some("hj212".into()), metric: Some("*-Rtd".into()), ..Scope::default() };
        let t = |metric_key, class| Target { device_id: "d", object_id: None, class, metric_key };
        assert!(scope.matches(t("a34004-Rtd", Some("hj212"))));
        assert!(!scope.matches(t("a34004-Avg", Some("hj212"))));
        assert!(!scope.matches(t("a34004-Rtd", Some("dust-monitor"))));
        let exact = Scope { metric: Some("pm10".into()), ..Scope::default() };
        assert!(exact.matches(t("pm10", None)) && !exact.matches(t("xpm10", None)));
    }
}
