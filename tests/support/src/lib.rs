//! Test harness. Tests get a real PostgreSQL:
//! - `DATABASE_URL` when set (a server the tester runs; we create and drop
//!   databases in it),
//! - otherwise a throwaway cluster started by the same embedded-PostgreSQL code
//!   the server uses, in a temp dir, shared by all tests of one test process,
//! - or, with the `testcontainers` feature and `UBIOPS_TEST_DOCKER=1`, a
//!   PostgreSQL container (only where a Docker engine exists).
//!
//! Every test gets its own fresh database, cloned from a migrated template, and
//! the real app served over HTTP on a random port.

mod app;
mod postgres;
mod s3;
mod wait;
mod worker;

pub use app::{Response, TestApp, TestOptions, ORGANIZATION};
pub use postgres::{fresh_database, TestDatabase};
pub use s3::{s3_bucket, s3_file_store, s3_store_at};
pub use wait::wait_for;
pub use worker::{shared_build_tools, unreachable_file_store, TestWorker};
