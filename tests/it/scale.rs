//! Several instances on one PostgreSQL, as behind a load balancer: a key's rate limit
//! shared through Redis, a revoke through one instance (or the command line) refused by
//! the other within a second, what happens while Redis is down, and `/metrics`.
//!
//! Every test here runs real server processes. Redis is the machine's
//! (`TEST_REDIS_URL`, e.g. `redis://127.0.0.1:6379`), or, for the outage, a
//! `redis-server` of the test's own on a free port; with REQUIRE_REDIS=1 a missing one is
//! a failure rather than a skip.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Connection as _;

use crate::support::child::{ChildServer, Running};
use crate::support::tools::have_tool;
use crate::support::{self, Backend, TestDb};

fn redis_required() -> bool {
    std::env::var("REQUIRE_REDIS").is_ok_and(|v| v == "1")
}

/// The machine's Redis, if the tests were given one.
fn test_redis_url() -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(!redis_required(), "REQUIRE_REDIS=1 but TEST_REDIS_URL is not set");
            eprintln!("skipped: TEST_REDIS_URL is not set");
            None
        }
    }
}

/// Keys of this test alone, whatever else shares the Redis.
fn unique_prefix() -> String {
    format!("bizkit-test-{:016x}:", rand::random::<u64>())
}

/// An instance of the server over `db`, with `envs`.
fn instance(db: &TestDb, envs: &[(&str, &str)]) -> Running {
    ChildServer::new(["serve"]).database_url(&db.url).rust_log("info").envs(envs).start()
}

/// The ROOT key the first instance on an empty database printed.
fn root_key(first: &Running) -> String {
    first
        .stdout()
        .split_whitespace()
        .find(|w| w.starts_with("ROOT") && w.len() == 32)
        .unwrap_or_else(|| panic!("no ROOT key printed:\n{}", first.stdout()))
        .to_owned()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// A new PROD key of organisation `default`, made through `via`: (id, key).
async fn new_key(via: &Running, root: &str, per_minute: Option<u32>) -> (i64, String) {
    let mut body = json!({ "organisation": "default", "kind": "PROD", "label": "scale test" });
    if let Some(n) = per_minute {
        body["rateLimitPerMinute"] = json!(n);
    }
    let res = client().post(via.url("/admin/v1/api-keys")).query(&[("apiKey", root)]).json(&body).send().await.unwrap();
    let (status, body) = support::split(res).await;
    assert_eq!(status, 200, "{body}");
    (body["id"].as_i64().unwrap(), body["key"].as_str().unwrap().to_owned())
}

async fn ping(via: &Running, key: &str) -> (u16, Value) {
    support::split(client().get(via.url("/ping/v1")).query(&[("apiKey", key)]).send().await.unwrap()).await
}

/// A key limited to 10 a minute gets exactly 10 successes from two instances sharing
/// Redis, however its requests are spread between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_limit_holds_across_two_instances() {
    let Some(redis) = test_redis_url() else { return };
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let prefix = unique_prefix();
    let envs = [("REDIS_URL", redis.as_str()), ("REDIS_PREFIX", prefix.as_str())];
    let a = instance(&db, &envs);
    let b = instance(&db, &envs);
    let root = root_key(&a);
    let (_, key) = new_key(&a, &root, Some(10)).await;

    // The headers come from the shared allowance as they do from a process's own.
    let first = client().get(a.url("/ping/v1")).query(&[("apiKey", key.as_str())]).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let header = |name: &str| first.headers()[name].to_str().unwrap().to_owned();
    assert_eq!((header("x-ratelimit-limit"), header("x-ratelimit-remaining")), ("10".into(), "9".into()));
    let reset: u64 = header("x-ratelimit-reset").parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!((now..=now + 7).contains(&reset), "one request's worth (6 s) back by {reset}, now {now}");

    let mut successes = BTreeMap::from([("a", 1)]);
    let mut refused = 0;
    for i in 1..30 {
        let (name, via) = if i % 2 == 0 { ("a", &a) } else { ("b", &b) };
        match ping(via, &key).await {
            (200, _) => *successes.entry(name).or_default() += 1,
            got => {
                support::assert_error(&got, 429, "RATE_LIMIT_EXCEEDED");
                assert!((1..=6).contains(&got.1["error"]["retry_after"].as_u64().unwrap()), "{}", got.1);
                refused += 1;
            }
        }
    }
    assert_eq!(successes.values().sum::<u32>(), 10, "successes by instance: {successes:?}");
    assert_eq!(refused, 20);
    assert!(successes.len() == 2, "both instances served the key: {successes:?}");
}

/// A key revoked through instance A, or from the command line, is refused by instance B
/// within a second, though B caches keys for five minutes; so too after B's listening
/// connection was cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_reaches_every_instance_within_a_second() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let envs = [("KEY_CACHE_SECONDS", "300")];
    let a = instance(&db, &envs);
    let b = instance(&db, &envs);
    let root = root_key(&a);

    for through in ["instance", "command line", "instance, after B lost its listening connection"] {
        if through.contains("lost") {
            // B hears of changes on a connection of its own; cut it (and A's). It is made
            // again by itself, and the cache emptied, since notices meanwhile are lost.
            let cut = db
                .execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity \
                     where datname = current_database() and query ilike 'listen%'",
                )
                .await;
            assert_eq!(cut, 2, "one listening connection per instance");
        }
        let (id, key) = new_key(&a, &root, None).await;
        assert_eq!(ping(&b, &key).await.0, 200, "B knows the key, and caches it");
        match through {
            "command line" => {
                ChildServer::new(["key", "revoke", &id.to_string()]).database_url(&db.url).run().succeeded();
            }
            _ => {
                let res = client()
                    .post(a.url("/admin/v1/api-keys/revoke"))
                    .query(&[("apiKey", root.as_str())])
                    .json(&json!({ "id": id }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
            }
        }
        let revoked = Instant::now();
        loop {
            let got = ping(&b, &key).await;
            if got.0 == 401 {
                support::assert_error(&got, 401, "PUBLIC_API_KEY_REVOKED");
                break;
            }
            assert!(revoked.elapsed() < Duration::from_secs(1), "B still accepts a key revoked through the {through}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A `redis-server` of the test's own on a free port, killed when dropped.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Option<OwnRedis> {
        if !have_tool("redis-server") {
            assert!(!redis_required(), "REQUIRE_REDIS=1 but redis-server is not on PATH");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = OwnRedis { port, child: None };
        redis.resume();
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again), keeping nothing on disk, and waits until it accepts connections.
    fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The documented policy: while Redis is down, every instance limits each key on its own
/// (requests are served, never failed), says so once in its log and counts it in
/// `/metrics`; once Redis is back, limits are shared again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_each_instance_limits_alone() {
    let Some(mut redis) = OwnRedis::start() else { return };
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let url = redis.url();
    let envs = [("REDIS_URL", url.as_str()), ("REDIS_PREFIX", "outage:")];
    let a = instance(&db, &envs);
    let b = instance(&db, &envs);
    let root = root_key(&a);
    let (_, key) = new_key(&a, &root, Some(5)).await;
    let served = |statuses: &[u16]| statuses.iter().filter(|s| **s == 200).count();

    let mut shared = Vec::new();
    for via in [&a, &b, &a, &b] {
        shared.push(ping(via, &key).await.0);
    }
    assert_eq!(served(&shared), 4, "{shared:?}");

    redis.kill();
    // Each instance has an allowance of its own now: 5 apiece, whatever the shared one
    // had left; nothing fails.
    let mut alone = BTreeMap::<&str, Vec<u16>>::new();
    for _ in 0..8 {
        for (name, via) in [("a", &a), ("b", &b)] {
            alone.entry(name).or_default().push(ping(via, &key).await.0);
        }
    }
    for (name, statuses) in &alone {
        assert!(statuses.iter().all(|s| [200, 429].contains(s)), "{name}: {statuses:?}");
        assert_eq!(served(statuses), 5, "{name} limits the key alone: {statuses:?}");
    }
    for (name, instance) in [("a", &a), ("b", &b)] {
        let log = instance.stderr();
        assert_eq!(log.matches("Redis is unreachable").count(), 1, "{name} says so once:\n{log}");
        let metrics = scrape(&instance.url("/metrics")).await;
        assert!(value(&metrics, "bizkit_rate_limit_fallbacks_total", &[]) >= 8.0, "{name}");
    }

    // Back: a new Redis holds nothing, so the key has a fresh shared allowance of 5, and
    // the instances take from it together again once they retry (within a second).
    redis.resume();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut again = Vec::new();
    for via in [&a, &b, &a, &b, &a, &b, &a, &b] {
        again.push(ping(via, &key).await.0);
    }
    assert_eq!(served(&again), 5, "shared again: {again:?}");
    assert!(a.stderr().contains("Redis answers again") || b.stderr().contains("Redis answers again"));
}

type Series = Vec<prometheus_parse::Sample>;

/// `/metrics` parsed as Prometheus text.
async fn scrape(url: &str) -> Series {
    let res = client().get(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = res.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text").samples
}

/// The value of the counter or gauge `name` whose labels include `labels`, summed over
/// the series that match.
fn value(series: &Series, name: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value as V;
    series
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            V::Counter(v) | V::Gauge(v) | V::Untyped(v) => v,
            _ => panic!("{name} is not a counter or a gauge"),
        })
        .sum()
}

/// After traffic, `/metrics` has requests by route template and status, latency buckets,
/// the pool, refusals by key kind, authentication failures by code, import items by
/// outcome and build info, with no raw path or key in any label. With METRICS_BIND it is
/// served there, and not on the API's address.
async fn metrics_after_traffic(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let server = instance(
        &db,
        &[("RATE_LIMIT_DEV_PER_HOUR", "60"), ("RATE_LIMIT_DEV_BURST", "2"), ("METRICS_BIND", "127.0.0.1:0")],
    );
    let root = root_key(&server);
    let dev = server
        .stdout()
        .split_whitespace()
        .find(|w| w.starts_with("DEV_") && w.len() == 32)
        .expect("a DEV_ key printed")
        .to_owned();
    let (_, prod) = new_key(&server, &root, None).await;
    let http = client();

    let created = support::split(
        http.post(server.url("/api/v1/customer/create"))
            .query(&[("apiKey", prod.as_str())])
            .json(&json!({ "email": "metrics@example.com" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(created.0, 200, "{}", created.1);
    let cu_ref_no = created.1["cuRefNo"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(ping(&server, &prod).await.0, 200);
    }
    // Without the session it needs: 400, under the same route template.
    let res = http
        .get(server.url("/api/v1/customer/detail"))
        .query(&[("apiKey", prod.as_str()), ("cuRefNo", cu_ref_no.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let unknown_key = "PRODxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    assert_eq!(ping(&server, unknown_key).await.0, 401);
    let statuses: Vec<u16> =
        futures::future::join_all((0..4).map(|_| ping(&server, &dev))).await.into_iter().map(|r| r.0).collect();
    assert!(statuses.contains(&429), "a DEV_ key with a burst of 2: {statuses:?}");
    let dev_pings = statuses.len() as f64;
    let dev_served = statuses.iter().filter(|s| **s == 200).count() as f64;
    let secret_path = "/no/such/path/with-a-secret-PRODsecret";
    assert_eq!(http.get(server.url(secret_path)).send().await.unwrap().status(), 404);
    let items: String = (0..3).map(|i| format!("{{\"email\":\"import{i}@example.com\"}}\n")).collect::<String>()
        + "{\"email\":\"not an address\"}\n";
    let res = http
        .post(server.url("/api/v1/customer/import"))
        .query(&[("apiKey", root.as_str())])
        .header("content-type", "application/x-ndjson")
        .body(items)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();

    // Served on its own address, and not on the API's.
    assert_eq!(http.get(server.url("/metrics")).send().await.unwrap().status(), 404);
    let log = server.stderr();
    let address = log
        .lines()
        .filter(|l| l.contains("serving metrics"))
        .find_map(|l| serde_json::from_str::<Value>(l).ok()?["fields"]["address"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no `serving metrics` line:\n{log}"));
    let series = scrape(&format!("http://{address}/metrics")).await;

    let pings = [("route", "/ping/v1"), ("method", "GET")];
    assert_eq!(
        value(&series, "bizkit_http_requests_total", &[pings[0], pings[1], ("status", "200")]),
        3.0 + dev_served
    );
    let detail = [("route", "/api/v1/customer/detail"), ("method", "GET"), ("status", "400")];
    assert_eq!(value(&series, "bizkit_http_requests_total", &detail), 1.0);
    assert_eq!(value(&series, "bizkit_http_requests_total", &[("route", "/ping/v1"), ("status", "401")]), 1.0);
    assert!(value(&series, "bizkit_http_requests_total", &[("route", "/ping/v1"), ("status", "429")]) >= 1.0);
    assert_eq!(value(&series, "bizkit_http_requests_total", &[("route", "unmatched"), ("status", "404")]), 1.0);
    let buckets = series
        .iter()
        .find(|s| {
            s.metric == "bizkit_http_request_duration_seconds" && pings.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .expect("a latency histogram for ping");
    match &buckets.value {
        prometheus_parse::Value::Histogram(counts) => {
            assert!(counts.len() >= 10, "{counts:?}");
            // Three answered 200, one 401 and the DEV_ key's: all within the last bucket.
            assert_eq!(counts.last().unwrap().count, 4.0 + dev_pings, "{counts:?}");
            assert!(counts.windows(2).all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count));
        }
        other => panic!("ping's latency is a histogram, not {other:?}"),
    }
    assert!(value(&series, "bizkit_db_pool_max_connections", &[]) >= 1.0);
    assert!(value(&series, "bizkit_db_pool_connections", &[("state", "idle")]) >= 1.0);
    assert!(series.iter().any(|s| s.metric == "bizkit_db_pool_waiters"));
    assert!(value(&series, "bizkit_rate_limit_refusals_total", &[("kind", "DEV")]) >= 1.0);
    assert_eq!(value(&series, "bizkit_auth_failures_total", &[("code", "PUBLIC_API_KEY_DOES_NOT_EXIST")]), 1.0);
    assert_eq!(value(&series, "bizkit_import_items_total", &[("outcome", "created")]), 3.0);
    assert_eq!(value(&series, "bizkit_import_items_total", &[("outcome", "failed")]), 1.0);
    assert_eq!(value(&series, "bizkit_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);
    for s in &series {
        for label in [&root, &prod, &dev, &cu_ref_no, &secret_path.to_owned()] {
            assert!(
                !format!("{:?}", s.labels).contains(label.as_str()),
                "{} has a raw value in {:?}",
                s.metric,
                s.labels
            );
        }
    }
}
per_backend!(metrics_after_traffic, super::metrics_after_traffic);

/// Behind a balancer named in TRUSTED_PROXIES, each client keeps a budget of unknown-key
/// lookups of its own, read from `X-Forwarded-For`; without it the header is the client's
/// own words and ignored, so every request counts against the connection's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_a_trusted_balancer_keep_budgets_of_their_own() {
    for trusted in [true, false] {
        let mut server = ChildServer::new(["serve"]).fresh_sqlite().env("AUTH_FAILURES_PER_MINUTE", "2");
        if trusted {
            server = server.env("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1");
        }
        let server = server.start();
        let mut n = 0;
        let mut unknown_key_from = |address: &'static str| {
            n += 1;
            let request = client()
                .get(server.url("/ping/v1"))
                .query(&[("apiKey", format!("PROD{n:0>28}"))])
                .header("x-forwarded-for", format!("192.0.2.1, {address}"));
            async move { request.send().await.unwrap().status().as_u16() }
        };
        let spent = [unknown_key_from("198.51.100.1").await, unknown_key_from("198.51.100.1").await];
        assert_eq!(spent, [401, 401]);
        assert_eq!(unknown_key_from("198.51.100.1").await, 429, "its budget of 2 is spent");
        let other = unknown_key_from("198.51.100.2").await;
        assert_eq!(other, if trusted { 401 } else { 429 }, "another client behind the balancer (trusted: {trusted})");
    }
}

/// `bizkit_db_pool_waiters` counts the calls waiting for a connection: with a pool of
/// one connection held by a statement blocked on a lock, two more creates wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_waiters_are_counted() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let server = instance(&db, &[("DATABASE_MAX_CONNECTIONS", "1")]);
    let root = root_key(&server);
    let (_, key) = new_key(&server, &root, None).await;
    // The key is cached, and its last use written, before the lock is taken.
    assert_eq!(ping(&server, &key).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut locker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("begin").execute(&mut locker).await.unwrap();
    sqlx::query("lock table customers in access exclusive mode").execute(&mut locker).await.unwrap();
    let creates: Vec<_> = (0..3)
        .map(|i| {
            let request = client()
                .post(server.url("/api/v1/customer/create"))
                .query(&[("apiKey", key.as_str())])
                .json(&json!({ "email": format!("waiting{i}@example.com") }));
            tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3);
    let series = loop {
        let series = scrape(&server.url("/metrics")).await;
        if value(&series, "bizkit_db_pool_waiters", &[]) >= 2.0 || Instant::now() > deadline {
            break series;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    sqlx::query("rollback").execute(&mut locker).await.unwrap();
    assert_eq!(value(&series, "bizkit_db_pool_waiters", &[]), 2.0);
    assert_eq!(value(&series, "bizkit_db_pool_connections", &[("state", "in_use")]), 1.0);
    assert_eq!(value(&series, "bizkit_db_pool_max_connections", &[]), 1.0);
    for create in creates {
        assert_eq!(create.await.unwrap(), 200, "each create goes through once the lock is gone");
    }
    let after = scrape(&server.url("/metrics")).await;
    assert_eq!(value(&after, "bizkit_db_pool_waiters", &[]), 0.0);
}
