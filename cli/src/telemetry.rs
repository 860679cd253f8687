//! Logging with `tracing`: human-readable text by default, JSON lines for log collectors.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

use crate::configuration::LogConfig;

pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.filter));
    // Colours only for a person at a terminal: a file, journald or a collector gets plain text.
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal());
    let r = if cfg.format == "json" { builder.json().try_init() } else { builder.try_init() };
    // A second init (tests) is harmless.
    let _ = r;
}
