//! `GET /organizations[/{organization_name}]` for newer clients: a
//! self-hosted server is one organization, named by `UBIOPS_ORGANIZATION`.
//! `ubiops projects create` without `-o` picks it when it is the only one.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use ubiops_domain::stable_id::stable_id;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::PathParams;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(read))
}

const TAG: &str = "Organizations";

/// The list and detail shapes in one; there are no subscriptions or usage
/// limits to report.
#[derive(Serialize, ToSchema)]
struct OrganizationResponse {
    id: Uuid,
    name: String,
    /// When this server's database was set up.
    creation_date: DateTime<Utc>,
    status: &'static str,
    two_factor_authentication_forced: bool,
    subscription: &'static str,
    overage_usage: bool,
}

async fn the_organization(state: &AppState) -> ApiResult<OrganizationResponse> {
    let name = state.organization_name.to_string();
    Ok(OrganizationResponse {
        id: stable_id("organization", &name),
        creation_date: state.store.installed_at().await?,
        name,
        status: "active",
        two_factor_authentication_forced: false,
        subscription: "self-hosted",
        overage_usage: false,
    })
}

/// The one organization, whatever the token's project scope.
#[utoipa::path(get, path = "/organizations", operation_id = "organizations_list", tag = TAG,
    responses((status = 200, body = Vec<OrganizationResponse>)))]
async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<OrganizationResponse>>> {
    Ok(Json(vec![the_organization(&state).await?]))
}

#[utoipa::path(get, path = "/organizations/{organization_name}", operation_id = "organizations_get", tag = TAG,
    responses((status = 200, body = OrganizationResponse)))]
async fn read(
    State(state): State<AppState>,
    PathParams(organization_name): PathParams<String>,
) -> ApiResult<Json<OrganizationResponse>> {
    if organization_name != *state.organization_name {
        return Err(ApiError::not_found(format!(
            "Organization '{}' not found: this server is the organization '{}'",
            organization_name.chars().take(64).collect::<String>(),
            state.organization_name
        )));
    }
    Ok(Json(the_organization(&state).await?))
}
