use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ubiops_test_support::TestApp;

async fn app_with_history() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.post(
        "/projects/p/deployments",
        json!({"name": "d", "input_type": "plain", "output_type": "plain"}),
    )
    .await;
    app.patch("/projects/p/deployments/d", json!({"description": "first"}))
        .await;
    app.patch("/projects/p/deployments/d", json!({"name": "renamed"}))
        .await;
    // Another deployment's events must not show up in this one's list.
    app.post(
        "/projects/p/deployments",
        json!({"name": "other", "input_type": "plain", "output_type": "plain"}),
    )
    .await;
    app
}

fn events(body: &Value) -> Vec<(String, String)> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["event"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn events_are_listed_newest_first_with_every_field() {
    let app = app_with_history().await;
    let response = app.get("/projects/p/deployments/renamed/audit").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        events(&response.body),
        vec![
            ("update".into(), "Renamed deployment d to renamed".into()),
            ("update".into(), "Updated deployment d".into()),
            ("create".into(), "Created deployment d".into()),
        ]
    );
    let newest = &response.body[0];
    for field in [
        "id",
        "date",
        "action",
        "user",
        "event",
        "object_type",
        "object_name",
    ] {
        assert!(newest.get(field).is_some(), "missing {field}");
    }
    assert_eq!(newest["user"], "admin@example.com");
    assert_eq!(newest["object_type"], "deployment");
    assert_eq!(newest["object_name"], "renamed");
    assert_eq!(
        response.body[2]["object_name"], "d",
        "object_name as it was at the time"
    );
}

#[tokio::test]
async fn action_limit_and_offset() {
    let app = app_with_history().await;
    let path = "/projects/p/deployments/renamed/audit";
    let updates = app.get(&format!("{path}?action=update")).await;
    assert_eq!(events(&updates.body).len(), 2);
    let creates = app.get(&format!("{path}?action=create")).await;
    assert_eq!(
        events(&creates.body),
        vec![("create".into(), "Created deployment d".into())]
    );
    assert_eq!(
        app.get(&format!("{path}?action=delete")).await.body,
        json!([])
    );
    assert_eq!(
        app.get(&format!("{path}?action=info")).await.body,
        json!([])
    );
    let first = app.get(&format!("{path}?limit=1")).await;
    assert_eq!(
        events(&first.body),
        vec![("update".into(), "Renamed deployment d to renamed".into())]
    );
    let second = app.get(&format!("{path}?limit=1&offset=1")).await;
    assert_eq!(
        events(&second.body),
        vec![("update".into(), "Updated deployment d".into())]
    );
    assert_eq!(app.get(&format!("{path}?offset=3")).await.body, json!([]));
    for bad in [
        "action=read",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "offset=-1",
    ] {
        let response = app.get(&format!("{path}?{bad}")).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{bad}");
        let parameter = bad.split('=').next().unwrap();
        assert!(
            response.error().contains(&format!("`{parameter}`")),
            "{bad}: {}",
            response.error()
        );
    }
}

#[tokio::test]
async fn delete_writes_an_event_in_the_same_transaction() {
    let app = app_with_history().await;
    app.call(Method::DELETE, "/projects/p/deployments/renamed", None)
        .await;
    let (action, event, name): (String, String, Option<String>) = sqlx::query_as(
        "SELECT action, event, object_name FROM audit_events ORDER BY date DESC, seq DESC LIMIT 1",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(
        (action.as_str(), event.as_str(), name.as_deref()),
        ("delete", "Deleted deployment renamed", Some("renamed"))
    );
    // A new deployment with the same name starts with a clean history.
    app.post(
        "/projects/p/deployments",
        json!({"name": "renamed", "input_type": "plain", "output_type": "plain"}),
    )
    .await;
    let fresh = app.get("/projects/p/deployments/renamed/audit").await;
    assert_eq!(
        events(&fresh.body),
        vec![("create".into(), "Created deployment renamed".into())]
    );
}
