//! A generated OpenAPI client against the real binary: `clients/typescript` generates its
//! types from the committed `openapi.yaml` with openapi-typescript, type-checks
//! `src/smoke.ts` against them with tsc, and runs it with openapi-fetch against
//! `serve --demo`. This proves that the contract is precise enough for a mainstream
//! generator (paths, bodies and response unions type-check as used) and that the server
//! answers what the contract promises on the customer, match and storefront flows.
//!
//! Needs node and npm; without them the test skips with a message, unless
//! REQUIRE_TOOLS=1, where it fails. `npm ci` runs only when `node_modules` is missing.

use std::time::Duration;

use serde_json::Value;

use crate::support::child::{ChildServer, DEMO_PROD};
use crate::support::tools::{command_in, have_tool, manifest_dir, run_bounded};

const NPM_CI_LIMIT: Duration = Duration::from_secs(300);
const STEP_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn generated_typescript_client_runs_the_storefront_flow() {
    // Setup: tools, dependencies from the lock file, the demo server.
    if !have_tool("node") || !have_tool("npm") {
        return;
    }
    let dir = manifest_dir().join("clients/typescript");
    if !dir.join("node_modules").is_dir() {
        let ran = run_bounded(command_in(&dir, "npm", &["ci", "--no-audit", "--no-fund"]), NPM_CI_LIMIT);
        assert!(ran.success, "npm ci failed\n{}", ran.report());
    }
    let server = ChildServer::new(["serve", "--demo"]).fresh_sqlite().unlimited_rates().start();

    // Exec + Check: generate from the current contract, type-check, compile, run.
    for (step, script) in
        [("generate api.d.ts from openapi.yaml", "generate"), ("tsc --noEmit", "typecheck"), ("tsc", "build")]
    {
        let ran = run_bounded(command_in(&dir, "npm", &["run", "--silent", script]), STEP_LIMIT);
        assert!(ran.success, "{step} failed\n{}", ran.report());
    }
    let mut smoke = command_in(&dir, "node", &["dist/smoke.js"]);
    smoke.env("BIZKIT_BASE_URL", &server.base).env("BIZKIT_API_KEY", DEMO_PROD);
    let ran = run_bounded(smoke, STEP_LIMIT);
    assert!(ran.success, "smoke.ts failed\n{}\n--- server log\n{}", ran.report(), server.stderr());
    assert!(ran.stdout.contains("smoke: OK"), "smoke.ts did not report success\n{}", ran.report());
}

#[test]
fn typescript_client_pins_exact_versions() {
    // Setup: the manifest and the lock file as committed.
    let dir = manifest_dir().join("clients/typescript");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    let lock: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("package-lock.json")).unwrap()).unwrap();

    // Exec: every direct dependency, runtime and development.
    let mut declared = Vec::new();
    for section in ["dependencies", "devDependencies"] {
        for (name, version) in manifest[section].as_object().into_iter().flatten() {
            declared.push((name.clone(), version.as_str().unwrap_or_default().to_owned()));
        }
    }

    // Check: an exact version each, the one the lock file installs, and the generator,
    // the runtime client and the compiler among them.
    for name in ["openapi-typescript", "openapi-fetch", "typescript"] {
        assert!(declared.iter().any(|(n, _)| n == name), "{name} missing from package.json");
    }
    for (name, version) in &declared {
        let exact = !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.');
        assert!(exact, "{name} is pinned as {version:?}, not an exact version");
        let locked = &lock["packages"][format!("node_modules/{name}")]["version"];
        assert_eq!(locked.as_str(), Some(version.as_str()), "{name}: package-lock.json disagrees with package.json");
    }
}
