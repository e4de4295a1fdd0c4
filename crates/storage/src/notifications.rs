//! Waking waiting workers when PostgreSQL notifies a channel (a build or a
//! batch request queued), so that they need not poll often.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{watch, Notify};

use crate::Store;

/// Wakes `wake`'s waiters whenever `channel` is notified, until `shutdown`
/// changes. If the connection drops, it reconnects; meanwhile the waiters
/// must still poll.
pub async fn wake_on_notify(
    store: Store,
    channel: &'static str,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match PgListener::connect_with(store.pool()).await {
            Ok(mut listener) => {
                if let Err(error) = listener.listen(channel).await {
                    tracing::warn!(%error, channel, "could not LISTEN; polling only");
                } else {
                    loop {
                        tokio::select! {
                            received = listener.recv() => match received {
                                Ok(_) => wake.notify_waiters(),
                                Err(error) => {
                                    tracing::warn!(%error, channel, "notifications interrupted; reconnecting");
                                    break;
                                }
                            },
                            _ = shutdown.changed() => return,
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, channel, "could not connect to LISTEN; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
