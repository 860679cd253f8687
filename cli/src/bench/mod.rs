//! `offsite bench ...`: each bench starts what it needs and prints one JSON object as its last line.

mod api;
mod broker;
mod detect;
mod edge;
mod hj212;
mod ingest;
mod storage;
mod soak;
mod support;
mod video;

use anyhow::Result;
use clap::Subcommand;

use crate::configuration::Config;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Devices over MQTT/TLS -> broker -> ingest -> PostgreSQL, against raw binary COPY.
    Ingest(ingest::Args),
    /// QoS 1 publish/subscribe through our broker and through Debian's mosquitto.
    Broker(broker::Args),
    /// Samples per second per core through the default detector chain (rules + ONNX on every series).
    Detect(detect::Args),
    /// Memory and CPU of one edge agent serving N simulated devices (default 10 at 1 Hz).
    Edge(edge::Args),
    /// The portal under 64 concurrent clients on 1M tasks and 100k warnings: task inbox, warning list,
    /// task sign-for, department figures.
    Api(api::Args),
    /// How many RTSP camera streams (640x360 H.264, 25 fps) are analysed in real time at 5 fps,
    /// with motion gating off and on; per-frame stage costs; Python onnxruntime on the same frames.
    Video(video::Args),
    /// 2,000 HJ 212 data loggers on their own TCP connections uploading real-time data (CN 2011)
    /// every second: packets answered with 9014, samples committed, reply time.
    Hj212(hj212::Args),
    /// The load generator of `bench hj212`, run by it as a child process.
    #[command(hide = true, name = "hj212-load")]
    Hj212Load(hj212::LoadArgs),
    /// Bytes on disk per stored sample (samples partitions with their index, sample_latest), loaded
    /// through the real write path; a day of a given fleet projected from it.
    Storage(storage::Args),
    /// 10,000 MQTT/TLS devices at half the measured maximum ingest rate for `--minutes`, with a
    /// reconnect storm in the middle; tiers in processes of their own: lost, duplicates, memory.
    Soak(soak::Args),
    /// The load generator of `bench soak`, run by it as a child process.
    #[command(hide = true, name = "soak-load")]
    SoakLoad(soak::LoadArgs),
}

pub async fn run(cfg: Config, cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Ingest(a) => ingest::run(cfg, a).await,
        BenchCommand::Broker(a) => broker::run(cfg, a).await,
        BenchCommand::Edge(a) => edge::run(cfg, a).await,
        BenchCommand::Detect(a) => detect::run(cfg, a).await,
        BenchCommand::Api(a) => api::run(cfg, a).await,
        BenchCommand::Video(a) => video::run(cfg, a).await,
        BenchCommand::Hj212(a) => hj212::run(cfg, a).await,
        BenchCommand::Hj212Load(a) => hj212::load_main(a).await,
        BenchCommand::Storage(a) => storage::run(cfg, a).await,
        BenchCommand::Soak(a) => soak::run(cfg, a).await,
        BenchCommand::SoakLoad(a) => soak::load_main(a).await,
    }
}
