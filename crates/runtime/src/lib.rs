//! One running instance of a deployment's code.
//!
//! An instance is a Python process in a sandbox of its own (see
//! `ubiops-sandbox`): the runner (`runner.py`) imports the package's
//! `deployment.py`, constructs `Deployment(base_directory, context)` and
//! serves calls of its `request`/`requests` one at a time. The server talks
//! to it in length-prefixed JSON frames on private copies of its stdin and
//! stdout; whatever the code prints reaches a [`LogSink`] as lines tagged
//! with the request in flight.
//!
//! Pools of instances, queueing and scaling are built on this elsewhere.

mod instance;
mod package;
mod protocol;
mod pump;

pub use instance::{
    Call, CallOutcome, Instance, InstanceSpec, Level, LogLine, LogSink, StartError,
};
