use reqwest::StatusCode;
use serde_json::{json, Value};
use ubiops_test_support::TestApp;

const PROJECT: &str = "/projects/p";
const DEPLOYMENT: &str = "/projects/p/deployments/d";
const VERSION: &str = "/projects/p/deployments/d/versions/v1";
const SCOPES: [&str; 3] = [PROJECT, DEPLOYMENT, VERSION];

async fn app() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1", "v2"]).await;
    app.create_deployment("p", "e", &[]).await;
    app
}

async fn create(app: &TestApp, scope: &str, name: &str, value: &str, secret: bool) -> Value {
    let response = app
        .post(
            &format!("{scope}/environment-variables"),
            json!({"name": name, "value": value, "secret": secret}),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::CREATED,
        "{scope} {name}: {}",
        response.body
    );
    response.body
}

/// (name, value, inheritance_type, inheritance_name) of a list, in order.
async fn listed(app: &TestApp, scope: &str) -> Vec<(String, Value, Value, Value)> {
    let response = app.get(&format!("{scope}/environment-variables")).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_owned(),
                v["value"].clone(),
                v["inheritance_type"].clone(),
                v["inheritance_name"].clone(),
            )
        })
        .collect()
}

fn row(
    name: &str,
    value: &str,
    kind: Option<&str>,
    from: Option<&str>,
) -> (String, Value, Value, Value) {
    (name.to_owned(), json!(value), json!(kind), json!(from))
}

#[tokio::test]
async fn crud_works_the_same_at_every_scope() {
    let app = app().await;
    for scope in SCOPES {
        let base = format!("{scope}/environment-variables");
        let created = create(&app, scope, "deployment_variable_a", "some_value", false).await;
        assert_eq!(created["value"], "some_value");
        assert_eq!(created["secret"], false);
        for field in ["id", "name", "value", "secret"] {
            assert!(created.get(field).is_some(), "{field}");
        }
        let id = created["id"].as_str().unwrap();
        let fetched = app.get(&format!("{base}/{id}")).await;
        assert_eq!(fetched.status, StatusCode::OK);
        assert_eq!(fetched.body, created);
        let updated = app
            .patch(
                &format!("{base}/{id}"),
                json!({"name": "RENAMED_1", "value": "", "secret": false}),
            )
            .await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
        assert_eq!(
            (updated.body["name"].clone(), updated.body["value"].clone()),
            (json!("RENAMED_1"), json!(""))
        );
        assert_eq!(updated.body["id"], created["id"]);
        assert_eq!(
            app.delete(&format!("{base}/{id}")).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            app.get(&format!("{base}/{id}")).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app.delete(&format!("{base}/{id}")).await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            app.get(&format!("{base}/not-a-uuid")).await.status,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn lists_show_inherited_variables_unless_shadowed() {
    let app = app().await;
    create(&app, PROJECT, "A", "project-a", false).await;
    create(&app, PROJECT, "B", "project-b", false).await;
    create(&app, PROJECT, "C", "project-c", false).await;
    create(&app, DEPLOYMENT, "B", "deployment-b", false).await;
    create(&app, DEPLOYMENT, "C", "deployment-c", false).await;
    create(&app, DEPLOYMENT, "D", "deployment-d", false).await;
    create(&app, VERSION, "C", "version-c", false).await;
    create(&app, VERSION, "E", "version-e", false).await;

    assert_eq!(
        listed(&app, PROJECT).await,
        vec![
            row("A", "project-a", None, None),
            row("B", "project-b", None, None),
            row("C", "project-c", None, None),
        ]
    );
    assert_eq!(
        listed(&app, DEPLOYMENT).await,
        vec![
            row("A", "project-a", Some("project"), Some("p")),
            row("B", "deployment-b", None, None),
            row("C", "deployment-c", None, None),
            row("D", "deployment-d", None, None),
        ]
    );
    assert_eq!(
        listed(&app, VERSION).await,
        vec![
            row("A", "project-a", Some("project"), Some("p")),
            row("B", "deployment-b", Some("deployment"), Some("d")),
            row("C", "version-c", None, None),
            row("D", "deployment-d", Some("deployment"), Some("d")),
            row("E", "version-e", None, None),
        ]
    );
    // Another version and another deployment see only what applies to them.
    assert_eq!(
        listed(&app, "/projects/p/deployments/d/versions/v2")
            .await
            .len(),
        4
    );
    assert_eq!(
        listed(&app, "/projects/p/deployments/e").await,
        vec![
            row("A", "project-a", Some("project"), Some("p")),
            row("B", "project-b", Some("project"), Some("p")),
            row("C", "project-c", Some("project"), Some("p")),
        ]
    );

    // An inherited id is not reachable from the inheriting scope.
    let inherited = app
        .get(&format!("{VERSION}/environment-variables"))
        .await
        .body[0]["id"]
        .clone();
    let path = format!(
        "{VERSION}/environment-variables/{}",
        inherited.as_str().unwrap()
    );
    let before = app.snapshot().await;
    assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.patch(&path, json!({"name": "A", "value": "x", "secret": false}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.delete(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn secret_values_never_come_back() {
    let app = app().await;
    for scope in SCOPES {
        let created = create(&app, scope, "PASSWORD", "hunter2", true).await;
        assert_eq!(created["value"], Value::Null);
        assert_eq!(created["secret"], true);
        let id = created["id"].as_str().unwrap();
        let base = format!("{scope}/environment-variables");
        assert_eq!(
            app.get(&format!("{base}/{id}")).await.body["value"],
            Value::Null
        );
        let updated = app
            .patch(
                &format!("{base}/{id}"),
                json!({"name": "PASSWORD", "value": "hunter3", "secret": true}),
            )
            .await;
        assert_eq!(updated.status, StatusCode::OK);
        assert_eq!(updated.body["value"], Value::Null);
        let before = app.snapshot().await;
        let unsecret = app
            .patch(
                &format!("{base}/{id}"),
                json!({"name": "PASSWORD", "value": "x", "secret": false}),
            )
            .await;
        assert_eq!(unsecret.status, StatusCode::BAD_REQUEST);
        assert!(unsecret.error().contains("cannot be made non-secret"));
        assert_eq!(app.snapshot().await, before);
        // false -> true is allowed, and hides the value from then on.
        let plain = create(&app, scope, "TOKEN", "visible", false).await;
        let made_secret = app
            .patch(
                &format!("{base}/{}", plain["id"].as_str().unwrap()),
                json!({"name": "TOKEN", "value": "visible", "secret": true}),
            )
            .await;
        assert_eq!(
            (
                made_secret.body["secret"].clone(),
                made_secret.body["value"].clone()
            ),
            (json!(true), Value::Null)
        );
    }
    for scope in SCOPES {
        for (name, value, _, _) in listed(&app, scope).await {
            assert_eq!(value, Value::Null, "{scope} {name}");
        }
    }
    let values: Vec<Option<String>> = sqlx::query_scalar("SELECT value FROM environment_variables")
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    assert!(
        values.iter().all(Option::is_none),
        "secrets are stored sealed only"
    );
}

#[tokio::test]
async fn copy_overwrites_same_names_and_returns_only_the_copied() {
    let app = app().await;
    create(&app, PROJECT, "INHERITED", "not copied", false).await;
    create(
        &app,
        "/projects/p/deployments/e",
        "HOST",
        "db.internal",
        false,
    )
    .await;
    create(
        &app,
        "/projects/p/deployments/e",
        "PASSWORD",
        "from-e",
        true,
    )
    .await;
    create(
        &app,
        "/projects/p/deployments/e",
        "PLAIN_OVER_SECRET",
        "now-plain",
        false,
    )
    .await;
    let target_password = create(&app, DEPLOYMENT, "PASSWORD", "old", false).await;
    let target_secret = create(&app, DEPLOYMENT, "PLAIN_OVER_SECRET", "old-secret", true).await;
    create(&app, DEPLOYMENT, "UNTOUCHED", "stays", false).await;

    let copied = app
        .post(
            &format!("{DEPLOYMENT}/copy-environment-variables"),
            json!({"source_deployment": "e"}),
        )
        .await;
    assert_eq!(copied.status, StatusCode::OK, "{}", copied.body);
    let copied = copied.body.as_array().unwrap().clone();
    let summary: Vec<(&str, &Value, &Value, &Value, &Value)> = copied
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap(),
                &v["value"],
                &v["secret"],
                &v["inheritance_type"],
                &v["inheritance_name"],
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "HOST",
                &json!("db.internal"),
                &json!(false),
                &Value::Null,
                &Value::Null
            ),
            (
                "PASSWORD",
                &Value::Null,
                &json!(true),
                &Value::Null,
                &Value::Null
            ),
            (
                "PLAIN_OVER_SECRET",
                &Value::Null,
                &json!(true),
                &Value::Null,
                &Value::Null
            ),
        ]
    );
    // Overwritten in place (same ids); a target secret stays secret.
    assert_eq!(copied[1]["id"], target_password["id"]);
    assert_eq!(copied[2]["id"], target_secret["id"]);
    let after = listed(&app, DEPLOYMENT).await;
    let names: Vec<&str> = after.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "HOST",
            "INHERITED",
            "PASSWORD",
            "PLAIN_OVER_SECRET",
            "UNTOUCHED"
        ]
    );

    // From a version to a version (source_version), and from a deployment into a version.
    create(&app, VERSION, "V_ONLY", "v1-value", false).await;
    let to_v2 = app
        .post(
            "/projects/p/deployments/d/versions/v2/copy-environment-variables",
            json!({"source_deployment": "d", "source_version": "v1"}),
        )
        .await;
    assert_eq!(to_v2.status, StatusCode::OK);
    assert_eq!(to_v2.body.as_array().unwrap().len(), 1);
    assert_eq!(to_v2.body[0]["name"], "V_ONLY");
    let into_version = app
        .post(
            &format!("{VERSION}/copy-environment-variables"),
            json!({"source_deployment": "e"}),
        )
        .await;
    assert_eq!(into_version.body.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn copy_sources_must_exist_in_the_same_project() {
    let app = app().await;
    app.create_project("other").await;
    app.post(
        "/projects/other/deployments",
        json!({"name": "secretive", "input_type": "plain", "output_type": "plain"}),
    )
    .await;
    app.post(
        "/projects/other/environment-variables",
        json!({"name": "X", "value": "y", "secret": false}),
    )
    .await;
    let before = app.snapshot().await;
    for (body, expected) in [
        (
            json!({"source_deployment": "ghost"}),
            "Deployment 'ghost' not found",
        ),
        (
            json!({"source_deployment": "secretive"}),
            "Deployment 'secretive' not found",
        ),
        (
            json!({"source_deployment": "d", "source_version": "ghost"}),
            "Version 'ghost' not found",
        ),
    ] {
        let response = app
            .post(
                &format!("{DEPLOYMENT}/copy-environment-variables"),
                body.clone(),
            )
            .await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(response.error(), expected);
    }
    for (body, expected) in [
        (json!({}), "missing field `source_deployment`"),
        (json!({"source_deployment": 3}), "invalid type"),
        (
            json!({"source_deployment": "e", "extra": 1}),
            "unknown field",
        ),
    ] {
        let response = app
            .post(
                &format!("{DEPLOYMENT}/copy-environment-variables"),
                body.clone(),
            )
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(response.error().contains(expected), "{}", response.error());
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn bad_variables_are_400_and_change_nothing() {
    let app = app().await;
    for scope in SCOPES {
        let existing = create(&app, scope, "TAKEN", "v", false).await;
        create(&app, scope, "OTHER", "v", false).await;
        let before = app.snapshot().await;
        let base = format!("{scope}/environment-variables");
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"name": "TAKEN", "value": "v", "secret": false}),
                "already exists",
            ),
            (
                json!({"name": "_A", "value": "v", "secret": false}),
                "Invalid variable name",
            ),
            (
                json!({"name": "A_", "value": "v", "secret": false}),
                "Invalid variable name",
            ),
            (
                json!({"name": "1A", "value": "v", "secret": false}),
                "Invalid variable name",
            ),
            (
                json!({"name": "A-B", "value": "v", "secret": false}),
                "Invalid variable name",
            ),
            (
                json!({"name": "", "value": "v", "secret": false}),
                "Invalid variable name",
            ),
            (
                json!({"name": "A".repeat(65), "value": "v", "secret": false}),
                "Invalid variable name",
            ),
            (
                json!({"name": "A", "value": "x".repeat(65537), "secret": false}),
                "too long",
            ),
            (
                json!({"name": "A", "value": 5, "secret": false}),
                "invalid type",
            ),
            (
                json!({"name": "A", "value": null, "secret": false}),
                "invalid type",
            ),
            (
                json!({"name": "A", "secret": false}),
                "missing field `value`",
            ),
            (json!({"name": "A", "value": "v"}), "missing field `secret`"),
            (
                json!({"name": "A", "value": "v", "secret": "true"}),
                "invalid type",
            ),
            (
                json!({"name": "A", "value": "v", "secret": false, "inherit": true}),
                "unknown field",
            ),
        ];
        for (body, expected) in &cases {
            let response = app.post(&base, body.clone()).await;
            assert_eq!(response.status, StatusCode::BAD_REQUEST, "{scope} {body}");
            assert!(
                response.error().contains(expected),
                "{body}: {}",
                response.error()
            );
        }
        // The same rules on update, plus renaming onto a taken name.
        let path = format!("{base}/{}", existing["id"].as_str().unwrap());
        let rename = app
            .patch(
                &path,
                json!({"name": "OTHER", "value": "v", "secret": false}),
            )
            .await;
        assert_eq!(rename.status, StatusCode::BAD_REQUEST);
        assert!(rename.error().contains("already exists"));
        let bad = app
            .patch(
                &path,
                json!({"name": "bad name", "value": "v", "secret": false}),
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(app.snapshot().await, before, "{scope}");
    }
    // The same name in different scopes is fine; names are case-sensitive.
    create(&app, "/projects/p/deployments/e", "TAKEN", "v", false).await;
    create(&app, DEPLOYMENT, "taken", "v", false).await;
}

#[tokio::test]
async fn audit_events_name_the_variable_never_the_value() {
    let app = app().await;
    let created = create(&app, DEPLOYMENT, "API_KEY", "sk-live-123456", true).await;
    let path = format!(
        "{DEPLOYMENT}/environment-variables/{}",
        created["id"].as_str().unwrap()
    );
    app.patch(
        &path,
        json!({"name": "API_KEY", "value": "sk-live-789", "secret": true}),
    )
    .await;
    create(&app, VERSION, "LEVEL", "debug-value", false).await;
    app.post(
        &format!("{VERSION}/copy-environment-variables"),
        json!({"source_deployment": "d"}),
    )
    .await;
    app.delete(&path).await;
    let audit = app.get("/projects/p/deployments/d/audit").await;
    let events: Vec<&str> = audit
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .take(5)
        .collect();
    assert_eq!(
        events,
        vec![
        "Deleted environment variable API_KEY for deployment d",
        "Copied environment variables [API_KEY] from deployment d to version v1 of deployment d",
        "Created environment variable LEVEL for version v1 of deployment d",
        "Updated environment variable API_KEY for deployment d",
        "Created environment variable API_KEY for deployment d",
    ]
    );
    let all_events: String = sqlx::query_scalar(
        "SELECT string_agg(event || coalesce(object_name, ''), ' ') FROM audit_events",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    for secret in ["sk-live-123456", "sk-live-789", "debug-value"] {
        assert!(
            !all_events.contains(secret),
            "{secret} reached an audit event"
        );
    }
    // Project variables are audited too, outside any deployment's list.
    create(&app, PROJECT, "GLOBAL", "g", false).await;
    let (object_type, event): (String, String) = sqlx::query_as(
        "SELECT object_type, event FROM audit_events WHERE deployment_id IS NULL ORDER BY seq DESC LIMIT 1")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(
        (object_type.as_str(), event.as_str()),
        (
            "project",
            "Created environment variable GLOBAL for project p"
        )
    );
}

#[tokio::test]
async fn deleting_a_deployment_or_version_removes_its_variables() {
    let app = app().await;
    create(&app, PROJECT, "KEEP", "v", false).await;
    create(&app, DEPLOYMENT, "D_VAR", "v", false).await;
    create(&app, VERSION, "V_VAR", "v", false).await;
    create(
        &app,
        "/projects/p/deployments/d/versions/v2",
        "V2_VAR",
        "v",
        false,
    )
    .await;
    let count = || async {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM environment_variables ORDER BY name")
                .fetch_all(app.store.pool())
                .await
                .unwrap();
        names
    };
    app.delete(VERSION).await;
    assert_eq!(count().await, vec!["D_VAR", "KEEP", "V2_VAR"]);
    app.delete(DEPLOYMENT).await;
    assert_eq!(count().await, vec!["KEEP"]);
}

#[tokio::test]
async fn a_limited_token_cannot_reach_other_projects_variables() {
    let app = app().await;
    app.create_project("mine").await;
    let limited = app.token("limited@example.com", Some(&["mine"])).await;
    for path in [
        "/projects/p/environment-variables",
        "/projects/p/deployments/d/environment-variables",
        "/projects/p/deployments/d/versions/v1/environment-variables",
    ] {
        let response = app
            .call_as(&limited, reqwest::Method::GET, path, None)
            .await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{path}");
    }
    let copy = app
        .call_as(
            &limited,
            reqwest::Method::POST,
            "/projects/p/deployments/d/copy-environment-variables",
            Some(json!({"source_deployment": "e"})),
        )
        .await;
    assert_eq!(copy.status, StatusCode::FORBIDDEN);
}

/// A scope's list, read twice: the second answer comes from the rendering
/// the server keeps by the versions of the scope's rows (`ScopeStamp`), and
/// must equal the first.
async fn listed_twice(app: &TestApp, scope: &str) -> Vec<(String, Value, Value, Value)> {
    let first = listed(app, scope).await;
    assert_eq!(
        listed(app, scope).await,
        first,
        "{scope}: kept list differs"
    );
    first
}

#[tokio::test]
async fn kept_lists_follow_every_change_at_every_level() {
    let app = app().await;
    let project_a = create(&app, PROJECT, "A", "project-a", false).await;
    let version_c = create(&app, VERSION, "C", "version-c", false).await;
    let from_project = |name: &str, value: &str| row(name, value, Some("project"), Some("p"));
    assert_eq!(
        listed_twice(&app, VERSION).await,
        [
            from_project("A", "project-a"),
            row("C", "version-c", None, None)
        ]
    );
    assert_eq!(
        listed_twice(&app, DEPLOYMENT).await,
        [from_project("A", "project-a")]
    );

    // A project variable changes: every list that inherits it shows it.
    let a_path = format!(
        "{PROJECT}/environment-variables/{}",
        project_a["id"].as_str().unwrap()
    );
    let updated = app
        .patch(
            &a_path,
            json!({"name": "A", "value": "changed", "secret": false}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(
        listed_twice(&app, VERSION).await,
        [
            from_project("A", "changed"),
            row("C", "version-c", None, None)
        ]
    );
    assert_eq!(
        listed_twice(&app, DEPLOYMENT).await,
        [from_project("A", "changed")]
    );
    assert_eq!(
        listed_twice(&app, PROJECT).await,
        [row("A", "changed", None, None)]
    );

    // A deployment variable is created; a version variable is deleted.
    create(&app, DEPLOYMENT, "B", "deployment-b", false).await;
    let c_path = format!(
        "{VERSION}/environment-variables/{}",
        version_c["id"].as_str().unwrap()
    );
    assert_eq!(app.delete(&c_path).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        listed_twice(&app, VERSION).await,
        [
            from_project("A", "changed"),
            row("B", "deployment-b", Some("deployment"), Some("d")),
        ]
    );

    // Copied in from another deployment.
    create(&app, "/projects/p/deployments/e", "Z", "from-e", false).await;
    let copied = app
        .post(
            &format!("{VERSION}/copy-environment-variables"),
            json!({"source_deployment": "e"}),
        )
        .await;
    assert_eq!(copied.status, StatusCode::OK, "{}", copied.body);
    assert_eq!(
        listed_twice(&app, VERSION).await,
        [
            from_project("A", "changed"),
            row("B", "deployment-b", Some("deployment"), Some("d")),
            row("Z", "from-e", None, None),
        ]
    );

    // Renaming the deployment changes the name inherited variables show.
    let renamed = app.patch(DEPLOYMENT, json!({"name": "renamed"})).await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    let version = "/projects/p/deployments/renamed/versions/v1";
    assert_eq!(
        listed_twice(&app, version).await,
        [
            from_project("A", "changed"),
            row("B", "deployment-b", Some("deployment"), Some("renamed")),
            row("Z", "from-e", None, None),
        ]
    );

    // A variable made secret no longer shows its value anywhere.
    let secret = app
        .patch(
            &a_path,
            json!({"name": "A", "value": "hidden", "secret": true}),
        )
        .await;
    assert_eq!(secret.status, StatusCode::OK, "{}", secret.body);
    assert_eq!(listed_twice(&app, version).await[0].1, Value::Null);
    assert_eq!(listed_twice(&app, PROJECT).await[0].1, Value::Null);

    // A version deleted and made again under the same name starts empty.
    let deployment = "/projects/p/deployments/renamed";
    assert_eq!(app.delete(version).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("{version}/environment-variables"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let recreated = app
        .post(&format!("{deployment}/versions"), json!({"version": "v1"}))
        .await;
    assert_eq!(recreated.status, StatusCode::CREATED, "{}", recreated.body);
    assert_eq!(
        listed_twice(&app, version).await,
        [
            ("A".to_owned(), Value::Null, json!("project"), json!("p")),
            row("B", "deployment-b", Some("deployment"), Some("renamed")),
        ]
    );
}
