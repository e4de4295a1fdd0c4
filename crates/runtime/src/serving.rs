//! Direct requests, from a version to its code and back: the input checked,
//! the call run on an instance of the version, the output checked, the
//! request stored as the version's retention mode says, and the code's
//! output kept as log lines of the request.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use ubiops_domain::logs::Level;
use ubiops_domain::request_data::{self, Shape};
use ubiops_domain::requests::RequestStatus;
use ubiops_domain::secrets::{Keyring, Sealed};
use ubiops_storage::{
    LogTags, NewLogLine, NewRequest, ServingTarget, StorageError, Store, VariableValue,
};
use uuid::Uuid;

use crate::log_writer::LogWriter;
use crate::pool::{Fingerprint, Pools, Refused, Scaling};
use crate::revisions::{Packages, RevisionToRun};
use crate::runtime::{Blueprint, EventSink};
use crate::{Call, CallOutcome, InstanceSpec, LogLine, LogSink};

/// Rounds of [`Serving::maintain`] (seconds) between looks at which
/// versions serve, and between sweeps of expired requests.
const FOLLOW_EVERY: u64 = 5;
const EXPIRE_EVERY: u64 = 60;

/// Expired requests removed per statement.
const EXPIRE_BATCH: i64 = 1000;

mod batch;

pub use batch::QueueSettings;

/// Settings of instances that are the server's, not the version's.
#[derive(Debug, Clone, Copy)]
pub struct InstanceSettings {
    /// How long the import and `Deployment.__init__` may take.
    pub start_timeout: Duration,
}

/// Runs requests on the instances of this server.
pub struct Serving {
    store: Store,
    keyring: Arc<Keyring>,
    pools: Pools,
    packages: Packages,
    logs: LogWriter,
    settings: InstanceSettings,
    queue: QueueSettings,
}

/// A direct request, its input checked.
pub struct DirectRequest {
    pub target: ServingTarget,
    pub data: Value,
    pub shape: Shape,
    pub timeout: Duration,
    pub created_by: String,
}

/// What a direct request answers.
#[derive(Debug, Clone)]
pub struct Answer {
    pub id: Uuid,
    pub success: bool,
    pub result: Option<Value>,
    pub error_message: Option<String>,
}

/// Why a request did not reach the code: HTTP errors, not failed requests.
#[derive(Debug, thiserror::Error)]
pub enum NotServed {
    /// Bad input, or a version that cannot serve: a 400.
    #[error("{0}")]
    Rejected(String),
    /// Too many requests wait already: a 429.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Serving {
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        pools: Pools,
        packages: Packages,
        settings: InstanceSettings,
        queue: QueueSettings,
    ) -> Serving {
        let logs = LogWriter::start(store.clone());
        Serving {
            store,
            keyring,
            pools,
            packages,
            logs,
            settings,
            queue,
        }
    }

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// Checks `data` against the target's input: how many inputs it holds.
    /// Deployments with file fields are refused: they need blob storage.
    pub fn check_input(target: &ServingTarget, data: &Value) -> Result<Shape, NotServed> {
        request_data::check_supported(&target.input_fields, &target.output_fields)
            .and_then(|()| request_data::check_input(target.input_type, &target.input_fields, data))
            .map_err(|error| NotServed::Rejected(error.message()))
    }

    /// Whether the target's version serves: refused up front, rather than
    /// queued to fail later.
    pub fn check_servable(target: &ServingTarget) -> Result<(), NotServed> {
        serving_revision(target).map(drop)
    }

    /// Runs a direct request to its end; the answer says whether the code
    /// succeeded.
    pub async fn direct(&self, request: DirectRequest) -> Result<Answer, NotServed> {
        let target = &request.target;
        let revision = serving_revision(target)?;
        let id = ubiops_domain::requests::new_request_id();
        let time_created = Utc::now();
        let call = Call {
            request_id: id,
            data: request.data.clone(),
            many: matches!(request.shape, Shape::Many(_)),
            context: json!({"id": id, "request_mode": "express"}),
        };
        let prepare = {
            let serving = self.blueprint_maker(target, revision);
            move || serving.boxed()
        };
        let served = self
            .pools
            .call(
                target.version_id,
                fingerprint(target),
                scaling(target),
                prepare,
                call,
                request.timeout,
            )
            .await;
        let (success, result, error_message) =
            match settle(served, target, request.shape, request.timeout)? {
                Settled::Succeeded(output) => (true, Some(output), None),
                Settled::Failed(message) => (false, None, Some(message)),
            };
        let error_message = error_message.map(|message| request_data::error_message(&message));
        self.store
            .record_request(NewRequest {
                id,
                project_id: target.project_id,
                deployment_id: target.deployment_id,
                version_id: target.version_id,
                batch: false,
                created_by: request.created_by,
                origin: json!({
                    "deployment": target.deployment_name,
                    "deployment_version": target.version_name,
                }),
                timeout_seconds: request.timeout.as_secs() as i32,
                time_created,
                time_started: Some(time_created),
                time_completed: Some(Utc::now()),
                status: if success {
                    RequestStatus::Completed
                } else {
                    RequestStatus::Failed
                },
                success: Some(success),
                request_data: Some(request.data),
                result: result.clone(),
                error_message: error_message.clone(),
                notification_group: None,
                retention: target.retention,
            })
            .await?;
        Ok(Answer {
            id,
            success,
            result,
            error_message,
        })
    }

    /// Runs the batch queue, follows changes to what requests are served
    /// by (see `Store::follow_serving_changes`), tends the instances (idle
    /// ones stopped, the minimum started, those of versions that no longer
    /// serve retired) and removes expired requests, until `stop` turns
    /// true; then, once the batch requests in flight are recorded, stops
    /// every instance.
    pub async fn maintain(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let queue = tokio::spawn(self.clone().work_queue(stop.clone()));
        let changes = tokio::spawn(self.store.clone().follow_serving_changes(stop.clone()));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for round in 0u64.. {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
            self.pools.tend();
            if round % FOLLOW_EVERY == 0 {
                self.follow_versions().await;
            }
            if round % EXPIRE_EVERY == 0 {
                self.remove_expired_requests().await;
            }
        }
        let _ = queue.await;
        let _ = changes.await;
        self.pools.stop_all().await;
    }

    async fn remove_expired_requests(&self) {
        loop {
            match self
                .store
                .delete_expired_requests(Utc::now(), EXPIRE_BATCH)
                .await
            {
                Ok(removed) if removed == EXPIRE_BATCH as u64 => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "could not remove expired requests");
                    break;
                }
            }
        }
    }

    /// Retires the instances of versions that stopped serving and starts
    /// the minimum of those that keep instances without requests.
    async fn follow_versions(&self) {
        match self.store.serving_revisions().await {
            Ok(serving) => {
                let versions: HashSet<Uuid> = serving.iter().map(|(version, _)| *version).collect();
                let revisions: HashSet<Uuid> =
                    serving.iter().map(|(_, revision)| *revision).collect();
                self.pools.retain(|version| versions.contains(&version));
                let packages = self.packages.clone();
                let removed = tokio::task::spawn_blocking(move || {
                    packages.remove_others(&|revision| revisions.contains(&revision))
                })
                .await;
                if let Ok(Err(error)) = removed {
                    tracing::warn!(%error, "could not remove the packages of old revisions");
                }
            }
            Err(error) => tracing::warn!(%error, "could not read which versions serve"),
        }
        let warm = match self.store.versions_to_keep_warm().await {
            Ok(warm) => warm,
            Err(error) => {
                tracing::warn!(%error, "could not read which versions keep instances");
                return;
            }
        };
        for (project, deployment, version) in warm {
            if let Err(error) = self.warm(&project, &deployment, &version).await {
                tracing::warn!(%project, %deployment, %version, %error, "could not start the minimum instances");
            }
        }
    }

    async fn warm(&self, project: &str, deployment: &str, version: &str) -> Result<(), String> {
        let target = self
            .store
            .serving_target(project, deployment, Some(version))
            .await
            .map_err(|error| error.to_string())?;
        let Ok(revision) = serving_revision(&target) else {
            return Ok(());
        };
        let prepare = self.blueprint_maker(&target, revision);
        self.pools
            .warm(
                target.version_id,
                fingerprint(&target),
                scaling(&target),
                move || prepare.boxed(),
            )
            .await
    }

    /// What makes the blueprint of the target's instances, when its
    /// fingerprint is new: the revision prepared, the secrets opened.
    fn blueprint_maker(
        &self,
        target: &ServingTarget,
        revision: RevisionToRun,
    ) -> impl std::future::Future<Output = Result<Blueprint, String>> + Send + 'static {
        let packages = self.packages.clone();
        let keyring = self.keyring.clone();
        let logs = self.logs.clone();
        let settings = self.settings;
        let target = target.clone();
        async move {
            let mut env = hosted_variables(&target);
            for variable in &target.variables {
                let value = match &variable.value {
                    VariableValue::Plain(value) => value.clone(),
                    VariableValue::Sealed { bytes, key_id } => keyring
                        .open(&Sealed {
                            key_id: key_id.clone(),
                            bytes: bytes.clone(),
                        })
                        .map_err(|error| {
                            tracing::error!(%error, variable = %variable.name, "cannot open a secret variable");
                            format!(
                                "the secret variable '{}' cannot be opened with this server's keys",
                                variable.name
                            )
                        })?,
                };
                env.retain(|(name, _)| name != &variable.name);
                env.push((variable.name.clone(), value));
            }
            let tags = LogTags {
                deployment_id: Some(target.deployment_id),
                deployment_name: Some(target.deployment_name.clone()),
                version_id: Some(target.version_id),
                version_name: Some(target.version_name.clone()),
                revision_id: Some(revision.id),
                ..LogTags::default()
            };
            // An environment made anew here (the build ran on another
            // server) says so in the version's log, as a build would.
            let prepared = packages
                .prepare(&revision, &mut |line: &str| {
                    logs.push(NewLogLine {
                        project_id: target.project_id,
                        tags: tags.clone(),
                        system: true,
                        level: Level::Info,
                        text: line.to_owned(),
                    })
                })
                .await?;
            let events = logs.events(target.project_id, tags.clone());
            let sink = logs.sink(target.project_id, tags);
            let context = json!({
                "project": target.project_name,
                "deployment": target.deployment_name,
                "version": target.version_name,
                "input_type": target.input_type.as_str(),
                "output_type": target.output_type.as_str(),
                "language": target.language,
                "environment_variables": env
                    .iter()
                    .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
                    .collect::<serde_json::Map<String, Value>>(),
            });
            Ok(Blueprint {
                spec: InstanceSpec {
                    interpreter: prepared.python.clone(),
                    package_dir: prepared.package_dir.clone(),
                    env,
                    context,
                    memory_bytes: (target.memory_mib.max(1) as u64) << 20,
                    start_timeout: settings.start_timeout,
                },
                logs: sink,
                events,
                hold: Box::new(prepared),
            })
        }
    }
}

/// How a request to the code ended.
enum Settled {
    Succeeded(Value),
    /// Why it failed, in words for the user.
    Failed(String),
}

/// What the code's answer to a request of `shape` means for the request:
/// its output checked against the deployment's, or why it failed. A full
/// express queue is no answer: the caller gets it as an error.
fn settle(
    served: Result<CallOutcome, Refused>,
    target: &ServingTarget,
    shape: Shape,
    timeout: Duration,
) -> Result<Settled, NotServed> {
    let failure = match served {
        Ok(CallOutcome::Returned(output)) => {
            return Ok(
                match request_data::check_output(
                    target.output_type,
                    &target.output_fields,
                    &output,
                    shape,
                ) {
                    Ok(()) => Settled::Succeeded(output),
                    Err(problem) => Settled::Failed(format!(
                        "The deployment returned an invalid output: {problem}"
                    )),
                },
            )
        }
        Ok(CallOutcome::Raised(error)) => error,
        Ok(CallOutcome::TimedOut) => format!(
            "The request did not finish within its timeout of {} s; its instance was stopped",
            timeout.as_secs()
        ),
        Ok(CallOutcome::Crashed(reason)) => {
            format!("The instance processing the request crashed: {reason}")
        }
        Ok(CallOutcome::Stopped(reason)) => {
            format!("The request was stopped: {reason}")
        }
        Err(Refused::QueueFull { limit }) => {
            return Err(NotServed::Busy(format!(
                "Too many requests are waiting for version '{}' of deployment '{}' \
                 (its maximum_queue_size_express is {limit}): retry later, or raise the \
                 version's maximum_instances or maximum_queue_size_express",
                target.version_name, target.deployment_name
            )))
        }
        Err(Refused::Unstartable(reason)) => format!("The deployment could not start: {reason}"),
        Err(Refused::Unprepared(reason)) => {
            format!("The deployment's instances could not be prepared: {reason}")
        }
        Err(Refused::NoInstanceInTime) => format!(
            "The request did not finish within its timeout of {} s: it waited for a free \
             instance all that time (the version has at most {} instances)",
            timeout.as_secs(),
            target.maximum_instances
        ),
    };
    Ok(Settled::Failed(failure))
}

/// The revision that serves the target, or why it cannot serve.
fn serving_revision(target: &ServingTarget) -> Result<RevisionToRun, NotServed> {
    match &target.active_revision {
        Some(revision) if target.status == "available" || target.status == "building" => {
            Ok(RevisionToRun {
                id: revision.id,
                object_key: revision.object_key.clone(),
                language: target.language.clone(),
            })
        }
        _ => Err(NotServed::Rejected(format!(
            "Version '{}' of deployment '{}' is not available (its status is '{}'): \
             upload a deployment package and wait for its build to succeed",
            target.version_name, target.deployment_name, target.status
        ))),
    }
}

/// Variables the hosted service sets for deployment code too.
fn hosted_variables(target: &ServingTarget) -> Vec<(String, String)> {
    vec![
        ("PROJECT_NAME".to_owned(), target.project_name.clone()),
        ("DEPLOYMENT_NAME".to_owned(), target.deployment_name.clone()),
        ("DEPLOYMENT_VERSION".to_owned(), target.version_name.clone()),
    ]
}

/// Everything an instance is made of: equal for interchangeable instances.
fn fingerprint(target: &ServingTarget) -> Fingerprint {
    let mut hasher = DefaultHasher::new();
    (
        &target.active_revision,
        &target.project_name,
        &target.deployment_name,
        &target.version_name,
        target.input_type.as_str(),
        target.output_type.as_str(),
        &target.language,
        target.memory_mib,
        &target.variables,
    )
        .hash(&mut hasher);
    Fingerprint(hasher.finish())
}

fn scaling(target: &ServingTarget) -> Scaling {
    Scaling {
        minimum: target.minimum_instances.max(0) as usize,
        maximum: target.maximum_instances.max(0) as usize,
        idle_time: Duration::from_secs(target.maximum_idle_time.max(0) as u64),
        queue_limit: target.maximum_queue_size_express.max(0) as usize,
    }
}

/// Turns the code's output into log lines of its request, and the pool's
/// notes into the version's system lines.
impl LogWriter {
    pub(crate) fn events(&self, project_id: Uuid, tags: LogTags) -> EventSink {
        let writer = self.clone();
        Arc::new(move |level: crate::Level, text: String| {
            writer.push(NewLogLine {
                project_id,
                tags: tags.clone(),
                system: true,
                level: domain_level(level),
                text,
            })
        })
    }

    pub(crate) fn sink(&self, project_id: Uuid, tags: LogTags) -> LogSink {
        let writer = self.clone();
        Arc::new(move |line: LogLine| {
            writer.push(NewLogLine {
                project_id,
                tags: LogTags {
                    deployment_request_id: line.request_id,
                    ..tags.clone()
                },
                system: false,
                level: domain_level(line.level),
                text: line.text,
            })
        })
    }
}

fn domain_level(level: crate::Level) -> Level {
    match level {
        crate::Level::Info => Level::Info,
        crate::Level::Error => Level::Error,
    }
}
