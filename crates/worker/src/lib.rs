//! The build worker. Each slot claims one build at a time (`FOR UPDATE SKIP
//! LOCKED`, so any number of slots and processes can share one queue), holds
//! it with a lease it renews while working, and takes it through
//! `building` (fetch and safe extraction) and `validating` (checking the code)
//! to `success` or `failed`. Between steps it checks that the build is still
//! its own, so a cancelled build is never published. Slots wake on
//! LISTEN/NOTIFY and poll as a fallback.
//!
//! Each stage also writes system log lines for the build (tagged with its
//! project, deployment, version, build and revision), one insert per stage.
//! Those are for people watching the build: a line that cannot be written
//! is logged here and the build goes on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{watch, Notify};
use tracing::Instrument;
use ubiops_domain::logs::Level;
use ubiops_files::{FileError, FileStore};
use ubiops_inspect::Validation;
use ubiops_inspect::{BuildFailure, Language, Limits};
use ubiops_storage::{BuildOutcome, ClaimedBuild, LogTags, NewLogLine, Store, BUILDS_CHANNEL};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Concurrent builds in this process.
    pub slots: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// Tries of a build whose worker died before it is failed for good.
    pub max_attempts: i32,
    /// Scratch space for downloads and extraction.
    pub work_dir: PathBuf,
    pub limits: Limits,
    /// Log lines older than this are deleted by the sweep.
    pub log_retention: Duration,
}

impl WorkerConfig {
    pub fn new(slots: usize, work_dir: PathBuf) -> Self {
        WorkerConfig {
            slots,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(2),
            max_attempts: 3,
            work_dir,
            limits: Limits::default(),
            log_retention: Duration::from_secs(30 * 86_400),
        }
    }
}

/// Runs the worker until `shutdown` turns true. A build in progress at
/// shutdown goes back to the queue for another worker.
pub async fn run(
    store: Store,
    files: FileStore,
    config: WorkerConfig,
    shutdown: watch::Receiver<bool>,
) {
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(store.clone(), wake.clone(), shutdown.clone()));
    let process = format!(
        "{}-{}",
        std::process::id(),
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let mut slots = Vec::new();
    for slot in 0..config.slots {
        let worker = Worker {
            id: format!("worker-{process}-{slot}"),
            store: store.clone(),
            files: files.clone(),
            config: config.clone(),
            sweeps: slot == 0,
        };
        slots.push(tokio::spawn(worker.run(wake.clone(), shutdown.clone())));
    }
    for slot in slots {
        let _ = slot.await;
    }
    listener.abort();
}

/// Wakes idle slots when a build is queued. If the connection drops, the
/// listener reconnects; meanwhile the slots still poll.
async fn listen(store: Store, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
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

struct Worker {
    id: String,
    store: Store,
    files: FileStore,
    config: WorkerConfig,
    /// One slot per process also sweeps expired builds, interrupted uploads
    /// and files of deleted rows.
    sweeps: bool,
}

impl Worker {
    async fn run(self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            if self.sweeps {
                self.sweep().await;
            }
            let claimed = self
                .store
                .claim_build(
                    &self.id,
                    self.config.lease.as_secs_f64(),
                    self.config.max_attempts,
                )
                .await;
            match claimed {
                Ok(Some(build)) => {
                    if !self.build(build, &mut shutdown).await {
                        continue;
                    }
                    // A transient failure: pause before the next claim.
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.poll_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(worker = self.id, %error, "could not claim a build"),
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn sweep(&self) {
        if let Err(error) = self
            .store
            .fail_exhausted_builds(self.config.max_attempts)
            .await
        {
            tracing::warn!(%error, "could not fail exhausted builds");
        }
        if let Err(error) = ubiops_files::sweep_expired_uploads(&self.store, &self.files).await {
            tracing::warn!(%error, "could not sweep interrupted uploads");
        }
        if let Err(error) = ubiops_files::purge_deleted_objects(&self.store, &self.files).await {
            tracing::warn!(%error, "could not purge deleted files");
        }
        let retention = i64::try_from(self.config.log_retention.as_nanos()).unwrap_or(i64::MAX);
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        match self
            .store
            .delete_logs_before(now.saturating_sub(retention))
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted log lines past their retention"),
            Err(error) => tracing::warn!(%error, "could not delete old log lines"),
        }
    }

    /// Runs one build to its end. Returns true when it stopped on a
    /// transient failure, so the slot pauses before claiming again.
    async fn build(&self, build: ClaimedBuild, shutdown: &mut watch::Receiver<bool>) -> bool {
        let span = tracing::info_span!("build", build = %build.id, worker = self.id, attempt = build.attempts);
        self.run_build(build, shutdown).instrument(span).await
    }

    async fn run_build(&self, build: ClaimedBuild, shutdown: &mut watch::Receiver<bool>) -> bool {
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
        let (outcome, findings) = match result {
            None => {
                tracing::info!("shutting down: the build goes back to the queue");
                self.release(&build).await;
                self.log_one(
                    &build,
                    "The worker is stopping: the build goes back to the queue",
                )
                .await;
                return false;
            }
            Some(Err(Stopped::Lost)) => {
                tracing::info!("build stopped: cancelled or taken over");
                return false;
            }
            Some(Err(Stopped::Transient(error))) => {
                tracing::warn!(%error, "build interrupted by a transient failure; it goes back to the queue");
                self.release(&build).await;
                // The cause stays in the server's log: it may name storage
                // endpoints or paths that are no business of the project.
                self.log_one(
                    &build,
                    "The build was interrupted by a temporary fault of the server and goes back \
                     to the queue",
                )
                .await;
                return true;
            }
            Some(Ok(finished)) => finished,
        };
        match self.store.finish_build(&build, &self.id, &outcome).await {
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
                self.log(&build, lines).await;
            }
            Ok(false) => tracing::info!("build was cancelled before it could be published"),
            Err(error) => {
                tracing::warn!(%error, "could not publish the build; it goes back to the queue");
                self.release(&build).await;
                return true;
            }
        }
        false
    }

    /// Writes system lines about `build`; a failure is only logged here.
    async fn log(&self, build: &ClaimedBuild, lines: Vec<(Level, String)>) {
        let tags = LogTags {
            deployment_id: Some(build.deployment_id),
            deployment_name: Some(build.deployment_name.clone()),
            version_id: Some(build.version_id),
            version_name: Some(build.version_name.clone()),
            build_id: Some(build.id),
            revision_id: Some(build.revision_id),
            deployment_request_id: None,
        };
        let lines: Vec<NewLogLine> = lines
            .into_iter()
            .map(|(level, text)| NewLogLine {
                project_id: build.project_id,
                tags: tags.clone(),
                system: true,
                level,
                text,
            })
            .collect();
        if let Err(error) = self.store.append_logs(&lines).await {
            tracing::warn!(%error, lines = lines.len(), "could not write the build's log lines; the build goes on");
        }
    }

    async fn log_one(&self, build: &ClaimedBuild, line: &str) {
        self.log(build, vec![(Level::Info, line.to_owned())]).await;
    }

    /// Gives the build back at once rather than letting it wait out its lease.
    async fn release(&self, build: &ClaimedBuild) {
        if let Err(error) = self.store.release_build(build.id, &self.id).await {
            tracing::warn!(%error, "could not release the build; it is retried when its lease expires");
        }
    }

    /// The stages, with what validation found (log lines to write with the
    /// outcome); an error when the build is no longer ours to finish
    /// (cancelled or taken over) or a transient failure stopped it.
    async fn stages(
        &self,
        build: &ClaimedBuild,
        dir: &Path,
        lost: &AtomicBool,
    ) -> Result<(BuildOutcome, Vec<String>), Stopped> {
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
        let extract = {
            let (zip, extracted) = (zip.clone(), extracted.clone());
            tokio::task::spawn_blocking(move || ubiops_inspect::extract(&zip, &extracted, &limits))
        };
        let extracted_summary = match extract.await.map_err(transient)? {
            Ok(summary) => summary,
            Err(failure) => return Ok((failed(failure), Vec::new())),
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
        let validation =
            tokio::task::spawn_blocking(move || ubiops_inspect::validate(&extracted, language))
                .await
                .map_err(transient)?;
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
}

/// Why the stages stopped without an outcome.
enum Stopped {
    /// Cancelled, or taken over by another worker after the lease ran out.
    Lost,
    /// Storage, the database or the machine failed for now; worth retrying.
    Transient(String),
}

fn transient(error: impl std::fmt::Display) -> Stopped {
    Stopped::Transient(error.to_string())
}

/// What validation found, as log lines.
fn findings(validation: &Validation) -> Vec<String> {
    let methods = match (
        validation.has_request_method,
        validation.has_requests_method,
    ) {
        (true, true) => "`request` and `requests` methods",
        (true, false) => "a `request` method",
        (false, true) => "a `requests` method",
        (false, false) => "no request method",
    };
    let requirements = match validation.requirements.len() {
        0 => "no requirements".to_owned(),
        1 => "1 requirement".to_owned(),
        n => format!("{n} requirements"),
    };
    vec![format!(
        "Found {} with {methods}; {requirements}",
        validation.deployment_file.display()
    )]
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
