//! What a request may send to a deployment and what its code may answer:
//! the body of a direct request checked against the deployment's input, and
//! the code's return value checked against its output, before either goes on.
//!
//! The checks only look: data reaches the code (and the result the client)
//! exactly as it came, so an accepted value is never rewritten on the way.
//! Messages name the field (and, in a list, the item) and say what would be
//! accepted; they quote at most a short piece of the offending value, so a
//! message stays within a request's `error_message` limit.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::{Map, Value};

use crate::deployment::{DataType, Field, IoType};

/// The most characters of a failed request's `error_message`: the limit the
/// official clients' models enforce on it.
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// How many field names a message lists before it says how many more.
const LISTED_NAMES: usize = 20;
/// How many characters of a value or key a message quotes.
const QUOTED_CHARS: usize = 40;

/// Whether a direct request carries one input or a list of inputs (how many).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    One,
    Many(usize),
}

/// Why a request's input cannot go to the code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The data does not fit the input: a `400` with this message.
    #[error("{0}")]
    Invalid(String),
    /// The deployment has fields of type `file`, which this server cannot
    /// serve yet: a `400` with this message, whatever the data. The text
    /// names the fields (`input field 'a', output field 'b'`).
    #[error("file fields are not supported yet: {0}")]
    FileField(String),
}

impl InputError {
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// Refuses a deployment with `file` input or output fields before anything
/// runs: this server cannot take or give files yet. (Plain deployments have
/// no fields.)
pub fn check_supported(input_fields: &[Field], output_fields: &[Field]) -> Result<(), InputError> {
    let mut named: Vec<String> = file_fields(input_fields)
        .map(|name| format!("input field '{name}'"))
        .collect();
    named.extend(file_fields(output_fields).map(|name| format!("output field '{name}'")));
    if named.is_empty() {
        Ok(())
    } else {
        Err(InputError::FileField(named.join(", ")))
    }
}

/// Checks the body of a direct request against the deployment's input.
/// Ok tells whether it is one input or a list of them.
///
/// Plain input is a string, or a non-empty list of strings. Structured input
/// is an object whose keys are exactly the input fields, or a non-empty list
/// of such objects. A `file` input field refuses every request
/// ([`InputError::FileField`]); see also [`check_supported`].
pub fn check_input(io_type: IoType, fields: &[Field], data: &Value) -> Result<Shape, InputError> {
    check_supported(fields, &[])?;
    let one = one_value(Side::Input, io_type);
    match data {
        Value::Array(items) if items.is_empty() => Err(InputError::Invalid(format!(
            "the input is an empty list: send {one}, or a non-empty list of them"
        ))),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                check_one(Side::Input, io_type, fields, item, &one)
                    .map_err(|e| InputError::Invalid(format!("item {}: {e}", index + 1)))?;
            }
            Ok(Shape::Many(items.len()))
        }
        other => {
            let expected = match io_type {
                IoType::Plain => "a string, or a non-empty list of strings".to_owned(),
                IoType::Structured => format!("{one}, or a non-empty list of such objects"),
            };
            check_one(Side::Input, io_type, fields, other, &expected)
                .map(|()| Shape::One)
                .map_err(InputError::Invalid)
        }
    }
}

/// The most inputs one batch call takes (documented).
pub const MAX_BATCH_INPUTS: usize = 250;

/// The inputs of a batch request, each checked against the deployment's
/// input: a list of 1 to [`MAX_BATCH_INPUTS`] of them, or a single one (as
/// documented). Each becomes a request of its own; one bad input refuses
/// the whole batch, naming the item.
pub fn batch_inputs(
    io_type: IoType,
    fields: &[Field],
    data: Value,
) -> Result<Vec<Value>, InputError> {
    check_supported(fields, &[])?;
    let one = one_value(Side::Input, io_type);
    let inputs = match data {
        Value::Array(items) => items,
        single => vec![single],
    };
    if inputs.is_empty() || inputs.len() > MAX_BATCH_INPUTS {
        return Err(InputError::Invalid(format!(
            "a batch holds 1 to {MAX_BATCH_INPUTS} inputs, each {one}; this one holds {}",
            inputs.len()
        )));
    }
    for (index, item) in inputs.iter().enumerate() {
        check_one(Side::Input, io_type, fields, item, &one)
            .map_err(|e| InputError::Invalid(format!("item {}: {e}", index + 1)))?;
    }
    Ok(inputs)
}

/// Checks what the code returned against the deployment's output, for input
/// of the given shape. Err is the message naming the problem, which becomes
/// the failed request's `error_message`.
///
/// For one input the output is one value: a string (plain), or an object
/// whose keys are exactly the output fields (structured). For a list of
/// inputs it is a list of such values, one per input, or, as the UbiOps
/// deployment template documents for `requests`, a single value.
pub fn check_output(
    io_type: IoType,
    fields: &[Field],
    output: &Value,
    shape: Shape,
) -> Result<(), String> {
    if let Err(error) = check_supported(&[], fields) {
        return Err(error.message());
    }
    let one = one_value(Side::Output, io_type);
    match (shape, output) {
        (Shape::Many(inputs), Value::Array(items)) => {
            if items.len() != inputs {
                return Err(format!(
                    "the code returned a list of {} outputs for {inputs} inputs: return one \
                     output per input, in the same order, or a single output",
                    items.len()
                ));
            }
            for (index, item) in items.iter().enumerate() {
                check_one(Side::Output, io_type, fields, item, &one)
                    .map_err(|e| format!("output item {}: {e}", index + 1))?;
            }
            Ok(())
        }
        (Shape::Many(inputs), other) => {
            let expected = format!("{one}, or a list of {inputs} of them (one per input)");
            check_one(Side::Output, io_type, fields, other, &expected)
        }
        (Shape::One, other) => check_one(Side::Output, io_type, fields, other, &one),
    }
}

/// The names of the `file` fields among `fields`.
fn file_fields(fields: &[Field]) -> impl Iterator<Item = &str> {
    fields
        .iter()
        .filter(|field| field.data_type == DataType::File)
        .map(|field| field.name.as_str())
}

/// A failed request's `error_message` as stored and shown: NUL characters
/// (which PostgreSQL text cannot hold, and code output may contain) become
/// U+FFFD, and the text is cut to [`MAX_ERROR_MESSAGE`] characters, ending
/// in `…` when cut, so that no client refuses it.
pub fn error_message(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect();
    if clean.chars().count() <= MAX_ERROR_MESSAGE {
        return clean;
    }
    let mut cut: String = clean.chars().take(MAX_ERROR_MESSAGE - 1).collect();
    cut.push('…');
    cut
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Input,
    Output,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Input => "input",
            Side::Output => "output",
        }
    }
}

/// What one input or output is, for messages.
fn one_value(side: Side, io_type: IoType) -> String {
    match io_type {
        IoType::Plain => "a string".to_owned(),
        IoType::Structured => format!("an object with the {} fields as keys", side.name()),
    }
}

/// One input or output (never a list of them); `expected` says what would
/// have been accepted at this place.
fn check_one(
    side: Side,
    io_type: IoType,
    fields: &[Field],
    value: &Value,
    expected: &str,
) -> Result<(), String> {
    match (io_type, value) {
        (IoType::Plain, Value::String(_)) => Ok(()),
        (IoType::Structured, Value::Object(object)) => check_object(side, fields, object),
        (io_type, other) => Err(format!(
            "{} {} must be {expected}, not {}",
            io_type.as_str(),
            side.name(),
            describe(other)
        )),
    }
}

fn check_object(side: Side, fields: &[Field], object: &Map<String, Value>) -> Result<(), String> {
    let kind = side.name();
    // An unknown key first: a misspelt field is both unknown and missing,
    // and this message lists the names that would be right.
    if let Some(key) = object
        .keys()
        .find(|key| !fields.iter().any(|field| &field.name == *key))
    {
        let known = if fields.is_empty() {
            format!("the deployment has no {kind} fields")
        } else {
            let names: Vec<&str> = fields.iter().map(|field| field.name.as_str()).collect();
            format!("the {kind} fields are {}", name_list(&names))
        };
        return Err(format!("unknown {kind} field '{}'; {known}", shorten(key)));
    }
    for field in fields {
        match object.get(&field.name) {
            None => return Err(format!("{kind} field '{}' is missing", field.name)),
            Some(value) => check_value(field.data_type, value)
                .map_err(|problem| format!("{kind} field '{}' {problem}", field.name))?,
        }
    }
    Ok(())
}

/// Whether `value` fits `data_type`; Err completes "field 'x' ...".
/// `null` fits every type: the value is optional, as in hosted UbiOps.
fn check_value(data_type: DataType, value: &Value) -> Result<(), String> {
    if value.is_null() {
        return Ok(());
    }
    let element = match data_type {
        DataType::ArrayInt => DataType::Int,
        DataType::ArrayDouble => DataType::Double,
        DataType::ArrayString => DataType::String,
        scalar => {
            return if fits(scalar, value) {
                Ok(())
            } else {
                Err(format!(
                    "must be {}, not {}",
                    type_description(scalar),
                    describe(value)
                ))
            };
        }
    };
    let Value::Array(items) = value else {
        return Err(format!(
            "must be {}, not {}",
            type_description(data_type),
            describe(value)
        ));
    };
    match items.iter().position(|item| !fits(element, item)) {
        None => Ok(()),
        Some(index) => Err(format!(
            "must be {}, but item {} is {}",
            type_description(data_type),
            index + 1,
            describe(&items[index])
        )),
    }
}

/// Whether a non-null `value` is of a scalar type (an array's element too).
fn fits(data_type: DataType, value: &Value) -> bool {
    match data_type {
        DataType::Int => is_integer(value),
        DataType::Double => value.is_number(),
        DataType::String => value.is_string(),
        DataType::Bool => value.is_boolean(),
        DataType::Timestamp => value.as_str().is_some_and(is_timestamp),
        // Arrays are not elements of arrays; files never get this far.
        DataType::ArrayInt | DataType::ArrayDouble | DataType::ArrayString | DataType::File => {
            false
        }
    }
}

/// A JSON integer, or a number with no fraction such as `5.0` (what Python
/// sends for a whole float): the value is whole either way, and passes on
/// as it came.
fn is_integer(value: &Value) -> bool {
    let Value::Number(number) = value else {
        return false;
    };
    if number.is_i64() || number.is_u64() {
        return true;
    }
    number
        .as_f64()
        .is_some_and(|float| float.is_finite() && float.fract() == 0.0)
}

/// ISO 8601 as clients write it: a date and time with an offset (`Z`,
/// `+02:00`) or without one, `T` or a space between them, seconds with or
/// without a fraction; or only a date.
fn is_timestamp(text: &str) -> bool {
    DateTime::parse_from_rfc3339(text).is_ok()
        || NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").is_ok()
        || NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").is_ok()
        || NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
}

fn type_description(data_type: DataType) -> &'static str {
    match data_type {
        DataType::Int => "an integer (int)",
        DataType::Double => "a number (double)",
        DataType::String => "a string (string)",
        DataType::Bool => "true or false (bool)",
        DataType::Timestamp => "an ISO 8601 timestamp such as 2024-01-31T12:00:00Z (timestamp)",
        DataType::ArrayInt => "a list of integers (array_int)",
        DataType::ArrayDouble => "a list of numbers (array_double)",
        DataType::ArrayString => "a list of strings (array_string)",
        DataType::File => "a file (file)",
    }
}

/// A value as a message shows it: short scalars as JSON, others by kind.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        Value::String(text) => format!("the string \"{}\"", shorten(text)),
        scalar => shorten(&scalar.to_string()),
    }
}

/// At most [`QUOTED_CHARS`] characters of user text, ending in `…` if cut.
fn shorten(text: &str) -> String {
    if text.chars().count() <= QUOTED_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(QUOTED_CHARS - 1).collect();
    short.push('…');
    short
}

/// `a, b, c`, at most [`LISTED_NAMES`] of them and then how many more.
fn name_list(names: &[&str]) -> String {
    let mut listed = names
        .iter()
        .take(LISTED_NAMES)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > LISTED_NAMES {
        listed.push_str(&format!(" and {} more", names.len() - LISTED_NAMES));
    }
    listed
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(name: &str, data_type: DataType) -> Field {
        Field {
            name: name.to_owned(),
            data_type,
            widget: None,
        }
    }

    fn one_field(data_type: DataType) -> Vec<Field> {
        vec![field("x", data_type)]
    }

    fn input_error(fields: &[Field], data: Value) -> String {
        match check_input(IoType::Structured, fields, &data) {
            Err(InputError::Invalid(message)) => message,
            other => panic!("{data}: expected an invalid input, got {other:?}"),
        }
    }

    /// Whether `value` is accepted for a field of `data_type`, as input and
    /// as output alike.
    fn accepts(data_type: DataType, value: Value) -> bool {
        let fields = one_field(data_type);
        let data = json!({ "x": value });
        let input = check_input(IoType::Structured, &fields, &data);
        let output = check_output(IoType::Structured, &fields, &data, Shape::One);
        assert_eq!(input.is_ok(), output.is_ok(), "{data_type:?} {value}");
        input.is_ok()
    }

    #[test]
    fn a_batch_is_a_list_of_single_inputs_or_one_input() {
        let fields = one_field(DataType::Int);
        assert_eq!(
            batch_inputs(IoType::Plain, &[], json!(["a", "b"])).unwrap(),
            vec![json!("a"), json!("b")]
        );
        assert_eq!(
            batch_inputs(IoType::Plain, &[], json!("a")).unwrap(),
            vec![json!("a")]
        );
        assert_eq!(
            batch_inputs(IoType::Structured, &fields, json!({"x": 1})).unwrap(),
            vec![json!({"x": 1})]
        );
        let refused =
            |io_type, fields: &[Field], data: Value| match batch_inputs(io_type, fields, data) {
                Err(InputError::Invalid(message)) => message,
                other => panic!("expected a refusal, got {other:?}"),
            };
        let message = refused(IoType::Plain, &[], json!(["a", ["b"]]));
        assert!(message.starts_with("item 2: "), "{message}");
        let message = refused(IoType::Structured, &fields, json!([{"x": 1}, {"x": "one"}]));
        assert!(message.starts_with("item 2: "), "{message}");
        let message = refused(IoType::Plain, &[], json!([]));
        assert!(message.contains("1 to 250 inputs"), "{message}");
        assert!(message.ends_with("holds 0"), "{message}");
        let message = refused(IoType::Plain, &[], json!(vec!["a"; 251]));
        assert!(message.ends_with("holds 251"), "{message}");
        assert_eq!(
            batch_inputs(IoType::Plain, &[], json!(vec!["a"; 250]))
                .unwrap()
                .len(),
            250
        );
        assert!(matches!(
            batch_inputs(
                IoType::Structured,
                &one_field(DataType::File),
                json!({"x": "f"})
            ),
            Err(InputError::FileField(_))
        ));
    }

    #[test]
    fn plain_input_is_a_string_or_a_list_of_strings() {
        let plain = |data: Value| check_input(IoType::Plain, &[], &data);
        assert_eq!(plain(json!("anything")), Ok(Shape::One));
        assert_eq!(plain(json!("")), Ok(Shape::One));
        assert_eq!(plain(json!(["a", "b", "c"])), Ok(Shape::Many(3)));
        for (data, message) in [
            (
                json!(5),
                "plain input must be a string, or a non-empty list of strings, not 5",
            ),
            (
                json!({"a": 1}),
                "plain input must be a string, or a non-empty list of strings, not an object",
            ),
            (
                json!(null),
                "plain input must be a string, or a non-empty list of strings, not null",
            ),
            (
                json!([]),
                "the input is an empty list: send a string, or a non-empty list of them",
            ),
            (
                json!(["a", "b", 3]),
                "item 3: plain input must be a string, not 3",
            ),
            (
                json!(["a", ["b"]]),
                "item 2: plain input must be a string, not a list",
            ),
        ] {
            assert_eq!(
                plain(data.clone()),
                Err(InputError::Invalid(message.to_owned())),
                "{data}"
            );
        }
    }

    #[test]
    fn structured_input_has_exactly_the_input_fields() {
        let fields = vec![field("a", DataType::Int), field("b", DataType::String)];
        assert_eq!(
            check_input(IoType::Structured, &fields, &json!({"a": 1, "b": "x"})),
            Ok(Shape::One)
        );
        assert_eq!(
            check_input(
                IoType::Structured,
                &fields,
                &json!([{"a": 1, "b": "x"}, {"b": "y", "a": 2}])
            ),
            Ok(Shape::Many(2))
        );
        assert_eq!(
            input_error(&fields, json!({"a": 1})),
            "input field 'b' is missing"
        );
        assert_eq!(
            input_error(&fields, json!({"a": 1, "b": "x", "c": 3})),
            "unknown input field 'c'; the input fields are a, b"
        );
        // A misspelt field is reported as unknown, with the right names.
        assert_eq!(
            input_error(&fields, json!({"a": 1, "bb": "x"})),
            "unknown input field 'bb'; the input fields are a, b"
        );
        assert_eq!(
            input_error(
                &fields,
                json!([{"a": 1, "b": "x"}, {"a": 1, "b": "x"}, {"a": 1}])
            ),
            "item 3: input field 'b' is missing"
        );
        assert_eq!(
            input_error(&fields, json!("text")),
            "structured input must be an object with the input fields as keys, or a non-empty \
             list of such objects, not the string \"text\""
        );
        assert_eq!(
            input_error(&fields, json!([{"a": 1, "b": "x"}, "text"])),
            "item 2: structured input must be an object with the input fields as keys, not the \
             string \"text\""
        );
        assert_eq!(
            input_error(&fields, json!([])),
            "the input is an empty list: send an object with the input fields as keys, or a \
             non-empty list of them"
        );
    }

    #[test]
    fn structured_input_without_fields_is_an_empty_object() {
        assert_eq!(
            check_input(IoType::Structured, &[], &json!({})),
            Ok(Shape::One)
        );
        assert_eq!(
            input_error(&[], json!({"a": 1})),
            "unknown input field 'a'; the deployment has no input fields"
        );
    }

    #[test]
    fn long_field_lists_and_keys_are_shortened_in_messages() {
        let fields: Vec<Field> = (0..25)
            .map(|i| field(&format!("f{i}"), DataType::String))
            .collect();
        let message = input_error(&fields, json!({ "x".repeat(100): 1 }));
        assert!(
            message.starts_with(&format!("unknown input field '{}…'", "x".repeat(39))),
            "{message}"
        );
        assert!(message.ends_with("f18, f19 and 5 more"), "{message}");
        let long_value = "v".repeat(500);
        let message = input_error(&one_field(DataType::Int), json!({ "x": long_value }));
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn int_is_a_whole_number() {
        assert!(accepts(DataType::Int, json!(5)));
        assert!(accepts(DataType::Int, json!(-5)));
        assert!(accepts(DataType::Int, json!(u64::MAX)));
        assert!(accepts(DataType::Int, json!(5.0)));
        assert!(accepts(DataType::Int, json!(1e3)));
        assert!(!accepts(DataType::Int, json!(5.5)));
        assert!(!accepts(DataType::Int, json!("5")));
        assert!(!accepts(DataType::Int, json!(true)));
        assert!(!accepts(DataType::Int, json!([5])));
        assert_eq!(
            input_error(&one_field(DataType::Int), json!({"x": 5.5})),
            "input field 'x' must be an integer (int), not 5.5"
        );
        assert_eq!(
            input_error(&one_field(DataType::Int), json!({"x": "5"})),
            "input field 'x' must be an integer (int), not the string \"5\""
        );
    }

    #[test]
    fn double_is_any_number() {
        assert!(accepts(DataType::Double, json!(5)));
        assert!(accepts(DataType::Double, json!(2.5)));
        assert!(accepts(DataType::Double, json!(-1e-300)));
        assert!(!accepts(DataType::Double, json!("2.5")));
        assert!(!accepts(DataType::Double, json!(false)));
        assert_eq!(
            input_error(&one_field(DataType::Double), json!({"x": "2.5"})),
            "input field 'x' must be a number (double), not the string \"2.5\""
        );
    }

    #[test]
    fn string_is_a_json_string() {
        assert!(accepts(DataType::String, json!("")));
        assert!(accepts(DataType::String, json!("text")));
        assert!(!accepts(DataType::String, json!(5)));
        assert!(!accepts(DataType::String, json!({"a": "b"})));
        assert_eq!(
            input_error(&one_field(DataType::String), json!({"x": {"a": "b"}})),
            "input field 'x' must be a string (string), not an object"
        );
    }

    #[test]
    fn bool_is_true_or_false() {
        assert!(accepts(DataType::Bool, json!(true)));
        assert!(accepts(DataType::Bool, json!(false)));
        assert!(!accepts(DataType::Bool, json!("true")));
        assert!(!accepts(DataType::Bool, json!(1)));
        assert_eq!(
            input_error(&one_field(DataType::Bool), json!({"x": 1})),
            "input field 'x' must be true or false (bool), not 1"
        );
    }

    #[test]
    fn timestamp_is_an_iso_8601_string() {
        for text in [
            "2024-01-31T12:00:00Z",
            "2024-01-31T12:00:00.123456Z",
            "2024-01-31T12:00:00+02:00",
            "2024-01-31 12:00:00+00:00",
            "2024-01-31T12:00:00",
            "2024-01-31T12:00:00.5",
            "2024-01-31 12:00:00",
            "2024-01-31T12:00",
            "2024-01-31",
        ] {
            assert!(accepts(DataType::Timestamp, json!(text)), "{text}");
        }
        for value in [
            json!("yesterday"),
            json!("2024-13-01"),
            json!("2024-01-31T25:00:00Z"),
            json!("31-01-2024"),
            json!(1706702400),
        ] {
            assert!(!accepts(DataType::Timestamp, value.clone()), "{value}");
        }
        assert_eq!(
            input_error(&one_field(DataType::Timestamp), json!({"x": "yesterday"})),
            "input field 'x' must be an ISO 8601 timestamp such as 2024-01-31T12:00:00Z \
             (timestamp), not the string \"yesterday\""
        );
    }

    #[test]
    fn arrays_hold_elements_of_their_type() {
        assert!(accepts(DataType::ArrayInt, json!([])));
        assert!(accepts(DataType::ArrayInt, json!([1, 2, 3.0])));
        assert!(!accepts(DataType::ArrayInt, json!([1, 2.5])));
        assert!(!accepts(DataType::ArrayInt, json!(1)));
        assert!(accepts(DataType::ArrayDouble, json!([0.25, 2, 16.3])));
        assert!(!accepts(DataType::ArrayDouble, json!([0.25, "2"])));
        assert!(accepts(DataType::ArrayString, json!(["a", ""])));
        assert!(!accepts(DataType::ArrayString, json!(["a", 1])));
        // null is a whole field's value, not an element's.
        assert!(!accepts(DataType::ArrayString, json!(["a", null])));
        assert!(!accepts(DataType::ArrayInt, json!([[1]])));
        assert_eq!(
            input_error(&one_field(DataType::ArrayInt), json!({"x": [1, 2, "3"]})),
            "input field 'x' must be a list of integers (array_int), but item 3 is the string \
             \"3\""
        );
        assert_eq!(
            input_error(&one_field(DataType::ArrayDouble), json!({"x": 0.5})),
            "input field 'x' must be a list of numbers (array_double), not 0.5"
        );
        assert_eq!(
            input_error(&one_field(DataType::ArrayString), json!({"x": ["a", null]})),
            "input field 'x' must be a list of strings (array_string), but item 2 is null"
        );
    }

    #[test]
    fn null_is_accepted_for_every_type() {
        for data_type in [
            DataType::Int,
            DataType::Double,
            DataType::String,
            DataType::Bool,
            DataType::Timestamp,
            DataType::ArrayInt,
            DataType::ArrayDouble,
            DataType::ArrayString,
        ] {
            assert!(accepts(data_type, Value::Null), "{data_type:?}");
        }
    }

    #[test]
    fn file_fields_refuse_every_request() {
        let fields = vec![field("a", DataType::Int), field("img", DataType::File)];
        let refused = InputError::FileField("input field 'img'".to_owned());
        assert_eq!(
            check_input(IoType::Structured, &fields, &json!({"a": 1, "img": "x"})),
            Err(refused.clone())
        );
        // Whatever the data: the deployment cannot be served.
        assert_eq!(
            check_input(IoType::Structured, &fields, &json!(5)),
            Err(refused.clone())
        );
        assert_eq!(
            refused.message(),
            "file fields are not supported yet: input field 'img'"
        );
        assert_eq!(
            check_supported(&fields, &[field("out", DataType::File)]),
            Err(InputError::FileField(
                "input field 'img', output field 'out'".to_owned()
            ))
        );
        assert_eq!(
            check_supported(&[field("a", DataType::Int)], &[field("b", DataType::Bool)]),
            Ok(())
        );
        assert_eq!(
            check_output(
                IoType::Structured,
                &[field("out", DataType::File)],
                &json!({"out": "x"}),
                Shape::One
            ),
            Err("file fields are not supported yet: output field 'out'".to_owned())
        );
    }

    #[test]
    fn plain_output_is_a_string() {
        let plain = |output: Value, shape| check_output(IoType::Plain, &[], &output, shape);
        assert_eq!(plain(json!("done"), Shape::One), Ok(()));
        assert_eq!(
            plain(json!(5), Shape::One),
            Err("plain output must be a string, not 5".to_owned())
        );
        assert_eq!(
            plain(json!(["a"]), Shape::One),
            Err("plain output must be a string, not a list".to_owned())
        );
        assert_eq!(
            plain(json!(null), Shape::One),
            Err("plain output must be a string, not null".to_owned())
        );
    }

    #[test]
    fn output_for_many_inputs_is_a_list_of_the_same_length_or_one_value() {
        let plain = |output: Value| check_output(IoType::Plain, &[], &output, Shape::Many(2));
        assert_eq!(plain(json!(["a", "b"])), Ok(()));
        assert_eq!(plain(json!("for both")), Ok(()));
        assert_eq!(
            plain(json!(["a"])),
            Err(
                "the code returned a list of 1 outputs for 2 inputs: return one output per \
                 input, in the same order, or a single output"
                    .to_owned()
            )
        );
        assert_eq!(
            plain(json!(["a", 2])),
            Err("output item 2: plain output must be a string, not 2".to_owned())
        );
        assert_eq!(
            plain(json!(2)),
            Err(
                "plain output must be a string, or a list of 2 of them (one per input), not 2"
                    .to_owned()
            )
        );
        let fields = vec![field("y", DataType::Double)];
        let structured =
            |output: Value| check_output(IoType::Structured, &fields, &output, Shape::Many(2));
        assert_eq!(structured(json!([{"y": 1}, {"y": 2.5}])), Ok(()));
        assert_eq!(structured(json!({"y": 1})), Ok(()));
        assert_eq!(
            structured(json!([{"y": 1}, {}])),
            Err("output item 2: output field 'y' is missing".to_owned())
        );
        assert_eq!(
            structured(json!("y")),
            Err(
                "structured output must be an object with the output fields as keys, or a \
                 list of 2 of them (one per input), not the string \"y\""
                    .to_owned()
            )
        );
    }

    #[test]
    fn structured_output_has_exactly_the_output_fields() {
        let fields = vec![field("y", DataType::Int), field("z", DataType::ArrayString)];
        let check = |output: Value| check_output(IoType::Structured, &fields, &output, Shape::One);
        assert_eq!(check(json!({"y": 1, "z": ["a"]})), Ok(()));
        assert_eq!(check(json!({"y": null, "z": null})), Ok(()));
        assert_eq!(
            check(json!({"y": 1})),
            Err("output field 'z' is missing".to_owned())
        );
        assert_eq!(
            check(json!({"y": 1, "z": [], "w": 0})),
            Err("unknown output field 'w'; the output fields are y, z".to_owned())
        );
        assert_eq!(
            check(json!({"y": "1", "z": []})),
            Err("output field 'y' must be an integer (int), not the string \"1\"".to_owned())
        );
        assert_eq!(
            check(json!([{"y": 1, "z": []}])),
            Err(
                "structured output must be an object with the output fields as keys, not a list"
                    .to_owned()
            )
        );
        assert_eq!(
            check_output(IoType::Structured, &[], &json!({"a": 1}), Shape::One),
            Err("unknown output field 'a'; the deployment has no output fields".to_owned())
        );
    }

    #[test]
    fn error_messages_are_capped_and_without_nul() {
        assert_eq!(error_message("boom"), "boom");
        assert_eq!(error_message("a\0b"), "a\u{FFFD}b");
        let exact = "é".repeat(MAX_ERROR_MESSAGE);
        assert_eq!(error_message(&exact), exact);
        let long = error_message(&"é".repeat(MAX_ERROR_MESSAGE + 1));
        assert_eq!(long.chars().count(), MAX_ERROR_MESSAGE);
        assert!(long.ends_with("é…"));
    }
}
