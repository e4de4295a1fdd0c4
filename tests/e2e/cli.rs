//! The `ubiops-server` binary itself: embedded database, first-start token,
//! `token create`, configuration errors and graceful shutdown.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

const BINARY: &str = env!("CARGO_BIN_EXE_ubiops-server");

/// A temp data dir that PostgreSQL's unprivileged user can enter (tests run as root).
pub(crate) fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ubiops-cli-test")
        .tempdir()
        .unwrap();
    ubiops_embedded_postgres::make_traversable(dir.path()).unwrap();
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn command(data_dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("UBIOPS_DATA_DIR", data_dir)
        .env("RUST_LOG", "info");
    command
}

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    stdout: std::sync::mpsc::Receiver<String>,
    log: PathBuf,
}

impl Server {
    pub(crate) fn start(data_dir: &Path, extra_env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let log = data_dir.join("server.log");
        let mut command = command(data_dir);
        command
            .env("UBIOPS_LISTEN", format!("127.0.0.1:{port}"))
            .envs(extra_env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = command.spawn().unwrap();
        let (sender, stdout) = std::sync::mpsc::channel();
        let pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stdout,
            log,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(response) = reqwest::blocking::get(format!("{}/status", self.base)) {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "server did not become ready; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn stdout_lines(&self) -> Vec<String> {
        self.stdout.try_iter().collect()
    }

    pub(crate) fn get(&self, token: &str, path: &str) -> reqwest::blocking::Response {
        reqwest::blocking::Client::new()
            .get(format!("{}/v2.1{path}", self.base))
            .header("Authorization", format!("Token {token}"))
            .send()
            .unwrap()
    }

    pub(crate) fn post(
        &self,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::blocking::Response {
        reqwest::blocking::Client::new()
            .post(format!("{}/v2.1{path}", self.base))
            .header("Authorization", format!("Token {token}"))
            .json(&body)
            .send()
            .unwrap()
    }

    /// Project `p`, plain deployment `d`, version `v1`.
    pub(crate) fn create_version_v1(&self, token: &str) {
        for (path, body) in [
            ("/projects", json!({"name": "p"})),
            (
                "/projects/p/deployments",
                json!({"name": "d", "input_type": "plain", "output_type": "plain"}),
            ),
            (
                "/projects/p/deployments/d/versions",
                json!({"version": "v1"}),
            ),
        ] {
            assert!(self.post(token, path, body).status().is_success(), "{path}");
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub(crate) fn terminate(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill(2) on our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (
                    status,
                    std::fs::read_to_string(&self.log).unwrap_or_default(),
                );
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().unwrap()
}

pub(crate) fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

fn postmaster_running(data_dir: &Path) -> bool {
    ubiops_embedded_postgres::running_cluster_url(&data_dir.join("postgres"), "ubiops").is_some()
}

#[test]
fn embedded_server_lifecycle_with_tokens() {
    let dir = data_dir();

    // First start: the embedded cluster is created and an admin token printed once.
    let server = Server::start(dir.path(), &[]);
    std::thread::sleep(Duration::from_millis(200));
    let printed = server.stdout_lines();
    let admin = printed
        .last()
        .cloned()
        .expect("the first start prints a token");
    assert_eq!(admin.len(), 64, "{printed:?}");
    assert!(postmaster_running(dir.path()));
    assert_eq!(
        server
            .post(&admin, "/projects", json!({"name": "p1"}))
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        server
            .post(&admin, "/projects", json!({"name": "p2"}))
            .status(),
        StatusCode::CREATED
    );

    // `token create` while the server runs uses its cluster; the token works at once.
    let created = run(command(dir.path()).args(["token", "create", "--email", "ops@example.com"]));
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let ops = last_line(&created);
    assert_eq!(server.get(&ops, "/projects").status(), StatusCode::OK);

    let limited = run(command(dir.path()).args([
        "token",
        "create",
        "--email",
        "p1@example.com",
        "--project",
        "p1",
    ]));
    assert!(limited.status.success());
    let limited = last_line(&limited);
    assert_eq!(
        server.get(&limited, "/projects/p1").status(),
        StatusCode::OK
    );
    assert_eq!(
        server.get(&limited, "/projects/p2").status(),
        StatusCode::FORBIDDEN
    );
    let listed: serde_json::Value = server.get(&limited, "/projects").json().unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Graceful stop: exit code 0, the embedded cluster stopped too.
    let (status, log) = server.terminate();
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains("embedded PostgreSQL stopped"), "{log}");
    assert!(!postmaster_running(dir.path()));
    for token in [&admin, &ops, &limited] {
        assert!(!log.contains(token.as_str()), "a token reached the log");
    }

    // `token create` with the server down starts the cluster briefly.
    let offline = run(command(dir.path()).args(["token", "create", "--email", "late@example.com"]));
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    let late = last_line(&offline);
    assert!(
        !postmaster_running(dir.path()),
        "the brief cluster was stopped again"
    );

    // Second start: data kept, no new token printed, every token still works.
    let server = Server::start(dir.path(), &[]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.stdout_lines().is_empty(),
        "no second first-start token"
    );
    for token in [&admin, &ops, &late] {
        assert_eq!(server.get(token, "/projects/p1").status(), StatusCode::OK);
    }
    let (status, _) = server.terminate();
    assert!(status.success());
}

#[test]
fn bootstrap_token_from_the_environment() {
    let dir = data_dir();
    let token = "bootstrap-token-0123456789abcdef";
    let server = Server::start(
        dir.path(),
        &[
            ("UBIOPS_BOOTSTRAP_TOKEN", token),
            ("UBIOPS_BOOTSTRAP_EMAIL", "boot@example.com"),
        ],
    );
    assert_eq!(
        server
            .post(token, "/projects", json!({"name": "p"}))
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        server
            .post(
                token,
                "/projects/p/deployments",
                json!({"name": "d", "input_type": "plain", "output_type": "plain"})
            )
            .status(),
        StatusCode::CREATED
    );
    let audit: serde_json::Value = server
        .get(token, "/projects/p/deployments/d/audit")
        .json()
        .unwrap();
    assert_eq!(audit[0]["user"], "boot@example.com");
    // With a bootstrap token in place there is no generated one to print.
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.stdout_lines().is_empty());
    let (status, log) = server.terminate();
    assert!(status.success());
    assert!(!log.contains(token));
}

#[test]
fn bad_configuration_stops_the_start_naming_the_variable() {
    let dir = data_dir();
    let cases = [
        ("UBIOPS_LISTEN", "not-an-address"),
        ("UBIOPS_STORAGE_URL", "ftp://bucket"),
        ("UBIOPS_STORAGE_URL", "s3://"),
        ("DATABASE_URL", "mysql://localhost/db"),
        ("UBIOPS_BOOTSTRAP_TOKEN", "short"),
        ("UBIOPS_BOOTSTRAP_EMAIL", "nobody@example.com"),
        ("UBIOPS_DATABASE_POOL_SIZE", "many"),
        ("UBIOPS_EXTRA_INSTANCE_TYPES", "huge"),
        ("UBIOPS_SECRET_KEY", "not-a-key"),
    ];
    for (variable, value) in cases {
        let mut process = command(dir.path())
            .env(variable, value)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = process.wait().unwrap();
        let mut stderr = String::new();
        process
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success(), "{variable}={value} was accepted");
        assert!(stderr.contains(variable), "{variable}={value}: {stderr}");
    }
    assert!(!dir.path().join("postgres").exists(), "nothing was started");
}

#[test]
fn token_create_validates_its_arguments() {
    let dir = data_dir();
    let bad_email = run(command(dir.path()).args(["token", "create", "--email", "not-an-email"]));
    assert!(!bad_email.status.success());
    assert!(String::from_utf8_lossy(&bad_email.stderr).contains("--email"));
    let bad_project =
        run(command(dir.path()).args(["token", "create", "--email", "a@b.c", "--project", "Bad"]));
    assert!(!bad_project.status.success());
    assert!(String::from_utf8_lossy(&bad_project.stderr).contains("--project"));
}

fn pg_dump() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("pg_dump"))
        .find(|path| path.exists());
    on_path
        .or_else(|| {
            let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .flatten()
                .map(|entry| entry.path().join("bin/pg_dump"))
                .filter(|path| path.exists())
                .collect();
            found.sort();
            found.pop()
        })
        .expect("pg_dump from the PostgreSQL packages")
}

#[test]
fn secrets_stay_out_of_responses_dumps_logs_and_audit_events() {
    let dir = data_dir();
    let token = "secrets-test-token-0123456789";
    let server = Server::start(
        dir.path(),
        &[("UBIOPS_BOOTSTRAP_TOKEN", token), ("RUST_LOG", "debug")],
    );
    let plaintext = format!("s3cr3t-{}", uuid::Uuid::new_v4().simple());
    server.create_version_v1(token);
    let setup = [
        (
            "/projects/p/environment-variables",
            json!({"name": "P_SECRET", "value": plaintext, "secret": true}),
        ),
        (
            "/projects/p/deployments/d/environment-variables",
            json!({"name": "D_SECRET", "value": plaintext, "secret": true}),
        ),
        (
            "/projects/p/deployments/d/versions/v1/environment-variables",
            json!({"name": "V_SECRET", "value": plaintext, "secret": true}),
        ),
        (
            "/projects/p/deployments/d/versions/v1/copy-environment-variables",
            json!({"source_deployment": "d"}),
        ),
    ];
    let mut responses = String::new();
    for (path, body) in setup {
        let response = server.post(token, path, body);
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        responses.push_str(&response.text().unwrap());
    }
    // Refused requests that carry the secret do not echo it either.
    for body in [
        json!({"name": "bad name", "value": plaintext, "secret": true}),
        json!({"name": "P_SECRET", "value": plaintext, "secret": true}),
        json!({"name": "X", "value": plaintext, "secret": "yes"}),
        json!({"name": "X", "value": plaintext, "secret": true, "extra": 1}),
    ] {
        let response = server.post(token, "/projects/p/environment-variables", body);
        assert!(response.status().is_client_error());
        responses.push_str(&response.text().unwrap());
    }
    for path in [
        "/projects/p/environment-variables",
        "/projects/p/deployments/d/environment-variables",
        "/projects/p/deployments/d/versions/v1/environment-variables",
        "/projects/p/deployments/d/audit",
    ] {
        responses.push_str(&server.get(token, path).text().unwrap());
    }
    assert!(responses.contains("V_SECRET") && responses.contains("Created environment variable"));
    assert!(
        !responses.contains(&plaintext),
        "a response carried the secret: {responses}"
    );

    let url = ubiops_embedded_postgres::running_cluster_url(&dir.path().join("postgres"), "ubiops")
        .unwrap();
    let dump = Command::new(pg_dump())
        .arg("--dbname")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("D_SECRET"),
        "the dump holds the variables table"
    );
    assert!(
        !dump.contains(&plaintext),
        "the secret is in the database dump in plain text"
    );
    assert!(
        !dump.contains(token),
        "the API token is in the database dump in plain text"
    );

    let key_file = dir.path().join("secret.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (status, log) = server.terminate();
    assert!(status.success());
    assert!(
        log.contains("V_SECRET") || log.contains("environment-variables"),
        "the log has the requests"
    );
    assert!(!log.contains(&plaintext), "the secret reached the log");
    assert!(!log.contains(token), "the token reached the log");
}

#[test]
fn a_standalone_worker_builds_what_the_api_server_queued() {
    let dir = data_dir();
    let token = "worker-test-token-0123456789";
    let server = Server::start(
        dir.path(),
        &[
            ("UBIOPS_BOOTSTRAP_TOKEN", token),
            ("UBIOPS_BUILD_WORKERS", "0"),
        ],
    );
    server.create_version_v1(token);
    let zip = crate::builds::deployment_zip();
    let form = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(zip).file_name("d.zip"),
    );
    let uploaded: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!(
            "{}/v2.1/projects/p/deployments/d/versions/v1/revisions",
            server.base
        ))
        .header("Authorization", format!("Token {token}"))
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let build_path = format!(
        "/projects/p/deployments/d/versions/v1/builds/{}",
        uploaded["build"].as_str().unwrap()
    );
    let status = |server: &Server| -> String {
        let build: serde_json::Value = server.get(token, &build_path).json().unwrap();
        build["status"].as_str().unwrap().to_owned()
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(status(&server), "queued", "the API server runs no builds");

    let worker_log = dir.path().join("worker.log");
    let mut worker = command(dir.path())
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&worker_log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&server) != "success" {
        assert!(
            Instant::now() < deadline,
            "the worker did not build it; log:\n{}",
            std::fs::read_to_string(&worker_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) on our own child process.
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    assert!(worker.wait().unwrap().success());
    assert!(
        postmaster_running(dir.path()),
        "the worker left the server's database running"
    );
    let (status, _) = server.terminate();
    assert!(status.success());
}

#[test]
fn shutdown_lets_an_in_flight_upload_finish() {
    use std::io::{Read as _, Write as _};
    let dir = data_dir();
    let token = "shutdown-test-token-0123456789";
    let server = Server::start(dir.path(), &[("UBIOPS_BOOTSTRAP_TOKEN", token)]);
    server.create_version_v1(token);
    let boundary = "SHUTDOWNBOUNDARY";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.zip\"\r\nContent-Type: application/zip\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&crate::builds::deployment_zip());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "POST /v2.1/projects/p/deployments/d/versions/v1/revisions HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Token {token}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // SAFETY: kill(2) on our own child process.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(rest).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "the upload in flight was cut off: {response}"
    );
    assert!(response.contains("\"success\":true"), "{response}");

    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert!(!postmaster_running(dir.path()));
}
