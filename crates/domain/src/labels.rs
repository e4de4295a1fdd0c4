//! Labels on deployments and versions, and the `labels` query filter.

use std::collections::BTreeMap;

use crate::ValidationError;

pub type Labels = BTreeMap<String, String>;

pub const MAX_LABEL_KEY_LENGTH: usize = 64;
pub const MAX_LABEL_VALUE_LENGTH: usize = 64;
pub const MAX_LABELS: usize = 50;

/// Keys are restricted so that a `key:value,key:value` filter can always
/// address them: no `:` or `,`, no whitespace. Values may hold anything but a
/// comma (the filter's pair separator) or control characters.
pub fn validate_labels(labels: &Labels) -> Result<(), ValidationError> {
    if labels.len() > MAX_LABELS {
        return Err(ValidationError::new(format!(
            "Too many labels: at most {MAX_LABELS} are allowed"
        )));
    }
    for (key, value) in labels {
        validate_key(key)?;
        validate_value(key, value)?;
    }
    Ok(())
}

fn validate_key(key: &str) -> Result<(), ValidationError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/');
    if key.is_empty() || key.chars().count() > MAX_LABEL_KEY_LENGTH || !key.chars().all(valid_char)
    {
        let shown: String = key.chars().take(80).collect();
        return Err(ValidationError::new(format!(
            "Invalid label key '{shown}': use 1-{MAX_LABEL_KEY_LENGTH} letters, digits, '-', '_', '.' or '/'"
        )));
    }
    Ok(())
}

fn validate_value(key: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty()
        || value.chars().count() > MAX_LABEL_VALUE_LENGTH
        || value.chars().any(|c| c == ',' || c.is_control())
    {
        return Err(ValidationError::new(format!(
            "Invalid value for label '{key}': use 1-{MAX_LABEL_VALUE_LENGTH} characters without commas or control characters"
        )));
    }
    Ok(())
}

/// `labels=key:value,key:value` as documented: an object matches when it has
/// at least one of the pairs. A malformed filter is an error, not an empty list,
/// so that a typo is not mistaken for "nothing matches".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pairs: Vec<(String, String)>,
}

impl LabelFilter {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let pairs = raw
            .split(',')
            .map(|pair| {
                let malformed = || {
                    ValidationError::new(format!(
                        "Invalid labels filter '{pair}': use 'key:value' pairs separated by commas"
                    ))
                };
                let (key, value) = pair.split_once(':').ok_or_else(malformed)?;
                let (key, value) = (key.trim(), value.trim());
                if key.is_empty() || value.is_empty() {
                    return Err(malformed());
                }
                Ok((key.to_owned(), value.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { pairs })
    }

    /// An absent or empty query parameter means "no filter".
    pub fn parse_optional(raw: Option<&str>) -> Result<Option<Self>, ValidationError> {
        match raw {
            None => Ok(None),
            Some(raw) if raw.trim().is_empty() => Ok(None),
            Some(raw) => Self::parse(raw).map(Some),
        }
    }

    pub fn keys(&self) -> Vec<String> {
        self.pairs.iter().map(|(key, _)| key.clone()).collect()
    }

    pub fn values(&self) -> Vec<String> {
        self.pairs.iter().map(|(_, value)| value.clone()).collect()
    }

    /// An optional filter as two parallel arrays (keys, values), the shape SQL
    /// takes it in; both `None` for no filter.
    pub fn as_arrays(filter: Option<&Self>) -> (Option<Vec<String>>, Option<Vec<String>>) {
        match filter {
            Some(filter) => (Some(filter.keys()), Some(filter.values())),
            None => (None, None),
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.pairs
            .iter()
            .any(|(key, value)| labels.get(key) == Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn valid_labels_pass() {
        assert!(validate_labels(&labels(&[
            ("type", "deployment"),
            ("team.io/owner", "a b:c")
        ]))
        .is_ok());
        assert!(validate_labels(&Labels::new()).is_ok());
    }

    #[test]
    fn invalid_keys_and_values_fail() {
        for (key, value) in [
            ("", "v"),
            ("a:b", "v"),
            ("a,b", "v"),
            ("a b", "v"),
            ("k", ""),
            ("k", "a,b"),
            ("k", "a\nb"),
        ] {
            assert!(
                validate_labels(&labels(&[(key, value)])).is_err(),
                "{key:?}={value:?}"
            );
        }
        let long = "x".repeat(65);
        assert!(validate_labels(&labels(&[(&long, "v")])).is_err());
        assert!(validate_labels(&labels(&[("k", &long)])).is_err());
        assert!(validate_labels(&labels(&[(&"x".repeat(64), &"y".repeat(64))])).is_ok());
    }

    #[test]
    fn too_many_labels_fail() {
        let many: Labels = (0..51)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(validate_labels(&many).is_err());
    }

    #[test]
    fn filter_matches_any_pair() {
        let filter = LabelFilter::parse("type:a,env:prod").unwrap();
        assert!(filter.matches(&labels(&[("type", "a")])));
        assert!(filter.matches(&labels(&[("env", "prod"), ("type", "b")])));
        assert!(!filter.matches(&labels(&[("type", "b")])));
        assert!(!filter.matches(&Labels::new()));
        assert_eq!(filter.keys(), vec!["type", "env"]);
        assert_eq!(filter.values(), vec!["a", "prod"]);
    }

    #[test]
    fn value_may_contain_a_colon() {
        let filter = LabelFilter::parse("url:a:b").unwrap();
        assert!(filter.matches(&labels(&[("url", "a:b")])));
    }

    #[test]
    fn malformed_filters_fail() {
        for raw in ["type", "type:", ":a", "a:b,", ",", "a:b,c"] {
            assert!(LabelFilter::parse(raw).is_err(), "{raw:?}");
        }
        assert_eq!(LabelFilter::parse_optional(Some("")).unwrap(), None);
        assert_eq!(LabelFilter::parse_optional(None).unwrap(), None);
    }
}
