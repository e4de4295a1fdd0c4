//! The seam between the pool and whatever runs instances. Local processes
//! ([`LocalProcesses`]) are the only implementation; an implementation on a
//! cluster scheduler would start each instance as a pod of its own (see the
//! README, "Instances").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use ubiops_sandbox::Sandboxes;
use uuid::Uuid;

use crate::{Call, CallOutcome, Instance, InstanceSpec, Level, LogSink};

/// Receives the pool's lines about a version's instances.
pub type EventSink = Arc<dyn Fn(Level, String) + Send + Sync>;

/// What every instance of a generation is made from.
pub struct Blueprint {
    pub spec: InstanceSpec,
    /// Where the code's output goes, tagged with the request it came from.
    pub logs: LogSink,
    /// Where the pool's own lines go (instances started and stopped, and
    /// why): the version's log, as the server's lines.
    pub events: EventSink,
    /// What must live as long as the instances (the environment's hold,
    /// which keeps eviction away).
    pub hold: Box<dyn std::any::Any + Send + Sync>,
}

/// Starts instances.
pub trait Runtime: Send + Sync + 'static {
    /// A started instance (its `Deployment` constructed), or why it could
    /// not start, in words for the user.
    fn start(
        &self,
        blueprint: Arc<Blueprint>,
    ) -> BoxFuture<'static, Result<Box<dyn Running>, String>>;
}

/// A started instance.
pub trait Running: Send + 'static {
    /// Whether it can still take a call: one that died while idle cannot.
    fn is_alive(&mut self) -> bool;
    /// Runs one call; after `TimedOut` or `Crashed` the instance is gone.
    fn call(&mut self, call: Call, timeout: Duration) -> BoxFuture<'_, CallOutcome>;
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Instances as sandboxed processes on this machine, each in a directory of
/// its own under `dir`.
pub struct LocalProcesses {
    sandboxes: Sandboxes,
    dir: PathBuf,
}

impl LocalProcesses {
    pub fn new(sandboxes: Sandboxes, dir: PathBuf) -> LocalProcesses {
        LocalProcesses { sandboxes, dir }
    }
}

impl Runtime for LocalProcesses {
    fn start(
        &self,
        blueprint: Arc<Blueprint>,
    ) -> BoxFuture<'static, Result<Box<dyn Running>, String>> {
        let sandboxes = self.sandboxes.clone();
        let dir = self.dir.join(Uuid::new_v4().to_string());
        async move {
            let instance =
                Instance::start(&sandboxes, &dir, &blueprint.spec, blueprint.logs.clone())
                    .await
                    .map_err(|error| error.to_string())?;
            Ok(Box::new(instance) as Box<dyn Running>)
        }
        .boxed()
    }
}

impl Running for Instance {
    fn is_alive(&mut self) -> bool {
        self.ended().is_none()
    }

    fn call(&mut self, call: Call, timeout: Duration) -> BoxFuture<'_, CallOutcome> {
        Instance::call(self, call, timeout).boxed()
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Instance::stop(*self).boxed()
    }
}
