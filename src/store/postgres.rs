//! PostgreSQL backend: the production store.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::sql::{impl_store, Dialect, Queries};
use super::PoolSettings;

pub struct PgStore {
    pool: PgPool,
    q: Queries,
}

impl PgStore {
    pub async fn connect(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        // sqlx caches prepared statements per connection (100 by default), which covers
        // every statement this server issues, so hot paths skip the parse step.
        let options = PgConnectOptions::from_str(url)?.application_name("bizkit-mirror");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool, q: Queries::new(Dialect::Postgres) })
    }
}

impl_store!(PgStore, sqlx::Postgres);
