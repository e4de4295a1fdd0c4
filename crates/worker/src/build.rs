//! Running one claimed build: its stages (fetch, safe extraction, checking
//! the code), the lease kept alive meanwhile, and what becomes of the build
//! when the stages end: published, retried after a fault, given up, or given
//! back at shutdown.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;
use ubiops_domain::logs::Level;
use ubiops_files::FileError;
use ubiops_inspect::{BuildFailure, Language};
use ubiops_storage::{BuildOutcome, ClaimedBuild, Store};
use uuid::Uuid;

use crate::build_log::findings;
use crate::retry::{backoff, Fault};
use crate::Worker;

/// Why the stages stopped without an outcome.
enum Stopped {
    /// Cancelled, or taken over by another worker after the lease ran out.
    Lost,
    /// Worth another attempt.
    Fault(Fault),
}

fn transient(error: impl std::fmt::Display) -> Stopped {
    Stopped::Fault(Fault::Transient(error.to_string()))
}

/// A finished check: the outcome, with what validation found (log lines to
/// write with it).
type Checked = (BuildOutcome, Vec<String>);

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
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeat(
            self.store.clone(),
            build.id,
            self.id.clone(),
            self.config.lease,
            lost.clone(),
        ));
        let dir = self.config.work_dir.join(build.id.to_string());
        let result = tokio::select! {
            result = self.stages(&build, &dir, &lost) => Some(result),
            _ = shutdown.changed() => None,
        };
        heartbeat.abort();
        let _ = tokio::fs::remove_dir_all(&dir).await;
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
        let delay = backoff(&self.config, build.attempts);
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
            }
            Ok(false) => tracing::info!("build was cancelled before it could be published"),
            Err(error) => {
                // Not through `retry_or_give_up`: giving up publishes too.
                let delay = self.requeue(build).await;
                tracing::warn!(%error, ?delay, "could not publish the build; it is retried");
            }
        }
    }

    /// The stages; an error when the build is no longer ours to finish
    /// (cancelled or taken over) or a fault stopped it.
    async fn stages(
        &self,
        build: &ClaimedBuild,
        dir: &Path,
        lost: &AtomicBool,
    ) -> Result<Checked, Stopped> {
        let still_ours = || {
            if lost.load(Ordering::SeqCst) {
                Err(Stopped::Lost)
            } else {
                Ok(())
            }
        };
        let _ = tokio::fs::remove_dir_all(dir).await;
        let extracted = dir.join("files");
        tokio::fs::create_dir_all(&extracted)
            .await
            .map_err(transient)?;
        let zip = dir.join("deployment.zip");
        match self.files.download_to(&build.object_key, &zip).await {
            Ok(_) => {}
            Err(FileError::NotFound) => {
                return Ok((
                    BuildOutcome::Failed(
                        "The deployment file is missing from storage: upload it again".into(),
                    ),
                    Vec::new(),
                ))
            }
            Err(error) => return Err(transient(error)),
        }
        still_ours()?;
        let limits = self.config.limits.clone();
        let extracted_summary = {
            let (zip, extracted) = (zip.clone(), extracted.clone());
            match self
                .inspect(move || ubiops_inspect::extract(&zip, &extracted, &limits))
                .await?
            {
                Ok(summary) => summary,
                Err(failure) => return Ok((failed(failure), Vec::new())),
            }
        };
        still_ours()?;
        if !self
            .store
            .start_validating(build.id, &self.id)
            .await
            .map_err(transient)?
        {
            return Err(Stopped::Lost);
        }
        let language = if build.language.starts_with('r') {
            Language::R
        } else {
            Language::Python
        };
        let code = language.deployment_file_name();
        self.log(
            build,
            vec![
                (
                    Level::Info,
                    format!(
                        "Extracted {} files ({} bytes)",
                        extracted_summary.files, extracted_summary.total_bytes
                    ),
                ),
                (
                    Level::Info,
                    format!("Validating: checking {code} and requirements.txt"),
                ),
            ],
        )
        .await;
        let validation = self
            .inspect(move || ubiops_inspect::validate(&extracted, language))
            .await?;
        still_ours()?;
        Ok(match validation {
            Ok(validation) => (
                BuildOutcome::Success {
                    has_request_method: validation.has_request_method,
                    has_requests_method: validation.has_requests_method,
                },
                findings(&validation),
            ),
            Err(failure) => (failed(failure), Vec::new()),
        })
    }

    /// Runs a step of the inspector on a blocking thread. A panic there is
    /// a crash of the inspector, which another attempt may or may not
    /// survive: it counts as a fault, never as the package's fault.
    async fn inspect<T: Send + 'static>(
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

fn failed(failure: BuildFailure) -> BuildOutcome {
    BuildOutcome::Failed(failure.message().to_owned())
}

/// Renews the lease while the build runs; marks it lost if the build was
/// cancelled or taken over, so the stages stop at their next check.
async fn heartbeat(
    store: Store,
    id: Uuid,
    worker_id: String,
    lease: Duration,
    lost: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(lease / 3).await;
        match store
            .renew_build_lease(id, &worker_id, lease.as_secs_f64())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(error) => tracing::warn!(%error, "could not renew the build lease"),
        }
    }
}
