//! The customer endpoints end to end, on every backend.

use serde_json::{json, Value};

use crate::support::assert_error;

const CREATE: &str = "/api/v1/customer/create";
const DETAIL: &str = "/api/v1/customer/detail";
const MATCH: &str = "/api/v1/customer/customer-match-customer";
const LIST: &str = "/api/v1/customer/customer-match-list";
const REMOVE: &str = "/api/v1/customer/customer-match-remove";

fn cu(body: &Value) -> String {
    body["cuRefNo"].as_str().expect("cuRefNo").to_owned()
}

const PROFILE_FIELDS: [&str; 13] = [
    "cuRefNo",
    "creditBalance",
    "email",
    "phone",
    "firstName",
    "lastName",
    "companyName",
    "premium",
    "ban",
    "groups",
    "meta",
    "referral",
    "runningSubscriptionList",
];

backend_test!(create_new_then_existing_fills_only_empty_fields, |app| {
    // Exec: a new customer, with only some fields
    let key = &app.keys.prod;
    let (status, first) = app
        .post(CREATE, key, json!({ "email": "  Jane.Doe+shop@GoogleMail.com ", "companyName": "  Acme   s.r.o. ", "customerRealIp": "::1" }))
        .await;
    // Check
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["success"], true);
    assert_eq!(first["newAccount"], true);
    assert_eq!(first["email"], "jane.doe+shop@googlemail.com");
    assert_eq!(first["companyName"], "Acme s.r.o.");
    let code = cu(&first);
    assert!(code.len() == 16 && code.chars().all(|c| c.is_ascii_alphanumeric()), "{code}");
    for field in PROFILE_FIELDS {
        assert!(first.get(field).is_some(), "profile field {field} missing: {first}");
    }
    assert_eq!(first["creditBalance"], 0);
    assert_eq!(first["groups"], json!([]));
    assert_eq!(first["meta"], json!({}));
    assert_eq!(first["referral"], Value::Null);
    assert_eq!(first["phone"], Value::Null);

    // Exec: the same canonical address, other spelling, with a new company and a tax id
    let (status, second) = app
        .post(
            CREATE,
            key,
            json!({ "email": "janedoe@gmail.com", "companyName": "Other", "taxIdentificationNumber": "CZ123" }),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["newAccount"], false);
    assert_eq!(cu(&second), code);
    assert_eq!(second["companyName"], "Acme s.r.o.", "set fields are not overwritten");
    assert_eq!(second["email"], "jane.doe+shop@googlemail.com", "the stored address stays");
});

backend_test!(create_rejects_bad_input_and_changes_nothing, |app| {
    let key = &app.keys.prod;
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (json!({}), 400, "INVALID_REQUEST", Some("email")),
        (json!({ "email": 5 }), 400, "INVALID_REQUEST", Some("email")),
        (json!({ "email": "no-at-sign" }), 400, "INVALID_EMAIL", Some("email")),
        (json!({ "email": "a@b.com", "customerRealIp": "127.1" }), 400, "INVALID_IP_ADDRESS", Some("customerRealIp")),
        (json!({ "email": "a@b.com", "companyName": "x".repeat(256) }), 400, "VALUE_TOO_LONG", Some("companyName")),
        (json!({ "email": "a@b.com", "companyName": ["x"] }), 400, "INVALID_REQUEST", Some("companyName")),
    ];
    for (body, status, code, field) in cases {
        let got = app.post(CREATE, key, body.clone()).await;
        assert_error(&got, status, code);
        assert_eq!(got.1["error"]["field"].as_str(), field, "{body}");
    }
    // Nothing was created: the address is new on the next call.
    assert_eq!(app.create(key, "a@b.com").await["newAccount"], true);
});

backend_test!(concurrent_creates_make_one_customer, |app| {
    // Exec: 24 creates of one canonical address, spelled differently, at once
    let spellings = ["race.one@gmail.com", "RaceOne@gmail.com", "r.a.c.e.o.n.e+x@googlemail.com"];
    let futures = (0..24).map(|i| {
        let email = spellings[i % spellings.len()];
        app.post(CREATE, &app.keys.prod, json!({ "email": email }))
    });
    let results = futures::future::join_all(futures).await;
    // Check: all succeed, one is new, all share one cuRefNo
    let mut new = 0;
    let mut codes = std::collections::HashSet::new();
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
        new += usize::from(body["newAccount"] == true);
        codes.insert(cu(body));
    }
    assert_eq!(new, 1, "exactly one newAccount: true");
    assert_eq!(codes.len(), 1, "one customer: {codes:?}");
});

backend_test!(detail_logged_in_and_out, |app| {
    use bizkit_mirror::normalize::IdentityId;
    use bizkit_mirror::store::Mode;
    let key = &app.keys.prod;
    let created = app.create(key, "det@example.com").await;
    let code = cu(&created);
    let other = cu(&app.create(key, "other@example.com").await);
    let space = app.store.space_of("acme", Mode::Live).await.unwrap();
    let identity = IdentityId::generate();
    let expired = IdentityId::generate();
    let future = chrono::Utc::now() + chrono::TimeDelta::days(1);
    let past = chrono::Utc::now() - chrono::TimeDelta::days(1);
    assert!(app.db.insert_session(space, &code, &identity.digest(), future).await);
    assert!(app.db.insert_session(space, &code, &expired.digest(), past).await);

    // A live session of this customer
    let (status, body) = app
        .get(DETAIL, key, &[("identityId", identity.as_str()), ("cuRefNo", &code), ("customerRealIp", "1.1.1.1")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["loggedIn"], true);
    assert_eq!(body["cuRefNo"], code.as_str());
    assert_eq!(body["email"], "det@example.com");
    for field in PROFILE_FIELDS {
        assert!(body.get(field).is_some(), "profile field {field} missing: {body}");
    }
    // Unknown, expired, or another customer's session: logged out, no profile
    let unknown = IdentityId::generate();
    for (id, who) in [(unknown.as_str(), &code), (expired.as_str(), &code), (identity.as_str(), &other)] {
        let (status, body) = app.get(DETAIL, key, &[("identityId", id), ("cuRefNo", who)]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!({ "loggedIn": false }));
    }
    // Errors
    let ok_id = identity.as_str();
    assert_error(
        &app.get(DETAIL, key, &[("identityId", ok_id), ("cuRefNo", "AAAAAAAAAAAAAAAA")]).await,
        404,
        "CUSTOMER_NOT_FOUND",
    );
    assert_error(&app.get(DETAIL, key, &[("identityId", ok_id), ("cuRefNo", "short")]).await, 400, "INVALID_CU_REF_NO");
    assert_error(
        &app.get(DETAIL, key, &[("identityId", "short"), ("cuRefNo", &code)]).await,
        400,
        "INVALID_IDENTITY_ID",
    );
    assert_error(&app.get(DETAIL, key, &[("cuRefNo", &code)]).await, 400, "INVALID_REQUEST");
    assert_error(&app.get(DETAIL, key, &[("identityId", ok_id)]).await, 400, "INVALID_REQUEST");
    assert_error(
        &app.get(DETAIL, key, &[("identityId", ok_id), ("cuRefNo", &code), ("customerRealIp", "010.8.8.8")]).await,
        400,
        "INVALID_IP_ADDRESS",
    );
});

backend_test!(match_list_and_remove, |app| {
    let key = &app.keys.prod;
    let trainer = cu(&app.create(key, "trainer@example.com").await);
    let client = cu(&app.create(key, "client@example.com").await);

    // By cuRefNo with someone else's address as the contact e-mail (seed 000's shape)
    let body = json!({ "managerCuRefNo": trainer, "customerCuRefNo": client, "customerEmail": "Trainer@Example.com", "notice": "cardio" });
    let (status, res) = app.post(MATCH, key, body).await;
    assert_eq!((status, res), (200, json!({ "success": true })));

    // By e-mail alone: a new contact is created
    let (status, res) =
        app.post(MATCH, key, json!({ "managerCuRefNo": trainer, "customerEmail": "fresh@example.com" })).await;
    assert_eq!((status, res.clone()), (200, json!({ "success": true })), "{res}");

    let (status, list) = app.get(LIST, key, &[("cuRefNo", &trainer)]).await;
    assert_eq!(status, 200, "{list}");
    let customers = list["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 2, "{list}");
    assert_eq!(customers[0]["email"], "fresh@example.com", "newest first");
    assert_eq!(customers[1]["cuRefNo"], client.as_str());
    assert_eq!(customers[1]["notice"], "cardio");
    assert_eq!(customers[1]["contactEmail"], "trainer@example.com");
    assert!(customers[1]["createdAt"].is_string() && customers[1]["updatedAt"].is_string());
    assert_eq!(list["managers"], json!([]));
    assert_eq!(list["nextCursor"], Value::Null);

    // The notice is visible from the customer's side too; a repeat replaces it
    let (_, res) = app
        .post(MATCH, key, json!({ "managerCuRefNo": trainer, "customerCuRefNo": client, "notice": "weights" }))
        .await;
    assert_eq!(res["success"], true);
    let (_, list) = app.get(LIST, key, &[("cuRefNo", &client)]).await;
    assert_eq!(list["managers"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["managers"][0]["cuRefNo"], trainer.as_str());
    assert_eq!(list["managers"][0]["notice"], "weights");
    assert_eq!(list["managers"][0]["contactEmail"], "trainer@example.com", "kept when not given again");

    // A repeat without a notice keeps it
    app.post(MATCH, key, json!({ "managerCuRefNo": trainer, "customerCuRefNo": client })).await;
    let (_, list) = app.get(LIST, key, &[("cuRefNo", &client)]).await;
    assert_eq!(list["managers"][0]["notice"], "weights");

    // Remove
    let body = json!({ "managerCuRefNo": trainer, "customerCuRefNo": client });
    assert_eq!(app.post(REMOVE, key, body.clone()).await, (200, json!({ "success": true, "removed": true })));
    assert_eq!(app.post(REMOVE, key, body).await, (200, json!({ "success": true, "removed": false })));
    let (_, list) = app.get(LIST, key, &[("cuRefNo", &client)]).await;
    assert_eq!(list["managers"], json!([]));
});

backend_test!(match_errors_change_nothing, |app| {
    let key = &app.keys.prod;
    let a = cu(&app.create(key, "a@example.com").await);
    let b = cu(&app.create(key, "b@example.com").await);
    let ghost = "ZZZZZZZZZZZZZZZZ";
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({ "managerCuRefNo": ghost, "customerCuRefNo": b }), 404, "MANAGER_NOT_FOUND"),
        (json!({ "managerCuRefNo": a, "customerCuRefNo": ghost }), 404, "CUSTOMER_NOT_FOUND"),
        (json!({ "managerCuRefNo": a, "customerCuRefNo": a }), 400, "SELF_MATCH_NOT_ALLOWED"),
        (json!({ "managerCuRefNo": a, "customerEmail": "A@example.com" }), 400, "SELF_MATCH_NOT_ALLOWED"),
        (json!({ "managerCuRefNo": ghost, "customerEmail": "nobody-yet@example.com" }), 404, "MANAGER_NOT_FOUND"),
        (json!({ "managerCuRefNo": a }), 400, "INVALID_REQUEST"),
        (json!({ "customerCuRefNo": b }), 400, "INVALID_REQUEST"),
        (json!({ "managerCuRefNo": "bad!", "customerCuRefNo": b }), 400, "INVALID_CU_REF_NO"),
        (json!({ "managerCuRefNo": a, "customerCuRefNo": "bad" }), 400, "INVALID_CU_REF_NO"),
        (json!({ "managerCuRefNo": a, "customerEmail": "not an email" }), 400, "INVALID_EMAIL"),
        (json!({ "managerCuRefNo": a, "customerCuRefNo": b, "notice": "n".repeat(2001) }), 400, "VALUE_TOO_LONG"),
        (json!({ "managerCuRefNo": a, "customerCuRefNo": b, "notice": 7 }), 400, "INVALID_REQUEST"),
    ];
    for (body, status, code) in cases {
        let got = app.post(MATCH, key, body.clone()).await;
        assert_error(&got, status, code);
    }
    // The failed e-mail match made no contact, and no relation exists
    assert_eq!(app.create(key, "nobody-yet@example.com").await["newAccount"], true);
    let (_, list) = app.get(LIST, key, &[("cuRefNo", &a)]).await;
    assert_eq!((list["managers"].clone(), list["customers"].clone()), (json!([]), json!([])));
    // List and remove errors
    assert_error(&app.get(LIST, key, &[("cuRefNo", ghost)]).await, 404, "CUSTOMER_NOT_FOUND");
    assert_error(&app.get(LIST, key, &[("cuRefNo", "nope")]).await, 400, "INVALID_CU_REF_NO");
    assert_error(&app.get(LIST, key, &[]).await, 400, "INVALID_REQUEST");
    for limit in ["0", "501", "x"] {
        assert_error(&app.get(LIST, key, &[("cuRefNo", &a), ("limit", limit)]).await, 400, "INVALID_REQUEST");
    }
    assert_error(&app.get(LIST, key, &[("cuRefNo", &a), ("cursor", "garbage")]).await, 400, "INVALID_REQUEST");
    assert_error(
        &app.post(REMOVE, key, json!({ "managerCuRefNo": ghost, "customerCuRefNo": b })).await,
        404,
        "MANAGER_NOT_FOUND",
    );
    assert_error(
        &app.post(REMOVE, key, json!({ "managerCuRefNo": a, "customerCuRefNo": ghost })).await,
        404,
        "CUSTOMER_NOT_FOUND",
    );
    assert_error(&app.post(REMOVE, key, json!({ "managerCuRefNo": a })).await, 400, "INVALID_REQUEST");
});

backend_test!(concurrent_identical_matches_make_one_relation, |app| {
    let key = &app.keys.prod;
    let m = cu(&app.create(key, "m@example.com").await);
    let c = cu(&app.create(key, "c@example.com").await);
    let by_code = json!({ "managerCuRefNo": m, "customerCuRefNo": c, "notice": "same" });
    let by_email = json!({ "managerCuRefNo": m, "customerEmail": "new-one@example.com" });
    let results = futures::future::join_all((0..24).map(|i| {
        let body = if i % 2 == 0 { by_code.clone() } else { by_email.clone() };
        app.post(MATCH, key, body)
    }))
    .await;
    for (status, body) in &results {
        assert_eq!(*status, 200, "{body}");
    }
    let (_, list) = app.get(LIST, key, &[("cuRefNo", &m)]).await;
    let customers = list["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 2, "one relation each: {list}");
    let emails: std::collections::HashSet<_> = customers.iter().map(|c| c["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["c@example.com", "new-one@example.com"].into_iter().collect());
});

backend_test!(match_list_paginates_both_sides, |app| {
    let key = &app.keys.prod;
    let hub = cu(&app.create(key, "hub@example.com").await);
    let mut clients = Vec::new();
    for i in 0..7 {
        let c = cu(&app.create(key, &format!("client{i}@example.com")).await);
        app.post(MATCH, key, json!({ "managerCuRefNo": hub, "customerCuRefNo": c })).await;
        clients.push(c);
    }
    for i in 0..3 {
        let m = cu(&app.create(key, &format!("manager{i}@example.com")).await);
        app.post(MATCH, key, json!({ "managerCuRefNo": m, "customerCuRefNo": hub })).await;
    }
    // Walk pages of 3: customers 3+3+1, managers 3+0
    let mut seen_customers = Vec::new();
    let mut seen_managers = 0;
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut params = vec![("cuRefNo", hub.as_str()), ("limit", "3")];
        if let Some(c) = cursor.as_deref() {
            params.push(("cursor", c));
        }
        let (status, page) = app.get(LIST, key, &params).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen_managers += page["managers"].as_array().unwrap().len();
        seen_customers
            .extend(page["customers"].as_array().unwrap().iter().map(|c| c["cuRefNo"].as_str().unwrap().to_owned()));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen_managers, 3);
    clients.reverse();
    assert_eq!(seen_customers, clients, "newest first, each once");
});
