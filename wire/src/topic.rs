//! Topic layout: `/tenants/<device-id>/v1/<channel>`.
//!
//! The leading `/tenants/<id>/` prefix is what the broker enforces for TLS devices, so a topic's
//! device id is the authenticated identity of whoever published on it.

use crate::{DeviceId, IdError, VERSION};

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Device -> platform: a batch of samples (`Batch`).
    Data,
    /// Device -> platform: online/offline (`Status`), also the last will.
    Status,
    /// Platform -> device: acknowledgement of committed batches (`Ack`).
    Ack,
    /// Platform -> device: commands.
    Cmd,
    /// Device -> platform: result of a command.
    CmdAck,
    /// Device -> platform: camera events, status and snapshots (`CameraMessage`).
    Event,
}

impl Channel {
    pub const ALL: [Channel; 6] =
        [Channel::Data, Channel::Status, Channel::Ack, Channel::Cmd, Channel::CmdAck, Channel::Event];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Data => "data",
            Channel::Status => "status",
            Channel::Ack => "ack",
            Channel::Cmd => "cmd",
            Channel::CmdAck => "cmd/ack",
            Channel::Event => "event",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Filter matching this channel for every device (for the platform's subscriptions).
    pub fn all_devices_filter(self) -> String {
        format!("/tenants/+/{VERSION}/{}", self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopicError {
    #[error("topic is not of the form /tenants/<device-id>/v1/<channel>")]
    Layout,
    #[error("bad device id in topic: {0}")]
    Device(#[from] IdError),
    #[error("unknown channel {0:?}")]
    Channel(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub device: DeviceId,
    pub channel: Channel,
}

impl Topic {
    pub fn new(device: DeviceId, channel: Channel) -> Self {
        Self { device, channel }
    }

    pub fn render(&self) -> String {
        format!("/tenants/{}/{VERSION}/{}", self.device, self.channel.as_str())
    }

    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let rest = topic.strip_prefix("/tenants/").ok_or(TopicError::Layout)?;
        let (device, rest) = rest.split_once('/').ok_or(TopicError::Layout)?;
        let channel = rest.strip_prefix(VERSION).and_then(|r| r.strip_prefix('/')).ok_or(TopicError::Layout)?;
        let device = DeviceId::parse(device)?;
        let channel = Channel::parse(channel).ok_or_else(|| TopicError::Channel(channel.to_owned()))?;
        Ok(Self { device, channel })
    }
}

/// The topic prefix a device owns; the broker confines TLS devices to it.
pub fn tenant_prefix(device: &DeviceId) -> String {
    format!("/tenants/{device}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for ch in Channel::ALL {
            let t = Topic::new(DeviceId::parse("abc123").unwrap(), ch);
            assert_eq!(Topic::parse(&t.render()).unwrap(), t);
        }
        assert_eq!(Topic::new(DeviceId::parse("x1").unwrap(), Channel::Data).render(), "/tenants/x1/v1/data");
    }

    #[test]
    fn rejects() {
        assert_eq!(Topic::parse("tenants/x/v1/data"), Err(TopicError::Layout));
        assert_eq!(Topic::parse("/tenants/x/v2/data"), Err(TopicError::Layout));
        assert!(matches!(Topic::parse("/tenants/x-1/v1/data"), Err(TopicError::Device(_))));
        assert!(matches!(Topic::parse("/tenants/x/v1/nope"), Err(TopicError::Channel(_))));
        assert_eq!(Channel::Data.all_devices_filter(), "/tenants/+/v1/data");
    }
}
