//! Routes grouped per resource; each module holds its handlers and the JSON
//! shapes it returns.

mod audit;
mod deployments;
mod projects;
pub(crate) mod revisions;
mod variables;
mod versions;

use std::any::Any;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use serde_json::json;
use ubiops_storage::{DeploymentRef, Project};
use uuid::Uuid;

use crate::auth::{require_project_access, require_token, Principal};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// Everything under the version prefix. All of it requires a token except
/// `status`, which says nothing about data.
pub fn api_routes(state: AppState) -> Router {
    let in_project = Router::new()
        .merge(deployments::routes())
        .merge(audit::routes())
        .merge(versions::routes())
        .merge(variables::routes())
        .merge(revisions::routes())
        .route_layer(middleware::from_fn(require_project_access));
    let authenticated = Router::new()
        .merge(projects::routes())
        .merge(in_project)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state);
    status_routes().merge(authenticated)
}

pub fn status_routes() -> Router {
    Router::new().route("/status", get(status))
}

async fn status() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
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

async fn authorized_deployment(
    state: &AppState,
    principal: &Principal,
    project_name: &str,
    deployment_name: &str,
) -> ApiResult<ResolvedDeployment> {
    let project = authorized_project(state, principal, project_name).await?;
    let id = state
        .store
        .deployment_id(project.id, deployment_name)
        .await?;
    Ok(ResolvedDeployment {
        project_id: project.id,
        id,
        name: deployment_name.to_owned(),
    })
}
