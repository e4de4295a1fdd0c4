//! The worker side of builds: claiming queued builds with `FOR UPDATE SKIP
//! LOCKED`, holding them with a renewable lease instead of a long
//! transaction, and publishing the outcome. Every step checks that the build
//! is still this worker's and not cancelled, so a build is published at most
//! once and a cancelled one never.

use sqlx::Connection as _;
use ubiops_domain::audit::AuditAction;
use ubiops_domain::logs::Level;
use uuid::Uuid;

use crate::audit::deployment_event as version_event;
use crate::revisions::refresh_version_status;
use crate::versions::DeploymentRef;
use crate::{Actor, Result, Store};

/// Who audit events of the build service are attributed to (the documentation
/// uses "UbiOps" for actions of the service itself).
pub const SERVICE_ACTOR: &str = "UbiOps";

/// A build this worker now holds, with what it needs to run it.
#[derive(Debug, Clone)]
pub struct ClaimedBuild {
    pub id: Uuid,
    pub revision_id: Uuid,
    pub version_id: Uuid,
    pub object_key: String,
    pub language: String,
    pub attempts: i32,
    pub project_id: Uuid,
    pub deployment_id: Uuid,
    pub deployment_name: String,
    pub version_name: String,
}

impl ClaimedBuild {
    fn deployment(&self) -> DeploymentRef<'_> {
        DeploymentRef {
            project_id: self.project_id,
            id: self.deployment_id,
            name: &self.deployment_name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildOutcome {
    Success {
        has_request_method: bool,
        has_requests_method: bool,
        /// The key of the environment it runs in (Python packages).
        environment: Option<String>,
    },
    Failed(String),
}

/// How many times a publish aborted by a deadlock is run again at once.
const MAX_CONFLICTS: u32 = 3;

impl Store {
    /// Takes the oldest queued build that is not waiting out a back-off, or
    /// one whose worker's lease ran out (it died), unless it has been tried
    /// `max_attempts` times already. Every claim counts as an attempt.
    pub async fn claim_build(
        &self,
        worker_id: &str,
        lease_seconds: f64,
        max_attempts: i32,
    ) -> Result<Option<ClaimedBuild>> {
        let claimed = sqlx::query_as!(
            ClaimedBuild,
            r#"WITH next AS (
                   SELECT id FROM builds
                   WHERE (status = 'queued' AND (retry_at IS NULL OR retry_at <= now()))
                      OR (status IN ('building', 'validating') AND lease_expires_at < now()
                          AND attempts < $3)
                   ORDER BY creation_date
                   LIMIT 1
                   FOR UPDATE SKIP LOCKED),
               claimed AS (
                   UPDATE builds b SET status = 'building', worker_id = $1, attempts = b.attempts + 1,
                          retry_at = NULL, lease_expires_at = now() + make_interval(secs => $2)
                   FROM next WHERE b.id = next.id
                   RETURNING b.id, b.revision_id, b.version_id, b.attempts)
               SELECT c.id AS "id!", c.revision_id AS "revision_id!", c.version_id AS "version_id!",
                      c.attempts AS "attempts!", r.object_key, v.language, d.project_id,
                      d.id AS deployment_id, d.name AS deployment_name, v.name AS version_name
               FROM claimed c
               JOIN revisions r ON r.id = c.revision_id
               JOIN versions v ON v.id = c.version_id
               JOIN deployments d ON d.id = v.deployment_id"#,
            worker_id,
            lease_seconds,
            max_attempts,
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?;
        Ok(claimed)
    }

    /// Fails builds whose workers died `max_attempts` times, so that a build
    /// that kills its worker cannot loop forever. Returns how many.
    pub async fn fail_exhausted_builds(&self, max_attempts: i32) -> Result<u64> {
        let mut failed = 0;
        loop {
            let mut conn = self.connection().await?;
            let mut tx = conn.begin().await?;
            let Some(row) = sqlx::query!(
                r#"SELECT b.id, b.version_id, b.attempts, v.name AS version_name,
                          d.project_id, d.id AS deployment_id, d.name AS deployment_name
                   FROM builds b
                   JOIN versions v ON v.id = b.version_id
                   JOIN deployments d ON d.id = v.deployment_id
                   WHERE b.status IN ('building', 'validating') AND b.lease_expires_at < now()
                     AND b.attempts >= $1
                   LIMIT 1
                   FOR UPDATE OF b SKIP LOCKED"#,
                max_attempts,
            )
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Ok(failed);
            };
            let message = format!(
                "The build was interrupted {} times (its worker stopped responding): rebuild the revision to try again",
                row.attempts
            );
            sqlx::query!(
                "UPDATE builds SET status = 'failed', error_message = $2, worker_id = NULL,
                        lease_expires_at = NULL
                 WHERE id = $1",
                row.id,
                message,
            )
            .execute(&mut *tx)
            .await?;
            refresh_version_status(&mut tx, row.version_id).await?;
            let deployment = DeploymentRef {
                project_id: row.project_id,
                id: row.deployment_id,
                name: &row.deployment_name,
            };
            let actor = Actor {
                email: SERVICE_ACTOR.to_owned(),
            };
            let line = format!("Build failed: {message}");
            crate::logs::append_for_build(&mut tx, row.id, &[(Level::Error, line)]).await?;
            let event = format!(
                "Build {} of version {} of deployment {} failed: {message}",
                row.id, row.version_name, row.deployment_name
            );
            record_and_commit(
                tx,
                version_event(deployment, AuditAction::Info, &actor, event),
            )
            .await?;
            failed += 1;
        }
    }

    /// Extends the lease; false if the build is no longer this worker's to run
    /// (cancelled, or taken over after the lease ran out).
    pub async fn renew_build_lease(
        &self,
        id: Uuid,
        worker_id: &str,
        lease_seconds: f64,
    ) -> Result<bool> {
        let renewed = sqlx::query!(
            "UPDATE builds SET lease_expires_at = now() + make_interval(secs => $3)
             WHERE id = $1 AND worker_id = $2 AND status IN ('building', 'validating')",
            id,
            worker_id,
            lease_seconds,
        )
        .execute(&mut *self.connection().await?)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// True while the build is this worker's to run: checked often, so a
    /// cancel stops a running install or import within a second or so.
    pub async fn build_is_ours(&self, id: Uuid, worker_id: &str) -> Result<bool> {
        let ours = sqlx::query_scalar!(
            "SELECT EXISTS (SELECT 1 FROM builds
             WHERE id = $1 AND worker_id = $2 AND status IN ('building', 'validating'))
             AS \"ours!\"",
            id,
            worker_id,
        )
        .fetch_one(&mut *self.connection().await?)
        .await?;
        Ok(ours)
    }

    /// The environments of the active revisions, which the cache keeps
    /// whatever their age.
    pub async fn active_environments(&self) -> Result<Vec<String>> {
        let keys = sqlx::query_scalar!(
            "SELECT DISTINCT b.environment AS \"environment!\"
             FROM builds b JOIN versions v ON v.active_revision_id = b.revision_id
             WHERE b.status = 'success' AND b.environment IS NOT NULL",
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(keys)
    }

    /// Moves from `building` to `validating`; false if no longer ours.
    pub async fn start_validating(&self, id: Uuid, worker_id: &str) -> Result<bool> {
        let moved = sqlx::query!(
            "UPDATE builds SET status = 'validating'
             WHERE id = $1 AND worker_id = $2 AND status = 'building'",
            id,
            worker_id,
        )
        .execute(&mut *self.connection().await?)
        .await?;
        Ok(moved.rows_affected() == 1)
    }

    /// Publishes the outcome in one transaction: on success the revision
    /// becomes the version's active revision. False (and nothing changed) if
    /// the build was cancelled or taken over meanwhile.
    pub async fn finish_build(
        &self,
        build: &ClaimedBuild,
        worker_id: &str,
        outcome: &BuildOutcome,
    ) -> Result<bool> {
        // Publishes of builds of one version take the same rows; when
        // PostgreSQL breaks a deadlock between them by aborting one, that
        // one runs again at once rather than going back to the queue.
        let mut conflicts = 0;
        loop {
            match self.publish_build(build, worker_id, outcome).await {
                Err(error) if error.is_transient_conflict() && conflicts < MAX_CONFLICTS => {
                    conflicts += 1;
                }
                published => {
                    // A request right after it goes to the new revision.
                    self.serving_changed();
                    return published;
                }
            }
        }
    }

    async fn publish_build(
        &self,
        build: &ClaimedBuild,
        worker_id: &str,
        outcome: &BuildOutcome,
    ) -> Result<bool> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        let ours = sqlx::query_scalar!(
            "SELECT id FROM builds
             WHERE id = $1 AND worker_id = $2 AND status IN ('building', 'validating')
             FOR UPDATE",
            build.id,
            worker_id,
        )
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if !ours {
            return Ok(false);
        }
        let summary = match outcome {
            BuildOutcome::Success {
                has_request_method,
                has_requests_method,
                environment,
            } => {
                sqlx::query!(
                    "UPDATE builds SET status = 'success', error_message = NULL, worker_id = NULL,
                            lease_expires_at = NULL, has_request_method = $2, has_requests_method = $3,
                            environment = $4
                     WHERE id = $1",
                    build.id,
                    has_request_method,
                    has_requests_method,
                    environment.as_deref(),
                )
                .execute(&mut *tx)
                .await?;
                sqlx::query!(
                    "UPDATE versions SET active_revision_id = $2, has_request_method = $3,
                            has_requests_method = $4
                     WHERE id = $1",
                    build.version_id,
                    build.revision_id,
                    has_request_method,
                    has_requests_method,
                )
                .execute(&mut *tx)
                .await?;
                "succeeded".to_owned()
            }
            BuildOutcome::Failed(message) => {
                sqlx::query!(
                    "UPDATE builds SET status = 'failed', error_message = $2, worker_id = NULL,
                            lease_expires_at = NULL
                     WHERE id = $1",
                    build.id,
                    message,
                )
                .execute(&mut *tx)
                .await?;
                format!("failed: {message}")
            }
        };
        refresh_version_status(&mut tx, build.version_id).await?;
        let actor = Actor {
            email: SERVICE_ACTOR.to_owned(),
        };
        let event = format!(
            "Build {} of version {} of deployment {} {summary}",
            build.id, build.version_name, build.deployment_name
        );
        record_and_commit(
            tx,
            version_event(build.deployment(), AuditAction::Info, &actor, event),
        )
        .await?;
        Ok(true)
    }

    /// Uploads whose server stopped renewing them: their objects are orphans.
    pub async fn expired_uploads(&self) -> Result<Vec<String>> {
        let keys = sqlx::query_scalar!(
            "SELECT object_key FROM pending_uploads WHERE lease_expires_at < now() LIMIT 100"
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(keys)
    }

    /// Objects whose rows were deleted and that still wait for deletion.
    pub async fn queued_object_deletions(&self) -> Result<Vec<String>> {
        let keys = sqlx::query_scalar!(
            "SELECT object_key FROM object_deletions ORDER BY queued_at LIMIT 100"
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(keys)
    }

    pub async fn forget_object_deletion(&self, object_key: &str) -> Result<()> {
        sqlx::query!(
            "DELETE FROM object_deletions WHERE object_key = $1",
            object_key
        )
        .execute(&mut *self.connection().await?)
        .await?;
        Ok(())
    }
}

async fn record_and_commit(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    event: crate::NewAuditEvent<'_>,
) -> Result<()> {
    crate::audit::record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(())
}

impl Store {
    /// Gives a build back to the queue because its worker is shutting down:
    /// not the build's fault, so the attempt is given back and another worker
    /// may take it at once.
    pub async fn release_build(&self, id: Uuid, worker_id: &str) -> Result<()> {
        sqlx::query!(
            "UPDATE builds SET status = 'queued', worker_id = NULL, lease_expires_at = NULL,
                    retry_at = NULL, attempts = greatest(attempts - 1, 0)
             WHERE id = $1 AND worker_id = $2 AND status IN ('building', 'validating')",
            id,
            worker_id,
        )
        .execute(&mut *self.connection().await?)
        .await?;
        Ok(())
    }

    /// Puts a build that a fault stopped back in the queue, its attempt
    /// counted, not to be claimed for `delay_seconds`.
    pub async fn retry_build(&self, id: Uuid, worker_id: &str, delay_seconds: f64) -> Result<()> {
        sqlx::query!(
            "UPDATE builds SET status = 'queued', worker_id = NULL, lease_expires_at = NULL,
                    retry_at = now() + make_interval(secs => $3)
             WHERE id = $1 AND worker_id = $2 AND status IN ('building', 'validating')",
            id,
            worker_id,
            delay_seconds,
        )
        .execute(&mut *self.connection().await?)
        .await?;
        Ok(())
    }
}
