//! Token authentication (a middleware over every route but `/status`) and the
//! project scope of a token.

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use ubiops_domain::token::{hash_token, token_from_authorization, TokenHash};
use ubiops_storage::{Actor, TokenRecord};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The identity a request acts as, put into the request's extensions by
/// [`require_token`].
#[derive(Debug, Clone)]
pub struct Principal {
    pub actor: Actor,
    /// `None`: every project; otherwise only these.
    pub project_scope: Option<Vec<String>>,
}

impl Principal {
    fn from_record(record: TokenRecord) -> Self {
        Principal {
            actor: Actor {
                email: record.email,
            },
            project_scope: record.project_scope,
        }
    }

    pub fn may_access(&self, project: &str) -> bool {
        self.project_scope
            .as_ref()
            .is_none_or(|scope| scope.iter().any(|name| name == project))
    }

    /// Checked before the project is looked up, so a limited token learns
    /// nothing about projects outside its scope: they all answer 403.
    pub fn authorize(&self, project: &str) -> ApiResult<()> {
        if self.may_access(project) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "This API token has no access to project '{project}'"
            )))
        }
    }
}

/// For handlers that act as the principal (the audit log names its actor).
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(ApiError::Internal)
    }
}

pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request.headers().get(AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized(
            "Authentication required: send the header `Authorization: Token <your API token>`"
                .to_owned(),
        )
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(token_from_authorization)
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "Malformed Authorization header: use `Authorization: Token <your API token>`"
                    .to_owned(),
            )
        })?;
    let principal = verify(&state, hash_token(token)).await?;
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// The principal of a token: from the cache while its entry is fresh, else
/// from the database (and then cached).
async fn verify(state: &AppState, hash: TokenHash) -> ApiResult<Principal> {
    if let Some(principal) = state.tokens.get(&hash) {
        return Ok(principal);
    }
    match state.store.find_token(&hash).await? {
        Some(record) => {
            let principal = Principal::from_record(record);
            state.tokens.insert(hash, principal.clone());
            Ok(principal)
        }
        None => {
            state.tokens.remove(&hash);
            Err(ApiError::Unauthorized(
                "Invalid or revoked API token".to_owned(),
            ))
        }
    }
}

/// Route layer for everything under `/projects/{project_name}`: checks the
/// token's scope before any other extractor runs, so a limited token gets the
/// same 403 for every project outside its scope, whatever it sends.
pub async fn require_project_access(
    path: Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path =
        path.map_err(|rejection| ApiError::Client(rejection.status(), rejection.body_text()))?;
    let principal = request
        .extensions()
        .get::<Principal>()
        .ok_or(ApiError::Internal)?;
    if let Some((_, project)) = path.iter().find(|(name, _)| *name == "project_name") {
        principal.authorize(project)?;
    }
    Ok(next.run(request).await)
}
