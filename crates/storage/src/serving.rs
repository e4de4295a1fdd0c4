//! What a request to a deployment needs to reach its code: the version it
//! goes to (named, or the deployment's default), that version's settings
//! and active revision, the deployment's input and output, and the
//! variables the code gets.

use sqlx::types::Json;
use sqlx::PgConnection;
use ubiops_domain::deployment::{Field, IoType};
use ubiops_domain::version::RetentionMode;
use uuid::Uuid;

use crate::batch::{Keyed, Lookup};
use crate::deployments::deployment_not_found;
use crate::error::{corrupt, refuse_nul};
use crate::projects::project_not_found;
use crate::requests::Retention;
use crate::serving_cache;
use crate::versions::version_not_found;
use crate::{Result, StorageError, Store};

/// A version to send a request to, with everything the request needs.
#[derive(Debug, Clone)]
pub struct ServingTarget {
    pub project_id: Uuid,
    pub project_name: String,
    pub deployment_id: Uuid,
    pub deployment_name: String,
    pub version_id: Uuid,
    pub version_name: String,
    pub input_type: IoType,
    pub output_type: IoType,
    pub input_fields: Vec<Field>,
    pub output_fields: Vec<Field>,
    /// `unavailable`, `building` or `available`.
    pub status: String,
    pub active_revision: Option<ActiveRevision>,
    pub language: String,
    pub memory_mib: i32,
    pub minimum_instances: i32,
    pub maximum_instances: i32,
    pub maximum_idle_time: i32,
    pub maximum_queue_size_express: i32,
    pub maximum_queue_size_batch: i32,
    /// Whether a batch request interrupted by the loss of its instance or
    /// server runs again.
    pub restart_request_interruption: bool,
    /// How the version keeps its requests.
    pub retention: Retention,
    /// What the code gets in its environment.
    pub variables: Vec<CodeVariable>,
}

/// The revision whose code serves a version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActiveRevision {
    pub id: Uuid,
    pub object_key: String,
}

/// A variable the code gets: the nearest scope's of each name. A secret's
/// value comes sealed; the caller opens it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CodeVariable {
    pub name: String,
    pub value: VariableValue,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VariableValue {
    Plain(String),
    Sealed { bytes: Vec<u8>, key_id: String },
}

/// A request for a deployment without a default version names none.
pub fn no_default_version(deployment_name: &str) -> StorageError {
    StorageError::Rejected(format!(
        "Deployment '{deployment_name}' has no default version: make the request to a version, \
         or set the deployment's default_version"
    ))
}

/// Serving targets by (project, deployment, version or `None` for the
/// default), each with the variables its code gets: what every request
/// reads first, so concurrent requests share one query.
pub(crate) struct ServingByNames;

/// A serving target as read; every column but the project's is absent when
/// the deployment or version is not found. The variables come as parallel
/// arrays, the nearest scope's of each name.
pub(crate) struct ServingRow {
    key_index: i64,
    project_id: Uuid,
    deployment_id: Option<Uuid>,
    input_type: Option<String>,
    output_type: Option<String>,
    input_fields: Option<Json<Vec<Field>>>,
    output_fields: Option<Json<Vec<Field>>>,
    version_id: Option<Uuid>,
    version_name: Option<String>,
    status: Option<String>,
    language: Option<String>,
    memory_allocation: Option<i32>,
    minimum_instances: Option<i32>,
    maximum_instances: Option<i32>,
    maximum_idle_time: Option<i32>,
    maximum_queue_size_express: Option<i32>,
    maximum_queue_size_batch: Option<i32>,
    restart_request_interruption: Option<bool>,
    request_retention_mode: Option<String>,
    request_retention_time: Option<i32>,
    revision_id: Option<Uuid>,
    object_key: Option<String>,
    variable_ids: Option<Vec<Uuid>>,
    variable_names: Option<Vec<String>>,
    variable_values: Option<Vec<Option<String>>>,
    variable_sealed: Option<Vec<Option<Vec<u8>>>>,
    variable_key_ids: Option<Vec<Option<String>>>,
}

impl Lookup for ServingByNames {
    type Key = (String, String, Option<String>);
    type Row = ServingRow;

    async fn fetch(conn: &mut PgConnection, keys: &[Self::Key]) -> Result<Vec<Keyed<ServingRow>>> {
        let projects: Vec<&str> = keys.iter().map(|key| key.0.as_str()).collect();
        let deployments: Vec<&str> = keys.iter().map(|key| key.1.as_str()).collect();
        let versions: Vec<Option<&str>> = keys.iter().map(|key| key.2.as_deref()).collect();
        let rows = sqlx::query_as!(
            ServingRow,
            r#"SELECT k.ord - 1 AS "key_index!",
                      p.id AS project_id,
                      d.id AS "deployment_id?",
                      d.input_type AS "input_type?",
                      d.output_type AS "output_type?",
                      d.input_fields AS "input_fields?: Json<Vec<Field>>",
                      d.output_fields AS "output_fields?: Json<Vec<Field>>",
                      v.id AS "version_id?",
                      v.name AS "version_name?",
                      v.status AS "status?",
                      v.language AS "language?",
                      v.memory_allocation AS "memory_allocation?",
                      v.minimum_instances AS "minimum_instances?",
                      v.maximum_instances AS "maximum_instances?",
                      v.maximum_idle_time AS "maximum_idle_time?",
                      v.maximum_queue_size_express AS "maximum_queue_size_express?",
                      v.maximum_queue_size_batch AS "maximum_queue_size_batch?",
                      v.restart_request_interruption AS "restart_request_interruption?",
                      v.request_retention_mode AS "request_retention_mode?",
                      v.request_retention_time AS "request_retention_time?",
                      r.id AS "revision_id?",
                      r.object_key AS "object_key?",
                      vars.ids AS "variable_ids?",
                      vars.names AS "variable_names?",
                      vars.plain AS "variable_values?: Vec<Option<String>>",
                      vars.sealed AS "variable_sealed?: Vec<Option<Vec<u8>>>",
                      vars.key_ids AS "variable_key_ids?: Vec<Option<String>>"
               FROM unnest($1::text[], $2::text[], $3::text[])
                    WITH ORDINALITY AS k(project, deployment, version, ord)
               JOIN projects p ON p.name = k.project
               LEFT JOIN deployments d ON d.project_id = p.id AND d.name = k.deployment
               LEFT JOIN versions v ON v.deployment_id = d.id
                    AND v.name = COALESCE(k.version, d.default_version_name)
               LEFT JOIN revisions r ON r.id = v.active_revision_id
               LEFT JOIN LATERAL (
                   SELECT array_agg(e.id) AS ids, array_agg(e.name) AS names,
                          array_agg(e.value) AS plain, array_agg(e.sealed_value) AS sealed,
                          array_agg(e.key_id) AS key_ids
                   FROM (SELECT DISTINCT ON (name) id, name, value, sealed_value, key_id
                         FROM environment_variables
                         WHERE project_id = p.id
                           AND (deployment_id IS NULL OR deployment_id = d.id)
                           AND (version_id IS NULL OR version_id = v.id)
                         ORDER BY name,
                                  (deployment_id IS NOT NULL)::int
                                  + (version_id IS NOT NULL)::int DESC) e
                   WHERE v.id IS NOT NULL
               ) vars ON true"#,
            &projects as &[&str],
            &deployments as &[&str],
            &versions as &[Option<&str>],
        )
        .fetch_all(conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| Keyed {
                key_index: row.key_index,
                row,
            })
            .collect())
    }
}

impl Store {
    /// The version `version_name` of the deployment, or its default version
    /// when `None`, with the variables its code gets; 404 naming whatever is
    /// missing.
    pub async fn serving_target(
        &self,
        project_name: &str,
        deployment_name: &str,
        version_name: Option<&str>,
    ) -> Result<ServingTarget> {
        refuse_nul(&[
            project_name,
            deployment_name,
            version_name.unwrap_or_default(),
        ])?;
        let key = (
            project_name.to_owned(),
            deployment_name.to_owned(),
            version_name.map(str::to_owned),
        );
        let cache = &self.lookups.serving_cache;
        if let Some(target) = cache.get(&key) {
            return Ok(target);
        }
        let generation = cache.current();
        let target = self.read_serving_target(&key).await?;
        // Only targets that serve are kept: one that does not yet is asked
        // again, and its error costs a query anyway.
        if let (Some(generation), Some(_)) = (generation, &target.active_revision) {
            cache.keep(key, generation, &target);
        }
        Ok(target)
    }

    async fn read_serving_target(&self, key: &serving_cache::Key) -> Result<ServingTarget> {
        let (project_name, deployment_name, version_name) = (&key.0, &key.1, key.2.as_deref());
        let row = self
            .lookups
            .serving
            .lookup(key.clone())
            .await?
            .pop()
            .ok_or_else(|| project_not_found(project_name))?;
        let deployment_id = row
            .deployment_id
            .ok_or_else(|| deployment_not_found(deployment_name))?;
        let Some(version_id) = row.version_id else {
            return Err(match version_name {
                Some(name) => version_not_found(name),
                None => no_default_version(deployment_name),
            });
        };
        let io_type = |value: Option<String>| {
            let value = value.unwrap_or_default();
            IoType::parse(&value)
                .ok_or_else(|| corrupt("deployment io type", &value, deployment_id))
        };
        let retention_mode = row.request_retention_mode.unwrap_or_default();
        Ok(ServingTarget {
            project_id: row.project_id,
            project_name: project_name.to_owned(),
            deployment_id,
            deployment_name: deployment_name.to_owned(),
            version_id,
            version_name: row.version_name.unwrap_or_default(),
            input_type: io_type(row.input_type)?,
            output_type: io_type(row.output_type)?,
            input_fields: row.input_fields.map(|json| json.0).unwrap_or_default(),
            output_fields: row.output_fields.map(|json| json.0).unwrap_or_default(),
            status: row.status.unwrap_or_default(),
            active_revision: row
                .revision_id
                .zip(row.object_key)
                .map(|(id, object_key)| ActiveRevision { id, object_key }),
            language: row.language.unwrap_or_default(),
            memory_mib: row.memory_allocation.unwrap_or_default(),
            minimum_instances: row.minimum_instances.unwrap_or_default(),
            maximum_instances: row.maximum_instances.unwrap_or_default(),
            maximum_idle_time: row.maximum_idle_time.unwrap_or_default(),
            maximum_queue_size_express: row.maximum_queue_size_express.unwrap_or_default(),
            maximum_queue_size_batch: row.maximum_queue_size_batch.unwrap_or_default(),
            restart_request_interruption: row.restart_request_interruption.unwrap_or_default(),
            retention: Retention {
                mode: RetentionMode::parse(&retention_mode).ok_or_else(|| {
                    corrupt("request retention mode", &retention_mode, version_id)
                })?,
                seconds: row.request_retention_time.unwrap_or_default(),
            },
            variables: code_variables(
                row.variable_ids.unwrap_or_default(),
                row.variable_names.unwrap_or_default(),
                row.variable_values.unwrap_or_default(),
                row.variable_sealed.unwrap_or_default(),
                row.variable_key_ids.unwrap_or_default(),
            )?,
        })
    }

    /// Versions that keep instances running without requests
    /// (`minimum_instances` above 0) and can serve.
    pub async fn versions_to_keep_warm(&self) -> Result<Vec<(String, String, String)>> {
        Ok(sqlx::query!(
            r#"SELECT p.name AS project, d.name AS deployment, v.name AS version
               FROM versions v
               JOIN deployments d ON d.id = v.deployment_id
               JOIN projects p ON p.id = d.project_id
               WHERE v.minimum_instances > 0 AND v.active_revision_id IS NOT NULL"#
        )
        .fetch_all(&mut *self.connection().await?)
        .await?
        .into_iter()
        .map(|row| (row.project, row.deployment, row.version))
        .collect())
    }

    /// The ids of the revisions that serve a version (active ones).
    pub async fn serving_revisions(&self) -> Result<Vec<(Uuid, Uuid)>> {
        Ok(sqlx::query!(
            r#"SELECT id AS version_id, active_revision_id AS "revision_id!"
               FROM versions WHERE active_revision_id IS NOT NULL"#
        )
        .fetch_all(&mut *self.connection().await?)
        .await?
        .into_iter()
        .map(|row| (row.version_id, row.revision_id))
        .collect())
    }
}

/// The variables of a serving row, from its parallel arrays.
fn code_variables(
    ids: Vec<Uuid>,
    names: Vec<String>,
    values: Vec<Option<String>>,
    sealed: Vec<Option<Vec<u8>>>,
    key_ids: Vec<Option<String>>,
) -> Result<Vec<CodeVariable>> {
    let columns = values.into_iter().zip(sealed).zip(key_ids);
    ids.into_iter()
        .zip(names)
        .zip(columns)
        .map(|((id, name), ((value, sealed), key_id))| {
            let value = match (value, sealed, key_id) {
                (Some(value), None, None) => VariableValue::Plain(value),
                (None, Some(bytes), Some(key_id)) => VariableValue::Sealed { bytes, key_id },
                _ => return Err(corrupt("variable value", &name, id)),
            };
            Ok(CodeVariable { name, value })
        })
        .collect()
}
