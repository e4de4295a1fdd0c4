//! Waiting for builds: the LISTEN connection that wakes idle slots, and each
//! slot's loop of claiming and running builds.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{watch, Notify};
use ubiops_storage::{ClaimedBuild, Store, BUILDS_CHANNEL};

use crate::Worker;

/// Wakes idle slots when a build is queued. If the connection drops, the
/// listener reconnects; meanwhile the slots still poll.
pub(crate) async fn listen(store: Store, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    loop {
        match PgListener::connect_with(store.pool()).await {
            Ok(mut listener) => {
                if let Err(error) = listener.listen(BUILDS_CHANNEL).await {
                    tracing::warn!(%error, "could not LISTEN for builds; polling only");
                } else {
                    loop {
                        tokio::select! {
                            received = listener.recv() => match received {
                                Ok(_) => wake.notify_waiters(),
                                Err(error) => {
                                    tracing::warn!(%error, "build notifications interrupted; reconnecting");
                                    break;
                                }
                            },
                            _ = shutdown.changed() => return,
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not connect to LISTEN for builds; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

impl Worker {
    /// Claims and runs builds until `shutdown`; when the queue has nothing to
    /// claim, waits for a notification or the poll interval. The slot that
    /// `sweeps` also cleans up before each claim.
    pub(crate) async fn run_slot(
        self,
        wake: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
        sweeps: bool,
    ) {
        while !*shutdown.borrow() {
            // Registered before the claim query: `notify_waiters` wakes only
            // futures already registered, so one created after the query
            // would miss a build queued while the query ran, and the build
            // would wait for the poll.
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if sweeps {
                self.sweep().await;
            }
            if let Some(build) = self.claim().await {
                self.build(build, &mut shutdown).await;
                continue;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// The next build to run, if any can be claimed; a failed claim is
    /// logged and counts as none.
    pub(crate) async fn claim(&self) -> Option<ClaimedBuild> {
        let claimed = self
            .store
            .claim_build(
                &self.id,
                self.config.lease.as_secs_f64(),
                self.config.max_attempts,
            )
            .await;
        if let Some(hook) = &self.config.hooks.after_claim {
            hook().await;
        }
        claimed.unwrap_or_else(|error| {
            tracing::warn!(worker = self.id, %error, "could not claim a build");
            None
        })
    }
}
