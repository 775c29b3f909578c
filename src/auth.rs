//! The key pipeline: find the key (query, then JSON body, then Bearer), check its format,
//! look it up (through a short-lived cache), check expiry and revocation, then the scope
//! the endpoint needs. Only the key's SHA-256 digest is ever stored or looked up.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use chrono::Utc;
use moka::future::Cache;

use crate::normalize::{ApiKey, ApiKeyKind};
use crate::ratelimit::{RateLimits, RateSlot};
use crate::store::{DynStore, KeyChange, KeyRecord, Mode, SpaceId, StoreError};

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

/// Resolves keys against the registry, caching known keys for a few seconds so the hot
/// paths cost no extra round trip. Unknown keys are remembered apart (so a flood of them
/// never evicts a real one), and each client address has a budget of lookups of keys the
/// server has not seen lately, spent before the lookup: however many unknown keys a
/// client sends, at once or in turn, past the budget they cost no query.
#[derive(Clone)]
pub struct KeyRegistry {
    store: DynStore,
    cache: Cache<String, Arc<KeyRecord>>,
    /// Digests found in the registry lately: looked up outside any budget, so a valid key
    /// keeps working beside a flood from the same address.
    known: Cache<String, ()>,
    unknown: Cache<String, ()>,
    lookups: moka::sync::Cache<IpAddr, Arc<DefaultDirectRateLimiter>>,
    lookup_quota: Quota,
    limits: RateLimits,
    /// Keys whose `last_used_at` this process wrote within the last interval.
    touched: Cache<i64, ()>,
}

/// A key's `last_used_at` is written at most this often per server process.
pub const KEY_TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// How long a key found in the registry is remembered as one, after its last use.
pub const KNOWN_KEY_TTI: Duration = Duration::from_secs(3600);

/// How long an unknown key is answered from memory.
pub const UNKNOWN_KEY_TTL: Duration = Duration::from_secs(60);

/// Lookups of keys not seen lately a client address may cause, refilled evenly over a
/// minute.
pub const AUTH_FAILURES_PER_MINUTE: u32 = 60;

/// Why a lookup found no key: not an error of the store, so never cached as one.
#[derive(Debug, Clone)]
enum Lookup {
    Unknown,
    Store(StoreError),
}

impl KeyRegistry {
    pub fn new(store: DynStore, ttl: Duration) -> Self {
        let cache = Cache::builder().max_capacity(100_000).time_to_live(ttl).build();
        let known = Cache::builder().max_capacity(100_000).time_to_idle(KNOWN_KEY_TTI).build();
        let unknown = Cache::builder().max_capacity(100_000).time_to_live(UNKNOWN_KEY_TTL).build();
        let lookups = moka::sync::Cache::builder().max_capacity(100_000).time_to_idle(Duration::from_secs(600)).build();
        let touched = Cache::builder().max_capacity(100_000).time_to_live(KEY_TOUCH_INTERVAL).build();
        Self {
            store,
            cache,
            known,
            unknown,
            lookups,
            lookup_quota: Self::lookup_quota(AUTH_FAILURES_PER_MINUTE),
            limits: RateLimits::default(),
            touched,
        }
    }

    fn lookup_quota(per_minute: u32) -> Quota {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Quota::per_minute(n).allow_burst(n)
    }

    /// Replaces how many lookups of keys not seen lately a client address may cause a
    /// minute.
    pub fn with_failure_limit(mut self, per_minute: u32) -> Self {
        self.lookup_quota = Self::lookup_quota(per_minute);
        self
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
        client: Option<IpAddr>,
        rate: Option<&RateSlot>,
    ) -> Result<Caller, AuthError> {
        let raw = raw.ok_or(AuthError::Missing)?;
        let key = ApiKey::parse(raw).map_err(|_| AuthError::Format)?;
        let record = self.lookup(key.digest(), client).await?;
        let now = Utc::now();
        if record.revoked_at.is_some_and(|t| t <= now) {
            return Err(AuthError::Revoked);
        }
        if record.expires_at.is_some_and(|t| t <= now) {
            return Err(AuthError::Expired);
        }
        if let Some(outcome) = self.limits.check(record.id, record.kind, record.rate_limit_per_minute).await {
            let info = outcome.unwrap_or_else(|refused| refused);
            if let Some(slot) = rate {
                slot.set(info);
            }
            if let Some(retry_after) = outcome.err().and_then(|r| r.retry_after) {
                crate::telemetry::rate_limit_refused(record.kind.as_str());
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

    /// The key's record: from memory when it is known (or known to be unknown), else from
    /// the registry, unless the client has spent its budget of such lookups.
    async fn lookup(&self, digest: String, client: Option<IpAddr>) -> Result<Arc<KeyRecord>, AuthError> {
        if let Some(record) = self.cache.get(&digest).await {
            return Ok(record);
        }
        if self.unknown.contains_key(&digest) {
            return Err(AuthError::Missing);
        }
        if let (false, Some(ip)) = (self.known.contains_key(&digest), client) {
            let quota = self.lookup_quota;
            let budget = self.lookups.get_with(ip, || Arc::new(RateLimiter::direct(quota)));
            if let Err(not_until) = budget.check() {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                tracing::debug!(client = %ip, "lookups of unknown keys over the budget");
                crate::telemetry::rate_limit_refused("unknown");
                return Err(AuthError::RateLimited { retry_after: wait.as_secs().max(1) });
            }
        }
        let store = self.store.clone();
        let key = digest.clone();
        let found = self
            .cache
            .try_get_with(digest.clone(), async move {
                match store.resolve_key(&key).await {
                    Ok(Some(record)) => Ok(Arc::new(record)),
                    Ok(None) => Err(Lookup::Unknown),
                    Err(e) => Err(Lookup::Store(e)),
                }
            })
            .await;
        match found {
            Ok(record) => {
                self.known.insert(digest, ()).await;
                Ok(record)
            }
            Err(e) => match &*e {
                Lookup::Unknown => {
                    self.unknown.insert(digest, ()).await;
                    Err(AuthError::Missing)
                }
                Lookup::Store(e) => Err(e.clone().into()),
            },
        }
    }

    /// Drops a cached key at once (after a revoke through this server).
    pub async fn evict(&self, key: &ApiKey) {
        self.evict_digest(&key.digest()).await;
    }

    /// As `evict`, for a key known only by its stored digest (a revoke by id, or a key
    /// just made, which may have been tried as unknown).
    pub async fn evict_digest(&self, digest: &str) {
        self.cache.invalidate(digest).await;
        self.unknown.invalidate(digest).await;
    }

    /// Drops cached keys as they change anywhere (through another instance, the command
    /// line or SQL), for as long as the process runs, where the store announces changes.
    pub fn follow_changes(&self) {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut changes = loop {
                match registry.store.key_changes().await {
                    Ok(Some(changes)) => break changes,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for key changes yet; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            tracing::debug!("following key changes made by any process");
            loop {
                match changes.next().await {
                    KeyChange::Key(digest) => {
                        registry.evict_digest(&digest).await;
                        crate::telemetry::key_cache_invalidated("notice");
                    }
                    KeyChange::Resync => {
                        registry.cache.invalidate_all();
                        registry.unknown.invalidate_all();
                        crate::telemetry::key_cache_invalidated("resync");
                    }
                }
            }
        });
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
