//! Profiles written end to end, on every backend: create-or-update, lookups by e-mail,
//! phone and alternates, credit with Idempotency-Key, and erasure down to the rows.

use bizkit_mirror::normalize::IdentityId;
use bizkit_mirror::store::Mode;
use serde_json::{json, Value};

use crate::support::{self, assert_error, TestApp};

const UPSERT: &str = "/api/v1/customer/create-or-update";
const CREDIT: &str = "/api/v1/customer/credit-add";
const DELETE: &str = "/api/v1/customer/delete";
const DETAIL: &str = "/api/v1/customer/detail";
const MATCH: &str = "/api/v1/customer/customer-match-customer";
const LIST: &str = "/api/v1/customer/customer-match-list";

fn cu(body: &Value) -> String {
    body["cuRefNo"].as_str().expect("cuRefNo").to_owned()
}

async fn upsert(app: &TestApp, body: Value) -> Value {
    let (status, res) = app.post(UPSERT, &app.keys.prod, body.clone()).await;
    assert_eq!(status, 200, "{body} → {res}");
    res
}

/// Starts a session for the customer and returns its identityId.
async fn login(app: &TestApp, cu_ref_no: &str) -> String {
    let space = app.store.space_of("acme", Mode::Live).await.unwrap();
    let id = IdentityId::generate();
    let expires_at = chrono::Utc::now() + chrono::TimeDelta::days(1);
    assert!(app.db.insert_session(space, cu_ref_no, &id.digest(), expires_at).await);
    id.as_str().to_owned()
}

async fn detail(app: &TestApp, cu_ref_no: &str, identity: &str) -> (u16, Value) {
    app.get(DETAIL, &app.keys.prod, &[("cuRefNo", cu_ref_no), ("identityId", identity)]).await
}

backend_test!(every_field_is_written_and_read_back, |app| {
    // Setup: a referrer
    let referrer = upsert(&app, json!({ "email": "coach@example.com", "firstName": "Eva" })).await;
    // Exec: a new contact with every field
    let created = upsert(
        &app,
        json!({
            "email": " Jan.Novak@Example.com ",
            "phone": "777 123 456",
            "firstName": "jan", "lastName": "  novák ", "companyName": "Novák  s.r.o.",
            "companyRegistrationNumber": "12345678", "taxIdentificationNumber": "CZ12345678",
            "premium": true,
            "groups": ["Osobní trenér", "VIP"],
            "meta": { "source": "web", "tier": { "level": 2 } },
            "referralCuRefNo": cu(&referrer),
            "subscriptions": [
                { "externalId": "sub-year", "productSlug": "predplatne-rocni", "productCode": "PR-1", "orderNumber": "25000001",
                  "orderHash": "h1", "autoRenew": true, "validUntil": "2999-01-01T00:00:00Z" },
                { "externalId": "sub-old", "productSlug": "old", "status": "active", "validUntil": "2001-01-01T00:00:00Z" },
                { "externalId": "sub-cancelled", "productSlug": "x", "status": "cancelled" }
            ]
        }),
    )
    .await;
    // Check
    assert_eq!(created["newAccount"], true);
    assert_eq!(created["email"], "jan.novak@example.com");
    assert_eq!(created["phone"], "+420 777123456");
    assert_eq!((created["firstName"].as_str(), created["lastName"].as_str()), (Some("Jan"), Some("Novák")));
    assert_eq!(created["companyName"], "Novák s.r.o.");
    assert_eq!((created["premium"].as_bool(), created["ban"].as_bool()), (Some(true), Some(false)));
    assert_eq!(
        created["groups"],
        json!([{ "name": "Osobní trenér", "slug": "osobni-trener" }, { "name": "VIP", "slug": "vip" }])
    );
    assert_eq!(created["meta"], json!({ "source": "web", "tier": { "level": 2 } }));
    assert_eq!(
        created["referral"],
        json!({ "code": cu(&referrer), "email": "coach@example.com", "firstName": "Eva", "lastName": null })
    );
    assert_eq!(
        created["runningSubscriptionList"],
        json!([{ "externalId": "sub-year", "productSlug": "predplatne-rocni", "productCode": "PR-1",
                 "orderNumber": "25000001", "orderHash": "h1", "autoRenew": true }]),
        "only active subscriptions not past validUntil run"
    );

    // Exec: update by cuRefNo: names, meta merge with null deleting, groups replaced,
    // a subscription cancelled, the referral cleared
    let code = cu(&created);
    let updated = upsert(
        &app,
        json!({
            "cuRefNo": code, "lastName": null, "companyName": "",
            "meta": { "source": null, "tier": { "vip": true } },
            "groups": ["VIP"], "referralCuRefNo": null,
            "subscriptions": [{ "externalId": "sub-year", "status": "cancelled" }]
        }),
    )
    .await;
    assert_eq!(updated["newAccount"], false);
    assert_eq!(cu(&updated), code);
    assert_eq!(updated["firstName"], "Jan", "fields not given are kept");
    assert_eq!((updated["lastName"].clone(), updated["companyName"].clone()), (Value::Null, Value::Null));
    assert_eq!(updated["meta"], json!({ "tier": { "level": 2, "vip": true } }));
    assert_eq!(updated["groups"], json!([{ "name": "VIP", "slug": "vip" }]));
    assert_eq!(updated["referral"], Value::Null);
    assert_eq!(updated["runningSubscriptionList"], json!([]));
    assert_eq!(updated["phone"], "+420 777123456");

    // Check: detail and the match list show the written fields
    let identity = login(&app, &code).await;
    let (status, seen) = detail(&app, &code, &identity).await;
    assert_eq!(status, 200);
    assert_eq!(seen["loggedIn"], true);
    for field in ["email", "phone", "firstName", "lastName", "groups", "meta", "premium", "runningSubscriptionList"] {
        assert_eq!(seen[field], updated[field], "detail {field}");
    }
    let (status, _) =
        app.post(MATCH, &app.keys.prod, json!({ "managerCuRefNo": cu(&referrer), "customerCuRefNo": code })).await;
    assert_eq!(status, 200);
    let (_, list) = app.get(LIST, &app.keys.prod, &[("cuRefNo", &cu(&referrer))]).await;
    let item = &list["customers"][0];
    assert_eq!((item["firstName"].as_str(), item["phone"].as_str()), (Some("Jan"), Some("+420 777123456")), "{item}");
});

backend_test!(contacts_are_found_by_email_phone_and_alternates, |app| {
    // Exec: a phone-only contact, then the same number spelled another way
    let phone_only = upsert(&app, json!({ "phone": "+420 777 000 111", "firstName": "Petr" })).await;
    assert_eq!((phone_only["newAccount"].as_bool(), phone_only["email"].clone()), (Some(true), Value::Null));
    let again = upsert(&app, json!({ "phone": "00420777000111", "lastName": "Malý" })).await;
    assert_eq!((again["newAccount"].as_bool(), cu(&again)), (Some(false), cu(&phone_only)));
    assert_eq!((again["firstName"].as_str(), again["lastName"].as_str()), (Some("Petr"), Some("Malý")));
    // An e-mail given with the number is added to the phone-only contact
    let with_email = upsert(&app, json!({ "email": "petr@example.com", "phone": "777000111" })).await;
    assert_eq!((with_email["newAccount"].as_bool(), cu(&with_email)), (Some(false), cu(&phone_only)));
    assert_eq!(with_email["email"], "petr@example.com");

    // Alternates find their contact
    let main = upsert(
        &app,
        json!({ "email": "main@example.com", "alternateEmails": ["Other.Addr@example.com"], "alternatePhones": ["+421 905 123 456"] }),
    )
    .await;
    let by_alt_email = upsert(&app, json!({ "email": "other.addr@EXAMPLE.com", "premium": true })).await;
    assert_eq!((by_alt_email["newAccount"].as_bool(), cu(&by_alt_email)), (Some(false), cu(&main)));
    assert_eq!(by_alt_email["email"], "main@example.com", "an alternate does not replace the address");
    let by_alt_phone = upsert(&app, json!({ "phone": "+421905123456" })).await;
    assert_eq!(cu(&by_alt_phone), cu(&main));

    // Two people sharing a number are not merged by it: an e-mail contact's phone does not
    // pull in a write that brings another e-mail
    let other = upsert(&app, json!({ "email": "partner@example.com", "phone": "+420 777 000 111" })).await;
    assert_eq!(other["newAccount"], true);
    assert_ne!(cu(&other), cu(&phone_only));
});

backend_test!(refused_writes_change_nothing, |app| {
    // Setup
    let a = upsert(
        &app,
        json!({ "email": "a@example.com", "firstName": "Ann", "subscriptions": [{ "externalId": "s-a" }] }),
    )
    .await;
    upsert(&app, json!({ "email": "b@example.com" })).await;
    let before = upsert(&app, json!({ "cuRefNo": cu(&a) })).await;
    let attempts = [
        (json!({ "cuRefNo": cu(&a), "firstName": "X", "phone": "777 12 345" }), 400, "INVALID_PHONE"),
        (json!({ "cuRefNo": cu(&a), "firstName": "X", "email": "b@example.com" }), 400, "INVALID_EMAIL"),
        (
            json!({ "cuRefNo": cu(&a), "firstName": "X", "referralCuRefNo": "AAAAAAAAAAAAAAAA" }),
            404,
            "CUSTOMER_NOT_FOUND",
        ),
        (json!({ "cuRefNo": "AAAAAAAAAAAAAAAA", "firstName": "X" }), 404, "CUSTOMER_NOT_FOUND"),
        (json!({ "cuRefNo": cu(&a), "firstName": "X", "groups": "VIP" }), 400, "INVALID_REQUEST"),
        (json!({ "firstName": "X" }), 400, "INVALID_REQUEST"),
        (
            json!({ "email": "b@example.com", "firstName": "X", "subscriptions": [{ "externalId": "s-a" }] }),
            400,
            "INVALID_REQUEST",
        ),
    ];
    for (body, status, code) in attempts {
        // Exec
        let got = app.post(UPSERT, &app.keys.prod, body.clone()).await;
        // Check
        assert_error(&got, status, code);
    }
    let after = upsert(&app, json!({ "cuRefNo": cu(&a) })).await;
    assert_eq!(before, after);
    let b = upsert(&app, json!({ "email": "b@example.com" })).await;
    assert_eq!((b["firstName"].clone(), b["runningSubscriptionList"].clone()), (Value::Null, json!([])));
});

backend_test!(ban_ends_sessions_and_the_sandbox_is_apart, |app| {
    let c = upsert(&app, json!({ "email": "banned@example.com" })).await;
    let identity = login(&app, &cu(&c)).await;
    assert_eq!(detail(&app, &cu(&c), &identity).await.1["loggedIn"], true);
    // Exec
    let banned = upsert(&app, json!({ "cuRefNo": cu(&c), "ban": true })).await;
    // Check
    assert_eq!(banned["ban"], true);
    assert_eq!(detail(&app, &cu(&c), &identity).await.1, json!({ "loggedIn": false }));
    let got = app.post(UPSERT, &app.keys.dev, json!({ "cuRefNo": cu(&c), "ban": false })).await;
    assert_error(&got, 404, "CUSTOMER_NOT_FOUND");
});

backend_test!(concurrent_writes_make_one_contact, |app| {
    // Exec: 16 concurrent first writes of one address, and of one phone-only number
    for body in [json!({ "email": "race@example.com", "firstName": "R" }), json!({ "phone": "+420 608 111 222" })] {
        let calls = (0..16).map(|_| app.post(UPSERT, &app.keys.prod, body.clone()));
        let results = futures::future::join_all(calls).await;
        // Check
        let mut codes: Vec<String> = Vec::new();
        let mut created = 0;
        for (status, res) in results {
            assert_eq!(status, 200, "{res}");
            created += usize::from(res["newAccount"] == true);
            codes.push(cu(&res));
        }
        codes.dedup();
        assert_eq!((created, codes.len()), (1, 1), "{body}");
    }
});

backend_test!(credit_is_a_ledger_and_idempotent, |app| {
    let c = cu(&upsert(&app, json!({ "email": "credit@example.com" })).await);
    let add = |amount: i64, key: Option<&'static str>| {
        let mut req = app.client.post(app.url(CREDIT)).bearer_auth(&app.keys.prod);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let body = json!({ "cuRefNo": c, "amount": amount, "reason": "test" });
        async move { support::split(req.json(&body).send().await.unwrap()).await }
    };
    // Exec / Check: appends and sums, negative amounts too
    assert_eq!(add(100, None).await, (200, json!({ "success": true, "creditBalance": 100 })));
    assert_eq!(add(-30, None).await, (200, json!({ "success": true, "creditBalance": 70 })));
    // A retried call with the same key counts once and returns the first result
    assert_eq!(add(5, Some("order-1")).await.1["creditBalance"], 75);
    assert_eq!(add(1, None).await.1["creditBalance"], 76);
    assert_eq!(add(5, Some("order-1")).await, (200, json!({ "success": true, "creditBalance": 75 })));
    // The same key with another request is refused
    assert_error(&add(6, Some("order-1")).await, 409, "IDEMPOTENCY_KEY_REUSED");
    // Concurrent retries of a new key count once
    let results = futures::future::join_all((0..12).map(|_| add(10, Some("order-2")))).await;
    assert!(results.iter().all(|r| r == &results[0] && r.0 == 200), "{results:?}");
    assert_eq!(results[0].1["creditBalance"], 86);
    let (_, profile) = app.post(UPSERT, &app.keys.prod, json!({ "cuRefNo": c })).await;
    assert_eq!(profile["creditBalance"], 86);
    // Bad input
    assert_error(&add(0, None).await, 400, "INVALID_REQUEST");
    let got = app.post(CREDIT, &app.keys.prod, json!({ "cuRefNo": "AAAAAAAAAAAAAAAA", "amount": 1 })).await;
    assert_error(&got, 404, "CUSTOMER_NOT_FOUND");
    let got = app.post(CREDIT, &app.keys.prod, json!({ "cuRefNo": c, "amount": 1.5 })).await;
    assert_error(&got, 400, "INVALID_REQUEST");
});

backend_test!(erasure_removes_personal_data_from_every_table, |app| {
    // Setup: a contact with data in every table that can hold it
    let key = &app.keys.prod;
    let manager = upsert(&app, json!({ "email": "manager@example.com" })).await;
    let c = upsert(
        &app,
        json!({ "email": "Erase.Me@example.com", "phone": "+420 777 999 888", "firstName": "Zdeňka", "lastName": "Smazalová",
                "companyName": "Erasable Ltd", "taxIdentificationNumber": "CZ99887766", "groups": ["VIP"],
                "meta": { "note": "ErasableMeta" }, "alternateEmails": ["erase.alt@example.com"],
                "alternatePhones": ["+421 905 777 666"], "referralCuRefNo": cu(&manager), "customerRealIp": "203.0.113.77",
                "subscriptions": [{ "externalId": "erasable-sub", "orderHash": "ErasableHash" }] }),
    )
    .await;
    let code = cu(&c);
    let identity = login(&app, &code).await;
    assert_eq!(app.post(CREDIT, key, json!({ "cuRefNo": code, "amount": 5, "reason": "ErasableReason" })).await.0, 200);
    let relation = json!({ "managerCuRefNo": cu(&manager), "customerCuRefNo": code, "notice": "ErasableNotice",
                           "customerEmail": "erase.contact@example.com" });
    assert_eq!(app.post(MATCH, key, relation).await.0, 200);
    let (status, _) = app
        .post("/contact/v1/register-account", key, json!({ "email": "erase.me@example.com", "password": "Secret123" }))
        .await;
    assert_eq!(status, 200);
    let personal = [
        "erase.me@example.com",
        "777999888",
        "Zdeňka",
        "Smazalová",
        "Erasable Ltd",
        "CZ99887766",
        "ErasableMeta",
        "erase.alt@example.com",
        "905777666",
        "203.0.113.77",
        "ErasableHash",
        "ErasableReason",
        "ErasableNotice",
        "erase.contact@example.com",
        "$argon2",
    ];
    let rows = support::dump_rows(&app.db).await;
    for value in personal {
        assert!(rows.contains(value), "setup should store {value}");
    }

    // Exec
    let (status, body) = app.post(DELETE, key, json!({ "cuRefNo": code })).await;

    // Check: the API
    assert_eq!((status, body), (200, json!({ "success": true })));
    assert_error(&detail(&app, &code, &identity).await, 404, "CUSTOMER_NOT_FOUND");
    assert_error(&app.post(DELETE, key, json!({ "cuRefNo": code })).await, 404, "CUSTOMER_NOT_FOUND");
    assert_error(&app.post(UPSERT, key, json!({ "cuRefNo": code })).await, 404, "CUSTOMER_NOT_FOUND");
    assert_error(&app.post(CREDIT, key, json!({ "cuRefNo": code, "amount": 1 })).await, 404, "CUSTOMER_NOT_FOUND");
    let (_, list) = app.get(LIST, key, &[("cuRefNo", &cu(&manager))]).await;
    assert_eq!(list["customers"], json!([]));
    // The address may come back as a new customer, with a new cuRefNo
    let again = upsert(&app, json!({ "email": "erase.me@example.com" })).await;
    assert_eq!(again["newAccount"], true);
    assert_ne!(cu(&again), code);
    upsert(&app, json!({ "cuRefNo": cu(&again), "email": "someone.else@example.com" })).await;
    // Check: the rows. The cuRefNo stays (reserved), nothing personal does
    let rows = support::dump_rows(&app.db).await;
    assert!(rows.contains(&code), "the erased cuRefNo stays reserved");
    for value in personal {
        assert!(!rows.contains(value), "{value} still stored:\n{rows}");
    }
    let sessions: Vec<&str> = rows.lines().filter(|l| l.starts_with("sessions:")).collect();
    assert!(sessions.is_empty(), "{sessions:?}");
});

backend_test!(idempotency_keys_and_outbox_tokens_expire, |app| {
    // Setup: a credit under a key, and a registration's queued confirmation
    let cu = cu(&upsert(&app, json!({ "email": "expiry@example.com" })).await);
    let credit = |amount: i64| {
        app.client
            .post(app.url(CREDIT))
            .bearer_auth(&app.keys.prod)
            .header("idempotency-key", "expiring-key")
            .json(&json!({ "cuRefNo": cu, "amount": amount, "reason": "expiry" }))
            .send()
    };
    assert_eq!(credit(5).await.unwrap().status().as_u16(), 200);
    assert_eq!(credit(6).await.unwrap().status().as_u16(), 409, "the same key, another request");
    let (status, _) = app
        .post(
            "/contact/v1/register-account",
            &app.keys.prod,
            json!({ "email": "late@example.com", "password": "Correct1Horse" }),
        )
        .await;
    assert_eq!(status, 200);

    // Exec: a day and more passes
    let long_ago = chrono::Utc::now() - chrono::TimeDelta::hours(49);
    app.db.set_created_at("idempotency_keys", long_ago).await;
    app.db.set_created_at("mail_outbox", long_ago).await;

    // Check: the key is free again, and a sweep forgets what has expired
    let res = credit(6).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(support::split(res).await.1["creditBalance"], 11);
    app.db.set_created_at("idempotency_keys", long_ago).await;
    let swept = app
        .store
        .sweep(chrono::Utc::now() - chrono::TimeDelta::hours(48), chrono::Utc::now() - chrono::TimeDelta::days(30))
        .await
        .unwrap();
    assert_eq!((swept.idempotency_keys, swept.outbox_bodies), (1, 1));
    let space = app.store.space_of("acme", Mode::Live).await.unwrap();
    let message = app.db.latest_outbox_message(space, "late@example.com").await.expect("still listed");
    assert_eq!(message.body, "", "an expired token is no longer readable");
});

backend_test!(stored_profile_parts_follow_every_write, |app| {
    let no_drift = |step: &'static str| {
        let db = &app.db;
        async move {
            let drift = db.profile_list_drift().await;
            assert!(drift.is_empty(), "after {step}: {drift:#?}");
        }
    };
    // Exec: a contact with groups and subscriptions, then every write that changes them
    let a = cu(&upsert(
        &app,
        json!({ "email": "lists-a@example.com",
                "groups": ["Zeta", "Alpha"],
                "subscriptions": [{ "externalId": "la-1", "productSlug": "p" },
                                  { "externalId": "la-2", "productSlug": "p", "status": "paused" }] }),
    )
    .await);
    no_drift("a create with lists").await;
    upsert(
        &app,
        json!({ "cuRefNo": a, "groups": ["Beta"],
                         "subscriptions": [{ "externalId": "la-2", "status": "active" },
                                           { "externalId": "la-1", "status": "cancelled" }] }),
    )
    .await;
    no_drift("an update of both lists").await;
    let b = cu(&upsert(
        &app,
        json!({ "email": "lists-b@example.com", "groups": ["Beta"],
                                     "subscriptions": [{ "externalId": "lb-1" }] }),
    )
    .await);
    for amount in [40, -15] {
        let (status, _) = app.post(CREDIT, &app.keys.prod, json!({ "cuRefNo": b, "amount": amount })).await;
        assert_eq!(status, 200);
    }
    no_drift("credit").await;
    let items = [
        json!({ "email": "lists-a@example.com", "groups": [] }),
        json!({ "email": "lists-c@example.com", "groups": ["Gamma", "Beta"],
                "subscriptions": [{ "externalId": "lc-1" }] }),
        json!({ "email": "lists-c@example.com", "subscriptions": [{ "externalId": "lc-2" }] }),
    ];
    let body: String = items.iter().map(|i| format!("{i}\n")).collect();
    let res = app
        .client
        .post(app.url("/api/v1/customer/import"))
        .bearer_auth(&app.keys.prod)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap();
    no_drift("an import").await;
    // One group kept, one left, one joined: only the difference is written.
    let (_, c) = app
        .post(
            UPSERT,
            &app.keys.prod,
            json!({ "email": "lists-c@example.com",
                                                         "groups": ["Delta", "Gamma"] }),
        )
        .await;
    let names: Vec<&str> = c["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Delta", "Gamma"], "{c}");
    no_drift("a change of groups").await;
    let (status, _) = app.post(DELETE, &app.keys.prod, json!({ "cuRefNo": b })).await;
    assert_eq!(status, 200);
    no_drift("an erasure").await;
    // Check: the profile read from the stored parts
    let (_, profile) = app.post(UPSERT, &app.keys.prod, json!({ "cuRefNo": a })).await;
    assert_eq!(profile["groups"], json!([]));
    assert_eq!(profile["runningSubscriptionList"][0]["externalId"], "la-2", "{profile}");
});
