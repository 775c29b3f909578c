//! Per-key rate limits (GCRA, through `governor`): a sustained rate with a burst
//! allowance, by key kind (PROD high, DEV_ low, ROOT none) or a per-key override.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::normalize::ApiKeyKind;

/// A sustained rate (requests per hour) and how many may arrive at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub per_hour: u32,
    pub burst: u32,
}

impl Plan {
    /// A per-key override: up to `n` requests in any minute, refilled evenly.
    pub fn per_minute(n: u32) -> Plan {
        Plan { per_hour: n.saturating_mul(60), burst: n }
    }

    fn quota(self) -> Quota {
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let period = Duration::from_secs_f64(3600.0 / f64::from(self.per_hour.max(1)));
        Quota::with_period(period).unwrap_or_else(|| Quota::per_hour(NonZeroU32::MIN)).allow_burst(burst)
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

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

struct Entry {
    plan: Plan,
    limiter: Limiter,
}

/// The limiters of all keys seen recently. An entry idle for an hour is dropped: by then
/// its bucket is full again under any plan, so recreating it loses nothing.
#[derive(Clone)]
pub struct RateLimits {
    prod: Plan,
    dev: Plan,
    clock: DefaultClock,
    limiters: moka::sync::Cache<i64, Arc<Entry>>,
}

impl RateLimits {
    /// BizKitHub's published range: 1,000/hour (burst 50) to 100,000/hour (burst 1,000).
    pub const DEFAULT_PROD: Plan = Plan { per_hour: 100_000, burst: 1_000 };
    pub const DEFAULT_DEV: Plan = Plan { per_hour: 1_000, burst: 50 };

    pub fn new(prod: Plan, dev: Plan) -> Self {
        let limiters =
            moka::sync::Cache::builder().max_capacity(1_000_000).time_to_idle(Duration::from_secs(3600)).build();
        Self { prod, dev, clock: DefaultClock::default(), limiters }
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
    /// `Err`: over the limit, with the time to wait.
    pub fn check(
        &self,
        key_id: i64,
        kind: ApiKeyKind,
        override_per_minute: Option<i64>,
    ) -> Option<Result<RateInfo, RateInfo>> {
        let plan = self.plan_for(kind, override_per_minute)?;
        let entry = self.limiters.get(&key_id).filter(|e| e.plan == plan).unwrap_or_else(|| {
            let entry = Arc::new(Entry {
                plan,
                limiter: RateLimiter::direct_with_clock(plan.quota(), self.clock.clone()).with_middleware(),
            });
            self.limiters.insert(key_id, entry.clone());
            entry
        });
        let interval = plan.quota().replenish_interval();
        let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let reset_after =
            |missing: u32, wait: Duration| (unix_now + wait + interval * missing).as_secs_f64().ceil() as u64;
        Some(match entry.limiter.check() {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Ok(RateInfo {
                    limit: plan.burst,
                    remaining,
                    reset: reset_after(plan.burst - remaining.min(plan.burst), Duration::ZERO),
                    retry_after: None,
                })
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(RateInfo {
                    limit: plan.burst,
                    remaining: 0,
                    reset: reset_after(plan.burst.saturating_sub(1), wait),
                    retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
                })
            }
        })
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PROD, Self::DEFAULT_DEV)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_then_refill() {
        let limits = RateLimits::new(Plan { per_hour: 36_000, burst: 3 }, Plan { per_hour: 60, burst: 1 });
        let remaining: Vec<u32> =
            (0..3).map(|_| limits.check(1, ApiKeyKind::Prod, None).unwrap().unwrap().remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limits.check(1, ApiKeyKind::Prod, None).unwrap().unwrap_err();
        assert_eq!((refused.remaining, refused.retry_after), (0, Some(1)));
        // 36,000/hour is one every 100 ms
        std::thread::sleep(Duration::from_millis(120));
        assert!(limits.check(1, ApiKeyKind::Prod, None).unwrap().is_ok());
    }

    #[test]
    fn keys_are_independent_and_root_is_unlimited() {
        let limits = RateLimits::new(Plan { per_hour: 60, burst: 1 }, Plan { per_hour: 60, burst: 1 });
        assert!(limits.check(1, ApiKeyKind::Dev, None).unwrap().is_ok());
        assert!(limits.check(1, ApiKeyKind::Dev, None).unwrap().is_err());
        assert!(limits.check(2, ApiKeyKind::Dev, None).unwrap().is_ok(), "another key is untouched");
        assert!((0..100).all(|_| limits.check(3, ApiKeyKind::Root, None).is_none()));
    }

    #[test]
    fn override_replaces_the_kind_plan() {
        let limits = RateLimits::default();
        let first = limits.check(7, ApiKeyKind::Root, Some(2)).unwrap().unwrap();
        assert_eq!((first.limit, first.remaining), (2, 1));
        assert!(limits.check(7, ApiKeyKind::Root, Some(2)).unwrap().is_ok());
        let refused = limits.check(7, ApiKeyKind::Root, Some(2)).unwrap().unwrap_err();
        assert_eq!(refused.retry_after, Some(30), "2 a minute: one every 30 s");
        // A changed override takes effect at once, with a fresh bucket.
        assert!(limits.check(7, ApiKeyKind::Root, Some(5)).unwrap().is_ok());
    }
}
