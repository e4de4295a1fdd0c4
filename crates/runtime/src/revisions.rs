//! Revisions made ready to run on this machine: the package extracted from
//! the stored zip, and the Python environment its build made (from this
//! machine's cache, or made again the same way when another server built
//! it or the cache evicted it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ubiops_files::{FileError, FileStore};
use ubiops_inspect::Language;
use ubiops_python::environments::{Environments, Ready, Wanted};
use ubiops_python::interpreters::Interpreters;
use ubiops_python::StepError;
use uuid::Uuid;

/// The revision to make ready.
#[derive(Debug, Clone)]
pub struct RevisionToRun {
    pub id: Uuid,
    pub object_key: String,
    /// The version's language, which chose the build's interpreter.
    pub language: String,
}

/// A revision ready to run: where its code is and the Python to run it
/// with. Holds the environment (eviction leaves it alone) while it lives.
#[derive(Debug)]
pub struct Prepared {
    /// The directory holding `deployment.py`.
    pub package_dir: PathBuf,
    pub python: PathBuf,
    _environment: Ready,
}

/// Makes revisions ready; cheap to clone.
#[derive(Clone)]
pub struct Packages {
    files: FileStore,
    /// Extracted packages, one directory per revision; private to the
    /// server (instances get a copy of their own).
    dir: PathBuf,
    interpreters: Arc<Interpreters>,
    environments: Environments,
    limits: ubiops_inspect::Limits,
}

impl Packages {
    pub fn new(
        files: FileStore,
        dir: PathBuf,
        interpreters: Arc<Interpreters>,
        environments: Environments,
        limits: ubiops_inspect::Limits,
    ) -> std::io::Result<Packages> {
        std::fs::create_dir_all(&dir)?;
        Ok(Packages {
            files,
            dir,
            interpreters,
            environments,
            limits,
        })
    }

    /// The revision extracted and its environment ready; `log` gets the
    /// lines of an environment made anew. The error is for the user (the
    /// package or its storage) — a server fault is logged here as well.
    pub async fn prepare(
        &self,
        revision: &RevisionToRun,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Prepared, String> {
        if revision.language.starts_with('r') {
            return Err("R deployments cannot serve requests on this server yet".to_owned());
        }
        let root = self.dir.join(revision.id.to_string());
        if !root.join(".ubiops-extracted").exists() {
            self.extract(revision, &root).await?;
        }
        let validation = {
            let root = root.clone();
            tokio::task::spawn_blocking(move || ubiops_inspect::validate(&root, Language::Python))
                .await
                .map_err(fault)?
                .map_err(|failure| failure.message().to_owned())?
        };
        let chosen = self.interpreters.choose(&revision.language)?;
        let requirements_file = root
            .join(&validation.deployment_file)
            .with_file_name("requirements.txt");
        let wanted = Wanted::for_package(
            &chosen.interpreter,
            &requirements_file,
            !validation.requirements.is_empty(),
            revision.object_key.as_bytes(),
        );
        // pip runs the package's install scripts: in a sandbox, as builds do.
        let scratch = self.dir.join(format!("env-{}", Uuid::new_v4()));
        let sandbox = self
            .environments
            .sandboxes()
            .enter(&scratch)
            .map_err(fault)?;
        sandbox.hand_over(&root).map_err(fault)?;
        let ready = self
            .environments
            .ensure(&wanted, &sandbox, std::future::pending, log)
            .await;
        drop(sandbox);
        ubiops_sandbox::take_back(&root).map_err(fault)?;
        let ready = match ready {
            Ok(ready) => ready,
            Err(StepError::Failed(message)) => return Err(message),
            Err(StepError::Cancelled) => {
                return Err("preparing the environment was cancelled".to_owned())
            }
            Err(StepError::Fault(error)) => return Err(fault(error)),
        };
        Ok(Prepared {
            package_dir: root
                .join(&validation.deployment_file)
                .parent()
                .unwrap_or(&root)
                .to_owned(),
            python: ready.python(),
            _environment: ready,
        })
    }

    /// Extracts next to `root` and renames into place, so a half-extracted
    /// package is never used and two preparations of one revision agree.
    async fn extract(&self, revision: &RevisionToRun, root: &Path) -> Result<(), String> {
        let staging = self.dir.join(format!("staging-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&staging).map_err(fault)?;
        let zip = staging.join("deployment.zip");
        let files = staging.join("files");
        let result = async {
            match self.files.download_to(&revision.object_key, &zip).await {
                Ok(_) => {}
                Err(FileError::NotFound) => {
                    return Err(
                        "the deployment file is missing from storage: upload it again".to_owned(),
                    )
                }
                Err(error) => return Err(fault(error)),
            }
            let limits = self.limits.clone();
            let (zip, extracted) = (zip.clone(), files.clone());
            tokio::task::spawn_blocking(move || ubiops_inspect::extract(&zip, &extracted, &limits))
                .await
                .map_err(fault)?
                .map_err(|failure| failure.message().to_owned())?;
            std::fs::write(files.join(".ubiops-extracted"), b"").map_err(fault)?;
            match std::fs::rename(&files, root) {
                Ok(()) => Ok(()),
                // Another preparation got there first: use its copy.
                Err(_) if root.join(".ubiops-extracted").exists() => Ok(()),
                Err(error) => Err(fault(error)),
            }
        }
        .await;
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    /// Removes the extracted packages of revisions not in `keep`.
    pub fn remove_others(&self, keep: &dyn Fn(Uuid) -> bool) -> std::io::Result<()> {
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|name| Uuid::parse_str(name).ok()) else {
                continue;
            };
            if !keep(id) {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(())
    }
}

/// A fault of the server, not of the package: logged in full, and the user
/// told only that.
fn fault(error: impl std::fmt::Display) -> String {
    tracing::error!(%error, "could not prepare a revision to run");
    "the server could not prepare the deployment's instances (see the server log)".to_owned()
}
