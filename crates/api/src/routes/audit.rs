//! deployment_audit_events_list.

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ubiops_domain::audit::AuditQuery;
use ubiops_storage::AuditEvent;
use uuid::Uuid;

use super::authorized_deployment;
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{PathParams, QueryParams};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/projects/{project_name}/deployments/{deployment_name}/audit",
        get(list),
    )
}

#[derive(Serialize)]
struct AuditEventResponse {
    id: Uuid,
    date: DateTime<Utc>,
    action: String,
    user: String,
    event: String,
    object_type: String,
    object_name: Option<String>,
}

impl From<AuditEvent> for AuditEventResponse {
    fn from(event: AuditEvent) -> Self {
        AuditEventResponse {
            id: event.id,
            date: event.date,
            action: event.action,
            user: event.user,
            event: event.event,
            object_type: event.object_type,
            object_name: event.object_name,
        }
    }
}

/// Raw text, so that `limit=ten` gets a message naming `limit`.
#[derive(Deserialize)]
struct AuditParams {
    action: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathParams((project_name, deployment_name)): PathParams<(String, String)>,
    QueryParams(params): QueryParams<AuditParams>,
) -> ApiResult<Json<Vec<AuditEventResponse>>> {
    let query = AuditQuery::parse(
        params.action.as_deref(),
        params.limit.as_deref(),
        params.offset.as_deref(),
    )?;
    let deployment =
        authorized_deployment(&state, &principal, &project_name, &deployment_name).await?;
    let events = state.store.list_audit_events(deployment.id, query).await?;
    Ok(Json(events.into_iter().map(Into::into).collect()))
}
