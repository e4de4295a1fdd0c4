//! Deployment requests: direct requests recorded when they finish, kept per
//! the version's retention mode and time; read one by one or listed by
//! version or project; deleted by a client or, once expired, by the sweep.
//! Batch requests will live in the same table (see the migration).

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use sqlx::{Connection as _, PgConnection};
use ubiops_domain::request_data::error_message;
use ubiops_domain::requests::{RequestFilter, RequestStatus, SortOrder};
use ubiops_domain::version::{RetentionMode, VersionSettings};
use uuid::Uuid;

use crate::error::corrupt;
use crate::logs::contains_pattern;
use crate::{Result, StorageError, Store};

/// How long and how much of a request is kept: the version's
/// `request_retention_mode` and `request_retention_time` (seconds) when the
/// request was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `none`: nothing is stored; `metadata`: all but the data and the
    /// result; `full`: everything.
    pub mode: RetentionMode,
    pub seconds: i32,
}

impl Retention {
    /// The retention a version's settings give its requests.
    pub fn of(settings: &VersionSettings) -> Self {
        Self {
            mode: settings.request_retention_mode,
            seconds: settings.request_retention_time,
        }
    }
}

/// A request to record. `request_data` and `result` are given whatever the
/// retention: their sizes are kept even when they are not.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub id: Uuid,
    pub project_id: Uuid,
    pub deployment_id: Uuid,
    pub version_id: Uuid,
    pub batch: bool,
    /// The token's email (`created_by`).
    pub created_by: String,
    /// What the request came through, e.g. `{"deployment": "d",
    /// "deployment_version": "v1"}`; the 3.13 client wants string values.
    pub origin: Value,
    pub timeout_seconds: i32,
    pub notification_group: Option<String>,
    pub time_created: DateTime<Utc>,
    pub time_started: Option<DateTime<Utc>>,
    pub time_completed: Option<DateTime<Utc>>,
    pub status: RequestStatus,
    pub success: Option<bool>,
    pub request_data: Option<Value>,
    pub result: Option<Value>,
    /// Capped to the clients' 1024 characters (and cleaned of NUL) when
    /// stored, by [`error_message`].
    pub error_message: Option<String>,
    pub retention: Retention,
}

/// Whose requests a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestScope {
    Version(Uuid),
    Project(Uuid),
}

/// A stored request with everything `deployment_requests_get` shows. The
/// names are the deployment's and version's current ones.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRequest {
    pub id: Uuid,
    pub project_id: Uuid,
    pub deployment_id: Uuid,
    pub version_id: Uuid,
    pub deployment: String,
    pub version: String,
    pub batch: bool,
    pub status: RequestStatus,
    pub success: Option<bool>,
    pub time_created: DateTime<Utc>,
    pub time_started: Option<DateTime<Utc>>,
    pub time_completed: Option<DateTime<Utc>>,
    /// `None` when not kept (retention `metadata`) or not sent.
    pub request_data: Option<Value>,
    pub result: Option<Value>,
    /// Bytes of the data and the result as JSON.
    pub input_size: Option<i64>,
    pub output_size: Option<i64>,
    pub error_message: Option<String>,
    pub created_by: String,
    pub origin: Value,
    pub notification_group: Option<String>,
    pub timeout_seconds: i32,
    pub retries: i32,
}

/// A request as the lists show it (current names).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSummary {
    pub id: Uuid,
    pub deployment: String,
    pub version: String,
    pub status: RequestStatus,
    pub success: Option<bool>,
    pub time_created: DateTime<Utc>,
    pub time_started: Option<DateTime<Utc>>,
    pub time_completed: Option<DateTime<Utc>>,
    pub input_size: Option<i64>,
    pub output_size: Option<i64>,
}

struct StoredRow {
    id: Uuid,
    project_id: Uuid,
    deployment_id: Uuid,
    version_id: Uuid,
    deployment: String,
    version: String,
    batch: bool,
    status: String,
    success: Option<bool>,
    time_created: DateTime<Utc>,
    time_started: Option<DateTime<Utc>>,
    time_completed: Option<DateTime<Utc>>,
    request_data: Option<Value>,
    result: Option<Value>,
    input_size: Option<i64>,
    output_size: Option<i64>,
    error_message: Option<String>,
    created_by: String,
    origin: Value,
    notification_group: Option<String>,
    timeout_seconds: i32,
    retries: i32,
}

impl TryFrom<StoredRow> for StoredRequest {
    type Error = StorageError;

    fn try_from(row: StoredRow) -> Result<Self> {
        Ok(StoredRequest {
            status: parse_status(&row.status, row.id)?,
            id: row.id,
            project_id: row.project_id,
            deployment_id: row.deployment_id,
            version_id: row.version_id,
            deployment: row.deployment,
            version: row.version,
            batch: row.batch,
            success: row.success,
            time_created: row.time_created,
            time_started: row.time_started,
            time_completed: row.time_completed,
            request_data: row.request_data,
            result: row.result,
            input_size: row.input_size,
            output_size: row.output_size,
            error_message: row.error_message,
            created_by: row.created_by,
            origin: row.origin,
            notification_group: row.notification_group,
            timeout_seconds: row.timeout_seconds,
            retries: row.retries,
        })
    }
}

struct SummaryRow {
    id: Uuid,
    deployment: String,
    version: String,
    status: String,
    success: Option<bool>,
    time_created: DateTime<Utc>,
    time_started: Option<DateTime<Utc>>,
    time_completed: Option<DateTime<Utc>>,
    input_size: Option<i64>,
    output_size: Option<i64>,
}

impl TryFrom<SummaryRow> for RequestSummary {
    type Error = StorageError;

    fn try_from(row: SummaryRow) -> Result<Self> {
        Ok(RequestSummary {
            status: parse_status(&row.status, row.id)?,
            id: row.id,
            deployment: row.deployment,
            version: row.version,
            success: row.success,
            time_created: row.time_created,
            time_started: row.time_started,
            time_completed: row.time_completed,
            input_size: row.input_size,
            output_size: row.output_size,
        })
    }
}

fn parse_status(status: &str, id: Uuid) -> Result<RequestStatus> {
    RequestStatus::parse(status).ok_or_else(|| corrupt("request status", status, id))
}

pub(crate) fn request_not_found() -> StorageError {
    StorageError::NotFound("Request not found".to_owned())
}

/// `query_as!` into `StoredRow` of a version's requests that pass `$where`
/// (`$1` is the version's id), with the select list written once.
macro_rules! query_stored {
    ($where:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            StoredRow,
            r#"SELECT r.id, r.project_id, r.deployment_id, r.version_id,
                      d.name AS deployment, v.name AS version, r.batch, r.status, r.success,
                      r.time_created, r.time_started, r.time_completed, r.request_data,
                      r.result, r.input_size, r.output_size, r.error_message, r.created_by,
                      r.origin, r.notification_group, r.timeout_seconds, r.retries
               FROM deployment_requests r
               JOIN deployments d ON d.id = r.deployment_id
               JOIN versions v ON v.id = r.version_id
               WHERE r.version_id = $1 AND "# + $where
            $(, $arg)*
        )
    };
}

/// `query_as!` of a list's page: requests whose `$scope` column is `$1`, in
/// `$order`. One statement per scope and order (four in all), so that each
/// is planned for its index and read in its direction; the dates bound the
/// index range even in a generic plan (`coalesce` rather than `IS NULL OR`).
macro_rules! query_summaries {
    ($scope:literal, $order:literal, $scope_id:expr, $filter:expr, $statuses:expr, $search:expr) => {
        sqlx::query_as!(
            SummaryRow,
            r#"SELECT r.id, d.name AS deployment, v.name AS version, r.status, r.success,
                      r.time_created, r.time_started, r.time_completed, r.input_size,
                      r.output_size
               FROM deployment_requests r
               JOIN deployments d ON d.id = r.deployment_id
               JOIN versions v ON v.id = r.version_id
               WHERE "#
                + $scope
                + r#" = $1
                 AND r.time_created BETWEEN coalesce($2, '-infinity'::timestamptz)
                                        AND coalesce($3, 'infinity'::timestamptz)
                 AND (cardinality($4::text[]) = 0 OR r.status = ANY($4))
                 AND ($5::bool IS NULL OR r.success = $5)
                 AND ($6::text IS NULL OR r.id::text LIKE $6)
               ORDER BY "#
                + $order
                + " LIMIT $7 OFFSET $8",
            $scope_id,
            $filter.created_from,
            $filter.created_until,
            $statuses,
            $filter.success,
            $search,
            $filter.limit,
            $filter.offset,
        )
    };
}

impl Store {
    /// Records a finished direct request, kept as its retention says: mode
    /// `none` (or a time of 0 seconds) stores nothing, `metadata` all but
    /// the data and the result, `full` everything. It may be deleted once
    /// its retention time from `time_created` has passed. The record is
    /// queued and written behind the answer (`crate::record_writer`); the
    /// reads below wait for what was queued before them.
    ///
    /// A version deleted while its request ran takes the request with it,
    /// as deleting it afterwards would have: nothing is stored then.
    pub async fn record_request(&self, new: NewRequest) -> Result<()> {
        let keep_data = match new.retention.mode {
            RetentionMode::None => return Ok(()),
            RetentionMode::Metadata => false,
            RetentionMode::Full => true,
        };
        if new.retention.seconds <= 0 {
            return Ok(());
        }
        // Sent as JSON text and cast to `json` in the statement: sqlx sends
        // a JSON value as `jsonb`, which cannot hold `\u0000`.
        let data_text = new.request_data.as_ref().map(Value::to_string);
        let result_text = new.result.as_ref().map(Value::to_string);
        let size = |text: &Option<String>| text.as_ref().map(|text| text.len() as i64);
        let row = RecordRow {
            input_size: size(&data_text),
            output_size: size(&result_text),
            request_data: data_text.filter(|_| keep_data),
            result: result_text.filter(|_| keep_data),
            expires_at: new.time_created + Duration::seconds(i64::from(new.retention.seconds)),
            error_message: new.error_message.as_deref().map(error_message),
            // Only their text is stored: not held twice while waiting.
            new: NewRequest {
                request_data: None,
                result: None,
                ..new
            },
        };
        self.lookups.records.record(row).await
    }

    /// Returns once the records of every request finished before the call
    /// are in the database: what the request reads below do first.
    pub async fn requests_written(&self) {
        self.lookups.records.written().await;
    }

    pub async fn get_request(&self, version_id: Uuid, id: Uuid) -> Result<StoredRequest> {
        self.requests_written().await;
        stored_request(&mut *self.connection().await?, version_id, id).await
    }

    /// Several requests of a version, in no particular order; all or none:
    /// an id that is not there is `NotFound` naming it.
    pub async fn get_requests(&self, version_id: Uuid, ids: &[Uuid]) -> Result<Vec<StoredRequest>> {
        self.requests_written().await;
        let rows = query_stored!("r.id = ANY($2)", version_id, ids)
            .fetch_all(&mut *self.connection().await?)
            .await?;
        if let Some(missing) = ids.iter().find(|id| !rows.iter().any(|row| row.id == **id)) {
            return Err(StorageError::NotFound(format!(
                "Request {missing} not found"
            )));
        }
        rows.into_iter().map(StoredRequest::try_from).collect()
    }

    /// A page of a version's or a project's requests that pass the filter,
    /// by creation time in the filter's order (ties by id).
    pub async fn list_requests(
        &self,
        scope: RequestScope,
        filter: &RequestFilter,
    ) -> Result<Vec<RequestSummary>> {
        if filter.matches_nothing {
            return Ok(Vec::new());
        }
        self.requests_written().await;
        let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        let search = filter.search_id.as_deref().map(contains_pattern);
        let mut connection = self.connection().await?;
        let rows = match (scope, filter.sort) {
            (RequestScope::Version(id), SortOrder::Descending) => {
                query_summaries!(
                    "r.version_id",
                    "r.time_created DESC, r.id DESC",
                    id,
                    filter,
                    &statuses as &[&str],
                    search.as_deref()
                )
                .fetch_all(&mut *connection)
                .await?
            }
            (RequestScope::Version(id), SortOrder::Ascending) => {
                query_summaries!(
                    "r.version_id",
                    "r.time_created, r.id",
                    id,
                    filter,
                    &statuses as &[&str],
                    search.as_deref()
                )
                .fetch_all(&mut *connection)
                .await?
            }
            (RequestScope::Project(id), SortOrder::Descending) => {
                query_summaries!(
                    "r.project_id",
                    "r.time_created DESC, r.id DESC",
                    id,
                    filter,
                    &statuses as &[&str],
                    search.as_deref()
                )
                .fetch_all(&mut *connection)
                .await?
            }
            (RequestScope::Project(id), SortOrder::Ascending) => {
                query_summaries!(
                    "r.project_id",
                    "r.time_created, r.id",
                    id,
                    filter,
                    &statuses as &[&str],
                    search.as_deref()
                )
                .fetch_all(&mut *connection)
                .await?
            }
        };
        rows.into_iter().map(RequestSummary::try_from).collect()
    }

    /// Deletes one request of a version.
    pub async fn delete_request(&self, version_id: Uuid, id: Uuid) -> Result<()> {
        self.requests_written().await;
        let deleted = sqlx::query!(
            "DELETE FROM deployment_requests WHERE version_id = $1 AND id = $2",
            version_id,
            id,
        )
        .execute(&mut *self.connection().await?)
        .await?;
        if deleted.rows_affected() == 0 {
            return Err(request_not_found());
        }
        Ok(())
    }

    /// Deletes several requests of a version, all or none: an id that is
    /// not there is `NotFound` naming it, and nothing is deleted.
    pub async fn delete_requests(&self, version_id: Uuid, ids: &[Uuid]) -> Result<()> {
        self.requests_written().await;
        let mut connection = self.connection().await?;
        let mut tx = connection.begin().await?;
        let deleted = sqlx::query_scalar!(
            "DELETE FROM deployment_requests WHERE version_id = $1 AND id = ANY($2) RETURNING id",
            version_id,
            ids,
        )
        .fetch_all(&mut *tx)
        .await?;
        if let Some(missing) = ids.iter().find(|id| !deleted.contains(id)) {
            // Dropping the transaction rolls the deletions back.
            return Err(StorageError::NotFound(format!(
                "Request {missing} not found"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes at most `limit` finished requests whose retention time has
    /// passed at `now`, oldest expiry first; returns how many. Requests
    /// still pending or being processed never expire. Rows another
    /// transaction holds are skipped (the next sweep takes them), so sweeps
    /// of several processes do not wait on each other. Records still queued
    /// are written first, so that a sweep treats them as the others.
    pub async fn delete_expired_requests(&self, now: DateTime<Utc>, limit: i64) -> Result<u64> {
        self.requests_written().await;
        let deleted = sqlx::query!(
            "DELETE FROM deployment_requests WHERE id IN (
                 SELECT id FROM deployment_requests
                 WHERE expires_at <= $1 AND status IN ('completed', 'failed', 'cancelled')
                 ORDER BY expires_at
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED)",
            now,
            limit,
        )
        .execute(&mut *self.connection().await?)
        .await?;
        Ok(deleted.rows_affected())
    }
}

/// A request as it is recorded: its data as JSON text (or not kept).
pub(crate) struct RecordRow {
    new: NewRequest,
    request_data: Option<String>,
    result: Option<String>,
    input_size: Option<i64>,
    output_size: Option<i64>,
    error_message: Option<String>,
    expires_at: DateTime<Utc>,
}

impl RecordRow {
    /// The bytes of request data and result it holds.
    pub(crate) fn data_bytes(&self) -> usize {
        let length = |text: &Option<String>| text.as_ref().map_or(0, String::len);
        length(&self.request_data) + length(&self.result)
    }
}

/// One request of a version as `conn` sees it: within a transaction, as
/// the transaction left it.
pub(crate) async fn stored_request(
    conn: &mut PgConnection,
    version_id: Uuid,
    id: Uuid,
) -> Result<StoredRequest> {
    query_stored!("r.id = $2", version_id, id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(request_not_found)?
        .try_into()
}

/// Inserts the records of finished requests (see `crate::record_writer`).
/// One version deleted meanwhile fails the statement for all: the others
/// then go in one by one, and its requests are dropped.
pub(crate) async fn write_records(conn: &mut PgConnection, rows: &[RecordRow]) -> Result<()> {
    match insert_records(&mut *conn, rows).await {
        Ok(()) => {}
        Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() && rows.len() > 1 => {
            for row in rows.chunks(1) {
                match insert_records(&mut *conn, row).await {
                    Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {}
                    other => other?,
                }
            }
        }
        Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => {}
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// Commits without waiting for the WAL flush (`synchronous_commit` off for
/// this statement's transaction only): the caller already has its answer,
/// and the record is its history. A crash of PostgreSQL or the machine can
/// lose the records of the last moments (at most three `wal_writer_delay`s),
/// never leave one half written, and every reader sees a record as soon as
/// its caller does. Waiting for the flush cost each direct request a disk
/// write; batch results, which are the only delivery of their answer, are
/// committed durably (`crate::queue`).
async fn insert_records(conn: &mut PgConnection, rows: &[RecordRow]) -> sqlx::Result<()> {
    fn column<'a, T>(rows: &'a [RecordRow], value: impl Fn(&'a RecordRow) -> T) -> Vec<T> {
        rows.iter().map(value).collect()
    }
    sqlx::query!(
        "INSERT INTO deployment_requests
             (id, project_id, deployment_id, version_id, batch, status, success,
              time_created, time_started, time_completed, request_data, result,
              input_size, output_size, error_message, created_by, origin,
              notification_group, timeout_seconds, expires_at)
         SELECT id, project_id, deployment_id, version_id, batch, status, success,
                time_created, time_started, time_completed, request_data::json, result::json,
                input_size, output_size, error_message, created_by, origin::jsonb,
                notification_group, timeout_seconds, expires_at
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bool[], $6::text[],
                     $7::bool[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[],
                     $11::text[], $12::text[], $13::int8[], $14::int8[], $15::text[],
                     $16::text[], $17::text[], $18::text[], $19::int4[], $20::timestamptz[])
              AS r(id, project_id, deployment_id, version_id, batch, status, success,
                   time_created, time_started, time_completed, request_data, result,
                   input_size, output_size, error_message, created_by, origin,
                   notification_group, timeout_seconds, expires_at),
              (SELECT set_config('synchronous_commit', 'off', true)) AS commit_without_flush",
        &column(rows, |r| r.new.id),
        &column(rows, |r| r.new.project_id),
        &column(rows, |r| r.new.deployment_id),
        &column(rows, |r| r.new.version_id),
        &column(rows, |r| r.new.batch),
        &column(rows, |r| r.new.status.as_str()) as &[&str],
        &column(rows, |r| r.new.success) as &[Option<bool>],
        &column(rows, |r| r.new.time_created),
        &column(rows, |r| r.new.time_started) as &[Option<DateTime<Utc>>],
        &column(rows, |r| r.new.time_completed) as &[Option<DateTime<Utc>>],
        &column(rows, |r| r.request_data.as_deref()) as &[Option<&str>],
        &column(rows, |r| r.result.as_deref()) as &[Option<&str>],
        &column(rows, |r| r.input_size) as &[Option<i64>],
        &column(rows, |r| r.output_size) as &[Option<i64>],
        &column(rows, |r| r.error_message.as_deref()) as &[Option<&str>],
        &column(rows, |r| r.new.created_by.as_str()) as &[&str],
        &column(rows, |r| r.new.origin.to_string()),
        &column(rows, |r| r.new.notification_group.as_deref()) as &[Option<&str>],
        &column(rows, |r| r.new.timeout_seconds),
        &column(rows, |r| r.expires_at),
    )
    .execute(conn)
    .await?;
    Ok(())
}
