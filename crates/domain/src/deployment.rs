//! Deployments: input/output types, fields with widgets, and the create and
//! update requests with every rule the documentation and API-NOTES give.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::labels::{validate_labels, Labels};
use crate::names::validate_resource_name;
use crate::{text, ValidationError};

pub const MAX_FIELDS: usize = 200;
pub const MAX_FIELD_NAME_LENGTH: usize = 64;
/// Widget configurations are small UI hints; anything bigger is a mistake.
pub const MAX_WIDGET_CONFIGURATION_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IoType {
    Structured,
    Plain,
}

impl IoType {
    pub fn as_str(self) -> &'static str {
        match self {
            IoType::Structured => "structured",
            IoType::Plain => "plain",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "structured" => Some(IoType::Structured),
            "plain" => Some(IoType::Plain),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    Int,
    String,
    Double,
    Bool,
    Timestamp,
    ArrayInt,
    ArrayDouble,
    ArrayString,
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

impl Direction {
    fn field_list(self) -> &'static str {
        match self {
            Direction::Input => "input_fields",
            Direction::Output => "output_fields",
        }
    }

    fn type_field(self) -> &'static str {
        match self {
            Direction::Input => "input_type",
            Direction::Output => "output_type",
        }
    }

    /// The documentation lists different widgets for each direction.
    pub fn widget_types(self) -> &'static [&'static str] {
        match self {
            Direction::Input => &[
                "textbox",
                "numberbox",
                "slider",
                "dropdown",
                "switch",
                "button",
                "drawer",
                "image_preview",
            ],
            Direction::Output => &["textbox", "button", "image_preview"],
        }
    }
}

/// A widget as stored and returned. `{}` and `null` both mean "no widget",
/// and a field without one is returned with `"widget": {}` as documented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Widget {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub configuration: Map<String, Value>,
}

/// One input or output field, as stored, validated and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Field {
    pub name: String,
    pub data_type: DataType,
    #[serde(
        default,
        serialize_with = "serialize_widget",
        deserialize_with = "deserialize_widget"
    )]
    /// The widget, or `{}` for none.
    #[schema(value_type = Object)]
    pub widget: Option<Widget>,
}

fn serialize_widget<S: Serializer>(widget: &Option<Widget>, s: S) -> Result<S::Ok, S::Error> {
    match widget {
        Some(widget) => widget.serialize(s),
        None => Map::new().serialize(s),
    }
}

fn deserialize_widget<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Widget>, D::Error> {
    let raw = Option::<WidgetInput>::deserialize(d)?;
    Ok(raw.and_then(|w| {
        w.kind.map(|kind| Widget {
            kind,
            configuration: w.configuration.unwrap_or_default(),
        })
    }))
}

/// A field as a client sends it; checked by [`validate_fields`].
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldInput {
    pub name: String,
    pub data_type: DataType,
    #[serde(default)]
    pub widget: Option<WidgetInput>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WidgetInput {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub configuration: Option<Map<String, Value>>,
}

/// Checks the fields of one direction against that direction's type:
/// plain takes no fields (absent or empty), structured needs the list.
pub fn validate_fields(
    direction: Direction,
    io_type: IoType,
    fields: Option<Vec<FieldInput>>,
) -> Result<Vec<Field>, ValidationError> {
    let list = direction.field_list();
    let fields = match (io_type, fields) {
        (IoType::Plain, None) => return Ok(Vec::new()),
        (IoType::Plain, Some(fields)) if fields.is_empty() => return Ok(Vec::new()),
        (IoType::Plain, Some(_)) => {
            return Err(ValidationError::new(format!(
                "`{list}` must be empty when `{}` is plain",
                direction.type_field()
            )))
        }
        (IoType::Structured, None) => {
            return Err(ValidationError::new(format!(
                "`{list}` is required when `{}` is structured",
                direction.type_field()
            )))
        }
        (IoType::Structured, Some(fields)) => fields,
    };
    if fields.len() > MAX_FIELDS {
        return Err(ValidationError::new(format!(
            "Too many {list}: at most {MAX_FIELDS} are allowed"
        )));
    }
    let mut validated: Vec<Field> = Vec::with_capacity(fields.len());
    for field in fields {
        validate_field_name(list, &field.name)?;
        if validated.iter().any(|f| f.name == field.name) {
            return Err(ValidationError::new(format!(
                "Field name '{}' appears more than once in `{list}`: field names must be unique",
                field.name
            )));
        }
        let widget = validate_widget(direction, &field.name, field.widget)?;
        validated.push(Field {
            name: field.name,
            data_type: field.data_type,
            widget,
        });
    }
    Ok(validated)
}

fn validate_field_name(list: &str, name: &str) -> Result<(), ValidationError> {
    let length = name.chars().count();
    if length == 0
        || length > MAX_FIELD_NAME_LENGTH
        || name.trim() != name
        || name.chars().any(char::is_control)
    {
        let shown: String = name.chars().take(80).collect();
        return Err(ValidationError::new(format!(
            "Invalid field name '{shown}' in `{list}`: use 1-{MAX_FIELD_NAME_LENGTH} characters \
             without control characters or surrounding spaces"
        )));
    }
    Ok(())
}

fn validate_widget(
    direction: Direction,
    field: &str,
    widget: Option<WidgetInput>,
) -> Result<Option<Widget>, ValidationError> {
    let Some(widget) = widget else {
        return Ok(None);
    };
    let configuration = widget.configuration.unwrap_or_default();
    let Some(kind) = widget.kind else {
        if configuration.is_empty() {
            return Ok(None);
        }
        return Err(ValidationError::new(format!(
            "The widget of field '{field}' has a configuration but no `type`"
        )));
    };
    let allowed = direction.widget_types();
    if !allowed.contains(&kind.as_str()) {
        let shown: String = kind.chars().take(80).collect();
        return Err(ValidationError::new(format!(
            "Widget type '{shown}' of field '{field}' is not available for {}: use one of {}",
            direction.field_list(),
            allowed.join(", ")
        )));
    }
    let configuration_value = Value::Object(configuration);
    if contains_nul(&configuration_value) {
        return Err(ValidationError::new(format!(
            "The widget configuration of field '{field}' must not contain NUL characters"
        )));
    }
    if configuration_value.to_string().len() > MAX_WIDGET_CONFIGURATION_BYTES {
        return Err(ValidationError::new(format!(
            "The widget configuration of field '{field}' is too large: at most {MAX_WIDGET_CONFIGURATION_BYTES} bytes"
        )));
    }
    let Value::Object(configuration) = configuration_value else {
        unreachable!("built from an object above")
    };
    Ok(Some(Widget {
        kind,
        configuration,
    }))
}

/// PostgreSQL's text and jsonb types cannot hold U+0000.
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// Body of `deployments_create`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentCreate {
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,62}[a-z0-9])?$")]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub input_type: IoType,
    pub output_type: IoType,
    #[serde(default)]
    pub input_fields: Option<Vec<FieldInput>>,
    #[serde(default)]
    pub output_fields: Option<Vec<FieldInput>>,
    #[serde(default)]
    pub labels: Option<Labels>,
    /// Sent by newer clients. Every deployment here takes requests in the
    /// request format, so only `true` (or nothing) is accepted.
    #[serde(default)]
    pub supports_request_format: Option<bool>,
}

/// A deployment that passed every rule and can be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    pub name: String,
    pub description: Option<String>,
    pub input_type: IoType,
    pub output_type: IoType,
    pub input_fields: Vec<Field>,
    pub output_fields: Vec<Field>,
    pub labels: Labels,
}

impl DeploymentCreate {
    pub fn validate(self) -> Result<NewDeployment, ValidationError> {
        validate_resource_name("deployment", &self.name)?;
        if self.supports_request_format == Some(false) {
            return Err(ValidationError::new(
                "supports_request_format must be true: this server only runs deployments with the request format",
            ));
        }
        let labels = self.labels.unwrap_or_default();
        validate_labels(&labels)?;
        Ok(NewDeployment {
            description: text::description(self.description)?,
            input_fields: validate_fields(Direction::Input, self.input_type, self.input_fields)?,
            output_fields: validate_fields(
                Direction::Output,
                self.output_type,
                self.output_fields,
            )?,
            name: self.name,
            input_type: self.input_type,
            output_type: self.output_type,
            labels,
        })
    }
}

/// Body of `deployments_update`: every field optional. `description` and
/// `labels` may be sent as `null` to clear them.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentUpdate {
    #[serde(default)]
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,62}[a-z0-9])?$")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: Option<Option<Labels>>,
    #[serde(default)]
    #[schema(pattern = "^[a-z]([a-z0-9-]{0,62}[a-z0-9])?$")]
    pub default_version: Option<String>,
    #[serde(default)]
    pub input_fields: Option<Vec<FieldInput>>,
    #[serde(default)]
    pub output_fields: Option<Vec<FieldInput>>,
}

/// The validated changes of an update; `None` leaves a value as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploymentChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub labels: Option<Labels>,
    pub default_version: Option<String>,
    pub input_fields: Option<Vec<Field>>,
    pub output_fields: Option<Vec<Field>>,
}

impl DeploymentUpdate {
    /// Fields are checked against the deployment's (immutable) input and
    /// output types, so the caller passes those in.
    pub fn validate(
        self,
        input_type: IoType,
        output_type: IoType,
    ) -> Result<DeploymentChanges, ValidationError> {
        if let Some(name) = &self.name {
            validate_resource_name("deployment", name)?;
        }
        if let Some(version) = &self.default_version {
            validate_resource_name("version", version)?;
        }
        let labels = self.labels.map(Option::unwrap_or_default);
        if let Some(labels) = &labels {
            validate_labels(labels)?;
        }
        let description = self.description.map(text::description).transpose()?;
        let input_fields = self
            .input_fields
            .map(|fields| validate_fields(Direction::Input, input_type, Some(fields)))
            .transpose()?;
        let output_fields = self
            .output_fields
            .map(|fields| validate_fields(Direction::Output, output_type, Some(fields)))
            .transpose()?;
        Ok(DeploymentChanges {
            name: self.name,
            description,
            labels,
            default_version: self.default_version,
            input_fields,
            output_fields,
        })
    }
}

/// Distinguishes "absent" (outer `None`, via `#[serde(default)]`) from an
/// explicit `null` (`Some(None)`) in PATCH bodies.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(body: Value) -> Result<NewDeployment, String> {
        let request: DeploymentCreate = serde_json::from_value(body).map_err(|e| e.to_string())?;
        request.validate().map_err(|e| e.message().to_owned())
    }

    fn update(body: Value, input: IoType, output: IoType) -> Result<DeploymentChanges, String> {
        let request: DeploymentUpdate = serde_json::from_value(body).map_err(|e| e.to_string())?;
        request
            .validate(input, output)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn newer_clients_may_say_they_support_the_request_format() {
        let plain = json!({"name": "d", "input_type": "plain", "output_type": "plain"});
        for (supports, ok) in [
            (json!(true), true),
            (json!(null), true),
            (json!(false), false),
        ] {
            let mut body = plain.clone();
            body["supports_request_format"] = supports.clone();
            assert_eq!(create(body).is_ok(), ok, "{supports}");
        }
    }

    #[test]
    fn documented_examples_are_accepted() {
        let structured = create(json!({
            "name": "deployment-1", "input_type": "structured", "output_type": "structured",
            "input_fields": [{"name": "input-field-1", "data_type": "int"},
                             {"name": "input-field-2", "data_type": "double"}],
            "output_fields": [{"name": "output-field", "data_type": "double"}]
        }))
        .unwrap();
        assert_eq!(structured.input_fields.len(), 2);
        assert_eq!(structured.description, None);

        let plain = create(json!({
            "name": "deployment-1", "input_type": "plain", "output_type": "plain",
            "labels": {"type": "deployment"}
        }))
        .unwrap();
        assert!(plain.input_fields.is_empty() && plain.output_fields.is_empty());
        assert_eq!(plain.labels["type"], "deployment");

        let widgets = create(json!({
            "name": "deployment-1", "input_type": "structured", "output_type": "structured",
            "input_fields": [{"name": "a", "data_type": "int",
                "widget": {"type": "slider", "configuration": {"min": 0, "max": 10}}}],
            "output_fields": [{"name": "b", "data_type": "double",
                "widget": {"type": "textbox", "configuration": {}}}]
        }))
        .unwrap();
        assert_eq!(
            widgets.input_fields[0].widget.as_ref().unwrap().kind,
            "slider"
        );
    }

    #[test]
    fn every_documented_data_type_is_accepted() {
        for data_type in [
            "int",
            "string",
            "double",
            "bool",
            "timestamp",
            "array_int",
            "array_double",
            "array_string",
            "file",
        ] {
            let result = create(json!({
                "name": "d", "input_type": "structured", "output_type": "plain",
                "input_fields": [{"name": "f", "data_type": data_type}]
            }));
            assert!(result.is_ok(), "{data_type}: {result:?}");
        }
    }

    #[test]
    fn unknown_data_type_and_io_type_are_refused() {
        assert!(create(
            json!({"name": "d", "input_type": "structured", "output_type": "plain",
            "input_fields": [{"name": "f", "data_type": "integer"}]})
        )
        .is_err());
        assert!(
            create(json!({"name": "d", "input_type": "json", "output_type": "plain"})).is_err()
        );
    }

    #[test]
    fn plain_takes_no_fields_and_structured_needs_them() {
        let err = create(
            json!({"name": "d", "input_type": "plain", "output_type": "plain",
            "input_fields": [{"name": "f", "data_type": "int"}]}),
        )
        .unwrap_err();
        assert!(
            err.contains("`input_fields` must be empty when `input_type` is plain"),
            "{err}"
        );
        assert!(create(
            json!({"name": "d", "input_type": "plain", "output_type": "plain",
            "input_fields": [], "output_fields": []})
        )
        .is_ok());
        let err = create(json!({"name": "d", "input_type": "plain", "output_type": "structured"}))
            .unwrap_err();
        assert!(err.contains("`output_fields` is required"), "{err}");
    }

    #[test]
    fn widgets_are_checked_per_direction() {
        let input_only = create(
            json!({"name": "d", "input_type": "plain", "output_type": "structured",
            "output_fields": [{"name": "f", "data_type": "int", "widget": {"type": "slider"}}]}),
        )
        .unwrap_err();
        assert!(
            input_only.contains("not available for output_fields"),
            "{input_only}"
        );
        for widget in Direction::Output.widget_types() {
            assert!(create(
                json!({"name": "d", "input_type": "plain", "output_type": "structured",
                "output_fields": [{"name": "f", "data_type": "file", "widget": {"type": widget}}]})
            )
            .is_ok());
        }
        for widget in Direction::Input.widget_types() {
            assert!(create(
                json!({"name": "d", "input_type": "structured", "output_type": "plain",
                "input_fields": [{"name": "f", "data_type": "file", "widget": {"type": widget}}]})
            )
            .is_ok());
        }
        // {} and null both mean "no widget".
        let none = create(
            json!({"name": "d", "input_type": "structured", "output_type": "plain",
            "input_fields": [{"name": "f", "data_type": "int", "widget": {}},
                             {"name": "g", "data_type": "int", "widget": null}]}),
        )
        .unwrap();
        assert!(none.input_fields.iter().all(|f| f.widget.is_none()));
        assert!(create(json!({"name": "d", "input_type": "structured", "output_type": "plain",
            "input_fields": [{"name": "f", "data_type": "int", "widget": {"configuration": {"a": 1}}}]}))
        .is_err());
        assert!(create(
            json!({"name": "d", "input_type": "structured", "output_type": "plain",
            "input_fields": [{"name": "f", "data_type": "int", "widget": {"type": "slider",
                "configuration": {"a": "nul\u{0000}"}}}]})
        )
        .is_err());
    }

    #[test]
    fn field_names_are_checked_and_unique() {
        for bad in ["", " a", "a ", "a\tb", &"x".repeat(65)] {
            assert!(
                create(
                    json!({"name": "d", "input_type": "structured", "output_type": "plain",
                "input_fields": [{"name": bad, "data_type": "int"}]})
                )
                .is_err(),
                "{bad:?}"
            );
        }
        let err = create(json!({"name": "d", "input_type": "structured", "output_type": "plain",
            "input_fields": [{"name": "a", "data_type": "int"}, {"name": "a", "data_type": "bool"}]}))
        .unwrap_err();
        assert!(err.contains("more than once"), "{err}");
    }

    #[test]
    fn missing_required_and_unknown_fields_are_refused() {
        assert!(create(json!({"name": "d", "input_type": "plain"})).is_err());
        assert!(create(json!({"input_type": "plain", "output_type": "plain"})).is_err());
        let err = create(
            json!({"name": "d", "input_type": "plain", "output_type": "plain", "colour": 1}),
        )
        .unwrap_err();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn field_widget_round_trips_with_empty_object_for_none() {
        let field = Field {
            name: "a".into(),
            data_type: DataType::Int,
            widget: None,
        };
        let value = serde_json::to_value(&field).unwrap();
        assert_eq!(
            value,
            json!({"name": "a", "data_type": "int", "widget": {}})
        );
        assert_eq!(serde_json::from_value::<Field>(value).unwrap(), field);
    }

    #[test]
    fn update_distinguishes_absent_from_null() {
        let changes = update(
            json!({"description": null, "labels": null}),
            IoType::Plain,
            IoType::Plain,
        )
        .unwrap();
        assert_eq!(changes.description, Some(None));
        assert_eq!(changes.labels, Some(Labels::new()));
        let changes = update(json!({}), IoType::Plain, IoType::Plain).unwrap();
        assert_eq!(changes, DeploymentChanges::default());
    }

    #[test]
    fn update_checks_fields_against_current_types() {
        assert!(update(
            json!({"input_fields": [{"name": "a", "data_type": "int"}]}),
            IoType::Plain,
            IoType::Plain
        )
        .is_err());
        let changes = update(
            json!({"input_fields": [{"name": "a", "data_type": "int"}]}),
            IoType::Structured,
            IoType::Plain,
        )
        .unwrap();
        assert_eq!(changes.input_fields.unwrap().len(), 1);
        assert!(update(json!({"name": "Bad"}), IoType::Plain, IoType::Plain).is_err());
        assert!(update(json!({"default_version": ""}), IoType::Plain, IoType::Plain).is_err());
        assert!(update(
            json!({"description": "x".repeat(401)}),
            IoType::Plain,
            IoType::Plain
        )
        .is_err());
        assert!(update(
            json!({"labels": {"a,b": "c"}}),
            IoType::Plain,
            IoType::Plain
        )
        .is_err());
    }
}
