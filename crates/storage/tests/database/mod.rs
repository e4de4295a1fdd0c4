//! A database of its own for each test, cloned from a migrated template:
//! on the PostgreSQL of `DATABASE_URL` when set, else on a throwaway
//! embedded cluster that the test process starts (as `tests/support` does
//! for the end-to-end tests, which this crate cannot depend on: they build
//! the whole server).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};
use ubiops_embedded_postgres::{make_traversable, ClusterConfig, EmbeddedPostgres};
use ubiops_storage::{Store, MIGRATOR};
use uuid::Uuid;

struct SharedServer {
    admin_url: String,
    template: String,
    _cluster: Option<EmbeddedPostgres>,
}

static SERVER: OnceLock<SharedServer> = OnceLock::new();

/// A test's store on a database of its own, dropped with this.
pub struct TestStore {
    pub store: Store,
    name: String,
    admin_url: String,
}

impl std::ops::Deref for TestStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin_url).await.ok()?;
                conn.execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
                    .await
                    .ok()
            })
        })
        .join();
    }
}

impl TestStore {
    /// Another store on this test's database, as a restarted server opens.
    #[allow(dead_code)] // The queue tests do not reopen.
    pub async fn reopen(&self) -> Store {
        Store::connect(options(&self.admin_url, &self.name), 4)
            .await
            .expect("connect the store again")
    }
}

/// A store on a new database with every migration applied.
pub async fn fresh_store() -> TestStore {
    let server = SERVER.get_or_init(|| {
        // On a thread with its own runtime: the server must outlive the
        // runtime of the test that happens to start it.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(start_shared_server())
        })
        .join()
        .expect("start the test PostgreSQL")
    });
    let name = format!("test_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&server.admin_url)
        .await
        .expect("connect to the test PostgreSQL");
    conn.execute(format!(r#"CREATE DATABASE "{name}" TEMPLATE "{}""#, server.template).as_str())
        .await
        .expect("create a test database from the template");
    let store = Store::connect(options(&server.admin_url, &name), 4)
        .await
        .expect("connect the store");
    TestStore {
        store,
        name,
        admin_url: server.admin_url.clone(),
    }
}

fn options(admin_url: &str, database: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(admin_url)
        .expect("valid admin URL")
        .database(database)
}

async fn start_shared_server() -> SharedServer {
    let (admin_url, cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let cluster = EmbeddedPostgres::start(ClusterConfig {
                dir: cluster_dir(),
                database: "postgres".into(),
                durable: false,
                extra_settings: vec![("max_connections".into(), "200".into())],
            })
            .await
            .expect("start the embedded PostgreSQL for tests");
            (cluster.url_for_database("postgres"), Some(cluster))
        }
    };
    let template = format!("ubiops_storage_template_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("connect to PostgreSQL");
    admin
        .execute(format!(r#"CREATE DATABASE "{template}""#).as_str())
        .await
        .expect("create the template database");
    let mut conn = options(&admin_url, &template)
        .connect()
        .await
        .expect("connect to the template database");
    MIGRATOR
        .run(&mut conn)
        .await
        .expect("migrate the template database");
    conn.close().await.expect("close the template connection");
    SharedServer {
        admin_url,
        template,
        _cluster: cluster,
    }
}

/// One cluster directory per test process; those of processes that have
/// exited are removed first.
fn cluster_dir() -> PathBuf {
    let root = std::env::temp_dir().join("ubiops-storage-test-postgres");
    std::fs::create_dir_all(&root).expect("create the test cluster root");
    make_traversable(&root).expect("let PostgreSQL's user enter the test cluster root");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
            if pid.is_some_and(|pid| !PathBuf::from(format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    root.join(std::process::id().to_string())
}
