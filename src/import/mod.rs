//! Bulk import: many create-or-update items, read as a stream (`reader`), validated one
//! by one and written in batches, one transaction a batch. The HTTP endpoint and the
//! `import` command drive the same `Importer`.

pub mod file;
pub mod reader;

pub use reader::{CountingReader, End, Item, Message};

use tokio::sync::mpsc::Receiver;

use crate::contacts::{ContactBody, ContactError, ContactSettings};
use crate::fields::malformed;
use crate::store::{DynStore, SpaceId, StoreError};

/// Batches the reader may hold ready beyond the one being written.
pub const READ_AHEAD: usize = 2;

/// The result of one item, in input order: whether it was created, and its cuRefNo.
#[derive(Debug)]
pub struct ItemResult {
    pub index: u64,
    pub outcome: Result<(bool, String), ContactError>,
}

/// Counts so far, and how the input ended once it has.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub items: u64,
    pub ok: u64,
    pub created: u64,
    pub failed: u64,
    /// The whole input was read and every batch reached the database.
    pub complete: bool,
    /// Why the import stopped early, when it did.
    pub stop: Option<Stop>,
}

/// Why an import stopped before the end of its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The input could not be read on (broken JSON, a read error).
    Input(String),
    /// The database is unreachable; nothing from here on was written.
    Unavailable,
    /// The database failed otherwise; nothing from here on was written.
    Internal(String),
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
                    End::Failed(message) => self.stop(Stop::Input(message)),
                }
                self.rx = None;
                None
            }
            None => {
                self.stop(Stop::Internal("the input reader stopped".into()));
                None
            }
        }
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    fn stop(&mut self, stop: Stop) {
        self.summary.complete = false;
        self.summary.stop = Some(stop);
        // Dropping the receiver stops the reader.
        self.rx = None;
    }

    async fn apply(&mut self, items: Vec<Item>) -> Vec<ItemResult> {
        let region = self.settings.phone_region;
        let mut writes = Vec::with_capacity(items.len());
        let mut results: Vec<ItemResult> = Vec::with_capacity(items.len());
        for item in items {
            let write =
                item.value.map_err(malformed).and_then(ContactBody::from_json).and_then(|body| body.into_write(region));
            let outcome = match write {
                Ok(w) => {
                    writes.push(w);
                    Ok((false, String::new()))
                }
                Err(e) => Err(ContactError::Input(e)),
            };
            results.push(ItemResult { index: item.index, outcome });
        }
        match self.store.import_contacts(self.space, &writes).await {
            Ok(written) => {
                let mut written = written.into_iter();
                for r in results.iter_mut().filter(|r| r.outcome.is_ok()) {
                    r.outcome = match written.next() {
                        Some(Ok(w)) => Ok((w.new_account, w.cu_ref_no)),
                        Some(Err(refusal)) => Err(ContactError::Refused(refusal)),
                        None => Err(StoreError::Other("the store returned fewer results than items".into()).into()),
                    };
                }
            }
            Err(e) => {
                let stop = match &e {
                    StoreError::Unavailable(_) => Stop::Unavailable,
                    other => {
                        tracing::error!(detail = %other, "import batch failed");
                        Stop::Internal(other.to_string())
                    }
                };
                self.stop(stop);
                for r in results.iter_mut().filter(|r| r.outcome.is_ok()) {
                    r.outcome = Err(ContactError::Store(e.clone()));
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
