//! The HJ 212-2017 gateway: data loggers connect over TCP (the platform is the server), log in with
//! MN + PW on their first packet, and upload data that becomes samples through ingest's own
//! processor/writer path. Protocol facts and leniency: docs/protocol.md ("HJ 212-2017").
//!
//! ```text
//! accept (bounded by max_connections) -> one task per connection: Framer -> Packet::parse -> login
//!   -> Reassembler -> CN 20xx: GatewayWork to the processor -> commit -> 9014 (Flag bit A)
//! command poller: device_commands (sync_clock, set_interval) of connected loggers -> 1012/1062
//!   -> the logger's 9011/9012 recorded as the command's answer
//! ```

mod commands;
mod conn;
pub mod metrics;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use offsite_store::Store;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{CancellationToken, DeviceGate, GatewaySink, GatewayWork};

/// `[hj212]` in the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Hj212Config {
    pub enabled: bool,
    pub listen: String,
    /// A logged-in connection that sends nothing for this long is closed (a dead peer would
    /// otherwise hold a socket forever). Above the longest upload interval: hourly-only loggers exist.
    pub idle_timeout_s: u64,
    /// A packet must arrive whole within this long once it has started (slow-loris guard), and a
    /// new connection must have logged in within this long.
    pub partial_timeout_s: u64,
    /// Connections beyond this are closed at once and counted.
    pub max_connections: usize,
    /// Failed logins after which the connection is closed.
    pub max_auth_failures: u32,
}

impl Default for Hj212Config {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:9212".into(),
            idle_timeout_s: 3900,
            partial_timeout_s: 30,
            max_connections: 10_000,
            max_auth_failures: 3,
        }
    }
}

/// What the gateway shares between its connections and its command poller.
pub(crate) struct Shared {
    pub store: Store,
    pub cfg: Hj212Config,
    pub sink: flume::Sender<GatewayWork>,
    /// The per-device budget: a logger over it has its connection paced (not read until allowed).
    pub gate: DeviceGate,
    /// Logged-in connections by device key: where to send platform commands.
    pub loggers: Mutex<HashMap<i32, conn::LoggerHandle>>,
    pub stop: CancellationToken,
}

/// A running HJ 212 gateway.
pub struct Hj212Gateway {
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    stop: CancellationToken,
}

impl Hj212Gateway {
    /// Binds `cfg.listen` (so the port accepts before this returns) and serves until `shutdown`.
    pub async fn start(
        store: Store,
        cfg: Hj212Config,
        sink: GatewaySink,
    ) -> anyhow::Result<Self> {
        metrics::register();
        let listener = TcpListener::bind(&cfg.listen)
            .await
            .map_err(|e| anyhow::anyhow!("HJ 212 gateway cannot listen on {}: {e}", cfg.listen))?;
        let local_addr = listener.local_addr()?;
        info!(%local_addr, "HJ 212 gateway listening");
        let stop = CancellationToken::default();
        let shared = Arc::new(Shared {
            store,
            cfg,
            sink: sink.work,
            gate: sink.gate,
            loggers: Mutex::new(HashMap::new()),
            stop: stop.clone(),
        });
        let tasks = vec![
            tokio::spawn(accept_loop(listener, shared.clone())),
            tokio::spawn(commands::poll(shared.clone())),
        ];
        Ok(Self {
            local_addr,
            tasks,
            stop,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes connections (their committed data has been answered or will be
    /// resent by the logger) and ends the command poller.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.cfg.max_connections.max(1)));
    let mut next_id: u64 = 0;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shared.stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                warn!(error = %e, "HJ 212 accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::REJECTED
                .with_label_values(&["too_many_connections"])
                .inc();
            warn!(%peer, limit = shared.cfg.max_connections, "HJ 212 connection refused: too many connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let shared = shared.clone();
        let id = next_id;
        tokio::spawn(async move {
            metrics::CONNECTIONS.inc();
            conn::serve(id, stream, peer, shared).await;
            metrics::CONNECTIONS.dec();
            drop(permit);
        });
    }
}
