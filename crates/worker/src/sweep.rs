//! Clean-up that keeps the database and object storage in step after
//! crashes and failures, run by one slot per process before each claim:
//! builds whose workers kept dying, objects of deleted rows (deleted after
//! the commit and retried until storage confirms), partial uploads of a
//! server that died (once their lease runs out), and log lines past their
//! retention.

use ubiops_files::FileStore;
use ubiops_storage::{StorageError, Store};

use crate::Worker;

impl Worker {
    pub(crate) async fn sweep(&self) {
        if let Err(error) = self
            .store
            .fail_exhausted_builds(self.config.max_attempts)
            .await
        {
            tracing::warn!(%error, "could not fail exhausted builds");
        }
        if let Err(error) = sweep_expired_uploads(&self.store, &self.files).await {
            tracing::warn!(%error, "could not sweep interrupted uploads");
        }
        if let Err(error) = purge_deleted_objects(&self.store, &self.files).await {
            tracing::warn!(%error, "could not purge deleted files");
        }
        let retention = i64::try_from(self.config.log_retention.as_nanos()).unwrap_or(i64::MAX);
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        match self
            .store
            .delete_logs_before(now.saturating_sub(retention))
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted log lines past their retention"),
            Err(error) => tracing::warn!(%error, "could not delete old log lines"),
        }
    }
}

/// Deletes the objects queued for deletion. Failures are logged and left
/// queued for the next pass; they never affect the database.
pub async fn purge_deleted_objects(
    store: &Store,
    files: &FileStore,
) -> Result<usize, StorageError> {
    let mut purged = 0;
    for key in store.queued_object_deletions().await? {
        match files.delete(&key).await {
            Ok(()) => {
                store.forget_object_deletion(&key).await?;
                purged += 1;
            }
            Err(error) => tracing::warn!(key, %error, "could not delete a stored file; will retry"),
        }
    }
    Ok(purged)
}

/// Removes what uploads interrupted by a crash left behind.
pub async fn sweep_expired_uploads(
    store: &Store,
    files: &FileStore,
) -> Result<usize, StorageError> {
    let mut swept = 0;
    for key in store.expired_uploads().await? {
        match files.delete_partial(&key).await {
            Ok(()) => {
                store.end_upload(&key).await?;
                tracing::info!(key, "removed the partial file of an interrupted upload");
                swept += 1;
            }
            Err(error) => {
                tracing::warn!(key, %error, "could not remove an interrupted upload; will retry")
            }
        }
    }
    Ok(swept)
}
