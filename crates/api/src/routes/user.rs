//! `GET /user`: who the token acts as. Newer clients and `ubiops-cli` ask for
//! it (they need `email`); it is not part of the Deployments documentation.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read))
}

/// A token is an identity with an email and nothing else: no person's name.
/// 4.x's model requires `authentication` (how the user signed in).
#[derive(Serialize, ToSchema)]
struct UserResponse {
    email: String,
    name: Option<String>,
    surname: Option<String>,
    authentication: &'static str,
}

#[utoipa::path(get, path = "/user", operation_id = "user_get", tag = "User",
    responses((status = 200, body = UserResponse)))]
async fn read(principal: Principal) -> Json<UserResponse> {
    Json(UserResponse {
        email: principal.actor.email,
        name: None,
        surname: None,
        authentication: "token",
    })
}
