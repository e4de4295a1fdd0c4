use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::Connection as _;
use sqlx::PgConnection;
use ubiops_domain::audit::AuditAction;
use ubiops_domain::labels::{LabelFilter, Labels};
use ubiops_domain::version::{RetentionMode, VersionSettings, VersionStatus};
use ubiops_domain::version_settings::RuntimeSettings;
use ubiops_domain::ValidationError;
use uuid::Uuid;

use crate::audit::{deployment_event as version_event, record};
use crate::batch::{Keyed, Lookup};
use crate::deployments::deployment_not_found;
use crate::error::{corrupt, on_unique_violation, refuse_nul};
use crate::projects::project_not_found;
use crate::revisions::queue_rebuild;
use crate::{Actor, Result, StorageError, Store};

/// A version with everything a response shows.
#[derive(Debug, Clone)]
pub struct Version {
    pub id: Uuid,
    pub deployment_id: Uuid,
    pub settings: VersionSettings,
    pub status: VersionStatus,
    pub active_revision: Option<Uuid>,
    pub latest_build: Option<Uuid>,
    /// The revision the newest build builds (what a client waits for).
    pub latest_revision: Option<Uuid>,
    pub last_file_upload: Option<DateTime<Utc>>,
    pub has_request_method: bool,
    pub has_requests_method: bool,
    /// Whether it is its deployment's default version.
    pub is_default: bool,
    pub creation_date: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
}

/// Which deployment a version operation is about; events name it.
#[derive(Debug, Clone, Copy)]
pub struct DeploymentRef<'a> {
    pub project_id: Uuid,
    pub id: Uuid,
    pub name: &'a str,
}

/// Declares `VersionRow`, a version as read, and `KeyedVersionRow`, the same
/// after the key index of a batched lookup, from one list of fields:
/// `query_as!` fills a row type field by field, so the lookup, checked like
/// the other reads, needs a type of its own.
macro_rules! version_rows {
    ($($field:ident: $type:ty,)*) => {
        pub(crate) struct VersionRow {
            $($field: $type,)*
        }

        pub(crate) struct KeyedVersionRow {
            key_index: i64,
            $($field: $type,)*
        }

        impl From<KeyedVersionRow> for Keyed<VersionRow> {
            fn from(row: KeyedVersionRow) -> Self {
                Keyed {
                    key_index: row.key_index,
                    row: VersionRow {
                        $($field: row.$field,)*
                    },
                }
            }
        }
    };
}

version_rows! {
    id: Uuid,
    deployment_id: Uuid,
    name: String,
    description: Option<String>,
    language: String,
    instance_type: String,
    memory_allocation: i32,
    maximum_instances: i32,
    minimum_instances: i32,
    maximum_idle_time: i32,
    labels: Json<Labels>,
    monitoring: Option<String>,
    default_notification_group: Option<String>,
    request_retention_time: i32,
    request_retention_mode: String,
    maximum_queue_size_express: i32,
    maximum_queue_size_batch: i32,
    static_ip: bool,
    restart_request_interruption: bool,
    runtime_settings: Json<RuntimeSettings>,
    status: String,
    active_revision_id: Option<Uuid>,
    latest_build_id: Option<Uuid>,
    latest_revision_id: Option<Uuid>,
    last_file_upload: Option<DateTime<Utc>>,
    has_request_method: bool,
    has_requests_method: bool,
    is_default: bool,
    creation_date: DateTime<Utc>,
    last_updated: DateTime<Utc>,
}

/// `query_as!` into `$row` with the select list of a version row, written
/// once here, between the SQL `$before` and `$after` (which must name the
/// version `v` and its deployment `d`). sqlx reads SQL only from literals,
/// so the list is spliced in by this macro rather than held in a constant.
macro_rules! query_version_rows {
    ($row:ident, $before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $row,
            $before
                + r#"v.id, v.deployment_id, v.name, v.description, v.language, v.instance_type,
                     v.memory_allocation, v.maximum_instances, v.minimum_instances,
                     v.maximum_idle_time, v.labels AS "labels: Json<Labels>", v.monitoring,
                     v.default_notification_group, v.request_retention_time,
                     v.request_retention_mode, v.maximum_queue_size_express,
                     v.maximum_queue_size_batch, v.static_ip, v.restart_request_interruption,
                     v.runtime_settings AS "runtime_settings: Json<RuntimeSettings>", v.status,
                     v.active_revision_id, v.latest_build_id,
                     (SELECT b.revision_id FROM builds b WHERE b.id = v.latest_build_id)
                         AS "latest_revision_id?",
                     v.last_file_upload, v.has_request_method, v.has_requests_method,
                     d.default_version_id IS NOT DISTINCT FROM v.id AS "is_default!",
                     v.creation_date, v.last_updated"#
                + $after
            $(, $arg)*
        )
    };
}

/// Runs the statement made of `$before`, the columns a client sets,
/// `$between`, their values and `$after`, with the version's id as `$1` and
/// its deployment's as `$2`: one list of settings for create's INSERT and
/// update's UPDATE. A column and its value stand at the same place in the
/// two lists.
macro_rules! write_version_settings {
    (
        $before:literal, $between:literal, $after:literal,
        $id:expr, $deployment_id:expr, $settings:expr $(,)?
    ) => {
        sqlx::query!(
            $before
                + "name, description, language, instance_type, memory_allocation,
                   maximum_instances, minimum_instances, maximum_idle_time, labels, monitoring,
                   default_notification_group, request_retention_time, request_retention_mode,
                   maximum_queue_size_express, maximum_queue_size_batch, static_ip,
                   restart_request_interruption, runtime_settings"
                + $between
                + "$3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20"
                + $after,
            $id,
            $deployment_id,
            $settings.name,
            $settings.description,
            $settings.language,
            $settings.instance_type,
            $settings.memory_allocation,
            $settings.maximum_instances,
            $settings.minimum_instances,
            $settings.maximum_idle_time,
            Json(&$settings.labels) as _,
            $settings.monitoring,
            $settings.default_notification_group,
            $settings.request_retention_time,
            $settings.request_retention_mode.as_str(),
            $settings.maximum_queue_size_express,
            $settings.maximum_queue_size_batch,
            $settings.static_ip,
            $settings.restart_request_interruption,
            Json(&$settings.runtime) as _,
        )
    };
}

impl TryFrom<VersionRow> for Version {
    type Error = StorageError;

    fn try_from(row: VersionRow) -> Result<Self> {
        let request_retention_mode = RetentionMode::parse(&row.request_retention_mode)
            .ok_or_else(|| corrupt("retention mode", &row.request_retention_mode, row.id))?;
        let status = VersionStatus::parse(&row.status)
            .ok_or_else(|| corrupt("version status", &row.status, row.id))?;
        Ok(Version {
            id: row.id,
            deployment_id: row.deployment_id,
            settings: VersionSettings {
                name: row.name,
                language: row.language,
                instance_type: row.instance_type,
                memory_allocation: row.memory_allocation,
                maximum_instances: row.maximum_instances,
                minimum_instances: row.minimum_instances,
                maximum_idle_time: row.maximum_idle_time,
                description: row.description,
                labels: row.labels.0,
                monitoring: row.monitoring,
                default_notification_group: row.default_notification_group,
                request_retention_time: row.request_retention_time,
                request_retention_mode,
                maximum_queue_size_express: row.maximum_queue_size_express,
                maximum_queue_size_batch: row.maximum_queue_size_batch,
                static_ip: row.static_ip,
                restart_request_interruption: row.restart_request_interruption,
                runtime: row.runtime_settings.0,
            },
            status,
            active_revision: row.active_revision_id,
            latest_build: row.latest_build_id,
            latest_revision: row.latest_revision_id,
            last_file_upload: row.last_file_upload,
            has_request_method: row.has_request_method,
            has_requests_method: row.has_requests_method,
            is_default: row.is_default,
            creation_date: row.creation_date,
            last_updated: row.last_updated,
        })
    }
}

pub(crate) fn version_not_found(name: &str) -> StorageError {
    StorageError::NotFound(format!("Version '{name}' not found"))
}

fn duplicate_version(deployment: &str, name: &str) -> String {
    format!("A version named '{name}' already exists for deployment '{deployment}'")
}

async fn fetch_version(
    conn: &mut PgConnection,
    deployment_id: Uuid,
    name: &str,
) -> Result<Version> {
    query_version_rows!(
        VersionRow,
        "SELECT ",
        " FROM versions v JOIN deployments d ON d.id = v.deployment_id
          WHERE v.deployment_id = $1 AND v.name = $2",
        deployment_id,
        name,
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| version_not_found(name))?
    .try_into()
}

/// Locks the deployment row so that version changes of one deployment (the
/// first-version default above all) happen one at a time.
async fn lock_deployment(conn: &mut PgConnection, deployment: DeploymentRef<'_>) -> Result<()> {
    sqlx::query_scalar!(
        "SELECT id FROM deployments WHERE id = $1 FOR UPDATE",
        deployment.id
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| StorageError::NotFound(format!("Deployment '{}' not found", deployment.name)))?;
    Ok(())
}

impl Store {
    /// Creates a version; the first version of a deployment becomes its
    /// default (exactly one, however many are created at once).
    pub async fn create_version(
        &self,
        deployment: DeploymentRef<'_>,
        settings: &VersionSettings,
        actor: &Actor,
    ) -> Result<Version> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        lock_deployment(&mut tx, deployment).await?;
        let id = Uuid::new_v4();
        write_version_settings!(
            "INSERT INTO versions (id, deployment_id, ",
            ") VALUES ($1, $2, ",
            ")",
            id,
            deployment.id,
            settings,
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            on_unique_violation(e, || duplicate_version(deployment.name, &settings.name))
        })?;
        sqlx::query!(
            "UPDATE deployments SET
                 number_of_versions = number_of_versions + 1,
                 default_version_id = CASE WHEN number_of_versions = 0 THEN $2 ELSE default_version_id END,
                 default_version_name = CASE WHEN number_of_versions = 0 THEN $3 ELSE default_version_name END
             WHERE id = $1",
            deployment.id,
            id,
            settings.name,
        )
        .execute(&mut *tx)
        .await?;
        record(
            &mut tx,
            version_event(
                deployment,
                AuditAction::Create,
                actor,
                format!(
                    "Created version {} for deployment {}",
                    settings.name, deployment.name
                ),
            ),
        )
        .await?;
        let version = fetch_version(&mut tx, deployment.id, &settings.name).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// A deployment's versions by name; with a filter, only those having at
    /// least one of its label pairs.
    pub async fn list_versions(
        &self,
        deployment_id: Uuid,
        filter: Option<&LabelFilter>,
    ) -> Result<Vec<Version>> {
        let (keys, values) = LabelFilter::as_arrays(filter);
        let rows = query_version_rows!(
            VersionRow,
            "SELECT ",
            r#" FROM versions v JOIN deployments d ON d.id = v.deployment_id
                WHERE v.deployment_id = $1
                  AND ($2::text[] IS NULL OR EXISTS (
                        SELECT 1 FROM unnest($2::text[], $3::text[]) AS f(key, value)
                        WHERE v.labels ->> f.key = f.value))
                ORDER BY v.name"#,
            deployment_id,
            keys.as_deref(),
            values.as_deref(),
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        rows.into_iter().map(Version::try_from).collect()
    }

    /// Read-modify-write under a row lock: `change` gets the current settings
    /// and returns the new ones (or why not), so rules that span fields are
    /// checked against what is really stored.
    pub async fn update_version(
        &self,
        deployment: DeploymentRef<'_>,
        name: &str,
        change: impl FnOnce(VersionSettings) -> Result<VersionSettings, ValidationError>,
        actor: &Actor,
    ) -> Result<Version> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        lock_deployment(&mut tx, deployment).await?;
        let current = fetch_version(&mut tx, deployment.id, name).await?;
        let old_language = current.settings.language.clone();
        let settings =
            change(current.settings).map_err(|e| StorageError::Rejected(e.message().to_owned()))?;
        write_version_settings!(
            "UPDATE versions SET (",
            ") = ROW(",
            "), last_updated = now() WHERE id = $1 AND deployment_id = $2",
            current.id,
            deployment.id,
            settings,
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            on_unique_violation(e, || duplicate_version(deployment.name, &settings.name))
        })?;
        // A new environment needs the version's code built in it; the build
        // is queued with the change, so the version is `building` at once.
        // While a build is pending, its revision is where the version is
        // heading (rebuilding the older active one would finish last and
        // bring it back); otherwise that is the active revision.
        let target = if current.status == VersionStatus::Building {
            current.latest_revision
        } else {
            current.active_revision
        };
        let rebuild = match target {
            Some(revision) if settings.language != old_language => {
                Some(queue_rebuild(&mut tx, current.id, revision).await?)
            }
            _ => None,
        };
        let mut event = if settings.name != name {
            format!(
                "Renamed version {name} to {} for deployment {}",
                settings.name, deployment.name
            )
        } else {
            format!("Updated version {name} for deployment {}", deployment.name)
        };
        if let Some(build) = &rebuild {
            event.push_str(&format!(
                ": rebuilding revision {} in the new environment (build {})",
                build.revision, build.id
            ));
        }
        record(
            &mut tx,
            version_event(deployment, AuditAction::Update, actor, event),
        )
        .await?;
        let updated = fetch_version(&mut tx, deployment.id, &settings.name).await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Deletes a version; if it was the default, the deployment has none after.
    pub async fn delete_version(
        &self,
        deployment: DeploymentRef<'_>,
        name: &str,
        actor: &Actor,
    ) -> Result<()> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        lock_deployment(&mut tx, deployment).await?;
        sqlx::query!(
            "INSERT INTO object_deletions (object_key)
             SELECT r.object_key FROM revisions r JOIN versions v ON v.id = r.version_id
             WHERE v.deployment_id = $1 AND v.name = $2
             ON CONFLICT DO NOTHING",
            deployment.id,
            name,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query_scalar!(
            "DELETE FROM versions WHERE deployment_id = $1 AND name = $2 RETURNING id",
            deployment.id,
            name,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| version_not_found(name))?;
        sqlx::query!(
            "UPDATE deployments SET number_of_versions = number_of_versions - 1 WHERE id = $1",
            deployment.id,
        )
        .execute(&mut *tx)
        .await?;
        record(
            &mut tx,
            version_event(
                deployment,
                AuditAction::Delete,
                actor,
                format!("Deleted version {name} for deployment {}", deployment.name),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// The id of a version, for lookups that only need to know it exists.
    pub async fn version_id(&self, deployment_id: Uuid, name: &str) -> Result<Uuid> {
        sqlx::query_scalar!(
            "SELECT id FROM versions WHERE deployment_id = $1 AND name = $2",
            deployment_id,
            name,
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?
        .ok_or_else(|| version_not_found(name))
    }

    /// The ids of project, deployment and version named in a path, in one
    /// query that also tells which of the three is missing.
    pub async fn resolve_version(
        &self,
        project_name: &str,
        deployment_name: &str,
        name: &str,
    ) -> Result<ResolvedVersion> {
        let found = sqlx::query!(
            r#"SELECT p.id AS project_id, d.id AS "deployment_id?", v.id AS "version_id?"
               FROM projects p
               LEFT JOIN deployments d ON d.project_id = p.id AND d.name = $2
               LEFT JOIN versions v ON v.deployment_id = d.id AND v.name = $3
               WHERE p.name = $1"#,
            project_name,
            deployment_name,
            name,
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?
        .ok_or_else(|| project_not_found(project_name))?;
        let deployment_id = found
            .deployment_id
            .ok_or_else(|| deployment_not_found(deployment_name))?;
        let id = found.version_id.ok_or_else(|| version_not_found(name))?;
        Ok(ResolvedVersion {
            project_id: found.project_id,
            deployment_id,
            id,
        })
    }

    /// A version by project, deployment and version name: one query when it
    /// exists, shared with other requests' lookups (`batch.rs`).
    pub async fn find_version(
        &self,
        project_name: &str,
        deployment_name: &str,
        name: &str,
    ) -> Result<Version> {
        refuse_nul(&[project_name, deployment_name, name])?;
        let key = (
            project_name.to_owned(),
            deployment_name.to_owned(),
            name.to_owned(),
        );
        match self.lookups.version.lookup(key).await?.into_iter().next() {
            Some(row) => row.try_into(),
            // Which of the three is missing, for the error.
            None => match self
                .resolve_version(project_name, deployment_name, name)
                .await
            {
                Ok(_) => Err(version_not_found(name)),
                Err(error) => Err(error),
            },
        }
    }
}

/// Versions by (project, deployment, version name), for GET one version.
pub(crate) struct VersionByNames;

impl Lookup for VersionByNames {
    type Key = (String, String, String);
    type Row = VersionRow;

    // `LIMIT 1` keeps each key an index lookup whatever the batch size.
    async fn fetch(conn: &mut PgConnection, keys: &[Self::Key]) -> Result<Vec<Keyed<VersionRow>>> {
        let projects: Vec<&str> = keys.iter().map(|key| key.0.as_str()).collect();
        let deployments: Vec<&str> = keys.iter().map(|key| key.1.as_str()).collect();
        let versions: Vec<&str> = keys.iter().map(|key| key.2.as_str()).collect();
        let rows = query_version_rows!(
            KeyedVersionRow,
            r#"SELECT k.ord - 1 AS "key_index!", found.*
               FROM unnest($1::text[], $2::text[], $3::text[])
                    WITH ORDINALITY AS k(project, deployment, version, ord)
               CROSS JOIN LATERAL (
                   SELECT "#,
            " FROM projects p
                   JOIN deployments d ON d.project_id = p.id
                   JOIN versions v ON v.deployment_id = d.id
                   WHERE p.name = k.project AND d.name = k.deployment AND v.name = k.version
                   LIMIT 1) found",
            &projects as &[&str],
            &deployments as &[&str],
            &versions as &[&str],
        )
        .fetch_all(conn)
        .await?;
        Ok(rows.into_iter().map(Keyed::from).collect())
    }
}

/// The ids of a version named by project, deployment and version name.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedVersion {
    pub project_id: Uuid,
    pub deployment_id: Uuid,
    pub id: Uuid,
}
