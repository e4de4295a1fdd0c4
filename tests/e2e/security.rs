//! Isolation between projects, tokens at rest, and storage keys that no user
//! input can steer. (Every route's 401/403 is in `auth.rs`; secrets in
//! responses, dumps and logs in `cli.rs`; audit events in `variables.rs`.)

use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::json;
use ubiops_test_support::{Response, TestApp};

use crate::builds::{deployment_zip, run_build, upload};

const MINE: &str = "/projects/mine/deployments/m/versions/v1";

async fn upload_form_as(app: &TestApp, token: &str, version: &str, form: Form) -> Response {
    app.send(
        app.client()
            .post(app.url(&format!("/v2.1{version}/revisions")))
            .header("Authorization", format!("Token {token}"))
            .multipart(form),
    )
    .await
}

/// What a token limited to project `mine` gets when it names deployment `d`
/// (of another project, or of none) as a copy source, and a deployment id
/// as a template.
async fn probe(app: &TestApp, limited: &str, template_id: &str) -> Vec<Response> {
    let copy_file = Form::new()
        .text("source_deployment", "d")
        .text("source_version", "v1");
    let template = Form::new().text("template_deployment_id", template_id.to_owned());
    vec![
        upload_form_as(app, limited, MINE, copy_file).await,
        upload_form_as(app, limited, MINE, template).await,
        app.call_as(
            limited,
            Method::POST,
            "/projects/mine/deployments/m/copy-environment-variables",
            Some(json!({"source_deployment": "d"})),
        )
        .await,
        app.call_as(
            limited,
            Method::POST,
            "/projects/mine/deployments/m/versions/v1/copy-environment-variables",
            Some(json!({"source_deployment": "d", "source_version": "v1"})),
        )
        .await,
    ]
}

/// The same requests get the same answers before and after deployment `d`
/// (built, with variables) exists in another project: a limited token can
/// neither use it nor learn that it exists.
#[tokio::test]
async fn a_limited_token_cannot_copy_from_or_template_another_project() {
    let app = TestApp::spawn().await;
    app.create_project("mine").await;
    app.create_deployment("mine", "m", &["v1"]).await;
    let limited = app.token("limited@example.com", Some(&["mine"])).await;
    let unknown_id = uuid::Uuid::new_v4().to_string();
    let nothing_yet = probe(&app, &limited, &unknown_id).await;

    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1"]).await;
    let version = "/projects/p/deployments/d/versions/v1";
    let built = upload(&app, version, deployment_zip(), "d.zip").await;
    assert_eq!(built.status, StatusCode::CREATED, "{}", built.body);
    let build = run_build(&app, version, &built.body["build"]).await;
    assert_eq!(build["status"], "success", "{build}");
    for scope in ["/projects/p/deployments/d", version] {
        let variable = app
            .post(
                &format!("{scope}/environment-variables"),
                json!({"name": "OTHER", "value": "x", "secret": false}),
            )
            .await;
        assert_eq!(variable.status, StatusCode::CREATED);
    }
    let template_id = app.get("/projects/p/deployments/d").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = app.snapshot().await;
    let elsewhere = probe(&app, &limited, &template_id).await;
    assert_eq!(
        app.snapshot().await,
        before,
        "nothing was created or copied"
    );
    for (then, now) in nothing_yet.iter().zip(&elsewhere) {
        assert!(now.status.is_client_error(), "{now:?}");
        assert_eq!(
            (then.status, &then.body),
            (now.status, &now.body),
            "another project's deployment answers differently from a missing one"
        );
    }
    // Naming the other project in the path is refused before any lookup.
    for project in ["p", "ghost"] {
        let response = upload_form_as(
            &app,
            &limited,
            &format!("/projects/{project}/deployments/d/versions/v1"),
            Form::new().part("file", Part::bytes(deployment_zip()).file_name("d.zip")),
        )
        .await;
        assert_eq!(response.status, StatusCode::FORBIDDEN);
        assert_eq!(
            response.error(),
            format!("This API token has no access to project '{project}'")
        );
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "nothing was created or copied"
    );
}

#[tokio::test]
async fn tokens_are_stored_only_as_hashes() {
    let app = TestApp::spawn().await;
    let token = app.token("someone@example.com", None).await;
    let rows: String = sqlx::query_scalar(
        "SELECT string_agg(t::text || encode(token_hash, 'hex') || encode(token_hash, 'escape'), ' ') FROM api_tokens t",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    for plain in [&token, &app.admin_token] {
        assert!(
            !rows.contains(plain.as_str()),
            "a token is stored in plain text"
        );
        let hash = hex::encode(ubiops_domain::token::hash_token(plain));
        assert!(rows.contains(&hash), "the token's SHA-256 is stored");
    }
}

/// Keys are made of ids only: hostile file names and names cannot move a
/// file out of `revisions/`, and the download name is sanitised.
#[tokio::test]
async fn hostile_file_names_never_steer_storage_keys() {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1"]).await;
    let version = "/projects/p/deployments/d/versions/v1";
    let hostile = [
        "../../../../tmp/escaped.zip",
        "/etc/passwd",
        "..\\..\\windows\\system32\\x.zip",
        "%2e%2e%2f%2e%2e%2fescaped.zip",
        "revisions/../../escaped.zip",
        "a\"; filename=evil.sh",
        "..",
        "",
    ];
    for file_name in hostile {
        let response = upload(&app, version, deployment_zip(), file_name).await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "{file_name:?}: {}",
            response.body
        );
        let download = app
            .client()
            .get(app.url(&format!(
                "/v2.1{version}/revisions/{}/download",
                response.body["revision"].as_str().unwrap()
            )))
            .header("Authorization", format!("Token {}", app.admin_token))
            .send()
            .await
            .unwrap();
        assert_eq!(download.status(), StatusCode::OK);
        let disposition = download.headers()["content-disposition"].to_str().unwrap();
        let offered = disposition
            .strip_prefix("attachment; filename=\"")
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{file_name:?}: {disposition}"));
        assert!(
            !offered.is_empty()
                && offered
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !offered.starts_with('.'),
            "{file_name:?} is offered as {offered:?}"
        );
        assert!(download.headers().get("x-injected").is_none());
    }
    // Names with path syntax never get that far.
    for name in ["..", "a/b", "..%2Fx", "."] {
        let response = app
            .post(
                "/projects/p/deployments",
                json!({"name": name, "input_type": "plain", "output_type": "plain"}),
            )
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{name}");
    }
    let keys = app.files.list_keys("").await.unwrap();
    assert_eq!(keys.len(), hostile.len(), "{keys:?}");
    for key in &keys {
        let id = key
            .strip_prefix("revisions/")
            .and_then(|rest| rest.strip_suffix(".zip"))
            .unwrap_or_else(|| panic!("key outside revisions/: {key}"));
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "key not made of an id: {key}"
        );
    }
    assert!(!std::path::Path::new("/tmp/escaped.zip").exists());
}
