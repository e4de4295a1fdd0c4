//! The batch queue. A batch request is stored `pending` by the transaction
//! that accepts it, claimed by one worker (`FOR UPDATE SKIP LOCKED`) under a
//! lease that worker renews, and finished by the claim that holds it, once:
//! a claim whose lease ran out (its server or instance gone) no longer
//! matches the row, and the recovery sweep puts the request back in the
//! queue or fails it, as its version's `restart_request_interruption` says.
//!
//! Every final state goes through one statement ([`FINALIZE`]) that applies
//! the version's retention: `full` keeps the data and the result, `metadata`
//! neither, `none` lets the sweep remove the row at once.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Connection as _, PgConnection};
use ubiops_domain::request_data::error_message;
use ubiops_domain::requests::RequestStatus;
use uuid::Uuid;

use crate::error::corrupt;
use crate::requests::{request_not_found, stored_request, StoredRequest};
use crate::versions::version_not_found;
use crate::{Result, StorageError, Store};

/// The channel a queued batch notifies, with its version's id as payload.
pub const QUEUE_CHANNEL: &str = "deployment_requests";

/// The channel a cancel of a processing request notifies, so that its
/// worker stops it at once rather than at its next lease renewal.
pub const CANCEL_CHANNEL: &str = "deployment_request_cancels";

/// Batch requests to queue for one version: all of them, or none.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub project_id: Uuid,
    pub deployment_id: Uuid,
    pub version_id: Uuid,
    pub version_name: String,
    pub inputs: Vec<Value>,
    pub created_by: String,
    pub origin: Value,
    pub timeout_seconds: i32,
    pub notification_group: Option<String>,
    /// The version's `maximum_queue_size_batch`: pending requests allowed.
    pub queue_limit: i64,
}

/// A request as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: Uuid,
    pub time_created: DateTime<Utc>,
}

/// A request a worker holds. `claim` identifies this hold: only it can
/// renew or finish the request.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub claim: String,
    pub data: Value,
    pub time_created: DateTime<Utc>,
    pub timeout_seconds: i32,
    pub retries: i32,
}

/// How the code answered a claimed request.
#[derive(Debug, Clone)]
pub enum Outcome {
    Completed(Value),
    Failed(String),
}

/// What renewing a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Still held; the lease runs on.
    Held,
    /// Still held, but cancelled: the result will not be kept.
    Cancelled,
    /// No longer held (recovered after the lease ran out, or deleted): the
    /// worker must not count on finishing it.
    Lost,
}

/// What a recovery sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Interrupted requests put back in the queue.
    pub requeued: u64,
    /// Interrupted requests failed, and pending ones past their timeout.
    pub failed: u64,
    /// Cancelled requests whose worker is gone.
    pub cancelled: u64,
}

/// A final state, with the version's retention applied. `$2` is the claim
/// that must hold the row, or NULL for the recovery sweep and cancels,
/// which hold the row's lock instead (and may settle a pending request).
/// A request being cancelled (`cancelled_pending`) becomes `cancelled`
/// whatever its outcome, without a result.
macro_rules! finalize {
    ($conn:expr, $id:expr, $claim:expr, $status:expr, $success:expr, $result:expr, $output_size:expr, $error:expr $(,)?) => {
        sqlx::query_scalar!(
            r#"UPDATE deployment_requests r SET
                   status = CASE WHEN r.status = 'cancelled_pending' THEN 'cancelled' ELSE $3::text END,
                   success = CASE WHEN r.status = 'cancelled_pending' THEN false ELSE $4::bool END,
                   result = CASE WHEN r.status <> 'cancelled_pending'
                                  AND v.request_retention_mode = 'full'
                                 THEN $5::text::json END,
                   output_size = CASE WHEN r.status <> 'cancelled_pending' THEN $6::int8 END,
                   error_message = CASE WHEN r.status <> 'cancelled_pending' THEN $7::text END,
                   request_data = CASE WHEN v.request_retention_mode = 'full'
                                       THEN r.request_data END,
                   time_completed = now(),
                   worker_id = NULL,
                   lease_expires_at = NULL,
                   expires_at = now() + CASE WHEN v.request_retention_mode = 'none'
                                             THEN interval '0'
                                             ELSE make_interval(secs => v.request_retention_time)
                                        END
               FROM versions v
               WHERE r.id = $1 AND v.id = r.version_id
                 AND (r.status IN ('processing', 'cancelled_pending')
                      OR ($2::text IS NULL AND r.status = 'pending'))
                 AND ($2::text IS NULL OR r.worker_id = $2)
               RETURNING r.status"#,
            $id,
            $claim,
            $status,
            $success,
            $result,
            $output_size,
            $error,
        )
        .fetch_optional($conn)
    };
}

impl Store {
    /// Queues a batch in one transaction: every input becomes a pending
    /// request, in the order given, and the version's workers are notified
    /// at commit. Refused, with nothing queued, when the version's queue
    /// would hold more than its limit.
    pub async fn enqueue_batch(&self, batch: &NewBatch) -> Result<Vec<Queued>> {
        let mut connection = self.connection().await?;
        let mut tx = connection.begin().await?;
        // Concurrent batches of one version take turns here, so the limit
        // holds exactly; claims and finishes do not wait on it.
        sqlx::query_scalar!(
            "SELECT id FROM versions WHERE id = $1 FOR NO KEY UPDATE",
            batch.version_id
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| version_not_found(&batch.version_name))?;
        let pending = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM deployment_requests
               WHERE version_id = $1 AND status = 'pending'"#,
            batch.version_id
        )
        .fetch_one(&mut *tx)
        .await?;
        let room = (batch.queue_limit - pending).max(0);
        if batch.inputs.len() as i64 > room {
            return Err(StorageError::Rejected(format!(
                "The batch queue of version '{}' is full: it holds {pending} pending requests and \
                 its maximum_queue_size_batch is {}, so at most {room} more can be queued. Collect \
                 or wait for the queued requests, or raise maximum_queue_size_batch",
                batch.version_name, batch.queue_limit
            )));
        }
        let ids: Vec<Uuid> = batch
            .inputs
            .iter()
            .map(|_| ubiops_domain::requests::new_request_id())
            .collect();
        // Sent as JSON text and cast to `json`: sqlx sends a JSON value as
        // `jsonb`, which cannot hold `\u0000`.
        let data: Vec<String> = batch.inputs.iter().map(Value::to_string).collect();
        // One creation time per batch, a microsecond apart in input order,
        // so that the queue (oldest first) keeps that order.
        let queued = sqlx::query_as!(
            Queued,
            r#"INSERT INTO deployment_requests
                   (id, project_id, deployment_id, version_id, batch, status, time_created,
                    request_data, input_size, created_by, origin, notification_group,
                    timeout_seconds, expires_at)
               SELECT k.id, $3, $4, $5, true, 'pending',
                      now() + (k.ord - 1) * interval '1 microsecond',
                      k.data::json, octet_length(k.data), $6, $7, $8, $9::int4,
                      now() + make_interval(secs => $9::int4)
               FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS k(id, data, ord)
               RETURNING id, time_created"#,
            &ids,
            &data,
            batch.project_id,
            batch.deployment_id,
            batch.version_id,
            batch.created_by,
            batch.origin,
            batch.notification_group,
            batch.timeout_seconds,
        )
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query!(
            "SELECT pg_notify($1, $2)",
            QUEUE_CHANNEL,
            batch.version_id.to_string()
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut queued = queued;
        queued.sort_by_key(|queued| queued.time_created);
        Ok(queued)
    }

    /// Takes the oldest pending request of a version that is still within
    /// its timeout, under a lease of `lease_seconds`, for `worker`.
    pub async fn claim_request(
        &self,
        version_id: Uuid,
        worker: Uuid,
        lease_seconds: f64,
    ) -> Result<Option<Claimed>> {
        let claim = format!("{worker}/{}", Uuid::new_v4());
        let row = sqlx::query!(
            r#"UPDATE deployment_requests r SET
                   status = 'processing',
                   worker_id = $2,
                   lease_expires_at = now() + make_interval(secs => $3),
                   time_started = now()
               WHERE r.id = (
                   SELECT q.id FROM deployment_requests q
                   WHERE q.version_id = $1 AND q.status = 'pending'
                     AND (q.retry_at IS NULL OR q.retry_at <= now())
                     AND q.time_created + make_interval(secs => q.timeout_seconds) > now()
                   ORDER BY q.time_created, q.id
                   LIMIT 1
                   FOR UPDATE SKIP LOCKED)
               RETURNING r.id, r.request_data::text AS "data!", r.time_created,
                         r.timeout_seconds, r.retries"#,
            version_id,
            claim,
            lease_seconds,
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?;
        row.map(|row| {
            Ok(Claimed {
                data: serde_json::from_str(&row.data)
                    .map_err(|_| corrupt("request data", &row.data, row.id))?,
                id: row.id,
                claim,
                time_created: row.time_created,
                timeout_seconds: row.timeout_seconds,
                retries: row.retries,
            })
        })
        .transpose()
    }

    /// Extends the leases of `claims` by `lease_seconds`; says for each
    /// whether it is still held.
    pub async fn renew_claims(&self, claims: &[String], lease_seconds: f64) -> Result<Vec<Hold>> {
        let held = sqlx::query!(
            "UPDATE deployment_requests
             SET lease_expires_at = now() + make_interval(secs => $2)
             WHERE worker_id = ANY($1) AND status IN ('processing', 'cancelled_pending')
             RETURNING worker_id, status",
            claims,
            lease_seconds,
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(claims
            .iter()
            .map(|claim| {
                match held
                    .iter()
                    .find(|row| row.worker_id.as_deref() == Some(claim.as_str()))
                {
                    Some(row) if row.status == "cancelled_pending" => Hold::Cancelled,
                    Some(_) => Hold::Held,
                    None => Hold::Lost,
                }
            })
            .collect())
    }

    /// Records the outcome of a claimed request, if the claim still holds
    /// it; `false` when it does not (the result is not recorded).
    pub async fn finish_request(&self, claimed: &Claimed, outcome: &Outcome) -> Result<bool> {
        let (status, success, result, error) = match outcome {
            Outcome::Completed(result) => (RequestStatus::Completed, true, Some(result), None),
            Outcome::Failed(error) => (RequestStatus::Failed, false, None, Some(error)),
        };
        let result = result.map(Value::to_string);
        let finished = finalize!(
            &mut *self.connection().await?,
            claimed.id,
            Some(claimed.claim.as_str()),
            status.as_str(),
            success,
            result.as_deref(),
            result.as_ref().map(|text| text.len() as i64),
            error.map(|error| error_message(error)),
        )
        .await?;
        Ok(finished.is_some())
    }

    /// Cancels a request of a version: a pending one at once, a processing
    /// one once its worker lets go (`cancelled_pending` until then). A
    /// finished one (a direct request's record queued included) is refused.
    /// Returns the request as the cancel left it: a worker that lets go at
    /// once does not turn the answer's `cancelled_pending` into `cancelled`.
    pub async fn cancel_request(&self, version_id: Uuid, id: Uuid) -> Result<StoredRequest> {
        self.requests_written().await;
        let mut connection = self.connection().await?;
        let mut tx = connection.begin().await?;
        let status = sqlx::query_scalar!(
            "SELECT status FROM deployment_requests WHERE version_id = $1 AND id = $2 FOR UPDATE",
            version_id,
            id,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(request_not_found)?;
        let status =
            RequestStatus::parse(&status).ok_or_else(|| corrupt("request status", &status, id))?;
        match status {
            RequestStatus::Pending => cancel(&mut tx, id).await?,
            RequestStatus::Processing => {
                sqlx::query!(
                    "UPDATE deployment_requests SET status = 'cancelled_pending' WHERE id = $1",
                    id
                )
                .execute(&mut *tx)
                .await?;
                sqlx::query!("SELECT pg_notify($1, $2)", CANCEL_CHANNEL, id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            RequestStatus::CancelledPending => {}
            finished => {
                return Err(StorageError::Rejected(format!(
                    "The request has already finished (its status is '{}'): only pending or \
                     processing requests can be cancelled",
                    finished.as_str()
                )))
            }
        }
        let request = stored_request(&mut tx, version_id, id).await?;
        tx.commit().await?;
        Ok(request)
    }

    /// Settles up to `limit` requests whose claim's lease ran out, and
    /// pending requests past their timeout. An interrupted request goes
    /// back to the queue when its version restarts interrupted requests and
    /// it has been interrupted fewer than `max_retries` times (claimable
    /// again after `retry_delay_seconds`); otherwise it fails saying why.
    /// Rows another sweep holds are skipped.
    pub async fn recover_requests(
        &self,
        limit: i64,
        max_retries: i32,
        retry_delay_seconds: f64,
    ) -> Result<Recovered> {
        let mut connection = self.connection().await?;
        let mut tx = connection.begin().await?;
        let stale = sqlx::query!(
            r#"SELECT r.id, r.status, r.retries, r.timeout_seconds,
                      v.restart_request_interruption AS restart
               FROM deployment_requests r
               JOIN versions v ON v.id = r.version_id
               WHERE (r.status IN ('processing', 'cancelled_pending') AND r.lease_expires_at <= now())
                  OR (r.status = 'pending'
                      AND r.time_created + make_interval(secs => r.timeout_seconds) <= now())
               ORDER BY r.time_created
               LIMIT $1
               FOR UPDATE OF r SKIP LOCKED"#,
            limit,
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut recovered = Recovered::default();
        for row in stale {
            match row.status.as_str() {
                "cancelled_pending" => {
                    recovered.cancelled += 1;
                    cancel(&mut tx, row.id).await?;
                }
                "pending" => {
                    recovered.failed += 1;
                    let message = format!(
                        "The request did not start within its timeout of {} s: no instance of \
                         the version took it in time",
                        row.timeout_seconds
                    );
                    fail(&mut tx, row.id, &message).await?;
                }
                _ => {
                    let interruption = Interruption {
                        id: row.id,
                        restart: row.restart,
                        retries: row.retries,
                        reason: "its instance or server stopped while processing it",
                    };
                    if interruption
                        .settle(&mut tx, max_retries, retry_delay_seconds)
                        .await?
                    {
                        recovered.requeued += 1;
                    } else {
                        recovered.failed += 1;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(recovered)
    }

    /// Settles a claimed request whose instance was lost midway (`reason`
    /// says how), as its version's `restart_request_interruption` says: back
    /// to the queue while it has been interrupted fewer than `max_retries`
    /// times, failed otherwise. `false` when the claim no longer holds it.
    pub async fn interrupt_request(
        &self,
        claimed: &Claimed,
        reason: &str,
        max_retries: i32,
        retry_delay_seconds: f64,
    ) -> Result<bool> {
        let mut connection = self.connection().await?;
        let mut tx = connection.begin().await?;
        let row = sqlx::query!(
            r#"SELECT r.status, r.retries, v.restart_request_interruption AS restart
               FROM deployment_requests r
               JOIN versions v ON v.id = r.version_id
               WHERE r.id = $1 AND r.worker_id = $2
               FOR UPDATE OF r"#,
            claimed.id,
            claimed.claim,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        if row.status == "cancelled_pending" {
            // Cancelled meanwhile: the cancel wins, nothing runs again.
            fail(&mut tx, claimed.id, reason).await?;
        } else {
            let interruption = Interruption {
                id: claimed.id,
                restart: row.restart,
                retries: row.retries,
                reason,
            };
            interruption
                .settle(&mut tx, max_retries, retry_delay_seconds)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Versions with requests waiting in the queue, by id, with the names a
    /// worker needs to reach their instances.
    pub async fn versions_with_queue(&self) -> Result<Vec<(Uuid, String, String, String)>> {
        Ok(sqlx::query!(
            r#"SELECT v.id, p.name AS project, d.name AS deployment, v.name AS version
               FROM versions v
               JOIN deployments d ON d.id = v.deployment_id
               JOIN projects p ON p.id = d.project_id
               WHERE EXISTS (SELECT 1 FROM deployment_requests r
                             WHERE r.version_id = v.id AND r.status = 'pending')"#
        )
        .fetch_all(&mut *self.connection().await?)
        .await?
        .into_iter()
        .map(|row| (row.id, row.project, row.deployment, row.version))
        .collect())
    }
}

/// A processing request that lost its instance or server, with its row
/// locked by the caller's transaction.
struct Interruption<'a> {
    id: Uuid,
    restart: bool,
    retries: i32,
    reason: &'a str,
}

impl Interruption<'_> {
    /// Back to the queue (with the interruption counted, claimable after
    /// the delay) when its version restarts interrupted requests and it has
    /// tries left; failed, saying why, otherwise. `true` when requeued.
    async fn settle(
        &self,
        conn: &mut PgConnection,
        max_retries: i32,
        retry_delay_seconds: f64,
    ) -> Result<bool> {
        if self.restart && self.retries < max_retries {
            sqlx::query!(
                "UPDATE deployment_requests SET
                     status = 'pending', retries = retries + 1, worker_id = NULL,
                     lease_expires_at = NULL, time_started = NULL,
                     retry_at = now() + make_interval(secs => $2)
                 WHERE id = $1",
                self.id,
                retry_delay_seconds,
            )
            .execute(&mut *conn)
            .await?;
            return Ok(true);
        }
        let message = if self.restart {
            format!(
                "The request was interrupted {} times and is not retried again; the last time, {}",
                self.retries + 1,
                self.reason
            )
        } else {
            format!(
                "The request was interrupted: {} (the version's restart_request_interruption is \
                 off, so it is not retried)",
                self.reason
            )
        };
        fail(conn, self.id, &message).await?;
        Ok(false)
    }
}

/// Cancels a request the caller holds locked (any claim).
async fn cancel(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    finalize!(
        conn,
        id,
        None::<&str>,
        RequestStatus::Cancelled.as_str(),
        false,
        None::<&str>,
        None::<i64>,
        None::<String>,
    )
    .await?;
    Ok(())
}

/// Fails a request the caller holds locked (any claim), with `message`; a
/// request being cancelled becomes `cancelled` instead.
async fn fail(conn: &mut PgConnection, id: Uuid, message: &str) -> Result<()> {
    finalize!(
        conn,
        id,
        None::<&str>,
        RequestStatus::Failed.as_str(),
        false,
        None::<&str>,
        None::<i64>,
        Some(message),
    )
    .await?;
    Ok(())
}
