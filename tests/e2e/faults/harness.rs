//! Real processes to break: a PostgreSQL cluster of the test's own (so that
//! restarting it disturbs no other test), `ubiops-server` and `ubiops-server
//! worker` processes on it, and the database read directly for the checks.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;
use tokio::process::{Child, Command};
use ubiops_embedded_postgres::{make_traversable, ClusterConfig, EmbeddedPostgres};
use ubiops_test_support::wait_for;

const BINARY: &str = env!("CARGO_BIN_EXE_ubiops-server");
pub const TOKEN: &str = "fault-test-admin-token-0123456789";

/// A durable PostgreSQL cluster that the test can stop and start again; its
/// URL (a private Unix socket) stays the same across restarts.
pub struct Cluster {
    config: ClusterConfig,
    running: Option<EmbeddedPostgres>,
    url: String,
}

impl Cluster {
    async fn start(dir: &Path) -> Cluster {
        let config = ClusterConfig::new(dir.join("postgres"), "ubiops");
        let running = EmbeddedPostgres::start(config.clone())
            .await
            .expect("start the test's PostgreSQL");
        Cluster {
            url: running.database_url(),
            config,
            running: Some(running),
        }
    }

    /// Fast shutdown: open transactions roll back, connections drop.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("stop PostgreSQL");
        }
    }

    pub async fn start_again(&mut self) {
        assert!(self.running.is_none());
        self.running = Some(
            EmbeddedPostgres::start(self.config.clone())
                .await
                .expect("restart PostgreSQL"),
        );
    }
}

/// One installation: a database, object storage, a data directory, and the
/// processes the test starts on them.
pub struct Rig {
    pub cluster: Cluster,
    /// Connections of the test itself, to check what is stored.
    pub db: PgPool,
    /// Where `file://` storage keeps its objects.
    pub objects: PathBuf,
    storage_url: String,
    /// Extra environment of every process (S3 settings, say).
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Rig {
    /// On local-disk storage.
    pub async fn new() -> Rig {
        let dir = tempfile::Builder::new()
            .prefix("ubiops-faults")
            .tempdir()
            .unwrap();
        make_traversable(dir.path()).unwrap();
        let objects = dir.path().join("objects");
        std::fs::create_dir_all(&objects).unwrap();
        let storage_url = url::Url::from_directory_path(&objects).unwrap().to_string();
        let cluster = Cluster::start(dir.path()).await;
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy(&cluster.url)
            .unwrap();
        Rig {
            cluster,
            db,
            objects,
            storage_url,
            env: Vec::new(),
            dir,
        }
    }

    /// On S3-protocol storage at `endpoint`.
    pub async fn on_s3(endpoint: &str, bucket: &str) -> Rig {
        let mut rig = Rig::new().await;
        rig.storage_url = format!("s3://{bucket}");
        for (name, value) in [
            ("AWS_ENDPOINT", endpoint),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_ALLOW_HTTP", "true"),
        ] {
            rig.env.push((name.into(), value.into()));
        }
        rig
    }

    fn command(&self, name: &str, env: &[(&str, &str)]) -> (Command, PathBuf) {
        let log = self.dir.path().join(format!("{name}.log"));
        let mut command = Command::new(BINARY);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("UBIOPS_DATA_DIR", self.dir.path())
            .env("DATABASE_URL", &self.cluster.url)
            .env("UBIOPS_STORAGE_URL", &self.storage_url)
            .env("UBIOPS_BOOTSTRAP_TOKEN", TOKEN)
            // One key for every process of the installation, as in production.
            .env("UBIOPS_SECRET_KEY", "42".repeat(32))
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .kill_on_drop(true);
        (command, log)
    }

    /// `ubiops-server` (serve), ready for requests. `name` names its log file;
    /// a restarted server keeps the same name, so the log tells its story.
    pub async fn server(&self, name: &str, env: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut all = vec![("UBIOPS_LISTEN", listen.as_str())];
        all.extend_from_slice(env);
        let (mut command, log) = self.command(name, &all);
        let server = Server {
            process: Process {
                child: command.spawn().expect("start ubiops-server"),
                log,
            },
            base: format!("http://{listen}"),
            client: reqwest::Client::new(),
        };
        server.wait_ready().await;
        server
    }

    /// `ubiops-server worker`.
    pub fn worker(&self, name: &str, env: &[(&str, &str)]) -> Process {
        let (mut command, log) = self.command(name, env);
        command.arg("worker");
        Process {
            child: command.spawn().expect("start ubiops-server worker"),
            log,
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every file under the local storage directory, including partial ones
    /// that object storage does not list.
    pub fn files_on_disk(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.objects, &mut found);
        found.sort();
        found
    }

    /// The build of the only revision, once it reached one of `statuses`.
    pub async fn wait_for_build_status(&self, statuses: &[&str], limit: Duration) -> BuildRow {
        wait_for(&format!("a build in {statuses:?}"), limit, || async {
            self.builds()
                .await
                .into_iter()
                .find(|b| statuses.contains(&b.status.as_str()))
        })
        .await
    }

    pub async fn builds(&self) -> Vec<BuildRow> {
        sqlx::query_as(
            "SELECT id::text, revision_id::text, status, attempts FROM builds ORDER BY creation_date",
        )
        .fetch_all(&self.db)
        .await
        .unwrap()
    }

    /// How many audit events say that this build finished.
    pub async fn finish_events(&self, build_id: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM audit_events
             WHERE event LIKE 'Build ' || $1 || ' %' AND (event LIKE '% succeeded' OR event LIKE '% failed: %')",
        )
        .bind(build_id)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BuildRow {
    pub id: String,
    pub revision_id: String,
    pub status: String,
    pub attempts: i32,
}

/// A child process that the test can SIGKILL; killed when dropped.
pub struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// SIGKILL, as a crash or an OOM kill would: no shutdown code runs.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        let status = self.child.wait().await.unwrap();
        assert!(!status.success(), "the process was killed");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id, as its children see it (`os.getppid()`).
    pub fn pid(&self) -> i32 {
        self.child.id().expect("the process is running") as i32
    }

    /// Sends `signal` (SIGSTOP to freeze it, SIGCONT to let it go on).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child, which has not been reaped.
        let sent = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(
            sent,
            0,
            "signal {signal}: {}",
            std::io::Error::last_os_error()
        );
    }
}

pub struct Server {
    pub process: Process,
    pub base: String,
    client: reqwest::Client,
}

impl Server {
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = self
                .client
                .get(format!("{}/status", self.base))
                .send()
                .await
            {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server did not become ready; log:\n{}",
                self.process.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/v2.1{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("Authorization", format!("Token {TOKEN}"))
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("send request")).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Project `p`, deployment `d`, and these versions.
    pub async fn create_versions(&self, versions: &[&str]) {
        let (status, body) = self
            .post("/projects", serde_json::json!({"name": "p"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = self
            .post(
                "/projects/p/deployments",
                serde_json::json!({"name": "d", "input_type": "plain", "output_type": "plain"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        for version in versions {
            let (status, body) = self
                .post(
                    "/projects/p/deployments/d/versions",
                    serde_json::json!({ "version": version }),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }

    /// Uploads `zip` as the file of version `version` of `p/d`.
    pub async fn upload(&self, version: &str, zip: Vec<u8>) -> (StatusCode, Value) {
        let part = reqwest::multipart::Part::bytes(zip)
            .file_name("deployment.zip")
            .mime_str("application/zip")
            .unwrap();
        let form = reqwest::multipart::Form::new().part("file", part);
        let path = format!("/projects/p/deployments/d/versions/{version}/revisions");
        read(
            self.request(Method::POST, &path)
                .multipart(form)
                .send()
                .await
                .expect("send upload"),
        )
        .await
    }
}

/// Status and JSON body; any body must be JSON.
pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("read body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("({status}) not JSON: {text}"))
    };
    (status, body)
}

/// A 503 with a `{"error"}` body.
pub fn assert_unavailable(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}
