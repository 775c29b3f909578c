//! The admin endpoints on every backend: organisations, keys of each kind, masking,
//! revocation and expiry on the next request, who may administer what, input errors, the
//! audit log and the throttled last-use time.

use std::time::Duration;

use bizkit_mirror::auth::Scope;
use bizkit_mirror::http::route_table;
use bizkit_mirror::normalize::{ApiKey, ApiKeyKind};
use serde_json::{json, Value};

use crate::support::{self, assert_error, split, Keys, TestApp};

const ORGS: &str = "/admin/v1/organisations";
const KEYS: &str = "/admin/v1/api-keys";
const REVOKE: &str = "/admin/v1/api-keys/revoke";
const AUDIT: &str = "/admin/v1/audit";

/// The operator's keys: organisation `default`, every scope.
async fn operator(app: &TestApp) -> Keys {
    support::make_keys(&app.store, "default").await
}

async fn post_with_id(app: &TestApp, path: &str, key: &str, body: Value, request_id: &str) -> (u16, Value) {
    let req = app.client.post(app.url(path)).bearer_auth(key).header("x-request-id", request_id).json(&body);
    split(req.send().await.unwrap()).await
}

#[track_caller]
fn ok(got: &(u16, Value)) -> &Value {
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["success"], true, "{}", got.1);
    &got.1
}

async fn create_key(app: &TestApp, root: &str, body: Value) -> Value {
    ok(&app.post(KEYS, root, body).await).clone()
}

async fn list_keys(app: &TestApp, root: &str, organisation: &str) -> Vec<Value> {
    ok(&app.get(KEYS, root, &[("organisation", organisation)]).await)["keys"].as_array().unwrap().clone()
}

fn listed<'a>(keys: &'a [Value], id: &Value) -> &'a Value {
    keys.iter().find(|k| k["id"] == *id).unwrap_or_else(|| panic!("key {id} not listed"))
}

backend_test!(operator_creates_an_organisation_whose_keys_work, |app| {
    // Setup
    let op = operator(&app).await;

    // Exec: an organisation, then a key of each kind for it
    let created = ok(&app.post(ORGS, &op.root, json!({ "slug": "newco", "name": "  New   Co " })).await).clone();
    let mut keys = Vec::new();
    for kind in ["PROD", "DEV_", "ROOT"] {
        keys.push(create_key(&app, &op.root, json!({ "organisation": "newco", "kind": kind, "label": kind })).await);
    }

    // Check
    assert_eq!(created["organisation"]["slug"], "newco");
    assert_eq!(created["organisation"]["name"], "New Co");
    assert!(created["organisation"]["createdAt"].is_string());
    let orgs = ok(&app.get(ORGS, &op.root, &[]).await)["organisations"].clone();
    let slugs: Vec<&str> = orgs.as_array().unwrap().iter().map(|o| o["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["acme", "default", "newco"]);
    let defaults = |kind: ApiKeyKind| json!(Scope::defaults_for(kind));
    for (k, (kind, prefix, mode)) in keys.iter().zip([
        (ApiKeyKind::Prod, "PROD", "live"),
        (ApiKeyKind::Dev, "DEV_", "sandbox"),
        (ApiKeyKind::Root, "ROOT", "live"),
    ]) {
        let key = k["key"].as_str().unwrap();
        assert_eq!(ApiKey::parse(key).unwrap().kind(), kind, "{k}");
        assert_eq!(k["prefix"], &key[..8]);
        assert!(key.starts_with(prefix));
        assert_eq!(k["kind"], kind.as_str());
        assert_eq!(k["organisation"], "newco");
        assert_eq!(k["scopes"], defaults(kind));
        assert!(k["id"].is_i64() && k["createdAt"].is_string(), "{k}");
        assert_eq!(k["expiresAt"], Value::Null);
        assert_eq!(k["rateLimitPerMinute"], Value::Null);
        let ping = app.get("/ping/v1", key, &[]).await;
        assert_eq!(ping.1, json!({ "success": true, "organisation": "newco", "mode": mode }));
    }
    assert_eq!(defaults(ApiKeyKind::Prod), json!(["customer:read", "customer:write"]));
    assert_eq!(defaults(ApiKeyKind::Root), json!(["customer:read", "customer:write", "customer:import", "admin"]));

    // Explicit scopes, expiry and rate limit are kept as given
    let expires = (chrono::Utc::now() + chrono::TimeDelta::days(30)).to_rfc3339();
    let body = json!({ "organisation": "newco", "kind": "PROD", "scopes": ["customer:read"], "expiresAt": expires, "rateLimitPerMinute": 7 });
    let k = create_key(&app, &op.root, body).await;
    assert_eq!(k["scopes"], json!(["customer:read"]));
    assert_eq!(k["rateLimitPerMinute"], 7);
    let listed_expiry = chrono::DateTime::parse_from_rfc3339(k["expiresAt"].as_str().unwrap()).unwrap();
    assert!((listed_expiry - chrono::DateTime::parse_from_rfc3339(&expires).unwrap()).num_milliseconds().abs() < 1);
    let key = k["key"].as_str().unwrap();
    assert_error(
        &app.post("/api/v1/customer/create", key, json!({ "email": "a@example.com" })).await,
        403,
        "PUBLIC_API_KEY_FORBIDDEN",
    );
});

backend_test!(key_listing_is_masked, |app| {
    // Setup
    let op = operator(&app).await;
    let made = create_key(&app, &op.root, json!({ "organisation": "acme", "kind": "PROD", "label": "masked" })).await;
    let secret = made["key"].as_str().unwrap().to_owned();

    // Exec
    let got = app.get(KEYS, &op.root, &[("organisation", "acme")]).await;

    // Check: four keys (three from the harness, one new), none of them in the text
    let text = got.1.to_string();
    for key in [&secret, &app.keys.prod, &app.keys.dev, &app.keys.root] {
        assert!(!text.contains(key.as_str()), "a whole key is listed: {text}");
        assert!(!text.contains(&ApiKey::parse(key).unwrap().digest()), "a digest is listed");
    }
    let keys = ok(&got)["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 4);
    let mine = listed(&keys, &made["id"]);
    let fields: Vec<&str> = mine.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        [
            "id",
            "prefix",
            "kind",
            "label",
            "scopes",
            "createdAt",
            "lastUsedAt",
            "expiresAt",
            "revokedAt",
            "rateLimitPerMinute"
        ]
    );
    assert_eq!(mine["prefix"], &secret[..8]);
    assert_eq!(mine["label"], "masked");
    assert_eq!(mine["kind"], "PROD");
    assert_eq!(mine["createdAt"], made["createdAt"]);
    assert_eq!(mine["revokedAt"], Value::Null);
    for k in &keys {
        assert_eq!(k["prefix"].as_str().unwrap().len(), 8, "{k}");
    }
});

backend_test!(revocation_takes_effect_on_the_next_request, |app| {
    // Setup: a key that has just been used, so it sits in the key cache
    let op = operator(&app).await;
    let made = create_key(&app, &op.root, json!({ "organisation": "acme", "kind": "PROD" })).await;
    let key = made["key"].as_str().unwrap();
    assert_eq!(app.get("/ping/v1", key, &[]).await.0, 200);

    // Exec
    let revoked = app.post(REVOKE, &op.root, json!({ "id": made["id"] })).await;

    // Check
    assert_eq!(ok(&revoked)["revoked"], true);
    assert_error(&app.get("/ping/v1", key, &[]).await, 401, "PUBLIC_API_KEY_REVOKED");
    let again = app.post(REVOKE, &op.root, json!({ "id": made["id"] })).await;
    assert_eq!(ok(&again)["revoked"], false);
    let keys = list_keys(&app, &op.root, "acme").await;
    assert!(listed(&keys, &made["id"])["revokedAt"].is_string());
    assert_eq!(app.get("/ping/v1", &app.keys.prod, &[]).await.0, 200, "other keys are untouched");
});

backend_test!(expired_keys_are_refused_even_when_cached, |app| {
    // Setup: a key expiring shortly, used (and so cached) before it does
    let op = operator(&app).await;
    let soon = (chrono::Utc::now() + chrono::TimeDelta::milliseconds(1500)).to_rfc3339();
    let made = create_key(&app, &op.root, json!({ "organisation": "acme", "kind": "DEV", "expiresAt": soon })).await;
    let key = made["key"].as_str().unwrap();
    assert_eq!(app.get("/ping/v1", key, &[]).await.0, 200);

    // Exec
    tokio::time::sleep(Duration::from_millis(1700)).await;

    // Check
    assert_error(&app.get("/ping/v1", key, &[]).await, 401, "PUBLIC_API_KEY_EXPIRED");
    let past = ApiKey::generate(ApiKeyKind::Prod);
    let mut new = bizkit_mirror::server::new_key(&past, "past", Scope::all_names());
    new.expires_at = Some(chrono::Utc::now() - chrono::TimeDelta::seconds(1));
    app.store.create_key("acme", &new, None).await.unwrap();
    assert_error(&app.get("/ping/v1", past.expose(), &[]).await, 401, "PUBLIC_API_KEY_EXPIRED");
});

/// Calls one admin route with `key` and a harmless request.
async fn call(app: &TestApp, method: &axum::http::Method, path: &str, key: &str) -> (u16, Value) {
    if method == axum::http::Method::GET {
        app.get(path, key, &[("organisation", "acme")]).await
    } else {
        app.post(path, key, json!({ "organisation": "acme", "slug": "x", "name": "x", "kind": "PROD", "id": 1 })).await
    }
}

backend_test!(only_root_keys_with_the_admin_scope_administer, |app| {
    // Setup: every routed admin operation, and a ROOT key without the admin scope
    let admin_routes: Vec<_> = route_table().into_iter().filter(|r| r.scope == Some(Scope::Admin)).collect();
    let paths: Vec<String> = admin_routes.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(
        paths,
        [
            "POST /admin/v1/organisations",
            "GET /admin/v1/organisations",
            "POST /admin/v1/api-keys",
            "GET /admin/v1/api-keys",
            "POST /admin/v1/api-keys/revoke",
            "GET /admin/v1/audit",
            "POST /admin/v1/webhooks",
            "GET /admin/v1/webhooks",
            "POST /admin/v1/webhooks/delete",
            "GET /admin/v1/webhooks/deliveries",
            "POST /admin/v1/webhooks/replay",
        ]
    );
    let op = operator(&app).await;
    let no_admin = ApiKey::generate(ApiKeyKind::Root);
    let scopes = Scope::defaults_for(ApiKeyKind::Root).into_iter().filter(|s| s != "admin").collect();
    app.store
        .create_key("default", &bizkit_mirror::server::new_key(&no_admin, "no admin", scopes), None)
        .await
        .unwrap();

    // Exec + Check: the harness's PROD and DEV_ keys carry every scope, admin included
    for route in &admin_routes {
        for key in [&app.keys.prod, &app.keys.dev, &op.prod, &op.dev, &no_admin.expose().to_owned()] {
            let got = call(&app, &route.method, route.path, key).await;
            assert_error(&got, 403, "PUBLIC_API_KEY_FORBIDDEN");
        }
    }
    let got = call(&app, &axum::http::Method::POST, KEYS, &app.keys.prod).await;
    assert!(got.1["error"]["message"].as_str().unwrap().contains("ROOT"), "{}", got.1);
    // Nothing was done by any of them
    assert_eq!(list_keys(&app, &op.root, "acme").await.len(), 3);
});

backend_test!(other_organisations_root_keys_reach_only_their_own, |app| {
    // Setup: acme's ROOT key is not the operator's
    let op = operator(&app).await;
    let acme_root = &app.keys.root;
    let default_keys = list_keys(&app, &op.root, "default").await;

    // Exec + Check: refused
    let forbidden = [
        app.post(ORGS, acme_root, json!({ "slug": "mine", "name": "Mine" })).await,
        app.get(KEYS, acme_root, &[("organisation", "default")]).await,
        app.get(KEYS, acme_root, &[("organisation", "no-such-org")]).await,
        app.post(KEYS, acme_root, json!({ "organisation": "default", "kind": "ROOT" })).await,
        app.post(REVOKE, acme_root, json!({ "id": default_keys[0]["id"] })).await,
        app.get(AUDIT, acme_root, &[("organisation", "default")]).await,
    ];
    for got in &forbidden {
        assert_error(got, 403, "PUBLIC_API_KEY_FORBIDDEN");
        assert!(got.1["error"]["message"].as_str().unwrap().contains("organisation"), "{}", got.1);
    }
    assert_eq!(ok(&app.get("/ping/v1", &op.prod, &[]).await)["organisation"], "default", "not revoked");

    // Allowed: its own organisation, named or implied
    let made = create_key(&app, acme_root, json!({ "kind": "PROD" })).await;
    assert_eq!(made["organisation"], "acme");
    assert_eq!(list_keys(&app, acme_root, "acme").await.len(), 4);
    let orgs = ok(&app.get(ORGS, acme_root, &[]).await)["organisations"].clone();
    assert_eq!(orgs.as_array().unwrap().len(), 1);
    assert_eq!(orgs[0]["slug"], "acme");
    assert_eq!(ok(&app.post(REVOKE, acme_root, json!({ "id": made["id"] })).await)["revoked"], true);
    let audit = ok(&app.get(AUDIT, acme_root, &[]).await)["entries"].clone();
    assert!(audit.as_array().unwrap().iter().all(|e| e["organisation"] == "acme"), "{audit}");
    assert!(!ok(&app.get(AUDIT, &op.root, &[("organisation", "default")]).await)["entries"]
        .as_array()
        .unwrap()
        .is_empty());
});

backend_test!(bad_inputs_name_their_field, |app| {
    let op = operator(&app).await;
    let key = |extra: Value| {
        let mut body = json!({ "organisation": "acme", "kind": "PROD" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let past = (chrono::Utc::now() - chrono::TimeDelta::minutes(1)).to_rfc3339();
    let cases = [
        (ORGS, json!({ "slug": "Bad_Slug", "name": "x" }), "slug"),
        (ORGS, json!({ "slug": "-lead", "name": "x" }), "slug"),
        (ORGS, json!({ "slug": "a".repeat(64), "name": "x" }), "slug"),
        (ORGS, json!({ "slug": "acme", "name": "Again" }), "slug"),
        (ORGS, json!({ "name": "x" }), "slug"),
        (ORGS, json!({ "slug": "fine" }), "name"),
        (ORGS, json!({ "slug": "fine", "name": "   " }), "name"),
        (KEYS, key(json!({ "kind": "TEST" })), "kind"),
        (KEYS, key(json!({ "kind": null })), "kind"),
        (KEYS, key(json!({ "scopes": ["customer:read", "customer:delete"] })), "scopes"),
        (KEYS, key(json!({ "scopes": [] })), "scopes"),
        (KEYS, key(json!({ "scopes": "admin" })), "scopes"),
        (KEYS, key(json!({ "expiresAt": past })), "expiresAt"),
        (KEYS, key(json!({ "expiresAt": "next tuesday" })), "expiresAt"),
        (KEYS, key(json!({ "rateLimitPerMinute": 0 })), "rateLimitPerMinute"),
        (KEYS, key(json!({ "rateLimitPerMinute": 1_000_001 })), "rateLimitPerMinute"),
        (KEYS, key(json!({ "rateLimitPerMinute": "10" })), "rateLimitPerMinute"),
        (KEYS, key(json!({ "organisation": "unknown-org" })), "organisation"),
        (KEYS, key(json!({ "organisation": "Not A Slug" })), "organisation"),
        (REVOKE, json!({}), "id"),
        (REVOKE, json!({ "id": 999_999 }), "id"),
        (REVOKE, json!({ "id": "1" }), "id"),
    ];
    for (path, body, field) in cases {
        let got = app.post(path, &op.root, body.clone()).await;
        assert_error(&got, 400, "INVALID_REQUEST");
        assert_eq!(got.1["error"]["field"], field, "{path} {body}: {}", got.1);
    }
    let got = app.post(ORGS, &op.root, json!({ "slug": "acme", "name": "Again" })).await;
    assert!(got.1["error"]["message"].as_str().unwrap().contains("already exists"), "{}", got.1);
    for (path, params, field) in [
        (KEYS, [("organisation", "unknown-org")], "organisation"),
        (AUDIT, [("limit", "0")], "limit"),
        (AUDIT, [("cursor", "junk")], "cursor"),
        (AUDIT, [("organisation", "unknown-org")], "organisation"),
    ] {
        let got = app.get(path, &op.root, &params).await;
        assert_error(&got, 400, "INVALID_REQUEST");
        assert_eq!(got.1["error"]["field"], field, "{path} {params:?}: {}", got.1);
    }
    // Nothing was created by any of them
    assert_eq!(list_keys(&app, &op.root, "acme").await.len(), 3);
    assert_eq!(ok(&app.get(ORGS, &op.root, &[]).await)["organisations"].as_array().unwrap().len(), 2);
});

backend_test!(audit_records_admin_calls_with_their_request_ids, |app| {
    // Setup
    let op = operator(&app).await;
    let prefix = &op.root[..8];

    // Exec
    let org = post_with_id(&app, ORGS, &op.root, json!({ "slug": "audited", "name": "Audited" }), "req-org-1").await;
    let made =
        post_with_id(&app, KEYS, &op.root, json!({ "organisation": "audited", "kind": "PROD" }), "req-key-1").await;
    let made = ok(&made).clone();
    let revoke = post_with_id(&app, REVOKE, &op.root, json!({ "id": made["id"] }), "req-revoke-1").await;
    ok(&org);
    ok(&revoke);
    let listing = app.get(AUDIT, &op.root, &[("organisation", "audited")]).await;

    // Check: newest first, each with its request id, actor and target; never a whole key
    let entries = ok(&listing)["entries"].as_array().unwrap().clone();
    let summary: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["requestId"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    let id = made["id"].to_string();
    assert_eq!(
        summary,
        [
            ("api_key.revoke", "req-revoke-1", id.as_str()),
            ("api_key.create", "req-key-1", id.as_str()),
            ("organisation.create", "req-org-1", "audited")
        ]
    );
    for e in &entries {
        assert_eq!(e["actor"], prefix, "{e}");
        assert_eq!(e["organisation"], "audited", "{e}");
        assert!(e["createdAt"].is_string() && e["id"].is_i64(), "{e}");
    }
    assert_eq!(entries[1]["detail"]["prefix"], made["prefix"]);
    assert_eq!(entries[0]["detail"]["revoked"], true);
    assert_eq!(listing.1["nextCursor"], Value::Null);
    let text = listing.1.to_string();
    assert!(!text.contains(made["key"].as_str().unwrap()) && !text.contains(&op.root), "{text}");

    // Reads are recorded too, and pages follow the cursor without gaps or repeats
    let all = ok(&app.get(AUDIT, &op.root, &[]).await)["entries"].clone();
    assert_eq!(all[0]["action"], "audit.list", "{all}");
    assert_eq!(all[0]["organisation"], "audited");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![("organisation", "audited"), ("limit", "2")];
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        let page = ok(&app.get(AUDIT, &op.root, &params).await).clone();
        seen.extend(page["entries"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seen, sorted, "newest first, no repeats");
    assert!(seen.len() >= 4, "{seen:?}");
});

backend_test!(last_used_at_is_written_at_most_once_a_minute, |app| {
    // Setup
    let op = operator(&app).await;
    let made = create_key(&app, &op.root, json!({ "organisation": "acme", "kind": "PROD" })).await;
    let key = made["key"].as_str().unwrap();
    assert_eq!(listed(&list_keys(&app, &op.root, "acme").await, &made["id"])["lastUsedAt"], Value::Null);

    // Exec: a first use; the write happens beside the request, so wait for it
    assert_eq!(app.get("/ping/v1", key, &[]).await.0, 200);
    let mut first = Value::Null;
    for _ in 0..50 {
        first = listed(&list_keys(&app, &op.root, "acme").await, &made["id"])["lastUsedAt"].clone();
        if !first.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(first.is_string(), "lastUsedAt was never set");

    // Check: an immediate second use does not write again
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(app.get("/ping/v1", key, &[]).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(listed(&list_keys(&app, &op.root, "acme").await, &made["id"])["lastUsedAt"], first);
});
