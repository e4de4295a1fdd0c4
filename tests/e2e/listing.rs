//! The deployment list and GET one deployment keep each deployment as
//! rendered, by row version, and decode only rows they have not rendered
//! (`ubiops_storage`'s `listing.rs`). Whatever changed a row, directly or
//! through a cascade, and whatever VACUUM did to it, the list and GET must
//! agree and show the change.

use reqwest::StatusCode;
use serde_json::{json, Value};
use ubiops_test_support::TestApp;

const PROJECT: &str = "listing";

/// Lists the project (with `query`), checks the names, and checks each item
/// against GET one deployment. Both may answer from kept renderings, so the
/// test also checks the changed values themselves.
async fn assert_list(app: &TestApp, query: &str, names: &[&str]) {
    let list = app
        .get(&format!("/projects/{PROJECT}/deployments{query}"))
        .await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    let items = list.body.as_array().expect("a JSON array");
    let listed: Vec<&str> = items.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(listed, names);
    for item in items {
        let one = app
            .get(&format!(
                "/projects/{PROJECT}/deployments/{}",
                item["name"].as_str().unwrap()
            ))
            .await;
        assert_eq!(one.status, StatusCode::OK, "{:?}", one.body);
        assert_eq!(item, &one.body, "list item and GET differ");
    }
}

async fn item(app: &TestApp, name: &str) -> Value {
    let list = app.get(&format!("/projects/{PROJECT}/deployments")).await;
    let items = list.body.as_array().expect("a JSON array").clone();
    items
        .into_iter()
        .find(|d| d["name"] == name)
        .expect("listed")
}

async fn vacuum_freeze(app: &TestApp) {
    sqlx::query("VACUUM (FREEZE) deployments")
        .execute(app.store.pool())
        .await
        .expect("VACUUM FREEZE");
}

#[tokio::test]
async fn list_items_follow_every_change_to_their_rows() {
    let app = TestApp::spawn().await;
    app.create_project(PROJECT).await;
    app.create_deployment(PROJECT, "alpha", &["v1", "v2"]).await;
    app.create_deployment(PROJECT, "bravo", &["v1"]).await;
    app.create_deployment(PROJECT, "charlie", &[]).await;
    assert_list(&app, "", &["alpha", "bravo", "charlie"]).await;
    // Listed twice: the second answer comes from the kept renderings.
    assert_list(&app, "", &["alpha", "bravo", "charlie"]).await;

    let base = format!("/projects/{PROJECT}/deployments");
    let patched = app
        .patch(&format!("{base}/alpha"), json!({"description": "changed"}))
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    assert_list(&app, "", &["alpha", "bravo", "charlie"]).await;
    assert_eq!(item(&app, "alpha").await["description"], "changed");

    // A new version changes the deployment's stored version count.
    let created = app
        .post(&format!("{base}/bravo/versions"), json!({"version": "v2"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_list(&app, "", &["alpha", "bravo", "charlie"]).await;
    assert_eq!(item(&app, "bravo").await["number_of_versions"], 2);

    // Renaming the default version reaches the deployment row only through
    // the foreign key's ON UPDATE CASCADE.
    let default_version = item(&app, "alpha").await["default_version"].clone();
    let default_version = default_version
        .as_str()
        .expect("alpha has a default version");
    let renamed = app
        .patch(
            &format!("{base}/alpha/versions/{default_version}"),
            json!({"version": "renamed"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.body);
    assert_list(&app, "", &["alpha", "bravo", "charlie"]).await;
    assert_eq!(item(&app, "alpha").await["default_version"], "renamed");

    // Freezing must not make an old rendering match a newer row.
    vacuum_freeze(&app).await;
    assert_list(&app, "", &["alpha", "bravo", "charlie"]).await;
    let labelled = app
        .patch(
            &format!("{base}/charlie"),
            json!({"labels": {"tier": "gold"}}),
        )
        .await;
    assert_eq!(labelled.status, StatusCode::OK, "{:?}", labelled.body);
    vacuum_freeze(&app).await;
    assert_list(&app, "", &["alpha", "bravo", "charlie"]).await;
    assert_eq!(
        item(&app, "charlie").await["labels"],
        json!({"tier": "gold"})
    );
    assert_list(&app, "?labels=tier:gold", &["charlie"]).await;

    let deleted = app.delete(&format!("{base}/bravo")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    app.create_deployment(PROJECT, "bravo", &[]).await;
    app.create_deployment(PROJECT, "delta", &[]).await;
    assert_list(&app, "", &["alpha", "bravo", "charlie", "delta"]).await;
    assert_eq!(item(&app, "bravo").await["number_of_versions"], 0);
}
