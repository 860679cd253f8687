//! The workflow tier: background jobs that move the supervision workflow along. Each job keeps
//! its state in PostgreSQL (through `offsite-store`), so any process may run it and a restart
//! loses nothing.
//!
//! - [`notify`]: turns workflow events into in-app notifications and delivers them to the
//!   departments' outbound channels (webhook, WeCom, DingTalk, e-mail), with retries.

pub mod notify;
