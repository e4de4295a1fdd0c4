//! Revisions (uploaded deployment files) and the API side of their builds:
//! creating, listing, rebuilding and cancelling. The worker side is in
//! `builds.rs`.

use chrono::{DateTime, Utc};
use sqlx::Connection as _;
use sqlx::PgConnection;
use ubiops_domain::audit::AuditAction;
use ubiops_domain::logs::Level;
use uuid::Uuid;

use crate::audit::{deployment_event as version_event, record};
use crate::versions::DeploymentRef;
use crate::{Actor, Result, StorageError, Store};

/// The channel workers LISTEN on; a NOTIFY is sent when a build is queued.
pub const BUILDS_CHANNEL: &str = "ubiops_builds";

/// A version named in a request path, resolved to ids.
#[derive(Debug, Clone, Copy)]
pub struct VersionRef<'a> {
    pub deployment: DeploymentRef<'a>,
    pub id: Uuid,
    pub name: &'a str,
}

#[derive(Debug, Clone)]
pub struct Revision {
    pub id: Uuid,
    pub version: String,
    pub creation_date: DateTime<Utc>,
    pub created_by: String,
    /// Status, error and findings of the revision's newest build (or of the
    /// build the revision was looked up by).
    pub status: Option<String>,
    pub error_message: Option<String>,
    pub has_request_method: Option<bool>,
    pub has_requests_method: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Build {
    pub id: Uuid,
    pub revision: Uuid,
    pub creation_date: DateTime<Utc>,
    pub status: String,
    pub error_message: Option<String>,
    pub trigger: String,
    pub has_request_method: bool,
    pub has_requests_method: bool,
}

/// A stored deployment file.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub object_key: String,
    pub file_name: String,
}

/// A file that is now in object storage and becomes a revision.
#[derive(Debug, Clone)]
pub struct NewRevision {
    pub id: Uuid,
    pub object_key: String,
    pub file_name: String,
    pub size_bytes: i64,
}

/// Why a build was started, as the `trigger` field shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Upload,
    CopyFromVersion,
    Template,
    Rebuild,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Upload => "Deployment file upload",
            Trigger::CopyFromVersion => "Copy from version",
            Trigger::Template => "Template",
            Trigger::Rebuild => "Rebuild",
        }
    }
}

/// `query_as!` into `Build` with its select list, written once here, between
/// the SQL `$before` and `$after`.
macro_rules! query_builds {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Build,
            $before
                + "id, revision_id AS revision, creation_date, status, error_message, trigger,
                   has_request_method, has_requests_method"
                + $after
            $(, $arg)*
        )
    };
}

/// Recomputes a version's status from its builds: `building` while its newest
/// build is queued, building or validating; else `available` once a revision
/// is active; else `unavailable`.
pub(crate) async fn refresh_version_status(
    conn: &mut PgConnection,
    version_id: Uuid,
) -> Result<()> {
    sqlx::query!(
        "UPDATE versions v SET status = CASE
             WHEN (SELECT b.status FROM builds b WHERE b.version_id = v.id
                   ORDER BY b.creation_date DESC, b.id DESC LIMIT 1)
                  IN ('queued', 'building', 'validating') THEN 'building'
             WHEN v.active_revision_id IS NOT NULL THEN 'available'
             ELSE 'unavailable' END
         WHERE v.id = $1",
        version_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Queues a build and wakes the workers (the NOTIFY is delivered on commit).
async fn queue_build(
    conn: &mut PgConnection,
    version_id: Uuid,
    revision_id: Uuid,
    trigger: Trigger,
) -> Result<Build> {
    let build = query_builds!(
        "INSERT INTO builds (id, revision_id, version_id, trigger) VALUES ($1, $2, $3, $4)
         RETURNING ",
        "",
        Uuid::new_v4(),
        revision_id,
        version_id,
        trigger.as_str(),
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE versions SET latest_build_id = $2 WHERE id = $1",
        version_id,
        build.id
    )
    .execute(&mut *conn)
    .await?;
    refresh_version_status(&mut *conn, version_id).await?;
    sqlx::query!(
        "SELECT pg_notify($1, $2)",
        BUILDS_CHANNEL,
        build.id.to_string()
    )
    .execute(&mut *conn)
    .await?;
    let line = format!(
        "Build queued: {} of revision {revision_id}",
        trigger.as_str()
    );
    crate::logs::append_for_build(conn, build.id, &[(Level::Info, line)]).await?;
    Ok(build)
}

fn revision_not_found() -> StorageError {
    StorageError::NotFound("Revision not found".to_owned())
}

fn build_not_found() -> StorageError {
    StorageError::NotFound("Build not found".to_owned())
}

impl Store {
    /// Records that an upload to `object_key` is under way, so that a crash
    /// mid-upload leaves something the sweep can find and clean up.
    pub async fn begin_upload(&self, object_key: &str, lease_seconds: f64) -> Result<()> {
        sqlx::query!(
            "INSERT INTO pending_uploads (object_key, lease_expires_at)
             VALUES ($1, now() + make_interval(secs => $2))",
            object_key,
            lease_seconds,
        )
        .execute(&mut *self.connection().await?)
        .await?;
        Ok(())
    }

    pub async fn renew_upload(&self, object_key: &str, lease_seconds: f64) -> Result<()> {
        sqlx::query!(
            "UPDATE pending_uploads SET lease_expires_at = now() + make_interval(secs => $2)
             WHERE object_key = $1",
            object_key,
            lease_seconds,
        )
        .execute(&mut *self.connection().await?)
        .await?;
        Ok(())
    }

    /// The upload failed and its object is gone (or never existed).
    pub async fn end_upload(&self, object_key: &str) -> Result<()> {
        sqlx::query!(
            "DELETE FROM pending_uploads WHERE object_key = $1",
            object_key
        )
        .execute(&mut *self.connection().await?)
        .await?;
        Ok(())
    }

    /// Turns a stored file into a revision with a queued build, in one
    /// transaction with the version's bookkeeping and the audit event.
    pub async fn create_revision(
        &self,
        version: VersionRef<'_>,
        file: &NewRevision,
        trigger: Trigger,
        actor: &Actor,
    ) -> Result<(Revision, Build)> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        let revision = sqlx::query!(
            "INSERT INTO revisions (id, version_id, object_key, file_name, size_bytes, created_by)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING creation_date",
            file.id,
            version.id,
            file.object_key,
            file.file_name,
            file.size_bytes,
            actor.email,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StorageError::NotFound(format!("Version '{}' not found", version.name))
            }
            _ => e.into(),
        })?;
        sqlx::query!(
            "UPDATE versions SET last_file_upload = $2 WHERE id = $1",
            version.id,
            revision.creation_date,
        )
        .execute(&mut *tx)
        .await?;
        // The upload's record must still be there: if its lease ran out (the
        // client stalled for minutes), the sweep may already have removed
        // the file, so it must not become a revision.
        let claimed = sqlx::query!(
            "DELETE FROM pending_uploads WHERE object_key = $1",
            file.object_key
        )
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() != 1 {
            return Err(StorageError::Rejected(
                "The upload stalled for too long and was abandoned: please upload the file again"
                    .to_owned(),
            ));
        }
        let build = queue_build(&mut tx, version.id, file.id, trigger).await?;
        let verb = match trigger {
            Trigger::Upload => "Uploaded a deployment file",
            Trigger::CopyFromVersion => "Copied the deployment file from another version",
            Trigger::Template => "Copied the deployment file from a template deployment",
            Trigger::Rebuild => "Rebuilt",
        };
        let event = format!(
            "{verb} (revision {}) for version {} of deployment {}",
            file.id, version.name, version.deployment.name
        );
        record(
            &mut tx,
            version_event(version.deployment, AuditAction::Create, actor, event),
        )
        .await?;
        tx.commit().await?;
        let revision = Revision {
            id: file.id,
            version: version.name.to_owned(),
            creation_date: revision.creation_date,
            created_by: actor.email.clone(),
            status: Some(build.status.clone()),
            error_message: None,
            has_request_method: Some(build.has_request_method),
            has_requests_method: Some(build.has_requests_method),
        };
        Ok((revision, build))
    }

    /// A new build of an existing revision.
    pub async fn rebuild_revision(
        &self,
        version: VersionRef<'_>,
        revision_id: Uuid,
        actor: &Actor,
    ) -> Result<Build> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        sqlx::query_scalar!(
            "SELECT id FROM revisions WHERE id = $1 AND version_id = $2 FOR SHARE",
            revision_id,
            version.id,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(revision_not_found)?;
        let build = queue_build(&mut tx, version.id, revision_id, Trigger::Rebuild).await?;
        let event = format!(
            "Rebuilt revision {revision_id} of version {} of deployment {}",
            version.name, version.deployment.name
        );
        record(
            &mut tx,
            version_event(version.deployment, AuditAction::Info, actor, event),
        )
        .await?;
        tx.commit().await?;
        Ok(build)
    }

    pub async fn list_revisions(&self, version: VersionRef<'_>) -> Result<Vec<Revision>> {
        let revisions = sqlx::query_as!(
            Revision,
            r#"SELECT r.id, $2::text AS "version!", r.creation_date, r.created_by,
                   newest.status AS "status?", newest.error_message AS "error_message?",
                   newest.has_request_method AS "has_request_method?",
                   newest.has_requests_method AS "has_requests_method?"
               FROM revisions r
               LEFT JOIN LATERAL (
                   SELECT b.status, b.error_message, b.has_request_method, b.has_requests_method
                   FROM builds b WHERE b.revision_id = r.id
                   ORDER BY b.creation_date DESC, b.id DESC LIMIT 1) newest ON true
               WHERE r.version_id = $1
               ORDER BY r.creation_date, r.id"#,
            version.id,
            version.name,
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(revisions)
    }

    /// A revision by its id, or by the id of one of its builds: newer clients
    /// read the answer of a rebuild (a build) as a revision and then look it
    /// up by that id. By a build's id, the status is that build's.
    pub async fn get_revision(&self, version: VersionRef<'_>, id: Uuid) -> Result<Revision> {
        sqlx::query_as!(
            Revision,
            r#"SELECT r.id, $3::text AS "version!", r.creation_date, r.created_by,
                   shown.status AS "status?", shown.error_message AS "error_message?",
                   shown.has_request_method AS "has_request_method?",
                   shown.has_requests_method AS "has_requests_method?"
               FROM revisions r
               LEFT JOIN LATERAL (
                   SELECT b.status, b.error_message, b.has_request_method, b.has_requests_method
                   FROM builds b WHERE b.revision_id = r.id
                   ORDER BY b.id = $2 DESC, b.creation_date DESC, b.id DESC LIMIT 1) shown ON true
               WHERE r.version_id = $1
                 AND (r.id = $2
                      OR r.id = (SELECT revision_id FROM builds WHERE id = $2 AND version_id = $1))"#,
            version.id,
            id,
            version.name,
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?
        .ok_or_else(revision_not_found)
    }

    /// The stored file of one revision of a version (for downloads).
    pub async fn revision_file(&self, version_id: Uuid, revision_id: Uuid) -> Result<StoredFile> {
        sqlx::query_as!(
            StoredFile,
            "SELECT object_key, file_name FROM revisions WHERE id = $1 AND version_id = $2",
            revision_id,
            version_id,
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?
        .ok_or_else(revision_not_found)
    }

    /// The file of a version's active revision (the source of a copy).
    pub async fn active_file(&self, deployment_id: Uuid, version: &str) -> Result<StoredFile> {
        let row = sqlx::query!(
            r#"SELECT r.object_key AS "object_key?", r.file_name AS "file_name?"
               FROM versions v LEFT JOIN revisions r ON r.id = v.active_revision_id
               WHERE v.deployment_id = $1 AND v.name = $2"#,
            deployment_id,
            version,
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?
        .ok_or_else(|| StorageError::NotFound(format!("Version '{version}' not found")))?;
        match (row.object_key, row.file_name) {
            (Some(object_key), Some(file_name)) => Ok(StoredFile {
                object_key,
                file_name,
            }),
            _ => Err(StorageError::Rejected(format!(
                "Version '{version}' has no successfully built deployment file to copy"
            ))),
        }
    }

    /// For `template_deployment_id`: the deployment's project name (so the
    /// caller can check access) and its default version's active file.
    pub async fn template_file(&self, deployment_id: Uuid) -> Result<(String, Option<StoredFile>)> {
        let row = sqlx::query!(
            r#"SELECT p.name AS project_name, r.object_key AS "object_key?", r.file_name AS "file_name?"
               FROM deployments d
               JOIN projects p ON p.id = d.project_id
               LEFT JOIN versions v ON v.id = d.default_version_id
               LEFT JOIN revisions r ON r.id = v.active_revision_id
               WHERE d.id = $1"#,
            deployment_id,
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?
        .ok_or_else(|| StorageError::NotFound("Template deployment not found".to_owned()))?;
        let file = match (row.object_key, row.file_name) {
            (Some(object_key), Some(file_name)) => Some(StoredFile {
                object_key,
                file_name,
            }),
            _ => None,
        };
        Ok((row.project_name, file))
    }

    pub async fn list_builds(&self, version_id: Uuid) -> Result<Vec<Build>> {
        let builds = query_builds!(
            "SELECT ",
            " FROM builds WHERE version_id = $1 ORDER BY creation_date, id",
            version_id,
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(builds)
    }

    pub async fn get_build(&self, version_id: Uuid, id: Uuid) -> Result<Build> {
        query_builds!(
            "SELECT ",
            " FROM builds WHERE version_id = $1 AND id = $2",
            version_id,
            id,
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?
        .ok_or_else(build_not_found)
    }

    /// Cancels a build that has not finished; the worker notices at its next
    /// step and never publishes it.
    pub async fn cancel_build(
        &self,
        version: VersionRef<'_>,
        id: Uuid,
        actor: &Actor,
    ) -> Result<Build> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        let status = sqlx::query_scalar!(
            "SELECT status FROM builds WHERE id = $1 AND version_id = $2 FOR UPDATE",
            id,
            version.id,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(build_not_found)?;
        if !matches!(status.as_str(), "queued" | "building" | "validating") {
            return Err(StorageError::Rejected(format!(
                "Build {id} has already finished ({status}) and cannot be cancelled"
            )));
        }
        let build = query_builds!(
            "UPDATE builds SET status = 'cancelled', worker_id = NULL, lease_expires_at = NULL
             WHERE id = $1
             RETURNING ",
            "",
            id,
        )
        .fetch_one(&mut *tx)
        .await?;
        refresh_version_status(&mut tx, version.id).await?;
        let event = format!(
            "Cancelled build {id} of version {} of deployment {}",
            version.name, version.deployment.name
        );
        record(
            &mut tx,
            version_event(version.deployment, AuditAction::Update, actor, event),
        )
        .await?;
        let line = format!("Build cancelled by {}", actor.email);
        crate::logs::append_for_build(&mut tx, id, &[(Level::Info, line)]).await?;
        tx.commit().await?;
        Ok(build)
    }
}

/// A deployment whose file can be copied with `template_deployment_id`.
#[derive(Debug, Clone)]
pub struct TemplateDeployment {
    pub id: Uuid,
    pub project: String,
    pub deployment: String,
    pub description: Option<String>,
    pub version: String,
    pub language: String,
    pub input_type: String,
    pub output_type: String,
}

impl Store {
    /// Deployments whose default version has an active revision, in the
    /// projects `scope` names (all with `None`), by project and name.
    pub async fn list_template_deployments(
        &self,
        scope: Option<&[String]>,
    ) -> Result<Vec<TemplateDeployment>> {
        let templates = sqlx::query_as!(
            TemplateDeployment,
            r#"SELECT d.id, p.name AS project, d.name AS deployment, d.description,
                      v.name AS version, v.language, d.input_type, d.output_type
               FROM deployments d
               JOIN projects p ON p.id = d.project_id
               JOIN versions v ON v.id = d.default_version_id
               WHERE v.active_revision_id IS NOT NULL
                 AND ($1::text[] IS NULL OR p.name = ANY($1))
               ORDER BY p.name, d.name"#,
            scope,
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(templates)
    }
}

/// Queues a rebuild of `revision_id` inside a caller's transaction, for a
/// change to the version that needs its revision built again (a new
/// environment).
pub(crate) async fn queue_rebuild(
    conn: &mut PgConnection,
    version_id: Uuid,
    revision_id: Uuid,
) -> Result<Build> {
    queue_build(conn, version_id, revision_id, Trigger::Rebuild).await
}
