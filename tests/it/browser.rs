//! What a browser sees: `/docs` rendering the contract offline, and CORS letting pages of
//! listed origins call the API (errors included) while other origins are refused. The
//! page tests drive Debian's headless Chromium; without it they skip, unless
//! REQUIRE_BROWSER=1 (CI) makes its absence a failure. They run on SQLite only: CORS
//! and the docs page sit in front of the store and do not depend on the backend.

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::Html;
use bizkit_mirror::accounts::{AccountSettings, Accounts};
use bizkit_mirror::http::cors::CorsPolicy;
use bizkit_mirror::http::Shared;
use bizkit_mirror::normalize::IdentityId;
use bizkit_mirror::store::Mode;
use bizkit_mirror::AppState;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::support::tools::{on_path, run_bounded};
use crate::support::{self, Backend, TestApp};

const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves `app`'s database and keys again on a new port, behind `policy`.
async fn serve_with_cors(app: &TestApp, policy: CorsPolicy) -> String {
    let state = AppState::new(Shared {
        store: app.store.clone(),
        keys: app.registry.clone(),
        accounts: Accounts::new(AccountSettings::default()),
        contacts: Default::default(),
        serve_metrics: true,
        webhook_reach: bizkit_mirror::webhooks::Reach::Loopback,
    });
    serve(bizkit_mirror::app_with(state, &policy)).await
}

/// Serves `router` on 127.0.0.1 for the rest of the test; returns its origin.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    format!("http://{addr}")
}

fn origins(list: &[&str]) -> CorsPolicy {
    CorsPolicy::parse(Some(&list.join(",")), false, false).expect("valid origins")
}

/// The Chromium binary, or None (the test then skips) unless REQUIRE_BROWSER=1.
fn chromium() -> Option<std::path::PathBuf> {
    let found = on_path(&["chromium"]);
    if found.is_none() {
        assert!(
            std::env::var("REQUIRE_BROWSER").map_or(true, |v| v != "1"),
            "REQUIRE_BROWSER=1 but `chromium` is not on PATH (apt-get install -y chromium)"
        );
        eprintln!("skipped: `chromium` is not installed");
    }
    found
}

/// Loads `url` in headless Chromium with every host but 127.0.0.1 unresolvable (as if
/// offline) and returns the DOM after scripts ran; `extra` adds flags (a screenshot).
async fn browse(chromium: &std::path::Path, url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut command = std::process::Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-extensions",
            "--disable-sync",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=15000",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg("--dump-dom")
        .arg(url);
    // On the blocking pool: the servers the browser talks to run on this test's runtime.
    let ran =
        tokio::task::spawn_blocking(move || run_bounded(command, BROWSER_TIMEOUT)).await.expect("chromium runner");
    assert!(!ran.timed_out, "chromium did not finish {url} within {BROWSER_TIMEOUT:?} (killed)");
    assert!(ran.success && !ran.stdout.is_empty(), "chromium failed on {url}: {:?}\n{}", ran.status, ran.stderr);
    ran.stdout
}

/// The JSON a test page wrote into `<pre id="{id}">`.
fn result(dom: &str, id: &str) -> Value {
    let open = format!("<pre id=\"{id}\">");
    let start = dom.find(&open).unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}")) + open.len();
    let end = start + dom[start..].find("</pre>").expect("closed pre");
    let text = dom[start..end].replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("#{id} is not JSON ({e}): {text}"))
}

/// A page that calls the API the way a storefront would: create (POST JSON, Bearer key,
/// with credentials), then detail for the logged-in customer, then a call with a wrong
/// key whose error envelope must be readable too.
fn caller_page(api: &str, key: &str, email: &str, identity: &str) -> String {
    let config = json!({ "api": api, "key": key, "email": email, "identity": identity });
    format!(
        r#"<!DOCTYPE html><html><body><pre id="create">pending</pre><pre id="detail">pending</pre><pre id="error">pending</pre>
<script>
const cfg = {config};
async function call(id, path, init) {{
  const el = document.getElementById(id);
  try {{
    const res = await fetch(cfg.api + path, Object.assign({{credentials: 'include'}}, init));
    const body = await res.json();
    el.textContent = JSON.stringify({{status: res.status, body, requestId: res.headers.get('x-request-id')}});
    return body;
  }} catch (e) {{
    el.textContent = JSON.stringify({{failed: e.name + ': ' + e.message}});
    return null;
  }}
}}
(async () => {{
  const auth = {{'Authorization': 'Bearer ' + cfg.key}};
  const created = await call('create', '/api/v1/customer/create', {{method: 'POST',
    headers: Object.assign({{'Content-Type': 'application/json'}}, auth), body: JSON.stringify({{email: cfg.email}})}});
  const cu = created ? created.cuRefNo : 'AAAAAAAAAAAAAAAA';
  await call('detail', '/api/v1/customer/detail?cuRefNo=' + cu + '&identityId=' + cfg.identity, {{headers: auth}});
  await call('error', '/api/v1/customer/detail?cuRefNo=' + cu, {{headers: {{'Authorization': 'Bearer PRODnotAKeyOfThisServer000000000'}}}});
}})();
</script></body></html>"#
    )
}

/// A customer with a live session, as a storefront would have after login.
async fn logged_in_customer(app: &TestApp, email: &str) -> (String, String) {
    let cu = app.create(&app.keys.prod, email).await["cuRefNo"].as_str().expect("cuRefNo").to_owned();
    let space = app.store.space_of("acme", Mode::Live).await.unwrap();
    let id = IdentityId::generate();
    let expires_at = chrono::Utc::now() + chrono::TimeDelta::days(1);
    assert!(app.db.insert_session(space, &cu, &id.digest(), expires_at).await);
    (cu, id.as_str().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_page_renders_the_contract_offline() {
    let Some(chromium) = chromium() else { return };
    // Setup
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("docs.png");
    let _ = std::fs::remove_file(&shot);
    // Exec
    let dom = browse(&chromium, &app.url("/docs"), &[format!("--screenshot={}", shot.display())]).await;
    // Check: the operations and webhooks of openapi.yaml are on the page, rendered by Redoc
    for needle in [
        "/api/v1/customer/create",
        "customer-match-customer",
        "create-or-update",
        "operation/createCustomer",
        "operation/customerCreatedEvent",
        "operation/matchRemovedEvent",
    ] {
        assert!(dom.contains(needle), "/docs does not show {needle}:\n{}", &dom[..dom.len().min(3000)]);
    }
    assert!(!dom.contains("Something went wrong"), "Redoc failed to render the document");
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "no screenshot at {} ({size} bytes)", shot.display());
    eprintln!("screenshot: {}", shot.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_assets_are_served_from_the_binary() {
    // Setup
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    // Exec
    let page = app.client.get(app.url("/docs")).send().await.unwrap();
    let page_headers = page.headers().clone();
    let html = page.text().await.unwrap();
    let bundle = app.client.get(app.url("/docs/redoc-2.5.4.standalone.js")).send().await.unwrap();
    let bundle_headers = bundle.headers().clone();
    let bytes = bundle.bytes().await.unwrap();
    // Check
    assert_eq!(header(&page_headers, "content-type"), Some("text/html; charset=utf-8"));
    assert!(header(&page_headers, "content-security-policy").is_some_and(|c| c.starts_with("default-src 'self'")));
    assert!(!html.contains("http://") && !html.contains("https://"), "the page names another host:\n{html}");
    assert!(html.contains("src=\"/docs/redoc-2.5.4.standalone.js\"") && html.contains("spec-url=\"/openapi.yaml\""));
    assert_eq!(header(&bundle_headers, "content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(header(&bundle_headers, "cache-control"), Some("public, max-age=31536000, immutable"));
    let vendored = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/docs/redoc.standalone.js")).unwrap();
    assert!(bytes.as_ref() == vendored.as_slice(), "the served bundle is not assets/docs/redoc.standalone.js");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_origin_calls_the_api_from_a_page() {
    let Some(chromium) = chromium() else { return };
    // Setup: the API allowing one page server's origin, the customer logged in
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    let (cu, identity) = logged_in_customer(&app, "ada@example.com").await;
    let shop = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop_origin = format!("http://{}", shop.local_addr().unwrap());
    let api = serve_with_cors(&app, origins(&[&shop_origin])).await;
    let page = caller_page(&api, &app.keys.prod, "ada@example.com", &identity);
    let router = axum::Router::new().route("/", axum::routing::get(move || async move { Html(page) }));
    tokio::spawn(async move { axum::serve(shop, router).await.unwrap() });
    // Exec
    let dom = browse(&chromium, &format!("{shop_origin}/"), &[]).await;
    // Check: both calls succeeded, and the error envelope was readable with its headers
    let create = result(&dom, "create");
    assert_eq!(create["status"], 200, "{create}");
    assert_eq!(create["body"]["cuRefNo"], cu.as_str(), "{create}");
    assert_eq!(create["body"]["newAccount"], false, "{create}");
    assert!(create["requestId"].as_str().is_some_and(|id| !id.is_empty()), "X-Request-Id is exposed: {create}");
    let detail = result(&dom, "detail");
    assert_eq!(detail["status"], 200, "{detail}");
    assert_eq!(detail["body"]["loggedIn"], true, "{detail}");
    assert_eq!(detail["body"]["email"], "ada@example.com", "{detail}");
    let error = result(&dom, "error");
    assert_eq!(error["status"], 401, "{error}");
    assert_eq!(error["body"]["error"]["code"], "PUBLIC_API_KEY_DOES_NOT_EXIST", "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_origin_is_refused_by_the_browser() {
    let Some(chromium) = chromium() else { return };
    // Setup: the API allows one origin; the page comes from another
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    let (_, identity) = logged_in_customer(&app, "bob@example.com").await;
    let api = serve_with_cors(&app, origins(&["http://localhost:5173"])).await;
    let page = caller_page(&api, &app.keys.prod, "bob@example.com", &identity);
    let shop = serve(axum::Router::new().route("/", axum::routing::get(move || async move { Html(page) }))).await;
    // Exec
    let dom = browse(&chromium, &format!("{shop}/"), &[]).await;
    // Check: every fetch failed in the browser; no response reached the page
    for id in ["create", "detail", "error"] {
        let got = result(&dom, id);
        assert!(got["failed"].as_str().is_some_and(|f| f.starts_with("TypeError")), "#{id} was not blocked: {got}");
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn preflight(client: &reqwest::Client, api: &str, origin: &str) -> reqwest::Response {
    client
        .request(reqwest::Method::OPTIONS, format!("{api}/api/v1/customer/create"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .expect("preflight")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_answers_listed_origins_only() {
    // Setup
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    let api = serve_with_cors(&app, origins(&["http://localhost:5173", "https://shop.example.com"])).await;
    // Exec
    let allowed = preflight(&app.client, &api, "https://shop.example.com").await;
    let refused = preflight(&app.client, &api, "https://evil.example.com").await;
    let error = app
        .client
        .get(format!("{api}/api/v1/customer/detail"))
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    // Check: the allowed preflight
    let h = allowed.headers();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(header(h, "access-control-allow-origin"), Some("https://shop.example.com"));
    assert_eq!(header(h, "access-control-allow-credentials"), Some("true"));
    assert!(header(h, "access-control-allow-methods").is_some_and(|m| m.contains("GET") && m.contains("POST")));
    let allowed_headers = header(h, "access-control-allow-headers").unwrap_or_default().to_ascii_lowercase();
    for name in ["authorization", "content-type", "idempotency-key", "x-request-id"] {
        assert!(allowed_headers.contains(name), "{name} missing from {allowed_headers}");
    }
    assert_eq!(header(h, "access-control-max-age"), Some("600"));
    assert!(h.get_all("vary").iter().any(|v| v.to_str().unwrap_or("").to_ascii_lowercase().contains("origin")));
    // Check: the refused preflight carries no CORS header at all
    let leaked: Vec<_> = refused.headers().keys().filter(|k| k.as_str().starts_with("access-control-")).collect();
    assert!(leaked.is_empty(), "refused origin got {leaked:?}");
    // Check: an error envelope is readable cross-origin, with the headers exposed
    assert_eq!(error.status().as_u16(), 401);
    assert_eq!(header(error.headers(), "access-control-allow-origin"), Some("http://localhost:5173"));
    let exposed = header(error.headers(), "access-control-expose-headers").unwrap_or_default().to_ascii_lowercase();
    for name in ["x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_origin_never_allows_credentials() {
    // Setup: `*` as under --demo
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    let api = serve_with_cors(&app, CorsPolicy::parse(None, true, false).unwrap()).await;
    // Exec
    let pre = preflight(&app.client, &api, "https://anyone.example.com").await;
    let get = app
        .client
        .get(format!("{api}/ping/v1"))
        .bearer_auth(&app.keys.prod)
        .header("origin", "https://anyone.example.com")
        .send()
        .await
        .unwrap();
    // Check
    for (what, headers) in [("preflight", pre.headers()), ("GET", get.headers())] {
        assert_eq!(header(headers, "access-control-allow-origin"), Some("*"), "{what}");
        assert!(headers.get("access-control-allow-credentials").is_none(), "{what} allows credentials with *");
    }
    assert_eq!(get.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_by_default() {
    // Setup: the server as `serve` starts it without CORS_ALLOWED_ORIGINS
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    // Exec
    let pre = preflight(&app.client, &app.base, "http://localhost:5173").await;
    // Check: no CORS headers; OPTIONS is just a method the route does not serve
    assert!(pre.headers().keys().all(|k| !k.as_str().starts_with("access-control-")), "{:?}", pre.headers());
    assert_eq!(pre.status().as_u16(), 405);
}
