//! Platform commands for HJ 212 loggers: recorded in `device_commands` like every command
//! (`sync_clock`, `set_interval`), sent by this poller over the logger's open connection, resent
//! like the standard says (every 10 s, 3 tries), and answered by the logger's 9011/9012 (conn.rs).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use offsite_wire::{Command, CommandAck};
use tracing::warn;

use super::conn::Downlink;
use super::{metrics, Shared};

const POLL: Duration = Duration::from_secs(1);
const RESEND_AFTER: Duration = Duration::from_secs(10);
const TRIES: u32 = 3;
/// Commands older than this are not sent (as for MQTT devices).
const COMMAND_TTL_DAYS: i64 = 7;

pub(super) async fn poll(shared: Arc<Shared>) {
    let mut sent: HashMap<String, (Instant, u32)> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shared.stop.cancelled() => return,
        }
        let keys: Vec<i32> = shared.loggers.lock().unwrap().keys().copied().collect();
        if keys.is_empty() {
            continue;
        }
        let pending = match shared
            .store
            .pending_hj212_commands(&keys, chrono::Duration::days(COMMAND_TTL_DAYS))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "looking up HJ 212 commands");
                continue;
            }
        };
        sent.retain(|id, _| pending.iter().any(|(p, _, _)| p == id));
        for (id, key, body) in pending {
            let entry = sent.get(&id).copied();
            if entry.is_some_and(|(at, _)| at.elapsed() < RESEND_AFTER) {
                continue;
            }
            if entry.is_some_and(|(_, tries)| tries >= TRIES) {
                metrics::COMMANDS.with_label_values(&["timeout"]).inc();
                let ack = CommandAck {
                    id: id.clone(),
                    ok: false,
                    error: Some(format!(
                        "数采仪 {TRIES} 次未应答 / no answer from the logger after {TRIES} tries"
                    )),
                    state: None,
                };
                if let Err(e) = shared.store.record_command_ack(key, &ack, Utc::now()).await {
                    warn!(command = %id, error = %format!("{e:#}"), "recording an HJ 212 command timeout");
                }
                continue;
            }
            let action = match serde_json::from_value::<Command>(body) {
                Ok(c) => c.action,
                Err(e) => {
                    warn!(command = %id, error = %e, "unreadable HJ 212 command body");
                    continue;
                }
            };
            let tx = shared
                .loggers
                .lock()
                .unwrap()
                .get(&key)
                .map(|h| h.tx.clone());
            if let Some(tx) = tx {
                if tx
                    .try_send(Downlink {
                        command_id: id.clone(),
                        action,
                    })
                    .is_ok()
                {
                    let tries = entry.map_or(0, |(_, t)| t) + 1;
                    sent.insert(id, (Instant::now(), tries));
                }
            }
        }
    }
}
