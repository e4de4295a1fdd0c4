//! The request connection pool (`ubiops_storage::connections`), which skips
//! sqlx's ping on every checkout and return: what those pings protected
//! against must still hold.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};
use ubiops_storage::connections::Connections;
use ubiops_storage::{StorageError, Store};
use ubiops_test_support::fresh_database;

/// A request dropped in the middle of a transaction (its client went away)
/// must not leave row locks behind in an idle pooled connection: the
/// transaction's ROLLBACK goes out at once, not when the connection is next
/// used.
#[tokio::test]
async fn a_dropped_transaction_releases_its_locks_at_once() {
    let database = fresh_database().await;
    let mut other = PgConnection::connect(&database.url).await.unwrap();
    other
        .execute(
            "CREATE TABLE counter (id int PRIMARY KEY, n int); INSERT INTO counter VALUES (1, 0)",
        )
        .await
        .unwrap();
    let options = PgConnectOptions::from_str(&database.url).unwrap();
    let connections = Connections::connect(options, 2).await.unwrap();

    {
        let mut lease = connections.get().await.unwrap();
        let mut transaction = lease.begin().await.unwrap();
        transaction
            .execute("UPDATE counter SET n = n + 1 WHERE id = 1")
            .await
            .unwrap();
        // Dropped here, neither committed nor rolled back, like a cancelled request.
    }

    other.execute("SET lock_timeout = '5s'").await.unwrap();
    let updated = other
        .execute("UPDATE counter SET n = n + 10 WHERE id = 1")
        .await
        .expect(
            "the dropped transaction's row lock is released without the connection being reused",
        );
    assert_eq!(updated.rows_affected(), 1);
    let n: i32 = sqlx::query_scalar("SELECT n FROM counter WHERE id = 1")
        .fetch_one(&mut other)
        .await
        .unwrap();
    assert_eq!(n, 10, "the dropped transaction's change was rolled back");

    // The connection went back to the pool in a usable state.
    let mut lease = connections.get().await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *lease)
        .await
        .unwrap();
    assert_eq!(one, 1);
}

/// Connections that PostgreSQL closed while they sat in the pool (a restart, an
/// administrator, a proxy timeout) are replaced: at most the first request to
/// meet one fails, with a 503-class error, and the pool recovers by itself.
#[tokio::test]
async fn connections_closed_by_postgres_are_replaced() {
    let database = fresh_database().await;
    let options = PgConnectOptions::from_str(&database.url).unwrap();
    let store = Store::connect(options, 4).await.unwrap();
    store.create_project("before", "org").await.unwrap();

    let mut admin = PgConnection::connect(&database.url).await.unwrap();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!terminated.is_empty() && terminated.iter().all(|done| *done));
    // Give the backends time to go (their FATAL message is then waiting in
    // the pooled connections' sockets).
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut failures = 0;
    for attempt in 0..5 {
        match store.get_project("before").await {
            Ok(project) => assert_eq!(project.name, "before"),
            Err(StorageError::Unavailable(_)) if attempt == 0 => failures += 1,
            Err(error) => panic!("attempt {attempt} failed: {error}"),
        }
    }
    assert!(failures <= 1);
    store.create_project("after", "org").await.unwrap();
    assert_eq!(store.list_projects(None).await.unwrap().len(), 2);
}

/// Every request connection runs its statements with generic plans
/// (why: BENCHMARKS.md, design decisions).
#[tokio::test]
async fn request_connections_use_generic_plans() {
    let database = fresh_database().await;
    let options = PgConnectOptions::from_str(&database.url).unwrap();
    let connections = Connections::connect(options, 2).await.unwrap();
    let (mut first, mut second) = (
        connections.get().await.unwrap(),
        connections.get().await.unwrap(),
    );
    for lease in [&mut first, &mut second] {
        let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
            .fetch_one(&mut **lease)
            .await
            .unwrap();
        assert_eq!(mode, "force_generic_plan");
    }
}
