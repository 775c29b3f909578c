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

/// An operation's input, naming the scope its key needs. The route table reads the
/// scope from here (`Routes::keyed`), and the extractors check it.
pub trait Endpoint {
    const SCOPE: Scope;
}

/// Runs the key pipeline for endpoint `E` on a key chosen by precedence.
pub async fn authorize<E: Endpoint>(state: &AppState, key: Option<&str>, parts: &Parts) -> Result<Caller, ApiError> {
    Ok(state.keys.authorize(key, E::SCOPE, parts.extensions.get::<RateSlot>()).await?)
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

/// The body's media type, lower-cased and without parameters; `None` when not declared.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// `application/json` or any `application/…+json`.
pub fn is_json(mime: &str) -> bool {
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

async fn read_json_object(headers: &HeaderMap, body: Body) -> Result<Map<String, Value>, ApiError> {
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(ApiError::PayloadTooLarge(BODY_LIMIT));
    }
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| ApiError::PayloadTooLarge(BODY_LIMIT))?;
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

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let map = read_json_object(&parts.headers, body).await?;
        let body_key = match map.get("apiKey") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => present(s),
            Some(_) => return Err(ApiError::invalid("apiKey must be a string", Some("apiKey"))),
        };
        let key = query_key(&parts).or(body_key).or_else(|| bearer_key(&parts.headers));
        let caller = authorize::<T>(state, key.as_deref(), &parts).await?;
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
