//! The served OpenAPI document: it parses, documents every route the router
//! serves (and nothing it does not), and covers the documented UbiOps API.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ubiops_test_support::TestApp;

/// The 31 operations of the UbiOps Deployments documentation
/// (`Deployments.md`): operation id, method, path.
const DOCUMENTED_UBIOPS_OPERATIONS: [(&str, &str, &str); 31] = [
    ("builds_get", "GET", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/builds/{build_id}"),
    ("builds_list", "GET", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/builds"),
    ("builds_update", "PATCH", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/builds/{build_id}"),
    ("deployment_audit_events_list", "GET", "/projects/{project_name}/deployments/{deployment_name}/audit"),
    ("deployment_environment_variables_copy", "POST", "/projects/{project_name}/deployments/{deployment_name}/copy-environment-variables"),
    ("deployment_environment_variables_create", "POST", "/projects/{project_name}/deployments/{deployment_name}/environment-variables"),
    ("deployment_environment_variables_delete", "DELETE", "/projects/{project_name}/deployments/{deployment_name}/environment-variables/{id}"),
    ("deployment_environment_variables_get", "GET", "/projects/{project_name}/deployments/{deployment_name}/environment-variables/{id}"),
    ("deployment_environment_variables_list", "GET", "/projects/{project_name}/deployments/{deployment_name}/environment-variables"),
    ("deployment_environment_variables_update", "PATCH", "/projects/{project_name}/deployments/{deployment_name}/environment-variables/{id}"),
    ("deployment_version_environment_variables_copy", "POST", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/copy-environment-variables"),
    ("deployment_version_environment_variables_create", "POST", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/environment-variables"),
    ("deployment_version_environment_variables_delete", "DELETE", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/environment-variables/{id}"),
    ("deployment_version_environment_variables_get", "GET", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/environment-variables/{id}"),
    ("deployment_version_environment_variables_list", "GET", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/environment-variables"),
    ("deployment_version_environment_variables_update", "PATCH", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/environment-variables/{id}"),
    ("deployment_versions_create", "POST", "/projects/{project_name}/deployments/{deployment_name}/versions"),
    ("deployment_versions_delete", "DELETE", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}"),
    ("deployment_versions_get", "GET", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}"),
    ("deployment_versions_list", "GET", "/projects/{project_name}/deployments/{deployment_name}/versions"),
    ("deployment_versions_update", "PATCH", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}"),
    ("deployments_create", "POST", "/projects/{project_name}/deployments"),
    ("deployments_delete", "DELETE", "/projects/{project_name}/deployments/{deployment_name}"),
    ("deployments_get", "GET", "/projects/{project_name}/deployments/{deployment_name}"),
    ("deployments_list", "GET", "/projects/{project_name}/deployments"),
    ("deployments_update", "PATCH", "/projects/{project_name}/deployments/{deployment_name}"),
    ("revisions_file_download", "GET", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/revisions/{revision_id}/download"),
    ("revisions_file_upload", "POST", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/revisions"),
    ("revisions_get", "GET", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/revisions/{revision_id}"),
    ("revisions_list", "GET", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/revisions"),
    ("revisions_rebuild", "POST", "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/revisions/{revision_id}/rebuild"),
];

/// The operations that need no token.
pub(crate) const PUBLIC_PATHS: [&str; 2] = ["/status", "/openapi.json"];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// One operation of the served document.
#[derive(Debug, Clone)]
pub(crate) struct DocumentedOperation {
    pub method: Method,
    /// The path template, relative to the server prefix (`/v2.1`, `/v2`).
    pub path: String,
    pub operation_id: String,
    /// Whether it declares the token security scheme.
    pub secured: bool,
}

impl DocumentedOperation {
    /// The path with its parameters filled in: the project `p`, deployment
    /// `d` and version `v1` (which tests may create), and a UUID for ids.
    pub fn concrete_path(&self) -> String {
        self.path
            .split('/')
            .map(|segment| match segment {
                "{project_name}" => "p",
                "{deployment_name}" => "d",
                "{version}" => "v1",
                s if s.starts_with('{') => "00000000-0000-4000-8000-000000000000",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// The document as served (no token), checked to parse as OpenAPI 3.
pub(crate) async fn served_document(app: &TestApp, prefix: &str) -> Value {
    let response = app
        .client()
        .get(app.url(&format!("{prefix}/openapi.json")))
        .send()
        .await
        .expect("fetch the document");
    assert_eq!(response.status(), StatusCode::OK, "{prefix}/openapi.json");
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = response.json().await.expect("the document is JSON");
    serde_json::from_value::<utoipa::openapi::OpenApi>(document.clone())
        .expect("the document parses as OpenAPI");
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    document
}

pub(crate) fn operations(document: &Value) -> Vec<DocumentedOperation> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            operations.push(DocumentedOperation {
                method,
                path: path.clone(),
                operation_id: operation["operationId"].as_str().unwrap_or("").to_owned(),
                secured: operation["security"] == json!([{ "token": [] }]),
            });
        }
    }
    operations
}

#[tokio::test]
async fn the_document_is_served_without_a_token_under_both_prefixes() {
    let app = TestApp::spawn().await;
    let current = served_document(&app, "/v2.1").await;
    let older = served_document(&app, "/v2").await;
    assert_eq!(current, older);
    assert_eq!(
        current["servers"],
        json!([{ "url": "/v2.1" }, { "url": "/v2" }])
    );
    let scheme = &current["components"]["securitySchemes"]["token"];
    assert_eq!(
        (&scheme["type"], &scheme["in"], &scheme["name"]),
        (&json!("apiKey"), &json!("header"), &json!("Authorization"))
    );
    // Project names follow the deployments' rule, whose pattern the domain's
    // unit tests hold to the validator.
    let schemas = &current["components"]["schemas"];
    assert_eq!(
        schemas["ProjectCreate"]["properties"]["name"]["pattern"],
        schemas["DeploymentCreate"]["properties"]["name"]["pattern"]
    );
    let ids: Vec<_> = operations(&current)
        .into_iter()
        .map(|o| o.operation_id)
        .collect();
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "operation ids are unique: {ids:?}");
}

#[tokio::test]
async fn every_documented_ubiops_operation_is_in_the_document() {
    let app = TestApp::spawn().await;
    let documented = operations(&served_document(&app, "/v2.1").await);
    for (id, method, path) in DOCUMENTED_UBIOPS_OPERATIONS {
        let found = documented
            .iter()
            .find(|o| o.method.as_str() == method && o.path == path);
        let found = found.unwrap_or_else(|| panic!("{method} {path} ({id}) is not documented"));
        assert_eq!(found.operation_id, id, "{method} {path}");
    }
}

/// Every operation declares a success response with a schema and the
/// `{"error"}` responses of what can refuse it; only the public ones go
/// without the token scheme.
#[tokio::test]
async fn every_operation_documents_its_responses_and_security() {
    let app = TestApp::spawn().await;
    let document = served_document(&app, "/v2.1").await;
    for operation in operations(&document) {
        let responses = &document["paths"][&operation.path]
            [operation.method.as_str().to_lowercase()]["responses"];
        let label = format!("{} {}", operation.method, operation.path);
        let statuses: Vec<&String> = responses.as_object().unwrap().keys().collect();
        assert!(
            statuses.iter().any(|s| s.starts_with('2')),
            "{label}: no success response"
        );
        let public = PUBLIC_PATHS.contains(&operation.path.as_str());
        assert_eq!(operation.secured, !public, "{label}: security");
        if public {
            continue;
        }
        assert_eq!(
            responses["401"],
            json!({ "$ref": "#/components/responses/Unauthorized" }),
            "{label}"
        );
        if operation.path.contains("{project_name}") {
            assert!(responses.get("403").is_some(), "{label}: 403");
            assert!(responses.get("404").is_some(), "{label}: 404");
        }
        let parameters = document["paths"][&operation.path]
            [operation.method.as_str().to_lowercase()]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for name in operation
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            assert!(
                parameters
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                "{label}: path parameter {name}"
            );
        }
    }
}

/// The document and the router come from the same declarations; this proves
/// it from the outside: every documented operation is routed (answers
/// something other than the unknown-endpoint 404 or a 405), and on every
/// documented path, every undocumented method is a 405.
#[tokio::test]
async fn the_document_and_the_router_have_the_same_routes() {
    let app = TestApp::spawn().await;
    let documented = operations(&served_document(&app, "/v2.1").await);
    let route_miss = app.get("/no-such-endpoint").await;
    assert_eq!(route_miss.status, StatusCode::NOT_FOUND);
    for operation in &documented {
        let response = app
            .call(
                operation.method.clone(),
                &operation.concrete_path(),
                Some(json!({})),
            )
            .await;
        let label = format!("{} {}", operation.method, operation.path);
        assert_ne!(response.status, StatusCode::METHOD_NOT_ALLOWED, "{label}");
        assert_ne!(response.body, route_miss.body, "{label} is not routed");
        for method in METHODS {
            let undocumented = !documented
                .iter()
                .any(|o| o.path == operation.path && o.method.as_str() == method);
            if undocumented {
                let method = Method::from_bytes(method.as_bytes()).unwrap();
                let response = app
                    .call(method.clone(), &operation.concrete_path(), None)
                    .await;
                assert_eq!(
                    response.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {} is routed but not documented",
                    operation.path
                );
            }
        }
    }
}
