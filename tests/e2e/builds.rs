//! Deployment files and builds: uploads streamed to object storage, the
//! build worker's stages, cancel, rebuild, copy, and crash recovery.

use std::io::Write;
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};
use ubiops_test_support::{wait_for, Response, TestApp, TestOptions};

const VERSION: &str = "/projects/p/deployments/d/versions/v1";

pub const DEPLOYMENT_PY: &str = "\
class Deployment:
    def __init__(self, base_directory, context):
        self.ready = True

    def request(self, data):
        return {\"echo\": data}
";

pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buffer = std::io::Cursor::new(Vec::new());
    {
        let mut writer = zip::ZipWriter::new(&mut buffer);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, contents) in entries {
            writer.start_file(*name, options).unwrap();
            writer.write_all(contents).unwrap();
        }
        writer.finish().unwrap();
    }
    buffer.into_inner()
}

pub fn deployment_zip() -> Vec<u8> {
    zip_of(&[
        ("my_deployment/deployment.py", DEPLOYMENT_PY.as_bytes()),
        (
            "my_deployment/requirements.txt",
            b"numpy==1.26.4\nrequests>=2.0 # http\n",
        ),
    ])
}

async fn app() -> TestApp {
    app_with(TestOptions::default()).await
}

async fn app_with(options: TestOptions) -> TestApp {
    let app = TestApp::spawn_with(options).await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1", "v2"]).await;
    app
}

pub async fn upload(app: &TestApp, version: &str, bytes: Vec<u8>, file_name: &str) -> Response {
    let part = Part::bytes(bytes)
        .file_name(file_name.to_owned())
        .mime_str("application/zip")
        .unwrap();
    upload_form(app, version, Form::new().part("file", part)).await
}

async fn upload_form(app: &TestApp, version: &str, form: Form) -> Response {
    app.send(
        app.client()
            .post(app.url(&format!("/v2.1{version}/revisions")))
            .header("Authorization", format!("Token {}", app.admin_token))
            .multipart(form),
    )
    .await
}

/// Asks for `version` to get a copy of v1's active deployment file.
async fn copy_from_v1(app: &TestApp, version: &str) -> Response {
    let form = Form::new()
        .text("source_deployment", "d")
        .text("source_version", "v1");
    upload_form(app, version, form).await
}

/// Polls a build until it has finished; panics after 30 s.
pub async fn wait_for_build(app: &TestApp, version: &str, build: &Value) -> Value {
    let path = format!("{version}/builds/{}", build.as_str().unwrap());
    wait_for(
        &format!("{path} to finish"),
        Duration::from_secs(30),
        || async {
            let response = app.get(&path).await;
            assert_eq!(response.status, StatusCode::OK, "{}", response.body);
            matches!(
                response.body["status"].as_str(),
                Some("success" | "failed" | "cancelled")
            )
            .then_some(response.body)
        },
    )
    .await
}

/// Runs the queued builds to their end, as a worker would, and returns
/// `build` (which must be among them) as the API shows it.
pub async fn run_build(app: &TestApp, version: &str, build: &Value) -> Value {
    app.run_pending_builds().await;
    finished_build(app, version, build).await
}

/// `build` as the API shows it, which must have finished.
async fn finished_build(app: &TestApp, version: &str, build: &Value) -> Value {
    let path = format!("{version}/builds/{}", build.as_str().unwrap());
    let response = app.get(&path).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert!(
        matches!(
            response.body["status"].as_str(),
            Some("success" | "failed" | "cancelled")
        ),
        "{path} has not finished: {}",
        response.body
    );
    response.body
}

pub async fn upload_and_build(app: &TestApp, version: &str, bytes: Vec<u8>) -> (Value, Value) {
    let uploaded = upload(app, version, bytes, "deployment.zip").await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    let build = run_build(app, version, &uploaded.body["build"]).await;
    (uploaded.body, build)
}

async fn stored_keys(app: &TestApp) -> Vec<String> {
    app.files.list_keys("revisions").await.unwrap()
}

/// Polls `check` until it passes; fails with its last complaint after 10 s.
async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match check().await {
            Ok(()) => return,
            Err(complaint) => assert!(Instant::now() < deadline, "{complaint}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until exactly `count` files are stored.
async fn wait_for_stored(app: &TestApp, count: usize, what: &str) {
    eventually(|| async {
        let keys = stored_keys(app).await;
        if keys.len() == count {
            Ok(())
        } else {
            Err(format!("{what}: still stored {keys:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn upload_builds_and_downloads_the_same_bytes() {
    let app = app().await;
    let zip = deployment_zip();
    let uploaded = upload(&app, VERSION, zip.clone(), "my model.zip").await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    assert_eq!(uploaded.body["success"], true);
    let (revision, build_id) = (
        uploaded.body["revision"].clone(),
        uploaded.body["build"].clone(),
    );

    let build = run_build(&app, VERSION, &build_id).await;
    assert_eq!(build["status"], "success", "{build}");
    assert_eq!(build["revision"], revision);
    assert_eq!(build["trigger"], "Deployment file upload");
    assert_eq!(
        (
            build["has_request_method"].clone(),
            build["has_requests_method"].clone()
        ),
        (json!(true), json!(false))
    );
    assert_eq!(build["error_message"], Value::Null);
    for field in [
        "id",
        "revision",
        "creation_date",
        "status",
        "error_message",
        "trigger",
        "has_request_method",
        "has_requests_method",
    ] {
        assert!(build.get(field).is_some(), "{field}");
    }

    let version = app.get(VERSION).await.body;
    assert_eq!(version["status"], "available");
    assert_eq!(version["active_revision"], revision);
    assert_eq!(version["latest_build"], build_id);
    assert_eq!(version["has_request_method"], true);
    assert!(version["last_file_upload"].is_string());

    let fetched = app
        .get(&format!(
            "{VERSION}/revisions/{}",
            revision.as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(fetched["version"], "v1");
    assert_eq!(fetched["created_by"], "admin@example.com");
    assert_eq!(
        (fetched["status"].clone(), fetched["error_message"].clone()),
        (json!("success"), Value::Null)
    );
    assert_eq!(
        app.get(&format!("{VERSION}/revisions")).await.body,
        json!([fetched])
    );
    assert_eq!(
        app.get(&format!("{VERSION}/builds")).await.body,
        json!([build])
    );

    let download = app
        .client()
        .get(app.url(&format!(
            "/v2.1{VERSION}/revisions/{}/download",
            revision.as_str().unwrap()
        )))
        .header("Authorization", format!("Token {}", app.admin_token))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.headers()["content-type"], "application/zip");
    assert_eq!(
        download.headers()["content-disposition"],
        "attachment; filename=\"my_model.zip\""
    );
    assert_eq!(
        download.bytes().await.unwrap().to_vec(),
        zip,
        "byte-identical"
    );

    // The object key is made of the revision id, nothing the user chose.
    assert_eq!(
        stored_keys(&app).await,
        vec![format!("revisions/{}.zip", revision.as_str().unwrap())]
    );
    let audit = app
        .get("/projects/p/deployments/d/audit?limit=2")
        .await
        .body;
    let events: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        events[0].starts_with("Build ") && events[0].ends_with("succeeded"),
        "{events:?}"
    );
    assert!(
        events[1].starts_with("Uploaded a deployment file"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_queued_build_shows_the_version_as_building() {
    let app = app().await;
    let uploaded = upload(&app, VERSION, deployment_zip(), "d.zip").await;
    let build = app
        .get(&format!(
            "{VERSION}/builds/{}",
            uploaded.body["build"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(build["status"], "queued");
    assert_eq!(app.get(VERSION).await.body["status"], "building");
    assert_eq!(
        app.get(&format!("{VERSION}/revisions")).await.body[0]["status"],
        "queued"
    );
    assert_eq!(
        run_build(&app, VERSION, &uploaded.body["build"]).await["status"],
        "success"
    );
    assert_eq!(app.get(VERSION).await.body["status"], "available");
}

#[tokio::test]
async fn failed_builds_say_what_to_fix_and_keep_the_previous_revision() {
    let app = app().await;
    let (good, _) = upload_and_build(&app, VERSION, deployment_zip()).await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (zip_of(&[("deployment.py", b"class Deployment:\n    def __init__(self):\n        pass\n    def request(self, data)\n        return data\n")]),
         "deployment.py line 4"),
        (zip_of(&[("model.py", b"x = 1\n")]), "Could not find the deployment file"),
        (zip_of(&[("deployment.py", b"class Other:\n    pass\n")]), "no class named Deployment"),
        (zip_of(&[("deployment.py", b"class Deployment:\n    def request(self, d):\n        return d\n")]), "__init__"),
        (zip_of(&[("deployment.py", DEPLOYMENT_PY.as_bytes()), ("../evil.py", b"x")]), "../evil.py"),
        (zip_of(&[("deployment.py", DEPLOYMENT_PY.as_bytes()), ("requirements.txt", b"numpy\nnot a requirement!\n")]),
         "requirements.txt line 2"),
    ];
    for (zip, expected) in cases {
        let (_, build) = upload_and_build(&app, VERSION, zip).await;
        assert_eq!(build["status"], "failed", "{expected}: {build}");
        let message = build["error_message"].as_str().unwrap();
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
        let version = app.get(VERSION).await.body;
        assert_eq!(
            version["status"], "available",
            "the previous revision still serves"
        );
        assert_eq!(version["active_revision"], good["revision"]);
    }
    let revisions = app.get(&format!("{VERSION}/revisions")).await.body;
    assert_eq!(revisions.as_array().unwrap().len(), 7);
    assert_eq!(revisions[6]["status"], "failed");
    assert!(revisions[6]["error_message"]
        .as_str()
        .unwrap()
        .contains("requirements.txt"));
}

#[tokio::test]
async fn a_build_whose_file_went_missing_fails_and_says_so() {
    let app = app().await;
    let uploaded = upload(&app, VERSION, deployment_zip(), "model.zip").await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    let revision: uuid::Uuid = uploaded.body["revision"].as_str().unwrap().parse().unwrap();
    // Lost from storage before any worker got to it (an operator's mistake).
    let key = ubiops_files::FileStore::revision_key(revision);
    app.files.delete(&key).await.unwrap();
    let build = run_build(&app, VERSION, &uploaded.body["build"]).await;
    assert_eq!(build["status"], "failed", "{build}");
    let message = build["error_message"].as_str().unwrap();
    assert!(message.contains("missing from storage"), "{message}");
}

#[tokio::test]
async fn zip_bombs_are_refused_by_the_worker() {
    let app = app().await;
    let mut config = app.worker_config(1);
    config.limits.max_total_uncompressed = 1024 * 1024;
    config.limits.max_file_uncompressed = 1024 * 1024;
    let zeros = vec![0u8; 8 * 1024 * 1024];
    let bomb = zip_of(&[
        ("deployment.py", DEPLOYMENT_PY.as_bytes()),
        ("weights.bin", &zeros),
    ]);
    assert!(
        bomb.len() < 64 * 1024,
        "it compresses well: {} bytes",
        bomb.len()
    );
    let uploaded = upload(&app, VERSION, bomb, "deployment.zip").await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    app.run_pending_builds_with(&config).await;
    let build = finished_build(&app, VERSION, &uploaded.body["build"]).await;
    assert_eq!(build["status"], "failed");
    assert!(
        build["error_message"]
            .as_str()
            .unwrap()
            .contains("expands beyond 1 MiB"),
        "{build}"
    );
    assert_eq!(app.get(VERSION).await.body["status"], "unavailable");
}

#[tokio::test]
async fn refused_uploads_store_nothing() {
    let app = app_with(TestOptions {
        max_upload_bytes: 256 * 1024,
        ..TestOptions::default()
    })
    .await;
    let before = app.snapshot().await;
    let not_zip = upload(&app, VERSION, b"this is not a zip file".to_vec(), "d.zip").await;
    assert_eq!(not_zip.status, StatusCode::BAD_REQUEST);
    assert!(not_zip.error().contains("must be a zip archive"));
    let empty = upload(&app, VERSION, Vec::new(), "d.zip").await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let mut big = b"PK\x03\x04".to_vec();
    big.resize(300 * 1024, 7);
    let too_big = upload(&app, VERSION, big, "d.zip").await;
    assert_eq!(
        too_big.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        too_big.body
    );
    let nothing = upload_form(&app, VERSION, Form::new()).await;
    assert_eq!(nothing.status, StatusCode::BAD_REQUEST);
    assert!(
        nothing.error().contains("No deployment file"),
        "{}",
        nothing.error()
    );
    let no_body = app.post(&format!("{VERSION}/revisions"), json!({})).await;
    assert_eq!(no_body.status, StatusCode::BAD_REQUEST);
    assert!(no_body.error().contains("multipart/form-data"));
    let both = upload_form(
        &app,
        VERSION,
        Form::new()
            .part("file", Part::bytes(deployment_zip()).file_name("d.zip"))
            .text("source_deployment", "d")
            .text("source_version", "v2"),
    )
    .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
    let half = upload_form(&app, VERSION, Form::new().text("source_deployment", "d")).await;
    assert_eq!(half.status, StatusCode::BAD_REQUEST);
    assert!(half.error().contains("together"));
    let unknown = upload_form(&app, VERSION, Form::new().text("colour", "red")).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);

    // A body cut off in the middle of the file part.
    let boundary = "XBOUNDARYX";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.zip\"\r\nContent-Type: application/zip\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&deployment_zip()[..200]);
    let cut = app
        .send(
            app.client()
                .post(app.url(&format!("/v2.1{VERSION}/revisions")))
                .header("Authorization", format!("Token {}", app.admin_token))
                .header(
                    "Content-Type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body),
        )
        .await;
    assert_eq!(cut.status, StatusCode::BAD_REQUEST, "{}", cut.body);

    assert_eq!(
        app.snapshot().await,
        before,
        "no revision, build or pending upload left"
    );
    assert!(stored_keys(&app).await.is_empty(), "no stray object");
    let missing = upload(
        &app,
        "/projects/p/deployments/d/versions/ghost",
        deployment_zip(),
        "d.zip",
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cancel_queued_and_running_builds_but_not_finished_ones() {
    let app = app().await;
    let uploaded = upload(&app, VERSION, deployment_zip(), "d.zip").await.body;
    let path = format!("{VERSION}/builds/{}", uploaded["build"].as_str().unwrap());
    for (body, expected) in [
        (
            json!({"status": "success"}),
            "can only be set to 'cancelled'",
        ),
        (json!({"status": 1}), "invalid type"),
        (json!({}), "missing field `status`"),
    ] {
        let response = app.patch(&path, body).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST);
        assert!(response.error().contains(expected), "{}", response.error());
    }
    let cancelled = app.patch(&path, json!({"status": "cancelled"})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(app.get(VERSION).await.body["status"], "unavailable");
    let again = app.patch(&path, json!({"status": "cancelled"})).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.error().contains("already finished"));

    // Cancelled while a worker holds it: the worker's next step sees it and
    // the build is never published.
    let running = upload(&app, VERSION, deployment_zip(), "d.zip").await.body;
    let claimed = app
        .store
        .claim_build("slow-worker", 60.0, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id.to_string(), running["build"].as_str().unwrap());
    let path = format!("{VERSION}/builds/{}", claimed.id);
    assert_eq!(app.get(&path).await.body["status"], "building");
    assert_eq!(
        app.patch(&path, json!({"status": "cancelled"}))
            .await
            .status,
        StatusCode::OK
    );
    assert!(!app
        .store
        .start_validating(claimed.id, "slow-worker")
        .await
        .unwrap());
    let outcome = ubiops_storage::BuildOutcome::Success {
        has_request_method: true,
        has_requests_method: false,
        environment: None,
    };
    assert!(!app
        .store
        .finish_build(&claimed, "slow-worker", &outcome)
        .await
        .unwrap());
    assert_eq!(app.get(&path).await.body["status"], "cancelled");
    let version = app.get(VERSION).await.body;
    assert_eq!(
        (
            version["status"].clone(),
            version["active_revision"].clone()
        ),
        (json!("unavailable"), Value::Null)
    );

    // Finished builds cannot be cancelled.
    let (_, done) = upload_and_build(&app, VERSION, deployment_zip()).await;
    let finished = app
        .patch(
            &format!("{VERSION}/builds/{}", done["id"].as_str().unwrap()),
            json!({"status": "cancelled"}),
        )
        .await;
    assert_eq!(finished.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn rebuild_copy_and_template_create_builds_server_side() {
    let app = app().await;
    let (uploaded, _) = upload_and_build(&app, VERSION, deployment_zip()).await;
    let revision = uploaded["revision"].as_str().unwrap();

    let rebuilt = app
        .post(
            &format!("{VERSION}/revisions/{revision}/rebuild"),
            json!({}),
        )
        .await;
    assert_eq!(rebuilt.status, StatusCode::CREATED, "{}", rebuilt.body);
    assert_eq!(rebuilt.body["trigger"], "Rebuild");
    assert_eq!(rebuilt.body["revision"], uploaded["revision"]);
    assert_eq!(
        run_build(&app, VERSION, &rebuilt.body["id"]).await["status"],
        "success"
    );
    assert_eq!(
        app.get(&format!("{VERSION}/builds"))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let v2 = "/projects/p/deployments/d/versions/v2";
    let copied = copy_from_v1(&app, v2).await;
    assert_eq!(copied.status, StatusCode::CREATED, "{}", copied.body);
    let build = run_build(&app, v2, &copied.body["build"]).await;
    assert_eq!(
        (build["status"].clone(), build["trigger"].clone()),
        (json!("success"), json!("Copy from version"))
    );
    assert_ne!(
        copied.body["revision"], uploaded["revision"],
        "a revision of its own"
    );

    // Template: any readable deployment's default version's active revision.
    let template_id = app.get("/projects/p/deployments/d").await.body["id"].clone();
    app.create_deployment("p", "from-template", &["t1"]).await;
    let t1 = "/projects/p/deployments/from-template/versions/t1";
    let templated = upload_form(
        &app,
        t1,
        Form::new().text(
            "template_deployment_id",
            template_id.as_str().unwrap().to_owned(),
        ),
    )
    .await;
    assert_eq!(templated.status, StatusCode::CREATED, "{}", templated.body);
    assert_eq!(
        run_build(&app, t1, &templated.body["build"]).await["trigger"],
        "Template"
    );
    assert_eq!(
        stored_keys(&app).await.len(),
        3,
        "copies are objects of their own"
    );

    let before = app.snapshot().await;
    let no_file = upload_form(
        &app,
        v2,
        Form::new()
            .text("source_deployment", "from-template")
            .text("source_version", "t9"),
    )
    .await;
    assert_eq!(no_file.status, StatusCode::NOT_FOUND);
    let unbuilt = {
        app.post(
            "/projects/p/deployments/d/versions",
            json!({"version": "empty"}),
        )
        .await;
        upload_form(
            &app,
            v2,
            Form::new()
                .text("source_deployment", "d")
                .text("source_version", "empty"),
        )
        .await
    };
    assert_eq!(unbuilt.status, StatusCode::BAD_REQUEST);
    assert!(unbuilt
        .error()
        .contains("no successfully built deployment file"));
    let bad_template =
        upload_form(&app, v2, Form::new().text("template_deployment_id", "nope")).await;
    assert_eq!(bad_template.status, StatusCode::BAD_REQUEST);
    let unknown_template = upload_form(
        &app,
        v2,
        Form::new().text("template_deployment_id", uuid::Uuid::new_v4().to_string()),
    )
    .await;
    assert_eq!(unknown_template.status, StatusCode::NOT_FOUND);
    app.delete("/projects/p/deployments/d/versions/empty").await;
    let mut after = app.snapshot().await;
    let mut expected = before.clone();
    // Only the audit events of creating and deleting "empty" differ.
    after.as_object_mut().unwrap().remove("audit_events");
    expected.as_object_mut().unwrap().remove("audit_events");
    assert_eq!(after, expected);
}

#[tokio::test]
async fn a_limited_token_cannot_use_another_projects_deployment_as_template() {
    let app = app().await;
    upload_and_build(&app, VERSION, deployment_zip()).await;
    let template_id = app.get("/projects/p/deployments/d").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.create_project("mine").await;
    app.create_deployment("mine", "m", &["v1"]).await;
    let limited = app.token("limited@example.com", Some(&["mine"])).await;
    let response = app
        .send(
            app.client()
                .post(app.url("/v2.1/projects/mine/deployments/m/versions/v1/revisions"))
                .header("Authorization", format!("Token {limited}"))
                .multipart(Form::new().text("template_deployment_id", template_id)),
        )
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(response.error(), "Template deployment not found");
}

#[tokio::test]
async fn a_build_whose_worker_died_is_finished_once_by_another() {
    let app = app().await;
    let uploaded = upload(&app, VERSION, deployment_zip(), "d.zip").await.body;
    // A worker claims it and dies: its 1 s lease runs out.
    let dead = app
        .store
        .claim_build("dead-worker", 1.0, 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.attempts, 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let _worker = app.start_worker(2);
    let build = wait_for_build(&app, VERSION, &uploaded["build"]).await;
    assert_eq!(build["status"], "success");
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM builds")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(attempts, 2);
    // The dead worker cannot publish late.
    let late = ubiops_storage::BuildOutcome::Failed("late".into());
    assert!(!app
        .store
        .finish_build(&dead, "dead-worker", &late)
        .await
        .unwrap());
    let outcomes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE event LIKE 'Build %'")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(outcomes, 1, "published exactly once");
}

#[tokio::test]
async fn a_build_that_keeps_killing_its_workers_fails_after_three_attempts() {
    let app = app().await;
    let uploaded = upload(&app, VERSION, deployment_zip(), "d.zip").await.body;
    for attempt in 1..=3 {
        let claimed = app
            .store
            .claim_build(&format!("doomed-{attempt}"), 0.2, 3)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.attempts, attempt);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        app.store
            .claim_build("another", 1.0, 3)
            .await
            .unwrap()
            .is_none(),
        "not claimed a fourth time"
    );
    let _worker = app.start_worker(1);
    let build = wait_for_build(&app, VERSION, &uploaded["build"]).await;
    assert_eq!(build["status"], "failed");
    assert!(
        build["error_message"]
            .as_str()
            .unwrap()
            .contains("interrupted 3 times"),
        "{build}"
    );
    assert_eq!(app.get(VERSION).await.body["status"], "unavailable");
}

#[tokio::test]
async fn two_workers_process_every_build_exactly_once() {
    let app = app().await;
    let mut builds = Vec::new();
    for i in 0..24 {
        let version = if i % 2 == 0 {
            VERSION
        } else {
            "/projects/p/deployments/d/versions/v2"
        };
        builds.push((
            version,
            upload(&app, version, deployment_zip(), "d.zip").await.body["build"].clone(),
        ));
    }
    let first = app.start_worker(2);
    let second = app.start_worker(2);
    for (version, build) in &builds {
        assert_eq!(
            wait_for_build(&app, version, build).await["status"],
            "success"
        );
    }
    first.stop().await;
    second.stop().await;
    let (attempts, outcomes): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT sum(attempts) FROM builds)::bigint,
                (SELECT count(*) FROM audit_events WHERE event LIKE 'Build %')",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!((attempts, outcomes), (24, 24));
}

#[tokio::test]
async fn deleting_a_version_deletes_its_files_after_the_commit() {
    let app = app().await;
    upload_and_build(&app, VERSION, deployment_zip()).await;
    upload_and_build(
        &app,
        "/projects/p/deployments/d/versions/v2",
        deployment_zip(),
    )
    .await;
    assert_eq!(stored_keys(&app).await.len(), 2);
    assert_eq!(app.delete(VERSION).await.status, StatusCode::NO_CONTENT);
    wait_for_stored(&app, 1, "the file of the deleted version is still stored").await;
    assert_eq!(
        app.delete("/projects/p/deployments/d").await.status,
        StatusCode::NO_CONTENT
    );
    wait_for_stored(&app, 0, "the files of the deleted deployment").await;
    // The queue entry goes right after its file (a moment later).
    eventually(|| async {
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM object_deletions")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
        match queued {
            0 => Ok(()),
            _ => Err(format!("{queued} deletions still queued")),
        }
    })
    .await;
}

#[tokio::test]
async fn interrupted_uploads_are_swept_when_their_lease_expires() {
    let app = app().await;
    // What a server killed mid-upload leaves: pending records, and a partial
    // object or the staging file of one still being written.
    let mut uploads = Vec::new();
    for _ in 0..2 {
        let key = ubiops_files::FileStore::revision_key(uuid::Uuid::new_v4());
        app.store.begin_upload(&key, 0.1).await.unwrap();
        let mut upload = app.files.start_upload(&key).await.unwrap();
        upload.write(b"PK\x03\x04partial").await.unwrap();
        uploads.push(upload);
    }
    let (killed, finished) = (uploads.pop().unwrap(), uploads.pop().unwrap());
    finished.finish().await.unwrap();
    // A killed server runs no destructors.
    std::mem::forget(killed);
    let revisions = app.files_dir.path().join("revisions");
    let files_on_disk = || std::fs::read_dir(&revisions).unwrap().count();
    assert_eq!(files_on_disk(), 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _worker = app.start_worker(1);
    wait_for_stored(&app, 0, "the partial upload was not swept").await;
    eventually(|| async {
        match files_on_disk() {
            0 => Ok(()),
            left => Err(format!("{left} staging files left")),
        }
    })
    .await;
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM pending_uploads")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn s3_storage_streams_multipart_uploads_and_cleans_up() {
    let files = ubiops_test_support::s3_file_store().await;
    let app = app_with(TestOptions {
        files: Some(files),
        ..TestOptions::default()
    })
    .await;
    // Incompressible content larger than one part, so the upload is a real
    // multipart upload.
    let mut noise = vec![0u8; 12 * 1024 * 1024];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for byte in noise.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let zip = zip_of(&[
        ("deployment.py", DEPLOYMENT_PY.as_bytes()),
        ("weights.bin", &noise),
    ]);
    let (uploaded, build) = upload_and_build(&app, VERSION, zip.clone()).await;
    assert_eq!(build["status"], "success", "{build}");
    let revision = uploaded["revision"].as_str().unwrap();
    let download = app
        .client()
        .get(app.url(&format!("/v2.1{VERSION}/revisions/{revision}/download")))
        .header("Authorization", format!("Token {}", app.admin_token))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert!(
        download.bytes().await.unwrap().to_vec() == zip,
        "byte-identical through S3"
    );

    let v2 = "/projects/p/deployments/d/versions/v2";
    let copied = copy_from_v1(&app, v2).await;
    assert_eq!(
        run_build(&app, v2, &copied.body["build"]).await["status"],
        "success"
    );
    assert_eq!(stored_keys(&app).await.len(), 2);

    let refused = upload(&app, VERSION, b"not a zip".to_vec(), "x.zip").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.delete("/projects/p/deployments/d").await.status,
        StatusCode::NO_CONTENT
    );
    wait_for_stored(
        &app,
        0,
        "files of the deleted deployment are still in the bucket",
    )
    .await;
}

#[tokio::test]
async fn an_upload_whose_lease_was_swept_does_not_become_a_revision() {
    let app = app().await;
    let version_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM versions WHERE name = 'v1'")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    let deployment_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM deployments WHERE name = 'd'")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    let project_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM projects WHERE name = 'p'")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4();
    let key = ubiops_files::FileStore::revision_key(id);
    // The sweep removed the record (its lease expired) before the upload finished.
    app.store.begin_upload(&key, 60.0).await.unwrap();
    app.store.end_upload(&key).await.unwrap();
    let version = ubiops_storage::VersionRef {
        deployment: ubiops_storage::DeploymentRef {
            project_id,
            id: deployment_id,
            name: "d",
        },
        id: version_id,
        name: "v1",
    };
    let file = ubiops_storage::NewRevision {
        id,
        object_key: key,
        file_name: "d.zip".into(),
        size_bytes: 10,
    };
    let actor = ubiops_storage::Actor {
        email: "a@example.com".into(),
    };
    let refused = app
        .store
        .create_revision(version, &file, ubiops_storage::Trigger::Upload, &actor)
        .await;
    assert!(
        matches!(refused, Err(ubiops_storage::StorageError::Rejected(_))),
        "{refused:?}"
    );
    let revisions: i64 = sqlx::query_scalar("SELECT count(*) FROM revisions")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(revisions, 0);
}
