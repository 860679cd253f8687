//! `up` and the one-tier-per-process subcommands.

use anyhow::Result;
use offsite_broker::BrokerBuilder;
use offsite_ingest::{Incoming, Ingest, MqttSource, MqttSourceConfig};
use tracing::info;

use crate::configuration::Config;
use crate::startup::{self, shutdown_signal, AllInOne, Database};

pub async fn up(cfg: Config) -> Result<()> {
    let p = AllInOne::start(&cfg).await?;
    print_banner(&cfg, &p);
    shutdown_signal().await;
    p.stop().await
}

pub fn print_banner(cfg: &Config, p: &AllInOne) {
    let listen = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
    eprintln!("offsite is running / 平台已启动");
    eprintln!("  portal  门户      http://{}/", p.portal_addr);
    eprintln!("  health  健康检查  http://{}/healthz", p.portal_addr);
    eprintln!("  MQTT/TLS devices  {}", listen(cfg.broker.tls_listen));
    eprintln!("  MQTT internal     {}", listen(cfg.broker.plain_listen));
    eprintln!("  data directory    {}", cfg.data_dir.display());
    eprintln!("Stop with Ctrl-C. 按 Ctrl-C 停止。");
}

pub async fn broker(cfg: Config) -> Result<()> {
    let db = Database::open(&cfg).await?;
    let pki = startup::pki(&cfg)?;
    let internal = offsite_broker::internal_password(&cfg.data_dir)?;
    let builder = BrokerBuilder::new(&cfg.broker, &pki, db.store.clone(), internal)?;
    db.store.mark_all_offline().await?;
    let _handle = builder.spawn()?;
    info!("broker running");
    shutdown_signal().await;
    db.close().await
}

pub async fn ingest(cfg: Config) -> Result<()> {
    let db = Database::open(&cfg).await?;
    let m = &cfg.internal_mqtt;
    let password = crate::internal_mqtt::password(&cfg)?;
    let (queue_tx, queue_rx) = flume::bounded::<Incoming>(cfg.ingest.queue_capacity);
    let acks = MqttSource::start(
        MqttSourceConfig {
            host: m.host.clone(),
            port: m.port,
            username: m.username.clone(),
            password,
            group: m.group.clone(),
            client_id: format!("offsite-ingest-{}", rand::random::<u32>()),
        },
        queue_tx,
    );
    let ingest = Ingest::start(db.store.clone(), cfg.ingest.clone(), queue_rx, acks, None).await?;
    info!(broker = %format!("{}:{}", m.host, m.port), "ingest running");
    shutdown_signal().await;
    ingest.shutdown().await;
    db.close().await
}

pub async fn portal(cfg: Config) -> Result<()> {
    let db = Database::open(&cfg).await?;
    let store = db.store.clone();
    let r = offsite_portal::run(&cfg.portal, store, shutdown_signal()).await;
    db.close().await?;
    r
}
