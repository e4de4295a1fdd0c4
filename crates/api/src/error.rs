//! The one place where errors become HTTP responses: a status and a JSON body
//! `{"error": "<message for a person>"}`, which is what the official clients show.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use ubiops_domain::ValidationError;
use ubiops_storage::StorageError;

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong and what to fix, for a person.
    pub error: String,
}

#[derive(Debug)]
pub enum ApiError {
    /// Any other client error, with the status to send (400, 413, 415, ...).
    Client(StatusCode, String),
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    /// A dependency (the database) is down; retrying later should work.
    Unavailable,
    /// A bug or an unexpected fault; the cause is logged, not sent.
    Internal,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::Client(StatusCode::BAD_REQUEST, message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::NotFound(message.into())
    }
}

impl ApiError {
    /// The status and the message sent in the `{"error"}` body.
    pub fn status_and_message(self) -> (StatusCode, String) {
        match self {
            ApiError::Client(status, message) => (status, message),
            ApiError::Unauthorized(message) => (StatusCode::UNAUTHORIZED, message),
            ApiError::Forbidden(message) => (StatusCode::FORBIDDEN, message),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is temporarily unavailable; please retry shortly".to_owned(),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error; the server log has the details".to_owned(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = self.status_and_message();
        (status, Json(ErrorBody { error: message })).into_response()
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        ApiError::bad_request(error.message())
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::NotFound(message) => ApiError::NotFound(message),
            StorageError::Rejected(message) => ApiError::bad_request(message),
            StorageError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                ApiError::Unavailable
            }
            StorageError::Database(cause) => {
                tracing::error!(error = %cause, "database error");
                ApiError::Internal
            }
        }
    }
}

impl From<ubiops_files::FileError> for ApiError {
    fn from(error: ubiops_files::FileError) -> Self {
        match error {
            ubiops_files::FileError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "object storage unavailable");
                ApiError::Unavailable
            }
            ubiops_files::FileError::NotFound => {
                tracing::error!("a stored deployment file is missing from object storage");
                ApiError::not_found("The stored deployment file is missing")
            }
            other => {
                tracing::error!(error = %other, "file storage error");
                ApiError::Internal
            }
        }
    }
}

/// axum's own rejections carry a good status and message, but as plain text:
/// keep both and send them as our JSON error body.
macro_rules! from_rejection {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for ApiError {
            fn from(rejection: $rejection) -> Self {
                ApiError::Client(rejection.status(), rejection.body_text())
            }
        }
    )*};
}
from_rejection!(PathRejection, QueryRejection);

/// Wrong types and missing fields are a plain 400 here (axum says 422), with
/// the JSON path of the offending value; size and content-type problems keep
/// their own status (413, 415).
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(error) => {
                let text = error.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                    .unwrap_or(&text);
                ApiError::bad_request(format!("Invalid request body: {detail}"))
            }
            JsonRejection::JsonSyntaxError(error) => {
                let text = error.body_text();
                let detail = text
                    .strip_prefix("Failed to parse the request body as JSON: ")
                    .unwrap_or(&text);
                ApiError::bad_request(format!("The request body is not valid JSON: {detail}"))
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::Client(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Send the request body as JSON with `Content-Type: application/json`".to_owned(),
            ),
            JsonRejection::BytesRejection(error)
                if error.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::Client(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "The request body is larger than the limit of {} MiB for JSON requests",
                        crate::MAX_JSON_BODY_BYTES / (1024 * 1024)
                    ),
                )
            }
            other => ApiError::Client(other.status(), other.body_text()),
        }
    }
}
