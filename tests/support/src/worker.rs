//! Build workers for tests: live ones running in the background, for tests of
//! the worker itself (concurrency, leases, cancellation, sweeps), and
//! `run_pending_builds` for tests that only need their builds finished.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::RetryConfig;
use tokio::sync::watch;
use ubiops_files::FileStore;
use ubiops_worker::WorkerConfig;

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
    pub fn worker_config(&self, slots: usize) -> WorkerConfig {
        let mut config = WorkerConfig::new(slots, self.files_dir.path().join("builds"));
        config.poll_interval = Duration::from_millis(100);
        config
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
