//! Live warning changes for the SSE stream.
//!
//! Every stream subscribes to one in-process `broadcast` of [`WarningChange`]s. When the portal runs
//! inside the all-in-one process, the caller hands its own sender over ([`crate::AppState::with_live`]);
//! otherwise [`crate::serve`] starts [`spawn_listener`], which LISTENs on the store's warnings
//! channel over one dedicated connection and feeds the broadcast. Streams therefore hold no database
//! connection while idle, however many there are.

use std::time::Duration;

use offsite_store::{Store, WarningChange, WARNINGS_CHANNEL};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Changes buffered per subscriber before a slow one is told it lagged.
pub const LIVE_CAPACITY: usize = 1024;

/// The `kind` of a change that says "changes may have been missed, refetch": the listener sends it
/// after losing its connection. It carries no warning (`id` 0).
pub const LAGGED_KIND: &str = "lagged";

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A new broadcast for live changes.
pub fn channel() -> broadcast::Sender<WarningChange> {
    broadcast::channel(LIVE_CAPACITY).0
}

/// The change that tells subscribers to refetch.
pub fn lagged() -> WarningChange {
    WarningChange { id: 0, kind: LAGGED_KIND.to_owned() }
}

/// Aborts the task when dropped, so the listener does not outlive the server that started it.
#[derive(Debug)]
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the task that forwards [`WARNINGS_CHANNEL`] notifications into `tx`, reconnecting with
/// backoff when the listener fails. The returned watch turns true whenever it is listening.
pub fn spawn_listener(store: Store, tx: broadcast::Sender<WarningChange>) -> (JoinHandle<()>, watch::Receiver<bool>) {
    let (connected_tx, connected) = watch::channel(false);
    let task = tokio::spawn(listen_forever(store, tx, connected_tx));
    (task, connected)
}

async fn listen_forever(store: Store, tx: broadcast::Sender<WarningChange>, connected: watch::Sender<bool>) {
    let mut backoff = MIN_BACKOFF;
    let mut first = true;
    loop {
        match store.listen(&[WARNINGS_CHANNEL]).await {
            Ok(mut listener) => {
                connected.send_replace(true);
                if !first {
                    tracing::info!("warnings listener reconnected");
                    // Whatever was announced while we were away is lost.
                    let _ = tx.send(lagged());
                }
                first = false;
                backoff = MIN_BACKOFF;
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => match serde_json::from_str::<WarningChange>(n.payload()) {
                            Ok(change) => {
                                // No subscribers is not an error.
                                let _ = tx.send(change);
                            }
                            Err(e) => tracing::warn!(error = %e, payload = n.payload(), "unreadable warning change"),
                        },
                        Ok(None) => {
                            // The connection dropped; the next `try_recv` reconnects and re-listens.
                            tracing::warn!("warnings listener lost its connection; reconnecting");
                            let _ = tx.send(lagged());
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "warnings listener failed");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = format!("{e:#}"), ?backoff, "cannot listen for warning changes; retrying"),
        }
        connected.send_replace(false);
        let _ = tx.send(lagged());
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
