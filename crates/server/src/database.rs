//! Where the database comes from: `DATABASE_URL`, or the embedded PostgreSQL
//! cluster in `<data dir>/postgres` that this process runs itself.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use tokio::time::Instant;
use ubiops_embedded_postgres::{running_cluster_url, ClusterConfig, EmbeddedPostgres};
use ubiops_storage::{StorageError, Store};

use crate::config::DataConfig;

const EMBEDDED_DATABASE: &str = "ubiops";

/// An open, migrated database, and the embedded cluster behind it when this
/// process started one (to stop it cleanly on shutdown).
pub struct Database {
    pub store: Store,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// For `serve`: start (or reuse) the cluster, connect, migrate. An
    /// external database that cannot be reached yet is tried again for up to
    /// `wait` (it may still be starting, as in a Compose stack).
    pub async fn open(data: &DataConfig, pool_size: u32, wait: Duration) -> anyhow::Result<Self> {
        let (url, embedded) = match &data.database_url {
            Some(url) => (url.clone(), None),
            None => {
                let cluster = start_embedded(&data.embedded_postgres_dir()).await?;
                (cluster.database_url(), Some(cluster))
            }
        };
        let store = connect(&url, pool_size, wait).await?;
        store
            .migrate()
            .await
            .context("could not apply database migrations")?;
        Ok(Self { store, embedded })
    }

    /// For commands beside a server (`token create`, `worker`): use a cluster
    /// that a running server already has up, or start it for this command.
    pub async fn open_for_command(data: &DataConfig, wait: Duration) -> anyhow::Result<Self> {
        if data.database_url.is_none() {
            if let Some(url) = running_cluster_url(&data.embedded_postgres_dir(), EMBEDDED_DATABASE)
            {
                let store = connect(&url, 4, Duration::ZERO).await?;
                store
                    .migrate()
                    .await
                    .context("could not apply database migrations")?;
                return Ok(Self {
                    store,
                    embedded: None,
                });
            }
        }
        Self::open(data, 4, wait).await
    }

    /// Closes the pool, then stops the embedded cluster if we started it.
    pub async fn close(self) -> anyhow::Result<()> {
        self.store.close().await;
        if let Some(cluster) = self.embedded {
            cluster
                .stop()
                .await
                .context("could not stop the embedded PostgreSQL cleanly")?;
            tracing::info!("embedded PostgreSQL stopped");
        }
        Ok(())
    }
}

async fn start_embedded(dir: &Path) -> anyhow::Result<EmbeddedPostgres> {
    tracing::info!(dir = %dir.display(), "starting the embedded PostgreSQL (DATABASE_URL is not set)");
    let cluster = EmbeddedPostgres::start(ClusterConfig::new(dir, EMBEDDED_DATABASE)).await?;
    Ok(cluster)
}

/// Connects, trying again while the database is unavailable (refused,
/// unresolvable, starting up: `StorageError::Unavailable`) until `wait` has
/// passed. Any other error (a wrong password, a missing database) will not
/// go away by waiting and stops at once.
async fn connect(url: &str, pool_size: u32, wait: Duration) -> anyhow::Result<Store> {
    // The URL may hold a password: say which database failed without echoing it.
    let options =
        PgConnectOptions::from_str(url).context("DATABASE_URL: not a valid PostgreSQL URL")?;
    let target = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    );
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(250);
    loop {
        match Store::connect(options.clone(), pool_size).await {
            Ok(store) => return Ok(store),
            Err(error @ StorageError::Unavailable(_)) if Instant::now() + pause < deadline => {
                tracing::warn!(
                    database = %target,
                    error = %error,
                    retry_in_ms = pause.as_millis() as u64,
                    "PostgreSQL is not reachable yet; waiting for it (UBIOPS_DATABASE_WAIT_SECONDS)"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(error @ StorageError::Unavailable(_)) if !wait.is_zero() => {
                return Err(error).with_context(|| {
                    format!(
                        "could not connect to PostgreSQL at {target} within {} s \
                         (UBIOPS_DATABASE_WAIT_SECONDS)",
                        wait.as_secs()
                    )
                })
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("could not connect to PostgreSQL at {target}"))
            }
        }
    }
}
