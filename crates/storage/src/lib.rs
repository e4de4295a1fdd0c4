//! PostgreSQL storage. All SQL lives here, checked at compile time by sqlx
//! against the migrations in `migrations/`. Every change that touches more than
//! one row (an object and its audit event, say) runs in one transaction.

mod audit;
mod builds;
mod deployments;
mod error;
mod projects;
mod revisions;
mod tokens;
mod variables;
mod versions;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub use audit::{AuditEvent, NewAuditEvent};
pub use builds::{BuildOutcome, ClaimedBuild, SERVICE_ACTOR};
pub use deployments::Deployment;
pub use error::StorageError;
pub use projects::Project;
pub use revisions::{
    Build, NewRevision, Revision, StoredFile, Trigger, VersionRef, BUILDS_CHANNEL,
};
pub use tokens::TokenRecord;
pub use variables::{Variable, VariableScope};
pub use versions::{DeploymentRef, ResolvedVersion, Version};

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The migrations of `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Who is making a change, as recorded in audit events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub email: String,
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects a pool. A short acquire timeout makes a database outage a quick
    /// 503 instead of requests piling up.
    pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StorageError::Database(sqlx::Error::Migrate(Box::new(e))))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
