//! The name patterns in the OpenAPI schemas of the request types are written
//! as literals (utoipa needs them so); these tests hold them to the
//! validators, which stay the rule.

use regex_lite::Regex;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::PartialSchema;

use crate::deployment::{DeploymentCreate, DeploymentUpdate};
use crate::names::is_valid_resource_name;
use crate::variable::{validate_variable_name, VariableRequest};
use crate::version::VersionRequest;

fn documented_pattern(schema: RefOr<Schema>, property: &str) -> Regex {
    let RefOr::T(Schema::Object(object)) = schema else {
        panic!("not an object schema");
    };
    let pattern = match &object.properties[property] {
        RefOr::T(Schema::Object(field)) => field.pattern.clone(),
        _ => panic!("{property}: not a plain schema"),
    };
    Regex::new(&pattern.unwrap_or_else(|| panic!("{property} documents no pattern"))).unwrap()
}

fn samples() -> Vec<String> {
    let mut samples: Vec<String> = [
        "", "a", "A", "1", "-", "_", "a-", "a_", "-a", "_a", "ab", "a1", "a-b", "a_b", "aB",
        "a--b", "a b", "é", "a.b", "a/b", "a\0", "model-1", "MY_VAR", "my_var2", "v1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for length in [63, 64, 65] {
        samples.push("a".repeat(length));
        samples.push(format!("{}-", "a".repeat(length - 1)));
    }
    samples
}

#[test]
fn resource_name_patterns_match_the_rule() {
    for (schema, property) in [
        (DeploymentCreate::schema(), "name"),
        (DeploymentUpdate::schema(), "name"),
        (DeploymentUpdate::schema(), "default_version"),
        (VersionRequest::schema(), "version"),
    ] {
        let pattern = documented_pattern(schema, property);
        for sample in samples() {
            assert_eq!(
                pattern.is_match(&sample),
                is_valid_resource_name(&sample),
                "{property}: {sample:?}"
            );
        }
    }
}

#[test]
fn variable_name_pattern_matches_the_rule() {
    let pattern = documented_pattern(VariableRequest::schema(), "name");
    for sample in samples() {
        assert_eq!(
            pattern.is_match(&sample),
            validate_variable_name(&sample).is_ok(),
            "{sample:?}"
        );
    }
}
