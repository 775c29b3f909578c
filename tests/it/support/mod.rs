//! What the integration tests share: `app`, the server in process on 127.0.0.1:0 over a
//! fresh database per test; `db`, that database on SQLite (a temporary file) or
//! PostgreSQL (a uniquely named database, dropped after), with the tests' own SQL for
//! what the API does not show; `child`, the real binary as a child process; and `tools`,
//! the outside programs some tests drive.

mod app;
pub mod child;
mod db;
pub mod tools;

pub use app::*;
pub use db::*;

/// Declares one async test per backend: `name::sqlite` and `name::postgres`. The
/// PostgreSQL one passes without running when no PostgreSQL is configured (and fails
/// under REQUIRE_POSTGRES=1).
macro_rules! backend_test {
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($app: $crate::support::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::support::spawn_app($crate::support::Backend::Sqlite).await.unwrap()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match $crate::support::spawn_app($crate::support::Backend::Postgres).await {
                    Some(app) => run(app).await,
                    None => eprintln!("skipped: TEST_DATABASE_URL is not set"),
                }
            }
        }
    };
}

/// Declares `name::sqlite` and `name::postgres` for a scenario `async fn(Backend)` of the
/// calling module (which imports `Backend`); the scenario returns early when its database
/// is not available. An attribute given after the path applies to both.
macro_rules! per_backend {
    ($name:ident, $scenario:path $(, #[$attr:meta])?) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[$attr])?
            async fn sqlite() {
                $scenario(super::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[$attr])?
            async fn postgres() {
                $scenario(super::Backend::Postgres).await
            }
        }
    };
}
