//! Environment variables, one mechanism at three scopes: project,
//! deployment and version (the most specific wins).

use serde::Deserialize;

use crate::ValidationError;

pub const MAX_VARIABLE_NAME_LENGTH: usize = 64;
pub const MAX_VARIABLE_VALUE_BYTES: usize = 64 * 1024;

/// Where a variable is defined, from least to most specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScopeLevel {
    Project = 0,
    Deployment = 1,
    Version = 2,
}

impl ScopeLevel {
    /// The `inheritance_type` of a variable inherited from this level.
    pub fn inheritance_type(self) -> &'static str {
        match self {
            ScopeLevel::Project => "project",
            ScopeLevel::Deployment => "deployment",
            ScopeLevel::Version => "version",
        }
    }

    pub fn from_depth(depth: i32) -> Option<Self> {
        match depth {
            0 => Some(ScopeLevel::Project),
            1 => Some(ScopeLevel::Deployment),
            2 => Some(ScopeLevel::Version),
            _ => None,
        }
    }
}

/// Body of create and update (all three fields are required for both, as
/// documented).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariableRequest {
    #[schema(pattern = "^[A-Za-z]([A-Za-z0-9_]{0,62}[A-Za-z0-9])?$")]
    pub name: String,
    pub value: String,
    pub secret: bool,
}

/// A variable that passed every rule. Its Debug output hides secret values.
#[derive(Clone, PartialEq, Eq)]
pub struct NewVariable {
    pub name: String,
    pub value: String,
    pub secret: bool,
}

impl std::fmt::Debug for NewVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.secret {
            "<secret>"
        } else {
            self.value.as_str()
        };
        f.debug_struct("NewVariable")
            .field("name", &self.name)
            .field("value", &value)
            .field("secret", &self.secret)
            .finish()
    }
}

impl VariableRequest {
    pub fn validate(self) -> Result<NewVariable, ValidationError> {
        validate_variable_name(&self.name)?;
        if self.value.len() > MAX_VARIABLE_VALUE_BYTES {
            return Err(ValidationError::new(format!(
                "The value of '{}' is too long: at most {MAX_VARIABLE_VALUE_BYTES} bytes",
                self.name
            )));
        }
        if self.value.contains('\0') {
            return Err(ValidationError::new(format!(
                "The value of '{}' must not contain NUL characters",
                self.name
            )));
        }
        Ok(NewVariable {
            name: self.name,
            value: self.value,
            secret: self.secret,
        })
    }
}

/// Letters and underscores as documented, plus digits after the first
/// character; not starting or ending with an underscore.
pub fn validate_variable_name(name: &str) -> Result<(), ValidationError> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_VARIABLE_NAME_LENGTH
        && bytes[0].is_ascii_alphabetic()
        && bytes[bytes.len() - 1] != b'_'
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ValidationError::new(format!(
            "Invalid variable name '{}': use 1-{MAX_VARIABLE_NAME_LENGTH} letters, digits and underscores, \
             starting with a letter and not ending with an underscore",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// Secrets stay secrets: `secret` may go from false to true, never back.
pub fn check_secret_change(was_secret: bool, secret: bool) -> Result<(), ValidationError> {
    if was_secret && !secret {
        Err(ValidationError::new(
            "A secret variable cannot be made non-secret: delete it and create a new one instead",
        ))
    } else {
        Ok(())
    }
}

/// Body of the copy operations.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyRequest {
    pub source_deployment: String,
    #[serde(default)]
    pub source_version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        for good in [
            "a",
            "DATABASE_URL",
            "deployment_variable_a",
            "A1",
            "a_1_b",
            &"x".repeat(64),
        ] {
            assert!(validate_variable_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "_a",
            "a_",
            "1a",
            "a-b",
            "a b",
            "a.b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(validate_variable_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_may_be_empty_but_not_huge() {
        let request = |value: String| {
            VariableRequest {
                name: "A".into(),
                value,
                secret: false,
            }
            .validate()
        };
        assert!(request(String::new()).is_ok());
        assert!(request("x".repeat(MAX_VARIABLE_VALUE_BYTES)).is_ok());
        assert!(request("x".repeat(MAX_VARIABLE_VALUE_BYTES + 1)).is_err());
        assert!(request("a\0b".into()).is_err());
    }

    #[test]
    fn all_three_fields_are_required() {
        for body in [
            json!({"name": "A", "value": "v"}),
            json!({"name": "A", "secret": true}),
            json!({"value": "v", "secret": true}),
            json!({"name": "A", "value": null, "secret": false}),
            json!({"name": "A", "value": "v", "secret": "yes"}),
            json!({"name": "A", "value": "v", "secret": false, "extra": 1}),
        ] {
            assert!(
                serde_json::from_value::<VariableRequest>(body.clone()).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn secrets_stay_secret() {
        assert!(check_secret_change(false, true).is_ok());
        assert!(check_secret_change(false, false).is_ok());
        assert!(check_secret_change(true, true).is_ok());
        assert!(check_secret_change(true, false).is_err());
    }

    #[test]
    fn debug_hides_secret_values() {
        let secret = NewVariable {
            name: "A".into(),
            value: "hunter2".into(),
            secret: true,
        };
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
