//! Instance type groups as newer clients see them: every instance type this
//! server offers is a group of one, named like the type, with a stable id
//! (see `InstanceType::group_id`). Versions accept `instance_type_group_id` or
//! `_name` wherever they accept `instance_type`.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ubiops_domain::instance_types::InstanceType;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::instance_types::InstanceTypeResponse;
use crate::error::{ApiError, ApiResult};
use crate::extract::PathParams;
use crate::paths::ProjectPath;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(read))
}

const TAG: &str = "Instance type groups";

/// The list is paginated in newer clients' model; everything fits one page.
#[derive(Serialize, ToSchema)]
struct GroupPage {
    next: Option<String>,
    previous: Option<String>,
    results: Vec<GroupResponse>,
}

#[derive(Serialize, ToSchema)]
struct GroupResponse {
    id: Uuid,
    name: String,
    time_created: DateTime<Utc>,
    time_updated: DateTime<Utc>,
    instance_types: Vec<GroupMember>,
}

/// A group's member: the instance type, first in its group.
#[derive(Serialize, ToSchema)]
struct GroupMember {
    #[serde(flatten)]
    instance_type: InstanceTypeResponse,
    priority: i32,
    /// Seconds to wait for an instance of this type before trying the next;
    /// none, with one type per group.
    schedule_timeout: Option<i32>,
}

impl GroupResponse {
    /// Built-in groups exist as long as the project does.
    fn new(since: DateTime<Utc>, instance_type: &InstanceType) -> Self {
        GroupResponse {
            id: instance_type.group_id(),
            name: instance_type.group_name().to_owned(),
            time_created: since,
            time_updated: since,
            instance_types: vec![GroupMember {
                instance_type: InstanceTypeResponse::new(since, instance_type),
                priority: 0,
                schedule_timeout: None,
            }],
        }
    }
}

#[utoipa::path(get, path = "/projects/{project_name}/instance-type-groups", operation_id = "instance_type_groups_list", tag = TAG,
    responses((status = 200, body = GroupPage)))]
async fn list(State(state): State<AppState>, ProjectPath(project): ProjectPath) -> Json<GroupPage> {
    Json(GroupPage {
        next: None,
        previous: None,
        results: state
            .instance_types
            .all()
            .iter()
            .map(|t| GroupResponse::new(project.creation_date, t))
            .collect(),
    })
}

#[derive(Deserialize)]
struct GroupPath {
    group_id: String,
}

#[utoipa::path(get, path = "/projects/{project_name}/instance-type-groups/{group_id}", operation_id = "instance_type_groups_get", tag = TAG,
    responses((status = 200, body = GroupResponse)))]
async fn read(
    State(state): State<AppState>,
    ProjectPath(project): ProjectPath,
    PathParams(GroupPath { group_id }): PathParams<GroupPath>,
) -> ApiResult<Json<GroupResponse>> {
    let instance_type = state
        .instance_types
        .by_group_id(&group_id)
        .map_err(|error| ApiError::not_found(error.message()))?;
    Ok(Json(GroupResponse::new(
        project.creation_date,
        &instance_type,
    )))
}
