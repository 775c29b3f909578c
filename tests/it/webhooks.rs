//! Change events as signed webhooks (API.md §9), received by a real HTTP server on
//! 127.0.0.1: every event type arrives once, signed, in order per customer; retries,
//! `410`, redirects, refused targets, erasure reaching the outbox, two workers on one
//! PostgreSQL, and `kill -9` of the real binary between commit and delivery.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use bizkit_mirror::store::{DynStore, Mode};
use bizkit_mirror::webhooks::{Reach, WebhookSettings, Worker};

use crate::support::child::{ChildServer, DEMO_PROD, DEMO_ROOT};
use crate::support::{assert_error, Backend, TestApp, TestDb};

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: String,
    /// What the receiver answered.
    status: u16,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    fn id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_owned()
    }

    /// The event id inside `webhook-id` (`evt_<n>`).
    fn event_id(&self) -> i64 {
        self.id().trim_start_matches("evt_").parse().expect("evt_<n>")
    }
}

/// What the receiver answers: a status, and the headers to send with it.
type Reply = (u16, Vec<(&'static str, String)>);

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    /// Answers for the next requests to a path, in order; 200 once none is left.
    script: VecDeque<(String, Reply)>,
    /// Answered instead of 200 while set.
    closed: Option<Reply>,
    /// While set and open, every request is recorded and then held until it closes.
    gate: Option<Arc<tokio::sync::Semaphore>>,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<ReceiverState>>);

impl Receiver {
    /// A receiver on 127.0.0.1; its base URL.
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let state = receiver.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let (status, reply_headers, gate) = {
                    let mut s = state.0.lock().unwrap();
                    let scripted = s.script.iter().position(|(path, _)| path == uri.path());
                    let (status, reply_headers) = match scripted.and_then(|i| s.script.remove(i)) {
                        Some((_, reply)) => reply,
                        None => s.closed.clone().unwrap_or((200, Vec::new())),
                    };
                    s.received.push(Received { path: uri.path().to_owned(), headers, body, status });
                    (status, reply_headers, s.gate.clone())
                };
                if let Some(gate) = gate {
                    // Closed, the gate lets every waiting request through.
                    let _ = gate.acquire().await;
                }
                let mut response = axum::response::Response::new(axum::body::Body::from("ok"));
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                for (name, value) in reply_headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, base)
    }

    fn received(&self) -> Vec<Received> {
        self.0.lock().unwrap().received.clone()
    }

    fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.0.lock().unwrap().script.extend(replies.into_iter().map(|r| (path.to_owned(), r)));
    }

    /// Holds every request, once recorded, until the returned gate is closed.
    fn hold(&self) -> Arc<tokio::sync::Semaphore> {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        self.0.lock().unwrap().gate = Some(gate.clone());
        gate
    }

    fn set_closed(&self, reply: Option<Reply>) {
        self.0.lock().unwrap().closed = reply;
    }

    /// Waits until `done` holds for what was received; panics after `limit`.
    async fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(start.elapsed() < limit, "{what}: not within {limit:?}; received {:#?}", types(&got));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn types(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| format!("{} {} {}", r.path, r.id(), r.json()["type"])).collect()
}

/// Settings for a worker in a test: loopback allowed, quick retries and polls.
fn test_settings() -> WebhookSettings {
    WebhookSettings {
        reach: Reach::Loopback,
        retry_base: Duration::from_millis(100),
        poll: Duration::from_millis(20),
        ..Default::default()
    }
}

fn worker(store: &DynStore) -> tokio::task::JoinHandle<()> {
    Worker::new(store.clone(), test_settings()).unwrap().spawn()
}

/// Registers an endpoint of `acme` through the admin API; its id and secret.
async fn register(app: &TestApp, url: &str, events: Option<&[&str]>) -> (i64, String) {
    let mut body = json!({ "url": url });
    if let Some(events) = events {
        body["events"] = json!(events);
    }
    let (status, created) = app.post("/admin/v1/webhooks", &app.keys.root, body).await;
    assert_eq!(status, 200, "{created}");
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"), "{created}");
    (created["id"].as_i64().unwrap(), created["secret"].as_str().unwrap().to_owned())
}

fn verify(secret: &str, r: &Received) {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(r.body.as_bytes(), &r.headers)
        .unwrap_or_else(|e| panic!("signature of {} does not verify: {e}", r.id()));
}

async fn post_ok(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, got) = app.post(path, &app.keys.prod, body.clone()).await;
    assert_eq!(status, 200, "{path} {body}: {got}");
    got
}

backend_test!(every_event_arrives_once_signed_and_in_order, |app| {
    let (receiver, base) = Receiver::start().await;
    let (_, secret) = register(&app, &format!("{base}/hooks"), None).await;
    let worker = worker(&app.store);

    // Exec: one change of each kind
    let email = "events@example.com";
    let cu = app.create(&app.keys.prod, email).await["cuRefNo"].as_str().unwrap().to_owned();
    post_ok(&app, "/api/v1/customer/create-or-update", json!({ "cuRefNo": cu, "firstName": "Eva" })).await;
    // No change of the profile: no event.
    post_ok(&app, "/api/v1/customer/create-or-update", json!({ "cuRefNo": cu, "firstName": "Eva" })).await;
    post_ok(&app, "/api/v1/customer/credit-add", json!({ "cuRefNo": cu, "amount": 5, "reason": "gift" })).await;
    let client = app.create(&app.keys.prod, "client@example.com").await["cuRefNo"].as_str().unwrap().to_owned();
    let matched = json!({ "managerCuRefNo": cu, "customerCuRefNo": client, "notice": "first" });
    post_ok(&app, "/api/v1/customer/customer-match-customer", matched).await;
    let renoticed = json!({ "managerCuRefNo": cu, "customerCuRefNo": client, "notice": "second" });
    post_ok(&app, "/api/v1/customer/customer-match-customer", renoticed).await;
    post_ok(&app, "/api/v1/customer/customer-match-remove", json!({ "managerCuRefNo": cu, "customerCuRefNo": client }))
        .await;
    let registration = json!({ "email": email, "password": "Secret123", "name": "Eva" });
    let (status, body) = app.post("/contact/v1/register-account", &app.keys.prod, registration).await;
    assert_eq!((status, body["success"].clone()), (200, json!(true)), "{body}");
    let space = app.store.space_of("acme", Mode::Live).await.unwrap();
    let message = app.db.latest_outbox_message(space, email).await.expect("a confirmation");
    let (_, rest) = message.body.split_once("token=").expect("a confirmation link");
    let token: String = rest.chars().take_while(char::is_ascii_alphanumeric).collect();
    let (status, body) = app.get("/contact/v1/confirm-account", &app.keys.prod, &[("token", &token)]).await;
    assert_eq!(status, 200, "{body}");
    post_ok(&app, "/api/v1/customer/delete", json!({ "cuRefNo": cu })).await;

    // Check: each event once, signed, in the order of the changes
    let expected = [
        "customer.created",
        "customer.updated",
        "customer.credit_added",
        "match.created",
        "match.updated",
        "match.removed",
        "account.registered",
        "account.confirmed",
        "customer.deleted",
    ];
    let of_cu = |got: &[Received]| -> Vec<Received> {
        got.iter()
            .filter(|r| {
                let data = &r.json()["data"];
                data["cuRefNo"] == cu.as_str() || data["managerCuRefNo"] == cu.as_str()
            })
            .cloned()
            .collect()
    };
    let got = receiver.wait_for(Duration::from_secs(20), "every event", |got| of_cu(got).len() >= expected.len()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = receiver.received().into_iter().filter(|r| got.iter().any(|g| g.id() == r.id())).collect::<Vec<_>>();
    let mine = of_cu(&receiver.received());
    let kinds: Vec<String> = mine.iter().map(|r| r.json()["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, expected, "in order, each once");
    let ids: Vec<i64> = mine.iter().map(Received::event_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "event ids rise: {ids:?}");
    for r in &got {
        verify(&secret, r);
        assert_eq!(r.path, "/hooks");
        assert_eq!(r.json()["space"], "live");
        assert!(r.json()["timestamp"].as_str().is_some());
    }
    let body = |kind: &str| mine.iter().find(|r| r.json()["type"] == kind).unwrap().json()["data"].clone();
    // The profile was sent before the erasure of the customer was known.
    assert!(matches!(body("customer.updated")["firstName"].as_str(), Some("Eva") | None));
    assert_eq!(body("customer.deleted"), json!({ "cuRefNo": cu }), "erasure carries the cuRefNo only");
    assert_eq!(body("match.removed")["customerCuRefNo"], client.as_str());
    // The client's own creation is its own customer's event.
    assert!(got
        .iter()
        .any(|r| r.json()["type"] == "customer.created" && r.json()["data"]["cuRefNo"] == client.as_str()));
    let per_id: HashMap<String, usize> = receiver.received().iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r.id()).or_default() += 1;
        m
    });
    assert!(per_id.values().all(|n| *n == 1), "each message once: {per_id:?}");
    worker.abort();
});

backend_test!(subscriptions_filter_and_no_endpoint_writes_nothing, |app| {
    // No endpoint: writes leave no event behind.
    app.create(&app.keys.prod, "quiet@example.com").await;
    assert_eq!(count(&app, "select count(*) from webhook_events").await, 0);
    assert_eq!(count(&app, "select count(*) from webhook_deliveries").await, 0);

    let (receiver, base) = Receiver::start().await;
    register(&app, &format!("{base}/credit"), Some(&["customer.credit_added"])).await;
    let worker = worker(&app.store);
    let cu = app.create(&app.keys.prod, "loud@example.com").await["cuRefNo"].as_str().unwrap().to_owned();
    post_ok(&app, "/api/v1/customer/credit-add", json!({ "cuRefNo": cu, "amount": 7, "reason": "r" })).await;
    let got = receiver.wait_for(Duration::from_secs(10), "the credit event", |got| !got.is_empty()).await;
    assert_eq!(got[0].json()["type"], "customer.credit_added");
    assert_eq!(got[0].json()["data"]["creditBalance"], 7);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1, "{:?}", types(&receiver.received()));
    worker.abort();
});

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.db.scalar(sql).await
}

backend_test!(a_merge_is_announced_once_with_both_cu_ref_nos, |app| {
    let (receiver, base) = Receiver::start().await;
    let (_, secret) = register(&app, &format!("{base}/hooks"), Some(&["customer.merged", "customer.deleted"])).await;
    let worker = worker(&app.store);
    let primary = app.create(&app.keys.prod, "primary@example.com").await["cuRefNo"].as_str().unwrap().to_owned();
    let duplicate = app.create(&app.keys.prod, "duplicate@example.com").await["cuRefNo"].as_str().unwrap().to_owned();
    let merge = json!({ "primaryCuRefNo": primary, "duplicateCuRefNo": duplicate });
    post_ok(&app, "/api/v1/customer/merge", merge.clone()).await;
    // A retry of the merge is no second merge.
    post_ok(&app, "/api/v1/customer/merge", merge).await;

    let got = receiver.wait_for(Duration::from_secs(15), "the merge", |got| !got.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1, "one event, and no erasure: {got:?}");
    verify(&secret, &got[0]);
    assert_eq!(got[0].json()["type"], "customer.merged");
    assert_eq!(got[0].json()["data"], json!({ "cuRefNo": duplicate, "mergedInto": primary }));
    worker.abort();
});

backend_test!(a_failed_attempt_is_retried_and_listed, |app| {
    let (receiver, base) = Receiver::start().await;
    let (id, _) = register(&app, &format!("{base}/flaky"), Some(&["customer.created"])).await;
    receiver.script("/flaky", [(500, vec![]), (503, vec![("retry-after", "1".to_owned())])]);
    let worker = worker(&app.store);
    let started = Instant::now();
    app.create(&app.keys.prod, "retry@example.com").await;
    let got = receiver.wait_for(Duration::from_secs(15), "three attempts", |got| got.len() >= 3).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
    assert!(got.iter().all(|r| r.id() == got[0].id() && r.body == got[0].body), "the same message each time");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3, "delivered: no more attempts");

    let (status, listed) = app.get("/admin/v1/webhooks/deliveries", &app.keys.root, &[("id", &id.to_string())]).await;
    assert_eq!(status, 200, "{listed}");
    let attempts = listed["attempts"].as_array().unwrap();
    let statuses: Vec<i64> = attempts.iter().map(|a| a["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, [200, 503, 500], "newest first: {listed}");
    assert!(attempts.iter().all(|a| a["deliveryState"] == "delivered" && a["latencyMs"].is_i64()), "{listed}");
    worker.abort();
});

backend_test!(gone_disables_and_redirects_are_not_followed, |app| {
    let (receiver, base) = Receiver::start().await;
    let (gone, _) = register(&app, &format!("{base}/gone"), Some(&["customer.created"])).await;
    let (moved, _) = register(&app, &format!("{base}/moved"), Some(&["customer.created"])).await;
    receiver.script("/gone", [(410, vec![])]);
    receiver.script("/moved", [(302, vec![("location", format!("{base}/elsewhere"))])]);
    let worker = worker(&app.store);
    app.create(&app.keys.prod, "gone@example.com").await;
    receiver.wait_for(Duration::from_secs(10), "both endpoints called", |got| got.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got = receiver.received();
    assert!(got.iter().all(|r| r.path != "/elsewhere"), "a redirect is not followed: {:?}", types(&got));
    // The redirected delivery is retried (and delivered, answered 200 now) at its own URL.
    assert!(got.iter().filter(|r| r.path == "/moved").count() >= 2, "{:?}", types(&got));

    let (status, listed) = app.get("/admin/v1/webhooks", &app.keys.root, &[]).await;
    assert_eq!(status, 200, "{listed}");
    let endpoint = |id: i64| listed["webhooks"].as_array().unwrap().iter().find(|w| w["id"] == id).unwrap().clone();
    assert!(endpoint(gone)["disabledAt"].is_string(), "410 disables: {listed}");
    assert!(endpoint(moved)["disabledAt"].is_null(), "{listed}");
    assert!(listed.to_string().find("whsec_").is_none(), "never the secret: {listed}");

    // A disabled endpoint gets nothing more.
    let before = receiver.received().iter().filter(|r| r.path == "/gone").count();
    app.create(&app.keys.prod, "gone-again@example.com").await;
    receiver
        .wait_for(Duration::from_secs(10), "the next event", |got| {
            got.iter().filter(|r| r.path == "/moved").count() >= 3
        })
        .await;
    assert_eq!(receiver.received().iter().filter(|r| r.path == "/gone").count(), before);
    worker.abort();
});

backend_test!(bad_endpoints_are_refused_and_change_nothing, |app| {
    for url in [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00::1]/",
        "ftp://example.com/",
        "https://user:pw@example.com/",
        "not a url",
    ] {
        let got = app.post("/admin/v1/webhooks", &app.keys.root, json!({ "url": url })).await;
        assert_error(&got, 400, "WEBHOOK_ENDPOINT_INVALID");
        assert_eq!(got.1["error"]["field"], "url", "{}", got.1);
    }
    let got = app
        .post("/admin/v1/webhooks", &app.keys.root, json!({ "url": "http://127.0.0.1:9/", "events": ["x.y"] }))
        .await;
    assert_error(&got, 400, "INVALID_REQUEST");
    let got =
        app.post("/admin/v1/webhooks", &app.keys.root, json!({ "url": "http://127.0.0.1:9/", "mode": "test" })).await;
    assert_error(&got, 400, "INVALID_REQUEST");
    assert_error(
        &app.post("/admin/v1/webhooks", &app.keys.prod, json!({ "url": "http://127.0.0.1:9/" })).await,
        403,
        "PUBLIC_API_KEY_FORBIDDEN",
    );
    // acme's ROOT key administers acme alone.
    let got = app
        .post("/admin/v1/webhooks", &app.keys.root, json!({ "url": "http://127.0.0.1:9/", "organisation": "default" }))
        .await;
    assert_error(&got, 403, "PUBLIC_API_KEY_FORBIDDEN");
    let (status, listed) = app.get("/admin/v1/webhooks", &app.keys.root, &[]).await;
    assert_eq!((status, listed["webhooks"].clone()), (200, json!([])), "nothing registered");

    // Registration, deletion and replay are audited; an unknown id is named.
    let (id, _) = register(&app, "http://127.0.0.1:9/ok", None).await;
    assert_error(
        &app.post("/admin/v1/webhooks/delete", &app.keys.root, json!({ "id": id + 1000 })).await,
        400,
        "INVALID_REQUEST",
    );
    assert_error(
        &app.post("/admin/v1/webhooks/replay", &app.keys.root, json!({ "eventId": 999999 })).await,
        400,
        "INVALID_REQUEST",
    );
    let (status, deleted) = app.post("/admin/v1/webhooks/delete", &app.keys.root, json!({ "id": id })).await;
    assert_eq!((status, deleted["deleted"].clone()), (200, json!(true)), "{deleted}");
    let (_, audit) = app.get("/admin/v1/audit", &app.keys.root, &[]).await;
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"webhook.create") && actions.contains(&"webhook.delete"), "{actions:?}");
});

backend_test!(replay_sends_an_event_again, |app| {
    let (receiver, base) = Receiver::start().await;
    register(&app, &format!("{base}/r"), Some(&["customer.created"])).await;
    let worker = worker(&app.store);
    app.create(&app.keys.prod, "replay@example.com").await;
    let first = receiver.wait_for(Duration::from_secs(10), "the event", |got| !got.is_empty()).await;
    let event = first[0].event_id();
    let (status, replayed) = app.post("/admin/v1/webhooks/replay", &app.keys.root, json!({ "eventId": event })).await;
    assert_eq!((status, replayed["deliveries"].clone()), (200, json!(1)), "{replayed}");
    let got = receiver.wait_for(Duration::from_secs(10), "the replay", |got| got.len() >= 2).await;
    assert_eq!(got[1].id(), got[0].id(), "a replay keeps the message id");
    worker.abort();
});

/// When, against the delivery's first attempt, its customer is erased.
#[derive(Clone, Copy, PartialEq)]
enum Erased {
    /// After the attempt and its kept body were recorded.
    AfterTheAttempt,
    /// While the attempt is in flight: its body is recorded after the erasure.
    DuringTheAttempt,
    /// After the attempt, whose body is then kept all the same: what an attempt recorded
    /// concurrently with the erasure, neither seeing the other, leaves on PostgreSQL.
    BeforeTheBodyWasKept,
    /// Not erased but merged into another customer after the attempt: a merge keeps the
    /// body, and the retry sends what the first attempt sent.
    MergedAfterTheAttempt,
}

/// A customer created while the receiver is down is erased around the first attempt: the
/// retry that succeeds carries nothing personal whenever the erasure came (and, merged
/// instead, what the first attempt carried).
async fn erasure_reaches_a_waiting_event(app: &TestApp, when: Erased) {
    let (receiver, base) = Receiver::start().await;
    let (id, _) = register(app, &format!("{base}/later"), Some(&["customer.created", "customer.updated"])).await;
    // The receiver is down: the first attempt renders and keeps the body, then waits.
    receiver.set_closed(Some((503, vec![("retry-after", "1".to_owned())])));
    let gate = (when == Erased::DuringTheAttempt).then(|| receiver.hold());
    let worker = worker(&app.store);
    let cu = app.create(&app.keys.prod, "private@example.com").await["cuRefNo"].as_str().unwrap().to_owned();
    let first = receiver.wait_for(Duration::from_secs(10), "a first attempt", |got| !got.is_empty()).await;
    assert_eq!(first[0].json()["data"]["email"], "private@example.com");
    if when != Erased::DuringTheAttempt {
        let start = Instant::now();
        while attempts_listed(app, id).await == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "the first attempt was not recorded");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    if when == Erased::MergedAfterTheAttempt {
        let primary = app.create(&app.keys.prod, "primary@example.com").await["cuRefNo"].as_str().unwrap().to_owned();
        post_ok(app, "/api/v1/customer/merge", json!({ "primaryCuRefNo": primary, "duplicateCuRefNo": cu })).await;
    } else {
        post_ok(app, "/api/v1/customer/delete", json!({ "cuRefNo": cu })).await;
    }
    if when == Erased::BeforeTheBodyWasKept {
        let kept = first[0].body.replace('\'', "''");
        let updated =
            app.db.execute(&format!("update webhook_deliveries set body = '{kept}' where state = 'pending'")).await;
        assert_eq!(updated, 1, "the delivery waits");
    }
    receiver.set_closed(None);
    if let Some(gate) = gate {
        gate.close();
    }
    let accepted = |r: &Received| {
        r.status == 200 && r.json()["type"] == "customer.created" && r.json()["data"]["cuRefNo"] == cu.as_str()
    };
    let got = receiver.wait_for(Duration::from_secs(15), "the delivery", |got| got.iter().any(accepted)).await;
    let delivered = got.iter().find(|r| accepted(r)).unwrap();
    if when == Erased::MergedAfterTheAttempt {
        assert_eq!(delivered.body, first[0].body, "a retry sends what was sent");
    } else {
        assert_eq!(delivered.json()["data"], json!({ "cuRefNo": cu }), "nothing personal after erasure");
        assert!(!delivered.body.contains("private@"), "{}", delivered.body);
    }
    worker.abort();
}

async fn attempts_listed(app: &TestApp, endpoint: i64) -> usize {
    let (status, listed) =
        app.get("/admin/v1/webhooks/deliveries", &app.keys.root, &[("id", &endpoint.to_string())]).await;
    assert_eq!(status, 200, "{listed}");
    listed["attempts"].as_array().unwrap().len()
}

backend_test!(erasure_reaches_events_waiting_in_the_outbox, |app| {
    erasure_reaches_a_waiting_event(&app, Erased::AfterTheAttempt).await;
});

backend_test!(erasure_during_an_attempt_reaches_its_retry, |app| {
    erasure_reaches_a_waiting_event(&app, Erased::DuringTheAttempt).await;
});

backend_test!(a_merge_keeps_the_body_a_retry_sends, |app| {
    erasure_reaches_a_waiting_event(&app, Erased::MergedAfterTheAttempt).await;
});

backend_test!(a_body_kept_across_an_erasure_is_not_sent, |app| {
    erasure_reaches_a_waiting_event(&app, Erased::BeforeTheBodyWasKept).await;
});

/// Two workers (two instances' pools) on one PostgreSQL deliver each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_each_event_once() {
    let Some(app) = crate::support::spawn_app(Backend::Postgres).await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    let (receiver, base) = Receiver::start().await;
    register(&app, &format!("{base}/twice"), Some(&["customer.created"])).await;
    let settings = bizkit_mirror::store::PoolSettings { max_connections: 4, ..Default::default() };
    let other = bizkit_mirror::store::connect(&app.db.url, &settings).await.unwrap();
    let workers = [worker(&app.store), worker(&other)];
    const N: usize = 200;
    let items: Vec<Value> = (0..N).map(|i| json!({ "email": format!("twice-{i}@example.com") })).collect();
    let (status, body) = app.post("/api/v1/customer/import", &app.keys.prod, json!(items)).await;
    assert_eq!(status, 200, "{body}");
    receiver.wait_for(Duration::from_secs(30), "every event", |got| got.len() >= N).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.received();
    let mut ids: Vec<String> = got.iter().map(Received::id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((got.len(), ids.len()), (N, N), "each of {N} events exactly once");
    for w in workers {
        w.abort();
    }
}

/// The real binary killed with `kill -9` after the change committed and before its
/// event was delivered: the event arrives after the restart.
async fn kill_nine_loses_no_event(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        eprintln!("skipped: no TEST_DATABASE_URL for {backend:?}");
        return;
    };
    let (receiver, base) = Receiver::start().await;
    receiver.set_closed(Some((503, vec![("retry-after", "1".to_owned())])));
    let start = || {
        ChildServer::new(["serve", "--demo"])
            .database_url(&db.url)
            .unlimited_rates()
            .env("WEBHOOK_RETRY_BASE_SECONDS", "1")
            .start()
    };
    let server = start();
    let client = reqwest::Client::new();
    let created: Value = client
        .post(server.url("/admin/v1/webhooks"))
        .bearer_auth(DEMO_ROOT)
        .json(&json!({ "url": format!("{base}/k"), "events": ["customer.created"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().expect("a secret").to_owned();
    let mut cus = Vec::new();
    for i in 0..5 {
        let res: Value = client
            .post(server.url("/api/v1/customer/create"))
            .bearer_auth(DEMO_PROD)
            .json(&json!({ "email": format!("kill-{i}@example.com") }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        cus.push(res["cuRefNo"].as_str().unwrap().to_owned());
    }
    receiver.wait_for(Duration::from_secs(10), "attempts before the kill", |got| !got.is_empty()).await;
    drop(server); // kill -9
    receiver.set_closed(None);
    let server = start();
    let delivered = |got: &[Received]| -> Vec<String> {
        got.iter()
            .filter(|r| r.status == 200 && r.json()["type"] == "customer.created")
            .map(|r| r.json()["data"]["cuRefNo"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let got = receiver
        .wait_for(Duration::from_secs(60), "every event after the restart", |got| {
            let d = delivered(got);
            cus.iter().all(|cu| d.contains(cu))
        })
        .await;
    for r in &got {
        verify(&secret, r);
    }
    drop(server);
}

per_backend!(kill_nine_between_commit_and_delivery, super::kill_nine_loses_no_event);

backend_test!(a_customers_later_events_wait_for_its_first, |app| {
    let (receiver, base) = Receiver::start().await;
    register(&app, &format!("{base}/ordered"), Some(&["customer.credit_added"])).await;
    receiver.set_closed(Some((503, vec![("retry-after", "1".to_owned())])));
    let worker = worker(&app.store);
    let cu = app.create(&app.keys.prod, "ordered@example.com").await["cuRefNo"].as_str().unwrap().to_owned();
    let other = app.create(&app.keys.prod, "other@example.com").await["cuRefNo"].as_str().unwrap().to_owned();
    for amount in 1..=5 {
        post_ok(&app, "/api/v1/customer/credit-add", json!({ "cuRefNo": cu, "amount": amount, "reason": "r" })).await;
    }
    post_ok(&app, "/api/v1/customer/credit-add", json!({ "cuRefNo": other, "amount": 9, "reason": "r" })).await;

    // While the first event fails, the customer's later ones are not attempted; another
    // customer's event is.
    let failing = receiver.wait_for(Duration::from_secs(10), "two customers tried", |got| got.len() >= 3).await;
    let of = |got: &[Received], who: &str| -> Vec<i64> {
        got.iter().filter(|r| r.json()["data"]["cuRefNo"] == who).map(Received::event_id).collect()
    };
    let tried = of(&failing, &cu);
    assert!(tried.windows(2).all(|w| w[0] == w[1]), "only the first event is tried: {tried:?}");
    assert!(!of(&failing, &other).is_empty(), "the other customer is not held up");

    // Once the receiver answers, the rest follow in order.
    receiver.set_closed(None);
    let got = receiver
        .wait_for(Duration::from_secs(15), "every credit", |got| {
            got.iter().filter(|r| r.status == 200 && r.json()["data"]["cuRefNo"] == cu.as_str()).count() >= 5
        })
        .await;
    let delivered: Vec<i64> = got
        .iter()
        .filter(|r| r.status == 200 && r.json()["data"]["cuRefNo"] == cu.as_str())
        .map(Received::event_id)
        .collect();
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "in order: {delivered:?}");
    assert_eq!(delivered[0], tried[0]);
    worker.abort();
});
