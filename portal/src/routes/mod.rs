pub mod auth;
pub mod devices;
pub mod health;
pub mod metrics;
pub mod rules;
pub mod series;
pub mod silences;
pub mod warnings;
