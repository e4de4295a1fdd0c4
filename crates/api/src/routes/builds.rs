//! builds_get, _list and _update (cancel).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ubiops_storage::Build;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::paths::{BuildId, VersionName, VersionPath};
use crate::AppState;

const TAG: &str = "Builds";

/// Relative to the version's path.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(read, update))
}

#[derive(Serialize, ToSchema)]
pub(super) struct BuildResponse {
    id: Uuid,
    revision: Uuid,
    creation_date: DateTime<Utc>,
    status: String,
    error_message: Option<String>,
    trigger: String,
    has_request_method: bool,
    has_requests_method: bool,
}

impl From<Build> for BuildResponse {
    fn from(b: Build) -> Self {
        BuildResponse {
            id: b.id,
            revision: b.revision,
            creation_date: b.creation_date,
            status: b.status,
            error_message: b.error_message,
            trigger: b.trigger,
            has_request_method: b.has_request_method,
            has_requests_method: b.has_requests_method,
        }
    }
}

#[utoipa::path(get, path = "/builds", operation_id = "builds_list", tag = TAG,
    responses((status = 200, body = Vec<BuildResponse>)))]
async fn list(
    State(state): State<AppState>,
    VersionPath(version): VersionPath,
) -> ApiResult<Json<Vec<BuildResponse>>> {
    let builds = state.store.list_builds(version.id).await?;
    Ok(Json(builds.into_iter().map(Into::into).collect()))
}

#[utoipa::path(get, path = "/builds/{build_id}", operation_id = "builds_get", tag = TAG,
    responses((status = 200, body = BuildResponse)))]
async fn read(
    State(state): State<AppState>,
    VersionPath(version): VersionPath,
    BuildId(id): BuildId,
) -> ApiResult<Json<BuildResponse>> {
    let build = state.store.get_build(version.id, id).await?;
    Ok(Json(build.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BuildUpdate {
    /// Only `cancelled` (any other value is a 400).
    status: String,
}

/// Cancels a build that has not finished. The body is read before the
/// version and build are looked up, so a malformed one is a 400 whatever
/// the path names.
#[utoipa::path(patch, path = "/builds/{build_id}", operation_id = "builds_update", tag = TAG,
    request_body = BuildUpdate, responses((status = 200, body = BuildResponse)))]
async fn update(
    State(state): State<AppState>,
    principal: Principal,
    path: VersionName,
    build_id: Result<BuildId, ApiError>,
    JsonBody(body): JsonBody<BuildUpdate>,
) -> ApiResult<Json<BuildResponse>> {
    let version = path.resolve(&state).await?;
    let BuildId(build_id) = build_id?;
    if body.status != "cancelled" {
        return Err(ApiError::bad_request(format!(
            "A build's status can only be set to 'cancelled', not '{}'",
            body.status.chars().take(40).collect::<String>()
        )));
    }
    let build = state
        .store
        .cancel_build(version.as_ref(), build_id, &principal.actor)
        .await?;
    Ok(Json(build.into()))
}
