//! `POST /api/v1/customer/import`: a JSON array or NDJSON of create-or-update items,
//! streamed in and written in batches. Results go to a temporary file as they come, so
//! neither the body nor the results are ever held whole, and the response (summary
//! first, then one result per item) is sent once every item is written.

use std::io::SeekFrom;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::{stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use super::error::ApiError;
use super::extract::request_key;
use super::AppState;
use crate::auth::Scope;
use crate::import::{reader, Importer, READ_AHEAD};
use crate::ratelimit::RateSlot;

/// JSON for an array, NDJSON (under any of its common names) for one item a line.
fn accepted(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let mime = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(
        mime.as_str(),
        "application/json" | "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines"
    ) || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn io_error(e: std::io::Error) -> ApiError {
    ApiError::Internal(format!("import results file: {e}"))
}

pub async fn import(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    // The body is the items, so the key comes from the query or the Authorization header.
    let key = request_key(&parts);
    let caller = state.keys.authorize(key.as_deref(), Scope::CustomerImport, parts.extensions.get::<RateSlot>()).await?;
    if !accepted(&parts.headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let input = SyncIoBridge::new(StreamReader::new(body.into_data_stream().map_err(std::io::Error::other)));
    let rx = reader::spawn_reader(input, state.contacts.import_batch, READ_AHEAD);
    let mut importer = Importer::new(state.store.clone(), caller.space, state.contacts, rx);

    let file = tempfile::tempfile().map_err(io_error)?;
    let mut out = BufWriter::new(tokio::fs::File::from_std(file));
    let mut first = true;
    while let Some(results) = importer.next().await {
        for r in results {
            let line = serde_json::to_vec(&r.to_json()).map_err(|e| ApiError::Internal(e.to_string()))?;
            if !std::mem::take(&mut first) {
                out.write_all(b",\n").await.map_err(io_error)?;
            }
            out.write_all(&line).await.map_err(io_error)?;
        }
    }
    out.flush().await.map_err(io_error)?;
    let mut file = out.into_inner();
    file.seek(SeekFrom::Start(0)).await.map_err(io_error)?;

    let summary = importer.summary().clone();
    // Nothing was written: the whole request failed, and says so with the usual envelope.
    if summary.items == 0 {
        if let Some(stop) = &summary.error {
            return Err(match stop.code {
                "SERVICE_UNAVAILABLE" => ApiError::Unavailable,
                "INVALID_REQUEST" => ApiError::invalid(stop.message.clone(), None),
                _ => ApiError::Internal(stop.message.clone()),
            });
        }
    }
    let head = serde_json::json!({ "success": summary.complete, "summary": summary });
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
