use reqwest::StatusCode;
use serde_json::{json, Value};
use ubiops_test_support::TestApp;

const BASE: &str = "/projects/p/deployments/d/versions";

const DOCUMENTED_FIELDS: &[&str] = &[
    "id",
    "deployment",
    "version",
    "description",
    "language",
    "language_description",
    "status",
    "active_revision",
    "latest_build",
    "memory_allocation",
    "instance_type",
    "maximum_instances",
    "minimum_instances",
    "maximum_idle_time",
    "labels",
    "creation_date",
    "last_updated",
    "last_file_upload",
    "monitoring",
    "default_notification_group",
    "request_retention_time",
    "request_retention_mode",
    "maximum_queue_size_express",
    "maximum_queue_size_batch",
    "has_request_method",
    "has_requests_method",
    "static_ip",
    "restart_request_interruption",
];

async fn app() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &[]).await;
    app
}

async fn create(app: &TestApp, body: Value) -> Value {
    let response = app.post(BASE, body).await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body
}

fn assert_shape(body: &Value) {
    for field in DOCUMENTED_FIELDS {
        assert!(body.get(field).is_some(), "missing `{field}` in {body}");
    }
    for (key, value) in body.as_object().unwrap() {
        assert_ne!(value, &json!(""), "`{key}` is an empty string");
    }
}

async fn set_status(app: &TestApp, version: &str, status: &str) {
    sqlx::query("UPDATE versions SET status = $1 WHERE name = $2")
        .bind(status)
        .bind(version)
        .execute(app.store.pool())
        .await
        .unwrap();
}

async fn default_version(app: &TestApp) -> Value {
    app.get("/projects/p/deployments/d").await.body["default_version"].clone()
}

#[tokio::test]
async fn a_version_with_only_a_name_reports_every_default() {
    let app = app().await;
    let body = create(&app, json!({"version": "v1"})).await;
    assert_shape(&body);
    let expected = json!({
        "deployment": "d", "version": "v1", "description": null, "language": "python3.7",
        "language_description": "Python 3.7", "status": "unavailable", "active_revision": null,
        "latest_build": null, "memory_allocation": 2048, "instance_type": "2048mb",
        "maximum_instances": 5, "minimum_instances": 0, "maximum_idle_time": 300, "labels": {},
        "last_file_upload": null, "monitoring": null, "default_notification_group": null,
        "request_retention_time": 604800, "request_retention_mode": "full",
        "maximum_queue_size_express": 100, "maximum_queue_size_batch": 100000,
        "has_request_method": false, "has_requests_method": false, "static_ip": false,
        "restart_request_interruption": false
    });
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&body[key], value, "{key}");
    }
    let fetched = app.get(&format!("{BASE}/v1")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body, body);
}

#[tokio::test]
async fn every_setting_is_stored_and_returned() {
    let app = app().await;
    let body = create(
        &app,
        json!({
            "version": "v1", "language": "r4.0", "instance_type": "512mb", "maximum_instances": 4,
            "minimum_instances": 1, "maximum_idle_time": 10, "description": "first",
            "labels": {"type": "version"}, "monitoring": "notification-group-1",
            "default_notification_group": "group-2", "request_retention_time": 86400,
            "request_retention_mode": "metadata", "maximum_queue_size_express": 7,
            "maximum_queue_size_batch": 8, "static_ip": true, "restart_request_interruption": true
        }),
    )
    .await;
    assert_eq!(body["language_description"], "R 4.0");
    assert_eq!(body["memory_allocation"], 512);
    assert_eq!(body["monitoring"], "notification-group-1");
    assert_eq!(body["request_retention_mode"], "metadata");
    assert_eq!(body["static_ip"], true);
    let gpu = create(
        &app,
        json!({"version": "gpu", "language": "python3.11_cuda", "instance_type": "16384mb_t4"}),
    )
    .await;
    assert_eq!(gpu["language_description"], "Python 3.11 (CUDA)");
    assert_eq!(gpu["memory_allocation"], 16384);
    let by_memory = create(&app, json!({"version": "mem", "memory_allocation": 256})).await;
    assert_eq!(by_memory["instance_type"], "256mb");
}

#[tokio::test]
async fn bounds_are_accepted_at_both_edges_and_refused_beyond() {
    let app = app().await;
    let accepted = [
        json!({"maximum_idle_time": 10}),
        json!({"maximum_idle_time": 3600}),
        json!({"memory_allocation": 256}),
        json!({"memory_allocation": 16384}),
        json!({"instance_type": "256mb"}),
        json!({"instance_type": "16384mb"}),
        json!({"maximum_instances": 0, "minimum_instances": 0}),
        json!({"maximum_instances": 1000}),
        json!({"minimum_instances": 5}),
        json!({"request_retention_time": 0}),
        json!({"maximum_queue_size_express": 0}),
        json!({"maximum_queue_size_batch": 10000000}),
    ];
    for (i, mut body) in accepted.into_iter().enumerate() {
        body["version"] = json!(format!("ok-{i}"));
        let response = app.post(BASE, body.clone()).await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "{body}: {}",
            response.body
        );
    }
    let before = app.snapshot().await;
    let refused: Vec<(Value, &str)> = vec![
        (
            json!({"maximum_idle_time": 9}),
            "maximum_idle_time must be between 10 and 3600",
        ),
        (json!({"maximum_idle_time": 3601}), "maximum_idle_time"),
        (
            json!({"instance_type": "16384mb_t4", "maximum_idle_time": 299}),
            "between 300 and 3600",
        ),
        (
            json!({"memory_allocation": 255}),
            "Unsupported memory_allocation",
        ),
        (
            json!({"memory_allocation": 16385}),
            "Unsupported memory_allocation",
        ),
        (json!({"instance_type": "128mb"}), "Unknown instance_type"),
        (json!({"instance_type": "32768mb"}), "Unknown instance_type"),
        (
            json!({"instance_type": "512mb", "memory_allocation": 1024}),
            "send one of them",
        ),
        (json!({"maximum_instances": -1}), "maximum_instances"),
        (json!({"maximum_instances": 1001}), "maximum_instances"),
        (
            json!({"minimum_instances": 6}),
            "must not exceed maximum_instances",
        ),
        (
            json!({"request_retention_time": -1}),
            "request_retention_time",
        ),
        (
            json!({"maximum_queue_size_batch": 10000001}),
            "maximum_queue_size_batch",
        ),
        (json!({"request_retention_mode": "all"}), "unknown variant"),
        (json!({"language": "python3.6"}), "Unsupported language"),
        (json!({"language": "cobol"}), "Unsupported language"),
        (json!({"maximum_instances": "5"}), "invalid type"),
        (json!({"maximum_instances": 2.5}), "invalid type"),
        (json!({"static_ip": "no"}), "invalid type"),
        (json!({"labels": {"bad key": "v"}}), "Invalid label key"),
        (json!({"description": "x".repeat(401)}), "at most 400"),
        (json!({"monitoring": "m".repeat(65)}), "monitoring"),
        (json!({"colour": "red"}), "unknown field `colour`"),
    ];
    for (mut body, expected) in refused {
        body["version"] = json!("refused");
        let response = app.post(BASE, body.clone()).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            response.error().contains(expected),
            "{body}: {}",
            response.error()
        );
    }
    for (body, expected) in [
        (json!({}), "`version` is required"),
        (json!({"version": "V1"}), "Invalid version name"),
        (json!({"version": "ok-0"}), "already exists"),
        (json!({"version": 1}), "invalid type"),
    ] {
        let response = app.post(BASE, body.clone()).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            response.error().contains(expected),
            "{body}: {}",
            response.error()
        );
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "refused requests changed nothing"
    );
}

#[tokio::test]
async fn update_merges_checks_again_and_renames_in_place() {
    let app = app().await;
    let created = create(
        &app,
        json!({"version": "v1", "minimum_instances": 2, "labels": {"a": "b"}, "monitoring": "g"}),
    )
    .await;
    let updated = app
        .patch(
            &format!("{BASE}/v1"),
            json!({"version": "v2", "memory_allocation": 4096, "description": "new",
            "labels": {"c": "d"}, "monitoring": null, "maximum_idle_time": 600}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_shape(&updated.body);
    assert_eq!(updated.body["id"], created["id"]);
    assert_eq!(updated.body["version"], "v2");
    assert_eq!(updated.body["instance_type"], "4096mb");
    assert_eq!(updated.body["labels"], json!({"c": "d"}));
    assert_eq!(updated.body["monitoring"], Value::Null);
    assert_eq!(
        updated.body["minimum_instances"], 2,
        "unsent fields keep their values"
    );
    assert_eq!(updated.body["creation_date"], created["creation_date"]);
    assert_eq!(
        app.get(&format!("{BASE}/v1")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&format!("{BASE}/v2")).await.body, updated.body);

    create(&app, json!({"version": "other"})).await;
    let before = app.snapshot().await;
    for (body, expected) in [
        (
            json!({"maximum_instances": 1}),
            "minimum_instances (2) must not exceed maximum_instances (1)",
        ),
        (json!({"version": "other"}), "already exists"),
        (json!({"language": "python3.9"}), "cannot be changed"),
        (json!({"instance_type": "3mb"}), "Unknown instance_type"),
        (json!({"maximum_idle_time": 0}), "maximum_idle_time"),
    ] {
        let response = app.patch(&format!("{BASE}/v2"), body.clone()).await;
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
async fn list_by_name_with_label_filter() {
    let app = app().await;
    create(&app, json!({"version": "b", "labels": {"stage": "prod"}})).await;
    create(&app, json!({"version": "a", "labels": {"stage": "dev"}})).await;
    create(&app, json!({"version": "c"})).await;
    let names = |body: &Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = app.get(BASE).await;
    assert_eq!(names(&all.body), vec!["a", "b", "c"]);
    all.body.as_array().unwrap().iter().for_each(assert_shape);
    assert_eq!(
        names(&app.get(&format!("{BASE}?labels=stage:prod")).await.body),
        vec!["b"]
    );
    assert_eq!(
        names(
            &app.get(&format!("{BASE}?labels=stage:prod,stage:dev"))
                .await
                .body
        ),
        vec!["a", "b"]
    );
    assert_eq!(
        app.get(&format!("{BASE}?labels=stage")).await.status,
        StatusCode::BAD_REQUEST
    );
    let deployment = app.get("/projects/p/deployments").await;
    assert_eq!(deployment.body[0]["number_of_versions"], 3);
}

#[tokio::test]
async fn the_first_version_becomes_default_and_only_available_ones_can_be_set() {
    let app = app().await;
    assert_eq!(default_version(&app).await, Value::Null);
    create(&app, json!({"version": "v1"})).await;
    assert_eq!(default_version(&app).await, "v1");
    create(&app, json!({"version": "v2"})).await;
    assert_eq!(
        default_version(&app).await,
        "v1",
        "only the first becomes default"
    );

    let before = app.snapshot().await;
    let unavailable = app
        .patch(
            "/projects/p/deployments/d",
            json!({"default_version": "v2"}),
        )
        .await;
    assert_eq!(unavailable.status, StatusCode::BAD_REQUEST);
    assert!(
        unavailable
            .error()
            .contains("only an available version can be the default"),
        "{}",
        unavailable.error()
    );
    let missing = app
        .patch(
            "/projects/p/deployments/d",
            json!({"default_version": "v9"}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(missing.error().contains("has no such version"));
    set_status(&app, "v2", "building").await;
    let building = app
        .patch(
            "/projects/p/deployments/d",
            json!({"default_version": "v2"}),
        )
        .await;
    assert!(building.error().contains("it is building"));
    set_status(&app, "v2", "unavailable").await;
    assert_eq!(app.snapshot().await, before);

    // A build that succeeded makes the version available (driven by builds later).
    set_status(&app, "v2", "available").await;
    assert_eq!(
        app.get(&format!("{BASE}/v2")).await.body["status"],
        "available"
    );
    let changed = app
        .patch(
            "/projects/p/deployments/d",
            json!({"default_version": "v2"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["default_version"], "v2");

    // Renaming the default keeps it default; deleting it leaves none.
    app.patch(&format!("{BASE}/v2"), json!({"version": "v2-renamed"}))
        .await;
    assert_eq!(default_version(&app).await, "v2-renamed");
    assert_eq!(
        app.delete(&format!("{BASE}/v2-renamed")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(default_version(&app).await, Value::Null);
    create(&app, json!({"version": "v3"})).await;
    assert_eq!(
        default_version(&app).await,
        Value::Null,
        "v1 still exists, so v3 is not a first version"
    );
}

#[tokio::test]
async fn concurrent_first_versions_yield_exactly_one_default() {
    for round in 0..3 {
        let app = app().await;
        let creates = (0..12).map(|i| app.post(BASE, json!({"version": format!("v{i}")})));
        let responses = futures::future::join_all(creates).await;
        assert!(
            responses.iter().all(|r| r.status == StatusCode::CREATED),
            "round {round}"
        );
        let default = default_version(&app).await;
        assert!(
            default.as_str().is_some_and(|name| name.starts_with('v')),
            "round {round}: {default}"
        );
        let defaults: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deployments WHERE default_version_id IS NOT NULL",
        )
        .fetch_one(app.store.pool())
        .await
        .unwrap();
        assert_eq!(defaults, 1);
        // And the same name twice at once: one wins, the other is told why.
        let twins =
            futures::future::join_all((0..8).map(|_| app.post(BASE, json!({"version": "twin"}))))
                .await;
        assert_eq!(
            twins
                .iter()
                .filter(|r| r.status == StatusCode::CREATED)
                .count(),
            1
        );
        assert!(twins
            .iter()
            .filter(|r| r.status != StatusCode::CREATED)
            .all(|r| r.status == StatusCode::BAD_REQUEST));
    }
}

#[tokio::test]
async fn delete_and_not_found() {
    let app = app().await;
    create(&app, json!({"version": "v1"})).await;
    assert_eq!(
        app.delete(&format!("{BASE}/v1")).await.status,
        StatusCode::NO_CONTENT
    );
    for response in [
        app.get(&format!("{BASE}/v1")).await,
        app.patch(&format!("{BASE}/v1"), json!({})).await,
        app.delete(&format!("{BASE}/v1")).await,
        app.get("/projects/p/deployments/ghost/versions").await,
        app.post(
            "/projects/p/deployments/ghost/versions",
            json!({"version": "v1"}),
        )
        .await,
        app.get("/projects/ghost/deployments/d/versions/v1").await,
    ] {
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
        assert!(response.error().contains("not found"));
    }
}

#[tokio::test]
async fn deleting_a_deployment_removes_its_versions() {
    let app = app().await;
    create(&app, json!({"version": "v1"})).await;
    create(&app, json!({"version": "v2"})).await;
    assert_eq!(
        app.delete("/projects/p/deployments/d").await.status,
        StatusCode::NO_CONTENT
    );
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM versions")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(versions, 0);
}

#[tokio::test]
async fn version_changes_appear_in_the_deployment_audit_list() {
    let app = app().await;
    create(&app, json!({"version": "v1"})).await;
    app.patch(&format!("{BASE}/v1"), json!({"description": "x"}))
        .await;
    app.patch(&format!("{BASE}/v1"), json!({"version": "v2"}))
        .await;
    app.delete(&format!("{BASE}/v2")).await;
    let audit = app.get("/projects/p/deployments/d/audit").await;
    let events: Vec<(&str, &str)> = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["event"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        vec![
            ("delete", "Deleted version v2 for deployment d"),
            ("update", "Renamed version v1 to v2 for deployment d"),
            ("update", "Updated version v1 for deployment d"),
            ("create", "Created version v1 for deployment d"),
            ("create", "Created deployment d"),
        ]
    );
    assert_eq!(audit.body[0]["object_type"], "deployment");
    assert_eq!(audit.body[0]["object_name"], "d");
}

/// Everything 4.x's `DeploymentVersionCreate` can send, with values other
/// than the defaults.
fn newer_clients_settings() -> Value {
    json!({
        "environment": "python3-11", "environment_tag": "latest",
        "instance_type_group_name": "1024mb", "maximum_instances": 3, "minimum_instances": 1,
        "maximum_idle_time": 60, "description": "every 4.x field", "labels": {"k": "v"},
        "request_retention_time": 3600, "request_retention_mode": "none",
        "maximum_queue_size": 250, "restart_request_interruption": true,
        "ports": [{"public_port": 2222, "deployment_port": 22, "protocol": "tcp"}],
        "scaling_strategy": "accelerated", "instance_processes": 2,
        "health_check": {"port": 8080, "path": "/status", "timeout": 3, "interval": 5,
                         "failure_threshold": 3},
        "command": ["python", "serve.py"], "args": ["--port", "8080"]
    })
}

#[tokio::test]
async fn newer_clients_settings_round_trip_through_create_get_list_and_update() {
    let app = app().await;
    let mut body = newer_clients_settings();
    body["version"] = json!("v1");
    let created = create(&app, body.clone()).await;
    assert_shape(&created);
    for (key, value) in body.as_object().unwrap() {
        if key != "environment" && key != "instance_type_group_name" {
            assert_eq!(&created[key], value, "{key}");
        }
    }
    assert_eq!(
        (
            &created["environment_name"],
            &created["instance_type_group_name"]
        ),
        (&json!("python3-11"), &json!("1024mb"))
    );
    // One queue size for 4.x is both of API v2.1's.
    assert_eq!(
        (
            &created["maximum_queue_size_express"],
            &created["maximum_queue_size_batch"]
        ),
        (&json!(250), &json!(250))
    );
    assert_eq!(app.get(&format!("{BASE}/v1")).await.body, created);
    let listed = app.get(BASE).await.body;
    assert_eq!(listed[0], created);

    let updated = app
        .patch(
            &format!("{BASE}/v1"),
            json!({
                "scaling_strategy": "moderate", "instance_processes": 1, "maximum_queue_size": 9,
                "ports": [], "health_check": {"port": 81, "path": "/"}, "args": null,
                "environment_tag": null
            }),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let expected = json!({
        "scaling_strategy": "moderate", "instance_processes": 1, "maximum_queue_size": 9,
        "maximum_queue_size_express": 9, "ports": [], "args": null, "environment_tag": null,
        "command": ["python", "serve.py"],
        "health_check": {"port": 81, "path": "/", "interval": null, "timeout": null,
                         "failure_threshold": 1}
    });
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&updated.body[key], value, "{key}");
    }
    assert_eq!(app.get(&format!("{BASE}/v1")).await.body, updated.body);
}

#[tokio::test]
async fn versions_created_with_api_v2_1_fields_show_the_newer_defaults() {
    let app = app().await;
    let body = create(
        &app,
        json!({"version": "v1", "maximum_queue_size_express": 5}),
    )
    .await;
    let expected = json!({
        "environment_tag": null, "scaling_strategy": "default", "instance_processes": 1,
        "ports": [], "health_check": null, "command": null, "args": null,
        "maximum_queue_size": 100000, "maximum_queue_size_express": 5
    });
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&body[key], value, "{key}");
    }
}

#[tokio::test]
async fn bad_newer_settings_are_refused_naming_the_field() {
    let app = app().await;
    for (bad, named) in [
        (json!({"scaling_strategy": "fast"}), "scaling_strategy"),
        (json!({"instance_processes": 0}), "instance_processes"),
        (json!({"maximum_queue_size": -1}), "maximum_queue_size"),
        (
            json!({"maximum_queue_size": 10, "maximum_queue_size_express": 11}),
            "maximum_queue_size_express",
        ),
        (
            json!({"ports": [{"public_port": 70000, "deployment_port": 22, "protocol": "tcp"}]}),
            "ports[0].public_port",
        ),
        (
            json!({"ports": [{"public_port": 22, "deployment_port": 22, "protocol": "sctp"}]}),
            "ports[0].protocol",
        ),
        (json!({"ports": "22"}), "ports"),
        (
            json!({"health_check": {"path": "/status"}}),
            "health_check.port",
        ),
        (
            json!({"health_check": {"port": 80, "path": "status"}}),
            "health_check.path",
        ),
        (
            json!({"health_check": {"port": 80, "path": "/", "interval": 0}}),
            "health_check.interval",
        ),
        (
            json!({"health_check": {"port": 80, "path": "/", "retries": 3}}),
            "retries",
        ),
        (json!({"command": "python serve.py"}), "command"),
        (json!({"args": [1, 2]}), "args"),
        (json!({"environment_tag": "v1"}), "environment_tag"),
    ] {
        let mut body = bad.clone();
        body["version"] = json!("v1");
        let response = app.post(BASE, body).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            response.body
        );
        assert!(
            response.error().contains(named),
            "{bad}: {}",
            response.error()
        );
    }
    assert_eq!(app.get(BASE).await.body, json!([]));
}

#[tokio::test]
async fn environment_tags_are_those_the_environment_lists() {
    let app = app().await;
    let tags = app
        .get("/projects/p/environments/python3-10/tags")
        .await
        .body;
    let listed: Vec<&str> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| tag["name"].as_str().unwrap())
        .collect();
    for tag in &listed {
        let body = create(
            &app,
            json!({"version": format!("v-{tag}"), "environment": "python3-10", "environment_tag": tag}),
        )
        .await;
        assert_eq!(body["environment_tag"], *tag);
    }
    let refused = app
        .post(
            BASE,
            json!({"version": "v2", "environment": "python3-10", "environment_tag": "v1"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.error(),
        format!(
            "Unknown environment_tag 'v1' for environment 'python3-10': use one of {}",
            listed.join(", ")
        )
    );
    let refused = app
        .patch(
            &format!("{BASE}/v-latest"),
            json!({"environment_tag": "nightly"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(refused.error().contains("environment_tag 'nightly'"));
}

#[tokio::test]
async fn the_default_flag_follows_the_deployments_default_version() {
    let app = app().await;
    let first = create(&app, json!({"version": "v1"})).await;
    let second = create(&app, json!({"version": "v2"})).await;
    assert_eq!(
        (&first["default"], &second["default"]),
        (&json!(true), &json!(false))
    );
    let flags = |list: Value| -> Vec<(String, bool)> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["version"].as_str().unwrap().to_owned(),
                    v["default"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        flags(app.get(BASE).await.body),
        [("v1".to_owned(), true), ("v2".to_owned(), false)]
    );
    set_status(&app, "v2", "available").await;
    let switched = app
        .patch(
            "/projects/p/deployments/d",
            json!({"default_version": "v2"}),
        )
        .await;
    assert_eq!(switched.status, StatusCode::OK, "{}", switched.body);
    assert_eq!(app.get(&format!("{BASE}/v2")).await.body["default"], true);
    assert_eq!(app.get(&format!("{BASE}/v1")).await.body["default"], false);
    let renamed = app
        .patch(&format!("{BASE}/v2"), json!({"description": "d"}))
        .await;
    assert_eq!(renamed.body["default"], true);
}

#[tokio::test]
async fn changing_the_environment_rebuilds_the_active_revision_in_it() {
    use crate::builds::{deployment_zip, run_build, upload_and_build};

    let app = app().await;
    create(&app, json!({"version": "v1", "environment": "python3-10"})).await;
    // Without an active revision the environment just changes.
    let changed = app
        .patch(&format!("{BASE}/v1"), json!({"environment": "python3-11"}))
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(
        (
            &changed.body["environment_name"],
            &changed.body["status"],
            &changed.body["latest_build"]
        ),
        (&json!("python3-11"), &json!("unavailable"), &Value::Null)
    );

    let version = format!("{BASE}/v1");
    let (uploaded, built) = upload_and_build(&app, &version, deployment_zip()).await;
    assert_eq!(built["status"], "success", "{built}");
    let changed = app
        .patch(&version, json!({"environment": "python2-7"}))
        .await;
    assert_eq!(changed.status, StatusCode::BAD_REQUEST, "{}", changed.body);
    assert!(changed
        .error()
        .starts_with("Unknown environment 'python2-7'"));

    let changed = app
        .patch(&version, json!({"environment": "python3-9"}))
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["status"], "building");
    assert_eq!(changed.body["environment_name"], "python3-9");
    assert_eq!(changed.body["language"], "python3.9");
    assert_ne!(changed.body["latest_build"], built["id"]);
    assert_eq!(changed.body["latest_revision"], uploaded["revision"]);
    let rebuild = run_build(&app, &version, &changed.body["latest_build"]).await;
    assert_eq!(
        (
            &rebuild["status"],
            &rebuild["trigger"],
            &rebuild["revision"]
        ),
        (&json!("success"), &json!("Rebuild"), &uploaded["revision"])
    );
    let after = app.get(&version).await.body;
    assert_eq!(
        (
            &after["status"],
            &after["environment_name"],
            &after["active_revision"]
        ),
        (
            &json!("available"),
            &json!("python3-9"),
            &uploaded["revision"]
        )
    );
    // The same environment again queues nothing.
    let same = app
        .patch(&version, json!({"environment": "python3-9"}))
        .await;
    assert_eq!(same.body["latest_build"], changed.body["latest_build"]);
    // 3.13's `language` stays fixed, as documented for API v2.1.
    let refused = app.patch(&version, json!({"language": "python3.8"})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.error().contains("`language` cannot be changed"));
}

#[tokio::test]
async fn changing_the_environment_while_a_build_is_pending_rebuilds_the_pending_revision() {
    use crate::builds::{deployment_zip, run_build, upload, upload_and_build};

    let app = app().await;
    create(&app, json!({"version": "v1", "environment": "python3-10"})).await;
    let version = format!("{BASE}/v1");
    let (first, _) = upload_and_build(&app, &version, deployment_zip()).await;
    // A newer upload waits for a worker while the environment changes.
    let second = upload(&app, &version, deployment_zip(), "second.zip").await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    assert_ne!(second.body["revision"], first["revision"]);
    let changed = app
        .patch(&version, json!({"environment": "python3-11"}))
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_ne!(changed.body["latest_build"], second.body["build"]);
    assert_eq!(changed.body["latest_revision"], second.body["revision"]);

    app.run_pending_builds().await;
    for build in [&second.body["build"], &changed.body["latest_build"]] {
        assert_eq!(run_build(&app, &version, build).await["status"], "success");
    }
    let after = app.get(&version).await.body;
    assert_eq!(
        (
            &after["status"],
            &after["environment_name"],
            &after["active_revision"]
        ),
        (
            &json!("available"),
            &json!("python3-11"),
            &second.body["revision"]
        )
    );
}
