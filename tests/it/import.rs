//! Bulk import over HTTP, on every backend: both input formats, bad items reported
//! without stopping the rest, broken input, and a streamed body of thousands of items.

use serde_json::{json, Value};

use crate::support::{self, assert_error, TestApp};

const IMPORT: &str = "/api/v1/customer/import";

async fn import(app: &TestApp, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let res = app
        .client
        .post(app.url(IMPORT))
        .bearer_auth(&app.keys.prod)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request");
    support::split(res).await
}

fn codes(results: &Value) -> Vec<Value> {
    results
        .as_array()
        .expect("results")
        .iter()
        .map(|r| if r["ok"] == true { json!(r["newAccount"]) } else { r["error"]["code"].clone() })
        .collect()
}

backend_test!(a_json_array_reports_one_result_per_item, |app| {
    // Exec
    let items = json!([
        { "email": "ana@example.com", "firstName": "ana", "groups": ["Osobní trenér"] },
        { "email": "not-an-address" },
        { "email": "ANA@example.com", "phone": "777 123 456" },
        "a string",
        { "phone": "+421 905 123 456", "meta": { "source": "import" } },
        { "cuRefNo": "AAAAAAAAAAAAAAAA", "firstName": "Nobody" }
    ]);
    let (status, body) = import(&app, "application/json", items.to_string()).await;
    // Check
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(
        body["summary"],
        json!({ "items": 6, "ok": 3, "created": 2, "failed": 3, "complete": true, "error": null })
    );
    assert_eq!(
        codes(&body["results"]),
        [
            json!(true),
            json!("INVALID_EMAIL"),
            json!(false),
            json!("INVALID_REQUEST"),
            json!(true),
            json!("CUSTOMER_NOT_FOUND")
        ]
    );
    let indexes: Vec<_> = body["results"].as_array().unwrap().iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, [0, 1, 2, 3, 4, 5]);
    assert_eq!(body["results"][1]["error"]["field"], "email");
    assert_eq!(body["results"][0]["cuRefNo"], body["results"][2]["cuRefNo"]);
    // The items were written as create-or-update writes them
    let code = body["results"][0]["cuRefNo"].as_str().unwrap();
    let (_, profile) = app.post("/api/v1/customer/create-or-update", &app.keys.prod, json!({ "cuRefNo": code })).await;
    assert_eq!((profile["firstName"].as_str(), profile["phone"].as_str()), (Some("Ana"), Some("+420 777123456")));
    assert_eq!(profile["groups"], json!([{ "name": "Osobní trenér", "slug": "osobni-trener" }]));
});

backend_test!(ndjson_goes_on_past_a_broken_line, |app| {
    let body =
        "{\"email\": \"one@example.com\"}\r\n\n{\"email\": \"two@example.com\",\n{\"email\": \"three@example.com\"}\n";
    let (status, res) = import(&app, "application/x-ndjson", body).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(codes(&res["results"]), [json!(true), json!("INVALID_REQUEST"), json!(true)]);
    assert_eq!(res["summary"]["complete"], true);
});

backend_test!(broken_input_and_bad_requests, |app| {
    // A JSON array broken half-way: what came before is written and reported
    let (status, res) = import(&app, "application/json", r#"[{"email": "first@example.com"}, {"email": "#).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["success"], false);
    assert_eq!(res["summary"]["complete"], false);
    assert_eq!(res["summary"]["error"]["code"], "INVALID_REQUEST");
    assert_eq!(codes(&res["results"]), [json!(true)]);
    // Broken before any item: the plain error envelope
    assert_error(&import(&app, "application/json", "[}").await, 400, "INVALID_REQUEST");
    // An empty body imports nothing
    let (status, res) = import(&app, "application/x-ndjson", "").await;
    assert_eq!((status, res["summary"]["items"].as_u64()), (200, Some(0)), "{res}");
    // Other media types, keys without the scope, no key
    assert_error(&import(&app, "text/csv", "email\na@example.com").await, 415, "UNSUPPORTED_MEDIA_TYPE");
    let res =
        app.client.post(app.url(IMPORT)).header("content-type", "application/json").body("[]").send().await.unwrap();
    assert_error(&support::split(res).await, 401, "PUBLIC_API_KEY_DOES_NOT_EXIST");
    let writer = app.key_with_scopes(&["customer:write"]).await;
    let res =
        app.client.post(app.url(IMPORT)).bearer_auth(writer).header("content-type", "application/json").body("[]");
    assert_error(&support::split(res.send().await.unwrap()).await, 403, "PUBLIC_API_KEY_FORBIDDEN");
});

backend_test!(a_streamed_body_of_thousands_of_items, |app| {
    // Setup: 3,000 items sent in small chunks, as a client streaming a file would
    let count = 3_000;
    let chunks: Vec<String> = (0..count)
        .collect::<Vec<_>>()
        .chunks(100)
        .map(|chunk| {
            chunk
                .iter()
                .map(|i| {
                    format!(
                        "{{\"email\": \"bulk{i}@example.com\", \"phone\": \"+420 7{i:08}\", \"groups\": [\"Bulk\"]}}\n"
                    )
                })
                .collect()
        })
        .collect();
    // Exec, twice: the second run finds every contact
    for created in [count, 0] {
        let body =
            reqwest::Body::wrap_stream(futures::stream::iter(chunks.clone().into_iter().map(Ok::<_, std::io::Error>)));
        let (status, res) = import(&app, "application/x-ndjson", body).await;
        // Check
        assert_eq!(status, 200);
        assert_eq!(
            res["summary"],
            json!({ "items": count, "ok": count, "created": created, "failed": 0, "complete": true, "error": null })
        );
        assert_eq!(res["results"][count - 1]["index"], count - 1);
    }
});

/// Losing the database before anything is written is a 503, for an import as for one write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_is_503_postgres() {
    let Some(app) = support::spawn_app(support::Backend::Postgres).await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    let outage = support::Outage::start(&app).await;
    let got = import(&app, "application/x-ndjson", "{\"email\": \"down@example.com\"}\n").await;
    assert_error(&got, 503, "SERVICE_UNAVAILABLE");
    let got =
        app.post("/api/v1/customer/create-or-update", &app.keys.prod, json!({ "email": "down@example.com" })).await;
    assert_error(&got, 503, "SERVICE_UNAVAILABLE");
    outage.end().await;
    let (status, res) = import(&app, "application/x-ndjson", "{\"email\": \"down@example.com\"}\n").await;
    assert_eq!((status, res["summary"]["created"].as_u64()), (200, Some(1)), "{res}");
}

backend_test!(garbage_stops_after_too_many_failed_items, |app| {
    // Setup: 5 MB of lines that are not JSON
    let garbage = "x\n".repeat(5 * 1024 * 1024 / 2);

    // Exec
    let res = app
        .client
        .post(app.url(IMPORT))
        .bearer_auth(&app.keys.prod)
        .header("content-type", "application/x-ndjson")
        .body(garbage)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let bytes = res.bytes().await.expect("answer");

    // Check: stopped at the limit, and the answer is far smaller than the input
    assert_eq!(status, 200);
    assert!(bytes.len() < 1024 * 1024, "an answer of {} bytes to 5 MB of garbage", bytes.len());
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["summary"]["items"], 1000);
    assert_eq!(body["summary"]["failed"], 1000);
    assert_eq!(body["summary"]["complete"], false);
    assert_eq!(body["summary"]["error"]["code"], "IMPORT_TOO_MANY_ERRORS");
    assert_eq!(body["results"].as_array().unwrap().len(), 1000);
});

/// An import past its item or byte limit stops there: what came before is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_is_limited_in_items_and_bytes() {
    use crate::support::child::ChildServer;
    let server = ChildServer::new(["serve", "--demo"])
        .fresh_sqlite()
        .env("IMPORT_MAX_ITEMS", "3")
        .env("IMPORT_MAX_BYTES", "100000")
        .unlimited_rates()
        .start();
    let send = |body: String| {
        let url = server.url(IMPORT);
        async move {
            let res = reqwest::Client::new()
                .post(url)
                .bearer_auth(crate::support::child::DEMO_PROD)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .expect("request");
            support::split(res).await
        }
    };
    let item = |i: usize| json!({ "email": format!("limit{i}@example.com") }).to_string();

    // Items: the first three are written, then the import stops
    let (status, body) = send((0..5).map(item).collect::<Vec<_>>().join("\n")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summary"]["items"], 3, "{body}");
    assert_eq!(body["summary"]["created"], 3, "{body}");
    assert_eq!(body["summary"]["complete"], false);
    assert_eq!(body["summary"]["error"]["code"], "PAYLOAD_TOO_LARGE");

    // Bytes: an input past the limit stops where the limit is reached
    let padded = |i: usize| json!({ "email": format!("bytes{i}@example.com"), "meta": { "pad": "x".repeat(40_000) } });
    let (status, body) = send([padded(0), padded(1), padded(2)].map(|v| v.to_string()).join("\n")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["summary"]["complete"], false, "{body}");
    assert_eq!(body["summary"]["error"]["code"], "PAYLOAD_TOO_LARGE", "{body}");
    assert!(body["summary"]["items"].as_u64().unwrap() < 3, "{body}");
}

// In-batch semantics: the items of one batch are decided in order, each seeing the ones
// before it, exactly as the same items sent one by one through create-or-update.

const UPSERT: &str = "/api/v1/customer/create-or-update";

async fn import_items(app: &TestApp, items: &[Value]) -> Value {
    let body: String = items.iter().map(|i| format!("{i}\n")).collect();
    let (status, res) = import(app, "application/x-ndjson", body).await;
    assert_eq!(status, 200, "{res}");
    res
}

fn cu_of(res: &Value, i: usize) -> String {
    res["results"][i]["cuRefNo"].as_str().unwrap_or_else(|| panic!("item {i} has a cuRefNo: {res}")).to_owned()
}

async fn profile(app: &TestApp, cu_ref_no: &str) -> Value {
    let (status, body) = app.post(UPSERT, &app.keys.prod, json!({ "cuRefNo": cu_ref_no })).await;
    assert_eq!(status, 200, "{body}");
    body
}

backend_test!(duplicates_within_one_batch_update_the_first, |app| {
    // Exec: one address twice; an alternate found by a later item; a phone-only contact,
    // then the same number with an address
    let res = import_items(
        &app,
        &[
            json!({ "email": "twice@example.com", "firstName": "First" }),
            json!({ "email": "TWICE@example.com", "lastName": "Second", "meta": { "seen": 2 } }),
            json!({ "email": "own@example.com", "alternateEmails": ["alt@example.com"] }),
            json!({ "email": "alt@example.com", "firstName": "Alt" }),
            json!({ "phone": "+420 777 100 200", "firstName": "Phone" }),
            json!({ "phone": "777 100 200", "email": "later@example.com" }),
        ],
    )
    .await;
    // Check
    assert_eq!(codes(&res["results"]), [true, false, true, false, true, false].map(|b| json!(b)));
    assert_eq!(cu_of(&res, 0), cu_of(&res, 1));
    assert_eq!(cu_of(&res, 2), cu_of(&res, 3));
    assert_eq!(cu_of(&res, 4), cu_of(&res, 5));
    let twice = profile(&app, &cu_of(&res, 0)).await;
    assert_eq!(
        (&twice["firstName"], &twice["lastName"], &twice["meta"]),
        (&json!("First"), &json!("Second"), &json!({ "seen": 2 }))
    );
    // An alternate finds its contact, and does not replace the contact's own address
    let own = profile(&app, &cu_of(&res, 2)).await;
    assert_eq!((&own["email"], &own["firstName"]), (&json!("own@example.com"), &json!("Alt")));
    let phone = profile(&app, &cu_of(&res, 4)).await;
    assert_eq!((&phone["email"], &phone["firstName"]), (&json!("later@example.com"), &json!("Phone")));
    assert_eq!(res["summary"]["created"], 3);
});

backend_test!(a_refused_item_leaves_nothing_and_spares_its_neighbours, |app| {
    // Setup: a contact outside the batch
    let (_, existing) =
        app.post(UPSERT, &app.keys.prod, json!({ "email": "kept@example.com", "firstName": "Kept" })).await;
    let kept = existing["cuRefNo"].as_str().unwrap().to_owned();
    // Exec: refusals between accepted items, some of them about the accepted ones
    let big = "x".repeat(17 * 1024);
    let res = import_items(
        &app,
        &[
            json!({ "email": "new@example.com", "firstName": "New", "groups": ["A"] }),
            json!({ "email": "new@example.com", "firstName": "Never", "groups": ["B"], "meta": { "big": big } }),
            json!({ "cuRefNo": kept, "email": "new@example.com", "firstName": "Never" }),
            json!({ "cuRefNo": "AAAAAAAAAAAAAAAA", "firstName": "Nobody" }),
            json!({ "firstName": "No contact point" }),
            json!({ "email": "new@example.com", "alternateEmails": (0..15).map(|i| format!("a{i}@example.com")).collect::<Vec<_>>() }),
            json!({ "email": "new@example.com", "alternatePhones": (0..6).map(|i| format!("+420 777 200 00{i}")).collect::<Vec<_>>() }),
            json!({ "email": "new@example.com", "referralCuRefNo": "AAAAAAAAAAAAAAAA" }),
            json!({ "cuRefNo": kept, "lastName": "Updated" }),
            json!({ "email": "new@example.com", "lastName": "Still" }),
        ],
    )
    .await;
    // Check
    assert_eq!(
        codes(&res["results"]),
        [
            json!(true),
            json!("VALUE_TOO_LONG"),
            json!("INVALID_EMAIL"),
            json!("CUSTOMER_NOT_FOUND"),
            json!("INVALID_REQUEST"),
            json!(false),
            json!("VALUE_TOO_LONG"),
            json!("CUSTOMER_NOT_FOUND"),
            json!(false),
            json!(false)
        ]
    );
    let new = profile(&app, &cu_of(&res, 0)).await;
    assert_eq!((&new["firstName"], &new["lastName"]), (&json!("New"), &json!("Still")));
    assert_eq!(new["groups"], json!([{ "name": "A", "slug": "a" }]));
    assert_eq!(new["meta"], json!({}));
    assert!(new["referral"].is_null(), "{new}");
    let kept = profile(&app, &kept).await;
    assert_eq!(
        (&kept["email"], &kept["firstName"], &kept["lastName"]),
        (&json!("kept@example.com"), &json!("Kept"), &json!("Updated"))
    );
    // The refused item's group was never created
    let (_, b) = app.post(UPSERT, &app.keys.prod, json!({ "email": "b@example.com", "groups": ["B"] })).await;
    assert_eq!(b["groups"], json!([{ "name": "B", "slug": "b" }]));
    assert!(app.db.profile_list_drift().await.is_empty());
});

backend_test!(a_batch_mixes_new_and_existing_contacts, |app| {
    // Setup
    let (_, one) = app.post(UPSERT, &app.keys.prod, json!({ "email": "one@example.com", "groups": ["Old"] })).await;
    let (_, two) = app.post(UPSERT, &app.keys.prod, json!({ "phone": "+420 777 000 002", "premium": true })).await;
    // Exec
    let res = import_items(
        &app,
        &[
            json!({ "email": "fresh1@example.com" }),
            json!({ "email": "one@example.com", "groups": ["New"], "alternatePhones": ["+420 777 000 009"] }),
            json!({ "phone": "+420 777 000 002", "firstName": "Two" }),
            json!({ "email": "fresh2@example.com", "phone": "+420 777 000 009" }),
            json!({ "phone": "+420 777 000 009", "lastName": "ByAlternate" }),
        ],
    )
    .await;
    // Check
    assert_eq!(codes(&res["results"]), [true, false, false, true, false].map(|b| json!(b)));
    assert_eq!(cu_of(&res, 1), one["cuRefNo"].as_str().unwrap());
    assert_eq!(cu_of(&res, 2), two["cuRefNo"].as_str().unwrap());
    // A phone-only item finds the contact whose own phone it is before another's alternate
    assert_eq!(cu_of(&res, 4), cu_of(&res, 3));
    let one = profile(&app, &cu_of(&res, 1)).await;
    assert_eq!(one["groups"], json!([{ "name": "New", "slug": "new" }]));
    let two = profile(&app, &cu_of(&res, 2)).await;
    assert_eq!((&two["firstName"], &two["premium"]), (&json!("Two"), &json!(true)));
    assert!(app.db.profile_list_drift().await.is_empty());
});

backend_test!(the_same_list_again_writes_only_what_it_changes, |app| {
    // Setup: two contacts with a group, a phone and meta
    let items = [
        json!({ "email": "same@example.com", "phone": "+420 777 000 101", "firstName": "Same",
                "groups": ["Newsletter"], "meta": { "source": "crm" } }),
        json!({ "email": "edited@example.com", "firstName": "Before", "groups": ["Newsletter"] }),
    ];
    import_items(&app, &items).await;
    let listed = || async {
        let (status, body) = app.get("/api/v1/customer/list", &app.keys.prod, &[]).await;
        assert_eq!(status, 200, "{body}");
        let by_email =
            |email: &str| body["customers"].as_array().unwrap().iter().find(|c| c["email"] == email).cloned().unwrap();
        (by_email("same@example.com"), by_email("edited@example.com"))
    };
    let (same_before, edited_before) = listed().await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    // Exec: the same list again, one first name changed
    let mut again = items.clone();
    again[1]["firstName"] = json!("After");
    let res = import_items(&app, &again).await;
    // Check: both found; the untouched one keeps its row (and `updatedAt`), the other changed
    assert_eq!(codes(&res["results"]), [json!(false), json!(false)]);
    let (same_after, edited_after) = listed().await;
    assert_eq!(same_after, same_before);
    assert_eq!(edited_after["firstName"], "After");
    assert!(edited_after["updatedAt"].as_str() > edited_before["updatedAt"].as_str(), "{edited_after}");
    assert!(app.db.profile_list_drift().await.is_empty());
});

backend_test!(a_ban_in_a_batch_ends_the_sessions, |app| {
    // Setup: a contact with a live session
    let (_, c) = app.post(UPSERT, &app.keys.prod, json!({ "email": "banned@example.com" })).await;
    let code = c["cuRefNo"].as_str().unwrap().to_owned();
    let space = app.store.space_of("acme", bizkit_mirror::store::Mode::Live).await.unwrap();
    let identity = bizkit_mirror::normalize::IdentityId::generate();
    let expires_at = chrono::Utc::now() + chrono::TimeDelta::days(1);
    assert!(app.db.insert_session(space, &code, &identity.digest(), expires_at).await);
    let params = [("cuRefNo", code.as_str()), ("identityId", identity.as_str())];
    let detail = || app.get("/api/v1/customer/detail", &app.keys.prod, &params);
    assert_eq!(detail().await.1["loggedIn"], true);
    // Exec: banned, then the ban lifted, in one batch
    let res = import_items(
        &app,
        &[json!({ "cuRefNo": code, "ban": true }), json!({ "email": "banned@example.com", "ban": false })],
    )
    .await;
    // Check: the sessions stay ended
    assert_eq!(codes(&res["results"]), [json!(false), json!(false)]);
    assert_eq!(detail().await.1, json!({ "loggedIn": false }));
    assert_eq!(profile(&app, &code).await["ban"], false);
});

backend_test!(a_referral_finds_a_contact_created_earlier_in_the_batch, |app| {
    use bizkit_mirror::normalize::{CuRefNo, Email};
    use bizkit_mirror::store::{ContactWrite, Mode};
    // Setup: the cuRefNo a new contact gets is known only to the store's own callers (the seed)
    let space = app.store.space_of("acme", Mode::Live).await.unwrap();
    let referrer = CuRefNo::generate();
    let write = |email: &str| ContactWrite { email: Some(Email::parse(email).unwrap()), ..Default::default() };
    let writes = [
        ContactWrite { new_cu_ref_no: Some(referrer.clone()), ..write("referrer@example.com") },
        ContactWrite { referral: Some(Some(referrer.clone())), ..write("referred@example.com") },
        ContactWrite { referral: Some(Some(CuRefNo::generate())), ..write("unknown@example.com") },
    ];
    // Exec
    let written = app.store.import_contacts(space, &writes).await.unwrap();
    // Check
    assert_eq!(written[0].as_ref().unwrap().cu_ref_no, referrer.as_str());
    assert_eq!(written[2], Err(bizkit_mirror::store::ContactRefusal::ReferrerNotFound));
    let referred = profile(&app, &written[1].as_ref().unwrap().cu_ref_no).await;
    assert_eq!(referred["referral"]["code"], referrer.as_str(), "{referred}");
    assert_eq!(referred["referral"]["email"], "referrer@example.com");
});

backend_test!(subscriptions_in_a_batch_stay_with_their_contact, |app| {
    // Setup: a contact with a running subscription
    let (_, a) = app
        .post(
            UPSERT,
            &app.keys.prod,
            json!({ "email": "a@example.com", "subscriptions": [{ "externalId": "S1", "productSlug": "p" }] }),
        )
        .await;
    // Exec
    let res = import_items(
        &app,
        &[
            json!({ "email": "b@example.com", "subscriptions": [{ "externalId": "S1" }] }),
            json!({ "email": "a@example.com", "subscriptions": [{ "externalId": "S1", "status": "cancelled" }] }),
            json!({ "email": "c@example.com", "subscriptions": [{ "externalId": "S2", "productSlug": "first" }] }),
            json!({ "email": "c@example.com", "subscriptions": [{ "externalId": "S2", "productCode": "X" }, { "externalId": "S3" }] }),
            json!({ "email": "d@example.com", "subscriptions": [{ "externalId": "S2" }] }),
            json!({ "email": "d@example.com", "phone": "+420 777 555 666" }),
        ],
    )
    .await;
    // Check
    let got = codes(&res["results"]);
    assert_eq!(
        got,
        [json!("INVALID_REQUEST"), json!(false), json!(true), json!(false), json!("INVALID_REQUEST"), json!(true)]
    );
    assert_eq!(res["results"][0]["error"]["field"], "subscriptions.externalId");
    let a = profile(&app, a["cuRefNo"].as_str().unwrap()).await;
    assert_eq!(a["runningSubscriptionList"], json!([]));
    let c = profile(&app, &cu_of(&res, 2)).await;
    let running: Vec<_> = c["runningSubscriptionList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["externalId"].clone(), s["productSlug"].clone(), s["productCode"].clone()))
        .collect();
    assert_eq!(running, [(json!("S2"), json!("first"), json!("X")), (json!("S3"), json!(""), json!(""))]);
    let d = profile(&app, &cu_of(&res, 5)).await;
    assert_eq!(d["runningSubscriptionList"], json!([]));
    assert!(app.db.profile_list_drift().await.is_empty());
});

/// A small deterministic generator (xorshift64*), so the random batch is the same on
/// every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[self.below(list.len())]
    }
}

/// One random create-or-update over small pools of addresses, numbers, groups and
/// subscriptions, so items keep meeting each other's contacts.
///
/// With `spread` above 1, each address, number and subscription comes in `spread` kinds
/// (`3a@example.com`, `+420 777 003 001`, `s1-3`), so that items meet less often.
fn random_item(rng: &mut Rng, spread: usize) -> Value {
    const EMAILS: &[&str] =
        &["a@example.com", "B@example.com", "c@example.com", "d@example.com", "e@example.com", "f@example.com"];
    const PHONES: &[&str] = &["+420 777 000 001", "+420 777 000 002", "+420 777 000 003", "+420 777 000 004"];
    fn one_of(rng: &mut Rng, list: &[&str], spread: usize, kind: fn(&str, usize) -> String) -> String {
        let base = rng.pick(list);
        if spread > 1 {
            kind(base, rng.below(spread))
        } else {
            base.to_owned()
        }
    }
    let email = |rng: &mut Rng| one_of(rng, EMAILS, spread, |e, k| format!("{k}{e}"));
    let phone = |rng: &mut Rng| one_of(rng, PHONES, spread, |p, k| p.replacen("000", &format!("{k:03}"), 1));
    const NAMES: &[&str] = &["ana", "Bob", "Cyril", ""];
    const GROUPS: &[&str] = &["Gold", "Silver", "Bronze", "gold"];
    const EXTERNAL: &[&str] = &["s1", "s2", "s3", "s4"];
    const STATUS: &[&str] = &["active", "paused", "cancelled", "expired"];
    let mut item = serde_json::Map::new();
    if rng.chance(70) {
        item.insert("email".into(), json!(email(rng)));
    }
    if rng.chance(50) {
        item.insert("phone".into(), json!(phone(rng)));
    }
    for (field, percent) in [
        ("firstName", 40),
        ("lastName", 30),
        ("companyName", 15),
        ("companyRegistrationNumber", 10),
        ("taxIdentificationNumber", 10),
    ] {
        if rng.chance(percent) {
            let value = if rng.chance(20) { Value::Null } else { json!(rng.pick(NAMES)) };
            item.insert(field.into(), value);
        }
    }
    for field in ["premium", "ban"] {
        if rng.chance(20) {
            item.insert(field.into(), json!(rng.chance(50)));
        }
    }
    if rng.chance(25) {
        let n = rng.below(3);
        item.insert("alternateEmails".into(), json!((0..n).map(|_| email(rng)).collect::<Vec<_>>()));
    }
    if rng.chance(20) {
        let n = rng.below(3);
        item.insert("alternatePhones".into(), json!((0..n).map(|_| phone(rng)).collect::<Vec<_>>()));
    }
    if rng.chance(30) {
        let n = rng.below(3);
        let mut groups: Vec<&str> = (0..n).map(|_| rng.pick(GROUPS)).collect();
        groups.dedup();
        item.insert("groups".into(), json!(groups));
    }
    if rng.chance(35) {
        let mut meta = serde_json::Map::new();
        for key in ["k1", "k2", "k3"] {
            if rng.chance(50) {
                let value = match rng.below(4) {
                    0 => Value::Null,
                    1 => json!({ "inner": rng.below(3), "gone": null }),
                    2 if rng.chance(15) => json!("y".repeat(9 * 1024)),
                    _ => json!(rng.below(100)),
                };
                meta.insert(key.into(), value);
            }
        }
        item.insert("meta".into(), Value::Object(meta));
    }
    if rng.chance(25) {
        let subscriptions: Vec<Value> = (0..1 + rng.below(2))
            .map(|_| {
                let mut s = json!({ "externalId": one_of(rng, EXTERNAL, spread, |s, k| format!("{s}-{k}")) });
                if rng.chance(50) {
                    s["status"] = json!(rng.pick(STATUS));
                }
                if rng.chance(40) {
                    s["productSlug"] = json!(rng.pick(NAMES));
                }
                if rng.chance(30) {
                    s["autoRenew"] = json!(rng.chance(50));
                }
                if rng.chance(40) {
                    s["validUntil"] = if rng.chance(30) {
                        Value::Null
                    } else {
                        json!(["2001-01-01T00:00:00Z", "2999-06-01T12:00:00Z"][rng.below(2)])
                    };
                }
                s
            })
            .collect();
        item.insert("subscriptions".into(), json!(subscriptions));
    }
    if rng.chance(15) {
        item.insert("customerRealIp".into(), json!(["192.0.2.1", "198.51.100.7"][rng.below(2)]));
    }
    Value::Object(item)
}

/// The outcome of an item without its cuRefNo: created, updated, or the error code.
fn outcome(r: &Value) -> Value {
    if r["ok"] == true || r["success"] == true {
        json!(r["newAccount"])
    } else {
        r["error"]["code"].clone()
    }
}

/// Writes `items` one create-or-update at a time into organisation `other`'s live space
/// (`key`), and checks that `results`, of the same items imported into acme's, came to
/// the same: each item's outcome, the same contacts written to by the same items, and
/// the same rows.
async fn assert_as_one_by_one(app: &TestApp, key: &str, items: &[Value], results: &[Value], seed: u64) {
    use bizkit_mirror::store::Mode;
    let mut single = Vec::new();
    for item in items {
        let (status, body) = app.post(UPSERT, key, item.clone()).await;
        assert!(status == 200 || status == 400 || status == 404, "{item} → {status} {body}");
        single.push(body);
    }
    assert_eq!(results.len(), single.len(), "seed {seed:x}");
    for (i, (batched, one)) in results.iter().zip(&single).enumerate() {
        assert_eq!(outcome(batched), outcome(one), "seed {seed:x} item {i}: {}", items[i]);
    }
    let same = |list: Vec<Option<&str>>| -> Vec<Option<usize>> {
        list.iter().map(|c| c.and_then(|c| list.iter().position(|d| *d == Some(c)))).collect()
    };
    assert_eq!(
        same(results.iter().map(|r| r["cuRefNo"].as_str()).collect()),
        same(single.iter().map(|r| r["cuRefNo"].as_str()).collect()),
        "seed {seed:x}"
    );
    let live = app.store.space_of("acme", Mode::Live).await.unwrap();
    let other = app.store.space_of("other", Mode::Live).await.unwrap();
    let (a, b) = (app.db.space_snapshot(live).await, app.db.space_snapshot(other).await);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "seed {seed:x}, customer {i}");
    }
    assert_eq!(a.len(), b.len(), "seed {seed:x}");
    assert!(app.db.profile_list_drift().await.is_empty());
}

backend_test!(a_random_batch_imports_as_its_items_one_by_one, |app| {
    // Two spaces alike: acme's, and another organisation's (its own key, its own rate limit)
    let other = support::make_keys(&app.store, "other").await;
    for seed in [0x5EED_0001_u64, 0x5EED_0002, 0x5EED_0003] {
        // Setup: the same random items for both spaces
        let mut rng = Rng(seed);
        let items: Vec<Value> = (0..120).map(|_| random_item(&mut rng, 1)).collect();
        // Exec: one import (one batch) into one space, one create-or-update at a time into the other
        let imported = import_items(&app, &items).await;
        // Check
        assert_as_one_by_one(&app, &other.prod, &items, imported["results"].as_array().unwrap(), seed).await;
    }
});

/// Imports `items` into acme's live space through the importer, `batch` items a batch:
/// the results as the HTTP import gives them, and how many batches were begun while the
/// one before them was written.
async fn import_in_batches(app: &TestApp, items: &[Value], batch: usize) -> (Vec<Value>, u64) {
    use bizkit_mirror::contacts::ContactSettings;
    use bizkit_mirror::import::Importer;
    use bizkit_mirror::store::Mode;
    let live = app.store.space_of("acme", Mode::Live).await.unwrap();
    let settings = ContactSettings { import_batch: batch, ..Default::default() };
    let body: String = items.iter().map(|i| format!("{i}\n")).collect();
    let mut importer = Importer::start(app.store.clone(), live, settings, std::io::Cursor::new(body.into_bytes()));
    let mut results = Vec::new();
    while let Some(batch) = importer.next().await {
        results.extend(batch.iter().map(|r| serde_json::to_value(bizkit_mirror::http::import::item_json(r)).unwrap()));
    }
    assert!(importer.summary().complete, "{:?}", importer.summary());
    (results, importer.batches_begun_beside())
}

/// Whether `app` runs on PostgreSQL, where independent batches are written side by side.
fn side_by_side(app: &TestApp) -> bool {
    app.db.url.starts_with("postgres")
}

backend_test!(a_batch_sees_what_the_batch_before_it_changed, |app| {
    // Setup: batches of two, each pair of batches one way a batch can change what the
    // next one finds, beside an item of its own
    let other = support::make_keys(&app.store, "other").await;
    let item = |n: usize| json!({ "email": format!("filler{n}@example.com") });
    let pairs = [
        // a number moved to another: the old one finds nobody
        (
            json!({ "email": "c1@example.com", "phone": "+420 777 100 002" }),
            json!({ "phone": "+420 777 100 001", "firstName": "Moved" }),
        ),
        // an alternate address added: it finds its contact
        (
            json!({ "email": "c2@example.com", "alternateEmails": ["alt@example.com"] }),
            json!({ "email": "alt@example.com", "lastName": "Alt" }),
        ),
        // a subscription written: another contact cannot take it
        (
            json!({ "email": "c3@example.com", "subscriptions": [{ "externalId": "sx" }] }),
            json!({ "email": "c4@example.com", "subscriptions": [{ "externalId": "sx" }] }),
        ),
        // a group created: the next batch joins it
        (
            json!({ "email": "c5@example.com", "groups": ["Fresh"] }),
            json!({ "email": "c6@example.com", "groups": ["Fresh"] }),
        ),
        // an address replaced through the partner's id: the old one finds nobody
        (
            json!({ "partnerCustomerId": "p1", "email": "new@example.com" }),
            json!({ "email": "old@example.com", "firstName": "Old" }),
        ),
    ];
    let mut items = vec![
        json!({ "email": "c1@example.com", "phone": "+420 777 100 001" }),
        json!({ "email": "c2@example.com" }),
        json!({ "partnerCustomerId": "p1", "email": "old@example.com" }),
        item(0),
    ];
    for (n, (first, second)) in pairs.into_iter().enumerate() {
        items.extend([first, item(2 * n + 1), second, item(2 * n + 2)]);
    }
    // Exec
    let (results, beside) = import_in_batches(&app, &items, 2).await;
    // Check: as one by one, and the fillers' batches were begun beside another
    assert_as_one_by_one(&app, &other.prod, &items, &results, 0).await;
    assert_eq!(results[6]["newAccount"], true, "the moved number's old one finds nobody: {}", results[6]);
    if side_by_side(&app) {
        assert!(beside > 0);
    } else {
        assert_eq!(beside, 0);
    }
});

backend_test!(batches_written_side_by_side_import_as_one_after_another, |app| {
    // Setup: small batches of random items that now and then meet those of the batch
    // before (an address, a number, a subscription, a group they create), and mostly not
    let other = support::make_keys(&app.store, "other").await;
    let mut beside = 0;
    for seed in [0x5EED_0011_u64, 0x5EED_0012, 0x5EED_0013] {
        let mut rng = Rng(seed);
        let items: Vec<Value> = (0..150).map(|_| random_item(&mut rng, 8)).collect();
        // Exec: the import, a batch of three at a time
        let (results, begun) = import_in_batches(&app, &items, 3).await;
        beside += begun;
        // Check: as the same items one by one
        assert_as_one_by_one(&app, &other.prod, &items, &results, seed).await;
    }
    // PostgreSQL wrote batches side by side; SQLite, one write transaction at a time, never
    if side_by_side(&app) {
        assert!(beside >= 30, "{beside} batches begun beside another");
    } else {
        assert_eq!(beside, 0);
    }
});
