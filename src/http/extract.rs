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
use crate::ratelimit::RateSlot;

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A request type that names the scope its endpoint needs.
pub trait Endpoint {
    const SCOPE: Scope;
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
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "apiKey").and_then(|(_, v)| present(&v))
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

fn is_json(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let mime = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    Some(mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")))
}

/// Deserialises JSON into `T`, naming the field at fault.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let field = (path != ".").then_some(path);
        let message = match &field {
            Some(f) => format!("{f}: {}", err.inner()),
            None => err.inner().to_string(),
        };
        ApiError::InvalidRequest { message, field }
    })
}

async fn read_json_object(headers: &HeaderMap, body: Body) -> Result<Map<String, Value>, ApiError> {
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(ApiError::PayloadTooLarge(BODY_LIMIT));
    }
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| ApiError::PayloadTooLarge(BODY_LIMIT))?;
    let blank = bytes.iter().all(u8::is_ascii_whitespace);
    match is_json(headers) {
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

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let map = read_json_object(&parts.headers, body).await?;
        let body_key = match map.get("apiKey") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => present(s),
            Some(_) => return Err(ApiError::invalid("apiKey must be a string", Some("apiKey"))),
        };
        let key = query_key(&parts).or(body_key).or_else(|| bearer_key(&parts.headers));
        let caller = state.keys.authorize(key.as_deref(), T::SCOPE, parts.extensions.get::<RateSlot>()).await?;
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
        let caller = state.keys.authorize(key.as_deref(), T::SCOPE, parts.extensions.get::<RateSlot>()).await?;
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
