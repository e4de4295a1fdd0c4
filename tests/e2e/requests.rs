//! Direct requests: the uploaded code runs in instances of its version and
//! answers. Real builds make the environments, real Python processes run
//! the code, over real HTTP.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use ubiops_domain::secrets::Keyring;
use ubiops_runtime::{DirectRequest, Serving};
use ubiops_test_support::{shared_build_tools, wait_for, TestApp};
use ubiops_worker::BuildTools;

use crate::builds::{upload_and_build, zip_of};

const D: &str = "/projects/p/deployments/d";
const V1: &str = "/projects/p/deployments/d/versions/v1";
const V2: &str = "/projects/p/deployments/d/versions/v2";

/// A package whose `deployment.py` is `code`.
fn package(code: &str) -> Vec<u8> {
    zip_of(&[("pkg/deployment.py", code.as_bytes())])
}

const ECHO: &str = "\
class Deployment:
    def __init__(self, base_directory, context):
        self.context = context

    def request(self, data, context):
        return data
";

/// Project `p`, deployment `d` (plain in and out) with versions v1 and v2.
async fn app() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1", "v2"]).await;
    app
}

/// Uploads `code` to `version` and builds it; the build must succeed.
async fn deploy(app: &TestApp, version: &str, code: &str) {
    let (_, build) = upload_and_build(app, version, package(code)).await;
    assert_eq!(build["status"], "success", "{build}");
}

async fn request(app: &TestApp, path: &str, data: Value) -> Value {
    let response = app.post(&format!("{path}/requests"), data).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.body
}

async fn log_lines(app: &TestApp, request_id: &str) -> Vec<Value> {
    let response = app
        .post(
            "/projects/p/logs",
            json!({"filters": {"deployment_request_id": request_id}, "limit": 100, "date_range": -3600}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.body.as_array().unwrap().clone()
}

#[tokio::test]
async fn a_request_to_the_default_version_returns_what_the_code_computed() {
    let app = app().await;
    deploy(&app, V1, ECHO).await;
    let answer = request(&app, D, json!("hello")).await;
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["result"], "hello");
    assert_eq!(answer["status"], "completed");
    assert_eq!(answer["deployment"], "d");
    assert_eq!(answer["version"], "v1");
    assert_eq!(answer["error_message"], Value::Null);
    assert_eq!(answer["timeout"], 300);
    // The version's own endpoint, and the same instance again.
    let again = request(&app, V1, json!("again")).await;
    assert_eq!(again["result"], "again");
    assert_eq!(app.serving.pools().alive(version_id(&app, "v1").await), 1);
}

async fn version_id(app: &TestApp, version: &str) -> uuid::Uuid {
    let (_, deployment) = app.store.resolve_deployment("p", "d").await.unwrap();
    app.store.version_id(deployment, version).await.unwrap()
}

#[tokio::test]
async fn requests_that_cannot_reach_code_get_a_clear_4xx() {
    let app = app().await;
    // v1 has no build yet.
    let response = app.post(&format!("{V1}/requests"), json!("x")).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(
        response.error().contains("is not available"),
        "{}",
        response.error()
    );
    let response = app
        .post("/projects/p/deployments/nope/requests", json!("x"))
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    let response = app
        .post(&format!("{D}/versions/nope/requests"), json!("x"))
        .await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    for timeout in ["0", "3601", "abc", "-5"] {
        let response = app
            .post(&format!("{V1}/requests?timeout={timeout}"), json!("x"))
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{timeout}");
        assert!(response.error().contains("timeout"), "{}", response.error());
    }
    // A plain deployment takes a string, or a list of strings.
    deploy(&app, V1, ECHO).await;
    for bad in [json!(5), json!({"a": 1}), json!([]), json!([1, 2])] {
        let response = app.post(&format!("{V1}/requests"), bad.clone()).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Nothing was stored for refused requests.
    let listed = app.get(&format!("{V1}/requests")).await;
    assert_eq!(listed.body, json!([]), "{}", listed.body);
}

#[tokio::test]
async fn a_deployment_without_a_default_version_says_so() {
    let app = app().await;
    deploy(&app, V1, ECHO).await;
    app.delete(V1).await;
    app.delete(V2).await;
    let response = app.post(&format!("{D}/requests"), json!("x")).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(
        response.error().contains("no default version"),
        "{}",
        response.error()
    );
}

#[tokio::test]
async fn structured_input_and_output_are_checked_against_the_fields() {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    let created = app
        .post(
            "/projects/p/deployments",
            json!({
                "name": "d", "input_type": "structured", "output_type": "structured",
                "input_fields": [{"name": "x", "data_type": "double"}, {"name": "n", "data_type": "int"},
                                 {"name": "tags", "data_type": "array_string"}],
                "output_fields": [{"name": "y", "data_type": "double"}]
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    app.post(&format!("{D}/versions"), json!({"version": "v1"}))
        .await;
    deploy(
        &app,
        V1,
        "\
class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data):
        if data['n'] == 0:
            return {'y': 'not a number'}
        return {'y': data['x'] * data['n']}
",
    )
    .await;
    let answer = request(&app, V1, json!({"x": 1.5, "n": 2, "tags": ["a"]})).await;
    assert_eq!(answer["result"], json!({"y": 3.0}), "{answer}");
    // A list goes to request() item by item (no requests() here).
    let many = request(
        &app,
        V1,
        json!([{"x": 1.0, "n": 1, "tags": []}, {"x": 2.0, "n": 3, "tags": []}]),
    )
    .await;
    assert_eq!(many["result"], json!([{"y": 1.0}, {"y": 6.0}]), "{many}");
    for (bad, named) in [
        (json!({"x": "one", "n": 2, "tags": []}), "x"),
        (json!({"x": 1.0, "tags": []}), "n"),
        (json!({"x": 1.0, "n": 2, "tags": [], "extra": 1}), "extra"),
        (json!({"x": 1.0, "n": 2, "tags": [1]}), "tags"),
        (json!("plain"), ""),
    ] {
        let response = app.post(&format!("{V1}/requests"), bad.clone()).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(response.error().contains(named), "{}", response.error());
    }
    let wrong = request(&app, V1, json!({"x": 1.0, "n": 0, "tags": []})).await;
    assert_eq!(wrong["success"], false);
    assert_eq!(wrong["result"], Value::Null);
    let message = wrong["error_message"].as_str().unwrap();
    assert!(message.contains("'y'"), "{message}");
}

#[tokio::test]
async fn failures_of_the_code_are_answers_and_the_version_keeps_serving() {
    let app = app().await;
    deploy(
        &app,
        V1,
        "\
import os, time

class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data):
        if data == 'raise':
            raise ValueError('bad input here')
        if data == 'exit':
            os._exit(3)
        if data == 'sleep':
            time.sleep(30)
        if data == 'object':
            return object()
        return 'ok ' + data
",
    )
    .await;
    let raised = request(&app, V1, json!("raise")).await;
    assert_eq!(raised["success"], false);
    assert_eq!(raised["status"], "failed");
    assert_eq!(raised["error_message"], "ValueError: bad input here");
    assert_eq!(request(&app, V1, json!("x")).await["result"], "ok x");

    let crashed = request(&app, V1, json!("exit")).await;
    let message = crashed["error_message"].as_str().unwrap();
    assert!(
        message.contains("crashed") && message.contains('3'),
        "{message}"
    );
    assert_eq!(request(&app, V1, json!("y")).await["result"], "ok y");

    let started = std::time::Instant::now();
    let response = app
        .post(&format!("{V1}/requests?timeout=2"), json!("sleep"))
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let message = response.body["error_message"].as_str().unwrap();
    assert!(message.contains("within its timeout of 2 s"), "{message}");
    assert_eq!(request(&app, V1, json!("z")).await["result"], "ok z");

    let odd = request(&app, V1, json!("object")).await;
    let message = odd["error_message"].as_str().unwrap();
    assert!(message.contains("JSON"), "{message}");
}

#[tokio::test]
async fn a_constructor_that_raises_makes_requests_fail_saying_so_without_hanging() {
    let app = app().await;
    deploy(
        &app,
        V1,
        "\
class Deployment:
    def __init__(self, base_directory, context):
        raise RuntimeError('the model file is missing')

    def request(self, data):
        return data
",
    )
    .await;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let answer = request(&app, V1, json!("x")).await;
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(answer["success"], false);
        let message = answer["error_message"].as_str().unwrap();
        assert!(message.contains("could not start"), "{message}");
        assert!(
            message.contains("RuntimeError: the model file is missing"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn the_code_gets_its_variables_with_secrets_opened_and_its_context() {
    let app = app().await;
    for (scope, name, value, secret) in [
        ("/projects/p", "LEVEL", "project", false),
        ("/projects/p", "ONLY_PROJECT", "p", false),
        (D, "LEVEL", "deployment", false),
        (V1, "API_KEY", "s3cr3t-value", true),
    ] {
        let response = app
            .post(
                &format!("{scope}/environment-variables"),
                json!({"name": name, "value": value, "secret": secret}),
            )
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    }
    deploy(
        &app,
        V1,
        "\
import json, os

class Deployment:
    def __init__(self, base_directory, context):
        self.init_context = context
        self.base = base_directory

    def request(self, data, context):
        return json.dumps({
            'env': {k: os.environ.get(k) for k in ['LEVEL', 'ONLY_PROJECT', 'API_KEY',
                     'DEPLOYMENT_NAME', 'DEPLOYMENT_VERSION', 'PROJECT_NAME']},
            'init': self.init_context, 'request': context,
            'has_code': os.path.exists(os.path.join(self.base, 'deployment.py')),
        })
",
    )
    .await;
    let answer = request(&app, V1, json!("x")).await;
    let seen: Value = serde_json::from_str(answer["result"].as_str().unwrap()).unwrap();
    assert_eq!(
        seen["env"],
        json!({"LEVEL": "deployment", "ONLY_PROJECT": "p", "API_KEY": "s3cr3t-value",
               "DEPLOYMENT_NAME": "d", "DEPLOYMENT_VERSION": "v1", "PROJECT_NAME": "p"})
    );
    assert_eq!(seen["init"]["deployment"], "d");
    assert_eq!(seen["init"]["version"], "v1");
    assert_eq!(seen["init"]["input_type"], "plain");
    assert_eq!(seen["request"]["id"], answer["id"]);
    assert_eq!(seen["request"]["request_mode"], "express");
    assert_eq!(seen["has_code"], true);
    // A changed variable reaches new instances: the old ones are replaced.
    let listed = app.get(&format!("{D}/environment-variables")).await;
    let id = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "LEVEL")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.patch(
        &format!("{D}/environment-variables/{id}"),
        json!({"name": "LEVEL", "value": "changed", "secret": false}),
    )
    .await;
    let answer = request(&app, V1, json!("x")).await;
    let seen: Value = serde_json::from_str(answer["result"].as_str().unwrap()).unwrap();
    assert_eq!(seen["env"]["LEVEL"], "changed");
}

#[tokio::test]
async fn the_codes_output_is_in_the_logs_of_its_request() {
    let app = app().await;
    deploy(
        &app,
        V1,
        "\
import logging, sys

class Deployment:
    def __init__(self, base_directory, context):
        print('loading the model')

    def request(self, data):
        print('scoring', data)
        print('a warning', file=sys.stderr)
        logging.getLogger('model').error('logged at error')
        return data
",
    )
    .await;
    let answer = request(&app, V1, json!("item-7")).await;
    let id = answer["id"].as_str().unwrap().to_owned();
    let lines = wait_for(
        "the request's log lines",
        Duration::from_secs(10),
        || async {
            let lines = log_lines(&app, &id).await;
            (lines.len() >= 3).then_some(lines)
        },
    )
    .await;
    let texts: Vec<&str> = lines
        .iter()
        .map(|line| line["log"].as_str().unwrap())
        .collect();
    assert_eq!(texts[0], "scoring item-7", "{texts:?}");
    assert!(texts.contains(&"a warning"), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("logged at error")),
        "{texts:?}"
    );
    assert_eq!(lines[0]["level"], "info");
    assert_eq!(lines[1]["level"], "error");
    assert_eq!(lines[0]["system"], false);
    assert_eq!(lines[0]["deployment_request_id"], id.as_str());
    assert_eq!(lines[0]["deployment_name"], "d");
    assert_eq!(lines[0]["deployment_version"], "v1");
}

#[tokio::test]
async fn a_new_revision_replaces_the_instances_without_failing_a_request_in_flight() {
    let app = app().await;
    let slow = |answer: &str| {
        format!(
            "import time\n\nclass Deployment:\n    def __init__(self, base_directory, context):\n        pass\n\n\
             \x20   def request(self, data):\n        if data == 'slow':\n            time.sleep(4)\n        return '{answer}'\n"
        )
    };
    deploy(&app, V1, &slow("first")).await;
    assert_eq!(request(&app, V1, json!("x")).await["result"], "first");
    let in_flight = {
        let url = app.url(&format!("/v2.1{V1}/requests"));
        let request = app
            .client()
            .post(url)
            .header("Authorization", format!("Token {}", app.admin_token))
            .json(&json!("slow"));
        tokio::spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    deploy(&app, V1, &slow("second")).await;
    assert_eq!(request(&app, V1, json!("x")).await["result"], "second");
    let finished = in_flight.await.unwrap();
    assert_eq!(finished["success"], true, "{finished}");
    assert_eq!(finished["result"], "first");
}

#[tokio::test]
async fn requests_beyond_the_express_queue_are_refused_clearly() {
    let app = app().await;
    let settings = app
        .patch(
            V1,
            json!({"maximum_instances": 1, "maximum_queue_size_express": 1}),
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    deploy(
        &app,
        V1,
        "import time\n\nclass Deployment:\n    def __init__(self, base_directory, context):\n        pass\n\n\
         \x20   def request(self, data):\n        time.sleep(3)\n        return data\n",
    )
    .await;
    let send = || {
        let request = app
            .client()
            .post(app.url(&format!("/v2.1{V1}/requests")))
            .header("Authorization", format!("Token {}", app.admin_token))
            .json(&json!("x"));
        tokio::spawn(async move { request.send().await.unwrap().status() })
    };
    let first = send();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = send();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = app.post(&format!("{V1}/requests"), json!("x")).await;
    assert_eq!(
        third.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        third.body
    );
    assert!(
        third.error().contains("maximum_queue_size_express"),
        "{}",
        third.error()
    );
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert_eq!(second.await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn idle_instances_stop_after_the_idle_time_and_the_minimum_keeps_running() {
    let app = app().await;
    app.patch(V1, json!({"maximum_idle_time": 10})).await;
    deploy(&app, V1, ECHO).await;
    request(&app, V1, json!("x")).await;
    let v1 = version_id(&app, "v1").await;
    assert_eq!(app.serving.pools().alive(v1), 1);
    wait_for(
        "the idle instance to stop",
        Duration::from_secs(20),
        || async { (app.serving.pools().alive(v1) == 0).then_some(()) },
    )
    .await;
    // The version's log says so, as the server's lines.
    let lines = wait_for("the instance lines", Duration::from_secs(10), || async {
        let response = app
            .post(
                "/projects/p/logs",
                json!({"filters": {"deployment_name": "d", "deployment_version": "v1", "system": true},
                       "limit": 100, "date_range": -3600}),
            )
            .await;
        let texts: Vec<String> = response.body.as_array()?.iter()
            .filter_map(|line| line["log"].as_str().map(str::to_owned))
            .filter(|text| text.starts_with("Instance"))
            .collect();
        (texts.len() >= 2).then_some(texts)
    })
    .await;
    assert!(lines[0].starts_with("Instance started in"), "{lines:?}");
    assert_eq!(
        lines[1],
        "Instance stopped: idle for 10 s (maximum_idle_time)"
    );
    let response = app.patch(V1, json!({"minimum_instances": 1})).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    wait_for(
        "the minimum instance to start",
        Duration::from_secs(30),
        || async { (app.serving.pools().alive(v1) == 1).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn an_instance_is_limited_to_its_instance_types_memory() {
    let app = app().await;
    let response = app.patch(V1, json!({"instance_type": "256mb"})).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    deploy(
        &app,
        V1,
        "class Deployment:\n    def __init__(self, base_directory, context):\n        pass\n\n\
         \x20   def request(self, data):\n        block = bytearray(1024 * 1024 * 1024)\n        return 'allocated'\n",
    )
    .await;
    let answer = request(&app, V1, json!("x")).await;
    assert_eq!(answer["success"], false, "{answer}");
    assert!(
        answer["error_message"]
            .as_str()
            .unwrap()
            .contains("MemoryError"),
        "{answer}"
    );
}

#[tokio::test]
async fn instances_cannot_read_the_servers_files_environment_or_other_deployments() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "isolation is checked as root, as CI runs"
    );
    let app = app().await;
    let data = app.sandbox_dir().parent().unwrap().to_owned();
    let key = data.join("secret.key");
    std::fs::write(&key, "0123456789abcdef").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // Another deployment's instance, running.
    deploy(&app, V2, "SECRET_MODEL = 'weights'\n\nclass Deployment:\n    def __init__(self, base_directory, context):\n        pass\n\n    def request(self, data):\n        return __file__\n").await;
    let other_file = request(&app, V2, json!("x")).await["result"]
        .as_str()
        .unwrap()
        .to_owned();
    // The embedded cluster's socket directory, when the tests use one (as CI does).
    let socket_dir = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| url.contains("host=/"))
        .and_then(|url| {
            url.split("host=")
                .nth(1)
                .map(|rest| rest.split('&').next().unwrap().to_owned())
        });
    let probe = format!(
        r#"import os, json

def attempt(what, action):
    try:
        action()
        return "REACHED " + what
    except OSError as error:
        return "DENIED " + what

class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data):
        return json.dumps([
            attempt("data listing", lambda: os.listdir({data:?})),
            attempt("secret key", lambda: open({key:?}).read()),
            attempt("packages", lambda: os.listdir({packages:?})),
            attempt("instances", lambda: os.listdir({instances:?})),
            attempt("other instance", lambda: open({other:?}).read()),
            attempt("server environ", lambda: open("/proc/%d/environ" % os.getppid()).read()),
        ] + [attempt("database socket", lambda: os.listdir(dir)) for dir in {sockets:?}] + [
            "ENVIRON " + " ".join(sorted(os.environ)),
        ])
"#,
        data = data.display().to_string(),
        key = key.display().to_string(),
        packages = app.sandbox_dir().join("packages").display().to_string(),
        instances = app.sandbox_dir().join("instances").display().to_string(),
        other = other_file,
        sockets = socket_dir.iter().collect::<Vec<_>>(),
    );
    deploy(&app, V1, &probe).await;
    let answer = request(&app, V1, json!("x")).await;
    assert_eq!(answer["success"], true, "{answer}");
    let results: Vec<String> = serde_json::from_str(answer["result"].as_str().unwrap()).unwrap();
    assert!(
        !results.iter().any(|line| line.starts_with("REACHED")),
        "{results:#?}"
    );
    assert_eq!(
        results
            .iter()
            .filter(|line| line.starts_with("DENIED"))
            .count(),
        6
    );
    let environ = results.last().unwrap();
    for leaked in ["DATABASE_URL", "UBIOPS_", "AWS_", "RUST"] {
        assert!(!environ.contains(leaked), "{environ}");
    }
}

#[tokio::test]
async fn a_server_without_the_environment_makes_it_from_the_stored_package_and_serves() {
    let app = app().await;
    deploy(&app, V1, ECHO).await;
    // A second server on the same database and object store, on a machine
    // whose environment cache is empty.
    let machine = app.sandbox_dir().join("other-machine");
    std::fs::create_dir_all(&machine).unwrap();
    ubiops_sandbox::make_reachable(&machine).unwrap();
    let tools = BuildTools {
        environments: app.private_environments("other-cache", |_| {}),
        ..shared_build_tools().clone()
    };
    let keyring = Keyring::from_hex(&Keyring::generate_key_hex(), &[]).unwrap();
    let other = ubiops_server::instances::serving(
        &machine,
        Duration::from_secs(60),
        ubiops_runtime::QueueSettings::default(),
        app.store.clone(),
        app.files.clone(),
        Arc::new(keyring),
        &tools,
    )
    .unwrap();
    let target = app.store.serving_target("p", "d", None).await.unwrap();
    let answer = other
        .direct(DirectRequest {
            shape: Serving::check_input(&target, &json!("from the other server")).unwrap(),
            target,
            data: json!("from the other server"),
            timeout: Duration::from_secs(120),
            created_by: "other@example.com".to_owned(),
        })
        .await
        .unwrap();
    assert!(answer.success, "{answer:?}");
    assert_eq!(answer.result, Some(json!("from the other server")));
    let made: Vec<_> = std::fs::read_dir(app.sandbox_dir().join("other-cache"))
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join(".ubiops-ready").exists())
        .collect();
    assert_eq!(
        made.len(),
        1,
        "the environment was made on the other machine"
    );
    // The request is stored like any other, and read through the API.
    let stored = app.get(&format!("{V1}/requests/{}", answer.id)).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    assert_eq!(stored.body["created_by"], "other@example.com");
    other.pools().stop_all().await;
}

#[tokio::test]
async fn stored_requests_are_kept_as_the_retention_mode_says_and_read_back() {
    let app = app().await;
    deploy(
        &app,
        V1,
        "class Deployment:\n    def __init__(self, base_directory, context):\n        pass\n\n\
         \x20   def request(self, data):\n        if data == 'fail':\n            raise ValueError('failing on purpose')\n        return data.upper()\n",
    )
    .await;
    let mut ids = Vec::new();
    for data in ["a", "fail", "b"] {
        ids.push(
            request(&app, D, json!(data)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let full = app.get(&format!("{D}/requests/{}", ids[0])).await;
    assert_eq!(full.status, StatusCode::OK, "{}", full.body);
    assert_eq!(full.body["request_data"], "a");
    assert_eq!(full.body["result"], "A");
    assert_eq!(full.body["status"], "completed");
    assert_eq!(full.body["success"], true);
    assert_eq!(full.body["created_by"], "admin@example.com");
    assert_eq!(
        full.body["origin"],
        json!({"deployment": "d", "deployment_version": "v1"})
    );
    let metadata = app
        .get(&format!("{V1}/requests/{}?metadata_only=true", ids[0]))
        .await;
    assert_eq!(metadata.body["request_data"], Value::Null);
    assert_eq!(metadata.body["result"], Value::Null);
    assert_eq!(metadata.body["status"], "completed");

    let listed = app.get(&format!("{V1}/requests?sort=asc")).await;
    let listed_ids: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed_ids,
        ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let failed = app.get(&format!("{D}/requests?status=failed")).await;
    assert_eq!(failed.body.as_array().unwrap().len(), 1, "{}", failed.body);
    assert_eq!(failed.body[0]["id"], ids[1].as_str());
    let paged = app.get(&format!("{V1}/requests?limit=1&offset=1")).await;
    assert_eq!(
        paged.body[0]["id"],
        ids[1].as_str(),
        "newest first: b, fail, a"
    );
    let project = app
        .get("/projects/p/requests?object_type=deployment&limit=10")
        .await;
    assert_eq!(
        project.body.as_array().unwrap().len(),
        3,
        "{}",
        project.body
    );
    assert_eq!(project.body[0]["deployment"], "d");
    assert_eq!(project.body[0]["pipeline"], Value::Null);
    let bad = app.get(&format!("{V1}/requests?status=done")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error().contains("status"), "{}", bad.error());

    let deleted = app.delete(&format!("{V1}/requests/{}", ids[0])).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("{V1}/requests/{}", ids[0])).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("{V1}/requests/not-an-id")).await.status,
        StatusCode::NOT_FOUND
    );

    // metadata: no data or result kept; none: nothing kept.
    app.patch(V1, json!({"request_retention_mode": "metadata"}))
        .await;
    let kept = request(&app, V1, json!("c")).await;
    let read = app
        .get(&format!("{V1}/requests/{}", kept["id"].as_str().unwrap()))
        .await;
    assert_eq!(read.body["request_data"], Value::Null, "{}", read.body);
    assert_eq!(read.body["result"], Value::Null);
    assert_eq!(read.body["success"], true);
    app.patch(V1, json!({"request_retention_mode": "none"}))
        .await;
    let gone = request(&app, V1, json!("d")).await;
    assert_eq!(gone["result"], "D");
    let read = app
        .get(&format!("{V1}/requests/{}", gone["id"].as_str().unwrap()))
        .await;
    assert_eq!(read.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn malformed_requests_are_refused_and_change_nothing() {
    let app = app().await;
    deploy(&app, V1, ECHO).await;
    let other = app.token("limited@example.com", Some(&["elsewhere"])).await;
    let before = app.snapshot().await;
    let url = app.url(&format!("/v2.1{V1}/requests"));
    let send = |body: Vec<u8>| {
        app.client()
            .post(url.clone())
            .header("Authorization", format!("Token {}", app.admin_token))
            .header("Content-Type", "application/json")
            .body(body)
    };
    let not_json = app.send(send(b"{not json".to_vec())).await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert!(
        not_json.error().contains("not valid JSON"),
        "{}",
        not_json.error()
    );
    let huge = app
        .send(send(format!("\"{}\"", "x".repeat(33 << 20)).into_bytes()))
        .await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", huge.body);
    let no_token = app
        .client()
        .post(url.clone())
        .json(&json!("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    let forbidden = app
        .client()
        .post(url.clone())
        .header("Authorization", format!("Token {other}"))
        .json(&json!("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.snapshot().await, before);
    let big = app
        .send(send(format!("\"{}\"", "x".repeat(3 << 20)).into_bytes()))
        .await;
    assert_eq!(
        big.status,
        StatusCode::OK,
        "inputs beyond the API's 2 MiB are taken"
    );
    assert_eq!(big.body["result"].as_str().map(str::len), Some(3 << 20));
    // File fields need blob storage, which this server does not have.
    let created = app
        .post(
            "/projects/p/deployments",
            json!({"name": "files", "input_type": "structured", "output_type": "plain",
                   "input_fields": [{"name": "image", "data_type": "file"}]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    app.post(
        "/projects/p/deployments/files/versions",
        json!({"version": "v1"}),
    )
    .await;
    let response = app
        .post(
            "/projects/p/deployments/files/requests",
            json!({"image": "ubiops-file://b/f.jpg"}),
        )
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(
        response
            .error()
            .contains("file fields are not supported yet"),
        "{}",
        response.error()
    );
}

#[tokio::test]
async fn an_idle_instance_killed_from_outside_is_replaced_without_failing_a_request() {
    let app = app().await;
    deploy(&app, V1, ECHO).await;
    request(&app, V1, json!("warm")).await;
    let instances = app.sandbox_dir().join("instances");
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&instances))
        {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed += 1;
        }
    }
    assert_eq!(killed, 1, "one instance process");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = request(&app, V1, json!("after")).await;
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["result"], "after");
}

#[tokio::test]
async fn a_plain_string_sent_as_text_and_the_streaming_endpoint_are_served() {
    let app = app().await;
    deploy(&app, V1, ECHO).await;
    let text = |path: &str, body: &str| {
        app.client()
            .post(app.url(&format!("/v2.1{path}")))
            .header("Authorization", format!("Token {}", app.admin_token))
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.to_owned())
    };
    let answer = app.send(text(&format!("{D}/requests"), "just text")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["result"], "just text");
    // What the official client's streaming helper (and the CLI) call.
    let streamed = text(
        &format!("{V1}/requests/stream?timeout=30&timeout=30"),
        "streamed",
    )
    .header("Accept", "text/event-stream")
    .send()
    .await
    .unwrap();
    assert_eq!(streamed.status(), StatusCode::OK);
    assert_eq!(streamed.headers()["content-type"], "text/event-stream");
    let body = streamed.text().await.unwrap();
    let last: Value = serde_json::from_str(body.lines().last().unwrap()).unwrap();
    assert_eq!(last["result"], "streamed");
    assert_eq!(last["success"], true);
    // Stored like any direct request.
    let id = last["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get(&format!("{V1}/requests/{id}")).await.body["request_data"],
        "streamed"
    );
    let conflicting = app
        .send(text(&format!("{V1}/requests?timeout=30&timeout=40"), "x"))
        .await;
    assert_eq!(conflicting.status, StatusCode::BAD_REQUEST);
    assert!(
        conflicting.error().contains("twice"),
        "{}",
        conflicting.error()
    );
    let not_utf8 = app
        .send(
            app.client()
                .post(app.url(&format!("/v2.1{V1}/requests")))
                .header("Authorization", format!("Token {}", app.admin_token))
                .header("Content-Type", "text/plain")
                .body(vec![0xff, 0xfe]),
        )
        .await;
    assert_eq!(not_utf8.status, StatusCode::BAD_REQUEST);
    assert!(not_utf8.error().contains("UTF-8"), "{}", not_utf8.error());
}
