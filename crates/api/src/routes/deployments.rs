//! deployments_create, _list, _get, _update and _delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ubiops_domain::deployment::{DeploymentCreate, DeploymentUpdate, Field, IoType};
use ubiops_domain::labels::{LabelFilter, Labels};
use ubiops_domain::query::optional_bool;
use ubiops_storage::Deployment;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{JsonBody, QueryParams};
use crate::paths::{DeploymentName, ProjectName};
use crate::rendered::RenderedJson;
use crate::AppState;

const TAG: &str = "Deployments";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, delete))
}

/// One shape for every deployment response: the union of the documented
/// create, list and detail fields, plus `supports_request_format`, which the
/// CLI needs before it uploads. Clients ignore keys they do not know.
#[derive(Serialize, ToSchema)]
struct DeploymentResponse {
    id: Uuid,
    name: String,
    project: String,
    description: Option<String>,
    input_type: IoType,
    output_type: IoType,
    input_fields: Vec<Field>,
    output_fields: Vec<Field>,
    labels: Labels,
    creation_date: DateTime<Utc>,
    last_updated: DateTime<Utc>,
    default_version: Option<String>,
    number_of_versions: i64,
    supports_request_format: bool,
}

impl DeploymentResponse {
    fn new(project: &str, deployment: Deployment) -> Self {
        DeploymentResponse {
            id: deployment.id,
            name: deployment.name,
            project: project.to_owned(),
            description: deployment.description,
            input_type: deployment.input_type,
            output_type: deployment.output_type,
            input_fields: deployment.input_fields,
            output_fields: deployment.output_fields,
            labels: deployment.labels,
            creation_date: deployment.creation_date,
            last_updated: deployment.last_updated,
            default_version: deployment.default_version,
            number_of_versions: deployment.number_of_versions,
            supports_request_format: true,
        }
    }
}

/// The query of `deployments_list`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeploymentListQuery {
    /// `key:value,key:value`: only deployments with at least one of these labels.
    labels: Option<String>,
    /// Only deployments that do (`true`) or do not (`false`) support the
    /// request format; every deployment on this server does.
    #[param(value_type = Option<bool>)]
    supports_request_format: Option<String>,
}

#[utoipa::path(get, path = "/projects/{project_name}/deployments", operation_id = "deployments_list",
    tag = TAG, params(DeploymentListQuery), responses((status = 200, body = Vec<DeploymentResponse>)))]
async fn list(
    State(state): State<AppState>,
    project: ProjectName,
    QueryParams(query): QueryParams<DeploymentListQuery>,
) -> ApiResult<RenderedJson> {
    let filter = LabelFilter::parse_optional(query.labels.as_deref())?;
    let supports_request_format = optional_bool(
        "supports_request_format",
        query.supports_request_format.as_deref(),
    )?;
    if supports_request_format == Some(false) {
        project.load(&state).await?;
        return Ok(RenderedJson::empty_array());
    }
    let project_name = project.project_name;
    let listed = state
        .store
        .list_deployments(&project_name, filter.as_ref(), |stamp| {
            state.rendered.get(*stamp)
        })
        .await?;
    state
        .rendered
        .json_array(listed, |d| DeploymentResponse::new(&project_name, d))
}

#[utoipa::path(post, path = "/projects/{project_name}/deployments", operation_id = "deployments_create",
    tag = TAG, request_body = DeploymentCreate, responses((status = 201, body = DeploymentResponse)))]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ProjectName { project_name }: ProjectName,
    JsonBody(body): JsonBody<DeploymentCreate>,
) -> ApiResult<(StatusCode, Json<DeploymentResponse>)> {
    let new = body.validate()?;
    let deployment = state
        .store
        .create_deployment(&project_name, &new, &principal.actor)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(DeploymentResponse::new(&project_name, deployment)),
    ))
}

/// Answered from the cached rendering when the row has not changed: project
/// and deployment are resolved by the one query that reads the row's version.
#[utoipa::path(get, path = "/projects/{project_name}/deployments/{deployment_name}",
    operation_id = "deployments_get", tag = TAG, responses((status = 200, body = DeploymentResponse)))]
async fn read(State(state): State<AppState>, path: DeploymentName) -> ApiResult<RenderedJson> {
    let found = state
        .store
        .find_deployment(&path.project_name, &path.deployment_name, |stamp| {
            state.rendered.get(*stamp)
        })
        .await?;
    state
        .rendered
        .json_one(found, |d| DeploymentResponse::new(&path.project_name, d))
}

#[utoipa::path(patch, path = "/projects/{project_name}/deployments/{deployment_name}",
    operation_id = "deployments_update", tag = TAG, request_body = DeploymentUpdate,
    responses((status = 200, body = DeploymentResponse)))]
async fn update(
    State(state): State<AppState>,
    principal: Principal,
    path: DeploymentName,
    JsonBody(body): JsonBody<DeploymentUpdate>,
) -> ApiResult<Json<DeploymentResponse>> {
    let project = path.load_project(&state).await?;
    let deployment_name = path.deployment_name;
    // Fields are validated against the input/output types, which never change.
    let current = state
        .store
        .get_deployment(project.id, &deployment_name)
        .await?;
    let changes = body.validate(current.input_type, current.output_type)?;
    let deployment = state
        .store
        .update_deployment(project.id, &deployment_name, &changes, &principal.actor)
        .await?;
    Ok(Json(DeploymentResponse::new(&project.name, deployment)))
}

/// Deletes a deployment with its versions, variables and files.
#[utoipa::path(delete, path = "/projects/{project_name}/deployments/{deployment_name}",
    operation_id = "deployments_delete", tag = TAG, responses((status = 204, description = "Deleted")))]
async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    path: DeploymentName,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_deployment(&path.project_name, &path.deployment_name, &principal.actor)
        .await?;
    state.purge_deleted_files();
    Ok(StatusCode::NO_CONTENT)
}
