//! What the `ubiops-server` binary (main.rs) runs: its configuration, the
//! database it opens (embedded or external), its commands, and the wiring of
//! the HTTP API that the tests share (`startup`).

pub mod build_tools;
pub mod config;
mod database;
pub mod instances;
mod keyring;
pub mod serve;
pub mod startup;
pub mod tokens;
