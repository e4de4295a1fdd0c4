//! Requests whose clients go away mid-way. A client disconnecting must not
//! cut a request's database work short at an arbitrary point: sqlx cannot
//! undo a `BEGIN` cancelled after it was sent, which left a pooled
//! connection inside a transaction that later requests wrote into without
//! ever committing (a 201 for a row no one else could see).

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use ubiops_test_support::TestApp;

const PROJECT: &str = "abandoned";
const DEPLOYMENTS: usize = 4;

/// Connections of this test's database that sit inside a transaction.
async fn idle_in_transaction(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    )
    .fetch_one(app.store.pool())
    .await
    .expect("read pg_stat_activity")
}

#[tokio::test]
async fn abandoned_requests_leave_no_transaction_open() {
    let app = TestApp::spawn().await;
    app.create_project(PROJECT).await;
    for d in 0..DEPLOYMENTS {
        app.create_deployment(PROJECT, &format!("d{d}"), &["v1"])
            .await;
    }
    let base = format!("/projects/{PROJECT}/deployments");

    // Transactions (version updates, and lists of changed rows, which read
    // them in one snapshot), each abandoned by its client after a delay
    // spread over the request's whole run.
    for round in 0..8u64 {
        let abandoned = (0..60u64).map(|i| {
            let (app, base) = (&app, &base);
            async move {
                let delay = Duration::from_micros((i * 97 + round * 31) % 4000);
                let deployment = format!("{base}/d{}", i as usize % DEPLOYMENTS);
                let request = async {
                    match i % 3 {
                        0 => {
                            app.patch(
                                &format!("{deployment}/versions/v1"),
                                json!({"description": format!("r{round} i{i}")}),
                            )
                            .await
                        }
                        1 => {
                            app.patch(
                                &deployment,
                                json!({"description": format!("r{round} i{i}")}),
                            )
                            .await
                        }
                        _ => app.get(base).await,
                    }
                };
                let _ = tokio::time::timeout(delay, request).await;
            }
        });
        join_all(abandoned).await;
    }

    // What was in flight finishes on its own; then no connection may be
    // left inside a transaction.
    let mut open = idle_in_transaction(&app).await;
    for _ in 0..50 {
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        open = idle_in_transaction(&app).await;
    }
    assert_eq!(open, 0, "connections left inside a transaction");

    // And every acknowledged write is committed: visible to another connection.
    for n in 0..20 {
        let name = format!("after-{n}");
        let created = app
            .post(
                &base,
                json!({"name": name, "input_type": "plain", "output_type": "plain"}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let committed: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments WHERE name = $1")
            .bind(&name)
            .fetch_one(app.store.pool())
            .await
            .expect("count");
        assert_eq!(
            committed, 1,
            "deployment {name} acknowledged but not committed"
        );
    }
}

/// An upload whose client stops sending half-way and hangs up still ends
/// as a failed upload that stores nothing, now that no disconnect cancels it.
#[tokio::test]
async fn an_upload_abandoned_half_way_stores_nothing() {
    use tokio::io::AsyncWriteExt;

    let app = TestApp::spawn().await;
    app.create_project(PROJECT).await;
    app.create_deployment(PROJECT, "d0", &["v1"]).await;
    let before = app.snapshot().await;

    let boundary = "XBOUNDARYX";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.zip\"\r\n\
         Content-Type: application/zip\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&crate::builds::deployment_zip());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /v2.1/projects/{PROJECT}/deployments/d0/versions/v1/revisions HTTP/1.1\r\n\
         Host: {}\r\nAuthorization: Token {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        app.address,
        app.admin_token,
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(app.address)
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream
        .write_all(&body[..body.len() / 2])
        .await
        .expect("send half");
    stream.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);

    let mut after = app.snapshot().await;
    for _ in 0..50 {
        if after == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = app.snapshot().await;
    }
    assert_eq!(
        after, before,
        "no revision, build, pending upload or object left"
    );
}
