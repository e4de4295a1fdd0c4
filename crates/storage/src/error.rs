/// What can go wrong in storage, in terms the API maps to HTTP once.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The named object does not exist (or is not visible): a 404.
    #[error("{0}")]
    NotFound(String),
    /// The change breaks a rule that depends on stored state, such as a
    /// duplicate name: a 400 with this message.
    #[error("{0}")]
    Rejected(String),
    /// The database cannot be reached right now: a 503, worth retrying.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else the database reported: a 500, logged.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        if may_break_connection(&error) {
            crate::connections::note_connection_trouble();
        }
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StorageError::Unavailable(error)
            }
            sqlx::Error::Database(ref db)
                if db.code().is_some_and(|code| is_unavailable_sqlstate(&code)) =>
            {
                StorageError::Unavailable(error)
            }
            // PostgreSQL text cannot hold NUL. The domain refuses it in what
            // is stored; this covers names that are only looked up (path
            // parameters, filters, copy sources), which name nothing.
            sqlx::Error::Database(ref db)
                if db.code().as_deref() == Some(CHARACTER_NOT_IN_REPERTOIRE) =>
            {
                nul_rejected()
            }
            other => StorageError::Database(other),
        }
    }
}

impl StorageError {
    /// PostgreSQL aborted the transaction to break a deadlock (or a
    /// serialization failure): running it again is expected to succeed.
    pub(crate) fn is_transient_conflict(&self) -> bool {
        matches!(self, StorageError::Database(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("40P01" | "40001")))
    }

    /// The same error for each of the lookups that shared a failed batched
    /// query (`batch.rs`): sqlx errors cannot be cloned, so the copy keeps
    /// the kind (and so the HTTP status) and the text.
    pub(crate) fn shared_copy(&self) -> StorageError {
        match self {
            StorageError::NotFound(message) => StorageError::NotFound(message.clone()),
            StorageError::Rejected(message) => StorageError::Rejected(message.clone()),
            StorageError::Unavailable(error) => {
                StorageError::Unavailable(sqlx::Error::Io(std::io::Error::other(error.to_string())))
            }
            StorageError::Database(error) => {
                StorageError::Database(sqlx::Error::Protocol(error.to_string()))
            }
        }
    }
}

fn nul_rejected() -> StorageError {
    StorageError::Rejected("Names and values must not contain NUL characters (\\0)".to_owned())
}

/// Refuses names with NUL before they join a batched lookup, where
/// PostgreSQL's refusal of one would fail the lookups of other requests too.
pub(crate) fn refuse_nul(names: &[&str]) -> Result<(), StorageError> {
    if names.iter().any(|name| name.contains('\0')) {
        return Err(nul_rejected());
    }
    Ok(())
}

/// Whether the connection that reported this may no longer be usable: the
/// pool checks connections again after any of these (`connections.rs`).
fn may_break_connection(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_unavailable_sqlstate(&code)),
        _ => false,
    }
}

/// `invalid byte sequence for encoding "UTF8": 0x00`.
const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";

/// Class 08 (connection exception) and 57P01-57P03 (admin shutdown, crash
/// shutdown, cannot connect now) mean "try again later", not a bug.
fn is_unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// Maps a unique-constraint violation to a user-facing rejection; anything
/// else stays a database error.
pub(crate) fn on_unique_violation(
    error: sqlx::Error,
    message: impl FnOnce() -> String,
) -> StorageError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StorageError::Rejected(message()),
        _ => error.into(),
    }
}

/// A stored value that the domain does not know: only possible if the
/// database was changed behind our back, so it is a server fault.
pub(crate) fn corrupt(what: &str, value: &str, id: uuid::Uuid) -> StorageError {
    StorageError::Database(sqlx::Error::Decode(
        format!("unexpected {what} {value:?} in row {id}").into(),
    ))
}
