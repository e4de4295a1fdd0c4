//! Domain rules of the UbiOps Deployments API: what a valid name, label, field
//! or request looks like. Everything here is pure (no I/O), so every rule is
//! unit-tested in isolation and the HTTP handlers only translate.

pub mod audit;
pub mod deployment;
pub mod environment;
mod error;
pub mod instance_types;
pub mod labels;
pub mod logs;
pub mod names;
pub mod query;
pub mod request_data;
pub mod requests;
pub mod secrets;
pub mod stable_id;
pub mod text;
pub mod token;
pub mod variable;
pub mod version;
pub mod version_settings;

pub use error::ValidationError;

#[cfg(test)]
mod documented_patterns;
