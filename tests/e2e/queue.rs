//! The build queue's defences: a fault that repeats (an inspector that
//! panics, storage that cannot be read) fails the build after a bounded
//! number of attempts, with a growing wait between them; and a build queued
//! while a worker's claim query runs wakes that worker without waiting for
//! its poll.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::PgListener;
use tokio::sync::oneshot;
use ubiops_files::FileStore;
use ubiops_storage::BUILDS_CHANNEL;
use ubiops_test_support::{unreachable_file_store, wait_for, TestApp};
use ubiops_worker::WorkerConfig;

use crate::builds::{deployment_zip, upload};

const VERSION: &str = "/projects/p/deployments/d/versions/v1";

async fn app() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1"]).await;
    app
}

/// Queues a build of a valid package; returns the build's id.
async fn queue_build(app: &TestApp) -> String {
    let uploaded = upload(app, VERSION, deployment_zip(), "d.zip").await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    uploaded.body["build"].as_str().unwrap().to_owned()
}

/// A worker whose waits between attempts are short enough to sit out.
fn retrying_config(app: &TestApp) -> WorkerConfig {
    let mut config = app.worker_config(1);
    config.retry_base = Duration::from_secs(1);
    config.retry_cap = Duration::from_secs(10);
    config
}

/// The build's attempts, status, and wait until it may be claimed again.
async fn queue_state(app: &TestApp, build: &str) -> (i32, String, Option<Duration>) {
    let (attempts, status, wait): (i32, String, Option<f64>) = sqlx::query_as(
        "SELECT attempts, status, extract(epoch FROM retry_at - now())::float8
         FROM builds WHERE id = $1::uuid",
    )
    .bind(build)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    (attempts, status, wait.map(Duration::from_secs_f64))
}

/// Runs `build`, whose every attempt fails, until it is given up: after each
/// failed attempt but the last, it is queued again with its attempt counted
/// and cannot be claimed for a wait that doubles. Returns the build's error
/// message, after checking that the version shows the failure.
async fn run_until_given_up(
    app: &TestApp,
    build: &str,
    files: &FileStore,
    config: &WorkerConfig,
) -> String {
    let run = || ubiops_worker::run_pending_builds(&app.store, files, config);
    for attempt in 1..config.max_attempts {
        assert_eq!(run().await, 1, "attempt {attempt} ran");
        let (attempts, status, wait) = queue_state(app, build).await;
        assert_eq!((attempts, status.as_str()), (attempt, "queued"));
        let expected = config.retry_base * 2u32.pow(attempt as u32 - 1);
        let wait = wait.expect("a wait before the next attempt");
        assert!(
            wait <= expected && wait > expected / 2,
            "after attempt {attempt}: waits {wait:?}, expected {expected:?}"
        );
        assert_eq!(run().await, 0, "claimed while it waits");
        tokio::time::sleep(wait + Duration::from_millis(50)).await;
    }
    assert_eq!(run().await, 1, "the last attempt ran");
    let (attempts, status, wait) = queue_state(app, build).await;
    assert_eq!(
        (attempts, status.as_str(), wait),
        (config.max_attempts, "failed", None)
    );
    assert_eq!(run().await, 0, "a failed build is not claimed again");
    let shown = app.get(&format!("{VERSION}/builds/{build}")).await.body;
    assert_eq!(shown["status"], "failed", "{shown}");
    assert_eq!(app.get(VERSION).await.body["status"], "unavailable");
    let message = shown["error_message"].as_str().unwrap().to_owned();
    let lines = build_log(app, build).await;
    for attempt in 1..config.max_attempts {
        let retried = format!(
            "(attempt {attempt} of {}); it is retried in",
            config.max_attempts
        );
        assert!(
            lines.iter().any(|line| line.contains(&retried)),
            "{retried:?} in {lines:#?}"
        );
    }
    assert_eq!(
        lines.last(),
        Some(&format!("Build failed: {message}")),
        "{lines:#?}"
    );
    message
}

async fn build_log(app: &TestApp, build: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT text FROM logs WHERE build_id = $1::uuid ORDER BY ns")
        .bind(build)
        .fetch_all(app.store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_package_that_crashes_the_inspector_fails_after_the_last_attempt() {
    let app = app().await;
    let build = queue_build(&app).await;
    let mut config = retrying_config(&app);
    config.hooks.before_inspect = Some(Arc::new(|| panic!("injected crash of the inspector")));
    let message = run_until_given_up(&app, &build, &app.files, &config).await;
    assert!(
        message.contains("crashed the server's inspector") && message.contains("after 3 attempts"),
        "{message}"
    );
    assert!(
        !message.contains("injected"),
        "the cause stays in the server log: {message}"
    );
}

#[tokio::test]
async fn storage_that_always_fails_fails_the_build_after_the_last_attempt() {
    let app = app().await;
    let build = queue_build(&app).await;
    let config = retrying_config(&app);
    let message = run_until_given_up(&app, &build, &unreachable_file_store(), &config).await;
    assert!(
        message.contains("interrupted by temporary faults of the server 3 times"),
        "{message}"
    );
    for private in ["127.0.0.1", "http", "unreachable", "/"] {
        assert!(!message.contains(private), "{private:?} leaked: {message}");
    }
}

#[tokio::test]
async fn a_graceful_shutdown_gives_the_attempt_back() {
    let app = app().await;
    let build = queue_build(&app).await;
    let claimed = app
        .store
        .claim_build("stopping", 60.0, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.attempts, 1);
    app.store
        .release_build(claimed.id, "stopping")
        .await
        .unwrap();
    assert_eq!(
        queue_state(&app, &build).await,
        (0, "queued".to_owned(), None)
    );
    assert_eq!(app.run_pending_builds().await, 1);
    assert_eq!(
        queue_state(&app, &build).await,
        (1, "success".to_owned(), None)
    );
}

#[tokio::test]
async fn a_build_queued_during_a_claim_starts_without_waiting_for_the_poll() {
    let app = app().await;
    // The test's own LISTEN, to know when the build's notification is out.
    let mut notifications = PgListener::connect_with(app.store.pool()).await.unwrap();
    notifications.listen(BUILDS_CHANNEL).await.unwrap();

    // The worker's first claim finds nothing, then holds until the build has
    // been queued and notified; only a wake-up registered before the claim
    // can start the build before the poll, an hour later.
    let (held, in_claim) = oneshot::channel::<()>();
    let (release, released) = oneshot::channel::<()>();
    let first_claim = Arc::new(Mutex::new(Some((held, released))));
    let mut config = app.worker_config(1);
    config.poll_interval = Duration::from_secs(3600);
    config.hooks.after_claim = Some(Arc::new(move || {
        let first = first_claim.lock().unwrap().take();
        Box::pin(async move {
            if let Some((held, released)) = first {
                let _ = held.send(());
                let _ = released.await;
            }
        })
    }));
    let _worker = app.start_worker_with(config);
    wait_for("the worker's LISTEN", Duration::from_secs(10), || async {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        )
        .fetch_one(app.store.pool())
        .await
        .unwrap();
        (listening >= 2).then_some(())
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), in_claim)
        .await
        .expect("the worker's first claim")
        .unwrap();

    let build = queue_build(&app).await;
    tokio::time::timeout(Duration::from_secs(10), notifications.recv())
        .await
        .expect("the build's notification")
        .unwrap();
    // The worker's listener got the same notification; give it a moment to
    // pass it on before the claim returns.
    tokio::time::sleep(Duration::from_millis(200)).await;
    release.send(()).unwrap();

    let path = format!("{VERSION}/builds/{build}");
    let done: Value = wait_for("the build", Duration::from_secs(20), || async {
        let build = app.get(&path).await.body;
        (build["status"] == "success").then_some(build)
    })
    .await;
    assert_eq!(done["status"], "success");
}
