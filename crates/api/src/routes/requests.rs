//! Direct requests and the stored requests of deployments and versions:
//! deployment_requests_create/_get/_list/_delete, the same for a version
//! (deployment_version_requests_*), and project_requests_list.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ubiops_domain::requests::{RequestFilter, RequestListQuery};
use ubiops_runtime::{DirectRequest, NotServed, Serving};
use ubiops_storage::{RequestScope, RequestSummary, StoredRequest};
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryParams;
use crate::paths::{DeploymentName, ProjectPath, RequestId, VersionName};
use crate::AppState;

const TAG: &str = "Deployment Requests";

/// A direct request's timeout when none is given, and the most it may be.
const DEFAULT_TIMEOUT_SECONDS: u64 = 300;
const MAX_TIMEOUT_SECONDS: u64 = 3600;

/// The largest input of a direct request: models take images and tables,
/// far beyond the API's other bodies, and the runner carries up to 64 MiB.
pub const MAX_REQUEST_BODY_BYTES: usize = 32 * 1024 * 1024;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_for_deployment, list_for_deployment))
        .routes(routes!(create_for_version, list_for_version))
        .routes(routes!(stream_for_deployment))
        .routes(routes!(stream_for_version))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .routes(routes!(get_for_deployment, delete_for_deployment))
        .routes(routes!(get_for_version, delete_for_version))
        .routes(routes!(list_for_project))
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct CreateQuery {
    /// Seconds the request may take: 1 to 3600, 300 when not given.
    timeout: Option<String>,
    /// Accepted for the newer clients; direct requests have no priority here.
    priority: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for CreateQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let [timeout, priority] = query_values(parts, ["timeout", "priority"])?;
        Ok(CreateQuery { timeout, priority })
    }
}

impl CreateQuery {
    fn timeout(&self) -> ApiResult<Duration> {
        parse_timeout(
            self.timeout.as_deref(),
            DEFAULT_TIMEOUT_SECONDS,
            MAX_TIMEOUT_SECONDS,
        )
    }
}

/// The values of the query parameters `names`, read by hand rather than by
/// serde: the official client's streaming helper sends `timeout` twice (in
/// the URL it builds and again as a parameter), which is fine as long as
/// both say the same. Other parameters are ignored.
pub(super) fn query_values<const N: usize>(
    parts: &Parts,
    names: [&str; N],
) -> ApiResult<[Option<String>; N]> {
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    let pairs = url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes());
    for (name, value) in pairs {
        let Some(slot) = names
            .iter()
            .position(|known| *known == name)
            .map(|index| &mut values[index])
        else {
            continue;
        };
        match slot {
            Some(earlier) if *earlier != value => {
                return Err(ApiError::bad_request(format!(
                    "{name} is given twice, with different values"
                )))
            }
            _ => *slot = Some(value.into_owned()),
        }
    }
    Ok(values)
}

/// A request's `timeout` query parameter: whole seconds from 1 to `max`,
/// `default` when not given.
pub(super) fn parse_timeout(raw: Option<&str>, default: u64, max: u64) -> ApiResult<Duration> {
    let Some(raw) = raw else {
        return Ok(Duration::from_secs(default));
    };
    match raw.trim().parse::<u64>() {
        Ok(seconds) if (1..=max).contains(&seconds) => Ok(Duration::from_secs(seconds)),
        _ => Err(ApiError::bad_request(format!(
            "timeout must be a whole number of seconds from 1 to {max}, not '{}'",
            raw.chars().take(40).collect::<String>()
        ))),
    }
}

/// The newer clients' `priority` query parameter: 0 (high) or 1 (standard).
/// Checked, so that a typo is not silently taken for a priority, but
/// without effect here (see docs/API-DECISIONS.md).
pub(super) fn check_priority(raw: Option<&str>) -> ApiResult<()> {
    match raw {
        Some(raw) if raw.trim().parse::<u8>().map_or(true, |p| p > 1) => {
            Err(ApiError::bad_request(format!(
                "priority must be 0 (high) or 1 (standard), not '{}'",
                raw.chars().take(40).collect::<String>()
            )))
        }
        _ => Ok(()),
    }
}

/// The input of a request: a string or a list of strings (plain), an
/// object with the input fields or a list of them (structured).
pub(super) struct RequestInput;

impl utoipa::PartialSchema for RequestInput {
    fn schema() -> RefOr<Schema> {
        data_schema([]).into()
    }
}

impl ToSchema for RequestInput {}

/// Request data and results: a plain deployment's are strings, a
/// structured one's objects, and either's a list of them for many inputs.
fn data_schema(types: impl IntoIterator<Item = Type>) -> Object {
    let mut all = vec![Type::String, Type::Object, Type::Array];
    all.extend(types);
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter(all))
        .build()
}

/// Stored data and results are `null` when not kept.
fn kept_data_schema() -> Object {
    data_schema([Type::Null])
}

/// What a direct request answers.
#[derive(Serialize, ToSchema)]
struct CreateResponse {
    id: Uuid,
    deployment: String,
    version: String,
    /// `completed` or `failed`: a direct request has finished when it answers.
    status: &'static str,
    success: bool,
    #[schema(schema_with = kept_data_schema)]
    result: Option<Value>,
    error_message: Option<String>,
    timeout: u64,
}

/// Makes a request to the deployment's default version and waits for its
/// result. A failure of the code is an answer (`success: false`), not an
/// HTTP error.
#[utoipa::path(post, path = "/projects/{project_name}/deployments/{deployment_name}/requests",
    operation_id = "deployment_requests_create", tag = TAG, params(CreateQuery),
    request_body(content((RequestInput = "application/json"), (String = "text/plain"))),
    responses((status = 200, body = CreateResponse)))]
async fn create_for_deployment(
    State(state): State<AppState>,
    principal: Principal,
    path: DeploymentName,
    query: CreateQuery,
    body: Result<InputBody, ApiError>,
) -> ApiResult<Json<CreateResponse>> {
    let target = path.names();
    create(state, principal, target, query, body)
        .await
        .map(Json)
}

/// Makes a request to one version and waits for its result.
#[utoipa::path(post,
    path = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/requests",
    operation_id = "deployment_version_requests_create", tag = TAG, params(CreateQuery),
    request_body(content((RequestInput = "application/json"), (String = "text/plain"))),
    responses((status = 200, body = CreateResponse)))]
async fn create_for_version(
    State(state): State<AppState>,
    principal: Principal,
    path: VersionName,
    query: CreateQuery,
    body: Result<InputBody, ApiError>,
) -> ApiResult<Json<CreateResponse>> {
    let target = path.names();
    create(state, principal, target, query, body)
        .await
        .map(Json)
}

/// The same as a direct request, answered as an event stream, which is how
/// `ubiops.utils.stream_deployment_request` (and so `ubiops deployments
/// requests create`) makes requests. The code's answer comes as one line at
/// the end: instances here do not stream partial results.
#[utoipa::path(post, path = "/projects/{project_name}/deployments/{deployment_name}/requests/stream",
    operation_id = "deployment_requests_stream", tag = TAG, params(CreateQuery),
    request_body(content((RequestInput = "application/json"), (String = "text/plain"))),
    responses((status = 200, description = "The answer as one line", content_type = "text/event-stream", body = CreateResponse)))]
async fn stream_for_deployment(
    State(state): State<AppState>,
    principal: Principal,
    path: DeploymentName,
    query: CreateQuery,
    body: Result<InputBody, ApiError>,
) -> ApiResult<Response> {
    let target = path.names();
    create(state, principal, target, query, body)
        .await
        .map(event_stream)
}

#[utoipa::path(post,
    path = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/requests/stream",
    operation_id = "deployment_version_requests_stream", tag = TAG, params(CreateQuery),
    request_body(content((RequestInput = "application/json"), (String = "text/plain"))),
    responses((status = 200, description = "The answer as one line", content_type = "text/event-stream", body = CreateResponse)))]
async fn stream_for_version(
    State(state): State<AppState>,
    principal: Principal,
    path: VersionName,
    query: CreateQuery,
    body: Result<InputBody, ApiError>,
) -> ApiResult<Response> {
    let target = path.names();
    create(state, principal, target, query, body)
        .await
        .map(event_stream)
}

fn event_stream(answer: CreateResponse) -> Response {
    let mut line = serde_json::to_string(&answer).unwrap_or_default();
    line.push('\n');
    ([(header::CONTENT_TYPE, "text/event-stream")], line).into_response()
}

/// The input of a direct or batch request: a JSON body, or the text of a
/// `text/plain` one, which is how the clients send a single plain string.
pub(super) struct InputBody(pub(super) Value);

impl<S: Send + Sync> FromRequest<S> for InputBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let text = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim().to_ascii_lowercase().starts_with("text/plain"));
        if !text {
            return match Json::<Value>::from_request(request, state).await {
                Ok(Json(value)) => Ok(InputBody(value)),
                Err(JsonRejection::BytesRejection(error))
                    if error.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    Err(too_large())
                }
                Err(rejection) => Err(rejection.into()),
            };
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|error| {
            if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::Client(error.status(), error.body_text())
            }
        })?;
        String::from_utf8(bytes.to_vec())
            .map(|text| InputBody(Value::String(text)))
            .map_err(|_| ApiError::bad_request("The text/plain request body is not UTF-8 text"))
    }
}

fn too_large() -> ApiError {
    ApiError::Client(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "The request body is larger than the limit of {} MiB for a request's input",
            MAX_REQUEST_BODY_BYTES / (1024 * 1024)
        ),
    )
}

/// The query and the body are checked before the names are looked up, so a
/// malformed request is a 400 whatever the path names; the input is checked
/// against the deployment's fields before any code runs.
async fn create(
    state: AppState,
    principal: Principal,
    (project_name, deployment_name, version_name): (&str, &str, Option<&str>),
    query: CreateQuery,
    body: Result<InputBody, ApiError>,
) -> ApiResult<CreateResponse> {
    let timeout = query.timeout()?;
    check_priority(query.priority.as_deref())?;
    let InputBody(data) = body?;
    let target = state
        .store
        .serving_target(project_name, deployment_name, version_name)
        .await?;
    let shape = Serving::check_input(&target, &data).map_err(not_served)?;
    let (deployment, version) = (target.deployment_name.clone(), target.version_name.clone());
    let answer = state
        .serving
        .direct(DirectRequest {
            target,
            data,
            shape,
            timeout,
            created_by: principal.actor.email,
        })
        .await
        .map_err(not_served)?;
    Ok(CreateResponse {
        id: answer.id,
        deployment,
        version,
        status: if answer.success {
            "completed"
        } else {
            "failed"
        },
        success: answer.success,
        result: answer.result,
        error_message: answer.error_message,
        timeout: timeout.as_secs(),
    })
}

pub(super) fn not_served(error: NotServed) -> ApiError {
    match error {
        NotServed::Rejected(message) => ApiError::bad_request(message),
        NotServed::Busy(message) => ApiError::Client(StatusCode::TOO_MANY_REQUESTS, message),
        NotServed::Storage(error) => error.into(),
    }
}

/// The query of the request lists, as the clients send it; checked by
/// [`RequestFilter::parse`] with messages naming the parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// One of pending, processing, completed, failed, cancelled,
    /// cancelled_pending (several joined with commas).
    status: Option<String>,
    success: Option<String>,
    /// At most this many (50 when not given).
    limit: Option<String>,
    offset: Option<String>,
    /// `asc` or `desc` (the default) by creation time.
    sort: Option<String>,
    pipeline: Option<String>,
    request_schedule: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    search_id: Option<String>,
    /// project_requests_list only: `deployment` or `pipeline`.
    object_type: Option<String>,
}

impl ListQuery {
    fn filter(&self) -> ApiResult<RequestFilter> {
        Ok(RequestFilter::parse(&RequestListQuery {
            status: self.status.as_deref(),
            success: self.success.as_deref(),
            limit: self.limit.as_deref(),
            offset: self.offset.as_deref(),
            sort: self.sort.as_deref(),
            pipeline: self.pipeline.as_deref(),
            request_schedule: self.request_schedule.as_deref(),
            start_date: self.start_date.as_deref(),
            end_date: self.end_date.as_deref(),
            search_id: self.search_id.as_deref(),
            object_type: self.object_type.as_deref(),
        })?)
    }
}

/// A request as the lists show it.
#[derive(Serialize, ToSchema)]
struct RequestListItem {
    id: Uuid,
    deployment: String,
    version: String,
    status: &'static str,
    success: Option<bool>,
    time_created: DateTime<Utc>,
    time_started: Option<DateTime<Utc>>,
    time_completed: Option<DateTime<Utc>>,
    input_size: Option<i64>,
    output_size: Option<i64>,
}

impl From<RequestSummary> for RequestListItem {
    fn from(request: RequestSummary) -> Self {
        RequestListItem {
            id: request.id,
            deployment: request.deployment,
            version: request.version,
            status: request.status.as_str(),
            success: request.success,
            time_created: request.time_created,
            time_started: request.time_started,
            time_completed: request.time_completed,
            input_size: request.input_size,
            output_size: request.output_size,
        }
    }
}

/// A request of a project's list: a deployment request (pipelines have
/// none here).
#[derive(Serialize, ToSchema)]
struct ProjectRequestItem {
    #[serde(flatten)]
    request: RequestListItem,
    pipeline: Option<String>,
}

/// One stored request.
#[derive(Serialize, ToSchema)]
pub(super) struct RequestDetail {
    id: Uuid,
    deployment: String,
    version: String,
    status: &'static str,
    success: Option<bool>,
    time_created: DateTime<Utc>,
    time_started: Option<DateTime<Utc>>,
    time_completed: Option<DateTime<Utc>>,
    /// `null` with `metadata_only`, or when the version keeps metadata only.
    #[schema(schema_with = kept_data_schema)]
    request_data: Option<Value>,
    #[schema(schema_with = kept_data_schema)]
    result: Option<Value>,
    error_message: Option<String>,
    created_by: String,
    notification_group: Option<String>,
    #[schema(value_type = Object)]
    origin: Value,
    retries: i32,
    timeout: i32,
    input_size: Option<i64>,
    output_size: Option<i64>,
}

impl RequestDetail {
    pub(super) fn new(request: StoredRequest, metadata_only: bool) -> Self {
        let (request_data, result) = if metadata_only {
            (None, None)
        } else {
            (request.request_data, request.result)
        };
        RequestDetail {
            id: request.id,
            deployment: request.deployment,
            version: request.version,
            status: request.status.as_str(),
            success: request.success,
            time_created: request.time_created,
            time_started: request.time_started,
            time_completed: request.time_completed,
            request_data,
            result,
            error_message: request.error_message,
            created_by: request.created_by,
            notification_group: request.notification_group,
            origin: request.origin,
            retries: request.retries,
            timeout: request.timeout_seconds,
            input_size: request.input_size,
            output_size: request.output_size,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct GetQuery {
    /// `true`: without the request data and result.
    metadata_only: Option<String>,
}

impl GetQuery {
    fn metadata_only(&self) -> ApiResult<bool> {
        match self
            .metadata_only
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("" | "false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(_) => Err(ApiError::bad_request("metadata_only must be true or false")),
        }
    }
}

/// The paths of a deployment's requests (those of its default version, as
/// documented) and of a version's: project, deployment and version names.
pub(super) trait RequestsPath {
    fn names(&self) -> (&str, &str, Option<&str>);
}

impl RequestsPath for DeploymentName {
    fn names(&self) -> (&str, &str, Option<&str>) {
        (&self.project_name, &self.deployment_name, None)
    }
}

impl RequestsPath for VersionName {
    fn names(&self) -> (&str, &str, Option<&str>) {
        (
            &self.project_name,
            &self.deployment_name,
            Some(&self.version),
        )
    }
}

pub(super) async fn version_id(state: &AppState, path: &impl RequestsPath) -> ApiResult<Uuid> {
    let (project, deployment, version) = path.names();
    let target = state
        .store
        .serving_target(project, deployment, version)
        .await?;
    Ok(target.version_id)
}

async fn list_of(
    state: &AppState,
    path: &impl RequestsPath,
    query: &ListQuery,
) -> ApiResult<Json<Vec<RequestListItem>>> {
    query.filter()?;
    let version = version_id(state, path).await?;
    Ok(Json(
        list(state, RequestScope::Version(version), query).await?,
    ))
}

async fn get_one(
    state: &AppState,
    path: &impl RequestsPath,
    query: &GetQuery,
    id: Result<RequestId, ApiError>,
) -> ApiResult<Json<RequestDetail>> {
    let metadata_only = query.metadata_only()?;
    let version = version_id(state, path).await?;
    let RequestId(id) = id?;
    let request = state.store.get_request(version, id).await?;
    Ok(Json(RequestDetail::new(request, metadata_only)))
}

async fn delete_one(
    state: &AppState,
    path: &impl RequestsPath,
    id: Result<RequestId, ApiError>,
) -> ApiResult<StatusCode> {
    let version = version_id(state, path).await?;
    let RequestId(id) = id?;
    state.store.delete_request(version, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list(
    state: &AppState,
    scope: RequestScope,
    query: &ListQuery,
) -> ApiResult<Vec<RequestListItem>> {
    let filter = query.filter()?;
    let requests = state.store.list_requests(scope, &filter).await?;
    Ok(requests.into_iter().map(Into::into).collect())
}

/// Requests of the deployment's default version, newest first.
#[utoipa::path(get, path = "/projects/{project_name}/deployments/{deployment_name}/requests",
    operation_id = "deployment_requests_list", tag = TAG, params(ListQuery),
    responses((status = 200, body = Vec<RequestListItem>)))]
async fn list_for_deployment(
    State(state): State<AppState>,
    path: DeploymentName,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<RequestListItem>>> {
    list_of(&state, &path, &query).await
}

/// Requests of one version, newest first.
#[utoipa::path(get,
    path = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/requests",
    operation_id = "deployment_version_requests_list", tag = TAG, params(ListQuery),
    responses((status = 200, body = Vec<RequestListItem>)))]
async fn list_for_version(
    State(state): State<AppState>,
    path: VersionName,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<RequestListItem>>> {
    list_of(&state, &path, &query).await
}

/// The deployment requests of a project, newest first.
#[utoipa::path(get, path = "/projects/{project_name}/requests",
    operation_id = "project_requests_list", tag = "Projects", params(ListQuery),
    responses((status = 200, body = Vec<ProjectRequestItem>)))]
async fn list_for_project(
    State(state): State<AppState>,
    ProjectPath(project): ProjectPath,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<ProjectRequestItem>>> {
    if query.object_type.as_deref().unwrap_or_default().is_empty() {
        return Err(ApiError::bad_request(
            "object_type is required: deployment or pipeline",
        ));
    }
    let requests = list(&state, RequestScope::Project(project.id), &query).await?;
    Ok(Json(
        requests
            .into_iter()
            .map(|request| ProjectRequestItem {
                request,
                pipeline: None,
            })
            .collect(),
    ))
}

/// A request of the deployment's default version.
#[utoipa::path(get,
    path = "/projects/{project_name}/deployments/{deployment_name}/requests/{request_id}",
    operation_id = "deployment_requests_get", tag = TAG, params(GetQuery),
    responses((status = 200, body = RequestDetail)))]
async fn get_for_deployment(
    State(state): State<AppState>,
    path: DeploymentName,
    QueryParams(query): QueryParams<GetQuery>,
    id: Result<RequestId, ApiError>,
) -> ApiResult<Json<RequestDetail>> {
    get_one(&state, &path, &query, id).await
}

/// A request of one version.
#[utoipa::path(get,
    path = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/requests/{request_id}",
    operation_id = "deployment_version_requests_get", tag = TAG, params(GetQuery),
    responses((status = 200, body = RequestDetail)))]
async fn get_for_version(
    State(state): State<AppState>,
    path: VersionName,
    QueryParams(query): QueryParams<GetQuery>,
    id: Result<RequestId, ApiError>,
) -> ApiResult<Json<RequestDetail>> {
    get_one(&state, &path, &query, id).await
}

/// Deletes a request of the deployment's default version.
#[utoipa::path(delete,
    path = "/projects/{project_name}/deployments/{deployment_name}/requests/{request_id}",
    operation_id = "deployment_requests_delete", tag = TAG,
    responses((status = 204, description = "Deleted")))]
async fn delete_for_deployment(
    State(state): State<AppState>,
    path: DeploymentName,
    id: Result<RequestId, ApiError>,
) -> ApiResult<StatusCode> {
    delete_one(&state, &path, id).await
}

/// Deletes a request of one version.
#[utoipa::path(delete,
    path = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}/requests/{request_id}",
    operation_id = "deployment_version_requests_delete", tag = TAG,
    responses((status = 204, description = "Deleted")))]
async fn delete_for_version(
    State(state): State<AppState>,
    path: VersionName,
    id: Result<RequestId, ApiError>,
) -> ApiResult<StatusCode> {
    delete_one(&state, &path, id).await
}
