use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use tokio::sync::watch;
use ubiops_api::{DEFAULT_TOKEN_CACHE_TTL, DEFAULT_UPLOAD_LEASE};
use ubiops_domain::instance_types::InstanceTypeCatalog;
use ubiops_domain::secrets::Keyring;
use ubiops_domain::token::{generate_token, hash_token};
use ubiops_files::FileStore;
use ubiops_runtime::{QueueSettings, Serving};
use ubiops_server::config::ApiConfig;
use ubiops_server::startup::Application;
use ubiops_storage::Store;

use crate::postgres::{fresh_database, TestDatabase};
use crate::worker::{sandbox_root, shared_build_tools};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ORGANIZATION: &str = "test-organization";

/// How a test app is set up; `TestApp::spawn` uses the defaults.
pub struct TestOptions {
    /// Object storage; `None`: a fresh local directory.
    pub files: Option<FileStore>,
    pub max_upload_bytes: u64,
    /// How long a verified token is trusted without asking the database.
    pub token_cache_ttl: Duration,
    /// The batch queue's: by default a short lease and poll, so that tests
    /// of lost servers and instances run quickly.
    pub queue: QueueSettings,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            files: None,
            max_upload_bytes: 64 * 1024 * 1024,
            token_cache_ttl: DEFAULT_TOKEN_CACHE_TTL,
            queue: QueueSettings {
                lease: Duration::from_secs(2),
                max_retries: 2,
                poll_interval: Duration::from_millis(500),
            },
        }
    }
}

/// The real router on a random loopback port, over its own fresh database.
pub struct TestApp {
    pub address: SocketAddr,
    pub store: Store,
    pub files: FileStore,
    /// The local store's root (unless `TestOptions::files` chose another
    /// store), and where workers build.
    pub files_dir: tempfile::TempDir,
    /// An all-projects token for `ADMIN_EMAIL`.
    pub admin_token: String,
    client: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    pub database: TestDatabase,
    /// The app's instances; they stop when the app is dropped.
    pub serving: Arc<Serving>,
    _stop_serving: watch::Sender<bool>,
}

/// How long an instance of a test may take to start.
const INSTANCE_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Status and parsed JSON body (`Value::Null` for an empty body).
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub body: Value,
}

impl Response {
    /// The `error` message of an error body; panics if the body is not one.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_else(|| {
            panic!(
                "expected an {{\"error\"}} body, got {} {}",
                self.status, self.body
            )
        })
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestOptions::default()).await
    }

    pub async fn spawn_with(options: TestOptions) -> Self {
        // Server and worker logs go to the test's captured output, shown when
        // it fails (RUST_LOG sets the level; warnings by default).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let files_dir = tempfile::tempdir().expect("temp dir for files");
        let files = match options.files {
            Some(files) => files,
            None => {
                FileStore::open(&url::Url::from_directory_path(files_dir.path()).expect("dir URL"))
                    .expect("local file store")
            }
        };
        let database = fresh_database().await;
        let connect_options = PgConnectOptions::from_str(&database.url).expect("test database URL");
        let store = Store::connect(connect_options, 16)
            .await
            .expect("connect to the test database");
        let admin_token = generate_token();
        store
            .insert_token(&hash_token(&admin_token), ADMIN_EMAIL, None)
            .await
            .expect("create the admin token");
        let config = ApiConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            organization_name: ORGANIZATION.to_owned(),
            instance_types: InstanceTypeCatalog::default(),
            max_upload_bytes: options.max_upload_bytes,
            upload_lease: DEFAULT_UPLOAD_LEASE,
            token_cache_ttl: options.token_cache_ttl,
        };
        let keyring = Arc::new(Keyring::from_hex(&Keyring::generate_key_hex(), &[]).expect("key"));
        sandbox_root(files_dir.path());
        let serving = Arc::new(
            ubiops_server::instances::serving(
                files_dir.path(),
                INSTANCE_START_TIMEOUT,
                options.queue,
                store.clone(),
                files.clone(),
                keyring.clone(),
                shared_build_tools(),
            )
            .expect("serving"),
        );
        let (stop_serving, serving_stopped) = watch::channel(false);
        tokio::spawn(serving.clone().maintain(serving_stopped));
        let application = Application::build(
            &config,
            store.clone(),
            files.clone(),
            keyring,
            serving.clone(),
        )
        .await
        .expect("build the app");
        let address = application.address();
        let server = tokio::spawn(async move {
            application
                .run_until_stopped(std::future::pending())
                .await
                .expect("serve");
        });
        TestApp {
            address,
            store,
            files,
            files_dir,
            admin_token,
            client: reqwest::Client::new(),
            server,
            database,
            serving,
            _stop_serving: stop_serving,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// A new token for `email`, limited to `projects` when given.
    pub async fn token(&self, email: &str, projects: Option<&[&str]>) -> String {
        let token = generate_token();
        let scope: Option<Vec<String>> =
            projects.map(|p| p.iter().map(|s| s.to_string()).collect());
        self.store
            .insert_token(&hash_token(&token), email, scope.as_deref())
            .await
            .expect("create token");
        token
    }

    /// Revokes a token made by [`TestApp::token`].
    pub async fn revoke(&self, token: &str) {
        let record = self
            .store
            .find_token(&hash_token(token))
            .await
            .expect("look up token")
            .expect("the token exists");
        self.store
            .revoke_token(record.id)
            .await
            .expect("revoke token");
    }

    /// A request under `/v2.1` with the admin token and, like the official
    /// clients, `Content-Type: application/json` on every request.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        self.call_as(&self.admin_token, method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = self
            .client
            .request(method, self.url(&format!("/v2.1{path}")))
            .header("Authorization", format!("Token {token}"))
            .header("Content-Type", "application/json");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        Self::read(request.send().await.expect("send request")).await
    }

    /// Sends a request built by the caller (for raw bodies and headers).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Response {
        Self::read(request.send().await.expect("send request")).await
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    async fn read(response: reqwest::Response) -> Response {
        let status = response.status();
        let text = response.text().await.expect("read body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("response ({status}) is not JSON: {text}"))
        };
        Response { status, body }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Response {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.call(Method::DELETE, path, None).await
    }

    pub async fn create_project(&self, name: &str) {
        let response = self
            .post("/projects", serde_json::json!({ "name": name }))
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
    }

    /// A plain-in, plain-out deployment in an existing project, with these
    /// versions (all with default settings).
    pub async fn create_deployment(&self, project: &str, name: &str, versions: &[&str]) {
        let response = self
            .post(
                &format!("/projects/{project}/deployments"),
                serde_json::json!({"name": name, "input_type": "plain", "output_type": "plain"}),
            )
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
        for version in versions {
            let response = self
                .post(
                    &format!("/projects/{project}/deployments/{name}/versions"),
                    serde_json::json!({ "version": version }),
                )
                .await;
            assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
        }
    }

    /// Every row of every table, and every stored object (key, size and
    /// content hash, under `"objects"`), to prove that a refused request
    /// changed nothing in the database or the object store.
    pub async fn snapshot(&self) -> Value {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations' ORDER BY 1",
        )
        .fetch_all(self.store.pool())
        .await
        .expect("list tables");
        let mut snapshot = serde_json::Map::new();
        for table in tables {
            let rows: Value = sqlx::query_scalar(&format!(
                r#"SELECT coalesce(json_agg(t ORDER BY t::text), '[]'::json) FROM "{table}" t"#
            ))
            .fetch_one(self.store.pool())
            .await
            .expect("read table");
            snapshot.insert(table, rows);
        }
        snapshot.insert("objects".to_owned(), self.stored_objects().await);
        Value::Object(snapshot)
    }

    /// Every object in the file store: `{key: "<size> <sha256>"}`.
    async fn stored_objects(&self) -> Value {
        let mut objects = serde_json::Map::new();
        for key in self.files.list_keys("").await.expect("list stored objects") {
            let (size, stream) = self.files.read(&key).await.expect("read stored object");
            let chunks: Vec<_> = stream.try_collect().await.expect("read stored object");
            let mut hash = Sha256::new();
            chunks.iter().for_each(|chunk| hash.update(chunk));
            let digest = hex::encode(hash.finalize());
            objects.insert(key, Value::String(format!("{size} {digest}")));
        }
        Value::Object(objects)
    }

    /// Sends `head` (request line and headers, without the blank line that
    /// ends them) and `body` byte for byte over a fresh connection, for what
    /// an HTTP client would refuse or normalise: `..` path segments, `%2F`,
    /// invalid UTF-8, hand-made chunked bodies. The server closes the
    /// connection after its answer (`Connection: close`). The write side
    /// stays open: the server drops a connection half-closed mid-request.
    pub async fn send_raw(&self, head: &[u8], body: &[u8]) -> Response {
        self.try_send_raw(head, body)
            .await
            .unwrap_or_else(|problem| panic!("{problem}"))
    }

    /// [`send_raw`](Self::send_raw), with a response that is not a JSON
    /// HTTP response (or none at all) as an error.
    pub async fn try_send_raw(&self, head: &[u8], body: &[u8]) -> Result<Response, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.address)
            .await
            .expect("connect");
        let mut request = head.to_vec();
        request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        request.extend_from_slice(body);
        stream.write_all(&request).await.expect("send request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read response");
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("not an HTTP response: {text:?}"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body)
                .map_err(|_| format!("response ({status}) is not JSON: {body}"))?
        };
        Ok(Response { status, body })
    }
}
