use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::Connection as _;
use sqlx::PgConnection;
use ubiops_domain::audit::{AuditAction, ObjectType};
use ubiops_domain::deployment::{DeploymentChanges, Field, IoType, NewDeployment};
use ubiops_domain::labels::{LabelFilter, Labels};
use ubiops_domain::version::VersionStatus;
use uuid::Uuid;

use crate::audit::{deployment_event, record};
use crate::batch::{Keyed, Lookup};
use crate::error::{corrupt, on_unique_violation, refuse_nul};
use crate::listing::{
    assemble, held, not_held, Listed, RowStamp, RowVersion, Stamped, UndecodedRow,
};
use crate::projects::project_not_found;
use crate::versions::DeploymentRef;
use crate::{Actor, Result, StorageError, Store};

#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub input_type: IoType,
    pub output_type: IoType,
    pub input_fields: Vec<Field>,
    pub output_fields: Vec<Field>,
    pub labels: Labels,
    pub creation_date: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    pub default_version: Option<String>,
    pub number_of_versions: i64,
}

/// A row as read; the io types are text in the database. Read by name at
/// run time too (`UndecodedRow`), under the names the select list gives the
/// JSON columns for `query_as!`.
#[derive(sqlx::FromRow)]
pub(crate) struct DeploymentRow {
    id: Uuid,
    project_id: Uuid,
    name: String,
    description: Option<String>,
    input_type: String,
    output_type: String,
    #[sqlx(rename = "input_fields: Json<Vec<Field>>")]
    input_fields: Json<Vec<Field>>,
    #[sqlx(rename = "output_fields: Json<Vec<Field>>")]
    output_fields: Json<Vec<Field>>,
    #[sqlx(rename = "labels: Json<Labels>")]
    labels: Json<Labels>,
    creation_date: DateTime<Utc>,
    last_updated: DateTime<Utc>,
    default_version: Option<String>,
    number_of_versions: i32,
}

impl TryFrom<DeploymentRow> for Deployment {
    type Error = StorageError;

    fn try_from(row: DeploymentRow) -> Result<Self> {
        let io_type =
            |value: &str| IoType::parse(value).ok_or_else(|| corrupt("io type", value, row.id));
        Ok(Deployment {
            input_type: io_type(&row.input_type)?,
            output_type: io_type(&row.output_type)?,
            id: row.id,
            project_id: row.project_id,
            name: row.name,
            description: row.description,
            input_fields: row.input_fields.0,
            output_fields: row.output_fields.0,
            labels: row.labels.0,
            creation_date: row.creation_date,
            last_updated: row.last_updated,
            default_version: row.default_version,
            number_of_versions: row.number_of_versions.into(),
        })
    }
}

/// Hands `$then!` the select list of a `DeploymentRow` of `deployments d`,
/// written once here, as a string literal between the tokens before and
/// after it: sqlx's macros read SQL only from literals, and so does
/// `concat!` for the queries whose rows are decoded by name (the stamped
/// ones below, which `query_as!` cannot fill). The list names the JSON
/// columns with their type, as `query_as!` needs.
macro_rules! with_deployment_columns {
    ($($then:ident)::+!($($before:tt)*) $($after:tt)*) => {
        $($then)::+!(
            $($before)*
            r#"d.id, d.project_id, d.name, d.description, d.input_type, d.output_type,
               d.input_fields AS "input_fields: Json<Vec<Field>>",
               d.output_fields AS "output_fields: Json<Vec<Field>>",
               d.labels AS "labels: Json<Labels>", d.creation_date, d.last_updated,
               d.default_version_name AS default_version, d.number_of_versions"#
            $($after)*
        )
    };
}

/// Deployments by (project name, deployment name), for GET one deployment.
/// Rows come back undecoded: the caller may hold that version's rendering.
pub(crate) struct DeploymentByNames;

impl Lookup for DeploymentByNames {
    type Key = (String, String);
    type Row = UndecodedRow;

    // Not `query_as!`, which decodes every row: these stay undecoded until
    // the caller knows it does not hold the row's rendering.
    // `LIMIT 1` keeps each key an index lookup whatever the batch size.
    async fn fetch(
        conn: &mut PgConnection,
        keys: &[Self::Key],
    ) -> Result<Vec<Keyed<UndecodedRow>>> {
        let (projects, deployments): (Vec<&str>, Vec<&str>) =
            keys.iter().map(|(p, d)| (p.as_str(), d.as_str())).unzip();
        let rows = sqlx::query(with_deployment_columns!(
            concat!(
                r#"SELECT k.ord - 1 AS key_index, found.*
                   FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(project, deployment, ord)
                   CROSS JOIN LATERAL (
                       SELECT d.xmin AS row_version, "#,
            ),
            r#"
                       FROM projects p
                       JOIN deployments d ON d.project_id = p.id
                       WHERE p.name = k.project AND d.name = k.deployment
                       LIMIT 1) found"#
        ))
        .bind(projects)
        .bind(deployments)
        .fetch_all(conn)
        .await?;
        rows.into_iter()
            .map(|row| {
                let row = UndecodedRow::new(row)?;
                Ok(Keyed {
                    key_index: row.column("key_index")?,
                    row,
                })
            })
            .collect()
    }
}

pub(crate) fn deployment_not_found(name: &str) -> StorageError {
    StorageError::NotFound(format!("Deployment '{name}' not found"))
}

fn duplicate_deployment(name: &str) -> String {
    format!("A deployment named '{name}' already exists in this project")
}

/// A project's listing: ids and row versions, by name. The filter makes a
/// second statement rather than an `$2 IS NULL OR ...` condition: PostgreSQL's
/// generic plan for that ran the unfiltered listing at half the speed.
async fn deployment_stamps(
    conn: &mut PgConnection,
    project_name: &str,
    filter: Option<&LabelFilter>,
) -> Result<Vec<RowStamp>> {
    let Some(filter) = filter else {
        return Ok(sqlx::query_as!(
            RowStamp,
            r#"SELECT d.id, d.xmin AS "version!: RowVersion"
               FROM projects p JOIN deployments d ON d.project_id = p.id
               WHERE p.name = $1
               ORDER BY d.name"#,
            project_name,
        )
        .fetch_all(conn)
        .await?);
    };
    Ok(sqlx::query_as!(
        RowStamp,
        r#"SELECT d.id, d.xmin AS "version!: RowVersion"
           FROM projects p JOIN deployments d ON d.project_id = p.id
           WHERE p.name = $1 AND EXISTS (
                 SELECT 1 FROM unnest($2::text[], $3::text[]) AS f(key, value)
                 WHERE d.labels ->> f.key = f.value)
           ORDER BY d.name"#,
        project_name,
        &filter.keys(),
        &filter.values(),
    )
    .fetch_all(conn)
    .await?)
}

// Not `query_as!`: the macro cannot add the row version to the row type.
async fn deployments_by_id(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<Stamped<Deployment>>> {
    let rows: Vec<Stamped<DeploymentRow>> = sqlx::query_as(with_deployment_columns!(
        concat!("SELECT d.xmin AS row_version, ",),
        " FROM deployments d WHERE d.id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|Stamped { stamp, row }| {
            Ok(Stamped {
                stamp,
                row: row.try_into()?,
            })
        })
        .collect()
}

async fn fetch_deployment(
    conn: &mut PgConnection,
    project_id: Uuid,
    name: &str,
) -> Result<Deployment> {
    with_deployment_columns!(
        sqlx::query_as!(DeploymentRow, "SELECT " +)
            + " FROM deployments d WHERE d.project_id = $1 AND d.name = $2",
        project_id,
        name,
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| deployment_not_found(name))?
    .try_into()
}

/// Why a lookup by names found nothing: the project or the deployment is
/// missing. Only asked on that (rare) path, so a hit stays one query.
async fn deployment_miss(store: &Store, project_name: &str, name: &str) -> StorageError {
    match store.resolve_deployment(project_name, name).await {
        Ok(_) => deployment_not_found(name),
        Err(error) => error,
    }
}

impl Store {
    /// Creates a deployment in the project with this name, with its audit
    /// event, in one statement (so one round trip, and atomic by itself).
    pub async fn create_deployment(
        &self,
        project_name: &str,
        new: &NewDeployment,
        actor: &Actor,
    ) -> Result<Deployment> {
        let id = Uuid::new_v4();
        let created = sqlx::query!(
            r#"WITH project AS (SELECT id FROM projects WHERE name = $1),
               inserted AS (
                   INSERT INTO deployments
                       (id, project_id, name, description, input_type, output_type,
                        input_fields, output_fields, labels)
                   SELECT $2::uuid, project.id, $3::text, $4::text, $5::text, $6::text,
                          $7::jsonb, $8::jsonb, $9::jsonb
                   FROM project
                   RETURNING project_id, creation_date, last_updated),
               event AS (
                   INSERT INTO audit_events
                       (id, project_id, deployment_id, action, user_email, event, object_type,
                        object_id, object_name)
                   SELECT $10::uuid, project_id, $2, $11::text, $12::text, $13::text, $14::text,
                          $2, $3
                   FROM inserted)
               SELECT project_id AS "project_id!", creation_date AS "creation_date!",
                      last_updated AS "last_updated!"
               FROM inserted"#,
            project_name,
            id,
            new.name,
            new.description,
            new.input_type.as_str(),
            new.output_type.as_str(),
            Json(&new.input_fields) as _,
            Json(&new.output_fields) as _,
            Json(&new.labels) as _,
            Uuid::new_v4(),
            AuditAction::Create.as_str(),
            actor.email,
            format!("Created deployment {}", new.name),
            ObjectType::Deployment.as_str(),
        )
        .fetch_optional(&mut *self.connection().await?)
        .await
        .map_err(|e| on_unique_violation(e, || duplicate_deployment(&new.name)))?
        .ok_or_else(|| project_not_found(project_name))?;
        Ok(Deployment {
            id,
            project_id: created.project_id,
            name: new.name.clone(),
            description: new.description.clone(),
            input_type: new.input_type,
            output_type: new.output_type,
            input_fields: new.input_fields.clone(),
            output_fields: new.output_fields.clone(),
            labels: new.labels.clone(),
            creation_date: created.creation_date,
            last_updated: created.last_updated,
            default_version: None,
            number_of_versions: 0,
        })
    }

    /// A deployment by project and deployment name: one query when it exists,
    /// shared with other requests' lookups (`batch.rs`). As in
    /// [`Store::list_deployments`], a row version `known` returns something
    /// for comes back as that, undecoded.
    pub async fn find_deployment<C>(
        &self,
        project_name: &str,
        name: &str,
        known: impl Fn(&RowStamp) -> Option<C>,
    ) -> Result<Listed<Deployment, C>> {
        refuse_nul(&[project_name, name])?;
        let rows = self
            .lookups
            .deployment
            .lookup((project_name.to_owned(), name.to_owned()))
            .await?;
        match rows.into_iter().next() {
            Some(row) => row.held_or_decoded::<DeploymentRow, _, _>(known),
            None => Err(deployment_miss(self, project_name, name).await),
        }
    }

    pub async fn get_deployment(&self, project_id: Uuid, name: &str) -> Result<Deployment> {
        let mut conn = self.connection().await?;
        fetch_deployment(&mut conn, project_id, name).await
    }

    /// A project's deployments by name; with a filter, only those having at
    /// least one of its label pairs. Rows for which `known` returns something
    /// (what the caller kept of that row version) come back as that instead
    /// of being read. An empty list also checks that the project exists.
    ///
    /// One query for ids and versions when every row is known; otherwise the
    /// listing is taken again and the unknown rows read in one read-only
    /// snapshot, so the answer is always one state of the project.
    pub async fn list_deployments<C>(
        &self,
        project_name: &str,
        filter: Option<&LabelFilter>,
        known: impl Fn(&RowStamp) -> Option<C>,
    ) -> Result<Vec<Listed<Deployment, C>>> {
        let mut conn = self.connection().await?;
        let mut stamps = deployment_stamps(&mut conn, project_name, filter).await?;
        if stamps.is_empty() {
            drop(conn);
            self.get_project(project_name).await?;
            return Ok(Vec::new());
        }
        let mut kept = held(&stamps, &known);
        let mut read = Vec::new();
        if kept.iter().any(Option::is_none) {
            let mut tx = conn
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?;
            stamps = deployment_stamps(&mut tx, project_name, filter).await?;
            kept = held(&stamps, &known);
            read = deployments_by_id(&mut tx, &not_held(&stamps, &kept)).await?;
            tx.commit().await?;
        }
        assemble(stamps, kept, read)
    }

    /// Applies validated changes under a row lock, with its audit event, in one
    /// transaction.
    pub async fn update_deployment(
        &self,
        project_id: Uuid,
        name: &str,
        changes: &DeploymentChanges,
        actor: &Actor,
    ) -> Result<Deployment> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        let id = sqlx::query_scalar!(
            "SELECT id FROM deployments WHERE project_id = $1 AND name = $2 FOR UPDATE",
            project_id,
            name,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| deployment_not_found(name))?;

        let default_version_id = match &changes.default_version {
            Some(version) => Some(available_version_id(&mut tx, id, name, version).await?),
            None => None,
        };
        let new_name = changes.name.as_deref().unwrap_or(name);
        sqlx::query!(
            r#"UPDATE deployments SET
                   name = $2,
                   description = CASE WHEN $3 THEN $4 ELSE description END,
                   labels = COALESCE($5, labels),
                   input_fields = COALESCE($6, input_fields),
                   output_fields = COALESCE($7, output_fields),
                   default_version_id = COALESCE($8, default_version_id),
                   default_version_name = COALESCE($9, default_version_name),
                   last_updated = now()
               WHERE id = $1"#,
            id,
            new_name,
            changes.description.is_some(),
            changes.description.clone().flatten(),
            changes.labels.as_ref().map(Json) as _,
            changes.input_fields.as_ref().map(Json) as _,
            changes.output_fields.as_ref().map(Json) as _,
            default_version_id,
            changes.default_version.as_deref(),
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| on_unique_violation(e, || duplicate_deployment(new_name)))?;

        let event = if new_name != name {
            format!("Renamed deployment {name} to {new_name}")
        } else {
            format!("Updated deployment {name}")
        };
        record(
            &mut tx,
            deployment_event(
                DeploymentRef {
                    project_id,
                    id,
                    name: new_name,
                },
                AuditAction::Update,
                actor,
                event,
            ),
        )
        .await?;
        let deployment = fetch_deployment(&mut tx, project_id, new_name).await?;
        tx.commit().await?;
        Ok(deployment)
    }

    /// Deletes a deployment (and by cascade its versions and variables),
    /// queues its files for deletion and records the event, in one statement.
    pub async fn delete_deployment(
        &self,
        project_name: &str,
        name: &str,
        actor: &Actor,
    ) -> Result<()> {
        let deleted = sqlx::query_scalar!(
            r#"WITH target AS (
                   SELECT d.id, d.project_id FROM deployments d JOIN projects p ON p.id = d.project_id
                   WHERE p.name = $1 AND d.name = $2),
               files AS (
                   INSERT INTO object_deletions (object_key)
                   SELECT r.object_key FROM revisions r
                   JOIN versions v ON v.id = r.version_id
                   JOIN target ON target.id = v.deployment_id
                   ON CONFLICT DO NOTHING),
               deleted AS (
                   DELETE FROM deployments d USING target WHERE d.id = target.id
                   RETURNING d.id, d.project_id),
               event AS (
                   INSERT INTO audit_events
                       (id, project_id, deployment_id, action, user_email, event, object_type,
                        object_id, object_name)
                   SELECT $3::uuid, project_id, id, $4::text, $5::text, $6::text, $7::text, id, $2
                   FROM deleted)
               SELECT id AS "id!" FROM deleted"#,
            project_name,
            name,
            Uuid::new_v4(),
            AuditAction::Delete.as_str(),
            actor.email,
            format!("Deleted deployment {name}"),
            ObjectType::Deployment.as_str(),
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?;
        match deleted {
            Some(_) => Ok(()),
            None => Err(deployment_miss(self, project_name, name).await),
        }
    }

    /// The ids of a deployment named by project and deployment name, in one
    /// query that also tells which of the two is missing.
    pub async fn resolve_deployment(&self, project_name: &str, name: &str) -> Result<(Uuid, Uuid)> {
        let found = sqlx::query!(
            r#"SELECT p.id AS project_id, d.id AS "deployment_id?"
               FROM projects p LEFT JOIN deployments d ON d.project_id = p.id AND d.name = $2
               WHERE p.name = $1"#,
            project_name,
            name,
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?
        .ok_or_else(|| project_not_found(project_name))?;
        let id = found
            .deployment_id
            .ok_or_else(|| deployment_not_found(name))?;
        Ok((found.project_id, id))
    }
}

/// Only an available version can become the default (documented).
async fn available_version_id(
    conn: &mut PgConnection,
    deployment_id: Uuid,
    deployment_name: &str,
    version: &str,
) -> Result<Uuid> {
    let found = sqlx::query!(
        "SELECT id, status FROM versions WHERE deployment_id = $1 AND name = $2",
        deployment_id,
        version,
    )
    .fetch_optional(conn)
    .await?;
    match found {
        None => Err(StorageError::Rejected(format!(
            "Cannot make '{version}' the default version: deployment '{deployment_name}' has no such version"
        ))),
        Some(row) if row.status != VersionStatus::Available.as_str() => Err(StorageError::Rejected(format!(
            "Cannot make '{version}' the default version: it is {}, and only an available version can be the default",
            row.status
        ))),
        Some(row) => Ok(row.id),
    }
}
