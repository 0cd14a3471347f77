//! Errors in API Gateway's shape: a status, `x-amzn-ErrorType: <Name>` and `{"message": "..."}`.
//!
//! Messages name fields and ids, never a key value.

use crate::error::{ConfigError, ConfigErrorKind};
use crate::import::ImportError;
use crate::store::{ManageError, ManageErrorKind};
use crate::wire::{ShapeError, ShapeErrorKind};
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

/// An admin call refused, rendered as API Gateway renders its errors.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    aws_type: &'static str,
    message: String,
    /// Seconds for `Retry-After`, when the caller should wait.
    retry_after: Option<u64>,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The API Gateway error types this API sends, with their status (from the service model).
const BAD_REQUEST: (StatusCode, &str) = (StatusCode::BAD_REQUEST, "BadRequestException");
const NOT_FOUND: (StatusCode, &str) = (StatusCode::NOT_FOUND, "NotFoundException");
const CONFLICT: (StatusCode, &str) = (StatusCode::CONFLICT, "ConflictException");
const UNAVAILABLE: (StatusCode, &str) = (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailableException");

impl ApiError {
    fn new((status, aws_type): (StatusCode, &'static str), message: impl Into<String>) -> Self {
        Self { status, aws_type, message: message.into(), retry_after: None }
    }

    /// 408 `RequestTimeoutException`: the body did not arrive in time.
    pub(crate) fn request_timeout(message: impl Into<String>) -> Self {
        Self::new((StatusCode::REQUEST_TIMEOUT, "RequestTimeoutException"), message)
    }

    /// 429 `TooManyRequestsException`, API Gateway's throttling answer, with `Retry-After`.
    pub(crate) fn too_many_requests(retry_after_secs: u64) -> Self {
        let mut e = Self::new((StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException"), "Too Many Requests");
        e.retry_after = Some(retry_after_secs);
        e
    }

    /// This error with `Retry-After: secs`.
    pub(crate) fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400 `BadRequestException`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(BAD_REQUEST, message)
    }

    /// 404 `NotFoundException`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(NOT_FOUND, message)
    }

    /// 409 `ConflictException`.
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(CONFLICT, message)
    }

    /// 503 `ServiceUnavailableException`: what the call needs could not be reached.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(UNAVAILABLE, message)
    }

    /// 403 with the type and message an authenticator chose.
    pub(crate) fn forbidden(aws_type: &'static str, message: String) -> Self {
        Self { status: StatusCode::FORBIDDEN, aws_type, message, retry_after: None }
    }

    /// API Gateway's answer for an unknown key id.
    pub(crate) fn no_such_key() -> Self {
        Self::not_found("Invalid API Key identifier specified")
    }

    /// API Gateway's answer for an unknown usage plan id.
    pub(crate) fn no_such_plan() -> Self {
        Self::not_found("Invalid Usage Plan ID specified")
    }

    /// A request member that is not as the service model says: `field: reason`.
    pub(crate) fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::bad_request(format!("{field}: {reason}"))
    }

    /// The status (for tests of this module).
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The message (for tests of this module).
    #[cfg(test)]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl From<ConfigError> for ApiError {
    /// Unknown references are 404, duplicates 409, anything else 400; the message is the
    /// error's `field: reason` (which never holds a key value).
    fn from(e: ConfigError) -> Self {
        let kind = match e.kind() {
            ConfigErrorKind::UnknownReference => NOT_FOUND,
            ConfigErrorKind::Duplicate => CONFLICT,
            _ => BAD_REQUEST,
        };
        let message = if e.field().is_empty() { e.reason().to_owned() } else { e.to_string() };
        Self::new(kind, message)
    }
}

impl From<ManageError> for ApiError {
    /// A store's refusal: an unknown key or plan gets API Gateway's own message; conflicts are
    /// 409, bad input 400, a store that failed 503 `ServiceUnavailableException` (the store's
    /// reason is logged, not sent).
    fn from(e: ManageError) -> Self {
        match e.kind() {
            ManageErrorKind::NotFound if e.field() == "keyId" && e.reason().starts_with("no API key") => {
                Self::no_such_key()
            }
            ManageErrorKind::NotFound if e.field() == "usagePlanId" && e.reason().starts_with("no usage plan") => {
                Self::no_such_plan()
            }
            ManageErrorKind::NotFound => Self::new(NOT_FOUND, e.to_string()),
            ManageErrorKind::Conflict => Self::new(CONFLICT, e.to_string()),
            ManageErrorKind::Unavailable => {
                tracing::warn!(error = %e, "admin: the key store failed");
                Self::unavailable("The key store is unavailable; nothing was changed by this call. Try again.")
            }
            _ => Self::new(BAD_REQUEST, e.to_string()),
        }
    }
}

impl From<ApiError> for ManageError {
    /// An admin refusal raised inside a store's change (a patch that does not apply), carried
    /// through the store and back unchanged.
    fn from(e: ApiError) -> Self {
        let kind = match e.status {
            StatusCode::NOT_FOUND => ManageErrorKind::NotFound,
            StatusCode::CONFLICT => ManageErrorKind::Conflict,
            _ => ManageErrorKind::Invalid,
        };
        ManageError::new(kind, "", e.message)
    }
}

impl From<ShapeError> for ApiError {
    /// A request member that does not fit its shape: 400 (409 for a duplicate, e.g. a method
    /// throttle listed twice), with the message `member: reason`.
    fn from(e: ShapeError) -> Self {
        let kind = match e.kind() {
            ShapeErrorKind::Duplicate => CONFLICT,
            ShapeErrorKind::Invalid => BAD_REQUEST,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message }).to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-amzn-errortype", HeaderValue::from_static(self.aws_type));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_map_by_kind() {
        let e = ApiError::from(ConfigError::new(ConfigErrorKind::UnknownReference, "keys[0].plans[0]", "no plan"));
        assert_eq!((e.status(), e.message()), (StatusCode::NOT_FOUND, "keys[0].plans[0]: no plan"));
        let e = ApiError::from(ConfigError::new(ConfigErrorKind::Duplicate, "", "twice"));
        assert_eq!((e.status(), e.message()), (StatusCode::CONFLICT, "twice"));
        assert_eq!(ApiError::from(ConfigError::invalid("rate", "bad")).status(), StatusCode::BAD_REQUEST);
    }
}
