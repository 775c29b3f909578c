//! Input fields as clients send them, read into the newtypes of `normalize`: every
//! endpoint, the import items and the command line parse their fields here, so each
//! field's rules and limits are written once. A refusal names the field at fault.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::normalize::{
    clean_text, ClientIp, CuRefNo, Email, EmailError, IdentityId, IpError, Password, PasswordError, Phone, PhoneError,
    Region, TextKind,
};
use crate::store::Patch;

/// The longest accepted values (in characters, after cleaning) and the longest lists.
pub mod limits {
    pub const NAME: usize = 100;
    pub const COMPANY_NAME: usize = 255;
    pub const REGISTRATION_NUMBER: usize = 64;
    pub const TAX_ID: usize = 64;
    pub const NOTICE: usize = 2000;
    pub const GROUP_NAME: usize = 100;
    pub const GROUPS: usize = 50;
    pub const ALTERNATES: usize = crate::store::profile_limits::CONTACT_POINTS;
    pub const SUBSCRIPTIONS: usize = 50;
    pub const SUBSCRIPTION_FIELD: usize = 255;
    pub const EXTERNAL_ID: usize = 255;
    pub const ADDRESSES: usize = crate::store::profile_limits::ADDRESSES;
    pub const ADDRESS_FIELD: usize = 255;
    /// A `meta` patch as sent, serialised, in bytes (the merged `meta` has the same limit).
    pub const META_BYTES: usize = crate::store::profile_limits::META_BYTES;
    pub const CREDIT_REASON: usize = 255;
    /// Largest credit movement in one call, either way; keeps balances far from overflow.
    pub const CREDIT_AMOUNT: i64 = 1_000_000_000_000;
    pub const IDEMPOTENCY_KEY: usize = 255;
    pub const ORGANISATION_NAME: usize = 200;
    pub const KEY_LABEL: usize = 200;
    pub const RATE_LIMIT_PER_MINUTE: std::ops::RangeInclusive<i64> = 1..=1_000_000;
    /// Page sizes of every list (relations, audit log).
    pub const PAGE_DEFAULT: i64 = 50;
    pub const PAGE_MAX: i64 = 500;
    /// A search prefix (`q` of the customer list), in characters.
    pub const SEARCH_QUERY: usize = 200;
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// The JSON does not have the expected shape; `field` is the path at fault, if any.
    #[error("{message}")]
    Shape { message: String, field: Option<String> },
    /// One field's value is not acceptable.
    #[error("{field}: {problem}")]
    Field { field: &'static str, problem: Problem },
}

/// What is wrong with a field's value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("is required")]
    Missing,
    /// Anything else, said in a sentence of its own.
    #[error("{0}")]
    Invalid(String),
    #[error("is not a valid e-mail address: {0}")]
    Email(EmailError),
    #[error("is not a valid phone number: {0}")]
    Phone(PhoneError),
    #[error("is not a valid IP address: {0}")]
    Ip(IpError),
    #[error("must be 16 letters or digits")]
    CuRefNo,
    #[error("must be 32 letters or digits")]
    IdentityId,
    #[error("is longer than {max} characters")]
    TooLong { max: usize },
    #[error("may hold at most {max} items")]
    TooMany { max: usize },
    #[error("{0}")]
    Password(PasswordError),
}

pub type InputResult<T> = Result<T, InputError>;

/// A refusal of `field` for `problem`.
pub fn refuse(field: &'static str, problem: Problem) -> InputError {
    InputError::Field { field, problem }
}

/// A refusal of `field`, in a sentence.
pub fn invalid(field: &'static str, message: impl Into<String>) -> InputError {
    refuse(field, Problem::Invalid(message.into()))
}

/// A refusal of the input as a whole.
pub fn malformed(message: impl Into<String>) -> InputError {
    InputError::Shape { message: message.into(), field: None }
}

/// Deserialises JSON into `T`, naming the path at fault.
pub fn from_value<T: DeserializeOwned>(value: Value) -> InputResult<T> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let field = (path != ".").then_some(path);
        let message = match &field {
            Some(f) => format!("{f}: {}", err.inner()),
            None => err.inner().to_string(),
        };
        InputError::Shape { message, field }
    })
}

pub fn required<T>(value: Option<T>, field: &'static str) -> InputResult<T> {
    value.ok_or(refuse(field, Problem::Missing))
}

pub fn cu_ref_no(value: &str, field: &'static str) -> InputResult<CuRefNo> {
    CuRefNo::parse(value).map_err(|_| refuse(field, Problem::CuRefNo))
}

pub fn required_cu_ref_no(value: Option<&str>, field: &'static str) -> InputResult<CuRefNo> {
    cu_ref_no(required(value, field)?, field)
}

pub fn identity(value: Option<&str>, field: &'static str) -> InputResult<IdentityId> {
    IdentityId::parse(required(value, field)?).map_err(|_| refuse(field, Problem::IdentityId))
}

pub fn email(value: &str, field: &'static str) -> InputResult<Email> {
    Email::parse(value).map_err(|e| refuse(field, Problem::Email(e)))
}

pub fn required_email(value: Option<&str>, field: &'static str) -> InputResult<Email> {
    email(required(value, field)?, field)
}

pub fn phone(value: &str, region: Region, field: &'static str) -> InputResult<Phone> {
    Phone::parse(value, region).map_err(|e| refuse(field, Problem::Phone(e)))
}

/// The client's address; none given reads as the loopback address.
pub fn ip(value: Option<&str>, field: &'static str) -> InputResult<ClientIp> {
    ClientIp::parse(value).map_err(|e| refuse(field, Problem::Ip(e)))
}

/// The client a storefront call is made for: `customerRealIp` when the calling backend
/// passes it, else the connection's peer.
pub fn client_ip(value: Option<&str>, peer: Option<std::net::IpAddr>, field: &'static str) -> InputResult<ClientIp> {
    match (value, peer) {
        (Some(value), _) => ip(Some(value), field),
        (None, Some(peer)) => ip(Some(&peer.to_string()), field),
        (None, None) => ip(None, field),
    }
}

/// Cleaned text of `kind`; `None` when absent or nothing is left after cleaning.
pub fn text_as(value: Option<&str>, field: &'static str, kind: TextKind, max: usize) -> InputResult<Option<String>> {
    value
        .map(|v| clean_text(v, kind, max).map_err(|e| refuse(field, Problem::TooLong { max: e.max })))
        .transpose()
        .map(Option::flatten)
}

/// Cleaned plain text (`text_as` with `TextKind::Plain`).
pub fn text(value: Option<&str>, field: &'static str, max: usize) -> InputResult<Option<String>> {
    text_as(value, field, TextKind::Plain, max)
}

/// A text field of a write: absent keeps, `null` or empty clears, a value is cleaned.
pub fn text_patch(
    value: &Patch<String>,
    field: &'static str,
    kind: TextKind,
    max: usize,
) -> InputResult<Patch<String>> {
    value.as_ref().map(|v| text_as(v.as_deref(), field, kind, max)).transpose()
}

/// A person's first and last name: given each, or from a full `name` split at its first
/// space where one of them is not given.
pub fn person_name(
    full: Option<&str>,
    first: Option<&str>,
    last: Option<&str>,
) -> InputResult<(Option<String>, Option<String>)> {
    let name = |v: Option<&str>, field| text_as(v, field, TextKind::Name, limits::NAME);
    let full = name(full, "name")?;
    let (from_full_first, from_full_last) = match full.as_deref().map(|n| n.split_once(' ').unwrap_or((n, ""))) {
        Some((f, l)) => (Some(f.to_owned()), (!l.is_empty()).then(|| l.to_owned())),
        None => (None, None),
    };
    let first = name(first, "firstName")?.or(from_full_first);
    let last = name(last, "lastName")?.or(from_full_last.and_then(|l| name(Some(&l), "name").ok().flatten()));
    Ok((first, last))
}

pub fn at_most<T>(list: Option<Vec<T>>, field: &'static str, max: usize) -> InputResult<Option<Vec<T>>> {
    match list {
        Some(l) if l.len() > max => Err(refuse(field, Problem::TooMany { max })),
        other => Ok(other),
    }
}

/// A password, checked by `check` (a new password's strength, or only its length).
pub fn password(value: Option<&str>, check: fn(&str) -> Result<Password, PasswordError>) -> InputResult<Password> {
    check(required(value, "password")?).map_err(|e| refuse("password", Problem::Password(e)))
}

/// An RFC 3339 time.
pub fn time(value: &str, field: &'static str, example: &str) -> InputResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid(field, format!("{field} must be an RFC 3339 time, e.g. {example}")))
}

/// `true` or `false`.
pub fn flag(value: &str, field: &'static str) -> InputResult<bool> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(field, format!("{field} must be true or false"))),
    }
}

/// A credit movement: a non-zero whole amount within `CREDIT_AMOUNT` either way.
pub fn credit_amount(value: Option<i64>) -> InputResult<i64> {
    let amount = required(value, "amount")?;
    if amount == 0 || amount.abs() > limits::CREDIT_AMOUNT {
        let max = limits::CREDIT_AMOUNT;
        return Err(invalid("amount", format!("amount must be a non-zero integer between -{max} and {max}")));
    }
    Ok(amount)
}

/// The `Idempotency-Key` header as sent: 1 to `IDEMPOTENCY_KEY` printable ASCII characters.
pub fn idempotency_key(value: Option<&[u8]>) -> InputResult<Option<String>> {
    let Some(value) = value else { return Ok(None) };
    let key = std::str::from_utf8(value)
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= limits::IDEMPOTENCY_KEY && k.bytes().all(|b| b.is_ascii_graphic()));
    match key {
        Some(k) => Ok(Some(k.to_owned())),
        None => Err(invalid(
            "Idempotency-Key",
            format!("Idempotency-Key must be 1 to {} printable ASCII characters", limits::IDEMPOTENCY_KEY),
        )),
    }
}

/// A row id given as text (a query parameter): a positive integer.
pub fn id(value: &str, field: &'static str) -> InputResult<i64> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid(field, format!("{field} must be a positive integer")))
}

/// A page size: `PAGE_DEFAULT` when absent, else 1 to `PAGE_MAX`.
pub fn page_limit(value: Option<&str>) -> InputResult<i64> {
    let Some(value) = value else { return Ok(limits::PAGE_DEFAULT) };
    value
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=limits::PAGE_MAX).contains(n))
        .ok_or_else(|| invalid("limit", format!("limit must be 1 to {}", limits::PAGE_MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limits() {
        assert_eq!(page_limit(None), Ok(limits::PAGE_DEFAULT));
        assert_eq!(page_limit(Some("1")), Ok(1));
        assert_eq!(page_limit(Some("500")), Ok(500));
        for bad in ["0", "501", "-1", "x", ""] {
            assert!(matches!(page_limit(Some(bad)), Err(InputError::Field { field: "limit", .. })), "{bad}");
        }
    }

    #[test]
    fn text_patch_tells_absent_from_cleared() {
        let name = |v: Patch<String>| text_patch(&v, "firstName", TextKind::Name, limits::NAME);
        assert_eq!(name(None), Ok(None));
        assert_eq!(name(Some(None)), Ok(Some(None)));
        assert_eq!(name(Some(Some("  ".into()))), Ok(Some(None)));
        assert_eq!(name(Some(Some(" jan ".into()))), Ok(Some(Some("Jan".into()))));
    }
}
