//! `offsite edge-agent --config FILE`: the agent that runs on a gateway next to the sensors.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use offsite_edge_agent::{Agent, AgentConfig};
use tracing::info;

use crate::startup::shutdown_signal;

#[derive(Args)]
pub struct EdgeArgs {
    /// Check the configuration and exit.
    #[arg(long)]
    pub check: bool,
}

/// `config`: the agent's TOML file (given with the global `--config`).
pub async fn run(config: &Path, args: EdgeArgs) -> Result<()> {
    let (cfg, base) = AgentConfig::load(config)?;
    if args.check {
        for d in &cfg.devices {
            let c = d.label(&base)?;
            for s in &d.sources {
                offsite_edge_agent::sources::Source::build(s, &base)
                    .with_context(|| format!("device {c}, source {}", s.name))?;
            }
            eprintln!("device {c}: {} source(s) ok", d.sources.len());
        }
        return Ok(());
    }
    let agent = Agent::start(&cfg, &base).await?;
    let progress = async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            for (id, s) in agent.stats() {
                info!(device = %id, connected = s.connected, queued = s.unacked, acked = s.acked, dropped = s.dropped_total, "agent progress");
            }
        }
    };
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = progress => {}
    }
    agent.stop().await;
    Ok(())
}
