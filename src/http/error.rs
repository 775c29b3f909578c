//! `ApiError`: every failure a client can see, and its one envelope
//! `{"success": false, "error": {code, message, field?, requestId}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::accounts::AccountError;
use crate::admin::AdminError;
use crate::auth::AuthError;
use crate::contacts::ContactError;
use crate::customers::CustomerError;
use crate::fields::{InputError, Problem};
use crate::normalize::{PasswordError, PASSWORD_MAX_CHARS};
use crate::store::{ContactRefusal, MergeRefusal, MergeSide, ProfileLimit, StoreError};

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
    /// 404 CUSTOMER_MERGED: the cuRefNo was merged into another, `mergedInto`.
    #[error("{field} was merged into {merged_into}")]
    CustomerMerged { field: &'static str, merged_into: String },
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
    /// 408 REQUEST_TIMEOUT: the client was too slow sending its request, or the answer
    /// took longer than the request timeout.
    #[error("the request took too long; send it again")]
    RequestTimeout,
    /// 413 PAYLOAD_TOO_LARGE
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 413 PAYLOAD_TOO_LARGE: more items or bytes than one import may carry.
    #[error("{0}")]
    ImportTooLarge(String),
    /// 400 IMPORT_TOO_MANY_ERRORS: an import stopped after this many failed items.
    #[error("the import stopped after {0} failed items; fix them and send the rest again")]
    ImportTooManyErrors(u64),
    /// 415 UNSUPPORTED_MEDIA_TYPE
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// 400 WEBHOOK_ENDPOINT_INVALID: a URL that is not http(s), or points where webhooks
    /// may not go.
    #[error("url: {0}")]
    WebhookEndpointInvalid(String),
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
            ApiError::CustomerMerged { .. } => "CUSTOMER_MERGED",
            ApiError::ManagerNotFound => "MANAGER_NOT_FOUND",
            ApiError::RouteNotFound(_) => "ROUTE_NOT_FOUND",
            ApiError::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            ApiError::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ApiError::RequestTimeout => "REQUEST_TIMEOUT",
            ApiError::PayloadTooLarge(_) | ApiError::ImportTooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::ImportTooManyErrors(_) => "IMPORT_TOO_MANY_ERRORS",
            ApiError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::WebhookEndpointInvalid(_) => "WEBHOOK_ENDPOINT_INVALID",
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
            | ApiError::WebhookEndpointInvalid(_)
            | ApiError::SelfMatch => StatusCode::BAD_REQUEST,
            ApiError::IdempotencyKeyReused => StatusCode::CONFLICT,
            ApiError::CustomerNotFound { .. }
            | ApiError::CustomerMerged { .. }
            | ApiError::ManagerNotFound
            | ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) | ApiError::ImportTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::ImportTooManyErrors(_) => StatusCode::BAD_REQUEST,
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
            | ApiError::CustomerNotFound { field }
            | ApiError::CustomerMerged { field, .. } => Some(field),
            ApiError::ManagerNotFound => Some("managerCuRefNo"),
            ApiError::WeakPassword(_) => Some("password"),
            ApiError::WebhookEndpointInvalid(_) => Some("url"),
            _ => None,
        }
    }

    pub fn invalid(message: impl Into<String>, field: Option<&str>) -> Self {
        ApiError::InvalidRequest { message: message.into(), field: field.map(str::to_owned) }
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
        if let ApiError::CustomerMerged { merged_into, .. } = &self {
            error["mergedInto"] = json!(merged_into);
        }
        if let ApiError::RateLimited { retry_after } = self {
            error["retry_after"] = json!(retry_after);
            let headers = [(axum::http::header::RETRY_AFTER, retry_after.to_string())];
            return (status, headers, axum::Json(json!({ "success": false, "error": error }))).into_response();
        }
        (status, axum::Json(json!({ "success": false, "error": error }))).into_response()
    }
}

// How each layer's errors read to a client: every mapping is here.

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) | StoreError::Aborted(_) => ApiError::Unavailable,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(err: InputError) -> Self {
        let (field, problem) = match err {
            InputError::Shape { message, field } => return ApiError::InvalidRequest { message, field },
            InputError::Field { field, problem } => (field, problem),
        };
        match problem {
            Problem::Missing => ApiError::invalid(format!("{field} is required"), Some(field)),
            Problem::Invalid(message) => ApiError::invalid(message, Some(field)),
            Problem::TooMany { max } => ApiError::invalid(format!("{field} may hold at most {max} items"), Some(field)),
            Problem::Email(e) => ApiError::InvalidEmail { field, reason: e.to_string() },
            Problem::Phone(e) => ApiError::InvalidPhone { field, reason: e.to_string() },
            Problem::Ip(e) => ApiError::InvalidIp { field, reason: e.to_string() },
            Problem::CuRefNo => ApiError::InvalidCuRefNo { field },
            Problem::IdentityId => ApiError::InvalidIdentityId { field },
            Problem::TooLong { max } => ApiError::ValueTooLong { field, max },
            Problem::Password(e @ PasswordError::Weak) => ApiError::WeakPassword(e.to_string()),
            Problem::Password(PasswordError::TooLong) => {
                ApiError::ValueTooLong { field: "password", max: PASSWORD_MAX_CHARS }
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        let refused = match err {
            AuthError::Missing => ApiError::KeyMissing,
            AuthError::Format => ApiError::KeyFormat,
            AuthError::Expired => ApiError::KeyExpired,
            AuthError::Revoked => ApiError::KeyRevoked,
            AuthError::RateLimited { retry_after } => ApiError::RateLimited { retry_after },
            AuthError::Forbidden(message) => ApiError::Forbidden(message),
            AuthError::Store(e) => return e.into(),
        };
        crate::telemetry::auth_failure(refused.code());
        refused
    }
}

impl From<CustomerError> for ApiError {
    fn from(err: CustomerError) -> Self {
        match err {
            CustomerError::NotFound => ApiError::CustomerNotFound { field: "cuRefNo" },
            CustomerError::ManagerNotFound => ApiError::ManagerNotFound,
            CustomerError::TargetNotFound => ApiError::CustomerNotFound { field: "customerCuRefNo" },
            CustomerError::SelfMatch => ApiError::SelfMatch,
            CustomerError::Store(e) => e.into(),
        }
    }
}

impl From<ContactError> for ApiError {
    fn from(err: ContactError) -> Self {
        match err {
            ContactError::Input(e) => e.into(),
            ContactError::Refused(refusal) => match refusal {
                ContactRefusal::NotFound => ApiError::CustomerNotFound { field: "cuRefNo" },
                ContactRefusal::ReferrerNotFound => ApiError::CustomerNotFound { field: "referralCuRefNo" },
                ContactRefusal::Merged(merged_into) => ApiError::CustomerMerged { field: "cuRefNo", merged_into },
                ContactRefusal::ReferrerMerged(merged_into) => {
                    ApiError::CustomerMerged { field: "referralCuRefNo", merged_into }
                }
                ContactRefusal::EmailTaken => {
                    ApiError::InvalidEmail { field: "email", reason: "the address belongs to another contact".into() }
                }
                ContactRefusal::PhoneTaken => ApiError::InvalidPhone {
                    field: "phone",
                    reason: "the number belongs to another contact without e-mail".into(),
                },
                ContactRefusal::SubscriptionTaken(id) => ApiError::invalid(
                    format!("subscription {id} belongs to another contact"),
                    Some("subscriptions.externalId"),
                ),
                ContactRefusal::PartnerIdTaken => {
                    ApiError::invalid("the partnerCustomerId belongs to another contact", Some("partnerCustomerId"))
                }
                ContactRefusal::AddressNotFound(id) => {
                    ApiError::invalid(format!("the contact has no address {id}"), Some("addresses.addressId"))
                }
                ContactRefusal::OverLimit(limit) => over_limit(limit),
                ContactRefusal::NoContactPoint => {
                    ApiError::invalid("a new contact needs an email or a phone", Some("email"))
                }
            },
            ContactError::MergeRefused(refusal) => match refusal {
                MergeRefusal::NotFound(MergeSide::Primary) => ApiError::CustomerNotFound { field: "primaryCuRefNo" },
                MergeRefusal::NotFound(MergeSide::Duplicate) => {
                    ApiError::CustomerNotFound { field: "duplicateCuRefNo" }
                }
                MergeRefusal::BothRegistered => ApiError::invalid(
                    "both customers have a storefront account with a password; one of them must be erased or \
                     merged first",
                    Some("duplicateCuRefNo"),
                ),
                MergeRefusal::OverLimit(limit) => over_limit(limit),
            },
            ContactError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            ContactError::Store(e) => e.into(),
        }
    }
}

/// A profile past one of its limits, named by the field that would carry it.
fn over_limit(limit: ProfileLimit) -> ApiError {
    let field = match limit {
        ProfileLimit::Meta => "meta",
        ProfileLimit::RunningSubscriptions => "subscriptions",
        ProfileLimit::ContactPoints => "alternateEmails",
        ProfileLimit::Addresses => "addresses",
        ProfileLimit::Groups => "groups",
    };
    ApiError::ValueTooLong { field, max: limit.max() }
}

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::Input(e) => e.into(),
            AdminError::Forbidden(message) => ApiError::Forbidden(message),
            AdminError::Endpoint(message) => ApiError::WebhookEndpointInvalid(message),
            AdminError::Store(e) => e.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::Store(e) => e.into(),
            AccountError::Hash(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        self.into_response_with_id(&id)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::contacts::ContactBody;
    use crate::normalize::Region;

    /// The code and field a client is shown for a create-or-update body.
    fn refusal(body: Value) -> (&'static str, Option<String>) {
        let err = ContactBody::from_json(body).and_then(|b| b.into_write(Region::CZ)).unwrap_err();
        let api = ApiError::from(err);
        (api.code(), api.field().map(str::to_owned))
    }

    #[test]
    fn bad_input_names_its_field() {
        for (body, code, field) in [
            (json!({}), "INVALID_REQUEST", "email"),
            (json!({"phone": "777 ABC"}), "INVALID_PHONE", "phone"),
            (json!({"email": "a@b.c", "alternatePhones": ["1"]}), "INVALID_PHONE", "alternatePhones"),
            (json!({"email": "x"}), "INVALID_EMAIL", "email"),
            (json!({"cuRefNo": "short"}), "INVALID_CU_REF_NO", "cuRefNo"),
            (json!({"email": "a@example.com", "referralCuRefNo": "x"}), "INVALID_CU_REF_NO", "referralCuRefNo"),
            (json!({"email": "a@example.com", "firstName": "x".repeat(101)}), "VALUE_TOO_LONG", "firstName"),
            (json!({"email": "a@example.com", "meta": {"k": "x".repeat(20_000)}}), "VALUE_TOO_LONG", "meta"),
            (json!({"email": "a@example.com", "premium": "yes"}), "INVALID_REQUEST", "premium"),
            (json!({"email": "a@example.com", "subscriptions": [{}]}), "INVALID_REQUEST", "subscriptions.externalId"),
            (
                json!({"email": "a@example.com", "subscriptions": [{"externalId": "s", "status": "on"}]}),
                "INVALID_REQUEST",
                "subscriptions.status",
            ),
            (
                json!({"email": "a@example.com", "subscriptions": [{"externalId": "s", "validUntil": "tomorrow"}]}),
                "INVALID_REQUEST",
                "subscriptions.validUntil",
            ),
            (json!({"email": "a@example.com", "customerRealIp": "1.2.3"}), "INVALID_IP_ADDRESS", "customerRealIp"),
        ] {
            assert_eq!(refusal(body.clone()), (code, Some(field.to_owned())), "{body}");
        }
    }
}
