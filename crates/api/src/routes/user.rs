//! `GET /user`: who the token acts as. Newer clients and `ubiops-cli` ask for
//! it (they need `email`); it is not part of the Deployments documentation.

use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;

use crate::auth::Principal;
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/user", get(read))
}

/// A token is an identity with an email and nothing else: no person's name.
/// 4.x's model requires `authentication` (how the user signed in).
#[derive(Serialize)]
struct UserResponse {
    email: String,
    name: Option<String>,
    surname: Option<String>,
    authentication: &'static str,
}

async fn read(Extension(principal): Extension<Principal>) -> Json<UserResponse> {
    Json(UserResponse {
        email: principal.actor.email,
        name: None,
        surname: None,
        authentication: "token",
    })
}
