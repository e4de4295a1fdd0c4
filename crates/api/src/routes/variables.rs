//! Environment variables at project, deployment and version scope: one set
//! of handlers, the scope taken from the path.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use ubiops_domain::variable::{CopyRequest, VariableRequest};
use ubiops_storage::{Variable, VariableScope};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::JsonBody;
use crate::paths::{authorized_path_extractor, resolve_deployment, ResolvedDeployment};
use crate::rendered::RenderedJson;
use crate::{openapi, AppState};

const TAG: &str = "Environment variables";

/// Each scope: its path, the prefix of its operation ids (the UbiOps
/// client's method names), and whether variables can be copied into it.
const SCOPES: [(&str, &str, bool); 3] = [
    (
        "/projects/{project_name}",
        "project_environment_variables",
        false,
    ),
    (
        "/projects/{project_name}/deployments/{deployment_name}",
        "deployment_environment_variables",
        true,
    ),
    (
        "/projects/{project_name}/deployments/{deployment_name}/versions/{version}",
        "deployment_version_environment_variables",
        true,
    ),
];

/// The same handlers at every scope, each scope with its own operation ids.
pub fn routes() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new();
    for (path, operation_prefix, copies) in SCOPES {
        let mut scope = OpenApiRouter::new()
            .routes(routes!(list, create))
            .routes(routes!(read, update, delete));
        if copies {
            scope = scope.routes(routes!(copy));
        }
        openapi::prefix_operation_ids(scope.get_openapi_mut(), operation_prefix);
        router = router.nest(path, scope);
    }
    router
}

/// The path parameters of any of the three scopes.
/// The path of every handler here: a project, maybe a deployment and a
/// version in it, maybe a variable.
#[derive(Deserialize)]
struct ScopePath {
    project_name: String,
    deployment_name: Option<String>,
    version: Option<String>,
    id: Option<String>,
}

authorized_path_extractor!(ScopePath);

/// A scope resolved to ids (owned, so handlers can lend it to storage).
enum ResolvedScope {
    Project {
        project_id: Uuid,
        project_name: String,
    },
    Deployment(ResolvedDeployment),
    Version {
        deployment: ResolvedDeployment,
        version_id: Uuid,
        version_name: String,
    },
}

impl ResolvedScope {
    fn as_scope(&self) -> VariableScope<'_> {
        match self {
            ResolvedScope::Project {
                project_id,
                project_name,
            } => VariableScope::Project {
                project_id: *project_id,
                project_name,
            },
            ResolvedScope::Deployment(deployment) => VariableScope::Deployment(deployment.as_ref()),
            ResolvedScope::Version {
                deployment,
                version_id,
                version_name,
            } => VariableScope::Version {
                deployment: deployment.as_ref(),
                version_id: *version_id,
                version_name,
            },
        }
    }
}

/// In a project whose scope was checked.
async fn resolve(
    state: &AppState,
    project_name: &str,
    deployment_name: Option<&str>,
    version: Option<&str>,
) -> ApiResult<ResolvedScope> {
    let Some(deployment_name) = deployment_name else {
        let project = state.store.get_project(project_name).await?;
        return Ok(ResolvedScope::Project {
            project_id: project.id,
            project_name: project.name,
        });
    };
    let Some(version) = version else {
        let deployment = resolve_deployment(state, project_name, deployment_name).await?;
        return Ok(ResolvedScope::Deployment(deployment));
    };
    let resolved = state
        .store
        .resolve_version(project_name, deployment_name, version)
        .await?;
    Ok(ResolvedScope::Version {
        deployment: ResolvedDeployment {
            project_id: resolved.project_id,
            id: resolved.deployment_id,
            name: deployment_name.to_owned(),
        },
        version_id: resolved.id,
        version_name: version.to_owned(),
    })
}

impl ScopePath {
    async fn resolve(&self, state: &AppState) -> ApiResult<ResolvedScope> {
        resolve(
            state,
            &self.project_name,
            self.deployment_name.as_deref(),
            self.version.as_deref(),
        )
        .await
    }

    /// The variable named in the path, by id or, as the official CLI
    /// sends it (`env create --overwrite`, `env get NAME`), by name; the two
    /// cannot be confused, since a variable name has no dashes.
    async fn variable_id(&self, state: &AppState, scope: &ResolvedScope) -> ApiResult<Uuid> {
        let raw = self.id.as_deref().unwrap_or_default();
        match Uuid::parse_str(raw) {
            Ok(id) => Ok(id),
            Err(_) => Ok(state.store.own_variable_id(scope.as_scope(), raw).await?),
        }
    }
}

/// One shape for every response: `inheritance_*` are null for a scope's own
/// variables (and for create, get, update and copy, which only see those).
#[derive(Serialize, ToSchema)]
struct VariableResponse {
    id: Uuid,
    name: String,
    /// `null` for secrets.
    value: Option<String>,
    secret: bool,
    /// In a list, where an inherited variable comes from: `project` or `deployment`.
    inheritance_type: Option<&'static str>,
    inheritance_name: Option<String>,
}

impl From<Variable> for VariableResponse {
    fn from(variable: Variable) -> Self {
        let (inheritance_type, inheritance_name) = match variable.inherited_from {
            Some((level, name)) => (Some(level.inheritance_type()), Some(name)),
            None => (None, None),
        };
        VariableResponse {
            id: variable.id,
            name: variable.name,
            value: variable.value,
            secret: variable.secret,
            inheritance_type,
            inheritance_name,
        }
    }
}

/// The scope's variables, with those it inherits from wider scopes.
#[utoipa::path(get, path = "/environment-variables", operation_id = "list", tag = TAG,
    responses((status = 200, body = Vec<VariableResponse>)))]
async fn list(State(state): State<AppState>, path: ScopePath) -> ApiResult<RenderedJson> {
    let listed = state
        .store
        .list_variables(
            &path.project_name,
            path.deployment_name.as_deref(),
            path.version.as_deref(),
            |stamp| state.rendered.get(*stamp),
        )
        .await?;
    state.rendered.json_one(listed, |variables| {
        variables
            .into_iter()
            .map(VariableResponse::from)
            .collect::<Vec<_>>()
    })
}

#[utoipa::path(post, path = "/environment-variables", operation_id = "create", tag = TAG,
    request_body = VariableRequest, responses((status = 201, body = VariableResponse)))]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    path: ScopePath,
    JsonBody(body): JsonBody<VariableRequest>,
) -> ApiResult<(StatusCode, Json<VariableResponse>)> {
    let scope = path.resolve(&state).await?;
    let variable = body.validate()?;
    let created = state
        .store
        .create_variable(
            scope.as_scope(),
            &variable,
            &state.keyring,
            &principal.actor,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

#[utoipa::path(get, path = "/environment-variables/{id}", operation_id = "get", tag = TAG,
    responses((status = 200, body = VariableResponse)))]
async fn read(State(state): State<AppState>, path: ScopePath) -> ApiResult<Json<VariableResponse>> {
    let scope = path.resolve(&state).await?;
    let variable = state
        .store
        .get_variable(scope.as_scope(), path.variable_id(&state, &scope).await?)
        .await?;
    Ok(Json(variable.into()))
}

#[utoipa::path(patch, path = "/environment-variables/{id}", operation_id = "update", tag = TAG,
    request_body = VariableRequest, responses((status = 200, body = VariableResponse)))]
async fn update(
    State(state): State<AppState>,
    principal: Principal,
    path: ScopePath,
    JsonBody(body): JsonBody<VariableRequest>,
) -> ApiResult<Json<VariableResponse>> {
    let scope = path.resolve(&state).await?;
    let id = path.variable_id(&state, &scope).await?;
    let variable = body.validate()?;
    let updated = state
        .store
        .update_variable(
            scope.as_scope(),
            id,
            &variable,
            &state.keyring,
            &principal.actor,
        )
        .await?;
    Ok(Json(updated.into()))
}

#[utoipa::path(delete, path = "/environment-variables/{id}", operation_id = "delete", tag = TAG,
    responses((status = 204, description = "Deleted")))]
async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    path: ScopePath,
) -> ApiResult<StatusCode> {
    let scope = path.resolve(&state).await?;
    state
        .store
        .delete_variable(
            scope.as_scope(),
            path.variable_id(&state, &scope).await?,
            &principal.actor,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Copies the variables of another deployment (or version) into this scope;
/// the source is named in the body and must be in the target's project.
#[utoipa::path(post, path = "/copy-environment-variables", operation_id = "copy", tag = TAG,
    request_body = CopyRequest, responses((status = 200, body = Vec<VariableResponse>)))]
async fn copy(
    State(state): State<AppState>,
    principal: Principal,
    path: ScopePath,
    JsonBody(body): JsonBody<CopyRequest>,
) -> ApiResult<Json<Vec<VariableResponse>>> {
    let target = path.resolve(&state).await?;
    // In the target's project.
    let source = resolve(
        &state,
        &path.project_name,
        Some(&body.source_deployment),
        body.source_version.as_deref(),
    )
    .await?;
    let copied = state
        .store
        .copy_variables(
            source.as_scope(),
            target.as_scope(),
            &state.keyring,
            &principal.actor,
        )
        .await?;
    Ok(Json(copied.into_iter().map(Into::into).collect()))
}
