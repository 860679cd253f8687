//! The workflow tier: background jobs that keep tasks moving. The scheduler fires time-limit
//! checkpoints, dispatches red warnings and escalates unacknowledged ones.

pub mod scheduler;
