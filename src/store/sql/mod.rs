//! The SQL of every store task, written once for both backends. This module is compiled
//! twice, inside `postgres.rs` and inside `sqlite.rs`: `Db` is that backend's sqlx
//! database and `dialect` its named differences. Each file implements one of the
//! `Store` traits; the statements they share (the profile, the customer insert, the
//! session insert) are here.

mod accounts;
mod admin;
mod admin_rows;
mod batch;
mod contacts;
mod customers;
mod merge;
mod outbox;
mod pool;
mod reads;
mod search;
mod webhooks;

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::query::QueryAs;
use sqlx::types::Json;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Executor;

use super::{dialect, Db};
use crate::normalize::{ClientIp, CuRefNo, Email, SearchKeys, EMAIL_RULES_VERSION, SEARCH_RULES_VERSION};
use crate::store::{
    Address, Extension, Group, Profile, Referrer, RunningSubscription, SpaceId, StoreError, StoreResult,
};

/// The store over one pool of this backend.
pub struct SqlStore {
    connections: Connections,
    /// Detail and account-info, gathered from concurrent calls.
    reads: reads::Reads,
    /// Customers created by imports since this store opened: statistics are refreshed as
    /// it passes `next_analyze`.
    imported: std::sync::atomic::AtomicU64,
    next_analyze: std::sync::atomic::AtomicU64,
}

/// The pool, and the count of calls waiting for one of its connections (see `Waiting`).
/// Cloned into the tasks that outlive a call (an import batch, a statistics refresh), so
/// that their waits are counted too.
#[derive(Clone)]
struct Connections {
    pool: pool::Pool,
    waiting: Arc<AtomicU64>,
}

impl Connections {
    /// A connection of the pool for one statement; returned when dropped.
    async fn conn(&self) -> Result<pool::Conn, sqlx::Error> {
        let _waiting = Waiting::enter(&self.waiting);
        pool::Conn::take(&self.pool).await
    }

    /// A transaction on a connection of the pool, begun with `statement`.
    async fn begin_with(&self, statement: &'static str) -> Result<Tx, sqlx::Error> {
        let _waiting = Waiting::enter(&self.waiting);
        Tx::begin(pool::Conn::take(&self.pool).await?, statement).await
    }
}

impl SqlStore {
    /// A store over a pool of at most `max` connections opened with `options`; taking one
    /// waits at most `acquire_timeout`. Nothing is opened yet.
    pub(super) fn open(
        options: <<Db as sqlx::Database>::Connection as sqlx::Connection>::Options,
        max: u32,
        acquire_timeout: std::time::Duration,
    ) -> Self {
        let pool = pool::build(options, max, acquire_timeout);
        let connections = Connections { pool, waiting: Arc::default() };
        Self {
            reads: reads::Reads::new(&connections),
            connections,
            imported: 0.into(),
            next_analyze: FIRST_ANALYZE.into(),
        }
    }

    /// Brings the database's schema up to date.
    pub(super) async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        let mut conn = self.conn().await?;
        dialect::MIGRATOR.run(&mut *conn).await
    }

    /// A connection of the pool for one statement; returned when dropped.
    async fn conn(&self) -> Result<pool::Conn, sqlx::Error> {
        self.connections.conn().await
    }

    /// A transaction on a connection of the pool, begun with `statement`.
    async fn begin_with(&self, statement: &'static str) -> Result<Tx, sqlx::Error> {
        self.connections.begin_with(statement).await
    }

    /// A transaction begun with the backend's plain `BEGIN`.
    async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.begin_with("begin").await
    }
}

/// Counts a call among the pool's waiters from its start until it has a connection (for
/// a transaction, until the connection's `BEGIN` is answered), however it ends: the
/// count behind `PoolStats::waiting`.
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Imported customers after which the tables' statistics are first refreshed; then again
/// at every doubling.
const FIRST_ANALYZE: u64 = 1_000;

type Args<'q> = <Db as sqlx::Database>::Arguments<'q>;

/// A statement being bound, of either kind: the dialect binds a batch's rows to it
/// (`batch::bind_rows`) as that backend reads them.
pub(super) trait Bind<'q>: Sized {
    fn bind_value<T: 'q + sqlx::Encode<'q, Db> + sqlx::Type<Db>>(self, value: T) -> Self;
}

impl<'q> Bind<'q> for sqlx::query::Query<'q, Db, Args<'q>> {
    fn bind_value<T: 'q + sqlx::Encode<'q, Db> + sqlx::Type<Db>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, O> Bind<'q> for QueryAs<'q, Db, O, Args<'q>> {
    fn bind_value<T: 'q + sqlx::Encode<'q, Db> + sqlx::Type<Db>>(self, value: T) -> Self {
        self.bind(value)
    }
}

/// A transaction of this backend, as the writes inside one take it.
type Tx = pool::Tx;

/// Last-seen writes for one session happen at most this often.
const SESSION_TOUCH_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// A new cuRefNo colliding with an existing one is retried this many times.
const CU_REF_NO_ATTEMPTS: usize = 5;

/// A write the database aborts as a deadlock or serialisation victim is run again, at
/// most this many times in all; then it is a 503.
const ABORTED_ATTEMPTS: usize = 3;

/// Runs the transaction `run` again while the database aborts it (`Aborted`), at most
/// `ABORTED_ATTEMPTS` times.
async fn retrying<T, F, Fut>(mut run: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match run().await {
            Err(StoreError::Aborted(_)) if attempt < ABORTED_ATTEMPTS => continue,
            other => return other,
        }
    }
}

/// Runs `insert` with a fresh cuRefNo, again with another while it hits a unique
/// violation (a cuRefNo collision) or is aborted by the database, at most
/// `CU_REF_NO_ATTEMPTS` times.
async fn with_new_cu_ref_no<T, F, Fut>(mut insert: F) -> StoreResult<T>
where
    F: FnMut(CuRefNo) -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match insert(CuRefNo::generate()).await {
            Err(StoreError::Conflict(_) | StoreError::Aborted(_)) if attempt < CU_REF_NO_ATTEMPTS => continue,
            other => return other,
        }
    }
}

/// The profile's columns, from the customer row aliased `c`: its derived parts are kept
/// on the row (written by `batch`, the one writer of groups and subscriptions), so only a referrer is read from elsewhere.
const PROFILE_COLUMNS: &str = "c.cu_ref_no, c.email, c.phone, c.first_name, c.last_name, c.company_name, \
     c.premium, c.ban, c.meta, c.credit_balance, c.profile_groups, c.profile_subscriptions, \
     c.partner_customer_id, c.addresses, c.profile_alternates, \
     r.cu_ref_no as referrer_cu_ref_no, r.email as referrer_email, r.first_name as referrer_first_name, \
     r.last_name as referrer_last_name";

/// The join `PROFILE_COLUMNS` reads the referrer through.
const REFERRER_JOIN: &str =
    "left join customers r on r.space_id = c.space_id and r.id = c.referrer_id and r.erased_at is null";

/// The profile of the customer with id `$2` in space `$1`.
static PROFILE_BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!("select {PROFILE_COLUMNS} from customers c {REFERRER_JOIN} where c.space_id = $1 and c.id = $2")
});

/// A subscription as the profile stores it: a running one is active and not past
/// `valid_until`, which is decided when the profile is read.
#[derive(serde::Serialize, serde::Deserialize, sqlx::FromRow)]
struct StoredSubscription {
    #[serde(flatten)]
    #[sqlx(flatten)]
    subscription: RunningSubscription,
    valid_until: Option<DateTime<Utc>>,
}

/// The alternate addresses and numbers as the profile shows them (`profile_alternates`).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct StoredAlternates {
    emails: Vec<String>,
    phones: Vec<String>,
}

/// A customer's own fields as its row stores them: what writes set directly, not derived.
#[derive(sqlx::FromRow, Clone, PartialEq)]
struct OwnFields {
    email: Option<String>,
    email_canonical: Option<String>,
    email_rules_version: i32,
    phone: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    company_name: Option<String>,
    company_registration_number: Option<String>,
    tax_identification_number: Option<String>,
    premium: bool,
    ban: bool,
    meta: Json<Map<String, Value>>,
    partner_customer_id: Option<String>,
    addresses: Json<Vec<Address>>,
}

/// The columns of `OwnFields`.
const OWN_COLUMNS: &str = "email, email_canonical, email_rules_version, phone, first_name, last_name, company_name, \
     company_registration_number, tax_identification_number, premium, ban, meta, partner_customer_id, addresses";

#[derive(sqlx::FromRow)]
struct ProfileRow {
    cu_ref_no: String,
    email: Option<String>,
    phone: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    company_name: Option<String>,
    premium: bool,
    ban: bool,
    meta: Json<Map<String, Value>>,
    credit_balance: i64,
    profile_groups: Json<Vec<Group>>,
    profile_subscriptions: Json<Vec<StoredSubscription>>,
    partner_customer_id: Option<String>,
    addresses: Json<Vec<Address>>,
    profile_alternates: Json<StoredAlternates>,
    referrer_cu_ref_no: Option<String>,
    referrer_email: Option<String>,
    referrer_first_name: Option<String>,
    referrer_last_name: Option<String>,
}

impl ProfileRow {
    /// The profile as of `now`: subscriptions past their end are no longer running.
    fn at(self, now: DateTime<Utc>) -> Profile {
        let referrer = self.referrer_cu_ref_no.map(|cu_ref_no| Referrer {
            cu_ref_no,
            email: self.referrer_email,
            first_name: self.referrer_first_name,
            last_name: self.referrer_last_name,
        });
        Profile {
            cu_ref_no: self.cu_ref_no,
            credit_balance: self.credit_balance,
            email: self.email,
            phone: self.phone,
            first_name: self.first_name,
            last_name: self.last_name,
            company_name: self.company_name,
            premium: self.premium,
            ban: self.ban,
            groups: self.profile_groups.0,
            meta: self.meta.0,
            referrer,
            running_subscriptions: self
                .profile_subscriptions
                .0
                .into_iter()
                .filter(|s| s.valid_until.is_none_or(|until| until > now))
                .map(|s| s.subscription)
                .collect(),
            extension: Extension {
                partner_customer_id: self.partner_customer_id,
                alternate_emails: self.profile_alternates.0.emails,
                alternate_phones: self.profile_alternates.0.phones,
                addresses: self.addresses.0,
            },
        }
    }
}

/// The profile of customer `id` of `space` as of `now`, read through `exec`.
async fn profile_by_id<'e>(
    exec: impl Executor<'e, Database = Db>,
    space: SpaceId,
    id: i64,
    now: DateTime<Utc>,
) -> StoreResult<Profile> {
    let row: ProfileRow = sqlx::query_as(&PROFILE_BY_ID).bind(space.0).bind(id).fetch_one(exec).await?;
    Ok(row.at(now))
}

/// The live customer's id, read through `exec` (the pool, or a transaction).
async fn customer_id<'e>(
    exec: impl Executor<'e, Database = Db>,
    space: SpaceId,
    cu_ref_no: &str,
) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar("select id from customers where space_id = $1 and cu_ref_no = $2 and erased_at is null")
        .bind(space.0)
        .bind(cu_ref_no)
        .fetch_optional(exec)
        .await?)
}

/// The live customer's id, its row locked until the transaction `tx` ends: for writes
/// that must not interleave with an erasure of the same customer.
async fn lock_customer(tx: &mut Tx, space: SpaceId, cu_ref_no: &str) -> StoreResult<Option<i64>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "select id from customers where space_id = $1 and cu_ref_no = $2 and erased_at is null{}",
            dialect::LOCK_ROW
        )
    });
    Ok(sqlx::query_scalar(&SQL).bind(space.0).bind(cu_ref_no).fetch_optional(&mut **tx).await?)
}

/// Every column a customer may start with. The one statement that inserts customers;
/// what happens when the canonical e-mail is taken is `OnEmailTaken`.
const INSERT_CUSTOMER: &str = "insert into customers (space_id, cu_ref_no, email, email_canonical, \
     email_rules_version, phone, first_name, last_name, company_name, company_registration_number, \
     tax_identification_number, premium, ban, meta, registration_ip, last_ip, last_seen_at, created_at, updated_at, \
     password_hash, account_confirmed_at, search_name, search_last_name, search_company_name, search_email, \
     search_version) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16, $17, $17, $18, $19, \
     $20, $21, $22, $23, $24)";

/// What inserting a customer does when its canonical e-mail belongs to a customer already.
#[derive(Clone, Copy)]
enum OnEmailTaken {
    /// A unique violation (`Conflict`).
    Fail,
    /// `create`: the existing customer's empty company fields are filled and its last
    /// visit recorded.
    FillEmpty,
    /// Registration: the password is set on a guest (or on a registration never
    /// confirmed whose tokens have all expired), keeping its cuRefNo; a banned, erased,
    /// confirmed or pending (a live token) customer is left alone (no row).
    Register,
}

impl OnEmailTaken {
    fn clause(self) -> &'static str {
        match self {
            OnEmailTaken::Fail => "",
            OnEmailTaken::FillEmpty => {
                " on conflict (space_id, email_canonical) do update set \
                 company_name = coalesce(customers.company_name, excluded.company_name), \
                 company_registration_number = coalesce(customers.company_registration_number, \
                 excluded.company_registration_number), \
                 tax_identification_number = coalesce(customers.tax_identification_number, \
                 excluded.tax_identification_number), \
                 search_company_name = case when customers.company_name is null \
                 then excluded.search_company_name else customers.search_company_name end, \
                 last_ip = excluded.last_ip, last_seen_at = excluded.last_seen_at, updated_at = excluded.updated_at"
            }
            OnEmailTaken::Register => {
                " on conflict (space_id, email_canonical) do update set \
                 password_hash = excluded.password_hash, account_confirmed_at = excluded.account_confirmed_at, \
                 first_name = coalesce(customers.first_name, excluded.first_name), \
                 last_name = coalesce(customers.last_name, excluded.last_name), \
                 company_name = coalesce(customers.company_name, excluded.company_name), \
                 last_ip = excluded.last_ip, last_seen_at = excluded.last_seen_at, updated_at = excluded.updated_at \
                 where customers.ban = false and customers.erased_at is null \
                 and (customers.password_hash is null or (customers.account_confirmed_at is null \
                 and not exists (select 1 from account_tokens t where t.space_id = customers.space_id \
                 and t.customer_id = customers.id and t.used_at is null and t.expires_at > excluded.last_seen_at)))"
            }
        }
    }

    /// The insert, returning the row's id and its (possibly older) cuRefNo.
    fn insert(self) -> &'static str {
        static STATEMENTS: LazyLock<[String; 3]> = LazyLock::new(|| {
            [OnEmailTaken::Fail, OnEmailTaken::FillEmpty, OnEmailTaken::Register]
                .map(|on| format!("{INSERT_CUSTOMER}{} returning id, cu_ref_no", on.clause()))
        });
        &STATEMENTS[self as usize]
    }
}

/// A customer row to insert; fields left at their default start empty.
#[derive(Default)]
struct NewCustomer<'a> {
    space: i64,
    cu_ref_no: &'a str,
    email: Option<&'a Email>,
    phone: Option<&'a str>,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    company_name: Option<&'a str>,
    company_registration_number: Option<&'a str>,
    tax_identification_number: Option<&'a str>,
    premium: bool,
    ban: bool,
    meta: Option<&'a Map<String, Value>>,
    ip: Option<&'a ClientIp>,
    last_seen_at: Option<DateTime<Utc>>,
    password_hash: Option<&'a str>,
    account_confirmed_at: Option<DateTime<Utc>>,
}

impl<'a> NewCustomer<'a> {
    /// Binds the row to `INSERT_CUSTOMER`'s placeholders, with `now` as its creation time.
    fn bind<O>(&self, query: QueryAs<'a, Db, O, Args<'a>>, now: DateTime<Utc>) -> QueryAs<'a, Db, O, Args<'a>> {
        static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);
        let keys =
            SearchKeys::of(self.first_name, self.last_name, self.company_name, self.email.map(Email::normalized));
        query
            .bind(self.space)
            .bind(self.cu_ref_no)
            .bind(self.email.map(Email::normalized))
            .bind(self.email.map(Email::canonical))
            .bind(EMAIL_RULES_VERSION as i64)
            .bind(self.phone)
            .bind(self.first_name)
            .bind(self.last_name)
            .bind(self.company_name)
            .bind(self.company_registration_number)
            .bind(self.tax_identification_number)
            .bind(self.premium)
            .bind(self.ban)
            .bind(Json(self.meta.unwrap_or(&EMPTY)))
            .bind(self.ip.map(ClientIp::as_str))
            .bind(self.last_seen_at)
            .bind(now)
            .bind(self.password_hash)
            .bind(self.account_confirmed_at)
            .bind(keys.name)
            .bind(keys.last_name)
            .bind(keys.company_name)
            .bind(keys.email)
            .bind(SEARCH_RULES_VERSION)
    }
}

/// The one statement that starts sessions: a login's new one, or the demo session
/// renewed (expiry extended, revocation lifted) on every demo start.
const INSERT_SESSION: &str = "insert into sessions \
     (space_id, customer_id, identity_digest, created_at, expires_at, last_seen_at) values ($1, $2, $3, $4, $5, $4) \
     on conflict (space_id, identity_digest) do update set expires_at = excluded.expires_at, revoked_at = null";

/// Starts a session for customer `customer_id` through `exec`.
async fn insert_session<'e>(
    exec: impl Executor<'e, Database = Db>,
    space: SpaceId,
    customer_id: i64,
    identity_digest: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(INSERT_SESSION)
        .bind(space.0)
        .bind(customer_id)
        .bind(identity_digest)
        .bind(now)
        .bind(expires_at)
        .execute(exec)
        .await?;
    Ok(())
}
