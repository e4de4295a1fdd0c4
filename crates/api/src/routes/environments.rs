//! Environments as newer clients see them: one built-in system environment per
//! supported language (see `ubiops_domain::environment`), each with one tag
//! that is always built. `ubiops.utils.wait_for_deployment_version` (and so
//! `ubiops versions wait`) reads the version's environment and its tags before
//! it waits for the revision; a system environment needs no waiting.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ubiops_domain::environment::{
    system_environment, system_environments, SystemEnvironment, SYSTEM_ENVIRONMENT_TAG,
};
use ubiops_domain::labels::{LabelFilter, Labels};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::{PathParams, QueryParams};
use crate::paths::{ProjectName, ProjectPath};
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(read))
        .routes(routes!(list_tags))
        .routes(routes!(read_tag))
}

const TAG: &str = "Environments";

#[derive(Serialize, ToSchema)]
struct EnvironmentResponse {
    id: Uuid,
    name: String,
    project: String,
    display_name: &'static str,
    /// The display name again: 4.x's model shows no `display_name`.
    description: &'static str,
    labels: Labels,
    /// System environments exist as long as the project does.
    creation_date: DateTime<Utc>,
    last_updated: DateTime<Utc>,
    system: bool,
    supports_request_format: bool,
    base_environment: Option<String>,
    gpu_required: bool,
    language: &'static str,
}

impl EnvironmentResponse {
    fn new(project: &str, since: DateTime<Utc>, environment: SystemEnvironment) -> Self {
        EnvironmentResponse {
            id: environment.id(),
            name: environment.name(),
            project: project.to_owned(),
            display_name: environment.display_name,
            description: environment.display_name,
            labels: Labels::new(),
            creation_date: since,
            last_updated: since,
            system: true,
            supports_request_format: true,
            base_environment: None,
            gpu_required: environment.needs_gpu(),
            language: environment.language,
        }
    }
}

#[derive(Serialize, ToSchema)]
struct TagResponse {
    id: Uuid,
    name: &'static str,
    environment: String,
    creation_date: DateTime<Utc>,
    status: &'static str,
    built: bool,
    supports_request_format: bool,
    implicit: bool,
    deprecated: bool,
    size: Option<i64>,
    error_message: Option<String>,
}

impl TagResponse {
    fn new(since: DateTime<Utc>, environment: SystemEnvironment) -> Self {
        TagResponse {
            id: environment.tag_id(),
            name: SYSTEM_ENVIRONMENT_TAG,
            environment: environment.name(),
            creation_date: since,
            status: "success",
            built: true,
            supports_request_format: true,
            implicit: false,
            deprecated: false,
            size: None,
            error_message: None,
        }
    }
}

/// The filters the clients send. Every environment here is a system one
/// without labels, so `system=false` and any label filter match nothing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    system: Option<String>,
    labels: Option<String>,
}

/// `{environment_name}`: the system environment of that name, taken after
/// the project it belongs to.
struct EnvironmentPath(SystemEnvironment);

#[derive(Deserialize)]
struct EnvironmentName {
    environment_name: String,
}

impl FromRequestParts<AppState> for EnvironmentPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let PathParams(EnvironmentName { environment_name }) =
            PathParams::from_request_parts(parts, state).await?;
        let environment = system_environment(&environment_name).ok_or_else(|| {
            ApiError::not_found(format!(
                "Environment '{}' not found: this server offers one system environment per supported language (list them at /projects/{{project_name}}/environments)",
                environment_name.chars().take(80).collect::<String>()
            ))
        })?;
        Ok(EnvironmentPath(environment))
    }
}

#[derive(Deserialize)]
struct TagName {
    tag_name: String,
}

#[utoipa::path(get, path = "/projects/{project_name}/environments", operation_id = "environments_list", tag = TAG,
    params(ListQuery), responses((status = 200, body = Vec<EnvironmentResponse>)))]
async fn list(
    State(state): State<AppState>,
    project: ProjectName,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<Vec<EnvironmentResponse>>> {
    let labels = LabelFilter::parse_optional(query.labels.as_deref())?;
    let system = match query
        .system
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("") | Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(ApiError::bad_request("`system` must be true or false")),
    };
    let project = project.load(&state).await?;
    if !system || labels.is_some() {
        return Ok(Json(Vec::new()));
    }
    Ok(Json(
        system_environments()
            .map(|e| EnvironmentResponse::new(&project.name, project.creation_date, e))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/projects/{project_name}/environments/{environment_name}", operation_id = "environments_get", tag = TAG,
    responses((status = 200, body = EnvironmentResponse)))]
async fn read(
    ProjectPath(project): ProjectPath,
    EnvironmentPath(environment): EnvironmentPath,
) -> Json<EnvironmentResponse> {
    Json(EnvironmentResponse::new(
        &project.name,
        project.creation_date,
        environment,
    ))
}

#[utoipa::path(get, path = "/projects/{project_name}/environments/{environment_name}/tags", operation_id = "environment_tags_list", tag = TAG,
    responses((status = 200, body = Vec<TagResponse>)))]
async fn list_tags(
    ProjectPath(project): ProjectPath,
    EnvironmentPath(environment): EnvironmentPath,
) -> Json<Vec<TagResponse>> {
    Json(vec![TagResponse::new(project.creation_date, environment)])
}

#[utoipa::path(get, path = "/projects/{project_name}/environments/{environment_name}/tags/{tag_name}", operation_id = "environment_tags_get", tag = TAG,
    responses((status = 200, body = TagResponse)))]
async fn read_tag(
    ProjectPath(project): ProjectPath,
    EnvironmentPath(environment): EnvironmentPath,
    PathParams(TagName { tag_name }): PathParams<TagName>,
) -> ApiResult<Json<TagResponse>> {
    if tag_name != SYSTEM_ENVIRONMENT_TAG {
        return Err(ApiError::not_found(format!(
            "Tag '{}' not found: system environments have the one tag '{SYSTEM_ENVIRONMENT_TAG}'",
            tag_name.chars().take(80).collect::<String>()
        )));
    }
    Ok(Json(TagResponse::new(project.creation_date, environment)))
}
