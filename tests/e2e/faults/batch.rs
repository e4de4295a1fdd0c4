//! Faults under the batch queue: a server SIGKILLed while its requests run,
//! PostgreSQL restarted under a queue, two servers sharing one queue (one of
//! them frozen past its leases), and an instance killed mid-request. Each
//! runs two versions side by side, one with `restart_request_interruption`
//! and one without, so that both rules meet every fault.
//!
//! After each: every queued request reached exactly one final state
//! (queued = completed + failed + cancelled, none left pending or
//! processing), ran again only after an interruption was counted in its
//! `retries`, and holds the result of its last run only: a result that
//! arrives after its claim was lost is never recorded.
//!
//! The deployment's code leaves a mark per call in a directory the test
//! reads (the sandboxes keep no one from a world-writable directory): which
//! request, which instance (pid) of which server (parent pid), when, and
//! whether the call returned. Its answer names the call, so the test knows
//! which run a recorded result came from.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ubiops_test_support::wait_for;

use super::harness::{Rig, Server};
use crate::builds::zip_of;

/// Short leases, so that a lost server's requests are settled in seconds
/// (the recovery sweep runs every lease/2).
const LEASE: [(&str, &str); 1] = [("UBIOPS_REQUEST_LEASE_SECONDS", "2")];

/// The versions of every test: `restart` runs interrupted requests again,
/// `plain` (the default) fails them.
const RESTART: &str = "restart";
const PLAIN: &str = "plain";
const VERSIONS: [(&str, bool); 2] = [(RESTART, true), (PLAIN, false)];

const FINAL: [&str; 3] = ["completed", "failed", "cancelled"];

/// One run of `request()`, from its marks.
#[derive(Debug, Clone)]
struct Call {
    token: String,
    pid: i32,
    /// The server that started the instance.
    ppid: i32,
    started: f64,
    /// The call returned (its result was handed to the server).
    ended: bool,
}

/// The directory the deployment marks its calls in.
struct Calls {
    dir: tempfile::TempDir,
}

impl Calls {
    fn new() -> Calls {
        let dir = tempfile::Builder::new()
            .prefix("ubiops-batch-calls")
            .tempdir()
            .unwrap();
        // The instances run as users of their own.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        Calls { dir }
    }

    /// A plain deployment: input `<name>:<seconds>` sleeps that long and
    /// answers `<name> <pid> <ppid> <token>`, the token naming this call;
    /// `<name>:crash` kills its own instance, every time.
    /// Marks are written under a temporary name and renamed, so that the
    /// test never reads half of one.
    fn package(&self) -> Vec<u8> {
        let code = format!(
            r#"import os
import signal
import time
import uuid

CALLS = {calls:?}


def mark(name, token, kind, text):
    path = os.path.join(CALLS, name + "." + token + "." + kind)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data):
        name, _, seconds = data.partition(":")
        token = uuid.uuid4().hex
        pid, ppid = os.getpid(), os.getppid()
        mark(name, token, "start", "%d %d %f" % (pid, ppid, time.time()))
        if seconds == "crash":
            os.kill(pid, signal.SIGKILL)
        time.sleep(float(seconds or 0))
        mark(name, token, "end", "")
        return "%s %d %d %s" % (name, pid, ppid, token)
"#,
            calls = self.dir.path().to_str().unwrap()
        );
        zip_of(&[("pkg/deployment.py", code.as_bytes())])
    }

    /// Every call so far, by request name, oldest first.
    fn read(&self) -> HashMap<String, Vec<Call>> {
        let names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut calls: HashMap<String, Vec<Call>> = HashMap::new();
        for file in &names {
            let [name, token, "start"] = file.split('.').collect::<Vec<_>>()[..] else {
                continue;
            };
            let text = std::fs::read_to_string(self.dir.path().join(file)).unwrap();
            let [pid, ppid, started] = text.split(' ').collect::<Vec<_>>()[..] else {
                panic!("{file}: {text}");
            };
            calls.entry(name.to_owned()).or_default().push(Call {
                token: token.to_owned(),
                pid: pid.parse().unwrap(),
                ppid: ppid.parse().unwrap(),
                started: started.parse().unwrap(),
                ended: names.contains(&format!("{name}.{token}.end")),
            });
        }
        for list in calls.values_mut() {
            list.sort_by(|a, b| a.started.total_cmp(&b.started));
        }
        calls
    }
}

/// A queued request: its id and the name its input starts with.
#[derive(Debug, Clone)]
struct Queued {
    id: String,
    name: String,
}

/// A request once settled, as collect answers it, with its calls.
#[derive(Debug)]
struct Settled {
    id: String,
    name: String,
    status: String,
    retries: i64,
    result: Option<String>,
    error: Option<String>,
    calls: Vec<Call>,
}

/// Project `p`, plain deployment `d`, and the versions `restart` and
/// `plain` with `maximum_instances`, built from the calls' package.
async fn deploy(rig: &Rig, server: &Server, calls: &Calls, maximum_instances: i32) {
    let (status, body) = server.post("/projects", json!({"name": "p"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let deployment = json!({"name": "d", "input_type": "plain", "output_type": "plain"});
    let (status, body) = server.post("/projects/p/deployments", deployment).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (version, restart) in VERSIONS {
        let settings = json!({
            "version": version,
            "maximum_instances": maximum_instances,
            "restart_request_interruption": restart,
        });
        let (status, body) = server
            .post("/projects/p/deployments/d/versions", settings)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = server.upload(version, calls.package()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    wait_for("both builds", Duration::from_secs(180), || async {
        let builds = rig.builds().await;
        assert!(
            builds.iter().all(|b| b.status != "failed"),
            "{builds:?}\n{}",
            server.process.log()
        );
        (builds.len() == 2 && builds.iter().all(|b| b.status == "success")).then_some(())
    })
    .await;
}

/// `count` inputs named `<version>-<n>` that each run `seconds`.
fn inputs(version: &str, count: usize, seconds: f64) -> Vec<String> {
    (0..count)
        .map(|n| format!("{version}-{n:02}:{seconds}"))
        .collect()
}

fn version_path(version: &str) -> String {
    format!("/projects/p/deployments/d/versions/{version}")
}

/// Queues `inputs` as one batch; the requests in input order.
async fn queue(server: &Server, version: &str, inputs: &[String]) -> Vec<Queued> {
    let path = format!("{}/requests/batch?timeout=600", version_path(version));
    let (status, body) = server.post(&path, json!(inputs)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let created = body.as_array().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(created.len(), inputs.len(), "{body}");
    created
        .iter()
        .zip(inputs)
        .map(|(request, input)| {
            assert_eq!(request["status"], "pending", "{request}");
            Queued {
                id: request["id"].as_str().unwrap().to_owned(),
                name: input.split(':').next().unwrap().to_owned(),
            }
        })
        .collect()
}

/// How many of the version's requests are in `status`.
async fn count(rig: &Rig, version: &str, status: &str) -> i64 {
    rig.count(&format!(
        "SELECT count(*) FROM deployment_requests r JOIN versions v ON v.id = r.version_id
         WHERE v.name = '{version}' AND r.status = '{status}'"
    ))
    .await
}

/// The ids of the version's requests in `status`.
async fn ids_in(rig: &Rig, version: &str, status: &str) -> HashSet<String> {
    sqlx::query_scalar(
        "SELECT r.id::text FROM deployment_requests r JOIN versions v ON v.id = r.version_id
         WHERE v.name = $1 AND r.status = $2",
    )
    .bind(version)
    .bind(status)
    .fetch_all(&rig.db)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// Waits until every version has finished at least `completed` requests and
/// is running at least `processing`.
async fn wait_midway(rig: &Rig, completed: i64, processing: i64) {
    wait_for("requests mid-way", Duration::from_secs(120), || async {
        for (version, _) in VERSIONS {
            if count(rig, version, "completed").await < completed
                || count(rig, version, "processing").await < processing
            {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// Waits until no request is pending, processing or being cancelled.
async fn wait_settled(rig: &Rig, servers: &[&Server], limit: Duration) {
    let start = Instant::now();
    let sql = "SELECT count(*) FROM deployment_requests
               WHERE status IN ('pending', 'processing', 'cancelled_pending')";
    let deadline = start + limit;
    loop {
        if rig.count(sql).await == 0 {
            eprintln!("settled in {:.1} s", start.elapsed().as_secs_f64());
            return;
        }
        if Instant::now() > deadline {
            let stuck: Vec<(String, String, String, i32, Option<String>)> = sqlx::query_as(
                "SELECT r.id::text, v.name, r.status, r.retries, r.worker_id
                 FROM deployment_requests r JOIN versions v ON v.id = r.version_id
                 WHERE r.status IN ('pending', 'processing', 'cancelled_pending')",
            )
            .fetch_all(&rig.db)
            .await
            .unwrap();
            let logs: Vec<String> = servers.iter().map(|s| s.process.log()).collect();
            panic!("requests stuck after {limit:?}: {stuck:#?}\nlogs:\n{logs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Collects the version's requests and checks what holds whatever the
/// fault: each queued request is there once, in a final state; it ran again
/// only after an interruption counted in `retries` (never, for a version
/// that does not restart interrupted requests); a completed one holds the
/// result of its last run, a failed or cancelled one none.
async fn check_each_once(
    rig: &Rig,
    server: &Server,
    version: &str,
    restart: bool,
    queued: &[Queued],
    calls: &Calls,
) -> Vec<Settled> {
    let ids: Vec<&str> = queued.iter().map(|q| q.id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "ids are unique");
    let stored = rig
        .count(&format!(
            "SELECT count(*) FROM deployment_requests r JOIN versions v ON v.id = r.version_id
             WHERE v.name = '{version}'"
        ))
        .await;
    assert_eq!(stored, ids.len() as i64, "{version}: one row per request");

    let mut collected = Vec::new();
    for chunk in ids.chunks(250) {
        let path = format!("{}/requests/collect", version_path(version));
        let (status, body) = server.post(&path, json!(chunk)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        collected.extend(body.as_array().unwrap().clone());
    }
    assert_eq!(
        collected.len(),
        ids.len(),
        "{version}: collect answers each"
    );
    let by_id: HashMap<&str, &Value> = collected
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    assert_eq!(
        by_id.len(),
        ids.len(),
        "{version}: collect answers each once"
    );

    let mut runs = calls.read();
    let mut settled = Vec::new();
    for request in queued {
        let detail = by_id[request.id.as_str()];
        let status = detail["status"].as_str().unwrap().to_owned();
        let retries = detail["retries"].as_i64().unwrap();
        let result = detail["result"].as_str().map(str::to_owned);
        let error = detail["error_message"].as_str().map(str::to_owned);
        let runs = runs.remove(&request.name).unwrap_or_default();
        let what = format!("{version} {}: {detail}\ncalls: {runs:#?}", request.name);
        assert!(FINAL.contains(&status.as_str()), "not final: {what}");
        assert!(
            runs.len() as i64 <= retries + 1,
            "ran again without a counted interruption: {what}"
        );
        if !restart {
            assert_eq!(
                retries, 0,
                "retried without restart_request_interruption: {what}"
            );
        }
        match status.as_str() {
            "completed" => {
                let last = runs.last().unwrap_or_else(|| panic!("never ran: {what}"));
                let expected =
                    format!("{} {} {} {}", request.name, last.pid, last.ppid, last.token);
                assert_eq!(
                    result.as_deref(),
                    Some(expected.as_str()),
                    "not the last run's result: {what}"
                );
                assert!(last.ended, "{what}");
                assert_eq!(error, None, "{what}");
            }
            "failed" => {
                assert_eq!(result, None, "{what}");
                let message = error.as_deref().unwrap_or_default();
                assert!(message.contains("interrupted"), "{what}");
            }
            _ => assert_eq!(result, None, "{what}"),
        }
        settled.push(Settled {
            id: request.id.clone(),
            name: request.name.clone(),
            status,
            retries,
            result,
            error,
            calls: runs,
        });
    }
    let tally = |status: &str| settled.iter().filter(|s| s.status == status).count();
    assert_eq!(
        queued.len(),
        tally("completed") + tally("failed") + tally("cancelled")
    );
    eprintln!(
        "{version}: {} queued = {} completed + {} failed + {} cancelled; {} ran again",
        queued.len(),
        tally("completed"),
        tally("failed"),
        tally("cancelled"),
        settled.iter().filter(|s| s.retries > 0).count(),
    );
    settled
}

/// No server panicked (a restarted server appends to its log).
fn assert_no_panic(servers: &[&Server]) {
    for server in servers {
        let log = server.process.log();
        assert!(!log.contains("panicked"), "{log}");
    }
}

async fn cancel(server: &Server, version: &str, id: &str) -> (StatusCode, Value) {
    let path = format!("{}/requests/{id}", version_path(version));
    server
        .call(Method::PATCH, &path, Some(json!({"status": "cancelled"})))
        .await
}

#[tokio::test]
async fn sigkill_of_the_server_mid_batch_settles_each_request_once_after_restart() {
    let rig = Rig::new().await;
    let calls = Calls::new();
    let server = rig.server("server", &LEASE).await;
    deploy(&rig, &server, &calls, 3).await;
    let mut queued = HashMap::new();
    for (version, _) in VERSIONS {
        // First a long one, cancelled while it runs; then short ones.
        let mut batch = vec![format!("{version}-long:60")];
        batch.extend(inputs(version, 24, 1.0));
        queued.insert(version, queue(&server, version, &batch).await);
    }
    wait_midway(&rig, 3, 3).await;

    // Cancelled while running (`cancelled_pending` until its worker lets
    // go), and the worker killed at once: the sweep must cancel it.
    for (version, _) in VERSIONS {
        let (status, body) = cancel(&server, version, &queued[version][0].id).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            ["cancelled_pending", "cancelled"].contains(&body["status"].as_str().unwrap()),
            "{body}"
        );
    }
    server.process.kill().await;
    let mut interrupted = HashMap::new();
    for (version, _) in VERSIONS {
        let running = ids_in(&rig, version, "processing").await;
        assert!(!running.is_empty(), "{version}: none was running");
        interrupted.insert(version, running);
    }

    let server = rig.server("server", &LEASE).await;
    let restarted = server.process.pid();
    wait_settled(&rig, &[&server], Duration::from_secs(90)).await;
    for (version, restart) in VERSIONS {
        let settled =
            check_each_once(&rig, &server, version, restart, &queued[version], &calls).await;
        for request in &settled {
            let what = format!("{version}: {request:#?}");
            if request.name.ends_with("-long") {
                assert_eq!(request.status, "cancelled", "{what}");
            } else if !interrupted[version].contains(&request.id) {
                // Finished before the kill, or after the restart: once.
                assert_eq!(request.status, "completed", "{what}");
                assert_eq!((request.retries, request.calls.len()), (0, 1), "{what}");
            } else if restart {
                assert_eq!(request.status, "completed", "{what}");
                assert_eq!(request.retries, 1, "{what}");
                assert_eq!(request.calls.last().unwrap().ppid, restarted, "{what}");
            } else {
                assert_eq!(request.status, "failed", "{what}");
                let error = request.error.as_deref().unwrap();
                assert!(error.contains("server stopped"), "{what}");
            }
        }
    }
    assert!(
        server
            .process
            .log()
            .contains("settled interrupted or expired batch requests"),
        "{}",
        server.process.log()
    );
    assert_no_panic(&[&server]);
}

#[tokio::test]
async fn postgres_restart_under_a_batch_queue_settles_each_request_once() {
    let mut rig = Rig::new().await;
    let calls = Calls::new();
    let server = rig.server("server", &LEASE).await;
    deploy(&rig, &server, &calls, 2).await;
    let mut queued = HashMap::new();
    for (version, _) in VERSIONS {
        let batch = inputs(version, 20, 1.0);
        queued.insert(version, queue(&server, version, &batch).await);
    }
    wait_midway(&rig, 2, 2).await;

    // Longer than a lease: the server cannot renew its claims, and what the
    // calls in flight answer meanwhile cannot be recorded.
    rig.cluster.stop().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    rig.cluster.start_again().await;

    wait_settled(&rig, &[&server], Duration::from_secs(90)).await;
    for (version, restart) in VERSIONS {
        let settled =
            check_each_once(&rig, &server, version, restart, &queued[version], &calls).await;
        let interrupted: Vec<&Settled> = settled
            .iter()
            .filter(|s| s.retries > 0 || s.status == "failed")
            .collect();
        assert!(
            !interrupted.is_empty(),
            "{version}: the outage interrupted none: {settled:#?}"
        );
        for request in &settled {
            let what = format!("{version}: {request:#?}");
            if restart {
                assert_eq!(request.status, "completed", "{what}");
            } else if request.status == "completed" {
                assert_eq!(request.calls.len(), 1, "{what}");
            }
        }
        if !restart {
            // Calls that returned during the outage, too late: their
            // requests failed, without the result.
            let late = interrupted
                .iter()
                .filter(|s| s.calls.iter().any(|c| c.ended))
                .count();
            eprintln!("{version}: {late} results arrived after their claim was lost");
            assert!(late > 0, "{interrupted:#?}");
        }
    }
    assert_no_panic(&[&server]);
}

#[tokio::test]
async fn two_servers_share_a_batch_queue_and_a_frozen_servers_late_results_are_dropped() {
    let rig = Rig::new().await;
    let calls = Calls::new();
    let a = rig.server("server-a", &LEASE).await;
    let b = rig.server("server-b", &LEASE).await;
    let pids = HashSet::from([a.process.pid(), b.process.pid()]);
    deploy(&rig, &a, &calls, 2).await;

    // Both servers take from the same queues, each request once.
    let mut queued: HashMap<&str, Vec<Queued>> = HashMap::new();
    for (version, _) in VERSIONS {
        let batch = inputs(version, 24, 0.5);
        let (first, second) = batch.split_at(12);
        let mut requests = queue(&a, version, first).await;
        requests.extend(queue(&b, version, second).await);
        queued.insert(version, requests);
    }
    wait_settled(&rig, &[&a, &b], Duration::from_secs(90)).await;
    for (version, restart) in VERSIONS {
        let settled = check_each_once(&rig, &b, version, restart, &queued[version], &calls).await;
        for request in &settled {
            assert_eq!(request.status, "completed", "{request:#?}");
            assert_eq!(
                (request.retries, request.calls.len()),
                (0, 1),
                "{request:#?}"
            );
        }
        let servers: HashSet<i32> = settled.iter().map(|s| s.calls[0].ppid).collect();
        assert_eq!(servers, pids, "{version}: both servers ran requests");
    }

    // Server a is frozen mid-request for longer than a lease: b settles its
    // requests. Its calls return meanwhile; when it goes on, their results
    // are too late to be recorded.
    for (version, _) in VERSIONS {
        let batch: Vec<String> = (0..12).map(|n| format!("{version}-late{n:02}:2")).collect();
        let requests = queue(&b, version, &batch).await;
        queued.get_mut(version).unwrap().extend(requests);
    }
    let frozen: HashMap<&str, (String, Call)> =
        wait_for("server a mid-request", Duration::from_secs(60), || async {
            let running = calls.read();
            let mut frozen = HashMap::new();
            for (version, _) in VERSIONS {
                let prefix = format!("{version}-late");
                let call = running.iter().find_map(|(name, runs)| {
                    let last = runs.last()?;
                    (name.starts_with(&prefix) && last.ppid == a.process.pid() && !last.ended)
                        .then(|| (name.clone(), last.clone()))
                })?;
                frozen.insert(version, call);
            }
            Some(frozen)
        })
        .await;
    a.process.signal(libc::SIGSTOP);
    let id_of = |version: &str, name: &str| {
        queued[version]
            .iter()
            .find(|q| q.name == name)
            .unwrap()
            .id
            .clone()
    };
    wait_for(
        "b to settle a's requests, and a's calls to return",
        Duration::from_secs(30),
        || async {
            let ended = calls.read();
            for (version, (name, call)) in &frozen {
                let returned = ended[name].iter().any(|c| c.token == call.token && c.ended);
                let settled = rig
                    .count(&format!(
                        "SELECT count(*) FROM deployment_requests
                         WHERE id = '{}' AND (retries > 0 OR status = 'failed')",
                        id_of(version, name)
                    ))
                    .await;
                if !returned || settled == 0 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    a.process.signal(libc::SIGCONT);

    wait_settled(&rig, &[&a, &b], Duration::from_secs(90)).await;
    for (version, restart) in VERSIONS {
        let settled = check_each_once(&rig, &b, version, restart, &queued[version], &calls).await;
        let (name, call) = &frozen[version];
        let request = settled.iter().find(|s| &s.name == name).unwrap();
        let what = format!("{version}: frozen {call:#?}\n{request:#?}");
        let late = request.calls.iter().find(|c| c.token == call.token);
        assert!(late.is_some_and(|c| c.ended), "a's call returned: {what}");
        if restart {
            assert_eq!(request.status, "completed", "{what}");
            assert!(request.retries >= 1, "{what}");
            assert!(
                !request.result.as_ref().unwrap().ends_with(&call.token),
                "{what}"
            );
        } else {
            assert_eq!(request.status, "failed", "{what}");
            assert_eq!(request.result, None, "{what}");
        }
    }
    let dropped = a.process.log().matches("its claim had been lost").count();
    eprintln!("server a was told {dropped} times that a result came too late");
    assert_no_panic(&[&a, &b]);
}

#[tokio::test]
async fn an_instance_killed_mid_request_requeues_or_fails_only_its_request() {
    let rig = Rig::new().await;
    let calls = Calls::new();
    let mut env = LEASE.to_vec();
    env.push(("UBIOPS_REQUEST_RETRIES", "2"));
    let server = rig.server("server", &env).await;
    deploy(&rig, &server, &calls, 2).await;
    let mut queued = HashMap::new();
    for (version, _) in VERSIONS {
        // A victim, whose instance the test kills once, and a crasher,
        // which kills its instance on every run: retried twice at most.
        let mut batch = inputs(version, 12, 0.3);
        batch.insert(3, format!("{version}-victim:3"));
        batch.insert(6, format!("{version}-crasher:crash"));
        queued.insert(version, queue(&server, version, &batch).await);
    }

    // The victims' instances are SIGKILLed on their first run only.
    let mut killed = HashMap::new();
    while killed.len() < VERSIONS.len() {
        let running = wait_for("a victim running", Duration::from_secs(60), || async {
            let running = calls.read();
            VERSIONS.iter().find_map(|(version, _)| {
                let name = format!("{version}-victim");
                let call = running.get(&name)?.first()?;
                (!killed.contains_key(version)).then(|| (*version, call.clone()))
            })
        })
        .await;
        let (version, call) = running;
        // SAFETY: kill(2) of the instance's process, found by its mark.
        assert_eq!(unsafe { libc::kill(call.pid, libc::SIGKILL) }, 0);
        killed.insert(version, call);
    }

    wait_settled(&rig, &[&server], Duration::from_secs(90)).await;
    for (version, restart) in VERSIONS {
        let settled =
            check_each_once(&rig, &server, version, restart, &queued[version], &calls).await;
        for request in &settled {
            let what = format!("{version}: {request:#?}");
            if request.name.ends_with("-crasher") {
                assert_eq!(request.status, "failed", "{what}");
                let error = request.error.as_deref().unwrap();
                assert!(error.contains("crashed"), "{what}");
                if restart {
                    assert_eq!((request.retries, request.calls.len()), (2, 3), "{what}");
                    assert!(error.contains("interrupted 3 times"), "{what}");
                } else {
                    assert_eq!((request.retries, request.calls.len()), (0, 1), "{what}");
                }
                continue;
            }
            if !request.name.ends_with("-victim") {
                assert_eq!(request.status, "completed", "{what}");
                assert_eq!((request.retries, request.calls.len()), (0, 1), "{what}");
                continue;
            }
            assert_eq!(request.calls[0].token, killed[version].token, "{what}");
            assert!(!request.calls[0].ended, "{what}");
            if restart {
                assert_eq!(request.status, "completed", "{what}");
                assert_eq!((request.retries, request.calls.len()), (1, 2), "{what}");
                assert_ne!(request.calls[1].pid, request.calls[0].pid, "{what}");
            } else {
                assert_eq!(request.status, "failed", "{what}");
                assert_eq!((request.retries, request.calls.len()), (0, 1), "{what}");
                let error = request.error.as_deref().unwrap();
                assert!(error.contains("crashed"), "{what}");
            }
        }
    }
    assert_no_panic(&[&server]);
}
