//! Faults against the real processes: `ubiops-server` and `ubiops-server
//! worker` killed with SIGKILL mid-way, PostgreSQL restarted under load,
//! object storage cut off, two servers sharing one installation. After each,
//! the database and storage must be consistent and nothing may be lost. Leases
//! are set short (UBIOPS_*_LEASE_SECONDS) so that recovery takes seconds.

mod batch;
mod harness;
mod serving;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::builds::{deployment_zip, zip_of, DEPLOYMENT_PY};
use harness::{assert_unavailable, Rig, Server, TOKEN};
use ubiops_test_support::wait_for;

const SHORT_LEASES: [(&str, &str); 2] = [
    ("UBIOPS_UPLOAD_LEASE_SECONDS", "3"),
    ("UBIOPS_BUILD_LEASE_SECONDS", "3"),
];

/// A valid deployment whose build takes a while: its extraction writes
/// 768 MiB (of zeros, so the zip itself is small), long enough to kill the
/// worker in the middle of it.
fn slow_deployment_zip() -> Vec<u8> {
    let zeros = vec![0u8; 256 * 1024 * 1024];
    zip_of(&[
        ("deployment.py", DEPLOYMENT_PY.as_bytes()),
        ("weights/a.bin", &zeros),
        ("weights/b.bin", &zeros),
        ("weights/c.bin", &zeros),
    ])
}

#[tokio::test]
async fn sigkill_during_an_upload_leaves_no_revision_and_no_stray_object() {
    let rig = Rig::new().await;
    let server = rig.server("server", &SHORT_LEASES).await;
    server.create_versions(&["v1"]).await;

    // An upload that sends 12 MiB of a declared 64 MiB, then stalls: the
    // server has begun writing the object when it is killed.
    let boundary = "fault-test-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.zip\"\r\n\
         Content-Type: application/zip\r\n\r\n"
    );
    let declared = head.len() + 64 * 1024 * 1024;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut connection = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!(
        "POST /v2.1/projects/p/deployments/d/versions/v1/revisions HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Token {TOKEN}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {declared}\r\n\r\n{head}PK\x03\x04"
    );
    connection.write_all(request.as_bytes()).await.unwrap();
    let chunk = vec![7u8; 1024 * 1024];
    for _ in 0..12 {
        connection.write_all(&chunk).await.unwrap();
    }
    connection.flush().await.unwrap();
    wait_for(
        "the partial upload on disk",
        Duration::from_secs(30),
        || async {
            let pending = rig.count("SELECT count(*) FROM pending_uploads").await;
            (pending == 1 && !rig.files_on_disk().is_empty()).then_some(())
        },
    )
    .await;

    server.process.kill().await;
    drop(connection);
    assert!(
        !rig.files_on_disk().is_empty(),
        "the dead upload left a file"
    );

    // The restarted server's sweep finds the dead upload by its lease.
    let restarted = rig.server("server", &SHORT_LEASES).await;
    wait_for(
        "the sweep of the dead upload",
        Duration::from_secs(30),
        || async {
            let pending = rig.count("SELECT count(*) FROM pending_uploads").await;
            (pending == 0 && rig.files_on_disk().is_empty()).then_some(())
        },
    )
    .await;
    assert_eq!(rig.count("SELECT count(*) FROM revisions").await, 0);
    assert_eq!(rig.count("SELECT count(*) FROM builds").await, 0);
    let (status, revisions) = restarted
        .get("/projects/p/deployments/d/versions/v1/revisions")
        .await;
    assert_eq!((status, revisions), (StatusCode::OK, json!([])));

    // And the version still takes a complete upload.
    let (status, body) = restarted.upload("v1", deployment_zip()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Kills whatever runs the build in the middle of it, starts a replacement
/// with `restart`, and checks the build then finishes exactly once.
async fn build_survives_a_killed_builder(standalone_worker: bool) {
    let rig = Rig::new().await;
    let workers = if standalone_worker { "0" } else { "1" };
    let mut env = SHORT_LEASES.to_vec();
    env.push(("UBIOPS_BUILD_WORKERS", workers));
    let mut server = Some(rig.server("server", &env).await);
    let api = server.as_ref().unwrap();
    let worker = standalone_worker.then(|| rig.worker("worker", &SHORT_LEASES));
    api.create_versions(&["v1"]).await;
    let (status, uploaded) = api.upload("v1", slow_deployment_zip()).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");

    let running = rig
        .wait_for_build_status(&["building", "validating"], Duration::from_secs(60))
        .await;
    match worker {
        Some(worker) => worker.kill().await,
        None => server.take().unwrap().process.kill().await,
    }
    let [killed] = rig.builds().await.try_into().unwrap();
    assert!(
        matches!(killed.status.as_str(), "building" | "validating") && killed.attempts == 1,
        "the build was killed before it finished: {killed:?}"
    );

    // The replacement takes the build over once the dead one's lease is out.
    let server = match server {
        Some(server) => server,
        None => rig.server("server", &env).await,
    };
    let _worker = standalone_worker.then(|| rig.worker("worker", &SHORT_LEASES));
    let done = rig
        .wait_for_build_status(&["success", "failed"], Duration::from_secs(90))
        .await;
    assert_eq!(done.id, running.id);
    assert_eq!(done.status, "success", "{done:?}");
    assert_eq!(done.attempts, 2, "{done:?}");
    assert_eq!(
        rig.finish_events(&done.id).await,
        1,
        "published exactly once"
    );
    let (_, version) = server.get("/projects/p/deployments/d/versions/v1").await;
    assert_eq!(version["status"], "available", "{version}");
    assert_eq!(version["active_revision"], json!(done.revision_id));
    // Nothing is left of the killed attempt's scratch space.
    wait_for(
        "the scratch space cleaned",
        Duration::from_secs(10),
        || async {
            let builds = rig.objects.parent().unwrap().join("builds");
            let left = std::fs::read_dir(&builds).map(|d| d.count()).unwrap_or(0);
            (left == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn sigkill_of_the_server_during_a_build_finishes_it_once_after_restart() {
    build_survives_a_killed_builder(false).await;
}

#[tokio::test]
async fn sigkill_of_a_standalone_worker_during_a_build_finishes_it_once_after_restart() {
    build_survives_a_killed_builder(true).await;
}

/// What the load saw: when, which deployment, and the answer.
type Outcomes = Arc<Mutex<Vec<(Instant, String, StatusCode, Value)>>>;

#[tokio::test]
async fn postgres_restart_under_load_gives_503_and_recovers_by_itself() {
    let mut rig = Rig::new().await;
    let server = Arc::new(rig.server("server", &[]).await);
    server.create_versions(&[]).await;

    // Four clients create deployments (each one row and its audit event in
    // one transaction) and one lists them, without pause.
    let outcomes: Outcomes = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..5 {
        let (server, outcomes, stop) = (server.clone(), outcomes.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let name = format!("d-{client}-{n}");
                let (status, body) = if client == 4 {
                    server.get("/projects/p/deployments").await
                } else {
                    let body = json!({"name": name, "input_type": "plain", "output_type": "plain"});
                    server.post("/projects/p/deployments", body).await
                };
                outcomes
                    .lock()
                    .unwrap()
                    .push((Instant::now(), name, status, body));
            }
        }));
    }
    let since = |start: Instant, wanted: StatusCode| {
        let outcomes = outcomes.clone();
        move || {
            let seen = outcomes
                .lock()
                .unwrap()
                .iter()
                .filter(|(at, _, status, _)| *at > start && *status == wanted)
                .count();
            async move { (seen >= 5).then_some(()) }
        }
    };
    wait_for(
        "requests flowing",
        Duration::from_secs(30),
        since(Instant::now(), StatusCode::CREATED),
    )
    .await;

    let outage = Instant::now();
    rig.cluster.stop().await;
    wait_for(
        "503s during the outage",
        Duration::from_secs(60),
        since(outage, StatusCode::SERVICE_UNAVAILABLE),
    )
    .await;
    let (status, body) = server.get("/projects/p").await;
    assert_unavailable(status, &body);

    let back = Instant::now();
    rig.cluster.start_again().await;
    wait_for(
        "the server to recover without a restart",
        Duration::from_secs(60),
        since(back, StatusCode::CREATED),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }

    let outcomes = outcomes.lock().unwrap().clone();
    let mut unavailable = 0;
    for (_, name, status, body) in &outcomes {
        match *status {
            StatusCode::CREATED | StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_unavailable(*status, body);
                unavailable += 1;
            }
            other => panic!("{name}: unexpected {other} {body}"),
        }
    }
    assert!(unavailable > 0);
    // Every confirmed deployment is there, and no deployment lacks the audit
    // event written in its transaction (nothing half-written).
    let (_, listed) = server.get("/projects/p/deployments").await;
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for (_, name, status, _) in &outcomes {
        if *status == StatusCode::CREATED {
            assert!(listed.contains(&name.as_str()), "{name} was lost");
        }
    }
    let unpaired = rig
        .count(
            "SELECT count(*) FROM deployments d WHERE (SELECT count(*) FROM audit_events e
               WHERE e.deployment_id = d.id AND e.action = 'create') <> 1",
        )
        .await;
    assert_eq!(unpaired, 0);
    eprintln!(
        "postgres restart: {} requests, {unavailable} got 503, {} deployments stored",
        outcomes.len(),
        listed.len()
    );
}

/// A TCP relay in front of the S3 server that the test can cut: closed, it
/// refuses connections and drops the open ones, as an unreachable host would.
struct Relay {
    port: u16,
    target: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(target: &str) -> Relay {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut relay = Relay {
            port,
            target: target.trim_start_matches("http://").to_owned(),
            task: None,
        };
        relay.open().await;
        relay
    }

    async fn open(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the relay");
        let target = self.target.clone();
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    async fn close(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

#[tokio::test]
async fn object_storage_outage_gives_503_records_nothing_and_recovers() {
    let (endpoint, bucket) = ubiops_test_support::s3_bucket().await;
    let bucket_store = ubiops_test_support::s3_store_at(&endpoint, &bucket);
    let mut relay = Relay::start(&endpoint).await;
    let rig = Rig::on_s3(&relay.endpoint(), &bucket).await;
    let server = rig.server("server", &SHORT_LEASES).await;
    server.create_versions(&["v1"]).await;
    let zip = deployment_zip();
    let (status, uploaded) = server.upload("v1", zip.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    // Generous: the other fault tests run their servers meanwhile.
    rig.wait_for_build_status(&["success"], Duration::from_secs(120))
        .await;
    let download = format!(
        "/projects/p/deployments/d/versions/v1/revisions/{}/download",
        uploaded["revision"].as_str().unwrap()
    );
    let counts =
        "SELECT (SELECT count(*) FROM revisions) * 1000000 + (SELECT count(*) FROM builds) * 1000
                         + (SELECT count(*) FROM audit_events)";
    let before = rig.count(counts).await;

    relay.close().await;
    let (status, body) = server.upload("v1", zip.clone()).await;
    assert_unavailable(status, &body);
    let (status, body) = server.get(&download).await;
    assert_unavailable(status, &body);
    assert_eq!(rig.count(counts).await, before, "nothing recorded");
    let (status, _) = server.get("/projects/p/deployments/d/versions/v1").await;
    assert_eq!(status, StatusCode::OK, "the rest of the API keeps working");

    relay.open().await;
    let response = server.request(Method::GET, &download).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), zip);
    let (status, body) = server.upload("v1", zip).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // What the failed upload left behind is swept; storage holds exactly the
    // revisions' files.
    wait_for(
        "storage and database in step",
        Duration::from_secs(30),
        || async {
            let pending = rig.count("SELECT count(*) FROM pending_uploads").await;
            let mut expected: Vec<String> = sqlx::query_scalar("SELECT object_key FROM revisions")
                .fetch_all(&rig.db)
                .await
                .unwrap();
            expected.sort();
            let stored = bucket_store.list_keys("").await.unwrap();
            (pending == 0 && stored == expected).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn two_servers_on_one_database_and_storage_agree_and_build_each_once() {
    let rig = Rig::new().await;
    let one_worker = [("UBIOPS_BUILD_WORKERS", "1")];
    let a = rig.server("server-a", &one_worker).await;
    let b = rig.server("server-b", &one_worker).await;
    let versions = ["v1", "v2", "v3"];
    a.create_versions(&versions).await;
    let servers: [&Server; 2] = [&a, &b];

    // Uploads through both at once; each build must be run once, by either.
    let uploads = (0..6).map(|i| {
        let server = servers[i % 2];
        server.upload(versions[i % 3], deployment_zip())
    });
    for (status, body) in futures::future::join_all(uploads).await {
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    wait_for("every build finished", Duration::from_secs(60), || async {
        let builds = rig.builds().await;
        builds.iter().all(|b| b.status == "success").then_some(())
    })
    .await;
    let builds = rig.builds().await;
    assert_eq!(builds.len(), 6);
    for build in &builds {
        assert_eq!(build.attempts, 1, "{build:?}");
        assert_eq!(rig.finish_events(&build.id).await, 1, "{build:?}");
    }
    // Both servers tell the same story.
    for path in [
        "/projects/p/deployments/d".to_owned(),
        "/projects/p/deployments/d/versions".to_owned(),
        "/projects/p/deployments/d/versions/v2/revisions".to_owned(),
        "/projects/p/deployments/d/versions/v3/builds".to_owned(),
        "/projects/p/deployments/d/audit".to_owned(),
    ] {
        let (status_a, from_a) = a.get(&path).await;
        let (status_b, from_b) = b.get(&path).await;
        assert_eq!(status_a, StatusCode::OK, "{path}: {from_a}");
        assert_eq!((status_a, from_a), (status_b, from_b), "{path}");
    }
}
