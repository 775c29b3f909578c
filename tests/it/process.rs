//! The real binary as a child process: first-start keys, the demo seed, restarts over the
//! same database, what reaches the logs, SIGTERM draining, and a bad DATABASE_URL. These
//! cover what the in-process harness cannot: main(), argument and environment parsing,
//! stdout versus stderr, signals and exit codes.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::child::{
    ChildServer, Finished, Running, DEMO_DEV, DEMO_IDENTITY, DEMO_PROD, DEMO_ROOT, STOP_TIMEOUT,
};
use crate::support::{self, Backend, TestDb};

/// A server child and an HTTP client for it. Dropping it kills the process, so a failed
/// assertion never leaves one behind.
struct Server {
    child: Running,
    client: reqwest::Client,
}

impl Server {
    /// Starts the binary with `args` and `envs` over `database_url`, with trace logging,
    /// and waits until it is ready.
    fn start(database_url: &str, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let child = ChildServer::new(args).database_url(database_url).rust_log("trace").envs(envs).start();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        Server { child, client }
    }

    fn url(&self, path: &str) -> String {
        self.child.url(path)
    }

    /// SIGTERM, asserting a clean exit; everything the child printed.
    fn stop_ok(self) -> Finished {
        self.child.stop_ok()
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        support::split(req.send().await.expect("request")).await
    }

    async fn ping(&self, key: &str) -> (u16, Value) {
        self.send(self.client.get(self.url("/ping/v1")).query(&[("apiKey", key)])).await
    }

    async fn create(&self, key: &str, email: &str) -> Value {
        let (status, body) = self
            .send(
                self.client
                    .post(self.url("/api/v1/customer/create"))
                    .query(&[("apiKey", key)])
                    .json(&json!({ "email": email })),
            )
            .await;
        assert_eq!(status, 200, "create {email}: {body}");
        body
    }

    /// Seed 000, verbatim: a real key in the query next to a placeholder Bearer token.
    async fn seed_000(&self) -> (u16, Value) {
        let body = r#"{
"managerCuRefNo": "1cGIHvFoQDGLAbcA",
"customerCuRefNo": "5CmsaVNgAQqRqoen",
"customerEmail": "jan@barasek.com",
"notice": "Customer prefers cardio training. Contact obtained via the website."
}"#;
        let req = self
            .client
            .post(self.url("/api/v1/customer/customer-match-customer?apiKey=PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE"))
            .header("Content-Type", "application/json")
            .header("Authorization", "Bearer YOUR_API_KEY")
            .body(body);
        self.send(req).await
    }

    /// Seed 001, verbatim.
    async fn seed_001(&self) -> (u16, Value) {
        let body = r#"{
  "email": "jan@barasek.com",
  "companyName": "BizKitHub",
  "companyRegistrationNumber": "05103118",
  "taxIdentificationNumber": "CZ9609040727",
  "customerRealIp": "1.1.1.1"
}"#;
        let req = self
            .client
            .post(self.url("/api/v1/customer/create?apiKey=PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE"))
            .header("Content-Type", "application/json")
            .body(body);
        self.send(req).await
    }

    /// Seed 002, verbatim.
    async fn seed_002(&self) -> (u16, Value) {
        let req = self
            .client
            .get(self.url(
                "/api/v1/customer/detail?apiKey=PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE&identityId=Z9CPkS2o3UV163VQn5OUv0T8BQi8Fvdg&cuRefNo=1cGIHvFoQDGLAbcA&customerRealIp=1.1.1.1",
            ))
            .header("Content-Type", "application/json");
        self.send(req).await
    }
}

/// Seed 002's example response, as published.
fn seed_002_response() -> Value {
    json!({
      "loggedIn": true,
      "cuRefNo": "1cGIHvFoQDGLAbcA",
      "creditBalance": 123,
      "email": "jan@barasek.com",
      "phone": "+420 777123456",
      "firstName": "Jan",
      "lastName": "Barášek",
      "companyName": "BizKitHub",
      "premium": true,
      "ban": false,
      "groups": [
        {
          "name": "Personal Trainer",
          "slug": "trainer"
        }
      ],
      "meta": {},
      "referral": {
        "code": "1cGIHvFoQDGLAbcA",
        "email": "jan@barasek.com",
        "firstName": "Jan",
        "lastName": "Barášek"
      },
      "runningSubscriptionList": [
        {
          "externalId": "d9DfQL3ZF01t7Ykk",
          "productSlug": "predplatne-rocni",
          "productCode": "predplatne-rocni",
          "orderNumber": "25000001",
          "orderHash": "CuS08iXV3cOwweQsQB3TwYXtDr67K4kW",
          "autoRenew": true
        }
      ]
    })
}

/// `^(PROD|DEV_|ROOT)[A-Za-z0-9]{28}$`
fn is_key(s: &str) -> bool {
    s.len() == 32
        && ["PROD", "DEV_", "ROOT"].iter().any(|p| s.starts_with(p))
        && s[4..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Every key-shaped word on stdout.
fn printed_keys(stdout: &str) -> Vec<String> {
    stdout.lines().flat_map(str::split_whitespace).filter(|w| is_key(w)).map(str::to_owned).collect()
}

/// The one printed key with this prefix.
fn one_key(keys: &[String], prefix: &str) -> String {
    let found: Vec<_> = keys.iter().filter(|k| k.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "expected exactly one {prefix} key, got {found:?}");
    found[0].clone()
}

/// Reads the first-start keys from stdout; they are printed before the server listens.
fn first_start_keys(server: &Server) -> (String, String, String) {
    let stdout = server.child.stdout();
    let keys = printed_keys(&stdout);
    assert_eq!(keys.len(), 3, "expected three keys on stdout:\n{stdout}");
    (one_key(&keys, "PROD"), one_key(&keys, "DEV_"), one_key(&keys, "ROOT"))
}

/// A fresh database, or None (the PostgreSQL test then skips).
async fn fresh_db(backend: Backend) -> Option<TestDb> {
    let db = TestDb::new(backend).await;
    if db.is_none() {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
    }
    db
}

async fn first_start_prints_keys_once(backend: Backend) {
    let Some(db) = fresh_db(backend).await else { return };
    let server = Server::start(&db.url, &["serve"], &[]);
    let (prod, dev, root) = first_start_keys(&server);

    let (status, body) = server.ping(&prod).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["organisation"], "default", "{body}");
    assert_eq!(body["mode"], "live", "{body}");
    let (status, body) = server.ping(&dev).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["organisation"], "default", "{body}");
    assert_eq!(body["mode"], "sandbox", "{body}");

    let first = server.stop_ok();
    for key in [&prod, &dev, &root] {
        assert!(!first.stderr.contains(key.as_str()), "key {} reached the logs", &key[..8]);
    }
    assert_eq!(printed_keys(&first.stdout).len(), 3, "keys printed more than once:\n{}", first.stdout);

    let server = Server::start(&db.url, &["serve"], &[]);
    let (status, body) = server.ping(&prod).await;
    assert_eq!(status, 200, "first-start key lost on restart: {body}");
    assert_eq!(body["mode"], "live", "{body}");
    let second = server.stop_ok();
    assert!(printed_keys(&second.stdout).is_empty(), "keys printed again on restart:\n{}", second.stdout);
}
per_backend!(first_start_prints_keys_once, super::first_start_prints_keys_once);

/// Two instances started at the same moment on one empty database both come up; the
/// first-start keys are made, and printed, once.
async fn two_instances_start_at_once(backend: Backend) {
    let Some(db) = fresh_db(backend).await else { return };
    let starts: Vec<_> = (0..2)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || ChildServer::new(["serve"]).database_url(&url).start())
        })
        .collect();
    let servers: Vec<Running> = starts.into_iter().map(|s| s.join().expect("an instance came up")).collect();
    let printed: usize = servers.into_iter().map(|s| printed_keys(&s.stop_ok().stdout).len()).sum();
    assert_eq!(printed, 3, "one key of each kind, printed by one instance");
}
per_backend!(two_instances_start_at_once, super::two_instances_start_at_once);

async fn demo_is_idempotent_and_matches_seed_002(backend: Backend) {
    let Some(db) = fresh_db(backend).await else { return };
    let server = Server::start(&db.url, &["serve", "--demo"], &[]);

    let (status, body) = server.seed_002().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, seed_002_response());
    let (status, body) = server.seed_000().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "success": true }));
    let (status, body) = server.seed_001().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["newAccount"], false, "{body}");
    assert_eq!(body["cuRefNo"], "1cGIHvFoQDGLAbcA", "{body}");

    let first = server.stop_ok();
    assert!(
        first.stderr.lines().any(|l| l.contains("DEMO") && l.contains("WARN")),
        "no warning that the demo keys are public:\n{}",
        first.stderr
    );

    // The environment variable, not the flag, and over data that is already seeded.
    let server = Server::start(&db.url, &["serve"], &[("BIZKIT_DEMO", "1")]);
    let (status, body) = server.seed_002().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, seed_002_response(), "a second demo seed changed the customer");
    let (status, body) = server.seed_000().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "success": true }));
    let second = server.stop_ok();
    assert!(second.stderr.contains("DEMO"), "BIZKIT_DEMO=1 did not enable demo mode:\n{}", second.stderr);
}
per_backend!(demo_is_idempotent_and_matches_seed_002, super::demo_is_idempotent_and_matches_seed_002);

/// The public demo keys belong to organisation `demo` and reach nothing else; a start
/// without `--demo` disables them, a later `--demo` start enables them again.
async fn demo_keys_reach_demo_alone_and_only_under_demo(backend: Backend) {
    // Setup: a demo start on an empty database; the operator's own ROOT key
    let Some(db) = fresh_db(backend).await else { return };
    let server = Server::start(&db.url, &["serve", "--demo"], &[]);
    let (_, _, root) = first_start_keys(&server);
    let get = |key: &str, path: &str| server.client.get(server.url(path)).bearer_auth(key);
    let post = |key: &str, path: &str, body: Value| server.client.post(server.url(path)).bearer_auth(key).json(&body);
    let slugs = |body: &Value| -> Vec<String> {
        body["organisations"].as_array().unwrap().iter().map(|o| o["slug"].as_str().unwrap().to_owned()).collect()
    };
    let (status, body) =
        server.send(post(&root, "/admin/v1/organisations", json!({"slug": "opco", "name": "Opco"}))).await;
    assert_eq!(status, 200, "the operator creates an organisation: {body}");

    // Exec + Check: the demo keys work in `demo`, and only there
    let (status, body) = server.ping(DEMO_PROD).await;
    assert_eq!((status, body["organisation"].as_str()), (200, Some("demo")), "{body}");
    let (status, body) = server.send(get(DEMO_ROOT, "/admin/v1/organisations")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(slugs(&body), ["demo"], "the demo ROOT key sees its own organisation alone");
    let (_, body) = server.send(get(&root, "/admin/v1/organisations")).await;
    assert_eq!(slugs(&body), ["default", "demo", "opco"]);
    for (what, req) in [
        ("mint a key for opco", post(DEMO_ROOT, "/admin/v1/api-keys", json!({"organisation": "opco", "kind": "ROOT"}))),
        (
            "mint a key for default",
            post(DEMO_ROOT, "/admin/v1/api-keys", json!({"organisation": "default", "kind": "PROD"})),
        ),
        ("list opco's keys", get(DEMO_ROOT, "/admin/v1/api-keys?organisation=opco")),
        ("read default's audit", get(DEMO_ROOT, "/admin/v1/audit?organisation=default")),
        ("create an organisation", post(DEMO_ROOT, "/admin/v1/organisations", json!({"slug": "evil", "name": "Evil"}))),
    ] {
        let got = server.send(req).await;
        support::assert_error(&got, 403, "PUBLIC_API_KEY_FORBIDDEN");
        assert_eq!(got.0, 403, "the demo ROOT key may not {what}");
    }
    server.stop_ok();

    // Exec: a start without --demo disables the public keys, and says so
    let server = Server::start(&db.url, &["serve"], &[]);
    for key in [DEMO_PROD, DEMO_DEV, DEMO_ROOT] {
        let got = server.ping(key).await;
        support::assert_error(&got, 401, "PUBLIC_API_KEY_REVOKED");
    }
    assert_eq!(server.ping(&root).await.0, 200, "the operator's key is untouched");
    let stopped = server.stop_ok();
    assert!(stopped.stderr.contains("disabled the public demo keys"), "{}", stopped.stderr);

    // Exec + Check: --demo enables them again
    let server = Server::start(&db.url, &["serve", "--demo"], &[]);
    let (status, body) = server.ping(DEMO_PROD).await;
    assert_eq!((status, body["organisation"].as_str()), (200, Some("demo")), "{body}");
    server.stop_ok();
}
per_backend!(demo_keys_reach_demo_alone_and_only_under_demo, super::demo_keys_reach_demo_alone_and_only_under_demo);

/// A database where an older version left the public keys in the operator's `default` is
/// mended at its next start: `--demo` moves them to `demo`, a plain start disables them.
async fn demo_keys_left_in_default_are_moved_to_demo(backend: Backend) {
    // Setup: the keys where an older version put them
    let Some(db) = fresh_db(backend).await else { return };
    Server::start(&db.url, &["serve", "--demo"], &[]).stop_ok();
    let moved = db
        .execute(
            "update api_keys set organisation_id = (select id from organisations where slug = 'default') \
             where prefix in ('PRODPGrF', 'DEV_PGrF', 'ROOTPGrF')",
        )
        .await;
    assert_eq!(moved, 3);

    // Exec + Check: a demo start takes them back to `demo`
    let server = Server::start(&db.url, &["serve", "--demo"], &[]);
    let (status, body) = server.ping(DEMO_PROD).await;
    assert_eq!((status, body["organisation"].as_str()), (200, Some("demo")), "{body}");
    let (_, body) = server.send(server.client.get(server.url("/admin/v1/organisations")).bearer_auth(DEMO_ROOT)).await;
    assert_eq!(body["organisations"].as_array().map(Vec::len), Some(1), "{body}");
    server.stop_ok();
}
per_backend!(demo_keys_left_in_default_are_moved_to_demo, super::demo_keys_left_in_default_are_moved_to_demo);

async fn restart_persists_customers(backend: Backend) {
    let Some(db) = fresh_db(backend).await else { return };
    let server = Server::start(&db.url, &["serve"], &[]);
    let (prod, _, _) = first_start_keys(&server);
    let created = server.create(&prod, "persist@example.com").await;
    assert_eq!(created["newAccount"], true, "{created}");
    let cu_ref_no = created["cuRefNo"].as_str().expect("cuRefNo").to_owned();
    server.stop_ok();

    let server = Server::start(&db.url, &["serve"], &[]);
    let again = server.create(&prod, "persist@example.com").await;
    assert_eq!(again["newAccount"], false, "{again}");
    assert_eq!(again["cuRefNo"], cu_ref_no.as_str(), "{again}");
    let (status, body) = server
        .send(
            server
                .client
                .get(server.url("/api/v1/customer/customer-match-list"))
                .query(&[("apiKey", prod.as_str()), ("cuRefNo", cu_ref_no.as_str())]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server.stop_ok();
}
per_backend!(restart_persists_customers, super::restart_persists_customers);

async fn logs_never_show_secrets(backend: Backend) {
    let Some(db) = fresh_db(backend).await else { return };
    let server = Server::start(&db.url, &["serve", "--demo"], &[]);
    let bad_key = "PRODnoSuchKey0000000000000000000";
    assert!(is_key(bad_key));
    let detail = server.url("/api/v1/customer/detail");
    let create = server.url("/api/v1/customer/create");

    // The key in the query, in the body and as a Bearer token, on good and bad requests.
    let (status, body) = server.ping(DEMO_PROD).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.ping(DEMO_DEV).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.ping(DEMO_ROOT).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .send(server.client.post(&create).json(&json!({ "apiKey": DEMO_PROD, "email": "body-key@example.com" })))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .send(server.client.post(&create).bearer_auth(DEMO_DEV).json(&json!({ "email": "bearer-key@example.com" })))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .send(server.client.get(&detail).bearer_auth(DEMO_ROOT).query(&[
            ("identityId", DEMO_IDENTITY),
            ("cuRefNo", "1cGIHvFoQDGLAbcA"),
            ("customerRealIp", "1.1.1.1"),
        ]))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.seed_002().await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.ping(bad_key).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) =
        server.send(server.client.post(&create).json(&json!({ "apiKey": bad_key, "email": "x@example.com" }))).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = server.send(server.client.get(server.url("/ping/v1")).bearer_auth(bad_key)).await;
    assert_eq!(status, 401, "{body}");
    // A malformed body that echoes a secret back into an error path.
    let (status, body) = server
        .send(
            server
                .client
                .post(&create)
                .query(&[("apiKey", DEMO_PROD)])
                .header("Content-Type", "application/json")
                .body(format!("{{\"email\": \"{DEMO_IDENTITY}\", \"apiKey\": \"{bad_key}\"")),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // A storefront account: --demo confirms at once; a wrong and a right password.
    register_account(&server, DEMO_PROD).await;
    let identity = sign_in_and_out(&server, DEMO_PROD).await;

    let finished = server.stop_ok();
    let all = format!("{}\n{}", finished.stdout, finished.stderr);
    for secret in [DEMO_PROD, DEMO_DEV, DEMO_ROOT, bad_key, DEMO_IDENTITY, ACCOUNT_PASSWORD, WRONG_PASSWORD, &identity]
    {
        let line = all.lines().find(|l| l.contains(secret));
        assert!(line.is_none(), "{}… reached the output: {}", &secret[..8], line.unwrap_or_default());
    }

    // Not vacuous: trace logging really ran, as JSON, and logged the requests.
    assert!(!finished.stderr.trim().is_empty(), "nothing was logged");
    let mut request_lines = 0;
    for line in finished.stderr.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if entry["fields"]["message"] == "request" && entry["fields"]["path"] == "/api/v1/customer/detail" {
            request_lines += 1;
        }
    }
    assert!(request_lines >= 2, "no access-log lines for the detail requests:\n{}", finished.stderr);
}
per_backend!(logs_never_show_secrets, super::logs_never_show_secrets);

const ACCOUNT_PASSWORD: &str = "Sup3rSecretPass";
const WRONG_PASSWORD: &str = "Wr0ngSecretPass";
const ACCOUNT_EMAIL: &str = "logs@example.com";

fn account_request(server: &Server, key: &str, path: &str, body: Value) -> reqwest::RequestBuilder {
    server.client.post(server.url(path)).query(&[("apiKey", key)]).json(&body)
}

async fn register_account(server: &Server, key: &str) {
    let body = json!({ "email": ACCOUNT_EMAIL, "password": ACCOUNT_PASSWORD });
    let (status, body) = server.send(account_request(server, key, "/contact/v1/register-account", body)).await;
    assert_eq!((status, &body["success"]), (200, &json!(true)), "{body}");
}

/// Fails a login, logs in, reads the account and logs out; returns the identityId.
async fn sign_in_and_out(server: &Server, key: &str) -> String {
    let login = |password: &str| {
        account_request(server, key, "/contact/v1/login", json!({ "email": ACCOUNT_EMAIL, "password": password }))
    };
    let (_, body) = server.send(login(WRONG_PASSWORD)).await;
    assert_eq!(body["errorCode"], "E004", "{body}");
    let (_, body) = server.send(login(ACCOUNT_PASSWORD)).await;
    let identity = body["identityId"].as_str().unwrap_or_else(|| panic!("no identityId: {body}")).to_owned();
    let info = server
        .client
        .get(server.url("/contact/v1/get-account-info"))
        .query(&[("apiKey", key), ("identityId", &identity)]);
    assert_eq!(server.send(info).await.1["loggedIn"], true);
    let (status, _) =
        server.send(account_request(server, key, "/contact/v1/logout", json!({ "identityId": identity }))).await;
    assert_eq!(status, 200);
    identity
}

/// In production mode the server says a confirmation was queued, never its token.
async fn confirmation_token_stays_out_of_logs(backend: Backend) {
    let Some(db) = fresh_db(backend).await else { return };
    let server = Server::start(&db.url, &["serve"], &[]);
    let (prod, _, _) = first_start_keys(&server);
    register_account(&server, &prod).await;
    let store = bizkit_mirror::store::connect(&db.url, &Default::default()).await.expect("open the store");
    let space = store.space_of("default", bizkit_mirror::store::Mode::Live).await.expect("live space");
    let message = db.latest_outbox_message(space, ACCOUNT_EMAIL).await.expect("a queued message");
    let (_, rest) = message.body.split_once("token=").expect("a link with the token");
    let token: String = rest.chars().take_while(char::is_ascii_alphanumeric).collect();
    assert_eq!(token.len(), 32, "{token}");
    let confirm = server
        .client
        .get(server.url("/contact/v1/confirm-account"))
        .query(&[("apiKey", prod.as_str()), ("token", &token)]);
    assert_eq!(server.send(confirm).await.0, 200);
    let identity = sign_in_and_out(&server, &prod).await;

    let finished = server.stop_ok();
    let all = format!("{}\n{}", finished.stdout, finished.stderr);
    for value in [token.as_str(), ACCOUNT_PASSWORD, WRONG_PASSWORD, &identity] {
        let line = all.lines().find(|l| l.contains(value));
        assert!(line.is_none(), "{}… reached the output: {}", &value[..8], line.unwrap_or_default());
    }
    assert!(finished.stderr.contains("message queued"), "the queued message is not logged:\n{}", finished.stderr);
}
per_backend!(confirmation_token_stays_out_of_logs, super::confirmation_token_stays_out_of_logs);

/// Holds a request open (headers sent, body not yet complete) across SIGTERM: the server
/// must stop accepting, but still answer it before exiting 0.
async fn sigterm_drains_in_flight(backend: Backend) {
    let Some(db) = fresh_db(backend).await else { return };
    let mut server = Server::start(&db.url, &["serve", "--demo"], &[]);
    let addr = server.child.addr;

    let body = br#"{"email": "drain@example.com"}"#;
    let (head, tail) = body.split_at(10);
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        stream,
        "POST /api/v1/customer/create?apiKey={DEMO_PROD} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        addr,
        body.len()
    )
    .unwrap();
    stream.write_all(head).unwrap();
    stream.flush().unwrap();
    // Connections are accepted in order, so once a later request is answered this one
    // has been accepted too; the pause lets its connection task read the headers.
    let (status, _) = server.send(server.client.get(server.url("/healthz"))).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.child.sigterm();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.child.stderr().contains("shutdown requested") {
        assert!(Instant::now() < deadline, "SIGTERM not noticed:\n{}", server.child.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // New connections are refused while the old one is still being served.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting connections after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.child.exited().is_none(), "exited with a request in flight");

    stream.write_all(tail).unwrap();
    stream.flush().unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "in-flight request not answered:\n{response}");
    assert!(response.contains("\"newAccount\":true"), "{response}");

    let status = server.child.wait_exit(STOP_TIMEOUT).expect("exit after draining");
    assert!(status.success(), "exit status {status:?}; stderr:\n{}", server.child.stderr());
}
per_backend!(sigterm_drains_in_flight, super::sigterm_drains_in_flight);

/// Not a database backend at all: the server must refuse it at once and say which
/// setting is wrong, instead of serving or hanging.
#[test]
fn bad_database_url_fails_cleanly() {
    let finished = ChildServer::new(["serve"])
        .database_url("mysql://x")
        .env("BIND", "127.0.0.1:0")
        .json_logs()
        .timeout(Duration::from_secs(10))
        .run();
    let stderr = &finished.stderr;
    assert!(!finished.status.success(), "exit status {:?}; stderr:\n{stderr}", finished.status);
    assert!(stderr.contains("DATABASE_URL"), "stderr does not name DATABASE_URL:\n{stderr}");
}

/// A statement stuck behind a lock is cancelled at the statement timeout: the request is
/// a 503, and the server serves again once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_statement_is_a_503_postgres() {
    use sqlx::Connection;
    let Some(db) = fresh_db(Backend::Postgres).await else { return };
    let server = Server::start(&db.url, &["serve", "--demo"], &[("DATABASE_STATEMENT_TIMEOUT", "1")]);
    let create = |email: &str| {
        server
            .client
            .post(server.url("/api/v1/customer/create"))
            .bearer_auth(DEMO_PROD)
            .json(&json!({ "email": email }))
    };
    assert_eq!(server.send(create("before@example.com")).await.0, 200);

    // Setup: another session holds the customers table
    let mut holder = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("begin").execute(&mut holder).await.unwrap();
    sqlx::query("lock table customers in access exclusive mode").execute(&mut holder).await.unwrap();

    // Exec + Check: answered 503 within the timeout, not hung
    let started = Instant::now();
    let got = server.send(create("blocked@example.com")).await;
    support::assert_error(&got, 503, "SERVICE_UNAVAILABLE");
    assert!(started.elapsed() < Duration::from_secs(8), "answered after {:?}", started.elapsed());

    // Check: served again once the lock is released
    sqlx::query("rollback").execute(&mut holder).await.unwrap();
    assert_eq!(server.send(create("after@example.com")).await.0, 200);
    server.stop_ok();
}
