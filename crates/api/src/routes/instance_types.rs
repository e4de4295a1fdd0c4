//! `GET /projects/{project_name}/instance-types` for newer clients
//! (`ubiops instance_types list`): the instance types this server offers,
//! each also its own instance type group (see `instance_type_groups`).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ubiops_domain::instance_types::InstanceType;
use ubiops_domain::query::bounded_integer;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::ApiResult;
use crate::extract::QueryParams;
use crate::paths::ProjectName;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Newer clients' paginated list: `next` is the `cursor` of the following
/// page, null on the last one.
#[derive(Serialize, ToSchema)]
struct InstanceTypePage {
    next: Option<String>,
    previous: Option<String>,
    results: Vec<InstanceTypeResponse>,
}

/// Instances are processes on this machine: no dedicated CPUs, disk or
/// credits to report. Instance type groups list their types in this shape too.
#[derive(Serialize, ToSchema)]
pub(super) struct InstanceTypeResponse {
    /// The same id as the instance type's group.
    id: Uuid,
    time_created: DateTime<Utc>,
    name: String,
    display_name: String,
    cpu: Option<f64>,
    /// MiB, as `memory_allocation`.
    memory: i32,
    storage: Option<f64>,
    /// 1 for a GPU type.
    accelerator: i32,
    credit_rate: f64,
    dedicated_node: bool,
    node_pool: NodePool,
}

/// Where instances run; the CLI prints `node_pool.cluster.type`.
#[derive(Serialize, ToSchema)]
struct NodePool {
    cluster: Cluster,
}

#[derive(Serialize, ToSchema)]
struct Cluster {
    /// Always `local`: instances run on the server's own machine.
    #[serde(rename = "type")]
    kind: &'static str,
}

impl InstanceTypeResponse {
    /// Built-in types exist as long as the project does.
    pub(super) fn new(since: DateTime<Utc>, instance_type: &InstanceType) -> Self {
        InstanceTypeResponse {
            id: instance_type.group_id(),
            time_created: since,
            name: instance_type.name.clone(),
            display_name: instance_type.name.clone(),
            cpu: None,
            memory: instance_type.memory_mib,
            storage: None,
            accelerator: i32::from(instance_type.is_gpu()),
            credit_rate: 0.0,
            dedicated_node: false,
            node_pool: NodePool {
                cluster: Cluster { kind: "local" },
            },
        }
    }
}

/// Raw text, so that a bad value gets a message naming the parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageParams {
    /// Where the page starts: the `next` of the previous page.
    #[param(value_type = Option<String>)]
    cursor: Option<String>,
    /// At most this many instance types (default: all).
    #[param(value_type = Option<i64>, minimum = 1)]
    limit: Option<String>,
}

#[utoipa::path(get, path = "/projects/{project_name}/instance-types", operation_id = "instance_types_list",
    tag = "Instance types", params(PageParams), responses((status = 200, body = InstanceTypePage)))]
async fn list(
    State(state): State<AppState>,
    project: ProjectName,
    QueryParams(params): QueryParams<PageParams>,
) -> ApiResult<Json<InstanceTypePage>> {
    let all = state.instance_types.all();
    let last = i64::try_from(all.len()).unwrap_or(i64::MAX);
    let start = bounded_integer("cursor", params.cursor.as_deref(), 0, 0, last)?;
    let limit = bounded_integer("limit", params.limit.as_deref(), last.max(1), 1, i64::MAX)?;
    let project = project.load(&state).await?;
    // Both within 0..=len by the bounds above.
    let start = usize::try_from(start).unwrap_or(all.len());
    let end = usize::try_from(limit).map_or(all.len(), |limit| {
        start.saturating_add(limit).min(all.len())
    });
    let page = &all[start..end];
    Ok(Json(InstanceTypePage {
        next: (end < all.len()).then(|| end.to_string()),
        previous: None,
        results: page
            .iter()
            .map(|t| InstanceTypeResponse::new(project.creation_date, t))
            .collect(),
    }))
}
