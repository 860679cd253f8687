//! The credit register (信用记录) of regulated objects and the risk class derived from it.
//!
//! A record is a mark against an object: where it came from (a case decision now; other sources
//! later), how severe it is, how many points it deducts, and until when it counts. Case decisions
//! write their record themselves, in the transaction that records the decision
//! ([`crate::Store::advance_case`]).
//!
//! **The rule.** An object starts at [`START_POINTS`] (100). Every record in force (recorded, not yet
//! expired) deducts its points; the total never goes below 0. The class follows from the points:
//! A at 90 or more, B at 75 or more, C at 60 or more, D below 60. An object without records in force
//! is A. A decision's record stays in force for [`RECORD_YEARS`] (3) years. Severity and points by
//! penalty ([`Severity::of`]):
//!
//! | penalty | severity | points |
//! | --- | --- | --- |
//! | warning (警告) | minor (轻微) | 5 |
//! | confiscation (没收违法所得), fine under 10,000 yuan | general (一般) | 10 |
//! | fine from 10,000 to under 100,000 yuan | serious (较重) | 20 |
//! | fine of 100,000 yuan or more, suspension (责令停产停业), revocation (吊销许可证) | severe (严重) | 40 |
//! | none (不予处罚) | no record | 0 |
//!
//! So one warning leaves an object A (95), one fine of 50,000 yuan makes it B (80), one licence
//! revocation C (60), and two severe decisions within three years D (20).

use std::collections::HashMap;

use anyhow::Result;
use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::cases::{Decision, Fen, PenaltyType};
use crate::Store;

/// Points an object starts with.
pub const START_POINTS: i32 = 100;
/// How long a case decision's record counts.
pub const RECORD_YEARS: u32 = 3;
/// A fine from this amount is serious...
pub const SERIOUS_FINE: Fen = Fen::from_yuan(10_000);
/// ...and from this amount severe.
pub const SEVERE_FINE: Fen = Fen::from_yuan(100_000);

/// How grave a mark is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Severity {
    Minor,
    General,
    Serious,
    Severe,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::Minor, Severity::General, Severity::Serious, Severity::Severe];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::General => "general",
            Severity::Serious => "serious",
            Severity::Severe => "severe",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            Severity::Minor => "轻微",
            Severity::General => "一般",
            Severity::Serious => "较重",
            Severity::Severe => "严重",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The points a record of this severity deducts.
    pub fn deduction(self) -> i32 {
        match self {
            Severity::Minor => 5,
            Severity::General => 10,
            Severity::Serious => 20,
            Severity::Severe => 40,
        }
    }

    /// The severity of a decision's penalty; `None` when nothing was imposed (不予处罚), which
    /// writes no record.
    pub fn of(penalty: PenaltyType, amount: Fen) -> Option<Severity> {
        Some(match penalty {
            PenaltyType::NoPenalty => return None,
            PenaltyType::Warning => Severity::Minor,
            PenaltyType::Confiscation => Severity::General,
            PenaltyType::Fine if amount >= SEVERE_FINE => Severity::Severe,
            PenaltyType::Fine if amount >= SERIOUS_FINE => Severity::Serious,
            PenaltyType::Fine => Severity::General,
            PenaltyType::Suspension | PenaltyType::Revocation => Severity::Severe,
        })
    }
}

/// The risk class of an object (信用风险分类).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CreditClass {
    A,
    B,
    C,
    D,
}

impl CreditClass {
    /// The class of an object holding `points` (see the module documentation).
    pub fn from_points(points: i32) -> Self {
        match points {
            90.. => CreditClass::A,
            75..=89 => CreditClass::B,
            60..=74 => CreditClass::C,
            _ => CreditClass::D,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CreditClass::A => "A",
            CreditClass::B => "B",
            CreditClass::C => "C",
            CreditClass::D => "D",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            CreditClass::A => "低风险",
            CreditClass::B => "一般风险",
            CreditClass::C => "较高风险",
            CreditClass::D => "高风险",
        }
    }
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum CreditSource {
    /// An enforcement case's decision.
    Case,
}

/// A record in the register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CreditRecord {
    pub id: i64,
    pub object_id: String,
    pub source: CreditSource,
    pub case_id: Option<i64>,
    pub case_no: Option<String>,
    pub severity: Severity,
    pub deduction: i32,
    pub note: String,
    pub recorded_at: DateTime<Utc>,
    pub recorded_by: String,
    pub expires_at: DateTime<Utc>,
}

impl CreditRecord {
    /// Whether the record counts at `at`.
    pub fn in_force(&self, at: DateTime<Utc>) -> bool {
        self.recorded_at <= at && at < self.expires_at
    }
}

/// An object's standing at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CreditStanding {
    /// [`START_POINTS`] less the deductions of the records in force, at least 0.
    pub points: i32,
    pub class: CreditClass,
    /// How many records are in force.
    pub records_in_force: i64,
}

impl CreditStanding {
    /// The standing given the sum of the deductions in force.
    pub fn from_deductions(total: i64, records_in_force: i64) -> Self {
        let points = (i64::from(START_POINTS) - total).clamp(0, i64::from(START_POINTS)) as i32;
        Self { points, class: CreditClass::from_points(points), records_in_force }
    }
}

/// When a record written at `at` stops counting.
pub fn expiry(at: DateTime<Utc>) -> DateTime<Utc> {
    at.checked_add_months(Months::new(12 * RECORD_YEARS)).expect("a date within chrono's range")
}

/// Writes the record of a case decision (in the caller's transaction); nothing for a decision
/// without penalty. Answers the severity written.
pub(crate) async fn record_decision(
    conn: &mut PgConnection,
    case_id: i64,
    object_id: &str,
    decision: &Decision,
    note: &str,
    by: &str,
    at: DateTime<Utc>,
) -> Result<Option<Severity>> {
    let Some(severity) = decision.severity() else { return Ok(None) };
    sqlx::query(
        "INSERT INTO credit_records (object_id, source, case_id, severity, deduction, note, recorded_at, recorded_by, \
         expires_at) VALUES ($1, 'case', $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(object_id)
    .bind(case_id)
    .bind(severity)
    .bind(severity.deduction())
    .bind(note)
    .bind(at)
    .bind(by)
    .bind(expiry(at))
    .execute(conn)
    .await?;
    Ok(Some(severity))
}

impl Store {
    /// Every record of an object, in force or not, newest first.
    pub async fn credit_records(&self, object_id: &str) -> Result<Vec<CreditRecord>> {
        Ok(sqlx::query_as(
            "SELECT r.id, r.object_id, r.source, r.case_id, c.case_no, r.severity, r.deduction, r.note, r.recorded_at, \
             r.recorded_by, r.expires_at FROM credit_records r LEFT JOIN cases c ON c.id = r.case_id \
             WHERE r.object_id = $1 ORDER BY r.recorded_at DESC, r.id DESC",
        )
        .bind(object_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// An object's standing at `at` (an unknown object has no records: A).
    pub async fn credit_standing(&self, object_id: &str, at: DateTime<Utc>) -> Result<CreditStanding> {
        let ids = [object_id.to_owned()];
        Ok(self.credit_standings(&ids, at).await?.remove(object_id).expect("one entry per id"))
    }

    /// The standing of each of `object_ids` at `at`, in one query.
    pub async fn credit_standings(
        &self,
        object_ids: &[String],
        at: DateTime<Utc>,
    ) -> Result<HashMap<String, CreditStanding>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT object_id, sum(deduction)::bigint, count(*) FROM credit_records \
             WHERE object_id = ANY($1) AND recorded_at <= $2 AND expires_at > $2 GROUP BY object_id",
        )
        .bind(object_ids)
        .bind(at)
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<String, CreditStanding> =
            object_ids.iter().map(|id| (id.clone(), CreditStanding::from_deductions(0, 0))).collect();
        for (id, total, n) in rows {
            out.insert(id, CreditStanding::from_deductions(total, n));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_points() {
        assert_eq!(CreditClass::from_points(100), CreditClass::A);
        assert_eq!(CreditClass::from_points(90), CreditClass::A);
        assert_eq!(CreditClass::from_points(89), CreditClass::B);
        assert_eq!(CreditClass::from_points(75), CreditClass::B);
        assert_eq!(CreditClass::from_points(74), CreditClass::C);
        assert_eq!(CreditClass::from_points(60), CreditClass::C);
        assert_eq!(CreditClass::from_points(59), CreditClass::D);
        assert_eq!(CreditClass::from_points(0), CreditClass::D);
    }

    #[test]
    fn severity_by_penalty_and_amount() {
        let yuan = Fen::from_yuan;
        assert_eq!(Severity::of(PenaltyType::NoPenalty, Fen::ZERO), None);
        assert_eq!(Severity::of(PenaltyType::Warning, Fen::ZERO), Some(Severity::Minor));
        assert_eq!(Severity::of(PenaltyType::Confiscation, Fen::ZERO), Some(Severity::General));
        assert_eq!(Severity::of(PenaltyType::Fine, Fen::new(999_999).unwrap()), Some(Severity::General));
        assert_eq!(Severity::of(PenaltyType::Fine, yuan(10_000)), Some(Severity::Serious));
        assert_eq!(Severity::of(PenaltyType::Fine, yuan(50_000)), Some(Severity::Serious));
        assert_eq!(Severity::of(PenaltyType::Fine, Fen::new(9_999_999).unwrap()), Some(Severity::Serious));
        assert_eq!(Severity::of(PenaltyType::Fine, yuan(100_000)), Some(Severity::Severe));
        assert_eq!(Severity::of(PenaltyType::Suspension, Fen::ZERO), Some(Severity::Severe));
        assert_eq!(Severity::of(PenaltyType::Revocation, Fen::ZERO), Some(Severity::Severe));
    }

    #[test]
    fn standing_floors_at_zero() {
        let s = CreditStanding::from_deductions(0, 0);
        assert_eq!((s.points, s.class), (100, CreditClass::A));
        let s = CreditStanding::from_deductions(20, 1);
        assert_eq!((s.points, s.class), (80, CreditClass::B));
        let s = CreditStanding::from_deductions(160, 4);
        assert_eq!((s.points, s.class), (0, CreditClass::D));
    }

    #[test]
    fn records_expire_after_three_years() {
        let at = chrono::TimeZone::with_ymd_and_hms(&Utc, 2024, 2, 29, 4, 0, 0).unwrap();
        assert_eq!(expiry(at), chrono::TimeZone::with_ymd_and_hms(&Utc, 2027, 2, 28, 4, 0, 0).unwrap());
    }
}
