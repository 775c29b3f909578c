//! Storage: the `Store` trait with task-shaped methods, its error type, the records it
//! returns, and `connect`, which picks PostgreSQL or SQLite from the URL scheme.

pub(crate) mod accounts;
pub(crate) mod admin;
pub(crate) mod outbox;
pub(crate) mod profiles;
mod contact;
mod matches;
mod postgres;
mod seed;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::normalize::{ApiKeyKind, ClientIp, CuRefNo, Email};

pub use accounts::{AccountStore, Confirmation, LoginAccount, Registration, RegistrationGate, RegistrationOutcome};
pub use outbox::{OutboxMessage, OutboxStore};
pub use profiles::{
    ContactRefusal, ContactWrite, CreditAdd, CreditOutcome, Idempotency, Patch, ProfileStore, SubscriptionStatus,
    SubscriptionWrite, Written,
};
pub use admin::{AuditActor, AuditEntry, AuditPos, KeyInfo, KeyRevocation, NewAudit, Organisation};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Errors a handler may see from storage; `sqlx::Error` never leaves this module.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match &err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                StoreError::Unavailable(err.to_string())
            }
            sqlx::Error::Database(db) => match db.kind() {
                ErrorKind::UniqueViolation => StoreError::Conflict(db.message().to_owned()),
                _ if is_busy(db.code().as_deref()) => StoreError::Unavailable(db.message().to_owned()),
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
/// credentials (28) — all seen when the server restarts, fails over or is reconfigured.
fn is_busy(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    matches!(code, "5" | "6" | "517" | "55000" | "3D000")
        || ["08", "53", "57P", "28"].iter().any(|class| code.starts_with(class))
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The current time at the precision both backends store (microseconds), so a value read
/// back compares equal to the one written, and SQLite's text timestamps order correctly.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// Later than any stored time; starts a newest-first listing.
pub const END_OF_TIME: DateTime<Utc> = match DateTime::from_timestamp(253_402_300_799, 0) {
    Some(t) => t,
    None => panic!("9999-12-31 is representable"),
};

/// A data space: an organisation's live or sandbox data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpaceId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Live,
    Sandbox,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Sandbox => "sandbox",
        }
    }
    pub fn for_kind(kind: ApiKeyKind) -> Mode {
        match kind {
            ApiKeyKind::Dev => Mode::Sandbox,
            ApiKeyKind::Prod | ApiKeyKind::Root => Mode::Live,
        }
    }
}

/// A key as the registry knows it, with the space its kind works on.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: i64,
    pub kind: ApiKeyKind,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Overrides the kind's default rate limit when set.
    pub rate_limit_per_minute: Option<i64>,
    pub organisation: String,
    pub space: SpaceId,
    pub mode: Mode,
}

/// A key to register; only its digest and first 8 characters are stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub kind: ApiKeyKind,
    pub digest: String,
    pub prefix: String,
    pub label: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Overrides the kind's default rate limit when set.
    pub rate_limit_per_minute: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub slug: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Referral {
    pub code: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningSubscription {
    pub external_id: String,
    pub product_slug: String,
    pub product_code: String,
    pub order_number: String,
    pub order_hash: String,
    pub auto_renew: bool,
}

/// The customer profile exactly as the API returns it; every field comes from storage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub cu_ref_no: String,
    pub credit_balance: i64,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    pub premium: bool,
    pub ban: bool,
    pub groups: Vec<Group>,
    pub meta: serde_json::Map<String, serde_json::Value>,
    pub referral: Option<Referral>,
    pub running_subscription_list: Vec<RunningSubscription>,
}

/// What `create` may fill in; empty fields of an existing customer are filled, set ones kept.
#[derive(Debug, Clone)]
pub struct CreateCustomer {
    pub email: Email,
    pub company_name: Option<String>,
    pub company_registration_number: Option<String>,
    pub tax_identification_number: Option<String>,
    pub ip: ClientIp,
}

#[derive(Debug, Clone)]
pub struct Detail {
    pub logged_in: bool,
    pub profile: Profile,
}

/// How the customer side of a relation is named.
#[derive(Debug, Clone)]
pub enum MatchTarget {
    /// By cuRefNo; the optional address is kept on the relation as its contact e-mail.
    CuRefNo(CuRefNo, Option<Email>),
    /// By canonical e-mail, creating a contact if there is none.
    Email(Email),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOutcome {
    Matched,
    ManagerNotFound,
    CustomerNotFound,
    SelfMatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOutcome {
    Removed(bool),
    ManagerNotFound,
    CustomerNotFound,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct MatchItem {
    pub cu_ref_no: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    pub notice: Option<String>,
    pub contact_email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Position of the item for keyset pagination; never serialised.
    #[serde(skip)]
    pub other_id: i64,
}

/// Where a page of one side of the relation list starts: strictly older than this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePos {
    pub created_at: DateTime<Utc>,
    pub other_id: i64,
}

/// Which side of a relation a list is of, as seen from the customer asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Those who manage the customer.
    Managers,
    /// Those the customer manages.
    Customers,
}

/// A session to store; only the identityId's digest is kept.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub cu_ref_no: CuRefNo,
    pub identity_digest: String,
    pub expires_at: DateTime<Utc>,
}

/// Everything the server stores. Storefront accounts, the mail outbox and written
/// profiles are traits of their own (`AccountStore`, `OutboxStore`, `ProfileStore`); bring them into scope to call theirs.
#[async_trait]
pub trait Store: AccountStore + OutboxStore + ProfileStore + Send + Sync + 'static {
    /// One cheap statement: is the database answering?
    async fn ping(&self) -> StoreResult<()>;

    /// Creates the organisation with both spaces if it does not exist; true if created.
    async fn ensure_organisation(&self, slug: &str, name: &str) -> StoreResult<bool>;
    async fn organisation_count(&self) -> StoreResult<i64>;
    /// Registers a key for an organisation; an existing digest is left as it is.
    async fn insert_key(&self, organisation: &str, key: &NewKey) -> StoreResult<()>;
    async fn resolve_key(&self, digest: &str) -> StoreResult<Option<KeyRecord>>;
    /// Marks a key revoked from now on; false if no such key or already revoked.
    async fn revoke_key(&self, digest: &str) -> StoreResult<bool>;
    async fn space_of(&self, organisation: &str, mode: Mode) -> StoreResult<SpaceId>;

    /// Creates the organisation with both spaces; `Conflict` if the slug is taken.
    async fn create_organisation(&self, slug: &str, name: &str) -> StoreResult<Organisation>;
    async fn list_organisations(&self) -> StoreResult<Vec<Organisation>>;
    /// Registers a new key; `NotFound` if the organisation does not exist.
    async fn create_key(&self, organisation: &str, key: &NewKey) -> StoreResult<KeyInfo>;
    /// An organisation's keys, oldest first; `NotFound` if the organisation does not exist.
    async fn list_keys(&self, organisation: &str) -> StoreResult<Vec<KeyInfo>>;
    /// Revokes a key by id, confined to `organisation` when given.
    async fn revoke_key_by_id(&self, id: i64, organisation: Option<&str>) -> StoreResult<KeyRevocation>;
    /// Records a key's last use (never moving it backwards).
    async fn touch_key_last_used(&self, id: i64, at: DateTime<Utc>) -> StoreResult<()>;
    async fn record_audit(&self, entry: &NewAudit) -> StoreResult<()>;
    /// The audit log, newest first, of one organisation or of all; strictly before `before`.
    async fn list_audit(&self, organisation: Option<&str>, before: Option<AuditPos>, limit: i64)
        -> StoreResult<Vec<AuditEntry>>;

    /// Finds the customer by canonical e-mail or creates one; true when created.
    async fn find_or_create_by_email(&self, space: SpaceId, input: &CreateCustomer)
        -> StoreResult<(bool, Profile)>;
    /// The profile, and whether `identity_digest` is a live session of this customer.
    async fn customer_detail(
        &self,
        space: SpaceId,
        cu_ref_no: &CuRefNo,
        identity_digest: &str,
        ip: &ClientIp,
    ) -> StoreResult<Option<Detail>>;
    async fn upsert_match(
        &self,
        space: SpaceId,
        manager: &CuRefNo,
        target: &MatchTarget,
        notice: Option<&str>,
    ) -> StoreResult<MatchOutcome>;
    /// Whether the customer exists in the space (for telling 404 from an empty list).
    async fn customer_exists(&self, space: SpaceId, cu_ref_no: &CuRefNo) -> StoreResult<bool>;
    async fn list_matches(
        &self,
        space: SpaceId,
        cu_ref_no: &CuRefNo,
        side: Side,
        after: Option<PagePos>,
        limit: i64,
    ) -> StoreResult<Vec<MatchItem>>;
    async fn remove_match(&self, space: SpaceId, manager: &CuRefNo, customer: &CuRefNo)
        -> StoreResult<RemoveOutcome>;

    /// Stores a session for a customer; false if the customer does not exist.
    async fn insert_session(&self, space: SpaceId, session: &NewSession) -> StoreResult<bool>;

    /// Applies the demo data idempotently: rows that exist are left alone.
    async fn apply_seed(&self, seed: &crate::seed::Seed) -> StoreResult<()>;
}

pub type DynStore = Arc<dyn Store>;

/// Pool and connection settings shared by both backends.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: std::time::Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self { max_connections: 16, acquire_timeout: std::time::Duration::from_secs(5) }
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
