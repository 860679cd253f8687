//! Device wire protocol v1: identifiers, topics and payloads. No I/O.
//!
//! Everything a device sends or receives is described here, so the edge agent, ingest and the
//! tests agree by construction. The human-readable contract is `docs/protocol.md`.

mod camera;
pub mod client_id;
mod command;
mod credentials;
mod ids;
pub mod listen;
mod payload;
pub mod publish_window;
mod topic;

pub use camera::{
    zone_metric, BoxN, CameraEventKind, CameraId, CameraMessage, Detection, Point, Snapshot, Zone, ZoneId, ZoneKind,
    MAX_CAMERA_MESSAGE,
};
pub use command::{valid_command_id, Command, CommandAck, CommandAction, SourceSettings, MAX_COMMAND_ID};
pub use credentials::DeviceCredentials;
pub use ids::{DeviceId, IdError, MetricKey};
pub use payload::{
    decode_batch, encode_batch, Ack, Batch, Limits, RejectedSeq, Rejection, RejectReason, Sample, Status,
    Timestamp,
    MAX_SAMPLES_PER_BATCH,
};
pub use topic::{tenant_prefix, Channel, Topic, TopicError};

/// Protocol version segment used in every topic.
pub const VERSION: &str = "v1";
