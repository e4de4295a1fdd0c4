//! Each build slot's loop of claiming and running builds.

use std::sync::Arc;

use tokio::sync::{watch, Notify};
use ubiops_storage::ClaimedBuild;

use crate::Worker;

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
