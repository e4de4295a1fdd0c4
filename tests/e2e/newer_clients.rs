//! What newer clients (`ubiops` 4.x, `ubiops-cli`) need beyond the v2.1
//! documentation: `/user`, built-in system environments with their tag,
//! instance type groups, both vocabularies for a version's language and
//! instance type, and `latest_revision`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ubiops_test_support::TestApp;

use crate::builds::{deployment_zip, upload};

const VERSIONS: &str = "/projects/p/deployments/d/versions";

async fn app() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &[]).await;
    app
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn user_is_the_token_identity() {
    let app = app().await;
    let token = app.token("alice@example.com", Some(&["p"])).await;
    let response = app.call_as(&token, Method::GET, "/user", None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.body,
        json!({"email": "alice@example.com", "name": null, "surname": null, "authentication": "token"})
    );
    let anonymous = app.send(app.client().get(app.url("/v2.1/user"))).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_language_is_a_built_system_environment() {
    let app = app().await;
    let list = app.get("/projects/p/environments").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(
        names(&list.body),
        [
            "python3-7",
            "python3-8",
            "python3-9",
            "python3-10",
            "python3-11",
            "python3-7-cuda",
            "python3-8-cuda",
            "python3-9-cuda",
            "python3-10-cuda",
            "python3-11-cuda",
            "r4-0",
        ]
    );
    let one = app.get("/projects/p/environments/python3-8-cuda").await;
    assert_eq!(one.status, StatusCode::OK);
    for (field, value) in [
        ("name", json!("python3-8-cuda")),
        ("project", json!("p")),
        ("display_name", json!("Python 3.8 (CUDA)")),
        ("description", json!("Python 3.8 (CUDA)")),
        ("system", json!(true)),
        ("supports_request_format", json!(true)),
        ("gpu_required", json!(true)),
        ("language", json!("python3.8_cuda")),
    ] {
        assert_eq!(one.body[field], value, "{field} in {}", one.body);
    }
    assert_eq!(one.body, list.body[6], "get and list agree");

    let tags = app.get("/projects/p/environments/r4-0/tags").await;
    assert_eq!(tags.status, StatusCode::OK);
    assert_eq!(names(&tags.body), ["latest"]);
    assert_eq!(
        (
            &tags.body[0]["environment"],
            &tags.body[0]["status"],
            &tags.body[0]["built"]
        ),
        (&json!("r4-0"), &json!("success"), &json!(true))
    );
    let tag = app.get("/projects/p/environments/r4-0/tags/latest").await;
    assert_eq!(tag.body, tags.body[0]);

    for missing in [
        "/projects/p/environments/python3-6",
        "/projects/p/environments/python3.8",
        "/projects/p/environments/python3-6/tags",
        "/projects/p/environments/r4-0/tags/v1",
        "/projects/nope/environments",
    ] {
        let response = app.get(missing).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{missing}");
        assert!(response.body["error"].as_str().is_some(), "{missing}");
    }
    // The filters the clients send: nothing here is a user environment or has labels.
    assert_eq!(
        app.get("/projects/p/environments?system=False").await.body,
        json!([])
    );
    assert_eq!(
        app.get("/projects/p/environments?labels=a:b").await.body,
        json!([])
    );
    assert_eq!(
        names(&app.get("/projects/p/environments?system=true").await.body).len(),
        11
    );
    assert_eq!(
        app.get("/projects/p/environments?system=maybe")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let limited = app.token("bob@example.com", Some(&["other"])).await;
    let response = app
        .call_as(
            &limited,
            Method::GET,
            "/projects/p/environments/python3-8",
            None,
        )
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn versions_speak_both_vocabularies() {
    let app = app().await;
    let groups = app.get("/projects/p/instance-type-groups").await;
    assert_eq!(groups.status, StatusCode::OK);
    let results = groups.body["results"].as_array().unwrap();
    let small = results.iter().find(|g| g["name"] == "512mb").unwrap();
    assert_eq!(small["instance_types"][0]["memory"], 512);
    let small_id = small["id"].as_str().unwrap().to_owned();
    let one = app
        .get(&format!("/projects/p/instance-type-groups/{small_id}"))
        .await;
    assert_eq!(one.body, *small);

    // 4.x vocabulary in, both vocabularies out.
    let created = app
        .post(
            VERSIONS,
            json!({"version": "v1", "environment": "python3-10", "instance_type_group_id": small_id}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    for (field, value) in [
        ("language", json!("python3.10")),
        ("language_description", json!("Python 3.10")),
        ("environment", json!("python3-10")),
        ("environment_name", json!("python3-10")),
        ("environment_display_name", json!("Python 3.10")),
        ("environment_tag", json!(null)),
        ("instance_type", json!("512mb")),
        ("memory_allocation", json!(512)),
        ("instance_type_group_id", json!(small_id)),
        ("instance_type_group_name", json!("512mb")),
        ("latest_revision", json!(null)),
    ] {
        assert_eq!(created.body[field], value, "{field} in {}", created.body);
    }

    // v2.1 vocabulary in, the 4.x names follow.
    let updated = app
        .patch(
            &format!("{VERSIONS}/v1"),
            json!({"memory_allocation": 4096}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["instance_type_group_name"], "4096mb");
    assert_ne!(updated.body["instance_type_group_id"], json!(small_id));
    let by_group_name = app
        .patch(
            &format!("{VERSIONS}/v1"),
            json!({"instance_type_group_name": "1024mb", "environment_name": "python3-10"}),
        )
        .await;
    assert_eq!(
        by_group_name.status,
        StatusCode::OK,
        "{}",
        by_group_name.body
    );
    assert_eq!(by_group_name.body["memory_allocation"], 1024);

    // Disagreeing names, unknown names and a changed `language` change nothing
    // (the environment may change: see versions.rs).
    let before = app.snapshot().await;
    for (body, expected) in [
        (
            json!({"instance_type": "512mb", "instance_type_group_name": "1024mb"}),
            "name different settings",
        ),
        (json!({"language": "python3.8"}), "cannot be changed"),
        (json!({"environment": "ubuntu24-04"}), "Unknown environment"),
        (
            json!({"instance_type_group_id": "d5b0c1a3-0000-4000-8000-000000000000"}),
            "Unknown instance_type_group_id",
        ),
    ] {
        let response = app.patch(&format!("{VERSIONS}/v1"), body.clone()).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            response.error().contains(expected),
            "{body}: {}",
            response.error()
        );
    }
    let response = app
        .post(
            VERSIONS,
            json!({"version": "v2", "language": "python3.9", "environment": "python3-8"}),
        )
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn latest_revision_is_the_revision_of_the_newest_build() {
    let app = app().await;
    app.post(VERSIONS, json!({"version": "v1"})).await;
    let first = upload(
        &app,
        "/projects/p/deployments/d/versions/v1",
        deployment_zip(),
        "a.zip",
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let version = app.get(&format!("{VERSIONS}/v1")).await.body;
    assert_eq!(version["latest_revision"], first.body["revision"]);
    assert_eq!(version["latest_build"], first.body["build"]);
    let listed = app.get(VERSIONS).await.body;
    assert_eq!(listed[0]["latest_revision"], first.body["revision"]);
}

#[tokio::test]
async fn deployments_accept_supports_request_format() {
    let app = app().await;
    let body = json!({"name": "e", "input_type": "plain", "output_type": "plain", "supports_request_format": true});
    let created = app.post("/projects/p/deployments", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["supports_request_format"], true);
    let refused = app
        .post(
            "/projects/p/deployments",
            json!({"name": "f", "input_type": "plain", "output_type": "plain", "supports_request_format": false}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.error().contains("supports_request_format"));
}

#[tokio::test]
async fn a_rebuild_reads_as_a_revision_too() {
    let app = app().await;
    app.post(VERSIONS, json!({"version": "v1"})).await;
    let uploaded = upload(
        &app,
        "/projects/p/deployments/d/versions/v1",
        deployment_zip(),
        "a.zip",
    )
    .await;
    let revision = uploaded.body["revision"].as_str().unwrap();
    let rebuild = app
        .post(
            &format!("{VERSIONS}/v1/revisions/{revision}/rebuild"),
            json!({}),
        )
        .await;
    assert_eq!(rebuild.status, StatusCode::CREATED, "{}", rebuild.body);
    // The documented build fields, `id` being the build's...
    assert_eq!(rebuild.body["revision"], json!(revision));
    assert_eq!(rebuild.body["trigger"], "Rebuild");
    assert_ne!(rebuild.body["id"], json!(revision));
    // ...and what 4.x's revision model requires.
    assert_eq!(rebuild.body["version"], "v1");
    assert!(rebuild.body["created_by"].as_str().unwrap().contains('@'));
    let version = app.get(&format!("{VERSIONS}/v1")).await.body;
    assert_eq!(version["latest_build"], rebuild.body["id"]);
    assert_eq!(version["latest_revision"], json!(revision));
}
