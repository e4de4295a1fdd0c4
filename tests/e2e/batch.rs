//! Batch requests: queued by the API, collected, deleted and cancelled, over
//! real HTTP against real PostgreSQL, with real builds making the versions
//! available.
//!
//! Every test that queues requests to a built version needs the queue's
//! workers: those that keep requests `pending` first have a worker take a
//! request that runs for an hour ([`block_queue`]), and the last ones run
//! requests to their end.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use ubiops_test_support::{wait_for, Response, TestApp};

use crate::builds::{upload_and_build, zip_of};
use crate::openapi::{operations, served_document};

const D: &str = "/projects/p/deployments/d";
const V1: &str = "/projects/p/deployments/d/versions/v1";
const V2: &str = "/projects/p/deployments/d/versions/v2";

/// Answers its input; `"block"` first takes an hour, `"sleep <s>"` that
/// many seconds.
const CODE: &str = "\
import time

class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data):
        if data == 'block':
            time.sleep(3600)
        if data.startswith('sleep '):
            time.sleep(float(data.split()[1]))
        return data
";

/// Project `p`, deployment `d` (plain in and out) with versions v1 (the
/// default, built with [`CODE`]) and v2 (never built).
async fn app() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1", "v2"]).await;
    let package = zip_of(&[("pkg/deployment.py", CODE.as_bytes())]);
    let (_, build) = upload_and_build(&app, V1, package).await;
    assert_eq!(build["status"], "success", "{build}");
    app
}

/// Keeps v1's queue still: with one instance, the queue's worker runs one
/// of its requests at a time, and this one runs for an hour, so requests
/// queued after it stay pending. Returns its id.
async fn block_queue(app: &TestApp) -> String {
    update_version(app, V1, json!({"maximum_instances": 1})).await;
    let mut blocker = queue(app, V1, "", json!(["block"])).await;
    collect_when(app, &blocker, "processing").await;
    blocker.remove(0)
}

async fn update_version(app: &TestApp, version: &str, settings: Value) {
    let response = app.patch(version, settings).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
}

/// Queues `inputs` at `path` (a deployment or a version) with `query`;
/// returns the ids in input order.
async fn queue(app: &TestApp, path: &str, query: &str, inputs: Value) -> Vec<String> {
    let response = app
        .post(&format!("{path}/requests/batch{query}"), inputs)
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    ids(&response.body)
}

fn ids(answer: &Value) -> Vec<String> {
    answer
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {answer}"))
        .iter()
        .map(|request| request["id"].as_str().unwrap().to_owned())
        .collect()
}

fn text_body(app: &TestApp, path: &str, body: &str) -> reqwest::RequestBuilder {
    app.client()
        .post(app.url(&format!("/v2.1{path}")))
        .header("Authorization", format!("Token {}", app.admin_token))
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(body.to_owned())
}

async fn collect(app: &TestApp, path: &str, ids: &[String]) -> Response {
    app.post(&format!("{path}/requests/collect"), json!(ids))
        .await
}

/// The ids of the version's requests, as its list shows them.
async fn listed(app: &TestApp, version: &str) -> Vec<String> {
    let response = app
        .get(&format!("{version}/requests?limit=1000&sort=asc"))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    ids(&response.body)
}

fn assert_refused(response: &Response, status: StatusCode, says: &str) {
    assert_eq!(response.status, status, "{}", response.body);
    assert!(
        response.error().contains(says),
        "expected '{says}' in: {}",
        response.error()
    );
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn a_batch_is_queued_as_pending_requests_answered_as_a_list() {
    let app = app().await;
    let blocker = block_queue(&app).await;
    let response = app
        .post(
            &format!("{D}/requests/batch?timeout=100&notification_group=team&priority=1"),
            json!(["a", "b", "c"]),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    let created = response.body.as_array().unwrap();
    assert_eq!(created.len(), 3);
    for request in created {
        assert_eq!(request["deployment"], "d");
        assert_eq!(request["version"], "v1");
        assert_eq!(request["status"], "pending");
        assert!(request["id"].is_string() && request["time_created"].is_string());
    }
    // The queue keeps the input order.
    let times: Vec<&str> = created
        .iter()
        .map(|r| r["time_created"].as_str().unwrap())
        .collect();
    let parsed: Vec<chrono::DateTime<chrono::FixedOffset>> = times
        .iter()
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap())
        .collect();
    assert!(parsed.windows(2).all(|w| w[0] < w[1]), "{times:?}");

    // A single input, as JSON or as text, is a list of one.
    let single = app.post(&format!("{V1}/requests/batch"), json!("d")).await;
    assert_eq!(single.status, StatusCode::CREATED, "{}", single.body);
    assert_eq!(single.body.as_array().map(Vec::len), Some(1));
    let text = app
        .send(text_body(&app, &format!("{V1}/requests/batch"), "e"))
        .await;
    assert_eq!(text.status, StatusCode::CREATED, "{}", text.body);
    assert_eq!(text.body.as_array().map(Vec::len), Some(1));

    // Stored as given, with who made them and how.
    let all = ids(&response.body);
    let collected = collect(&app, V1, &all).await;
    assert_eq!(collected.status, StatusCode::OK, "{}", collected.body);
    let mut details = collected.body.as_array().unwrap().clone();
    details.sort_by_key(|d| d["request_data"].as_str().unwrap().to_owned());
    for (detail, input) in details.iter().zip(["a", "b", "c"]) {
        assert_eq!(detail["request_data"], input, "{detail}");
        assert_eq!(detail["status"], "pending");
        assert_eq!(detail["success"], Value::Null);
        assert_eq!(detail["result"], Value::Null);
        assert_eq!(detail["timeout"], 100);
        assert_eq!(detail["notification_group"], "team");
        assert_eq!(detail["retries"], 0);
        assert_eq!(detail["input_size"], 3);
        assert_eq!(
            detail["origin"],
            json!({"deployment": "d", "deployment_version": "v1"})
        );
        assert_eq!(detail["created_by"], "admin@example.com");
    }
    // The default timeout is 4 hours.
    let text_id = ids(&text.body);
    let stored = collect(&app, V1, &text_id).await;
    assert_eq!(stored.body[0]["timeout"], 14400, "{}", stored.body);
    assert_eq!(stored.body[0]["request_data"], "e");
    assert_eq!(stored.body[0]["notification_group"], Value::Null);
    assert_eq!(listed(&app, V1).await.len(), 6);
    assert_eq!(listed(&app, V1).await[0], blocker);
}

#[tokio::test]
async fn a_single_object_is_one_request_to_a_structured_deployment() {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    let created = app
        .post(
            "/projects/p/deployments",
            json!({"name": "d", "input_type": "structured", "output_type": "structured",
                   "input_fields": [{"name": "x", "data_type": "int"}],
                   "output_fields": [{"name": "x", "data_type": "int"}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    app.post(&format!("{D}/versions"), json!({"version": "v1"}))
        .await;
    let package = zip_of(&[("pkg/deployment.py", CODE.as_bytes())]);
    let (_, build) = upload_and_build(&app, V1, package).await;
    assert_eq!(build["status"], "success", "{build}");
    let one = queue(&app, D, "", json!({"x": 1})).await;
    assert_eq!(one.len(), 1);
    let two = queue(&app, D, "", json!([{"x": 2}, {"x": 3}])).await;
    assert_eq!(two.len(), 2);
    let response = app
        .post(
            &format!("{D}/requests/batch"),
            json!([{"x": 4}, {"x": "five"}]),
        )
        .await;
    assert_refused(&response, StatusCode::BAD_REQUEST, "item 2");
    assert!(response.error().contains("'x'"), "{}", response.error());
    let text = app
        .send(text_body(&app, &format!("{D}/requests/batch"), "plain"))
        .await;
    assert_eq!(text.status, StatusCode::BAD_REQUEST, "{}", text.body);
    assert_eq!(listed(&app, V1).await.len(), 3);
}

#[tokio::test]
async fn a_batch_holds_1_to_250_inputs_and_one_bad_input_refuses_all() {
    let app = app().await;
    let blocker = block_queue(&app).await;
    let inputs: Vec<String> = (0..251).map(|i| format!("input {i}")).collect();
    let too_many = app
        .post(&format!("{V1}/requests/batch"), json!(inputs))
        .await;
    assert_refused(&too_many, StatusCode::BAD_REQUEST, "250");
    for (bad, says) in [
        (json!(["a", 5, "c"]), "item 2"),
        (json!(["a", "b", null]), "item 3"),
        (json!([]), "1 to 250"),
        (json!(5), "string"),
        (json!({"a": "b"}), "string"),
    ] {
        let response = app.post(&format!("{V1}/requests/batch"), bad.clone()).await;
        assert_refused(&response, StatusCode::BAD_REQUEST, says);
    }
    let not_json = app
        .call(reqwest::Method::POST, &format!("{V1}/requests/batch"), None)
        .await;
    assert_eq!(
        not_json.status,
        StatusCode::BAD_REQUEST,
        "{}",
        not_json.body
    );
    assert_eq!(listed(&app, V1).await, vec![blocker.clone()]);
    let created = queue(&app, V1, "", json!(inputs[..250])).await;
    assert_eq!(created.len(), 250);
    assert_eq!(listed(&app, V1).await[1..], created);
}

#[tokio::test]
async fn bad_query_parameters_are_refused_before_anything_is_queued() {
    let app = app().await;
    let blocker = block_queue(&app).await;
    let long_group = "g".repeat(65);
    for (query, says) in [
        ("timeout=0", "timeout"),
        ("timeout=172801", "timeout"),
        ("timeout=abc", "timeout"),
        ("timeout=-1", "timeout"),
        ("timeout=10&timeout=20", "given twice"),
        ("priority=2", "priority"),
        ("priority=high", "priority"),
        (
            format!("notification_group={long_group}").as_str(),
            "notification_group",
        ),
    ] {
        let response = app
            .post(&format!("{V1}/requests/batch?{query}"), json!(["x"]))
            .await;
        assert_refused(&response, StatusCode::BAD_REQUEST, says);
    }
    // ... also when the names are wrong: the query is checked first.
    let response = app
        .post(
            "/projects/p/deployments/nope/requests/batch?timeout=0",
            json!(["x"]),
        )
        .await;
    assert_refused(&response, StatusCode::BAD_REQUEST, "timeout");
    assert_eq!(listed(&app, V1).await, vec![blocker]);
    let longest = queue(&app, V1, "?timeout=172800&priority=0", json!(["x"])).await;
    let stored = collect(&app, V1, &longest).await;
    assert_eq!(stored.body[0]["timeout"], 172800, "{}", stored.body);
}

#[tokio::test]
async fn batches_that_cannot_be_served_are_refused() {
    let app = app().await;
    // v2 has no build.
    let response = app
        .post(&format!("{V2}/requests/batch"), json!(["x"]))
        .await;
    assert_refused(&response, StatusCode::BAD_REQUEST, "is not available");
    assert_eq!(listed(&app, V2).await, Vec::<String>::new());
    for path in [
        "/projects/p/deployments/nope/requests/batch",
        "/projects/p/deployments/d/versions/nope/requests/batch",
        "/projects/nope/deployments/d/requests/batch",
    ] {
        let response = app.post(path, json!(["x"])).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
    }
    // Without a default version, the deployment's endpoint says so.
    app.delete(V1).await;
    app.delete(V2).await;
    let response = app.post(&format!("{D}/requests/batch"), json!(["x"])).await;
    assert_refused(&response, StatusCode::BAD_REQUEST, "no default version");
    // File fields cannot be served, built or not.
    let created = app
        .post(
            "/projects/p/deployments",
            json!({"name": "files", "input_type": "plain", "output_type": "structured",
                   "output_fields": [{"name": "image", "data_type": "file"}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    app.post(
        "/projects/p/deployments/files/versions",
        json!({"version": "v1"}),
    )
    .await;
    let response = app
        .post("/projects/p/deployments/files/requests/batch", json!(["x"]))
        .await;
    assert_refused(
        &response,
        StatusCode::BAD_REQUEST,
        "file fields are not supported yet",
    );
}

#[tokio::test]
async fn the_queue_holds_at_most_maximum_queue_size_batch_pending_requests() {
    let app = app().await;
    let blocker = block_queue(&app).await;
    update_version(&app, V1, json!({"maximum_queue_size_batch": 3})).await;
    let first = queue(&app, V1, "", json!(["a", "b"])).await;
    let response = app
        .post(&format!("{V1}/requests/batch"), json!(["c", "d"]))
        .await;
    assert_refused(
        &response,
        StatusCode::BAD_REQUEST,
        "maximum_queue_size_batch is 3",
    );
    assert_eq!(
        listed(&app, V1).await,
        [vec![blocker], first.clone()].concat(),
        "nothing of the refused batch"
    );
    queue(&app, V1, "", json!(["c"])).await;
    let response = app
        .post(&format!("{V1}/requests/batch"), json!(["d"]))
        .await;
    assert_refused(&response, StatusCode::BAD_REQUEST, "is full");
    // Only pending requests count: a cancelled one makes room.
    let cancelled = app
        .patch(
            &format!("{V1}/requests/{}", first[0]),
            json!({"status": "cancelled"}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    queue(&app, V1, "", json!(["d"])).await;
    // A queue of 0 takes nothing.
    update_version(&app, V1, json!({"maximum_queue_size_batch": 0})).await;
    let response = app.post(&format!("{D}/requests/batch"), json!(["e"])).await;
    assert_refused(&response, StatusCode::BAD_REQUEST, "is full");
    assert_eq!(listed(&app, V1).await.len(), 5);
}

#[tokio::test]
async fn collect_answers_a_list_of_the_requests_all_or_nothing() {
    let app = app().await;
    block_queue(&app).await;
    let queued = queue(&app, V1, "", json!(["a", "b", "c"])).await;
    let picked = vec![queued[0].clone(), queued[2].clone()];
    let response = collect(&app, D, &picked).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let mut got = ids(&response.body);
    got.sort();
    let mut want = picked.clone();
    want.sort();
    assert_eq!(got, want);
    // Every field both clients read.
    let detail = &response.body[0];
    for field in [
        "id",
        "deployment",
        "version",
        "status",
        "success",
        "time_created",
        "time_started",
        "time_completed",
        "request_data",
        "result",
        "error_message",
        "retries",
        "input_size",
        "output_size",
        "timeout",
    ] {
        assert!(detail.get(field).is_some(), "{field} in {detail}");
    }
    // One id is a list of one; an id given twice is answered once; none is
    // an empty list.
    let one = collect(&app, V1, &queued[1..2]).await;
    assert_eq!(ids(&one.body), vec![queued[1].clone()]);
    let twice = collect(&app, V1, &[queued[1].clone(), queued[1].clone()]).await;
    assert_eq!(ids(&twice.body), vec![queued[1].clone()]);
    let none = collect(&app, V1, &[]).await;
    assert_eq!(none.body, json!([]));
    // All or nothing: an unknown id is a 404 naming it.
    let unknown = uuid();
    let response = collect(&app, V1, &[queued[0].clone(), unknown.clone()]).await;
    assert_refused(&response, StatusCode::NOT_FOUND, &unknown);
    // Another version's requests are not this one's.
    let response = collect(&app, V2, &queued[..1]).await;
    assert_refused(&response, StatusCode::NOT_FOUND, &queued[0]);
    // Malformed bodies.
    for (body, says) in [
        (json!([queued[0], "not-an-id"]), "item 2"),
        (json!([queued[0], 5]), "item 2"),
        (json!({"ids": [queued[0]]}), "list of request ids"),
        (json!(queued[0]), "list of request ids"),
    ] {
        let response = app.post(&format!("{V1}/requests/collect"), body).await;
        assert_refused(&response, StatusCode::BAD_REQUEST, says);
    }
    let many: Vec<String> = (0..251).map(|_| uuid()).collect();
    let response = collect(&app, V1, &many).await;
    assert_refused(&response, StatusCode::BAD_REQUEST, "At most 250");
    let most: Vec<String> = queued
        .iter()
        .cloned()
        .chain((0..247).map(|_| uuid()))
        .collect();
    let response = collect(&app, V1, &most).await;
    assert_eq!(
        response.status,
        StatusCode::NOT_FOUND,
        "250 ids are looked up"
    );
}

#[tokio::test]
async fn deleting_many_requests_is_all_or_nothing() {
    let app = app().await;
    let blocker = block_queue(&app).await;
    let queued = queue(&app, V1, "", json!(["a", "b", "c"])).await;
    let all = [vec![blocker.clone()], queued.clone()].concat();
    let unknown = uuid();
    let response = app
        .post(&format!("{D}/requests/delete"), json!([queued[0], unknown]))
        .await;
    assert_refused(&response, StatusCode::NOT_FOUND, &unknown);
    assert_eq!(listed(&app, V1).await, all, "nothing was deleted");
    let response = app
        .post(&format!("{V2}/requests/delete"), json!([queued[0]]))
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
    for (body, says) in [
        (json!(["nope"]), "item 1"),
        (json!("nope"), "list of request ids"),
    ] {
        let response = app.post(&format!("{V1}/requests/delete"), body).await;
        assert_refused(&response, StatusCode::BAD_REQUEST, says);
    }
    let many: Vec<String> = (0..251).map(|_| uuid()).collect();
    let response = app
        .post(&format!("{V1}/requests/delete"), json!(many))
        .await;
    assert_refused(&response, StatusCode::BAD_REQUEST, "At most 250");
    assert_eq!(listed(&app, V1).await, all);
    // Pending requests may be deleted.
    let response = app
        .post(
            &format!("{D}/requests/delete"),
            json!([queued[0], queued[1]]),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert!(response.body.is_object(), "{}", response.body);
    assert_eq!(listed(&app, V1).await, vec![blocker, queued[2].clone()]);
    let again = app
        .post(&format!("{V1}/requests/delete"), json!([queued[0]]))
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
}

#[tokio::test]
async fn a_pending_request_is_cancelled_and_answered_in_full() {
    let app = app().await;
    block_queue(&app).await;
    let queued = queue(&app, V1, "?notification_group=team", json!(["a", "b"])).await;
    let path = |id: &str| format!("{D}/requests/{id}");
    // Only `cancelled` is an update; the 3.13 client may send a
    // notification_group alone.
    for (body, says) in [
        (json!({"status": "processing"}), "can only be 'cancelled'"),
        (json!({"status": "completed"}), "can only be 'cancelled'"),
        (json!({"notification_group": "team"}), "\"cancelled\""),
        (json!({}), "status is required"),
        (json!({"status": 5}), "status"),
        (json!(["cancelled"]), "JSON object"),
    ] {
        let response = app.patch(&path(&queued[0]), body.clone()).await;
        assert_refused(&response, StatusCode::BAD_REQUEST, says);
    }
    let response = app
        .patch(&path(&uuid()), json!({"status": "cancelled"}))
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
    let response = app
        .patch(&path("not-an-id"), json!({"status": "cancelled"}))
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);
    let response = app
        .patch(
            &format!("{V2}/requests/{}", queued[0]),
            json!({"status": "cancelled"}),
        )
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND, "{}", response.body);

    let response = app
        .patch(&path(&queued[0]), json!({"status": "cancelled"}))
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let detail = &response.body;
    assert_eq!(detail["id"], queued[0].as_str());
    assert_eq!(detail["status"], "cancelled");
    assert_eq!(detail["success"], false);
    assert_eq!(detail["notification_group"], "team");
    assert_eq!(detail["retries"], 0);
    assert!(detail["time_created"].is_string());
    assert!(detail["time_completed"].is_string());
    let got = app.get(&path(&queued[0])).await;
    assert_eq!(got.body["status"], "cancelled", "{}", got.body);
    // Once finished, it cannot be cancelled again.
    let again = app
        .patch(&path(&queued[0]), json!({"status": "cancelled"}))
        .await;
    assert_refused(&again, StatusCode::BAD_REQUEST, "already finished");
    // The 3.13 client's body with a notification_group, on a version path.
    let response = app
        .patch(
            &format!("{V1}/requests/{}", queued[1]),
            json!({"status": "cancelled", "notification_group": "other"}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["status"], "cancelled");
}

#[tokio::test]
async fn a_finished_direct_request_cannot_be_cancelled() {
    let app = app().await;
    let direct = app.post(&format!("{V1}/requests"), json!("x")).await;
    assert_eq!(direct.status, StatusCode::OK, "{}", direct.body);
    let id = direct.body["id"].as_str().unwrap();
    let response = app
        .patch(
            &format!("{D}/requests/{id}"),
            json!({"status": "cancelled"}),
        )
        .await;
    assert_refused(&response, StatusCode::BAD_REQUEST, "already finished");
    assert!(
        response.error().contains("'completed'"),
        "{}",
        response.error()
    );
}

#[tokio::test]
async fn the_batch_operations_are_documented() {
    let app = TestApp::spawn().await;
    let documented = operations(&served_document(&app, "/v2.1").await);
    let base = "/projects/{project_name}/deployments/{deployment_name}";
    let version = format!("{base}/versions/{{version}}");
    for (id, method, path) in [
        (
            "batch_deployment_requests_create",
            "POST",
            format!("{base}/requests/batch"),
        ),
        (
            "batch_deployment_version_requests_create",
            "POST",
            format!("{version}/requests/batch"),
        ),
        (
            "deployment_requests_batch_get",
            "POST",
            format!("{base}/requests/collect"),
        ),
        (
            "deployment_version_requests_batch_get",
            "POST",
            format!("{version}/requests/collect"),
        ),
        (
            "deployment_requests_batch_delete",
            "POST",
            format!("{base}/requests/delete"),
        ),
        (
            "deployment_version_requests_batch_delete",
            "POST",
            format!("{version}/requests/delete"),
        ),
        (
            "deployment_requests_update",
            "PATCH",
            format!("{base}/requests/{{request_id}}"),
        ),
        (
            "deployment_version_requests_update",
            "PATCH",
            format!("{version}/requests/{{request_id}}"),
        ),
    ] {
        let found = documented
            .iter()
            .find(|o| o.method.as_str() == method && o.path == path)
            .unwrap_or_else(|| panic!("{method} {path} ({id}) is not documented"));
        assert_eq!(found.operation_id, id, "{method} {path}");
    }
}

// Run to their end by the queue's workers.

/// How long a test waits for the queue's workers.
const WORKER_WAIT: Duration = Duration::from_secs(120);

/// Collects `ids` until every one has `status`; returns the details.
async fn collect_when(app: &TestApp, ids: &[String], status: &str) -> Vec<Value> {
    wait_for(
        &format!("requests to be {status}"),
        WORKER_WAIT,
        || async move {
            let response = collect(app, V1, ids).await;
            assert_eq!(response.status, StatusCode::OK, "{}", response.body);
            let details = response.body.as_array().unwrap().clone();
            details
                .iter()
                .all(|d| d["status"] == status)
                .then_some(details)
        },
    )
    .await
}

#[tokio::test]
async fn a_batch_runs_to_completion_and_is_collected() {
    let app = app().await;
    let queued = queue(&app, D, "", json!(["a", "b", "c"])).await;
    let details = collect_when(&app, &queued, "completed").await;
    for detail in &details {
        assert_eq!(detail["success"], true, "{detail}");
        assert_eq!(detail["result"], detail["request_data"], "{detail}");
        assert_eq!(detail["error_message"], Value::Null);
        assert!(detail["time_started"].is_string(), "{detail}");
        assert!(detail["time_completed"].is_string(), "{detail}");
        assert_eq!(detail["output_size"], 3, "{detail}");
    }
    // A finished batch request cannot be cancelled.
    let response = app
        .patch(
            &format!("{D}/requests/{}", queued[0]),
            json!({"status": "cancelled"}),
        )
        .await;
    assert_refused(&response, StatusCode::BAD_REQUEST, "already finished");
}

#[tokio::test]
async fn a_processing_request_cancelled_ends_cancelled() {
    let app = app().await;
    let queued = vec![block_queue(&app).await];
    let response = app
        .patch(
            &format!("{V1}/requests/{}", queued[0]),
            json!({"status": "cancelled"}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    // Until its worker has stopped the call.
    assert_eq!(
        response.body["status"], "cancelled_pending",
        "{}",
        response.body
    );
    let details = collect_when(&app, &queued, "cancelled").await;
    assert_eq!(details[0]["result"], Value::Null, "{}", details[0]);
    assert_eq!(details[0]["success"], false, "{}", details[0]);
}

#[tokio::test]
async fn instances_scale_with_the_queue_up_to_the_maximum_and_stop_when_idle() {
    let app = app().await;
    update_version(
        &app,
        V1,
        json!({"maximum_instances": 2, "maximum_idle_time": 10}),
    )
    .await;
    let version = app
        .store
        .serving_target("p", "d", Some("v1"))
        .await
        .unwrap()
        .version_id;
    let queued = queue(&app, V1, "", json!(vec!["sleep 0.5"; 8])).await;
    let (mut most, mut done) = (0, false);
    let deadline = tokio::time::Instant::now() + WORKER_WAIT;
    while !done && tokio::time::Instant::now() < deadline {
        most = most.max(app.serving.pools().alive(version));
        let response = collect(&app, V1, &queued).await;
        done = response
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "the batch did not complete");
    assert_eq!(most, 2, "as many instances as the version allows, no more");
    // None is kept (minimum_instances 0): idle for maximum_idle_time, both stop.
    wait_for(
        "the idle instances to stop",
        Duration::from_secs(40),
        || async { (app.serving.pools().alive(version) == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_request_past_its_batch_timeout_fails_saying_so() {
    let app = app().await;
    let queued = queue(&app, V1, "?timeout=2", json!(["sleep 30", "quick"])).await;
    let details = collect_when(&app, &queued[..1], "failed").await;
    let message = details[0]["error_message"].as_str().unwrap_or_default();
    assert!(message.contains("timeout of 2 s"), "{}", details[0]);
    // Only the request that overran: the other ran on another instance.
    collect_when(&app, &queued[1..], "completed").await;
}
