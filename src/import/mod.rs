//! Bulk import: many create-or-update items, read as a stream (`reader`), validated one
//! by one and written in batches, one transaction a batch. The HTTP endpoint and the
//! `import` command drive the same `Importer`.

pub mod file;
pub mod reader;

pub use reader::{CountingReader, End, Item, Message};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc::Receiver;

use crate::contacts::{refusal_error, ContactBody, ContactSettings};
use crate::http::error::ApiError;
use crate::http::extract::from_value;
use crate::store::{DynStore, SpaceId, StoreError};

/// Batches the reader may hold ready beyond the one being written.
pub const READ_AHEAD: usize = 2;

/// The result of one item, in input order.
#[derive(Debug)]
pub struct ItemResult {
    pub index: u64,
    pub outcome: Result<(bool, String), ApiError>,
}

impl ItemResult {
    /// `{"index", "ok": true, "newAccount", "cuRefNo"}` or `{"index", "ok": false, "error": {code, message, field?}}`.
    pub fn to_json(&self) -> Value {
        match &self.outcome {
            Ok((new_account, cu_ref_no)) => {
                serde_json::json!({ "index": self.index, "ok": true, "newAccount": new_account, "cuRefNo": cu_ref_no })
            }
            Err(e) => {
                let mut error = serde_json::json!({ "code": e.code(), "message": e.to_string() });
                if let Some(field) = e.field() {
                    error["field"] = Value::from(field);
                }
                serde_json::json!({ "index": self.index, "ok": false, "error": error })
            }
        }
    }
}

/// Counts so far, and how the input ended once it has.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub items: u64,
    pub ok: u64,
    pub created: u64,
    pub failed: u64,
    /// The whole input was read and every batch reached the database.
    pub complete: bool,
    /// Why the import stopped early, when it did.
    pub error: Option<StopReason>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StopReason {
    pub code: &'static str,
    pub message: String,
}

/// Applies the batches of a reader to a space, one batch per `next` call.
pub struct Importer {
    store: DynStore,
    space: SpaceId,
    settings: ContactSettings,
    rx: Option<Receiver<Message>>,
    summary: Summary,
}

impl Importer {
    pub fn new(store: DynStore, space: SpaceId, settings: ContactSettings, rx: Receiver<Message>) -> Self {
        Importer { store, space, settings, rx: Some(rx), summary: Summary::default() }
    }

    /// The results of the next batch, in order; `None` once the input has ended or the
    /// import has stopped (see `summary`).
    pub async fn next(&mut self) -> Option<Vec<ItemResult>> {
        let rx = self.rx.as_mut()?;
        match rx.recv().await {
            Some(Message::Batch(items)) => Some(self.apply(items).await),
            Some(Message::End(end)) => {
                match end {
                    End::Complete => self.summary.complete = true,
                    End::Failed(message) => self.stop("INVALID_REQUEST", message),
                }
                self.rx = None;
                None
            }
            None => {
                self.stop("INTERNAL_ERROR", "the input reader stopped".into());
                None
            }
        }
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    fn stop(&mut self, code: &'static str, message: String) {
        self.summary.complete = false;
        self.summary.error = Some(StopReason { code, message });
        // Dropping the receiver stops the reader.
        self.rx = None;
    }

    async fn apply(&mut self, items: Vec<Item>) -> Vec<ItemResult> {
        let mut writes = Vec::with_capacity(items.len());
        let mut results: Vec<ItemResult> = Vec::with_capacity(items.len());
        for item in items {
            let outcome = match item.value {
                Ok(value @ Value::Object(_)) => {
                    from_value::<ContactBody>(value).and_then(|b| b.into_write(self.settings.phone_region))
                }
                Ok(_) => Err(ApiError::invalid("an item must be a JSON object", None)),
                Err(message) => Err(ApiError::invalid(message, None)),
            };
            results.push(ItemResult {
                index: item.index,
                outcome: outcome.map(|w| {
                    writes.push(w);
                    (false, String::new())
                }),
            });
        }
        match self.store.import_contacts(self.space, &writes).await {
            Ok(written) => {
                let mut written = written.into_iter();
                for r in results.iter_mut().filter(|r| r.outcome.is_ok()) {
                    r.outcome = match written.next() {
                        Some(Ok(w)) => Ok((w.new_account, w.cu_ref_no)),
                        Some(Err(refusal)) => Err(refusal_error(refusal)),
                        None => Err(ApiError::Internal("the store returned fewer results than items".into())),
                    };
                }
            }
            Err(e) => {
                let unavailable = matches!(e, StoreError::Unavailable(_));
                let error = ApiError::from(e);
                if let ApiError::Internal(detail) = &error {
                    tracing::error!(detail = %detail, "import batch failed");
                }
                self.stop(error.code(), "the database failed; items from here on were not written".into());
                for r in results.iter_mut().filter(|r| r.outcome.is_ok()) {
                    r.outcome = Err(if unavailable { ApiError::Unavailable } else { ApiError::Internal(String::new()) });
                }
            }
        }
        for r in &results {
            self.summary.items += 1;
            match &r.outcome {
                Ok((created, _)) => {
                    self.summary.ok += 1;
                    self.summary.created += u64::from(*created);
                }
                Err(_) => self.summary.failed += 1,
            }
        }
        results
    }
}
