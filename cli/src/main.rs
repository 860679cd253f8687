//! `offsite`: the non-site supervision platform in one binary.

mod accounts;
mod analytics_cmd;
mod assets;
mod audit_cmd;
mod backtest_cmd;
mod bench;
mod certs_cmd;
mod configuration;
mod demo;
mod demo_cameras;
mod demo_city;
mod demo_loggers;
mod detectors;
mod device_cmd;
mod edge_cmd;
mod files;
mod internal_mqtt;
mod nab_cmd;
mod ops_http;
mod provisioner;
mod startup;
mod telemetry;
mod tiers;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use configuration::Config;

#[derive(Parser)]
#[command(name = "offsite", version, about = "非现场监管平台 offsite — non-site supervision platform", long_about = None)]
struct Cli {
    /// TOML configuration file; `OFFSITE_<SECTION>__<KEY>` environment variables override it.
    #[arg(long, global = true, env = "OFFSITE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (embedded PostgreSQL, device CA, secrets). Default `./offsite-data`.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Use this PostgreSQL server instead of the embedded cluster.
    #[arg(long, global = true, env = "OFFSITE_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every tier in one process (broker, ingest, portal) until Ctrl-C or SIGTERM.
    Up,
    /// `up` plus a simulated fleet of sensor devices connecting over MQTT/TLS.
    Demo(demo::DemoArgs),
    /// Certificates: `offsite certs init` makes the CA and the server certificate (MQTT/TLS, HTTPS).
    #[command(subcommand)]
    Certs(certs_cmd::CertsCommand),
    /// Provision and manage devices.
    #[command(subcommand)]
    Device(device_cmd::DeviceCommand),
    /// The audit trail: `offsite audit verify` checks its hash chain against the anchors.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Run the edge agent (sensors -> disk queue -> platform) described by `--config FILE`.
    ///
    /// The file names each device's credentials and sources; see deploy/edge-agent.example.toml.
    EdgeAgent(edge_cmd::EdgeArgs),
    /// Run only the MQTT broker (device authentication against the database).
    Broker,
    /// Run only ingest, reading the broker's internal listener with a shared subscription.
    Ingest,
    /// Run only analytics: one of N replicas sharing the shards of the feed ingest publishes
    /// (`[analytics] feed = "shards"` on ingest).
    Analytics,
    /// Run only the HTTP portal.
    Portal,
    /// Benchmarks; each starts what it needs and prints one JSON line last.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run recorded series (CSV, NAB layout) through the live detector chain; write NAB-style results.
    Backtest(backtest_cmd::BacktestArgs),
    /// Score NAB-layout results (`<results>/<category>/<detector>_<file>.csv`) the way NAB does.
    NabScore(nab_cmd::NabScoreArgs),
    /// Print the effective configuration as TOML-compatible JSON.
    Config,
    /// One device front process of `offsite broker` (`[broker] front_processes`); started by it.
    #[command(name = "broker-front", hide = true)]
    BrokerFront {
        #[arg(long)]
        spec: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::EdgeAgent(args) = cli.command {
        return edge_agent(cli.config, args);
    }
    if let Command::BrokerFront { spec } = &cli.command {
        telemetry::init(&configuration::LogConfig::default());
        offsite_broker::install_crypto_provider();
        return offsite_broker::run_front_process(spec);
    }
    let mut cfg = Config::load(cli.config.as_deref(), cli.data_dir.as_deref())?;
    if let Some(url) = cli.database_url {
        cfg.database.url = Some(url);
    }
    telemetry::init(&cfg.log);
    offsite_broker::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Up => tiers::up(cfg).await,
            Command::Demo(args) => demo::run(cfg, args).await,
            Command::Certs(c) => certs_cmd::run(&cfg, c),
            Command::Device(c) => device_cmd::run(cfg, c).await,
            Command::Audit(c) => audit_cmd::run(cfg, c).await,
            Command::EdgeAgent(_) | Command::BrokerFront { .. } => {
                unreachable!("handled before the platform configuration is read")
            }
            Command::Broker => tiers::broker(cfg).await,
            Command::Ingest => tiers::ingest(cfg).await,
            Command::Analytics => analytics_cmd::run(cfg).await,
            Command::Portal => tiers::portal(cfg).await,
            Command::Bench(b) => bench::run(cfg, b).await,
            Command::Backtest(a) => backtest_cmd::run(a),
            Command::NabScore(a) => nab_cmd::run(a),
            Command::Config => {
                println!("{}", serde_json::to_string_pretty(&cfg)?);
                Ok(())
            }
        }
    })
}

/// The agent has its own configuration file and a small runtime: it runs on gateways.
fn edge_agent(config: Option<PathBuf>, args: edge_cmd::EdgeArgs) -> Result<()> {
    let Some(config) = config else {
        anyhow::bail!("offsite edge-agent needs --config FILE (see deploy/edge-agent.example.toml)");
    };
    telemetry::init(&configuration::LogConfig::default());
    offsite_broker::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(edge_cmd::run(&config, args))
}
