//! Reading what an instance's process says, for as long as it lives: the
//! runner's frames on its stdout (log lines go to the sink, the rest to the
//! [`Instance`](crate::Instance)) and the lines on its stderr, where
//! whatever is written below Python's `sys.stdout` and `sys.stderr` lands.
//! It also sees the process end, and says why it did.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::Child;
use tokio::sync::mpsc;
use ubiops_sandbox::{Lines, MAX_LINE_BYTES};
use uuid::Uuid;

use crate::instance::{Level, LogLine, LogSink};
use crate::protocol::{Frames, FromRunner};

/// The level of lines on stderr. Descriptors 1 and 2 share that pipe, so
/// they cannot be told apart; what is written there is mostly below Python
/// (C libraries, programs the code runs, the interpreter's own fatal errors).
const STDERR_LEVEL: Level = Level::Error;

/// How long a process that closed its side of the conversation has to exit
/// before it is killed.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// Reading what is already in a pipe stops after this many bytes: a
/// daemonised child that keeps writing must not hold up the answer.
const DRAIN_BYTES: usize = 1 << 20;

/// What the instance hears from the pump.
#[derive(Debug)]
pub(crate) enum Event {
    /// A frame from the runner other than a log line.
    Message(FromRunner),
    /// The process has ended (and was reaped), or it broke the conversation
    /// and was killed: why, for a person. The last event.
    Died(String),
}

/// What the instance and its pump share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The request in flight, which lines printed now belong to.
    pub(crate) current: Option<Uuid>,
    /// The process group, until its leader is reaped: after that the id may
    /// be another process's.
    pub(crate) group: Option<i32>,
}

/// Kills every process of the instance's process group (not what left it:
/// [`ubiops_sandbox::Sandbox::stop_all`] gets those).
pub(crate) fn kill_group(shared: &Mutex<Shared>) {
    if let Some(group) = shared.lock().group {
        unsafe {
            libc::killpg(group, libc::SIGKILL);
        }
    }
}

pub(crate) struct Pump {
    child: Child,
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
    stderr_open: bool,
    shared: Arc<Mutex<Shared>>,
    logs: LogSink,
    events: mpsc::Sender<Event>,
    frames: Frames,
    lines: Lines,
    /// The last line on stderr that was not blank, and the request it came
    /// during: the best reason for a crash during that request.
    last_line: Option<(Option<Uuid>, String)>,
    chunk: Vec<u8>,
}

impl Pump {
    pub(crate) fn new(
        child: Child,
        stdout: pipe::Receiver,
        stderr: pipe::Receiver,
        shared: Arc<Mutex<Shared>>,
        logs: LogSink,
        events: mpsc::Sender<Event>,
    ) -> Pump {
        Pump {
            child,
            stdout,
            stderr,
            stderr_open: true,
            shared,
            logs,
            events,
            frames: Frames::default(),
            lines: Lines::default(),
            last_line: None,
            chunk: vec![0; 64 * 1024],
        }
    }

    pub(crate) async fn run(mut self) {
        let reason = self.serve().await;
        let _ = self.events.send(Event::Died(reason)).await;
    }

    /// Until the process ends; why it did.
    async fn serve(&mut self) -> String {
        let mut broken = None;
        let mut status = None;
        loop {
            tokio::select! {
                read = self.stdout.read_buf(self.frames.buffer()) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => if let Err(reason) = self.deliver_frames().await {
                        broken = Some(reason);
                        break;
                    },
                },
                read = self.stderr.read(&mut self.chunk), if self.stderr_open => match read {
                    Ok(0) | Err(_) => self.stderr_open = false,
                    Ok(n) => self.stderr_lines(n),
                },
                exited = self.child.wait() => {
                    status = Some(exited);
                    break;
                }
            }
        }
        if broken.is_some() {
            kill_group(&self.shared);
        }
        let mut killed = false;
        let status = match status {
            Some(status) => status,
            // Its side of the conversation is closed: it is ending, or the
            // code closed descriptors it does not own.
            None => match tokio::time::timeout(EXIT_GRACE, self.wait_reading_stderr()).await {
                Ok(status) => status,
                Err(_) => {
                    killed = true;
                    kill_group(&self.shared);
                    self.wait_reading_stderr().await
                }
            },
        };
        // What the group still holds keeps its id in use until this kill,
        // so it cannot be another process's yet.
        kill_group(&self.shared);
        self.shared.lock().group = None;

        // What it wrote before it ended is still in the pipes.
        if broken.is_none() {
            broken = self.drain_stdout().await.err();
        }
        self.drain_stderr();
        let current = self.shared.lock().current;
        let (logs, last_line) = (&self.logs, &mut self.last_line);
        self.lines
            .finish(&mut |line| forward(logs, last_line, current, line));

        if let Some(reason) = broken {
            return reason;
        }
        if killed {
            return "the instance closed its side of the conversation with the server without \
                    exiting (does the code close file descriptors it did not open?)"
                .to_owned();
        }
        let mut reason = match status {
            Ok(status) => describe(status),
            Err(error) => format!("the server lost track of the instance: {error}"),
        };
        if let Some((_, line)) = self.last_line.as_ref().filter(|(id, _)| *id == current) {
            reason = format!("{reason}: {line}");
        }
        reason
    }

    /// Hands on the complete frames read. Before anything that ends a
    /// request, the stderr lines already written are read, so they are
    /// tagged with it.
    async fn deliver_frames(&mut self) -> Result<(), String> {
        while let Some(message) = self.frames.next() {
            match message? {
                FromRunner::Log { level, text } => self.log(level, &text),
                message => {
                    self.drain_stderr();
                    // Gone only when the instance is: nobody is left to tell.
                    let _ = self.events.send(Event::Message(message)).await;
                }
            }
        }
        Ok(())
    }

    async fn drain_stdout(&mut self) -> Result<(), String> {
        let mut read = 0;
        while read < DRAIN_BYTES {
            match self.stdout.try_read_buf(self.frames.buffer()) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
            self.deliver_frames().await?;
        }
        if !self.frames.is_empty() {
            return Err("the instance ended in the middle of a message to the server".to_owned());
        }
        Ok(())
    }

    fn drain_stderr(&mut self) {
        let mut read = 0;
        while self.stderr_open && read < DRAIN_BYTES {
            match self.stderr.try_read(&mut self.chunk) {
                Ok(0) => self.stderr_open = false,
                Ok(n) => {
                    read += n;
                    self.stderr_lines(n);
                }
                Err(_) => break,
            }
        }
    }

    async fn wait_reading_stderr(&mut self) -> std::io::Result<ExitStatus> {
        loop {
            tokio::select! {
                read = self.stderr.read(&mut self.chunk), if self.stderr_open => match read {
                    Ok(0) | Err(_) => self.stderr_open = false,
                    Ok(n) => self.stderr_lines(n),
                },
                exited = self.child.wait() => return exited,
            }
        }
    }

    /// The first `n` bytes of `chunk`, read from stderr.
    fn stderr_lines(&mut self, n: usize) {
        let current = self.shared.lock().current;
        let (logs, last_line) = (&self.logs, &mut self.last_line);
        self.lines.push(&self.chunk[..n], &mut |line| {
            forward(logs, last_line, current, line)
        });
    }

    fn log(&self, level: Level, text: &str) {
        let request_id = self.shared.lock().current;
        // The runner cuts its lines already; this holds whatever it sends.
        let mut rest = text;
        loop {
            let mut cut = rest.len().min(MAX_LINE_BYTES);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, after) = rest.split_at(cut);
            (self.logs)(LogLine {
                request_id,
                level,
                text: piece.to_owned(),
            });
            if after.is_empty() {
                return;
            }
            rest = after;
        }
    }
}

fn forward(
    logs: &LogSink,
    last_line: &mut Option<(Option<Uuid>, String)>,
    request_id: Option<Uuid>,
    line: &str,
) {
    if !line.trim().is_empty() {
        *last_line = Some((request_id, line.to_owned()));
    }
    logs(LogLine {
        request_id,
        level: STDERR_LEVEL,
        text: line.to_owned(),
    });
}

/// How the process ended, for a person.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("the instance exited with code {code}"),
        (_, Some(signal)) => match signal_name(signal) {
            Some(name) => format!("the instance was killed by signal {signal} ({name})"),
            None => format!("the instance was killed by signal {signal}"),
        },
        _ => "the instance ended".to_owned(),
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}
