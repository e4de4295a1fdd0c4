//! PostgreSQL storage. All SQL lives here, checked at compile time by sqlx
//! against the migrations in `migrations/`. Every change that touches more than
//! one row (an object and its audit event, say) runs in one transaction.

mod audit;
mod batch;
mod builds;
pub mod connections;
mod deployments;
mod error;
mod listing;
mod logs;
mod notifications;
mod projects;
mod queue;
mod record_writer;
mod requests;
mod revisions;
mod sealing;
mod serving;
mod serving_cache;
mod tokens;
mod variables;
mod versions;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use batch::Batcher;
use connections::{Connections, Lease};

pub use audit::{AuditEvent, AuditScope, NewAuditEvent};
pub use builds::{BuildOutcome, ClaimedBuild, SERVICE_ACTOR};
pub use deployments::Deployment;
pub use error::StorageError;
pub use listing::{Listed, RowStamp, RowVersion};
pub use logs::{LogLine, LogTags, NewLogLine};
pub use notifications::wake_on_notify;
pub use projects::Project;
pub use queue::{
    Claimed, Hold, NewBatch, Outcome, Queued, Recovered, CANCEL_CHANNEL, QUEUE_CHANNEL,
};
pub use requests::{NewRequest, RequestScope, RequestSummary, Retention, StoredRequest};
pub use revisions::{
    Build, NewRevision, Revision, StoredFile, TemplateDeployment, Trigger, VersionRef,
    BUILDS_CHANNEL,
};
pub use serving::{no_default_version, ActiveRevision, CodeVariable, ServingTarget, VariableValue};
pub use tokens::{BootstrapOutcome, TokenListing, TokenRecord};
pub use variables::{ScopeStamp, Variable, VariableScope};
pub use versions::{DeploymentRef, ResolvedVersion, Version};

/// The auxiliary pool's size: the `LISTEN`s of the build workers, of the
/// batch queue and of serving changes, a migration, a test's reads.
const AUXILIARY_CONNECTIONS: u32 = 5;

/// How long closing waits for the queued records of finished requests.
const RECORDS_PATIENCE: Duration = Duration::from_secs(10);

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The migrations of `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Who is making a change, as recorded in audit events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub email: String,
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// What requests and the worker run their SQL on.
    connections: Connections,
    /// A small sqlx pool for what needs one: migrations, `LISTEN`, and tests
    /// reading the database directly. Opens connections only when used.
    pool: PgPool,
    /// The reads GET requests and deployment requests make most, and the
    /// records of finished requests, batched across requests.
    lookups: Lookups,
}

#[derive(Clone)]
struct Lookups {
    deployment: Batcher<deployments::DeploymentByNames>,
    version: Batcher<versions::VersionByNames>,
    scope: Batcher<variables::ScopeByNames>,
    variables: Batcher<variables::VariablesOfScope>,
    serving: Batcher<serving::ServingByNames>,
    records: record_writer::RecordWriter,
    serving_cache: Arc<serving_cache::ServingCache>,
}

impl Lookups {
    fn start(connections: &Connections) -> Self {
        Self {
            deployment: Batcher::start(connections.clone()),
            version: Batcher::start(connections.clone()),
            scope: Batcher::start(connections.clone()),
            variables: Batcher::start(connections.clone()),
            serving: Batcher::start(connections.clone()),
            records: record_writer::RecordWriter::start(connections.clone()),
            serving_cache: Arc::default(),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Connects: `max_connections` for requests and the worker, plus up to
    /// `AUXILIARY_CONNECTIONS` for migrations, `LISTEN` and tests.
    pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let connections = Connections::connect(options.clone(), max_connections).await?;
        let pool = PgPoolOptions::new()
            .max_connections(AUXILIARY_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        let lookups = Lookups::start(&connections);
        Ok(Self {
            connections,
            pool,
            lookups,
        })
    }

    /// A connection for one request's SQL.
    async fn connection(&self) -> Result<Lease> {
        self.connections.get().await
    }

    /// A sqlx pool on the same database, for `LISTEN` and direct reads.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StorageError::Database(sqlx::Error::Migrate(Box::new(e))))
    }

    /// Writes the records of finished requests still queued (waiting at
    /// most `RECORDS_PATIENCE` for a database that may be gone) and closes.
    pub async fn close(&self) {
        self.lookups.records.finish(RECORDS_PATIENCE).await;
        self.connections.close();
        self.pool.close().await;
    }
}
