//! The contract checked by third-party tools: `openapi.yaml` is a valid OpenAPI document
//! (openapi-spec-validator), and the real binary, serving the demo data on each backend,
//! answers what the document says to generated requests (schemathesis): no 5xx, only
//! documented statuses, headers and content types, and bodies that fit their schemas.
//!
//! The tools are Python programs (`.ci/run` installs pinned versions into a virtualenv).
//! When they are not on PATH the tests skip with a message, unless REQUIRE_TOOLS=1.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Backend, TestDb};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_bizkit-mirror");
const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/contract/schemathesis.toml");
const HOOKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/contract/hooks.py");
const DEMO_PROD: &str = "PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE";
const DEMO_ROOT: &str = "ROOTPGrFxpGEtrOZfuWhnoJohUYBXuOE";

/// Generated cases per operation and phase; with the coverage phase's own cases this comes
/// to about 3,000 requests per backend, a couple of minutes on two cores.
const MAX_EXAMPLES: &str = "50";
/// A pass that has not finished by then is killed and fails.
const PASS_TIMEOUT: Duration = Duration::from_secs(600);
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// The tool's path on PATH; None (the test skips) when absent, a panic under REQUIRE_TOOLS=1.
fn tool(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found =
        std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("REQUIRE_TOOLS").as_deref() != Ok("1"),
            "REQUIRE_TOOLS=1 but none of {names:?} is on PATH (see .ci/run)"
        );
        eprintln!("skipped: none of {names:?} is on PATH; install it as .ci/run does (REQUIRE_TOOLS=1 fails instead)");
    }
    found
}

/// Runs a child to completion within `timeout`, its output going to `log`; None on timeout.
fn run_bounded(mut cmd: Command, log: &Path, timeout: Duration) -> (Option<std::process::ExitStatus>, String) {
    let out = File::create(log).expect("create log");
    let err = out.try_clone().expect("clone log");
    let mut child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().expect("spawn tool");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

#[test]
fn spec_passes_openapi_spec_validator() {
    // Setup
    let Some(validator) = tool(&["openapi-spec-validator"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(validator);
    cmd.arg(SPEC);

    // Exec
    let (status, output) = run_bounded(cmd, &dir.path().join("validator.log"), Duration::from_secs(120));

    // Check
    println!("{output}");
    assert!(status.is_some_and(|s| s.success()), "openapi-spec-validator rejected openapi.yaml:\n{output}");
}

/// The server binary with the demo data; killed when dropped.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(database_url: &str, dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let log = dir.join("server.log");
        let out = File::create(&log).unwrap();
        // Limits high enough that no generated case meets a 429: the pass checks what the
        // operations answer, not the limiter (the ratelimit module does that).
        let huge = "4000000000";
        let child = Command::new(BIN)
            .args(["serve", "--demo"])
            .env_clear()
            .envs([("DATABASE_URL", database_url), ("BIND", &format!("127.0.0.1:{port}")), ("RUST_LOG", "warn")])
            .envs(["PROD", "DEV"].iter().flat_map(|k| {
                let limit = |what| (format!("RATE_LIMIT_{k}_{what}"), huge.to_owned());
                [limit("PER_HOUR"), limit("BURST")]
            }))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn bizkit-mirror");
        let mut server = Server { child, base, log };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = client.get(format!("{}/readyz", server.base)).send().await {
                if res.status() == 200 {
                    return server;
                }
            }
            let exited = server.child.try_wait().unwrap().is_some();
            assert!(!exited && Instant::now() < deadline, "server not ready:\n{}", server.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A new ROOT key of organisation `default`, for a pass that may revoke the key it uses.
    async fn new_root_key(&self) -> String {
        let res = reqwest::Client::new()
            .post(format!("{}/admin/v1/api-keys", self.base))
            .bearer_auth(DEMO_ROOT)
            .json(&json!({"kind": "ROOT", "label": "contract: revoke pass"}))
            .send()
            .await
            .expect("create key");
        assert_eq!(res.status(), 200, "creating the revoke pass's key");
        let body: Value = res.json().await.unwrap();
        body["key"].as_str().expect("the new key").to_owned()
    }
}

/// One schemathesis pass over the operations `filter` selects, with `key`; returns the
/// number of generated cases, failing the test on a non-zero exit.
fn schemathesis(st: &Path, server: &Server, dir: &Path, name: &str, key: &str, filter: &[&str]) -> u64 {
    let mut cmd = Command::new(st);
    cmd.current_dir(dir)
        .env("CONTRACT_API_KEY", key)
        .env("CONTRACT_HOOKS", HOOKS)
        .args(["--config-file", CONFIG, "run", SPEC, "--url", &server.base, "--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES, "--generation-database", "none", "--no-color"])
        // One worker: CPython 3.11's parser is not thread-safe under schemathesis' worker
        // threads ("AST constructor recursion depth mismatch").
        .args(["--workers", "1"])
        .args(filter);
    let (status, output) = run_bounded(cmd, &dir.join(format!("{name}.log")), PASS_TIMEOUT);
    println!("schemathesis, {name} pass:\n{output}");
    let Some(status) = status else {
        panic!("schemathesis {name} pass killed after {PASS_TIMEOUT:?}\nserver log:\n{}", server.log_text())
    };
    assert!(status.success(), "schemathesis {name} pass failed ({status}); server log:\n{}", server.log_text());
    let generated = output
        .lines()
        .find_map(|l| l.trim().split_once(" generated").and_then(|(n, _)| n.parse::<u64>().ok()))
        .unwrap_or(0);
    assert!(generated > 0, "schemathesis {name} pass generated no case");
    generated
}

async fn contract(backend: Backend) {
    // Setup
    let Some(st) = tool(&["st", "schemathesis"]) else { return };
    let Some(db) = TestDb::new(backend).await else {
        eprintln!("skipped: no TEST_DATABASE_URL for {backend:?}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&db.url, dir.path()).await;

    // Exec + Check: every operation but the admin ones with the (rate-limited) demo PROD
    // key; the admin ones with the demo ROOT key; revoke last with a key of its own, since
    // it may revoke any key it can name, the one it sends included (later cases then get
    // the documented 401).
    let customer = schemathesis(&st, &server, dir.path(), "customer", DEMO_PROD, &["--exclude-path-regex", "^/admin/"]);
    let admin_filter = ["--include-path-regex", "^/admin/", "--exclude-operation-id", "revokeApiKey"];
    let admin = schemathesis(&st, &server, dir.path(), "admin", DEMO_ROOT, &admin_filter);
    let key = server.new_root_key().await;
    let revoke = schemathesis(&st, &server, dir.path(), "revoke", &key, &["--include-operation-id", "revokeApiKey"]);
    let total = customer + admin + revoke;
    println!("{backend:?}: {total} generated cases ({customer} customer, {admin} admin, {revoke} revoke), all passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_sqlite() {
    contract(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_postgres() {
    contract(Backend::Postgres).await;
}
