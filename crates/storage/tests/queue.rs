//! The batch queue against a real PostgreSQL: all-or-nothing queueing and
//! its limit, claims in order and without overlap, finishing once by the
//! claim that holds a request, cancels, and the recovery of requests whose
//! worker is gone.

mod database;
mod fixtures;

use std::collections::HashSet;

use serde_json::{json, Value};
use ubiops_domain::requests::RequestStatus;
use ubiops_domain::version::RetentionMode;
use ubiops_storage::{Hold, NewBatch, Outcome, StorageError, Store};
use uuid::Uuid;

use database::TestStore;
use fixtures::{deployment, project, settings, version_with, Target};

/// Project `p`, deployment `d`, version `v1` with these changes to its
/// settings.
async fn queue_setup(
    change: impl FnOnce(&mut ubiops_domain::version::VersionSettings),
) -> (TestStore, Target) {
    let store = database::fresh_store().await;
    project(&store, "p").await;
    deployment(&store, "p", "d").await;
    let mut version = settings("v1");
    change(&mut version);
    let target = version_with(&store, "p", "d", &version).await;
    (store, target)
}

fn batch(target: Target, inputs: Vec<Value>, queue_limit: i64) -> NewBatch {
    NewBatch {
        project_id: target.project_id,
        deployment_id: target.deployment_id,
        version_id: target.version_id,
        version_name: "v1".to_owned(),
        inputs,
        created_by: "tester@example.com".to_owned(),
        origin: json!({"deployment": "d", "deployment_version": "v1"}),
        timeout_seconds: 14_400,
        notification_group: None,
        queue_limit,
    }
}

async fn status(store: &Store, target: Target, id: Uuid) -> RequestStatus {
    store
        .get_request(target.version_id, id)
        .await
        .unwrap()
        .status
}

/// Makes every lease and every pending timeout run out, as time would.
async fn expire_everything(store: &Store) {
    sqlx::query(
        "UPDATE deployment_requests SET lease_expires_at = now() - interval '1 second'
         WHERE lease_expires_at IS NOT NULL",
    )
    .execute(store.pool())
    .await
    .unwrap();
}

const LEASE: f64 = 30.0;

/// Queues the input `"in"` and claims it for a new worker.
async fn queue_one_and_claim(
    store: &Store,
    target: Target,
) -> (Vec<ubiops_storage::Queued>, ubiops_storage::Claimed) {
    let queued = store
        .enqueue_batch(&batch(target, vec![json!("in")], 100))
        .await
        .unwrap();
    let claimed = store
        .claim_request(target.version_id, Uuid::new_v4(), LEASE)
        .await
        .unwrap()
        .unwrap();
    (queued, claimed)
}

#[tokio::test]
async fn a_batch_is_queued_pending_in_order_and_claimed_oldest_first() {
    let (store, target) = queue_setup(|_| {}).await;
    let inputs: Vec<Value> = (0..5).map(|i| json!(format!("input {i}"))).collect();
    let queued = store
        .enqueue_batch(&batch(target, inputs.clone(), 100))
        .await
        .unwrap();
    assert_eq!(queued.len(), 5);
    for queued in &queued {
        assert_eq!(
            status(&store, target, queued.id).await,
            RequestStatus::Pending
        );
    }
    let worker = Uuid::new_v4();
    for (i, expected) in queued.iter().enumerate() {
        let claimed = store
            .claim_request(target.version_id, worker, LEASE)
            .await
            .unwrap()
            .expect("a pending request");
        assert_eq!(claimed.id, expected.id);
        assert_eq!(claimed.data, inputs[i]);
        assert_eq!(
            status(&store, target, claimed.id).await,
            RequestStatus::Processing
        );
    }
    assert!(store
        .claim_request(target.version_id, worker, LEASE)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_batch_beyond_the_queue_limit_queues_nothing() {
    let (store, target) = queue_setup(|_| {}).await;
    store
        .enqueue_batch(&batch(target, vec![json!("a"), json!("b")], 3))
        .await
        .unwrap();
    let refused = store
        .enqueue_batch(&batch(target, vec![json!("c"), json!("d")], 3))
        .await
        .unwrap_err();
    match refused {
        StorageError::Rejected(message) => {
            assert!(message.contains("maximum_queue_size_batch"), "{message}");
            assert!(message.contains("at most 1 more"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(count(&store).await, 2, "nothing of the refused batch stays");
    store
        .enqueue_batch(&batch(target, vec![json!("c")], 3))
        .await
        .expect("one more fits");
}

#[tokio::test]
async fn concurrent_batches_never_exceed_the_limit_together() {
    let (store, target) = queue_setup(|_| {}).await;
    let batches: Vec<NewBatch> = (0..10)
        .map(|_| batch(target, vec![json!("x"); 3], 10))
        .collect();
    let attempts =
        futures::future::join_all(batches.iter().map(|batch| store.enqueue_batch(batch))).await;
    let accepted = attempts.iter().filter(|attempt| attempt.is_ok()).count();
    assert_eq!(accepted, 3, "three batches of three fit in ten");
    assert_eq!(count(&store).await, 9);
}

#[tokio::test]
async fn concurrent_claims_take_each_request_once() {
    let (store, target) = queue_setup(|_| {}).await;
    store
        .enqueue_batch(&batch(target, vec![json!("x"); 40], 100))
        .await
        .unwrap();
    let claims = futures::future::join_all((0..8).map(|_| async {
        let worker = Uuid::new_v4();
        let mut mine = Vec::new();
        while let Some(claimed) = store
            .claim_request(target.version_id, worker, LEASE)
            .await
            .unwrap()
        {
            mine.push(claimed.id);
        }
        mine
    }))
    .await;
    let all: Vec<Uuid> = claims.into_iter().flatten().collect();
    let distinct: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!(all.len(), 40);
    assert_eq!(distinct.len(), 40, "no request claimed twice");
}

#[tokio::test]
async fn the_claim_that_holds_a_request_finishes_it_once() {
    let (store, target) = queue_setup(|_| {}).await;
    let (queued, claimed) = queue_one_and_claim(&store, target).await;
    assert!(store
        .finish_request(&claimed, &Outcome::Completed(json!("out")))
        .await
        .unwrap());
    assert!(
        !store
            .finish_request(&claimed, &Outcome::Failed("again".to_owned()))
            .await
            .unwrap(),
        "a second finish is not recorded"
    );
    let stored = store
        .get_request(target.version_id, queued[0].id)
        .await
        .unwrap();
    assert_eq!(stored.status, RequestStatus::Completed);
    assert_eq!(stored.success, Some(true));
    assert_eq!(stored.result, Some(json!("out")));
    assert_eq!(stored.request_data, Some(json!("in")));
    assert!(stored.time_started.is_some() && stored.time_completed.is_some());
}

#[tokio::test]
async fn a_result_that_arrives_after_the_lease_was_lost_is_not_recorded() {
    let (store, target) = queue_setup(|version| version.restart_request_interruption = true).await;
    store
        .enqueue_batch(&batch(target, vec![json!("in")], 100))
        .await
        .unwrap();
    let first = store
        .claim_request(target.version_id, Uuid::new_v4(), LEASE)
        .await
        .unwrap()
        .unwrap();
    expire_everything(&store).await;
    let recovered = store.recover_requests(100, 3, 0.0).await.unwrap();
    assert_eq!(recovered.requeued, 1);
    assert_eq!(
        store
            .renew_claims(std::slice::from_ref(&first.claim), LEASE)
            .await
            .unwrap(),
        vec![Hold::Lost]
    );
    let second = store
        .claim_request(target.version_id, Uuid::new_v4(), LEASE)
        .await
        .unwrap()
        .expect("back in the queue");
    assert_eq!(second.id, first.id);
    assert_eq!(second.retries, 1);
    assert!(!store
        .finish_request(&first, &Outcome::Completed(json!("late")))
        .await
        .unwrap());
    assert!(store
        .finish_request(&second, &Outcome::Completed(json!("on time")))
        .await
        .unwrap());
    let stored = store
        .get_request(target.version_id, first.id)
        .await
        .unwrap();
    assert_eq!(stored.result, Some(json!("on time")));
    assert_eq!(stored.retries, 1);
}

#[tokio::test]
async fn an_interrupted_request_fails_without_restarts_and_after_the_last_retry() {
    for (restart, max_retries) in [(false, 3), (true, 1)] {
        let (store, target) =
            queue_setup(|version| version.restart_request_interruption = restart).await;
        let queued = store
            .enqueue_batch(&batch(target, vec![json!("in")], 100))
            .await
            .unwrap();
        for _ in 0..=max_retries {
            if store
                .claim_request(target.version_id, Uuid::new_v4(), LEASE)
                .await
                .unwrap()
                .is_none()
            {
                break;
            }
            expire_everything(&store).await;
            store.recover_requests(100, max_retries, 0.0).await.unwrap();
        }
        let stored = store
            .get_request(target.version_id, queued[0].id)
            .await
            .unwrap();
        assert_eq!(stored.status, RequestStatus::Failed, "restart {restart}");
        assert_eq!(stored.success, Some(false));
        let message = stored.error_message.unwrap();
        assert!(message.contains("interrupted"), "{message}");
        if !restart {
            assert!(
                message.contains("restart_request_interruption"),
                "{message}"
            );
        }
    }
}

#[tokio::test]
async fn pending_requests_past_their_timeout_fail_and_are_not_claimed() {
    let (store, target) = queue_setup(|_| {}).await;
    let queued = store
        .enqueue_batch(&NewBatch {
            timeout_seconds: 1,
            ..batch(target, vec![json!("in")], 100)
        })
        .await
        .unwrap();
    sqlx::query("UPDATE deployment_requests SET time_created = now() - interval '2 seconds'")
        .execute(store.pool())
        .await
        .unwrap();
    assert!(store
        .claim_request(target.version_id, Uuid::new_v4(), LEASE)
        .await
        .unwrap()
        .is_none());
    let recovered = store.recover_requests(100, 3, 0.0).await.unwrap();
    assert_eq!(recovered.failed, 1);
    let stored = store
        .get_request(target.version_id, queued[0].id)
        .await
        .unwrap();
    assert_eq!(stored.status, RequestStatus::Failed);
    assert!(stored
        .error_message
        .unwrap()
        .contains("did not start within its timeout of 1 s"));
}

#[tokio::test]
async fn cancel_ends_a_pending_request_and_marks_a_processing_one() {
    let (store, target) = queue_setup(|_| {}).await;
    let queued = store
        .enqueue_batch(&batch(target, vec![json!("a"), json!("b")], 100))
        .await
        .unwrap();
    let claimed = store
        .claim_request(target.version_id, Uuid::new_v4(), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, queued[0].id);
    assert_eq!(
        store
            .cancel_request(target.version_id, queued[1].id)
            .await
            .unwrap()
            .status,
        RequestStatus::Cancelled
    );
    assert_eq!(
        store
            .cancel_request(target.version_id, queued[0].id)
            .await
            .unwrap()
            .status,
        RequestStatus::CancelledPending
    );
    assert_eq!(
        store
            .renew_claims(std::slice::from_ref(&claimed.claim), LEASE)
            .await
            .unwrap(),
        vec![Hold::Cancelled]
    );
    assert!(store
        .finish_request(&claimed, &Outcome::Completed(json!("kept?")))
        .await
        .unwrap());
    let stored = store
        .get_request(target.version_id, queued[0].id)
        .await
        .unwrap();
    assert_eq!(stored.status, RequestStatus::Cancelled);
    assert_eq!(stored.result, None, "a cancelled request keeps no result");
    match store.cancel_request(target.version_id, queued[0].id).await {
        Err(StorageError::Rejected(message)) => {
            assert!(message.contains("already finished"), "{message}")
        }
        other => panic!("a finished request cannot be cancelled: {other:?}"),
    }
    assert!(matches!(
        store
            .cancel_request(target.version_id, Uuid::new_v4())
            .await,
        Err(StorageError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_cancelled_request_whose_worker_is_gone_ends_cancelled() {
    let (store, target) = queue_setup(|version| version.restart_request_interruption = true).await;
    let queued = store
        .enqueue_batch(&batch(target, vec![json!("a")], 100))
        .await
        .unwrap();
    store
        .claim_request(target.version_id, Uuid::new_v4(), LEASE)
        .await
        .unwrap()
        .unwrap();
    store
        .cancel_request(target.version_id, queued[0].id)
        .await
        .unwrap();
    expire_everything(&store).await;
    let recovered = store.recover_requests(100, 3, 0.0).await.unwrap();
    assert_eq!(recovered.cancelled, 1);
    assert_eq!(
        status(&store, target, queued[0].id).await,
        RequestStatus::Cancelled
    );
}

#[tokio::test]
async fn finishing_applies_the_versions_retention() {
    for (mode, keeps_data, row_expires_at_once) in [
        (RetentionMode::Full, true, false),
        (RetentionMode::Metadata, false, false),
        (RetentionMode::None, false, true),
    ] {
        let (store, target) = queue_setup(|version| version.request_retention_mode = mode).await;
        let (queued, claimed) = queue_one_and_claim(&store, target).await;
        assert_eq!(claimed.data, json!("in"), "the data is kept until it ran");
        store
            .finish_request(&claimed, &Outcome::Completed(json!("out")))
            .await
            .unwrap();
        let stored = store
            .get_request(target.version_id, queued[0].id)
            .await
            .unwrap();
        assert_eq!(stored.status, RequestStatus::Completed, "{mode:?}");
        assert_eq!(stored.request_data.is_some(), keeps_data, "{mode:?}");
        assert_eq!(stored.result.is_some(), keeps_data, "{mode:?}");
        let swept = store
            .delete_expired_requests(chrono::Utc::now(), 100)
            .await
            .unwrap();
        assert_eq!(swept == 1, row_expires_at_once, "{mode:?}");
    }
}

#[tokio::test]
async fn unfinished_requests_never_expire() {
    let (store, target) = queue_setup(|version| {
        version.request_retention_mode = RetentionMode::None;
    })
    .await;
    store
        .enqueue_batch(&batch(target, vec![json!("a"), json!("b")], 100))
        .await
        .unwrap();
    store
        .claim_request(target.version_id, Uuid::new_v4(), LEASE)
        .await
        .unwrap()
        .unwrap();
    let far_future = chrono::Utc::now() + chrono::Duration::days(365);
    assert_eq!(
        store
            .delete_expired_requests(far_future, 100)
            .await
            .unwrap(),
        0
    );
    assert_eq!(count(&store).await, 2);
}

async fn count(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM deployment_requests")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_request_whose_instance_crashed_runs_again_or_fails_by_its_claim_only() {
    for restart in [true, false] {
        let (store, target) =
            queue_setup(|version| version.restart_request_interruption = restart).await;
        let (queued, claimed) = queue_one_and_claim(&store, target).await;
        let stranger = ubiops_storage::Claimed {
            claim: format!("{}/{}", Uuid::new_v4(), Uuid::new_v4()),
            ..claimed.clone()
        };
        assert!(!store
            .interrupt_request(&stranger, "its instance crashed (signal 9)", 3, 0.0)
            .await
            .unwrap());
        assert!(store
            .interrupt_request(&claimed, "its instance crashed (signal 9)", 3, 0.0)
            .await
            .unwrap());
        let stored = store
            .get_request(target.version_id, queued[0].id)
            .await
            .unwrap();
        if restart {
            assert_eq!(stored.status, RequestStatus::Pending);
            assert_eq!(stored.retries, 1);
            // The old claim cannot finish what is queued again.
            assert!(!store
                .finish_request(&claimed, &Outcome::Completed(json!("late")))
                .await
                .unwrap());
        } else {
            assert_eq!(stored.status, RequestStatus::Failed);
            let message = stored.error_message.unwrap();
            assert!(message.contains("signal 9"), "{message}");
            assert!(message.contains("interrupted"), "{message}");
        }
    }
}
