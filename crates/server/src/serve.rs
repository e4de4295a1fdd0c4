//! `ubiops-server serve` (the HTTP API, with build workers inside) and
//! `ubiops-server worker` (build workers only, to scale builds apart from the
//! API), both until SIGINT or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use ubiops_api::{router, AppState, Renderings, Services, TokenCache, DEFAULT_RENDERED_BYTES};
use ubiops_domain::token::{generate_token, hash_token};
use ubiops_files::FileStore;
use ubiops_worker::WorkerConfig;

use crate::config::{Config, DEFAULT_BOOTSTRAP_EMAIL};
use crate::database::Database;
use crate::keyring::load_keyring;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let files = FileStore::open(&config.storage_url).context("UBIOPS_STORAGE_URL")?;
    tracing::info!(storage = %config.storage_url, "object storage ready");

    let database = Database::open(
        config.database_url.as_deref(),
        &config.data_dir,
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

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("UBIOPS_LISTEN: cannot listen on {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, "listening");

    let (stop, stopping) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let workers = (config.build_workers > 0).then(|| {
        tracing::info!(slots = config.build_workers, "build workers running");
        tokio::spawn(ubiops_worker::run(
            database.store.clone(),
            files.clone(),
            worker_config(&config, config.build_workers),
            stopping.clone(),
        ))
    });
    let app = router(AppState::new(Services {
        store: database.store.clone(),
        organization_name: Arc::from(config.organization_name.as_str()),
        instance_types: Arc::new(config.instance_types.clone()),
        keyring: Arc::new(keyring),
        files,
        max_upload_bytes: config.max_upload_bytes,
        upload_lease: config.upload_lease,
        tokens: Arc::new(TokenCache::new(config.token_cache_ttl)),
        rendered: Arc::new(Renderings::new(DEFAULT_RENDERED_BYTES)),
    }));
    let mut until_stopped = stopping.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = until_stopped.wait_for(|stop| *stop).await;
        })
        .await;
    tracing::info!("HTTP server stopped; in-flight requests have finished");
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
    let files = FileStore::open(&config.storage_url).context("UBIOPS_STORAGE_URL")?;
    // Beside a server on the embedded database, share its running cluster.
    let database = Database::open_for_command(
        config.database_url.as_deref(),
        &config.data_dir,
        config.database_wait,
    )
    .await?;
    let slots = config.build_workers.max(1);
    tracing::info!(slots, "build worker running");
    let (stop, stopping) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    ubiops_worker::run(
        database.store.clone(),
        files,
        worker_config(&config, slots),
        stopping,
    )
    .await;
    tracing::info!("build worker stopped");
    database.close().await
}

fn worker_config(config: &Config, slots: usize) -> WorkerConfig {
    let mut worker = WorkerConfig::new(slots, config.data_dir.join("builds"));
    worker.lease = config.build_lease;
    worker.log_retention = config.log_retention;
    worker
}

/// The bootstrap token from the environment, and on a first start without any
/// token, a generated admin token printed once (only its hash is stored).
async fn ensure_tokens(database: &Database, config: &Config) -> anyhow::Result<()> {
    if let Some(bootstrap) = &config.bootstrap_token {
        let outcome = database
            .store
            .ensure_bootstrap_token(&hash_token(&bootstrap.token), &bootstrap.email)
            .await
            .context("could not store UBIOPS_BOOTSTRAP_TOKEN")?;
        tracing::info!(email = %bootstrap.email, id = %outcome.token.id, "bootstrap admin token is in place");
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
