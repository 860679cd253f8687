//! Enforcement cases (案件) opened from tasks.
//!
//! A case is filed from a task that a department has at least signed for (a task still dispatched,
//! or returned, cannot open one), at most one per task; it keeps the task's regulated object, item
//! and department. It then goes through [`CaseStage`]s strictly in order: 立案 (filed) -> 调查取证
//! (investigating) -> 处罚决定 (decided) -> 执行 (executing) -> 结案 (closed). Every stage reached
//! keeps its time, handler and note, and holds documents. Reaching `decided` records the
//! [`Decision`]: the legal basis (by default the catalog item's published one), the [`PenaltyType`],
//! the amount ([`Fen`], positive for fines only) and whether it is disclosed to the public; in the
//! same transaction the decision writes the object's credit record ([`crate::credit`]).

use std::fmt;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Postgres, QueryBuilder};

use crate::calendar::china;
use crate::credit::{self, Severity};
use crate::registers::{AccessScope, FieldError};
use crate::Store;

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum CaseStage {
    /// 立案
    Filed,
    /// 调查取证
    Investigating,
    /// 处罚决定
    Decided,
    /// 执行
    Executing,
    /// 结案
    Closed,
}

impl CaseStage {
    /// In the order a case goes through them.
    pub const ALL: [CaseStage; 5] =
        [CaseStage::Filed, CaseStage::Investigating, CaseStage::Decided, CaseStage::Executing, CaseStage::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseStage::Filed => "filed",
            CaseStage::Investigating => "investigating",
            CaseStage::Decided => "decided",
            CaseStage::Executing => "executing",
            CaseStage::Closed => "closed",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            CaseStage::Filed => "立案",
            CaseStage::Investigating => "调查取证",
            CaseStage::Decided => "处罚决定",
            CaseStage::Executing => "执行",
            CaseStage::Closed => "结案",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            CaseStage::Filed => "filed",
            CaseStage::Investigating => "investigation",
            CaseStage::Decided => "decision",
            CaseStage::Executing => "execution",
            CaseStage::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The stage after this one; `None` after `closed`.
    pub fn next(self) -> Option<Self> {
        Self::ALL.get(self as usize + 1).copied()
    }

    /// The stage before this one; `None` for `filed`.
    pub fn previous(self) -> Option<Self> {
        (self as usize).checked_sub(1).map(|i| Self::ALL[i])
    }
}

impl fmt::Display for CaseStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a decision imposes (行政处罚种类).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum PenaltyType {
    /// 警告
    Warning,
    /// 罚款: the only penalty with an amount.
    Fine,
    /// 没收违法所得
    Confiscation,
    /// 责令停产停业
    Suspension,
    /// 吊销许可证
    Revocation,
    /// 不予处罚
    #[serde(rename = "none")]
    #[sqlx(rename = "none")]
    NoPenalty,
}

impl PenaltyType {
    pub const ALL: [PenaltyType; 6] = [
        PenaltyType::Warning,
        PenaltyType::Fine,
        PenaltyType::Confiscation,
        PenaltyType::Suspension,
        PenaltyType::Revocation,
        PenaltyType::NoPenalty,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PenaltyType::Warning => "warning",
            PenaltyType::Fine => "fine",
            PenaltyType::Confiscation => "confiscation",
            PenaltyType::Suspension => "suspension",
            PenaltyType::Revocation => "revocation",
            PenaltyType::NoPenalty => "none",
        }
    }

    pub fn name_zh(self) -> &'static str {
        match self {
            PenaltyType::Warning => "警告",
            PenaltyType::Fine => "罚款",
            PenaltyType::Confiscation => "没收违法所得",
            PenaltyType::Suspension => "责令停产停业",
            PenaltyType::Revocation => "吊销许可证",
            PenaltyType::NoPenalty => "不予处罚",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            PenaltyType::Warning => "warning",
            PenaltyType::Fine => "fine",
            PenaltyType::Confiscation => "confiscation of illegal gains",
            PenaltyType::Suspension => "order to suspend production or business",
            PenaltyType::Revocation => "licence revocation",
            PenaltyType::NoPenalty => "no penalty",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// An amount of money in fen (分, 1/100 yuan): exact, never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fen(i64);

impl Fen {
    pub const ZERO: Fen = Fen(0);
    /// The largest amount the register takes: one trillion yuan.
    pub const MAX: Fen = Fen(100_000_000_000_000);

    /// `None` when negative or above [`Fen::MAX`].
    pub fn new(fen: i64) -> Option<Fen> {
        (0..=Self::MAX.0).contains(&fen).then_some(Fen(fen))
    }

    /// Whole yuan (for constants).
    pub const fn from_yuan(yuan: i64) -> Fen {
        Fen(yuan * 100)
    }

    pub fn get(self) -> i64 {
        self.0
    }

    /// Parses yuan as written: digits with at most two decimals (`50000`, `50000.5`, `1234.56`).
    pub fn parse_yuan(s: &str) -> Option<Fen> {
        let s = s.trim();
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || int.len() > 13 || frac.len() > 2 || !digits(int) || !digits(frac) {
            return None;
        }
        let frac_fen = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().ok()? * 10,
            _ => frac.parse::<i64>().ok()?,
        };
        Fen::new(int.parse::<i64>().ok()?.checked_mul(100)?.checked_add(frac_fen)?)
    }

    /// Yuan with two decimals: `50000.00`.
    pub fn yuan(self) -> String {
        format!("{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.yuan())
    }
}

/// The longest legal basis, note or other free text kept on a case.
pub const LEGAL_BASIS_MAX: usize = 2000;
pub const NOTE_MAX: usize = 5000;

/// A penalty decision (处罚决定), checked: a legal basis, and an amount exactly when it is a fine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    legal_basis: String,
    penalty: PenaltyType,
    amount: Fen,
    disclose: bool,
}

impl Decision {
    /// Refuses an empty or overlong legal basis, a fine without a positive amount, and an amount on
    /// anything but a fine.
    pub fn new(
        legal_basis: &str,
        penalty: PenaltyType,
        amount: Option<Fen>,
        disclose: bool,
    ) -> Result<Self, FieldError> {
        let legal_basis = legal_basis.trim();
        if legal_basis.is_empty() {
            return Err(FieldError::new(
                "legal_basis",
                "a decision needs its legal basis (the catalog item names none)",
                "处罚决定须写明法律依据（该监管事项未载明设定依据）",
            ));
        }
        if legal_basis.chars().count() > LEGAL_BASIS_MAX {
            return Err(FieldError::new(
                "legal_basis",
                format!("legal_basis is longer than {LEGAL_BASIS_MAX} characters"),
                format!("法律依据超过 {LEGAL_BASIS_MAX} 个字符"),
            ));
        }
        let amount = match (penalty, amount) {
            (PenaltyType::Fine, Some(a)) if a > Fen::ZERO => a,
            (PenaltyType::Fine, _) => {
                return Err(FieldError::new(
                    "amount_yuan",
                    "a fine needs an amount greater than 0",
                    "罚款须填写大于 0 的金额",
                ))
            }
            (_, None) | (_, Some(Fen::ZERO)) => Fen::ZERO,
            (p, Some(_)) => {
                return Err(FieldError::new(
                    "amount_yuan",
                    format!("only a fine has an amount, not a {}", p.name_en()),
                    format!("只有罚款填写金额，{}不填写金额", p.name_zh()),
                ))
            }
        };
        Ok(Self { legal_basis: legal_basis.to_owned(), penalty, amount, disclose })
    }

    pub fn legal_basis(&self) -> &str {
        &self.legal_basis
    }

    pub fn penalty(&self) -> PenaltyType {
        self.penalty
    }

    /// Positive for a fine, zero otherwise.
    pub fn amount(&self) -> Fen {
        self.amount
    }

    pub fn disclose(&self) -> bool {
        self.disclose
    }

    /// The severity of the credit record this decision writes, if any.
    pub fn severity(&self) -> Option<Severity> {
        Severity::of(self.penalty, self.amount)
    }
}

/// A decision as the caller gives it; the legal basis defaults to the item's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionInput {
    pub legal_basis: Option<String>,
    pub penalty: PenaltyType,
    pub amount: Option<Fen>,
    pub disclose: bool,
}

/// A case as stored, with the names a list shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CaseRecord {
    pub id: i64,
    pub case_no: String,
    pub task_id: i64,
    pub task_no: String,
    pub task_title: String,
    pub object_id: String,
    pub object_name: String,
    pub credit_code: Option<String>,
    pub item: Option<String>,
    pub department_id: i64,
    pub department_name: String,
    pub stage: CaseStage,
    pub opened_at: DateTime<Utc>,
    pub opened_by: String,
    pub updated_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub legal_basis: Option<String>,
    pub penalty: Option<PenaltyType>,
    pub amount_fen: Option<i64>,
    pub disclose: Option<bool>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl CaseRecord {
    /// The decision, once the case has reached `decided`.
    pub fn decision(&self) -> Option<Decision> {
        let amount = self.amount_fen.and_then(Fen::new);
        Decision::new(self.legal_basis.as_deref()?, self.penalty?, amount, self.disclose?).ok()
    }
}

/// A stage a case reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct StageRecord {
    pub stage: CaseStage,
    pub reached_at: DateTime<Utc>,
    pub handler: String,
    pub note: String,
}

/// A document of a case, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CaseDocument {
    pub id: i64,
    pub case_id: i64,
    pub stage: CaseStage,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub uploaded_by: String,
    pub uploaded_at: DateTime<Utc>,
}

/// A document to record; its bytes are already in the file store under `sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCaseDocument {
    /// The stage it belongs to; `None`: the case's current stage.
    pub stage: Option<CaseStage>,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
}

/// A page of cases; unset fields do not filter.
#[derive(Debug, Clone)]
pub struct CaseFilter {
    pub stage: Option<CaseStage>,
    pub department_id: Option<i64>,
    pub object_id: Option<String>,
    /// Clamped to 1..=1000.
    pub limit: i64,
    pub offset: i64,
}

impl Default for CaseFilter {
    fn default() -> Self {
        Self { stage: None, department_id: None, object_id: None, limit: 100, offset: 0 }
    }
}

/// A disclosed decision, as the public sees it: nothing about people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Disclosure {
    pub case_no: String,
    pub object_name: String,
    pub credit_code: Option<String>,
    pub item: Option<String>,
    /// The item's main name in the published catalog.
    pub item_name: Option<String>,
    pub legal_basis: String,
    pub penalty: PenaltyType,
    pub amount_fen: i64,
    pub decided_at: DateTime<Utc>,
}

/// The task a case would be opened from, as far as cases care.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CaseTask {
    pub id: i64,
    pub department_id: i64,
    pub state: String,
    pub object_id: Option<String>,
}

/// Task states from which a case can be opened: the department has signed for the task.
pub const OPENING_TASK_STATES: [&str; 5] = ["signed", "in_progress", "feedback", "closed", "archived"];

/// What opening a case did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Ok(Box<CaseRecord>),
    TaskNotFound,
    /// The task already has this case.
    AlreadyOpen {
        case_id: i64,
        case_no: String,
    },
    /// The task is in this state, not yet signed for (or returned).
    TaskNotSigned(String),
    /// The task names no regulated object in the register, so there is no party to a case.
    NoObject,
}

/// Why a case cannot move to a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageRefusal {
    /// It is at that stage already.
    AlreadyAt(CaseStage),
    /// It is past that stage.
    Backwards { current: CaseStage, requested: CaseStage },
    /// That stage is further than the next one.
    Skips { current: CaseStage, requested: CaseStage },
    /// It is closed: nothing follows.
    Closed,
}

impl StageRefusal {
    /// Compares where a case is with where it is asked to go; `None` when `requested` is next.
    pub fn check(current: CaseStage, requested: CaseStage) -> Option<StageRefusal> {
        if current == CaseStage::Closed {
            return Some(StageRefusal::Closed);
        }
        match requested.cmp(&current) {
            std::cmp::Ordering::Equal => Some(StageRefusal::AlreadyAt(current)),
            std::cmp::Ordering::Less => Some(StageRefusal::Backwards { current, requested }),
            std::cmp::Ordering::Greater if current.next() == Some(requested) => None,
            std::cmp::Ordering::Greater => Some(StageRefusal::Skips { current, requested }),
        }
    }

    pub fn message_en(&self) -> String {
        match *self {
            StageRefusal::AlreadyAt(s) => format!("the case is already at stage {s}"),
            StageRefusal::Backwards { current, requested } => {
                format!("the case is at stage {current} and cannot go back to {requested}")
            }
            StageRefusal::Skips { current, requested } => format!(
                "the case is at stage {current}; it must go through {} before {requested}",
                current.next().expect("a stage after the current one")
            ),
            StageRefusal::Closed => "the case is closed".to_owned(),
        }
    }

    pub fn message_zh(&self) -> String {
        match *self {
            StageRefusal::AlreadyAt(s) => format!("案件已处于“{}”阶段", s.name_zh()),
            StageRefusal::Backwards { current, requested } => {
                format!("案件处于“{}”阶段，不能退回“{}”阶段", current.name_zh(), requested.name_zh())
            }
            StageRefusal::Skips { current, requested } => format!(
                "案件处于“{}”阶段，须先进入“{}”阶段，才能进入“{}”阶段",
                current.name_zh(),
                current.next().expect("a stage after the current one").name_zh(),
                requested.name_zh()
            ),
            StageRefusal::Closed => "案件已结案".to_owned(),
        }
    }
}

/// What advancing a case did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advanced {
    Ok(Box<CaseRecord>),
    NotFound,
    Refused(StageRefusal),
}

/// What adding a document did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentAdded {
    Ok(CaseDocument),
    CaseNotFound,
    /// The case has not reached the stage the document was meant for.
    StageNotReached(CaseStage),
}

const SELECT: &str = "SELECT c.id, c.case_no, c.task_id, t.task_no, t.title AS task_title, c.object_id, \
     o.name AS object_name, o.credit_code, c.item, c.department_id, d.name AS department_name, c.stage, c.opened_at, \
     c.opened_by, c.updated_at, c.decided_at, c.legal_basis, c.penalty, c.amount_fen, c.disclose, c.closed_at \
     FROM cases c JOIN tasks t ON t.id = c.task_id JOIN objects o ON o.id = c.object_id \
     JOIN departments d ON d.id = c.department_id";

const FROM_FOR_COUNT: &str = "SELECT count(*) FROM cases c JOIN objects o ON o.id = c.object_id";

fn push_filters(b: &mut QueryBuilder<'_, Postgres>, f: &CaseFilter, scope: &AccessScope) {
    b.push(" WHERE ");
    scope.push_condition(b, "c.department_id", "o.region_code");
    if let Some(s) = f.stage {
        b.push(" AND c.stage = ").push_bind(s);
    }
    if let Some(d) = f.department_id {
        b.push(" AND c.department_id = ").push_bind(d);
    }
    if let Some(o) = &f.object_id {
        b.push(" AND c.object_id = ").push_bind(o.clone());
    }
}

fn note_text(note: Option<&str>) -> Result<String, FieldError> {
    let note = note.map(str::trim).unwrap_or("");
    if note.chars().count() > NOTE_MAX {
        return Err(FieldError::new(
            "note",
            format!("note is longer than {NOTE_MAX} characters"),
            format!("备注超过 {NOTE_MAX} 个字符"),
        ));
    }
    Ok(note.to_owned())
}

async fn fetch_on(conn: &mut PgConnection, id: i64) -> Result<Option<CaseRecord>> {
    Ok(sqlx::query_as(&format!("{SELECT} WHERE c.id = $1")).bind(id).fetch_optional(conn).await?)
}

impl Store {
    /// The task a case would be opened from.
    pub async fn case_task(&self, task_id: i64) -> Result<Option<CaseTask>> {
        Ok(sqlx::query_as("SELECT id, department_id, state, object_id FROM tasks WHERE id = $1")
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Files a case from a task (stage `filed`, reached at `at` by `by`).
    pub async fn open_case(&self, task_id: i64, by: &str, note: Option<&str>, at: DateTime<Utc>) -> Result<Opened> {
        let note = note_text(note)?;
        let mut tx = self.pool.begin().await?;
        // Locking the task orders concurrent openings; the unique task_id catches anything else.
        let task: Option<(String, Option<String>, Option<String>, i64)> =
            sqlx::query_as("SELECT state, object_id, item, department_id FROM tasks WHERE id = $1 FOR UPDATE")
                .bind(task_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((state, object_id, item, department_id)) = task else { return Ok(Opened::TaskNotFound) };
        let existing: Option<(i64, String)> = sqlx::query_as("SELECT id, case_no FROM cases WHERE task_id = $1")
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some((case_id, case_no)) = existing {
            return Ok(Opened::AlreadyOpen { case_id, case_no });
        }
        if !OPENING_TASK_STATES.contains(&state.as_str()) {
            return Ok(Opened::TaskNotSigned(state));
        }
        let registered = match &object_id {
            Some(o) => {
                sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM objects WHERE id = $1)")
                    .bind(o)
                    .fetch_one(&mut *tx)
                    .await?
            }
            None => false,
        };
        if !registered {
            return Ok(Opened::NoObject);
        }
        let seq: i64 = sqlx::query_scalar("SELECT nextval('case_no_seq')").fetch_one(&mut *tx).await?;
        let case_no = format!("AJ{}{:06}", at.with_timezone(&china()).format("%Y%m%d"), seq % 1_000_000);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO cases (case_no, task_id, object_id, item, department_id, stage, opened_at, opened_by, \
             updated_at) VALUES ($1, $2, $3, $4, $5, 'filed', $6, $7, $6) RETURNING id",
        )
        .bind(&case_no)
        .bind(task_id)
        .bind(&object_id)
        .bind(&item)
        .bind(department_id)
        .bind(at)
        .bind(by)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO case_stages (case_id, stage, previous, reached_at, handler, note) \
             VALUES ($1, 'filed', NULL, $2, $3, $4)",
        )
        .bind(id)
        .bind(at)
        .bind(by)
        .bind(&note)
        .execute(&mut *tx)
        .await?;
        let case = fetch_on(&mut tx, id).await?.expect("just inserted");
        // The task's timeline shows that a case was opened from it.
        sqlx::query(
            "INSERT INTO task_events (task_id, at, actor, action, department_id, reason, detail) \
             VALUES ($1, $2, $3, 'case_opened', $4, $5, $6)",
        )
        .bind(task_id)
        .bind(at)
        .bind(by)
        .bind(department_id)
        .bind(&note)
        .bind(serde_json::json!({"case_id": id, "case_no": case.case_no}))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Opened::Ok(Box::new(case)))
    }

    /// Moves a case to the next stage at `at` (never before the stage it leaves: a clock behind
    /// another replica's is taken as that stage's time). Reaching `decided` needs `decision`
    /// (anything else refuses one) and writes the object's credit record in the same transaction.
    pub async fn advance_case(
        &self,
        id: i64,
        to: CaseStage,
        by: &str,
        note: Option<&str>,
        decision: Option<DecisionInput>,
        at: DateTime<Utc>,
    ) -> Result<Advanced> {
        let note = note_text(note)?;
        let mut tx = self.pool.begin().await?;
        let row: Option<(CaseStage, String, Option<String>, String)> =
            sqlx::query_as("SELECT stage, object_id, item, case_no FROM cases WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((current, object_id, item, case_no)) = row else { return Ok(Advanced::NotFound) };
        if let Some(refusal) = StageRefusal::check(current, to) {
            return Ok(Advanced::Refused(refusal));
        }
        match (to, &decision) {
            (CaseStage::Decided, None) => {
                return Err(FieldError::new(
                    "penalty",
                    "the decision stage needs the penalty (and, for a fine, the amount)",
                    "进入处罚决定阶段须填写处罚种类（罚款须填写金额）",
                )
                .into())
            }
            (s, Some(_)) if s != CaseStage::Decided => {
                return Err(FieldError::new(
                    "penalty",
                    format!("decision fields belong to the decided stage, not {s}"),
                    format!("处罚决定内容只能在“处罚决定”阶段填写，不能在“{}”阶段填写", s.name_zh()),
                )
                .into())
            }
            _ => {}
        }
        let last: DateTime<Utc> = sqlx::query_scalar("SELECT max(reached_at) FROM case_stages WHERE case_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let at = at.max(last);
        sqlx::query(
            "INSERT INTO case_stages (case_id, stage, previous, reached_at, handler, note) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(to)
        .bind(current)
        .bind(at)
        .bind(by)
        .bind(&note)
        .execute(&mut *tx)
        .await?;
        if let Some(input) = decision {
            let basis = match input.legal_basis.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                Some(b) => Some(b.to_owned()),
                None => match &item {
                    Some(code) => sqlx::query_scalar::<_, Option<String>>(
                        "SELECT legal_basis FROM catalog_items WHERE code = $1 AND status = 'published' \
                         ORDER BY version DESC LIMIT 1",
                    )
                    .bind(code)
                    .fetch_optional(&mut *tx)
                    .await?
                    .flatten(),
                    None => None,
                },
            };
            let d = Decision::new(basis.as_deref().unwrap_or(""), input.penalty, input.amount, input.disclose)?;
            sqlx::query(
                "UPDATE cases SET stage = 'decided', decided_at = $2, legal_basis = $3, penalty = $4, amount_fen = $5, \
                 disclose = $6, updated_at = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(at)
            .bind(d.legal_basis())
            .bind(d.penalty())
            .bind(d.amount().get())
            .bind(d.disclose())
            .execute(&mut *tx)
            .await?;
            let amount = if d.penalty() == PenaltyType::Fine { format!(" {} 元", d.amount()) } else { String::new() };
            let record_note = format!("案件 {case_no} 处罚决定：{}{amount}", d.penalty().name_zh());
            credit::record_decision(&mut tx, id, &object_id, &d, &record_note, by, at).await?;
        } else {
            sqlx::query(
                "UPDATE cases SET stage = $2, updated_at = $3, \
                 closed_at = CASE WHEN $2 = 'closed' THEN $3 ELSE closed_at END WHERE id = $1",
            )
            .bind(id)
            .bind(to)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        let case = fetch_on(&mut tx, id).await?.expect("locked");
        tx.commit().await?;
        Ok(Advanced::Ok(Box::new(case)))
    }

    /// Records a document whose bytes are in the file store.
    pub async fn add_case_document(&self, case_id: i64, doc: &NewCaseDocument, by: &str) -> Result<DocumentAdded> {
        let filename = doc.filename.trim();
        if filename.is_empty() || filename.chars().count() > 255 {
            return Err(FieldError::new(
                "file",
                "the file name must be 1 to 255 characters",
                "文件名应为 1 到 255 个字符",
            )
            .into());
        }
        let mut tx = self.pool.begin().await?;
        let current: Option<CaseStage> = sqlx::query_scalar("SELECT stage FROM cases WHERE id = $1 FOR SHARE")
            .bind(case_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(current) = current else { return Ok(DocumentAdded::CaseNotFound) };
        let stage = doc.stage.unwrap_or(current);
        if stage > current {
            return Ok(DocumentAdded::StageNotReached(stage));
        }
crate::files::record_file_in(&mut tx, &doc.sha256, doc.size, &doc.content_type).await?;
        let saved: CaseDocument = sqlx::query_as(
            "INSERT INTO case_documents (case_id, stage, filename, content_type, size, sha256, uploaded_by, uploaded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
             RETURNING id, case_id, stage, filename, content_type, size, sha256, uploaded_by, uploaded_at",
        )
        .bind(case_id)
        .bind(stage)
        .bind(filename)
        .bind(&doc.content_type)
        .bind(doc.size)
        .bind(&doc.sha256)
        .bind(by)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE cases SET updated_at = greatest(updated_at, now()) WHERE id = $1")
            .bind(case_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(DocumentAdded::Ok(saved))
    }

    pub async fn case(&self, id: i64) -> Result<Option<CaseRecord>> {
        let mut conn = self.pool.acquire().await?;
        fetch_on(&mut conn, id).await
    }

    /// A case if `scope` may see it (its department's, or about an object in the scope's regions).
    pub async fn visible_case(&self, id: i64, scope: &AccessScope) -> Result<Option<CaseRecord>> {
        let mut b = QueryBuilder::new(SELECT);
        b.push(" WHERE c.id = ").push_bind(id).push(" AND ");
        scope.push_condition(&mut b, "c.department_id", "o.region_code");
        Ok(b.build_query_as().fetch_optional(&self.pool).await?)
    }

    /// The case opened from a task, if any.
    pub async fn case_of_task(&self, task_id: i64) -> Result<Option<CaseRecord>> {
        Ok(sqlx::query_as(&format!("{SELECT} WHERE c.task_id = $1")).bind(task_id).fetch_optional(&self.pool).await?)
    }

    /// A page of the cases `scope` may see that match `f`, newest first, with the total count.
    pub async fn list_cases(&self, f: &CaseFilter, scope: &AccessScope) -> Result<(Vec<CaseRecord>, i64)> {
        let mut b = QueryBuilder::new(SELECT);
        push_filters(&mut b, f, scope);
        b.push(" ORDER BY c.id DESC LIMIT ")
            .push_bind(f.limit.clamp(1, 1000))
            .push(" OFFSET ")
            .push_bind(f.offset.max(0));
        let items = b.build_query_as().fetch_all(&self.pool).await?;
        let mut c = QueryBuilder::new(FROM_FOR_COUNT);
        push_filters(&mut c, f, scope);
        let total: i64 = c.build_query_scalar().fetch_one(&self.pool).await?;
        Ok((items, total))
    }

    /// The stages a case reached, in order.
    pub async fn case_stages(&self, case_id: i64) -> Result<Vec<StageRecord>> {
        let mut rows: Vec<StageRecord> =
            sqlx::query_as("SELECT stage, reached_at, handler, note FROM case_stages WHERE case_id = $1")
                .bind(case_id)
                .fetch_all(&self.pool)
                .await?;
        rows.sort_by_key(|r| r.stage);
        Ok(rows)
    }

    /// The documents of a case, in upload order.
    pub async fn case_documents(&self, case_id: i64) -> Result<Vec<CaseDocument>> {
        Ok(sqlx::query_as(
            "SELECT id, case_id, stage, filename, content_type, size, sha256, uploaded_by, uploaded_at \
             FROM case_documents WHERE case_id = $1 ORDER BY id",
        )
        .bind(case_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn case_document(&self, case_id: i64, document_id: i64) -> Result<Option<CaseDocument>> {
        Ok(sqlx::query_as(
            "SELECT id, case_id, stage, filename, content_type, size, sha256, uploaded_by, uploaded_at \
             FROM case_documents WHERE case_id = $1 AND id = $2",
        )
        .bind(case_id)
        .bind(document_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A page of the decisions marked for disclosure, newest first, with the total count.
    pub async fn disclosures(&self, limit: i64, offset: i64) -> Result<(Vec<Disclosure>, i64)> {
        let items = sqlx::query_as(
            "SELECT c.case_no, o.name AS object_name, o.credit_code, c.item, \
             (SELECT ci.main_item FROM catalog_items ci WHERE ci.code = c.item AND ci.status = 'published' \
              ORDER BY ci.version DESC LIMIT 1) AS item_name, \
             c.legal_basis, c.penalty, c.amount_fen, c.decided_at \
             FROM cases c JOIN objects o ON o.id = c.object_id WHERE c.disclose \
             ORDER BY c.decided_at DESC, c.id DESC LIMIT $1 OFFSET $2",
        )
        .bind(limit.clamp(1, 1000))
        .bind(offset.max(0))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM cases WHERE disclose").fetch_one(&self.pool).await?;
        Ok((items, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse_print_and_follow_each_other() {
        for s in CaseStage::ALL {
            assert_eq!(CaseStage::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        assert_eq!(CaseStage::parse("Filed"), None);
        assert_eq!(CaseStage::Filed.next(), Some(CaseStage::Investigating));
        assert_eq!(CaseStage::Executing.next(), Some(CaseStage::Closed));
        assert_eq!(CaseStage::Closed.next(), None);
        assert_eq!(CaseStage::Filed.previous(), None);
        assert_eq!(CaseStage::Decided.previous(), Some(CaseStage::Investigating));
        let zh: Vec<&str> = CaseStage::ALL.iter().map(|s| s.name_zh()).collect();
        assert_eq!(zh, ["立案", "调查取证", "处罚决定", "执行", "结案"]);
    }

    #[test]
    fn penalties_parse_and_print() {
        for p in PenaltyType::ALL {
            assert_eq!(PenaltyType::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_value(p).unwrap(), serde_json::json!(p.as_str()));
        }
        assert_eq!(PenaltyType::parse("none"), Some(PenaltyType::NoPenalty));
        assert_eq!(PenaltyType::NoPenalty.name_zh(), "不予处罚");
        assert_eq!(PenaltyType::parse("jail"), None);
    }

    #[test]
    fn only_the_next_stage_is_allowed() {
        use CaseStage::*;
        assert_eq!(StageRefusal::check(Filed, Investigating), None);
        assert_eq!(StageRefusal::check(Executing, Closed), None);
        assert_eq!(StageRefusal::check(Filed, Filed), Some(StageRefusal::AlreadyAt(Filed)));
        assert_eq!(
            StageRefusal::check(Filed, Decided),
            Some(StageRefusal::Skips { current: Filed, requested: Decided })
        );
        assert_eq!(
            StageRefusal::check(Decided, Investigating),
            Some(StageRefusal::Backwards { current: Decided, requested: Investigating })
        );
        assert_eq!(StageRefusal::check(Closed, Filed), Some(StageRefusal::Closed));
        let r = StageRefusal::check(Filed, Closed).unwrap();
        assert!(r.message_zh().contains("调查取证"), "{}", r.message_zh());
        assert!(r.message_en().contains("investigating"), "{}", r.message_en());
    }

    #[test]
    fn yuan_parse_exactly() {
        assert_eq!(Fen::parse_yuan("50000"), Some(Fen::from_yuan(50_000)));
        assert_eq!(Fen::parse_yuan("50000.5").map(Fen::get), Some(5_000_050));
        assert_eq!(Fen::parse_yuan(" 0.07 ").map(Fen::get), Some(7));
        assert_eq!(Fen::parse_yuan("1234.56").map(|f| f.yuan()), Some("1234.56".to_owned()));
        for bad in ["", "-5", "1.234", "1e5", "abc", ".5", "5.", "10000000000000"] {
            let got = Fen::parse_yuan(bad);
            // "5." has an empty fraction and is fine as 5 yuan; everything else is refused.
            if bad == "5." {
                assert_eq!(got, Some(Fen::from_yuan(5)));
            } else {
                assert_eq!(got, None, "{bad:?}");
            }
        }
    }

    #[test]
    fn decisions_check_amounts() {
        let fine =
            Decision::new("《大气污染防治法》第一百零八条", PenaltyType::Fine, Some(Fen::from_yuan(50_000)), true);
        assert_eq!(fine.unwrap().amount(), Fen::from_yuan(50_000));
        let e = Decision::new("依据", PenaltyType::Fine, None, false).unwrap_err();
        assert_eq!(e.field, "amount_yuan");
        let e = Decision::new("依据", PenaltyType::Fine, Some(Fen::ZERO), false).unwrap_err();
        assert_eq!(e.field, "amount_yuan");
        let e = Decision::new("依据", PenaltyType::Warning, Some(Fen::from_yuan(1)), false).unwrap_err();
        assert_eq!(e.field, "amount_yuan");
        let warning = Decision::new("依据", PenaltyType::Warning, Some(Fen::ZERO), false).unwrap();
        assert_eq!(warning.amount(), Fen::ZERO);
        let e = Decision::new("  ", PenaltyType::Warning, None, false).unwrap_err();
        assert_eq!(e.field, "legal_basis");
        assert_eq!(warning.severity(), Some(Severity::Minor));
    }
}
