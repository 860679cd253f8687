pub mod devices;
pub mod health;
pub mod metrics;
pub mod series;
