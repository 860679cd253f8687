//! Reads the devices' retained status messages once the shared subscription is in place.
//!
//! No broker sends retained messages to a `$share` subscription (MQTT 5 says so; rumqttd and
//! mosquitto follow it). A device that reconnects and says `online` while no ingest replica is
//! subscribed (after a broker restart, when `offsite broker` has marked every device offline)
//! would stay offline, and its data warnings inhibited, until it reconnects. So after each
//! (re)subscription ingest reads the retained statuses on a short-lived connection of its own:
//! whatever was published before the shared subscription existed is retained, whatever comes
//! after reaches the shared subscription, so nothing falls between them. Only messages carrying
//! the retain flag are taken from this connection; live ones arrive through the share.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use offsite_wire::{client_id, Channel};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tracing::{info, warn};

use crate::metrics;
use crate::source::{Incoming, MqttSourceConfig};

/// The retained statuses have all arrived once none came for this long after the SUBACK.
const QUIET: Duration = Duration::from_secs(2);
/// Give up on a broker that does not answer (the next reconnect tries again).
const LIMIT: Duration = Duration::from_secs(60);

/// Spawns one replay; it forwards each retained status into `queue` as if received now.
pub fn spawn(cfg: &MqttSourceConfig, queue: flume::Sender<Incoming>) {
    let mut opts = MqttOptions::new(
        client_id::for_connection(&format!("{}-presence", cfg.client_id)),
        cfg.host.clone(),
        cfg.port,
    );
    opts.set_credentials(cfg.username.clone(), cfg.password.clone());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(true);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(opts, 100);
    tokio::spawn(async move {
        let mut replayed = 0u64;
        let mut subscribed = false;
        let outcome: Result<anyhow::Result<()>, _> = tokio::time::timeout(LIMIT, async {
            loop {
                let next = if subscribed {
                    match tokio::time::timeout(QUIET, events.poll()).await {
                        Ok(e) => e,
                        Err(_) => return Ok(()),
                    }
                } else {
                    events.poll().await
                };
                match next {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        client
                            .subscribe(Channel::Status.all_devices_filter(), QoS::AtLeastOnce)
                            .await?;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => subscribed = true,
                    Ok(Event::Incoming(Packet::Publish(p))) if p.retain => {
                        let msg = Incoming {
                            topic: Bytes::from(p.topic.into_bytes()),
                            payload: p.payload,
                            received_at: Utc::now(),
                        };
                        metrics::QUEUE_DEPTH.set(queue.len() as i64);
                        if queue.send_async(msg).await.is_err() {
                            return Ok(());
                        }
                        replayed += 1;
                    }
                    Ok(_) => {}
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => info!(statuses = replayed, "retained device statuses read"),
            Ok(Err(e)) => {
                warn!(error = %e, statuses = replayed, "reading retained device statuses failed")
            }
            Err(_) => warn!(
                statuses = replayed,
                "reading retained device statuses timed out"
            ),
        }
        // Closing the connection is the goodbye: no DISCONNECT packet (`offsite_wire::client_id`
        // says why), and no last will was set.
        drop((client, events));
    });
}
