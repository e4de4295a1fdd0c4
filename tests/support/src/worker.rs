//! Build workers for tests: live ones running in the background, for tests of
//! the worker itself (concurrency, leases, cancellation, sweeps), and
//! `run_pending_builds` for tests that only need their builds finished.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::RetryConfig;
use tokio::sync::watch;
use ubiops_files::FileStore;
use ubiops_python::environments::{Environments, Settings};
use ubiops_python::interpreters::Interpreters;
use ubiops_sandbox::{Limits, Sandboxes, Users};
use ubiops_worker::{BuildTools, WorkerConfig};

use crate::TestApp;

/// Build workers started by a test; stopped when dropped.
pub struct TestWorker {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestWorker {
    /// Stops gracefully: a build in progress goes back to the queue.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops at once, as a crash would: builds in progress keep their lease
    /// until it expires.
    pub fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl TestApp {
    /// How the test's workers run: over this app's files, building in its
    /// directory, with a short poll interval. The lease keeps its production
    /// length: on a loaded CI machine a short one expires under a live worker
    /// and a second worker takes the build over (correctly, but it makes
    /// attempt counts vary). Tests of lease expiry claim builds with short
    /// leases themselves.
    ///
    /// Builds run as in production: in sandboxes (a user of their own, as
    /// the tests run as root), with this machine's interpreters, and an
    /// environment cache shared by the tests of this machine (see
    /// [`shared_build_tools`]); tests that count what the cache does give
    /// the worker [`TestApp::private_environments`].
    pub fn worker_config(&self, slots: usize) -> WorkerConfig {
        let builds = self.sandbox_dir().join("builds");
        std::fs::create_dir_all(&builds).expect("the builds directory");
        ubiops_sandbox::make_reachable(&builds).expect("reachable builds directory");
        let mut config = WorkerConfig::new(slots, builds, shared_build_tools().clone());
        config.poll_interval = Duration::from_millis(100);
        config
    }

    /// An environment cache of this app's own in `name`, empty at first,
    /// with the shared cache's settings changed by `change`. Two such caches
    /// are two machines' caches.
    pub fn private_environments(
        &self,
        name: &str,
        change: impl FnOnce(&mut Settings),
    ) -> Environments {
        let shared = shared_build_tools().environments.clone();
        let mut settings = Settings {
            dir: self.sandbox_dir().join(name),
            ..shared.settings().clone()
        };
        change(&mut settings);
        Environments::new(settings, shared.sandboxes().clone())
            .expect("a private environment cache")
    }

    /// Where this app's builds and private environments live: beside its
    /// files, in a directory sandbox users can search but not list (as the
    /// server's data directory), so the files stay out of their reach.
    pub fn sandbox_dir(&self) -> PathBuf {
        sandbox_root(self.files_dir.path())
    }

    /// Build workers over this app's database and files.
    pub fn start_worker(&self, slots: usize) -> TestWorker {
        self.start_worker_with(self.worker_config(slots))
    }

    pub fn start_worker_with(&self, config: WorkerConfig) -> TestWorker {
        let (stop, stopping) = watch::channel(false);
        let task = tokio::spawn(ubiops_worker::run(
            self.store.clone(),
            self.files.clone(),
            config,
            stopping,
        ));
        TestWorker {
            stop,
            task: Some(task),
        }
    }

    /// Runs the builds that can be claimed now to their end, then returns
    /// how many it ran: for tests that need a finished build, not a worker.
    pub async fn run_pending_builds(&self) -> usize {
        self.run_pending_builds_with(&self.worker_config(1)).await
    }

    pub async fn run_pending_builds_with(&self, config: &WorkerConfig) -> usize {
        ubiops_worker::run_pending_builds(&self.store, &self.files, config).await
    }
}

/// Object storage that refuses every connection, at once (no retries): a
/// worker given it fails to read every deployment file, as on an outage
/// that does not end.
pub fn unreachable_file_store() -> FileStore {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let store = AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_bucket_name("unreachable")
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_allow_http(true)
        .with_retry(RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        })
        .build()
        .expect("S3 store");
    FileStore::from_store(Arc::new(store))
}

/// The sandboxes, interpreters and environment cache every test worker
/// uses, set up once per test process. The cache lives in the system's
/// temporary directory, shared by the test processes of this machine (it is
/// safe to share: see `ubiops_python::environments`), so an environment the
/// tests need is made once, not once per test.
pub fn shared_build_tools() -> &'static BuildTools {
    static TOOLS: OnceLock<BuildTools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        // Set up on a runtime of its own: each test has its own runtime,
        // which may end before other tests use what is set up here.
        std::thread::spawn(|| {
            tokio::runtime::Runtime::new()
                .expect("a runtime")
                .block_on(set_up_build_tools())
        })
        .join()
        .expect("setting up the build tools")
    })
}

async fn set_up_build_tools() -> BuildTools {
    let sandboxes = Sandboxes::new(Users::automatic(), Limits::default()).expect("sandboxes");
    let root = std::env::temp_dir().join("ubiops-test-sandbox");
    let probes = root.join(format!("probes-{}", std::process::id()));
    std::fs::create_dir_all(&probes).expect("the probe directory");
    for dir in [&root, &probes] {
        ubiops_sandbox::make_reachable(dir).expect("reachable test sandbox directory");
    }
    let interpreters = Interpreters::discover(
        &std::env::var("PATH").unwrap_or_default(),
        &[],
        false,
        &sandboxes,
        &probes,
    )
    .await;
    assert!(
        interpreters.all().next().is_some(),
        "the build tests need a Python 3 interpreter with venv (python3.X on PATH)"
    );
    let environments = Environments::new(
        Settings {
            dir: root.join("environments"),
            size_limit_bytes: 20 << 30,
            pip_environment: Vec::new(),
            install_time_limit: Duration::from_secs(300),
        },
        sandboxes,
    )
    .expect("the shared environment cache");
    BuildTools {
        interpreters: Arc::new(interpreters),
        environments,
        import_time_limit: Duration::from_secs(60),
        r_installed: false,
    }
}

/// `<root>/sandbox`, set up as the server sets up its data directory.
pub(crate) fn sandbox_root(root: &Path) -> PathBuf {
    set_mode(root, 0o711);
    let dir = root.join("sandbox");
    std::fs::create_dir_all(&dir).expect("the sandbox directory");
    ubiops_sandbox::make_reachable(&dir).expect("reachable sandbox directory");
    dir
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
