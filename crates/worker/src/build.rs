//! Running one claimed build: its stages (see `stages`), the lease kept
//! alive and the cancel watched meanwhile, and what becomes of the build
//! when the stages end: published, retried after a fault, given up, or given
//! back at shutdown.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use ubiops_domain::logs::Level;
use ubiops_storage::{BuildOutcome, ClaimedBuild, Store};
use uuid::Uuid;

use crate::retry::{backoff, Fault};
use crate::Worker;

/// How often a running build asks whether it is still its worker's: how
/// soon a cancel stops an install or an import.
const CANCEL_CHECK: Duration = Duration::from_millis(500);

/// Why the stages stopped without an outcome.
pub(crate) enum Stopped {
    /// Cancelled, or taken over by another worker after the lease ran out.
    Lost,
    /// Worth another attempt.
    Fault(Fault),
}

pub(crate) fn transient(error: impl std::fmt::Display) -> Stopped {
    Stopped::Fault(Fault::Transient(error.to_string()))
}

/// A finished check: the outcome, with what validation found (log lines to
/// write with it).
pub(crate) type Checked = (BuildOutcome, Vec<String>);

impl Worker {
    /// Runs one build to its end, or until the fault that stops it is dealt
    /// with.
    pub(crate) async fn build(&self, build: ClaimedBuild, shutdown: &mut watch::Receiver<bool>) {
        let span = tracing::info_span!("build", build = %build.id, worker = self.id, attempt = build.attempts);
        self.run_build(build, shutdown).instrument(span).await
    }

    async fn run_build(&self, build: ClaimedBuild, shutdown: &mut watch::Receiver<bool>) {
        tracing::info!("build started");
        self.log(
            &build,
            vec![
                (
                    Level::Info,
                    format!(
                        "Build picked up by worker {} (attempt {})",
                        self.id, build.attempts
                    ),
                ),
                (
                    Level::Info,
                    "Building: fetching and extracting the deployment package".to_owned(),
                ),
            ],
        )
        .await;
        let lost = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            self.store.clone(),
            build.id,
            self.id.clone(),
            self.config.lease,
            lost.clone(),
        ));
        let result = tokio::select! {
            result = self.stages(&build, &lost) => Some(result),
            _ = shutdown.changed() => None,
        };
        heartbeat.abort();
        match result {
            None => {
                tracing::info!("shutting down: the build goes back to the queue");
                if let Err(error) = self.store.release_build(build.id, &self.id).await {
                    tracing::warn!(%error, "could not release the build; it is retried when its lease expires");
                }
                self.log_one(
                    &build,
                    "The worker is stopping: the build goes back to the queue".to_owned(),
                )
                .await;
            }
            Some(Err(Stopped::Lost)) => tracing::info!("build stopped: cancelled or taken over"),
            Some(Err(Stopped::Fault(fault))) => self.retry_or_give_up(&build, fault).await,
            Some(Ok((outcome, findings))) => self.publish(&build, outcome, findings).await,
        }
    }

    /// Requeues the build after a back-off, or fails it once its attempts
    /// are used up (see `retry`).
    async fn retry_or_give_up(&self, build: &ClaimedBuild, fault: Fault) {
        let cause = fault.cause();
        if build.attempts >= self.config.max_attempts {
            tracing::warn!(
                cause,
                "build stopped by a fault on its last attempt; it fails"
            );
            let message = fault.give_up_message(build.attempts);
            self.publish(build, BuildOutcome::Failed(message), Vec::new())
                .await;
            return;
        }
        let delay = self.requeue(build).await;
        tracing::warn!(cause, ?delay, "build stopped by a fault; it is retried");
        let line = fault.retry_line(build.attempts, self.config.max_attempts, delay);
        self.log_one(build, line).await;
    }

    /// Puts the build back in the queue to wait out its back-off; if even
    /// that fails, the build is retried when its lease expires.
    async fn requeue(&self, build: &ClaimedBuild) -> Duration {
        let delay = backoff(
            self.config.retry_base,
            self.config.retry_cap,
            build.attempts,
        );
        if let Err(error) = self
            .store
            .retry_build(build.id, &self.id, delay.as_secs_f64())
            .await
        {
            tracing::warn!(%error, "could not requeue the build; it is retried when its lease expires");
        }
        delay
    }

    /// Publishes the outcome, with its log lines.
    async fn publish(&self, build: &ClaimedBuild, outcome: BuildOutcome, findings: Vec<String>) {
        match self.store.finish_build(build, &self.id, &outcome).await {
            Ok(true) => {
                tracing::info!(?outcome, "build finished");
                let mut lines: Vec<(Level, String)> = findings
                    .into_iter()
                    .map(|line| (Level::Info, line))
                    .collect();
                lines.push(match &outcome {
                    BuildOutcome::Success { .. } => (
                        Level::Info,
                        format!(
                            "Build succeeded: revision {} is now the active revision of version {}",
                            build.revision_id, build.version_name
                        ),
                    ),
                    BuildOutcome::Failed(message) => {
                        (Level::Error, format!("Build failed: {message}"))
                    }
                });
                self.log(build, lines).await;
                if matches!(
                    outcome,
                    BuildOutcome::Success {
                        environment: Some(_),
                        ..
                    }
                ) {
                    self.evict_environments().await;
                }
            }
            Ok(false) => tracing::info!("build was cancelled before it could be published"),
            Err(error) => {
                // Not through `retry_or_give_up`: giving up publishes too.
                let delay = self.requeue(build).await;
                tracing::warn!(%error, ?delay, "could not publish the build; it is retried");
            }
        }
    }

    /// Runs a step of the inspector on a blocking thread. A panic there is
    /// a crash of the inspector, which another attempt may or may not
    /// survive: it counts as a fault, never as the package's fault.
    pub(crate) async fn inspect<T: Send + 'static>(
        &self,
        step: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let hook = self.config.hooks.before_inspect.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(hook) = hook {
                hook();
            }
            step()
        })
        .await
        .map_err(|error| match error.try_into_panic() {
            Ok(panic) => Stopped::Fault(Fault::Crash(panic_message(panic.as_ref()))),
            Err(error) => transient(error),
        })
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    format!("the inspector panicked: {text}")
}

/// Renews the lease while the build runs, and in between asks whether the
/// build is still ours; cancels `lost` when it was cancelled or taken over,
/// which stops what the stages run at once.
async fn heartbeat(
    store: Store,
    id: Uuid,
    worker_id: String,
    lease: Duration,
    lost: CancellationToken,
) {
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(CANCEL_CHECK).await;
        let ours = if renewed.elapsed() >= lease / 3 {
            renewed = tokio::time::Instant::now();
            store
                .renew_build_lease(id, &worker_id, lease.as_secs_f64())
                .await
        } else {
            store.build_is_ours(id, &worker_id).await
        };
        match ours {
            Ok(true) => {}
            Ok(false) => {
                lost.cancel();
                return;
            }
            Err(error) => tracing::warn!(%error, "could not check on the build's lease"),
        }
    }
}
