//! A real S3-protocol server for tests: moto's server from PyPI, started once
//! per test process on a free loopback port. `scripts/test` installs it and
//! sets UBIOPS_TEST_MOTO to its `moto_server` executable.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use ubiops_files::FileStore;

static ENDPOINT: OnceLock<String> = OnceLock::new();

/// A FileStore on a fresh bucket of the test S3 server.
pub async fn s3_file_store() -> FileStore {
    let (endpoint, bucket) = s3_bucket().await;
    s3_store_at(&endpoint, &bucket)
}

/// A fresh bucket on the test S3 server: its endpoint and name, for tests
/// that configure a server process (or a proxy in between) themselves.
pub async fn s3_bucket() -> (String, String) {
    let endpoint = ENDPOINT.get_or_init(start_moto).clone();
    let bucket = format!("test-{}", uuid::Uuid::new_v4().simple());
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("create a bucket on the test S3 server");
    assert!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );
    (endpoint, bucket)
}

/// A FileStore on `bucket` at `endpoint` (with the test credentials).
pub fn s3_store_at(endpoint: &str, bucket: &str) -> FileStore {
    let store = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_allow_http(true)
        .build()
        .expect("S3 store");
    FileStore::from_store(Arc::new(store))
}

fn start_moto() -> String {
    let executable = std::env::var("UBIOPS_TEST_MOTO").unwrap_or_else(|_| "moto_server".to_owned());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (sender, receiver) = std::sync::mpsc::channel();
    // The child is spawned and reaped by a thread that lives as long as the
    // process: the parent-death signal fires when the spawning thread exits.
    std::thread::spawn(move || {
        let mut command = Command::new(&executable);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
                Ok(())
            });
        }
        match command.spawn() {
            Ok(mut child) => {
                let _ = sender.send(Ok(()));
                let _ = child.wait();
            }
            Err(error) => {
                let _ = sender.send(Err(format!(
                    "cannot start the test S3 server '{executable}': {error}; run the tests with scripts/test, \
                     which installs moto[server] and sets UBIOPS_TEST_MOTO"
                )));
            }
        }
    });
    receiver
        .recv()
        .unwrap()
        .unwrap_or_else(|message| panic!("{message}"));
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the test S3 server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    endpoint
}
