//! Batch requests: queued for the version's queue workers (crates/runtime)
//! and collected later. batch_deployment_requests_create and
//! batch_deployment_version_requests_create, collect
//! (deployment_requests_batch_get), delete many
//! (deployment_requests_batch_delete), and the update that cancels one
//! (deployment_requests_update), each also for a version.
//!
//! Everything that reads or changes stored requests goes through the
//! version the path names, as the direct requests' routes do
//! ([`RequestsPath`]), so another version's request is not found.

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use ubiops_domain::request_data::{self, InputError};
use ubiops_domain::requests::RequestStatus;
use ubiops_domain::version::MAX_NOTIFICATION_GROUP_LENGTH;
use ubiops_runtime::Serving;
use ubiops_storage::NewBatch;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::requests::{
    check_priority, not_served, parse_timeout, query_values, version_id, InputBody, RequestDetail,
    RequestInput, RequestsPath, MAX_REQUEST_BODY_BYTES,
};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::paths::{DeploymentName, RequestId, VersionName};
use crate::AppState;

const TAG: &str = "Deployment Requests";

/// A batch request's timeout when none is given, and the most it may be
/// (documented: 4 and 48 hours).
const DEFAULT_TIMEOUT_SECONDS: u64 = 14_400;
const MAX_TIMEOUT_SECONDS: u64 = 172_800;

/// The most ids one collect or delete takes (documented).
const MAX_IDS: usize = 250;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_for_deployment))
        .routes(routes!(create_for_version))
        // Up to 250 inputs, each as large as a direct request's.
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .routes(routes!(collect_for_deployment))
        .routes(routes!(collect_for_version))
        .routes(routes!(delete_many_for_deployment))
        .routes(routes!(delete_many_for_version))
        .routes(routes!(update_for_deployment))
        .routes(routes!(update_for_version))
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct BatchQuery {
    /// Seconds each request may take from its creation, waiting in the
    /// queue included: 1 to 172800, 14400 when not given.
    timeout: Option<String>,
    /// Stored with the requests (at most 64 characters); this server sends
    /// no notifications.
    notification_group: Option<String>,
    /// 0 (high) or 1 (standard), for the newer clients; the queue here
    /// takes requests oldest first whatever their priority.
    priority: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for BatchQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let [timeout, notification_group, priority] =
            query_values(parts, ["timeout", "notification_group", "priority"])?;
        Ok(BatchQuery {
            timeout,
            notification_group,
            priority,
        })
    }
}

/// A batch's settings, checked.
struct BatchSettings {
    timeout_seconds: i32,
    notification_group: Option<String>,
}

impl BatchQuery {
    fn settings(self) -> ApiResult<BatchSettings> {
        let timeout = parse_timeout(
            self.timeout.as_deref(),
            DEFAULT_TIMEOUT_SECONDS,
            MAX_TIMEOUT_SECONDS,
        )?;
        check_priority(self.priority.as_deref())?;
        // The same rule as a version's default_notification_group: `""` is
        // none, since the clients refuse an empty string in answers.
        let notification_group = ubiops_domain::text::optional_text(
            "notification_group",
            self.notification_group,
            MAX_NOTIFICATION_GROUP_LENGTH,
        )?;
        Ok(BatchSettings {
            // At most MAX_TIMEOUT_SECONDS, well within an i32.
            timeout_seconds: timeout.as_secs() as i32,
            notification_group,
        })
    }
}

/// A queued request, as the create answers it.
#[derive(Serialize, ToSchema)]
struct BatchCreated {
    id: Uuid,
    deployment: String,
    version: String,
    /// Always `pending`: the request waits in the version's queue.
    status: &'static str,
    time_created: DateTime<Utc>,
}

/// Queues requests to the deployment's default version, one per input;
/// collect them later. One bad input refuses them all.
#[utoipa::path(post, path = "/projects/{project_name}/deployments/{deployment_name}/requests/batch",
    operation_id = "batch_deployment_requests_create", tag = TAG, params(BatchQuery),
    request_body(description = "A list of 1 to 250 inputs, or a single one",
        content((RequestInput = "application/json"), (String = "text/plain"))),
    responses((status = 201, body = Vec<BatchCreated>)))]
async fn create_for_deployment(
    State(state): State<AppState>,
    principal: Principal,
    path: DeploymentName,
    query: BatchQuery,
    body: Result<InputBody, ApiError>,
) -> ApiResult<(StatusCode, Json<Vec<BatchCreated>>)> {
    create(state, principal, &path, query, body).await
}

/// Queues requests to one version, one per input; collect them later. One
/// bad input refuses them all.
#[utoipa::path(post,
    path = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/requests/batch",
    operation_id = "batch_deployment_version_requests_create", tag = TAG, params(BatchQuery),
    request_body(description = "A list of 1 to 250 inputs, or a single one",
        content((RequestInput = "application/json"), (String = "text/plain"))),
    responses((status = 201, body = Vec<BatchCreated>)))]
async fn create_for_version(
    State(state): State<AppState>,
    principal: Principal,
    path: VersionName,
    query: BatchQuery,
    body: Result<InputBody, ApiError>,
) -> ApiResult<(StatusCode, Json<Vec<BatchCreated>>)> {
    create(state, principal, &path, query, body).await
}

/// As for a direct request, the query and the body are checked before the
/// names are looked up, and the inputs before the version's state: what the
/// caller must fix comes first. The answer is always a list, also for a
/// single input (the clients parse a list).
async fn create(
    state: AppState,
    principal: Principal,
    path: &impl RequestsPath,
    query: BatchQuery,
    body: Result<InputBody, ApiError>,
) -> ApiResult<(StatusCode, Json<Vec<BatchCreated>>)> {
    let settings = query.settings()?;
    let InputBody(data) = body?;
    let (project, deployment, version) = path.names();
    let target = state
        .store
        .serving_target(project, deployment, version)
        .await?;
    // Output file fields too: such a request could never succeed.
    request_data::check_supported(&target.input_fields, &target.output_fields)
        .map_err(input_error)?;
    let inputs = request_data::batch_inputs(target.input_type, &target.input_fields, data)
        .map_err(input_error)?;
    // Refused up front, rather than queued to fail later.
    Serving::check_servable(&target).map_err(not_served)?;
    let queued = state
        .store
        .enqueue_batch(&NewBatch {
            project_id: target.project_id,
            deployment_id: target.deployment_id,
            version_id: target.version_id,
            version_name: target.version_name.clone(),
            inputs,
            created_by: principal.actor.email,
            // As for direct requests: the 3.13 client wants string values.
            origin: json!({
                "deployment": target.deployment_name,
                "deployment_version": target.version_name,
            }),
            timeout_seconds: settings.timeout_seconds,
            notification_group: settings.notification_group,
            queue_limit: i64::from(target.maximum_queue_size_batch),
        })
        .await?;
    let created = queued
        .into_iter()
        .map(|queued| BatchCreated {
            id: queued.id,
            deployment: target.deployment_name.clone(),
            version: target.version_name.clone(),
            status: RequestStatus::Pending.as_str(),
            time_created: queued.time_created,
        })
        .collect();
    Ok((StatusCode::CREATED, Json(created)))
}

fn input_error(error: InputError) -> ApiError {
    ApiError::bad_request(error.message())
}

/// The body of collect and delete: a JSON list of at most [`MAX_IDS`]
/// request ids, each taken once. Checked whole before anything is looked
/// up, naming the first bad item.
struct RequestIds(Vec<Uuid>);

impl<S: Send + Sync> FromRequest<S> for RequestIds {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(body) = Json::<Value>::from_request(request, state).await?;
        let Value::Array(items) = body else {
            return Err(ApiError::bad_request(
                "The body must be a JSON list of request ids, like [\"<id>\", \"<id>\"]",
            ));
        };
        if items.len() > MAX_IDS {
            return Err(ApiError::bad_request(format!(
                "At most {MAX_IDS} request ids can be given at once; this list holds {}",
                items.len()
            )));
        }
        let mut ids = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let id = item
                .as_str()
                .and_then(|text| Uuid::parse_str(text).ok())
                .ok_or_else(|| {
                    let quoted: String = item.to_string().chars().take(40).collect();
                    ApiError::bad_request(format!(
                        "item {}: {quoted} is not a request id (a UUID such as \
                         \"2f909aeb-5c7e-4974-970d-cd0a6a073aca\")",
                        index + 1
                    ))
                })?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(RequestIds(ids))
    }
}

async fn collect(
    state: &AppState,
    path: &impl RequestsPath,
    RequestIds(ids): RequestIds,
) -> ApiResult<Json<Vec<RequestDetail>>> {
    let version = version_id(state, path).await?;
    let requests = state.store.get_requests(version, &ids).await?;
    Ok(Json(
        requests
            .into_iter()
            .map(|request| RequestDetail::new(request, false))
            .collect(),
    ))
}

/// Several requests of the deployment's default version, all or none: an
/// id that is not there is a 404 naming it. Not in the order given.
#[utoipa::path(post,
    path = "/projects/{project_name}/deployments/{deployment_name}/requests/collect",
    operation_id = "deployment_requests_batch_get", tag = TAG,
    request_body(description = "A list of at most 250 request ids", content = Vec<Uuid>),
    responses((status = 200, body = Vec<RequestDetail>)))]
async fn collect_for_deployment(
    State(state): State<AppState>,
    path: DeploymentName,
    ids: RequestIds,
) -> ApiResult<Json<Vec<RequestDetail>>> {
    collect(&state, &path, ids).await
}

/// Several requests of one version, all or none: an id that is not there is
/// a 404 naming it. Not in the order given.
#[utoipa::path(post,
    path = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/requests/collect",
    operation_id = "deployment_version_requests_batch_get", tag = TAG,
    request_body(description = "A list of at most 250 request ids", content = Vec<Uuid>),
    responses((status = 200, body = Vec<RequestDetail>)))]
async fn collect_for_version(
    State(state): State<AppState>,
    path: VersionName,
    ids: RequestIds,
) -> ApiResult<Json<Vec<RequestDetail>>> {
    collect(&state, &path, ids).await
}

/// What deleting several requests answers.
#[derive(Serialize, ToSchema)]
struct Deleted {
    /// How many requests were deleted (an id given twice counts once).
    deleted: usize,
}

async fn delete_many(
    state: &AppState,
    path: &impl RequestsPath,
    RequestIds(ids): RequestIds,
) -> ApiResult<Json<Deleted>> {
    let version = version_id(state, path).await?;
    state.store.delete_requests(version, &ids).await?;
    Ok(Json(Deleted { deleted: ids.len() }))
}

/// Deletes several requests of the deployment's default version, all or
/// none: an id that is not there is a 404 naming it, and nothing is
/// deleted. Requests still queued or running may be deleted too.
#[utoipa::path(post,
    path = "/projects/{project_name}/deployments/{deployment_name}/requests/delete",
    operation_id = "deployment_requests_batch_delete", tag = TAG,
    request_body(description = "A list of at most 250 request ids", content = Vec<Uuid>),
    responses((status = 200, body = Deleted)))]
async fn delete_many_for_deployment(
    State(state): State<AppState>,
    path: DeploymentName,
    ids: RequestIds,
) -> ApiResult<Json<Deleted>> {
    delete_many(&state, &path, ids).await
}

/// Deletes several requests of one version, all or none.
#[utoipa::path(post,
    path = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/requests/delete",
    operation_id = "deployment_version_requests_batch_delete", tag = TAG,
    request_body(description = "A list of at most 250 request ids", content = Vec<Uuid>),
    responses((status = 200, body = Deleted)))]
async fn delete_many_for_version(
    State(state): State<AppState>,
    path: VersionName,
    ids: RequestIds,
) -> ApiResult<Json<Deleted>> {
    delete_many(&state, &path, ids).await
}

/// The update of a request: cancelling it is the only one.
#[derive(Deserialize, ToSchema)]
struct RequestUpdate {
    /// `cancelled`, the only value.
    status: Option<String>,
    /// Sent by the 3.13 client; ignored, since a cancelled request never
    /// finishes and so would notify no one. Still read as a string, so that
    /// a body of the wrong shape is a 400.
    #[expect(dead_code, reason = "accepted for the 3.13 client, without effect")]
    notification_group: Option<String>,
}

impl RequestUpdate {
    fn check(&self) -> ApiResult<()> {
        match self.status.as_deref() {
            Some("cancelled") => Ok(()),
            None => Err(ApiError::bad_request(
                "status is required: send {\"status\": \"cancelled\"} to cancel the request, \
                 the only update a request takes",
            )),
            Some(other) => Err(ApiError::bad_request(format!(
                "status can only be 'cancelled' (to cancel the request), not '{}'",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }
}

/// A pending request is cancelled at once; a processing one becomes
/// `cancelled_pending` until its worker lets go; a finished one is a 400.
/// Answers the request as a get does.
async fn update(
    state: &AppState,
    path: &impl RequestsPath,
    id: Result<RequestId, ApiError>,
    update: RequestUpdate,
) -> ApiResult<Json<RequestDetail>> {
    update.check()?;
    let version = version_id(state, path).await?;
    let RequestId(id) = id?;
    let request = state.store.cancel_request(version, id).await?;
    Ok(Json(RequestDetail::new(request, false)))
}

/// Cancels a request of the deployment's default version.
#[utoipa::path(patch,
    path = "/projects/{project_name}/deployments/{deployment_name}/requests/{request_id}",
    operation_id = "deployment_requests_update", tag = TAG, request_body = RequestUpdate,
    responses((status = 200, body = RequestDetail)))]
async fn update_for_deployment(
    State(state): State<AppState>,
    path: DeploymentName,
    id: Result<RequestId, ApiError>,
    JsonBody(body): JsonBody<RequestUpdate>,
) -> ApiResult<Json<RequestDetail>> {
    update(&state, &path, id, body).await
}

/// Cancels a request of one version.
#[utoipa::path(patch,
    path = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/requests/{request_id}",
    operation_id = "deployment_version_requests_update", tag = TAG, request_body = RequestUpdate,
    responses((status = 200, body = RequestDetail)))]
async fn update_for_version(
    State(state): State<AppState>,
    path: VersionName,
    id: Result<RequestId, ApiError>,
    JsonBody(body): JsonBody<RequestUpdate>,
) -> ApiResult<Json<RequestDetail>> {
    update(&state, &path, id, body).await
}
