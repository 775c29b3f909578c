//! The key pipeline and tenant isolation, on every backend.

use bizkit_mirror::auth::Scope;
use bizkit_mirror::normalize::{ApiKey, ApiKeyKind};
use serde_json::json;

use crate::support::{self, assert_error, split};

const CREATE: &str = "/api/v1/customer/create";
const LIST: &str = "/api/v1/customer/customer-match-list";
const DETAIL: &str = "/api/v1/customer/detail";

backend_test!(each_check_has_its_own_code, |app| {
    let unknown = ApiKey::generate(ApiKeyKind::Prod);
    let cases = [
        (None, "PUBLIC_API_KEY_DOES_NOT_EXIST"),
        (Some("PRODshort"), "PUBLIC_API_KEY_INVALID_FORMAT"),
        (Some("XXXXPGrFxpGEtrOZfuWhnoJohUYBXuOE"), "PUBLIC_API_KEY_INVALID_FORMAT"),
        (Some("PRODPGrFxpGEtrOZfuWhnoJohUYBXuO!"), "PUBLIC_API_KEY_INVALID_FORMAT"),
        (Some(unknown.expose()), "PUBLIC_API_KEY_DOES_NOT_EXIST"),
    ];
    for (key, code) in cases {
        let mut req = app.client.get(app.url("/ping/v1"));
        if let Some(key) = key {
            req = req.query(&[("apiKey", key)]);
        }
        let got = split(req.send().await.unwrap()).await;
        assert_error(&got, 401, code);
    }

    // Expired and revoked keys
    let expired = ApiKey::generate(ApiKeyKind::Prod);
    let mut new = bizkit_mirror::server::new_key(&expired, "expired", Scope::all_names());
    new.expires_at = Some(chrono::Utc::now() - chrono::TimeDelta::minutes(1));
    app.store.insert_key("acme", &new).await.unwrap();
    assert_error(&app.get("/ping/v1", expired.expose(), &[]).await, 401, "PUBLIC_API_KEY_EXPIRED");

    let revoked = ApiKey::generate(ApiKeyKind::Prod);
    let made = app
        .store
        .create_key("acme", &bizkit_mirror::server::new_key(&revoked, "r", Scope::all_names()), None)
        .await
        .unwrap();
    assert_eq!(app.get("/ping/v1", revoked.expose(), &[]).await.0, 200);
    let (status, body) = app.post("/admin/v1/api-keys/revoke", &app.keys.root, json!({ "id": made.id })).await;
    assert_eq!((status, &body["revoked"]), (200, &json!(true)), "{body}");
    app.registry.evict(&revoked).await;
    assert_error(&app.get("/ping/v1", revoked.expose(), &[]).await, 401, "PUBLIC_API_KEY_REVOKED");

    // Scope: a read-only key may read but not write
    let reader = ApiKey::generate(ApiKeyKind::Prod);
    let scopes = vec![Scope::CustomerRead.as_str().to_owned()];
    app.store.insert_key("acme", &bizkit_mirror::server::new_key(&reader, "reader", scopes)).await.unwrap();
    assert_eq!(app.get("/ping/v1", reader.expose(), &[]).await.0, 200);
    assert_error(
        &app.post(CREATE, reader.expose(), json!({ "email": "x@example.com" })).await,
        403,
        "PUBLIC_API_KEY_FORBIDDEN",
    );
    for path in ["/api/v1/customer/customer-match-customer", "/api/v1/customer/customer-match-remove"] {
        assert_error(&app.post(path, reader.expose(), json!({})).await, 403, "PUBLIC_API_KEY_FORBIDDEN");
    }
    // Checks run before the body is read for meaning: a bad key with a bad body is a 401
    assert_error(
        &app.post(CREATE, unknown.expose(), json!({ "email": 5 })).await,
        401,
        "PUBLIC_API_KEY_DOES_NOT_EXIST",
    );
});

backend_test!(key_precedence_is_query_then_body_then_bearer, |app| {
    let bad = ApiKey::generate(ApiKeyKind::Prod);
    let good = &app.keys.prod;
    let body = |key: &str| json!({ "email": "prec@example.com", "apiKey": key });
    let send = |req: reqwest::RequestBuilder| async move { split(req.send().await.unwrap()).await };
    let url = app.url(CREATE);

    // The reference's own example: a real query key beside a placeholder Bearer
    let got = send(
        app.client
            .post(&url)
            .query(&[("apiKey", good)])
            .bearer_auth("YOUR_API_KEY")
            .json(&json!({ "email": "prec@example.com" })),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    // Query beats body
    let got = send(app.client.post(&url).query(&[("apiKey", good)]).json(&body(bad.expose()))).await;
    assert_eq!(got.0, 200, "{}", got.1);
    let got = send(app.client.post(&url).query(&[("apiKey", bad.expose())]).json(&body(good))).await;
    assert_error(&got, 401, "PUBLIC_API_KEY_DOES_NOT_EXIST");
    // Body beats Bearer
    let got = send(app.client.post(&url).bearer_auth(bad.expose()).json(&body(good))).await;
    assert_eq!(got.0, 200, "{}", got.1);
    let got = send(app.client.post(&url).bearer_auth(good).json(&body(bad.expose()))).await;
    assert_error(&got, 401, "PUBLIC_API_KEY_DOES_NOT_EXIST");
    // Bearer alone works, on POST and GET
    let got = send(app.client.post(&url).bearer_auth(good).json(&json!({ "email": "prec@example.com" }))).await;
    assert_eq!(got.0, 200, "{}", got.1);
    let got = send(app.client.get(app.url("/ping/v1")).bearer_auth(good)).await;
    assert_eq!(got.1, json!({ "success": true, "organisation": "acme", "mode": "live" }));
    // A blank key anywhere counts as none, and never shadows a real one
    let got = send(app.client.post(&url).query(&[("apiKey", "")]).bearer_auth(good).json(&body("  "))).await;
    assert_eq!(got.0, 200, "{}", got.1);
    let got = send(app.client.get(app.url("/ping/v1")).query(&[("apiKey", " ")])).await;
    assert_error(&got, 401, "PUBLIC_API_KEY_DOES_NOT_EXIST");
    // A body key of the wrong type is named
    let got = send(app.client.post(&url).json(&json!({ "email": "prec@example.com", "apiKey": 12 }))).await;
    assert_error(&got, 400, "INVALID_REQUEST");
    assert_eq!(got.1["error"]["field"], "apiKey");
});

backend_test!(sandbox_and_organisations_are_isolated, |app| {
    // Setup: one live customer, one sandbox customer with the same address, a second org
    let live = app.create(&app.keys.prod, "iso@example.com").await;
    let sandbox = app.create(&app.keys.dev, "iso@example.com").await;
    assert_eq!(sandbox["newAccount"], true, "uniqueness is per space");
    assert_ne!(live["cuRefNo"], sandbox["cuRefNo"]);
    let other = support::make_keys(&app.store, "globex").await;
    let live_cu = live["cuRefNo"].as_str().unwrap();
    let sandbox_cu = sandbox["cuRefNo"].as_str().unwrap();

    // ROOT works on live data, DEV_ on the sandbox only
    assert_eq!(app.get(LIST, &app.keys.root, &[("cuRefNo", live_cu)]).await.0, 200);
    assert_eq!(app.get("/ping/v1", &app.keys.dev, &[]).await.1["mode"], "sandbox");
    let identity = "A".repeat(32);
    for (key, cu) in [
        (&app.keys.dev, live_cu),
        (&app.keys.prod, sandbox_cu),
        (&other.prod, live_cu),
        (&other.dev, sandbox_cu),
        (&other.root, live_cu),
    ] {
        assert_error(&app.get(LIST, key, &[("cuRefNo", cu)]).await, 404, "CUSTOMER_NOT_FOUND");
        assert_error(
            &app.get(DETAIL, key, &[("cuRefNo", cu), ("identityId", &identity)]).await,
            404,
            "CUSTOMER_NOT_FOUND",
        );
        let body = json!({ "managerCuRefNo": cu, "customerEmail": "x@example.com" });
        assert_error(&app.post("/api/v1/customer/customer-match-customer", key, body).await, 404, "MANAGER_NOT_FOUND");
        let body = json!({ "managerCuRefNo": cu, "customerCuRefNo": cu });
        assert_error(&app.post("/api/v1/customer/customer-match-remove", key, body).await, 404, "MANAGER_NOT_FOUND");
    }
    // The other organisation's create makes its own customer
    let theirs = app.create(&other.prod, "iso@example.com").await;
    assert_eq!(theirs["newAccount"], true);
    assert_ne!(theirs["cuRefNo"], live["cuRefNo"]);
    assert_eq!(app.get("/ping/v1", &other.prod, &[]).await.1["organisation"], "globex");
});

backend_test!(every_route_checks_its_scope, |app| {
    // Setup: for each scope, a ROOT key with every scope but that one, and one with only it.
    // They are the operator's (organisation `default`), so the admin routes' tenant rule
    // (another organisation's ROOT key may not create organisations) does not mask the check.
    app.store.ensure_organisation("default", "Default organisation").await.unwrap();
    let mut without = std::collections::HashMap::new();
    let mut only = std::collections::HashMap::new();
    for scope in Scope::ALL {
        let all_but: Vec<String> = Scope::ALL.iter().filter(|s| **s != scope).map(|s| s.as_str().to_owned()).collect();
        for (map, scopes) in [(&mut without, all_but), (&mut only, vec![scope.as_str().to_owned()])] {
            let key = ApiKey::generate(ApiKeyKind::Root);
            app.store.insert_key("default", &bizkit_mirror::server::new_key(&key, "scoped", scopes)).await.unwrap();
            map.insert(scope.as_str(), key);
        }
    }
    let routes = bizkit_mirror::http::route_table();
    let keyed: Vec<_> = routes.iter().filter_map(|r| r.scope.map(|s| (r, s))).collect();
    assert!(keyed.len() >= 6, "every customer route is keyed");
    for (route, scope) in keyed {
        let send = |key: &ApiKey| {
            let req = app.client.request(route.method.clone(), app.url(route.path)).query(&[("apiKey", key.expose())]);
            let req = if route.method == axum::http::Method::POST { req.json(&json!({})) } else { req };
            async move { split(req.send().await.unwrap()).await }
        };
        // Exec + Check: lacking the scope is 403; having only it gets past the check
        let denied = send(&without[scope.as_str()]).await;
        assert_error(&denied, 403, "PUBLIC_API_KEY_FORBIDDEN");
        let allowed = send(&only[scope.as_str()]).await;
        assert_ne!(allowed.0, 403, "{} {} with only {}: {}", route.method, route.path, scope.as_str(), allowed.1);
        assert_ne!(allowed.0, 401, "{}", allowed.1);
    }
});
