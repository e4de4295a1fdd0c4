//! Routes grouped per resource; each module holds its handlers and the JSON
//! shapes it returns.

mod audit;
mod batch_requests;
mod builds;
mod deployments;
mod environments;
mod instance_type_groups;
mod instance_types;
mod logs;
mod organizations;
mod projects;
mod requests;
mod revisions;
mod template_deployments;
pub(crate) mod uploads;
mod user;
mod variables;
mod versions;

use std::any::Any;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{require_project_access, require_token};
use crate::error::ApiError;
use crate::{openapi, AppState};

/// Everything under the version prefix, and its OpenAPI document. All of it
/// requires a token except `status` and the document itself, which say
/// nothing about data.
pub fn api_routes(state: AppState) -> OpenApiRouter {
    let changing_what_serves = OpenApiRouter::new()
        .merge(deployments::routes())
        .merge(versions::routes())
        .merge(variables::routes())
        .merge(under_version());
    let in_project = OpenApiRouter::new()
        .merge(noting_serving_changes(changing_what_serves, state.clone()))
        .merge(audit::routes())
        .merge(environments::routes())
        .merge(instance_type_groups::routes())
        .merge(instance_types::routes())
        .merge(logs::routes())
        .merge(requests::routes())
        .merge(batch_requests::routes())
        .route_layer(middleware::from_fn(require_project_access));
    let authenticated = OpenApiRouter::new()
        .merge(noting_serving_changes(projects::routes(), state.clone()))
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

/// After each change through `router`'s routes, this process reads the
/// versions that requests go to anew (other processes learn of it from
/// PostgreSQL's notification, a moment later): a request sent right after
/// the answer goes to what the change made.
fn noting_serving_changes(
    router: OpenApiRouter<AppState>,
    state: AppState,
) -> OpenApiRouter<AppState> {
    router.route_layer(middleware::from_fn_with_state(
        state,
        |State(state): State<AppState>, request: Request, next: Next| async move {
            let changes = !request.method().is_safe();
            let response = next.run(request).await;
            if changes {
                state.store.serving_changed();
            }
            response
        },
    ))
}

/// Revisions, their uploads and their builds, nested under the version's
/// path so that each handler documents only its own part.
fn under_version() -> OpenApiRouter<AppState> {
    const VERSION: &str =
        "/projects/{project_name}/deployments/{deployment_name}/versions/{version}";
    let version = OpenApiRouter::new()
        .merge(revisions::routes())
        .merge(uploads::routes())
        .merge(builds::routes());
    OpenApiRouter::new().nest(VERSION, version)
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
