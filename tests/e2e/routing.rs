use reqwest::{Method, StatusCode};
use serde_json::json;
use ubiops_test_support::TestApp;

#[tokio::test]
async fn status_needs_no_token_under_every_prefix() {
    let app = TestApp::spawn().await;
    for path in ["/status", "/v2.1/status", "/v2/status"] {
        let response = app.send(app.client().get(app.url(path))).await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
        assert_eq!(response.body, json!({"status": "ok"}));
    }
}

#[tokio::test]
async fn v2_serves_the_same_routes_as_v2_1() {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    let response = app
        .send(
            app.client()
                .get(app.url("/v2/projects/p"))
                .header("Authorization", format!("Token {}", app.admin_token)),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body["name"], "p");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = TestApp::spawn().await;
    let missing = app.get("/no-such-thing").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(!missing.error().is_empty());
    let wrong_method = app.call(Method::PUT, "/projects", None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!wrong_method.error().is_empty());
}

/// PostgreSQL text cannot hold NUL; a name with one names nothing, and is
/// refused like any other bad input (schemathesis found these as 500s).
#[tokio::test]
async fn nul_characters_in_looked_up_names_are_a_400() {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &[]).await;
    let before = app.snapshot().await;
    for (method, path, body) in [
        (Method::GET, "/projects/a%00b", None),
        (Method::GET, "/projects/p/deployments/a%00b/versions", None),
        (Method::GET, "/projects/p/deployments?labels=a:b%00", None),
        (
            Method::POST,
            "/projects/p/deployments/d/copy-environment-variables",
            Some(json!({"source_deployment": "a\0b"})),
        ),
    ] {
        let response = app.call(method.clone(), path, body).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{method} {path}");
        assert!(response.error().contains("NUL"), "{method} {path}");
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let response = app
        .client()
        .get(app.url("/status"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let generated = app.client().get(app.url("/status")).send().await.unwrap();
    assert!(!generated.headers()["x-request-id"].is_empty());
}
