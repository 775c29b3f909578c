//! `ApiError`: every failure a client can see, and its one envelope
//! `{"success": false, "error": {code, message, field?, requestId}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::normalize::{EmailError, IpError, PasswordError, PhoneError, TooLong, PASSWORD_MAX_CHARS};
use crate::store::StoreError;

tokio::task_local! {
    /// The current request's id, so every error envelope can carry it.
    pub static REQUEST_ID: String;
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401 PUBLIC_API_KEY_DOES_NOT_EXIST: no key, or no such key.
    #[error("no API key was given, or it does not exist")]
    KeyMissing,
    /// 401 PUBLIC_API_KEY_INVALID_FORMAT
    #[error("the API key must be 32 characters: PROD, DEV_ or ROOT and 28 letters or digits")]
    KeyFormat,
    /// 401 PUBLIC_API_KEY_EXPIRED
    #[error("the API key has expired")]
    KeyExpired,
    /// 401 PUBLIC_API_KEY_REVOKED
    #[error("the API key has been revoked")]
    KeyRevoked,
    /// 403 PUBLIC_API_KEY_FORBIDDEN
    #[error("{0}")]
    Forbidden(String),
    /// 429 RATE_LIMIT_EXCEEDED, with `Retry-After` and `retry_after` in the envelope.
    #[error("rate limit exceeded; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// 400 INVALID_REQUEST: unparseable body, wrong type, missing required field.
    #[error("{message}")]
    InvalidRequest { message: String, field: Option<String> },
    /// 400 INVALID_EMAIL
    #[error("{field} is not a valid e-mail address: {reason}")]
    InvalidEmail { field: &'static str, reason: String },
    /// 400 INVALID_PHONE
    #[error("{field} is not a valid phone number: {reason}")]
    InvalidPhone { field: &'static str, reason: String },
    /// 400 INVALID_IP_ADDRESS
    #[error("{field} is not a valid IP address: {reason}")]
    InvalidIp { field: &'static str, reason: String },
    /// 400 INVALID_CU_REF_NO
    #[error("{field} must be 16 letters or digits")]
    InvalidCuRefNo { field: &'static str },
    /// 400 INVALID_IDENTITY_ID
    #[error("{field} must be 32 letters or digits")]
    InvalidIdentityId { field: &'static str },
    /// 400 VALUE_TOO_LONG
    #[error("{field} is longer than {max} characters")]
    ValueTooLong { field: &'static str, max: usize },
    /// 400 WEAK_PASSWORD: fewer than 8 characters, or no upper-case letter, lower-case
    /// letter or digit.
    #[error("{0}")]
    WeakPassword(String),
    /// 400 SELF_MATCH_NOT_ALLOWED
    #[error("a customer cannot be matched with itself")]
    SelfMatch,
    /// 404 CUSTOMER_NOT_FOUND
    #[error("no customer with this cuRefNo exists")]
    CustomerNotFound { field: &'static str },
    /// 404 MANAGER_NOT_FOUND
    #[error("no customer with the managerCuRefNo exists")]
    ManagerNotFound,
    /// 404 ROUTE_NOT_FOUND
    #[error("no route {0}")]
    RouteNotFound(String),
    /// 405 METHOD_NOT_ALLOWED
    #[error("this route does not accept the method {0}")]
    MethodNotAllowed(String),
    /// 409 IDEMPOTENCY_KEY_REUSED: an `Idempotency-Key` replayed with a different request.
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    /// 413 PAYLOAD_TOO_LARGE
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 415 UNSUPPORTED_MEDIA_TYPE
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// 503 SERVICE_UNAVAILABLE: the database is unreachable; it recovers by itself.
    #[error("the service is temporarily unavailable, try again shortly")]
    Unavailable,
    /// 500 INTERNAL_ERROR: a bug. Logged with the request id; details never sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::KeyMissing => "PUBLIC_API_KEY_DOES_NOT_EXIST",
            ApiError::KeyFormat => "PUBLIC_API_KEY_INVALID_FORMAT",
            ApiError::KeyExpired => "PUBLIC_API_KEY_EXPIRED",
            ApiError::KeyRevoked => "PUBLIC_API_KEY_REVOKED",
            ApiError::Forbidden(_) => "PUBLIC_API_KEY_FORBIDDEN",
            ApiError::RateLimited { .. } => "RATE_LIMIT_EXCEEDED",
            ApiError::InvalidRequest { .. } => "INVALID_REQUEST",
            ApiError::InvalidEmail { .. } => "INVALID_EMAIL",
            ApiError::InvalidIp { .. } => "INVALID_IP_ADDRESS",
            ApiError::InvalidPhone { .. } => "INVALID_PHONE",
            ApiError::InvalidCuRefNo { .. } => "INVALID_CU_REF_NO",
            ApiError::InvalidIdentityId { .. } => "INVALID_IDENTITY_ID",
            ApiError::ValueTooLong { .. } => "VALUE_TOO_LONG",
            ApiError::WeakPassword(_) => "WEAK_PASSWORD",
            ApiError::SelfMatch => "SELF_MATCH_NOT_ALLOWED",
            ApiError::CustomerNotFound { .. } => "CUSTOMER_NOT_FOUND",
            ApiError::ManagerNotFound => "MANAGER_NOT_FOUND",
            ApiError::RouteNotFound(_) => "ROUTE_NOT_FOUND",
            ApiError::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            ApiError::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ApiError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::Unavailable => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::KeyMissing | ApiError::KeyFormat | ApiError::KeyExpired | ApiError::KeyRevoked => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InvalidRequest { .. }
            | ApiError::InvalidEmail { .. }
            | ApiError::InvalidIp { .. }
            | ApiError::InvalidPhone { .. }
            | ApiError::InvalidCuRefNo { .. }
            | ApiError::InvalidIdentityId { .. }
            | ApiError::ValueTooLong { .. }
            | ApiError::WeakPassword(_)
            | ApiError::SelfMatch => StatusCode::BAD_REQUEST,
            ApiError::IdempotencyKeyReused => StatusCode::CONFLICT,
            ApiError::CustomerNotFound { .. } | ApiError::ManagerNotFound | ApiError::RouteNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The one input at fault, where there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::InvalidRequest { field, .. } => field.as_deref(),
            ApiError::InvalidEmail { field, .. }
            | ApiError::InvalidIp { field, .. }
            | ApiError::InvalidPhone { field, .. }
            | ApiError::InvalidCuRefNo { field }
            | ApiError::InvalidIdentityId { field }
            | ApiError::ValueTooLong { field, .. }
            | ApiError::CustomerNotFound { field } => Some(field),
            ApiError::ManagerNotFound => Some("managerCuRefNo"),
            ApiError::WeakPassword(_) => Some("password"),
            _ => None,
        }
    }

    pub fn invalid(message: impl Into<String>, field: Option<&str>) -> Self {
        ApiError::InvalidRequest { message: message.into(), field: field.map(str::to_owned) }
    }

    pub fn missing(field: &str) -> Self {
        ApiError::invalid(format!("{field} is required"), Some(field))
    }

    pub fn email(field: &'static str) -> impl FnOnce(EmailError) -> ApiError {
        move |e| ApiError::InvalidEmail { field, reason: e.to_string() }
    }

    pub fn ip(field: &'static str) -> impl FnOnce(IpError) -> ApiError {
        move |e| ApiError::InvalidIp { field, reason: e.to_string() }
    }

    pub fn phone(field: &'static str) -> impl FnOnce(PhoneError) -> ApiError {
        move |e| ApiError::InvalidPhone { field, reason: e.to_string() }
    }

    pub fn too_long(field: &'static str) -> impl FnOnce(TooLong) -> ApiError {
        move |e| ApiError::ValueTooLong { field, max: e.max }
    }

    pub fn password(e: PasswordError) -> ApiError {
        match e {
            PasswordError::Weak => ApiError::WeakPassword(e.to_string()),
            PasswordError::TooLong => ApiError::ValueTooLong { field: "password", max: PASSWORD_MAX_CHARS },
        }
    }

    pub fn from_store_ref(err: &StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => ApiError::Unavailable,
            other => ApiError::Internal(other.to_string()),
        }
    }

    /// Renders the envelope for a request id known to the caller.
    pub fn into_response_with_id(self, request_id: &str) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(detail) => tracing::error!(request_id, detail = %detail, "internal error"),
            ApiError::Unavailable => tracing::warn!(request_id, "database unavailable"),
            _ => {}
        }
        let mut error = json!({ "code": self.code(), "message": self.to_string(), "requestId": request_id });
        if let Some(field) = self.field() {
            error["field"] = json!(field);
        }
        if let ApiError::RateLimited { retry_after } = self {
            error["retry_after"] = json!(retry_after);
            let headers = [(axum::http::header::RETRY_AFTER, retry_after.to_string())];
            return (status, headers, axum::Json(json!({ "success": false, "error": error }))).into_response();
        }
        (status, axum::Json(json!({ "success": false, "error": error }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::from_store_ref(&err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        self.into_response_with_id(&id)
    }
}
