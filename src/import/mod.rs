//! Bulk import: many create-or-update items, read as a stream (`reader`), validated one
//! by one and written in batches, one transaction a batch. The HTTP endpoint and the
//! `import` command drive the same `Importer`.

pub mod file;
pub mod reader;

pub use reader::{CountingReader, End, Item, Message};

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::Receiver;

use crate::contacts::{ContactBody, ContactError, ContactSettings};
use crate::fields::malformed;
use crate::normalize::Region;
use crate::store::{BatchKeys, ContactWrite, DynStore, ImportTicket, SpaceId, StoreError};

/// Batches the reader may hold ready beyond the one being written.
pub const READ_AHEAD: usize = 2;

/// How much one import may carry; see the README's settings table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    pub max_items: u64,
    pub max_bytes: u64,
    /// The import stops once this many items have failed.
    pub max_failed: u64,
}

impl ImportLimits {
    /// No limit: the command line's own files.
    pub const NONE: ImportLimits = ImportLimits { max_items: u64::MAX, max_bytes: u64::MAX, max_failed: u64::MAX };
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self { max_items: 1_000_000, max_bytes: 1 << 30, max_failed: 1_000 }
    }
}

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
    /// The input paused longer than its sender is allowed to.
    Stalled,
    /// More items or bytes than one import may carry.
    TooLarge(String),
    /// `max_failed` items failed; the rest was not read.
    TooManyErrors(u64),
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
    /// The reader's messages, their items already prepared on its thread.
    rx: Option<Receiver<Prepared>>,
    /// The next message, taken from the reader while the batch before it was written.
    ahead: Option<Prepared>,
    /// The next batch, begun while the one before it was written.
    begun: Option<Begun>,
    read: Arc<AtomicU64>,
    summary: Summary,
    /// Batches begun while the one before them was written.
    begun_beside: u64,
}

/// An item read and turned into a write, or the reason it cannot be one.
type PreparedItem = (u64, Result<ContactWrite, ContactError>);

/// A batch handed to the store: the results of its items so far (those that failed
/// validation, and places for the written ones), and the batch being written.
struct Begun {
    results: Vec<ItemResult>,
    ticket: ImportTicket,
}

/// A message of the reader with its items prepared.
type Prepared = Message<Vec<PreparedItem>>;

/// Validates and normalises `items`: pure work, done on the reader's thread, so that a
/// batch is ready to be written by the time the one before it is.
fn prepare(items: Vec<reader::Item>, region: Region) -> Vec<PreparedItem> {
    items
        .into_iter()
        .map(|item| {
            let write = item
                .value
                .map_err(malformed)
                .and_then(ContactBody::from_json)
                .and_then(|body| body.into_write(region))
                .map_err(ContactError::Input);
            (item.index, write)
        })
        .collect()
}

impl Importer {
    /// Reads `input` on the blocking pool, bounded by the settings' import limits; each
    /// `next` applies one batch of it to `space`.
    pub fn start<R: Read + Send + 'static>(
        store: DynStore,
        space: SpaceId,
        settings: ContactSettings,
        input: R,
    ) -> Self {
        let read = Arc::new(AtomicU64::new(0));
        let input = CountingReader::new(input, read.clone()).with_limit(settings.import_limits.max_bytes);
        let region = settings.phone_region;
        let rx =
            reader::spawn_reader_with(input, settings.import_batch, READ_AHEAD, move |items| prepare(items, region));
        Importer {
            store,
            space,
            settings,
            rx: Some(rx),
            ahead: None,
            begun: None,
            read,
            summary: Summary::default(),
            begun_beside: 0,
        }
    }

    /// Bytes of the input read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// The results of the next batch, in order; `None` once the input has ended or the
    /// import has stopped (see `summary`).
    pub async fn next(&mut self) -> Option<Vec<ItemResult>> {
        if let Some(begun) = self.begun.take() {
            return Some(self.finish(begun).await);
        }
        let prepared = match self.ahead.take() {
            Some(prepared) => Some(prepared),
            None => self.rx.as_mut()?.recv().await,
        };
        match prepared {
            Some(Message::Batch(items)) => {
                let begun = self.begin(items);
                Some(self.finish(begun).await)
            }
            Some(Message::End(end)) => {
                let limit = self.settings.import_limits.max_bytes;
                match end {
                    End::Complete => self.summary.complete = true,
                    End::Failed(message) if self.bytes_read() > limit => self.stop(Stop::TooLarge(message)),
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

    /// How many batches were begun while the one before them was written.
    pub fn batches_begun_beside(&self) -> u64 {
        self.begun_beside
    }

    fn stop(&mut self, stop: Stop) {
        self.summary.complete = false;
        self.summary.stop = Some(stop);
        // Dropping the receiver stops the reader; a batch begun ahead is rolled back.
        self.rx = None;
        self.ahead = None;
        self.begun = None;
    }

    /// Takes as many of `items` as the limits admit, and hands their writes to the store.
    fn begin(&mut self, mut items: Vec<PreparedItem>) -> Begun {
        let limits = self.settings.import_limits;
        let room = limits.max_items.saturating_sub(self.summary.items);
        if items.len() as u64 > room {
            items.truncate(room as usize);
            self.stop(Stop::TooLarge(format!("an import may carry at most {} items", limits.max_items)));
        }
        let mut failed = self.summary.failed;
        let mut writes = Vec::with_capacity(items.len());
        let mut results: Vec<ItemResult> = Vec::with_capacity(items.len());
        for (index, write) in items {
            if failed >= limits.max_failed {
                self.stop(Stop::TooManyErrors(limits.max_failed));
                break;
            }
            let outcome = match write {
                Ok(w) => {
                    writes.push(w);
                    Ok((false, String::new()))
                }
                Err(e) => {
                    failed += 1;
                    Err(e)
                }
            };
            results.push(ItemResult { index, outcome });
        }
        Begun { results, ticket: self.store.start_import(self.space, writes) }
    }

    /// Whether the limits take every one of `items`, and go on after them, even if every
    /// item of the batch `before` (being written) fails: then the limits decide the same
    /// before and after that batch's outcome is known.
    fn admits_all(&self, items: &[PreparedItem], before: &Begun) -> bool {
        let limits = self.settings.import_limits;
        let invalid = items.iter().filter(|(_, w)| w.is_err()).count() as u64;
        let seen = self.summary.items + before.results.len() as u64;
        let failed = self.summary.failed + before.results.len() as u64;
        seen + items.len() as u64 <= limits.max_items && failed + invalid < limits.max_failed
    }

    /// Waits for the batch `begun` to be written and committed, and gives its results.
    /// Meanwhile the next batch, if the reader has it ready, is begun beside this one when the limits take it whole and its items name
    /// none of the keys of this batch's rows (`BatchKeys`): two transactions, and the
    /// database's work on each, overlap. It commits once this one has.
    async fn finish(&mut self, mut begun: Begun) -> Vec<ItemResult> {
        // Every batch before this one is committed: it may commit as soon as it is written.
        begun.ticket.commit_when_written();
        match self.rx.as_mut().and_then(|rx| rx.try_recv().ok()) {
            Some(Message::Batch(items)) if self.admits_all(&items, &begun) => {
                let independent = match begun.ticket.keys().await {
                    Some(keys) => BatchKeys::of(items.iter().filter_map(|(_, w)| w.as_ref().ok())).is_disjoint(keys),
                    None => false,
                };
                if independent {
                    self.begun = Some(self.begin(items));
                    self.begun_beside += 1;
                } else {
                    self.ahead = Some(Message::Batch(items));
                }
            }
            Some(prepared) => self.ahead = Some(prepared),
            None => {}
        }
        let Begun { mut results, ticket } = begun;
        let written = self.store.finish_import(self.space, ticket).await;
        match written {
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
        let limits = self.settings.import_limits;
        let (mut created, mut updated, mut refused) = (0, 0, 0);
        for r in &results {
            match &r.outcome {
                Ok((true, _)) => created += 1,
                Ok((false, _)) => updated += 1,
                Err(_) => refused += 1,
            }
        }
        self.summary.items += created + updated + refused;
        self.summary.ok += created + updated;
        self.summary.created += created;
        self.summary.failed += refused;
        crate::telemetry::import_items(created, updated, refused);
        if self.summary.failed >= limits.max_failed && self.summary.stop.is_none() {
            self.stop(Stop::TooManyErrors(limits.max_failed));
        }
        // This batch is committed, and the import goes on: the next one may commit too.
        if let Some(next) = &mut self.begun {
            next.ticket.commit_when_written();
        }
        results
    }
}
