use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use ubiops_domain::audit::{AuditAction, AuditQuery, ObjectType};
use uuid::Uuid;

use crate::versions::DeploymentRef;
use crate::{Actor, Result, Store};

/// An event to record, written by the same transaction as the change it
/// describes. Never put secret values into `event`.
pub struct NewAuditEvent<'a> {
    pub project_id: Uuid,
    pub deployment_id: Option<Uuid>,
    pub action: AuditAction,
    pub actor: &'a Actor,
    pub event: String,
    pub object_type: ObjectType,
    pub object_id: Option<Uuid>,
    pub object_name: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub id: Uuid,
    pub date: DateTime<Utc>,
    pub action: String,
    pub user: String,
    pub event: String,
    pub object_type: String,
    pub object_name: Option<String>,
}

pub(crate) async fn record(conn: &mut PgConnection, event: NewAuditEvent<'_>) -> Result<()> {
    sqlx::query!(
        "INSERT INTO audit_events
             (id, project_id, deployment_id, action, user_email, event, object_type, object_id, object_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        Uuid::new_v4(),
        event.project_id,
        event.deployment_id,
        event.action.as_str(),
        event.actor.email,
        event.event,
        event.object_type.as_str(),
        event.object_id,
        event.object_name,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// `query_as!` of the events whose `$column` is `$id`: the two audit lists
/// differ only in that column.
macro_rules! query_audit_events {
    ($column:literal, $id:ident, $action:ident, $query:ident) => {
        sqlx::query_as!(
            AuditEvent,
            r#"SELECT id, date, action, user_email AS "user", event, object_type, object_name
               FROM audit_events
               WHERE "#
                + $column
                + r#" = $1 AND ($2::text IS NULL OR action = $2)
               ORDER BY date DESC, seq DESC
               LIMIT $3 OFFSET $4"#,
            $id,
            $action,
            $query.limit,
            $query.offset,
        )
    };
}

impl Store {
    /// The events of a deployment (including those of its versions) or of a
    /// whole project, newest first. Two statements rather than one with
    /// optional filters, so that each keeps its index under generic plans.
    pub async fn list_audit_events(
        &self,
        scope: AuditScope,
        query: AuditQuery,
    ) -> Result<Vec<AuditEvent>> {
        let action = query.action.map(AuditAction::as_str);
        let mut conn = self.connection().await?;
        let events = match scope {
            AuditScope::Deployment(deployment_id) => {
                query_audit_events!("deployment_id", deployment_id, action, query)
                    .fetch_all(&mut *conn)
                    .await?
            }
            AuditScope::Project(project_id) => {
                query_audit_events!("project_id", project_id, action, query)
                    .fetch_all(&mut *conn)
                    .await?
            }
        };
        Ok(events)
    }
}

/// Whose events an audit list shows.
#[derive(Debug, Clone, Copy)]
pub enum AuditScope {
    /// Everything in the project, deleted deployments' events included.
    Project(Uuid),
    /// The deployment's own events and those of its versions.
    Deployment(Uuid),
}

/// An event shown in a deployment's audit list: the deployment's own, and
/// (as in the documentation's example) those of its versions, files and builds.
pub(crate) fn deployment_event<'a>(
    deployment: DeploymentRef<'a>,
    action: AuditAction,
    actor: &'a Actor,
    event: String,
) -> NewAuditEvent<'a> {
    NewAuditEvent {
        project_id: deployment.project_id,
        deployment_id: Some(deployment.id),
        action,
        actor,
        event,
        object_type: ObjectType::Deployment,
        object_id: Some(deployment.id),
        object_name: Some(deployment.name),
    }
}
