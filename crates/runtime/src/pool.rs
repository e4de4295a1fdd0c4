//! The instances of each version on this server.
//!
//! A version's instances form a [`Generation`]: made from one
//! [`Fingerprint`] (the active revision, the variables, the memory size,
//! the names the code is told). A request with another fingerprint starts a
//! new generation and retires the old one, whose idle instances stop at
//! once and whose busy ones stop when their request is done: a new revision
//! replaces the instances without failing a request in flight.
//!
//! Within a generation an idle instance takes a request; without one, a new
//! instance starts while fewer than `maximum_instances` are alive; beyond
//! that the request waits, up to `maximum_queue_size_express` waiting. The
//! [`Pools::tend`] sweep stops instances idle for longer than
//! `maximum_idle_time` (down to `minimum_instances`) and starts instances up
//! to the minimum.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::panic::AssertUnwindSafe;

use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::Mutex;
use tokio::sync::{oneshot, OnceCell};
use uuid::Uuid;

use crate::runtime::{Blueprint, Running, Runtime};
use crate::{Call, CallOutcome, Level};

/// How a version scales, from its settings. Read with every request, so a
/// change applies to the running generation at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scaling {
    pub minimum: usize,
    pub maximum: usize,
    pub idle_time: Duration,
    /// Requests that may wait for a free instance.
    pub queue_limit: usize,
}

/// What the instances of a version are made of, as a hash: equal
/// fingerprints mean interchangeable instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub u64);

/// Which requests an instance goes to first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Priority {
    /// A caller waits on the connection: served first, within the
    /// version's `maximum_queue_size_express`.
    Direct,
    /// From the batch queue: served when no direct request waits.
    Batch,
}

/// Why a request got no answer from the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// As many requests as the version allows wait already.
    QueueFull { limit: usize },
    /// The version's instances cannot start (the package's fault): the
    /// reason, as the code gave it.
    Unstartable(String),
    /// What instances are made of could not be prepared; the message says
    /// why (a package fault) and whether it is worth retrying.
    Unprepared(String),
    /// The request's time ran out before an instance was free.
    NoInstanceInTime,
}

/// Why an instance of a retired generation stops.
const RETIRED: &str =
    "Instance stopped: replaced by instances of the version's new revision, variables or instance type";

/// A start or a preparation that failed is remembered this long: requests
/// meanwhile get its reason at once instead of each trying again (a
/// preparation may install a whole environment).
const FAILURE_MEMORY: Duration = Duration::from_secs(5);

/// The reason of a failure that happened within [`FAILURE_MEMORY`].
fn recent(failure: &Option<(Instant, String)>) -> Option<String> {
    failure
        .as_ref()
        .filter(|(at, _)| at.elapsed() < FAILURE_MEMORY)
        .map(|(_, reason)| reason.clone())
}

/// Every version's instances on this server.
pub struct Pools {
    runtime: Arc<dyn Runtime>,
    versions: Mutex<HashMap<Uuid, Arc<Generation>>>,
    /// Retired generations until their last busy instance has stopped.
    draining: Mutex<Vec<Arc<Generation>>>,
}

impl Pools {
    pub fn new(runtime: Arc<dyn Runtime>) -> Pools {
        Pools {
            runtime,
            versions: Mutex::new(HashMap::new()),
            draining: Mutex::new(Vec::new()),
        }
    }

    /// Runs `call` on an instance of `version` within `timeout` (waiting for
    /// an instance included). `prepare` makes the blueprint of new
    /// instances; it runs only when this fingerprint has none yet.
    pub async fn call(
        &self,
        version: Uuid,
        fingerprint: Fingerprint,
        scaling: Scaling,
        prepare: impl FnOnce() -> BoxFuture<'static, Result<Blueprint, String>>,
        call: Call,
        timeout: Duration,
    ) -> Result<CallOutcome, Refused> {
        let never = std::future::pending();
        self.run(
            version,
            fingerprint,
            scaling,
            prepare,
            call,
            timeout,
            Priority::Direct,
            never,
        )
        .await
    }

    /// [`Pools::call`] for a batch request: it gets an instance after the
    /// direct requests waiting, and waits without the express queue's
    /// limit (the batch queue in the database bounds how many wait). When
    /// `stop` resolves first, the call is abandoned and its instance
    /// stopped, with the reason `stop` gives (`CallOutcome::Stopped`).
    #[allow(clippy::too_many_arguments)] // `call`'s, and the stop
    pub async fn call_batch(
        &self,
        version: Uuid,
        fingerprint: Fingerprint,
        scaling: Scaling,
        prepare: impl FnOnce() -> BoxFuture<'static, Result<Blueprint, String>>,
        call: Call,
        timeout: Duration,
        stop: impl Future<Output = String>,
    ) -> Result<CallOutcome, Refused> {
        self.run(
            version,
            fingerprint,
            scaling,
            prepare,
            call,
            timeout,
            Priority::Batch,
            stop,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)] // `call_batch`'s, and the priority
    async fn run(
        &self,
        version: Uuid,
        fingerprint: Fingerprint,
        scaling: Scaling,
        prepare: impl FnOnce() -> BoxFuture<'static, Result<Blueprint, String>>,
        call: Call,
        timeout: Duration,
        priority: Priority,
        stop: impl Future<Output = String>,
    ) -> Result<CallOutcome, Refused> {
        let deadline = Instant::now() + timeout;
        let generation = self
            .prepared(version, fingerprint, scaling, prepare)
            .await
            .map_err(Refused::Unprepared)?;
        tokio::pin!(stop);
        // Dropping the wait leaves no instance behind: one delivered later
        // goes to the next caller.
        let mut instance = tokio::select! {
            acquired = generation.acquire(&self.runtime, deadline, priority) => acquired?,
            reason = &mut stop => return Ok(CallOutcome::Stopped(reason)),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        // A call abandoned midway leaves the instance in an unknown state:
        // it is stopped, as after a timeout.
        let outcome = tokio::select! {
            outcome = instance.call(call, left) => outcome,
            reason = &mut stop => CallOutcome::Stopped(reason),
        };
        let healthy = matches!(outcome, CallOutcome::Returned(_) | CallOutcome::Raised(_));
        match &outcome {
            CallOutcome::TimedOut => generation.note(
                Level::Error,
                "Instance stopped: a request ran past its timeout",
            ),
            CallOutcome::Crashed(reason) | CallOutcome::Stopped(reason) => {
                generation.note(Level::Error, &format!("Instance stopped: {reason}"))
            }
            _ => {}
        }
        if generation.release(&self.runtime, instance, healthy) {
            // The next request has the instance but runs only once this task
            // yields: let it send its call before this one answers its
            // caller, so the instance does not idle meanwhile.
            tokio::task::yield_now().await;
        }
        Ok(outcome)
    }

    /// Prepares `version`'s instances and starts its minimum, before any
    /// request needs them.
    pub async fn warm(
        &self,
        version: Uuid,
        fingerprint: Fingerprint,
        scaling: Scaling,
        prepare: impl FnOnce() -> BoxFuture<'static, Result<Blueprint, String>>,
    ) -> Result<(), String> {
        let generation = self
            .prepared(version, fingerprint, scaling, prepare)
            .await?;
        generation.tend(&self.runtime);
        Ok(())
    }

    /// The generation of `fingerprint` with its blueprint made (once, by the
    /// first request to need it; the others wait for it).
    async fn prepared(
        &self,
        version: Uuid,
        fingerprint: Fingerprint,
        scaling: Scaling,
        prepare: impl FnOnce() -> BoxFuture<'static, Result<Blueprint, String>>,
    ) -> Result<Arc<Generation>, String> {
        let generation = self.generation(version, fingerprint, scaling);
        if let Some(reason) = recent(&generation.prepare_failure.lock()) {
            return Err(reason);
        }
        let prepared = generation
            .blueprint
            .get_or_try_init(|| async { prepare().await.map(Arc::new) })
            .await;
        if let Err(reason) = prepared {
            *generation.prepare_failure.lock() = Some((Instant::now(), reason.clone()));
            return Err(reason);
        }
        Ok(generation)
    }

    /// The current generation of `version`: a new one when the fingerprint
    /// changed, the old one retired.
    fn generation(
        &self,
        version: Uuid,
        fingerprint: Fingerprint,
        scaling: Scaling,
    ) -> Arc<Generation> {
        let mut versions = self.versions.lock();
        if let Some(current) = versions.get(&version) {
            if current.fingerprint == fingerprint {
                *current.scaling.lock() = scaling;
                return current.clone();
            }
        }
        let generation = Arc::new(Generation::new(fingerprint, scaling));
        if let Some(old) = versions.insert(version, generation.clone()) {
            self.retire(old);
        }
        generation
    }

    fn retire(&self, generation: Arc<Generation>) {
        for instance in generation.retire() {
            generation.note(Level::Info, RETIRED);
            tokio::spawn(instance.stop());
        }
        self.draining.lock().push(generation);
    }

    /// Retires the instances of versions that no longer serve (deleted, or
    /// without an active revision): `serving` says which still do.
    pub fn retain(&self, serving: impl Fn(Uuid) -> bool) {
        let retired: Vec<_> = {
            let mut versions = self.versions.lock();
            let gone: Vec<Uuid> = versions
                .keys()
                .copied()
                .filter(|id| !serving(*id))
                .collect();
            gone.iter().filter_map(|id| versions.remove(id)).collect()
        };
        for generation in retired {
            self.retire(generation);
        }
    }

    /// Stops instances idle for too long and starts the minimum: run
    /// periodically. Generations done draining are dropped.
    pub fn tend(&self) {
        let current: Vec<_> = self.versions.lock().values().cloned().collect();
        for generation in current {
            generation.tend(&self.runtime);
        }
        self.draining
            .lock()
            .retain(|generation| !generation.drained());
    }

    /// Instances alive per version, for status and tests.
    pub fn alive(&self, version: Uuid) -> usize {
        self.versions
            .lock()
            .get(&version)
            .map(|generation| generation.state.lock().alive)
            .unwrap_or(0)
    }

    /// Stops every idle instance, and the busy ones as their requests
    /// finish: for shutdown, once no new requests come.
    pub async fn stop_all(&self) {
        let all: Vec<_> = self.versions.lock().drain().map(|(_, g)| g).collect();
        let mut stopping = Vec::new();
        for generation in all {
            stopping.extend(generation.retire());
            self.draining.lock().push(generation);
        }
        futures::future::join_all(stopping.into_iter().map(|instance| instance.stop())).await;
    }
}

/// The instances of one version made from one blueprint.
struct Generation {
    fingerprint: Fingerprint,
    scaling: Mutex<Scaling>,
    blueprint: OnceCell<Arc<Blueprint>>,
    prepare_failure: Mutex<Option<(Instant, String)>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    idle: Vec<Idle>,
    /// Starting, busy and idle instances.
    alive: usize,
    /// Direct requests waiting for an instance, then batch ones.
    waiting: VecDeque<Delivery>,
    batch_waiting: VecDeque<Delivery>,
    retired: bool,
    last_start_failure: Option<(Instant, String)>,
}

impl State {
    /// The next request to give an instance: direct ones first.
    fn next_waiting(&mut self) -> Option<Delivery> {
        self.waiting
            .pop_front()
            .or_else(|| self.batch_waiting.pop_front())
    }
}

struct Idle {
    instance: Box<dyn Running>,
    since: Instant,
}

type Delivery = oneshot::Sender<Result<Box<dyn Running>, String>>;

impl Generation {
    fn new(fingerprint: Fingerprint, scaling: Scaling) -> Generation {
        Generation {
            fingerprint,
            scaling: Mutex::new(scaling),
            blueprint: OnceCell::new(),
            prepare_failure: Mutex::new(None),
            state: Mutex::new(State::default()),
        }
    }

    /// A line in the version's log, as the server's (`system`).
    fn note(&self, level: Level, text: &str) {
        if let Some(blueprint) = self.blueprint.get() {
            (blueprint.events)(level, text.to_owned());
        }
    }

    fn scaling(&self) -> Scaling {
        *self.scaling.lock()
    }

    /// An idle instance, a new one, or the next one freed.
    async fn acquire(
        self: &Arc<Self>,
        runtime: &Arc<dyn Runtime>,
        deadline: Instant,
        priority: Priority,
    ) -> Result<Box<dyn Running>, Refused> {
        let scaling = self.scaling();
        let receiver = {
            let mut state = self.state.lock();
            if let Some(reason) = recent(&state.last_start_failure) {
                return Err(Refused::Unstartable(reason));
            }
            // The newest idle instance; one that died while idle (killed,
            // out of memory) is let go rather than failing this request.
            while let Some(mut idle) = state.idle.pop() {
                if idle.instance.is_alive() {
                    return Ok(idle.instance);
                }
                state.alive -= 1;
                tokio::spawn(idle.instance.stop());
            }
            let (delivery, receiver) = oneshot::channel();
            if state.alive < scaling.maximum.max(1) {
                state.alive += 1;
                self.spawn_start(runtime, delivery);
            } else if priority == Priority::Batch {
                state.batch_waiting.push_back(delivery);
            } else if state.waiting.len() >= scaling.queue_limit {
                return Err(Refused::QueueFull {
                    limit: scaling.queue_limit,
                });
            } else {
                state.waiting.push_back(delivery);
            }
            receiver
        };
        match tokio::time::timeout_at(deadline.into(), receiver).await {
            Ok(Ok(Ok(instance))) => Ok(instance),
            Ok(Ok(Err(reason))) => Err(Refused::Unstartable(reason)),
            // The time ran out (an instance that comes later goes to the
            // next request; the sender is never dropped unsent otherwise).
            Ok(Err(_)) | Err(_) => Err(Refused::NoInstanceInTime),
        }
    }

    /// Starts an instance (counted in `alive` already) and delivers it; one
    /// whose request has gone joins the pool. In a task of its own, so that
    /// a request giving up never leaves a half-started instance behind.
    fn spawn_start(self: &Arc<Self>, runtime: &Arc<dyn Runtime>, delivery: Delivery) {
        let (generation, runtime) = (self.clone(), runtime.clone());
        let Some(blueprint) = self.blueprint.get().cloned() else {
            // Only called once the blueprint is made.
            self.state.lock().alive -= 1;
            let _ = delivery.send(Err("the version's instances are not prepared".to_owned()));
            return;
        };
        tokio::spawn(async move {
            let began = Instant::now();
            let started = AssertUnwindSafe(runtime.start(blueprint))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err(
                        "the instance could not be started (a server fault; see the server log)"
                            .to_owned(),
                    )
                });
            match started {
                Ok(instance) => {
                    generation.note(
                        Level::Info,
                        &format!("Instance started in {:.2} s", began.elapsed().as_secs_f64()),
                    );
                    if let Err(Ok(instance)) = delivery.send(Ok(instance)) {
                        let _ = generation.release(&runtime, instance, true);
                    }
                }
                Err(reason) => {
                    generation.note(
                        Level::Error,
                        &format!("An instance could not start: {reason}"),
                    );
                    generation.start_failed(&reason);
                    let _ = delivery.send(Err(reason));
                }
            }
        });
    }

    /// Requests waiting get the reason too: the next start would fail the
    /// same way.
    fn start_failed(&self, reason: &str) {
        let waiting: Vec<_> = {
            let mut state = self.state.lock();
            state.alive -= 1;
            state.last_start_failure = Some((Instant::now(), reason.to_owned()));
            let State {
                waiting,
                batch_waiting,
                ..
            } = &mut *state;
            waiting.drain(..).chain(batch_waiting.drain(..)).collect()
        };
        for delivery in waiting {
            let _ = delivery.send(Err(reason.to_owned()));
        }
    }

    /// Takes an instance back after a request: to the next waiting request
    /// (then true), or idle. A broken one, or one of a retired generation
    /// that nobody waits for, is stopped; a broken one is replaced when
    /// requests wait.
    fn release(
        self: &Arc<Self>,
        runtime: &Arc<dyn Runtime>,
        instance: Box<dyn Running>,
        healthy: bool,
    ) -> bool {
        let mut state = self.state.lock();
        if healthy {
            let mut instance = instance;
            while let Some(delivery) = state.next_waiting() {
                match delivery.send(Ok(instance)) {
                    Ok(()) => return true,
                    // That request gave up: the next one.
                    Err(Ok(back)) => instance = back,
                    Err(Err(_)) => return false,
                }
            }
            if !state.retired {
                state.idle.push(Idle {
                    instance,
                    since: Instant::now(),
                });
                return false;
            }
            state.alive -= 1;
            drop(state);
            self.note(Level::Info, RETIRED);
            tokio::spawn(instance.stop());
            return false;
        }
        state.alive -= 1;
        if state.alive < self.scaling().maximum.max(1) {
            if let Some(delivery) = state.next_waiting() {
                state.alive += 1;
                self.spawn_start(runtime, delivery);
            }
        }
        drop(state);
        tokio::spawn(instance.stop());
        false
    }

    /// Stops what idled too long (the longest idle first, down to the
    /// minimum) and starts instances up to the minimum.
    fn tend(self: &Arc<Self>, runtime: &Arc<dyn Runtime>) {
        let scaling = self.scaling();
        let mut state = self.state.lock();
        let mut stopping = Vec::new();
        // `idle` is in the order instances came back, and requests take the
        // newest: the oldest are the ones at the front.
        while state.alive > scaling.minimum
            && state
                .idle
                .first()
                .is_some_and(|idle| idle.since.elapsed() >= scaling.idle_time)
        {
            stopping.push(state.idle.remove(0).instance);
            state.alive -= 1;
        }
        let recently_failed = recent(&state.last_start_failure).is_some();
        if !state.retired && !recently_failed && self.blueprint.initialized() {
            while state.alive < scaling.minimum.min(scaling.maximum) {
                state.alive += 1;
                // Nobody waits for it: it goes idle once started.
                let (delivery, _) = oneshot::channel();
                self.spawn_start(runtime, delivery);
            }
        }
        drop(state);
        for instance in stopping {
            self.note(
                Level::Info,
                &format!(
                    "Instance stopped: idle for {} s (maximum_idle_time)",
                    scaling.idle_time.as_secs()
                ),
            );
            tokio::spawn(instance.stop());
        }
    }

    /// No new requests: returns the idle instances to stop now; the busy
    /// ones stop when their request is done (or serve the requests that
    /// were already waiting for them).
    fn retire(&self) -> Vec<Box<dyn Running>> {
        let mut state = self.state.lock();
        state.retired = true;
        state.alive -= state.idle.len();
        state.idle.drain(..).map(|idle| idle.instance).collect()
    }

    fn drained(&self) -> bool {
        let state = self.state.lock();
        state.retired && state.alive == 0
    }
}

#[cfg(test)]
mod tests;
