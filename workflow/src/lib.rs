//! The workflow tier: background jobs that move the supervision workflow along. Each job keeps
//! its state in PostgreSQL (through `offsite-store`), so any process may run it and a restart
//! loses nothing.
//!
//! - [`scheduler`]: fires time-limit checkpoints (remind / supervise / escalate), dispatches red
//!   warnings of items configured for it, escalates warnings nobody acknowledged.
//! - [`notify`]: turns workflow events into in-app notifications and delivers them to the
//!   departments' outbound channels (webhook, WeCom, DingTalk, e-mail), with retries.
//! - [`retention`]: deletes old camera snapshots unless a task or case holds them.

pub mod notify;
pub mod retention;
pub mod scheduler;
