//! A private PostgreSQL cluster that this process runs as a child.
//!
//! The server uses it when no `DATABASE_URL` is given, keeping the cluster in
//! `<data dir>/postgres`; the test harness uses it for throwaway clusters.
//!
//! Layout of a cluster directory:
//! - `data/`: the cluster itself (initdb's target)
//! - `run/`: the Unix socket (TCP is disabled), unless that path is too long
//!   for a socket, in which case `/tmp/ubiops-pg-<hash>` is used instead
//! - `postgres.log`: initdb's and postgres's output, appended across runs
//!
//! PostgreSQL refuses to run as root, so when we are root the cluster is owned
//! by and run as the `postgres` user (or `nobody`). Every directory above the
//! cluster must then be searchable by that user; see [`make_traversable`].

mod binaries;
mod cluster;
mod error;
mod lock;
mod postmaster;
mod run_as;
mod socket;

pub use cluster::{ClusterConfig, EmbeddedPostgres};
pub use error::Error;
pub use lock::running_cluster_url;
pub use run_as::make_traversable;

#[cfg(test)]
mod tests;
