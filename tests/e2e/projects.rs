use reqwest::StatusCode;
use serde_json::json;
use ubiops_test_support::TestApp;

#[tokio::test]
async fn create_list_get_delete() {
    let app = TestApp::spawn().await;
    let created = app.post("/projects", json!({"name": "project-1"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["name"], "project-1");
    assert_eq!(created.body["organization_name"], "test-organization");
    assert!(created.body["id"].as_str().unwrap().len() == 36);
    assert!(created.body["creation_date"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    let other = app
        .post(
            "/projects",
            json!({"name": "project-0", "organization_name": "acme"}),
        )
        .await;
    assert_eq!(other.body["organization_name"], "acme");

    let listed = app.get("/projects").await;
    let names: Vec<_> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["project-0", "project-1"]);

    let fetched = app.get("/projects/project-1").await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body, created.body);

    assert_eq!(
        app.delete("/projects/project-1").await.status,
        StatusCode::NO_CONTENT
    );
    let gone = app.get("/projects/project-1").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.error(), "Project 'project-1' not found");
    assert_eq!(
        app.delete("/projects/project-1").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_project_requests_are_400_and_change_nothing() {
    let app = TestApp::spawn().await;
    app.create_project("taken").await;
    let before = app.snapshot().await;
    let cases = [
        (json!({"name": "taken"}), "already exists"),
        (json!({"name": "Bad_Name"}), "Invalid project name"),
        (json!({"name": ""}), "Invalid project name"),
        (json!({"name": "x".repeat(65)}), "Invalid project name"),
        (json!({"name": 7}), "Invalid request body"),
        (json!({}), "missing field `name`"),
        (
            json!({"name": "ok", "extra": true}),
            "unknown field `extra`",
        ),
        (
            json!({"name": "ok", "organization_name": "o".repeat(257)}),
            "organization_name",
        ),
    ];
    for (body, expected) in cases {
        let response = app.post("/projects", body.clone()).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            response.error().contains(expected),
            "{body}: {}",
            response.error()
        );
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn deleting_a_project_removes_its_deployments() {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.post(
        "/projects/p/deployments",
        json!({"name": "d", "input_type": "plain", "output_type": "plain"}),
    )
    .await;
    assert_eq!(
        app.delete("/projects/p").await.status,
        StatusCode::NO_CONTENT
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0);
    app.create_project("p").await;
    assert_eq!(app.get("/projects/p/deployments").await.body, json!([]));
}
