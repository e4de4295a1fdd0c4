//! The request store against a real PostgreSQL: retention modes, reading
//! one and several, the lists' filters, sorting and paging, deleting, the
//! expiry sweep and the cascade from deleted versions and deployments.

mod database;
mod fixtures;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use ubiops_domain::requests::{RequestFilter, RequestListQuery, RequestStatus, SortOrder};
use ubiops_domain::version::RetentionMode;
use ubiops_storage::{DeploymentRef, NewRequest, RequestScope, Retention, StorageError, Store};
use uuid::Uuid;

use fixtures::{actor, deployment, project, settings, setup, version, Target};

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 31, 12, 0, 0).unwrap() + Duration::seconds(seconds)
}

fn full() -> Retention {
    Retention {
        mode: RetentionMode::Full,
        seconds: 3600,
    }
}

/// A completed direct request created at `at(seconds)`.
fn request(target: Target, seconds: i64) -> NewRequest {
    NewRequest {
        id: Uuid::new_v4(),
        project_id: target.project_id,
        deployment_id: target.deployment_id,
        version_id: target.version_id,
        batch: false,
        created_by: "tester@example.com".to_owned(),
        origin: json!({"deployment": "d", "deployment_version": "v1"}),
        timeout_seconds: 300,
        notification_group: None,
        time_created: at(seconds),
        time_started: Some(at(seconds)),
        time_completed: Some(at(seconds) + Duration::milliseconds(250)),
        status: RequestStatus::Completed,
        success: Some(true),
        request_data: Some(json!({"input": 82.3})),
        result: Some(json!({"output": "2.1369"})),
        error_message: None,
        retention: full(),
    }
}

fn failed(target: Target, seconds: i64) -> NewRequest {
    NewRequest {
        status: RequestStatus::Failed,
        success: Some(false),
        result: None,
        error_message: Some("ZeroDivisionError: division by zero".to_owned()),
        ..request(target, seconds)
    }
}

async fn record(store: &Store, new: &NewRequest) -> Uuid {
    store.record_request(new.clone()).await.unwrap();
    new.id
}

fn filter(params: &[(&str, &str)]) -> RequestFilter {
    let mut query = RequestListQuery::default();
    for (name, value) in params {
        match *name {
            "status" => query.status = Some(value),
            "success" => query.success = Some(value),
            "limit" => query.limit = Some(value),
            "offset" => query.offset = Some(value),
            "sort" => query.sort = Some(value),
            "pipeline" => query.pipeline = Some(value),
            "request_schedule" => query.request_schedule = Some(value),
            "start_date" => query.start_date = Some(value),
            "end_date" => query.end_date = Some(value),
            "search_id" => query.search_id = Some(value),
            "object_type" => query.object_type = Some(value),
            other => panic!("unknown parameter {other}"),
        }
    }
    RequestFilter::parse(&query).unwrap()
}

async fn listed(store: &Store, scope: RequestScope, params: &[(&str, &str)]) -> Vec<Uuid> {
    store
        .list_requests(scope, &filter(params))
        .await
        .unwrap()
        .into_iter()
        .map(|summary| summary.id)
        .collect()
}

fn assert_not_found(error: StorageError, message: &str) {
    match error {
        StorageError::NotFound(text) => assert_eq!(text, message),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn full_retention_keeps_everything() {
    let (store, target) = setup().await;
    let mut new = request(target, 0);
    new.notification_group = Some("team".to_owned());
    new.timeout_seconds = 60;
    record(&store, &new).await;
    let stored = store.get_request(target.version_id, new.id).await.unwrap();
    assert_eq!(stored.id, new.id);
    assert_eq!(stored.project_id, target.project_id);
    assert_eq!(stored.deployment_id, target.deployment_id);
    assert_eq!(stored.version_id, target.version_id);
    assert_eq!(stored.deployment, "d");
    assert_eq!(stored.version, "v1");
    assert!(!stored.batch);
    assert_eq!(stored.status, RequestStatus::Completed);
    assert_eq!(stored.success, Some(true));
    assert_eq!(stored.time_created, new.time_created);
    assert_eq!(stored.time_started, new.time_started);
    assert_eq!(stored.time_completed, new.time_completed);
    assert_eq!(stored.request_data, Some(json!({"input": 82.3})));
    assert_eq!(stored.result, Some(json!({"output": "2.1369"})));
    assert_eq!(stored.input_size, Some(r#"{"input":82.3}"#.len() as i64));
    assert_eq!(
        stored.output_size,
        Some(r#"{"output":"2.1369"}"#.len() as i64)
    );
    assert_eq!(stored.error_message, None);
    assert_eq!(stored.created_by, "tester@example.com");
    assert_eq!(
        stored.origin,
        json!({"deployment": "d", "deployment_version": "v1"})
    );
    assert_eq!(stored.notification_group.as_deref(), Some("team"));
    assert_eq!(stored.timeout_seconds, 60);
    assert_eq!(stored.retries, 0);
    assert_eq!(expires_at(&store, new.id).await, Some(at(3600)));
}

#[tokio::test]
async fn metadata_retention_keeps_all_but_data_and_result() {
    let (store, target) = setup().await;
    let new = NewRequest {
        retention: Retention {
            mode: RetentionMode::Metadata,
            seconds: 60,
        },
        ..failed(target, 0)
    };
    record(&store, &new).await;
    let stored = store.get_request(target.version_id, new.id).await.unwrap();
    assert_eq!(stored.status, RequestStatus::Failed);
    assert_eq!(stored.success, Some(false));
    assert_eq!(stored.request_data, None);
    assert_eq!(stored.result, None);
    // Sizes and the error are metadata.
    assert_eq!(stored.input_size, Some(r#"{"input":82.3}"#.len() as i64));
    assert_eq!(stored.output_size, None);
    assert_eq!(
        stored.error_message.as_deref(),
        Some("ZeroDivisionError: division by zero")
    );
    assert_eq!(expires_at(&store, new.id).await, Some(at(60)));
}

#[tokio::test]
async fn no_retention_stores_nothing() {
    let (store, target) = setup().await;
    let none = NewRequest {
        retention: Retention {
            mode: RetentionMode::None,
            seconds: 3600,
        },
        ..request(target, 0)
    };
    let zero_seconds = NewRequest {
        retention: Retention {
            mode: RetentionMode::Full,
            seconds: 0,
        },
        ..request(target, 0)
    };
    for new in [&none, &zero_seconds] {
        record(&store, new).await;
        assert_not_found(
            store
                .get_request(target.version_id, new.id)
                .await
                .unwrap_err(),
            "Request not found",
        );
    }
    assert_eq!(count(&store).await, 0);
}

#[test]
fn retention_follows_the_version_settings() {
    let mut version = settings("v");
    version.request_retention_mode = RetentionMode::Metadata;
    version.request_retention_time = 120;
    assert_eq!(
        Retention::of(&version),
        Retention {
            mode: RetentionMode::Metadata,
            seconds: 120
        }
    );
}

#[tokio::test]
async fn data_comes_back_as_sent_even_with_nul_characters() {
    let (store, target) = setup().await;
    let new = NewRequest {
        request_data: Some(json!("plain text with \u{0} inside")),
        result: Some(json!(["a\u{0}", {"nested": [1, 2.5, null, true]}])),
        ..request(target, 0)
    };
    record(&store, &new).await;
    let stored = store.get_request(target.version_id, new.id).await.unwrap();
    assert_eq!(stored.request_data, new.request_data);
    assert_eq!(stored.result, new.result);
}

#[tokio::test]
async fn error_messages_are_capped_and_cleaned() {
    let (store, target) = setup().await;
    let new = NewRequest {
        error_message: Some(format!("bad\0{}", "x".repeat(5000))),
        ..failed(target, 0)
    };
    record(&store, &new).await;
    let message = store
        .get_request(target.version_id, new.id)
        .await
        .unwrap()
        .error_message
        .unwrap();
    assert_eq!(message.chars().count(), 1024);
    assert!(message.starts_with("bad\u{FFFD}xxx"));
    assert!(message.ends_with('…'));
}

#[tokio::test]
async fn requests_are_read_within_their_version() {
    let (store, v1) = setup().await;
    let v2 = version(&store, "p", "d", "v2").await;
    let id = record(&store, &request(v1, 0)).await;
    assert_not_found(
        store.get_request(v2.version_id, id).await.unwrap_err(),
        "Request not found",
    );
    assert_not_found(
        store
            .get_request(v1.version_id, Uuid::new_v4())
            .await
            .unwrap_err(),
        "Request not found",
    );
    assert_not_found(
        store.delete_request(v2.version_id, id).await.unwrap_err(),
        "Request not found",
    );
    assert!(store.get_request(v1.version_id, id).await.is_ok());
}

#[tokio::test]
async fn names_are_the_current_ones() {
    let (store, target) = setup().await;
    let id = record(&store, &request(target, 0)).await;
    let deployment = DeploymentRef {
        project_id: target.project_id,
        id: target.deployment_id,
        name: "d",
    };
    store
        .update_version(
            deployment,
            "v1",
            |mut settings| {
                settings.name = "renamed".to_owned();
                Ok(settings)
            },
            &actor(),
        )
        .await
        .unwrap();
    let stored = store.get_request(target.version_id, id).await.unwrap();
    assert_eq!(stored.version, "renamed");
    let summaries = store
        .list_requests(
            RequestScope::Version(target.version_id),
            &RequestFilter::default(),
        )
        .await
        .unwrap();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].deployment, "d");
    assert_eq!(summaries[0].version, "renamed");
}

#[tokio::test]
async fn several_are_read_all_or_none() {
    let (store, target) = setup().await;
    let a = record(&store, &request(target, 0)).await;
    let b = record(&store, &request(target, 1)).await;
    let mut found: Vec<Uuid> = store
        .get_requests(target.version_id, &[b, a])
        .await
        .unwrap()
        .into_iter()
        .map(|request| request.id)
        .collect();
    found.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(found, expected);
    let missing = Uuid::new_v4();
    assert_not_found(
        store
            .get_requests(target.version_id, &[a, missing])
            .await
            .unwrap_err(),
        &format!("Request {missing} not found"),
    );
    assert!(store
        .get_requests(target.version_id, &[])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn lists_are_newest_first_by_default_and_page() {
    let (store, target) = setup().await;
    let mut ids = Vec::new();
    for second in 0..5 {
        ids.push(record(&store, &request(target, second)).await);
    }
    let scope = RequestScope::Version(target.version_id);
    let newest_first: Vec<Uuid> = ids.iter().rev().copied().collect();
    assert_eq!(listed(&store, scope, &[]).await, newest_first);
    assert_eq!(
        listed(&store, scope, &[("sort", "desc")]).await,
        newest_first
    );
    assert_eq!(listed(&store, scope, &[("sort", "asc")]).await, ids);
    assert_eq!(
        listed(&store, scope, &[("limit", "2")]).await,
        newest_first[..2]
    );
    assert_eq!(
        listed(&store, scope, &[("limit", "2"), ("offset", "2")]).await,
        newest_first[2..4]
    );
    assert_eq!(
        listed(&store, scope, &[("sort", "asc"), ("offset", "3")]).await,
        ids[3..]
    );
    assert!(listed(&store, scope, &[("offset", "5")]).await.is_empty());
    let summaries = store
        .list_requests(scope, &RequestFilter::default())
        .await
        .unwrap();
    let newest = &summaries[0];
    assert_eq!(newest.status, RequestStatus::Completed);
    assert_eq!(newest.success, Some(true));
    assert_eq!(newest.time_created, at(4));
    assert_eq!(newest.time_started, Some(at(4)));
    assert_eq!(
        newest.time_completed,
        Some(at(4) + Duration::milliseconds(250))
    );
    assert_eq!(newest.input_size, Some(14));
}

#[tokio::test]
async fn requests_created_at_the_same_time_page_without_overlap() {
    let (store, target) = setup().await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(record(&store, &request(target, 0)).await);
    }
    ids.sort();
    let scope = RequestScope::Version(target.version_id);
    for (sort, expected) in [
        ("asc", ids.clone()),
        ("desc", ids.iter().rev().copied().collect()),
    ] {
        let mut paged = Vec::new();
        for offset in ["0", "2", "4"] {
            paged.extend(
                listed(
                    &store,
                    scope,
                    &[("sort", sort), ("limit", "2"), ("offset", offset)],
                )
                .await,
            );
        }
        assert_eq!(paged, expected, "{sort}");
    }
}

#[tokio::test]
async fn lists_filter_by_status_and_success() {
    let (store, target) = setup().await;
    let completed = record(&store, &request(target, 0)).await;
    let failed_one = record(&store, &failed(target, 1)).await;
    let pending = record(
        &store,
        &NewRequest {
            batch: true,
            status: RequestStatus::Pending,
            success: None,
            time_started: None,
            time_completed: None,
            result: None,
            ..request(target, 2)
        },
    )
    .await;
    let scope = RequestScope::Version(target.version_id);
    assert_eq!(
        listed(&store, scope, &[("status", "completed")]).await,
        vec![completed]
    );
    assert_eq!(
        listed(&store, scope, &[("status", "failed")]).await,
        vec![failed_one]
    );
    assert_eq!(
        listed(&store, scope, &[("status", "pending")]).await,
        vec![pending]
    );
    assert!(listed(&store, scope, &[("status", "cancelled")])
        .await
        .is_empty());
    assert_eq!(
        listed(&store, scope, &[("status", "completed,pending")]).await,
        vec![pending, completed]
    );
    assert_eq!(
        listed(&store, scope, &[("success", "true")]).await,
        vec![completed]
    );
    assert_eq!(
        listed(&store, scope, &[("success", "False")]).await,
        vec![failed_one]
    );
    assert!(
        listed(&store, scope, &[("success", "true"), ("status", "failed")])
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn lists_filter_by_creation_date() {
    let (store, target) = setup().await;
    let day = |d: u32| Utc.with_ymd_and_hms(2024, 1, d, 12, 0, 0).unwrap();
    let mut ids = Vec::new();
    for d in [30, 31] {
        let mut new = request(target, 0);
        new.time_created = day(d);
        ids.push(record(&store, &new).await);
    }
    let mut first_of_february = request(target, 0);
    first_of_february.time_created = Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).unwrap();
    ids.push(record(&store, &first_of_february).await);
    let scope = RequestScope::Version(target.version_id);
    let asc = ("sort", "asc");
    assert_eq!(
        listed(&store, scope, &[asc, ("start_date", "2024-01-31")]).await,
        ids[1..]
    );
    // A date alone as the end is that whole day, and not the next.
    assert_eq!(
        listed(&store, scope, &[asc, ("end_date", "2024-01-31")]).await,
        ids[..2]
    );
    assert_eq!(
        listed(
            &store,
            scope,
            &[
                asc,
                ("start_date", "2024-01-31"),
                ("end_date", "2024-01-31")
            ]
        )
        .await,
        ids[1..2]
    );
    // Both ends of a date and time are inclusive.
    assert_eq!(
        listed(
            &store,
            scope,
            &[
                asc,
                ("start_date", "2024-01-30T12:00:00Z"),
                ("end_date", "2024-01-31T12:00:00Z")
            ]
        )
        .await,
        ids[..2]
    );
    assert_eq!(
        listed(
            &store,
            scope,
            &[asc, ("start_date", "2024-01-31T12:00:00.000001Z")]
        )
        .await,
        ids[2..]
    );
}

#[tokio::test]
async fn lists_search_in_ids() {
    let (store, target) = setup().await;
    let mut a = request(target, 0);
    a.id = Uuid::parse_str("aaaaaaaa-0000-4000-8000-000000000001").unwrap();
    let mut b = request(target, 1);
    b.id = Uuid::parse_str("bbbbbbbb-0000-4000-8000-000000000002").unwrap();
    record(&store, &a).await;
    record(&store, &b).await;
    let scope = RequestScope::Version(target.version_id);
    assert_eq!(
        listed(&store, scope, &[("search_id", "aaaa")]).await,
        vec![a.id]
    );
    assert_eq!(
        listed(&store, scope, &[("search_id", "BBBB-")]).await,
        vec![b.id]
    );
    assert_eq!(
        listed(&store, scope, &[("search_id", "-0000-4000-")]).await,
        vec![b.id, a.id]
    );
    assert!(listed(&store, scope, &[("search_id", "cccc")])
        .await
        .is_empty());
    assert!(listed(&store, scope, &[("search_id", "%")])
        .await
        .is_empty());
}

#[tokio::test]
async fn pipelines_and_schedules_list_nothing() {
    let (store, target) = setup().await;
    let id = record(&store, &request(target, 0)).await;
    let scope = RequestScope::Project(target.project_id);
    assert_eq!(
        listed(&store, scope, &[("pipeline", "false")]).await,
        vec![id]
    );
    assert_eq!(
        listed(&store, scope, &[("object_type", "deployment")]).await,
        vec![id]
    );
    for params in [
        [("pipeline", "True")],
        [("request_schedule", "nightly")],
        [("object_type", "pipeline")],
    ] {
        assert!(
            listed(&store, scope, &params).await.is_empty(),
            "{params:?}"
        );
    }
}

#[tokio::test]
async fn a_project_lists_the_requests_of_all_its_versions() {
    let (store, v1) = setup().await;
    let v2 = version(&store, "p", "d", "v2").await;
    deployment(&store, "p", "other").await;
    let other = version(&store, "p", "other", "v1").await;
    project(&store, "elsewhere").await;
    deployment(&store, "elsewhere", "d").await;
    let elsewhere = version(&store, "elsewhere", "d", "v1").await;
    let a = record(&store, &request(v1, 0)).await;
    let b = record(&store, &request(v2, 1)).await;
    let c = record(&store, &request(other, 2)).await;
    record(&store, &request(elsewhere, 3)).await;
    assert_eq!(
        listed(&store, RequestScope::Project(v1.project_id), &[]).await,
        vec![c, b, a]
    );
    assert_eq!(
        listed(&store, RequestScope::Version(v2.version_id), &[]).await,
        vec![b]
    );
    let summaries = store
        .list_requests(
            RequestScope::Project(v1.project_id),
            &RequestFilter {
                sort: SortOrder::Ascending,
                ..RequestFilter::default()
            },
        )
        .await
        .unwrap();
    let names: Vec<(&str, &str)> = summaries
        .iter()
        .map(|s| (s.deployment.as_str(), s.version.as_str()))
        .collect();
    assert_eq!(names, [("d", "v1"), ("d", "v2"), ("other", "v1")]);
}

#[tokio::test]
async fn delete_removes_one_request() {
    let (store, target) = setup().await;
    let a = record(&store, &request(target, 0)).await;
    let b = record(&store, &request(target, 1)).await;
    store.delete_request(target.version_id, a).await.unwrap();
    assert_not_found(
        store.get_request(target.version_id, a).await.unwrap_err(),
        "Request not found",
    );
    assert_not_found(
        store
            .delete_request(target.version_id, a)
            .await
            .unwrap_err(),
        "Request not found",
    );
    assert_eq!(
        listed(&store, RequestScope::Version(target.version_id), &[]).await,
        vec![b]
    );
}

#[tokio::test]
async fn deleting_several_is_all_or_nothing() {
    let (store, target) = setup().await;
    let a = record(&store, &request(target, 0)).await;
    let b = record(&store, &request(target, 1)).await;
    let c = record(&store, &request(target, 2)).await;
    let missing = Uuid::new_v4();
    assert_not_found(
        store
            .delete_requests(target.version_id, &[a, missing, b])
            .await
            .unwrap_err(),
        &format!("Request {missing} not found"),
    );
    assert_eq!(count(&store).await, 3);
    store
        .delete_requests(target.version_id, &[a, b])
        .await
        .unwrap();
    assert_eq!(
        listed(&store, RequestScope::Version(target.version_id), &[]).await,
        vec![c]
    );
}

#[tokio::test]
async fn the_sweep_deletes_finished_requests_past_their_retention() {
    let (store, target) = setup().await;
    let retention = |seconds| Retention {
        mode: RetentionMode::Full,
        seconds,
    };
    // Expire at 10 s, 20 s and 30 s; one expires at 100 s.
    let early = record(
        &store,
        &NewRequest {
            retention: retention(10),
            ..request(target, 0)
        },
    )
    .await;
    let failed_early = record(
        &store,
        &NewRequest {
            retention: retention(20),
            ..failed(target, 0)
        },
    )
    .await;
    let cancelled = record(
        &store,
        &NewRequest {
            batch: true,
            status: RequestStatus::Cancelled,
            success: None,
            retention: retention(30),
            ..request(target, 0)
        },
    )
    .await;
    let late = record(
        &store,
        &NewRequest {
            retention: retention(100),
            ..request(target, 0)
        },
    )
    .await;
    // Queued or held by a worker: never swept, however old.
    let mut unfinished = Vec::new();
    for status in [
        RequestStatus::Pending,
        RequestStatus::Processing,
        RequestStatus::CancelledPending,
    ] {
        unfinished.push(
            record(
                &store,
                &NewRequest {
                    batch: true,
                    status,
                    success: None,
                    time_completed: None,
                    retention: retention(1),
                    ..request(target, 0)
                },
            )
            .await,
        );
    }
    assert_eq!(store.delete_expired_requests(at(9), 100).await.unwrap(), 0);
    // Expiry is inclusive, and the limit takes the oldest expiry first.
    assert_eq!(store.delete_expired_requests(at(50), 2).await.unwrap(), 2);
    let scope = RequestScope::Version(target.version_id);
    let left = listed(&store, scope, &[]).await;
    assert!(!left.contains(&early) && !left.contains(&failed_early));
    assert!(left.contains(&cancelled));
    assert_eq!(store.delete_expired_requests(at(50), 100).await.unwrap(), 1);
    assert_eq!(
        store
            .delete_expired_requests(at(1_000_000), 100)
            .await
            .unwrap(),
        1
    );
    let mut left = listed(&store, scope, &[]).await;
    left.sort();
    unfinished.sort();
    assert_eq!(left, unfinished);
    assert!(!left.contains(&late));
}

#[tokio::test]
async fn deleting_a_version_or_deployment_deletes_its_requests() {
    let (store, v1) = setup().await;
    let v2 = version(&store, "p", "d", "v2").await;
    deployment(&store, "p", "other").await;
    let other = version(&store, "p", "other", "v1").await;
    record(&store, &request(v1, 0)).await;
    let kept = record(&store, &request(v2, 1)).await;
    let other_request = record(&store, &request(other, 2)).await;
    delete_version(&store, v1, "v1").await;
    assert_eq!(
        listed(&store, RequestScope::Project(v1.project_id), &[]).await,
        vec![other_request, kept]
    );
    store
        .delete_deployment("p", "other", &actor())
        .await
        .unwrap();
    assert_eq!(
        listed(&store, RequestScope::Project(v1.project_id), &[]).await,
        vec![kept]
    );
    store.delete_project("p").await.unwrap();
    assert_eq!(count(&store).await, 0);
}

#[tokio::test]
async fn a_request_of_a_version_deleted_meanwhile_is_not_recorded() {
    let (store, target) = setup().await;
    delete_version(&store, target, "v1").await;
    store
        .record_request(request(target, 0))
        .await
        .expect("recording for a deleted version is not an error");
    assert_eq!(count(&store).await, 0);
}

#[tokio::test]
async fn requests_recorded_together_are_kept_when_one_version_is_gone() {
    let (store, live) = setup().await;
    let gone = version(&store, "p", "d", "v2").await;
    delete_version(&store, gone, "v2").await;
    // Recorded at once, they share statements, which the deleted
    // version's rows would fail for all.
    let requests: Vec<NewRequest> = (0..40)
        .map(|i| request(if i % 2 == 0 { live } else { gone }, i))
        .collect();
    let recorded =
        futures::future::join_all(requests.into_iter().map(|new| store.record_request(new))).await;
    assert!(recorded.iter().all(Result::is_ok), "{recorded:?}");
    assert_eq!(count(&store).await, 20);
}

#[tokio::test]
async fn a_recorded_request_is_read_back_at_once_through_the_same_store() {
    let (store, target) = setup().await;
    // Each read right after its record: the read waits for the record's
    // write rather than for the writer's linger.
    for i in 0..20 {
        let new = request(target, i);
        store.record_request(new.clone()).await.unwrap();
        let stored = store.get_request(target.version_id, new.id).await.unwrap();
        assert_eq!(stored.id, new.id);
    }
    let listed = listed(&store, RequestScope::Version(target.version_id), &[]).await;
    assert_eq!(listed.len(), 20);
}

#[tokio::test]
async fn records_still_queued_when_the_store_closes_are_written() {
    let (test, target) = setup().await;
    let requests: Vec<NewRequest> = (0..300).map(|i| request(target, i)).collect();
    let recorded =
        futures::future::join_all(requests.iter().map(|new| test.record_request(new.clone())))
            .await;
    assert!(recorded.iter().all(Result::is_ok), "{recorded:?}");
    test.store.close().await;
    let reopened = test.reopen().await;
    assert_eq!(count(&reopened).await, 300);
    let ids: Vec<Uuid> = requests.iter().map(|new| new.id).collect();
    let stored = reopened
        .get_requests(target.version_id, &ids)
        .await
        .unwrap();
    assert_eq!(stored.len(), 300);
}

#[tokio::test]
async fn a_record_the_database_refuses_is_written_once_it_accepts_again() {
    let (store, target) = setup().await;
    let refuse = "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                      $$ BEGIN RAISE EXCEPTION 'not now'; END $$;
                  CREATE TRIGGER refuse BEFORE INSERT ON deployment_requests
                      EXECUTE FUNCTION refuse()";
    sqlx::raw_sql(refuse).execute(store.pool()).await.unwrap();
    let new = request(target, 0);
    store.record_request(new.clone()).await.unwrap();
    // The read does not hang on a write that fails: it reads what is there.
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.get_request(target.version_id, new.id),
    )
    .await
    .expect("a read while records cannot be written still answers");
    assert!(
        matches!(refused, Err(StorageError::NotFound(_))),
        "{refused:?}"
    );
    sqlx::raw_sql("DROP TRIGGER refuse ON deployment_requests")
        .execute(store.pool())
        .await
        .unwrap();
    // The writer retries with growing waits: the record arrives within them.
    let began = std::time::Instant::now();
    loop {
        match store.get_request(target.version_id, new.id).await {
            Ok(stored) => break assert_eq!(stored.id, new.id),
            Err(StorageError::NotFound(_)) if began.elapsed().as_secs() < 20 => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(error) => panic!("the refused record never arrived: {error:?}"),
        }
    }
    assert_eq!(count(&store).await, 1);
}

/// Deletes version `name` of deployment `d`.
async fn delete_version(store: &Store, target: Target, name: &str) {
    let deployment = DeploymentRef {
        project_id: target.project_id,
        id: target.deployment_id,
        name: "d",
    };
    store
        .delete_version(deployment, name, &actor())
        .await
        .unwrap();
}

async fn count(store: &Store) -> i64 {
    store.requests_written().await;
    sqlx::query_scalar("SELECT count(*) FROM deployment_requests")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn expires_at(store: &Store, id: Uuid) -> Option<DateTime<Utc>> {
    store.requests_written().await;
    sqlx::query_scalar("SELECT expires_at FROM deployment_requests WHERE id = $1")
        .bind(id)
        .fetch_optional(store.pool())
        .await
        .unwrap()
}
