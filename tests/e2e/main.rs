//! End-to-end tests: the real app over real HTTP against a real PostgreSQL,
//! each test on a fresh database (see `tests/support`), plus tests that run the
//! `ubiops-server` binary itself.

mod abandoned;
mod audit;
mod auth;
mod bad_input;
mod batch;
mod batching;
mod builds;
mod cli;
mod connections;
mod deployments;
mod faults;
mod listing;
mod logs;
mod newer_clients;
mod openapi;
mod operations;
mod parity;
mod projects;
mod python_builds;
mod queue;
mod races;
mod requests;
mod routing;
mod security;
mod token_required;
mod variables;
mod versions;
