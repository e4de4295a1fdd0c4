//! The code's output on its way to the log: lines are queued without
//! waiting and written in batches by one task, so a chatty deployment costs
//! its requests nothing but a channel send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use ubiops_domain::logs::Level;
use ubiops_storage::{LogTags, NewLogLine, Store};

/// Lines queued at most; beyond, lines are dropped and counted (code that
/// prints faster than the database takes it must not exhaust memory).
const QUEUED_LINES: usize = 20_000;

/// Lines written per statement at most.
const BATCH_LINES: usize = 500;

#[derive(Clone)]
pub(crate) struct LogWriter {
    lines: mpsc::Sender<NewLogLine>,
    dropped: Arc<AtomicU64>,
}

impl LogWriter {
    pub(crate) fn start(store: Store) -> LogWriter {
        let (lines, receiver) = mpsc::channel(QUEUED_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write(store, receiver, dropped.clone()));
        LogWriter { lines, dropped }
    }

    pub(crate) fn push(&self, line: NewLogLine) {
        if self.lines.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn write(store: Store, mut receiver: mpsc::Receiver<NewLogLine>, dropped: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(BATCH_LINES);
    while receiver.recv_many(&mut batch, BATCH_LINES).await > 0 {
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            if let Some(project_id) = batch.first().map(|line| line.project_id) {
                batch.push(NewLogLine {
                    project_id,
                    tags: LogTags::default(),
                    system: true,
                    level: Level::Error,
                    text: format!(
                        "{lost} lines of deployment output were dropped: the code printed faster \
                         than they could be stored"
                    ),
                });
            }
        }
        if let Err(error) = store.append_logs(&batch).await {
            tracing::warn!(%error, lines = batch.len(), "could not store deployment output");
        }
        batch.clear();
    }
}
