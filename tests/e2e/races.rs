//! Races: many clients doing the same thing at once. Exactly one create of a
//! name wins and the rest get a 400 that says why; concurrent default-version
//! changes and cancels end in one consistent state. No request may deadlock
//! (every round has a deadline) or fail with a 5xx, and the database must
//! hold exactly what the responses promised.

use std::future::Future;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ubiops_test_support::{Response, TestApp};

use crate::builds::{deployment_zip, upload, upload_and_build};

const CLIENTS: usize = 50;

/// Runs `CLIENTS` requests at once; none may take a minute (a deadlock) or
/// end in a server error.
async fn all_at_once<F, Fut>(request: F) -> Vec<Response>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Response>,
{
    let responses = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::join_all((0..CLIENTS).map(request)),
    )
    .await
    .expect("the concurrent requests finished (no deadlock)");
    for response in &responses {
        assert!(
            !response.status.is_server_error(),
            "{} {}",
            response.status,
            response.body
        );
    }
    responses
}

/// Exactly one success with `won`, every other response a 400 whose error
/// contains `lost`.
fn exactly_one_wins(responses: &[Response], won: StatusCode, lost: &str) {
    let winners = responses.iter().filter(|r| r.status == won).count();
    assert_eq!(winners, 1, "{responses:?}");
    for response in responses.iter().filter(|r| r.status != won) {
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{}",
            response.body
        );
        assert!(response.error().contains(lost), "{}", response.error());
    }
}

async fn count(app: &TestApp, sql: &str, name: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(name)
        .fetch_one(app.store.pool())
        .await
        .expect("count rows")
}

async fn audit_events_mentioning(app: &TestApp, text: &str) -> i64 {
    count(
        app,
        "SELECT count(*) FROM audit_events WHERE event LIKE '%' || $1 || '%'",
        text,
    )
    .await
}

#[tokio::test]
async fn parallel_creates_of_one_deployment_name_make_one_deployment() {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    let responses = all_at_once(|_| {
        app.post(
            "/projects/p/deployments",
            json!({"name": "contested", "input_type": "plain", "output_type": "plain"}),
        )
    })
    .await;
    exactly_one_wins(&responses, StatusCode::CREATED, "already exists");
    let rows = "SELECT count(*) FROM deployments WHERE name = $1";
    assert_eq!(count(&app, rows, "contested").await, 1);
    let created = "SELECT count(*) FROM audit_events WHERE action = 'create' AND object_name = $1";
    assert_eq!(count(&app, created, "contested").await, 1);
}

#[tokio::test]
async fn parallel_creates_of_one_version_name_make_one_version() {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &[]).await;
    let responses = all_at_once(|_| {
        app.post(
            "/projects/p/deployments/d/versions",
            json!({"version": "contested"}),
        )
    })
    .await;
    exactly_one_wins(&responses, StatusCode::CREATED, "already exists");
    let rows = "SELECT count(*) FROM versions WHERE name = $1";
    assert_eq!(count(&app, rows, "contested").await, 1);
    // The first version becomes the default, once.
    let deployment = app.get("/projects/p/deployments/d").await.body;
    assert_eq!(deployment["default_version"], "contested");
}

#[tokio::test]
async fn parallel_creates_of_one_variable_name_make_one_variable() {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1"]).await;
    for scope in [
        "/projects/p/environment-variables",
        "/projects/p/deployments/d/environment-variables",
        "/projects/p/deployments/d/versions/v1/environment-variables",
    ] {
        let responses = all_at_once(|i| {
            app.post(
                scope,
                json!({"name": "CONTESTED", "value": format!("value {i}"), "secret": i % 2 == 0}),
            )
        })
        .await;
        exactly_one_wins(&responses, StatusCode::CREATED, "already exists");
        let listed = app.get(scope).await.body;
        let contested: Vec<&Value> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["name"] == "CONTESTED" && v["inheritance_type"].is_null())
            .collect();
        assert_eq!(contested.len(), 1, "{scope}: {listed}");
    }
    let rows = "SELECT count(*) FROM environment_variables WHERE name = $1";
    assert_eq!(count(&app, rows, "CONTESTED").await, 3);
}

#[tokio::test]
async fn concurrent_default_version_changes_leave_one_valid_default() {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    let versions = ["v1", "v2", "v3", "v4", "v5"];
    app.create_deployment("p", "d", &versions).await;
    // Only an available version (one with a built file) can be the default.
    for version in versions {
        let path = format!("/projects/p/deployments/d/versions/{version}");
        let (_, build) = upload_and_build(&app, &path, deployment_zip()).await;
        assert_eq!(build["status"], "success", "{build}");
    }
    let responses = all_at_once(|i| {
        app.patch(
            "/projects/p/deployments/d",
            json!({"default_version": versions[i % versions.len()]}),
        )
    })
    .await;
    for response in &responses {
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    }
    // The API and the database agree on one default, which is one of the versions.
    let default = app.get("/projects/p/deployments/d").await.body["default_version"].clone();
    assert!(versions.iter().any(|v| default == *v), "{default}");
    let stored: String = sqlx::query_scalar(
        "SELECT v.name FROM deployments d JOIN versions v ON v.id = d.default_version_id
         WHERE d.name = 'd'",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(default, stored.as_str());
}

#[tokio::test]
async fn concurrent_cancels_of_one_build_cancel_it_once() {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1"]).await;
    let version = "/projects/p/deployments/d/versions/v1";
    let uploaded = upload(&app, version, deployment_zip(), "d.zip").await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    let build = uploaded.body["build"].as_str().unwrap().to_owned();
    let path = format!("{version}/builds/{build}");
    let responses =
        all_at_once(|_| app.call(Method::PATCH, &path, Some(json!({"status": "cancelled"})))).await;
    exactly_one_wins(&responses, StatusCode::OK, "already finished");
    assert_eq!(app.get(&path).await.body["status"], "cancelled");
    assert_eq!(
        audit_events_mentioning(&app, &format!("Cancelled build {build}")).await,
        1
    );
    assert_eq!(app.get(version).await.body["status"], "unavailable");
}
