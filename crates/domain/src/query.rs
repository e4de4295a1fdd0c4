//! Query parameters that are not text, parsed from their raw text so that a
//! bad value gets a message naming the parameter.

use crate::ValidationError;

/// A boolean query parameter. Python clients send `True`/`False` (the
/// default string form of their booleans), browsers and curl `true`/`false`.
pub fn optional_bool(name: &str, raw: Option<&str>) -> Result<Option<bool>, ValidationError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.eq_ignore_ascii_case("true") {
        Ok(Some(true))
    } else if raw.eq_ignore_ascii_case("false") {
        Ok(Some(false))
    } else {
        Err(ValidationError::new(format!(
            "`{name}` must be true or false, not '{}'",
            raw.chars().take(40).collect::<String>()
        )))
    }
}

/// An integer parameter within `min..=max`; absent or empty is `default`.
pub fn bounded_integer(
    name: &str,
    raw: Option<&str>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ValidationError> {
    let Some(raw) = raw.filter(|raw| !raw.is_empty()) else {
        return Ok(default);
    };
    let bounds = if max == i64::MAX {
        format!("a whole number of at least {min}")
    } else {
        format!("a whole number from {min} to {max}")
    };
    match raw.parse::<i64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(ValidationError::new(format!(
            "Invalid `{name}` '{}': use {bounds}",
            raw.chars().take(40).collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_spellings_of_booleans() {
        for (raw, expected) in [
            ("true", true),
            ("True", true),
            ("FALSE", false),
            ("false", false),
        ] {
            assert_eq!(optional_bool("flag", Some(raw)).unwrap(), Some(expected));
        }
        assert_eq!(optional_bool("flag", None).unwrap(), None);
    }

    #[test]
    fn integers_are_bounded_and_named_in_errors() {
        assert_eq!(bounded_integer("limit", None, 50, 1, 100).unwrap(), 50);
        assert_eq!(bounded_integer("limit", Some(""), 50, 1, 100).unwrap(), 50);
        assert_eq!(
            bounded_integer("limit", Some("100"), 50, 1, 100).unwrap(),
            100
        );
        for raw in ["0", "101", "ten", "-1", "1.5"] {
            let error = bounded_integer("limit", Some(raw), 50, 1, 100).unwrap_err();
            assert!(error.message().contains("`limit`"), "{raw}");
            assert!(error.message().contains("from 1 to 100"), "{raw}");
        }
        let error = bounded_integer("cursor", Some("x"), 0, 0, i64::MAX).unwrap_err();
        assert!(error.message().contains("at least 0"));
    }

    #[test]
    fn refuses_anything_else_naming_the_parameter() {
        for raw in ["1", "yes", "", "truee"] {
            let error = optional_bool("supports_request_format", Some(raw)).unwrap_err();
            assert!(
                error.message().contains("`supports_request_format`"),
                "{raw}"
            );
        }
    }
}
