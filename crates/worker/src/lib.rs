//! The build worker. Each slot claims one build at a time (`FOR UPDATE SKIP
//! LOCKED`, so any number of slots and processes can share one queue), holds
//! it with a lease it renews while working, and takes it through
//! `building` (fetch, safe extraction, the static checks of the code, and
//! the package's Python environment with its requirements installed) and
//! `validating` (importing the code in that environment) to `success` or
//! `failed`. The package's code runs only in a sandbox (see `stages`). The
//! build watches for a cancel while it runs and stops what it runs at once,
//! so a cancelled build is never published. Slots wake on LISTEN/NOTIFY and
//! poll as a fallback.
//!
//! A build stopped by a fault goes back to the queue with its attempt counted
//! and waits out a back-off; after `max_attempts` it fails for good (see
//! `retry`). Each stage also writes system log lines for the build (see
//! `build_log`). One slot per process also runs the clean-up sweeps.

mod build;
mod build_log;
mod queue;
mod retry;
mod stages;
mod sweep;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use ubiops_files::FileStore;
use ubiops_inspect::Limits;
use ubiops_python::environments::Environments;
use ubiops_python::interpreters::Interpreters;
use ubiops_storage::Store;
use uuid::Uuid;

pub use sweep::{purge_deleted_objects, sweep_expired_uploads};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Concurrent builds in this process.
    pub slots: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// Tries of a build, whatever stopped them (a fault, a crash of the
    /// inspector, a worker that died), before it is failed for good.
    pub max_attempts: i32,
    /// The wait before the second attempt of a build a fault stopped; it
    /// doubles with each further attempt, up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Where each build gets its sandbox's private directory (download,
    /// extraction, pip's home); sandbox users must be able to search it.
    pub work_dir: PathBuf,
    pub limits: Limits,
    pub tools: BuildTools,
    /// Log lines older than this are deleted by the sweep.
    pub log_retention: Duration,
    pub hooks: Hooks,
}

impl WorkerConfig {
    pub fn new(slots: usize, work_dir: PathBuf, tools: BuildTools) -> Self {
        WorkerConfig {
            tools,
            slots,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(2),
            max_attempts: 3,
            retry_base: Duration::from_secs(10),
            retry_cap: Duration::from_secs(600),
            work_dir,
            limits: Limits::default(),
            log_retention: Duration::from_secs(30 * 86_400),
            hooks: Hooks::default(),
        }
    }
}

/// What builds run the package's code with.
#[derive(Debug, Clone)]
pub struct BuildTools {
    pub interpreters: Arc<Interpreters>,
    /// The environment cache, and the sandboxes every step runs in.
    pub environments: Environments,
    /// How long importing `deployment.py` may take.
    pub import_time_limit: Duration,
    /// An R installation was found (`Rscript` on `PATH`); without one, R
    /// builds fail with a message that says so.
    pub r_installed: bool,
}

/// Code that tests run at fixed points of the worker, to inject faults or
/// to hold a slot where a race happens. Production sets none.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Runs on the inspector's thread before it checks a package: a panic
    /// here is the inspector crashing.
    pub before_inspect: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Awaited when a slot's claim query has returned, before the slot acts
    /// on what it claimed (or waits, if nothing).
    pub after_claim: Option<Arc<dyn Fn() -> HookFuture + Send + Sync>>,
}

pub type HookFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("before_inspect", &self.before_inspect.is_some())
            .field("after_claim", &self.after_claim.is_some())
            .finish()
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
    let listener = tokio::spawn(ubiops_storage::wake_on_notify(
        store.clone(),
        vec![(ubiops_storage::BUILDS_CHANNEL, wake.clone())],
        shutdown.clone(),
    ));
    let process = process_tag();
    let mut slots = Vec::new();
    for slot in 0..config.slots {
        let worker = Worker {
            id: format!("worker-{process}-{slot}"),
            store: store.clone(),
            files: files.clone(),
            config: config.clone(),
        };
        let sweeps = slot == 0;
        slots.push(tokio::spawn(worker.run_slot(
            wake.clone(),
            shutdown.clone(),
            sweeps,
        )));
    }
    for slot in slots {
        let _ = slot.await;
    }
    listener.abort();
}

/// Claims and runs builds one after another until none can be claimed (the
/// queue is empty, or what is left waits out a back-off or a live lease),
/// then returns how many it ran. For tests and one-off runs that need the
/// queue drained rather than a worker that waits for more.
pub async fn run_pending_builds(store: &Store, files: &FileStore, config: &WorkerConfig) -> usize {
    let worker = Worker {
        id: format!("worker-{}-pending", process_tag()),
        store: store.clone(),
        files: files.clone(),
        config: config.clone(),
    };
    // Never signalled: the loop ends when the queue does.
    let (_running, mut shutdown) = watch::channel(false);
    let mut ran = 0;
    while let Some(build) = worker.claim().await {
        worker.build(build, &mut shutdown).await;
        ran += 1;
    }
    ran
}

/// Tells this process's workers apart from those of other processes on the
/// same queue.
fn process_tag() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

/// One slot: the identity that claims builds and holds their leases.
struct Worker {
    id: String,
    store: Store,
    files: FileStore,
    config: WorkerConfig,
}
