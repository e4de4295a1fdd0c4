//! Property tests for every validator: what the rule accepts round-trips
//! unchanged, what breaks it is refused with a message, and no input panics.
//! Each validator is checked against an independent statement of its rule
//! (a regex or a plain predicate), not against its own code.

use proptest::prelude::*;
use serde_json::{json, Value};
use ubiops_domain::audit::AuditQuery;
use ubiops_domain::deployment::{
    validate_fields, DeploymentCreate, DeploymentUpdate, Direction, Field, FieldInput, IoType,
};
use ubiops_domain::instance_types::InstanceTypeCatalog;
use ubiops_domain::labels::{validate_labels, LabelFilter, Labels};
use ubiops_domain::names::{is_valid_resource_name, validate_resource_name};
use ubiops_domain::secrets::{Keyring, Sealed};
use ubiops_domain::text::description;
use ubiops_domain::token::{hash_token, token_from_authorization, validate_email};
use ubiops_domain::variable::{
    check_secret_change, validate_variable_name, NewVariable, VariableRequest,
};
use ubiops_domain::version::{VersionRequest, LANGUAGES};

/// Any text, weighted towards the characters validators care about.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-zA-Z0-9 _./:,\\-\u{0}\u{e9}\n]{0,80}",]
}

fn resource_name() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,62}[a-z0-9])?"
}

fn label_key() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._/-]{1,64}"
}

/// Without surrounding spaces: the `labels` filter trims its pairs.
fn label_value() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._:/=+\u{e9}-]([a-zA-Z0-9 ._:/=+\u{e9}-]{0,62}[a-zA-Z0-9._:/=+\u{e9}-])?"
}

fn labels() -> impl Strategy<Value = Labels> {
    prop::collection::btree_map(label_key(), label_value(), 0..10)
}

fn variable_name() -> impl Strategy<Value = String> {
    "[a-zA-Z]([a-zA-Z0-9_]{0,62}[a-zA-Z0-9])?"
}

fn field_input() -> impl Strategy<Value = Value> {
    let data_type = prop::sample::select(vec![
        "int",
        "string",
        "double",
        "bool",
        "timestamp",
        "array_int",
        "array_double",
        "array_string",
        "file",
    ]);
    let widget = prop::option::of(prop::sample::select(vec![
        "textbox",
        "numberbox",
        "slider",
        "dropdown",
        "switch",
        "button",
        "drawer",
        "image_preview",
        "knob",
    ]));
    (text(), data_type, widget).prop_map(|(name, data_type, widget)| match widget {
        Some(kind) => json!({"name": name, "data_type": data_type, "widget": {"type": kind}}),
        None => json!({"name": name, "data_type": data_type}),
    })
}

proptest! {
    // ---- names ----

    #[test]
    fn resource_names_follow_the_documented_rule(name in text()) {
        let rule = regex_lite::Regex::new("^[a-z]([a-z0-9-]{0,62}[a-z0-9])?$").unwrap();
        let result = validate_resource_name("deployment", &name);
        prop_assert_eq!(result.is_ok(), rule.is_match(&name));
        prop_assert_eq!(is_valid_resource_name(&name), rule.is_match(&name));
        if let Err(error) = result {
            prop_assert!(error.message().starts_with("Invalid deployment name"));
        }
    }

    #[test]
    fn valid_resource_names_are_accepted(name in resource_name()) {
        prop_assert!(validate_resource_name("project", &name).is_ok());
    }

    // ---- labels ----

    #[test]
    fn valid_labels_are_accepted_and_found_by_their_filter(labels in labels()) {
        prop_assert!(validate_labels(&labels).is_ok());
        if !labels.is_empty() {
            let raw: Vec<String> = labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            let filter = LabelFilter::parse(&raw.join(",")).unwrap();
            prop_assert!(filter.matches(&labels));
            prop_assert_eq!(filter.keys().len(), labels.len());
        }
    }

    #[test]
    fn a_label_key_with_a_forbidden_character_is_refused(
        key in label_key(),
        bad in prop::sample::select(vec![':', ',', ' ', '\n', '\u{0}', 'é', '*']),
        at in any::<prop::sample::Index>(),
    ) {
        let mut chars: Vec<char> = key.chars().collect();
        chars.insert(at.index(chars.len() + 1), bad);
        let key: String = chars.into_iter().collect();
        let labels = Labels::from([(key, "v".to_owned())]);
        let error = validate_labels(&labels).unwrap_err();
        prop_assert!(error.message().contains("Invalid label key"));
    }

    #[test]
    fn a_label_value_with_a_comma_or_control_character_or_too_long_is_refused(
        value in label_value(),
        bad in prop::sample::select(vec![",".to_owned(), "\n".to_owned(), "\u{0}".to_owned(), "x".repeat(65)]),
    ) {
        let labels = Labels::from([("k".to_owned(), format!("{value}{bad}"))]);
        prop_assert!(validate_labels(&labels).is_err());
    }

    #[test]
    fn label_validation_and_filters_never_panic(
        labels in prop::collection::btree_map(text(), text(), 0..60),
        raw in text(),
    ) {
        let _ = validate_labels(&labels);
        if let Ok(filter) = LabelFilter::parse(&raw) {
            let _ = filter.matches(&labels);
        }
        let _ = LabelFilter::parse_optional(Some(&raw));
    }

    // ---- deployments: fields and widgets ----

    #[test]
    fn fields_either_validate_or_say_why_and_round_trip(
        inputs in prop::collection::vec(field_input(), 0..8),
        direction in prop::sample::select(vec![Direction::Input, Direction::Output]),
    ) {
        let inputs: Vec<FieldInput> = serde_json::from_value(Value::Array(inputs)).unwrap();
        match validate_fields(direction, IoType::Structured, Some(inputs.clone())) {
            Ok(fields) => {
                prop_assert_eq!(fields.len(), inputs.len());
                let back: Vec<Field> =
                    serde_json::from_value(serde_json::to_value(&fields).unwrap()).unwrap();
                prop_assert_eq!(back, fields);
            }
            Err(error) => prop_assert!(!error.message().is_empty()),
        }
        // Plain never takes fields.
        if !inputs.is_empty() {
            prop_assert!(validate_fields(direction, IoType::Plain, Some(inputs)).is_err());
        }
    }

    #[test]
    fn deployment_requests_from_any_json_never_panic(
        name in text(),
        description in prop::option::of(text()),
        labels in prop::collection::btree_map(text(), text(), 0..4),
        structured in any::<bool>(),
        fields in prop::collection::vec(field_input(), 0..4),
    ) {
        let io = if structured { "structured" } else { "plain" };
        let body = json!({
            "name": name, "description": description, "labels": labels,
            "input_type": io, "output_type": "plain", "input_fields": fields,
        });
        if let Ok(request) = serde_json::from_value::<DeploymentCreate>(body.clone()) {
            if let Ok(new) = request.validate() {
                prop_assert!(is_valid_resource_name(&new.name));
                prop_assert!(validate_labels(&new.labels).is_ok());
                prop_assert!(new.description.as_ref().is_none_or(|d| !d.is_empty() && !d.contains('\0')));
            }
        }
        let mut update = body;
        update.as_object_mut().unwrap().remove("input_type");
        update.as_object_mut().unwrap().remove("output_type");
        if let Ok(request) = serde_json::from_value::<DeploymentUpdate>(update) {
            let _ = request.validate(IoType::Structured, IoType::Plain);
        }
    }

    // ---- versions ----

    #[test]
    fn version_settings_that_pass_hold_every_bound(
        name in prop_oneof![resource_name(), text()],
        language in prop_oneof![prop::sample::select(LANGUAGES.iter().map(|(l, _)| l.to_string()).collect::<Vec<_>>()), text()],
        memory in prop::option::of(prop_oneof![Just(256), Just(2048), Just(16384), any::<i32>()]),
        instance_type in prop::option::of(prop_oneof![Just("512mb".to_owned()), Just("16384mb_t4".to_owned()), text()]),
        maximum_instances in prop::option::of(-5..1100i32),
        minimum_instances in prop::option::of(-5..1100i32),
        maximum_idle_time in prop::option::of(0..4000i32),
        retention in prop::option::of(any::<i32>()),
        queue in prop::option::of(any::<i32>()),
    ) {
        let catalog = InstanceTypeCatalog::default();
        let request = VersionRequest {
            version: Some(name.clone()),
            language: Some(language.clone()),
            memory_allocation: memory,
            instance_type,
            maximum_instances,
            minimum_instances,
            maximum_idle_time,
            request_retention_time: retention,
            maximum_queue_size_batch: queue,
            ..VersionRequest::default()
        };
        match request.create(&catalog) {
            Ok(settings) => {
                prop_assert_eq!(&settings.name, &name);
                prop_assert_eq!(&settings.language, &language);
                prop_assert!(is_valid_resource_name(&settings.name));
                prop_assert!(settings.minimum_instances <= settings.maximum_instances);
                prop_assert!((0..=1000).contains(&settings.maximum_instances));
                prop_assert!((10..=3600).contains(&settings.maximum_idle_time));
                prop_assert!(settings.request_retention_time >= 0);
                prop_assert!(settings.maximum_queue_size_batch >= 0);
                let instance = catalog.by_name(&settings.instance_type).unwrap();
                prop_assert_eq!(instance.memory_mib, settings.memory_allocation);
                // Updating with nothing changes nothing; changing the language is refused.
                let same = VersionRequest::default().update(settings.clone(), &catalog).unwrap();
                prop_assert_eq!(&same, &settings);
                let other = if language == "r4.0" { "python3.11" } else { "r4.0" };
                let relanguage = VersionRequest { language: Some(other.to_owned()), ..VersionRequest::default() };
                prop_assert!(relanguage.update(settings, &catalog).is_err());
            }
            Err(error) => prop_assert!(!error.message().is_empty()),
        }
    }

    #[test]
    fn extra_instance_types_never_panic_and_valid_ones_are_offered(
        raw in text(),
        mib in 256..=16384i32,
        suffix in "[a-z0-9]{1,8}",
    ) {
        let _ = InstanceTypeCatalog::with_extra(&raw);
        let name = format!("{mib}mb_{suffix}");
        let catalog = InstanceTypeCatalog::with_extra(&name).unwrap();
        prop_assert_eq!(catalog.by_name(&name).unwrap().memory_mib, mib);
    }

    // ---- environment variables ----

    #[test]
    fn variable_names_follow_the_documented_rule(name in prop_oneof![variable_name(), text()]) {
        let rule = regex_lite::Regex::new("^[a-zA-Z]([a-zA-Z0-9_]{0,62}[a-zA-Z0-9])?$").unwrap();
        prop_assert_eq!(validate_variable_name(&name).is_ok(), rule.is_match(&name));
    }

    #[test]
    fn variables_round_trip_and_secret_values_stay_out_of_debug_output(
        name in variable_name(),
        value in "[^\u{0}]{1,200}",
        secret in any::<bool>(),
    ) {
        let variable = VariableRequest { name: name.clone(), value: value.clone(), secret }
            .validate()
            .unwrap();
        prop_assert_eq!((&variable.name, &variable.value, variable.secret), (&name, &value, secret));
        // A short value such as "r" can occur in the Debug text by chance (in
        // "secret: true"), so the property is that the text does not depend on
        // the value at all.
        if secret {
            let other_value = NewVariable { value: format!("{value}-other"), ..variable.clone() };
            prop_assert_eq!(format!("{variable:?}"), format!("{other_value:?}"));
        }
        prop_assert_eq!(check_secret_change(secret, false).is_err(), secret);
        prop_assert!(check_secret_change(secret, true).is_ok());
    }

    #[test]
    fn variable_values_with_nul_or_over_64_kib_are_refused(
        name in variable_name(),
        value in prop_oneof![
            "[a-z]{0,10}\u{0}[a-z]{0,10}",
            (65_537..70_000usize).prop_map(|n| "x".repeat(n)),
        ],
    ) {
        let error = VariableRequest { name: name.clone(), value, secret: false }.validate().unwrap_err();
        prop_assert!(error.message().contains(&name));
    }

    // ---- descriptions ----

    #[test]
    fn descriptions_up_to_400_characters_round_trip(value in "[^\u{0}]{1,400}") {
        prop_assert_eq!(description(Some(value.clone())).unwrap(), Some(value));
    }

    #[test]
    fn long_or_nul_descriptions_are_refused(value in prop_oneof![
        "[^\u{0}]{401,500}",
        "[a-z]{0,5}\u{0}[a-z]{0,5}",
    ]) {
        prop_assert!(description(Some(value)).is_err());
    }

    // ---- tokens and emails ----

    #[test]
    fn authorization_headers_yield_exactly_the_token(
        token in "[!-~]{1,100}",
        scheme in prop::sample::select(vec!["Token", "token", "Bearer", "BEARER"]),
        padding in " {1,3}",
    ) {
        let header = format!("{scheme}{padding}{token}{padding}");
        prop_assert_eq!(token_from_authorization(&header), Some(token.as_str()));
        prop_assert_eq!(hash_token(&token), hash_token(&token));
    }

    #[test]
    fn authorization_parsing_never_panics_or_accepts_other_schemes(header in text()) {
        if let Some(token) = token_from_authorization(&header) {
            let scheme = header.trim().split(' ').next().unwrap().to_ascii_lowercase();
            prop_assert!(scheme == "token" || scheme == "bearer");
            prop_assert!(!token.is_empty() && !token.contains(' '));
        }
    }

    #[test]
    fn emails_follow_the_rule(
        local in "[a-z0-9._+-]{1,30}",
        domain in "[a-z0-9-]{1,20}\\.[a-z]{2,6}",
        junk in text(),
    ) {
        let (valid, spaced, two_ats) = (
            format!("{local}@{domain}"),
            format!("{local} x@{domain}"),
            format!("{local}@{domain}@x"),
        );
        prop_assert!(validate_email(&valid).is_ok());
        prop_assert!(validate_email(&spaced).is_err());
        prop_assert!(validate_email(&two_ats).is_err());
        if validate_email(&junk).is_ok() {
            prop_assert_eq!(junk.matches('@').count(), 1);
            prop_assert!(!junk.chars().any(char::is_whitespace));
        }
    }

    // ---- audit query ----

    #[test]
    fn audit_limits_in_range_are_taken_and_others_refused(
        limit in any::<i64>(),
        offset in any::<i64>(),
        junk in text(),
    ) {
        let (limit_text, offset_text) = (limit.to_string(), offset.to_string());
        match AuditQuery::parse(None, Some(&limit_text), Some(&offset_text)) {
            Ok(query) => {
                prop_assert_eq!((query.limit, query.offset), (limit, offset));
                prop_assert!(limit >= 1 && offset >= 0);
            }
            Err(error) => prop_assert!(limit < 1 || offset < 0 || error.message().contains("limit")),
        }
        let _ = AuditQuery::parse(Some(&junk), Some(&junk), Some(&junk));
    }

    // ---- secrets at rest ----

    #[test]
    fn sealed_secrets_open_to_the_same_value_and_never_contain_it(value in any::<String>()) {
        let keyring = Keyring::from_hex(&"ab".repeat(32), &[]).unwrap();
        let sealed = keyring.seal(&value);
        prop_assert_eq!(keyring.open(&sealed).unwrap(), value.clone());
        if value.len() >= 8 {
            prop_assert!(!sealed.bytes.windows(value.len()).any(|w| w == value.as_bytes()));
        }
    }

    #[test]
    fn altered_sealed_secrets_are_refused(value in any::<String>(), at in any::<prop::sample::Index>(), flip in 1..=255u8) {
        let keyring = Keyring::from_hex(&"cd".repeat(32), &[]).unwrap();
        let mut sealed: Sealed = keyring.seal(&value);
        let index = at.index(sealed.bytes.len());
        sealed.bytes[index] ^= flip;
        prop_assert!(keyring.open(&sealed).is_err());
        sealed.bytes.truncate(index.min(11));
        prop_assert!(keyring.open(&sealed).is_err());
    }

    #[test]
    fn secret_keys_other_than_64_hex_characters_are_refused(key in text()) {
        let valid = key.trim().len() == 64 && key.trim().bytes().all(|b| b.is_ascii_hexdigit());
        prop_assert_eq!(Keyring::from_hex(&key, &[]).is_ok(), valid);
    }
}
