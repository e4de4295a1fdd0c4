//! One instance: its process in a sandbox of its own, started, called and
//! stopped.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use ubiops_sandbox::{Limits, Sandbox, Sandboxes, MAX_LINE_BYTES};
use uuid::Uuid;

use crate::package;
use crate::protocol::{self, FromRunner, Stage, ToRunner, MAX_DEPTH, MAX_FRAME_BYTES};
use crate::pump::{self, Event, Pump, Shared};

/// The runner, passed with `-c`: nothing of it is written where the
/// package's code could change it first.
const RUNNER: &str = include_str!("runner.py");

/// How long a stopped instance has to exit on its own before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// How long the end of a killed instance is awaited, so that it is gone
/// when the call that killed it returns.
const KILL_WAIT: Duration = Duration::from_secs(1);

/// What an instance runs.
#[derive(Clone)]
pub struct InstanceSpec {
    /// The Python of the revision's built environment (`<env>/bin/python`).
    pub interpreter: PathBuf,
    /// The deployment package: the directory holding `deployment.py`. The
    /// instance runs a copy of its own.
    pub package_dir: PathBuf,
    /// Variables the code gets (the user's variables with secrets decrypted
    /// and the ones the server sets); nothing else of the server's.
    pub env: Vec<(String, String)>,
    /// Passed as `context` to `Deployment(base_directory, context)`.
    pub context: Value,
    /// Address-space limit for each of the instance's processes.
    pub memory_bytes: u64,
    /// How long importing `deployment.py` and `Deployment.__init__` may take.
    pub start_timeout: Duration,
}

/// Variables hold opened secrets, and the context their values: only the
/// names may reach a log.
impl std::fmt::Debug for InstanceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceSpec")
            .field("interpreter", &self.interpreter)
            .field("package_dir", &self.package_dir)
            .field(
                "env",
                &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("memory_bytes", &self.memory_bytes)
            .field("start_timeout", &self.start_timeout)
            .finish_non_exhaustive()
    }
}

/// One call of the deployment's code.
#[derive(Debug, Clone)]
pub struct Call {
    pub request_id: Uuid,
    pub data: Value,
    /// True: `requests(data, context)` once, with `data` a JSON array (or
    /// `request` for each item, when the code has no `requests`). False:
    /// `request(data, context)` (or `requests([data], context)` and its one
    /// output, when the code has no `request`).
    pub many: bool,
    /// Passed as `context` to `request`/`requests`.
    pub context: Value,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum CallOutcome {
    /// What the method returned. With `many`, an array of one output per
    /// item of the data.
    Returned(Value),
    /// The call failed and the instance is still usable: the method raised
    /// ("ValueError: bad input", its traceback went to the logs), or what
    /// it returned cannot be sent (not JSON, too large, a `requests` output
    /// that is not one item per request), or the data cannot be sent.
    Raised(String),
    /// The timeout passed: the instance was killed and is unusable.
    TimedOut,
    /// The instance died during the call (or before it) and is unusable:
    /// how ("the instance exited with code 3"), with the last line it wrote
    /// to stderr during the call when there is one.
    Crashed(String),
    /// The server abandoned the call (its request was cancelled, or is no
    /// longer this server's to finish) and stopped the instance: why.
    Stopped(String),
}

/// A line the code printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The request in flight when it was printed; none while starting and
    /// between calls.
    pub request_id: Option<Uuid>,
    pub level: Level,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `sys.stdout`.
    Info,
    /// `sys.stderr` (so `logging`'s default handler), and whatever is
    /// written to descriptors 1 and 2 directly.
    Error,
}

/// Gets every line an instance prints, from the task that reads them: it
/// should not block.
pub type LogSink = Arc<dyn Fn(LogLine) + Send + Sync>;

/// Why an instance did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The package's fault, in words for the person who uploaded it: the
    /// import or `Deployment.__init__` raised, the process ended, or the
    /// start timeout passed.
    #[error("{0}")]
    Failed(String),
    /// The machine's fault (the sandbox, the copy of the package, starting
    /// the interpreter): worth another attempt.
    #[error(transparent)]
    Fault(#[from] io::Error),
}

/// A running instance of a deployment's code, serving one call at a time.
/// Dropping it kills its processes and removes its directory, as
/// [`Instance::stop`] does without the grace.
pub struct Instance {
    /// Taken when it is stopped.
    sandbox: Option<Sandbox>,
    dir: PathBuf,
    uid: Option<u32>,
    /// The runner's stdin; closing it asks the runner to end.
    input: Option<pipe::Sender>,
    events: mpsc::Receiver<Event>,
    shared: Arc<Mutex<Shared>>,
    pump: JoinHandle<()>,
    has_request: bool,
    has_requests: bool,
    /// A call whose future was dropped before it ended: its answer may still
    /// come, so the instance cannot take another.
    in_flight: Option<Uuid>,
    /// Why it can serve no more calls, once it cannot.
    ended: Option<String>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("dir", &self.dir)
            .field("uid", &self.uid)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Starts an instance in a sandbox whose private directory is `dir`
    /// (made anew): copies the package into `<dir>/package`, the code's
    /// `base_directory`, which only the instance's user can read and where
    /// it may write next to its files; starts the runner with
    /// `spec.interpreter` there, and waits until `Deployment` is
    /// constructed.
    pub async fn start(
        sandboxes: &Sandboxes,
        dir: &Path,
        spec: &InstanceSpec,
        logs: LogSink,
    ) -> Result<Instance, StartError> {
        let sandboxes = sandboxes.with_limits(Limits {
            memory_bytes: spec.memory_bytes,
            // An instance lives for many requests; their time limits are
            // the calls' timeouts.
            cpu_seconds: u64::MAX,
            ..sandboxes.limits()
        });
        let sandbox = sandboxes.enter(dir)?;
        let (sandbox, package) = package::copy_in(sandbox, &spec.package_dir).await?;

        let mut command = sandbox.command(&spec.interpreter);
        command
            .arg("-c")
            .arg(RUNNER)
            .arg(&package)
            .current_dir(&package)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // Last: the user's choice wins.
            .envs(spec.env.iter().map(|(name, value)| (name, value)));
        let (stdin_reader, stdin_writer) = io::pipe()?;
        let (stdout_reader, stdout_writer) = io::pipe()?;
        let (stderr_reader, stderr_writer) = io::pipe()?;
        command
            .stdin(Stdio::from(stdin_reader))
            .stdout(stdout_writer)
            .stderr(stderr_writer);
        let spawned = command.spawn();
        // The command holds the child's ends of the pipes: without them
        // gone, the end of the output would never be seen.
        drop(command);
        let child = spawned.map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("could not start {}: {error}", spec.interpreter.display()),
            )
        })?;
        let shared = Arc::new(Mutex::new(Shared {
            current: None,
            group: child.id().and_then(|id| i32::try_from(id).ok()),
        }));
        let (events_sender, events) = mpsc::channel(8);
        let pump = Pump::new(
            child,
            pipe::Receiver::from_owned_fd(OwnedFd::from(stdout_reader))?,
            pipe::Receiver::from_owned_fd(OwnedFd::from(stderr_reader))?,
            shared.clone(),
            logs,
            events_sender,
        );
        let mut instance = Instance {
            dir: sandbox.dir().to_owned(),
            uid: sandbox.uid(),
            sandbox: Some(sandbox),
            input: Some(pipe::Sender::from_owned_fd(OwnedFd::from(stdin_writer))?),
            events,
            shared,
            pump: tokio::spawn(pump.run()),
            has_request: false,
            has_requests: false,
            in_flight: None,
            ended: None,
        };
        // From here on, dropping `instance` kills it.
        let started = tokio::time::timeout(spec.start_timeout, instance.await_ready(spec)).await;
        match started {
            Ok(Ok((has_request, has_requests))) => {
                instance.has_request = has_request;
                instance.has_requests = has_requests;
                Ok(instance)
            }
            Ok(Err(reason)) => Err(StartError::Failed(reason)),
            Err(_) => Err(StartError::Failed(format!(
                "the deployment did not start within {} s (importing deployment.py and \
                 constructing Deployment)",
                spec.start_timeout.as_secs_f64()
            ))),
        }
    }

    /// Sends the start frame and waits for the runner's report: which
    /// methods the code has, or why it failed.
    async fn await_ready(&mut self, spec: &InstanceSpec) -> Result<(bool, bool), String> {
        let start = protocol::encode(&ToRunner::Start {
            context: &spec.context,
            max_frame_bytes: MAX_FRAME_BYTES,
            max_line_bytes: MAX_LINE_BYTES,
            max_depth: MAX_DEPTH,
        })
        .map_err(|size| {
            format!("the context is {size} bytes of JSON, more than an instance accepts")
        })?;
        // Failing means it ended: the event says how.
        let _ = self.send(&start).await;
        let reason = match self.events.recv().await {
            Some(Event::Message(FromRunner::Ready {
                has_request,
                has_requests,
            })) => return Ok((has_request, has_requests)),
            Some(Event::Message(FromRunner::Failed {
                stage,
                error,
                file,
                line,
            })) => {
                let place = match (file, line) {
                    (Some(file), Some(line)) => format!(" ({file}, line {line})"),
                    _ => String::new(),
                };
                return Err(match stage {
                    Stage::Import => format!("deployment.py could not be imported: {error}{place}"),
                    Stage::Init => {
                        format!("deployment.py raised during Deployment.__init__: {error}{place}")
                    }
                    Stage::Definition => format!("deployment.py: {error}"),
                });
            }
            Some(Event::Died(reason)) => reason,
            Some(Event::Message(message)) => {
                format!("the instance sent {message:?} before it was ready")
            }
            None => "the instance ended".to_owned(),
        };
        Err(format!(
            "{reason} while starting (importing deployment.py and constructing Deployment)"
        ))
    }

    /// Runs one call. The instance is unusable after `TimedOut` and
    /// `Crashed`, and after a call whose future was dropped before it
    /// ended (its answer could still come).
    pub async fn call(&mut self, call: Call, timeout: Duration) -> CallOutcome {
        if self.in_flight.is_some() {
            self.kill("the instance was stopped: a call to it was abandoned while it ran");
        }
        self.notice_death();
        if let Some(reason) = &self.ended {
            return CallOutcome::Crashed(reason.clone());
        }
        if call.many && !call.data.is_array() {
            return CallOutcome::Raised(
                "a batch of requests must be a JSON array of their data".to_owned(),
            );
        }
        let frame = match protocol::encode(&ToRunner::Call {
            id: call.request_id,
            data: &call.data,
            many: call.many,
            context: &call.context,
        }) {
            Ok(frame) => frame,
            Err(size) => {
                return CallOutcome::Raised(format!(
                    "the request data is {:.1} MiB of JSON, more than the {} MiB an instance \
                     accepts",
                    size as f64 / (1 << 20) as f64,
                    MAX_FRAME_BYTES >> 20
                ))
            }
        };
        self.in_flight = Some(call.request_id);
        self.shared.lock().current = Some(call.request_id);
        let outcome =
            match tokio::time::timeout(timeout, self.exchange(call.request_id, &frame)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    self.kill(&format!(
                        "the instance was stopped: a call ran longer than its {} s timeout",
                        timeout.as_secs_f64()
                    ));
                    CallOutcome::TimedOut
                }
            };
        if matches!(outcome, CallOutcome::TimedOut) {
            self.await_death(KILL_WAIT).await;
        }
        self.shared.lock().current = None;
        self.in_flight = None;
        outcome
    }

    async fn exchange(&mut self, id: Uuid, frame: &[u8]) -> CallOutcome {
        // Failing means it ended: the event says how.
        let _ = self.send(frame).await;
        let outcome = match self.events.recv().await {
            Some(Event::Message(FromRunner::Returned {
                id: answered,
                output,
            })) if answered == id => return CallOutcome::Returned(output),
            Some(Event::Message(FromRunner::Raised {
                id: answered,
                error,
            })) if answered == id => return CallOutcome::Raised(error),
            Some(Event::Died(reason)) => {
                self.ended = Some(reason.clone());
                return CallOutcome::Crashed(reason);
            }
            Some(Event::Message(message)) => {
                format!("the instance answered out of turn: {message:?}")
            }
            None => "the instance ended".to_owned(),
        };
        self.kill(&outcome);
        CallOutcome::Crashed(outcome)
    }

    async fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        match &mut self.input {
            Some(input) => input.write_all(frame).await,
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Whether the code has `request`.
    pub fn has_request(&self) -> bool {
        self.has_request
    }

    /// Whether the code has `requests`.
    pub fn has_requests(&self) -> bool {
        self.has_requests
    }

    /// Why the instance can serve no more calls, if it cannot; notices,
    /// without waiting, one that died since its last call.
    pub fn ended(&mut self) -> Option<&str> {
        self.notice_death();
        self.ended.as_deref()
    }

    /// The sandbox's own user id, when sandboxes have one.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// The sandbox's private directory; the code's `base_directory` is
    /// `package` in it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the instance: closes its input (the runner returns, and the
    /// code's `atexit` handlers run), waits a moment for it to end, then
    /// kills every process of its sandbox and removes its directory.
    pub async fn stop(mut self) {
        self.input = None;
        if self.ended.is_none() {
            self.await_death(STOP_GRACE).await;
        }
        self.kill("the instance was stopped");
        if let Some(sandbox) = self.sandbox.take() {
            // Removing a large package takes a while.
            let _ = tokio::task::spawn_blocking(move || drop(sandbox)).await;
        }
    }

    /// Kills all its processes; `reason` says why it is unusable from now on.
    fn kill(&mut self, reason: &str) {
        if let Some(sandbox) = &self.sandbox {
            sandbox.stop_all();
        }
        pump::kill_group(&self.shared);
        self.input = None;
        self.ended.get_or_insert_with(|| reason.to_owned());
    }

    /// Waits up to `limit` for the pump to see the process end.
    async fn await_death(&mut self, limit: Duration) {
        let died = async {
            while let Some(event) = self.events.recv().await {
                if let Event::Died(reason) = event {
                    return Some(reason);
                }
            }
            None
        };
        if let Ok(Some(reason)) = tokio::time::timeout(limit, died).await {
            self.ended.get_or_insert(reason);
        }
    }

    fn notice_death(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Died(reason) => {
                    self.ended.get_or_insert(reason);
                }
                Event::Message(message) => {
                    self.kill(&format!("the instance spoke out of turn: {message:?}"));
                }
            }
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Before the sandbox goes: its directory cannot be removed while
        // processes keep writing to it.
        self.kill("the instance was stopped");
        self.pump.abort();
    }
}
