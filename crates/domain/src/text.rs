//! Free-text fields such as descriptions.

use crate::ValidationError;

pub const MAX_DESCRIPTION_LENGTH: usize = 400;

/// Optional text is stored as NULL when empty: the official clients reject
/// `""` for optional strings in responses, so `""` must never come back out.
pub fn optional_text(
    field: &str,
    value: Option<String>,
    max_chars: usize,
) -> Result<Option<String>, ValidationError> {
    match value {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) if text.chars().count() > max_chars => Err(ValidationError::new(format!(
            "`{field}` is too long: at most {max_chars} characters are allowed"
        ))),
        Some(text) if text.contains('\0') => Err(ValidationError::new(format!(
            "`{field}` must not contain NUL characters"
        ))),
        Some(text) => Ok(Some(text)),
    }
}

pub fn description(value: Option<String>) -> Result<Option<String>, ValidationError> {
    optional_text("description", value, MAX_DESCRIPTION_LENGTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_becomes_none() {
        assert_eq!(description(Some(String::new())).unwrap(), None);
        assert_eq!(description(None).unwrap(), None);
    }

    #[test]
    fn length_is_counted_in_characters_up_to_the_limit() {
        assert!(description(Some("é".repeat(400))).is_ok());
        let err = description(Some("a".repeat(401))).unwrap_err();
        assert!(err.message().contains("at most 400"));
    }

    #[test]
    fn nul_is_refused() {
        assert!(description(Some("a\0b".into())).is_err());
    }
}
