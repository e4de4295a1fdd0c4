//! The postmaster child process: spawned, signalled and reaped so that it never
//! outlives us and we never signal a recycled pid.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use parking_lot::{Condvar, Mutex};

/// The postmaster, spawned and reaped by a dedicated thread.
///
/// The thread matters because PR_SET_PDEATHSIG fires when the *thread* that
/// forked the child exits, not the process: spawned from a tokio worker or
/// blocking-pool thread, postgres would be shut down whenever that thread is
/// retired. The supervisor thread lives exactly as long as the child.
#[derive(Debug)]
pub(crate) struct Postmaster {
    pub(crate) pid: i32,
    /// `None` while running; once reaped, how it exited.
    exit: Arc<(Mutex<Option<String>>, Condvar)>,
}

impl Postmaster {
    pub(crate) fn spawn(mut cmd: Command) -> io::Result<Self> {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the hook only makes async-signal-safe system calls and does not allocate.
        unsafe { cmd.pre_exec(move || die_with_parent(parent)) };

        let exit = Arc::new((Mutex::new(None), Condvar::new()));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread_exit = Arc::clone(&exit);
        std::thread::Builder::new()
            .name("postmaster".into())
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                        return;
                    }
                };
                let pid = child.id() as i32;
                let _ = started_tx.send(Ok(pid));
                // Wait without reaping, and reap only while holding the lock, so
                // `signal` can never hit a recycled pid.
                wait_without_reaping(pid);
                let (state, exited) = &*thread_exit;
                let mut state = state.lock();
                *state = Some(match child.wait() {
                    Ok(status) => status.to_string(),
                    Err(e) => format!("status unknown: {e}"),
                });
                exited.notify_all();
            })?;
        let pid = started_rx
            .recv()
            .map_err(|_| io::Error::other("postmaster thread died"))??;
        Ok(Self { pid, exit })
    }

    pub(crate) fn exit_status(&self) -> Option<String> {
        self.exit.0.lock().clone()
    }

    pub(crate) fn signal(&self, signal: Signal) {
        let state = self.exit.0.lock();
        if state.is_none() {
            let _ = kill(Pid::from_raw(self.pid), signal);
        }
    }

    pub(crate) fn wait_blocking(&self, timeout: Duration) -> Option<String> {
        let (state, exited) = &*self.exit;
        let mut state = state.lock();
        exited.wait_while_for(&mut state, |s| s.is_none(), timeout);
        state.clone()
    }

    pub(crate) async fn wait_async(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs in the child between fork and exec, after std has switched uid/gid
/// (which would clear the parent-death signal had we set it earlier).
///
/// If this process dies, even by SIGKILL, the kernel sends postgres SIGINT and
/// it does a fast shutdown instead of living on as an orphan that holds the
/// cluster. If we died before prctl took effect, the child was already
/// reparented, so the check of getppid closes that race.
fn die_with_parent(parent: libc::pid_t) -> io::Result<()> {
    // Errors are built from raw errno values: allocating after fork in a
    // multi-threaded process can deadlock.
    // SAFETY: prctl and getppid are plain system calls.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT as libc::c_ulong) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

fn wait_without_reaping(pid: i32) {
    loop {
        // SAFETY: waitid only writes into the zeroed siginfo we pass.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}
