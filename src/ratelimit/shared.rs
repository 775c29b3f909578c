//! Allowances kept in Redis, shared by every instance that uses the same Redis and
//! prefix: one GCRA step per request, in one Lua script (sent once, then called by its
//! digest with `EVALSHA`), on Redis's clock, so instances whose clocks differ agree.
//!
//! When Redis does not answer within its timeout, the request is limited by this
//! process's own allowance instead, and Redis is left alone for a second before it is
//! tried again. Refusing every request while Redis is down would turn an outage of a
//! cache into an outage of the API; limiting locally keeps each instance bounded (a key
//! gets at most its limit per instance meanwhile), and the switch is logged once each
//! way and counted in `bizkit_rate_limit_fallbacks_total`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{rate_info, Outcome, Plan};

/// One GCRA step on the allowance stored at `KEYS[1]`: `ARGV[1]` microseconds between
/// requests, `ARGV[2]` requests at once. The stored value is the theoretical arrival time
/// of the next request, in microseconds of Redis's clock; it expires once the allowance
/// is full again. Returns {allowed, remaining, wait µs, µs until the burst is full}.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local allow_at = next_tat - interval * burst
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return {1, math.floor((now - allow_at) / interval), 0, next_tat - now}
";

/// After Redis failed to answer, requests are limited locally for this long before it
/// is asked again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where the shared allowances live.
#[derive(Debug, Clone)]
pub struct SharedSettings {
    /// `redis://host:port/db` (or `rediss://` for TLS).
    pub url: String,
    /// Put before every key this server writes, so deployments can share one Redis.
    pub prefix: String,
    /// How long a request waits for Redis before it is limited locally.
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct SharedLimits(Arc<Inner>);

struct Inner {
    connection: ConnectionManager,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    started: Instant,
    /// Milliseconds after `started` before which Redis is not asked.
    skip_until: AtomicU64,
    down: AtomicBool,
}

impl SharedLimits {
    /// Prepares the connection without waiting for it: a server starts while Redis is
    /// down, and limits locally until it is up.
    pub fn connect(settings: &SharedSettings) -> anyhow::Result<Self> {
        let client = redis::Client::open(settings.url.as_str())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(2)
            .set_max_delay(RETRY_AFTER);
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self(Arc::new(Inner {
            connection,
            script: redis::Script::new(GCRA),
            prefix: settings.prefix.clone(),
            timeout: settings.timeout,
            started: Instant::now(),
            skip_until: AtomicU64::new(0),
            down: AtomicBool::new(false),
        })))
    }

    /// Takes one request from the key's shared allowance under `plan` (a changed plan has
    /// an allowance of its own). `None`: Redis did not answer, limit locally.
    pub async fn check(&self, key_id: i64, plan: Plan) -> Option<Outcome> {
        let inner = &*self.0;
        if inner.elapsed_ms() < inner.skip_until.load(Ordering::Relaxed) {
            crate::telemetry::rate_limit_fallback();
            return None;
        }
        let interval = plan.interval().as_micros().clamp(1, i64::MAX as u128) as i64;
        let mut invocation = inner.script.prepare_invoke();
        invocation
            .key(format!("{}ratelimit:{key_id}:{}:{}", inner.prefix, plan.per_hour, plan.burst()))
            .arg(interval)
            .arg(plan.burst());
        let mut connection = inner.connection.clone();
        let answer =
            tokio::time::timeout(inner.timeout, invocation.invoke_async::<(i64, i64, i64, i64)>(&mut connection)).await;
        match answer {
            Ok(Ok((allowed, remaining, wait, full_in))) => {
                if inner.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis answers again: rate limits are shared again");
                }
                let micros = |us: i64| Duration::from_micros(us.max(0) as u64);
                let remaining = u32::try_from(remaining.max(0)).unwrap_or(u32::MAX);
                Some(if allowed == 1 {
                    Ok(rate_info(plan, micros(full_in), remaining, None))
                } else {
                    Err(rate_info(plan, micros(full_in), 0, Some(micros(wait))))
                })
            }
            Ok(Err(e)) => inner.failed(&e.to_string()),
            Err(_) => inner.failed("no answer within the timeout"),
        }
    }
}

impl Inner {
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn failed(&self, error: &str) -> Option<Outcome> {
        self.skip_until.store(self.elapsed_ms() + RETRY_AFTER.as_millis() as u64, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(error, "Redis is unreachable: each instance limits keys on its own until it answers");
        }
        crate::telemetry::rate_limit_fallback();
        None
    }
}
