//! Projects: not part of the Deployments documentation, but every deployment
//! lives in one and the clients list them (`/projects`, `/projects/{name}`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ubiops_domain::names::validate_resource_name;
use ubiops_storage::Project;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::JsonBody;
use crate::paths::{ProjectName, ProjectPath};
use crate::AppState;

const TAG: &str = "Projects";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, delete))
}

#[derive(Serialize, ToSchema)]
struct ProjectResponse {
    id: Uuid,
    name: String,
    organization_name: String,
    creation_date: DateTime<Utc>,
}

impl From<Project> for ProjectResponse {
    fn from(project: Project) -> Self {
        ProjectResponse {
            id: project.id,
            name: project.name,
            organization_name: project.organization_name,
            creation_date: project.creation_date,
        }
    }
}

/// `advanced_permissions` and `credits` are sent by the official client's
/// ProjectCreate model; they mean nothing on a self-hosted server.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProjectCreate {
    /// The rule of `validate_resource_name`, as documented for deployments.
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,62}[a-z0-9])?$")]
    name: String,
    #[serde(default)]
    organization_name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    advanced_permissions: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    credits: Option<f64>,
}

/// The projects the token may access.
#[utoipa::path(get, path = "/projects", operation_id = "projects_list", tag = TAG,
    responses((status = 200, body = Vec<ProjectResponse>)))]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Vec<ProjectResponse>>> {
    let projects = state
        .store
        .list_projects(principal.project_scope.as_deref())
        .await?;
    Ok(Json(projects.into_iter().map(Into::into).collect()))
}

/// Creates a project (403 if the token is limited to other projects).
#[utoipa::path(post, path = "/projects", operation_id = "projects_create", tag = TAG,
    request_body = ProjectCreate,
    responses(
        (status = 201, body = ProjectResponse),
        (status = 403, description = "The token is limited to other projects", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<ProjectCreate>,
) -> ApiResult<(StatusCode, Json<ProjectResponse>)> {
    validate_resource_name("project", &body.name)?;
    principal.authorize(&body.name)?;
    let organization = match body.organization_name.as_deref() {
        None | Some("") => state.organization_name.to_string(),
        Some(name) if name.chars().count() <= 256 && !name.contains('\0') => name.to_owned(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "`organization_name` must be at most 256 characters",
            ))
        }
    };
    let project = state
        .store
        .create_project(&body.name, &organization)
        .await?;
    Ok((StatusCode::CREATED, Json(project.into())))
}

#[utoipa::path(get, path = "/projects/{project_name}", operation_id = "projects_get", tag = TAG,
    responses((status = 200, body = ProjectResponse)))]
async fn read(ProjectPath(project): ProjectPath) -> Json<ProjectResponse> {
    Json(project.into())
}

/// Deletes a project with everything in it.
#[utoipa::path(delete, path = "/projects/{project_name}", operation_id = "projects_delete", tag = TAG,
    responses((status = 204, description = "Deleted")))]
async fn delete(
    State(state): State<AppState>,
    ProjectName { project_name }: ProjectName,
) -> ApiResult<StatusCode> {
    state.store.delete_project(&project_name).await?;
    state.purge_deleted_files();
    Ok(StatusCode::NO_CONTENT)
}
