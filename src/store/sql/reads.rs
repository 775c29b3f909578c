//! The hot point reads, detail and account-info, gathered from concurrent calls into one
//! statement each (see `store::coalesce`): under load a batch of reads shares one round
//! trip and one statement's fixed cost in the database.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};

use super::batch::bind_rows;
use super::customers::SessionProfileRow;
use super::{dialect, Connections, PROFILE_COLUMNS, REFERRER_JOIN};
use crate::store::coalesce::Coalescer;
use crate::store::{now, SpaceId, StoreResult};

/// Statements of each kind running at once; reads arriving meanwhile wait for the next.
/// Detail of random customers on PostgreSQL, one run: at 16 connections 8,542 req/s with
/// one, 8,495 with two, 7,969 with four (5,967 reading each alone); at 64 connections
/// 13,537, 15,103 and 11,809 (7,146). Fewer, larger statements cost the database less;
/// two keep it busy while the server handles the other's answers.
const SLOTS: usize = 2;

/// Reads in one statement at most.
const MAX_BATCH: usize = 64;

/// A customer by cuRefNo, with the session the caller names (if it is one of theirs).
pub(super) struct DetailRead {
    pub space: SpaceId,
    pub cu_ref_no: String,
    pub identity_digest: String,
}

/// The customer behind a session.
pub(super) struct SessionRead {
    pub space: SpaceId,
    pub identity_digest: String,
}

const DETAIL_COLUMNS: &[(&str, &str)] =
    &[("i", "bigint"), ("space_id", "bigint"), ("cu_ref_no", "text"), ("identity_digest", "text")];
const SESSION_COLUMNS: &[(&str, &str)] = &[("i", "bigint"), ("space_id", "bigint"), ("identity_digest", "text")];

/// The customers `x.cu_ref_no` in spaces `x.space_id`, each with its live session
/// `x.identity_digest` at `$1`, numbered by `x.i`.
static DETAILS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select x.i, {PROFILE_COLUMNS}, s.id as session_id, s.last_seen_at as session_seen_at \
         from {} join customers c on c.space_id = x.space_id and c.cu_ref_no = x.cu_ref_no {REFERRER_JOIN} \
         left join sessions s on s.space_id = c.space_id and s.customer_id = c.id \
         and s.identity_digest = x.identity_digest and s.revoked_at is null and s.expires_at > $1 \
         where c.erased_at is null",
        dialect::rows_of_any_count(2, DETAIL_COLUMNS)
    )
});

/// The customers behind the live sessions `x.identity_digest` in spaces `x.space_id` at
/// `$1`, numbered by `x.i`.
static SESSIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select x.i, {PROFILE_COLUMNS}, s.id as session_id, s.last_seen_at as session_seen_at \
         from {} join sessions s on s.space_id = x.space_id and s.identity_digest = x.identity_digest \
         join customers c on c.id = s.customer_id and c.space_id = s.space_id {REFERRER_JOIN} \
         where s.revoked_at is null and s.expires_at > $1 and c.erased_at is null",
        dialect::rows_of_any_count(2, SESSION_COLUMNS)
    )
});

/// A read as a row of the statement, numbered `i`.
#[derive(serde::Serialize)]
struct DetailRow {
    i: i64,
    space_id: i64,
    cu_ref_no: String,
    identity_digest: String,
}

#[derive(serde::Serialize)]
struct SessionRow {
    i: i64,
    space_id: i64,
    identity_digest: String,
}

#[derive(sqlx::FromRow)]
struct Numbered {
    i: i64,
    #[sqlx(flatten)]
    row: SessionProfileRow,
}

/// What a read finds: the row (if any), and the time its statement read at.
pub(super) type Found = (Option<SessionProfileRow>, DateTime<Utc>);

/// The gathered reads of one store.
pub(super) struct Reads {
    pub details: Coalescer<DetailRead, Found>,
    pub sessions: Coalescer<SessionRead, Found>,
}

impl Reads {
    pub(super) fn new(connections: &Connections) -> Self {
        let details = gathered(connections, &DETAILS, DETAIL_COLUMNS, |i, r: DetailRead| DetailRow {
            i,
            space_id: r.space.0,
            cu_ref_no: r.cu_ref_no,
            identity_digest: r.identity_digest,
        });
        let sessions = gathered(connections, &SESSIONS, SESSION_COLUMNS, |i, r: SessionRead| SessionRow {
            i,
            space_id: r.space.0,
            identity_digest: r.identity_digest,
        });
        Reads { details, sessions }
    }
}

/// Reads of one kind, each made a row by `row`, gathered into the statement `sql`.
fn gathered<Q: Send + 'static, T: serde::Serialize + Send + Sync + 'static>(
    connections: &Connections,
    sql: &'static LazyLock<String>,
    columns: &'static [(&'static str, &'static str)],
    row: fn(i64, Q) -> T,
) -> Coalescer<Q, Found> {
    let connections = connections.clone();
    Coalescer::new(
        SLOTS,
        MAX_BATCH,
        Box::new(move |reads: Vec<Q>| {
            let connections = connections.clone();
            Box::pin(async move {
                let rows: Vec<T> = (0..).zip(reads).map(|(i, r)| row(i, r)).collect();
                read(&connections, sql, &rows, columns).await
            })
        }),
    )
}

/// Runs `sql` for `rows` (each numbered `i` from 0) at the present time: for each row,
/// the first row found for it.
async fn read<T: serde::Serialize>(
    connections: &Connections,
    sql: &str,
    rows: &[T],
    columns: &[(&str, &str)],
) -> StoreResult<Vec<Found>> {
    let now = now();
    let q = bind_rows(sqlx::query_as::<_, Numbered>(sql).bind(now), rows, columns)?;
    let found = q.fetch_all(&mut *connections.conn().await?).await?;
    let mut answers: Vec<Found> = (0..rows.len()).map(|_| (None, now)).collect();
    for Numbered { i, row } in found {
        if let Some(answer) = usize::try_from(i).ok().and_then(|i| answers.get_mut(i)) {
            answer.0.get_or_insert(row);
        }
    }
    Ok(answers)
}
