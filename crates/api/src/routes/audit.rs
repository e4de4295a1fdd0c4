//! deployment_audit_events_list, and project_audit_events_list for newer
//! clients (`ubiops audit_events list` without a deployment).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ubiops_domain::audit::AuditQuery;
use ubiops_storage::{AuditEvent, AuditScope};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::ApiResult;
use crate::extract::QueryParams;
use crate::paths::{DeploymentName, ProjectName};
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(list_project))
}

#[derive(Serialize, ToSchema)]
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

/// Raw text, so that `limit=ten` gets a message naming `limit`; documented
/// with the types `AuditQuery::parse` accepts.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Only events of this kind.
    #[param(value_type = Option<String>, pattern = "^(create|update|delete|info)$")]
    action: Option<String>,
    /// At most this many events (default 50, at most 1000).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Skip this many of the newest events first.
    #[param(value_type = Option<i64>, minimum = 0)]
    offset: Option<String>,
}

impl AuditParams {
    fn parse(&self) -> ApiResult<AuditQuery> {
        Ok(AuditQuery::parse(
            self.action.as_deref(),
            self.limit.as_deref(),
            self.offset.as_deref(),
        )?)
    }
}

fn respond(events: Vec<AuditEvent>) -> Json<Vec<AuditEventResponse>> {
    Json(events.into_iter().map(Into::into).collect())
}

/// The deployment's audit events, newest first.
#[utoipa::path(get, path = "/projects/{project_name}/deployments/{deployment_name}/audit",
    operation_id = "deployment_audit_events_list", tag = "Audit events", params(AuditParams),
    responses((status = 200, body = Vec<AuditEventResponse>)))]
async fn list(
    State(state): State<AppState>,
    path: DeploymentName,
    QueryParams(params): QueryParams<AuditParams>,
) -> ApiResult<Json<Vec<AuditEventResponse>>> {
    let query = params.parse()?;
    let deployment = path.resolve(&state).await?;
    let scope = AuditScope::Deployment(deployment.id);
    Ok(respond(state.store.list_audit_events(scope, query).await?))
}

/// Every audit event in the project (also of deleted deployments), newest first.
#[utoipa::path(get, path = "/projects/{project_name}/audit",
    operation_id = "project_audit_events_list", tag = "Audit events", params(AuditParams),
    responses((status = 200, body = Vec<AuditEventResponse>)))]
async fn list_project(
    State(state): State<AppState>,
    project: ProjectName,
    QueryParams(params): QueryParams<AuditParams>,
) -> ApiResult<Json<Vec<AuditEventResponse>>> {
    let query = params.parse()?;
    let project = project.load(&state).await?;
    let scope = AuditScope::Project(project.id);
    Ok(respond(state.store.list_audit_events(scope, query).await?))
}
