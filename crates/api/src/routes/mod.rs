//! Routes grouped per resource; each module holds its handlers and the JSON
//! shapes it returns.

mod audit;
mod deployments;
mod environments;
mod instance_type_groups;
mod instance_types;
mod logs;
mod organizations;
mod projects;
pub(crate) mod revisions;
mod template_deployments;
mod user;
mod variables;
mod versions;

use std::any::Any;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use serde::{Deserialize, Serialize};
use ubiops_storage::{DeploymentRef, Project};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{require_project_access, require_token, Principal};
use crate::error::{ApiError, ApiResult};
use crate::{openapi, AppState};

/// Everything under the version prefix, and its OpenAPI document. All of it
/// requires a token except `status` and the document itself, which say
/// nothing about data.
pub fn api_routes(state: AppState) -> OpenApiRouter {
    let in_project = OpenApiRouter::new()
        .merge(deployments::routes())
        .merge(audit::routes())
        .merge(versions::routes())
        .merge(variables::routes())
        .merge(revisions::routes())
        .merge(environments::routes())
        .merge(instance_type_groups::routes())
        .merge(instance_types::routes())
        .merge(logs::routes())
        .route_layer(middleware::from_fn(require_project_access));
    let authenticated = OpenApiRouter::new()
        .merge(projects::routes())
        .merge(user::routes())
        .merge(organizations::routes())
        .merge(template_deployments::routes())
        .merge(in_project);
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(status))
        .routes(routes!(openapi::serve_document))
        .merge(with_token_required(authenticated, state.clone()).with_state(state))
}

/// Puts the token middleware in front of every route of `router` and says so
/// in the document, in one step.
fn with_token_required(
    router: OpenApiRouter<AppState>,
    state: AppState,
) -> OpenApiRouter<AppState> {
    let mut router = router.route_layer(middleware::from_fn_with_state(state, require_token));
    openapi::document_token_required(router.get_openapi_mut());
    router
}

/// `/status` outside the version prefix, for load balancers.
pub fn status_routes() -> Router {
    Router::new().route("/status", get(status))
}

#[derive(Serialize, utoipa::ToSchema)]
struct StatusResponse {
    /// Always `ok` while the server answers.
    status: &'static str,
}

/// Whether the server is up; needs no token.
#[utoipa::path(
    get,
    path = "/status",
    operation_id = "service_status",
    tag = "Service",
    responses((status = 200, description = "The server is up", body = StatusResponse)),
)]
async fn status() -> Json<StatusResponse> {
    Json(StatusResponse { status: "ok" })
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("No such endpoint: check the URL (the API lives under /v2.1)")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::Client(
        StatusCode::METHOD_NOT_ALLOWED,
        "This endpoint does not support that HTTP method".to_owned(),
    )
}

pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "request handler panicked");
    ApiError::Internal.into_response()
}

/// The query of the list operations that filter by label.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `key:value,key:value`: only objects with at least one of these labels.
    labels: Option<String>,
}

/// Resolves the project of a request path: scope first (403 without a lookup,
/// so nothing leaks), then existence (404).
async fn authorized_project(
    state: &AppState,
    principal: &Principal,
    project_name: &str,
) -> ApiResult<Project> {
    principal.authorize(project_name)?;
    Ok(state.store.get_project(project_name).await?)
}

/// A deployment named in a request path, resolved to its ids.
struct ResolvedDeployment {
    project_id: Uuid,
    id: Uuid,
    name: String,
}

impl ResolvedDeployment {
    fn as_ref(&self) -> DeploymentRef<'_> {
        DeploymentRef {
            project_id: self.project_id,
            id: self.id,
            name: &self.name,
        }
    }
}

/// Scope first (403 without a lookup), then project and deployment resolved
/// in one query (404 naming whichever is missing).
async fn authorized_deployment(
    state: &AppState,
    principal: &Principal,
    project_name: &str,
    deployment_name: &str,
) -> ApiResult<ResolvedDeployment> {
    principal.authorize(project_name)?;
    let (project_id, id) = state
        .store
        .resolve_deployment(project_name, deployment_name)
        .await?;
    Ok(ResolvedDeployment {
        project_id,
        id,
        name: deployment_name.to_owned(),
    })
}
