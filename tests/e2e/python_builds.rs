//! Real builds: each revision gets a Python environment with its
//! requirements installed by pip, and its code is imported there. Packages
//! come from a package index of the test's own on loopback (given to pip the
//! way an operator gives a mirror: `PIP_INDEX_URL`), so the tests need no
//! network, and from the public index for the one test that proves a real
//! requirement installs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use ubiops_python::interpreters::{Interpreter, Interpreters};
use ubiops_test_support::{shared_build_tools, wait_for, TestApp};
use ubiops_worker::WorkerConfig;

use crate::builds::{upload, zip_of, DEPLOYMENT_PY};

const V1: &str = "/projects/p/deployments/d/versions/v1";
const V2: &str = "/projects/p/deployments/d/versions/v2";

/// A PEP 503 package index: real wheels made by the test, and one package
/// whose download never ends (200 MB, sent slowly).
struct LocalIndex {
    address: SocketAddr,
    /// Names of the files downloaded, to prove pip used this index.
    downloads: Arc<Mutex<Vec<String>>>,
}

const HUGE: &str = "ubiops-huge-pkg";

impl LocalIndex {
    async fn start(packages: &[(&str, &str)]) -> LocalIndex {
        let wheels: HashMap<String, (String, Vec<u8>)> = packages
            .iter()
            .map(|(name, module_source)| {
                let (file, bytes) = wheel(name, module_source);
                (name.to_string(), (file, bytes))
            })
            .collect();
        let downloads = Arc::new(Mutex::new(Vec::new()));
        let state = (Arc::new(wheels), downloads.clone());
        let router = Router::new()
            .route("/simple/{name}/", get(project_page))
            .route("/files/{file}", get(download))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        LocalIndex { address, downloads }
    }

    /// The operator's pip settings that point at this index.
    fn pip_environment(&self) -> Vec<(String, String)> {
        vec![(
            "PIP_INDEX_URL".to_owned(),
            format!("http://{}/simple/", self.address),
        )]
    }

    fn downloaded(&self) -> Vec<String> {
        self.downloads.lock().unwrap().clone()
    }
}

type IndexState = (
    Arc<HashMap<String, (String, Vec<u8>)>>,
    Arc<Mutex<Vec<String>>>,
);

async fn project_page(
    State((wheels, _)): State<IndexState>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let file = if name == HUGE {
        "ubiops_huge_pkg-1.0-py3-none-any.whl".to_owned()
    } else if let Some((file, _)) = wheels.get(&name) {
        file.clone()
    } else {
        return StatusCode::NOT_FOUND.into_response();
    };
    Html(format!(
        "<!DOCTYPE html><html><body><a href=\"/files/{file}\">{file}</a></body></html>"
    ))
    .into_response()
}

async fn download(
    State((wheels, downloads)): State<IndexState>,
    UrlPath(file): UrlPath<String>,
) -> Response {
    downloads.lock().unwrap().push(file.clone());
    if file.starts_with("ubiops_huge_pkg") {
        // 200 MB announced, 64 KiB sent every 100 ms: it would take
        // five minutes.
        let chunks = futures::stream::unfold(0u32, |sent| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((
                Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 64 * 1024])),
                sent + 1,
            ))
        });
        return Response::builder()
            .header("Content-Length", (200u64 << 20).to_string())
            .body(Body::from_stream(chunks))
            .unwrap();
    }
    match wheels.values().find(|(name, _)| *name == file) {
        Some((_, bytes)) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A pure-Python wheel of `name` whose one module (the name with
/// underscores) holds `source`.
fn wheel(name: &str, source: &str) -> (String, Vec<u8>) {
    let module = name.replace('-', "_");
    let info = format!("{module}-1.0.dist-info");
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (format!("{module}/__init__.py"), source.as_bytes().to_vec()),
        (
            format!("{info}/METADATA"),
            format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n").into_bytes(),
        ),
        (
            format!("{info}/WHEEL"),
            b"Wheel-Version: 1.0\nGenerator: ubiops-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_vec(),
        ),
    ];
    let mut record = String::new();
    for (path, bytes) in &files {
        let digest = base64_urlsafe(&Sha256::digest(bytes));
        record.push_str(&format!("{path},sha256={digest},{}\n", bytes.len()));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    files.push((format!("{info}/RECORD"), record.into_bytes()));
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
        .collect();
    (format!("{module}-1.0-py3-none-any.whl"), zip_of(&entries))
}

/// RFC 4648 base64url without padding, as wheel RECORDs write hashes.
fn base64_urlsafe(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

async fn app() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_project("p").await;
    app.create_deployment("p", "d", &["v1", "v2"]).await;
    app
}

/// A worker whose builds use an environment cache of their own (in
/// `cache`, as on a machine of its own) and pip settings from `index`.
fn worker(app: &TestApp, cache: &str, index: Option<&LocalIndex>) -> WorkerConfig {
    let mut config = app.worker_config(2);
    config.tools.environments = app.private_environments(cache, |settings| {
        settings.pip_environment = index.map(LocalIndex::pip_environment).unwrap_or_default();
        settings.install_time_limit = Duration::from_secs(120);
    });
    config
}

/// A package: `deployment.py` with `code`, and `requirements` if any.
fn package(code: &str, requirements: Option<&str>) -> Vec<u8> {
    let mut entries: Vec<(&str, &[u8])> = vec![("pkg/deployment.py", code.as_bytes())];
    if let Some(requirements) = requirements {
        entries.push(("pkg/requirements.txt", requirements.as_bytes()));
    }
    zip_of(&entries)
}

/// A deployment that imports `module` and uses it in `request`.
fn using(module: &str) -> String {
    format!(
        "import {module}\n\n\nclass Deployment:\n    def __init__(self, base_directory, context):\n        pass\n\n\
         \x20   def request(self, data):\n        return {module}.VALUE\n"
    )
}

/// Uploads to `version` and returns the new build's id.
async fn queue(app: &TestApp, version: &str, zip: Vec<u8>) -> String {
    let uploaded = upload(app, version, zip, "deployment.zip").await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{}", uploaded.body);
    uploaded.body["build"].as_str().unwrap().to_owned()
}

async fn build(app: &TestApp, version: &str, id: &str) -> Value {
    let response = app.get(&format!("{version}/builds/{id}")).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response.body
}

/// Uploads, runs the queue with `config`, and returns the finished build.
async fn built(app: &TestApp, config: &WorkerConfig, version: &str, zip: Vec<u8>) -> Value {
    let id = queue(app, version, zip).await;
    app.run_pending_builds_with(config).await;
    build(app, version, &id).await
}

/// The build's log lines, oldest first.
async fn log_of(app: &TestApp, build: &Value) -> Vec<String> {
    let response = app
        .post(
            "/projects/p/logs",
            json!({"filters": {"build_id": build["id"]}, "limit": 500, "date_range": -86400}),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    response
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["log"].as_str().unwrap().to_owned())
        .collect()
}

fn has_line(lines: &[String], part: &str) -> bool {
    lines.iter().any(|line| line.contains(part))
}

/// The environments in a cache directory (not the lock directory).
fn cached(app: &TestApp, cache: &str) -> Vec<String> {
    let mut keys: Vec<String> = std::fs::read_dir(app.sandbox_dir().join(cache))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name != "locks")
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

/// Nothing of finished builds is left in the builds directory.
fn no_build_directories(app: &TestApp) {
    let left: Vec<_> = std::fs::read_dir(app.sandbox_dir().join("builds"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn requirements_are_installed_from_the_operators_index_and_the_code_imports() {
    let index = LocalIndex::start(&[("ubiops-local-pkg", "VALUE = 42\n")]).await;
    let app = app().await;
    let config = worker(&app, "cache", Some(&index));
    let zip = package(&using("ubiops_local_pkg"), Some("ubiops-local-pkg==1.0\n"));
    let first = built(&app, &config, V1, zip.clone()).await;
    assert_eq!(first["status"], "success", "{first}");
    assert_eq!(
        index.downloaded(),
        ["ubiops_local_pkg-1.0-py3-none-any.whl"]
    );
    let lines = log_of(&app, &first).await;
    for expected in [
        "Preparing the Python",
        "Successfully installed ubiops-local-pkg-1.0",
        "Validating: importing deployment.py in its environment",
        "Build succeeded",
    ] {
        assert!(has_line(&lines, expected), "{expected} in {lines:#?}");
    }
    let made = lines
        .iter()
        .position(|line| line.contains("ready in"))
        .expect("the environment was made");
    let pip = lines
        .iter()
        .position(|line| line.contains("Successfully installed"))
        .unwrap();
    let succeeded = lines
        .iter()
        .position(|line| line.contains("Build succeeded"))
        .unwrap();
    assert!(pip < made && made < succeeded, "in order: {lines:#?}");
    assert_eq!(cached(&app, "cache").len(), 1);
    no_build_directories(&app);

    // The same requirements again, as a new revision of another version:
    // the environment is reused, not installed again.
    let second = built(&app, &config, V2, zip).await;
    assert_eq!(second["status"], "success", "{second}");
    let lines = log_of(&app, &second).await;
    assert!(
        has_line(&lines, "Using the cached environment"),
        "{lines:#?}"
    );
    assert!(!has_line(&lines, "Successfully installed"), "{lines:#?}");
    assert_eq!(index.downloaded().len(), 1, "installed once");
    assert_eq!(cached(&app, "cache").len(), 1);
}

#[tokio::test]
async fn two_builds_that_need_the_same_new_environment_install_it_once() {
    let index = LocalIndex::start(&[("ubiops-local-pkg", "VALUE = 1\n")]).await;
    let app = app().await;
    let config = worker(&app, "cache", Some(&index));
    let zip = package(&using("ubiops_local_pkg"), Some("ubiops-local-pkg==1.0\n"));
    let ids = [
        queue(&app, V1, zip.clone()).await,
        queue(&app, V2, zip).await,
    ];
    // Two slots: both builds run at once.
    let worker = app.start_worker_with(config);
    let mut made = 0;
    for (version, id) in [V1, V2].iter().zip(&ids) {
        let finished = wait_for("the build to finish", Duration::from_secs(120), || async {
            let body = build(&app, version, id).await;
            matches!(body["status"].as_str(), Some("success" | "failed")).then_some(body)
        })
        .await;
        assert_eq!(finished["status"], "success", "{finished}");
        made += usize::from(has_line(&log_of(&app, &finished).await, "ready in"));
    }
    worker.stop().await;
    assert_eq!(
        made, 1,
        "one build made the environment, the other waited for it"
    );
    assert_eq!(index.downloaded().len(), 1);
    assert_eq!(cached(&app, "cache").len(), 1);
}

#[tokio::test]
async fn another_machine_makes_the_same_environment_from_the_stored_package() {
    let index = LocalIndex::start(&[("ubiops-local-pkg", "VALUE = 7\n")]).await;
    let app = app().await;
    let (machine_a, machine_b) = (
        worker(&app, "machine-a", Some(&index)),
        worker(&app, "machine-b", Some(&index)),
    );
    let zip = package(&using("ubiops_local_pkg"), Some("ubiops-local-pkg==1.0\n"));
    let first = built(&app, &machine_a, V1, zip).await;
    assert_eq!(first["status"], "success", "{first}");
    // A rebuild of the revision, taken by the other machine, which has no
    // environment yet: it makes it from the stored zip, under the same key.
    let rebuild = app
        .post(
            &format!(
                "{V1}/revisions/{}/rebuild",
                first["revision"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(rebuild.status, StatusCode::CREATED, "{}", rebuild.body);
    app.run_pending_builds_with(&machine_b).await;
    let second = build(&app, V1, rebuild.body["id"].as_str().unwrap()).await;
    assert_eq!(second["status"], "success", "{second}");
    assert!(has_line(&log_of(&app, &second).await, "ready in"));
    assert_eq!(cached(&app, "machine-a"), cached(&app, "machine-b"));
    assert_eq!(
        index.downloaded().len(),
        2,
        "each machine installed it once"
    );
}

#[tokio::test]
async fn a_requirement_from_the_public_index_installs() {
    // The one test on the real index: a small pure-Python package, whose
    // environment the tests of this machine share (see the support crate).
    let app = app().await;
    let code = "import six\n\n\nclass Deployment:\n    def __init__(self, base_directory, context):\n        pass\n\n\
                \x20   def request(self, data):\n        return six.text_type(data)\n";
    let finished = built(
        &app,
        &app.worker_config(1),
        V1,
        package(code, Some("six==1.16.0\n")),
    )
    .await;
    assert_eq!(finished["status"], "success", "{finished}");
    let lines = log_of(&app, &finished).await;
    assert!(
        has_line(&lines, "Successfully installed six-1.16.0")
            || has_line(&lines, "Using the cached environment"),
        "{lines:#?}"
    );
}

/// Each: the build fails with a message that says why, and leaves nothing
/// behind (no build directory, no half-made environment).
async fn fails_with(
    app: &TestApp,
    config: &WorkerConfig,
    version: &str,
    zip: Vec<u8>,
    reason: &str,
) -> Vec<String> {
    let finished = built(app, config, version, zip).await;
    assert_eq!(finished["status"], "failed", "{finished}");
    let message = finished["error_message"].as_str().unwrap();
    assert!(message.contains(reason), "'{reason}' in '{message}'");
    let lines = log_of(app, &finished).await;
    assert!(
        has_line(&lines, &format!("Build failed: {message}")),
        "{lines:#?}"
    );
    no_build_directories(app);
    // A failed import leaves its (complete) environment cached; a failed
    // install leaves nothing.
    for key in cached(app, "cache") {
        let ready = app
            .sandbox_dir()
            .join("cache")
            .join(&key)
            .join(".ubiops-ready");
        assert!(ready.exists(), "half-made environment {key}");
    }
    lines
}

#[tokio::test]
async fn a_requirement_that_does_not_exist_fails_with_pips_reason() {
    let index = LocalIndex::start(&[]).await;
    let app = app().await;
    let config = worker(&app, "cache", Some(&index));
    let lines = fails_with(
        &app,
        &config,
        V1,
        package(DEPLOYMENT_PY, Some("no-such-package-ubiops==1.0\n")),
        "No matching distribution found for no-such-package-ubiops==1.0",
    )
    .await;
    assert!(
        has_line(&lines, "ERROR: Could not find a version"),
        "pip's own lines: {lines:#?}"
    );
}

#[tokio::test]
async fn a_malformed_requirement_is_refused_before_pip_runs() {
    let app = app().await;
    let config = worker(&app, "cache", None);
    let lines = fails_with(
        &app,
        &config,
        V1,
        package(DEPLOYMENT_PY, Some("numpy===>1\n")),
        "requirements.txt line 1",
    )
    .await;
    assert!(!has_line(&lines, "Preparing the Python"), "{lines:#?}");
}

#[tokio::test]
async fn a_failing_install_script_fails_with_its_exception() {
    // An sdist shipped in the package (pip finds it through --find-links):
    // its setup.py raises. Building it needs setuptools, which pip takes
    // from the public index.
    let setup = b"raise RuntimeError('this package refuses to install')\n";
    let sdist = tar_gz(&[
        ("ubiops-boom-1.0/setup.py", setup.as_slice()),
        (
            "ubiops-boom-1.0/PKG-INFO",
            b"Metadata-Version: 2.1\nName: ubiops-boom\nVersion: 1.0\n".as_slice(),
        ),
    ]);
    let zip = zip_of(&[
        ("pkg/deployment.py", DEPLOYMENT_PY.as_bytes()),
        (
            "pkg/requirements.txt",
            b"--find-links ./dist\nubiops-boom==1.0\n".as_slice(),
        ),
        ("pkg/dist/ubiops-boom-1.0.tar.gz", sdist.as_slice()),
    ]);
    let app = app().await;
    let config = worker(&app, "cache", None);
    fails_with(
        &app,
        &config,
        V1,
        zip,
        "RuntimeError: this package refuses to install",
    )
    .await;
}

fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let out = dir.path().join("out.tar.gz");
    let top = files[0].0.split('/').next().unwrap();
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(dir.path())
        .arg(top)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

#[tokio::test]
async fn a_module_that_raises_on_import_fails_with_the_exception_and_line() {
    let app = app().await;
    let config = worker(&app, "cache", None);
    let code = format!("import os\n\nraise ValueError('bad configuration')\n{DEPLOYMENT_PY}");
    fails_with(
        &app,
        &config,
        V1,
        package(&code, None),
        "pkg/deployment.py could not be imported: ValueError: bad configuration (deployment.py, line 3)",
    )
    .await;
    // A module of the package missing a requirement: the import error, and
    // where.
    let code = format!("import not_installed_anywhere\n{DEPLOYMENT_PY}");
    fails_with(
        &app,
        &config,
        V1,
        package(&code, None),
        "ModuleNotFoundError: No module named 'not_installed_anywhere' (deployment.py, line 1)",
    )
    .await;
}

#[tokio::test]
async fn a_module_that_loops_on_import_fails_after_the_time_limit() {
    let app = app().await;
    let mut config = worker(&app, "cache", None);
    config.tools.import_time_limit = Duration::from_secs(3);
    let code = format!("while True:\n    pass\n{DEPLOYMENT_PY}");
    fails_with(
        &app,
        &config,
        V1,
        package(&code, None),
        "pkg/deployment.py did not finish importing within 3 s",
    )
    .await;
}

#[tokio::test]
async fn a_module_that_prints_megabytes_on_import_has_its_log_capped() {
    let app = app().await;
    let config = worker(&app, "cache", None);
    let code = format!("for i in range(100000):\n    print('x' * 100, i)\n{DEPLOYMENT_PY}");
    let finished = built(&app, &config, V1, package(&code, None)).await;
    assert_eq!(finished["status"], "success", "{finished}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM logs WHERE build_id = $1")
        .bind(uuid::Uuid::parse_str(finished["id"].as_str().unwrap()).unwrap())
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert!((5_000..5_050).contains(&count), "{count} lines");
    let truncated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM logs WHERE build_id = $1 AND text LIKE '[output truncated%'",
    )
    .bind(uuid::Uuid::parse_str(finished["id"].as_str().unwrap()).unwrap())
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(truncated, 1);
}

#[tokio::test]
async fn a_download_that_takes_too_long_stops_at_the_install_time_limit() {
    let index = LocalIndex::start(&[]).await;
    let app = app().await;
    let mut config = worker(&app, "cache", Some(&index));
    config.tools.environments = app.private_environments("cache", |settings| {
        settings.pip_environment = index.pip_environment();
        // Long enough for the venv to be made on a loaded machine and the
        // download to start; the download would take minutes.
        settings.install_time_limit = Duration::from_secs(20);
    });
    let started = Instant::now();
    fails_with(
        &app,
        &config,
        V1,
        package(DEPLOYMENT_PY, Some(&format!("{HUGE}==1.0\n"))),
        "Installing requirements.txt did not finish within 20 s",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(!index.downloaded().is_empty(), "pip was downloading it");
}

#[tokio::test]
async fn a_cancel_stops_a_running_import_at_once() {
    let app = app().await;
    let config = worker(&app, "cache", None);
    let code = format!("import time\ntime.sleep(300)\n{DEPLOYMENT_PY}");
    let id = queue(&app, V1, package(&code, None)).await;
    let worker = app.start_worker_with(config);
    wait_for("the import to run", Duration::from_secs(60), || async {
        (build(&app, V1, &id).await["status"] == "validating").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cancelled = app
        .patch(&format!("{V1}/builds/{id}"), json!({"status": "cancelled"}))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let started = Instant::now();
    wait_for("the sandbox to be gone", Duration::from_secs(5), || async {
        let left = std::fs::read_dir(app.sandbox_dir().join("builds"))
            .unwrap()
            .count();
        (left == 0).then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");
    worker.stop().await;
    assert_eq!(build(&app, V1, &id).await["status"], "cancelled");
}

#[tokio::test]
async fn a_missing_interpreter_uses_the_nearest_or_fails_when_strict() {
    let app = app().await;
    let installed: Vec<Interpreter> = shared_build_tools().interpreters.all().cloned().collect();
    let only = installed.last().unwrap().clone();
    // A version this machine cannot have.
    let patch = app
        .patch(
            V1,
            json!({"language": if only.version.minor == 7 { "python3.8" } else { "python3.7" }}),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK, "{}", patch.body);
    let asked = if only.version.minor == 7 {
        "3.8"
    } else {
        "3.7"
    };

    let mut lenient = worker(&app, "cache", None);
    lenient.tools.interpreters = Arc::new(Interpreters::new([only.clone()], false));
    let finished = built(&app, &lenient, V1, package(DEPLOYMENT_PY, None)).await;
    assert_eq!(finished["status"], "success", "{finished}");
    let substitution = format!(
        "Python {asked} is not installed on this server: using Python {}",
        only.version
    );
    let lines = log_of(&app, &finished).await;
    assert_eq!(
        lines
            .iter()
            .filter(|line| line.contains(&substitution))
            .count(),
        1,
        "{lines:#?}"
    );

    let mut strict = worker(&app, "cache", None);
    strict.tools.interpreters = Arc::new(Interpreters::new([only], true));
    let lines = fails_with(
        &app,
        &strict,
        V1,
        package(DEPLOYMENT_PY, None),
        &format!("Python {asked} is not installed on this server"),
    )
    .await;
    assert!(has_line(&lines, "UBIOPS_PYTHON_STRICT"), "{lines:#?}");
}

#[tokio::test]
async fn r_versions_fail_clearly_without_an_r_installation() {
    let app = app().await;
    let response = app
        .post(
            "/projects/p/deployments/d/versions",
            json!({"version": "r", "language": "r4.0"}),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    let zip = zip_of(&[(
        "deployment.R",
        b"init <- function(base_directory, context) {}\nrequest <- function(input_data) { input_data }\n".as_slice(),
    )]);
    let config = worker(&app, "cache", None);
    fails_with(
        &app,
        &config,
        "/projects/p/deployments/d/versions/r",
        zip,
        "R deployments need an R installation on the build server",
    )
    .await;
}

#[tokio::test]
async fn the_cache_evicts_the_least_recently_used_environments_no_active_revision_uses() {
    let index = LocalIndex::start(&[("ubiops-local-pkg", "VALUE = 3\n")]).await;
    let app = app().await;
    // Every environment is over a one-byte limit: only what is in use stays.
    let mut config = worker(&app, "cache", Some(&index));
    config.tools.environments = app.private_environments("cache", |settings| {
        settings.pip_environment = index.pip_environment();
        settings.size_limit_bytes = 1;
    });
    // Requirements that differ (by a comment) make different environments.
    let zip = |tag: &str| {
        package(
            &using("ubiops_local_pkg"),
            Some(&format!("ubiops-local-pkg==1.0  # {tag}\n")),
        )
    };
    let first = built(&app, &config, V1, zip("one")).await;
    assert_eq!(first["status"], "success", "{first}");
    let second = built(&app, &config, V2, zip("two")).await;
    assert_eq!(second["status"], "success", "{second}");
    assert_eq!(
        cached(&app, "cache").len(),
        2,
        "both are active revisions' environments"
    );
    // v1 gets a third environment: its first one is no longer active, and
    // goes; v2's stays.
    let third = built(&app, &config, V1, zip("three")).await;
    assert_eq!(third["status"], "success", "{third}");
    let keys = cached(&app, "cache");
    assert_eq!(keys.len(), 2, "{keys:?}");
    let environment = |build: &Value| {
        let id = uuid::Uuid::parse_str(build["id"].as_str().unwrap()).unwrap();
        let app = &app;
        async move {
            sqlx::query_scalar::<_, String>("SELECT environment FROM builds WHERE id = $1")
                .bind(id)
                .fetch_one(app.store.pool())
                .await
                .unwrap()
        }
    };
    let (first, second, third) = (
        environment(&first).await,
        environment(&second).await,
        environment(&third).await,
    );
    assert!(!keys.contains(&first), "evicted: {keys:?}");
    assert!(keys.contains(&second) && keys.contains(&third), "{keys:?}");
}

#[tokio::test]
async fn packages_without_requirements_share_one_environment() {
    let app = app().await;
    let config = worker(&app, "cache", None);
    for version in [V1, V2] {
        let finished = built(&app, &config, version, package(DEPLOYMENT_PY, None)).await;
        assert_eq!(finished["status"], "success", "{finished}");
    }
    assert_eq!(cached(&app, "cache").len(), 1);
}

/// The package's code tries to reach what it must not, while it is
/// imported: the app's files (as the data directory: searchable, not
/// listable), a private key file there, another build's directory, the
/// server's environment (its own and through /proc), and the database's
/// socket directory when the tests use a private cluster. Each attempt
/// prints what happened; the build succeeds so the log can be read.
#[tokio::test]
async fn the_packages_code_cannot_read_the_servers_files_environment_or_other_builds() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "isolation is checked as root, as CI runs"
    );
    let app = app().await;
    let files = app.sandbox_dir().parent().unwrap().to_owned();
    let key = files.join("secret.key");
    std::fs::write(&key, "0123456789abcdef").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // Another build, parked in its import, with a file of its own.
    let config = worker(&app, "cache", None);
    let parked =
        format!("MODEL = 'weights-of-another-build'\nimport time\ntime.sleep(60)\n{DEPLOYMENT_PY}");
    let parked_id = queue(&app, V2, package(&parked, None)).await;
    let running = app.start_worker_with(config.clone());
    wait_for(
        "the other build to import",
        Duration::from_secs(60),
        || async { (build(&app, V2, &parked_id).await["status"] == "validating").then_some(()) },
    )
    .await;
    let other = app
        .sandbox_dir()
        .join("builds")
        .join(&parked_id)
        .join("files")
        .join("pkg")
        .join("deployment.py");
    assert!(other.exists());
    let socket_dir = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| url.contains("host=/"))
        .and_then(|url| {
            url.split("host=")
                .nth(1)
                .map(|rest| rest.split('&').next().unwrap().to_owned())
        });
    let probe = format!(
        r#"import os
def attempt(what, action):
    try:
        action()
        print("REACHED", what)
    except OSError as error:
        print("DENIED", what, type(error).__name__)
attempt("files listing", lambda: os.listdir({files:?}))
attempt("secret key", lambda: open({key:?}).read())
attempt("builds listing", lambda: os.listdir({builds:?}))
attempt("other build", lambda: open({other:?}).read())
attempt("server environ", lambda: open("/proc/%d/environ" % os.getppid()).read())
for dir in {sockets:?}:
    attempt("database socket", lambda: os.listdir(dir))
print("ENVIRON", sorted(os.environ))
{DEPLOYMENT_PY}"#,
        files = files.display().to_string(),
        key = key.display().to_string(),
        builds = app.sandbox_dir().join("builds").display().to_string(),
        other = other.display().to_string(),
        sockets = socket_dir.into_iter().collect::<Vec<_>>(),
    );
    let id = queue(&app, V1, package(&probe, None)).await;
    let finished = wait_for("the probing build", Duration::from_secs(60), || async {
        let body = build(&app, V1, &id).await;
        matches!(body["status"].as_str(), Some("success" | "failed")).then_some(body)
    })
    .await;
    running.kill();
    assert_eq!(finished["status"], "success", "{finished}");
    let lines = log_of(&app, &finished).await;
    let denied = lines
        .iter()
        .filter(|line| line.starts_with("DENIED"))
        .count();
    assert!(!has_line(&lines, "REACHED"), "{lines:#?}");
    assert!(denied >= 5, "{lines:#?}");
    let environ = lines
        .iter()
        .find(|line| line.starts_with("ENVIRON"))
        .unwrap();
    for leaked in ["DATABASE_URL", "UBIOPS_", "AWS_", "SECRET"] {
        assert!(!environ.contains(leaked), "{environ}");
    }
}
