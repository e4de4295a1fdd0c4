//! The crate's one error type: every failure names the cause and, where there
//! is one, what the operator can do about it.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH or in /usr/lib/postgresql/*/bin: \
         install the PostgreSQL server package (e.g. `apt-get install postgresql`) \
         or set DATABASE_URL to use an existing database"
    )]
    BinariesNotFound,
    #[error("UBIOPS_PG_BIN is set to {0}, but that directory does not contain the PostgreSQL server binaries (initdb, postgres)")]
    BadBinDir(PathBuf),
    #[error(
        "running as root, which PostgreSQL refuses, and there is neither a `postgres` nor a `nobody` user to run it as: \
         create a `postgres` user (the PostgreSQL server package does) or set DATABASE_URL to use an existing database"
    )]
    NoUnprivilegedUser,
    #[error(
        "PostgreSQL has to run as user `{user}` (it refuses to run as root), but that user cannot enter {blocker}, \
         which contains the cluster directory {dir}: use a data directory outside {blocker} (e.g. under /var/lib or /tmp), \
         allow others to enter it (chmod o+x), or set DATABASE_URL to use an existing database"
    )]
    Unreachable {
        user: String,
        dir: PathBuf,
        blocker: PathBuf,
    },
    #[error("the embedded PostgreSQL in {dir} is already in use by process {pid}")]
    InUse { dir: PathBuf, pid: i32 },
    #[error("initdb failed for {dir} ({status}):\n{stderr}")]
    Initdb {
        dir: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("PostgreSQL in {dir} {problem}; last lines of {log}:\n{log_tail}")]
    Startup {
        dir: PathBuf,
        problem: String,
        log: PathBuf,
        log_tail: String,
    },
    #[error("could not create database {database}: {source}")]
    CreateDatabase {
        database: String,
        source: sqlx::Error,
    },
    #[error("PostgreSQL (process {pid}) did not exit even after SIGKILL")]
    WontStop { pid: i32 },
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

pub(crate) fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}
