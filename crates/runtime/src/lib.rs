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
//! On it: the pool of each version's instances, with its scaling and
//! queueing ([`Pools`]), behind the seam that starts instances
//! ([`Runtime`]; local processes are [`LocalProcesses`]); revisions made
//! ready to run on this machine ([`Packages`]); and requests, direct and
//! from the batch queue, from the stored version to its code and back
//! ([`Serving`]).

mod instance;
mod log_writer;
mod package;
mod pool;
mod protocol;
mod pump;
mod revisions;
mod runtime;
mod serving;

pub use instance::{
    Call, CallOutcome, Instance, InstanceSpec, Level, LogLine, LogSink, StartError,
};
pub use pool::{Fingerprint, Pools, Refused, Scaling};
pub use revisions::{Packages, Prepared, RevisionToRun};
pub use runtime::{Blueprint, EventSink, LocalProcesses, Running, Runtime};
pub use serving::{Answer, DirectRequest, InstanceSettings, NotServed, QueueSettings, Serving};
