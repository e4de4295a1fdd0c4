//! The connections requests run on: a deadpool of sqlx `PgConnection`s that
//! does not ping PostgreSQL on every checkout and return.
//!
//! sqlx's own pool sends a `Sync` and waits for the answer both when it hands
//! out a connection and when it takes one back (the second is unconditional),
//! so a one-query request cost three round trips to PostgreSQL instead of one,
//! the largest cost of "GET one deployment" after the query itself.
//! Here a connection is only checked when there is a reason to doubt it:
//! - it sat idle for a while (PostgreSQL may have restarted meanwhile);
//! - some database operation in this process failed in a way that can break
//!   a connection since it was last checked (see [`note_connection_trouble`]);
//! - it is handed back with bytes still unsent, which is what a dropped
//!   transaction leaves (its `ROLLBACK`): those are sent at once, so no row
//!   lock outlives the request that took it.
//!
//! What a dropped request leaves unread is drained by sqlx itself before the
//! connection's next query.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool::managed::{
    self, Metrics, PoolError, QueueMode, RecycleError, RecycleResult, Timeouts,
};
use deadpool::Runtime;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor};

use crate::error::StorageError;

/// A connection unused for longer than this is pinged before it is handed out.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// How long to wait for a free connection, a new one or a ping: a database
/// outage becomes a quick 503 instead of requests piling up.
const WAIT: Duration = Duration::from_secs(5);

/// Failures that may have broken a connection, counted process-wide. The
/// error conversion that sees them does not know which connection they came
/// from, so every connection checked before the latest one is checked again on
/// its next checkout: one extra round trip each, only after a failure.
static CONNECTION_TROUBLE: AtomicU64 = AtomicU64::new(0);

/// Records a failure that may have left a connection unusable (I/O, protocol,
/// or PostgreSQL going away).
pub(crate) fn note_connection_trouble() {
    CONNECTION_TROUBLE.fetch_add(1, Ordering::Release);
}

fn connection_trouble() -> u64 {
    CONNECTION_TROUBLE.load(Ordering::Acquire)
}

/// A PostgreSQL connection and the trouble count when it was last known good.
pub struct TrackedConnection {
    raw: PgConnection,
    checked_at_trouble: u64,
}

pub struct Manager {
    options: PgConnectOptions,
}

impl managed::Manager for Manager {
    type Type = TrackedConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<TrackedConnection, sqlx::Error> {
        let checked_at_trouble = connection_trouble();
        let mut raw = PgConnection::connect_with(&self.options).await?;
        // PostgreSQL's default (`auto`) planned most statements anew on every
        // execution: the generic plan of a statement over key arrays (the
        // batched lookups) assumes 10 keys, a custom plan sees the real few,
        // so the generic plan never looked cheaper and every batch was
        // planned anew (see BENCHMARKS.md). Every statement here is keyed by
        // names or ids, so a generic plan is as good as a custom one; the one
        // filter whose generic plan was slow is a statement of its own
        // (`deployment_stamps`). A `SET` rather than a startup option, which
        // a connection pooler such as PgBouncer may refuse.
        raw.execute("SET plan_cache_mode = force_generic_plan")
            .await?;
        Ok(TrackedConnection {
            raw,
            checked_at_trouble,
        })
    }

    async fn recycle(
        &self,
        conn: &mut TrackedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        let trouble = connection_trouble();
        if metrics.last_used() > IDLE_BEFORE_PING || conn.checked_at_trouble != trouble {
            conn.raw.ping().await.map_err(RecycleError::Backend)?;
            conn.checked_at_trouble = trouble;
        }
        Ok(())
    }
}

/// Connections for requests; cheap to clone.
#[derive(Clone)]
pub struct Connections {
    pool: managed::Pool<Manager>,
}

impl Connections {
    /// Builds the pool and opens one connection, so a wrong URL or an
    /// unreachable database is reported at startup.
    pub async fn connect(options: PgConnectOptions, max_size: u32) -> Result<Self, StorageError> {
        let pool = managed::Pool::builder(Manager { options })
            .max_size(max_size as usize)
            .timeouts(Timeouts {
                wait: Some(WAIT),
                create: Some(WAIT),
                recycle: Some(WAIT),
            })
            // The most recently used first: under light load the same few
            // connections stay warm and the rest idle (and get pinged).
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .build()
            .expect("a runtime and timeouts are set");
        let connections = Self { pool };
        connections.get().await?;
        Ok(connections)
    }

    pub async fn get(&self) -> Result<Lease, StorageError> {
        match self.pool.get().await {
            Ok(object) => Ok(Lease {
                object: Some(object),
            }),
            Err(PoolError::Backend(error)) => Err(error.into()),
            Err(PoolError::Timeout(_)) => Err(StorageError::Unavailable(sqlx::Error::PoolTimedOut)),
            Err(_) => Err(StorageError::Unavailable(sqlx::Error::PoolClosed)),
        }
    }

    pub fn close(&self) {
        self.pool.close();
    }
}

/// A connection checked out for one request; goes back to the pool on drop.
pub struct Lease {
    object: Option<managed::Object<Manager>>,
}

impl Deref for Lease {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.object.as_ref().expect("present until dropped").raw
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.object.as_mut().expect("present until dropped").raw
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut object) = self.object.take() else {
            return;
        };
        if !object.raw.should_flush() {
            return; // back to the pool, ready for the next query
        }
        // Unsent bytes: a dropped transaction's ROLLBACK, or a write cut off
        // mid-way. Send them now; a connection that cannot take them leaves
        // the pool.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(managed::Object::take(object));
            return;
        };
        runtime.spawn(async move {
            let flushed = tokio::time::timeout(WAIT, object.raw.ping()).await;
            if !matches!(flushed, Ok(Ok(()))) {
                note_connection_trouble();
                drop(managed::Object::take(object));
            }
        });
    }
}
