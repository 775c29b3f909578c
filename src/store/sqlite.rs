//! SQLite backend: the embedded default, one file, no server to run. The SQL is `sql/`,
//! compiled here over `sqlx::Sqlite`; this file holds the connection settings and the
//! dialect.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::Connection as _;

use super::PoolSettings;

type Db = sqlx::Sqlite;

/// Where SQLite's SQL differs from PostgreSQL's.
mod dialect {
    /// Takes the write lock at once, so a read-then-write transaction never fails to
    /// upgrade under a concurrent writer.
    pub const BEGIN_WRITE: &str = "begin immediate";

    /// Put before a statement, shows its plan instead, a line per row in `EXPLAIN_COLUMN`.
    pub const EXPLAIN: &str = "explain query plan ";
    pub const EXPLAIN_COLUMN: &str = "detail";

    /// Nothing to lock row by row: a write transaction holds the database's one write lock.
    pub const LOCK_ROW: &str = "";

    /// One process serves a SQLite file, and its worker claims one batch at a time.
    pub const SKIP_LOCKED: &str = "";

    /// The position of a string in another (0: not in it).
    pub const FIND_TEXT: &str = "instr";

    /// A CTE cannot hold an upsert here: the profile is read by a second statement.
    pub const CREATE_RETURNS_PROFILE: bool = false;

    /// One write transaction at a time: an import batch begins after the one before it
    /// commits.
    pub const CONCURRENT_IMPORTS: bool = false;

    /// A new customer's id: the next rowid, as a null id is given. Batches are written one
    /// after another, so their ids follow their order without drawing them ahead.
    pub const NEW_CUSTOMER_ID: &str = "x.id";
    pub const GIVEN_IDS: &str = "";
    pub const DRAW_CUSTOMER_IDS: Option<&str> = None;

    /// The strings, and the ids, in the JSON array bound to `$?` (the batch writes' lists).
    pub const TEXT_LIST: &str = "select value from json_each($?)";
    pub const ID_LIST: &str = "select value from json_each($?)";

    /// Rows whose id (`{column}`) is one of those the subquery `{ids}` finds; SQLite drives
    /// the lookups from the subquery.
    pub const ID_IN_SUBQUERY: &str = "{column} in ({ids})";

    /// Contact points (`p`) looked up by value: without statistics SQLite prefers the
    /// covering primary key, and scans the space's points by it.
    pub const CONTACT_POINTS_BY_VALUE: &str = "contact_points p indexed by contact_points_lookup";

    /// A batch's rows as the derived table `x`, a column `x.{name}` per `(name, type)` (its
    /// type is the JSON value's) and `x.ord`, the row's position: the objects of the JSON
    /// array bound to `$first`.
    pub fn rows(first: usize, columns: &[(&str, &str)]) -> String {
        let fields: Vec<String> =
            columns.iter().map(|(name, _)| format!("json_extract(r.value, '$.{name}') as {name}")).collect();
        format!("(select {}, r.key as ord from json_each(${first}) as r) as x", fields.join(", "))
    }

    /// `rows`: SQLite plans each statement once, whatever the count.
    pub fn rows_of_any_count(first: usize, columns: &[(&str, &str)]) -> String {
        rows(first, columns)
    }

    /// Binds `rows` to `q` as `rows` reads them: one JSON array of objects.
    pub fn bind_rows<'q, Q: super::sql::Bind<'q>, T: serde::Serialize>(
        q: Q,
        rows: &[T],
        _columns: &[(&str, &str)],
    ) -> Result<Q, String> {
        Ok(q.bind_value(serde_json::to_string(rows).map_err(|e| e.to_string())?))
    }

    /// The customer a batch row names (`x.id`) in the space `$1`, as an update joins them.
    /// The unary `+` keeps the space's indexes out of the plan: with them SQLite walks
    /// every customer of the space and scans the batch for each (minutes a batch at
    /// 100,000 customers); without, each batch row finds its customer by rowid.
    pub const CUSTOMER_OF_ROW: &str = "+customers.space_id = $1 and customers.id = x.id";

    /// A JSON value passed as text, as a JSON column (meta, the profile's lists) stores it.
    pub const JSON_VALUE: &str = "{json}";

    /// SQLite's planner does well on its own defaults: no statistics are gathered.
    pub const ANALYZE_IMPORTED: Option<&str> = None;

    /// One server process serves a SQLite file, and revokes through it evict at once;
    /// changes made by the command line reach it when its key cache expires.
    pub async fn key_changes(
        _options: &sqlx::sqlite::SqliteConnectOptions,
    ) -> crate::store::StoreResult<Option<Box<dyn crate::store::KeyChanges>>> {
        Ok(None)
    }

    pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
}

// Compiled once per backend on purpose: see the module docs of `store`.
/// Opens one connection and reads: the first opener of a file switches it to WAL, and
/// after a crash recovers it.
async fn read_once(options: &SqliteConnectOptions) -> Result<(), sqlx::Error> {
    let mut first = SqliteConnection::connect_with(options).await?;
    sqlx::query("select count(*) from sqlite_master").execute(&mut first).await?;
    first.close().await
}

/// Runs of the migrator (and of the first read) on one start, at most: enough to outwait
/// another instance.
const MIGRATION_ATTEMPTS: u32 = 50;

#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

/// The store over a SQLite pool.
pub use sql::SqlStore as SqliteStore;

impl SqliteStore {
    pub async fn connect(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        // WAL lets readers run beside the one writer; the busy timeout makes a writer wait
        // for the lock instead of failing. FULL sync makes every commit survive a power
        // cut; NORMAL (an explicit choice) survives a crash of the process but may lose
        // the last commits to a power cut, never corrupting.
        let synchronous = if settings.sqlite_durable { SqliteSynchronous::Full } else { SqliteSynchronous::Normal };
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // After a crash the first reader recovers the WAL, and connections opened beside it
        // meanwhile are refused as locked, busy timeout or not: one connection reads first.
        // Two instances opening a new file at once race to switch it to WAL, and the loser
        // is told "locked" at once, whatever the busy timeout: it tries again shortly.
        let mut attempt = 0;
        loop {
            match read_once(&options).await {
                Ok(()) => break,
                Err(e) if attempt < MIGRATION_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "the database is locked by another opener; trying again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let store = Self::open(options, settings.max_connections.min(8), settings.acquire_timeout);
        // SQLite's migrator takes no lock: two instances starting at once on one file race,
        // and the loser's transaction fails (a table "already exists", or the database is
        // busy). Its migration rolled back whole, so running the migrator again, once the
        // winner is done, finds the work done.
        let mut attempt = 0;
        loop {
            match store.migrate().await {
                Ok(()) => break,
                Err(e) if attempt < MIGRATION_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "migrations raced another instance; running them again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(store)
    }
}
