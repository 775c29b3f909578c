//! The test harness: a real server on 127.0.0.1:0 over a fresh database per test, on
//! SQLite (a temporary file) or PostgreSQL (a uniquely named database, dropped after).
#![allow(dead_code)]

pub mod child;
pub mod tools;

use std::net::SocketAddr;
use std::time::Duration;

use bizkit_mirror::accounts::{AccountSettings, Accounts};
use bizkit_mirror::auth::{KeyRegistry, Scope};
use bizkit_mirror::normalize::{ApiKey, ApiKeyKind};
use bizkit_mirror::store::{self, DynStore, PoolSettings};
use bizkit_mirror::AppState;
use serde_json::Value;

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
    use sqlx::Connection;
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

pub struct Keys {
    pub prod: String,
    pub dev: String,
    pub root: String,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub store: DynStore,
    pub keys: Keys,
    pub registry: KeyRegistry,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    pub db: TestDb,
}

pub async fn make_keys(store: &DynStore, organisation: &str) -> Keys {
    store.ensure_organisation(organisation, organisation).await.expect("organisation");
    let make = |kind| {
        let key = ApiKey::generate(kind);
        let new = bizkit_mirror::server::new_key(&key, "test", Scope::all_names());
        (key, new)
    };
    let (prod, dev, root) = (make(ApiKeyKind::Prod), make(ApiKeyKind::Dev), make(ApiKeyKind::Root));
    for (_, new) in [&prod, &dev, &root] {
        store.insert_key(organisation, new).await.expect("insert key");
    }
    Keys { prod: prod.0.expose().to_owned(), dev: dev.0.expose().to_owned(), root: root.0.expose().to_owned() }
}

/// Starts the server over a fresh database with organisation `acme` and a key of each
/// kind; None when the backend is not available here.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    let db = TestDb::new(backend).await?;
    Some(spawn_on(db).await)
}

pub async fn spawn_on(db: TestDb) -> TestApp {
    spawn_with_limits(db, bizkit_mirror::ratelimit::RateLimits::default()).await
}

/// Like `spawn_app`, with the given rate-limit plans.
pub async fn spawn_app_with_limits(backend: Backend, limits: bizkit_mirror::ratelimit::RateLimits) -> Option<TestApp> {
    let db = TestDb::new(backend).await?;
    Some(spawn_with_limits(db, limits).await)
}

pub async fn spawn_with_limits(db: TestDb, limits: bizkit_mirror::ratelimit::RateLimits) -> TestApp {
    spawn_with(db, limits, AccountSettings::default()).await
}

/// Like `spawn_app`, with the given storefront account settings.
pub async fn spawn_app_with_accounts(backend: Backend, settings: AccountSettings) -> Option<TestApp> {
    let db = TestDb::new(backend).await?;
    Some(spawn_with(db, bizkit_mirror::ratelimit::RateLimits::default(), settings).await)
}

pub async fn spawn_with(db: TestDb, limits: bizkit_mirror::ratelimit::RateLimits, settings: AccountSettings) -> TestApp {
    let accounts = Accounts::new(settings);
    let settings = PoolSettings { max_connections: 8, acquire_timeout: Duration::from_secs(3) };
    let store = store::connect(&db.url, &settings).await.expect("connect store");
    let keys = make_keys(&store, "acme").await;
    let registry = KeyRegistry::new(store.clone(), Duration::from_secs(5)).with_limits(limits);
    let state = AppState {
        store: store.clone(),
        keys: registry.clone(),
        accounts: accounts.clone(),
        contacts: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        bizkit_mirror::server::serve(listener, state, async { let _ = rx.await; }, Duration::from_secs(5))
            .await
            .expect("serve");
    });
    TestApp {
        addr,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        store,
        keys,
        registry,
        stop: Some(tx),
        server: Some(server),
        db,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POST a JSON body with the key in the query string.
    pub async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        let res = self.client.post(self.url(path)).query(&[("apiKey", key)]).json(&body).send().await.expect("request");
        split(res).await
    }

    /// GET with the key and the given parameters in the query string.
    pub async fn get(&self, path: &str, key: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let res = self.client.get(self.url(path)).query(&[("apiKey", key)]).query(params).send().await.expect("request");
        split(res).await
    }

    /// A new PROD key of organisation `acme` holding only these scopes.
    pub async fn key_with_scopes(&self, scopes: &[&str]) -> String {
        let key = ApiKey::generate(ApiKeyKind::Prod);
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.store.insert_key("acme", &bizkit_mirror::server::new_key(&key, "scoped", scopes)).await.expect("insert key");
        key.expose().to_owned()
    }

    pub async fn create(&self, key: &str, email: &str) -> Value {
        let (status, body) = self.post("/api/v1/customer/create", key, serde_json::json!({ "email": email })).await;
        assert_eq!(status, 200, "create {email}: {body}");
        body
    }

    /// Stops the server gracefully and returns the database for reuse.
    pub async fn stop(mut self) -> TestDb {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
        let TestApp { db, .. } = self;
        db
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

pub async fn split(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Asserts an error envelope with this status and code.
#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "status; body: {}", got.1);
    assert_eq!(got.1["success"], false, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", got.1);
    assert!(got.1["error"]["requestId"].as_str().is_some_and(|m| !m.is_empty()), "{}", got.1);
}

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

/// Every row of every table of the test database, as text, one row a line: for checking
/// that a value is gone from storage, not only from the API.
pub async fn dump_rows(db: &TestDb) -> String {
    use sqlx::Connection;
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
