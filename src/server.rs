//! Start-up and shutdown: logging, opening the store, the first-run organisation and
//! keys, the demo seed, and serving until SIGTERM or Ctrl-C with a drain period.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::admin::OPERATOR_ORGANISATION;
use crate::auth::{KeyRegistry, Scope};
use crate::config::{LogFormat, ServeConfig};
use crate::http::cors::CorsPolicy;
use crate::http::serve::ConnectionLimits;
use crate::http::Shared;
use crate::normalize::{ApiKey, ApiKeyKind};
use crate::store::{DynStore, NewKey};
use crate::AppState;

pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// On an empty database: creates organisation `default` and returns one new key of each
/// kind, to be shown once. Returns nothing when any organisation already exists.
/// The organisation, its spaces and its keys are written in one transaction, so a start
/// that dies half-way leaves no organisation without keys, and of two instances starting
/// at once on an empty database exactly one makes (and prints) them.
pub async fn bootstrap(store: &DynStore) -> anyhow::Result<Vec<ApiKey>> {
    if store.organisation_count().await? > 0 {
        return Ok(Vec::new());
    }
    let keys: Vec<ApiKey> = [ApiKeyKind::Prod, ApiKeyKind::Dev, ApiKeyKind::Root].map(ApiKey::generate).into();
    let rows: Vec<NewKey> =
        keys.iter().map(|k| new_key(k, "created at first start", Scope::defaults_for(k.kind()))).collect();
    if !store.bootstrap(OPERATOR_ORGANISATION, "Default organisation", &rows).await? {
        return Ok(Vec::new());
    }
    Ok(keys)
}

pub fn new_key(key: &ApiKey, label: &str, scopes: Vec<String>) -> NewKey {
    NewKey {
        kind: key.kind(),
        digest: key.digest(),
        prefix: key.prefix8().to_owned(),
        label: label.to_owned(),
        scopes,
        expires_at: None,
        rate_limit_per_minute: None,
    }
}

/// Opens the store, prepares its data, and serves until `shutdown` resolves.
pub async fn run(config: ServeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    tracing::info!(database = %config.db.database_url, bind = %config.bind, "starting");
    // Checked before touching the database: a bad origin list is a mistake to fix now.
    let cors = config.cors_policy()?;
    match &cors {
        CorsPolicy::Off => {}
        CorsPolicy::Any => tracing::warn!("CORS: any origin may call the API (without credentials)"),
        CorsPolicy::Origins(list) => tracing::info!(origins = ?list, "CORS: these origins may call the API"),
    }
    let store = crate::store::connect(config.db.database_url.expose(), &config.db.pool_settings())
        .await
        .with_context(|| format!("cannot open DATABASE_URL {}", config.db.database_url))?;
    prepare(&store, config.demo).await?;
    let listener =
        TcpListener::bind(config.bind).await.with_context(|| format!("cannot listen on BIND {}", config.bind))?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    crate::telemetry::install();
    match &config.redis_url {
        Some(url) => tracing::info!(redis = %url, "rate limits are shared through Redis"),
        None => tracing::info!("rate limits are kept by this process alone; set REDIS_URL to share them"),
    }
    let keys = KeyRegistry::new(store.clone(), Duration::from_secs(config.key_cache_seconds))
        .with_limits(config.rate_limits()?)
        .with_failure_limit(config.auth_failures_per_minute);
    keys.follow_changes();
    let accounts = config.account_settings();
    if accounts.auto_confirm {
        tracing::info!("storefront registrations are confirmed at once (auto-confirm)");
    }
    match &config.smtp_url {
        Some(url) => {
            let mailer = crate::mail::Mailer::new(url.expose(), &config.mail_from)
                .with_context(|| format!("cannot use SMTP_URL {url}"))?;
            mailer.spawn(store.clone());
            tracing::info!(smtp = %url, "sending the live spaces' mail outbox over SMTP");
        }
        None => tracing::info!("SMTP_URL is not set: messages stay queued in mail_outbox"),
    }
    match &config.sandbox_smtp_url {
        Some(url) => {
            let mailer = crate::mail::Mailer::new(url.expose(), &config.mail_from)
                .with_context(|| format!("cannot use SANDBOX_SMTP_URL {url}"))?
                .for_sandbox();
            mailer.spawn(store.clone());
            tracing::info!(smtp = %url, "sending the sandbox spaces' mail outbox over SMTP");
        }
        None => tracing::info!("SANDBOX_SMTP_URL is not set: sandbox messages stay queued in mail_outbox"),
    }
    spawn_sweeper(store.clone(), accounts.confirm_token_lifetime);
    let webhooks = config.webhook_settings();
    if webhooks.concurrency > 0 {
        tracing::info!(reach = ?webhooks.reach, "delivering webhooks");
        crate::webhooks::Worker::new(store.clone(), webhooks).context("cannot start the webhook worker")?.spawn();
    } else {
        tracing::info!("WEBHOOK_CONCURRENCY=0: webhooks are recorded here and delivered by other instances");
    }
    spawn_search_keys(store.clone());
    let state = AppState::new(Shared {
        store,
        keys,
        accounts: crate::accounts::Accounts::new(accounts),
        contacts: config.contact_settings(),
        serve_metrics: config.metrics_bind.is_none(),
        webhook_reach: config.webhook_reach(),
    });
    if let Some(bind) = config.metrics_bind {
        serve_metrics(bind, state.store.clone()).await?;
    }
    let app = crate::http::app_configured(state, &cors, &config.http_limits());
    crate::http::serve::serve(listener, app, shutdown, &config.connection_limits()).await
}

/// Serves `/metrics` alone on an address of its own, for as long as the process runs.
async fn serve_metrics(bind: std::net::SocketAddr, store: DynStore) -> anyhow::Result<()> {
    let listener = TcpListener::bind(bind).await.with_context(|| format!("cannot listen on METRICS_BIND {bind}"))?;
    tracing::info!(address = %listener.local_addr()?, "serving metrics");
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(move || std::future::ready(crate::http::ops::metrics_text(&store))));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok(())
}

/// First-start keys, the demo data or the disabling of its keys: the data a start writes
/// before serving. A database that is momentarily locked (SQLite just after a crash of the
/// previous process, say) is waited for, a little; every step is idempotent.
async fn prepare(store: &DynStore, demo: bool) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match prepare_once(store, demo).await {
            Err(e) if attempt < PREPARE_ATTEMPTS && is_unavailable(&e) => {
                tracing::warn!(error = %e, attempt, "the database is not ready; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// Runs of `prepare_once` on one start, at most.
const PREPARE_ATTEMPTS: u32 = 20;

fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<crate::store::StoreError>(), Some(crate::store::StoreError::Unavailable(_))))
}

async fn prepare_once(store: &DynStore, demo: bool) -> anyhow::Result<()> {
    let keys = bootstrap(store).await?;
    if !keys.is_empty() {
        // Printed once to standard output, never logged: they are not stored anywhere else.
        println!("First start: created organisation `default` with these API keys (shown only now):");
        for key in &keys {
            println!("  {:<4}  {}", key.kind().as_str(), key.expose());
        }
    }
    if !demo {
        let disabled = crate::seed::DEMO.disable_keys(store).await?;
        if disabled > 0 {
            tracing::warn!(
                disabled,
                "disabled the public demo keys PRODPGrF…, DEV_PGrF… and ROOTPGrF…: started without --demo"
            );
        }
    }
    if demo {
        crate::seed::DEMO.apply(store).await?;
        tracing::warn!(
            "DEMO MODE: seeded organisation `demo` with the public example keys PRODPGrF…, DEV_PGrF… and \
             ROOTPGrF…; anyone who has read BizKitHub's documentation can use them. They reach `demo` alone, \
             and a start without --demo disables them."
        );
    }
    Ok(())
}

/// Serves `state` on `listener` until `shutdown`, then lets in-flight requests finish for
/// at most `grace`; the other limits are their defaults.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    let limits = ConnectionLimits { shutdown_grace: grace, ..ConnectionLimits::default() };
    crate::http::serve::serve(listener, crate::app(state), shutdown, &limits).await
}

/// How long finished webhook deliveries (and their attempts) are kept.
const WEBHOOK_HISTORY: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// How often expired idempotency keys and expired tokens in the outbox are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Forgets, every `SWEEP_EVERY`, what has outlived its use (see `OutboxStore::sweep`).
fn spawn_sweeper(store: DynStore, token_lifetime: chrono::TimeDelta) {
    tokio::spawn(async move {
        loop {
            match store.sweep(crate::store::now() - token_lifetime, crate::store::now() - WEBHOOK_HISTORY).await {
                Ok(swept) => tracing::debug!(?swept, "swept expired idempotency keys and outbox tokens"),
                Err(e) => tracing::warn!(error = %e, "sweeping expired data failed; will retry"),
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    });
}

/// Customers whose search keys are computed per transaction by `spawn_search_keys`.
const SEARCH_KEYS_BATCH: i64 = 1_000;

/// Computes the search keys of customers stored without them (before the customer list
/// existed, or under older rules), a batch at a time, until none are left. Until then the
/// list's `q` may miss them; every other filter finds them.
fn spawn_search_keys(store: DynStore) {
    tokio::spawn(async move {
        let mut done = 0u64;
        loop {
            match store.refresh_search_keys(SEARCH_KEYS_BATCH).await {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => {
                    tracing::warn!(error = %e, "computing search keys failed; will retry");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
        if done > 0 {
            tracing::info!(customers = done, "search keys computed for customers stored without them");
        }
    });
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested; draining in-flight requests");
}
