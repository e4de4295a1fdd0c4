//! Waking waiting workers when PostgreSQL notifies a channel (a build or a
//! batch request queued), so that they need not poll often.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{watch, Notify};

use crate::Store;

/// Wakes the waiters of each channel's `Notify` whenever the channel is
/// notified, until `shutdown` changes; one connection listens to them all.
/// If the connection drops, it reconnects; meanwhile the waiters must still
/// poll.
pub async fn wake_on_notify(
    store: Store,
    channels: Vec<(&'static str, Arc<Notify>)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let names: Vec<&str> = channels.iter().map(|(name, _)| *name).collect();
    loop {
        match PgListener::connect_with(store.pool()).await {
            Ok(mut listener) => {
                if let Err(error) = listener.listen_all(names.iter().copied()).await {
                    tracing::warn!(%error, ?names, "could not LISTEN; polling only");
                } else {
                    loop {
                        tokio::select! {
                            received = listener.recv() => match received {
                                Ok(notification) => channels
                                    .iter()
                                    .filter(|(name, _)| *name == notification.channel())
                                    .for_each(|(_, wake)| wake.notify_waiters()),
                                Err(error) => {
                                    tracing::warn!(%error, ?names, "notifications interrupted; reconnecting");
                                    break;
                                }
                            },
                            _ = shutdown.changed() => return,
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, ?names, "could not connect to LISTEN; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
