//! Python for deployments, every step of which runs the package's code (an
//! install script, a module's top level) and so runs in a sandbox:
//!
//! - [`interpreters`]: the Python interpreters of this machine, and which one
//!   a version's language gets;
//! - [`environments`]: virtual environments with a package's requirements
//!   installed by pip, cached by (interpreter, requirements) and shared by
//!   every revision that needs the same;
//! - [`import_check`]: importing a package's `deployment.py` in its
//!   environment, in a process with a time limit, to prove the code loads.

pub mod environments;
pub mod import_check;
pub mod interpreters;
mod pip;

/// Why a step did not produce what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The package's fault, in words for the person who uploaded it.
    #[error("{0}")]
    Failed(String),
    #[error("cancelled")]
    Cancelled,
    /// The machine's fault (disk, permissions): worth another attempt.
    #[error(transparent)]
    Fault(#[from] std::io::Error),
}
