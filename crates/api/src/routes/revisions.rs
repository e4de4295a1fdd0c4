//! revisions_get, _list, _rebuild and _file_download; the upload that
//! creates a revision is in `uploads`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use ubiops_storage::Revision;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::builds::BuildResponse;
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::paths::{RevisionId, VersionPath};
use crate::AppState;

const TAG: &str = "Revisions";

/// Relative to the version's path.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(read))
        .routes(routes!(download))
        .routes(routes!(rebuild))
}

#[derive(Serialize, ToSchema)]
struct RevisionResponse {
    id: Uuid,
    version: String,
    creation_date: DateTime<Utc>,
    created_by: String,
    status: Option<String>,
    error_message: Option<String>,
    has_request_method: Option<bool>,
    has_requests_method: Option<bool>,
    /// Whether the revision has no deployment file: never, here.
    empty: bool,
}

impl From<Revision> for RevisionResponse {
    fn from(r: Revision) -> Self {
        RevisionResponse {
            id: r.id,
            version: r.version,
            creation_date: r.creation_date,
            created_by: r.created_by,
            status: r.status,
            error_message: r.error_message,
            has_request_method: r.has_request_method,
            has_requests_method: r.has_requests_method,
            empty: false,
        }
    }
}

/// The documented build, plus what newer clients need to read it as a
/// revision (their model requires `version`; `created_by` and `empty` as in
/// revisions). `id` stays the build's id, as documented; `revisions_get`
/// also finds the revision by it, which is what newer clients do next.
#[derive(Serialize, ToSchema)]
struct RebuildResponse {
    #[serde(flatten)]
    build: BuildResponse,
    version: String,
    created_by: String,
    empty: bool,
}

#[utoipa::path(get, path = "/revisions", operation_id = "revisions_list", tag = TAG,
    responses((status = 200, body = Vec<RevisionResponse>)))]
async fn list(
    State(state): State<AppState>,
    VersionPath(version): VersionPath,
) -> ApiResult<Json<Vec<RevisionResponse>>> {
    let revisions = state.store.list_revisions(version.as_ref()).await?;
    Ok(Json(revisions.into_iter().map(Into::into).collect()))
}

/// A revision by its id or by the id of one of its builds (see `RebuildResponse`).
#[utoipa::path(get, path = "/revisions/{revision_id}", operation_id = "revisions_get", tag = TAG,
    responses((status = 200, body = RevisionResponse)))]
async fn read(
    State(state): State<AppState>,
    VersionPath(version): VersionPath,
    RevisionId(id): RevisionId,
) -> ApiResult<Json<RevisionResponse>> {
    let revision = state.store.get_revision(version.as_ref(), id).await?;
    Ok(Json(revision.into()))
}

/// Builds the revision's file again, as a new build.
#[utoipa::path(post, path = "/revisions/{revision_id}/rebuild", operation_id = "revisions_rebuild",
    tag = TAG, responses((status = 201, body = RebuildResponse)))]
async fn rebuild(
    State(state): State<AppState>,
    principal: Principal,
    VersionPath(version): VersionPath,
    RevisionId(id): RevisionId,
) -> ApiResult<(StatusCode, Json<RebuildResponse>)> {
    let build = state
        .store
        .rebuild_revision(version.as_ref(), id, &principal.actor)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(RebuildResponse {
            build: build.into(),
            version: version.name,
            created_by: principal.actor.email,
            empty: false,
        }),
    ))
}

/// The revision's deployment file, as uploaded.
#[utoipa::path(get, path = "/revisions/{revision_id}/download", operation_id = "revisions_file_download",
    tag = TAG,
    responses((status = 200, description = "The zip file", content_type = "application/zip",
        body = ZipFile,
        headers(("Content-Disposition" = String, description = "`attachment; filename=\"<name>.zip\"`")))))]
async fn download(
    State(state): State<AppState>,
    VersionPath(version): VersionPath,
    RevisionId(id): RevisionId,
) -> ApiResult<Response> {
    let file = state.store.revision_file(version.id, id).await?;
    let (size, stream) = state.files.read(&file.object_key).await?;
    let headers = [
        (header::CONTENT_TYPE, "application/zip".to_owned()),
        (header::CONTENT_LENGTH, size.to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", file.file_name),
        ),
    ];
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// A binary download.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
struct ZipFile(#[allow(dead_code)] Vec<u8>);
