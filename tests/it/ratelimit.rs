//! Per-key rate limits as clients see them: headers, burst, refusal, refill, isolation.

use bizkit_mirror::ratelimit::{Plan, RateLimits};

use crate::support::{self, assert_error, Backend, TestApp};

fn header(res: &reqwest::Response, name: &str) -> Option<u64> {
    res.headers().get(name).map(|v| v.to_str().unwrap().parse().expect("numeric header"))
}

async fn ping(app: &TestApp, key: &str) -> reqwest::Response {
    app.client.get(app.url("/ping/v1")).query(&[("apiKey", key)]).send().await.unwrap()
}

/// DEV_: 3 at once, then one a second. PROD: 5 at once.
fn small_limits() -> RateLimits {
    RateLimits::new(Plan { per_hour: 3600, burst: 5 }, Plan { per_hour: 3600, burst: 3 })
}

async fn burst_refusal_refill_and_isolation(backend: Backend) {
    let Some(app) = support::spawn_app_with_limits(backend, small_limits()).await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    let other = support::make_keys(&app.store, "globex").await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();

    // The burst: remaining counts down on every keyed response
    for expected in [2, 1, 0] {
        let res = ping(&app, &app.keys.dev).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-ratelimit-limit"), Some(3));
        assert_eq!(header(&res, "x-ratelimit-remaining"), Some(expected));
        let reset = header(&res, "x-ratelimit-reset").unwrap();
        assert!(reset >= now && reset <= now + 5, "reset {reset} is unix seconds, soon");
    }
    // Over it: 429, with Retry-After and retry_after, on any endpoint of that key
    let res = app
        .client
        .post(app.url("/api/v1/customer/create"))
        .query(&[("apiKey", &app.keys.dev)])
        .json(&serde_json::json!({"email": "rl@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "retry-after"), Some(1));
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some(0));
    let got = support::split(res).await;
    assert_error(&got, 429, "RATE_LIMIT_EXCEEDED");
    assert_eq!(got.1["error"]["retry_after"], 1);

    // Other keys are untouched: the same org's PROD key, another org's DEV_ key
    let res = ping(&app, &app.keys.prod).await;
    assert_eq!((res.status().as_u16(), header(&res, "x-ratelimit-remaining")), (200, Some(4)));
    let res = ping(&app, &other.dev).await;
    assert_eq!((res.status().as_u16(), header(&res, "x-ratelimit-remaining")), (200, Some(2)));

    // Refill: one request a second
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let res = ping(&app, &app.keys.dev).await;
    assert_eq!(res.status(), 200, "refilled after a second");
    assert_eq!(ping(&app, &app.keys.dev).await.status(), 429, "but only by one");

    // ROOT keys are not limited and carry no rate headers; neither do unkeyed or rejected requests
    for _ in 0..20 {
        let res = ping(&app, &app.keys.root).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-ratelimit-limit"), None);
    }
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(header(&res, "x-ratelimit-limit"), None);
    let res = ping(&app, "PRODAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!((res.status().as_u16(), header(&res, "x-ratelimit-limit")), (401, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_refusal_refill_and_isolation_sqlite() {
    burst_refusal_refill_and_isolation(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_refusal_refill_and_isolation_postgres() {
    burst_refusal_refill_and_isolation(Backend::Postgres).await;
}

// A key's own limit replaces its kind's, and applies even to a ROOT key.
backend_test!(per_key_override_applies, |app| {
    let (status, created) = app
        .post(
            "/admin/v1/api-keys",
            &app.keys.root,
            serde_json::json!({ "organisation": "acme", "kind": "ROOT", "rateLimitPerMinute": 2 }),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    for expected in [1, 0] {
        let res = ping(&app, &key).await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            (header(&res, "x-ratelimit-limit"), header(&res, "x-ratelimit-remaining")),
            (Some(2), Some(expected))
        );
    }
    let res = ping(&app, &key).await;
    assert_eq!(header(&res, "retry-after"), Some(30), "2 a minute: the next one in 30 s");
    assert_error(&support::split(res).await, 429, "RATE_LIMIT_EXCEEDED");
    // The ROOT key without an override is still unlimited
    assert_eq!(header(&ping(&app, &app.keys.root).await, "x-ratelimit-limit"), None);
});
