//! Metrics, served as Prometheus text at `/metrics`: requests by route template and
//! status, latency histograms per route, the database pool, rate-limit refusals by key
//! kind, authentication failures by code, import items by outcome, and build info.
//!
//! Recorded through the `metrics` facade; the recorder is `metrics-exporter-prometheus`,
//! installed once per process on first use. Labels are always drawn from small, fixed
//! sets (route templates, status codes, error codes, key kinds): never a raw path, a key
//! or anything a client chooses freely.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::PoolStats;

pub const HTTP_REQUESTS: &str = "bizkit_http_requests_total";
pub const HTTP_DURATION: &str = "bizkit_http_request_duration_seconds";
pub const DB_POOL_CONNECTIONS: &str = "bizkit_db_pool_connections";
pub const DB_POOL_MAX: &str = "bizkit_db_pool_max_connections";
pub const DB_POOL_WAITERS: &str = "bizkit_db_pool_waiters";
pub const RATE_LIMIT_REFUSALS: &str = "bizkit_rate_limit_refusals_total";
pub const RATE_LIMIT_FALLBACKS: &str = "bizkit_rate_limit_fallbacks_total";
pub const AUTH_FAILURES: &str = "bizkit_auth_failures_total";
pub const KEY_CACHE_INVALIDATIONS: &str = "bizkit_key_cache_invalidations_total";
pub const IMPORT_ITEMS: &str = "bizkit_import_items_total";
pub const WEBHOOK_DELIVERIES: &str = "bizkit_webhook_deliveries_total";
pub const BUILD_INFO: &str = "bizkit_build_info";

/// Request latency buckets, in seconds: from a cached read to the request timeout.
const LATENCY_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), &LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // A program embedding this library may have installed a recorder of its own; the
        // metrics then go there and this one renders nothing.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::debug!("a metrics recorder was installed already");
        }
        describe();
        gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the metrics upkeep thread; histograms fold at each scrape");
        }
        handle
    })
}

fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by route template, method and status.");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "Time to answer a request, by route template and method.");
    describe_gauge!(DB_POOL_CONNECTIONS, "Open database connections, by state (idle or in use).");
    describe_gauge!(DB_POOL_MAX, "The most database connections the pool opens.");
    describe_gauge!(DB_POOL_WAITERS, "Database calls waiting for a pooled connection.");
    describe_counter!(RATE_LIMIT_REFUSALS, "Requests refused with 429, by key kind (unknown: lookup budget).");
    describe_counter!(RATE_LIMIT_FALLBACKS, "Requests limited by this process alone because Redis did not answer.");
    describe_counter!(AUTH_FAILURES, "Requests refused by the key pipeline, by error code.");
    describe_counter!(KEY_CACHE_INVALIDATIONS, "Cached keys dropped on a change notice, by reason.");
    describe_counter!(IMPORT_ITEMS, "Import items processed, by outcome.");
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook delivery attempts, by outcome (delivered, retry, failed, disabled)."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version of this server in its label.");
}

/// The text of every series, with the pool's state read now.
pub fn render(pool: PoolStats) -> String {
    let handle = install();
    gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(pool.idle));
    gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(f64::from(pool.size.saturating_sub(pool.idle)));
    gauge!(DB_POOL_MAX).set(f64::from(pool.max));
    gauge!(DB_POOL_WAITERS).set(pool.waiting as f64);
    handle.render()
}

/// One answered request. `route` is the matched route template, or `unmatched`.
pub fn http_request(method: &axum::http::Method, route: String, status: u16, elapsed: Duration) {
    let method = method_label(method);
    counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status.to_string()).increment(1);
    histogram!(HTTP_DURATION, "route" => route, "method" => method).record(elapsed.as_secs_f64());
}

/// Methods outside the standard set share one label, so a client cannot add series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::PATCH => "PATCH",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A 429 from a key's limit (`PROD`, `DEV`, `ROOT`) or a client's lookup budget (`unknown`).
pub fn rate_limit_refused(kind: &'static str) {
    counter!(RATE_LIMIT_REFUSALS, "kind" => kind).increment(1);
}

pub fn rate_limit_fallback() {
    counter!(RATE_LIMIT_FALLBACKS).increment(1);
}

/// A request refused by the key pipeline, by its error code.
pub fn auth_failure(code: &'static str) {
    counter!(AUTH_FAILURES, "code" => code).increment(1);
}

/// Cached keys dropped: `notice` for one changed key, `resync` for all after the
/// notices' connection was lost.
pub fn key_cache_invalidated(reason: &'static str) {
    counter!(KEY_CACHE_INVALIDATIONS, "reason" => reason).increment(1);
}

/// Items of one import batch, by outcome.
pub fn import_items(created: u64, updated: u64, failed: u64) {
    for (outcome, n) in [("created", created), ("updated", updated), ("failed", failed)] {
        if n > 0 {
            counter!(IMPORT_ITEMS, "outcome" => outcome).increment(n);
        }
    }
}

/// One webhook delivery attempt, by what it came to.
pub fn webhook_attempt(outcome: &'static str) {
    counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
}
