//! One error type for every route, mapped to HTTP once.
//!
//! A handler returns `ApiError`; its response carries an [`ErrorReport`] extension and a
//! provisional body. The `envelope` middleware then renders the final body with the PID of
//! the service that failed and writes the error to the user-error-log table, so every
//! error — including those made by tower layers (413, 408) or the router (404, 405) —
//! leaves in the one shape `{"PID", "status": "error", "code", "message"}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use k8or::jobs::JobsError;
use k8or::model::FieldError;
use k8or::pid::{known, Pid};
use k8or::store::{BlobError, QueueError, TableError, ViewPortError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    /// Any other malformed request: a bad multipart body, a bad query string.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("this route needs an `Authorization: Bearer <token>` header")]
    MissingToken,
    #[error("the bearer token is not valid")]
    InvalidToken,
    #[error("the bearer token has expired")]
    TokenExpired,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("no static data for ICAO code {0:?}")]
    UnknownIcao(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("the request took too long")]
    Timeout,
    #[error("{0}")]
    Conflict(String),
    /// `limit`: the limit in bytes, where the code that refused the body knows it.
    #[error("the body is over the {}", size_limit(.limit))]
    PayloadTooLarge { limit: Option<u64> },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request breaks {} rule(s)", .0.len())]
    Validation(Vec<FieldError>),
    #[error("imageData is not a base64 data URL: {0}")]
    InvalidDataUrl(String),
    #[error("the image is empty")]
    EmptyImage,
    /// The caller made more new UIDs and jobs than their quota lets them, for now.
    #[error("over the quota of {per_minute} new UIDs and jobs a minute; try again in {retry_after_secs} s")]
    RateLimited {
        per_minute: u32,
        retry_after_secs: u64,
    },
    /// A backend is unreachable or refused for now; the client may retry.
    #[error("a backend is unavailable, try again later")]
    Unavailable(String),
    /// Readiness: which backends failed (their errors are logged).
    #[error("not ready: {} failed", .0.join(", "))]
    NotReady(Vec<&'static str>),
    /// Anything else. The cause is logged, never shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

fn size_limit(limit: &Option<u64>) -> String {
    limit.map_or_else(|| "size limit".to_owned(), |n| format!("{n}-byte limit"))
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_) | Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::MissingToken | Self::InvalidToken | Self::TokenExpired => {
                StatusCode::UNAUTHORIZED
            }
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::UnknownIcao(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::InvalidDataUrl(_) | Self::EmptyImage => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Unavailable(_) | Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid-json",
            Self::BadRequest { code, .. } => code,
            Self::MissingToken | Self::InvalidToken => "unauthorized",
            Self::TokenExpired => "token-expired",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::UnknownIcao(_) => "unknown-icao-code",
            Self::MethodNotAllowed(_) => "method-not-allowed",
            Self::Timeout => "request-timeout",
            Self::RateLimited { .. } => "rate-limited",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::Validation(_) => "validation-failed",
            Self::InvalidDataUrl(_) => "invalid-data-url",
            Self::EmptyImage => "empty-image",
            Self::Unavailable(_) | Self::NotReady(_) => "backend-unavailable",
            Self::Internal(_) => "internal",
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    pub fn unsupported_media_type(expected: &str, got: Option<&str>) -> Self {
        Self::UnsupportedMediaType(format!(
            "Content-Type must be {expected} (got {})",
            got.unwrap_or("none")
        ))
    }

    fn report(&self) -> ErrorReport {
        ErrorReport {
            status: self.status(),
            code: self.code(),
            message: self.to_string(),
            details: match self {
                Self::Validation(errors) => errors.clone(),
                _ => Vec::new(),
            },
            retry_after: match self {
                Self::RateLimited {
                    retry_after_secs, ..
                } => Some(*retry_after_secs),
                _ => None,
            },
        }
    }
}

/// What the envelope middleware needs to render and log an error.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldError>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ErrorReport {
    /// The report of an error response that no handler described (made by a tower layer
    /// or the router).
    pub fn from_status(status: StatusCode) -> Self {
        let error = match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: None },
            StatusCode::NOT_FOUND => ApiError::NotFound("no such route".into()),
            StatusCode::METHOD_NOT_ALLOWED => {
                ApiError::MethodNotAllowed("this route does not take that method".into())
            }
            StatusCode::REQUEST_TIMEOUT => ApiError::Timeout,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::UnsupportedMediaType("unsupported Content-Type".into())
            }
            StatusCode::UNAUTHORIZED => ApiError::InvalidToken,
            StatusCode::FORBIDDEN => ApiError::Forbidden("forbidden".into()),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(String::new()),
            s if s.is_server_error() => {
                ApiError::Internal(anyhow::anyhow!("unhandled {s} from a layer"))
            }
            s => ApiError::BadRequest {
                code: "bad-request",
                message: s.canonical_reason().unwrap_or("bad request").to_owned(),
            },
        };
        let mut report = error.report();
        report.status = status;
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            report.message = "the body is over the size limit".into();
        }
        report
    }

    pub fn render(&self, pid: Pid) -> Response {
        let body = ErrorBody {
            pid: pid.to_string(),
            status: "error".into(),
            code: self.code.into(),
            message: self.message.clone(),
            details: self.details.iter().map(FieldErrorBody::from).collect(),
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self.clone());
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = %format!("{cause:#}"), "internal error");
        } else if let Self::Unavailable(cause) = &self {
            tracing::warn!(error = %cause, "backend unavailable");
        }
        // Provisional PID; the envelope middleware puts the route's own.
        self.report()
            .render(Pid::constant(known::UPLOAD_LOGIC_ERROR))
    }
}

/// The error body every route answers with.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error PID of the service that failed (`…-c20bre24-EEE`).
    #[serde(rename = "PID")]
    #[schema(example = "c8bms06-c20bre24-EEE")]
    pub pid: String,
    /// Always `error`.
    #[schema(example = "error")]
    pub status: String,
    /// A stable code, e.g. `validation-failed`, `unauthorized`, `not-found`.
    #[schema(example = "validation-failed")]
    pub code: String,
    pub message: String,
    /// Every broken rule of a `validation-failed` error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldErrorBody>,
}

/// One broken rule: the JSON path of the field and why.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct FieldErrorBody {
    #[schema(example = "imageMetadata.imageVersion")]
    pub field: String,
    #[schema(example = "must look like v0-0-01")]
    pub message: String,
}

impl From<&FieldError> for FieldErrorBody {
    fn from(e: &FieldError) -> Self {
        Self {
            field: e.field.clone(),
            message: e.message.clone(),
        }
    }
}

impl From<TableError> for ApiError {
    fn from(e: TableError) -> Self {
        match e {
            // Only a query's `cursor` comes from the client; the rest is the store's.
            TableError::InvalidCursor(why) => {
                tracing::debug!(%why, "a query cursor was refused");
                Self::BadRequest {
                    code: "invalid-query",
                    message: "cursor is not one this API gave out".into(),
                }
            }
            // The store's own keys are short: an over-long one is a name the client sent.
            TableError::KeyTooLong(why) => Self::BadRequest {
                code: "key-too-long",
                message: format!("a name or id in the request is too long to look up ({why})"),
            },
            e if e.is_retryable() => Self::Unavailable(e.to_string()),
            e => Self::internal(e),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        if e.is_retryable() {
            Self::Unavailable(e.to_string())
        } else {
            Self::internal(e)
        }
    }
}

impl From<ViewPortError> for ApiError {
    fn from(e: ViewPortError) -> Self {
        if e.is_retryable() {
            Self::Unavailable(e.to_string())
        } else {
            Self::internal(e)
        }
    }
}

impl From<JobsError> for ApiError {
    fn from(e: JobsError) -> Self {
        match e {
            JobsError::AlreadyExists(id) => Self::Conflict(format!("job {id} already exists")),
            JobsError::Table(e) => e.into(),
            e if e.is_retryable() => Self::Unavailable(e.to_string()),
            e => Self::internal(e),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::TooLarge { limit } => Self::PayloadTooLarge { limit: Some(limit) },
            e if e.is_retryable() => Self::Unavailable(e.to_string()),
            e => Self::internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_statuses_match() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::InvalidJson("x".into()), 400, "invalid-json"),
            (ApiError::MissingToken, 401, "unauthorized"),
            (ApiError::TokenExpired, 401, "token-expired"),
            (ApiError::Forbidden("no".into()), 403, "forbidden"),
            (ApiError::UnknownIcao("1".into()), 404, "unknown-icao-code"),
            (
                ApiError::PayloadTooLarge { limit: Some(1) },
                413,
                "payload-too-large",
            ),
            (
                ApiError::unsupported_media_type("application/json", None),
                415,
                "unsupported-media-type",
            ),
            (ApiError::Validation(vec![]), 422, "validation-failed"),
            (ApiError::EmptyImage, 422, "empty-image"),
            (
                ApiError::RateLimited {
                    per_minute: 1,
                    retry_after_secs: 1,
                },
                429,
                "rate-limited",
            ),
            (
                ApiError::Unavailable("down".into()),
                503,
                "backend-unavailable",
            ),
            (
                ApiError::internal(anyhow::anyhow!("secret")),
                500,
                "internal",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status().as_u16(), e.code()), (status, code), "{e:?}");
        }
    }

    #[test]
    fn a_500_says_nothing_internal() {
        let e = ApiError::internal(anyhow::anyhow!("password=hunter2 at db.internal"));
        assert_eq!(e.to_string(), "internal error");
        let report = e.report();
        assert!(!report.message.contains("hunter2"));
    }

    #[test]
    fn retryable_backend_errors_are_503_and_others_500() {
        let e: ApiError = TableError::Unavailable("timeout".into()).into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let e: ApiError = TableError::Backend("bad".into()).into();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let e: ApiError = BlobError::TooLarge { limit: 5 }.into();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
