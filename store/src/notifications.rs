//! Notifications (通知): the in-app notification center, outbound channels per department and the
//! delivery outbox.
//!
//! # The outbox invariant
//!
//! The workflow never sends anything: it appends events (`task_events`, red `warnings`,
//! `warning_escalations`). [`Store::fan_out_notifications`] reads source rows it has not handled
//! yet, works out who must hear about each, and writes in ONE transaction per source: the in-app
//! notifications, one delivery per subscribed enabled channel, and its own progress (cursor and
//! ledger). A crash before the commit leaves nothing; after it, the rows are never read again.
//! The cursor row is locked `FOR UPDATE`, so replicas take turns, and unique constraints on
//! (source row, user) and (channel, source row) make a second pass over a row write nothing.
//!
//! Identity values are not committed in id order: a transaction holding event 100 can commit after
//! event 101 was read. So the cursor (`notification_cursors.last_id`) only says "everything up to
//! here is handled"; rows above it that are handled are listed in `notification_fanout_seen`, and
//! the cursor moves past a row once it has been handled for [`FANOUT_GRACE`] (longer than any
//! transaction that writes these tables stays open).
//!
//! Deliveries are then sent at least once by the notify worker (`offsite-workflow`): it claims due
//! rows with [`Store::claim_due_deliveries`] (`FOR UPDATE SKIP LOCKED`, leasing them by moving
//! `next_attempt_at`), sends, and records each attempt with [`Store::record_delivery_attempt`].
//!
//! # Who is told what
//!
//! "The department(s)" below are the ones the event concerns; a user belongs to the department set
//! on the account (`users.department_id`). Disabled accounts are never notified, nor the person
//! whose own action the event records.
//!
//! | event (`task_events.action`) | kind | in-app recipients |
//! | --- | --- | --- |
//! | `dispatched`, `redispatched` | [`NoticeKind::NewTask`] | handlers and leaders of every department on the task (lead and co-handlers) |
//! | `transferred` | [`NoticeKind::Transferred`] | handlers and leaders of the department it went to |
//! | `remind` | [`NoticeKind::Reminder`] | handlers of the task's department |
//! | `supervise` | [`NoticeKind::Supervision`] | leaders of the task's department, every re-supervision user |
//! | `escalate` | [`NoticeKind::Escalation`] | leaders of the task's department, users who are both monitor and leader (the monitoring center's leader), every re-supervision user |
//! | `returned`, `extension_requested` | [`NoticeKind::Returned`], [`NoticeKind::ExtensionRequested`] | monitors (the dispatching side) |
//! | `feedback` | [`NoticeKind::FeedbackSubmitted`] | monitors, and reviewers of the task's reviewer department when one is set |
//! | `co_feedback` | [`NoticeKind::FeedbackSubmitted`] | handlers of the lead department (who compile the feedback) |
//! | `rejected`, `extension_approved`, `extension_refused` | [`NoticeKind::Rejected`], ... | handlers of the lead department |
//! | `closed` | [`NoticeKind::Closed`] | handlers of every department on the task |
//! | a new level-1 warning | [`NoticeKind::RedWarning`] | monitors |
//! | `warning_escalations` row | [`NoticeKind::WarningNotAcknowledged`] | users who are both monitor and leader |
//!
//! Comments, attachments, signing, starting and archiving notify nobody.
//!
//! Channels: a delivery goes to every enabled channel subscribed to the kind (`events`) of the
//! departments the event concerns and of the departments the recipients belong to (a department's
//! group chat hears what its people hear). A red warning also goes to the channels of the
//! department responsible for the warning's object (`objects.department_id`).
//!
//! Known limit: a warning is read once, when it is new; one raised at a lower level and escalated
//! to red later is not announced as red.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};

use crate::auth::Role;
use crate::calendar::china;
use crate::registers::FieldError;
use crate::Store;

/// How long a handled source row stays in the ledger before the cursor moves past it: longer than
/// any transaction that writes task events or warnings stays open.
pub const FANOUT_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

macro_rules! kinds {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal / $zh:literal / $en:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vm])* $v,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v,)+];

            /// The snake_case name stored and sent over the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s,)+ }
            }

            pub fn name_zh(self) -> &'static str {
                match self { $($name::$v => $zh,)+ }
            }

            pub fn name_en(self) -> &'static str {
                match self { $($name::$v => $en,)+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$v),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::parse(s).ok_or_else(|| format!("unknown {} {s:?}", stringify!($name)))
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }
    };
}

kinds!(
    /// What a notification is about.
    NoticeKind {
        NewTask = "new_task" / "新任务" / "New task",
        Reminder = "reminder" / "任务提醒" / "Reminder",
        Supervision = "supervision" / "督办" / "Supervision",
        Escalation = "escalation" / "升级上报" / "Escalation",
        Returned = "returned" / "任务退回" / "Task returned",
        Transferred = "transferred" / "任务转办" / "Task transferred",
        FeedbackSubmitted = "feedback_submitted" / "办理反馈" / "Feedback submitted",
        Rejected = "rejected" / "反馈驳回" / "Feedback rejected",
        ExtensionRequested = "extension_requested" / "延期申请" / "Extension requested",
        ExtensionApproved = "extension_approved" / "延期批准" / "Extension approved",
        ExtensionRefused = "extension_refused" / "延期未批准" / "Extension refused",
        Closed = "closed" / "任务办结" / "Task closed",
        RedWarning = "red_warning" / "红色预警" / "Red warning",
        WarningNotAcknowledged = "warning_not_acknowledged" / "预警超时未确认" / "Warning not acknowledged",
        /// Only as a delivery: an administrator's test of a channel.
        ChannelTest = "channel_test" / "通道测试" / "Channel test",
    }
);

kinds!(
    /// How a channel delivers.
    ChannelKind {
        /// A generic webhook: JSON, HMAC-SHA256 signed with the channel's secret.
        Webhook = "webhook" / "通用 Webhook" / "Webhook",
        /// A WeCom (企业微信) group robot.
        Wecom = "wecom" / "企业微信群机器人" / "WeCom group robot",
        /// A DingTalk (钉钉) group robot, optionally with signing ("加签").
        Dingtalk = "dingtalk" / "钉钉群机器人" / "DingTalk group robot",
        /// E-mail through the installation's SMTP server.
        Email = "email" / "电子邮件" / "E-mail",
    }
);

/// What a new channel subscribes to when nobody says: what the issue asks to go out.
pub const DEFAULT_CHANNEL_EVENTS: [NoticeKind; 5] = [
    NoticeKind::NewTask,
    NoticeKind::Reminder,
    NoticeKind::Supervision,
    NoticeKind::Escalation,
    NoticeKind::RedWarning,
];

/// A source the fan-out reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    TaskEvents,
    Warnings,
    WarningEscalations,
}

impl Source {
    const ALL: [Source; 3] = [Source::TaskEvents, Source::Warnings, Source::WarningEscalations];

    /// The cursor's name.
    fn cursor(self) -> &'static str {
        match self {
            Source::TaskEvents => "task_events",
            Source::Warnings => "warnings",
            Source::WarningEscalations => "warning_escalations",
        }
    }

    /// The `source` written on notifications and deliveries.
    fn row(self) -> &'static str {
        match self {
            Source::TaskEvents => "task_event",
            Source::Warnings => "warning",
            Source::WarningEscalations => "warning_escalation",
        }
    }
}

/// What a notification says, in both languages; also the payload of its deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeContent {
    pub kind: NoticeKind,
    pub title_zh: String,
    pub title_en: String,
    pub body_zh: String,
    pub body_en: String,
    /// Path in the web UI (`/tasks/<id>`, `/warnings/<id>`).
    pub link: Option<String>,
    pub task_id: Option<i64>,
    pub warning_id: Option<i64>,
    /// When the event happened.
    pub at: DateTime<Utc>,
}

impl NoticeContent {
    /// What a channel test sends.
    pub fn channel_test(channel_name: &str, by: &str, at: DateTime<Utc>) -> Self {
        Self {
            kind: NoticeKind::ChannelTest,
            title_zh: format!("通道测试：{channel_name}"),
            title_en: format!("Channel test: {channel_name}"),
            body_zh: format!("这是一条测试消息，由 {by} 发起。收到即表示通道配置正确。"),
            body_en: format!("A test message sent by {by}. Receiving it means the channel works."),
            link: None,
            task_id: None,
            warning_id: None,
            at,
        }
    }
}

/// One notification in a user's list.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct NotificationRecord {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub kind: NoticeKind,
    pub title_zh: String,
    pub title_en: String,
    pub body_zh: String,
    pub body_en: String,
    pub link: Option<String>,
    pub task_id: Option<i64>,
    pub warning_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// A page of a user's notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationPage {
    pub items: Vec<NotificationRecord>,
    /// Matching the filter (all, or unread only).
    pub total: i64,
    /// Unread, whatever the filter.
    pub unread: i64,
}

/// An e-mail address, checked for the shape SMTP servers accept (`local@domain.tld`, ASCII).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.len() > 254 {
            return None;
        }
        let (local, domain) = s.rsplit_once('@')?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        (local_ok && domain_ok).then(|| EmailAddress(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A channel's endpoint URL: http or https with a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ChannelUrl(String);

impl ChannelUrl {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.len() > 2000 {
            return None;
        }
        let u = url::Url::parse(s).ok()?;
        let host_ok = u.host_str().is_some_and(|h| !h.is_empty());
        (matches!(u.scheme(), "http" | "https") && host_ok).then(|| ChannelUrl(u.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a channel sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelTarget {
    Url(ChannelUrl),
    Email(Vec<EmailAddress>),
}

/// A channel's settings, parsed (everything but the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSettings {
    pub kind: ChannelKind,
    pub name: String,
    pub target: ChannelTarget,
    pub events: Vec<NoticeKind>,
    pub enabled: bool,
}

/// What to do with a channel's secret on an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretChange {
    Keep,
    Clear,
    Set(String),
}

fn field(field: &str, en: impl Into<String>, zh: impl Into<String>) -> FieldError {
    FieldError::new(field, en, zh)
}

impl ChannelSettings {
    /// Parses what an administrator sent. `events` unset: [`DEFAULT_CHANNEL_EVENTS`].
    pub fn parse(
        kind: &str,
        name: &str,
        url: Option<&str>,
        recipients: &[String],
        events: Option<&[String]>,
        enabled: bool,
    ) -> Result<Self, FieldError> {
        let kind = ChannelKind::parse(kind.trim()).ok_or_else(|| {
            field(
                "kind",
                "kind must be webhook, wecom, dingtalk or email",
                "通道类型 kind 必须是 webhook、wecom、dingtalk 或 email",
            )
        })?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(field("name", "name must be 1 to 100 characters", "名称 name 须为 1 至 100 个字符"));
        }
        let url = url.map(str::trim).filter(|s| !s.is_empty());
        let target = match kind {
            ChannelKind::Email => {
                if url.is_some() {
                    return Err(field("url", "an e-mail channel has no URL", "电子邮件通道不需要 url"));
                }
                if recipients.is_empty() || recipients.len() > 50 {
                    return Err(field(
                        "recipients",
                        "an e-mail channel needs 1 to 50 recipients",
                        "电子邮件通道须有 1 至 50 个收件人 recipients",
                    ));
                }
                let mut list = Vec::new();
                for r in recipients {
                    let a = EmailAddress::parse(r).ok_or_else(|| {
                        field("recipients", format!("not an e-mail address: {r:?}"), format!("收件人地址无效：{r}"))
                    })?;
                    if !list.contains(&a) {
                        list.push(a);
                    }
                }
                ChannelTarget::Email(list)
            }
            _ => {
                if !recipients.is_empty() {
                    return Err(field(
                        "recipients",
                        "recipients are for e-mail channels only",
                        "仅电子邮件通道需要收件人 recipients",
                    ));
                }
                let url = url.ok_or_else(|| field("url", "url is required", "url 为必填项"))?;
                ChannelTarget::Url(ChannelUrl::parse(url).ok_or_else(|| {
                    field("url", "url must be an http:// or https:// address", "url 必须是 http:// 或 https:// 地址")
                })?)
            }
        };
        let events = match events {
            None => DEFAULT_CHANNEL_EVENTS.to_vec(),
            Some(list) => {
                let mut out = Vec::new();
                for e in list {
                    let k = NoticeKind::parse(e.trim()).filter(|k| *k != NoticeKind::ChannelTest).ok_or_else(|| {
                        field("events", format!("unknown notification kind {e:?}"), format!("未知的通知类型：{e}"))
                    })?;
                    if !out.contains(&k) {
                        out.push(k);
                    }
                }
                if out.is_empty() {
                    return Err(field(
                        "events",
                        "a channel must receive at least one kind (disable it instead)",
                        "通道至少订阅一种通知 events（不需要时请停用）",
                    ));
                }
                out
            }
        };
        Ok(Self { kind, name: name.to_owned(), target, events, enabled })
    }

    /// Checks a secret against the channel kind: webhooks and DingTalk robots use one.
    pub fn check_secret(&self, secret: &SecretChange) -> Result<(), FieldError> {
        if let SecretChange::Set(s) = secret {
            if !matches!(self.kind, ChannelKind::Webhook | ChannelKind::Dingtalk) {
                return Err(field(
                    "secret",
                    "only webhook and dingtalk channels use a secret",
                    "仅通用 Webhook 与钉钉通道使用密钥 secret",
                ));
            }
            if s.trim().is_empty() || s.chars().count() > 500 {
                return Err(field("secret", "secret must be 1 to 500 characters", "密钥 secret 须为 1 至 500 个字符"));
            }
        }
        Ok(())
    }

    fn url(&self) -> Option<&str> {
        match &self.target {
            ChannelTarget::Url(u) => Some(u.as_str()),
            ChannelTarget::Email(_) => None,
        }
    }

    fn recipients(&self) -> Vec<String> {
        match &self.target {
            ChannelTarget::Url(_) => Vec::new(),
            ChannelTarget::Email(list) => list.iter().map(|a| a.0.clone()).collect(),
        }
    }

    fn event_names(&self) -> Vec<String> {
        self.events.iter().map(|k| k.as_str().to_owned()).collect()
    }
}

/// A channel as administrators see it. It never holds the secret, only whether one is set.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ChannelRecord {
    pub id: i64,
    pub department_id: i64,
    #[sqlx(try_from = "String")]
    pub kind: ChannelKind,
    pub name: String,
    pub url: Option<String>,
    pub secret_set: bool,
    pub recipients: Vec<String>,
    pub events: Vec<String>,
    pub enabled: bool,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const CHANNEL_COLS: &str = "id, department_id, kind, name, url, secret IS NOT NULL AS secret_set, recipients, events, \
     enabled, created_by, created_at, updated_at";

/// Where and how a claimed delivery goes (with the secret: for the worker only).
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelEndpoint {
    pub id: i64,
    pub department_id: i64,
    pub kind: ChannelKind,
    pub name: String,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub recipients: Vec<String>,
}

impl fmt::Debug for ChannelEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a robot's key and the secret signs requests: keep both out of logs.
        f.debug_struct("ChannelEndpoint")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A delivery the worker claimed and must attempt.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub kind: NoticeKind,
    pub content: NoticeContent,
    /// Attempts made before this one.
    pub attempts: i32,
    pub channel: ChannelEndpoint,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub delivery_id: i64,
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// HTTP status or SMTP reply code, when there was an answer.
    pub status: Option<i32>,
    pub error: Option<String>,
    /// When to try again; `None` after a failure gives up (the delivery is marked failed).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AttemptRecord {
    #[serde(skip)]
    pub delivery_id: i64,
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub status: Option<i32>,
    pub error: Option<String>,
}

/// A delivery with its attempts.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeliveryRecord {
    pub id: i64,
    pub channel_id: i64,
    #[sqlx(try_from = "String")]
    pub kind: NoticeKind,
    pub payload: Json<NoticeContent>,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    #[sqlx(skip)]
    pub attempt_log: Vec<AttemptRecord>,
}

impl DeliveryRecord {
    pub fn state(&self) -> DeliveryState {
        match (self.delivered_at, self.failed_at) {
            (Some(_), _) => DeliveryState::Delivered,
            (None, Some(_)) => DeliveryState::Failed,
            (None, None) => DeliveryState::Pending,
        }
    }
}

/// What one fan-out pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanOutReport {
    /// Source rows handled (whether or not they notified anyone).
    pub sources: usize,
    /// In-app notifications written, by kind.
    pub notifications: BTreeMap<NoticeKind, usize>,
    /// Deliveries queued.
    pub deliveries: usize,
}

// --- who is told ---

/// An account that can be notified.
#[derive(Debug, Clone)]
struct Person {
    id: i64,
    username: String,
    department_id: Option<i64>,
    roles: Vec<Role>,
}

impl Person {
    fn has(&self, r: Role) -> bool {
        self.roles.contains(&r)
    }

    fn in_any(&self, departments: &BTreeSet<i64>) -> bool {
        self.department_id.is_some_and(|d| departments.contains(&d))
    }
}

/// Who, in terms of roles and departments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    /// Handlers and leaders of the departments.
    DepartmentStaff,
    DepartmentHandlers,
    /// Department leaders and re-supervision.
    Supervisors,
    /// Department leaders, the monitoring center's leaders, re-supervision.
    EscalationChain,
    /// Monitors, and reviewers of the reviewer department if the task names one.
    Dispatchers,
    Monitors,
    /// Users holding both monitor and leader: the monitoring center's leader.
    MonitorLeaders,
}

fn audience<'a>(
    people: &'a [Person],
    who: Audience,
    departments: &BTreeSet<i64>,
    reviewer_department: Option<i64>,
) -> Vec<&'a Person> {
    people
        .iter()
        .filter(|p| match who {
            Audience::DepartmentStaff => p.in_any(departments) && (p.has(Role::Handler) || p.has(Role::Leader)),
            Audience::DepartmentHandlers => p.in_any(departments) && p.has(Role::Handler),
            Audience::Supervisors => (p.in_any(departments) && p.has(Role::Leader)) || p.has(Role::Resupervision),
            Audience::EscalationChain => {
                (p.in_any(departments) && p.has(Role::Leader))
                    || (p.has(Role::Monitor) && p.has(Role::Leader))
                    || p.has(Role::Resupervision)
            }
            Audience::Dispatchers => {
                p.has(Role::Monitor)
                    || (p.has(Role::Reviewer)
                        && reviewer_department.is_some()
                        && p.department_id == reviewer_department)
            }
            Audience::Monitors => p.has(Role::Monitor),
            Audience::MonitorLeaders => p.has(Role::Monitor) && p.has(Role::Leader),
        })
        .collect()
}

/// Which departments a task event concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Concerned {
    /// Every department on the task, and the event's.
    AllOnTask,
    /// The event's department (where a task went), else the lead.
    EventOrLead,
    /// The lead department and the event's.
    LeadAndEvent,
    Lead,
    /// None: the dispatching side is found by role.
    Nobody,
}

/// What a task event's action notifies: the kind, who, and which departments it concerns.
fn plan(action: &str) -> Option<(NoticeKind, Audience, Concerned)> {
    use Audience as A;
    use Concerned as C;
    Some(match action {
        "dispatched" | "redispatched" => (NoticeKind::NewTask, A::DepartmentStaff, C::AllOnTask),
        "transferred" => (NoticeKind::Transferred, A::DepartmentStaff, C::EventOrLead),
        "remind" => (NoticeKind::Reminder, A::DepartmentHandlers, C::LeadAndEvent),
        "supervise" => (NoticeKind::Supervision, A::Supervisors, C::LeadAndEvent),
        "escalate" => (NoticeKind::Escalation, A::EscalationChain, C::LeadAndEvent),
        "returned" => (NoticeKind::Returned, A::Monitors, C::Nobody),
        "extension_requested" => (NoticeKind::ExtensionRequested, A::Monitors, C::Nobody),
        "feedback" => (NoticeKind::FeedbackSubmitted, A::Dispatchers, C::Nobody),
        "co_feedback" => (NoticeKind::FeedbackSubmitted, A::DepartmentHandlers, C::Lead),
        "rejected" => (NoticeKind::Rejected, A::DepartmentHandlers, C::Lead),
        "extension_approved" => (NoticeKind::ExtensionApproved, A::DepartmentHandlers, C::Lead),
        "extension_refused" => (NoticeKind::ExtensionRefused, A::DepartmentHandlers, C::Lead),
        "closed" => (NoticeKind::Closed, A::DepartmentHandlers, C::AllOnTask),
        _ => return None,
    })
}

/// The kind a task event's action notifies as, if any.
pub fn notice_for_action(action: &str) -> Option<NoticeKind> {
    plan(action).map(|p| p.0)
}

/// One thing to tell: its content, the users, and the departments whose channels hear it.
struct Notice {
    source: Source,
    source_id: i64,
    content: NoticeContent,
    users: Vec<i64>,
    channel_departments: BTreeSet<i64>,
}

/// Builds a notice: recipients (without the actor) and the departments whose channels hear it.
fn notice(
    source: (Source, i64),
    content: NoticeContent,
    people: &[Person],
    who: Audience,
    concerned: BTreeSet<i64>,
    reviewer_department: Option<i64>,
    actor: Option<&str>,
) -> Notice {
    let recipients = audience(people, who, &concerned, reviewer_department);
    let mut channel_departments = concerned;
    channel_departments.extend(recipients.iter().filter_map(|p| p.department_id));
    let users = recipients.iter().filter(|p| Some(p.username.as_str()) != actor).map(|p| p.id).collect();
    Notice { source: source.0, source_id: source.1, content, users, channel_departments }
}

// --- what is said ---

/// A time for people: Beijing time, to the minute.
fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&china()).format("%Y-%m-%d %H:%M").to_string()
}

fn level_zh(level: i16) -> String {
    match crate::Level::new(level.clamp(0, 255) as u8) {
        Ok(l) => format!("{}（{}）", ["一级", "二级", "三级", "四级"][l.get() as usize - 1], l.name_zh()),
        Err(_) => format!("{level} 级"),
    }
}

fn level_en(level: i16) -> String {
    match crate::Level::new(level.clamp(0, 255) as u8) {
        Ok(l) => format!("level {} ({})", l.get(), l.name_en()),
        Err(_) => format!("level {level}"),
    }
}

/// Keeps a text within `max` characters.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[derive(Debug, sqlx::FromRow)]
struct TaskEventRow {
    id: i64,
    task_id: i64,
    at: DateTime<Utc>,
    actor: String,
    action: String,
    department_id: Option<i64>,
    reason: Option<String>,
    detail: Json<serde_json::Value>,
    task_no: String,
    title: String,
    level: i16,
    lead_department_id: i64,
    reviewer_department_id: Option<i64>,
    sign_due: DateTime<Utc>,
    signed_at: Option<DateTime<Utc>>,
    handle_due: Option<DateTime<Utc>>,
    task_departments: Vec<i64>,
}

fn task_content(kind: NoticeKind, e: &TaskEventRow) -> NoticeContent {
    let label_zh = format!("{}「{}」", e.task_no, clip(&e.title, 80));
    let label_en = format!("{} \"{}\"", e.task_no, clip(&e.title, 80));
    let reason = e.reason.as_deref().map(|r| clip(r.trim(), 500)).filter(|r| !r.is_empty());
    // Which clock a scheduler event is about: its detail says so, else the one running.
    let sign_clock = match e.detail.0.get("clock").and_then(|v| v.as_str()) {
        Some("sign") => true,
        Some("handle") => false,
        _ => e.signed_at.is_none(),
    };
    let (due_zh, due_en) = match (sign_clock, e.handle_due) {
        (false, Some(d)) => {
            (format!("办理时限：{}（北京时间）", local(d)), format!("to be completed by {} (Beijing time)", local(d)))
        }
        _ => (
            format!("签收时限：{}（北京时间）", local(e.sign_due)),
            format!("to be signed for by {} (Beijing time)", local(e.sign_due)),
        ),
    };
    let with_reason = |zh: &str, en: &str| match &reason {
        Some(r) => (format!("{zh}：{r}"), format!("{en}: {r}")),
        None => (String::new(), String::new()),
    };
    let (title_zh, title_en, (body_zh, body_en)) = match kind {
        NoticeKind::NewTask => (
            format!("新任务：{label_zh}"),
            format!("New task: {label_en}"),
            (format!("等级：{}；{due_zh}", level_zh(e.level)), format!("{}; {due_en}", level_en(e.level))),
        ),
        NoticeKind::Transferred => (
            format!("转办任务：{label_zh}"),
            format!("Task transferred to your department: {label_en}"),
            match &reason {
                Some(r) => (format!("转办原因：{r}；{due_zh}"), format!("Reason: {r}; {due_en}")),
                None => (due_zh, due_en),
            },
        ),
        NoticeKind::Reminder => (
            format!("任务即将到期：{label_zh}"),
            format!("Task due soon: {label_en}"),
            (format!("已过时限的一半，{due_zh}"), format!("Half of the time limit has passed; {due_en}")),
        ),
        NoticeKind::Supervision => (
            format!("督办：任务已超时 {label_zh}"),
            format!("Supervision: task overdue {label_en}"),
            (
                format!("已超过时限（{}），请部门负责人督促办理", due_zh.trim_end_matches("（北京时间）")),
                format!("The time limit has passed ({due_en}); the department head is asked to follow up"),
            ),
        ),
        NoticeKind::Escalation => (
            format!("升级上报：任务严重超时 {label_zh}"),
            format!("Escalation: task far overdue {label_en}"),
            (
                format!("已超过时限的 150%（{}），已上报", due_zh.trim_end_matches("（北京时间）")),
                format!("150% of the time limit has passed ({due_en}); reported upward"),
            ),
        ),
        NoticeKind::Returned => {
            (format!("任务被退回：{label_zh}"), format!("Task returned: {label_en}"), with_reason("退回原因", "Reason"))
        }
        NoticeKind::FeedbackSubmitted if e.action == "co_feedback" => (
            format!("协办部门已反馈：{label_zh}"),
            format!("A co-handling department reported: {label_en}"),
            with_reason("反馈内容", "Feedback"),
        ),
        NoticeKind::FeedbackSubmitted => (
            format!("任务已反馈，待审核：{label_zh}"),
            format!("Feedback awaits review: {label_en}"),
            with_reason("反馈内容", "Feedback"),
        ),
        NoticeKind::Rejected => (
            format!("反馈被驳回，请重新办理：{label_zh}"),
            format!("Feedback rejected, please redo: {label_en}"),
            with_reason("驳回原因", "Reason"),
        ),
        NoticeKind::ExtensionRequested => (
            format!("延期申请待审批：{label_zh}"),
            format!("Extension requested: {label_en}"),
            with_reason("申请理由", "Reason"),
        ),
        NoticeKind::ExtensionApproved => (
            format!("延期申请已批准：{label_zh}"),
            format!("Extension approved: {label_en}"),
            with_reason("审批意见", "Note"),
        ),
        NoticeKind::ExtensionRefused => (
            format!("延期申请未批准：{label_zh}"),
            format!("Extension refused: {label_en}"),
            with_reason("审批意见", "Note"),
        ),
        NoticeKind::Closed => {
            (format!("任务已办结：{label_zh}"), format!("Task closed: {label_en}"), with_reason("审核意见", "Note"))
        }
        // Not made from task events.
        NoticeKind::RedWarning | NoticeKind::WarningNotAcknowledged | NoticeKind::ChannelTest => {
            (label_zh.clone(), label_en.clone(), (String::new(), String::new()))
        }
    };
    NoticeContent {
        kind,
        title_zh: clip(&title_zh, 300),
        title_en: clip(&title_en, 300),
        body_zh: clip(&body_zh, 2000),
        body_en: clip(&body_en, 2000),
        link: Some(format!("/tasks/{}", e.task_id)),
        task_id: Some(e.task_id),
        warning_id: None,
        at: e.at,
    }
}

#[derive(Debug, sqlx::FromRow)]
struct WarningRow {
    /// The source row: the warning, or the escalation.
    id: i64,
    warning_id: i64,
    at: DateTime<Utc>,
    level: i16,
    detail: String,
    object_id: Option<String>,
    object_name: Option<String>,
    object_department_id: Option<i64>,
    device_id: String,
    device_name: String,
    reason: Option<String>,
}

fn warning_content(kind: NoticeKind, w: &WarningRow) -> NoticeContent {
    let detail = clip(&w.detail, 120);
    let object_zh = match (&w.object_name, &w.object_id) {
        (Some(n), _) => format!("监管对象：{n}；"),
        (None, Some(id)) => format!("监管对象：{id}；"),
        (None, None) => String::new(),
    };
    let object_en = match (&w.object_name, &w.object_id) {
        (Some(n), _) => format!("object: {n}; "),
        (None, Some(id)) => format!("object: {id}; "),
        (None, None) => String::new(),
    };
    let device = format!("{}（{}）", w.device_name, w.device_id);
    let (title_zh, title_en, body_zh, body_en) = match kind {
        NoticeKind::WarningNotAcknowledged => (
            format!("预警超时无人确认：{detail}"),
            format!("Warning not acknowledged in time: {detail}"),
            format!(
                "{object_zh}设备：{device}；等级：{}；{}",
                level_zh(w.level),
                w.reason.as_deref().map(|r| format!("原因：{}", clip(r, 300))).unwrap_or_default()
            ),
            format!(
                "{object_en}device: {} ({}); {}{}",
                w.device_name,
                w.device_id,
                level_en(w.level),
                w.reason.as_deref().map(|r| format!("; reason: {}", clip(r, 300))).unwrap_or_default()
            ),
        ),
        _ => (
            format!("红色预警：{detail}"),
            format!("Red warning: {detail}"),
            format!("{object_zh}设备：{device}；发生时间：{}（北京时间）", local(w.at)),
            format!("{object_en}device: {} ({}); at {} (Beijing time)", w.device_name, w.device_id, local(w.at)),
        ),
    };
    NoticeContent {
        kind,
        title_zh: clip(&title_zh, 300),
        title_en: clip(&title_en, 300),
        body_zh: clip(&body_zh, 2000),
        body_en: clip(&body_en, 2000),
        link: Some(format!("/warnings/{}", w.warning_id)),
        task_id: None,
        warning_id: Some(w.warning_id),
        at: w.at,
    }
}

// --- queries ---

#[derive(sqlx::FromRow)]
struct ChannelSubscription {
    id: i64,
    department_id: i64,
    events: Vec<String>,
}

impl Store {
    // --- the notification center ---

    /// A page of a user's notifications, newest first; `unread_only` filters to unread ones.
    pub async fn list_notifications(
        &self,
        user_id: i64,
        unread_only: bool,
        limit: i64,
        offset: i64,
    ) -> Result<NotificationPage> {
        let items: Vec<NotificationRecord> = sqlx::query_as(
            "SELECT id, kind, title_zh, title_en, body_zh, body_en, link, task_id, warning_id, created_at, read_at
             FROM notifications WHERE user_id = $1 AND (NOT $2 OR read_at IS NULL)
             ORDER BY id DESC LIMIT $3 OFFSET $4",
        )
        .bind(user_id)
        .bind(unread_only)
        .bind(limit.clamp(1, 500))
        .bind(offset.max(0))
        .fetch_all(&self.pool)
        .await?;
        let (total, unread): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE NOT $2 OR read_at IS NULL), count(*) FILTER (WHERE read_at IS NULL)
             FROM notifications WHERE user_id = $1",
        )
        .bind(user_id)
        .bind(unread_only)
        .fetch_one(&self.pool)
        .await?;
        Ok(NotificationPage { items, total, unread })
    }

    pub async fn unread_notification_count(&self, user_id: i64) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Marks one of the user's notifications read (reading it again keeps the first time). False
    /// when the user has no such notification, someone else's included.
    pub async fn mark_notification_read(&self, user_id: i64, id: i64) -> Result<bool> {
        let n =
            sqlx::query("UPDATE notifications SET read_at = coalesce(read_at, now()) WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(n == 1)
    }

    /// Marks every unread notification of the user read; returns how many.
    pub async fn mark_all_notifications_read(&self, user_id: i64) -> Result<u64> {
        Ok(sqlx::query("UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL")
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    // --- channels ---

    /// Adds a channel to a department; `None` when the department does not exist.
    pub async fn insert_channel(
        &self,
        department_id: i64,
        settings: &ChannelSettings,
        secret: Option<&str>,
        created_by: &str,
    ) -> Result<Option<ChannelRecord>> {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM departments WHERE id = $1)")
            .bind(department_id)
            .fetch_one(&self.pool)
            .await?;
        if !exists {
            return Ok(None);
        }
        let rec = sqlx::query_as(&format!(
            "INSERT INTO notification_channels (department_id, kind, name, url, secret, recipients, events, enabled, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {CHANNEL_COLS}"
        ))
        .bind(department_id)
        .bind(settings.kind.as_str())
        .bind(&settings.name)
        .bind(settings.url())
        .bind(secret)
        .bind(settings.recipients())
        .bind(settings.event_names())
        .bind(settings.enabled)
        .bind(created_by)
        .fetch_one(&self.pool)
        .await
        .context("inserting a notification channel")?;
        Ok(Some(rec))
    }

    pub async fn channel(&self, id: i64) -> Result<Option<ChannelRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {CHANNEL_COLS} FROM notification_channels WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A department's channels; `None` when the department does not exist.
    pub async fn department_channels(&self, department_id: i64) -> Result<Option<Vec<ChannelRecord>>> {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM departments WHERE id = $1)")
            .bind(department_id)
            .fetch_one(&self.pool)
            .await?;
        if !exists {
            return Ok(None);
        }
        Ok(Some(
            sqlx::query_as(&format!(
                "SELECT {CHANNEL_COLS} FROM notification_channels WHERE department_id = $1 ORDER BY id"
            ))
            .bind(department_id)
            .fetch_all(&self.pool)
            .await?,
        ))
    }

    /// Replaces a channel's settings; the secret is kept, cleared or set. `None` if there is no
    /// such channel.
    pub async fn update_channel(
        &self,
        id: i64,
        settings: &ChannelSettings,
        secret: &SecretChange,
    ) -> Result<Option<ChannelRecord>> {
        let (keep, new_secret) = match secret {
            SecretChange::Keep => (true, None),
            SecretChange::Clear => (false, None),
            SecretChange::Set(s) => (false, Some(s.as_str())),
        };
        sqlx::query_as(&format!(
            "UPDATE notification_channels SET kind = $2, name = $3, url = $4, recipients = $5, events = $6, enabled = $7,
                 secret = CASE WHEN $8 THEN secret ELSE $9 END, updated_at = now()
             WHERE id = $1 RETURNING {CHANNEL_COLS}"
        ))
        .bind(id)
        .bind(settings.kind.as_str())
        .bind(&settings.name)
        .bind(settings.url())
        .bind(settings.recipients())
        .bind(settings.event_names())
        .bind(settings.enabled)
        .bind(keep)
        .bind(new_secret)
        .fetch_optional(&self.pool)
        .await
        .context("updating a notification channel")
    }

    /// Deletes a channel with its deliveries; false if there was none.
    pub async fn delete_channel(&self, id: i64) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM notification_channels WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    /// Queues a delivery of `content` to one channel, due now (a channel test); its id.
    pub async fn queue_delivery(&self, channel_id: i64, content: &NoticeContent) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO notification_deliveries (channel_id, kind, payload) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(channel_id)
        .bind(content.kind.as_str())
        .bind(Json(content))
        .fetch_one(&self.pool)
        .await?)
    }

    /// A channel's deliveries, newest first, each with every attempt.
    pub async fn channel_deliveries(
        &self,
        channel_id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<DeliveryRecord>, i64)> {
        let mut items: Vec<DeliveryRecord> = sqlx::query_as(
            "SELECT id, channel_id, kind, payload, attempts, next_attempt_at, delivered_at, failed_at, last_status,
                    last_error, created_at
             FROM notification_deliveries WHERE channel_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
        )
        .bind(channel_id)
        .bind(limit.clamp(1, 500))
        .bind(offset.max(0))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_deliveries WHERE channel_id = $1")
            .bind(channel_id)
            .fetch_one(&self.pool)
            .await?;
        let ids: Vec<i64> = items.iter().map(|d| d.id).collect();
        let attempts: Vec<AttemptRecord> = sqlx::query_as(
            "SELECT delivery_id, attempt, at, ok, status, error FROM notification_delivery_attempts
             WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut by_delivery: HashMap<i64, Vec<AttemptRecord>> = HashMap::new();
        for a in attempts {
            by_delivery.entry(a.delivery_id).or_default().push(a);
        }
        for d in &mut items {
            d.attempt_log = by_delivery.remove(&d.id).unwrap_or_default();
        }
        Ok((items, total))
    }

    /// One delivery with its attempts.
    pub async fn delivery(&self, id: i64) -> Result<Option<DeliveryRecord>> {
        let d: Option<DeliveryRecord> = sqlx::query_as(
            "SELECT id, channel_id, kind, payload, attempts, next_attempt_at, delivered_at, failed_at, last_status,
                    last_error, created_at
             FROM notification_deliveries WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(mut d) = d else { return Ok(None) };
        d.attempt_log = sqlx::query_as(
            "SELECT delivery_id, attempt, at, ok, status, error FROM notification_delivery_attempts
             WHERE delivery_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(d))
    }

    // --- delivery ---

    /// Claims up to `n` deliveries due at `now` on enabled channels, skipping rows another worker
    /// holds, and leases them until `now + lease` (a worker that dies leaves them to be claimed
    /// again then: delivery is at least once).
    pub async fn claim_due_deliveries(
        &self,
        now: DateTime<Utc>,
        n: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<ClaimedDelivery>> {
        let until = now + chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::minutes(5));
        #[derive(sqlx::FromRow)]
        struct Row {
            id: i64,
            kind: String,
            payload: Json<NoticeContent>,
            attempts: i32,
            channel_id: i64,
            department_id: i64,
            channel_kind: String,
            name: String,
            url: Option<String>,
            secret: Option<String>,
            recipients: Vec<String>,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "WITH due AS (
                 SELECT d.id FROM notification_deliveries d
                 JOIN notification_channels c ON c.id = d.channel_id
                 WHERE d.delivered_at IS NULL AND d.failed_at IS NULL AND d.next_attempt_at <= $1 AND c.enabled
                 ORDER BY d.next_attempt_at, d.id
                 LIMIT $2
                 FOR UPDATE OF d SKIP LOCKED
             )
             UPDATE notification_deliveries d SET next_attempt_at = $3
             FROM due, notification_channels c
             WHERE d.id = due.id AND c.id = d.channel_id
             RETURNING d.id, d.kind, d.payload, d.attempts, c.id AS channel_id, c.department_id, c.kind AS channel_kind,
                       c.name, c.url, c.secret, c.recipients",
        )
        .bind(now)
        .bind(n.min(10_000) as i64)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(ClaimedDelivery {
                id: r.id,
                kind: r.kind.parse().map_err(anyhow::Error::msg)?,
                content: r.payload.0,
                attempts: r.attempts,
                channel: ChannelEndpoint {
                    id: r.channel_id,
                    department_id: r.department_id,
                    kind: r.channel_kind.parse().map_err(anyhow::Error::msg)?,
                    name: r.name,
                    url: r.url,
                    secret: r.secret,
                    recipients: r.recipients,
                },
            });
        }
        Ok(out)
    }

    /// Records an attempt: delivered, to be retried at `next_attempt_at`, or (no next time) failed
    /// for good. Returns the attempt's number.
    pub async fn record_delivery_attempt(&self, a: &DeliveryAttempt) -> Result<i32> {
        let error = a.error.as_deref().map(|e| clip(e, 1000));
        let n: Option<i32> = sqlx::query_scalar(
            "WITH d AS (
                 UPDATE notification_deliveries SET
                     attempts = attempts + 1,
                     delivered_at = CASE WHEN $3 THEN coalesce(delivered_at, $2) ELSE delivered_at END,
                     failed_at = CASE WHEN $3 THEN NULL
                                      WHEN $6::timestamptz IS NULL AND delivered_at IS NULL THEN coalesce(failed_at, $2)
                                      ELSE failed_at END,
                     next_attempt_at = coalesce($6, next_attempt_at),
                     last_status = $4,
                     last_error = CASE WHEN $3 THEN NULL ELSE $5 END
                 WHERE id = $1
                 RETURNING id, attempts
             )
             INSERT INTO notification_delivery_attempts (delivery_id, attempt, at, ok, status, error)
             SELECT id, attempts, $2, $3, $4, $5 FROM d
             RETURNING attempt",
        )
        .bind(a.delivery_id)
        .bind(a.at)
        .bind(a.ok)
        .bind(a.status)
        .bind(error)
        .bind(a.next_attempt_at)
        .fetch_optional(&self.pool)
        .await?;
        n.ok_or_else(|| anyhow::anyhow!("no delivery {}", a.delivery_id))
    }

    // --- fan-out ---

    /// Turns new task events, red warnings and warning escalations into notifications and
    /// deliveries (at most `batch` rows of each source); returns how many source rows it handled.
    /// See the module documentation for the guarantees.
    pub async fn fan_out_notifications(&self, batch: usize) -> Result<usize> {
        Ok(self.fan_out_notifications_report(batch).await?.sources)
    }

    /// [`Store::fan_out_notifications`], saying what it wrote.
    pub async fn fan_out_notifications_report(&self, batch: usize) -> Result<FanOutReport> {
        let mut report = FanOutReport::default();
        for source in Source::ALL {
            self.fan_out_source(source, batch.clamp(1, 10_000), &mut report)
                .await
                .with_context(|| format!("fanning out {}", source.cursor()))?;
        }
        Ok(report)
    }

    async fn fan_out_source(&self, source: Source, batch: usize, report: &mut FanOutReport) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Replicas take turns here; the second one then sees what the first handled.
        let last_id: i64 = sqlx::query_scalar("SELECT last_id FROM notification_cursors WHERE source = $1 FOR UPDATE")
            .bind(source.cursor())
            .fetch_one(&mut *tx)
            .await?;
        let (handled, notices) = match source {
            Source::TaskEvents => self.task_event_notices(&mut tx, last_id, batch).await?,
            Source::Warnings | Source::WarningEscalations => {
                self.warning_notices(&mut tx, source, last_id, batch).await?
            }
        };
        if !notices.is_empty() {
            write_notices(&mut tx, &notices, report).await?;
        }
        if !handled.is_empty() {
            sqlx::query(
                "INSERT INTO notification_fanout_seen (source, source_id, seen_at)
                 SELECT $1, unnest($2::bigint[]), now() ON CONFLICT DO NOTHING",
            )
            .bind(source.cursor())
            .bind(&handled)
            .execute(&mut *tx)
            .await?;
        }
        // Rows come in id order, so every visible row below the highest one handled is handled; a
        // row handled longer ago than the grace period has no unhandled row below it any more.
        let settled: Option<i64> = sqlx::query_scalar(
            "SELECT max(source_id) FROM notification_fanout_seen WHERE source = $1 AND seen_at < now() - $2::interval",
        )
        .bind(source.cursor())
        .bind(format!("{} seconds", FANOUT_GRACE.num_seconds()))
        .fetch_one(&mut *tx)
        .await?;
        let mut next = settled.unwrap_or(last_id);
        if handled.len() == batch {
            // More rows may wait above the last one handled.
            next = next.min(handled.last().copied().unwrap_or(last_id));
        }
        if next > last_id {
            sqlx::query("UPDATE notification_cursors SET last_id = $2, updated_at = now() WHERE source = $1")
                .bind(source.cursor())
                .bind(next)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM notification_fanout_seen WHERE source = $1 AND source_id <= $2")
                .bind(source.cursor())
                .bind(next)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        report.sources += handled.len();
        Ok(())
    }

    /// The accounts that can be notified, with their roles.
    async fn people(tx: &mut Transaction<'_, Postgres>) -> Result<Vec<Person>> {
        let rows: Vec<(i64, String, Option<i64>, Vec<String>)> = sqlx::query_as(
            "SELECT u.id, u.username, u.department_id, array_agg(r.role ORDER BY r.role)
             FROM users u JOIN user_roles r ON r.user_id = u.id
             WHERE NOT u.disabled GROUP BY u.id ORDER BY u.id",
        )
        .fetch_all(&mut **tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, username, department_id, roles)| Person {
                id,
                username,
                department_id,
                roles: roles.iter().filter_map(|r| Role::parse(r)).collect(),
            })
            .collect())
    }

    async fn task_event_notices(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        last_id: i64,
        batch: usize,
    ) -> Result<(Vec<i64>, Vec<Notice>)> {
        let rows: Vec<TaskEventRow> = sqlx::query_as(
            "SELECT e.id, e.task_id, e.at, e.actor, e.action, e.department_id, e.reason, e.detail,
                    t.task_no, t.title, t.level, t.department_id AS lead_department_id, t.reviewer_department_id,
                    t.sign_due, t.signed_at, t.handle_due,
                    ARRAY(SELECT d.department_id FROM task_departments d WHERE d.task_id = t.id ORDER BY d.department_id)
                        AS task_departments
             FROM task_events e JOIN tasks t ON t.id = e.task_id
             WHERE e.id > $1
               AND NOT EXISTS (SELECT 1 FROM notification_fanout_seen s WHERE s.source = 'task_events' AND s.source_id = e.id)
             ORDER BY e.id LIMIT $2",
        )
        .bind(last_id)
        .bind(batch as i64)
        .fetch_all(&mut **tx)
        .await?;
        let handled: Vec<i64> = rows.iter().map(|r| r.id).collect();
        if !rows.iter().any(|r| plan(&r.action).is_some()) {
            return Ok((handled, Vec::new()));
        }
        let people = Self::people(tx).await?;
        let mut notices = Vec::new();
        for e in &rows {
            let Some((kind, who, concerned)) = plan(&e.action) else { continue };
            let mut departments = BTreeSet::new();
            match concerned {
                Concerned::AllOnTask => {
                    departments.extend(e.task_departments.iter().copied());
                    departments.insert(e.lead_department_id);
                    departments.extend(e.department_id);
                }
                Concerned::EventOrLead => {
                    departments.insert(e.department_id.unwrap_or(e.lead_department_id));
                }
                Concerned::LeadAndEvent => {
                    departments.insert(e.lead_department_id);
                    departments.extend(e.department_id);
                }
                Concerned::Lead => {
                    departments.insert(e.lead_department_id);
                }
                Concerned::Nobody => {}
            }
            notices.push(notice(
                (Source::TaskEvents, e.id),
                task_content(kind, e),
                &people,
                who,
                departments,
                e.reviewer_department_id,
                Some(&e.actor),
            ));
        }
        Ok((handled, notices))
    }

    async fn warning_notices(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        source: Source,
        last_id: i64,
        batch: usize,
    ) -> Result<(Vec<i64>, Vec<Notice>)> {
        // Every new warning is read (so the cursor moves), only red ones notify.
        let sql = match source {
            Source::Warnings => {
                "SELECT w.id, w.id AS warning_id, w.first_seen AS at, w.level, w.detail, w.object_id,
                        o.name AS object_name, o.department_id AS object_department_id,
                        dv.id AS device_id, dv.name AS device_name, NULL::text AS reason
                 FROM warnings w
                 JOIN devices dv ON dv.key = w.device_key
                 LEFT JOIN objects o ON o.id = w.object_id
                 WHERE w.id > $1
                   AND NOT EXISTS (SELECT 1 FROM notification_fanout_seen s WHERE s.source = 'warnings' AND s.source_id = w.id)
                 ORDER BY w.id LIMIT $2"
            }
            _ => {
                "SELECT x.id, w.id AS warning_id, x.at, w.level, w.detail, w.object_id,
                        o.name AS object_name, o.department_id AS object_department_id,
                        dv.id AS device_id, dv.name AS device_name, x.reason
                 FROM warning_escalations x
                 JOIN warnings w ON w.id = x.warning_id
                 JOIN devices dv ON dv.key = w.device_key
                 LEFT JOIN objects o ON o.id = w.object_id
                 WHERE x.id > $1
                   AND NOT EXISTS (SELECT 1 FROM notification_fanout_seen s
                                   WHERE s.source = 'warning_escalations' AND s.source_id = x.id)
                 ORDER BY x.id LIMIT $2"
            }
        };
        let rows: Vec<WarningRow> = sqlx::query_as(sql).bind(last_id).bind(batch as i64).fetch_all(&mut **tx).await?;
        let handled: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let relevant: Vec<&WarningRow> =
            rows.iter().filter(|w| source == Source::WarningEscalations || w.level == 1).collect();
        if relevant.is_empty() {
            return Ok((handled, Vec::new()));
        }
        let people = Self::people(tx).await?;
        let notices = relevant
            .into_iter()
            .map(|w| {
                let (kind, who) = match source {
                    Source::Warnings => (NoticeKind::RedWarning, Audience::Monitors),
                    _ => (NoticeKind::WarningNotAcknowledged, Audience::MonitorLeaders),
                };
                // The object's department hears of red warnings on its channels.
                let concerned: BTreeSet<i64> = match kind {
                    NoticeKind::RedWarning => w.object_department_id.into_iter().collect(),
                    _ => BTreeSet::new(),
                };
                notice((source, w.id), warning_content(kind, w), &people, who, concerned, None, None)
            })
            .collect();
        Ok((handled, notices))
    }
}

/// Writes the notifications and deliveries of a batch of notices.
async fn write_notices(
    tx: &mut Transaction<'_, Postgres>,
    notices: &[Notice],
    report: &mut FanOutReport,
) -> Result<()> {
    let channels: Vec<ChannelSubscription> =
        sqlx::query_as("SELECT id, department_id, events FROM notification_channels WHERE enabled ORDER BY id")
            .fetch_all(&mut **tx)
            .await?;

    // In-app: one row per (notice, user), in one statement.
    let mut user_ids = Vec::new();
    let (mut kinds, mut titles_zh, mut titles_en, mut bodies_zh, mut bodies_en) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut links, mut task_ids, mut warning_ids, mut sources, mut source_ids) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Deliveries: one row per (notice, channel).
    let (mut d_channels, mut d_kinds, mut d_sources, mut d_source_ids, mut d_payloads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for n in notices {
        let c = &n.content;
        for u in &n.users {
            user_ids.push(*u);
            kinds.push(c.kind.as_str());
            titles_zh.push(c.title_zh.as_str());
            titles_en.push(c.title_en.as_str());
            bodies_zh.push(c.body_zh.as_str());
            bodies_en.push(c.body_en.as_str());
            links.push(c.link.as_deref());
            task_ids.push(c.task_id);
            warning_ids.push(c.warning_id);
            sources.push(n.source.row());
            source_ids.push(n.source_id);
        }
        let payload = serde_json::to_value(c)?;
        for ch in channels.iter().filter(|ch| {
            n.channel_departments.contains(&ch.department_id) && ch.events.iter().any(|e| e == c.kind.as_str())
        }) {
            d_channels.push(ch.id);
            d_kinds.push(c.kind.as_str());
            d_sources.push(n.source.row());
            d_source_ids.push(n.source_id);
            d_payloads.push(payload.clone());
        }
    }
    if !user_ids.is_empty() {
        let written: Vec<String> = sqlx::query_scalar(
            "INSERT INTO notifications (user_id, kind, title_zh, title_en, body_zh, body_en, link, task_id, warning_id,
                                        source, source_id)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                                  $8::bigint[], $9::bigint[], $10::text[], $11::bigint[])
             ON CONFLICT ON CONSTRAINT notifications_once DO NOTHING
             RETURNING kind",
        )
        .bind(&user_ids)
        .bind(&kinds)
        .bind(&titles_zh)
        .bind(&titles_en)
        .bind(&bodies_zh)
        .bind(&bodies_en)
        .bind(&links)
        .bind(&task_ids)
        .bind(&warning_ids)
        .bind(&sources)
        .bind(&source_ids)
        .fetch_all(&mut **tx)
        .await?;
        for k in written {
            if let Some(k) = NoticeKind::parse(&k) {
                *report.notifications.entry(k).or_default() += 1;
            }
        }
    }
    if !d_channels.is_empty() {
        let n = sqlx::query(
            "INSERT INTO notification_deliveries (channel_id, kind, source, source_id, payload)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[])
             ON CONFLICT ON CONSTRAINT notification_deliveries_once DO NOTHING",
        )
        .bind(&d_channels)
        .bind(&d_kinds)
        .bind(&d_sources)
        .bind(&d_source_ids)
        .bind(&d_payloads)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        report.deliveries += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_print_and_parse_snake_case() {
        for k in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(k.as_str()), Some(*k));
            assert_eq!(k.to_string().parse::<NoticeKind>().unwrap(), *k);
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
            assert!(k.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{k}");
            assert!(!k.name_zh().is_empty());
        }
        assert_eq!(NoticeKind::WarningNotAcknowledged.as_str(), "warning_not_acknowledged");
        assert_eq!("new_task".parse::<NoticeKind>().unwrap(), NoticeKind::NewTask);
        assert!("NewTask".parse::<NoticeKind>().is_err());
        for k in ChannelKind::ALL {
            assert_eq!(ChannelKind::parse(k.as_str()), Some(*k));
        }
    }

    #[test]
    fn actions_map_to_kinds() {
        assert_eq!(notice_for_action("dispatched"), Some(NoticeKind::NewTask));
        assert_eq!(notice_for_action("redispatched"), Some(NoticeKind::NewTask));
        assert_eq!(notice_for_action("remind"), Some(NoticeKind::Reminder));
        assert_eq!(notice_for_action("escalate"), Some(NoticeKind::Escalation));
        assert_eq!(notice_for_action("extension_refused"), Some(NoticeKind::ExtensionRefused));
        for quiet in ["comment", "attachment", "signed", "started", "archived", "approved", "whatever"] {
            assert_eq!(notice_for_action(quiet), None, "{quiet}");
        }
    }

    #[test]
    fn emails_and_urls_parse() {
        for good in ["a@b.cn", "zhang.san+ops@market.hz.gov.cn", "x_1@mail-1.example.org"] {
            assert!(EmailAddress::parse(good).is_some(), "{good}");
        }
        for bad in ["", "a", "a@b", "@b.cn", "a@@b.cn", "a@b..cn", ".a@b.cn", "a b@c.cn", "a@-b.cn", "张三@b.cn"] {
            assert!(EmailAddress::parse(bad).is_none(), "{bad}");
        }
        for good in ["https://oapi.dingtalk.com/robot/send?access_token=abc", "http://127.0.0.1:8080/hook"] {
            assert!(ChannelUrl::parse(good).is_some(), "{good}");
        }
        for bad in
            ["ftp://x.cn/a", "javascript:alert(1)", "file:///etc/passwd", "https://", "not a url", "mailto:a@b.cn"]
        {
            assert!(ChannelUrl::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn channel_settings_parse() {
        let s = ChannelSettings::parse("wecom", " 值班群 ", Some("https://qyapi.example/send?key=k"), &[], None, true)
            .unwrap();
        assert_eq!(s.name, "值班群");
        assert_eq!(s.events, DEFAULT_CHANNEL_EVENTS.to_vec());
        assert!(s.check_secret(&SecretChange::Set("x".into())).is_err(), "wecom has no secret");
        let mail = ChannelSettings::parse(
            "email",
            "科室邮箱",
            None,
            &["a@b.cn".into(), "a@b.cn".into()],
            Some(&["closed".into()]),
            true,
        )
        .unwrap();
        assert_eq!(mail.target, ChannelTarget::Email(vec![EmailAddress::parse("a@b.cn").unwrap()]));
        let err = |r: Result<ChannelSettings, FieldError>| r.unwrap_err().field;
        assert_eq!(err(ChannelSettings::parse("sms", "n", Some("https://a.cn"), &[], None, true)), "kind");
        assert_eq!(err(ChannelSettings::parse("webhook", "", Some("https://a.cn"), &[], None, true)), "name");
        assert_eq!(err(ChannelSettings::parse("webhook", "n", Some("ftp://a.cn"), &[], None, true)), "url");
        assert_eq!(err(ChannelSettings::parse("webhook", "n", None, &[], None, true)), "url");
        assert_eq!(err(ChannelSettings::parse("email", "n", None, &["nobody".into()], None, true)), "recipients");
        assert_eq!(err(ChannelSettings::parse("email", "n", None, &[], None, true)), "recipients");
        assert_eq!(err(ChannelSettings::parse("webhook", "n", Some("https://a.cn"), &[], Some(&[]), true)), "events");
        assert_eq!(
            err(ChannelSettings::parse(
                "webhook",
                "n",
                Some("https://a.cn"),
                &[],
                Some(&["channel_test".into()]),
                true
            )),
            "events"
        );
    }

    #[test]
    fn audiences_follow_roles_and_departments() {
        let p = |id, dept: Option<i64>, roles: &[Role]| Person {
            id,
            username: format!("u{id}"),
            department_id: dept,
            roles: roles.to_vec(),
        };
        let people = vec![
            p(1, Some(10), &[Role::Handler]),
            p(2, Some(10), &[Role::Leader]),
            p(3, Some(20), &[Role::Handler]),
            p(4, None, &[Role::Monitor]),
            p(5, Some(30), &[Role::Monitor, Role::Leader]),
            p(6, None, &[Role::Resupervision]),
            p(7, Some(40), &[Role::Reviewer]),
        ];
        let ids = |who, depts: &[i64], reviewer| -> Vec<i64> {
            audience(&people, who, &depts.iter().copied().collect(), reviewer).iter().map(|p| p.id).collect()
        };
        assert_eq!(ids(Audience::DepartmentStaff, &[10], None), vec![1, 2]);
        assert_eq!(ids(Audience::DepartmentStaff, &[10, 20], None), vec![1, 2, 3]);
        assert_eq!(ids(Audience::DepartmentHandlers, &[10], None), vec![1]);
        assert_eq!(ids(Audience::Supervisors, &[10], None), vec![2, 6]);
        assert_eq!(ids(Audience::EscalationChain, &[10], None), vec![2, 5, 6]);
        assert_eq!(ids(Audience::Dispatchers, &[], None), vec![4, 5]);
        assert_eq!(ids(Audience::Dispatchers, &[], Some(40)), vec![4, 5, 7]);
        assert_eq!(ids(Audience::MonitorLeaders, &[], None), vec![5]);
    }
}
