//! The records of finished direct requests, written behind their answers.
//!
//! A direct request's caller has its answer once the code returned; the
//! record is its history. Waiting for the record's commit before answering
//! made each stored request pay a round trip to PostgreSQL and its
//! per-statement cost, shared only with the few requests finishing at the
//! same moment (BENCHMARKS.md, "Requests"). Here a record joins a queue and
//! the answer goes out; one task writes the queue in few, large statements.
//!
//! What stays true (docs/API-DECISIONS.md, "Requests"):
//! - Reads of requests through this server see every record whose answer
//!   was given before the read: they wait for [`RecordWriter::written`],
//!   which writes at once what is queued.
//! - Other servers see a record within [`LINGER`] and one statement.
//! - A record is written whole or not at all, and a failed write is retried
//!   until it succeeds or the server stops; stopping writes what is queued.
//!   A crash of the server loses the records of the last moments, as a
//!   crash of PostgreSQL does with their commits made without a flush.
//! - The queue is bounded: beyond [`MAX_QUEUED`] records, answers wait for
//!   room, so a database that is down or slow holds requests back rather
//!   than filling the memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::connections::Connections;
use crate::requests::{write_records, RecordRow};
use crate::{Result, StorageError};

/// How long the first queued record waits for others to share its
/// statement. Bounds how late other servers see a record; this server's
/// reads do not wait for it.
const LINGER: Duration = Duration::from_millis(10);

/// Records that are written without waiting out [`LINGER`]: a statement of
/// them costs PostgreSQL little more per record than a larger one, and
/// larger ones hold a core long enough to delay requests.
const ENOUGH_ROWS: usize = 32;

/// The most records, and about the most bytes of request data and results,
/// in one statement (when more are queued, as after a failure).
const MAX_ROWS: usize = 256;
const MAX_BYTES: usize = 4 << 20;

/// Records queued at most; further answers wait for room.
const MAX_QUEUED: usize = 8192;

/// Waits between attempts to write after a failure, doubling up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MOST: Duration = Duration::from_secs(5);

/// Hands records to the writing task; cheap to clone. When the last handle
/// is dropped the task writes what is queued and ends.
#[derive(Clone)]
pub(crate) struct RecordWriter {
    open: Arc<Open>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the task waiting for records: a first one, or the end.
    arrived: Notify,
    /// Ends the task's wait for more records: a full statement, a read
    /// waiting, or the end.
    hurry: Notify,
    /// A read waits: write without lingering.
    urgent: AtomicBool,
    closed: AtomicBool,
    room: Semaphore,
    progress: watch::Sender<Progress>,
    task: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Queue {
    records: Vec<RecordRow>,
    /// Records queued since the start: the sequence number of the newest.
    queued: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// Every record up to this sequence number is written (or dropped,
    /// its version deleted meanwhile).
    written: u64,
    /// Failed attempts so far: a read waiting stops waiting at a failure
    /// and goes to the database itself.
    failures: u64,
}

/// Closes the queue when the last handle goes.
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl RecordWriter {
    /// Starts the writing task on the current Tokio runtime.
    pub(crate) fn start(connections: Connections) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            arrived: Notify::new(),
            hurry: Notify::new(),
            urgent: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            room: Semaphore::new(MAX_QUEUED),
            progress: watch::Sender::new(Progress::default()),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(write_queue(shared.clone(), connections));
        *shared.task.lock() = Some(task);
        Self {
            open: Arc::new(Open(shared)),
        }
    }

    fn shared(&self) -> &Shared {
        &self.open.0
    }

    /// Queues `record`; waits only while the queue is full.
    pub(crate) async fn record(&self, record: RecordRow) -> Result<()> {
        let shared = self.shared();
        if shared.closed.load(Ordering::SeqCst) {
            return Err(StorageError::Unavailable(sqlx::Error::PoolClosed));
        }
        let room = shared
            .room
            .acquire()
            .await
            .map_err(|_| StorageError::Unavailable(sqlx::Error::PoolClosed))?;
        // Given back by the task once the record is written.
        room.forget();
        let mut queue = shared.queue.lock();
        queue.records.push(record);
        queue.queued += 1;
        let length = queue.records.len();
        drop(queue);
        // The task waits for a first record, or lingers for a full
        // statement; any other record finds it busy or lingering.
        if length == 1 {
            shared.arrived.notify_one();
        } else if length == ENOUGH_ROWS {
            shared.hurry.notify_one();
        }
        Ok(())
    }

    /// Returns once every record queued before the call is written, or an
    /// attempt to write failed meanwhile (the caller's own query will then
    /// meet the same database).
    pub(crate) async fn written(&self) {
        let shared = self.shared();
        let target = shared.queue.lock().queued;
        let mut progress = shared.progress.subscribe();
        let failures = {
            let now = progress.borrow();
            if now.written >= target {
                return;
            }
            now.failures
        };
        shared.urgent.store(true, Ordering::SeqCst);
        shared.hurry.notify_one();
        let _ = progress
            .wait_for(|now| now.written >= target || now.failures != failures)
            .await;
    }

    /// Writes what is queued and stops the task, waiting at most `patience`
    /// (the database may be gone); says how many records were lost.
    pub(crate) async fn finish(&self, patience: Duration) {
        let shared = self.shared();
        shared.close();
        let Some(task) = shared.task.lock().take() else {
            return;
        };
        let abort = task.abort_handle();
        if tokio::time::timeout(patience, task).await.is_err() {
            abort.abort();
            let lost = shared.queue.lock().records.len();
            tracing::error!(
                lost,
                "the records of finished requests could not be written before the server stopped"
            );
        }
    }
}

impl Shared {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.arrived.notify_one();
        self.hurry.notify_one();
    }
}

/// The task: waits for records, lets a statement's worth gather for at most
/// [`LINGER`], writes them, and again, until closed and empty.
async fn write_queue(shared: Arc<Shared>, connections: Connections) {
    loop {
        loop {
            let empty = shared.queue.lock().records.is_empty();
            let closed = shared.closed.load(Ordering::SeqCst);
            match (empty, closed) {
                (true, true) => return,
                (true, false) => shared.arrived.notified().await,
                (false, _) => break,
            }
        }
        let hurry = |shared: &Shared| {
            shared.urgent.load(Ordering::SeqCst)
                || shared.closed.load(Ordering::SeqCst)
                || shared.queue.lock().records.len() >= ENOUGH_ROWS
        };
        if !hurry(&shared) {
            let _ = tokio::time::timeout(LINGER, shared.hurry.notified()).await;
        }
        let (records, through) = take_statement(&shared);
        write_until_done(&shared, &connections, &records).await;
        let count = records.len();
        shared
            .progress
            .send_modify(|progress| progress.written = through);
        shared.room.add_permits(count);
    }
}

/// The oldest queued records, up to a statement's worth, and the sequence
/// number of the last of them.
fn take_statement(shared: &Shared) -> (Vec<RecordRow>, u64) {
    let mut queue = shared.queue.lock();
    let mut bytes = 0;
    let count = queue
        .records
        .iter()
        .take(MAX_ROWS)
        .take_while(|record| {
            let first = bytes == 0;
            bytes += record.data_bytes().max(1);
            first || bytes <= MAX_BYTES
        })
        .count();
    let records: Vec<RecordRow> = queue.records.drain(..count).collect();
    let through = queue.queued - queue.records.len() as u64;
    if queue.records.is_empty() {
        shared.urgent.store(false, Ordering::SeqCst);
    }
    (records, through)
}

/// Writes `records`, retrying after failures (logged) until it succeeds;
/// [`RecordWriter::finish`] bounds how long that may take at the end.
async fn write_until_done(shared: &Shared, connections: &Connections, records: &[RecordRow]) {
    let mut wait = RETRY_FIRST;
    loop {
        let written = match connections.get().await {
            Ok(mut connection) => write_records(&mut connection, records).await,
            Err(error) => Err(error),
        };
        let Err(error) = written else {
            return;
        };
        tracing::warn!(%error, records = records.len(), "could not write the records of finished requests; retrying");
        shared
            .progress
            .send_modify(|progress| progress.failures += 1);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MOST);
    }
}
