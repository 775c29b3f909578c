//! A fresh database per test, on either backend.

use sqlx::Connection;

use super::TestApp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server to create test databases on, if any. With REQUIRE_POSTGRES=1 its
/// absence is a failure, not a skip.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set");
            }
            None
        }
    }
}

/// A fresh, empty database; removed when dropped.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    /// None when the backend is PostgreSQL and none is configured (the test then skips).
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite:{}", dir.path().join("test.db").display());
                Some(TestDb { url, _dir: Some(dir), pg: None })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url()?;
                let name = format!("bizkit_test_{:016x}", rand::random::<u64>());
                let mut conn = connect_admin(&admin).await;
                sqlx::query(&format!("create database {name}")).execute(&mut conn).await.expect("create database");
                let mut url = url::Url::parse(&admin).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                Some(TestDb { url: url.to_string(), _dir: None, pg: Some((admin, name)) })
            }
        }
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url).await.expect("connect to TEST_DATABASE_URL")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            // Dropped from a thread of its own: Drop cannot await, and the test's runtime
            // may be shutting down.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    let mut conn = connect_admin(&admin).await;
                    let _ = sqlx::query(&format!("drop database if exists {name} with (force)")).execute(&mut conn).await;
                });
            })
            .join();
        }
    }
}

/// The PostgreSQL test database taken away: no new connections, the open ones ended.
pub struct Outage {
    conn: sqlx::PgConnection,
    name: String,
}

impl Outage {
    pub async fn start(app: &TestApp) -> Outage {
        let name = url::Url::parse(&app.db.url).unwrap().path().trim_start_matches('/').to_owned();
        let admin = postgres_admin_url().expect("an outage needs PostgreSQL");
        let mut outage = Outage { conn: connect_admin(&admin).await, name };
        outage.allow_connections(false).await;
        sqlx::query(&format!("select pg_terminate_backend(pid) from pg_stat_activity where datname = '{}'", outage.name))
            .execute(&mut outage.conn)
            .await
            .unwrap();
        outage
    }

    async fn allow_connections(&mut self, allow: bool) {
        sqlx::query(&format!("alter database {} allow_connections {allow}", self.name)).execute(&mut self.conn).await.unwrap();
    }

    /// The database is back; the pool reconnects by itself.
    pub async fn end(mut self) {
        self.allow_connections(true).await;
    }
}

/// Every row of every table of the test database, as text, one row a line: for checking
/// that a value is gone from storage, not only from the API.
pub async fn dump_rows(db: &TestDb) -> String {
    let mut out = String::new();
    if db.pg.is_some() {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        let tables: Vec<String> = sqlx::query_scalar(
            "select table_name::text from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'",
        )
        .fetch_all(&mut conn)
        .await
        .expect("tables");
        for table in tables {
            let rows: Vec<String> = sqlx::query_scalar(&format!("select t::text from \"{table}\" t"))
                .fetch_all(&mut conn)
                .await
                .expect("rows");
            for row in rows {
                out.push_str(&format!("{table}: {row}\n"));
            }
        }
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.expect("connect");
        let tables: Vec<String> =
            sqlx::query_scalar("select name from sqlite_master where type = 'table' and name not like 'sqlite_%'")
                .fetch_all(&mut conn)
                .await
                .expect("tables");
        for table in tables {
            let columns: Vec<String> = sqlx::query_scalar(&format!("select name from pragma_table_info('{table}')"))
                .fetch_all(&mut conn)
                .await
                .expect("columns");
            let row = columns.iter().map(|c| format!("coalesce(case when typeof(\"{c}\") = 'blob' then hex(\"{c}\") else cast(\"{c}\" as text) end, 'NULL')")).collect::<Vec<_>>().join(" || '|' || ");
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("select {row} from \"{table}\"")).fetch_all(&mut conn).await.expect("rows");
            for row in rows {
                out.push_str(&format!("{table}: {row}\n"));
            }
        }
    }
    out
}
