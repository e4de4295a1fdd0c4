//! Names of projects, deployments and versions.

use crate::ValidationError;

pub const MAX_NAME_LENGTH: usize = 64;

/// Projects, deployments and versions share one naming rule (API-NOTES):
/// lowercase letters, digits and dashes, starting with a letter, not ending
/// with a dash, 1-64 characters. `kind` names the object in the error message.
pub fn validate_resource_name(kind: &str, name: &str) -> Result<(), ValidationError> {
    if is_valid_resource_name(name) {
        return Ok(());
    }
    let shown: String = name.chars().take(80).collect();
    Err(ValidationError::new(format!(
        "Invalid {kind} name '{shown}': use 1-{MAX_NAME_LENGTH} lowercase letters, digits and dashes, \
         starting with a letter and not ending with a dash"
    )))
}

pub fn is_valid_resource_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= MAX_NAME_LENGTH
                && first.is_ascii_lowercase()
                && *last != b'-'
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_documented_shapes() {
        for name in ["a", "deployment-1", "v1", "a-b-c", &"x".repeat(64)] {
            assert!(validate_resource_name("deployment", name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for name in [
            "",
            "1abc",
            "-abc",
            "abc-",
            "Abc",
            "a_b",
            "a b",
            "a.b",
            "a/b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(
                validate_resource_name("deployment", name).is_err(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn message_names_the_kind_and_the_rule() {
        let err = validate_resource_name("version", "Bad").unwrap_err();
        assert!(err.message().contains("Invalid version name 'Bad'"));
        assert!(err.message().contains("lowercase"));
    }
}
