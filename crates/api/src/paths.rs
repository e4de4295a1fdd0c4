//! Extractors for what a request path names, modelled on crates.io's
//! `CratePath`.
//!
//! Every one checks the token's project scope as it reads the path, before
//! any lookup, so a limited token gets the same 403 for every project outside
//! its scope and learns nothing about what exists there.
//!
//! The `…Name` extractors stop there. Handlers take them when they answer by
//! name in one query (the cached renderings of a deployment or a list), or
//! when their input must be validated before a lookup can answer 404; they
//! resolve later with `load`/`resolve`. The `…Path` extractors also resolve
//! the object, answering 404 naming whatever is missing.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use ubiops_storage::{DeploymentRef, Project, VersionRef};
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::PathParams;
use crate::AppState;

/// A path under `/projects/{project_name}`.
pub(crate) trait InProject: DeserializeOwned + Send {
    fn project_name(&self) -> &str;
}

/// Reads a path whose project the token may access; 403 otherwise.
pub(crate) async fn authorized_path<P: InProject>(
    parts: &mut Parts,
    state: &AppState,
) -> ApiResult<P> {
    let PathParams(path) = PathParams::<P>::from_request_parts(parts, state).await?;
    parts
        .extensions
        .get::<Principal>()
        .ok_or(ApiError::Internal)?
        .authorize(path.project_name())?;
    Ok(path)
}

/// Implements the extractor of a `…Name` path through [`authorized_path`].
macro_rules! authorized_path_extractor {
    ($($name:ty),+) => {$(
        impl $crate::paths::InProject for $name {
            fn project_name(&self) -> &str {
                &self.project_name
            }
        }

        impl ::axum::extract::FromRequestParts<$crate::AppState> for $name {
            type Rejection = $crate::error::ApiError;

            async fn from_request_parts(
                parts: &mut ::axum::http::request::Parts,
                state: &$crate::AppState,
            ) -> Result<Self, Self::Rejection> {
                $crate::paths::authorized_path(parts, state).await
            }
        }
    )+};
}
pub(crate) use authorized_path_extractor;

/// `{project_name}`, in the token's scope.
#[derive(Deserialize)]
pub(crate) struct ProjectName {
    pub project_name: String,
}

/// `{project_name}/…/{deployment_name}`, in the token's scope.
#[derive(Deserialize)]
pub(crate) struct DeploymentName {
    pub project_name: String,
    pub deployment_name: String,
}

/// `{project_name}/…/{deployment_name}/…/{version}`, in the token's scope.
#[derive(Deserialize)]
pub(crate) struct VersionName {
    pub project_name: String,
    pub deployment_name: String,
    pub version: String,
}

authorized_path_extractor!(ProjectName, DeploymentName, VersionName);

impl ProjectName {
    pub async fn load(&self, state: &AppState) -> ApiResult<Project> {
        Ok(state.store.get_project(&self.project_name).await?)
    }
}

impl DeploymentName {
    /// Only the project, for what takes the deployment by name.
    pub async fn load_project(&self, state: &AppState) -> ApiResult<Project> {
        Ok(state.store.get_project(&self.project_name).await?)
    }

    pub async fn resolve(&self, state: &AppState) -> ApiResult<ResolvedDeployment> {
        resolve_deployment(state, &self.project_name, &self.deployment_name).await
    }
}

impl VersionName {
    pub async fn resolve_deployment(&self, state: &AppState) -> ApiResult<ResolvedDeployment> {
        resolve_deployment(state, &self.project_name, &self.deployment_name).await
    }

    pub async fn resolve(&self, state: &AppState) -> ApiResult<ResolvedVersion> {
        let deployment = self.resolve_deployment(state).await?;
        let id = state.store.version_id(deployment.id, &self.version).await?;
        Ok(ResolvedVersion {
            deployment,
            id,
            name: self.version.clone(),
        })
    }
}

/// The project of the path, loaded.
pub(crate) struct ProjectPath(pub Project);

/// The version of the path, resolved to its ids.
pub(crate) struct VersionPath(pub ResolvedVersion);

impl FromRequestParts<AppState> for ProjectPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let name = ProjectName::from_request_parts(parts, state).await?;
        Ok(ProjectPath(name.load(state).await?))
    }
}

impl FromRequestParts<AppState> for VersionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let name = VersionName::from_request_parts(parts, state).await?;
        Ok(VersionPath(name.resolve(state).await?))
    }
}

/// A deployment resolved to its ids.
pub(crate) struct ResolvedDeployment {
    pub project_id: Uuid,
    pub id: Uuid,
    pub name: String,
}

impl ResolvedDeployment {
    pub fn as_ref(&self) -> DeploymentRef<'_> {
        DeploymentRef {
            project_id: self.project_id,
            id: self.id,
            name: &self.name,
        }
    }
}

/// Project and deployment in one query (404 naming whichever is missing), for
/// a project whose scope was checked already.
pub(crate) async fn resolve_deployment(
    state: &AppState,
    project_name: &str,
    deployment_name: &str,
) -> ApiResult<ResolvedDeployment> {
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

/// A version resolved to its ids.
pub(crate) struct ResolvedVersion {
    pub deployment: ResolvedDeployment,
    pub id: Uuid,
    pub name: String,
}

impl ResolvedVersion {
    pub fn as_ref(&self) -> VersionRef<'_> {
        VersionRef {
            deployment: self.deployment.as_ref(),
            id: self.id,
            name: &self.name,
        }
    }
}

/// Implements an id extractor: the path parameter `$key`, parsed; 404 with
/// `$not_found` if it is not an id.
macro_rules! id_extractor {
    ($name:ident, $key:literal, $not_found:literal) => {
        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
                id_in_path(parts, state, $key, $not_found).await.map($name)
            }
        }
    };
}

/// `{revision_id}`, taken after the version it belongs to.
pub(crate) struct RevisionId(pub Uuid);

/// `{build_id}`, taken after the version it belongs to.
pub(crate) struct BuildId(pub Uuid);

/// `{request_id}`, taken after the version it belongs to.
pub(crate) struct RequestId(pub Uuid);

id_extractor!(RevisionId, "revision_id", "Revision not found");
id_extractor!(RequestId, "request_id", "Request not found");
id_extractor!(BuildId, "build_id", "Build not found");

/// A malformed id cannot name anything: 404 like an unknown one.
async fn id_in_path(
    parts: &mut Parts,
    state: &AppState,
    key: &str,
    not_found: &str,
) -> ApiResult<Uuid> {
    RawPathParams::from_request_parts(parts, state)
        .await
        .ok()
        .and_then(|params| {
            params
                .iter()
                .find(|(name, _)| *name == key)
                .and_then(|(_, id)| Uuid::parse_str(id).ok())
        })
        .ok_or_else(|| ApiError::not_found(not_found))
}
