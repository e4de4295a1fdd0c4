//! The cache of virtual environments. An environment is made for an
//! interpreter and a requirements file, and every build that needs the same
//! pair uses it: a rebuild, a copy, another deployment with the same
//! requirements.
//!
//! Layout, in the cache directory (searchable but not listable by sandbox
//! users):
//! - `<key>/`: a virtual environment, made by a sandbox user, then taken
//!   back: owned by the server, read-only for everyone else, so no later
//!   sandbox can change what other revisions run.
//! - `<key>/.ubiops-ready`: written by the server once the environment is
//!   complete (a sandbox cannot make a file the server's user owns); holds
//!   its size, and its modification time is when it was last used.
//! - `locks/<key>`: `flock`ed shared by every build using the environment,
//!   exclusively by the one making it and by the eviction that removes it.
//!   Two builds that need a new environment at the same time so make it
//!   once: the second waits and then uses it. Lock files are never removed:
//!   a removed one could be locked by two processes at once.
//!
//! Environments live on the machine that made them. Another machine makes
//! its own from the same inputs (the interpreter and the requirements).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use ubiops_sandbox::{Ended, Sandbox, Sandboxes};

use crate::interpreters::Interpreter;
use crate::{pip, StepError};

const READY: &str = ".ubiops-ready";

#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    /// When the environments together use more, the least recently used
    /// ones that no active revision uses are removed.
    pub size_limit_bytes: u64,
    /// The operator's pip settings (`PIP_*` variables, proxies) passed to
    /// pip: the sandbox gets nothing else of the server's environment.
    pub pip_environment: Vec<(String, String)>,
    /// Making one environment (the venv and pip together).
    pub install_time_limit: Duration,
}

/// What an environment is made from.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    pub interpreter: &'a Interpreter,
    /// The package's `requirements.txt`, readable from the sandbox; none
    /// when the package has no requirements.
    pub requirements: Option<&'a Path>,
    /// Anything else that decides what pip installs, such as the package's
    /// own digest when its requirements point pip at its own files.
    pub extra: &'a [u8],
}

impl<'a> Wanted<'a> {
    /// What a package needs: its `requirements_file` (next to its code)
    /// installed for `interpreter` when it lists any requirement.
    /// `package_key` names the package's content (its object key), which
    /// decides what is installed when the requirements point pip at the
    /// package's own files. Builds and servers that run the package use
    /// this one rule, so both arrive at the same environment.
    pub fn for_package(
        interpreter: &'a Interpreter,
        requirements_file: &'a Path,
        has_requirements: bool,
        package_key: &'a [u8],
    ) -> Wanted<'a> {
        let requirements_text = fs::read_to_string(requirements_file).unwrap_or_default();
        Wanted {
            interpreter,
            // Without requirements pip has nothing to do: the environment
            // is the interpreter's alone.
            requirements: has_requirements.then_some(requirements_file),
            extra: if uses_package_files(&requirements_text) {
                package_key
            } else {
                &[]
            },
        }
    }
}

/// An environment ready to use; held (shared) until dropped, so eviction
/// leaves it alone meanwhile.
#[derive(Debug)]
pub struct Ready {
    pub key: String,
    pub path: PathBuf,
    /// Found in the cache rather than made now.
    pub reused: bool,
    _lock: File,
}

impl Ready {
    pub fn python(&self) -> PathBuf {
        self.path.join("bin").join("python")
    }
}

#[derive(Debug, Clone)]
pub struct Environments {
    settings: Settings,
    sandboxes: Sandboxes,
}

impl Environments {
    pub fn new(settings: Settings, sandboxes: Sandboxes) -> io::Result<Environments> {
        fs::create_dir_all(settings.dir.join("locks"))?;
        ubiops_sandbox::make_reachable(&settings.dir)?;
        Ok(Environments {
            settings,
            sandboxes,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn sandboxes(&self) -> &Sandboxes {
        &self.sandboxes
    }

    /// The cache key of an environment: it changes with anything that
    /// changes what is installed.
    pub fn key(wanted: &Wanted<'_>) -> io::Result<String> {
        let mut hash = Sha256::new();
        hash.update(b"ubiops-environment-1\0");
        hash.update(wanted.interpreter.version.to_string());
        hash.update(b"\0");
        hash.update(wanted.interpreter.path.as_os_str().as_encoded_bytes());
        hash.update(b"\0");
        if let Some(requirements) = wanted.requirements {
            hash.update(fs::read(requirements)?);
        }
        hash.update(b"\0");
        hash.update(wanted.extra);
        Ok(hex::encode(&hash.finalize()[..16]))
    }

    /// The environment for `wanted`: from the cache, or made in `sandbox`
    /// (whose user runs the venv module and pip; `log` gets every line they
    /// print). Waits while another build makes the same one.
    pub async fn ensure<C, F>(
        &self,
        wanted: &Wanted<'_>,
        sandbox: &Sandbox,
        cancelled: C,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Ready, StepError>
    where
        C: Fn() -> F,
        F: Future<Output = ()>,
    {
        let key = Environments::key(wanted)?;
        let path = self.settings.dir.join(&key);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.settings.dir.join("locks").join(&key))?;
        loop {
            if try_flock(&lock, libc::LOCK_SH)? {
                if is_ready(&path) {
                    touch(&path);
                    return Ok(Ready {
                        key,
                        path,
                        reused: true,
                        _lock: lock,
                    });
                }
                flock(&lock, libc::LOCK_UN)?;
            }
            if try_flock(&lock, libc::LOCK_EX)? {
                if !is_ready(&path) {
                    self.make(wanted, &path, sandbox, &cancelled, log).await?;
                }
                // Another build may use it from here on.
                flock(&lock, libc::LOCK_SH)?;
                return Ok(Ready {
                    key,
                    path,
                    reused: false,
                    _lock: lock,
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = cancelled() => return Err(StepError::Cancelled),
            }
        }
    }

    /// Makes the environment at `path` (holding its lock exclusively);
    /// whatever the outcome, nothing half-made is left.
    async fn make<C, F>(
        &self,
        wanted: &Wanted<'_>,
        path: &Path,
        sandbox: &Sandbox,
        cancelled: &C,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), StepError>
    where
        C: Fn() -> F,
        F: Future<Output = ()>,
    {
        remove_if_present(path)?;
        fs::DirBuilder::new().mode(0o755).create(path)?;
        sandbox.hand_over(path)?;
        let made = self.install(wanted, path, sandbox, cancelled, log).await;
        let finished = made.and_then(|()| {
            ubiops_sandbox::take_back(path)?;
            let size = ubiops_sandbox::disk_usage(path)?;
            fs::write(path.join(READY), size.to_string())?;
            Ok(())
        });
        if finished.is_err() {
            remove_if_present(path)?;
        }
        finished
    }

    async fn install<C, F>(
        &self,
        wanted: &Wanted<'_>,
        path: &Path,
        sandbox: &Sandbox,
        cancelled: &C,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), StepError>
    where
        C: Fn() -> F,
        F: Future<Output = ()>,
    {
        let limit = self.settings.install_time_limit;
        let started = tokio::time::Instant::now();
        let mut venv = sandbox.command(&wanted.interpreter.path);
        venv.args(["-m", "venv"]);
        if wanted.requirements.is_none() {
            venv.arg("--without-pip");
        }
        venv.arg(path);
        let version = wanted.interpreter.version;
        self.step(sandbox, venv, limit, cancelled(), log, |reason| {
            format!("Creating the Python {version} environment failed: {reason}")
        })
        .await?;
        let Some(requirements) = wanted.requirements else {
            return Ok(());
        };
        let mut install = sandbox.command(path.join("bin").join("python"));
        install
            .args(pip::install_args(requirements))
            .envs(self.settings.pip_environment.iter().cloned())
            .env("PYTHONUNBUFFERED", "1");
        if let Some(dir) = requirements.parent() {
            // Relative --find-links are relative to the requirements file.
            install.current_dir(dir);
        }
        let left = limit.saturating_sub(started.elapsed());
        self.step(sandbox, install, left, cancelled(), log, |reason| {
            format!("Installing requirements.txt failed: {reason}")
        })
        .await
    }

    /// Runs one program of the install, its output to `log`; a failure is
    /// `failure` of the reason read from that output.
    async fn step(
        &self,
        sandbox: &Sandbox,
        command: tokio::process::Command,
        limit: Duration,
        cancelled: impl Future<Output = ()>,
        log: &mut (dyn FnMut(&str) + Send),
        failure: impl FnOnce(String) -> String,
    ) -> Result<(), StepError> {
        let mut output = Vec::new();
        let ended = sandbox
            .run(command, limit, cancelled, &mut |line| {
                output.push(line.to_owned());
                log(line);
            })
            .await?;
        match ended {
            Ended::Exited(status) if status.success() => Ok(()),
            Ended::Cancelled => Err(StepError::Cancelled),
            Ended::TimedOut => Err(self.too_slow()),
            Ended::Exited(_) => Err(StepError::Failed(failure(pip::failure_reason(&output)))),
        }
    }

    fn too_slow(&self) -> StepError {
        StepError::Failed(format!(
            "Installing requirements.txt did not finish within {} s: a requirement may be very large, \
             or the package index slow or unreachable",
            self.settings.install_time_limit.as_secs()
        ))
    }

    /// Removes the least recently used environments, except those in
    /// `keep` (the active revisions') and those in use, until the cache
    /// fits its size limit; also what a crash left half-made. The keys
    /// removed.
    pub fn evict(&self, keep: &HashSet<String>) -> io::Result<Vec<String>> {
        let mut ready = Vec::new();
        let mut removed = Vec::new();
        for entry in fs::read_dir(&self.settings.dir)? {
            let entry = entry?;
            let key = entry.file_name().to_string_lossy().into_owned();
            if key == "locks" || !entry.file_type()?.is_dir() {
                continue;
            }
            let path = entry.path();
            match fs::read_to_string(path.join(READY)) {
                Ok(size) if is_ready(&path) => {
                    let used = fs::metadata(path.join(READY))?.modified()?;
                    ready.push((used, key, path, size.trim().parse::<u64>().unwrap_or(0)));
                }
                // Half-made: by a crash, or being made now (then locked).
                _ => {
                    if self.remove_unless_locked(&key, &path)? {
                        removed.push(key);
                    }
                }
            }
        }
        let mut total: u64 = ready.iter().map(|(_, _, _, size)| size).sum();
        ready.sort();
        for (_, key, path, size) in ready {
            if total <= self.settings.size_limit_bytes {
                break;
            }
            if keep.contains(&key) {
                continue;
            }
            if self.remove_unless_locked(&key, &path)? {
                total -= size;
                removed.push(key);
            }
        }
        Ok(removed)
    }

    /// Removes an environment nobody holds; false if somebody does.
    fn remove_unless_locked(&self, key: &str, path: &Path) -> io::Result<bool> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.settings.dir.join("locks").join(key))?;
        if !try_flock(&lock, libc::LOCK_EX)? {
            return Ok(false);
        }
        // The marker first: a crash part way leaves a half-made directory,
        // which is never used and removed later.
        remove_file_if_present(&path.join(READY))?;
        remove_if_present(path)?;
        Ok(true)
    }
}

/// Complete, and made by the server (a sandbox cannot make a file the
/// server's user owns, so it cannot fake the marker).
fn is_ready(path: &Path) -> bool {
    let ours = unsafe { libc::geteuid() };
    let owned = |path: &Path| fs::symlink_metadata(path).is_ok_and(|meta| meta.uid() == ours);
    owned(path) && owned(&path.join(READY))
}

fn touch(path: &Path) {
    if let Ok(marker) = OpenOptions::new().write(true).open(path.join(READY)) {
        let _ = marker.set_modified(SystemTime::now());
    }
}

fn try_flock(file: &File, operation: libc::c_int) -> io::Result<bool> {
    if unsafe { libc::flock(file.as_raw_fd(), operation | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(error),
    }
}

fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

fn remove_file_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// True when a requirements file points pip at files of the package itself
/// (`--find-links ./wheels`): then the package's content decides what is
/// installed, not the requirements alone.
pub fn uses_package_files(requirements: &str) -> bool {
    requirements.lines().any(|line| {
        let line = line.trim();
        ["--find-links", "-f"].iter().any(|option| {
            line.strip_prefix(option)
                .filter(|rest| rest.starts_with([' ', '=', '\t']))
                .is_some_and(|rest| {
                    let value = rest.trim_start_matches([' ', '=', '\t']);
                    !value.contains("://") || value.starts_with("file:")
                })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_find_links_make_the_package_part_of_the_key() {
        assert!(uses_package_files("--find-links ./wheels\nmypkg"));
        assert!(uses_package_files("-f=wheels\n"));
        assert!(uses_package_files("--find-links file:///tmp/w"));
        assert!(!uses_package_files(
            "--find-links https://example.com/wheels\nx"
        ));
        assert!(!uses_package_files(
            "--index-url https://mirror/simple\nflask==3.0"
        ));
    }
}
