//! Route enumeration: every operation of the served OpenAPI document (which
//! is generated from the router's own declarations, so no route can be left
//! out) refuses a missing, a wrong and a revoked token, under both prefixes,
//! except the two public ones.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::json;
use ubiops_test_support::TestApp;

use crate::openapi::{operations, served_document, PUBLIC_PATHS};

#[tokio::test]
async fn every_operation_refuses_a_missing_wrong_or_revoked_token() {
    let app = TestApp::spawn().await;
    // Real objects behind the paths, so a route that skipped the check
    // would act on something rather than answer 404.
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1"]).await;
    let revoked = app.token("revoked@example.com", None).await;
    app.revoke(&revoked).await;
    let documented = operations(&served_document(&app, "/v2.1").await);
    let public: BTreeSet<_> = documented
        .iter()
        .filter(|o| !o.secured)
        .map(|o| o.path.as_str())
        .collect();
    assert_eq!(
        public,
        BTreeSet::from(PUBLIC_PATHS),
        "only these operations need no token"
    );
    let before = app.snapshot().await;

    let mut refused = 0;
    for prefix in ["/v2.1", "/v2"] {
        for operation in documented.iter().filter(|o| o.secured) {
            let url = app.url(&format!("{prefix}{}", operation.concrete_path()));
            let revoked_header = format!("Token {revoked}");
            for authorization in [None, Some("Token not-a-real-token"), Some(&*revoked_header)] {
                let mut request = app
                    .client()
                    .request(operation.method.clone(), &url)
                    .header("Content-Type", "application/json")
                    .body(
                        json!({"name": "x", "input_type": "plain", "output_type": "plain"})
                            .to_string(),
                    );
                if let Some(value) = authorization {
                    request = request.header("Authorization", value);
                }
                let response = app.send(request).await;
                let which = authorization.map_or("no token", |a| {
                    if a == revoked_header {
                        "a revoked token"
                    } else {
                        "a wrong token"
                    }
                });
                assert_eq!(
                    response.status,
                    StatusCode::UNAUTHORIZED,
                    "{} {prefix}{} with {which}",
                    operation.method,
                    operation.path
                );
                assert!(!response.error().is_empty());
                refused += 1;
            }
        }
    }
    assert!(refused >= 2 * 3 * 31, "{refused} refusals");
    assert_eq!(
        app.snapshot().await,
        before,
        "refused requests changed nothing"
    );

    // The public ones answer without a token, under both prefixes.
    for prefix in ["/v2.1", "/v2"] {
        for path in PUBLIC_PATHS {
            let response = app
                .client()
                .request(Method::GET, app.url(&format!("{prefix}{path}")))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{prefix}{path}");
        }
    }
}
