//! Reading from in-process links (`BrokerBuilder::link`).

use rumqttd::local::{LinkError, LinkRx};
use rumqttd::protocol::Publish;
use rumqttd::Notification;

/// Waits for the next message forwarded to an in-process link.
///
/// Handles rumqttd's flow control: when the link's buffer fills up the router sends
/// `Notification::Unschedule` and stops forwarding until the link says `ready()`; a reader that
/// ignores it stalls for good. Acknowledgements are skipped. `Ok(None)` when the router
/// disconnects the link.
pub async fn next_publish(rx: &mut LinkRx) -> Result<Option<Publish>, LinkError> {
    loop {
        match rx.next().await? {
            Some(Notification::Forward(f)) => return Ok(Some(f.publish)),
            Some(Notification::Unschedule) => rx.ready()?,
            Some(Notification::Disconnect(..)) => return Ok(None),
            Some(_) | None => {}
        }
    }
}
