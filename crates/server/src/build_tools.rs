//! What builds run the packages' code with, set up at start: the sandboxes
//! (and, as root, a data directory they cannot read), the Python
//! interpreters of this machine, the environment cache, and the operator's
//! pip settings.
//!
//! Layout, in the data directory:
//! - `sandbox/builds/<build>`: each build's private directory;
//! - `sandbox/environments/`: the environment cache.
//!
//! As root, the data directory becomes searchable but not listable, and
//! everything in it but `sandbox/` private to its owner, so a sandbox user
//! reaches its own directory and the environments and nothing else.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use ubiops_python::environments::{Environments, Settings};
use ubiops_python::interpreters::Interpreters;
use ubiops_sandbox::{Limits, Sandboxes, Users, DEFAULT_LOCK_DIR};
use ubiops_worker::BuildTools;

use crate::config::Config;

/// The directory builds run in, and what they run the code with.
pub async fn build_tools(config: &Config) -> anyhow::Result<(PathBuf, BuildTools)> {
    let settings = &config.builds;
    let users = if unsafe { libc::geteuid() } == 0 {
        Users::Range {
            uids: settings.sandbox_uids.clone(),
            lock_dir: PathBuf::from(DEFAULT_LOCK_DIR),
        }
    } else {
        tracing::warn!(
            "not running as root: builds run the packages' code as the server's own user, \
             which can read what the server can; run as root to give each build a user of its own"
        );
        Users::Own
    };
    let limits = Limits {
        memory_bytes: settings.memory_bytes,
        cpu_seconds: settings.cpu_seconds,
        ..Limits::default()
    };
    let sandboxes = Sandboxes::new(users, limits).context("cannot set up the build sandboxes")?;
    let root = config.data.dir.join("sandbox");
    let builds = root.join("builds");
    fs::create_dir_all(&builds).with_context(|| format!("cannot create {}", builds.display()))?;
    if sandboxes.isolated() {
        seal_data_dir(&config.data.dir)?;
    }
    for dir in [&root, &builds] {
        ubiops_sandbox::make_reachable(dir)
            .with_context(|| format!("cannot make {} reachable", dir.display()))?;
    }
    // A data directory below one other users cannot enter (such as /root)
    // would fail every build; say so now, with the directory to fix.
    drop(
        sandboxes
            .enter(&builds.join("start-check"))
            .context("builds cannot run their sandboxes")?,
    );
    let interpreters = Interpreters::discover(
        &std::env::var("PATH").unwrap_or_default(),
        &settings.interpreters.0,
        settings.strict,
        &sandboxes,
        &builds,
    )
    .await;
    let environments = Environments::new(
        Settings {
            dir: root.join("environments"),
            size_limit_bytes: settings.cache_bytes,
            pip_environment: pip_environment(std::env::vars()),
            install_time_limit: settings.pip_timeout,
        },
        sandboxes,
    )
    .context("cannot set up the environment cache")?;
    let tools = BuildTools {
        interpreters: Arc::new(interpreters),
        environments,
        import_time_limit: settings.import_timeout,
        r_installed: on_path("Rscript"),
    };
    Ok((builds, tools))
}

/// The data directory searchable only, and all in it but `sandbox/` closed
/// to other users (the embedded cluster is already private to its owner).
fn seal_data_dir(data: &Path) -> anyhow::Result<()> {
    let private = || format!("cannot restrict the permissions in {}", data.display());
    fs::set_permissions(data, fs::Permissions::from_mode(0o711)).with_context(private)?;
    for entry in fs::read_dir(data).with_context(private)? {
        let entry = entry.with_context(private)?;
        if entry.file_name() == "sandbox" || entry.file_type().with_context(private)?.is_symlink() {
            continue;
        }
        let mode = entry.metadata().with_context(private)?.permissions().mode();
        fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode & 0o700))
            .with_context(private)?;
    }
    Ok(())
}

/// The operator's pip settings from the server's environment: every `PIP_*`
/// variable (an index mirror, trusted hosts, certificates) and the proxy
/// variables. Nothing else of the server's environment reaches a build.
pub fn pip_environment(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    const PROXIES: &[&str] = &["http_proxy", "https_proxy", "no_proxy"];
    vars.filter(|(name, _)| {
        name.starts_with("PIP_") || PROXIES.contains(&name.to_ascii_lowercase().as_str())
    })
    .collect()
}

fn on_path(program: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|dir| !dir.is_empty() && Path::new(dir).join(program).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_gets_its_own_settings_and_the_proxies_only() {
        let vars = [
            ("PIP_INDEX_URL", "https://mirror.example/simple"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("DATABASE_URL", "postgres://u:secret@db/ubiops"),
            ("UBIOPS_SECRET_KEY", "00"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let names: Vec<String> = pip_environment(vars.into_iter())
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["PIP_INDEX_URL", "HTTPS_PROXY"]);
    }
}
