//! Allowances kept in this process, through `governor`: exact for one instance, and the
//! fallback of the shared limiter while Redis is out of reach.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::{rate_info, Outcome, Plan};

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

struct Entry {
    plan: Plan,
    limiter: Limiter,
}

/// The limiters of all keys seen recently. An entry idle for an hour is dropped: by then
/// its bucket is full again under any plan, so recreating it loses nothing.
#[derive(Clone)]
pub struct LocalLimits {
    clock: DefaultClock,
    limiters: moka::sync::Cache<i64, Arc<Entry>>,
}

impl LocalLimits {
    pub fn new() -> Self {
        let limiters =
            moka::sync::Cache::builder().max_capacity(1_000_000).time_to_idle(Duration::from_secs(3600)).build();
        Self { clock: DefaultClock::default(), limiters }
    }

    /// Takes one request from the key's allowance under `plan`; a changed plan starts a
    /// fresh allowance.
    pub fn check(&self, key_id: i64, plan: Plan) -> Outcome {
        let entry = self.limiters.get(&key_id).filter(|e| e.plan == plan).unwrap_or_else(|| {
            let entry = Arc::new(Entry {
                plan,
                limiter: RateLimiter::direct_with_clock(quota(plan), self.clock.clone()).with_middleware(),
            });
            self.limiters.insert(key_id, entry.clone());
            entry
        });
        let interval = quota(plan).replenish_interval();
        let burst = plan.burst();
        match entry.limiter.check() {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Ok(rate_info(plan, interval * (burst - remaining.min(burst)), remaining, None))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(rate_info(plan, wait + interval * (burst - 1), 0, Some(wait)))
            }
        }
    }
}

impl Default for LocalLimits {
    fn default() -> Self {
        Self::new()
    }
}

fn quota(plan: Plan) -> Quota {
    let burst = NonZeroU32::new(plan.burst()).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(plan.interval()).unwrap_or_else(|| Quota::per_hour(NonZeroU32::MIN)).allow_burst(burst)
}
