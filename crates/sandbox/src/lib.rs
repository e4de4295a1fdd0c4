//! Running untrusted code: the install of a package's requirements, the
//! import of its code, and later its instances.
//!
//! When the server runs as root, every [`Sandbox`] gets a user id of its own
//! from a configured range (ids no account uses), held exclusively while the
//! sandbox lives, across all server processes on the machine. Code in it then
//! can neither read the server's files (the data directory, the secret key,
//! the embedded database's socket, which are private to their owners) nor
//! another sandbox's files, nor signal or trace another sandbox's processes.
//! Whatever it started is killed when the sandbox ends: every process of
//! that user id, so a daemonised grandchild does not outlive it.
//!
//! As any other user, code runs as the server's own user: the clean
//! environment, private directory and limits still apply, but file
//! permissions cannot keep it out (the server logs this at start).
//!
//! Always: a clean environment (nothing of the server's: no database URL,
//! storage credentials or keys; only what the caller sets), a private
//! working directory with its own `HOME` and `TMPDIR`, limits on memory, CPU
//! time, processes and file size, no new privileges (setuid programs do not
//! elevate), and a process group of its own.

mod process;
mod users;

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::ops::RangeInclusive;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use process::{Ended, Lines, MAX_LINE_BYTES};
use users::{Lease, UserPool};

/// The user ids sandboxes get when the server runs as root: a range no
/// account of the machine uses.
pub const DEFAULT_UIDS: RangeInclusive<u32> = 1_900_000_000..=1_900_999_999;

/// Where root keeps the locks that make a user id one sandbox's alone. Every
/// server process on the machine must use the same directory.
pub const DEFAULT_LOCK_DIR: &str = "/run/ubiops-sandbox";

/// Per-process limits (each process of a sandbox has them; the process
/// count is per user id, so it bounds the whole sandbox when it has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Address space per process.
    pub memory_bytes: u64,
    /// CPU time per process.
    pub cpu_seconds: u64,
    /// Processes and threads of the sandbox's user (only with a user of its
    /// own; the server's user has its own processes to count).
    pub processes: u64,
    /// The largest file a process may write.
    pub file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 4 << 30,
            cpu_seconds: 1800,
            processes: 512,
            file_bytes: 4 << 30,
        }
    }
}

/// Which users sandboxes run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Users {
    /// The server's own user: no file isolation.
    Own,
    /// A user id of its own per sandbox, from `uids` (needs root).
    Range {
        uids: RangeInclusive<u32>,
        lock_dir: PathBuf,
    },
}

impl Users {
    /// A range of their own as root, the server's user otherwise.
    pub fn automatic() -> Users {
        if unsafe { libc::geteuid() } == 0 {
            Users::Range {
                uids: DEFAULT_UIDS,
                lock_dir: PathBuf::from(DEFAULT_LOCK_DIR),
            }
        } else {
            Users::Own
        }
    }
}

/// Makes sandboxes; cheap to clone.
#[derive(Clone)]
pub struct Sandboxes {
    pool: Option<Arc<UserPool>>,
    limits: Limits,
}

impl std::fmt::Debug for Sandboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandboxes")
            .field("isolated", &self.isolated())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Sandboxes {
    /// Also stops what sandboxes of a process that died left running.
    pub fn new(users: Users, limits: Limits) -> io::Result<Sandboxes> {
        let pool = match users {
            Users::Own => None,
            Users::Range { uids, lock_dir } => Some(Arc::new(UserPool::open(uids, lock_dir)?)),
        };
        Ok(Sandboxes { pool, limits })
    }

    /// True when each sandbox has a user of its own.
    pub fn isolated(&self) -> bool {
        self.pool.is_some()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The same sandboxes with other limits.
    pub fn with_limits(&self, limits: Limits) -> Sandboxes {
        Sandboxes {
            pool: self.pool.clone(),
            limits,
        }
    }

    /// A sandbox whose private directory is `dir` (made anew: whatever was
    /// there is removed). Every ancestor of `dir` must be searchable by other
    /// users; [`make_reachable`] does that for the directories the server
    /// creates.
    pub fn enter(&self, dir: &Path) -> io::Result<Sandbox> {
        let lease = self.pool.as_ref().map(|pool| pool.lease()).transpose()?;
        let uid = lease.as_ref().map(Lease::uid);
        if let Some(uid) = uid {
            check_reachable(dir, uid)?;
        }
        match fs::remove_dir_all(dir) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        fs::DirBuilder::new().mode(0o700).create(dir)?;
        for sub in ["home", "tmp"] {
            fs::DirBuilder::new().mode(0o700).create(dir.join(sub))?;
        }
        let sandbox = Sandbox {
            lease,
            dir: dir.to_owned(),
            limits: self.limits,
        };
        sandbox.hand_over(dir)?;
        Ok(sandbox)
    }
}

/// One sandbox: a user (when isolated), a private directory, limits. Every
/// process started in it is killed when it is dropped.
pub struct Sandbox {
    lease: Option<Lease>,
    dir: PathBuf,
    limits: Limits,
}

impl Sandbox {
    /// The private working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sandbox's own user id, when isolated.
    pub fn uid(&self) -> Option<u32> {
        self.lease.as_ref().map(Lease::uid)
    }

    /// A command that runs `program` in the sandbox: in its directory, with a
    /// clean environment (add what the program needs with `env`), its user,
    /// its limits and a process group of its own. Run it with [`Sandbox::run`].
    pub fn command(&self, program: impl AsRef<OsStr>) -> tokio::process::Command {
        process::command(program.as_ref(), self)
    }

    /// Runs `command` (from [`Sandbox::command`]) to its end or its time
    /// limit, or until `cancelled` resolves, handing each line of its output
    /// (stdout and stderr together, in order) to `on_line`. However it ends,
    /// every process it started is killed.
    pub async fn run(
        &self,
        command: tokio::process::Command,
        time_limit: std::time::Duration,
        cancelled: impl std::future::Future<Output = ()>,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> io::Result<Ended> {
        process::run(self, command, time_limit, cancelled, on_line).await
    }

    /// Gives `path` (recursively) to the sandbox's user, for directories its
    /// code must write to.
    pub fn hand_over(&self, path: &Path) -> io::Result<()> {
        match self.uid() {
            Some(uid) => chown_recursive(path, uid, uid),
            None => Ok(()),
        }
    }

    /// Kills every process running in the sandbox.
    pub fn stop_all(&self) {
        if let Some(lease) = &self.lease {
            users::kill_all(lease.uid());
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // The lease (dropped after this) kills the user's processes; as the
        // server's own user, the process groups were killed by `run`.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Takes `path` (recursively) back from any sandbox user and makes it
/// read-only for everyone else: for what a sandbox made that others will use
/// (a built environment). Set-id bits are dropped.
pub fn take_back(path: &Path) -> io::Result<()> {
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    chown_recursive(path, uid, gid)?;
    walk(path, &mut |path, meta| {
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let mode = if meta.is_dir() || meta.mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    })
}

/// Lets other users enter `dir` but neither list nor change it (mode 0711):
/// for the directories that hold sandboxes and what they use, where a
/// sandbox may reach only what it knows the name of.
pub fn make_reachable(dir: &Path) -> io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711))
}

/// A sandbox user needs search permission on every ancestor of its
/// directory. Checked up front: the failure otherwise shows up as an obscure
/// "permission denied" from inside the sandboxed program.
fn check_reachable(dir: &Path, uid: u32) -> io::Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        if ancestor.as_os_str().is_empty() {
            continue;
        }
        let meta = fs::metadata(ancestor)?;
        // As in the kernel, the most specific class decides.
        let search_bit = if meta.uid() == uid {
            0o100
        } else if meta.gid() == uid {
            0o010
        } else {
            0o001
        };
        if meta.mode() & search_bit == 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "sandboxes cannot reach {}: {} is not searchable by other users (chmod o+x it)",
                    dir.display(),
                    ancestor.display()
                ),
            ));
        }
    }
    Ok(())
}

fn chown_recursive(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    walk(path, &mut |path, _| {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
    })
}

/// Visits `path` and everything under it without following symbolic links
/// (a sandbox may have planted links to files it must not get).
fn walk(
    path: &Path,
    visit: &mut dyn FnMut(&Path, &fs::Metadata) -> io::Result<()>,
) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    visit(path, &meta)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            walk(&entry?.path(), visit)?;
        }
    }
    Ok(())
}

/// Bytes used by `path` and everything under it (links not followed).
pub fn disk_usage(path: &Path) -> io::Result<u64> {
    let mut total = 0;
    walk(path, &mut |_, meta| {
        total += meta.blocks() * 512;
        Ok(())
    })?;
    Ok(total)
}

#[cfg(test)]
mod tests;
