//! The contract checked by third-party tools: `openapi.yaml` is a valid OpenAPI document
//! (openapi-spec-validator), and the real binary, serving the demo data on each backend,
//! answers what the document says to generated requests (schemathesis): no 5xx, only
//! documented statuses, headers and content types, and bodies that fit their schemas.
//!
//! The tools are Python programs (`.ci/run` installs pinned versions into a virtualenv).
//! When they are not on PATH the tests skip with a message, unless REQUIRE_TOOLS=1.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::child::{ChildServer, Running, DEMO_PROD};
use crate::support::tools::{on_path, run_bounded, tools_required};
use crate::support::{Backend, TestDb};

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/contract/schemathesis.toml");
const HOOKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/contract/hooks.py");

/// Generated cases per operation and phase; with the coverage phase's own cases this comes
/// to about 3,000 requests per backend, a couple of minutes on two cores.
const MAX_EXAMPLES: &str = "50";
/// A pass that has not finished by then is killed and fails.
const PASS_TIMEOUT: Duration = Duration::from_secs(600);
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// The tool's path on PATH; None (the test skips) when absent, a panic under REQUIRE_TOOLS=1.
fn tool(names: &[&str]) -> Option<std::path::PathBuf> {
    let found = on_path(names);
    if found.is_none() {
        assert!(!tools_required(), "REQUIRE_TOOLS=1 but none of {names:?} is on PATH (see .ci/run)");
        eprintln!("skipped: none of {names:?} is on PATH; install it as .ci/run does (REQUIRE_TOOLS=1 fails instead)");
    }
    found
}

#[test]
fn spec_passes_openapi_spec_validator() {
    // Setup
    let Some(validator) = tool(&["openapi-spec-validator"]) else { return };
    let mut cmd = Command::new(validator);
    cmd.arg(SPEC);

    // Exec
    let ran = run_bounded(cmd, Duration::from_secs(120));

    // Check
    let output = format!("{}{}", ran.stdout, ran.stderr);
    println!("{output}");
    assert!(ran.success, "openapi-spec-validator rejected openapi.yaml:\n{}", ran.report());
}

/// `serve --demo` over `database_url`, with limits high enough that no generated case
/// meets a 429: the passes check what the operations answer, not the limiter (the
/// ratelimit module does that). Logs warnings, and the address the harness reads.
fn start_server(database_url: &str) -> Running {
    ChildServer::new(["serve", "--demo"])
        .database_url(database_url)
        .rust_log("warn,bizkit_mirror::server=info")
        .unlimited_rates()
        .start()
}

/// A ROOT key of the operator's organisation `default`, made by the command line: the
/// demo ROOT key administers `demo` alone, so it cannot create organisations.
fn operator_root_key(database_url: &str) -> String {
    let made = ChildServer::new(["key", "create", "--org", "default", "--kind", "ROOT", "--label", "contract"])
        .database_url(database_url)
        .run();
    made.succeeded().trim().to_owned()
}

/// A new ROOT key of organisation `default`, for a pass that may revoke the key it uses.
async fn new_root_key(server: &Running, operator: &str) -> String {
    let res = reqwest::Client::new()
        .post(server.url("/admin/v1/api-keys"))
        .bearer_auth(operator)
        .json(&json!({"kind": "ROOT", "label": "contract: revoke pass"}))
        .send()
        .await
        .expect("create key");
    assert_eq!(res.status(), 200, "creating the revoke pass's key");
    let body: Value = res.json().await.unwrap();
    body["key"].as_str().expect("the new key").to_owned()
}

/// One schemathesis pass over the operations `filter` selects, with `key`; returns the
/// number of generated cases, failing the test on a non-zero exit.
fn schemathesis(st: &Path, server: &Running, dir: &Path, name: &str, key: &str, filter: &[&str]) -> u64 {
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
    let ran = run_bounded(cmd, PASS_TIMEOUT);
    let output = format!("{}{}", ran.stdout, ran.stderr);
    println!("schemathesis, {name} pass:\n{output}");
    let Some(status) = ran.status else {
        panic!("schemathesis {name} pass killed after {PASS_TIMEOUT:?}\nserver log:\n{}", server.stderr())
    };
    assert!(status.success(), "schemathesis {name} pass failed ({status}); server log:\n{}", server.stderr());
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
    let server = start_server(&db.url);

    // Exec + Check: every operation but the admin ones with the (rate-limited) demo PROD
    // key; the admin ones with an operator ROOT key; revoke last with a key of its own,
    // since it may revoke any key it can name, the one it sends included (later cases then
    // get the documented 401).
    let operator = operator_root_key(&db.url);
    let customer = schemathesis(&st, &server, dir.path(), "customer", DEMO_PROD, &["--exclude-path-regex", "^/admin/"]);
    let admin_filter = ["--include-path-regex", "^/admin/", "--exclude-operation-id", "revokeApiKey"];
    let admin = schemathesis(&st, &server, dir.path(), "admin", &operator, &admin_filter);
    let key = new_root_key(&server, &operator).await;
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
