//! Log lines: what a stored line is (a level, a capped text, its tags) and
//! the two ways clients ask for lines, both turned into one [`LogQuery`]:
//! - 3.13 `projects_log_list`: a JSON body with `filters`, `date` or `id` as a
//!   starting point, `date_range` and `limit`;
//! - newer clients' `logs_list`: `query` (a subset of Grafana LogQL), `start`,
//!   `end` and `limit` in the query string.
//!
//! A line's time is kept in nanoseconds since the epoch (`ns`), unique per
//! line; its 3.13 `id` is that number in hexadecimal.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ValidationError;

/// Longer lines are cut to this many characters (the last one an ellipsis).
pub const MAX_LINE_CHARS: usize = 8192;

pub const V3_DEFAULT_DATE_RANGE: i64 = -21_600;
pub const V3_MAX_DATE_RANGE: i64 = 86_400;
pub const V3_DEFAULT_LIMIT: i64 = 50;
pub const V3_MAX_LIMIT: i64 = 500;
pub const V4_DEFAULT_LIMIT: i64 = 1000;
pub const V4_MAX_LIMIT: i64 = 5000;
/// Without `end`, newer clients' logs reach back this far from `start`'s
/// default (the CLI documents `end` as "yesterday").
pub const V4_DEFAULT_LOOKBACK_NS: i64 = 86_400 * NS_PER_SECOND;

const NS_PER_SECOND: i64 = 1_000_000_000;
/// Integers below this in `start`/`end` are seconds, others nanoseconds:
/// seconds stay below it until the year 5138, nanoseconds passed it in 1970.
const SECONDS_BELOW: i64 = 100_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Error => "error",
        }
    }
}

/// A line's text as stored: without its trailing newline, NUL characters
/// (which PostgreSQL cannot store) replaced, at most [`MAX_LINE_CHARS`].
pub fn line_text(raw: &str) -> String {
    let trimmed = raw.trim_end_matches(['\n', '\r']);
    let replace_nul = |c: char| if c == '\0' { '\u{FFFD}' } else { c };
    if trimmed.chars().count() <= MAX_LINE_CHARS {
        return trimmed.chars().map(replace_nul).collect();
    }
    let mut text: String = trimmed
        .chars()
        .take(MAX_LINE_CHARS - 1)
        .map(replace_nul)
        .collect();
    text.push('…');
    text
}

/// The 3.13 `id` of the line written at `ns`: 24 hexadecimal characters, the
/// length the 3.13 client requires of an `id` it sends back.
pub fn line_id(ns: i64) -> String {
    format!("{ns:024x}")
}

/// A line's time as a date (for `date` and `timestamp_str`).
pub fn line_date(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

/// What a query asks of one tag: equal to a value (if any), and different
/// from each of `not_equals`. A line without the tag passes `not_equals`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatch<T> {
    pub equals: Option<T>,
    pub not_equals: Vec<T>,
}

impl<T> Default for LabelMatch<T> {
    fn default() -> Self {
        LabelMatch {
            equals: None,
            not_equals: Vec::new(),
        }
    }
}

impl<T: PartialEq> LabelMatch<T> {
    /// False when `value` contradicts an equality asked for before.
    fn require(&mut self, value: T) -> bool {
        match &self.equals {
            Some(existing) if *existing != value => false,
            _ => {
                self.equals = Some(value);
                true
            }
        }
    }

    fn exclude(&mut self, value: T) {
        if !self.not_equals.contains(&value) {
            self.not_equals.push(value);
        }
    }
}

/// What lines must be like, on their tags and text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogFilter {
    pub deployment_name: LabelMatch<String>,
    pub deployment_version: LabelMatch<String>,
    pub revision_id: LabelMatch<Uuid>,
    pub build_id: LabelMatch<Uuid>,
    pub deployment_request_id: LabelMatch<Uuid>,
    pub system: LabelMatch<bool>,
    pub level: LabelMatch<String>,
    /// Texts every line must contain (`|= "text"`).
    pub contains: Vec<String>,
    /// Texts no line may contain (`!= "text"`).
    pub excludes: Vec<String>,
    /// The filter asks for something no line here has: a pipeline, an
    /// environment build, an id that is not a UUID, or two different values
    /// of one tag.
    pub matches_nothing: bool,
}

/// Which lines of the window an answer keeps when there are more than the
/// limit: the oldest (reading forward from the start) or the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Oldest,
    Newest,
}

/// A range of time, both ends inclusive, in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogWindow {
    pub from_ns: i64,
    pub to_ns: i64,
    pub keep: Keep,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub filter: LogFilter,
    pub window: LogWindow,
}

impl LogQuery {
    /// Whether the answer is empty without looking.
    pub fn matches_nothing(&self) -> bool {
        self.filter.matches_nothing || self.window.from_ns > self.window.to_ns
    }
}

/// The tags a filter may name, with the names of both clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    DeploymentName,
    DeploymentVersion,
    RevisionId,
    BuildId,
    DeploymentRequestId,
    System,
    Level,
    /// A tag of something this server does not run (pipelines, environment
    /// builds, instances, webhooks): no line has it.
    NeverSet,
}

/// Labels of newer clients' queries, as their `LogMetadata` and the CLI name
/// them, plus `build_id` (3.13's name for the build tag).
const QUERY_LABELS: &[(&str, Label)] = &[
    ("deployment_name", Label::DeploymentName),
    ("deployment_version", Label::DeploymentVersion),
    ("deployment_version_name", Label::DeploymentVersion),
    ("deployment_version_revision_id", Label::RevisionId),
    ("build_id", Label::BuildId),
    ("deployment_request_id", Label::DeploymentRequestId),
    ("system", Label::System),
    ("level", Label::Level),
    ("instance_id", Label::NeverSet),
    ("process_id", Label::NeverSet),
    ("environment_name", Label::NeverSet),
    ("environment_tag", Label::NeverSet),
    ("environment_build_id", Label::NeverSet),
    ("pipeline_name", Label::NeverSet),
    ("pipeline_version", Label::NeverSet),
    ("pipeline_version_name", Label::NeverSet),
    ("pipeline_object_name", Label::NeverSet),
    ("pipeline_request_id", Label::NeverSet),
    ("webhook_name", Label::NeverSet),
];

/// The keys of 3.13's `filters`, as documented.
const V3_FILTERS: &[(&str, Label)] = &[
    ("deployment_name", Label::DeploymentName),
    ("deployment_version", Label::DeploymentVersion),
    ("build_id", Label::BuildId),
    ("deployment_request_id", Label::DeploymentRequestId),
    ("system", Label::System),
    ("level", Label::Level),
    ("pipeline_name", Label::NeverSet),
    ("pipeline_version", Label::NeverSet),
    ("pipeline_object_name", Label::NeverSet),
    ("pipeline_request_id", Label::NeverSet),
];

fn names(labels: &[(&str, Label)]) -> String {
    labels
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn shorten(raw: &str) -> String {
    let mut short: String = raw.chars().take(60).collect();
    if raw.chars().count() > 60 {
        short.push('…');
    }
    short
}

impl LogFilter {
    /// Adds `label = value` (or `label != value` when `negated`).
    /// `name` is how the client spelled the label, for messages.
    fn apply(
        &mut self,
        name: &str,
        label: Label,
        negated: bool,
        value: &str,
    ) -> Result<(), ValidationError> {
        fn text(matcher: &mut LabelMatch<String>, negated: bool, value: &str, nothing: &mut bool) {
            if negated {
                matcher.exclude(value.to_owned());
            } else if !matcher.require(value.to_owned()) {
                *nothing = true;
            }
        }
        fn id(matcher: &mut LabelMatch<Uuid>, negated: bool, value: &str, nothing: &mut bool) {
            // Something that is not a UUID names no line: `=` matches
            // nothing and `!=` excludes nothing, as for any unknown id.
            match (Uuid::parse_str(value), negated) {
                (Ok(value), true) => matcher.exclude(value),
                (Ok(value), false) => {
                    if !matcher.require(value) {
                        *nothing = true;
                    }
                }
                (Err(_), true) => {}
                (Err(_), false) => *nothing = true,
            }
        }
        let nothing = &mut self.matches_nothing;
        match label {
            Label::DeploymentName => text(&mut self.deployment_name, negated, value, nothing),
            Label::DeploymentVersion => text(&mut self.deployment_version, negated, value, nothing),
            Label::Level => text(&mut self.level, negated, value, nothing),
            Label::RevisionId => id(&mut self.revision_id, negated, value, nothing),
            Label::BuildId => id(&mut self.build_id, negated, value, nothing),
            Label::DeploymentRequestId => {
                id(&mut self.deployment_request_id, negated, value, nothing)
            }
            Label::System => {
                let flag = if value.eq_ignore_ascii_case("true") {
                    true
                } else if value.eq_ignore_ascii_case("false") {
                    false
                } else {
                    return Err(ValidationError::new(format!(
                        "`{name}` is true or false, not '{}'",
                        shorten(value)
                    )));
                };
                if negated {
                    self.system.exclude(flag);
                } else if !self.system.require(flag) {
                    *nothing = true;
                }
            }
            Label::NeverSet => {
                if !negated {
                    *nothing = true;
                }
            }
        }
        Ok(())
    }
}

/// A point in time from a client: ISO 8601 (with an offset, or UTC without
/// one), or a Unix time as a number: seconds (possibly with a fraction) or,
/// for integers of 11 digits or more, nanoseconds.
pub fn parse_instant(name: &str, raw: &str) -> Result<i64, ValidationError> {
    let raw = raw.trim();
    let invalid = || {
        ValidationError::new(format!(
            "Invalid `{name}` '{}': use an ISO 8601 date (2024-01-31T12:00:00.000000Z) or a Unix \
             time in seconds or nanoseconds",
            shorten(raw)
        ))
    };
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        let number: i64 = raw.parse().map_err(|_| invalid())?;
        return if number < SECONDS_BELOW {
            Ok(number * NS_PER_SECOND)
        } else {
            Ok(number)
        };
    }
    if let Some((whole, fraction)) = raw.split_once('.') {
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if digits(whole) && digits(fraction) {
            let seconds: i64 = whole.parse().map_err(|_| invalid())?;
            if seconds >= SECONDS_BELOW || fraction.len() > 9 {
                return Err(invalid());
            }
            let nanos: i64 = format!("{fraction:0<9}").parse().map_err(|_| invalid())?;
            return Ok(seconds * NS_PER_SECOND + nanos);
        }
    }
    let date = DateTime::parse_from_rfc3339(raw)
        .map(|date| date.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f").map(|naive| naive.and_utc())
        })
        .or_else(|_| {
            NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S%.f").map(|naive| naive.and_utc())
        })
        .map_err(|_| invalid())?;
    date.timestamp_nanos_opt().ok_or_else(invalid)
}

fn bounded(name: &str, value: i64, min: i64, max: i64) -> Result<i64, ValidationError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ValidationError::new(format!(
            "Invalid `{name}` {value}: use a whole number from {min} to {max}"
        )))
    }
}

/// The body of 3.13's `projects_log_list`, as received.
#[derive(Debug, Clone, Default)]
pub struct V3Request<'a> {
    pub filters: Option<&'a Map<String, Value>>,
    pub date: Option<&'a str>,
    pub id: Option<&'a str>,
    pub date_range: Option<i64>,
    pub limit: Option<i64>,
}

impl LogQuery {
    /// 3.13 `projects_log_list`: the window reaches `date_range` seconds from
    /// the starting point (`date`, the line `id`, or now), towards the past
    /// when negative; both ends inclusive.
    pub fn from_v3(request: &V3Request<'_>, now_ns: i64) -> Result<LogQuery, ValidationError> {
        let filter = match request.filters {
            Some(filters) => v3_filter(filters)?,
            None => LogFilter::default(),
        };
        let start = match (request.date, request.id) {
            (Some(_), Some(_)) => {
                return Err(ValidationError::new(
                    "Give either `date` or `id` as the starting point, not both",
                ))
            }
            (Some(date), None) => parse_instant("date", date)?,
            (None, Some(id)) => parse_line_id(id)?,
            (None, None) => now_ns,
        };
        let range = bounded(
            "date_range",
            request.date_range.unwrap_or(V3_DEFAULT_DATE_RANGE),
            -V3_MAX_DATE_RANGE,
            V3_MAX_DATE_RANGE,
        )?;
        let limit = bounded(
            "limit",
            request.limit.unwrap_or(V3_DEFAULT_LIMIT),
            1,
            V3_MAX_LIMIT,
        )?;
        let reach = start.saturating_add(range * NS_PER_SECOND);
        let window = if range > 0 {
            LogWindow {
                from_ns: start,
                to_ns: reach,
                keep: Keep::Oldest,
                limit,
            }
        } else {
            LogWindow {
                from_ns: reach,
                to_ns: start,
                keep: Keep::Newest,
                limit,
            }
        };
        Ok(LogQuery { filter, window })
    }

    /// Newer clients' `logs_list`: from `start` (inclusive) towards `end`
    /// (exclusive), forward in time when `start` is before `end`, backward
    /// otherwise. `start` defaults to now, `end` to a day before `start`.
    pub fn from_v4(
        query: Option<&str>,
        start: Option<&str>,
        end: Option<&str>,
        limit: Option<&str>,
        now_ns: i64,
    ) -> Result<LogQuery, ValidationError> {
        let filter = parse_logql(query.unwrap_or(""))?;
        let start = match present(start) {
            Some(raw) => parse_instant("start", raw)?,
            None => now_ns,
        };
        let end = match present(end) {
            Some(raw) => parse_instant("end", raw)?,
            None => start.saturating_sub(V4_DEFAULT_LOOKBACK_NS),
        };
        let limit = match present(limit) {
            None => V4_DEFAULT_LIMIT,
            Some(raw) => {
                let value = raw.trim().parse::<i64>().map_err(|_| {
                    ValidationError::new(format!(
                        "Invalid `limit` '{}': use a whole number from 1 to {V4_MAX_LIMIT}",
                        shorten(raw)
                    ))
                })?;
                bounded("limit", value, 1, V4_MAX_LIMIT)?
            }
        };
        let window = if start <= end {
            LogWindow {
                from_ns: start,
                to_ns: end.saturating_sub(1),
                keep: Keep::Oldest,
                limit,
            }
        } else {
            LogWindow {
                from_ns: end.saturating_add(1),
                to_ns: start,
                keep: Keep::Newest,
                limit,
            }
        };
        Ok(LogQuery { filter, window })
    }
}

/// A 3.13 line `id` back to the line's time.
fn parse_line_id(raw: &str) -> Result<i64, ValidationError> {
    let invalid = || {
        ValidationError::new(format!(
            "Invalid `id` '{}': use the `id` of a log line (24 hexadecimal characters)",
            shorten(raw)
        ))
    };
    if raw.len() != 24 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let value = u128::from_str_radix(raw, 16).map_err(|_| invalid())?;
    i64::try_from(value).map_err(|_| invalid())
}

fn v3_filter(filters: &Map<String, Value>) -> Result<LogFilter, ValidationError> {
    let mut filter = LogFilter::default();
    for (key, value) in filters {
        let Some(&(name, label)) = V3_FILTERS.iter().find(|(name, _)| name == key) else {
            return Err(ValidationError::new(format!(
                "Unknown filter `{}` in `filters`: use {}",
                shorten(key),
                names(V3_FILTERS)
            )));
        };
        let value = match (value, label) {
            (Value::Null, _) => continue,
            (Value::String(text), _) => text.clone(),
            (Value::Bool(flag), Label::System) => flag.to_string(),
            (_, Label::System) => {
                return Err(ValidationError::new(
                    "`filters.system` is true or false".to_owned(),
                ))
            }
            _ => {
                return Err(ValidationError::new(format!(
                    "`filters.{name}` must be a string"
                )))
            }
        };
        if label == Label::Level && !matches!(value.as_str(), "info" | "error") {
            return Err(ValidationError::new(format!(
                "Invalid `filters.level` '{}': use info or error",
                shorten(&value)
            )));
        }
        filter.apply(&format!("filters.{name}"), label, false, &value)?;
    }
    let given = |key: &str| filters.get(key).is_some_and(|value| !value.is_null());
    for (needs, what, requires) in [
        (
            "deployment_version",
            "a deployment version",
            &["deployment_name"][..],
        ),
        ("pipeline_version", "a pipeline version", &["pipeline_name"]),
        (
            "pipeline_object_name",
            "a pipeline object",
            &["pipeline_name", "pipeline_version"],
        ),
    ] {
        if given(needs) {
            if let Some(missing) = requires.iter().find(|key| !given(key)) {
                return Err(ValidationError::new(format!(
                    "`filters.{needs}` needs `filters.{missing}` too: {what} is only meaningful \
                     within its {}",
                    if *missing == "deployment_name" {
                        "deployment"
                    } else if *missing == "pipeline_name" {
                        "pipeline"
                    } else {
                        "pipeline version"
                    }
                )));
            }
        }
    }
    Ok(filter)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    LeftBrace,
    RightBrace,
    Comma,
    /// `|` before a label filter (or a parser stage, which is not supported).
    Pipe,
    /// `|=`
    LineContains,
    /// `|~`
    LineRegex,
    Equals,
    /// `!=`: a label inequality, or a line filter at the start of a stage.
    NotEquals,
    RegexEquals,
    NotRegex,
    Compare(&'static str),
    Parenthesis,
    /// A quoted string, unescaped.
    Text(String),
    /// A bare word: a label name, `and`, `or`, or an unquoted value.
    Word(String),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::LeftBrace => "`{`".into(),
            Token::RightBrace => "`}`".into(),
            Token::Comma => "`,`".into(),
            Token::Pipe => "`|`".into(),
            Token::LineContains => "`|=`".into(),
            Token::LineRegex => "`|~`".into(),
            Token::Equals => "`=`".into(),
            Token::NotEquals => "`!=`".into(),
            Token::RegexEquals => "`=~`".into(),
            Token::NotRegex => "`!~`".into(),
            Token::Compare(op) => format!("`{op}`"),
            Token::Parenthesis => "a parenthesis".into(),
            Token::Text(text) => format!("\"{}\"", shorten(text)),
            Token::Word(word) => format!("`{}`", shorten(word)),
        }
    }
}

fn query_error(message: impl std::fmt::Display) -> ValidationError {
    ValidationError::new(format!("Invalid `query`: {message}"))
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/')
}

fn tokenize(query: &str) -> Result<Vec<Token>, ValidationError> {
    let mut tokens = Vec::new();
    let mut chars = query.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let mut next_is = |expected: char| {
            if chars.peek().is_some_and(|&(_, next)| next == expected) {
                chars.next();
                true
            } else {
                false
            }
        };
        let token = match c {
            c if c.is_whitespace() => continue,
            '{' => Token::LeftBrace,
            '}' => Token::RightBrace,
            ',' => Token::Comma,
            '(' | ')' => Token::Parenthesis,
            '|' if next_is('=') => Token::LineContains,
            '|' if next_is('~') => Token::LineRegex,
            '|' => Token::Pipe,
            '!' if next_is('=') => Token::NotEquals,
            '!' if next_is('~') => Token::NotRegex,
            '=' if next_is('~') => Token::RegexEquals,
            '=' => {
                next_is('=');
                Token::Equals
            }
            '>' if next_is('=') => Token::Compare(">="),
            '>' => Token::Compare(">"),
            '<' if next_is('=') => Token::Compare("<="),
            '<' => Token::Compare("<"),
            '"' => {
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(query_error(format!(
                                "the string starting at character {} has no closing `\"`",
                                at + 1
                            )))
                        }
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => text.push('\n'),
                            Some((_, 't')) => text.push('\t'),
                            Some((_, 'r')) => text.push('\r'),
                            Some((_, other)) => text.push(other),
                            None => {
                                return Err(query_error(format!(
                                    "the string starting at character {} has no closing `\"`",
                                    at + 1
                                )))
                            }
                        },
                        Some((_, other)) => text.push(other),
                    }
                }
                Token::Text(text)
            }
            '`' => {
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(query_error(format!(
                                "the string starting at character {} has no closing '`'",
                                at + 1
                            )))
                        }
                        Some((_, '`')) => break,
                        Some((_, other)) => text.push(other),
                    }
                }
                Token::Text(text)
            }
            c if is_word_char(c) => {
                let mut word = String::from(c);
                while let Some(&(_, next)) = chars.peek() {
                    if !is_word_char(next) {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                Token::Word(word)
            }
            other => {
                return Err(query_error(format!(
                    "unexpected `{other}` at character {}",
                    at + 1
                )))
            }
        };
        tokens.push(token);
    }
    Ok(tokens)
}

struct QueryParser {
    tokens: std::iter::Peekable<std::vec::IntoIter<Token>>,
    filter: LogFilter,
}

impl QueryParser {
    fn text_after(&mut self, operator: &str) -> Result<String, ValidationError> {
        match self.tokens.next() {
            Some(Token::Text(text)) => Ok(text),
            Some(other) => Err(query_error(format!(
                "`{operator}` needs a quoted text after it, found {}",
                other.describe()
            ))),
            None => Err(query_error(format!(
                "`{operator}` needs a quoted text after it"
            ))),
        }
    }

    /// `label = "value"` or `label != "value"`.
    fn matcher(&mut self, first: Option<Token>) -> Result<(), ValidationError> {
        let name = match first.or_else(|| self.tokens.next()) {
            Some(Token::Word(word)) => word,
            Some(other) => {
                return Err(query_error(format!(
                    "expected a label name, found {}",
                    other.describe()
                )))
            }
            None => return Err(query_error("expected a label name at the end")),
        };
        let negated = match self.tokens.next() {
            Some(Token::Equals) => false,
            Some(Token::NotEquals) => true,
            Some(Token::RegexEquals | Token::NotRegex) => {
                return Err(query_error(format!(
                    "regular expressions (`=~`, `!~`) are not supported; match `{}` exactly with \
                     `=` or `!=`",
                    shorten(&name)
                )))
            }
            Some(Token::Compare(op)) => {
                return Err(query_error(format!(
                    "`{op}` is not supported; match `{}` with `=` or `!=`",
                    shorten(&name)
                )))
            }
            other => {
                let found = other.map_or("nothing".to_owned(), |token| token.describe());
                return Err(query_error(format!(
                    "expected `=` or `!=` after `{}`, found {found} (parser stages such as \
                     `| json` are not supported)",
                    shorten(&name)
                )));
            }
        };
        let value = match self.tokens.next() {
            Some(Token::Text(text) | Token::Word(text)) => text,
            Some(other) => {
                return Err(query_error(format!(
                    "expected a value after `{}`, found {}",
                    shorten(&name),
                    other.describe()
                )))
            }
            None => {
                return Err(query_error(format!(
                    "expected a value after `{}`",
                    shorten(&name)
                )))
            }
        };
        let Some(&(_, label)) = QUERY_LABELS.iter().find(|(known, _)| *known == name) else {
            return Err(query_error(format!(
                "unknown label `{}`; labels are {}",
                shorten(&name),
                names(QUERY_LABELS)
            )));
        };
        self.filter
            .apply(&name, label, negated, &value)
            .map_err(|error| query_error(error.message()))
    }

    /// `{label="value", ...}`, after its `{`.
    fn selector(&mut self) -> Result<(), ValidationError> {
        if self.tokens.peek() == Some(&Token::RightBrace) {
            self.tokens.next();
            return Ok(());
        }
        loop {
            self.matcher(None)?;
            match self.tokens.next() {
                Some(Token::Comma) => continue,
                Some(Token::RightBrace) => return Ok(()),
                Some(other) => {
                    return Err(query_error(format!(
                        "expected `,` or `}}` in the stream selector, found {}",
                        other.describe()
                    )))
                }
                None => return Err(query_error("the stream selector has no closing `}`")),
            }
        }
    }

    /// Label matchers joined by `and` or `,`, after a `|`.
    fn label_filter(&mut self) -> Result<(), ValidationError> {
        loop {
            self.matcher(None)?;
            match self.tokens.peek() {
                Some(Token::Word(word)) if word == "and" => {
                    self.tokens.next();
                }
                Some(Token::Comma) => {
                    self.tokens.next();
                }
                Some(Token::Word(word)) if word == "or" => {
                    return Err(query_error(
                        "`or` is not supported; ask once per alternative",
                    ))
                }
                _ => return Ok(()),
            }
        }
    }

    fn parse(mut self) -> Result<LogFilter, ValidationError> {
        if self.tokens.peek() == Some(&Token::LeftBrace) {
            self.tokens.next();
            self.selector()?;
        }
        while let Some(token) = self.tokens.next() {
            match token {
                Token::LineContains => {
                    let text = self.text_after("|=")?;
                    self.filter.contains.push(text);
                }
                Token::NotEquals => {
                    let text = self.text_after("!=")?;
                    self.filter.excludes.push(text);
                }
                Token::LineRegex | Token::NotRegex => {
                    return Err(query_error(
                        "regular expression line filters (`|~`, `!~`) are not supported; use \
                         `|=` or `!=` with a text",
                    ))
                }
                Token::Pipe => self.label_filter()?,
                Token::Parenthesis => {
                    return Err(query_error("parentheses are not supported"));
                }
                Token::LeftBrace => {
                    return Err(query_error("a stream selector `{...}` can only come first"))
                }
                other => {
                    return Err(query_error(format!(
                        "expected `|`, `|=` or `!=`, found {}; label filters start with `|` \
                         (`| deployment_name=\"my-deployment\"`)",
                        other.describe()
                    )))
                }
            }
        }
        Ok(self.filter)
    }
}

/// The subset of Grafana LogQL that newer clients send: an optional stream
/// selector `{label="value", ...}`, then stages: label filters
/// `| label="value" and label!="value"` (also `|` or `,` between them), and
/// line filters `|= "text"` and `!= "text"`. Values are quoted with `"` or
/// backticks, or bare words. Regular expressions, `or`, comparisons and
/// parser stages are refused with a message saying so.
fn present(raw: Option<&str>) -> Option<&str> {
    raw.filter(|raw| !raw.trim().is_empty())
}

pub fn parse_logql(query: &str) -> Result<LogFilter, ValidationError> {
    QueryParser {
        tokens: tokenize(query)?.into_iter().peekable(),
        filter: LogFilter::default(),
    }
    .parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_764_000_000_000_000_000;
    const REVISION: &str = "4b5f2c1e-9d3a-4e2b-8f6a-1c2d3e4f5a6b";

    fn v3(body: Value) -> Result<LogQuery, ValidationError> {
        let filters = body.get("filters").and_then(Value::as_object);
        let request = V3Request {
            filters,
            date: body.get("date").and_then(Value::as_str),
            id: body.get("id").and_then(Value::as_str),
            date_range: body.get("date_range").and_then(Value::as_i64),
            limit: body.get("limit").and_then(Value::as_i64),
        };
        LogQuery::from_v3(&request, NOW)
    }

    fn message(result: Result<impl std::fmt::Debug, ValidationError>) -> String {
        result.unwrap_err().message().to_owned()
    }

    #[test]
    fn the_clients_wait_queries_parse() {
        let filter = parse_logql("| deployment_name=`dep` and deployment_version=`v1`").unwrap();
        assert_eq!(filter.deployment_name.equals.as_deref(), Some("dep"));
        assert_eq!(filter.deployment_version.equals.as_deref(), Some("v1"));
        assert!(!filter.matches_nothing);

        let query = format!(
            "| deployment_name=`dep` and deployment_version=`v1` and \
             deployment_version_revision_id=`{REVISION}`"
        );
        let filter = parse_logql(&query).unwrap();
        assert_eq!(filter.revision_id.equals, Some(REVISION.parse().unwrap()));

        // Environments are not built here: their wait query finds nothing.
        let filter =
            parse_logql("| environment_name=`python3-11` and environment_tag=`latest`").unwrap();
        assert!(filter.matches_nothing);
    }

    #[test]
    fn the_cli_help_examples_parse() {
        let filter = parse_logql(r#"|= "text""#).unwrap();
        assert_eq!(filter.contains, vec!["text".to_owned()]);

        let filter =
            parse_logql(r#"| deployment_name="deployment-1" | deployment_version="v1""#).unwrap();
        assert_eq!(
            filter.deployment_name.equals.as_deref(),
            Some("deployment-1")
        );
        assert_eq!(filter.deployment_version.equals.as_deref(), Some("v1"));

        let filter =
            parse_logql(r#"| pipeline_name="pipeline-1" | pipeline_version="v1""#).unwrap();
        assert!(filter.matches_nothing);

        // Request ids are UUIDs here: another id names no line.
        let filter = parse_logql(r#"|= "text" | deployment_request_id="request-id-1""#).unwrap();
        assert_eq!(filter.contains, vec!["text".to_owned()]);
        assert!(filter.matches_nothing);

        // The CLI's own name for the version label.
        let filter = parse_logql(r#"| deployment_version_name="v2""#).unwrap();
        assert_eq!(filter.deployment_version.equals.as_deref(), Some("v2"));
    }

    #[test]
    fn stream_selectors_inequalities_and_line_filters() {
        let filter = parse_logql(
            r#"{deployment_name="dep", level="error"} | system=true != "debug" |= `a "b"`"#,
        )
        .unwrap();
        assert_eq!(filter.deployment_name.equals.as_deref(), Some("dep"));
        assert_eq!(filter.level.equals.as_deref(), Some("error"));
        assert_eq!(filter.system.equals, Some(true));
        assert_eq!(filter.excludes, vec!["debug".to_owned()]);
        assert_eq!(filter.contains, vec![r#"a "b""#.to_owned()]);

        let filter =
            parse_logql(r#"| deployment_name!="a", deployment_name != "b" and level=="info""#)
                .unwrap();
        assert_eq!(filter.deployment_name.not_equals, vec!["a", "b"]);
        assert_eq!(filter.level.equals.as_deref(), Some("info"));

        // A pipeline label that no line has: `!=` excludes nothing.
        let filter = parse_logql(r#"| pipeline_name!="p""#).unwrap();
        assert!(!filter.matches_nothing);
        assert_eq!(parse_logql("").unwrap(), LogFilter::default());
        assert_eq!(parse_logql("  {}  ").unwrap(), LogFilter::default());
        assert_eq!(parse_logql(r#""escaped \" quote""#).map(|_| ()).unwrap_err().message(),
            "Invalid `query`: expected `|`, `|=` or `!=`, found \"escaped \" quote\"; label filters start with `|` (`| deployment_name=\"my-deployment\"`)");
    }

    #[test]
    fn contradicting_equalities_match_nothing() {
        let filter = parse_logql(r#"| deployment_name="a" and deployment_name="b""#).unwrap();
        assert!(filter.matches_nothing);
        let filter = parse_logql(r#"| deployment_name="a" and deployment_name="a""#).unwrap();
        assert!(!filter.matches_nothing);
        let filter = parse_logql(r#"| system=true | system="False""#).unwrap();
        assert!(filter.matches_nothing);
    }

    #[test]
    fn malformed_queries_say_what_is_wrong() {
        for (query, expected) in [
            (
                r#"| colour="red""#,
                "unknown label `colour`; labels are deployment_name",
            ),
            (
                r#"| deployment_name=~"a.*""#,
                "regular expressions (`=~`, `!~`) are not supported",
            ),
            (r#"|~ "a.*""#, "regular expression line filters"),
            (
                r#"| deployment_name="a" or deployment_name="b""#,
                "`or` is not supported",
            ),
            (r#"| deployment_name="a"#, "has no closing `\"`"),
            ("| deployment_name=`a", "has no closing '`'"),
            (
                r#"{deployment_name="a""#,
                "the stream selector has no closing `}`",
            ),
            (
                r#"| json"#,
                "expected `=` or `!=` after `json`, found nothing",
            ),
            (r#"| process_id > 3"#, "`>` is not supported"),
            (r#"|= 42"#, "`|=` needs a quoted text after it"),
            (
                r#"| system="maybe""#,
                "`system` is true or false, not 'maybe'",
            ),
            (r#"deployment_name="a""#, "label filters start with `|`"),
            (
                r#"| (deployment_name="a")"#,
                "expected a label name, found a parenthesis",
            ),
            (
                "| deployment_name=\"a\" ; x",
                "unexpected `;` at character 23",
            ),
            (
                r#"| level="error" {deployment_name="a"}"#,
                "can only come first",
            ),
        ] {
            let error = message(parse_logql(query));
            assert!(error.starts_with("Invalid `query`: "), "{query}: {error}");
            assert!(error.contains(expected), "{query}: {error}");
        }
    }

    #[test]
    fn ids_that_are_not_uuids_match_nothing() {
        assert!(parse_logql(r#"| build_id="nope""#).unwrap().matches_nothing);
        let filter = parse_logql(r#"| build_id!="nope""#).unwrap();
        assert!(!filter.matches_nothing);
        assert!(filter.build_id.not_equals.is_empty());
    }

    #[test]
    fn instants_in_every_form_the_clients_send() {
        let date = "2026-12-02T10:00:00.123+00:00";
        let ns = 1_796_205_600_123_000_000;
        assert_eq!(parse_instant("start", date).unwrap(), ns);
        assert_eq!(
            parse_instant("start", "2026-12-02T10:00:00.123Z").unwrap(),
            ns
        );
        assert_eq!(
            parse_instant("start", "2026-12-02T11:00:00.123+01:00").unwrap(),
            ns
        );
        assert_eq!(
            parse_instant("start", "2026-12-02T10:00:00.123").unwrap(),
            ns
        );
        assert_eq!(
            parse_instant("start", "2026-12-02 10:00:00.123").unwrap(),
            ns
        );
        // `time.time_ns()` and a line's `timestamp` + 1
        assert_eq!(parse_instant("end", "1796205600123000001").unwrap(), ns + 1);
        // The CLI's "timestamp (seconds)"
        assert_eq!(
            parse_instant("end", "1796205600").unwrap(),
            ns - 123_000_000
        );
        assert_eq!(parse_instant("end", "1796205600.123").unwrap(), ns);
        for bad in ["", "yesterday", "-5", "2026-13-01T00:00:00Z", "1.2.3"] {
            let error = message(parse_instant("start", bad));
            assert!(error.starts_with("Invalid `start`"), "{bad}: {error}");
        }
    }

    #[test]
    fn v4_windows_go_forward_or_backward_from_start() {
        let forward =
            LogQuery::from_v4(None, Some("100000000000"), Some("100000000500"), None, NOW).unwrap();
        assert_eq!(
            forward.window,
            LogWindow {
                from_ns: 100_000_000_000,
                to_ns: 100_000_000_499,
                keep: Keep::Oldest,
                limit: V4_DEFAULT_LIMIT
            }
        );
        let backward = LogQuery::from_v4(
            Some(""),
            Some("100000000500"),
            Some("100000000000"),
            Some("7"),
            NOW,
        )
        .unwrap();
        assert_eq!(
            backward.window,
            LogWindow {
                from_ns: 100_000_000_001,
                to_ns: 100_000_000_500,
                keep: Keep::Newest,
                limit: 7
            }
        );
        let same =
            LogQuery::from_v4(None, Some("100000000500"), Some("100000000500"), None, NOW).unwrap();
        assert!(same.matches_nothing());

        let defaults = LogQuery::from_v4(None, None, None, None, NOW).unwrap();
        assert_eq!(defaults.window.to_ns, NOW);
        assert_eq!(defaults.window.from_ns, NOW - V4_DEFAULT_LOOKBACK_NS + 1);
        assert_eq!(defaults.window.keep, Keep::Newest);

        assert_eq!(
            LogQuery::from_v4(None, None, None, Some("5000"), NOW)
                .unwrap()
                .window
                .limit,
            5000
        );
        for bad in ["0", "5001", "ten", "-1"] {
            let error = message(LogQuery::from_v4(None, None, None, Some(bad), NOW));
            assert!(error.starts_with("Invalid `limit`"), "{bad}: {error}");
        }
    }

    #[test]
    fn v3_defaults_reach_six_hours_back_from_now() {
        let query = v3(json!({})).unwrap();
        assert_eq!(
            query.window,
            LogWindow {
                from_ns: NOW - 21_600 * NS_PER_SECOND,
                to_ns: NOW,
                keep: Keep::Newest,
                limit: 50
            }
        );
        assert_eq!(query.filter, LogFilter::default());
    }

    #[test]
    fn v3_date_range_direction_and_bounds() {
        let forward =
            v3(json!({"date": "2020-01-01T00:00:00.000000Z", "date_range": 100, "limit": 500}))
                .unwrap();
        let start = 1_577_836_800 * NS_PER_SECOND;
        assert_eq!(
            forward.window,
            LogWindow {
                from_ns: start,
                to_ns: start + 100 * NS_PER_SECOND,
                keep: Keep::Oldest,
                limit: 500
            }
        );
        let backward = v3(json!({"date": "2020-01-01T00:00:00Z", "date_range": -86400})).unwrap();
        assert_eq!(backward.window.from_ns, start - 86_400 * NS_PER_SECOND);
        assert_eq!(backward.window.to_ns, start);
        assert_eq!(backward.window.keep, Keep::Newest);

        for (body, expected) in [
            (
                json!({"date_range": 86401}),
                "Invalid `date_range` 86401: use a whole number from -86400 to 86400",
            ),
            (json!({"date_range": -86401}), "Invalid `date_range` -86401"),
            (
                json!({"limit": 0}),
                "Invalid `limit` 0: use a whole number from 1 to 500",
            ),
            (json!({"limit": 501}), "Invalid `limit` 501"),
            (
                json!({"date": "2020-01-01", "id": line_id(5)}),
                "either `date` or `id`",
            ),
            (json!({"date": "soon"}), "Invalid `date` 'soon'"),
            (json!({"id": "41d7a7c5cd025e3501a0000"}), "Invalid `id`"),
            (json!({"id": "41d7a7c5cd025e3501a0000g"}), "Invalid `id`"),
            (json!({"id": "ffffffffffffffffffffffff"}), "Invalid `id`"),
        ] {
            let error = message(v3(body.clone()));
            assert!(error.contains(expected), "{body}: {error}");
        }
    }

    #[test]
    fn v3_id_is_the_starting_point_and_round_trips() {
        let ns = 1_796_205_600_123_456_789;
        let id = line_id(ns);
        assert_eq!(id.len(), 24);
        let query = v3(json!({"id": id, "date_range": 10})).unwrap();
        assert_eq!(query.window.from_ns, ns);
        assert_eq!(query.window.to_ns, ns + 10 * NS_PER_SECOND);
        let query = v3(json!({"id": id.to_uppercase(), "date_range": -10})).unwrap();
        assert_eq!(query.window.to_ns, ns);
    }

    #[test]
    fn v3_filters() {
        let build = "0d9e4c4f-3b4f-4d3c-9a8e-2f1b0c9d8e7f";
        let query = v3(json!({"filters": {
            "deployment_name": "dep", "deployment_version": "v1", "build_id": build,
            "system": "True", "level": "error", "deployment_request_id": null
        }}))
        .unwrap();
        let filter = query.filter;
        assert_eq!(filter.deployment_name.equals.as_deref(), Some("dep"));
        assert_eq!(filter.deployment_version.equals.as_deref(), Some("v1"));
        assert_eq!(filter.build_id.equals, Some(build.parse().unwrap()));
        assert_eq!(filter.system.equals, Some(true));
        assert_eq!(filter.level.equals.as_deref(), Some("error"));
        assert!(!filter.matches_nothing);

        assert_eq!(
            v3(json!({"filters": {"system": false}}))
                .unwrap()
                .filter
                .system
                .equals,
            Some(false)
        );
        assert!(
            v3(json!({"filters": {"pipeline_name": "p"}}))
                .unwrap()
                .filter
                .matches_nothing
        );
        assert!(
            v3(json!({"filters": {"build_id": "not-a-uuid"}}))
                .unwrap()
                .filter
                .matches_nothing
        );

        for (filters, expected) in [
            (
                json!({"deployment_version": "v1"}),
                "`filters.deployment_version` needs `filters.deployment_name` too",
            ),
            (
                json!({"pipeline_version": "v1"}),
                "`filters.pipeline_version` needs `filters.pipeline_name` too",
            ),
            (
                json!({"pipeline_name": "p", "pipeline_object_name": "o"}),
                "needs `filters.pipeline_version` too",
            ),
            (
                json!({"colour": "red"}),
                "Unknown filter `colour` in `filters`: use deployment_name",
            ),
            (
                json!({"deployment_name": 5}),
                "`filters.deployment_name` must be a string",
            ),
            (
                json!({"system": "maybe"}),
                "`filters.system` is true or false",
            ),
            (json!({"system": 1}), "`filters.system` is true or false"),
            (
                json!({"level": "warning"}),
                "Invalid `filters.level` 'warning': use info or error",
            ),
        ] {
            let error = message(v3(json!({ "filters": filters })));
            assert!(error.contains(expected), "{filters}: {error}");
        }
    }

    #[test]
    fn line_text_is_one_capped_line_without_nul() {
        assert_eq!(line_text("done\n"), "done");
        assert_eq!(line_text("a\0b\r\n"), "a\u{FFFD}b");
        let long = "é".repeat(MAX_LINE_CHARS + 10);
        let capped = line_text(&long);
        assert_eq!(capped.chars().count(), MAX_LINE_CHARS);
        assert!(capped.ends_with('…'));
        let exact = "x".repeat(MAX_LINE_CHARS);
        assert_eq!(line_text(&exact), exact);
    }

    #[test]
    fn dates_keep_nanoseconds() {
        let ns = 1_796_205_600_123_456_789;
        assert_eq!(line_date(ns).timestamp_nanos_opt(), Some(ns));
    }
}
