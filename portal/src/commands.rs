//! Sending commands to devices from the portal. The portal does not link the broker: the process
//! that can reach it (the CLI, through the internal MQTT account) hands the portal a
//! [`CommandPublisher`] with [`crate::AppState::with_commands`]. Without one a command is still
//! recorded, and ingest delivers it when the device next comes online.

use async_trait::async_trait;

/// Publishes one command payload on a device's `cmd` topic (QoS 1).
#[async_trait]
pub trait CommandPublisher: Send + Sync + 'static {
    async fn publish(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()>;
}
