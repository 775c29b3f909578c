//! Storefront accounts end to end, on every backend: register, confirm, login, account
//! info, logout, their documented error codes, throttling, bans and sessions.

use std::time::{Duration, Instant};

use bizkit_mirror::accounts::AccountSettings;
use bizkit_mirror::store::{Mode, SpaceId};
use serde_json::{json, Value};

use crate::support::{self, assert_error, TestApp};

const REGISTER: &str = "/contact/v1/register-account";
const CONFIRM: &str = "/contact/v1/confirm-account";
const LOGIN: &str = "/contact/v1/login";
const INFO: &str = "/contact/v1/get-account-info";
const LOGOUT: &str = "/contact/v1/logout";
const DETAIL: &str = "/api/v1/customer/detail";
const PASSWORD: &str = "Correct1Horse";

/// Declares one test per backend over an app with these account settings.
macro_rules! accounts_test {
    ($name:ident, $settings:expr, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($app: TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(support::spawn_app_with_accounts(support::Backend::Sqlite, $settings).await.unwrap()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match support::spawn_app_with_accounts(support::Backend::Postgres, $settings).await {
                    Some(app) => run(app).await,
                    None => eprintln!("skipped: TEST_DATABASE_URL is not set"),
                }
            }
        }
    };
}

fn auto_confirm() -> AccountSettings {
    AccountSettings { auto_confirm: true, ..AccountSettings::default() }
}

async fn live(app: &TestApp) -> SpaceId {
    app.store.space_of("acme", Mode::Live).await.expect("live space")
}

async fn register(app: &TestApp, email: &str, password: &str) -> Value {
    let (status, body) = app.post(REGISTER, &app.keys.prod, json!({ "email": email, "password": password })).await;
    assert_eq!(status, 200, "register {email}: {body}");
    body
}

async fn login(app: &TestApp, key: &str, email: &str, password: &str) -> Value {
    let (status, body) = app.post(LOGIN, key, json!({ "email": email, "password": password })).await;
    assert_eq!(status, 200, "login {email}: {body}");
    body
}

/// Logs in with the prod key and returns the identityId.
async fn session(app: &TestApp, email: &str, password: &str) -> String {
    let body = login(app, &app.keys.prod, email, password).await;
    assert_eq!(body["success"], true, "{body}");
    body["identityId"].as_str().expect("identityId").to_owned()
}

/// The token in the newest confirmation message queued for `email`.
async fn outbox_token(app: &TestApp, email: &str) -> String {
    let message = app.db.latest_outbox_message(live(app).await, email).await.expect("a queued message");
    assert_eq!(message.kind, "account-confirmation");
    assert!(message.sent_at.is_none());
    let (_, rest) = message.body.split_once("/contact/v1/confirm-account?token=").expect("a confirmation link");
    rest.chars().take_while(char::is_ascii_alphanumeric).collect()
}

/// Sets or lifts a customer's ban through the API, as the shop's back office would.
async fn set_ban(app: &TestApp, cu: &str, ban: bool) {
    let (status, body) =
        app.post("/api/v1/customer/create-or-update", &app.keys.prod, json!({ "cuRefNo": cu, "ban": ban })).await;
    assert_eq!(status, 200, "ban {cu}: {body}");
    assert_eq!(body["ban"], ban, "{body}");
}

async fn confirm(app: &TestApp, token: &str) -> (u16, Value) {
    app.get(CONFIRM, &app.keys.prod, &[("token", token)]).await
}

async fn info(app: &TestApp, key: &str, identity: &str) -> Value {
    let (status, body) = app.get(INFO, key, &[("identityId", identity)]).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn detail_logged_in(app: &TestApp, identity: &str, cu: &str) -> bool {
    let (status, body) = app.get(DETAIL, &app.keys.prod, &[("identityId", identity), ("cuRefNo", cu)]).await;
    assert_eq!(status, 200, "{body}");
    body["loggedIn"].as_bool().expect("loggedIn")
}

#[track_caller]
fn assert_refused(body: &Value, code: &str) {
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["errorCode"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(3), "exactly success, errorCode, message: {body}");
}

backend_test!(register_confirm_login_and_account_info, |app| {
    // Exec: register, then try to log in before confirming
    let email = "shopper@example.com";
    assert_eq!(register(&app, email, PASSWORD).await, json!({ "success": true }));
    assert_refused(&login(&app, &app.keys.prod, email, PASSWORD).await, "E007");
    assert_refused(&login(&app, &app.keys.prod, email, "Wrong1Password").await, "E004");

    // Confirm with the token from the outbox; it works once
    let token = outbox_token(&app, email).await;
    assert_eq!(token.len(), 32, "{token}");
    assert_eq!(confirm(&app, &token).await, (200, json!({ "success": true })));
    let again = confirm(&app, &token).await;
    assert_error(&again, 400, "INVALID_REQUEST");
    assert_eq!(again.1["error"]["field"], "token");
    assert_error(&confirm(&app, "tooShort").await, 400, "INVALID_REQUEST");

    // Login, through the alias too; each login is its own session
    let identity = session(&app, email, PASSWORD).await;
    assert!(identity.len() == 32 && identity.chars().all(|c| c.is_ascii_alphanumeric()), "{identity}");
    let alias =
        app.post("/api/v1/customer/login", &app.keys.prod, json!({ "email": email, "password": PASSWORD })).await;
    assert_eq!(alias.1["success"], true, "{}", alias.1);
    assert_ne!(alias.1["identityId"], identity.as_str());

    // Check: account info and detail read the session
    let got = info(&app, &app.keys.prod, &identity).await;
    assert_eq!(got["loggedIn"], true, "{got}");
    assert_eq!(got["identityId"], identity.as_str());
    assert_eq!(got["email"], email);
    assert_eq!(got["creditBalance"], 0);
    let keys: Vec<&str> = got.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "loggedIn",
            "identityId",
            "cuRefNo",
            "creditBalance",
            "email",
            "phone",
            "firstName",
            "lastName",
            "companyName",
            "premium",
            "ban"
        ]
    );
    let cu = got["cuRefNo"].as_str().unwrap().to_owned();
    assert!(detail_logged_in(&app, &identity, &cu).await);
    let (_, aliased) = app.get("/api/v1/customer/get-account-info", &app.keys.prod, &[("identityId", &identity)]).await;
    assert_eq!(aliased["cuRefNo"], cu.as_str());

    // A registered, confirmed address cannot register again, in any spelling
    assert_refused(&register(&app, "Shopper@Example.com", "Other1Password").await, "E002");
    assert_eq!(app.create(&app.keys.prod, email).await["cuRefNo"], cu.as_str(), "still one customer");
});

backend_test!(guests_become_registered_keeping_cu_ref_no_and_relations, |app| {
    // Setup: a manager made by create, and a client made by a match by e-mail
    let key = &app.keys.prod;
    let manager = app.create(key, "trainer@example.com").await["cuRefNo"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(
            "/api/v1/customer/customer-match-customer",
            key,
            json!({ "managerCuRefNo": manager, "customerEmail": "client@example.com", "notice": "Mondays" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let client = app.create(key, "client@example.com").await["cuRefNo"].as_str().unwrap().to_owned();

    // Exec: both register, with names
    for (email, cu) in [("trainer@example.com", &manager), ("client@example.com", &client)] {
        let (status, body) = app
            .post(
                REGISTER,
                key,
                json!({ "email": email, "password": PASSWORD, "name": "  jana   nováková ", "companyName": "Gym" }),
            )
            .await;
        assert_eq!((status, &body), (200, &json!({ "success": true })));
        let token = outbox_token(&app, email).await;
        assert_eq!(confirm(&app, &token).await.0, 200);
        let got = info(&app, key, &session(&app, email, PASSWORD).await).await;
        // Check: the same customer, its names filled in
        assert_eq!(got["cuRefNo"], cu.as_str(), "the guest keeps its cuRefNo");
        assert_eq!((got["firstName"].as_str(), got["lastName"].as_str()), (Some("Jana"), Some("Nováková")));
        assert_eq!(got["companyName"], "Gym");
    }
    let (status, list) = app.get("/api/v1/customer/customer-match-list", key, &[("cuRefNo", &manager)]).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["customers"][0]["cuRefNo"], client.as_str(), "the relation survives: {list}");
    assert_eq!(list["customers"][0]["notice"], "Mondays");

    // A new address is a new customer
    register(&app, "newcomer@example.com", PASSWORD).await;
    let token = outbox_token(&app, "newcomer@example.com").await;
    confirm(&app, &token).await;
    let got = info(&app, key, &session(&app, "newcomer@example.com", PASSWORD).await).await;
    assert!(got["cuRefNo"] != manager.as_str() && got["cuRefNo"] != client.as_str(), "{got}");
});

backend_test!(bad_input_is_refused_with_the_envelope, |app| {
    let key = &app.keys.prod;
    let long = format!("Aa1{}", "x".repeat(1022));
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (json!({ "email": "a@example.com", "password": "Short1" }), 400, "WEAK_PASSWORD", "password"),
        (json!({ "email": "a@example.com", "password": "alllowercase1" }), 400, "WEAK_PASSWORD", "password"),
        (json!({ "email": "a@example.com", "password": "ALLUPPERCASE1" }), 400, "WEAK_PASSWORD", "password"),
        (json!({ "email": "a@example.com", "password": "NoDigitsHere" }), 400, "WEAK_PASSWORD", "password"),
        (json!({ "email": "a@example.com", "password": long }), 400, "VALUE_TOO_LONG", "password"),
        (json!({ "email": "a@example.com" }), 400, "INVALID_REQUEST", "password"),
        (json!({ "email": "a@example.com", "password": 12345678 }), 400, "INVALID_REQUEST", "password"),
        (json!({ "password": PASSWORD }), 400, "INVALID_REQUEST", "email"),
        (json!({ "email": "not-an-address", "password": PASSWORD }), 400, "INVALID_EMAIL", "email"),
        (
            json!({ "email": "a@example.com", "password": PASSWORD, "firstName": "x".repeat(101) }),
            400,
            "VALUE_TOO_LONG",
            "firstName",
        ),
        (
            json!({ "email": "a@example.com", "password": PASSWORD, "customerRealIp": "1.2.3" }),
            400,
            "INVALID_IP_ADDRESS",
            "customerRealIp",
        ),
    ];
    for (body, status, code, field) in cases {
        let got = app.post(REGISTER, key, body.clone()).await;
        assert_error(&got, status, code);
        assert_eq!(got.1["error"]["field"], field, "{body}");
    }
    // None of them counted as an attempt or left anything behind
    assert_eq!(register(&app, "a@example.com", PASSWORD).await["success"], true);

    assert_error(&app.post(LOGIN, key, json!({ "email": "a@example.com" })).await, 400, "INVALID_REQUEST");
    assert_error(&app.post(LOGIN, key, json!({ "email": "@", "password": "x" })).await, 400, "INVALID_EMAIL");
    assert_error(&app.get(INFO, key, &[("identityId", "short")]).await, 400, "INVALID_IDENTITY_ID");
    assert_error(&app.get(INFO, key, &[]).await, 400, "INVALID_REQUEST");
    assert_error(&app.post(LOGOUT, key, json!({ "identityId": "short" })).await, 400, "INVALID_IDENTITY_ID");
    assert_error(&app.get(CONFIRM, key, &[]).await, 400, "INVALID_REQUEST");
    assert_error(
        &app.post(LOGIN, "", json!({ "email": "a@example.com", "password": "x" })).await,
        401,
        "PUBLIC_API_KEY_DOES_NOT_EXIST",
    );
});

backend_test!(register_refusals_e002_e003_e004, |app| {
    let key = &app.keys.prod;
    // E004: a second attempt for one address within 10 minutes, however it is spelled
    assert_eq!(register(&app, "jane.doe@gmail.com", PASSWORD).await["success"], true);
    assert_refused(&register(&app, "JaneDoe+x@googlemail.com", PASSWORD).await, "E004");
    // …while another address registers
    assert_eq!(register(&app, "other@example.com", PASSWORD).await["success"], true);

    // E003: a banned guest
    let banned = app.create(key, "banned@example.com").await["cuRefNo"].as_str().unwrap().to_owned();
    set_ban(&app, &banned, true).await;
    assert_refused(&register(&app, "banned@example.com", PASSWORD).await, "E003");

    // E002: registered and confirmed
    let token = outbox_token(&app, "other@example.com").await;
    confirm(&app, &token).await;
    assert_refused(&register(&app, "other@example.com", PASSWORD).await, "E002");
});

accounts_test!(
    unconfirmed_registration_cannot_be_taken_over,
    AccountSettings {
        register_retry: chrono::TimeDelta::seconds(1),
        confirm_token_lifetime: chrono::TimeDelta::seconds(3),
        ..AccountSettings::default()
    },
    |app| {
        // Setup: the owner registers first
        let email = "twice@example.com";
        register(&app, email, PASSWORD).await;
        let first = outbox_token(&app, email).await;
        assert_refused(&register(&app, email, "Second2Password").await, "E004");
        tokio::time::sleep(Duration::from_millis(1100)).await;

        // Exec: someone registers the address again while the first token lives
        assert_eq!(register(&app, email, "Second2Password").await["success"], true);
        let second = outbox_token(&app, email).await;

        // Check: the confirmation went out again, and either link confirms the first
        // password only
        assert_ne!(first, second);
        assert_eq!(confirm(&app, &second).await.0, 200);
        assert_refused(&login(&app, &app.keys.prod, email, "Second2Password").await, "E004");
        assert_eq!(login(&app, &app.keys.prod, email, PASSWORD).await["success"], true);
    }
);

accounts_test!(
    an_unconfirmed_registration_whose_tokens_expired_may_register_anew,
    AccountSettings {
        register_retry: chrono::TimeDelta::seconds(1),
        confirm_token_lifetime: chrono::TimeDelta::seconds(1),
        ..AccountSettings::default()
    },
    |app| {
        let email = "lapsed@example.com";
        register(&app, email, PASSWORD).await;
        let first = outbox_token(&app, email).await;
        tokio::time::sleep(Duration::from_millis(1200)).await;

        // Exec: the first token has expired unused
        assert_eq!(register(&app, email, "Second2Password").await["success"], true);

        // Check: the new password and its token; the old token confirms nothing
        let second = outbox_token(&app, email).await;
        assert_error(&confirm(&app, &first).await, 400, "INVALID_REQUEST");
        assert_eq!(confirm(&app, &second).await.0, 200);
        assert_eq!(login(&app, &app.keys.prod, email, "Second2Password").await["success"], true);
    }
);

/// Logs in as the storefront's backend does for a user at `client`.
async fn login_from(app: &TestApp, email: &str, password: &str, client: &str) -> Value {
    let body = json!({ "email": email, "password": password, "customerRealIp": client });
    let (status, body) = app.post(LOGIN, &app.keys.prod, body).await;
    assert_eq!(status, 200, "login {email}: {body}");
    body
}

accounts_test!(a_strangers_failures_never_lock_the_owner_out, auto_confirm(), |app| {
    // Setup
    let (owner_at, stranger_at) = ("198.51.100.2", "203.0.113.7");
    register(&app, "owner@example.com", PASSWORD).await;

    // Exec: a stranger guesses, past the limit
    for _ in 0..5 {
        assert_refused(&login_from(&app, "owner@example.com", "Guess1Password", stranger_at).await, "E004");
    }
    for _ in 0..3 {
        assert_refused(&login_from(&app, "owner@example.com", "Guess1Password", stranger_at).await, "E006");
    }

    // Check: the stranger's address is throttled, even with the right password; the
    // owner, elsewhere, signs in
    assert_refused(&login_from(&app, "owner@example.com", PASSWORD, stranger_at).await, "E006");
    assert_eq!(login_from(&app, "owner@example.com", PASSWORD, owner_at).await["success"], true);
});

accounts_test!(
    spraying_many_accounts_from_one_address_is_throttled,
    AccountSettings { auto_confirm: true, login_max_failures_per_client: 6, ..AccountSettings::default() },
    |app| {
        // Setup: three accounts
        let accounts = ["spray1@example.com", "spray2@example.com", "spray3@example.com"];
        for email in accounts {
            register(&app, email, PASSWORD).await;
        }
        let sprayer = "203.0.113.9";

        // Exec: two guesses per account from one address, under each account's own limit
        for email in accounts {
            for _ in 0..2 {
                assert_refused(&login_from(&app, email, "Guess1Password", sprayer).await, "E004");
            }
        }

        // Check: the address is throttled across accounts; the owners elsewhere are not
        assert_refused(&login_from(&app, accounts[0], PASSWORD, sprayer).await, "E006");
        for email in accounts {
            assert_eq!(login_from(&app, email, PASSWORD, "198.51.100.3").await["success"], true);
        }
    }
);

accounts_test!(login_refusals_e002_to_e006, auto_confirm(), |app| {
    let key = &app.keys.prod;
    // E002: no such address; E003: a guest without a password
    assert_refused(&login(&app, key, "nobody@example.com", PASSWORD).await, "E002");
    app.create(key, "guest@example.com").await;
    assert_refused(&login(&app, key, "guest@example.com", PASSWORD).await, "E003");

    // E004 five times, then E006 even with the right password; another address is not affected
    register(&app, "victim@example.com", PASSWORD).await;
    register(&app, "bystander@example.com", PASSWORD).await;
    for _ in 0..5 {
        assert_refused(&login(&app, key, "victim@example.com", "Guess1Password").await, "E004");
    }
    assert_refused(&login(&app, key, "victim@example.com", PASSWORD).await, "E006");
    assert_refused(&login(&app, key, "Victim@Example.com", "Guess1Password").await, "E006");
    assert_eq!(login(&app, key, "bystander@example.com", PASSWORD).await["success"], true);

    // A correct password clears earlier failures
    for _ in 0..4 {
        assert_refused(&login(&app, key, "bystander@example.com", "Guess1Password").await, "E004");
    }
    assert_eq!(login(&app, key, "bystander@example.com", PASSWORD).await["success"], true);
    for _ in 0..4 {
        assert_refused(&login(&app, key, "bystander@example.com", "Guess1Password").await, "E004");
    }
    assert_eq!(login(&app, key, "bystander@example.com", PASSWORD).await["success"], true);

    // E005: banned
    register(&app, "rogue@example.com", PASSWORD).await;
    let cu = info(&app, key, &session(&app, "rogue@example.com", PASSWORD).await).await["cuRefNo"]
        .as_str()
        .unwrap()
        .to_owned();
    set_ban(&app, &cu, true).await;
    assert_refused(&login(&app, key, "rogue@example.com", PASSWORD).await, "E005");
});

accounts_test!(logout_ends_the_session_at_once, auto_confirm(), |app| {
    let key = &app.keys.prod;
    register(&app, "leaving@example.com", PASSWORD).await;
    let identity = session(&app, "leaving@example.com", PASSWORD).await;
    let other = session(&app, "leaving@example.com", PASSWORD).await;
    let cu = info(&app, key, &identity).await["cuRefNo"].as_str().unwrap().to_owned();

    let (status, body) = app.post(LOGOUT, key, json!({ "identityId": identity })).await;
    assert_eq!((status, body), (200, json!({ "success": true })));
    assert_eq!(info(&app, key, &identity).await, json!({ "loggedIn": false }));
    assert!(!detail_logged_in(&app, &identity, &cu).await);
    // Idempotent, and the other session lives on
    let (status, body) = app.post("/api/v1/customer/logout", key, json!({ "identityId": identity })).await;
    assert_eq!((status, body), (200, json!({ "success": true })));
    assert!(detail_logged_in(&app, &other, &cu).await);
});

accounts_test!(ban_ends_every_session, auto_confirm(), |app| {
    let key = &app.keys.prod;
    register(&app, "twosessions@example.com", PASSWORD).await;
    let a = session(&app, "twosessions@example.com", PASSWORD).await;
    let b = session(&app, "twosessions@example.com", PASSWORD).await;
    let cu = info(&app, key, &a).await["cuRefNo"].as_str().unwrap().to_owned();
    assert!(detail_logged_in(&app, &b, &cu).await);

    set_ban(&app, &cu, true).await;
    for identity in [&a, &b] {
        assert_eq!(info(&app, key, identity).await, json!({ "loggedIn": false }));
        assert!(!detail_logged_in(&app, identity, &cu).await);
    }
    // Lifting the ban does not bring the sessions back
    set_ban(&app, &cu, false).await;
    assert_eq!(info(&app, key, &a).await, json!({ "loggedIn": false }));
    assert_eq!(login(&app, key, "twosessions@example.com", PASSWORD).await["success"], true);
});

accounts_test!(sandbox_key_cannot_reach_live_accounts, auto_confirm(), |app| {
    register(&app, "live@example.com", PASSWORD).await;
    let identity = session(&app, "live@example.com", PASSWORD).await;
    assert_refused(&login(&app, &app.keys.dev, "live@example.com", PASSWORD).await, "E002");
    assert_eq!(info(&app, &app.keys.dev, &identity).await, json!({ "loggedIn": false }));
    let (status, body) = app.post(LOGOUT, &app.keys.dev, json!({ "identityId": identity })).await;
    assert_eq!((status, body), (200, json!({ "success": true })));
    assert_eq!(
        info(&app, &app.keys.prod, &identity).await["loggedIn"],
        true,
        "a sandbox logout cannot end a live session"
    );
});

/// E001, the failure a user cannot fix: the database is gone (PostgreSQL lets a test
/// take it away). Domain calls answer E001; the session reads answer 503 as elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_e001_postgres() {
    let Some(app) = support::spawn_app_with_accounts(support::Backend::Postgres, auto_confirm()).await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    register(&app, "outage@example.com", PASSWORD).await;
    let outage = support::Outage::start(&app).await;

    assert_refused(&register(&app, "during@example.com", PASSWORD).await, "E001");
    assert_refused(&login(&app, &app.keys.prod, "outage@example.com", PASSWORD).await, "E001");
    assert_error(&app.get(INFO, &app.keys.prod, &[("identityId", &"A".repeat(32))]).await, 503, "SERVICE_UNAVAILABLE");

    outage.end().await;
    assert_eq!(login(&app, &app.keys.prod, "outage@example.com", PASSWORD).await["success"], true);
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn detail_latencies(app: &TestApp, cu: &str, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let (status, _) = app.get(DETAIL, &app.keys.prod, &[("identityId", &"A".repeat(32)), ("cuRefNo", cu)]).await;
        times.push(started.elapsed());
        assert_eq!(status, 200);
    }
    times.sort();
    times
}

/// Hashing runs on the blocking pool behind a semaphore, so 50 logins in flight leave
/// other requests' latency nearly untouched. Prints the numbers; asserts a bound that
/// only a stalled runtime would break.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_latency_while_50_logins_run_sqlite() {
    let app = support::spawn_app_with_accounts(support::Backend::Sqlite, auto_confirm()).await.unwrap();
    let cu = app.create(&app.keys.prod, "reader@example.com").await["cuRefNo"].as_str().unwrap().to_owned();
    let emails: Vec<String> = (0..50).map(|i| format!("burst{i}@example.com")).collect();
    futures::future::join_all(emails.iter().map(|e| register(&app, e, PASSWORD))).await;

    let quiet = detail_latencies(&app, &cu, 50).await;
    let logins = futures::future::join_all(emails.iter().map(|e| login(&app, &app.keys.prod, e, PASSWORD)));
    let started = Instant::now();
    let (busy, results) = tokio::join!(detail_latencies(&app, &cu, 50), logins);
    let logins_took = started.elapsed();
    assert!(results.iter().all(|r| r["success"] == true), "every login succeeds");

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "detail latency without logins: p50 {:.2} ms, p99 {:.2} ms; with 50 logins in flight: p50 {:.2} ms, p99 {:.2} ms \
         (the 50 logins took {:.0} ms on {} cores)",
        ms(percentile(&quiet, 0.5)),
        ms(percentile(&quiet, 0.99)),
        ms(percentile(&busy, 0.5)),
        ms(percentile(&busy, 0.99)),
        ms(logins_took),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    assert!(percentile(&busy, 0.99) < Duration::from_secs(1), "detail stalled while logins ran");
}
