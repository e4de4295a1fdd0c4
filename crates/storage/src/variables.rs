//! Environment variables: one mechanism at three scopes. A scope is a
//! (project, deployment?, version?) triple; a list at a scope also shows what
//! it inherits from the less specific scopes, unless shadowed by name.

use std::collections::HashMap;

use sqlx::Connection as _;
use sqlx::PgConnection;
use ubiops_domain::audit::{AuditAction, ObjectType};
use ubiops_domain::secrets::{Keyring, Sealed};
use ubiops_domain::variable::{check_secret_change, NewVariable, ScopeLevel};
use uuid::Uuid;

use crate::audit::{deployment_event, record, NewAuditEvent};
use crate::batch::{Keyed, Lookup};
use crate::deployments::deployment_not_found;
use crate::error::{corrupt, on_unique_violation, refuse_nul};
use crate::listing::{Listed, RowStamp, RowVersion};
use crate::projects::project_not_found;
use crate::versions::version_not_found;
use crate::versions::DeploymentRef;
use crate::{Actor, Result, StorageError, Store};

/// Where variables are read or written.
#[derive(Debug, Clone, Copy)]
pub enum VariableScope<'a> {
    Project {
        project_id: Uuid,
        project_name: &'a str,
    },
    Deployment(DeploymentRef<'a>),
    Version {
        deployment: DeploymentRef<'a>,
        version_id: Uuid,
        version_name: &'a str,
    },
}

impl VariableScope<'_> {
    fn project_id(&self) -> Uuid {
        match self {
            VariableScope::Project { project_id, .. } => *project_id,
            VariableScope::Deployment(deployment) | VariableScope::Version { deployment, .. } => {
                deployment.project_id
            }
        }
    }

    fn deployment_id(&self) -> Option<Uuid> {
        match self {
            VariableScope::Project { .. } => None,
            VariableScope::Deployment(deployment) | VariableScope::Version { deployment, .. } => {
                Some(deployment.id)
            }
        }
    }

    fn version_id(&self) -> Option<Uuid> {
        match self {
            VariableScope::Version { version_id, .. } => Some(*version_id),
            _ => None,
        }
    }

    /// "deployment d", "version v of deployment d" or "project p", for events.
    fn describe(&self) -> String {
        match self {
            VariableScope::Project { project_name, .. } => format!("project {project_name}"),
            VariableScope::Deployment(deployment) => format!("deployment {}", deployment.name),
            VariableScope::Version {
                deployment,
                version_name,
                ..
            } => format!("version {version_name} of deployment {}", deployment.name),
        }
    }

    /// Events of deployment and version variables show in the deployment's
    /// audit list; project variables belong to no deployment.
    fn event<'a>(
        &'a self,
        action: AuditAction,
        actor: &'a Actor,
        event: String,
    ) -> NewAuditEvent<'a> {
        match self {
            VariableScope::Project {
                project_id,
                project_name,
            } => NewAuditEvent {
                project_id: *project_id,
                deployment_id: None,
                action,
                actor,
                event,
                object_type: ObjectType::Project,
                object_id: Some(*project_id),
                object_name: Some(project_name),
            },
            VariableScope::Deployment(deployment) | VariableScope::Version { deployment, .. } => {
                deployment_event(*deployment, action, actor, event)
            }
        }
    }
}

/// A variable as responses show it: never a secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub id: Uuid,
    pub name: String,
    /// `None` for secrets.
    pub value: Option<String>,
    pub secret: bool,
    /// For an inherited variable: the level it comes from and that object's name.
    pub inherited_from: Option<(ScopeLevel, String)>,
}

fn variable_not_found() -> StorageError {
    StorageError::NotFound("Environment variable not found".to_owned())
}

fn duplicate_variable(name: &str, scope: &VariableScope<'_>) -> String {
    format!(
        "A variable named '{name}' already exists for {}",
        scope.describe()
    )
}

/// Value columns for a variable: plain text, or sealed with the current key.
struct StoredValue {
    value: Option<String>,
    sealed_value: Option<Vec<u8>>,
    key_id: Option<String>,
}

impl StoredValue {
    fn new(value: &str, secret: bool, keyring: &Keyring) -> Self {
        if secret {
            let sealed = keyring.seal(value);
            StoredValue {
                value: None,
                sealed_value: Some(sealed.bytes),
                key_id: Some(sealed.key_id),
            }
        } else {
            StoredValue {
                value: Some(value.to_owned()),
                sealed_value: None,
                key_id: None,
            }
        }
    }
}

/// The version of everything a scope's variable list shows: the rows of the
/// project, deployment and version its names resolved to. A write of any
/// variable also writes the row of the scope that owns it (a trigger, see the
/// migration `variable_list_stamps`), and a rename writes the renamed row, so
/// equal stamps mean an equal list (what a [`RowStamp`] promises, per row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScopeStamp {
    pub project: RowStamp,
    pub deployment: Option<RowStamp>,
    pub version: Option<RowStamp>,
}

/// The rows a scope's names resolved to, with their versions; the
/// deployment's and version's are NULL when there is no such name.
#[derive(sqlx::FromRow)]
pub(crate) struct ScopeRow {
    project_id: Uuid,
    project_version: RowVersion,
    deployment_id: Option<Uuid>,
    deployment_version: Option<RowVersion>,
    version_id: Option<Uuid>,
    version_version: Option<RowVersion>,
}

/// The names a variable list was asked for.
type ScopeNames = (String, Option<String>, Option<String>);

impl ScopeRow {
    /// The stamp of the scope the names resolved to, or which name is unknown
    /// (`row` is `None` when not even the project exists).
    fn resolved(
        row: Option<&ScopeRow>,
        project_name: &str,
        deployment_name: Option<&str>,
        version_name: Option<&str>,
    ) -> Result<ScopeStamp> {
        let Some(row) = row else {
            return Err(project_not_found(project_name));
        };
        let stamp = |id: Option<Uuid>, version: Option<RowVersion>| {
            Some(RowStamp {
                id: id?,
                version: version?,
            })
        };
        let deployment = stamp(row.deployment_id, row.deployment_version);
        let version = stamp(row.version_id, row.version_version);
        if let (Some(name), None) = (deployment_name, deployment) {
            return Err(deployment_not_found(name));
        }
        if let (Some(name), None) = (version_name, version) {
            return Err(version_not_found(name));
        }
        Ok(ScopeStamp {
            project: RowStamp {
                id: row.project_id,
                version: row.project_version,
            },
            deployment,
            version,
        })
    }
}

/// The rows the names of each key `k` resolve to (at most one): the body of
/// a lateral subquery, shared by the two lookups below.
macro_rules! scope_of_names {
    () => {
        r#"SELECT p.id AS project_id, p.xmin AS project_version,
                  d.id AS deployment_id, d.xmin AS deployment_version,
                  v.id AS version_id, v.xmin AS version_version
           FROM projects p
           LEFT JOIN deployments d ON d.project_id = p.id AND d.name = k.deployment
           LEFT JOIN versions v ON v.deployment_id = d.id AND v.name = k.version
           WHERE p.name = k.project
           LIMIT 1"#
    };
}

/// Binds a batch of scope names as the three arrays the lookups unnest.
fn bind_names<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    keys: &'q [ScopeNames],
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    let projects: Vec<&str> = keys.iter().map(|key| key.0.as_str()).collect();
    let deployments: Vec<Option<&str>> = keys.iter().map(|key| key.1.as_deref()).collect();
    let versions: Vec<Option<&str>> = keys.iter().map(|key| key.2.as_deref()).collect();
    query.bind(projects).bind(deployments).bind(versions)
}

/// Each scope's stamp alone: what a list the server holds rendered costs.
pub(crate) struct ScopeByNames;

impl Lookup for ScopeByNames {
    type Key = ScopeNames;
    type Row = ScopeRow;

    // Not `query_as!`: the macro cannot add the key index to the row type.
    async fn fetch(conn: &mut PgConnection, keys: &[ScopeNames]) -> Result<Vec<Keyed<ScopeRow>>> {
        let query = sqlx::query_as(concat!(
            r#"SELECT k.ord - 1 AS key_index, scope.*
               FROM unnest($1::text[], $2::text[], $3::text[])
                    WITH ORDINALITY AS k(project, deployment, version, ord)
               CROSS JOIN LATERAL ("#,
            scope_of_names!(),
            ") scope"
        ));
        Ok(bind_names(query, keys).fetch_all(conn).await?)
    }
}

/// A row of a scope's variable list: the rows its names resolved to, and
/// one visible variable (none when the scope has no variable at all).
#[derive(sqlx::FromRow)]
pub(crate) struct ScopeVariableRow {
    #[sqlx(flatten)]
    scope: ScopeRow,
    id: Option<Uuid>,
    name: Option<String>,
    secret: Option<bool>,
    value: Option<String>,
    depth: Option<i32>,
}

/// The variable lists of scopes named by (project, deployment?, version?).
pub(crate) struct VariablesOfScope;

impl Lookup for VariablesOfScope {
    type Key = ScopeNames;
    type Row = ScopeVariableRow;

    // `LIMIT 1` and the lateral join keep each key the plan of one scope.
    async fn fetch(
        conn: &mut PgConnection,
        keys: &[ScopeNames],
    ) -> Result<Vec<Keyed<ScopeVariableRow>>> {
        let query = sqlx::query_as(concat!(
            r#"SELECT k.ord - 1 AS key_index, found.*
               FROM unnest($1::text[], $2::text[], $3::text[])
                    WITH ORDINALITY AS k(project, deployment, version, ord)
               CROSS JOIN LATERAL (
                   SELECT scope.*, own.id, own.name, own.secret, own.value, own.depth
                   FROM ("#,
            scope_of_names!(),
            r#") scope
                   LEFT JOIN LATERAL (
                       SELECT DISTINCT ON (ev.name) ev.id, ev.name, ev.secret, ev.value,
                              CASE WHEN ev.version_id IS NOT NULL THEN 2
                                   WHEN ev.deployment_id IS NOT NULL THEN 1 ELSE 0 END AS depth
                       FROM environment_variables ev
                       WHERE (ev.project_id = scope.project_id AND ev.deployment_id IS NULL)
                          OR (ev.deployment_id = scope.deployment_id AND ev.version_id IS NULL)
                          OR ev.version_id = scope.version_id
                       ORDER BY ev.name, depth DESC) own ON true) found
               ORDER BY k.ord, found.name"#,
        ));
        Ok(bind_names(query, keys).fetch_all(conn).await?)
    }
}

fn visible(id: Uuid, name: String, secret: bool, value: Option<String>) -> Variable {
    Variable {
        id,
        name,
        value: if secret { None } else { value },
        secret,
        inherited_from: None,
    }
}

/// How a variable just written shows in a response.
fn stored_as(id: Uuid, variable: &NewVariable) -> Variable {
    visible(
        id,
        variable.name.clone(),
        variable.secret,
        Some(variable.value.clone()),
    )
}

async fn fetch_own(
    conn: &mut PgConnection,
    scope: &VariableScope<'_>,
    id: Uuid,
) -> Result<Variable> {
    let row = sqlx::query!(
        "SELECT id, name, secret, value FROM environment_variables
         WHERE id = $1 AND project_id = $2
           AND deployment_id IS NOT DISTINCT FROM $3 AND version_id IS NOT DISTINCT FROM $4",
        id,
        scope.project_id(),
        scope.deployment_id(),
        scope.version_id(),
    )
    .fetch_optional(conn)
    .await?
    .ok_or_else(variable_not_found)?;
    Ok(visible(row.id, row.name, row.secret, row.value))
}

/// Inserts a variable, or replaces the value and secret flag of the one with
/// this id (copy overwrites in place).
async fn write_variable(
    conn: &mut PgConnection,
    scope: &VariableScope<'_>,
    id: Uuid,
    name: &str,
    secret: bool,
    stored: &StoredValue,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO environment_variables
             (id, project_id, deployment_id, version_id, name, secret, value, sealed_value, key_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (id) DO UPDATE SET
             secret = EXCLUDED.secret, value = EXCLUDED.value,
             sealed_value = EXCLUDED.sealed_value, key_id = EXCLUDED.key_id,
             last_updated = now()",
        id,
        scope.project_id(),
        scope.deployment_id(),
        scope.version_id(),
        name,
        secret,
        stored.value,
        stored.sealed_value,
        stored.key_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// The variables of the scope a request path names (a project, or a
    /// deployment in it, or a version of that): the scope's own plus every
    /// inherited one that no more specific variable of the same name shadows,
    /// ordered by name. If the caller holds the list as of the scope's
    /// current stamp (`known`), that is all it costs: one small lookup.
    /// Otherwise one query resolves the names again and reads each of the
    /// three levels through its own index, and the list comes with the stamp
    /// of the state it was read in. Both lookups are shared with other
    /// requests' (`batch.rs`).
    pub async fn list_variables<C>(
        &self,
        project_name: &str,
        deployment_name: Option<&str>,
        version_name: Option<&str>,
        known: impl Fn(&ScopeStamp) -> Option<C>,
    ) -> Result<Listed<Vec<Variable>, C, ScopeStamp>> {
        refuse_nul(&[
            project_name,
            deployment_name.unwrap_or_default(),
            version_name.unwrap_or_default(),
        ])?;
        let names = || -> ScopeNames {
            (
                project_name.to_owned(),
                deployment_name.map(str::to_owned),
                version_name.map(str::to_owned),
            )
        };
        let resolved = |row: Option<&ScopeRow>| {
            ScopeRow::resolved(row, project_name, deployment_name, version_name)
        };
        let scope = self.lookups.scope.lookup(names()).await?;
        let stamp = resolved(scope.first())?;
        if let Some(kept) = known(&stamp) {
            return Ok(Listed::Known(kept));
        }

        let rows = self.lookups.variables.lookup(names()).await?;
        // One row at least (with no variable) whenever the project exists.
        let stamp = resolved(rows.first().map(|row| &row.scope))?;
        let scope_level = match (deployment_name, version_name) {
            (None, _) => ScopeLevel::Project,
            (Some(_), None) => ScopeLevel::Deployment,
            (Some(_), Some(_)) => ScopeLevel::Version,
        };
        let variables = rows
            .into_iter()
            .filter_map(|row| Some((row.id?, row.name?, row.secret?, row.value, row.depth?)))
            .map(|(id, name, secret, value, depth)| {
                let level = ScopeLevel::from_depth(depth)
                    .ok_or_else(|| corrupt("variable depth", &depth.to_string(), id))?;
                let mut variable = visible(id, name, secret, value);
                if level < scope_level {
                    let from = match level {
                        ScopeLevel::Project => project_name,
                        _ => deployment_name.unwrap_or_default(),
                    };
                    variable.inherited_from = Some((level, from.to_owned()));
                }
                Ok(variable)
            })
            .collect::<Result<_>>()?;
        Ok(Listed::Read(stamp, variables))
    }

    /// The id of the scope's own variable with this name: the official CLI
    /// addresses variables by name where the API takes an id.
    pub async fn own_variable_id(&self, scope: VariableScope<'_>, name: &str) -> Result<Uuid> {
        sqlx::query_scalar!(
            "SELECT id FROM environment_variables
             WHERE name = $1 AND project_id = $2
               AND deployment_id IS NOT DISTINCT FROM $3 AND version_id IS NOT DISTINCT FROM $4",
            name,
            scope.project_id(),
            scope.deployment_id(),
            scope.version_id(),
        )
        .fetch_optional(&mut *self.connection().await?)
        .await?
        .ok_or_else(variable_not_found)
    }

    /// One of the scope's own variables (an inherited id is not found here).
    pub async fn get_variable(&self, scope: VariableScope<'_>, id: Uuid) -> Result<Variable> {
        let mut conn = self.connection().await?;
        fetch_own(&mut conn, &scope, id).await
    }

    pub async fn create_variable(
        &self,
        scope: VariableScope<'_>,
        variable: &NewVariable,
        keyring: &Keyring,
        actor: &Actor,
    ) -> Result<Variable> {
        let stored = StoredValue::new(&variable.value, variable.secret, keyring);
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        let id = Uuid::new_v4();
        write_variable(
            &mut tx,
            &scope,
            id,
            &variable.name,
            variable.secret,
            &stored,
        )
        .await
        .map_err(|e| on_unique_violation(e, || duplicate_variable(&variable.name, &scope)))?;
        let event = format!(
            "Created environment variable {} for {}",
            variable.name,
            scope.describe()
        );
        record(&mut tx, scope.event(AuditAction::Create, actor, event)).await?;
        tx.commit().await?;
        Ok(stored_as(id, variable))
    }

    /// Replaces name, value and secret flag; a secret never becomes non-secret.
    pub async fn update_variable(
        &self,
        scope: VariableScope<'_>,
        id: Uuid,
        variable: &NewVariable,
        keyring: &Keyring,
        actor: &Actor,
    ) -> Result<Variable> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        let current = sqlx::query!(
            "SELECT name, secret FROM environment_variables
             WHERE id = $1 AND project_id = $2
               AND deployment_id IS NOT DISTINCT FROM $3 AND version_id IS NOT DISTINCT FROM $4
             FOR UPDATE",
            id,
            scope.project_id(),
            scope.deployment_id(),
            scope.version_id(),
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(variable_not_found)?;
        check_secret_change(current.secret, variable.secret)
            .map_err(|e| StorageError::Rejected(e.message().to_owned()))?;
        let stored = StoredValue::new(&variable.value, variable.secret, keyring);
        sqlx::query!(
            "UPDATE environment_variables
             SET name = $2, secret = $3, value = $4, sealed_value = $5, key_id = $6, last_updated = now()
             WHERE id = $1",
            id,
            variable.name,
            variable.secret,
            stored.value,
            stored.sealed_value,
            stored.key_id,
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| on_unique_violation(e, || duplicate_variable(&variable.name, &scope)))?;
        let event = if current.name != variable.name {
            format!(
                "Renamed environment variable {} to {} for {}",
                current.name,
                variable.name,
                scope.describe()
            )
        } else {
            format!(
                "Updated environment variable {} for {}",
                variable.name,
                scope.describe()
            )
        };
        record(&mut tx, scope.event(AuditAction::Update, actor, event)).await?;
        tx.commit().await?;
        Ok(stored_as(id, variable))
    }

    pub async fn delete_variable(
        &self,
        scope: VariableScope<'_>,
        id: Uuid,
        actor: &Actor,
    ) -> Result<()> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        let name = sqlx::query_scalar!(
            "DELETE FROM environment_variables
             WHERE id = $1 AND project_id = $2
               AND deployment_id IS NOT DISTINCT FROM $3 AND version_id IS NOT DISTINCT FROM $4
             RETURNING name",
            id,
            scope.project_id(),
            scope.deployment_id(),
            scope.version_id(),
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(variable_not_found)?;
        let event = format!(
            "Deleted environment variable {name} for {}",
            scope.describe()
        );
        record(&mut tx, scope.event(AuditAction::Delete, actor, event)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Copies the source scope's own variables (secrets included, re-sealed
    /// with the current key) into the target, overwriting same-name target
    /// variables. A target secret stays secret even if the source's variable
    /// is not. Returns only the copied variables, as the target now has them.
    pub async fn copy_variables(
        &self,
        source: VariableScope<'_>,
        target: VariableScope<'_>,
        keyring: &Keyring,
        actor: &Actor,
    ) -> Result<Vec<Variable>> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        let sources = sqlx::query!(
            "SELECT id, name, secret, value, sealed_value, key_id FROM environment_variables
             WHERE project_id = $1
               AND deployment_id IS NOT DISTINCT FROM $2 AND version_id IS NOT DISTINCT FROM $3
             ORDER BY name",
            source.project_id(),
            source.deployment_id(),
            source.version_id(),
        )
        .fetch_all(&mut *tx)
        .await?;
        let existing: HashMap<String, (Uuid, bool)> = sqlx::query!(
            "SELECT id, name, secret FROM environment_variables
             WHERE project_id = $1
               AND deployment_id IS NOT DISTINCT FROM $2 AND version_id IS NOT DISTINCT FROM $3
             FOR UPDATE",
            target.project_id(),
            target.deployment_id(),
            target.version_id(),
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| (row.name, (row.id, row.secret)))
        .collect();

        let mut copied = Vec::with_capacity(sources.len());
        for row in sources {
            let plaintext = match (row.value, row.sealed_value, row.key_id) {
                (Some(value), None, None) => value,
                (None, Some(bytes), Some(key_id)) => keyring
                    .open(&Sealed { key_id, bytes })
                    .map_err(|e| StorageError::Database(sqlx::Error::Decode(e.into())))?,
                _ => return Err(corrupt("variable value", &row.name, row.id)),
            };
            let (id, secret) = match existing.get(&row.name) {
                Some((id, was_secret)) => (*id, row.secret || *was_secret),
                None => (Uuid::new_v4(), row.secret),
            };
            let stored = StoredValue::new(&plaintext, secret, keyring);
            write_variable(&mut tx, &target, id, &row.name, secret, &stored)
                .await
                .map_err(|e| {
                    on_unique_violation(e, || {
                        format!(
                            "Variable '{}' was created in the target while copying: please retry",
                            row.name
                        )
                    })
                })?;
            copied.push(visible(id, row.name, secret, Some(plaintext)));
        }
        let names: Vec<&str> = copied.iter().map(|v| v.name.as_str()).collect();
        let event = format!(
            "Copied environment variables [{}] from {} to {}",
            names.join(", "),
            source.describe(),
            target.describe()
        );
        record(&mut tx, target.event(AuditAction::Update, actor, event)).await?;
        tx.commit().await?;
        Ok(copied)
    }
}
