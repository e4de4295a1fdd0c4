//! The project's log lines: 3.13 `projects_log_list` (`POST`, a JSON body)
//! and newer clients' `logs_list` (`GET`, a LogQL-like query string), both
//! on `/projects/{project_name}/logs`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ubiops_domain::logs::{line_date, line_id, LogQuery, V3Request};
use ubiops_storage::LogLine;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::extract::QueryParams;
use crate::paths::ProjectName;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_v3, list_v4))
}

/// The 3.13 request body; every field is optional, and so is the body.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct LogsCreate {
    /// Tags the lines must have: deployment_name, deployment_version (with
    /// deployment_name), build_id, deployment_request_id, system, level, and
    /// the pipeline_* filters (which no line here matches).
    #[schema(value_type = Option<Object>)]
    filters: Option<Map<String, Value>>,
    /// Starting point (ISO 8601), inclusive.
    date: Option<String>,
    /// Starting point: the `id` of a line, inclusive.
    id: Option<String>,
    /// Seconds from the starting point, -86400..86400 (default -21600:
    /// towards the past).
    #[schema(minimum = -86400, maximum = 86400)]
    date_range: Option<i64>,
    /// At most this many lines (default 50, at most 500).
    #[schema(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// A line as 3.13 reads it; tags that are not set are left out.
#[derive(Serialize, ToSchema)]
struct LogResponse {
    id: String,
    log: String,
    /// ISO 8601 with nanoseconds, always nine digits, so dates sort as text.
    #[schema(value_type = String, format = DateTime)]
    date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    build_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_request_id: Option<String>,
    system: bool,
    level: String,
}

impl From<LogLine> for LogResponse {
    fn from(line: LogLine) -> Self {
        LogResponse {
            id: line_id(line.ns),
            log: line.text,
            date: timestamp_str(line.ns),
            deployment_name: line.deployment_name,
            deployment_version: line.version_name,
            build_id: line.build_id.map(|id| id.to_string()),
            deployment_request_id: line.deployment_request_id.map(|id| id.to_string()),
            system: line.system,
            level: line.level,
        }
    }
}

/// The tags of a line as newer clients read them (`LogMetadata`).
#[derive(Serialize, ToSchema)]
struct LogMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_version_revision_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    build_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_request_id: Option<String>,
    system: bool,
    level: String,
}

/// A line as newer clients read it (`LogList`).
#[derive(Serialize, ToSchema)]
struct LogListItem {
    /// Nanoseconds since the epoch; unique per line, so a client pages on
    /// with `start` = the last line's `timestamp` + 1.
    timestamp: i64,
    /// The same time in ISO 8601, with nanoseconds.
    timestamp_str: String,
    log: String,
    metadata: LogMetadata,
}

impl From<LogLine> for LogListItem {
    fn from(line: LogLine) -> Self {
        LogListItem {
            timestamp: line.ns,
            timestamp_str: timestamp_str(line.ns),
            log: line.text,
            metadata: LogMetadata {
                deployment_name: line.deployment_name,
                deployment_version: line.version_name,
                deployment_version_revision_id: line.revision_id.map(|id| id.to_string()),
                build_id: line.build_id.map(|id| id.to_string()),
                deployment_request_id: line.deployment_request_id.map(|id| id.to_string()),
                system: line.system,
                level: line.level,
            },
        }
    }
}

/// Raw text, so that a bad value gets a message naming its parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LogsListParams {
    /// Label filters `| deployment_name="d" and deployment_version!="v"` (also
    /// as a stream selector `{deployment_name="d"}`) and line filters
    /// `|= "text"`, `!= "text"`: a subset of Grafana LogQL.
    query: Option<String>,
    /// ISO 8601, or a Unix time in seconds or nanoseconds; inclusive.
    /// Default: now.
    start: Option<String>,
    /// ISO 8601, or a Unix time in seconds or nanoseconds; exclusive. Before
    /// `start` searches backward. Default: a day before `start`.
    end: Option<String>,
    /// At most this many lines (default 1000, at most 5000).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 5000)]
    limit: Option<String>,
}

fn timestamp_str(ns: i64) -> String {
    line_date(ns).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn now_ns() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// The 3.13 body: absent (3.13 sends none without `data`) or a JSON object.
fn v3_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<LogsCreate> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(LogsCreate::default());
    }
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<mime::Mime>().ok())
        .is_some_and(|mime| {
            mime.type_() == "application"
                && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
        });
    if !json {
        return Err(ApiError::Client(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send the request body as JSON with `Content-Type: application/json`".to_owned(),
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!("The request body is not valid JSON: {error}"))
    })?;
    if value.is_null() {
        return Ok(LogsCreate::default());
    }
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "Invalid request body: expected a JSON object",
        ));
    }
    let Json(body) = Json::<LogsCreate>::from_bytes(body)?;
    Ok(body)
}

/// The project's log lines in a window of time around `date` or a line
/// `id`, filtered by their tags, oldest first.
#[utoipa::path(post, path = "/projects/{project_name}/logs", operation_id = "projects_log_list",
    tag = "Logs", request_body(content = Option<LogsCreate>, content_type = "application/json"),
    responses((status = 200, body = Vec<LogResponse>)))]
async fn list_v3(
    State(state): State<AppState>,
    project: ProjectName,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Vec<LogResponse>>> {
    let body = v3_body(&headers, &body)?;
    let request = V3Request {
        filters: body.filters.as_ref(),
        date: body.date.as_deref(),
        id: body.id.as_deref(),
        date_range: body.date_range,
        limit: body.limit,
    };
    let query = LogQuery::from_v3(&request, now_ns())?;
    let project = project.load(&state).await?;
    let lines = state.store.list_logs(project.id, &query).await?;
    Ok(Json(lines.into_iter().map(Into::into).collect()))
}

/// The project's log lines from `start` towards `end` that pass `query`,
/// oldest first.
#[utoipa::path(get, path = "/projects/{project_name}/logs", operation_id = "logs_list",
    tag = "Logs", params(LogsListParams),
    responses((status = 200, body = Vec<LogListItem>)))]
async fn list_v4(
    State(state): State<AppState>,
    project: ProjectName,
    QueryParams(params): QueryParams<LogsListParams>,
) -> ApiResult<Json<Vec<LogListItem>>> {
    let query = LogQuery::from_v4(
        params.query.as_deref(),
        params.start.as_deref(),
        params.end.as_deref(),
        params.limit.as_deref(),
        now_ns(),
    )?;
    let project = project.load(&state).await?;
    let lines = state.store.list_logs(project.id, &query).await?;
    Ok(Json(lines.into_iter().map(Into::into).collect()))
}
