//! What serves requests: instances of the deployments' code as sandboxed
//! processes on this machine, made from the packages and environments that
//! builds use.
//!
//! Layout, in the data directory (beside `sandbox/builds` and
//! `sandbox/environments`, see `build_tools`):
//! - `sandbox/packages/<revision>`: each serving revision's package, private
//!   to the server (an instance gets a copy of its own);
//! - `sandbox/instances/<instance>`: each instance's private directory.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ubiops_domain::secrets::Keyring;
use ubiops_files::FileStore;
use ubiops_runtime::{InstanceSettings, LocalProcesses, Packages, Pools, QueueSettings, Serving};
use ubiops_storage::Store;
use ubiops_worker::BuildTools;

/// Serving with the data directory `data_dir` (whose `sandbox/` the build
/// tools set up), instances that may take `start_timeout` to start, and the
/// batch queue's settings.
pub fn serving(
    data_dir: &Path,
    start_timeout: Duration,
    queue: QueueSettings,
    store: Store,
    files: FileStore,
    keyring: Arc<Keyring>,
    tools: &BuildTools,
) -> anyhow::Result<Serving> {
    let root = data_dir.join("sandbox");
    let [packages, instances] = ["packages", "instances"].map(|name| root.join(name));
    for dir in [&root, &packages, &instances] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        ubiops_sandbox::make_reachable(dir)
            .with_context(|| format!("cannot make {} reachable", dir.display()))?;
    }
    let runtime = LocalProcesses::new(tools.environments.sandboxes().clone(), instances);
    let packages = Packages::new(
        files,
        packages,
        tools.interpreters.clone(),
        tools.environments.clone(),
        ubiops_inspect::Limits::default(),
    )
    .context("cannot set up the package directory")?;
    Ok(Serving::new(
        store,
        keyring,
        Pools::new(Arc::new(runtime)),
        packages,
        InstanceSettings { start_timeout },
        queue,
    ))
}
