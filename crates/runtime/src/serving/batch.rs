//! Batch requests, from the queue in the database to the code and back.
//!
//! Each server runs one queue worker. It learns of queued requests from a
//! notification (or a poll, should one be missed) and runs, per version
//! with a queue, up to `maximum_instances` loops that each claim a request,
//! run it on the version's pool (after the direct requests waiting there)
//! and record its outcome. While a request runs, its claim's lease is
//! renewed (at once when a request is cancelled); a renewal that finds the
//! request cancelled, or the claim lost (the lease ran out meanwhile), stops
//! the call and its instance. The recovery sweep of every server settles
//! the requests of claims whose lease ran out: a server or instance gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use ubiops_domain::request_data::{self, Shape};
use ubiops_storage::{Claimed, Hold, Outcome, StorageError, CANCEL_CHANNEL, QUEUE_CHANNEL};
use uuid::Uuid;

use super::{fingerprint, scaling, serving_revision, settle, Serving, Settled};
use crate::{Call, CallOutcome};

/// The batch queue's settings on this server.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// How long a claim holds a request without being renewed: after a
    /// server's loss, its requests wait this long before they are settled.
    pub lease: Duration,
    /// How many times an interrupted request runs again (for versions with
    /// `restart_request_interruption`).
    pub max_retries: i32,
    /// How often to look for queued requests when no notification came.
    pub poll_interval: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            lease: Duration::from_secs(30),
            max_retries: 3,
            poll_interval: Duration::from_secs(2),
        }
    }
}

/// An interrupted request runs again after this pause, so that a request
/// that kills its instance does not do so in a tight loop.
const RETRY_DELAY_SECONDS: f64 = 1.0;

/// Requests settled per recovery statement.
const RECOVERY_BATCH: i64 = 500;

/// Why a claimed request's call is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    /// The claim no longer holds the request: its result would not be kept.
    Lost,
}

/// A version with queued requests, by the names its target is read with.
#[derive(Debug, Clone)]
struct QueuedVersion {
    id: Uuid,
    project: String,
    deployment: String,
    version: String,
}

struct QueueWorker {
    serving: Arc<Serving>,
    id: Uuid,
    settings: QueueSettings,
    /// Claim loops running, per version.
    loops: Mutex<HashMap<Uuid, usize>>,
    /// Claims in flight, each with the switch that stops its call.
    claims: Mutex<HashMap<String, watch::Sender<Option<Stop>>>>,
}

/// How a claimed request ended on this server.
enum Ending {
    Finished(Outcome),
    /// Its instance was lost midway: it may run again.
    Interrupted(String),
    /// Not this server's to record (its claim was lost, or its version
    /// deleted); or unknowable now (the database unreachable), left to the
    /// lease and the recovery sweep.
    LetGo,
}

impl Serving {
    /// Runs batch requests until `stop` turns true; then claims no more
    /// and returns once the requests in flight are recorded.
    pub(super) async fn work_queue(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let worker = Arc::new(QueueWorker {
            settings: self.queue,
            serving: self,
            id: Uuid::new_v4(),
            loops: Mutex::new(HashMap::new()),
            claims: Mutex::new(HashMap::new()),
        });
        let wake = Arc::new(Notify::new());
        // A cancel renews the claims at once: the renewal finds it.
        let cancelled = Arc::new(Notify::new());
        let listener = tokio::spawn(ubiops_storage::wake_on_notify(
            worker.serving.store.clone(),
            vec![
                (QUEUE_CHANNEL, wake.clone()),
                (CANCEL_CHANNEL, cancelled.clone()),
            ],
            stop.clone(),
        ));
        let renewals = tokio::spawn(worker.clone().renew_claims(cancelled));
        let mut loops = JoinSet::new();
        let mut stopping = stop.clone();
        let recover_every = (worker.settings.lease / 2).max(Duration::from_millis(500));
        let mut last_recovery: Option<Instant> = None;
        loop {
            // Registered before looking, so a notification meanwhile is not
            // missed until the next poll.
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if last_recovery.is_none_or(|at| at.elapsed() >= recover_every) {
                worker.recover().await;
                last_recovery = Some(Instant::now());
            }
            worker.start_loops(&mut loops, &stop).await;
            while loops.try_join_next().is_some() {}
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(worker.settings.poll_interval) => {}
                _ = stopping.wait_for(|stop| *stop) => break,
            }
        }
        while loops.join_next().await.is_some() {}
        renewals.abort();
        let _ = listener.await;
    }
}

impl QueueWorker {
    /// Starts claim loops for the versions with a queue, up to each one's
    /// `maximum_instances` on this server.
    async fn start_loops(self: &Arc<Self>, loops: &mut JoinSet<()>, stop: &watch::Receiver<bool>) {
        let store = &self.serving.store;
        let queued = match store.versions_with_queue().await {
            Ok(queued) => queued,
            Err(error) => {
                tracing::warn!(%error, "could not read which versions have queued requests");
                return;
            }
        };
        for (id, project, deployment, version) in queued {
            let maximum = match store
                .serving_target(&project, &deployment, Some(&version))
                .await
            {
                Ok(target) => target.maximum_instances.max(1) as usize,
                Err(error) => {
                    tracing::warn!(%project, %deployment, %version, %error, "could not read a version with queued requests");
                    continue;
                }
            };
            let running = self.loops.lock().get(&id).copied().unwrap_or(0);
            let version = QueuedVersion {
                id,
                project,
                deployment,
                version,
            };
            for _ in running..maximum {
                *self.loops.lock().entry(id).or_default() += 1;
                loops.spawn(self.clone().drain(version.clone(), stop.clone()));
            }
        }
    }

    /// Claims and runs the version's requests until none is left to claim
    /// or the server stops.
    async fn drain(self: Arc<Self>, version: QueuedVersion, stop: watch::Receiver<bool>) {
        let _counted = LoopCount {
            worker: &self,
            version: version.id,
        };
        let lease = self.settings.lease.as_secs_f64();
        while !*stop.borrow() {
            match self
                .serving
                .store
                .claim_request(version.id, self.id, lease)
                .await
            {
                Ok(Some(claimed)) => self.process(&version, claimed).await,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(version = %version.id, %error, "could not claim a queued request");
                    break;
                }
            }
        }
    }

    /// Runs a claimed request and records how it ended.
    async fn process(&self, version: &QueuedVersion, claimed: Claimed) {
        let (stop, stopped) = watch::channel(None);
        self.claims.lock().insert(claimed.claim.clone(), stop);
        let ending = {
            // Renewed only while it runs, panics included: a claim left
            // behind would hold its request forever.
            let _registered = Registered {
                worker: self,
                claim: &claimed.claim,
            };
            self.run(version, &claimed, stopped).await
        };
        let store = &self.serving.store;
        let recorded = match ending {
            Ending::Finished(outcome) => store.finish_request(&claimed, &outcome).await,
            Ending::Interrupted(reason) => {
                store
                    .interrupt_request(
                        &claimed,
                        &reason,
                        self.settings.max_retries,
                        RETRY_DELAY_SECONDS,
                    )
                    .await
            }
            Ending::LetGo => return,
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(request = %claimed.id, "a batch request's outcome was not recorded: its claim had been lost")
            }
            Err(error) => {
                tracing::warn!(request = %claimed.id, %error, "could not record a batch request's outcome; its lease will run out and the recovery sweep settle it")
            }
        }
    }

    async fn run(
        &self,
        version: &QueuedVersion,
        claimed: &Claimed,
        mut stopped: watch::Receiver<Option<Stop>>,
    ) -> Ending {
        let target = match self
            .serving
            .store
            .serving_target(
                &version.project,
                &version.deployment,
                Some(&version.version),
            )
            .await
        {
            Ok(target) if target.version_id == version.id => target,
            // Deleted (or deleted and made anew): its requests went with it.
            Ok(_) | Err(StorageError::NotFound(_)) => return Ending::LetGo,
            Err(error) => {
                tracing::warn!(request = %claimed.id, %error, "could not read a batch request's version");
                return Ending::LetGo;
            }
        };
        let failed = |message: String| Ending::Finished(Outcome::Failed(message));
        let shape = match Serving::check_input(&target, &claimed.data) {
            Ok(shape) => shape,
            Err(problem) => return failed(problem.to_string()),
        };
        let revision = match serving_revision(&target) {
            Ok(revision) => revision,
            Err(problem) => return failed(problem.to_string()),
        };
        let timeout = Duration::from_secs(claimed.timeout_seconds.max(0) as u64);
        let deadline = claimed.time_created + timeout;
        let Some(left) = (deadline - Utc::now())
            .to_std()
            .ok()
            .filter(|left| !left.is_zero())
        else {
            return failed(format!(
                "The request did not finish within its timeout of {} s",
                timeout.as_secs()
            ));
        };
        let call = Call {
            request_id: claimed.id,
            data: claimed.data.clone(),
            many: matches!(shape, Shape::Many(_)),
            context: json!({"id": claimed.id, "request_mode": "batch"}),
        };
        let prepare = {
            let maker = self.serving.blueprint_maker(&target, revision);
            move || Box::pin(maker) as _
        };
        let observed = stopped.clone();
        let stop = async move {
            match stopped.wait_for(Option::is_some).await.map(|stop| *stop) {
                Ok(Some(Stop::Cancelled)) => "the request was cancelled".to_owned(),
                Ok(_) => "the request is no longer this server's to finish".to_owned(),
                Err(_) => std::future::pending().await,
            }
        };
        let served = self
            .serving
            .pools
            .call_batch(
                target.version_id,
                fingerprint(&target),
                scaling(&target),
                prepare,
                call,
                left,
                stop,
            )
            .await;
        match served {
            // A cancelled request becomes `cancelled` whatever it is
            // finished with; a lost one is not this server's to record.
            Ok(CallOutcome::Stopped(_)) => match *observed.borrow() {
                Some(Stop::Cancelled) => failed("The request was cancelled".to_owned()),
                _ => Ending::LetGo,
            },
            Ok(CallOutcome::Crashed(reason)) => {
                Ending::Interrupted(format!("its instance crashed ({reason})"))
            }
            served => match settle(served, &target, shape, timeout) {
                Ok(Settled::Succeeded(output)) => Ending::Finished(Outcome::Completed(output)),
                Ok(Settled::Failed(message)) => failed(request_data::error_message(&message)),
                Err(refused) => failed(refused.to_string()),
            },
        }
    }

    /// Renews the leases of the claims in flight, a few times per lease
    /// and whenever a request is cancelled; stops the calls of those
    /// cancelled or lost. When renewals fail for a whole lease, every claim
    /// is as good as lost.
    async fn renew_claims(self: Arc<Self>, cancelled: Arc<Notify>) {
        let lease = self.settings.lease;
        let mut tick = tokio::time::interval((lease / 3).max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cancelled.notified() => {}
            }
            let claims: Vec<String> = self.claims.lock().keys().cloned().collect();
            if claims.is_empty() {
                renewed = Instant::now();
                continue;
            }
            match self
                .serving
                .store
                .renew_claims(&claims, lease.as_secs_f64())
                .await
            {
                Ok(holds) => {
                    renewed = Instant::now();
                    let in_flight = self.claims.lock();
                    for (claim, hold) in claims.iter().zip(holds) {
                        let stop = match hold {
                            Hold::Held => continue,
                            Hold::Cancelled => Stop::Cancelled,
                            Hold::Lost => Stop::Lost,
                        };
                        if let Some(switch) = in_flight.get(claim) {
                            switch.send_replace(Some(stop));
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not renew the leases of batch requests in flight");
                    if renewed.elapsed() >= lease {
                        for switch in self.claims.lock().values() {
                            switch.send_replace(Some(Stop::Lost));
                        }
                    }
                }
            }
        }
    }

    /// Settles the requests of lost claims and those that waited past
    /// their timeout.
    async fn recover(&self) {
        loop {
            match self
                .serving
                .store
                .recover_requests(
                    RECOVERY_BATCH,
                    self.settings.max_retries,
                    RETRY_DELAY_SECONDS,
                )
                .await
            {
                Ok(recovered) => {
                    let settled = recovered.requeued + recovered.failed + recovered.cancelled;
                    if settled > 0 {
                        tracing::info!(
                            requeued = recovered.requeued,
                            failed = recovered.failed,
                            cancelled = recovered.cancelled,
                            "settled interrupted or expired batch requests"
                        );
                    }
                    if settled < RECOVERY_BATCH as u64 {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not settle interrupted batch requests");
                    return;
                }
            }
        }
    }
}

/// Keeps a claim among those renewed for as long as its request runs.
struct Registered<'a> {
    worker: &'a QueueWorker,
    claim: &'a str,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.worker.claims.lock().remove(self.claim);
    }
}

/// Counts a claim loop for as long as it runs, panics included.
struct LoopCount<'a> {
    worker: &'a QueueWorker,
    version: Uuid,
}

impl Drop for LoopCount<'_> {
    fn drop(&mut self) {
        let mut loops = self.worker.loops.lock();
        if let Some(count) = loops.get_mut(&self.version) {
            *count -= 1;
            if *count == 0 {
                loops.remove(&self.version);
            }
        }
    }
}
