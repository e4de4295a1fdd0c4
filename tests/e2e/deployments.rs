use reqwest::StatusCode;
use serde_json::{json, Value};
use ubiops_test_support::TestApp;

const FIELDS: &[&str] = &[
    "id",
    "name",
    "project",
    "description",
    "input_type",
    "output_type",
    "input_fields",
    "output_fields",
    "labels",
    "creation_date",
    "last_updated",
    "default_version",
];

fn structured_example() -> Value {
    json!({
        "name": "deployment-1",
        "input_type": "structured",
        "output_type": "structured",
        "input_fields": [
            {"name": "input-field-1", "data_type": "int",
             "widget": {"type": "slider", "configuration": {"min": 0, "max": 10, "default": 4, "step": 2}}},
            {"name": "input-field-2", "data_type": "double"}
        ],
        "output_fields": [{"name": "output-field", "data_type": "double",
                           "widget": {"type": "textbox", "configuration": {}}}],
        "labels": {"type": "deployment"}
    })
}

async fn app_with_project() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_project("project-1").await;
    app
}

fn assert_documented_shape(body: &Value) {
    for field in FIELDS {
        assert!(body.get(field).is_some(), "missing `{field}` in {body}");
    }
    assert_eq!(body["supports_request_format"], true);
    // Never "" for an optional string.
    for (key, value) in body.as_object().unwrap() {
        assert_ne!(value, &json!(""), "`{key}` is an empty string");
    }
}

#[tokio::test]
async fn create_returns_every_documented_field() {
    let app = app_with_project().await;
    let created = app
        .post("/projects/project-1/deployments", structured_example())
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let body = &created.body;
    assert_documented_shape(body);
    assert_eq!(body["name"], "deployment-1");
    assert_eq!(body["project"], "project-1");
    assert_eq!(body["description"], Value::Null);
    assert_eq!(body["default_version"], Value::Null);
    assert_eq!(body["labels"], json!({"type": "deployment"}));
    assert_eq!(
        body["input_fields"],
        json!([
            {"name": "input-field-1", "data_type": "int",
             "widget": {"type": "slider", "configuration": {"min": 0, "max": 10, "default": 4, "step": 2}}},
            {"name": "input-field-2", "data_type": "double", "widget": {}}
        ])
    );
    assert_eq!(body["output_fields"][0]["widget"]["type"], "textbox");
    assert_eq!(body["creation_date"], body["last_updated"]);

    let fetched = app
        .get("/projects/project-1/deployments/deployment-1")
        .await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_documented_shape(&fetched.body);
    assert_eq!(fetched.body, created.body);
}

#[tokio::test]
async fn plain_deployments_have_empty_field_lists() {
    let app = app_with_project().await;
    let created = app
        .post(
            "/projects/project-1/deployments",
            json!({
                "name": "plain-one", "description": "Deployment one",
                "input_type": "plain", "output_type": "plain", "input_fields": []
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["input_fields"], json!([]));
    assert_eq!(created.body["output_fields"], json!([]));
    assert_eq!(created.body["description"], "Deployment one");
    assert_eq!(created.body["labels"], json!({}));
}

#[tokio::test]
async fn list_is_by_name_and_filters_on_any_label_pair() {
    let app = app_with_project().await;
    for (name, labels) in [
        ("c-dep", json!({"type": "x", "team": "red"})),
        ("a-dep", json!({"type": "y"})),
        ("b-dep", json!({})),
    ] {
        let response = app
            .post("/projects/project-1/deployments",
                json!({"name": name, "input_type": "plain", "output_type": "plain", "labels": labels}))
            .await;
        assert_eq!(response.status, StatusCode::CREATED);
    }
    let names = |response: &ubiops_test_support::Response| -> Vec<String> {
        response
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = app.get("/projects/project-1/deployments").await;
    assert_eq!(names(&all), vec!["a-dep", "b-dep", "c-dep"]);
    for item in all.body.as_array().unwrap() {
        assert_documented_shape(item);
    }
    let filtered = app
        .get("/projects/project-1/deployments?labels=type:x")
        .await;
    assert_eq!(names(&filtered), vec!["c-dep"]);
    let either = app
        .get("/projects/project-1/deployments?labels=type:y,team:red")
        .await;
    assert_eq!(names(&either), vec!["a-dep", "c-dep"]);
    let none = app
        .get("/projects/project-1/deployments?labels=type:z")
        .await;
    assert_eq!(none.body, json!([]));
    for bad in ["type", "type:", ":x", "a:b,"] {
        let response = app
            .get(&format!("/projects/project-1/deployments?labels={bad}"))
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(response.error().contains("Invalid labels filter"));
    }
}

#[tokio::test]
async fn update_renames_and_replaces_while_keeping_identity() {
    let app = app_with_project().await;
    let created = app
        .post("/projects/project-1/deployments", structured_example())
        .await;
    let updated = app
        .patch("/projects/project-1/deployments/deployment-1", json!({
            "name": "new-deployment-name",
            "description": "New deployment description",
            "labels": {"stage": "prod"},
            "input_fields": [{"name": "only", "data_type": "string", "widget": {"type": "dropdown"}}],
            "output_fields": []
        }))
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_documented_shape(&updated.body);
    assert_eq!(updated.body["id"], created.body["id"]);
    assert_eq!(updated.body["name"], "new-deployment-name");
    assert_eq!(updated.body["description"], "New deployment description");
    assert_eq!(updated.body["labels"], json!({"stage": "prod"}));
    assert_eq!(
        updated.body["input_fields"],
        json!([{"name": "only", "data_type": "string", "widget": {"type": "dropdown", "configuration": {}}}])
    );
    assert_eq!(updated.body["output_fields"], json!([]));
    assert_eq!(updated.body["creation_date"], created.body["creation_date"]);
    assert_ne!(updated.body["last_updated"], created.body["last_updated"]);

    assert_eq!(
        app.get("/projects/project-1/deployments/deployment-1")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let renamed = app
        .get("/projects/project-1/deployments/new-deployment-name")
        .await;
    assert_eq!(renamed.body, updated.body);

    // Clearing: null description and labels; an empty PATCH changes nothing but the timestamp.
    let cleared = app
        .patch(
            "/projects/project-1/deployments/new-deployment-name",
            json!({"description": null, "labels": null}),
        )
        .await;
    assert_eq!(cleared.body["description"], Value::Null);
    assert_eq!(cleared.body["labels"], json!({}));
    let untouched = app
        .patch(
            "/projects/project-1/deployments/new-deployment-name",
            json!({}),
        )
        .await;
    assert_eq!(untouched.status, StatusCode::OK);
    assert_eq!(untouched.body["input_fields"], cleared.body["input_fields"]);
    // Renaming to its own name is fine.
    let same = app
        .patch(
            "/projects/project-1/deployments/new-deployment-name",
            json!({"name": "new-deployment-name"}),
        )
        .await;
    assert_eq!(same.status, StatusCode::OK);
}

#[tokio::test]
async fn delete_removes_it() {
    let app = app_with_project().await;
    app.post("/projects/project-1/deployments", structured_example())
        .await;
    let deleted = app
        .delete("/projects/project-1/deployments/deployment-1")
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(deleted.body, Value::Null);
    assert_eq!(
        app.get("/projects/project-1/deployments/deployment-1")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete("/projects/project-1/deployments/deployment-1")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The name is free again.
    assert_eq!(
        app.post("/projects/project-1/deployments", structured_example())
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn unknown_project_or_deployment_is_404() {
    let app = app_with_project().await;
    let cases = [
        app.get("/projects/ghost/deployments").await,
        app.post("/projects/ghost/deployments", structured_example())
            .await,
        app.get("/projects/ghost/deployments/d").await,
        app.get("/projects/project-1/deployments/ghost").await,
        app.patch(
            "/projects/project-1/deployments/ghost",
            json!({"description": "x"}),
        )
        .await,
        app.delete("/projects/project-1/deployments/ghost").await,
        app.get("/projects/project-1/deployments/ghost/audit").await,
    ];
    for response in cases {
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
        assert!(response.error().contains("not found"));
    }
}

#[tokio::test]
async fn bad_creates_are_400_with_a_clear_error_and_change_nothing() {
    let app = app_with_project().await;
    app.post("/projects/project-1/deployments", structured_example())
        .await;
    let before = app.snapshot().await;
    let base = || {
        json!({"name": "d", "input_type": "structured", "output_type": "plain",
                         "input_fields": [{"name": "f", "data_type": "int"}]})
    };
    let with = |key: &str, value: Value| {
        let mut body = base();
        body[key] = value;
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (structured_example(), "already exists"),
        (with("name", json!("Deployment")), "Invalid deployment name"),
        (with("name", json!("-d")), "Invalid deployment name"),
        (with("name", json!("d-")), "Invalid deployment name"),
        (with("name", json!("")), "Invalid deployment name"),
        (
            with("name", json!("d".repeat(65))),
            "Invalid deployment name",
        ),
        (with("name", json!(12)), "invalid type"),
        (with("name", Value::Null), "invalid type"),
        (with("input_type", json!("json")), "unknown variant"),
        (with("output_type", json!(1)), "output_type"),
        (with("description", json!("x".repeat(401))), "at most 400"),
        (with("description", json!(["x"])), "description"),
        (with("labels", json!({"a b": "c"})), "Invalid label key"),
        (with("labels", json!({"k": 3})), "labels"),
        (with("labels", json!(["k"])), "labels"),
        (
            with(
                "input_fields",
                json!([{"name": "f", "data_type": "integer"}]),
            ),
            "unknown variant `integer`",
        ),
        (
            with("input_fields", json!([{"name": "f"}])),
            "missing field `data_type`",
        ),
        (
            with(
                "input_fields",
                json!([{"name": "f", "data_type": "int"}, {"name": "f", "data_type": "int"}]),
            ),
            "more than once",
        ),
        (
            with("input_fields", json!([{"name": "", "data_type": "int"}])),
            "Invalid field name",
        ),
        (
            with(
                "input_fields",
                json!([{"name": "f", "data_type": "int", "widget": {"type": "rocket"}}]),
            ),
            "Widget type 'rocket'",
        ),
        (with("input_fields", json!({"name": "f"})), "input_fields"),
        (
            with("output_fields", json!([{"name": "f", "data_type": "int"}])),
            "must be empty when `output_type` is plain",
        ),
        (
            with("output_type", json!("structured")),
            "`output_fields` is required",
        ),
        (
            with(
                "output_fields",
                json!([{"name": "f", "data_type": "int", "widget": {"type": "slider"}}]),
            ),
            "must be empty",
        ),
        (
            with("unexpected", json!(true)),
            "unknown field `unexpected`",
        ),
        (
            json!({"input_type": "plain", "output_type": "plain"}),
            "missing field `name`",
        ),
        (
            json!({"name": "d", "output_type": "plain"}),
            "missing field `input_type`",
        ),
        (json!([]), "Invalid request body"),
        (json!("d"), "Invalid request body"),
    ];
    for (body, expected) in cases {
        let response = app
            .post("/projects/project-1/deployments", body.clone())
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            response.error().contains(expected),
            "{body}: {}",
            response.error()
        );
    }
    // Structurally broken bodies.
    let url = app.url("/v2.1/projects/project-1/deployments");
    let auth = format!("Token {}", app.admin_token);
    let raw = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = app
            .client()
            .post(&url)
            .header("Authorization", &auth)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        request
    };
    let not_json = app.send(raw("{\"name\": ", Some("application/json"))).await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert!(not_json.error().contains("not valid JSON"));
    let empty = app.send(raw("", Some("application/json"))).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let no_type = app.send(raw("{}", None)).await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(no_type.error().contains("application/json"));
    let wrong_type = app.send(raw("{}", Some("text/plain"))).await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = app
        .send(
            app.client()
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .body(format!(
                    "{{\"name\": \"d\", \"description\": \"{}\"}}",
                    "x".repeat(3 * 1024 * 1024)
                )),
        )
        .await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!huge.error().is_empty());

    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn bad_updates_are_400_and_change_nothing() {
    let app = app_with_project().await;
    app.post("/projects/project-1/deployments", structured_example())
        .await;
    app.post(
        "/projects/project-1/deployments",
        json!({"name": "plain-dep", "input_type": "plain", "output_type": "plain"}),
    )
    .await;
    let before = app.snapshot().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "deployment-1",
            json!({"name": "plain-dep"}),
            "already exists",
        ),
        (
            "deployment-1",
            json!({"name": "Nope"}),
            "Invalid deployment name",
        ),
        (
            "deployment-1",
            json!({"default_version": "v1"}),
            "has no such version",
        ),
        (
            "deployment-1",
            json!({"default_version": ""}),
            "Invalid version name",
        ),
        (
            "deployment-1",
            json!({"description": "x".repeat(401)}),
            "at most 400",
        ),
        (
            "deployment-1",
            json!({"labels": {"k": "a,b"}}),
            "Invalid value for label",
        ),
        (
            "deployment-1",
            json!({"input_fields": [{"name": "a", "data_type": "nope"}]}),
            "unknown variant",
        ),
        (
            "deployment-1",
            json!({"output_fields": [{"name": "a", "data_type": "int", "widget": {"type": "slider"}}]}),
            "not available for output_fields",
        ),
        (
            "deployment-1",
            json!({"input_type": "plain"}),
            "unknown field `input_type`",
        ),
        (
            "plain-dep",
            json!({"input_fields": [{"name": "a", "data_type": "int"}]}),
            "must be empty when `input_type` is plain",
        ),
    ];
    for (deployment, body, expected) in cases {
        let response = app
            .patch(
                &format!("/projects/project-1/deployments/{deployment}"),
                body.clone(),
            )
            .await;
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
async fn concurrent_creates_of_one_name_yield_exactly_one_deployment() {
    let app = app_with_project().await;
    let attempts = (0..20).map(|_| {
        app.post(
            "/projects/project-1/deployments",
            json!({"name": "race", "input_type": "plain", "output_type": "plain"}),
        )
    });
    let responses = futures::future::join_all(attempts).await;
    let created = responses
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let refused = responses
        .iter()
        .filter(|r| r.status == StatusCode::BAD_REQUEST)
        .count();
    assert_eq!((created, refused), (1, 19));
    let audit = app.get("/projects/project-1/deployments/race/audit").await;
    assert_eq!(
        audit.body.as_array().unwrap().len(),
        1,
        "one create event, none from refused attempts"
    );
}
