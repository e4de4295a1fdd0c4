use std::fs;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::{Uid, User};
use sqlx::{Connection, PgConnection};

use crate::socket::socket_dir_for;
use crate::{make_traversable, running_cluster_url, ClusterConfig, EmbeddedPostgres, Error};

/// A temporary directory the unprivileged PostgreSQL user can enter.
fn traversable_tempdir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    make_traversable(tmp.path()).unwrap();
    tmp
}

fn test_config(dir: &Path) -> ClusterConfig {
    ClusterConfig {
        durable: false,
        ..ClusterConfig::new(dir, "ubiops")
    }
}

/// Exited, or a zombie nobody reaps (PID 1 in a container may not).
fn gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => true,
    }
}

async fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !gone(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

async fn query_text(url: &str, sql: &str) -> String {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let value: String = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    value
}

#[tokio::test]
async fn start_query_stop_and_restart_keeps_data() {
    let tmp = traversable_tempdir();
    let dir = tmp.path().join("postgres");

    let pg = EmbeddedPostgres::start(test_config(&dir)).await.unwrap();
    let url = pg.database_url();
    assert!(
        url.starts_with("postgres://ubiops@localhost/ubiops?host=/"),
        "{url}"
    );
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    sqlx::query("CREATE TABLE kept (v text)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO kept VALUES ('hello')")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert_eq!(
        query_text(&url, "SELECT current_database()::text").await,
        "ubiops"
    );
    assert_eq!(
        query_text(
            &pg.url_for_database("postgres"),
            "SELECT current_database()::text"
        )
        .await,
        "postgres"
    );

    // Another process (here: the same one) can find and share the cluster.
    let shared = running_cluster_url(&dir, "ubiops").expect("cluster should be found running");
    assert_eq!(shared, url);
    assert_eq!(query_text(&shared, "SELECT v FROM kept").await, "hello");

    if Uid::effective().is_root() {
        // Runs as the postgres user, without root's supplementary groups.
        let expected = User::from_name("postgres")
            .unwrap()
            .or(User::from_name("nobody").unwrap())
            .unwrap();
        let status = fs::read_to_string(format!("/proc/{}/status", pg.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            field("Uid:").split_whitespace().nth(1),
            Some(expected.uid.to_string().as_str())
        );
        assert_eq!(field("Groups:").trim(), "Groups:");
    }

    let pid = pg.pid();
    pg.stop().await.unwrap();
    assert!(gone(pid), "postmaster {pid} still running after stop");
    assert_eq!(running_cluster_url(&dir, "ubiops"), None);

    let pg = EmbeddedPostgres::start(test_config(&dir)).await.unwrap();
    assert_eq!(
        query_text(&pg.database_url(), "SELECT v FROM kept").await,
        "hello"
    );
    pg.stop().await.unwrap();

    let mode = |p: PathBuf| fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(dir.clone()), 0o700);
    assert_eq!(mode(dir.join("postgres.log")), 0o600);
    let log = fs::read_to_string(dir.join("postgres.log")).unwrap();
    assert_eq!(
        log.matches("/initdb ===").count(),
        1,
        "initdb should run only once:\n{log}"
    );
    assert_eq!(log.matches("ubiops-embedded-postgres: starting").count(), 2);
}

#[tokio::test]
async fn second_start_on_a_running_cluster_is_refused() {
    let tmp = traversable_tempdir();
    let dir = tmp.path().join("postgres");
    let pg = EmbeddedPostgres::start(test_config(&dir)).await.unwrap();

    let err = EmbeddedPostgres::start(test_config(&dir))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InUse { pid, .. } if pid as u32 == pg.pid()),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("is already in use by process {}", pg.pid())),
        "{err}"
    );
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn stale_lock_files_do_not_block_a_start() {
    let tmp = traversable_tempdir();
    let dir = tmp.path().join("pg");
    EmbeddedPostgres::start(test_config(&dir))
        .await
        .unwrap()
        .stop()
        .await
        .unwrap();
    let pid_file = dir.join("data").join("postmaster.pid");

    // A crash left the pid of a process that is gone: postgres copes.
    let mut dead = Command::new("true").spawn().unwrap();
    dead.wait().unwrap();
    fs::write(
        &pid_file,
        format!("{}\n{}\n", dead.id(), dir.join("data").display()),
    )
    .unwrap();
    EmbeddedPostgres::start(test_config(&dir))
        .await
        .unwrap()
        .stop()
        .await
        .unwrap();

    // After a container restart the pid may belong to an unrelated process,
    // which postgres alone would take for a running postmaster.
    let mut unrelated = KillOnDrop(Command::new("sleep").arg("60").spawn().unwrap());
    fs::write(
        &pid_file,
        format!("{}\n{}\n", unrelated.0.id(), dir.join("data").display()),
    )
    .unwrap();
    EmbeddedPostgres::start(test_config(&dir))
        .await
        .unwrap()
        .stop()
        .await
        .unwrap();
    let _ = unrelated.0.kill();
}

#[tokio::test]
async fn drop_stops_the_server() {
    let tmp = traversable_tempdir();
    let pg = EmbeddedPostgres::start(test_config(&tmp.path().join("pg")))
        .await
        .unwrap();
    let pid = pg.pid();
    drop(pg);
    assert!(gone(pid));
}

#[tokio::test]
async fn blocked_ancestor_is_reported() {
    if !Uid::effective().is_root() {
        return; // Only root hands the cluster to another user.
    }
    let tmp = traversable_tempdir();
    let blocked = tmp.path().join("private");
    fs::DirBuilder::new().mode(0o700).create(&blocked).unwrap();

    let err = EmbeddedPostgres::start(test_config(&blocked.join("cluster").join("postgres")))
        .await
        .unwrap_err();
    let blocked = fs::canonicalize(&blocked).unwrap();
    assert!(
        matches!(&err, Error::Unreachable { blocker, .. } if *blocker == blocked),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("cannot enter {}", blocked.display())),
        "{message}"
    );
    assert!(message.contains("DATABASE_URL"), "{message}");
}

#[tokio::test]
async fn long_cluster_path_uses_a_socket_dir_in_tmp() {
    let tmp = traversable_tempdir();
    let dir = tmp.path().join("a".repeat(60)).join("b".repeat(60));
    let pg = EmbeddedPostgres::start(test_config(&dir)).await.unwrap();
    let url = pg.database_url();
    assert!(url.contains("host=/tmp/ubiops-pg-"), "{url}");
    assert_eq!(query_text(&url, "SELECT 'ok'::text").await, "ok");
    assert_eq!(running_cluster_url(&dir, "ubiops"), Some(url));
    let socket_dir = socket_dir_for(pg.dir());
    pg.stop().await.unwrap();
    fs::remove_dir_all(socket_dir).unwrap();
}

#[tokio::test]
async fn early_exit_reports_the_log() {
    let tmp = traversable_tempdir();
    let mut config = test_config(&tmp.path().join("pg"));
    config
        .extra_settings
        .push(("no_such_setting".into(), "1".into()));
    let err = EmbeddedPostgres::start(config).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Startup { .. }), "{message}");
    assert!(message.contains("exited during startup"), "{message}");
    assert!(message.contains("no_such_setting"), "{message}");
}

/// Not a test by itself: the body of the child process that
/// `killed_parent_takes_postgres_down` starts and then SIGKILLs.
#[tokio::test]
async fn orphan_helper() {
    let Some(dir) = std::env::var_os("UBIOPS_PG_ORPHAN_TEST_DIR") else {
        return;
    };
    let pg = EmbeddedPostgres::start(test_config(Path::new(&dir)))
        .await
        .unwrap();
    println!("POSTMASTER={}", pg.pid());
    io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

/// Kills the helper process even when the test fails half-way.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn killed_parent_takes_postgres_down() {
    let tmp = traversable_tempdir();
    let mut helper = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::orphan_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("UBIOPS_PG_ORPHAN_TEST_DIR", tmp.path().join("pg"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = io::BufReader::new(helper.0.stdout.take().unwrap());
    let pid: u32 = stdout
        .lines()
        .map_while(Result::ok)
        // libtest prints the test's name on the same line.
        .find_map(|line| {
            line.split("POSTMASTER=")
                .nth(1)
                .map(|p| p.trim().parse().unwrap())
        })
        .expect("helper did not report a postmaster");
    assert!(!gone(pid));

    drop(helper); // SIGKILL: no destructors run in the helper
    assert!(
        wait_gone(pid, Duration::from_secs(15)).await,
        "postmaster {pid} outlived its parent"
    );
}
