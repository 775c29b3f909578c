//! SQLite backend: the embedded default, one file, no server to run.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::sql::{impl_store, Dialect, Queries};
use super::PoolSettings;

pub struct SqliteStore {
    pool: SqlitePool,
    q: Queries,
}

impl SqliteStore {
    pub async fn connect(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        // WAL lets readers run beside the one writer; the busy timeout makes a writer wait
        // for the lock instead of failing; NORMAL sync is durable in WAL mode except for
        // the last transactions before a power cut, never corrupting.
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.min(8))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Self { pool, q: Queries::new(Dialect::Sqlite) })
    }
}

impl_store!(SqliteStore, sqlx::Sqlite);
