use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use ubiops_test_support::{TestApp, TestOptions};

const PROJECT_ROUTES: &[(&str, &str)] = &[
    ("GET", "/projects/p"),
    ("DELETE", "/projects/p"),
    ("GET", "/projects/p/deployments"),
    ("POST", "/projects/p/deployments"),
    ("GET", "/projects/p/deployments/d"),
    ("PATCH", "/projects/p/deployments/d"),
    ("DELETE", "/projects/p/deployments/d"),
    ("GET", "/projects/p/deployments/d/audit"),
    ("GET", "/projects/p/deployments/d/versions"),
    ("POST", "/projects/p/deployments/d/versions"),
    ("GET", "/projects/p/deployments/d/versions/v1"),
    ("PATCH", "/projects/p/deployments/d/versions/v1"),
    ("DELETE", "/projects/p/deployments/d/versions/v1"),
    ("GET", "/projects/p/environment-variables"),
    ("POST", "/projects/p/environment-variables"),
    ("GET", "/projects/p/environment-variables/00000000-0000-0000-0000-000000000000"),
    ("PATCH", "/projects/p/environment-variables/00000000-0000-0000-0000-000000000000"),
    ("DELETE", "/projects/p/environment-variables/00000000-0000-0000-0000-000000000000"),
    ("GET", "/projects/p/deployments/d/environment-variables"),
    ("POST", "/projects/p/deployments/d/copy-environment-variables"),
    ("GET", "/projects/p/deployments/d/versions/v1/environment-variables"),
    ("POST", "/projects/p/deployments/d/versions/v1/copy-environment-variables"),
    ("GET", "/projects/p/deployments/d/versions/v1/revisions"),
    ("POST", "/projects/p/deployments/d/versions/v1/revisions"),
    ("GET", "/projects/p/deployments/d/versions/v1/revisions/00000000-0000-0000-0000-000000000000"),
    ("GET", "/projects/p/deployments/d/versions/v1/revisions/00000000-0000-0000-0000-000000000000/download"),
    ("POST", "/projects/p/deployments/d/versions/v1/revisions/00000000-0000-0000-0000-000000000000/rebuild"),
    ("GET", "/projects/p/deployments/d/versions/v1/builds"),
    ("GET", "/projects/p/deployments/d/versions/v1/builds/00000000-0000-0000-0000-000000000000"),
    ("PATCH", "/projects/p/deployments/d/versions/v1/builds/00000000-0000-0000-0000-000000000000"),
];

fn all_routes() -> Vec<(&'static str, &'static str)> {
    let mut routes = vec![("GET", "/projects"), ("POST", "/projects")];
    routes.extend_from_slice(PROJECT_ROUTES);
    routes
}

/// Project `p` with deployment `d` and version `v1`, so that the routes of
/// a limited token's test name things that exist.
async fn setup() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1"]).await;
    app
}

#[tokio::test]
async fn every_route_refuses_a_missing_malformed_or_wrong_token() {
    let app = setup().await;
    let before = app.snapshot().await;
    for (method, path) in all_routes() {
        let url = app.url(&format!("/v2.1{path}"));
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        for authorization in [
            None,
            Some("Token"),
            Some("Basic abc"),
            Some("Token wrong-token"),
        ] {
            let mut request = app
                .client()
                .request(method.clone(), &url)
                .header("Content-Type", "application/json")
                .body(
                    json!({"name": "x", "input_type": "plain", "output_type": "plain"}).to_string(),
                );
            if let Some(value) = authorization {
                request = request.header("Authorization", value);
            }
            let response = app.send(request).await;
            assert_eq!(
                response.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {authorization:?}"
            );
            assert!(!response.error().is_empty());
        }
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "refused requests changed nothing"
    );
}

async fn status_as(app: &TestApp, token: &str) -> StatusCode {
    app.call_as(token, Method::GET, "/projects", None)
        .await
        .status
}

#[tokio::test]
async fn revoked_tokens_stop_working_within_the_cache_ttl() {
    let ttl = Duration::from_millis(300);
    let app = TestApp::spawn_with(TestOptions {
        token_cache_ttl: ttl,
        ..TestOptions::default()
    })
    .await;
    let token = app.token("someone@example.com", None).await;
    assert_eq!(status_as(&app, &token).await, StatusCode::OK);
    app.revoke(&token).await;
    // Once the entry is older than the TTL the database is asked again.
    tokio::time::sleep(ttl).await;
    let response = app.call_as(&token, Method::GET, "/projects", None).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert!(response.error().contains("Invalid or revoked"));
    // And stays refused: refusals are not cached as anything else.
    assert_eq!(status_as(&app, &token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_verified_token_is_served_from_the_cache_until_the_ttl() {
    // A TTL far longer than the test: the second request can only succeed
    // without asking the database, which no longer accepts the token.
    let app = TestApp::spawn_with(TestOptions {
        token_cache_ttl: Duration::from_secs(3600),
        ..TestOptions::default()
    })
    .await;
    let token = app.token("someone@example.com", None).await;
    assert_eq!(status_as(&app, &token).await, StatusCode::OK);
    app.revoke(&token).await;
    assert_eq!(status_as(&app, &token).await, StatusCode::OK);
    // A token the cache has never seen is still checked against the database.
    let other = app.token("other@example.com", None).await;
    app.revoke(&other).await;
    assert_eq!(status_as(&app, &other).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_zero_ttl_checks_the_database_on_every_request() {
    let app = TestApp::spawn_with(TestOptions {
        token_cache_ttl: Duration::ZERO,
        ..TestOptions::default()
    })
    .await;
    let token = app.token("someone@example.com", None).await;
    assert_eq!(status_as(&app, &token).await, StatusCode::OK);
    app.revoke(&token).await;
    assert_eq!(status_as(&app, &token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn token_scheme_is_case_insensitive_and_bearer_works() {
    let app = setup().await;
    for scheme in ["Token", "token", "TOKEN", "Bearer", "bearer"] {
        let response = app
            .send(
                app.client()
                    .get(app.url("/v2.1/projects"))
                    .header("Authorization", format!("{scheme} {}", app.admin_token)),
            )
            .await;
        assert_eq!(response.status, StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn a_project_limited_token_gets_403_elsewhere_and_learns_nothing() {
    let app = setup().await;
    app.create_project("mine").await;
    let limited = app.token("limited@example.com", Some(&["mine"])).await;
    let before = app.snapshot().await;
    // "p" exists, "ghost" does not: both answer the same 403.
    for project in ["p", "ghost"] {
        for (method, path) in PROJECT_ROUTES {
            let path = path.replacen("/projects/p", &format!("/projects/{project}"), 1);
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let response = app
                .call_as(
                    &limited,
                    method.clone(),
                    &path,
                    Some(json!({"name": "x", "input_type": "plain", "output_type": "plain"})),
                )
                .await;
            assert_eq!(response.status, StatusCode::FORBIDDEN, "{method} {path}");
            assert_eq!(
                response.error(),
                format!("This API token has no access to project '{project}'")
            );
        }
    }
    let create_elsewhere = app
        .call_as(
            &limited,
            Method::POST,
            "/projects",
            Some(json!({"name": "other"})),
        )
        .await;
    assert_eq!(create_elsewhere.status, StatusCode::FORBIDDEN);
    assert_eq!(app.snapshot().await, before);

    // Inside its scope it works, and the project list shows only its projects.
    let listed = app.call_as(&limited, Method::GET, "/projects", None).await;
    let names: Vec<_> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("mine")]);
    let created = app
        .call_as(
            &limited,
            Method::POST,
            "/projects/mine/deployments",
            Some(json!({"name": "d", "input_type": "plain", "output_type": "plain"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let audit = app.get("/projects/mine/deployments/d/audit").await;
    assert_eq!(audit.body[0]["user"], "limited@example.com");
}
