//! Per-key rate limits: GCRA, a sustained rate with a burst allowance, by key kind (PROD
//! high, DEV_ low, ROOT none) or a per-key override.
//!
//! Each process limits alone (`local`, through `governor`) unless Redis is configured:
//! then every instance takes from one allowance per key (`shared`, one Lua script per
//! request), so a key's limit is its limit however many instances serve it. When Redis
//! cannot be reached the process falls back to its own limiter until Redis answers again
//! (see `shared` for why).

mod local;
mod shared;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::normalize::ApiKeyKind;

pub use local::LocalLimits;
pub use shared::{SharedLimits, SharedSettings};

/// A sustained rate (requests per hour) and how many may arrive at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Plan {
    pub per_hour: u32,
    pub burst: u32,
}

impl Plan {
    /// A per-key override: up to `n` requests in any minute, refilled evenly.
    pub fn per_minute(n: u32) -> Plan {
        Plan { per_hour: n.saturating_mul(60), burst: n }
    }

    /// One request's worth of allowance comes back this often.
    pub fn interval(self) -> Duration {
        Duration::from_secs_f64(3600.0 / f64::from(self.per_hour.max(1)))
    }

    fn burst(self) -> u32 {
        self.burst.max(1)
    }
}

/// What the rate-limit headers report for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds at which the full burst is available again.
    pub reset: u64,
    /// Seconds until the next request is allowed, when this one was refused.
    pub retry_after: Option<u64>,
}

/// One request taken from an allowance: `Ok` allowed, `Err` refused; either way the
/// state the headers report.
pub type Outcome = Result<RateInfo, RateInfo>;

/// Where the key pipeline leaves the rate state of a request for the response headers.
#[derive(Debug, Clone, Default)]
pub struct RateSlot(Arc<Mutex<Option<RateInfo>>>);

impl RateSlot {
    pub fn set(&self, info: RateInfo) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(info);
        }
    }

    pub fn get(&self) -> Option<RateInfo> {
        self.0.lock().ok().and_then(|slot| *slot)
    }
}

/// The plans by key kind, and where allowances are kept.
#[derive(Clone)]
pub struct RateLimits {
    prod: Plan,
    dev: Plan,
    local: LocalLimits,
    shared: Option<SharedLimits>,
}

impl RateLimits {
    /// BizKitHub's published range: 1,000/hour (burst 50) to 100,000/hour (burst 1,000).
    pub const DEFAULT_PROD: Plan = Plan { per_hour: 100_000, burst: 1_000 };
    pub const DEFAULT_DEV: Plan = Plan { per_hour: 1_000, burst: 50 };

    /// Limits kept in this process.
    pub fn new(prod: Plan, dev: Plan) -> Self {
        Self { prod, dev, local: LocalLimits::new(), shared: None }
    }

    /// Limits kept in Redis and shared by every instance that uses it, with this
    /// process's own as the fallback.
    pub fn shared(mut self, shared: SharedLimits) -> Self {
        self.shared = Some(shared);
        self
    }

    fn plan_for(&self, kind: ApiKeyKind, override_per_minute: Option<i64>) -> Option<Plan> {
        if let Some(n) = override_per_minute.filter(|n| *n > 0) {
            return Some(Plan::per_minute(u32::try_from(n).unwrap_or(u32::MAX)));
        }
        match kind {
            ApiKeyKind::Root => None,
            ApiKeyKind::Prod => Some(self.prod),
            ApiKeyKind::Dev => Some(self.dev),
        }
    }

    /// Takes one request from the key's allowance. `None`: the key is not limited.
    pub async fn check(&self, key_id: i64, kind: ApiKeyKind, override_per_minute: Option<i64>) -> Option<Outcome> {
        let plan = self.plan_for(kind, override_per_minute)?;
        if let Some(shared) = &self.shared {
            if let Some(outcome) = shared.check(key_id, plan).await {
                return Some(outcome);
            }
        }
        Some(self.local.check(key_id, plan))
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PROD, Self::DEFAULT_DEV)
    }
}

/// The headers' state of an allowance: `full_in` until the whole burst is back,
/// `remaining` requests that may follow at once, and, when refused, `wait` until the next
/// one is allowed.
fn rate_info(plan: Plan, full_in: Duration, remaining: u32, wait: Option<Duration>) -> RateInfo {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    RateInfo {
        limit: plan.burst(),
        remaining: if wait.is_some() { 0 } else { remaining.min(plan.burst()) },
        reset: (now + full_in).as_secs_f64().ceil() as u64,
        retry_after: wait.map(|w| w.as_secs_f64().ceil().max(1.0) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn burst_then_refusal_then_refill() {
        let limits = RateLimits::new(Plan { per_hour: 36_000, burst: 3 }, Plan { per_hour: 60, burst: 1 });
        let mut remaining = Vec::new();
        for _ in 0..3 {
            remaining.push(limits.check(1, ApiKeyKind::Prod, None).await.unwrap().unwrap().remaining);
        }
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limits.check(1, ApiKeyKind::Prod, None).await.unwrap().unwrap_err();
        assert_eq!((refused.remaining, refused.retry_after), (0, Some(1)));
        // 36,000/hour is one every 100 ms
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(limits.check(1, ApiKeyKind::Prod, None).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn keys_are_independent_and_root_is_unlimited() {
        let limits = RateLimits::new(Plan { per_hour: 60, burst: 1 }, Plan { per_hour: 60, burst: 1 });
        assert!(limits.check(1, ApiKeyKind::Dev, None).await.unwrap().is_ok());
        assert!(limits.check(1, ApiKeyKind::Dev, None).await.unwrap().is_err());
        assert!(limits.check(2, ApiKeyKind::Dev, None).await.unwrap().is_ok(), "another key is untouched");
        for _ in 0..100 {
            assert!(limits.check(3, ApiKeyKind::Root, None).await.is_none());
        }
    }

    #[tokio::test]
    async fn override_replaces_the_kind_plan() {
        let limits = RateLimits::default();
        let first = limits.check(7, ApiKeyKind::Root, Some(2)).await.unwrap().unwrap();
        assert_eq!((first.limit, first.remaining), (2, 1));
        assert!(limits.check(7, ApiKeyKind::Root, Some(2)).await.unwrap().is_ok());
        let refused = limits.check(7, ApiKeyKind::Root, Some(2)).await.unwrap().unwrap_err();
        assert_eq!(refused.retry_after, Some(30), "2 a minute: one every 30 s");
        // A changed override takes effect at once, with a fresh bucket.
        assert!(limits.check(7, ApiKeyKind::Root, Some(5)).await.unwrap().is_ok());
    }

    #[test]
    fn headers_from_an_allowance() {
        let plan = Plan { per_hour: 3600, burst: 10 };
        let before = unix_seconds();
        let first = rate_info(plan, Duration::from_secs(1), 9, None);
        assert_eq!((first.limit, first.remaining, first.retry_after), (10, 9, None));
        assert!((before + 1..=before + 2).contains(&first.reset), "{} vs {before}", first.reset);
        let refused = rate_info(plan, Duration::from_secs(10), 3, Some(Duration::from_millis(300)));
        assert_eq!((refused.remaining, refused.retry_after), (0, Some(1)));
        assert!((before + 10..=before + 11).contains(&refused.reset));
    }

    fn unix_seconds() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }
}
