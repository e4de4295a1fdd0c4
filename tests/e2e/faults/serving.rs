//! Each server keeps the versions its requests go to; a change made through
//! another server, or behind a lost notification connection, still reaches
//! its next requests.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use ubiops_test_support::wait_for;

use super::harness::{Rig, Server};
use crate::builds::zip_of;

const WORD_PY: &str = r#"import os


class Deployment:
    def __init__(self, base_directory, context):
        pass

    def request(self, data):
        return os.environ.get("WORD", "unset")
"#;

const REQUESTS: &str = "/projects/p/deployments/d/versions/v1/requests";
const VARIABLES: &str = "/projects/p/deployments/d/versions/v1/environment-variables";

/// What the code answers through `server`, or the error status.
async fn word(server: &Server) -> Result<String, StatusCode> {
    let (status, body) = server.post(REQUESTS, json!("hi")).await;
    match status {
        StatusCode::OK => Ok(body["result"].as_str().expect("a result").to_owned()),
        status => Err(status),
    }
}

async fn set_word(server: &Server, id: Option<&str>, value: &str) -> String {
    let variable = json!({"name": "WORD", "value": value, "secret": false});
    let (status, body) = match id {
        None => server.post(VARIABLES, variable).await,
        Some(id) => {
            let path = format!("{VARIABLES}/{id}");
            server.call(Method::PATCH, &path, Some(variable)).await
        }
    };
    assert!(status.is_success(), "{status} {body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn until_word(server: &Server, expected: Result<&str, StatusCode>, what: &str) {
    wait_for(what, Duration::from_secs(10), || async {
        (word(server).await.as_deref().map_err(|s| *s) == expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_change_through_one_server_reaches_requests_on_the_other() {
    let rig = Rig::new().await;
    let a = rig.server("server-a", &[]).await;
    let b = rig.server("server-b", &[]).await;
    a.create_versions(&["v1"]).await;
    let (status, body) = a
        .upload("v1", zip_of(&[("pkg/deployment.py", WORD_PY.as_bytes())]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    rig.wait_for_build_status(&["success"], Duration::from_secs(120))
        .await;
    assert_eq!(word(&b).await, Ok("unset".to_owned()));

    // Its record is written behind the answer: the other server finds it
    // once the write commits, moments later.
    let (status, answered) = b.post(REQUESTS, json!("hi")).await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    let stored = format!("{REQUESTS}/{}", answered["id"].as_str().unwrap());
    wait_for(
        "a finding the request b answered",
        Duration::from_secs(2),
        || async { (a.get(&stored).await.0 == StatusCode::OK).then_some(()) },
    )
    .await;

    // Made through a; b has kept the version and must hear of it.
    let id = set_word(&a, None, "one").await;
    until_word(&b, Ok("one"), "b serving the variable set through a").await;

    // Made through b: its very next request sees it.
    set_word(&b, Some(&id), "two").await;
    assert_eq!(word(&b).await, Ok("two".to_owned()));

    // The servers' notification connections cut, a change made meanwhile:
    // once b listens again, it must not go on with what it kept before.
    let listeners = || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%ubiops_serving_changed%'",
        )
        .fetch_all(&rig.db)
        .await
        .unwrap()
    };
    let cut = listeners().await;
    assert_eq!(cut.len(), 2, "each server listens once");
    sqlx::query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid")
        .bind(&cut)
        .execute(&rig.db)
        .await
        .unwrap();
    set_word(&a, Some(&id), "three").await;
    wait_for(
        "both servers listening again",
        Duration::from_secs(10),
        || async {
            let now = listeners().await;
            (now.len() == 2 && now.iter().all(|pid| !cut.contains(pid))).then_some(())
        },
    )
    .await;
    assert_eq!(word(&b).await, Ok("three".to_owned()));
    // And it follows changes again after reconnecting.
    set_word(&a, Some(&id), "four").await;
    until_word(&b, Ok("four"), "b following changes again").await;

    // A version deleted through a is gone for b.
    let (status, body) = a
        .call(
            Method::DELETE,
            "/projects/p/deployments/d/versions/v1",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    until_word(
        &b,
        Err(StatusCode::NOT_FOUND),
        "b refusing the deleted version",
    )
    .await;
}
