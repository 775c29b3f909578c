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
use crate::store::{ContactRefusal, ContactWrite, SpaceId, StoreError, StoreResult};

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

/// Writes the batch in `tx` at `now`, deciding the items in order; a refused item writes
/// nothing. A concurrent writer's address, number or subscription is a `Conflict`.
pub(super) async fn write_batch(
    tx: &mut Tx,
    space: SpaceId,
    writes: &[ContactWrite],
    now: DateTime<Utc>,
) -> StoreResult<Vec<BatchResult>> {
    let mut state = prefetch::prefetch(tx, space, writes).await?;
    let decided: Vec<Result<(usize, bool), ContactRefusal>> = writes.iter().map(|w| state.decide(w, now)).collect();
    write::write(tx, space, &mut state, now).await?;
    decided
        .into_iter()
        .map(|d| match d {
            Ok((i, new)) => Ok(Ok((new, state.id(i)?, state.customers[i].cu_ref_no.clone()))),
            Err(refusal) => Ok(Err(refusal)),
        })
        .collect()
}
