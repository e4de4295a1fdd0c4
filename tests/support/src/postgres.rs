use std::path::PathBuf;
use std::str::FromStr;
use std::sync::OnceLock;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};
use ubiops_embedded_postgres::{make_traversable, ClusterConfig, EmbeddedPostgres};
use ubiops_storage::MIGRATOR;
use uuid::Uuid;

/// The PostgreSQL server all tests of this process share, and the name of the
/// migrated template database that each test clones.
struct SharedServer {
    admin_url: String,
    template: String,
    /// Kept alive for the whole process; the cluster stops with the process.
    _cluster: Option<EmbeddedPostgres>,
}

static SERVER: OnceLock<SharedServer> = OnceLock::new();

/// A database of its own for one test; dropped (best effort) when this is dropped.
pub struct TestDatabase {
    pub url: String,
    pub name: String,
    admin_url: String,
}

impl Drop for TestDatabase {
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

/// A new database with every migration applied.
pub async fn fresh_database() -> TestDatabase {
    let server = shared_server();
    let name = format!("test_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&server.admin_url)
        .await
        .expect("connect to the test PostgreSQL");
    conn.execute(format!(r#"CREATE DATABASE "{name}" TEMPLATE "{}""#, server.template).as_str())
        .await
        .expect("create a test database from the template");
    TestDatabase {
        url: database_url(&server.admin_url, &name),
        name,
        admin_url: server.admin_url.clone(),
    }
}

fn database_url(admin_url: &str, database: &str) -> String {
    PgConnectOptions::from_str(admin_url)
        .expect("valid admin URL")
        .database(database)
        .to_url_lossy()
        .to_string()
}

fn shared_server() -> &'static SharedServer {
    SERVER.get_or_init(|| {
        // Started on a thread with its own runtime: the caller's runtime belongs
        // to one test and ends with it, the server must outlive every test.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(start_shared_server())
        })
        .join()
        .expect("start the test PostgreSQL")
    })
}

async fn start_shared_server() -> SharedServer {
    #[cfg(feature = "testcontainers")]
    if std::env::var("UBIOPS_TEST_DOCKER").as_deref() == Ok("1") {
        return start_container().await;
    }
    let (admin_url, cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let cluster = EmbeddedPostgres::start(ClusterConfig {
                dir: cluster_dir(),
                database: "postgres".into(),
                // A test cluster is thrown away: durability would only slow it down.
                durable: false,
                extra_settings: vec![("max_connections".into(), "400".into())],
            })
            .await
            .expect("start the embedded PostgreSQL for tests");
            (cluster.url_for_database("postgres"), Some(cluster))
        }
    };
    let template = create_template(&admin_url).await;
    SharedServer {
        admin_url,
        template,
        _cluster: cluster,
    }
}

#[cfg(feature = "testcontainers")]
async fn start_container() -> SharedServer {
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    let container = testcontainers_modules::postgres::Postgres::default()
        .start()
        .await
        .expect("start a PostgreSQL container (is a Docker engine running?)");
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .expect("container port");
    let admin_url = format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres");
    let template = create_template(&admin_url).await;
    // The async container handle cannot outlive this runtime; keep it running
    // by leaking it for the life of the process (the engine removes it later).
    std::mem::forget(container);
    SharedServer {
        admin_url,
        template,
        _cluster: None,
    }
}

/// One cluster directory per test process under the system temp dir; those
/// left by earlier processes that have exited are removed first.
fn cluster_dir() -> PathBuf {
    let root = std::env::temp_dir().join("ubiops-test-postgres");
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

/// Migrates a template database once per process; each test clones it, which
/// is much faster than migrating a database per test.
async fn create_template(admin_url: &str) -> String {
    let template = format!("ubiops_template_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(admin_url)
        .await
        .expect("connect to PostgreSQL");
    admin
        .execute(format!(r#"CREATE DATABASE "{template}""#).as_str())
        .await
        .expect("create the template database");
    let mut conn = PgConnection::connect(&database_url(admin_url, &template))
        .await
        .expect("connect to the template database");
    MIGRATOR
        .run(&mut conn)
        .await
        .expect("migrate the template database");
    conn.close().await.expect("close the template connection");
    template
}
