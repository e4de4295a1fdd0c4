//! `ubiops-server serve`: the HTTP server, until SIGINT or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use ubiops_api::{router, AppState};
use ubiops_domain::token::{generate_token, hash_token};

use crate::config::{Config, DEFAULT_BOOTSTRAP_EMAIL};
use crate::database::Database;
use crate::keyring::load_keyring;
use crate::storage::open_object_store;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let keyring = load_keyring(&config)?;
    let objects = open_object_store(&config.storage_url)?;
    tracing::info!(storage = %config.storage_url, "object storage ready");
    let _ = objects; // Deployment files arrive with the revisions endpoints.

    let database = Database::open(
        config.database_url.as_deref(),
        &config.data_dir,
        config.database_pool_size,
    )
    .await?;
    ensure_tokens(&database, &config).await?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("UBIOPS_LISTEN: cannot listen on {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, "listening");

    let app = router(AppState {
        store: database.store.clone(),
        organization_name: Arc::from(config.organization_name.as_str()),
        instance_types: Arc::new(config.instance_types.clone()),
        keyring: Arc::new(keyring),
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    tracing::info!("HTTP server stopped; in-flight requests have finished");
    database.close().await?;
    served.context("HTTP server failed")
}

/// The bootstrap token from the environment, and on a first start without any
/// token, a generated admin token printed once (only its hash is stored).
async fn ensure_tokens(database: &Database, config: &Config) -> anyhow::Result<()> {
    if let Some(bootstrap) = &config.bootstrap_token {
        database
            .store
            .ensure_admin_token(&hash_token(&bootstrap.token), &bootstrap.email)
            .await
            .context("could not store UBIOPS_BOOTSTRAP_TOKEN")?;
        tracing::info!(email = %bootstrap.email, "bootstrap admin token is in place");
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
