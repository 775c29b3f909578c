//! Create-or-update of a whole batch of contacts in a constant number of statements: one
//! prefetch of every row an item could touch (customers locked), the items decided one
//! by one in memory, in order, each seeing the ones before it, and one write of the
//! outcome, a statement per kind of change. The single create-or-update is a batch of
//! one, so every rule lives here once.
//!
//! - `prefetch`: the reads, into a `State`;
//! - `decide`: the rules, on the `State` alone (no database);
//! - `write`: the outcome, including the profile's stored lists, computed here rather
//!   than re-read from the rows just written.
//!
//! Rows go to the database as a fixed set of parameters (a column each on PostgreSQL, one
//! JSON array on SQLite) and lists as one JSON parameter each, so the statements are
//! static text and no batch size reaches a parameter limit.

mod decide;
mod prefetch;
mod write;

use chrono::{DateTime, Utc};

use super::{dialect, Bind, Tx};
use crate::store::{BatchKeys, ContactRefusal, ContactWrite, KeyKind, SpaceId, StoreError, StoreResult};
use decide::State;

/// `$n` in a dialect template (`$?`) becomes the placeholder `n`.
pub(super) fn at(template: &str, n: usize) -> String {
    template.replace("$?", &format!("${n}"))
}

/// A batch's rows as the derived table `x`, with the given `(field, type)` columns and
/// `x.ord`, the position of the row; bound by `bind_rows` as the statement's last
/// parameters, from `$first` on.
pub(super) fn rows(first: usize, columns: &[(&str, &str)]) -> String {
    dialect::rows(first, columns)
}

/// Binds `rows` to `q` as the derived table `rows(_, columns)` reads them.
pub(super) fn bind_rows<'q, Q: Bind<'q>, T: serde::Serialize>(
    q: Q,
    rows: &[T],
    columns: &[(&str, &str)],
) -> StoreResult<Q> {
    dialect::bind_rows(q, rows, columns).map_err(StoreError::Other)
}

pub(super) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Other(e.to_string()))
}

/// What one write of a batch came to: `(created, id, cuRefNo)`, or its refusal.
pub(super) type BatchResult = Result<(bool, i64, String), ContactRefusal>;

/// A batch read and decided in its transaction, not written yet.
pub(super) struct Decided {
    state: State,
    decided: Vec<Result<(usize, bool), ContactRefusal>>,
}

/// Reads what the batch could touch in `tx` and decides its items at `now`, in order.
///
/// With `keys`, the batch may be written beside the next one: the keys of every row it
/// read or will write are added there (`State::add_keys`), and its new customers' ids
/// are drawn now, so that a batch begun after this one gets later ids, as it would
/// written after it (contacts sharing a number rank by id).
pub(super) async fn decide_batch(
    tx: &mut Tx,
    space: SpaceId,
    writes: &[ContactWrite],
    now: DateTime<Utc>,
    mut keys: Option<&mut BatchKeys>,
) -> StoreResult<Decided> {
    let mut state = prefetch::prefetch(tx, space, writes).await?;
    // As read, and again as decided: a key an item replaces is a key of the batch's rows too.
    if let Some(keys) = keys.as_deref_mut() {
        state.add_keys(keys);
    }
    let decided = writes.iter().map(|w| state.decide(w, now)).collect();
    if let Some(keys) = keys {
        state.add_keys(keys);
        if let Some(draw) = dialect::DRAW_CUSTOMER_IDS {
            let new: Vec<&mut decide::Customer> = state.customers.iter_mut().filter(|c| c.new).collect();
            if !new.is_empty() {
                let mut ids: Vec<i64> = sqlx::query_scalar(draw).bind(new.len() as i64).fetch_all(&mut **tx).await?;
                ids.sort_unstable();
                for (c, id) in new.into_iter().zip(ids) {
                    c.id = Some(id);
                }
            }
        }
    }
    Ok(Decided { state, decided })
}

/// Writes what the items were decided to come to; a refused item writes nothing.
pub(super) async fn write_decided(
    tx: &mut Tx,
    space: SpaceId,
    batch: Decided,
    now: DateTime<Utc>,
) -> StoreResult<Vec<BatchResult>> {
    let Decided { mut state, decided } = batch;
    write::write(tx, space, &mut state, now).await?;
    decided
        .into_iter()
        .map(|d| match d {
            Ok((i, new)) => Ok(Ok((new, state.id(i)?, state.customers[i].cu_ref_no.clone()))),
            Err(refusal) => Ok(Err(refusal)),
        })
        .collect()
}

/// Writes the batch in `tx` at `now`, deciding the items in order; a refused item writes
/// nothing. A concurrent writer's address, number or subscription is a `Conflict`.
pub(super) async fn write_batch(
    tx: &mut Tx,
    space: SpaceId,
    writes: &[ContactWrite],
    now: DateTime<Utc>,
) -> StoreResult<Vec<BatchResult>> {
    let batch = decide_batch(tx, space, writes, now, None).await?;
    write_decided(tx, space, batch, now).await
}

impl State {
    /// Adds the keys of every row the batch holds, as they stand now: its customers' (own
    /// and alternate), the subscriptions it read or writes, and the groups it will create.
    fn add_keys(&self, keys: &mut BatchKeys) {
        for c in &self.customers {
            keys.insert(KeyKind::CuRefNo, &c.cu_ref_no);
            let stored = c.stored.as_ref().map(|(own, _)| own);
            let emails = [c.email_canonical.as_deref(), stored.and_then(|o| o.email_canonical.as_deref())];
            let phones = [c.phone.as_deref(), stored.and_then(|o| o.phone.as_deref())];
            let partners = [c.partner_customer_id.as_deref(), stored.and_then(|o| o.partner_customer_id.as_deref())];
            for (kind, values) in [(KeyKind::Email, emails), (KeyKind::Phone, phones), (KeyKind::PartnerId, partners)] {
                for value in values.into_iter().flatten() {
                    keys.insert(kind, value);
                }
            }
            for (kind, list) in [(KeyKind::Email, &c.alternate_emails), (KeyKind::Phone, &c.alternate_phones)] {
                for a in list {
                    keys.insert(kind, &a.value);
                }
            }
        }
        for external_id in self.by_external_id.keys() {
            keys.insert(KeyKind::Subscription, external_id);
        }
        for (_, slug) in &self.groups {
            if !self.group_ids.contains_key(slug) {
                keys.insert(KeyKind::Group, slug);
            }
        }
    }
}
