//! User ids of their own for sandboxes: leased from a range, exclusively
//! across every process on the machine (a `flock` per id in a shared
//! directory, released by the kernel when its holder dies), and cleared of
//! leftover processes before each use.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

pub(crate) struct UserPool {
    uids: RangeInclusive<u32>,
    lock_dir: PathBuf,
}

impl UserPool {
    /// Opens the pool and stops the processes that sandboxes of dead server
    /// processes left behind (their ids are unlocked but may still run
    /// something).
    pub(crate) fn open(uids: RangeInclusive<u32>, lock_dir: PathBuf) -> io::Result<UserPool> {
        if uids.is_empty() || *uids.start() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the sandbox user ids must be a non-empty range above 0",
            ));
        }
        match fs::DirBuilder::new().mode(0o700).create(&lock_dir) {
            Err(error) if error.kind() != io::ErrorKind::AlreadyExists => return Err(error),
            _ => fs::set_permissions(&lock_dir, fs::Permissions::from_mode(0o700))?,
        }
        let pool = UserPool { uids, lock_dir };
        for entry in fs::read_dir(&pool.lock_dir)? {
            let uid = entry?
                .file_name()
                .to_str()
                .and_then(|name| name.strip_suffix(".lock"))
                .and_then(|uid| uid.parse::<u32>().ok());
            if let Some(uid) = uid.filter(|uid| pool.uids.contains(uid)) {
                // Taking the lease kills its leftovers; dropping it releases it.
                drop(pool.try_lease(uid)?);
            }
        }
        Ok(pool)
    }

    /// The lowest free id: the ids in use, and so the lock files, stay as
    /// few as the sandboxes that ever ran at once.
    pub(crate) fn lease(&self) -> io::Result<Lease> {
        for uid in self.uids.clone() {
            if let Some(lease) = self.try_lease(uid)? {
                return Ok(lease);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "every sandbox user id is in use",
        ))
    }

    fn try_lease(&self, uid: u32) -> io::Result<Option<Lease>> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.lock_dir.join(format!("{uid}.lock")))?;
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::EWOULDBLOCK) => Ok(None),
                _ => Err(error),
            };
        }
        kill_all(uid);
        Ok(Some(Lease { uid, _lock: lock }))
    }
}

/// A user id held by one sandbox. Its processes are killed when it ends.
pub(crate) struct Lease {
    uid: u32,
    _lock: File,
}

impl Lease {
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        kill_all(self.uid);
    }
}

/// Sends SIGKILL to every process of `uid`. Done by a child that becomes
/// `uid` and calls `kill(-1)`, which reaches exactly the processes that user
/// may signal, that is its own (and on Linux never the caller): no scan of
/// /proc that a fork could race. Repeated because a process forking while
/// the signal goes out can leave a child it did not reach.
pub(crate) fn kill_all(uid: u32) {
    for _ in 0..3 {
        let mut killer = std::process::Command::new("/nonexistent-never-executed");
        killer.uid(uid).gid(uid);
        // The work is done before exec; failing there ends the child without
        // running anything, so no program is needed.
        unsafe {
            killer.pre_exec(|| {
                libc::kill(-1, libc::SIGKILL);
                Err(io::Error::from_raw_os_error(libc::ECANCELED))
            });
        }
        match killer.spawn() {
            Err(error) if error.raw_os_error() == Some(libc::ECANCELED) => {}
            Err(error) => tracing::warn!(uid, %error, "could not stop a sandbox user's processes"),
            Ok(mut child) => {
                let _ = child.wait();
            }
        }
    }
}
