//! Tasks (任务): what a department must do about a warning, a complaint or a provincial clue, on a
//! clock, with every step on an append-only timeline.
//!
//! The state machine (workflow.md):
//!
//! ```text
//! dispatched --sign--> signed --start--> in_progress --feedback--> feedback --approve--> closed --archive--> archived
//!     |  \                |                  |  ^                     |
//!     |   transfer <------+                  |  +------ reject -------+   (a redo)
//!   return --> returned --redispatch--> dispatched
//!                                  extension request / approve / refuse (in_progress)
//! ```
//!
//! Invariants: only [`transition`] decides whether an action is allowed in a state (the portal maps a
//! [`Refusal`] to 409); every change of a task row is made in the transaction that appends its
//! event; the sign-for clock runs from dispatch and the handling clock from signing, and their
//! 50/100/150% checkpoints are rows the scheduler fires once.

mod ops;
mod policy;
mod schedule;
mod triage;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rules::Level;

pub use ops::{NewTask, TaskFilter};
pub use policy::{CalendarDay, CalendarDayKind, TaskPolicy};
pub use schedule::{FiredCheckpoint, SchedulerPolicy, SchedulerReport, SCHEDULER_LOCK};
pub use triage::{Dispatch, Precision};

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal / $zh:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            pub fn name_zh(self) -> &'static str {
                match self { $($name::$variant => $zh),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum!(
    /// Where a task is in its life.
    TaskState {
        Dispatched = "dispatched" / "待签收",
        Signed = "signed" / "已签收",
        InProgress = "in_progress" / "办理中",
        Feedback = "feedback" / "待审核",
        Closed = "closed" / "办结",
        Archived = "archived" / "归档",
        Returned = "returned" / "已退回",
    }
);

impl TaskState {
    /// Still someone's work (the clocks run).
    pub fn is_open(self) -> bool {
        !matches!(self, TaskState::Closed | TaskState::Archived)
    }
}

str_enum!(
    /// Where a task came from.
    TaskSource {
        Warning = "warning" / "风险预警",
        Complaint = "complaint" / "投诉举报",
        Province = "province" / "省平台",
        Manual = "manual" / "人工派发",
    }
);

/// What someone does to a task. Comments and attachments are not transitions (any state, see
/// `Store::comment_task`).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The department signs for the task (签收); the handling clock starts.
    Sign,
    /// Work begins (办理).
    Start,
    /// Wrong department (退回), with the reason.
    Return { reason: String },
    /// The monitoring center sends a returned task out again.
    Redispatch { department_id: i64, co_department_ids: Vec<i64>, reason: Option<String> },
    /// To another department (转办), keeping the history; the sign-for clock restarts.
    Transfer { department_id: i64, reason: String },
    /// More time (延期申请) until `until`.
    RequestExtension { until: DateTime<Utc>, reason: String },
    /// The dispatcher decides a pending extension.
    DecideExtension { approve: bool, note: Option<String> },
    /// The lead department reports what it did (反馈).
    Feedback { text: String },
    /// A co-handler of a joint task reports its part; the state does not change.
    CoFeedback { text: String },
    /// The reviewer accepts the feedback: closed (办结).
    Approve { note: Option<String> },
    /// The reviewer sends it back (a redo).
    Reject { reason: String },
    Archive,
}

impl Action {
    /// The event's `action` value.
    pub fn event_name(&self) -> &'static str {
        match self {
            Action::Sign => "signed",
            Action::Start => "started",
            Action::Return { .. } => "returned",
            Action::Redispatch { .. } => "redispatched",
            Action::Transfer { .. } => "transferred",
            Action::RequestExtension { .. } => "extension_requested",
            Action::DecideExtension { approve: true, .. } => "extension_approved",
            Action::DecideExtension { approve: false, .. } => "extension_refused",
            Action::Feedback { .. } => "feedback",
            Action::CoFeedback { .. } => "co_feedback",
            Action::Approve { .. } => "closed",
            Action::Reject { .. } => "rejected",
            Action::Archive => "archived",
        }
    }
}

impl Action {
    /// What the action does, for messages ("cannot {verb} a task that is ...").
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Sign => "sign for",
            Action::Start => "start work on",
            Action::Return { .. } => "return",
            Action::Redispatch { .. } => "redispatch",
            Action::Transfer { .. } => "transfer",
            Action::RequestExtension { .. } => "ask for more time on",
            Action::DecideExtension { .. } => "decide an extension of",
            Action::Feedback { .. } => "report feedback on",
            Action::CoFeedback { .. } => "add a co-handler's feedback to",
            Action::Approve { .. } => "approve",
            Action::Reject { .. } => "reject the feedback of",
            Action::Archive => "archive",
        }
    }
}

/// Why an action is not allowed now (answered as 409).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    pub message_zh: String,
}

impl Refusal {
    pub(crate) fn new(code: &'static str, en: impl Into<String>, zh: impl Into<String>) -> Self {
        Self { code, message: en.into(), message_zh: zh.into() }
    }

    fn state(action: &Action, state: TaskState) -> Self {
        Self::new(
            "invalid_transition",
            format!("cannot {} a task that is {}", action.verb(), state),
            format!("任务当前为「{}」，不能执行此操作", state.name_zh()),
        )
    }
}

/// The state an action leads to, or why it is refused. `extension_pending` is whether an extension
/// request awaits a decision. Pure: the whole state machine is this function.
pub fn transition(state: TaskState, extension_pending: bool, action: &Action) -> Result<TaskState, Refusal> {
    use TaskState::*;
    let next = match (state, action) {
        (Dispatched, Action::Sign) => Signed,
        (Signed, Action::Start) => InProgress,
        (Dispatched, Action::Return { .. }) => Returned,
        (Returned, Action::Redispatch { .. }) => Dispatched,
        (Dispatched | Signed, Action::Transfer { .. }) => Dispatched,
        (InProgress, Action::RequestExtension { .. }) if extension_pending => {
            return Err(Refusal::new(
                "extension_pending",
                "an extension request is already waiting for a decision",
                "已有延期申请待审批",
            ))
        }
        (InProgress, Action::RequestExtension { .. }) => InProgress,
        (InProgress, Action::DecideExtension { .. }) if !extension_pending => {
            return Err(Refusal::new("no_extension_pending", "no extension request to decide", "没有待审批的延期申请"))
        }
        (InProgress, Action::DecideExtension { .. }) => InProgress,
        (InProgress, Action::Feedback { .. }) if extension_pending => {
            return Err(Refusal::new(
                "extension_pending",
                "decide the pending extension request before feedback",
                "延期申请待审批，暂不能反馈",
            ))
        }
        (InProgress, Action::Feedback { .. }) => Feedback,
        (Signed | InProgress | Feedback, Action::CoFeedback { .. }) => state,
        (Feedback, Action::Approve { .. }) => Closed,
        (Feedback, Action::Reject { .. }) => InProgress,
        (Closed, Action::Archive) => Archived,
        (s, a) => return Err(Refusal::state(a, s)),
    };
    Ok(next)
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TaskRecord {
    pub id: i64,
    pub task_no: String,
    pub title: String,
    pub description: String,
    #[sqlx(try_from = "String")]
    pub source: TaskSourceColumn,
    pub source_ref: Option<String>,
    pub level: Level,
    pub item: Option<String>,
    pub object_id: Option<String>,
    pub region_code: Option<String>,
    pub department_id: i64,
    pub department_name: String,
    pub reviewer_department_id: Option<i64>,
    #[sqlx(try_from = "String")]
    pub state: TaskStateColumn,
    pub sign_limit: String,
    pub handle_limit: String,
    pub dispatched_at: DateTime<Utc>,
    pub dispatched_by: String,
    pub sign_due: DateTime<Utc>,
    pub signed_at: Option<DateTime<Utc>>,
    pub handle_due: Option<DateTime<Utc>>,
    pub feedback_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
    pub extension_pending: bool,
    pub return_count: i32,
    pub transfer_count: i32,
    pub redo_count: i32,
    pub extension_count: i32,
    pub review_count: i32,
    pub first_review_rejected: Option<bool>,
    pub updated_at: DateTime<Utc>,
    /// Lead and co-handling departments (ids).
    pub co_department_ids: Vec<i64>,
}

impl TaskRecord {
    pub fn state(&self) -> TaskState {
        self.state.0
    }

    pub fn source(&self) -> TaskSource {
        self.source.0
    }

    /// The deadline of the clock now running, if one is.
    pub fn due(&self) -> Option<DateTime<Utc>> {
        match self.state() {
            TaskState::Dispatched => Some(self.sign_due),
            TaskState::Signed | TaskState::InProgress | TaskState::Feedback => self.handle_due,
            _ => None,
        }
    }

    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.due().is_some_and(|d| now > d)
    }
}

/// Column wrappers so rows decode straight into the enums (an unknown value is a decode error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TaskStateColumn(pub TaskState);

impl TryFrom<String> for TaskStateColumn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        TaskState::parse(&s).map(Self).ok_or_else(|| format!("unknown task state {s:?}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TaskSourceColumn(pub TaskSource);

impl TryFrom<String> for TaskSourceColumn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        TaskSource::parse(&s).map(Self).ok_or_else(|| format!("unknown task source {s:?}"))
    }
}

/// One line of a task's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TaskEvent {
    pub id: i64,
    pub task_id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub department_id: Option<i64>,
    pub reason: Option<String>,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TaskDepartment {
    pub department_id: i64,
    pub name: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TaskAttachment {
    pub id: i64,
    pub task_id: i64,
    pub event_id: Option<i64>,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub uploaded_by: String,
    pub uploaded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TaskExtension {
    pub id: i64,
    pub task_id: i64,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub reason: String,
    pub requested_due: DateTime<Utc>,
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TaskCheckpoint {
    pub clock: String,
    pub stage: String,
    pub due_at: DateTime<Utc>,
    pub fired_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

    fn all_actions() -> Vec<Action> {
        vec![
            Action::Sign,
            Action::Start,
            Action::Return { reason: "r".into() },
            Action::Redispatch { department_id: 1, co_department_ids: vec![], reason: None },
            Action::Transfer { department_id: 1, reason: "r".into() },
            Action::RequestExtension { until: Utc::now(), reason: "r".into() },
            Action::DecideExtension { approve: true, note: None },
            Action::Feedback { text: "t".into() },
            Action::CoFeedback { text: "t".into() },
            Action::Approve { note: None },
            Action::Reject { reason: "r".into() },
            Action::Archive,
        ]
    }

    /// The whole table: every (state, action) pair is either the documented transition or refused.
    #[test]
    fn transition_table() {
        let allowed: &[(TaskState, &str, TaskState)] = &[
            (Dispatched, "signed", Signed),
            (Dispatched, "returned", Returned),
            (Dispatched, "transferred", Dispatched),
            (Signed, "started", InProgress),
            (Signed, "transferred", Dispatched),
            (Signed, "co_feedback", Signed),
            (InProgress, "extension_requested", InProgress),
            (InProgress, "feedback", Feedback),
            (InProgress, "co_feedback", InProgress),
            (Feedback, "closed", Closed),
            (Feedback, "rejected", InProgress),
            (Feedback, "co_feedback", Feedback),
            (Closed, "archived", Archived),
            (Returned, "redispatched", Dispatched),
        ];
        for &s in TaskState::ALL {
            for a in all_actions() {
                let expected = allowed.iter().find(|(from, name, _)| *from == s && *name == a.event_name()).map(|t| t.2);
                let got = transition(s, false, &a);
                match expected {
                    Some(to) => assert_eq!(got, Ok(to), "{s} + {}", a.event_name()),
                    None => {
                        let r = got.expect_err(&format!("{s} + {} must be refused", a.event_name()));
                        if r.code == "invalid_transition" {
                            assert!(r.message.contains(a.verb()) && r.message.ends_with(s.as_str()), "{}", r.message);
                            assert!(r.message_zh.contains(s.name_zh()), "{}", r.message_zh);
                        } else {
                            assert!(!r.message.is_empty() && !r.message_zh.is_empty());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn extension_rules() {
        let req = Action::RequestExtension { until: Utc::now(), reason: "r".into() };
        let decide = Action::DecideExtension { approve: false, note: None };
        assert_eq!(transition(InProgress, true, &req).unwrap_err().code, "extension_pending");
        assert_eq!(transition(InProgress, false, &decide).unwrap_err().code, "no_extension_pending");
        assert_eq!(transition(InProgress, true, &decide), Ok(InProgress));
        assert_eq!(transition(InProgress, true, &Action::Feedback { text: "x".into() }).unwrap_err().code, "extension_pending");
    }

    #[test]
    fn names_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(*s));
        }
        for s in TaskSource::ALL {
            assert_eq!(TaskSource::parse(s.as_str()), Some(*s));
        }
        assert_eq!(TaskState::parse("status2"), None);
    }
}
