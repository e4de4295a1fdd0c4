//! deployment_versions_create, _list, _get, _update and _delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ubiops_domain::labels::{LabelFilter, Labels};
use ubiops_domain::version::{language_description, RetentionMode, VersionRequest};
use ubiops_storage::Version;
use uuid::Uuid;

use super::authorized_deployment;
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/{project_name}/deployments/{deployment_name}/versions",
            get(list).post(create),
        )
        .route(
            "/projects/{project_name}/deployments/{deployment_name}/versions/{version}",
            get(read).patch(update).delete(delete),
        )
}

/// One shape for every version response: the union of the documented
/// create, list and detail fields. Clients ignore keys they do not know.
#[derive(Serialize)]
struct VersionResponse {
    id: Uuid,
    deployment: String,
    version: String,
    description: Option<String>,
    language: String,
    language_description: Option<&'static str>,
    status: &'static str,
    active_revision: Option<Uuid>,
    latest_build: Option<Uuid>,
    memory_allocation: i32,
    instance_type: String,
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
    has_request_method: bool,
    has_requests_method: bool,
    static_ip: bool,
    restart_request_interruption: bool,
}

impl VersionResponse {
    fn new(deployment: &str, version: Version) -> Self {
        let settings = version.settings;
        VersionResponse {
            id: version.id,
            deployment: deployment.to_owned(),
            language_description: language_description(&settings.language),
            version: settings.name,
            description: settings.description,
            language: settings.language,
            status: version.status.as_str(),
            active_revision: version.active_revision,
            latest_build: version.latest_build,
            memory_allocation: settings.memory_allocation,
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
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    labels: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathParams((project_name, deployment_name)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<VersionResponse>>> {
    let filter = LabelFilter::parse_optional(query.labels.as_deref())?;
    let deployment =
        authorized_deployment(&state, &principal, &project_name, &deployment_name).await?;
    let versions = state
        .store
        .list_versions(deployment.id, filter.as_ref())
        .await?;
    Ok(Json(
        versions
            .into_iter()
            .map(|v| VersionResponse::new(&deployment_name, v))
            .collect(),
    ))
}

async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathParams((project_name, deployment_name)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<VersionRequest>,
) -> ApiResult<(StatusCode, Json<VersionResponse>)> {
    let deployment =
        authorized_deployment(&state, &principal, &project_name, &deployment_name).await?;
    let settings = body.create(&state.instance_types)?;
    let version = state
        .store
        .create_version(deployment.as_ref(), &settings, &principal.actor)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(VersionResponse::new(&deployment_name, version)),
    ))
}

async fn read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathParams((project_name, deployment_name, version)): PathParams<(String, String, String)>,
) -> ApiResult<Json<VersionResponse>> {
    principal.authorize(&project_name)?;
    let version = state
        .store
        .find_version(&project_name, &deployment_name, &version)
        .await?;
    Ok(Json(VersionResponse::new(&deployment_name, version)))
}

async fn update(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathParams((project_name, deployment_name, version)): PathParams<(String, String, String)>,
    JsonBody(body): JsonBody<VersionRequest>,
) -> ApiResult<Json<VersionResponse>> {
    let deployment =
        authorized_deployment(&state, &principal, &project_name, &deployment_name).await?;
    let catalog = state.instance_types.clone();
    let version = state
        .store
        .update_version(
            deployment.as_ref(),
            &version,
            |current| body.update(current, &catalog),
            &principal.actor,
        )
        .await?;
    Ok(Json(VersionResponse::new(&deployment_name, version)))
}

async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathParams((project_name, deployment_name, version)): PathParams<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let deployment =
        authorized_deployment(&state, &principal, &project_name, &deployment_name).await?;
    state
        .store
        .delete_version(deployment.as_ref(), &version, &principal.actor)
        .await?;
    state.purge_deleted_files();
    Ok(StatusCode::NO_CONTENT)
}
