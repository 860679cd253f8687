//! The platform's own MQTT account on the broker's internal listener, for tiers and commands
//! that run as separate processes.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use offsite_wire::client_id;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

use crate::configuration::Config;

/// The internal account's password: from the configuration, else from the data directory.
pub fn password(cfg: &Config) -> Result<String> {
    match &cfg.internal_mqtt.password {
        Some(p) => Ok(p.clone()),
        None => offsite_broker::internal_password(&cfg.data_dir)
            .context("reading the internal MQTT password (set internal_mqtt.password or share the data directory)"),
    }
}

/// Publishes one message at QoS 1 and returns once the broker has acknowledged it.
pub async fn publish_once(cfg: &Config, topic: &str, payload: Vec<u8>) -> Result<()> {
    let m = &cfg.internal_mqtt;
    let mut opts = MqttOptions::new(client_id::for_connection("offsite-cli"), m.host.clone(), m.port);
    opts.set_credentials(m.username.clone(), password(cfg)?);
    opts.set_clean_session(true);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(opts, 10);
    client.publish(topic, QoS::AtLeastOnce, false, payload).await?;
    let wait = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(Event::Incoming(Packet::ConnAck(c))) if c.code != rumqttc::ConnectReturnCode::Success => {
                    bail!("the broker refused the internal account: {:?}", c.code)
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => bail!("disconnected"),
                Ok(_) => {}
                Err(e) => bail!("cannot reach the broker at {}:{}: {e}", m.host, m.port),
            }
        }
    };
    let r = tokio::time::timeout(Duration::from_secs(10), wait).await.context("timed out publishing to the broker")?;
    // Dropping the client and its event loop closes the connection; no DISCONNECT packet (see
    // `offsite_wire::client_id`).
    drop((client, events));
    r
}

/// The portal's way to devices (the zone editor's commands): one QoS 1 publish per command on the
/// internal account.
pub struct InternalCommands(pub Config);

#[async_trait::async_trait]
impl offsite_portal::commands::CommandPublisher for InternalCommands {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<()> {
        publish_once(&self.0, topic, payload).await
    }
}

/// The all-in-one portal's way to devices: the broker's in-process link (the one ingest
/// acknowledges through), so `offsite up` needs no plain listener for the zone editor. QoS 0 on
/// the link, like acknowledgements; an unanswered command is sent again when the device reports
/// online.
pub struct LinkCommands(pub flume::Sender<(String, Vec<u8>)>);

#[async_trait::async_trait]
impl offsite_portal::commands::CommandPublisher for LinkCommands {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<()> {
        self.0.send_async((topic.to_owned(), payload)).await.context("the broker link is closed")
    }
}
