//! `POST /api/v1/customer/import`: a JSON array or NDJSON of create-or-update items,
//! streamed in and written in batches. Results go to a temporary file as they come, so
//! neither the body nor the results are ever held whole, and the response (summary
//! first, then one result per item) is sent once every item is written.

use std::io::SeekFrom;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::{stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;
use super::extract::{authorize, is_body_timeout, is_json, media_type, request_key, Endpoint};
use super::AppState;
use crate::auth::Scope;
use crate::import::{Importer, ItemResult, Stop, Summary};

/// The import's input is the body itself: items, not a request object.
pub struct ImportItems;

impl Endpoint for ImportItems {
    const SCOPE: Scope = Scope::CustomerImport;
}

/// JSON for an array, NDJSON (under any of its common names) for one item a line.
fn accepted(headers: &HeaderMap) -> bool {
    const NDJSON: [&str; 4] =
        ["application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"];
    media_type(headers).is_some_and(|m| is_json(&m) || NDJSON.contains(&m.as_str()))
}

/// One item's result: `{"index", "ok": true, "newAccount", "cuRefNo"}` or
/// `{"index", "ok": false, "error": {code, message, field?}}`. Written straight to the
/// results, one a line: no JSON value is built for an item written.
#[derive(Serialize)]
#[serde(untagged)]
pub enum ItemJson<'a> {
    Written {
        index: u64,
        ok: bool,
        #[serde(rename = "newAccount")]
        new_account: bool,
        #[serde(rename = "cuRefNo")]
        cu_ref_no: &'a str,
    },
    Failed {
        index: u64,
        ok: bool,
        error: Value,
    },
}

pub fn item_json(result: &ItemResult) -> ItemJson<'_> {
    match &result.outcome {
        Ok((new_account, cu_ref_no)) => {
            ItemJson::Written { index: result.index, ok: true, new_account: *new_account, cu_ref_no }
        }
        Err(e) => ItemJson::Failed { index: result.index, ok: false, error: item_error(e) },
    }
}

/// An item's message is at most this many characters, so an answer to garbage is never
/// much larger than the garbage.
const ITEM_MESSAGE_CHARS: usize = 200;

pub fn item_error(e: &crate::contacts::ContactError) -> Value {
    let error = ApiError::from(e.clone());
    let mut message = error.to_string();
    if let Some((cut, _)) = message.char_indices().nth(ITEM_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    let mut json = serde_json::json!({ "code": error.code(), "message": message });
    if let Some(field) = error.field() {
        json["field"] = Value::from(field);
    }
    if let ApiError::CustomerMerged { merged_into, .. } = &error {
        json["mergedInto"] = Value::from(merged_into.as_str());
    }
    json
}

/// The summary as the response begins with it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SummaryJson {
    items: u64,
    ok: u64,
    created: u64,
    failed: u64,
    complete: bool,
    error: Option<StopJson>,
}

#[derive(Serialize)]
struct StopJson {
    code: &'static str,
    message: String,
}

const NOT_WRITTEN: &str = "the database failed; items from here on were not written";

/// How a stop reads to a client: its code and message.
fn stop_error(stop: &Stop) -> ApiError {
    match stop {
        Stop::Input(message) => ApiError::invalid(message.clone(), None),
        Stop::Stalled => ApiError::RequestTimeout,
        Stop::TooLarge(message) => ApiError::ImportTooLarge(message.clone()),
        Stop::TooManyErrors(max) => ApiError::ImportTooManyErrors(*max),
        Stop::Unavailable => ApiError::Unavailable,
        Stop::Internal(detail) => ApiError::Internal(format!("{NOT_WRITTEN}: {detail}")),
    }
}

impl From<&Summary> for SummaryJson {
    fn from(s: &Summary) -> Self {
        let error = s.stop.as_ref().map(|stop| StopJson {
            code: stop_error(stop).code(),
            message: match stop {
                Stop::Unavailable | Stop::Internal(_) => NOT_WRITTEN.into(),
                other => stop_error(other).to_string(),
            },
        });
        SummaryJson { items: s.items, ok: s.ok, created: s.created, failed: s.failed, complete: s.complete, error }
    }
}

fn io_error(e: std::io::Error) -> ApiError {
    ApiError::Internal(format!("import results file: {e}"))
}

pub async fn import(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    // The body is the items, so the key comes from the query or the Authorization header.
    let key = request_key(&parts);
    let caller = authorize::<ImportItems>(&state, key.as_deref(), &parts).await?;
    if !accepted(&parts.headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let stalled = Arc::new(AtomicBool::new(false));
    let seen = stalled.clone();
    let body = body.into_data_stream().map_err(move |e| {
        if is_body_timeout(&e) {
            seen.store(true, Ordering::Relaxed);
        }
        std::io::Error::other(e)
    });
    let input = SyncIoBridge::new(StreamReader::new(body));
    let mut importer = Importer::start(state.store.clone(), caller.space, state.contacts, input);

    let file = tempfile::tempfile().map_err(io_error)?;
    let mut out = BufWriter::new(tokio::fs::File::from_std(file));
    let mut first = true;
    let mut lines = Vec::new();
    while let Some(results) = importer.next().await {
        lines.clear();
        for r in results {
            if !std::mem::take(&mut first) {
                lines.extend_from_slice(b",\n");
            }
            serde_json::to_writer(&mut lines, &item_json(&r)).map_err(|e| ApiError::Internal(e.to_string()))?;
        }
        out.write_all(&lines).await.map_err(io_error)?;
    }
    out.flush().await.map_err(io_error)?;
    let mut file = out.into_inner();
    file.seek(SeekFrom::Start(0)).await.map_err(io_error)?;

    let mut summary = importer.summary().clone();
    if stalled.load(Ordering::Relaxed) && matches!(summary.stop, Some(Stop::Input(_))) {
        summary.stop = Some(Stop::Stalled);
    }
    // Nothing was written: the whole request failed, and says so with the usual envelope.
    if summary.items == 0 {
        if let Some(stop) = &summary.stop {
            return Err(stop_error(stop));
        }
    }
    let head = serde_json::json!({ "success": summary.complete, "summary": SummaryJson::from(&summary) });
    let mut head = serde_json::to_vec(&head).map_err(|e| ApiError::Internal(e.to_string()))?;
    head.pop(); // the closing brace: the results follow
    head.extend_from_slice(b",\"results\":[\n");
    let parts = stream::iter([Ok(axum::body::Bytes::from(head))])
        .chain(ReaderStream::new(file))
        .chain(stream::iter([Ok(axum::body::Bytes::from_static(b"\n]}\n"))]));
    let mut response = Body::from_stream(parts).into_response();
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
