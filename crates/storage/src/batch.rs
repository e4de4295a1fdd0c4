//! Concurrent lookups of one kind answered together, by one query.
//!
//! On two cores the fixed cost of a query (a round trip, PostgreSQL's
//! per-statement work, the wake-ups on both sides) is most of what a one-row
//! read costs. A [`Batcher`] lets lookups that arrive while earlier ones are
//! still running wait and then go to PostgreSQL as one query over arrays of
//! keys, so that cost is shared (BENCHMARKS.md). A lookup that finds no
//! batch to join is sent at once, so an idle server adds no waiting: batches
//! only form when queries are already in flight.
//!
//! Reads stay as fresh as unbatched ones: a lookup's query starts after the
//! lookup was asked, so it sees every change committed before that.

use std::future::Future;
use std::sync::Arc;

use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, Row};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::connections::Connections;
use crate::{Result, StorageError};

/// Batched queries of one kind running at once. With one, every lookup that
/// arrives while a query runs joins the next, so batches grow with the load
/// and PostgreSQL spends less per lookup than with two in flight.
const BATCHES_IN_FLIGHT: usize = 1;

/// The most keys in one query: bounds the arrays and one batch's latency.
const MAX_KEYS: usize = 64;

/// One kind of lookup that can be answered for many keys by one query.
pub(crate) trait Lookup: Send + Sync + 'static {
    type Key: Send + Sync + 'static;
    type Row: Send + 'static;

    /// The rows of every key, each tagged with its key's index in `keys`.
    fn fetch(
        conn: &mut PgConnection,
        keys: &[Self::Key],
    ) -> impl Future<Output = Result<Vec<Keyed<Self::Row>>>> + Send;
}

/// A row of a batched query, with the index of the key it answers (the
/// query's `key_index` column, the 0-based position in the key arrays).
pub(crate) struct Keyed<R> {
    pub key_index: i64,
    pub row: R,
}

impl<'r, R: FromRow<'r, PgRow>> FromRow<'r, PgRow> for Keyed<R> {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Keyed {
            key_index: row.try_get("key_index")?,
            row: R::from_row(row)?,
        })
    }
}

struct Pending<L: Lookup> {
    key: L::Key,
    reply: oneshot::Sender<Result<Vec<L::Row>>>,
}

/// Hands lookups of kind `L` to a task that batches them; cheap to clone.
pub(crate) struct Batcher<L: Lookup> {
    queue: mpsc::UnboundedSender<Pending<L>>,
}

impl<L: Lookup> Clone for Batcher<L> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<L: Lookup> Batcher<L> {
    /// Starts the batching task on the current Tokio runtime; it ends when
    /// the last `Batcher` handle is dropped.
    pub(crate) fn start(connections: Connections) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(gather::<L>(connections, pending));
        Self { queue }
    }

    /// The rows for `key`, from a query shared with whatever other lookups
    /// of this kind are waiting.
    pub(crate) async fn lookup(&self, key: L::Key) -> Result<Vec<L::Row>> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { key, reply })
            .map_err(|_| StorageError::Unavailable(sqlx::Error::PoolClosed))?;
        answer
            .await
            .map_err(|_| StorageError::Unavailable(sqlx::Error::PoolClosed))?
    }
}

/// Takes every lookup waiting (up to `MAX_KEYS`) as soon as a batch may run,
/// and runs it in its own task: a request that gives up does not stop the
/// query the others wait for.
async fn gather<L: Lookup>(
    connections: Connections,
    mut pending: mpsc::UnboundedReceiver<Pending<L>>,
) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = pending.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return; // never closed
        };
        let mut batch = vec![first];
        while batch.len() < MAX_KEYS {
            match pending.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let connections = connections.clone();
        tokio::spawn(async move {
            answer::<L>(&connections, batch).await;
            drop(permit);
        });
    }
}

async fn answer<L: Lookup>(connections: &Connections, batch: Vec<Pending<L>>) {
    let (keys, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|pending| (pending.key, pending.reply))
        .unzip();
    let fetched = match connections.get().await {
        Ok(mut conn) => L::fetch(&mut conn, &keys).await,
        Err(error) => Err(error),
    };
    match fetched {
        Ok(rows) => {
            let mut per_key: Vec<Vec<L::Row>> = replies.iter().map(|_| Vec::new()).collect();
            for Keyed { key_index, row } in rows {
                if let Some(rows) = usize::try_from(key_index)
                    .ok()
                    .and_then(|i| per_key.get_mut(i))
                {
                    rows.push(row);
                }
            }
            for (reply, rows) in replies.into_iter().zip(per_key) {
                let _ = reply.send(Ok(rows));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.shared_copy()));
            }
        }
    }
}
