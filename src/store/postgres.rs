//! PostgreSQL backend: the production store. The SQL is `sql/`, compiled here over
//! `sqlx::Postgres`; this file holds the connection settings and the dialect.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use super::PoolSettings;

type Db = sqlx::Postgres;

/// Where PostgreSQL's SQL differs from SQLite's.
mod dialect {
    use super::super::columns::{bound_type, Column};

    /// A write transaction needs nothing special: row locks are taken as rows are written.
    pub const BEGIN_WRITE: &str = "begin";

    /// Put before a statement, shows its plan instead, a line per row in `EXPLAIN_COLUMN`.
    pub const EXPLAIN: &str = "explain ";
    pub const EXPLAIN_COLUMN: &str = "QUERY PLAN";

    /// Appended to a read of the customer a transaction is about to write: the row is
    /// locked, so the write and an erasure of that customer happen one after the other.
    pub const LOCK_ROW: &str = " for update";

    /// Appended to the claim of due webhook deliveries: rows another process is claiming
    /// are skipped, so each delivery is taken by one process.
    pub const SKIP_LOCKED: &str = " for update of d skip locked";

    /// The position of a string in another (0: not in it).
    pub const FIND_TEXT: &str = "strpos";

    /// The create upsert and the profile fit one statement (a data-modifying CTE).
    pub const CREATE_RETURNS_PROFILE: bool = true;

    /// Import batches with no key in common are written side by side, each in its own
    /// transaction: row locks keep them apart.
    pub const CONCURRENT_IMPORTS: bool = true;

    /// The sequence of customer ids, as a subquery: looked up once per statement (an
    /// init plan), not once per id drawn.
    macro_rules! customer_ids {
        () => {
            "(select pg_get_serial_sequence('customers', 'id')::regclass)"
        };
    }

    /// A new customer's id: drawn ahead (`DRAW_CUSTOMER_IDS`), else by the insert. Ids are
    /// generated always, so an insert that gives them says so (`GIVEN_IDS`).
    pub const NEW_CUSTOMER_ID: &str = concat!("coalesce(x.id, nextval(", customer_ids!(), "))");
    pub const GIVEN_IDS: &str = " overriding system value";

    /// `$1` ids for new customers, drawn from their sequence in one round trip.
    pub const DRAW_CUSTOMER_IDS: Option<&str> =
        Some(concat!("select nextval(", customer_ids!(), ") from generate_series(1, $1)"));

    /// The strings, and the ids, in the JSON array bound to `$?` (the batch writes' lists).
    pub const TEXT_LIST: &str = "select jsonb_array_elements_text($?::jsonb) as value";
    pub const ID_LIST: &str = "select jsonb_array_elements_text($?::jsonb)::bigint as value";

    /// Rows whose id (`{column}`) is one of those the subquery `{ids}` finds: as an array,
    /// so the ids drive primary-key lookups whatever the statistics say. As `in (…)` the
    /// planner, told by stale statistics that a new space is small, scans the space and
    /// probes the subquery's hash instead: a cost that grows with every batch imported.
    pub const ID_IN_SUBQUERY: &str = "{column} = any(array({ids}))";

    /// Contact points (`p`) looked up by value: the planner finds the index itself.
    pub const CONTACT_POINTS_BY_VALUE: &str = "contact_points p";

    /// A batch's rows as the derived table `x`, a column `x.{name}` per `(name, type)` and
    /// `x.ord`, the row's position: each column an array parameter, `$first` on, sent in
    /// binary, so no value is parsed from text. (As one JSON parameter, taking the fields
    /// out of its objects cost more than writing the rows.)
    pub fn rows(first: usize, columns: &[(&str, &str)]) -> String {
        rows_as(first, columns, |array| array)
    }

    /// `rows`, with each array read through a subquery, so that the planner does not
    /// know how many rows there are: every batch runs one generic plan. Given the arrays
    /// themselves, it planned each batch of fewer than ten rows anew, as cheaper than the
    /// generic plan's ten: 0.36 ms of planning for a 0.08 ms read of four customers.
    pub fn rows_of_any_count(first: usize, columns: &[(&str, &str)]) -> String {
        rows_as(first, columns, |array| format!("(select {array})"))
    }

    fn rows_as(first: usize, columns: &[(&str, &str)], array: impl Fn(String) -> String) -> String {
        let arrays: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| match bound_type(ty) {
                bound if bound == *ty => array(format!("${}::{ty}[]", first + i)),
                bound => array(format!("${}::{bound}[]::{ty}[]", first + i)),
            })
            .collect();
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        format!("unnest({}) with ordinality as x({}, ord)", arrays.join(", "), names.join(", "))
    }

    /// Binds `rows` to `q` as `rows` reads them: the field `name` of every row, a column
    /// at a time. A field of another JSON type than its column's is an error.
    pub fn bind_rows<'q, Q: super::sql::Bind<'q>, T: serde::Serialize>(
        mut q: Q,
        rows: &[T],
        columns: &[(&str, &str)],
    ) -> Result<Q, String> {
        for column in super::super::columns::columns(rows, columns)? {
            q = match column {
                Column::BigInt(v) => q.bind_value(v),
                Column::Integer(v) => q.bind_value(v),
                Column::Boolean(v) => q.bind_value(v),
                Column::Text(v) => q.bind_value(v),
            };
        }
        Ok(q)
    }

    /// The customer a batch row names (`x.id`) in the space `$1`, as an update joins them.
    pub const CUSTOMER_OF_ROW: &str = "customers.space_id = $1 and customers.id = x.id";

    /// A JSON value passed as text, as a JSON column (meta, the profile's lists) stores it.
    pub const JSON_VALUE: &str = "{json}::jsonb";

    /// Refreshes the statistics of the tables an import grows, so plans follow their size
    /// (a new statistic also replaces the cached plans made on the old one).
    pub const ANALYZE_IMPORTED: Option<&str> =
        Some("analyze customers, contact_points, customer_group_members, subscriptions");

    pub use super::key_changes;

    pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
}

// Compiled once per backend on purpose: see the module docs of `store`.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

/// The store over a PostgreSQL pool.
pub use sql::SqlStore as PgStore;

impl PgStore {
    pub async fn connect(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        // sqlx caches prepared statements per connection (100 by default), which covers
        // every statement this server issues, so hot paths skip the parse step.
        let timeout = settings.statement_timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(url)?
            .application_name("bizkit-mirror")
            .options([("statement_timeout", timeout.as_str())]);
        let store = Self::open(options, settings.max_connections, settings.acquire_timeout);
        store.migrate().await?;
        Ok(store)
    }
}

/// The channel on which a trigger announces every change to `api_keys`, with the key's
/// digest, as the change commits (migration 0007).
const KEY_CHANGES_CHANNEL: &str = "bizkit_key_changes";

/// How long to wait before listening again after the connection could not be made.
const LISTEN_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Listens for key changes on a connection of its own, beside the pool's.
pub async fn key_changes(options: &PgConnectOptions) -> super::StoreResult<Option<Box<dyn super::KeyChanges>>> {
    // A pool of its own, one connection held for good: taken from the store's pool it
    // would be missing there for as long as the process runs.
    let options = options.clone();
    let own = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_lazy_with(options);
    let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
    listener.listen(KEY_CHANGES_CHANNEL).await?;
    Ok(Some(Box::new(KeyListener(listener))))
}

struct KeyListener(sqlx::postgres::PgListener);

#[async_trait::async_trait]
impl super::KeyChanges for KeyListener {
    async fn next(&mut self) -> super::KeyChange {
        use super::KeyChange;
        match self.0.try_recv().await {
            Ok(Some(notice)) => KeyChange::Key(notice.payload().to_owned()),
            // The connection was lost (`None`), or making it again failed: notices sent
            // meanwhile are lost. Listen again first, so that no change committed after
            // the caller's resync can be missed, then have it resync.
            Ok(None) | Err(_) => loop {
                // A statement through the listener makes its connection, listening again.
                match sqlx::query("select 1").execute(&mut self.0).await {
                    Ok(_) => break KeyChange::Resync,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for key changes; trying again");
                        tokio::time::sleep(LISTEN_RETRY).await;
                    }
                }
            },
        }
    }
}
