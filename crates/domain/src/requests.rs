//! Deployment requests: their statuses, and the filter of the request lists
//! (`deployment_requests_list`, `deployment_version_requests_list`,
//! `project_requests_list`) parsed from query parameters.

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::query::{bounded_integer, optional_bool};
use crate::ValidationError;

/// Requests a list returns unless `limit` says otherwise (documented).
pub const DEFAULT_LIST_LIMIT: i64 = 50;
/// The most a list returns at once; `offset` pages further.
pub const MAX_LIST_LIMIT: i64 = 1000;

/// A new request's id. Time-ordered (UUID version 7): the primary key's
/// index takes each new request at its right edge, where the pages are in
/// PostgreSQL's buffers, instead of at a random leaf, which with millions of
/// stored requests is mostly not (BENCHMARKS.md, "Requests"). Ids made by
/// this process come out in the order they were made.
pub fn new_request_id() -> Uuid {
    Uuid::now_v7()
}

/// Where a request stands. Direct requests are stored finished
/// (`completed` or `failed`); batch requests move through the queue:
/// `pending -> processing -> completed | failed`, and `cancelled_pending`
/// (a cancel asked while processing) `-> cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
    CancelledPending,
}

impl RequestStatus {
    pub const ALL: [RequestStatus; 6] = [
        RequestStatus::Pending,
        RequestStatus::Processing,
        RequestStatus::Completed,
        RequestStatus::Failed,
        RequestStatus::Cancelled,
        RequestStatus::CancelledPending,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Processing => "processing",
            RequestStatus::Completed => "completed",
            RequestStatus::Failed => "failed",
            RequestStatus::Cancelled => "cancelled",
            RequestStatus::CancelledPending => "cancelled_pending",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }

    /// Whether the request is done with: no worker will touch it again, so
    /// it may expire.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RequestStatus::Completed | RequestStatus::Failed | RequestStatus::Cancelled
        )
    }
}

/// The order of a list, by the time the requests were created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Oldest first.
    Ascending,
    /// Newest first: the documented default.
    Descending,
}

/// Which requests a list returns. Built by [`RequestFilter::parse`]; the
/// default is the documented one (the 50 newest, of every status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFilter {
    /// Any of these; empty for every status.
    pub statuses: Vec<RequestStatus>,
    pub success: Option<bool>,
    pub limit: i64,
    pub offset: i64,
    pub sort: SortOrder,
    /// Created at or after this.
    pub created_from: Option<DateTime<Utc>>,
    /// Created at or before this.
    pub created_until: Option<DateTime<Utc>>,
    /// Lowercase text the request id (with dashes) must contain.
    pub search_id: Option<String>,
    /// The filter asks for what this server never has (pipeline requests,
    /// requests of a schedule, an id no UUID can contain): the list is empty
    /// without a query.
    pub matches_nothing: bool,
}

impl Default for RequestFilter {
    fn default() -> Self {
        Self {
            statuses: Vec::new(),
            success: None,
            limit: DEFAULT_LIST_LIMIT,
            offset: 0,
            sort: SortOrder::Descending,
            created_from: None,
            created_until: None,
            search_id: None,
            matches_nothing: false,
        }
    }
}

/// The query parameters of a request list, as received. `object_type` is
/// only `project_requests_list`'s.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestListQuery<'a> {
    pub status: Option<&'a str>,
    pub success: Option<&'a str>,
    pub limit: Option<&'a str>,
    pub offset: Option<&'a str>,
    pub sort: Option<&'a str>,
    pub pipeline: Option<&'a str>,
    pub request_schedule: Option<&'a str>,
    pub start_date: Option<&'a str>,
    pub end_date: Option<&'a str>,
    pub search_id: Option<&'a str>,
    pub object_type: Option<&'a str>,
}

impl RequestFilter {
    /// Parses and checks a list's query parameters; a bad one is a `400`
    /// naming it. An empty parameter counts as absent.
    pub fn parse(query: &RequestListQuery<'_>) -> Result<Self, ValidationError> {
        let mut filter = RequestFilter {
            statuses: parse_statuses(present(query.status))?,
            success: optional_bool("success", present(query.success))?,
            limit: bounded_integer("limit", query.limit, DEFAULT_LIST_LIMIT, 1, MAX_LIST_LIMIT)?,
            offset: bounded_integer("offset", query.offset, 0, 0, i64::MAX)?,
            sort: parse_sort(present(query.sort))?,
            created_from: present(query.start_date)
                .map(|raw| parse_date("start_date", raw, DayPart::Start))
                .transpose()?,
            created_until: present(query.end_date)
                .map(|raw| parse_date("end_date", raw, DayPart::End))
                .transpose()?,
            search_id: present(query.search_id).map(str::to_ascii_lowercase),
            matches_nothing: false,
        };
        if let (Some(from), Some(until)) = (filter.created_from, filter.created_until) {
            if from > until {
                return Err(ValidationError::new(format!(
                    "`start_date` ({}) is after `end_date` ({}): give the earlier date as \
                     `start_date`",
                    shorten(query.start_date.unwrap_or_default()),
                    shorten(query.end_date.unwrap_or_default())
                )));
            }
        }
        // Requests here are never part of a pipeline, nor made by a request
        // schedule (there are none), nor pipeline requests.
        let in_pipeline = optional_bool("pipeline", present(query.pipeline))? == Some(true);
        let of_schedule = present(query.request_schedule).is_some();
        let pipelines = match present(query.object_type) {
            None | Some("deployment") => false,
            Some("pipeline") => true,
            Some(other) => {
                return Err(ValidationError::new(format!(
                    "Invalid `object_type` '{}': use deployment or pipeline",
                    shorten(other)
                )))
            }
        };
        // Request ids are lowercase hexadecimal with dashes: other text is
        // in none of them (and never reaches the database).
        let impossible_id = filter
            .search_id
            .as_deref()
            .is_some_and(|id| !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
        filter.matches_nothing = in_pipeline || of_schedule || pipelines || impossible_id;
        Ok(filter)
    }
}

fn present(raw: Option<&str>) -> Option<&str> {
    raw.filter(|raw| !raw.is_empty())
}

/// One status, or several joined with commas (newer clients' docs).
fn parse_statuses(raw: Option<&str>) -> Result<Vec<RequestStatus>, ValidationError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut statuses = Vec::new();
    for part in raw.split(',').map(str::trim) {
        let status = RequestStatus::parse(part).ok_or_else(|| {
            ValidationError::new(format!(
                "Invalid `status` '{}': use one of pending, processing, completed, failed, \
                 cancelled, cancelled_pending (several may be joined with commas)",
                shorten(part)
            ))
        })?;
        if !statuses.contains(&status) {
            statuses.push(status);
        }
    }
    Ok(statuses)
}

fn parse_sort(raw: Option<&str>) -> Result<SortOrder, ValidationError> {
    match raw {
        None | Some("desc") => Ok(SortOrder::Descending),
        Some("asc") => Ok(SortOrder::Ascending),
        Some(other) => Err(ValidationError::new(format!(
            "Invalid `sort` '{}': use asc (oldest first) or desc (newest first)",
            shorten(other)
        ))),
    }
}

/// Which end of a day a date without a time stands for.
#[derive(Debug, Clone, Copy)]
enum DayPart {
    Start,
    End,
}

/// An ISO 8601 date or date and time. With an offset (`Z`, `+02:00`) or
/// without one (UTC); `T` or a space between date and time (Python's
/// `str(datetime)`, which newer clients send). A bare date is the whole day:
/// its first instant as a start, its last as an end. A `+` of an offset that
/// arrived as a space (an unencoded `+` in a query string) is read as `+`.
fn parse_date(name: &str, raw: &str, part: DayPart) -> Result<DateTime<Utc>, ValidationError> {
    let text = raw.trim();
    let invalid = || {
        ValidationError::new(format!(
            "Invalid `{name}` '{}': use an ISO 8601 date (2024-01-31) or date and time \
             (2024-01-31T12:00:00Z)",
            shorten(raw)
        ))
    };
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let instant = match part {
            DayPart::Start => date.and_time(NaiveTime::MIN).and_utc(),
            // The next day's first instant less the database clock's
            // resolution (a microsecond): the whole day, and not a moment of
            // the next.
            DayPart::End => {
                let next = date.checked_add_days(Days::new(1)).ok_or_else(invalid)?;
                next.and_time(NaiveTime::MIN).and_utc() - chrono::Duration::microseconds(1)
            }
        };
        return Ok(instant);
    }
    parse_date_time(text)
        .or_else(|| restore_plus(text).as_deref().and_then(parse_date_time))
        .ok_or_else(invalid)
}

fn parse_date_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(date) = DateTime::parse_from_rfc3339(text) {
        return Some(date.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    .map(|naive| naive.and_utc())
}

/// `2024-01-31T12:00:00 02:00` back to `...+02:00`: in a query string an
/// unencoded `+` means a space.
fn restore_plus(text: &str) -> Option<String> {
    let (date_time, offset) = text.rsplit_once(' ')?;
    let looks_like_offset = offset.len() == 5
        && offset.as_bytes()[2] == b':'
        && offset
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 2 || b.is_ascii_digit());
    looks_like_offset.then(|| format!("{date_time}+{offset}"))
}

fn shorten(raw: &str) -> String {
    raw.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn request_ids_are_time_ordered_in_the_order_made() {
        let ids: Vec<Uuid> = (0..10_000).map(|_| new_request_id()).collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }

    fn parse(params: &[(&str, &str)]) -> Result<RequestFilter, ValidationError> {
        let mut query = RequestListQuery::default();
        for (name, value) in params {
            let slot = match *name {
                "status" => &mut query.status,
                "success" => &mut query.success,
                "limit" => &mut query.limit,
                "offset" => &mut query.offset,
                "sort" => &mut query.sort,
                "pipeline" => &mut query.pipeline,
                "request_schedule" => &mut query.request_schedule,
                "start_date" => &mut query.start_date,
                "end_date" => &mut query.end_date,
                "search_id" => &mut query.search_id,
                "object_type" => &mut query.object_type,
                other => panic!("unknown parameter {other}"),
            };
            *slot = Some(value);
        }
        RequestFilter::parse(&query)
    }

    fn error(params: &[(&str, &str)]) -> String {
        parse(params).unwrap_err().message().to_owned()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn statuses_round_trip() {
        for status in RequestStatus::ALL {
            assert_eq!(RequestStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert_eq!(RequestStatus::parse("Completed"), None);
        assert!(RequestStatus::Completed.is_finished());
        assert!(RequestStatus::Failed.is_finished());
        assert!(RequestStatus::Cancelled.is_finished());
        assert!(!RequestStatus::Pending.is_finished());
        assert!(!RequestStatus::Processing.is_finished());
        assert!(!RequestStatus::CancelledPending.is_finished());
    }

    #[test]
    fn no_parameters_is_the_documented_default() {
        assert_eq!(parse(&[]).unwrap(), RequestFilter::default());
        let default = RequestFilter::default();
        assert_eq!(default.limit, 50);
        assert_eq!(default.offset, 0);
        assert_eq!(default.sort, SortOrder::Descending);
        // Empty values count as absent.
        let empty: Vec<(&str, &str)> = [
            "status",
            "success",
            "limit",
            "offset",
            "sort",
            "pipeline",
            "request_schedule",
            "start_date",
            "end_date",
            "search_id",
            "object_type",
        ]
        .iter()
        .map(|name| (*name, ""))
        .collect();
        assert_eq!(parse(&empty).unwrap(), RequestFilter::default());
    }

    #[test]
    fn status_is_one_of_six_or_several_joined_with_commas() {
        for status in RequestStatus::ALL {
            assert_eq!(
                parse(&[("status", status.as_str())]).unwrap().statuses,
                vec![status]
            );
        }
        assert_eq!(
            parse(&[("status", "completed,failed, completed")])
                .unwrap()
                .statuses,
            vec![RequestStatus::Completed, RequestStatus::Failed]
        );
        assert_eq!(
            error(&[("status", "done")]),
            "Invalid `status` 'done': use one of pending, processing, completed, failed, \
             cancelled, cancelled_pending (several may be joined with commas)"
        );
        assert!(error(&[("status", "completed,")]).starts_with("Invalid `status` ''"));
        assert!(error(&[("status", "COMPLETED")]).starts_with("Invalid `status` 'COMPLETED'"));
    }

    #[test]
    fn success_takes_both_spellings_of_booleans() {
        assert_eq!(parse(&[("success", "True")]).unwrap().success, Some(true));
        assert_eq!(parse(&[("success", "false")]).unwrap().success, Some(false));
        assert_eq!(
            error(&[("success", "yes")]),
            "`success` must be true or false, not 'yes'"
        );
    }

    #[test]
    fn limit_and_offset_are_bounded() {
        assert_eq!(parse(&[("limit", "1")]).unwrap().limit, 1);
        assert_eq!(parse(&[("limit", "1000")]).unwrap().limit, 1000);
        assert_eq!(parse(&[("offset", "20")]).unwrap().offset, 20);
        for raw in ["0", "1001", "-1", "ten", "2.5"] {
            assert_eq!(
                error(&[("limit", raw)]),
                format!("Invalid `limit` '{raw}': use a whole number from 1 to 1000")
            );
        }
        assert_eq!(
            error(&[("offset", "-1")]),
            "Invalid `offset` '-1': use a whole number of at least 0"
        );
    }

    #[test]
    fn sort_is_asc_or_desc() {
        assert_eq!(
            parse(&[("sort", "asc")]).unwrap().sort,
            SortOrder::Ascending
        );
        assert_eq!(
            parse(&[("sort", "desc")]).unwrap().sort,
            SortOrder::Descending
        );
        assert_eq!(
            error(&[("sort", "newest")]),
            "Invalid `sort` 'newest': use asc (oldest first) or desc (newest first)"
        );
    }

    #[test]
    fn dates_take_every_form_the_clients_send() {
        let noon = utc(2024, 1, 31, 12, 0, 0);
        for raw in [
            "2024-01-31T12:00:00Z",        // the CLI
            "2024-01-31T12:00:00.000000Z", // the CLI's help
            "2024-01-31T14:00:00+02:00",   // an offset
            "2024-01-31 12:00:00+00:00",   // 4.x: str(datetime) with a zone
            "2024-01-31 12:00:00",         // 4.x: str(datetime) without one
            "2024-01-31T12:00:00",         // no offset: UTC
            "2024-01-31T12:00",            // no seconds
            "2024-01-31T14:00:00 02:00",   // an unencoded + in a URL
            " 2024-01-31T12:00:00Z ",      // stray spaces
        ] {
            let filter = parse(&[("start_date", raw), ("end_date", raw)]).unwrap();
            assert_eq!(filter.created_from, Some(noon), "{raw}");
            assert_eq!(filter.created_until, Some(noon), "{raw}");
        }
        let fraction = parse(&[("start_date", "2024-01-31T12:00:00.250Z")]).unwrap();
        assert_eq!(
            fraction.created_from,
            Some(noon + chrono::Duration::milliseconds(250))
        );
    }

    #[test]
    fn a_date_alone_is_the_whole_day() {
        let filter = parse(&[("start_date", "2024-01-31"), ("end_date", "2024-01-31")]).unwrap();
        assert_eq!(filter.created_from, Some(utc(2024, 1, 31, 0, 0, 0)));
        assert_eq!(
            filter.created_until,
            Some(utc(2024, 2, 1, 0, 0, 0) - chrono::Duration::microseconds(1))
        );
    }

    #[test]
    fn bad_dates_name_the_parameter() {
        for (name, raw) in [
            ("start_date", "yesterday"),
            ("end_date", "2024-02-30"),
            ("start_date", "31-01-2024"),
            ("end_date", "1706702400"),
        ] {
            assert_eq!(
                error(&[(name, raw)]),
                format!(
                    "Invalid `{name}` '{raw}': use an ISO 8601 date (2024-01-31) or date and \
                     time (2024-01-31T12:00:00Z)"
                )
            );
        }
        assert_eq!(
            error(&[("start_date", "2024-02-01"), ("end_date", "2024-01-31")]),
            "`start_date` (2024-02-01) is after `end_date` (2024-01-31): give the earlier date \
             as `start_date`"
        );
        // The same day as both ends is that day.
        assert!(parse(&[("start_date", "2024-01-31"), ("end_date", "2024-01-31")]).is_ok());
    }

    #[test]
    fn search_id_is_lowercase_and_impossible_ids_match_nothing() {
        let filter = parse(&[("search_id", "AB12-")]).unwrap();
        assert_eq!(filter.search_id.as_deref(), Some("ab12-"));
        assert!(!filter.matches_nothing);
        for raw in ["xyz", "ab%", "a_b", "a\0b", "é"] {
            assert!(
                parse(&[("search_id", raw)]).unwrap().matches_nothing,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn pipelines_and_schedules_match_nothing_here() {
        assert!(parse(&[("pipeline", "True")]).unwrap().matches_nothing);
        assert!(!parse(&[("pipeline", "false")]).unwrap().matches_nothing);
        assert_eq!(
            error(&[("pipeline", "1")]),
            "`pipeline` must be true or false, not '1'"
        );
        assert!(
            parse(&[("request_schedule", "nightly")])
                .unwrap()
                .matches_nothing
        );
        assert!(
            !parse(&[("object_type", "deployment")])
                .unwrap()
                .matches_nothing
        );
        assert!(
            parse(&[("object_type", "pipeline")])
                .unwrap()
                .matches_nothing
        );
        assert_eq!(
            error(&[("object_type", "model")]),
            "Invalid `object_type` 'model': use deployment or pipeline"
        );
    }
}
