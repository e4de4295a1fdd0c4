//! Postmasters that already run on a cluster, found through the lock files
//! PostgreSQL keeps (postmaster.pid and the socket's .lock).

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use tracing::warn;

use crate::socket::connection_url;

/// URL of a postmaster already running on the cluster in `dir` (for example the
/// server's, while a CLI command runs), or `None` if none is running and ready.
pub fn running_cluster_url(dir: &Path, database: &str) -> Option<String> {
    // postmaster.pid lines: pid, data dir, start time, port, first socket dir,
    // listen address, shared memory key, status.
    let contents = fs::read_to_string(dir.join("data").join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = contents.lines().map(str::trim).collect();
    let pid: i32 = lines.first()?.parse().ok()?;
    let port: u16 = lines.get(3)?.parse().ok()?;
    let socket_dir = Path::new(lines.get(4)?);
    if !process_alive(pid) || lines.get(7) != Some(&"ready") || socket_dir.as_os_str().is_empty() {
        return None;
    }
    UnixStream::connect(socket_dir.join(format!(".s.PGSQL.{port}"))).ok()?;
    Some(connection_url(socket_dir, port, database))
}

/// The pid of a live process holding a postgres lock file (postmaster.pid or
/// the socket's .lock) for `data`.
///
/// A dead holder is left to postgres, which cleans up after crashes itself.
/// But after a container restart the recorded pid may now belong to an
/// unrelated process, and postgres would refuse to start; a postmaster's
/// working directory is its data directory, so /proc tells the two apart.
pub(crate) fn lock_holder(lock_file: &Path, data: &Path) -> Option<i32> {
    let contents = fs::read_to_string(lock_file).ok()?;
    let pid: i32 = contents.lines().next()?.trim().parse().ok()?;
    if pid <= 0 || !process_alive(pid) {
        return None;
    }
    let cwd = fs::read_link(format!("/proc/{pid}/cwd"));
    let data = fs::canonicalize(data).unwrap_or_else(|_| data.to_owned());
    match cwd {
        Ok(cwd) if cwd != data => {
            warn!(pid, lock = %lock_file.display(), "removing stale PostgreSQL lock file naming an unrelated process");
            let _ = fs::remove_file(lock_file);
            None
        }
        // Same directory, or we may not look: assume it is a live postmaster.
        _ => Some(pid),
    }
}

fn process_alive(pid: i32) -> bool {
    // EPERM means it exists but belongs to someone else.
    !matches!(
        kill(Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}
