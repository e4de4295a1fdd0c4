//! What the newest client (`ubiops` 4.15) and `ubiops-cli` call beyond the
//! deploy flow: a rebuild looked up as a revision, the project audit list,
//! the organization, instance types, template deployments, the
//! `supports_request_format` filter, and environment variables by name.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ubiops_test_support::{TestApp, ORGANIZATION};
use uuid::Uuid;

use crate::builds::{deployment_zip, run_build, upload_and_build};

const V1: &str = "/projects/p/deployments/d/versions/v1";

async fn app() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1", "v2"]).await;
    app
}

fn field<'a>(list: &'a Value, name: &str) -> Vec<&'a Value> {
    list.as_array()
        .unwrap_or_else(|| panic!("expected a list, got {list}"))
        .iter()
        .map(|item| &item[name])
        .collect()
}

#[tokio::test]
async fn a_rebuild_is_found_as_a_revision_with_its_own_outcome() {
    let app = app().await;
    let (uploaded, _) = upload_and_build(&app, V1, deployment_zip()).await;
    let revision = uploaded["revision"].as_str().unwrap();

    let rebuild = app
        .post(&format!("{V1}/revisions/{revision}/rebuild"), json!({}))
        .await;
    assert_eq!(rebuild.status, StatusCode::CREATED, "{}", rebuild.body);
    let build_id = rebuild.body["id"].as_str().unwrap().to_owned();
    assert_eq!(rebuild.body["empty"], false);

    // By the rebuild's id: the same revision, with that build's status.
    let by_build = app.get(&format!("{V1}/revisions/{build_id}")).await;
    assert_eq!(by_build.status, StatusCode::OK, "{}", by_build.body);
    assert_eq!(by_build.body["id"], json!(revision));
    assert!(
        matches!(
            by_build.body["status"].as_str(),
            Some("queued" | "building" | "validating" | "success")
        ),
        "{}",
        by_build.body
    );
    run_build(&app, V1, &json!(build_id)).await;
    let done = app.get(&format!("{V1}/revisions/{build_id}")).await.body;
    assert_eq!(
        (&done["status"], &done["has_request_method"], &done["empty"]),
        (&json!("success"), &json!(true), &json!(false))
    );
    assert_eq!(done["has_requests_method"], false);

    // The revision list carries the findings of each revision's newest build.
    let listed = app.get(&format!("{V1}/revisions")).await.body;
    assert_eq!(listed[0]["has_request_method"], true, "{listed}");

    // A build id of another version, or nothing at all, finds no revision.
    let (other, _) = upload_and_build(
        &app,
        "/projects/p/deployments/d/versions/v2",
        deployment_zip(),
    )
    .await;
    for id in [
        other["build"].as_str().unwrap(),
        &Uuid::new_v4().to_string(),
    ] {
        let missing = app.get(&format!("{V1}/revisions/{id}")).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(missing.error(), "Revision not found");
    }
}

#[tokio::test]
async fn the_project_audit_list_has_every_event_of_the_project() {
    let app = app().await;
    app.create_deployment("p", "gone", &[]).await;
    let variable = app
        .post(
            "/projects/p/environment-variables",
            json!({"name": "REGION", "value": "eu", "secret": false}),
        )
        .await;
    assert_eq!(variable.status, StatusCode::CREATED, "{}", variable.body);
    assert_eq!(
        app.delete("/projects/p/deployments/gone").await.status,
        StatusCode::NO_CONTENT
    );

    let all = app.get("/projects/p/audit").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    let events: Vec<&str> = field(&all.body, "event")
        .into_iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(events[0].contains("gone"), "newest first: {events:?}");
    for expected in ["REGION", "deployment d", "version v2"] {
        assert!(
            events.iter().any(|e| e.contains(expected)),
            "{expected} in {events:?}"
        );
    }

    let deletes = app.get("/projects/p/audit?action=delete&limit=1").await;
    assert_eq!(field(&deletes.body, "action"), [&json!("delete")]);
    let second = app.get("/projects/p/audit?limit=1&offset=1").await.body;
    assert_eq!(second[0], all.body[1]);

    let bad = app.get("/projects/p/audit?limit=ten").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error().contains("`limit`"), "{}", bad.error());
    let missing = app.get("/projects/nope/audit").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let limited = app.token("bob@example.com", Some(&["other"])).await;
    let forbidden = app
        .call_as(&limited, Method::GET, "/projects/p/audit", None)
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_server_is_one_organization() {
    let app = app().await;
    let list = app.get("/organizations").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let [organization] = list.body.as_array().unwrap().as_slice() else {
        panic!("one organization: {}", list.body);
    };
    assert_eq!(organization["name"], ORGANIZATION);
    assert_eq!(organization["status"], "active");
    assert!(organization["creation_date"].is_string());

    // Any token sees it, also one limited to projects.
    let limited = app.token("bob@example.com", Some(&["other"])).await;
    let detail = app
        .call_as(
            &limited,
            Method::GET,
            &format!("/organizations/{ORGANIZATION}"),
            None,
        )
        .await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(detail.body["id"], organization["id"]);
    assert_eq!(detail.body["creation_date"], organization["creation_date"]);

    let other = app.get("/organizations/acme").await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(other.error().contains(ORGANIZATION), "{}", other.error());
}

#[tokio::test]
async fn deployments_filter_on_supports_request_format() {
    let app = app().await;
    let names = |response: &Value| field(response, "name").len();
    for query in [
        "",
        "?supports_request_format=True",
        "?supports_request_format=true",
    ] {
        let listed = app.get(&format!("/projects/p/deployments{query}")).await;
        assert_eq!(
            (listed.status, names(&listed.body)),
            (StatusCode::OK, 1),
            "{query}"
        );
    }
    for query in [
        "?supports_request_format=False",
        "?supports_request_format=false",
    ] {
        let listed = app.get(&format!("/projects/p/deployments{query}")).await;
        assert_eq!(listed.status, StatusCode::OK);
        assert_eq!(listed.body, json!([]), "{query}");
    }
    let bad = app
        .get("/projects/p/deployments?supports_request_format=maybe")
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error().contains("`supports_request_format`"));
    let missing = app
        .get("/projects/nope/deployments?supports_request_format=false")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn instance_types_are_listed_and_paged() {
    let app = app().await;
    let all = app.get("/projects/p/instance-types").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(all.body["next"], Value::Null);
    let results = &all.body["results"];
    let count = results.as_array().unwrap().len();
    assert!(count >= 10, "{results}");
    let groups = app.get("/projects/p/instance-type-groups").await.body;
    assert_eq!(
        field(results, "id"),
        field(&groups["results"], "id"),
        "each type is its own group, with the group's id"
    );
    let small = results
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "512mb")
        .unwrap();
    assert_eq!(
        (&small["memory"], &small["accelerator"]),
        (&json!(512), &json!(0))
    );

    let first = app.get("/projects/p/instance-types?limit=4").await.body;
    assert_eq!(first["results"].as_array().unwrap().len(), 4);
    let next = first["next"].as_str().unwrap();
    let rest = app
        .get(&format!(
            "/projects/p/instance-types?cursor={next}&limit=1000"
        ))
        .await
        .body;
    assert_eq!(rest["next"], Value::Null);
    assert_eq!(rest["results"].as_array().unwrap().len(), count - 4);
    assert_eq!(rest["results"][0], results[4]);

    for bad in ["limit=0", "limit=x", "cursor=-1", "cursor=abc"] {
        let refused = app.get(&format!("/projects/p/instance-types?{bad}")).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn template_deployments_are_the_readable_ones_with_a_default_file() {
    let app = app().await;
    assert_eq!(app.get("/template-deployments").await.body, json!([]));
    upload_and_build(&app, V1, deployment_zip()).await;
    app.create_project("q").await;
    app.create_deployment("q", "empty", &["v1"]).await;

    let templates = app.get("/template-deployments").await;
    assert_eq!(templates.status, StatusCode::OK, "{}", templates.body);
    let deployment = app.get("/projects/p/deployments/d").await.body;
    assert_eq!(
        templates.body,
        json!([{
            "id": deployment["id"],
            "details": {
                "project": "p", "deployment": "d", "description": null, "version": "v1",
                "language": "python3.7", "environment": "python3-7",
                "input_type": "plain", "output_type": "plain",
            },
        }])
    );
    let limited = app.token("bob@example.com", Some(&["q"])).await;
    let none = app
        .call_as(&limited, Method::GET, "/template-deployments", None)
        .await;
    assert_eq!(none.body, json!([]));
}

#[tokio::test]
async fn variables_are_found_by_name_where_an_id_goes() {
    let app = app().await;
    let scopes = [
        "/projects/p",
        "/projects/p/deployments/d",
        "/projects/p/deployments/d/versions/v1",
    ];
    for scope in scopes {
        let path = format!("{scope}/environment-variables");
        let created = app
            .post(
                &path,
                json!({"name": "MODEL", "value": "a", "secret": false}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

        let got = app.get(&format!("{path}/MODEL")).await;
        assert_eq!(got.status, StatusCode::OK, "{scope}: {}", got.body);
        assert_eq!(got.body["id"], created.body["id"]);
        let updated = app
            .patch(
                &format!("{path}/MODEL"),
                json!({"name": "MODEL", "value": "b", "secret": false}),
            )
            .await;
        assert_eq!(updated.body["value"], "b", "{scope}");
        for missing in ["OTHER", "model", "not-a-name"] {
            let response = app.get(&format!("{path}/{missing}")).await;
            assert_eq!(response.status, StatusCode::NOT_FOUND, "{scope} {missing}");
        }
    }
    // An inherited variable is not the version's own, by name as by id.
    let version = format!("{}/environment-variables", scopes[2]);
    assert_eq!(
        app.delete(&format!("{version}/MODEL")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&format!("{version}/MODEL")).await.status,
        StatusCode::NOT_FOUND
    );
    let deployment = app
        .get("/projects/p/deployments/d/environment-variables/MODEL")
        .await;
    assert_eq!(deployment.body["value"], "b");
}
