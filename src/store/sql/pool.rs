//! The pool of database connections: `deadpool` over this backend's sqlx connections.
//!
//! sqlx's own pool sends a round trip on every connection it takes back (a ping), in a
//! task of its own, however the connection was used: on PostgreSQL a second statement
//! for every request's one. Here a connection goes back as it is, and is tested before
//! use only when it may have broken meanwhile (`test_before_use`: idle for a while, or
//! shortly after another connection was lost). What the ping guarded against is covered
//! without it:
//! - a statement whose caller went away mid-way leaves replies unread: sqlx reads them
//!   off before the connection's next statement;
//! - a transaction abandoned unfinished (even inside `BEGIN` or `COMMIT`) is rolled back
//!   at once, in a task, before its connection goes back (`Conn`'s drop), so an idle
//!   connection never holds locks, and its next owner never starts inside it;
//! - a connection that failed with an I/O or protocol error is discarded, and the error
//!   makes every other one be tested before use for a while (`note_connection_lost`).

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use sqlx::{ConnectOptions, Connection, Executor};

use super::Db;
use crate::store::test_before_use;

/// A connection of this backend.
type Raw = <Db as sqlx::Database>::Connection;

/// Opens connections with `options`, and tests a pooled one before use when it may have
/// broken.
pub(super) struct Manager {
    pub(super) options: <Raw as Connection>::Options,
}

impl managed::Manager for Manager {
    type Type = Raw;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Raw, sqlx::Error> {
        self.options.connect().await
    }

    async fn recycle(&self, conn: &mut Raw, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        if test_before_use(metrics.last_used()) {
            conn.ping().await.map_err(RecycleError::Backend)?;
        }
        Ok(())
    }
}

pub(super) type Pool = managed::Pool<Manager>;

/// A pool of at most `max` connections opened with `options`; taking one waits at most
/// `acquire_timeout`.
pub(super) fn build(options: <Raw as Connection>::Options, max: u32, acquire_timeout: Duration) -> Pool {
    managed::Pool::builder(Manager { options })
        .max_size(max as usize)
        .wait_timeout(Some(acquire_timeout))
        .create_timeout(Some(acquire_timeout))
        .recycle_timeout(Some(acquire_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .expect("a pool with a runtime builds")
}

/// A connection taken from the pool; it goes back when dropped. One dropped while a
/// transaction may be open on it (its owner gave up part-way, even inside `BEGIN` or
/// `COMMIT`) is rolled back first, at once, in a task: until then it would hold its locks
/// (SQLite's write lock), and the next owner would find itself inside the transaction.
pub(super) struct Conn {
    object: Option<Object<Manager>>,
    in_transaction: bool,
}

impl Conn {
    /// A connection of `pool`; a failure to get one as sqlx's pool names it.
    pub(super) async fn take(pool: &Pool) -> Result<Self, sqlx::Error> {
        let object = pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => e,
            PoolError::Timeout(_) => sqlx::Error::PoolTimedOut,
            PoolError::Closed => sqlx::Error::PoolClosed,
            other => sqlx::Error::Configuration(other.to_string().into()),
        })?;
        Ok(Conn { object: Some(object), in_transaction: false })
    }

    /// Runs `statement` alone; a connection it finds broken leaves the pool.
    async fn run(&mut self, statement: &'static str) -> Result<(), sqlx::Error> {
        let result = (&mut **self).execute(statement).await;
        if let Err(e) = &result {
            if is_broken(e) {
                self.in_transaction = false;
                self.object.take().map(Object::take);
            }
        }
        result.map(drop)
    }
}

/// Whether `err` may have left the connection unusable.
fn is_broken(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_))
}

impl Deref for Conn {
    type Target = Raw;

    fn deref(&self) -> &Raw {
        self.object.as_ref().expect("a connection in use")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Raw {
        self.object.as_mut().expect("a connection in use")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.in_transaction {
            return;
        }
        let Some(object) = self.object.take() else { return };
        // Without a runtime (the process is ending) the connection is closed instead.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(Object::take(object));
            return;
        };
        runtime.spawn(async move {
            let mut conn = Conn { object: Some(object), in_transaction: false };
            if let Err(e) = conn.run("rollback").await {
                // SQLite refuses a rollback with no transaction open (the commit got
                // through): the connection is fine either way, unless it broke.
                tracing::debug!(error = %e, "rolling back an abandoned transaction failed");
            }
        });
    }
}

/// A transaction on a pooled connection. `commit` (or `rollback`) ends it; dropped
/// unfinished, it is rolled back before its connection goes back to the pool.
pub(super) struct Tx(Conn);

impl Tx {
    /// Begins a transaction on `conn` with `statement` (`begin`, or SQLite's
    /// `begin immediate`).
    pub(super) async fn begin(mut conn: Conn, statement: &'static str) -> Result<Self, sqlx::Error> {
        conn.in_transaction = true;
        conn.run(statement).await?;
        Ok(Tx(conn))
    }

    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.end("commit").await
    }

    pub(super) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.end("rollback").await
    }

    async fn end(&mut self, statement: &'static str) -> Result<(), sqlx::Error> {
        self.0.run(statement).await?;
        self.0.in_transaction = false;
        Ok(())
    }
}

impl Deref for Tx {
    type Target = Raw;

    fn deref(&self) -> &Raw {
        &self.0
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Raw {
        &mut self.0
    }
}
