//! Audit events: what was done, to which object, by whom.

use crate::query::bounded_integer;
use crate::ValidationError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Create,
    Update,
    Delete,
    /// Anything that is not a create, update or delete (e.g. a build outcome).
    Info,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::Info => "info",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "create" => Some(AuditAction::Create),
            "update" => Some(AuditAction::Update),
            "delete" => Some(AuditAction::Delete),
            "info" => Some(AuditAction::Info),
            _ => None,
        }
    }
}

/// The kind of object an event is about. Later resources (versions,
/// environment variables, revisions, builds) add variants, not columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Deployment,
    Project,
}

impl ObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Deployment => "deployment",
            ObjectType::Project => "project",
        }
    }
}

/// The `action`, `limit` and `offset` query parameters, parsed from their raw
/// text so that a bad value gets a message naming the parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditQuery {
    pub action: Option<AuditAction>,
    pub limit: i64,
    pub offset: i64,
}

impl AuditQuery {
    pub fn parse(
        action: Option<&str>,
        limit: Option<&str>,
        offset: Option<&str>,
    ) -> Result<Self, ValidationError> {
        let action = match action {
            None | Some("") => None,
            Some(raw) => Some(AuditAction::parse(raw).ok_or_else(|| {
                ValidationError::new(format!(
                    "Invalid `action` '{}': use one of create, update, delete, info",
                    raw.chars().take(40).collect::<String>()
                ))
            })?),
        };
        let limit = bounded_integer("limit", limit, DEFAULT_LIMIT, 1, MAX_LIMIT)?;
        let offset = bounded_integer("offset", offset, 0, 0, i64::MAX)?;
        Ok(Self {
            action,
            limit,
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let query = AuditQuery::parse(None, None, None).unwrap();
        assert_eq!(
            query,
            AuditQuery {
                action: None,
                limit: 50,
                offset: 0
            }
        );
    }

    #[test]
    fn bounds_at_both_edges() {
        assert_eq!(AuditQuery::parse(None, Some("1"), None).unwrap().limit, 1);
        assert_eq!(
            AuditQuery::parse(None, Some("1000"), None).unwrap().limit,
            1000
        );
        assert!(AuditQuery::parse(None, Some("0"), None).is_err());
        assert!(AuditQuery::parse(None, Some("1001"), None).is_err());
        assert_eq!(AuditQuery::parse(None, None, Some("0")).unwrap().offset, 0);
        assert!(AuditQuery::parse(None, None, Some("-1")).is_err());
        assert!(AuditQuery::parse(None, Some("ten"), None).is_err());
    }

    #[test]
    fn actions() {
        for action in ["create", "update", "delete", "info"] {
            let parsed = AuditQuery::parse(Some(action), None, None).unwrap();
            assert_eq!(parsed.action.unwrap().as_str(), action);
        }
        let err = AuditQuery::parse(Some("read"), None, None).unwrap_err();
        assert!(err.message().contains("Invalid `action` 'read'"));
    }
}
