//! Ingest: device messages in, validated samples durably stored, acknowledgements out.
//!
//! ```text
//! source (in-process link | MQTT shared subscription)
//!   -> processor: parse topic + payload, resolve device and metric ids, batch by rows / time
//!   -> writers (N): dead letters + binary COPY in one commit each
//!   -> acknowledgements to each device, only after the commit
//! ```
//! Invariant: a device's batch is acknowledged only once its rows (or its dead letter) are
//! committed, so a device that resends until acknowledged loses nothing; the store keeps each
//! (device, metric, timestamp) once, so resending never duplicates.

pub mod analytics_feed;
mod camera;
mod config;
pub mod fairness;
pub mod hj212;
pub mod metrics;
mod pipeline;
mod presence_replay;
pub mod progress;
mod source;
mod writer;

pub use camera::CameraSink;
pub use config::IngestConfig;
pub use fairness::DeviceGate;
pub use pipeline::GatewayWork;
pub use source::{wait_for_link_room, AckSink, Incoming, LinkSource, MqttSource, MqttSourceConfig};
pub use writer::{Committed, Tap};

use offsite_store::Store;
use tokio::task::JoinHandle;
pub(crate) use tokio_util_shim::CancellationToken;

/// Minimal cancellation without another dependency: a watch channel.
mod tokio_util_shim {
    #[derive(Clone)]
    pub struct CancellationToken(tokio::sync::watch::Sender<bool>, tokio::sync::watch::Receiver<bool>);
    impl Default for CancellationToken {
        fn default() -> Self {
            let (tx, rx) = tokio::sync::watch::channel(false);
            Self(tx, rx)
        }
    }
    impl CancellationToken {
        pub fn cancel(&self) {
            let _ = self.0.send(true);
        }
        pub async fn cancelled(&self) {
            let mut rx = self.1.clone();
            let _ = rx.wait_for(|v| *v).await;
        }
    }
}

/// A running ingest tier.
pub struct Ingest {
    tasks: Vec<JoinHandle<()>>,
    stop: CancellationToken,
    gateway: flume::Sender<GatewayWork>,
    gate: DeviceGate,
}

/// Where a gateway that authenticates its own devices (HJ 212) hands in their samples, and the
/// per-device budget it paces them by.
#[derive(Clone)]
pub struct GatewaySink {
    pub work: flume::Sender<GatewayWork>,
    pub gate: DeviceGate,
}

impl Ingest {
    /// Starts processing messages from `rx` (fed by a source) and acknowledging through `acks`;
    /// committed rows go on to `tap` (analytics) when given; camera snapshots and warning changes
    /// go to `cameras`. `gate` is the per-device budget the source checks (the same one): ingest
    /// keeps the flooding warnings it raises.
    pub async fn start(
        store: Store,
        cfg: IngestConfig,
        rx: flume::Receiver<Incoming>,
        acks: AckSink,
        tap: Option<Tap>,
        cameras: CameraSink,
        gate: DeviceGate,
    ) -> anyhow::Result<Self> {
        metrics::register();
        let stop = CancellationToken::default();
        let mut tasks = Vec::new();
        let (flush_tx, flush_rx) = flume::bounded(cfg.writers.max(1) * 2);
        let cache = pipeline::Registry::load(store.clone()).await?;
        // Camera messages are few and carry pictures: a short queue, one worker (keeps their order).
        let (camera_tx, camera_rx) = flume::bounded(64);
        // Gateways (HJ 212) wait here when the processor is busy: back-pressure down to their sockets.
        let (gateway, gateway_rx) = flume::bounded(cfg.queue_capacity.max(1));
        tasks.push(tokio::spawn(pipeline::run(cfg.clone(), cache, rx, flush_tx, camera_tx, gateway_rx, stop.clone())));
        tasks.push(tokio::spawn(fairness::warden(gate.clone(), store.clone(), cameras.live.clone(), stop.clone())));
        tasks.push(tokio::spawn(camera::run(store.clone(), cameras, camera_rx, acks.clone())));
        for i in 0..cfg.writers.max(1) {
            tasks.push(tokio::spawn(writer::run(i, store.clone(), flush_rx.clone(), acks.clone(), tap.clone())));
        }
        if cfg.maintain_partitions {
            tasks.push(tokio::spawn(writer::maintain(store.clone(), cfg.clone(), stop.clone())));
        }
        Ok(Self { tasks, stop, gateway, gate })
    }

    /// Where a gateway that authenticates its own devices (HJ 212) hands in their samples.
    pub fn gateway_sink(&self) -> GatewaySink {
        GatewaySink { work: self.gateway.clone(), gate: self.gate.clone() }
    }

    /// Stops after the messages already received are written and acknowledged.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
