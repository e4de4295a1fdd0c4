//! The pool's rules, with instances that only count and sleep: how many
//! start, which request waits or is refused, what stops when. Real
//! instances are tested in `tests/instance.rs` and end to end.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::*;
use crate::runtime::{Blueprint, Running, Runtime};
use crate::{Call, CallOutcome, InstanceSpec};

#[derive(Default)]
struct Counts {
    started: AtomicUsize,
    stopped: AtomicUsize,
    fail_starts: AtomicBool,
}

struct Fake(Arc<Counts>);

/// Sleeps the milliseconds its input names; `"crash"` crashes it.
struct FakeInstance(Arc<Counts>);

impl Runtime for Fake {
    fn start(&self, _: Arc<Blueprint>) -> BoxFuture<'static, Result<Box<dyn Running>, String>> {
        let counts = self.0.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if counts.fail_starts.load(Ordering::SeqCst) {
                return Err("RuntimeError: no model".to_owned());
            }
            counts.started.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(FakeInstance(counts)) as Box<dyn Running>)
        }
        .boxed()
    }
}

impl Running for FakeInstance {
    fn is_alive(&mut self) -> bool {
        true
    }

    fn call(&mut self, call: Call, timeout: Duration) -> BoxFuture<'_, CallOutcome> {
        async move {
            if call.data == "crash" {
                return CallOutcome::Crashed("killed by signal 9".to_owned());
            }
            let sleep = Duration::from_millis(call.data.as_u64().unwrap_or(0));
            if sleep > timeout {
                tokio::time::sleep(timeout).await;
                return CallOutcome::TimedOut;
            }
            tokio::time::sleep(sleep).await;
            CallOutcome::Returned(call.data)
        }
        .boxed()
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.0.stopped.fetch_add(1, Ordering::SeqCst);
        async {}.boxed()
    }
}

fn pools() -> (Arc<Pools>, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    (Arc::new(Pools::new(Arc::new(Fake(counts.clone())))), counts)
}

fn scaling(minimum: usize, maximum: usize, queue_limit: usize) -> Scaling {
    Scaling {
        minimum,
        maximum,
        idle_time: Duration::from_secs(300),
        queue_limit,
    }
}

fn blueprint() -> BoxFuture<'static, Result<Blueprint, String>> {
    async {
        Ok(Blueprint {
            spec: InstanceSpec {
                interpreter: "python".into(),
                package_dir: "package".into(),
                env: Vec::new(),
                context: Value::Null,
                memory_bytes: 1 << 30,
                start_timeout: Duration::from_secs(1),
            },
            logs: Arc::new(|_| {}),
            events: Arc::new(|_, _| {}),
            hold: Box::new(()),
        })
    }
    .boxed()
}

const VERSION: Uuid = Uuid::from_u128(1);

async fn call(
    pools: &Pools,
    fingerprint: u64,
    scaling: Scaling,
    data: Value,
    timeout_ms: u64,
) -> Result<CallOutcome, Refused> {
    let call = Call {
        request_id: Uuid::new_v4(),
        data,
        many: false,
        context: Value::Null,
    };
    pools
        .call(
            VERSION,
            Fingerprint(fingerprint),
            scaling,
            blueprint,
            call,
            Duration::from_millis(timeout_ms),
        )
        .await
}

fn spawn_call(
    pools: &Arc<Pools>,
    scaling: Scaling,
    data: Value,
) -> tokio::task::JoinHandle<Result<CallOutcome, Refused>> {
    let pools = pools.clone();
    tokio::spawn(async move { call(&pools, 1, scaling, data, 5_000).await })
}

#[tokio::test]
async fn instances_start_up_to_the_maximum_then_requests_wait_then_are_refused() {
    let (pools, counts) = pools();
    let scaling = scaling(0, 2, 1);
    let busy: Vec<_> = (0..3)
        .map(|_| spawn_call(&pools, scaling, json!(300)))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = call(&pools, 1, scaling, json!(0), 5_000).await;
    assert_eq!(refused, Err(Refused::QueueFull { limit: 1 }));
    for handle in busy {
        assert_eq!(handle.await.unwrap(), Ok(CallOutcome::Returned(json!(300))));
    }
    assert_eq!(counts.started.load(Ordering::SeqCst), 2);
    assert_eq!(pools.alive(VERSION), 2);
}

#[tokio::test]
async fn idle_instances_stop_down_to_the_minimum_and_the_minimum_is_kept() {
    let (pools, counts) = pools();
    let mut scaling = scaling(1, 3, 10);
    scaling.idle_time = Duration::ZERO;
    let busy: Vec<_> = (0..3)
        .map(|_| spawn_call(&pools, scaling, json!(100)))
        .collect();
    for handle in busy {
        handle.await.unwrap().unwrap();
    }
    assert_eq!(pools.alive(VERSION), 3);
    pools.tend();
    assert_eq!(pools.alive(VERSION), 1);
    assert_eq!(counts.stopped.load(Ordering::SeqCst), 2);
    // Warming a version starts its minimum without any request.
    let (pools, counts) = self::pools();
    pools
        .warm(VERSION, Fingerprint(1), self::scaling(2, 3, 10), blueprint)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(counts.started.load(Ordering::SeqCst), 2);
    assert_eq!(pools.alive(VERSION), 2);
}

#[tokio::test]
async fn a_new_fingerprint_replaces_the_instances_after_their_requests() {
    let (pools, counts) = pools();
    let scaling = scaling(0, 2, 10);
    let in_flight = spawn_call(&pools, scaling, json!(300));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let new = call(&pools, 2, scaling, json!(1), 5_000).await;
    assert_eq!(new, Ok(CallOutcome::Returned(json!(1))));
    assert_eq!(
        counts.stopped.load(Ordering::SeqCst),
        0,
        "the old one is busy"
    );
    assert_eq!(
        in_flight.await.unwrap(),
        Ok(CallOutcome::Returned(json!(300)))
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(counts.stopped.load(Ordering::SeqCst), 1);
    assert_eq!(pools.alive(VERSION), 1);
    pools.tend();
    assert!(pools.draining.lock().is_empty());
}

#[tokio::test]
async fn a_broken_instance_is_replaced() {
    let (pools, counts) = pools();
    let scaling = scaling(0, 1, 10);
    let crashed = call(&pools, 1, scaling, json!("crash"), 5_000).await;
    assert!(matches!(crashed, Ok(CallOutcome::Crashed(_))));
    let timed_out = call(&pools, 1, scaling, json!(500), 100).await;
    assert_eq!(timed_out, Ok(CallOutcome::TimedOut));
    assert_eq!(
        call(&pools, 1, scaling, json!(1), 5_000).await,
        Ok(CallOutcome::Returned(json!(1)))
    );
    assert_eq!(counts.started.load(Ordering::SeqCst), 3);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(counts.stopped.load(Ordering::SeqCst), 2);
    assert_eq!(pools.alive(VERSION), 1);
}

#[tokio::test]
async fn a_failing_start_fails_its_request_and_is_remembered_briefly() {
    let (pools, counts) = pools();
    counts.fail_starts.store(true, Ordering::SeqCst);
    let scaling = scaling(0, 1, 10);
    let refused = Err(Refused::Unstartable("RuntimeError: no model".to_owned()));
    assert_eq!(call(&pools, 1, scaling, json!(1), 5_000).await, refused);
    assert_eq!(call(&pools, 1, scaling, json!(1), 5_000).await, refused);
    assert_eq!(pools.alive(VERSION), 0);
}

#[tokio::test]
async fn a_request_that_waits_past_its_timeout_gives_up_and_the_instance_serves_the_next() {
    let (pools, counts) = pools();
    let scaling = scaling(0, 1, 10);
    let busy = spawn_call(&pools, scaling, json!(300));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let gave_up = call(&pools, 1, scaling, json!(1), 50).await;
    assert_eq!(gave_up, Err(Refused::NoInstanceInTime));
    busy.await.unwrap().unwrap();
    assert_eq!(
        call(&pools, 1, scaling, json!(2), 5_000).await,
        Ok(CallOutcome::Returned(json!(2)))
    );
    assert_eq!(counts.started.load(Ordering::SeqCst), 1);
}

fn spawn_batch_call(
    pools: &Arc<Pools>,
    scaling: Scaling,
    data: Value,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<Result<CallOutcome, Refused>> {
    let pools = pools.clone();
    tokio::spawn(async move {
        let call = Call {
            request_id: Uuid::new_v4(),
            data,
            many: false,
            context: Value::Null,
        };
        let stop = async move {
            match stop.await {
                Ok(()) => "cancelled".to_owned(),
                Err(_) => std::future::pending().await,
            }
        };
        pools
            .call_batch(
                VERSION,
                Fingerprint(1),
                scaling,
                blueprint,
                call,
                Duration::from_secs(5),
                stop,
            )
            .await
    })
}

#[tokio::test]
async fn batch_calls_wait_beyond_the_express_limit_and_after_direct_requests() {
    let (pools, counts) = pools();
    // One instance, no room in the express queue.
    let scaling = scaling(0, 1, 0);
    let busy = spawn_call(&pools, scaling, json!(200));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_keep, never) = tokio::sync::oneshot::channel();
    let batch = spawn_batch_call(&pools, scaling, json!(0), never);
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The direct request is refused (the limit is for direct ones only)...
    assert_eq!(
        call(&pools, 1, scaling, json!(0), 5_000).await,
        Err(Refused::QueueFull { limit: 0 })
    );
    // ...but with room, it goes before the batch call that waited longer.
    let scaling = self::scaling(0, 1, 1);
    let direct = spawn_call(&pools, scaling, json!(100));
    busy.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!batch.is_finished(), "the direct request went first");
    assert_eq!(direct.await.unwrap(), Ok(CallOutcome::Returned(json!(100))));
    assert_eq!(batch.await.unwrap(), Ok(CallOutcome::Returned(json!(0))));
    assert_eq!(counts.started.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_stopped_batch_call_stops_its_instance_and_the_next_call_gets_a_new_one() {
    let (pools, counts) = pools();
    let scaling = scaling(0, 1, 10);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let batch = spawn_batch_call(&pools, scaling, json!(2_000), stopped);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    assert_eq!(
        batch.await.unwrap(),
        Ok(CallOutcome::Stopped("cancelled".to_owned()))
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(counts.stopped.load(Ordering::SeqCst), 1);
    assert_eq!(
        call(&pools, 1, scaling, json!(1), 5_000).await,
        Ok(CallOutcome::Returned(json!(1)))
    );
    assert_eq!(counts.started.load(Ordering::SeqCst), 2);
    assert_eq!(pools.alive(VERSION), 1);
}

#[tokio::test]
async fn a_failing_preparation_is_remembered_briefly_instead_of_repeated() {
    let (pools, _) = pools();
    let scaling = scaling(0, 1, 10);
    let attempts = Arc::new(AtomicUsize::new(0));
    let failing = || {
        let attempts = attempts.clone();
        move || {
            async move {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err::<Blueprint, _>("pip could not install torch".to_owned())
            }
            .boxed()
        }
    };
    for _ in 0..3 {
        let call = Call {
            request_id: Uuid::new_v4(),
            data: json!(1),
            many: false,
            context: Value::Null,
        };
        let refused = pools
            .call(
                VERSION,
                Fingerprint(1),
                scaling,
                failing(),
                call,
                Duration::from_secs(1),
            )
            .await;
        assert_eq!(
            refused,
            Err(Refused::Unprepared(
                "pip could not install torch".to_owned()
            ))
        );
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "prepared once");
}
