//! Keeping object storage in step with the database after crashes and
//! failures: objects of deleted rows are deleted after the commit and retried
//! until storage confirms; partial uploads of a server that died are removed
//! once their lease runs out.

use ubiops_storage::{StorageError, Store};

use crate::FileStore;

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
