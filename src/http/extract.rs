//! Request extractors that run the key pipeline and parse input so that every failure,
//! malformed JSON included, becomes an `ApiError` envelope.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::AppState;
use crate::auth::{Caller, Scope};
use crate::fields::from_value;
use crate::ratelimit::RateSlot;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A body that must be read to find its key is refused (401) past this size, unread.
pub const KEYLESS_BODY_LIMIT: usize = 64 * 1024;

/// An operation's input, naming the scope its key needs. The route table reads the
/// scope from here (`Routes::keyed`), and the extractors check it.
pub trait Endpoint {
    const SCOPE: Scope;
}

/// Runs the key pipeline for endpoint `E` on a key chosen by precedence.
pub async fn authorize<E: Endpoint>(state: &AppState, key: Option<&str>, parts: &Parts) -> Result<Caller, ApiError> {
    let client = super::serve::client(parts);
    Ok(state.keys.authorize(key, E::SCOPE, client, parts.extensions.get::<RateSlot>()).await?)
}

/// The client's address, when the server knows it (see `serve::client_address`).
pub struct Peer(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(super::serve::client(parts)))
    }
}

/// A keyed JSON body: the key may be in the query, in the body's `apiKey`, or a Bearer.
pub struct KeyedJson<T> {
    pub caller: Caller,
    pub body: T,
}

/// A keyed query string: the key may be in the query or a Bearer.
pub struct KeyedQuery<T> {
    pub caller: Caller,
    pub query: T,
}

/// A blank key counts as no key, so it never shadows a real one sent another way.
fn present(key: &str) -> Option<String> {
    let key = key.trim();
    (!key.is_empty()).then(|| key.to_owned())
}

fn query_key(parts: &Parts) -> Option<String> {
    query_param(parts.uri.query(), "apiKey").and_then(|v| present(&v))
}

/// The first value of the query parameter `name`, decoded (as `KeyedQuery` reads them).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn bearer_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| present(token)).flatten()
}

/// A key sent outside the body: the query parameter wins over the Bearer header.
pub fn request_key(parts: &Parts) -> Option<String> {
    query_key(parts).or_else(|| bearer_key(&parts.headers))
}

/// The body's media type, lower-cased and without parameters; `None` when not declared.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// `application/json` or any `application/…+json`.
pub fn is_json(mime: &str) -> bool {
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Whether reading a body failed because the client paused longer than allowed.
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Why a body could not be read: the client stopped sending it, or it is too large.
fn body_error(err: axum::Error, too_large: ApiError) -> ApiError {
    if is_body_timeout(&err) {
        return ApiError::RequestTimeout;
    }
    too_large
}

/// Reads a JSON object of at most `limit` bytes; `too_large` is the answer past it.
async fn read_json_object(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    too_large: fn() -> ApiError,
) -> Result<Map<String, Value>, ApiError> {
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| body_error(e, too_large()))?;
    let blank = bytes.iter().all(u8::is_ascii_whitespace);
    match media_type(headers).map(|m| is_json(&m)) {
        Some(false) => return Err(ApiError::UnsupportedMediaType),
        None if !blank => return Err(ApiError::UnsupportedMediaType),
        _ => {}
    }
    if blank {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("the request body must be a JSON object", None)),
        Err(e) => Err(ApiError::invalid(format!("the request body is not valid JSON: {e}"), None)),
    }
}

impl<T> FromRequest<AppState> for KeyedJson<T>
where
    T: DeserializeOwned + Endpoint,
{
    type Rejection = ApiError;

    /// A key in the query or the header is checked before the body is read, so a
    /// stranger's body costs nothing. Only a request without one has its body read to
    /// find the key, and that body may be at most `KEYLESS_BODY_LIMIT`.
    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let (query, bearer) = (query_key(&parts), bearer_key(&parts.headers));
        // A key in the query or the header is tried first. A refused one still lets a
        // small body name the key (the body's key wins over the header's), as a keyless
        // request would.
        let early = match query.as_deref().or(bearer.as_deref()) {
            Some(key) => Some(authorize::<T>(state, Some(key), &parts).await),
            None => None,
        };
        let map = match &early {
            Some(Ok(_)) => {
                read_json_object(&parts.headers, body, BODY_LIMIT, || ApiError::PayloadTooLarge(BODY_LIMIT)).await?
            }
            Some(Err(_)) if query.is_some() => return Err(early.and_then(Result::err).expect("a refusal")),
            _ => match read_json_object(&parts.headers, body, KEYLESS_BODY_LIMIT, || ApiError::KeyMissing).await {
                Ok(map) => map,
                // Too large to look for a key in: the header's key is the one refused.
                Err(ApiError::KeyMissing) => return Err(early.and_then(Result::err).unwrap_or(ApiError::KeyMissing)),
                Err(e) => return Err(e),
            },
        };
        let body_key = match map.get("apiKey") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => present(s),
            Some(_) => return Err(ApiError::invalid("apiKey must be a string", Some("apiKey"))),
        };
        let caller = match (early, body_key) {
            (Some(Ok(caller)), _) if query.is_some() => caller,
            (Some(Ok(caller)), Some(key)) if Some(&key) == bearer.as_ref() => caller,
            (_, Some(key)) => authorize::<T>(state, Some(&key), &parts).await?,
            (Some(outcome), None) => outcome?,
            (None, None) => authorize::<T>(state, None, &parts).await?,
        };
        let body = from_value(Value::Object(map))?;
        Ok(KeyedJson { caller, body })
    }
}

impl<T> FromRequestParts<AppState> for KeyedQuery<T>
where
    T: DeserializeOwned + Endpoint,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let key = request_key(parts);
        let caller = authorize::<T>(state, key.as_deref(), parts).await?;
        let mut map = Map::new();
        if let Some(q) = parts.uri.query() {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                map.entry(k.into_owned()).or_insert(Value::String(v.into_owned()));
            }
        }
        let query = from_value(Value::Object(map))?;
        Ok(KeyedQuery { caller, query })
    }
}
