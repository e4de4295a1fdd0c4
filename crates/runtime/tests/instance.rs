//! Instances of small deployment packages, run by the system's Python in
//! real sandboxes. These run as root (as CI does): each instance has a user
//! of its own, and isolation by user id is part of what they check.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ubiops_runtime::{
    Call, CallOutcome, Instance, InstanceSpec, Level, LogLine, LogSink, StartError,
};
use ubiops_sandbox::{Limits, Sandboxes, Users, DEFAULT_LOCK_DIR};
use uuid::Uuid;

const PYTHON: &str = "/usr/bin/python3";
const TIMEOUT: Duration = Duration::from_secs(10);

struct Fixture {
    _temp: tempfile::TempDir,
    root: PathBuf,
    sandboxes: Sandboxes,
    logs: Arc<Mutex<Vec<LogLine>>>,
}

/// `range` keeps the tests' user ids apart: they run at once, and the locks
/// that make an id one sandbox's live in the machine-wide directory.
fn fixture(range: u32) -> Fixture {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the instance tests check isolation by user id, which needs root (CI runs as root)"
    );
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().to_owned();
    // Searchable, not listable, as the server makes its own directories.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o711)).unwrap();
    let sandboxes = Sandboxes::new(
        Users::Range {
            uids: 1_898_000_000 + range * 100..=1_898_000_099 + range * 100,
            lock_dir: PathBuf::from(DEFAULT_LOCK_DIR),
        },
        Limits::default(),
    )
    .unwrap();
    Fixture {
        _temp: temp,
        root,
        sandboxes,
        logs: Arc::default(),
    }
}

impl Fixture {
    /// A package (in a directory only root can read) whose deployment.py is
    /// `code`.
    fn package(&self, name: &str, code: &str) -> PathBuf {
        let dir = self.root.join(format!("{name}-source"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("deployment.py"), code).unwrap();
        dir
    }

    fn spec(&self, name: &str, code: &str) -> InstanceSpec {
        InstanceSpec {
            interpreter: PathBuf::from(PYTHON),
            package_dir: self.package(name, code),
            env: vec![("DEPLOYMENT_VARIABLE".to_owned(), "set".to_owned())],
            context: json!({"deployment": "echo", "version": "v1"}),
            memory_bytes: 1 << 30,
            start_timeout: TIMEOUT,
        }
    }

    fn sink(&self) -> LogSink {
        let logs = self.logs.clone();
        Arc::new(move |line| logs.lock().unwrap().push(line))
    }

    async fn try_start(&self, spec: &InstanceSpec) -> Result<Instance, StartError> {
        let dir = self.root.join(
            spec.package_dir
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .replace("-source", ""),
        );
        Instance::start(&self.sandboxes, &dir, spec, self.sink()).await
    }

    async fn start(&self, name: &str, code: &str) -> Instance {
        self.try_start(&self.spec(name, code)).await.unwrap()
    }

    /// The lines logged so far, as (request, level, text).
    fn lines(&self) -> Vec<(Option<Uuid>, Level, String)> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|line| (line.request_id, line.level, line.text.clone()))
            .collect()
    }
}

/// Waits a moment for `uid` to have no living process left: a killed
/// process takes a moment to die.
async fn assert_no_process_left(uid: u32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !living_processes(uid).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(living_processes(uid), Vec::<String>::new());
}

fn call(data: Value) -> Call {
    let id = Uuid::new_v4();
    Call {
        request_id: id,
        data,
        many: false,
        context: json!({"id": id, "request_mode": "express"}),
    }
}

fn batch(data: Value) -> Call {
    Call {
        many: true,
        ..call(data)
    }
}

/// The processes of `uid` that are alive (killed orphans are zombies until
/// init reaps them).
fn living_processes(uid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|rest| rest.trim().to_owned())
                .unwrap_or_default()
        };
        let real_uid = field("Uid:")
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned();
        if real_uid == uid.to_string() && !field("State:").starts_with('Z') {
            found.push(format!("{} {}", field("Name:"), field("State:")));
        }
    }
    found
}

const ECHO: &str = r#"
class Deployment:
    def __init__(self, base_directory, context):
        self.base_directory = base_directory
        self.context = context

    def request(self, data, context):
        return {"data": data, "context": context, "init_context": self.context,
                "base_directory": self.base_directory}

    def requests(self, data, context):
        return [{"item": item, "count": len(data)} for item in data]
"#;

#[tokio::test]
async fn calls_get_their_data_and_the_contexts() {
    let f = fixture(1);
    let mut instance = f.start("echo", ECHO).await;
    assert!(instance.has_request() && instance.has_requests());
    let one = call(json!({"text": "hi", "n": [1, 2.5, null]}));
    let outcome = instance.call(one.clone(), TIMEOUT).await;
    let base = instance.dir().join("package");
    assert_eq!(
        outcome,
        CallOutcome::Returned(json!({
            "data": {"text": "hi", "n": [1, 2.5, null]},
            "context": {"id": one.request_id, "request_mode": "express"},
            "init_context": {"deployment": "echo", "version": "v1"},
            "base_directory": base.to_str().unwrap(),
        }))
    );
    // Calls can run in tasks of their own.
    let (outcome, mut instance) = tokio::spawn(async move {
        let outcome = instance.call(batch(json!(["a", "b"])), TIMEOUT).await;
        (outcome, instance)
    })
    .await
    .unwrap();
    assert_eq!(
        outcome,
        CallOutcome::Returned(json!([{"item": "a", "count": 2}, {"item": "b", "count": 2}]))
    );
    let outcome = instance
        .call(batch(json!({"not": "a list"})), TIMEOUT)
        .await;
    assert!(matches!(outcome, CallOutcome::Raised(message) if message.contains("JSON array")));
    instance.stop().await;
}

#[tokio::test]
async fn old_signatures_and_missing_methods_are_bridged() {
    let f = fixture(2);
    // request(self, data): packages from before contexts.
    let mut only_request = f
        .start(
            "only-request",
            "class Deployment:\n    def __init__(self, base_directory, context):\n        pass\n\n    def request(self, data):\n        return data * 2\n",
        )
        .await;
    assert!(only_request.has_request() && !only_request.has_requests());
    assert_eq!(
        only_request.call(call(json!(21)), TIMEOUT).await,
        CallOutcome::Returned(json!(42))
    );
    // A batch without requests(): request() per item.
    assert_eq!(
        only_request.call(batch(json!([1, 2, 3])), TIMEOUT).await,
        CallOutcome::Returned(json!([2, 4, 6]))
    );
    assert_eq!(
        only_request.call(batch(json!([1, null])), TIMEOUT).await,
        CallOutcome::Raised(
            "TypeError: unsupported operand type(s) for *: 'NoneType' and 'int'".to_owned()
        )
    );

    let mut only_requests = f
        .start(
            "only-requests",
            "class Deployment:\n    def __init__(self, base_directory, context):\n        pass\n\n    def requests(self, data, context):\n        if data == ['wrong']:\n            return {'not': 'a list'}\n        return [[item, context['request_mode']] for item in data]\n",
        )
        .await;
    assert!(!only_requests.has_request() && only_requests.has_requests());
    // One request without request(): requests([data]) and its one output.
    assert_eq!(
        only_requests.call(call(json!("x")), TIMEOUT).await,
        CallOutcome::Returned(json!(["x", "express"]))
    );
    assert_eq!(
        only_requests.call(batch(json!(["x", "y"])), TIMEOUT).await,
        CallOutcome::Returned(json!([["x", "express"], ["y", "express"]]))
    );
    assert_eq!(
        only_requests.call(call(json!("wrong")), TIMEOUT).await,
        CallOutcome::Raised(
            "requests() returned dict, not a list with one output per request".to_owned()
        )
    );
    only_request.stop().await;
    only_requests.stop().await;
}

const CHATTY: &str = r#"
import logging
import os
import sys

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
print("importing")


class Deployment:
    def __init__(self, base_directory, context):
        print("init out")
        print("init err", file=sys.stderr)
        logging.info("init logged")

    def request(self, data, context):
        print("one")
        sys.stderr.write("two\n")
        print("three", "3", sep="-")
        logging.warning("four")
        print("x" * 20000)
        os.write(1, b"from descriptor 1\n")
        os.write(2, b"from descriptor 2\n")
        sys.stdout.reconfigure(encoding="utf-8")
        sys.stdout.buffer.write(b"bytes \xc3")
        sys.stdout.buffer.write(b"\xa9\n")
        print("unfinished", end="")
        return "done"
"#;

#[tokio::test]
async fn printed_lines_arrive_in_order_tagged_with_their_request() {
    let f = fixture(3);
    let mut instance = f.start("chatty", CHATTY).await;
    assert_eq!(
        f.lines(),
        vec![
            (None, Level::Info, "importing".to_owned()),
            (None, Level::Info, "init out".to_owned()),
            (None, Level::Error, "init err".to_owned()),
            (None, Level::Error, "INFO init logged".to_owned()),
        ]
    );
    f.logs.lock().unwrap().clear();
    let one = call(json!(null));
    let id = Some(one.request_id);
    assert_eq!(
        instance.call(one, TIMEOUT).await,
        CallOutcome::Returned(json!("done"))
    );
    let lines = f.lines();
    // Lines written to the descriptors come on another pipe than the
    // runner's: in order among themselves, and before the answer.
    let (descriptors, python): (Vec<_>, Vec<_>) = lines
        .into_iter()
        .partition(|(_, _, text)| text.starts_with("from descriptor"));
    let long = "x".repeat(20000);
    assert_eq!(
        python,
        vec![
            (id, Level::Info, "one".to_owned()),
            (id, Level::Error, "two".to_owned()),
            (id, Level::Info, "three-3".to_owned()),
            (id, Level::Error, "WARNING four".to_owned()),
            (id, Level::Info, long[..8192].to_owned()),
            (id, Level::Info, long[8192..16384].to_owned()),
            (id, Level::Info, long[16384..].to_owned()),
            (id, Level::Info, "bytes é".to_owned()),
            (id, Level::Info, "unfinished".to_owned()),
        ]
    );
    assert_eq!(
        descriptors,
        vec![
            (id, Level::Error, "from descriptor 1".to_owned()),
            (id, Level::Error, "from descriptor 2".to_owned()),
        ]
    );
    instance.stop().await;
}

#[tokio::test]
async fn a_raise_fails_the_call_and_the_instance_serves_on() {
    let f = fixture(4);
    let mut instance = f
        .start(
            "raising",
            "class Deployment:\n    def __init__(self, base_directory, context):\n        pass\n\n    def request(self, data, context):\n        if data == 'bad':\n            raise ValueError('bad input')\n        if data == 'noted':\n            error = KeyError('k')\n            error.add_note('a\\nb')\n            raise error\n        return data\n",
        )
        .await;
    let bad = call(json!("bad"));
    let id = Some(bad.request_id);
    assert_eq!(
        instance.call(bad, TIMEOUT).await,
        CallOutcome::Raised("ValueError: bad input".to_owned())
    );
    let traceback: Vec<String> = f
        .lines()
        .into_iter()
        .map(|(request, level, text)| {
            assert_eq!((request, level), (id, Level::Error));
            text
        })
        .collect();
    assert_eq!(traceback[0], "Traceback (most recent call last):");
    assert!(
        traceback[1].ends_with("deployment.py\", line 7, in request"),
        "{traceback:?}"
    );
    assert_eq!(traceback.last().unwrap(), "ValueError: bad input");
    assert!(
        !traceback.iter().any(|line| line.contains("<string>")),
        "the runner's own frames are left out: {traceback:?}"
    );
    assert_eq!(
        instance.call(call(json!("noted")), TIMEOUT).await,
        CallOutcome::Raised("KeyError: 'k'".to_owned())
    );
    assert_eq!(
        instance.call(call(json!("good")), TIMEOUT).await,
        CallOutcome::Returned(json!("good"))
    );
    instance.stop().await;
}

#[tokio::test]
async fn a_failing_start_says_why_and_where() {
    let f = fixture(5);
    let mut spec = f.spec(
        "init-raises",
        "import os\n\nclass Deployment:\n    def __init__(self, base_directory, context):\n        print('loading')\n        if not os.path.exists('model.bin'):\n            raise ValueError('no model file')\n\n    def request(self, data, context):\n        return data\n",
    );
    let error = f.try_start(&spec).await.err().unwrap();
    assert_eq!(
        error.to_string(),
        "deployment.py raised during Deployment.__init__: ValueError: no model file (deployment.py, line 7)"
    );
    assert!(matches!(error, StartError::Failed(_)));
    assert!(
        !f.root.join("init-raises").exists(),
        "a failed start leaves no directory"
    );
    assert!(f
        .lines()
        .contains(&(None, Level::Error, "ValueError: no model file".to_owned())));

    spec.package_dir = f.package("import-fails", "import os\nimport no_such_module_here\n");
    assert_eq!(
        f.try_start(&spec).await.err().unwrap().to_string(),
        "deployment.py could not be imported: ModuleNotFoundError: No module named 'no_such_module_here' (deployment.py, line 2)"
    );
    spec.package_dir = f.package(
        "syntax",
        "class Deployment:\n    def request(self, data)\n        pass\n",
    );
    assert_eq!(
        f.try_start(&spec).await.err().unwrap().to_string(),
        "deployment.py could not be imported: SyntaxError: expected ':' (deployment.py, line 2)"
    );
    spec.package_dir = f.package("no-class", "x = 1\n");
    assert_eq!(
        f.try_start(&spec).await.err().unwrap().to_string(),
        "deployment.py: it defines no class named Deployment"
    );
    spec.package_dir = f.package("exits", "import os\nos._exit(4)\n");
    assert_eq!(
        f.try_start(&spec).await.err().unwrap().to_string(),
        "the instance exited with code 4 while starting (importing deployment.py and constructing Deployment)"
    );
}

#[tokio::test]
async fn a_hang_in_init_fails_the_start_after_its_timeout() {
    let f = fixture(6);
    let mut spec = f.spec(
        "hangs",
        "import time\n\nclass Deployment:\n    def __init__(self, base_directory, context):\n        time.sleep(300)\n\n    def request(self, data, context):\n        return data\n",
    );
    spec.start_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let error = f.try_start(&spec).await.err().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        error.to_string(),
        "the deployment did not start within 1 s (importing deployment.py and constructing Deployment)"
    );
    assert!(!f.root.join("hangs").exists());
}

#[tokio::test]
async fn a_call_past_its_timeout_is_killed() {
    let f = fixture(7);
    let mut instance = f
        .start(
            "sleeps",
            "import time\n\nclass Deployment:\n    def __init__(self, base_directory, context):\n        pass\n\n    def request(self, data, context):\n        time.sleep(data)\n        return data\n",
        )
        .await;
    let uid = instance.uid().unwrap();
    assert_eq!(
        instance.call(call(json!(0.1)), TIMEOUT).await,
        CallOutcome::Returned(json!(0.1))
    );
    let started = Instant::now();
    let outcome = instance
        .call(call(json!(300)), Duration::from_secs(1))
        .await;
    assert_eq!(outcome, CallOutcome::TimedOut);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert_no_process_left(uid).await;
    assert_eq!(
        instance.call(call(json!(0)), TIMEOUT).await,
        CallOutcome::Crashed(
            "the instance was stopped: a call ran longer than its 1 s timeout".to_owned()
        )
    );
    instance.stop().await;
}

const CRASHING: &str = r#"
import os
import sys
import threading

class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data, context):
        if data == "exit":
            os._exit(3)
        if data == "kill":
            os.kill(os.getpid(), 9)
        if data == "sys.exit":
            sys.exit(4)
        if data == "later":
            threading.Timer(0.2, os._exit, (5,)).start()
        return data
"#;

#[tokio::test]
async fn a_dying_instance_crashes_the_call_and_says_how() {
    let f = fixture(8);
    let cases = [
        ("exit", "the instance exited with code 3"),
        ("kill", "the instance was killed by signal 9 (SIGKILL)"),
        ("sys.exit", "the instance exited with code 4: SystemExit: 4"),
    ];
    for (index, (data, reason)) in cases.into_iter().enumerate() {
        let mut instance = f.start(&format!("crash-{index}"), CRASHING).await;
        let crashed = CallOutcome::Crashed(reason.to_owned());
        assert_eq!(
            instance.call(call(json!(data)), TIMEOUT).await,
            crashed,
            "{data}"
        );
        assert_eq!(instance.ended(), Some(reason));
        assert_eq!(instance.call(call(json!("again")), TIMEOUT).await, crashed);
        instance.stop().await;
    }
    // Between calls, noticed without a call.
    let mut instance = f.start("crash-later", CRASHING).await;
    assert_eq!(
        instance.call(call(json!("later")), TIMEOUT).await,
        CallOutcome::Returned(json!("later"))
    );
    assert_eq!(instance.ended(), None);
    let deadline = Instant::now() + Duration::from_secs(5);
    while instance.ended().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(instance.ended(), Some("the instance exited with code 5"));
    instance.stop().await;
}

#[tokio::test]
async fn memory_and_cpu_limits_hold() {
    let f = fixture(9);
    let mut spec = f.spec(
        "memory",
        "import resource\n\nclass Deployment:\n    def __init__(self, base_directory, context):\n        pass\n\n    def request(self, data, context):\n        if data == 'limits':\n            return [resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_CPU)]\n        return len(bytearray(data))\n",
    );
    spec.memory_bytes = 256 << 20;
    let mut instance = f.try_start(&spec).await.unwrap();
    assert_eq!(
        instance.call(call(json!(1 << 30)), TIMEOUT).await,
        CallOutcome::Raised("MemoryError".to_owned())
    );
    assert_eq!(
        instance.call(call(json!(1 << 20)), TIMEOUT).await,
        CallOutcome::Returned(json!(1 << 20))
    );
    // Python says RLIM_INFINITY as -1.
    let unlimited = json!(-1);
    assert_eq!(
        instance.call(call(json!("limits")), TIMEOUT).await,
        CallOutcome::Returned(json!([[256 << 20, 256 << 20], [unlimited, unlimited]]))
    );
    instance.stop().await;
}

#[tokio::test]
async fn outputs_that_cannot_be_sent_fail_their_call() {
    let f = fixture(10);
    let mut instance = f
        .start(
            "outputs",
            "class Deployment:\n    def __init__(self, base_directory, context):\n        pass\n\n    def request(self, data, context):\n        if data == 'object':\n            return object()\n        if data == 'nan':\n            return float('nan')\n        if data == 'deep':\n            value = []\n            for _ in range(200):\n                value = [value]\n            return value\n        if data == 'huge':\n            return 'x' * (65 << 20)\n        return data\n",
        )
        .await;
    let cases = [
        ("object", "the output of request() is not JSON serialisable: TypeError: Object of type object is not JSON serializable"),
        ("nan", "the output of request() is not JSON serialisable: ValueError: Out of range float values are not JSON compliant"),
        ("deep", "the output of request() nests lists and objects more than 100 levels deep"),
        ("huge", "the output of request() is 65.0 MiB of JSON, more than the 64 MiB an instance may return"),
    ];
    for (data, error) in cases {
        assert_eq!(
            instance.call(call(json!(data)), TIMEOUT).await,
            CallOutcome::Raised(error.to_owned())
        );
    }
    assert_eq!(
        instance.call(call(json!("fine")), TIMEOUT).await,
        CallOutcome::Returned(json!("fine"))
    );
    instance.stop().await;
}

#[tokio::test]
async fn the_code_reaches_neither_server_files_nor_other_instances_nor_server_variables() {
    let f = fixture(11);
    // As the server's data directory is.
    let private = f.root.join("data");
    fs::create_dir(&private).unwrap();
    fs::write(private.join("secret.key"), "key").unwrap();
    fs::set_permissions(
        private.join("secret.key"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    std::env::set_var("UBIOPS_RUNTIME_TEST_SECRET", "do-not-leak");

    let code = r#"
import os

class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data, context):
        if data == "environment":
            return dict(os.environ)
        try:
            with open(data) as file:
                return file.read()
        except OSError as error:
            return type(error).__name__
"#;
    let mut one = f.start("one", code).await;
    let mut two = f.start("two", code).await;
    assert_ne!(one.uid(), two.uid());
    let package = one.dir().join("package");
    let meta = fs::metadata(package.join("deployment.py")).unwrap();
    assert_eq!(
        meta.uid(),
        one.uid().unwrap(),
        "the package copy is the instance's"
    );
    for path in [private.join("secret.key"), package.join("deployment.py")] {
        assert_eq!(
            two.call(call(json!(path)), TIMEOUT).await,
            CallOutcome::Returned(json!("PermissionError")),
            "{}",
            path.display()
        );
    }
    assert_eq!(
        one.call(call(json!(package.join("deployment.py"))), TIMEOUT)
            .await,
        CallOutcome::Returned(json!(code))
    );
    let CallOutcome::Returned(Value::Object(environment)) =
        one.call(call(json!("environment")), TIMEOUT).await
    else {
        panic!("no environment");
    };
    let mut names: Vec<&str> = environment.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "DEPLOYMENT_VARIABLE",
            "HOME",
            "LANG",
            "LOGNAME",
            "PATH",
            "PYTHONDONTWRITEBYTECODE",
            "PYTHONUNBUFFERED",
            "TMPDIR",
            "USER",
        ]
    );
    assert_eq!(environment["DEPLOYMENT_VARIABLE"], "set");
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn the_code_cannot_forge_an_answer() {
    let f = fixture(12);
    let code = r#"
import json
import os
import struct
import sys

class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data, context):
        forged = json.dumps({"type": "returned", "id": context["id"], "output": "forged"}).encode()
        frame = struct.pack(">I", len(forged)) + forged
        os.write(1, frame + b"\n")
        sys.__stdout__.buffer.write(frame + b"\n")
        sys.__stdout__.flush()
        return "real"
"#;
    let mut instance = f.start("forger", code).await;
    let one = call(json!(null));
    let id = one.request_id;
    assert_eq!(
        instance.call(one, TIMEOUT).await,
        CallOutcome::Returned(json!("real"))
    );
    let lines = f.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines
        .iter()
        .all(|(request, _, text)| *request == Some(id) && text.contains("\"forged\"")));
    assert_eq!(
        instance.call(call(json!(null)), TIMEOUT).await,
        CallOutcome::Returned(json!("real"))
    );
    instance.stop().await;
}

#[tokio::test]
async fn what_the_code_forks_prints_and_nothing_outlives_a_stop() {
    let f = fixture(13);
    let code = r#"
import os
import subprocess

class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data, context):
        # A daemon in a session of its own, and a forked child that prints
        # and then returns into the runner.
        subprocess.Popen(["setsid", "sleep", "300"])
        if os.fork() == 0:
            print("from the child")
            return "child"
        os.wait()
        return "parent"
"#;
    let mut instance = f.start("forks", code).await;
    let uid = instance.uid().unwrap();
    let dir = instance.dir().to_owned();
    let one = call(json!(null));
    let id = one.request_id;
    assert_eq!(
        instance.call(one, TIMEOUT).await,
        CallOutcome::Returned(json!("parent"))
    );
    assert_eq!(
        f.lines(),
        vec![(Some(id), Level::Error, "from the child".to_owned())]
    );
    assert_eq!(
        instance.call(call(json!(null)), TIMEOUT).await,
        CallOutcome::Returned(json!("parent")),
        "the child's return did not disturb the conversation"
    );
    assert!(!living_processes(uid).is_empty());
    instance.stop().await;
    assert_no_process_left(uid).await;
    assert!(!dir.exists());
}

#[test]
fn the_package_must_have_a_deployment_file() {
    let f = fixture(14);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut spec = f.spec("empty", "");
    fs::remove_file(spec.package_dir.join("deployment.py")).unwrap();
    let error = runtime.block_on(f.try_start(&spec)).err().unwrap();
    assert_eq!(
        error.to_string(),
        "the deployment package has no deployment.py at its top level"
    );
    spec.package_dir = Path::new("/nonexistent").to_owned();
    assert!(matches!(
        runtime.block_on(f.try_start(&spec)).err().unwrap(),
        StartError::Fault(_)
    ));
}

#[tokio::test]
async fn the_code_imports_its_own_modules_and_writes_next_to_its_files() {
    let f = fixture(15);
    let spec = f.spec(
        "modules",
        "import helper\nimport vendored\n\nclass Deployment:\n    def __init__(self, base_directory, context):\n        with open('cache.txt', 'w') as file:\n            file.write(helper.NAME)\n\n    def request(self, data, context):\n        with open('cache.txt') as file:\n            return [file.read(), vendored.NAME]\n",
    );
    fs::write(spec.package_dir.join("helper.py"), "NAME = 'helper'\n").unwrap();
    fs::create_dir(spec.package_dir.join("libraries")).unwrap();
    fs::write(
        spec.package_dir.join("libraries/vendored.py"),
        "NAME = 'vendored'\n",
    )
    .unwrap();
    let mut instance = f.try_start(&spec).await.unwrap();
    assert_eq!(
        instance.call(call(json!(null)), TIMEOUT).await,
        CallOutcome::Returned(json!(["helper", "vendored"]))
    );
    assert!(
        !spec.package_dir.join("cache.txt").exists(),
        "the instance writes to its own copy"
    );
    instance.stop().await;
}

/// As the server runs when it is not root: no user of its own, the same
/// conversation.
#[tokio::test]
async fn without_a_user_of_its_own_an_instance_serves_the_same() {
    let mut f = fixture(16);
    f.sandboxes = Sandboxes::new(Users::Own, Limits::default()).unwrap();
    let mut instance = f.start("own-user", ECHO).await;
    assert_eq!(instance.uid(), None);
    let one = call(json!(1));
    let CallOutcome::Returned(output) = instance.call(one.clone(), TIMEOUT).await else {
        panic!("no output");
    };
    assert_eq!(output["data"], json!(1));
    assert_eq!(output["context"]["id"], json!(one.request_id));
    let dir = instance.dir().to_owned();
    instance.stop().await;
    assert!(!dir.exists());
}
