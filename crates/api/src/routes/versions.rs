//! deployment_versions_create, _list, _get, _update and _delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use ubiops_domain::environment::environment_name;
use ubiops_domain::instance_types::instance_type_group_id;
use ubiops_domain::labels::{LabelFilter, Labels};
use ubiops_domain::version::{language_description, RetentionMode, VersionRequest};
use ubiops_domain::version_settings::RuntimeSettings;
use ubiops_storage::Version;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::ListQuery;
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{JsonBody, QueryParams};
use crate::paths::{DeploymentName, VersionName};
use crate::AppState;

const TAG: &str = "Versions";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, delete))
}

/// One shape for every version response: the union of the documented
/// create, list and detail fields, plus the names newer clients read
/// (`environment*`, `instance_type_group_*`, `latest_revision`, `default`,
/// `maximum_queue_size` and the settings only they send). Clients ignore
/// keys they do not know.
#[derive(Serialize, ToSchema)]
struct VersionResponse {
    id: Uuid,
    deployment: String,
    version: String,
    /// Whether this is the deployment's default version.
    default: bool,
    description: Option<String>,
    language: String,
    language_description: Option<&'static str>,
    environment: String,
    environment_name: String,
    environment_display_name: Option<&'static str>,
    status: &'static str,
    active_revision: Option<Uuid>,
    latest_build: Option<Uuid>,
    latest_revision: Option<Uuid>,
    memory_allocation: i32,
    instance_type: String,
    instance_type_group_id: Uuid,
    instance_type_group_name: String,
    maximum_instances: i32,
    minimum_instances: i32,
    maximum_idle_time: i32,
    labels: Labels,
    creation_date: DateTime<Utc>,
    last_updated: DateTime<Utc>,
    last_file_upload: Option<DateTime<Utc>>,
    monitoring: Option<String>,
    default_notification_group: Option<String>,
    request_retention_time: i32,
    request_retention_mode: RetentionMode,
    maximum_queue_size_express: i32,
    maximum_queue_size_batch: i32,
    maximum_queue_size: i32,
    has_request_method: bool,
    has_requests_method: bool,
    static_ip: bool,
    restart_request_interruption: bool,
    /// `environment_tag`, `scaling_strategy`, `instance_processes`, `ports`,
    /// `health_check`, `command` and `args`.
    #[serde(flatten)]
    runtime: RuntimeSettings,
}

impl VersionResponse {
    fn new(deployment: &str, version: Version) -> Self {
        let settings = version.settings;
        VersionResponse {
            id: version.id,
            deployment: deployment.to_owned(),
            default: version.is_default,
            maximum_queue_size: settings.maximum_queue_size(),
            language_description: language_description(&settings.language),
            environment: environment_name(&settings.language),
            environment_name: environment_name(&settings.language),
            environment_display_name: language_description(&settings.language),
            version: settings.name,
            description: settings.description,
            language: settings.language,
            status: version.status.as_str(),
            active_revision: version.active_revision,
            latest_build: version.latest_build,
            latest_revision: version.latest_revision,
            memory_allocation: settings.memory_allocation,
            instance_type_group_id: instance_type_group_id(&settings.instance_type),
            instance_type_group_name: settings.instance_type.clone(),
            instance_type: settings.instance_type,
            maximum_instances: settings.maximum_instances,
            minimum_instances: settings.minimum_instances,
            maximum_idle_time: settings.maximum_idle_time,
            labels: settings.labels,
            creation_date: version.creation_date,
            last_updated: version.last_updated,
            last_file_upload: version.last_file_upload,
            monitoring: settings.monitoring,
            default_notification_group: settings.default_notification_group,
            request_retention_time: settings.request_retention_time,
            request_retention_mode: settings.request_retention_mode,
            maximum_queue_size_express: settings.maximum_queue_size_express,
            maximum_queue_size_batch: settings.maximum_queue_size_batch,
            has_request_method: version.has_request_method,
            has_requests_method: version.has_requests_method,
            static_ip: settings.static_ip,
            restart_request_interruption: settings.restart_request_interruption,
            runtime: settings.runtime,
        }
    }
}

#[utoipa::path(get, path = "/projects/{project_name}/deployments/{deployment_name}/versions",
    operation_id = "deployment_versions_list", tag = TAG, params(ListQuery),
    responses((status = 200, body = Vec<VersionResponse>)))]
async fn list(
    State(state): State<AppState>,
    path: DeploymentName,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<VersionResponse>>> {
    let filter = LabelFilter::parse_optional(query.labels.as_deref())?;
    let deployment = path.resolve(&state).await?;
    let versions = state
        .store
        .list_versions(deployment.id, filter.as_ref())
        .await?;
    Ok(Json(
        versions
            .into_iter()
            .map(|v| VersionResponse::new(&deployment.name, v))
            .collect(),
    ))
}

#[utoipa::path(post, path = "/projects/{project_name}/deployments/{deployment_name}/versions",
    operation_id = "deployment_versions_create", tag = TAG, request_body = VersionRequest,
    responses((status = 201, body = VersionResponse)))]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    path: DeploymentName,
    JsonBody(body): JsonBody<VersionRequest>,
) -> ApiResult<(StatusCode, Json<VersionResponse>)> {
    let deployment = path.resolve(&state).await?;
    let settings = body.create(&state.instance_types)?;
    let version = state
        .store
        .create_version(deployment.as_ref(), &settings, &principal.actor)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(VersionResponse::new(&deployment.name, version)),
    ))
}

/// Project, deployment and version are found by one query.
#[utoipa::path(get, path = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}",
    operation_id = "deployment_versions_get", tag = TAG, responses((status = 200, body = VersionResponse)))]
async fn read(
    State(state): State<AppState>,
    path: VersionName,
) -> ApiResult<Json<VersionResponse>> {
    let version = state
        .store
        .find_version(&path.project_name, &path.deployment_name, &path.version)
        .await?;
    Ok(Json(VersionResponse::new(&path.deployment_name, version)))
}

#[utoipa::path(patch, path = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}",
    operation_id = "deployment_versions_update", tag = TAG, request_body = VersionRequest,
    responses((status = 200, body = VersionResponse)))]
async fn update(
    State(state): State<AppState>,
    principal: Principal,
    path: VersionName,
    JsonBody(body): JsonBody<VersionRequest>,
) -> ApiResult<Json<VersionResponse>> {
    let deployment = path.resolve_deployment(&state).await?;
    let catalog = state.instance_types.clone();
    let version = state
        .store
        .update_version(
            deployment.as_ref(),
            &path.version,
            |current| body.update(current, &catalog),
            &principal.actor,
        )
        .await?;
    Ok(Json(VersionResponse::new(&deployment.name, version)))
}

/// Deletes a version with its variables, revisions and files.
#[utoipa::path(delete, path = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}",
    operation_id = "deployment_versions_delete", tag = TAG, responses((status = 204, description = "Deleted")))]
async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    path: VersionName,
) -> ApiResult<StatusCode> {
    let deployment = path.resolve_deployment(&state).await?;
    state
        .store
        .delete_version(deployment.as_ref(), &path.version, &principal.actor)
        .await?;
    state.purge_deleted_files();
    Ok(StatusCode::NO_CONTENT)
}
