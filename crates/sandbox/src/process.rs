//! Starting a program in a sandbox and running it to its end: its output
//! read line by line as it comes, a time limit, cancellation, and nothing of
//! it left running afterwards.

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use crate::{Limits, Sandbox};

/// The only directories on `PATH` in a sandbox.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Longer lines are cut into pieces of this many bytes, so a program that
/// never prints a newline still has its output delivered.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// How long output may keep arriving after the program exited (from what
/// it started, until those are killed).
const DRAIN: Duration = Duration::from_millis(500);

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(ExitStatus),
    /// Killed when the time limit passed.
    TimedOut,
    /// Killed because the caller cancelled it.
    Cancelled,
}

pub(crate) fn command(program: &OsStr, sandbox: &Sandbox) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", sandbox.dir().join("home"))
        .env("TMPDIR", sandbox.dir().join("tmp"))
        .env("LANG", "C.UTF-8")
        .env("USER", "sandbox")
        .env("LOGNAME", "sandbox")
        .current_dir(sandbox.dir())
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let isolated = sandbox.uid().is_some();
    if let Some(uid) = sandbox.uid() {
        // std also drops the supplementary groups (setgroups(0)) before
        // setuid, so none of root's groups stay.
        command.uid(uid).gid(uid);
    }
    let limits = sandbox.limits;
    // Runs in the child after the user change, before exec: only
    // async-signal-safe calls.
    unsafe {
        command.pre_exec(move || restrict(limits, isolated));
    }
    command
}

fn restrict(limits: Limits, isolated: bool) -> io::Result<()> {
    set_limit(libc::RLIMIT_AS, limits.memory_bytes)?;
    set_limit(libc::RLIMIT_CPU, limits.cpu_seconds)?;
    set_limit(libc::RLIMIT_FSIZE, limits.file_bytes)?;
    set_limit(libc::RLIMIT_CORE, 0)?;
    if isolated {
        set_limit(libc::RLIMIT_NPROC, limits.processes)?;
    }
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `command` (made by [`Sandbox::command`]) to its end, handing each
/// line of its output (stdout and stderr together, in order) to `on_line`.
/// Whatever way it ends, every process it started is killed.
pub(crate) async fn run(
    sandbox: &Sandbox,
    mut command: tokio::process::Command,
    time_limit: Duration,
    cancelled: impl Future<Output = ()>,
    on_line: &mut (dyn FnMut(&str) + Send),
) -> io::Result<Ended> {
    let (reader, writer) = io::pipe()?;
    command.stdout(writer.try_clone()?).stderr(writer);
    let spawned = command.spawn();
    // The command holds the pipe's write end: drop it, or the read below
    // would never see the end of the output.
    drop(command);
    let mut child = spawned?;
    let group = child.id();
    let mut output = pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
    let mut lines = Lines::default();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut open = true;
    tokio::pin!(cancelled);
    let deadline = tokio::time::sleep(time_limit);
    tokio::pin!(deadline);

    let ended = loop {
        tokio::select! {
            read = output.read(&mut chunk), if open => match read {
                Ok(0) | Err(_) => open = false,
                Ok(n) => lines.push(&chunk[..n], on_line),
            },
            status = child.wait() => break Ended::Exited(status?),
            _ = &mut deadline => break Ended::TimedOut,
            _ = &mut cancelled => break Ended::Cancelled,
        }
    };
    if !matches!(ended, Ended::Exited(_)) {
        kill_group(group);
        let _ = child.wait().await;
    }
    // What it started may still hold the pipe open; give them a moment to
    // finish printing, then stop them.
    if open {
        let drain = tokio::time::sleep(DRAIN);
        tokio::pin!(drain);
        loop {
            tokio::select! {
                read = output.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => lines.push(&chunk[..n], on_line),
                },
                _ = &mut drain => break,
            }
        }
    }
    // A group member that outlived the leader keeps the group id in use, so
    // it cannot have been handed to anything else.
    kill_group(group);
    sandbox.stop_all();
    lines.finish(on_line);
    Ok(ended)
}

fn kill_group(group: Option<u32>) {
    if let Some(group) = group.and_then(|id| i32::try_from(id).ok()) {
        unsafe {
            libc::killpg(group, libc::SIGKILL);
        }
    }
}

/// Splits output into lines, cutting over-long ones: for callers that read
/// a sandboxed program's output themselves.
#[derive(Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Hands each line completed by `bytes` to `on_line`; an unfinished one
    /// waits for more.
    pub fn push(&mut self, bytes: &[u8], on_line: &mut (dyn FnMut(&str) + Send)) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            emit(&self.pending[start..start + end], on_line);
            start += end + 1;
        }
        self.pending.drain(..start);
        while self.pending.len() >= MAX_LINE_BYTES {
            let rest = self.pending.split_off(MAX_LINE_BYTES);
            emit(&self.pending, on_line);
            self.pending = rest;
        }
    }

    /// Hands over the unfinished line, once the output has ended.
    pub fn finish(&mut self, on_line: &mut (dyn FnMut(&str) + Send)) {
        if !self.pending.is_empty() {
            emit(&self.pending, on_line);
            self.pending.clear();
        }
    }
}

fn emit(line: &[u8], on_line: &mut (dyn FnMut(&str) + Send)) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    for piece in line.chunks(MAX_LINE_BYTES) {
        on_line(&String::from_utf8_lossy(piece));
    }
    if line.is_empty() {
        on_line("");
    }
}
