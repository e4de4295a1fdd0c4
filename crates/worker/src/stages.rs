//! The stages of a build:
//!
//! - building: fetch the zip and extract it safely, check the code and the
//!   requirements statically (their precise messages come first, and a
//!   malformed requirement never reaches pip), then make or reuse the
//!   package's Python environment with its requirements installed;
//! - validating: import `deployment.py` in that environment.
//!
//! Everything that runs the package's code (pip, install scripts, the
//! import) runs in the build's sandbox: a user of its own, a clean
//! environment, its private directory, limits. What those programs print is
//! streamed to the build's log.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use ubiops_domain::logs::Level;
use ubiops_files::FileError;
use ubiops_inspect::{BuildFailure, Language, Validation};
use ubiops_python::environments::{Environments, Ready, Wanted};
use ubiops_python::import_check::check_import;
use ubiops_python::StepError;
use ubiops_sandbox::Sandbox;
use ubiops_storage::{BuildOutcome, ClaimedBuild};

use crate::build::{transient, Checked, Stopped};
use crate::build_log::{findings, OutputCap};
use crate::Worker;

/// A step's result: done, or the package's fault (the build fails with this
/// message), or the build stopped.
type Step<T> = Result<Result<T, String>, Stopped>;

impl Worker {
    /// The stages; an error when the build is no longer ours to finish
    /// (cancelled or taken over) or a fault stopped it.
    pub(crate) async fn stages(
        &self,
        build: &ClaimedBuild,
        lost: &CancellationToken,
    ) -> Result<Checked, Stopped> {
        let still_ours = || {
            if lost.is_cancelled() {
                Err(Stopped::Lost)
            } else {
                Ok(())
            }
        };
        let sandboxes = self.config.tools.environments.sandboxes().clone();
        let dir = self.config.work_dir.join(build.id.to_string());
        let sandbox = self
            .inspect(move || sandboxes.enter(&dir))
            .await?
            .map_err(transient)?;
        let extracted = sandbox.dir().join("files");
        let zip = sandbox.dir().join("deployment.zip");
        match self.files.download_to(&build.object_key, &zip).await {
            Ok(_) => {}
            Err(FileError::NotFound) => {
                return Ok(failed(
                    "The deployment file is missing from storage: upload it again",
                ))
            }
            Err(error) => return Err(transient(error)),
        }
        still_ours()?;
        let limits = self.config.limits.clone();
        let summary = {
            let extracted = extracted.clone();
            match self
                .inspect(move || ubiops_inspect::extract(&zip, &extracted, &limits))
                .await?
            {
                Ok(summary) => summary,
                Err(failure) => return Ok(package_fault(failure)),
            }
        };
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
                        summary.files, summary.total_bytes
                    ),
                ),
                (Level::Info, format!("Checking {code} and requirements.txt")),
            ],
        )
        .await;
        let validation = {
            let extracted = extracted.clone();
            match self
                .inspect(move || ubiops_inspect::validate(&extracted, language))
                .await?
            {
                Ok(validation) => validation,
                Err(failure) => return Ok(package_fault(failure)),
            }
        };
        still_ours()?;
        if language == Language::R {
            if !self.config.tools.r_installed {
                return Ok(failed(
                    "R deployments need an R installation on the build server, and none was found \
                     (Rscript is not on its PATH): use a Python environment, or ask the administrator to install R",
                ));
            }
            self.start_validating(build).await?;
            return Ok(success(validation, None));
        }
        sandbox.hand_over(&extracted).map_err(transient)?;
        let environment = match self
            .environment(build, &sandbox, &extracted, &validation, lost)
            .await?
        {
            Ok(environment) => environment,
            Err(message) => return Ok(failed(message)),
        };
        still_ours()?;
        self.start_validating(build).await?;
        self.log_one(
            build,
            format!("Validating: importing {code} in its environment"),
        )
        .await;
        let file = validation.deployment_file.display().to_string();
        let mut output = self.stream_output(build, OutputCap::default());
        let loaded = check_import(
            &environment.python(),
            &extracted.join(&validation.deployment_file),
            &file,
            &sandbox,
            self.config.tools.import_time_limit,
            lost.cancelled(),
            &mut |line| output.line(line),
        )
        .await;
        output.finish().await;
        match loaded {
            Ok(loaded) => {
                let validation = Validation {
                    has_request_method: loaded.has_request,
                    has_requests_method: loaded.has_requests,
                    ..validation
                };
                Ok(success(validation, Some(environment.key.clone())))
            }
            Err(error) => step_error(error).map(failed),
        }
    }

    async fn start_validating(&self, build: &ClaimedBuild) -> Result<(), Stopped> {
        if self
            .store
            .start_validating(build.id, &self.id)
            .await
            .map_err(transient)?
        {
            Ok(())
        } else {
            Err(Stopped::Lost)
        }
    }

    /// The package's Python environment: from this machine's cache, or made
    /// now with its requirements installed by pip.
    async fn environment(
        &self,
        build: &ClaimedBuild,
        sandbox: &Sandbox,
        extracted: &Path,
        validation: &Validation,
        lost: &CancellationToken,
    ) -> Step<Ready> {
        let tools = &self.config.tools;
        let chosen = match tools.interpreters.choose(&build.language) {
            Ok(chosen) => chosen,
            Err(message) => return Ok(Err(message)),
        };
        let requirements_file = extracted
            .join(&validation.deployment_file)
            .with_file_name("requirements.txt");
        let wanted = Wanted::for_package(
            &chosen.interpreter,
            &requirements_file,
            !validation.requirements.is_empty(),
            build.object_key.as_bytes(),
        );
        let mut lines = Vec::new();
        lines.extend(chosen.substitution_line());
        lines.push(format!(
            "Preparing the Python {} environment ({})",
            chosen.interpreter.version,
            match validation.requirements.len() {
                0 => "no requirements".to_owned(),
                1 => "1 requirement".to_owned(),
                n => format!("{n} requirements"),
            }
        ));
        self.log(build, lines.into_iter().map(|l| (Level::Info, l)).collect())
            .await;
        let started = Instant::now();
        let mut output = self.stream_output(build, OutputCap::default());
        let made = tools
            .environments
            .ensure(&wanted, sandbox, || lost.cancelled(), &mut |line| {
                output.line(line)
            })
            .await;
        output.finish().await;
        let ready = match made {
            Ok(ready) => ready,
            Err(error) => return step_error(error).map(Err),
        };
        let line = if ready.reused {
            format!("Using the cached environment {}", ready.key)
        } else {
            format!(
                "Environment {} ready in {:.1} s",
                ready.key,
                started.elapsed().as_secs_f64()
            )
        };
        self.log_one(build, line).await;
        Ok(Ok(ready))
    }

    /// Keeps the environment cache within its size. Run after a build is
    /// published: the revision it replaced no longer keeps its environment.
    pub(crate) async fn evict_environments(&self) {
        let keep: HashSet<String> = match self.store.active_environments().await {
            Ok(keys) => keys.into_iter().collect(),
            Err(error) => {
                tracing::warn!(%error, "could not read the active environments; nothing evicted");
                return;
            }
        };
        let environments: Environments = self.config.tools.environments.clone();
        match tokio::task::spawn_blocking(move || environments.evict(&keep)).await {
            Ok(Ok(evicted)) if !evicted.is_empty() => {
                tracing::info!(?evicted, "environments evicted from the cache")
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not evict environments"),
            Err(error) => tracing::warn!(%error, "the eviction of environments crashed"),
        }
    }
}

/// The package's fault as the build's message; a cancel or a fault stops
/// the build.
fn step_error(error: StepError) -> Result<String, Stopped> {
    match error {
        StepError::Failed(message) => Ok(message),
        StepError::Cancelled => Err(Stopped::Lost),
        StepError::Fault(error) => Err(transient(error)),
    }
}

fn success(validation: Validation, environment: Option<String>) -> Checked {
    (
        BuildOutcome::Success {
            has_request_method: validation.has_request_method,
            has_requests_method: validation.has_requests_method,
            environment,
        },
        findings(&validation),
    )
}

fn failed(message: impl Into<String>) -> Checked {
    package_fault(BuildFailure::new(message))
}

fn package_fault(failure: BuildFailure) -> Checked {
    (
        BuildOutcome::Failed(failure.message().to_owned()),
        Vec::new(),
    )
}
