//! `ubiops-server serve` (the HTTP API, with build workers and the
//! deployments' instances inside) and
//! `ubiops-server worker` (build workers only, to scale builds apart from the
//! API), both until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use ubiops_domain::token::{generate_token, hash_token};
use ubiops_files::FileStore;
use ubiops_worker::{BuildTools, WorkerConfig};

use crate::build_tools::build_tools;
use crate::config::{Config, DEFAULT_BOOTSTRAP_EMAIL};
use crate::database::Database;
use crate::instances;
use crate::keyring::load_keyring;
use crate::startup::Application;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let files = open_files(&config)?;
    tracing::info!(storage = %config.storage_url(), "object storage ready");

    let database = Database::open(
        &config.data,
        config.database_pool_size,
        config.database_wait,
    )
    .await?;
    // After the database: whether a key may be generated depends on what it holds.
    let keyring = match load_keyring(&config, &database.store).await {
        Ok(keyring) => keyring,
        Err(error) => {
            database.close().await?;
            return Err(error);
        }
    };
    ensure_tokens(&database, &config).await?;

    let keyring = Arc::new(keyring);
    let (work_dir, tools) = build_tools(&config).await?;
    let serving = Arc::new(instances::serving(
        &config.data.dir,
        config.builds.instance_start_timeout,
        config.queue_settings(),
        database.store.clone(),
        files.clone(),
        keyring.clone(),
        &tools,
    )?);
    let application = Application::build(
        &config.api,
        database.store.clone(),
        files.clone(),
        keyring,
        serving.clone(),
    )
    .await?;
    tracing::info!(address = %application.address(), "listening");

    let stopping = stop_on_signal();
    let maintenance = tokio::spawn(serving.maintain(stopping.clone()));
    let workers = if config.build_workers > 0 {
        let worker = worker_config(&config, config.build_workers, work_dir, tools);
        tracing::info!(slots = config.build_workers, "build workers running");
        Some(tokio::spawn(ubiops_worker::run(
            database.store.clone(),
            files,
            worker,
            stopping.clone(),
        )))
    } else {
        None
    };
    let mut until_stopped = stopping.clone();
    let served = application
        .run_until_stopped(async move {
            let _ = until_stopped.wait_for(|stop| *stop).await;
        })
        .await;
    tracing::info!("HTTP server stopped; in-flight requests have finished");
    let _ = maintenance.await;
    tracing::info!("instances stopped");
    if let Some(workers) = workers {
        let _ = workers.await;
        tracing::info!("build workers stopped");
    }
    database.close().await?;
    served.context("HTTP server failed")
}

/// `ubiops-server worker`: only build workers, against the same database and
/// object storage as the API servers.
pub async fn work(config: Config) -> anyhow::Result<()> {
    let files = open_files(&config)?;
    // Beside a server on the embedded database, share its running cluster.
    let database = Database::open_for_command(&config.data, config.database_wait).await?;
    let slots = config.build_workers.max(1);
    let (work_dir, tools) = build_tools(&config).await?;
    let worker = worker_config(&config, slots, work_dir, tools);
    tracing::info!(slots, "build worker running");
    let stopping = stop_on_signal();
    ubiops_worker::run(database.store.clone(), files, worker, stopping).await;
    tracing::info!("build worker stopped");
    database.close().await
}

fn open_files(config: &Config) -> anyhow::Result<FileStore> {
    FileStore::open(&config.storage_url()).context("UBIOPS_STORAGE_URL")
}

fn worker_config(
    config: &Config,
    slots: usize,
    work_dir: PathBuf,
    tools: BuildTools,
) -> WorkerConfig {
    let mut worker = WorkerConfig::new(slots, work_dir, tools);
    worker.lease = config.build_lease;
    worker.log_retention = config.log_retention;
    worker
}

/// The bootstrap token from the environment, and on a first start without any
/// token, a generated admin token printed once (only its hash is stored).
async fn ensure_tokens(database: &Database, config: &Config) -> anyhow::Result<()> {
    if let Some(token) = &config.bootstrap.token {
        let email = config.bootstrap.email();
        let outcome = database
            .store
            .ensure_bootstrap_token(&hash_token(token), email)
            .await
            .context("could not store UBIOPS_BOOTSTRAP_TOKEN")?;
        tracing::info!(%email, id = %outcome.token.id, "bootstrap admin token is in place");
        for id in outcome.revoked {
            tracing::info!(%id, "revoked the token of an earlier UBIOPS_BOOTSTRAP_TOKEN value");
        }
    }
    let token = generate_token();
    let created = database
        .store
        .insert_first_admin_token(&hash_token(&token), DEFAULT_BOOTSTRAP_EMAIL)
        .await?;
    if created {
        // Printed, not logged: the only time this token is ever shown.
        println!(
            "No API token existed, so an admin token for {DEFAULT_BOOTSTRAP_EMAIL} was created.\n\
             It is shown only this once; use it as `Authorization: Token <token>`:\n{token}"
        );
    }
    Ok(())
}

/// A channel that turns true on SIGINT or SIGTERM.
fn stop_on_signal() -> watch::Receiver<bool> {
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    stopping
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    let name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down: finishing in-flight requests");
}
