//! The server in process, on 127.0.0.1:0 over a fresh database, with organisation
//! `acme` and a key of each kind: what most tests run against.

use std::time::Duration;

use bizkit_mirror::accounts::{AccountSettings, Accounts};
use bizkit_mirror::auth::{KeyRegistry, Scope};
use bizkit_mirror::http::Shared;
use bizkit_mirror::normalize::{ApiKey, ApiKeyKind};
use bizkit_mirror::store::{self, DynStore, PoolSettings};
use bizkit_mirror::AppState;
use serde_json::Value;

use super::{Backend, TestDb};

pub struct Keys {
    pub prod: String,
    pub dev: String,
    pub root: String,
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: DynStore,
    pub keys: Keys,
    pub registry: KeyRegistry,
    /// Dropped with the app, which stops the server.
    _stop: tokio::sync::oneshot::Sender<()>,
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

pub async fn spawn_with(
    db: TestDb,
    limits: bizkit_mirror::ratelimit::RateLimits,
    settings: AccountSettings,
) -> TestApp {
    let accounts = Accounts::new(settings);
    let settings = PoolSettings { max_connections: 8, acquire_timeout: Duration::from_secs(3), ..Default::default() };
    let store = store::connect(&db.url, &settings).await.expect("connect store");
    let keys = make_keys(&store, "acme").await;
    let registry = KeyRegistry::new(store.clone(), Duration::from_secs(5)).with_limits(limits);
    let state = AppState::new(Shared {
        store: store.clone(),
        keys: registry.clone(),
        accounts: accounts.clone(),
        contacts: Default::default(),
        serve_metrics: true,
        webhook_reach: bizkit_mirror::webhooks::Reach::Loopback,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        bizkit_mirror::server::serve(
            listener,
            state,
            async {
                let _ = rx.await;
            },
            Duration::from_secs(5),
        )
        .await
        .expect("serve");
    });
    TestApp { base: format!("http://{addr}"), client: reqwest::Client::new(), store, keys, registry, _stop: tx, db }
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
        let res =
            self.client.get(self.url(path)).query(&[("apiKey", key)]).query(params).send().await.expect("request");
        split(res).await
    }

    /// A new PROD key of organisation `acme` holding only these scopes.
    pub async fn key_with_scopes(&self, scopes: &[&str]) -> String {
        let key = ApiKey::generate(ApiKeyKind::Prod);
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.store
            .insert_key("acme", &bizkit_mirror::server::new_key(&key, "scoped", scopes))
            .await
            .expect("insert key");
        key.expose().to_owned()
    }

    pub async fn create(&self, key: &str, email: &str) -> Value {
        let (status, body) = self.post("/api/v1/customer/create", key, serde_json::json!({ "email": email })).await;
        assert_eq!(status, 200, "create {email}: {body}");
        body
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
