//! Log lines: the build worker's stage lines, read through 3.13's
//! `projects_log_list` (POST) and newer clients' `logs_list` (GET): filters,
//! windows, limits, paging, bad input, project scope and retention.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ubiops_domain::logs::Level;
use ubiops_storage::{LogTags, NewLogLine};
use ubiops_test_support::{wait_for, TestApp};

use crate::builds::{deployment_zip, upload, upload_and_build, wait_for_build, zip_of};

const LOGS: &str = "/projects/p/logs";

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

async fn app() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1", "v2"]).await;
    app
}

/// 3.13's `projects_log_list`.
async fn v3(app: &TestApp, body: Value) -> Vec<Value> {
    let response = app.post(LOGS, body.clone()).await;
    assert_eq!(response.status, StatusCode::OK, "{body}: {}", response.body);
    response.body.as_array().unwrap().clone()
}

/// Newer clients' `logs_list`.
async fn v4(app: &TestApp, params: &[(&str, String)]) -> Vec<Value> {
    let response = v4_response(app, params).await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "{params:?}: {}",
        response.body
    );
    response.body.as_array().unwrap().clone()
}

async fn v4_response(app: &TestApp, params: &[(&str, String)]) -> ubiops_test_support::Response {
    app.send(
        app.client()
            .get(app.url(&format!("/v2.1{LOGS}")))
            .query(params)
            .header("Authorization", format!("Token {}", app.admin_token))
            .header("Content-Type", "application/json"),
    )
    .await
}

fn texts(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|line| line["log"].as_str().unwrap())
        .collect()
}

/// A good build on v1 and a failing one (no deployment.py) on v2.
async fn two_builds(app: &TestApp) -> (Value, Value) {
    let (good, built) = upload_and_build(
        app,
        "/projects/p/deployments/d/versions/v1",
        deployment_zip(),
    )
    .await;
    assert_eq!(built["status"], "success", "{built}");
    let bad_zip = zip_of(&[("readme.txt", b"no code here".as_slice())]);
    let (bad, failed) =
        upload_and_build(app, "/projects/p/deployments/d/versions/v2", bad_zip).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    // The outcome line is written just after the outcome is published.
    wait_for(
        "the failed build's last line",
        Duration::from_secs(10),
        || async {
            let lines = v3(app, json!({"filters": {"level": "error"}})).await;
            (!lines.is_empty()).then_some(())
        },
    )
    .await;
    wait_for(
        "the good build's last line",
        Duration::from_secs(10),
        || async {
            let lines = v3(app, json!({})).await;
            texts(&lines)
                .iter()
                .any(|text| text.starts_with("Build succeeded"))
                .then_some(())
        },
    )
    .await;
    (good, bad)
}

#[tokio::test]
async fn every_build_stage_writes_a_line_tagged_with_the_build() {
    let app = app().await;
    let (good, bad) = two_builds(&app).await;
    let (good_build, good_revision) = (
        good["build"].as_str().unwrap(),
        good["revision"].as_str().unwrap(),
    );

    let lines = v3(&app, json!({"filters": {"build_id": good_build}})).await;
    let texts = texts(&lines);
    // The stage lines, in order; pip's output (when the environment is
    // made rather than found in the cache) comes between them.
    let expected_starts = [
        "Build queued: Deployment file upload of revision",
        "Build picked up by worker",
        "Building: fetching and extracting the deployment package",
        "Extracted 2 files",
        "Checking deployment.py and requirements.txt",
        "Preparing the Python",
        "Validating: importing deployment.py in its environment",
        "Found my_deployment/deployment.py with a `request` method; 2 requirements",
        "Build succeeded: revision",
    ];
    let mut found = texts.iter();
    for start in expected_starts {
        assert!(
            found.any(|text| text.starts_with(start)),
            "{start:?} (in this order) in {texts:#?}"
        );
    }
    assert!(texts[0].starts_with(expected_starts[0]), "{texts:#?}");
    assert!(
        texts.last().unwrap().starts_with("Build succeeded"),
        "{texts:#?}"
    );
    let mut previous = String::new();
    for line in &lines {
        assert_eq!(line["deployment_name"], "d");
        assert_eq!(line["deployment_version"], "v1");
        assert_eq!(line["build_id"], good_build);
        assert_eq!(line["system"], true);
        assert_eq!(line["level"], "info");
        assert!(
            line.get("deployment_request_id").is_none(),
            "unset tags are left out: {line}"
        );
        let id = line["id"].as_str().unwrap();
        assert_eq!(id.len(), 24, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        // Ids grow with time (fixed width), so they order the lines too.
        assert!(id > previous.as_str(), "{id} after {previous}");
        previous = id.to_owned();
        assert!(line["date"].as_str().unwrap().ends_with('Z'), "{line}");
    }
    assert!(texts[0].contains(good_revision), "{}", texts[0]);

    // The failing build: its outcome is an error line with the message.
    let failed = v3(
        &app,
        json!({"filters": {"deployment_name": "d", "deployment_version": "v2"}}),
    )
    .await;
    assert!(
        failed.iter().all(|line| line["build_id"] == bad["build"]),
        "{failed:#?}"
    );
    let last = failed.last().unwrap();
    assert_eq!(last["level"], "error", "{last}");
    let message = last["log"].as_str().unwrap();
    assert!(message.starts_with("Build failed: "), "{message}");
    assert!(
        message.contains("Could not find the deployment file"),
        "{message}"
    );
    let errors = v3(&app, json!({"filters": {"level": "error"}})).await;
    assert_eq!(errors, vec![last.clone()]);

    // Filters that no line here passes.
    for filters in [
        json!({"system": false}),
        json!({"pipeline_name": "pipe"}),
        json!({"deployment_name": "other"}),
        json!({"deployment_name": "d", "deployment_version": "v3"}),
        json!({"build_id": "00000000-0000-4000-8000-000000000000"}),
        json!({"build_id": "not-a-uuid"}),
        json!({"deployment_request_id": "00000000-0000-4000-8000-000000000000"}),
    ] {
        assert_eq!(
            v3(&app, json!({"filters": filters})).await,
            Vec::<Value>::new(),
            "{filters}"
        );
    }
    // Every line of both builds, and only those, with no filter.
    let all = v3(&app, json!({"filters": {}, "limit": 500})).await;
    assert_eq!(all.len(), lines.len() + failed.len());
    let system = v3(&app, json!({"filters": {"system": true}, "limit": 500})).await;
    assert_eq!(system, all);
}

#[tokio::test]
async fn newer_clients_page_through_the_same_lines_by_timestamp() {
    let app = app().await;
    let before = now_ns();
    let (good, _bad) = two_builds(&app).await;
    let revision = good["revision"].as_str().unwrap();
    let expected = v3(&app, json!({"filters": {"build_id": good["build"]}})).await;

    // The query `wait_for_revision(stream_logs=True)` sends.
    let query = format!(
        "| deployment_name=`d` and deployment_version=`v1` and deployment_version_revision_id=`{revision}`"
    );
    let all = v4(
        &app,
        &[
            ("query", query.clone()),
            ("start", before.to_string()),
            ("end", now_ns().to_string()),
            ("limit", "1000".into()),
        ],
    )
    .await;
    assert_eq!(texts(&all), texts(&expected));
    for line in &all {
        let metadata = &line["metadata"];
        assert_eq!(metadata["deployment_name"], "d");
        assert_eq!(metadata["deployment_version"], "v1");
        assert_eq!(metadata["deployment_version_revision_id"], revision);
        assert_eq!(metadata["system"], true);
        assert_eq!(metadata["level"], "info");
        let timestamp = line["timestamp"].as_i64().unwrap();
        assert!(line["timestamp_str"].as_str().unwrap().ends_with('Z'));
        assert!(timestamp > before);
    }
    // The 3.13 id is the same instant as the newer timestamp.
    assert_eq!(
        i64::from_str_radix(expected[0]["id"].as_str().unwrap(), 16).unwrap(),
        all[0]["timestamp"].as_i64().unwrap()
    );

    // Paging as the client does, `start` = last timestamp + 1, two at a time:
    // every line exactly once, in order.
    let mut paged = Vec::new();
    let mut start = before;
    loop {
        let page = v4(
            &app,
            &[
                ("query", query.clone()),
                ("start", start.to_string()),
                ("end", now_ns().to_string()),
                ("limit", "2".into()),
            ],
        )
        .await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        start = page.last().unwrap()["timestamp"].as_i64().unwrap() + 1;
        paged.extend(page);
    }
    assert_eq!(paged, all);

    // ISO 8601 starts (the client sends the revision's creation date).
    let from_iso = v4(
        &app,
        &[
            ("query", query.clone()),
            ("start", "2020-01-01T00:00:00.000+00:00".into()),
            ("end", now_ns().to_string()),
        ],
    )
    .await;
    assert_eq!(from_iso, all);

    // Backward from now: the newest line of the revision.
    let newest = v4(&app, &[("query", query.clone()), ("limit", "1".into())]).await;
    assert_eq!(newest, vec![all.last().unwrap().clone()]);

    // Stream selectors, inequalities and line filters.
    let selected = v4(
        &app,
        &[(
            "query",
            format!("{{deployment_name=\"d\", deployment_version_revision_id=\"{revision}\"}}"),
        )],
    )
    .await;
    assert_eq!(selected, all);
    let succeeded = v4(&app, &[("query", "|= \"succeeded\"".into())]).await;
    assert_eq!(texts(&succeeded).len(), 1, "{succeeded:#?}");
    assert!(texts(&succeeded)[0].starts_with("Build succeeded"));
    let not_v1 = v4(&app, &[("query", "| deployment_version!=\"v1\"".into())]).await;
    assert!(!not_v1.is_empty());
    assert!(not_v1
        .iter()
        .all(|line| line["metadata"]["deployment_version"] == "v2"));
    let errors = v4(
        &app,
        &[("query", "| level=\"error\" and system=\"true\"".into())],
    )
    .await;
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["log"]
        .as_str()
        .unwrap()
        .starts_with("Build failed"));
    // What the environment wait asks: no environment builds here.
    let environment = v4(
        &app,
        &[(
            "query",
            "| environment_name=`python3-11` and environment_tag=`latest`".into(),
        )],
    )
    .await;
    assert!(environment.is_empty());
    // The CLI's `ubiops logs` default query is empty.
    let everything = v3(&app, json!({"limit": 500})).await;
    assert_eq!(
        texts(&v4(&app, &[("query", String::new())]).await),
        texts(&everything)
    );
}

#[tokio::test]
async fn date_id_and_date_range_set_the_window_and_limit_cuts_it() {
    let app = app().await;
    let (good, _) = two_builds(&app).await;
    let lines = v3(&app, json!({"filters": {"build_id": good["build"]}})).await;
    assert!(lines.len() >= 5);
    let third = &lines[2];
    let id = third["id"].as_str().unwrap();
    let filters = json!({"build_id": good["build"]});

    // From a line id forward, and backward: the line itself is included.
    let forward = v3(
        &app,
        json!({"filters": filters, "id": id, "date_range": 86400}),
    )
    .await;
    assert_eq!(forward, lines[2..]);
    let backward = v3(
        &app,
        json!({"filters": filters, "id": id, "date_range": -86400}),
    )
    .await;
    assert_eq!(backward, lines[..3]);
    let only = v3(&app, json!({"filters": filters, "id": id, "date_range": 0})).await;
    assert_eq!(only, vec![third.clone()]);

    // From the line's date; `limit` keeps the lines nearest the starting point.
    let date = third["date"].as_str().unwrap();
    let two_forward = v3(
        &app,
        json!({"filters": filters, "date": date, "date_range": 60, "limit": 2}),
    )
    .await;
    assert_eq!(two_forward, lines[2..4]);
    let two_newest = v3(&app, json!({"filters": filters, "limit": 2})).await;
    assert_eq!(two_newest, lines[lines.len() - 2..]);

    // A window that ends before the first line, or starts in the future.
    let earlier = v3(
        &app,
        json!({"date": "2020-01-01T00:00:00.000000Z", "date_range": 86400}),
    )
    .await;
    assert!(earlier.is_empty());
    let later = v3(&app, json!({"date_range": 100})).await;
    assert!(later.is_empty());

    // Newer clients: `end` is exclusive, `start` inclusive.
    let first_ns = lines[0]["id"]
        .as_str()
        .map(|id| i64::from_str_radix(id, 16).unwrap())
        .unwrap();
    let query = format!("| build_id=\"{}\"", good["build"].as_str().unwrap());
    let none = v4(
        &app,
        &[
            ("query", query.clone()),
            ("start", "0".into()),
            ("end", first_ns.to_string()),
        ],
    )
    .await;
    assert!(none.is_empty());
    let one = v4(
        &app,
        &[
            ("query", query.clone()),
            ("start", first_ns.to_string()),
            ("end", (first_ns + 1).to_string()),
        ],
    )
    .await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["log"], lines[0]["log"]);
    let limited = v4(
        &app,
        &[
            ("query", query),
            ("start", "1".into()),
            ("end", now_ns().to_string()),
            ("limit", "3".into()),
        ],
    )
    .await;
    assert_eq!(texts(&limited), texts(&lines[..3]));
}

#[tokio::test]
async fn a_cancelled_build_says_who_cancelled_it_and_an_empty_body_is_fine() {
    let app = app().await;
    // No worker: the build stays queued until it is cancelled.
    let uploaded = upload(
        &app,
        "/projects/p/deployments/d/versions/v1",
        deployment_zip(),
        "deployment.zip",
    )
    .await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    let build = uploaded.body["build"].as_str().unwrap();
    let path = format!("/projects/p/deployments/d/versions/v1/builds/{build}");
    let cancelled = app.patch(&path, json!({"status": "cancelled"})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    wait_for_build(
        &app,
        "/projects/p/deployments/d/versions/v1",
        &uploaded.body["build"],
    )
    .await;

    // 3.13 sends no body at all when `data` is not given.
    let response = app
        .send(
            app.client()
                .post(app.url(&format!("/v2.1{LOGS}")))
                .header("Authorization", format!("Token {}", app.admin_token))
                .header("Content-Type", "application/json"),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    let lines = response.body.as_array().unwrap();
    assert_eq!(
        texts(lines),
        vec![
            format!(
                "Build queued: Deployment file upload of revision {}",
                uploaded.body["revision"].as_str().unwrap()
            )
            .as_str(),
            "Build cancelled by admin@example.com",
        ]
    );
}

#[tokio::test]
async fn bad_input_is_a_400_that_names_the_problem() {
    let app = app().await;
    for (body, expected) in [
        (json!({"limit": 501}), "Invalid `limit` 501"),
        (json!({"limit": 0}), "Invalid `limit` 0"),
        (json!({"date_range": 86401}), "Invalid `date_range` 86401"),
        (json!({"date_range": "soon"}), "date_range"),
        (
            json!({"filters": {"deployment_version": "v1"}}),
            "needs `filters.deployment_name`",
        ),
        (
            json!({"filters": {"colour": "red"}}),
            "Unknown filter `colour`",
        ),
        (json!({"filters": {"level": "debug"}}), "use info or error"),
        (json!({"filters": "deployment_name=d"}), "filters"),
        (json!({"colour": "red"}), "unknown field `colour`"),
        (
            json!({"date": "2020-01-01T00:00:00Z", "id": "0123456789abcdef01234567"}),
            "either `date` or `id`",
        ),
        (json!({"id": "short"}), "Invalid `id` 'short'"),
        (json!({"date": "yesterday"}), "Invalid `date` 'yesterday'"),
        (json!([1, 2]), "expected a JSON object"),
    ] {
        let response = app.post(LOGS, body.clone()).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            response.body
        );
        assert!(
            response.error().contains(expected),
            "{body}: {}",
            response.error()
        );
    }
    let no_body = app.call(Method::POST, LOGS, None).await;
    assert_eq!(
        no_body.status,
        StatusCode::OK,
        "no body is no filter: {}",
        no_body.body
    );
    let response = app
        .send(
            app.client()
                .post(app.url(&format!("/v2.1{LOGS}")))
                .header("Authorization", format!("Token {}", app.admin_token))
                .header("Content-Type", "application/json")
                .body("{\"limit\": "),
        )
        .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    assert!(
        response.error().contains("not valid JSON"),
        "{}",
        response.error()
    );

    for (params, expected) in [
        (
            vec![("query", "| colour=\"red\"")],
            "unknown label `colour`",
        ),
        (
            vec![("query", "| deployment_name=~\"d.*\"")],
            "regular expressions",
        ),
        (vec![("query", "| deployment_name=\"d")], "no closing"),
        (
            vec![("query", "| deployment_name=\"a\" or deployment_name=\"b\"")],
            "`or` is not supported",
        ),
        (vec![("start", "tomorrow")], "Invalid `start` 'tomorrow'"),
        (vec![("end", "-3")], "Invalid `end` '-3'"),
        (
            vec![("limit", "0")],
            "Invalid `limit` 0: use a whole number from 1 to 5000",
        ),
        (vec![("limit", "5001")], "Invalid `limit` 5001"),
    ] {
        let params: Vec<(&str, String)> =
            params.into_iter().map(|(k, v)| (k, v.to_owned())).collect();
        let response = v4_response(&app, &params).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{params:?}: {}",
            response.body
        );
        assert!(
            response.error().contains(expected),
            "{params:?}: {}",
            response.error()
        );
    }
    assert_eq!(
        app.get("/projects/nope/logs").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_limited_token_reads_only_its_own_projects_logs() {
    let app = app().await;
    app.create_project("other").await;
    let token = app.token("limited@example.com", Some(&["p"])).await;
    for project in ["other", "missing"] {
        let path = format!("/projects/{project}/logs");
        let posted = app
            .call_as(&token, Method::POST, &path, Some(json!({})))
            .await;
        assert_eq!(posted.status, StatusCode::FORBIDDEN, "{}", posted.body);
        let got = app.call_as(&token, Method::GET, &path, None).await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "{}", got.body);
        // Scope before validation: nothing about the project leaks.
        let bad = app
            .call_as(&token, Method::POST, &path, Some(json!({"limit": 0})))
            .await;
        assert_eq!(bad.status, StatusCode::FORBIDDEN, "{}", bad.body);
    }
    let own = app.call_as(&token, Method::GET, LOGS, None).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
}

fn line(project_id: uuid::Uuid, text: String) -> NewLogLine {
    NewLogLine {
        project_id,
        tags: LogTags {
            deployment_name: Some("d".into()),
            ..LogTags::default()
        },
        system: false,
        level: Level::Info,
        text,
    }
}

async fn project_id(app: &TestApp) -> uuid::Uuid {
    sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM projects WHERE name = 'p'")
        .fetch_one(app.store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn concurrent_appends_get_unique_ordered_times_and_paging_sees_each_once() {
    let app = app().await;
    let project = project_id(&app).await;
    let before = now_ns();
    let writers: Vec<_> = (0..16)
        .map(|writer| {
            let store = app.store.clone();
            tokio::spawn(async move {
                for batch in 0..5 {
                    let lines: Vec<NewLogLine> = (0..4)
                        .map(|n| line(project, format!("writer {writer} batch {batch} line {n}")))
                        .collect();
                    store.append_logs(&lines).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut seen = Vec::new();
    let mut start = before;
    loop {
        let page = v4(
            &app,
            &[
                ("start", start.to_string()),
                ("end", now_ns().to_string()),
                ("limit", "7".into()),
            ],
        )
        .await;
        let Some(last) = page.last() else { break };
        start = last["timestamp"].as_i64().unwrap() + 1;
        seen.extend(page);
    }
    assert_eq!(seen.len(), 16 * 5 * 4);
    let stamps: Vec<i64> = seen
        .iter()
        .map(|line| line["timestamp"].as_i64().unwrap())
        .collect();
    assert!(
        stamps.windows(2).all(|pair| pair[0] < pair[1]),
        "strictly increasing"
    );
    // A batch's lines stay together and in order.
    for writer in 0..16 {
        let own: Vec<&str> = texts(&seen)
            .into_iter()
            .filter(|text| text.starts_with(&format!("writer {writer} ")))
            .collect();
        let expected: Vec<String> = (0..5)
            .flat_map(|batch| {
                (0..4).map(move |n| format!("writer {writer} batch {batch} line {n}"))
            })
            .collect();
        assert_eq!(own, expected);
    }
    // Text is capped and cleaned when stored.
    app.store
        .append_logs(&[line(project, format!("{}\n", "x".repeat(20_000)))])
        .await
        .unwrap();
    let newest = v4(&app, &[("limit", "1".into())]).await;
    let text = newest[0]["log"].as_str().unwrap();
    assert_eq!(text.chars().count(), ubiops_domain::logs::MAX_LINE_CHARS);
    assert!(text.ends_with('…'));
}

#[tokio::test]
async fn the_sweep_deletes_lines_past_their_retention() {
    let app = app().await;
    let project = project_id(&app).await;
    let lines: Vec<NewLogLine> = (0..6).map(|n| line(project, format!("line {n}"))).collect();
    app.store.append_logs(&lines).await.unwrap();
    // Age three of the lines by two hours.
    let aged = sqlx::query(
        "UPDATE logs SET ns = ns - 7200000000000 WHERE text IN ('line 0', 'line 1', 'line 2')",
    )
    .execute(app.store.pool())
    .await
    .unwrap();
    assert_eq!(aged.rows_affected(), 3);
    let window = json!({"date_range": -86400, "limit": 500});
    assert_eq!(v3(&app, window.clone()).await.len(), 6);

    let mut config = app.worker_config(1);
    config.log_retention = Duration::from_secs(3600);
    let _worker = app.start_worker_with(config);
    let left = wait_for(
        "the sweep to delete the aged lines",
        Duration::from_secs(15),
        || async {
            let lines = v3(&app, window.clone()).await;
            (lines.len() == 3).then_some(lines)
        },
    )
    .await;
    assert_eq!(texts(&left), vec!["line 3", "line 4", "line 5"]);
}
