use chrono::{DateTime, Utc};
use sqlx::Connection as _;
use uuid::Uuid;

use crate::error::on_unique_violation;
use crate::{Result, StorageError, Store};

#[derive(Debug, Clone)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub organization_name: String,
    pub creation_date: DateTime<Utc>,
}

/// `query_as!` into `Project` with its select list, written once here,
/// between the SQL `$before` and `$after`.
macro_rules! query_projects {
    ($before:literal, $after:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Project,
            $before + "id, name, organization_name, creation_date" + $after
            $(, $arg)*
        )
    };
}

impl Store {
    pub async fn create_project(&self, name: &str, organization_name: &str) -> Result<Project> {
        query_projects!(
            "INSERT INTO projects (id, name, organization_name) VALUES ($1, $2, $3) RETURNING ",
            "",
            Uuid::new_v4(),
            name,
            organization_name,
        )
        .fetch_one(&mut *self.connection().await?)
        .await
        .map_err(|e| on_unique_violation(e, || format!("A project named '{name}' already exists")))
    }

    /// Projects by name; `scope` limits the list to those names (a project-limited token).
    pub async fn list_projects(&self, scope: Option<&[String]>) -> Result<Vec<Project>> {
        let projects = query_projects!(
            "SELECT ",
            " FROM projects WHERE $1::text[] IS NULL OR name = ANY($1) ORDER BY name",
            scope,
        )
        .fetch_all(&mut *self.connection().await?)
        .await?;
        Ok(projects)
    }

    pub async fn get_project(&self, name: &str) -> Result<Project> {
        query_projects!("SELECT ", " FROM projects WHERE name = $1", name,)
            .fetch_optional(&mut *self.connection().await?)
            .await?
            .ok_or_else(|| project_not_found(name))
    }

    /// Deletes a project and, by cascade, everything in it.
    pub async fn delete_project(&self, name: &str) -> Result<()> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await?;
        sqlx::query!(
            "INSERT INTO object_deletions (object_key)
             SELECT r.object_key FROM revisions r
             JOIN versions v ON v.id = r.version_id
             JOIN deployments d ON d.id = v.deployment_id
             JOIN projects p ON p.id = d.project_id
             WHERE p.name = $1
             ON CONFLICT DO NOTHING",
            name,
        )
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query!("DELETE FROM projects WHERE name = $1", name)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(project_not_found(name));
        }
        tx.commit().await?;
        Ok(())
    }
}

pub(crate) fn project_not_found(name: &str) -> StorageError {
    StorageError::NotFound(format!("Project '{name}' not found"))
}

impl Store {
    /// When this database was set up.
    pub async fn installed_at(&self) -> Result<DateTime<Utc>> {
        let created_at = sqlx::query_scalar!("SELECT created_at FROM installation")
            .fetch_one(&mut *self.connection().await?)
            .await?;
        Ok(created_at)
    }
}
