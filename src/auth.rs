//! The key pipeline: find the key (query, then JSON body, then Bearer), check its format,
//! look it up (through a short-lived cache), check expiry and revocation, then the scope
//! the endpoint needs. Only the key's SHA-256 digest is ever stored or looked up.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use moka::future::Cache;

use crate::normalize::{ApiKey, ApiKeyKind};
use crate::ratelimit::{RateLimits, RateSlot};
use crate::store::{DynStore, KeyRecord, Mode, SpaceId, StoreError};

/// Why a key was refused, in the order the checks run.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No key was given, or the registry does not know it.
    #[error("no API key was given, or it does not exist")]
    Missing,
    #[error("the API key must be 32 characters: PROD, DEV_ or ROOT and 28 letters or digits")]
    Format,
    #[error("the API key has expired")]
    Expired,
    #[error("the API key has been revoked")]
    Revoked,
    #[error("rate limit exceeded; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// The key lacks the scope, or its kind may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a key may do. Every endpoint names the one it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    CustomerRead,
    CustomerWrite,
    CustomerImport,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::CustomerRead, Scope::CustomerWrite, Scope::CustomerImport, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CustomerRead => "customer:read",
            Scope::CustomerWrite => "customer:write",
            Scope::CustomerImport => "customer:import",
            Scope::Admin => "admin",
        }
    }

    pub fn all_names() -> Vec<String> {
        Self::ALL.iter().map(|s| s.as_str().to_owned()).collect()
    }

    /// Scopes a new key of this kind gets unless told otherwise.
    pub fn defaults_for(kind: ApiKeyKind) -> Vec<String> {
        match kind {
            ApiKeyKind::Root => Self::all_names(),
            ApiKeyKind::Prod | ApiKeyKind::Dev => {
                [Scope::CustomerRead, Scope::CustomerWrite].iter().map(|s| s.as_str().to_owned()).collect()
            }
        }
    }
}

/// The caller, once its key has passed every check.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: i64,
    pub kind: ApiKeyKind,
    pub organisation: String,
    pub space: SpaceId,
    pub mode: Mode,
}

/// Resolves keys against the registry, caching lookups (hits and misses) for a few
/// seconds so the hot paths cost no extra round trip.
#[derive(Clone)]
pub struct KeyRegistry {
    store: DynStore,
    cache: Cache<String, Option<Arc<KeyRecord>>>,
    limits: RateLimits,
    /// Keys whose `last_used_at` this process wrote within the last interval.
    touched: Cache<i64, ()>,
}

/// A key's `last_used_at` is written at most this often per server process.
pub const KEY_TOUCH_INTERVAL: Duration = Duration::from_secs(60);

impl KeyRegistry {
    pub fn new(store: DynStore, ttl: Duration) -> Self {
        let cache = Cache::builder().max_capacity(100_000).time_to_live(ttl).build();
        let touched = Cache::builder().max_capacity(100_000).time_to_live(KEY_TOUCH_INTERVAL).build();
        Self { store, cache, limits: RateLimits::default(), touched }
    }

    /// Replaces the default rate-limit plans.
    pub fn with_limits(mut self, limits: RateLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Runs the pipeline for a raw key (already chosen by precedence). The rate state, once
    /// known, is left in `rate` for the response headers, whatever the outcome after it.
    pub async fn authorize(
        &self,
        raw: Option<&str>,
        scope: Scope,
        rate: Option<&RateSlot>,
    ) -> Result<Caller, AuthError> {
        let raw = raw.ok_or(AuthError::Missing)?;
        let key = ApiKey::parse(raw).map_err(|_| AuthError::Format)?;
        let digest = key.digest();
        let store = self.store.clone();
        let lookup = digest.clone();
        let record = self
            .cache
            .try_get_with(digest, async move { store.resolve_key(&lookup).await.map(|r| r.map(Arc::new)) })
            .await
            .map_err(|e| StoreError::clone(&e))?
            .ok_or(AuthError::Missing)?;
        let now = Utc::now();
        if record.revoked_at.is_some_and(|t| t <= now) {
            return Err(AuthError::Revoked);
        }
        if record.expires_at.is_some_and(|t| t <= now) {
            return Err(AuthError::Expired);
        }
        if let Some(outcome) = self.limits.check(record.id, record.kind, record.rate_limit_per_minute) {
            let info = outcome.unwrap_or_else(|refused| refused);
            if let Some(slot) = rate {
                slot.set(info);
            }
            if let Some(retry_after) = outcome.err().and_then(|r| r.retry_after) {
                return Err(AuthError::RateLimited { retry_after });
            }
        }
        if !record.scopes.iter().any(|s| s == scope.as_str()) {
            return Err(AuthError::Forbidden(format!("this key lacks the {} scope", scope.as_str())));
        }
        tracing::debug!(key = key.prefix8(), organisation = %record.organisation, "key accepted");
        self.note_use(record.id);
        Ok(Caller {
            key_id: record.id,
            kind: record.kind,
            organisation: record.organisation.clone(),
            space: record.space,
            mode: record.mode,
        })
    }

    /// Drops a cached key at once (after a revoke through this server).
    pub async fn evict(&self, key: &ApiKey) {
        self.evict_digest(&key.digest()).await;
    }

    /// As `evict`, for a key known only by its stored digest (a revoke by id).
    pub async fn evict_digest(&self, digest: &str) {
        self.cache.invalidate(digest).await;
    }

    /// Records that a key was used. A busy key must not turn every request into a write,
    /// so this writes at most once per `KEY_TOUCH_INTERVAL` per process, beside the request:
    /// a failed write is logged and never fails the request it came from.
    fn note_use(&self, key_id: i64) {
        if self.touched.contains_key(&key_id) {
            return;
        }
        let (touched, store) = (self.touched.clone(), self.store.clone());
        tokio::spawn(async move {
            // Of concurrent first uses, only the one that inserts the entry writes.
            if !touched.entry(key_id).or_insert(()).await.is_fresh() {
                return;
            }
            if let Err(err) = store.touch_key_last_used(key_id, crate::store::now()).await {
                tracing::debug!(key_id, error = %err, "could not record a key's last use");
            }
        });
    }
}
