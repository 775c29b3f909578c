//! Storage: the `Store` traits with task-shaped methods, their error type, the rows they
//! return (`records`, `writes`), and `connect`, which picks PostgreSQL or SQLite from the
//! URL scheme. Nothing here knows about HTTP, keys' scopes or the demo data: the store
//! takes validated values and returns rows.
//!
//! ## One implementation, compiled once per backend
//! The SQL lives once, in `sql/`, as ordinary Rust over a concrete `Db` type. That
//! module is compiled twice: `postgres.rs` and `sqlite.rs` each include it with
//! `type Db = sqlx::Postgres` (or `Sqlite`) and a `dialect` module of named constants
//! for the few places where the two dialects differ (JSON aggregation, how a write
//! transaction begins, whether an insert can return the profile in the same statement).
//!
//! Why not one `SqlStore<DB: Backend>` generic over sqlx's `Database`: every statement
//! would then carry sqlx's bounds (`for<'c> &'c mut DB::Connection: Executor<'c>`,
//! `Encode + Type` for each bound type, `IntoArguments` for the arguments, `Decode` for
//! each column), written on every helper and repeated in every error message, and the
//! generic code would be monomorphised twice anyway. A module compiled per backend gives
//! the same single source with concrete types: the compiler points into the line at
//! fault, rustfmt formats it, and a dialect difference is a constant beside its backend.

mod coalesce;
mod columns;
mod postgres;
mod records;
mod sqlite;
mod webhooks;
mod writes;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::normalize::{ClientIp, CuRefNo, Email};

pub use postgres::PgStore;
pub use records::*;
pub use sqlite::SqliteStore;
pub use webhooks::*;
pub use writes::*;

/// Errors a caller may see from storage; `sqlx::Error` never leaves this module.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database chose this transaction as a deadlock or serialisation victim; running
    /// it again may succeed.
    #[error("transaction aborted by the database: {0}")]
    Aborted(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match &err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => StoreError::Unavailable(err.to_string()),
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                note_connection_lost();
                StoreError::Unavailable(err.to_string())
            }
            sqlx::Error::Database(db) => match db.kind() {
                ErrorKind::UniqueViolation => StoreError::Conflict(db.message().to_owned()),
                _ if matches!(db.code().as_deref(), Some("40P01" | "40001")) => {
                    StoreError::Aborted(db.message().to_owned())
                }
                _ if is_busy(db.code().as_deref()) => {
                    if db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")) {
                        note_connection_lost();
                    }
                    StoreError::Unavailable(db.message().to_owned())
                }
                _ => StoreError::Other(err.to_string()),
            },
            _ => StoreError::Other(err.to_string()),
        }
    }
}

/// Transient database states: the server answers 503 and recovers by itself once they
/// pass. SQLite: busy (5), locked (6), busy-snapshot (517). PostgreSQL: connection
/// exceptions (08), insufficient resources (53), operator intervention/shutdown (57P),
/// a database not accepting connections (55000), missing (3D000) or refusing our
/// credentials (28) — all seen when the server restarts, fails over or is reconfigured —
/// and a statement cancelled by the statement timeout (57014). A protocol violation
/// (08P01: a statement bound with the wrong parameters, say) is this server's bug, not a
/// passing state: it is not one of them.
fn is_busy(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    if code == "08P01" {
        return false;
    }
    matches!(code, "5" | "6" | "517" | "55000" | "3D000" | "57014")
        || ["08", "53", "57P", "28"].iter().any(|class| code.starts_with(class))
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The current time at the precision both backends store (microseconds), so a value read
/// back compares equal to the one written, and SQLite's text timestamps order correctly.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// Sessions slide: each refreshed use extends them by this much.
pub const SESSION_LIFETIME: TimeDelta = TimeDelta::days(91);

/// How busy the pool of connections is, read without touching the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Connections open now.
    pub size: u32,
    /// Of those, the ones no call is using.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
    /// Calls waiting for a connection.
    pub waiting: u64,
}

/// A change to the API keys, made by any process on this database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    /// The key with this digest was created or changed (revoked, say).
    Key(String),
    /// Changes may have been missed (the connection that hears them was lost, and is
    /// being made again): any key may have changed.
    Resync,
}

/// Key changes as they commit, heard on a connection of its own.
#[async_trait]
pub trait KeyChanges: Send {
    /// The next change; waits until there is one.
    async fn next(&mut self) -> KeyChange;
}

/// Organisations, their spaces, API keys and the audit log.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// One cheap statement: is the database answering?
    async fn ping(&self) -> StoreResult<()>;
    /// The pool's state now.
    fn pool_stats(&self) -> PoolStats;
    /// Changes to keys made by any process, as they commit; `None` where the backend has
    /// no way to announce them (SQLite: one server process serves a file).
    async fn key_changes(&self) -> StoreResult<Option<Box<dyn KeyChanges>>>;
    /// Creates the organisation with both spaces if it does not exist; true if created.
    async fn ensure_organisation(&self, slug: &str, name: &str) -> StoreResult<bool>;
    async fn organisation_count(&self) -> StoreResult<i64>;
    /// On a database without organisations: creates this one with its spaces and keys, in
    /// one transaction; false (nothing written) when any organisation exists.
    async fn bootstrap(&self, slug: &str, name: &str, keys: &[NewKey]) -> StoreResult<bool>;
    /// Creates the organisation with both spaces, and records `audit` in the same
    /// transaction; `Conflict` if the slug is taken.
    async fn create_organisation(&self, slug: &str, name: &str, audit: &NewAudit) -> StoreResult<Organisation>;
    async fn list_organisations(&self) -> StoreResult<Vec<Organisation>>;
    async fn space_of(&self, organisation: &str, mode: Mode) -> StoreResult<SpaceId>;
    /// Registers a key for an organisation; an existing digest is left as it is.
    /// `NotFound` if the organisation does not exist.
    async fn insert_key(&self, organisation: &str, key: &NewKey) -> StoreResult<()>;
    /// Registers these keys for an organisation, moving any already registered elsewhere
    /// to it and lifting their revocation; `NotFound` if the organisation does not exist.
    async fn claim_keys(&self, organisation: &str, keys: &[NewKey]) -> StoreResult<()>;
    /// Revokes every live key with one of these digests; how many were live.
    async fn revoke_keys(&self, digests: &[String]) -> StoreResult<u64>;
    /// Registers a new key; `NotFound` if the organisation does not exist, `Conflict` if
    /// the digest is registered.
    /// `audit`, when given, is recorded in the same transaction.
    async fn create_key(&self, organisation: &str, key: &NewKey, audit: Option<&NewAudit>) -> StoreResult<KeyInfo>;
    /// An organisation's keys, oldest first; `NotFound` if the organisation does not exist.
    async fn list_keys(&self, organisation: &str) -> StoreResult<Vec<KeyInfo>>;
    async fn resolve_key(&self, digest: &str) -> StoreResult<Option<KeyRecord>>;
    /// Revokes a key by id, confined to `organisation` when given. `audit`, when given, is
    /// recorded in the same transaction, of the key's organisation, with whether this call
    /// revoked it as its detail.
    async fn revoke_key_by_id(
        &self,
        id: i64,
        organisation: Option<&str>,
        audit: Option<&NewAudit>,
    ) -> StoreResult<KeyRevocation>;
    /// Records a key's last use (never moving it backwards).
    async fn touch_key_last_used(&self, id: i64, at: DateTime<Utc>) -> StoreResult<()>;
    async fn record_audit(&self, entry: &NewAudit) -> StoreResult<()>;
    /// The audit log, newest first, of one organisation or of all; strictly before `before`.
    async fn list_audit(&self, organisation: Option<&str>, before: PagePos, limit: i64)
        -> StoreResult<Vec<AuditEntry>>;
}

/// Customers as BizKitHub's customer endpoints see them, and their relations.
#[async_trait]
pub trait CustomerStore: Send + Sync {
    /// Finds the customer by canonical e-mail or creates one; true when created.
    async fn find_or_create_by_email(&self, space: SpaceId, input: &CreateCustomer) -> StoreResult<(bool, Profile)>;
    /// The profile, and whether `identity_digest` is a live session of this customer.
    async fn customer_detail(
        &self,
        space: SpaceId,
        cu_ref_no: &CuRefNo,
        identity_digest: &str,
        ip: &ClientIp,
    ) -> StoreResult<Option<Detail>>;
    /// Whether the customer exists in the space (for telling 404 from an empty list).
    async fn customer_exists(&self, space: SpaceId, cu_ref_no: &CuRefNo) -> StoreResult<bool>;
    /// The cuRefNo of the live customer that `cu_ref_no` was merged into, if it was.
    async fn merged_into(&self, space: SpaceId, cu_ref_no: &CuRefNo) -> StoreResult<Option<String>>;
    async fn upsert_match(
        &self,
        space: SpaceId,
        manager: &CuRefNo,
        target: &MatchTarget,
        notice: Option<&str>,
    ) -> StoreResult<MatchOutcome>;
    async fn list_matches(
        &self,
        space: SpaceId,
        cu_ref_no: &CuRefNo,
        side: Side,
        before: PagePos,
        limit: i64,
    ) -> StoreResult<Vec<MatchItem>>;
    async fn remove_match(&self, space: SpaceId, manager: &CuRefNo, customer: &CuRefNo) -> StoreResult<RemoveOutcome>;
}

/// Storefront accounts: registration, confirmation, login throttling and sessions.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// What login and registration need to know about an address.
    async fn login_account(&self, space: SpaceId, email: &Email) -> StoreResult<Option<LoginAccount>>;
    /// Counts one attempt of `subject` (an address, or an address and a client, as the
    /// caller's policy names them), in a window of `window` that starts with the first
    /// attempt; returns the attempts in the current window (this one included).
    async fn count_attempt(&self, space: SpaceId, subject: &str, what: Attempt, window: TimeDelta) -> StoreResult<i64>;
    /// Sets the password on the guest with this canonical address (keeping its cuRefNo
    /// and relations) or creates a customer, and queues the confirmation, atomically.
    async fn complete_registration(
        &self,
        space: SpaceId,
        registration: &Registration,
    ) -> StoreResult<RegistrationOutcome>;
    /// Uses an unused, unexpired token and confirms its account; false for any other token.
    async fn confirm_account(&self, space: SpaceId, token_digest: &str) -> StoreResult<bool>;
    /// The attempts counted for `subject` in its current window, without counting one.
    async fn attempts(&self, space: SpaceId, subject: &str, what: Attempt, window: TimeDelta) -> StoreResult<i64>;
    /// After a correct password: clears the failed logins counted for `subject` and, given
    /// a digest, starts a session of `SESSION_LIFETIME`.
    async fn record_login(
        &self,
        space: SpaceId,
        subject: &str,
        customer_id: i64,
        identity_digest: Option<&str>,
    ) -> StoreResult<()>;
    /// Starts (or renews, revoked or not) the session with this digest for a customer,
    /// until `expires_at`; false if there is no such live customer.
    async fn renew_session(
        &self,
        space: SpaceId,
        cu_ref_no: &CuRefNo,
        identity_digest: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// The profile behind a live session, sliding the session like `customer_detail`.
    async fn account_info(&self, space: SpaceId, identity_digest: &str, ip: &ClientIp) -> StoreResult<Option<Profile>>;
    /// Ends a session at once; false if it was not live.
    async fn end_session(&self, space: SpaceId, identity_digest: &str) -> StoreResult<bool>;
}

/// Profiles written: create-or-update one or many, the credit ledger, erasure.
#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Writes one contact and returns whether it was created, and its profile.
    async fn upsert_contact(
        &self,
        space: SpaceId,
        write: &ContactWrite,
    ) -> StoreResult<Result<(bool, Profile), ContactRefusal>>;
    /// Writes many contacts in one transaction, one result per item in order. If the
    /// batch hits a conflicting concurrent write, it is redone one item per transaction.
    async fn import_contacts(&self, space: SpaceId, writes: &[ContactWrite]) -> StoreResult<ImportResults>;
    /// Begins writing `writes` as one import batch beside the caller (see `ImportTicket`).
    fn start_import(&self, space: SpaceId, writes: Vec<ContactWrite>) -> ImportTicket;
    /// Commits a batch begun by `start_import` and gives its results as `import_contacts`
    /// does, redoing it the same way if it met a conflicting concurrent write.
    async fn finish_import(&self, space: SpaceId, ticket: ImportTicket) -> StoreResult<ImportResults>;
    /// Appends to the customer's credit ledger and returns the new balance.
    async fn add_credit(&self, space: SpaceId, credit: &CreditAdd) -> StoreResult<CreditOutcome>;
    /// Erases the customer's personal data everywhere and ends its sessions; the cuRefNo
    /// stays reserved. False if there is no such live customer.
    async fn erase_customer(&self, space: SpaceId, cu_ref_no: &CuRefNo) -> StoreResult<bool>;
    /// Moves everything the duplicate owns to the primary and leaves the duplicate as a
    /// tombstone naming it, with `merge.audit`, in one transaction; the primary's profile.
    /// A duplicate already merged into the primary changes nothing and gives the same.
    async fn merge_customers(&self, space: SpaceId, merge: &Merge) -> StoreResult<Result<Profile, MergeRefusal>>;
}

/// Customers listed and searched, and the search keys they are found by.
#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Up to `limit` live customers of the space that pass `filter`, newest first,
    /// strictly before `before`.
    async fn list_customers(
        &self,
        space: SpaceId,
        filter: &CustomerFilter,
        before: PagePos,
        limit: i64,
    ) -> StoreResult<Vec<ListedCustomer>>;
    /// The plan the database chooses for the first page of `filter`, as it describes it
    /// (`EXPLAIN` on PostgreSQL, `EXPLAIN QUERY PLAN` on SQLite): to check that each
    /// filter is served by its index.
    async fn explain_list_customers(&self, space: SpaceId, filter: &CustomerFilter) -> StoreResult<String>;
    /// Computes the search keys of up to `limit` customers stored without them (written
    /// before search existed, or under older rules); how many it computed, 0 when none
    /// are left.
    async fn refresh_search_keys(&self, limit: i64) -> StoreResult<u64>;
}

/// The mail outbox: messages queued by registration, read by the SMTP sender.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Unsent messages of the spaces of `mode` tried fewer than `max_attempts` times,
    /// oldest first.
    async fn pending_outbox(&self, mode: Mode, max_attempts: i64, limit: i64) -> StoreResult<Vec<OutboxMessage>>;
    /// Marks message `id` of `space` sent and clears its body, which carried a live token.
    async fn mark_outbox_sent(&self, space: SpaceId, id: i64) -> StoreResult<()>;
    async fn mark_outbox_failed(&self, space: SpaceId, id: i64, error: &str) -> StoreResult<()>;
    /// Forgets what has outlived its use: idempotency keys past their lifetime, the
    /// bodies of unsent messages queued before `outbox_before` (their tokens have expired),
    /// and webhook deliveries finished before `deliveries_before` with their attempts and
    /// the events left without deliveries.
    async fn sweep(&self, outbox_before: DateTime<Utc>, deliveries_before: DateTime<Utc>) -> StoreResult<Swept>;
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    pub idempotency_keys: u64,
    pub outbox_bodies: u64,
    /// Finished webhook deliveries (with their attempts) and their events.
    pub webhook_deliveries: u64,
}

/// Webhook endpoints, the deliveries of events to them, and their attempts.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Registers an endpoint for a space of `organisation`, and records `audit` (whose
    /// target becomes the endpoint's id) in the same transaction; `NotFound` if the
    /// organisation does not exist.
    async fn create_endpoint(
        &self,
        organisation: &str,
        mode: Mode,
        endpoint: &NewEndpoint,
        audit: &NewAudit,
    ) -> StoreResult<Endpoint>;
    /// Endpoints of one organisation or of all, oldest first.
    async fn list_endpoints(&self, organisation: Option<&str>) -> StoreResult<Vec<Endpoint>>;
    async fn endpoint(&self, id: i64) -> StoreResult<Option<Endpoint>>;
    /// Removes an endpoint with its deliveries, and records `audit`; false if it was gone.
    async fn delete_endpoint(&self, id: i64, audit: &NewAudit) -> StoreResult<bool>;
    /// The latest `limit` attempts to deliver to an endpoint, newest first.
    async fn list_attempts(&self, endpoint_id: i64, limit: i64) -> StoreResult<Vec<DeliveryAttempt>>;
    /// The organisation and space of an event.
    async fn event_space(&self, event_id: i64) -> StoreResult<Option<(String, SpaceId)>>;
    /// Queues the event again for every live endpoint of its space that wants its type,
    /// and records `audit`; how many deliveries were queued.
    async fn replay_event(&self, space: SpaceId, event_id: i64, audit: &NewAudit) -> StoreResult<u64>;
    /// Takes up to `limit` deliveries due at `now`, each the oldest pending one of its
    /// customer and endpoint, leased until `lease_until`. On PostgreSQL several processes
    /// may claim at once: each delivery goes to one of them.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<DueDelivery>>;
    /// Records an attempt of a claimed delivery and what it came to. A delivery to be
    /// retried keeps `body`, the one its first attempt sent, for its retries.
    async fn finish_attempt(
        &self,
        delivery: &DueDelivery,
        record: &AttemptRecord,
        outcome: &AttemptOutcome,
        body: &str,
    ) -> StoreResult<()>;
    /// The profile of customer `id` now, for an event's body.
    async fn event_profile(&self, space: SpaceId, id: i64) -> StoreResult<Profile>;
    /// The relation of `manager` to `customer` now, if it exists.
    async fn event_relation(&self, space: SpaceId, manager: i64, customer: i64) -> StoreResult<Option<RelationNow>>;
}

/// Everything the server stores; a `DynStore` answers every area's methods.
pub trait Store:
    AdminStore + CustomerStore + SearchStore + AccountStore + ContactStore + OutboxStore + WebhookStore + 'static
{
}

impl<
        T: AdminStore + CustomerStore + SearchStore + AccountStore + ContactStore + OutboxStore + WebhookStore + 'static,
    > Store for T
{
}

pub type DynStore = Arc<dyn Store>;

/// A pooled connection idle this long is tested before it is used again.
const TEST_IDLE_CONNECTION_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// For this long after a statement lost its connection, every connection is tested
/// before use: the others of the pool likely went down with it (a database restart).
const TEST_EVERY_CONNECTION_AFTER_LOSS: std::time::Duration = std::time::Duration::from_secs(30);

/// When a statement last lost its connection, in milliseconds since the epoch.
static CONNECTION_LOST_AT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(i64::MIN);

fn note_connection_lost() {
    CONNECTION_LOST_AT.store(Utc::now().timestamp_millis(), std::sync::atomic::Ordering::Relaxed);
}

/// Whether a pooled connection should be tested before it is used. Testing every one would
/// cost a round trip on every request, so only a connection that may have broken since its
/// last use is tested: one idle for a while, or any shortly after another was found broken.
fn test_before_use(idle_for: std::time::Duration) -> bool {
    let lost_at = CONNECTION_LOST_AT.load(std::sync::atomic::Ordering::Relaxed);
    let since_loss = Utc::now().timestamp_millis().saturating_sub(lost_at);
    idle_for >= TEST_IDLE_CONNECTION_AFTER || since_loss < TEST_EVERY_CONNECTION_AFTER_LOSS.as_millis() as i64
}

/// Pool and connection settings shared by both backends.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: std::time::Duration,
    /// PostgreSQL cancels a statement running longer (the request answers 503).
    pub statement_timeout: std::time::Duration,
    /// SQLite: an acknowledged write survives a power cut (`FULL`), or only a crash of
    /// the process (`NORMAL`, faster).
    pub sqlite_durable: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: std::time::Duration::from_secs(5),
            statement_timeout: std::time::Duration::from_secs(5),
            sqlite_durable: true,
        }
    }
}

/// Opens the database named by `url` (`postgres://` or `sqlite:`), and runs migrations.
pub async fn connect(url: &str, settings: &PoolSettings) -> anyhow::Result<DynStore> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, settings).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, settings).await?))
    } else {
        anyhow::bail!("DATABASE_URL must start with postgres://, postgresql:// or sqlite:")
    }
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    #[test]
    fn passing_states_are_busy_and_bugs_are_not() {
        for code in ["08006", "08001", "53300", "57P01", "57014", "5", "517", "28P01"] {
            assert!(is_busy(Some(code)), "{code}");
        }
        for code in ["08P01", "23505", "42601", "42P18"] {
            assert!(!is_busy(Some(code)), "{code}");
        }
        assert!(!is_busy(None));
    }

    #[test]
    fn connections_are_tested_when_idle_or_after_a_loss() {
        let busy = std::time::Duration::from_millis(5);
        let idle = TEST_IDLE_CONNECTION_AFTER;
        assert!(test_before_use(idle));
        // A loss in this process makes every connection suspect for a while.
        note_connection_lost();
        assert!(test_before_use(busy));
        CONNECTION_LOST_AT.store(
            Utc::now().timestamp_millis() - TEST_EVERY_CONNECTION_AFTER_LOSS.as_millis() as i64 - 1,
            std::sync::atomic::Ordering::Relaxed,
        );
        assert!(!test_before_use(busy));
        assert!(test_before_use(idle));
    }
}
