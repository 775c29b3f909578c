//! Merging duplicates, on every backend: every row the duplicate owns moves to the
//! primary with the totals kept, the duplicate's cuRefNo answers `CUSTOMER_MERGED`
//! wherever it is looked up, a repeated or concurrent merge makes one result, and a merge
//! refused for any reason changes nothing.

use bizkit_mirror::accounts::AccountSettings;
use bizkit_mirror::store::Mode;
use serde_json::{json, Value};

use crate::support::{assert_error, spawn_app_with_accounts, Backend, TestApp};

const MERGE: &str = "/api/v1/customer/merge";
const UPSERT: &str = "/api/v1/customer/create-or-update";
const DETAIL: &str = "/api/v1/customer/detail";
const MATCHES: &str = "/api/v1/customer/customer-match-list";
const IDENTITY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

async fn upsert(app: &TestApp, body: Value) -> String {
    let (status, res) = app.post(UPSERT, &app.keys.prod, body.clone()).await;
    assert_eq!(status, 200, "{body} → {res}");
    res["cuRefNo"].as_str().unwrap().to_owned()
}

async fn post_ok(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, res) = app.post(path, &app.keys.prod, body.clone()).await;
    assert_eq!(status, 200, "{path} {body} → {res}");
    res
}

async fn merge(app: &TestApp, primary: &str, duplicate: &str) -> (u16, Value) {
    app.post(MERGE, &app.keys.prod, json!({ "primaryCuRefNo": primary, "duplicateCuRefNo": duplicate })).await
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().unwrap_or_else(|| panic!("a list: {v}")).iter().map(|s| s.as_str().unwrap()).collect()
}

/// `CUSTOMER_MERGED` for `field`, naming `into`.
fn assert_merged(got: &(u16, Value), field: &str, into: &str) {
    assert_error(got, 404, "CUSTOMER_MERGED");
    assert_eq!(got.1["error"]["field"], field, "{}", got.1);
    assert_eq!(got.1["error"]["mergedInto"], into, "{}", got.1);
}

/// The audit log's merges, newest first.
async fn merges_audited(app: &TestApp) -> Vec<Value> {
    let entries = app.get("/admin/v1/audit", &app.keys.root, &[]).await.1["entries"].clone();
    entries.as_array().unwrap().iter().filter(|e| e["action"] == "customer.merge").cloned().collect()
}

fn auto_confirm() -> AccountSettings {
    AccountSettings { auto_confirm: true, ..AccountSettings::default() }
}

async fn moves_everything(backend: Backend) {
    let Some(app) = spawn_app_with_accounts(backend, auto_confirm()).await else { return };
    // Setup: a primary and a duplicate with something of every kind
    let primary = upsert(
        &app,
        json!({
            "email": "petra@example.com", "firstName": "Petra",
            "meta": { "a": 1, "shared": "primary" }, "groups": ["VIP"],
            "alternateEmails": ["petra.work@example.com"],
            "addresses": [{ "partnerAddressId": "home", "address1": "Primary street 1", "isDefault": true }],
            "subscriptions": [{ "externalId": "sub-p", "productSlug": "yoga" }]
        }),
    )
    .await;
    let duplicate = upsert(
        &app,
        json!({
            "email": "petra.d@example.com", "phone": "+420 777 111 222", "lastName": "Dvořák",
            "companyName": "Dvořák s.r.o.", "partnerCustomerId": "crm-7", "premium": true,
            "meta": { "b": 2, "shared": "duplicate" }, "groups": ["Gym", "VIP"],
            "alternatePhones": ["+420 777 333 444"],
            "addresses": [
                { "partnerAddressId": "home", "address1": "Duplicate street 2" },
                { "address1": "Duplicate office 3", "isDefault": true }
            ],
            "subscriptions": [{ "externalId": "sub-d", "productSlug": "gym" }]
        }),
    )
    .await;
    for (cu, amount) in [(&primary, 10), (&duplicate, 5), (&duplicate, -2)] {
        post_ok(&app, "/api/v1/customer/credit-add", json!({ "cuRefNo": cu, "amount": amount })).await;
    }
    let coach = upsert(&app, json!({ "email": "coach@example.com" })).await;
    let client = upsert(&app, json!({ "email": "client@example.com" })).await;
    let referred = upsert(&app, json!({ "email": "friend@example.com", "referralCuRefNo": duplicate })).await;
    let relate = |manager: &str, customer: &str, notice: Option<&str>| json!({ "managerCuRefNo": manager, "customerCuRefNo": customer, "notice": notice });
    for body in [
        relate(&coach, &duplicate, Some("Tuesdays")),
        relate(&coach, &primary, None),
        relate(&duplicate, &client, Some("client of the duplicate")),
        relate(&primary, &duplicate, Some("each other")),
    ] {
        post_ok(&app, "/api/v1/customer/customer-match-customer", body).await;
    }
    // The duplicate has the storefront account and a live session.
    post_ok(&app, "/contact/v1/register-account", json!({ "email": "petra.d@example.com", "password": "Secret123" }))
        .await;
    let login =
        post_ok(&app, "/contact/v1/login", json!({ "email": "petra.d@example.com", "password": "Secret123" })).await;
    let identity = login["identityId"].as_str().expect("a session").to_owned();

    let relations = app.db.scalar("select count(*) from customer_matches").await;
    let ledger = app.db.scalar("select cast(sum(amount) as bigint) from credit_ledger").await;

    // Erasures just before, on every connection of the pool in turn: their statements,
    // prepared there, share their text with some of the merge's.
    for i in 0..16 {
        let erased = upsert(&app, json!({ "email": format!("erased{i}@example.com"), "groups": ["VIP"] })).await;
        post_ok(&app, "/api/v1/customer/delete", json!({ "cuRefNo": erased })).await;
    }

    // Exec
    let got = merge(&app, &primary, &duplicate).await;

    // Check: the primary's profile as merged
    assert_eq!(got.0, 200, "{}", got.1);
    let p = &got.1;
    assert_eq!(p["success"], true);
    assert_eq!(p["cuRefNo"], primary.as_str());
    assert_eq!((p["email"].as_str(), p["firstName"].as_str()), (Some("petra@example.com"), Some("Petra")));
    assert_eq!((p["lastName"].as_str(), p["companyName"].as_str()), (Some("Dvořák"), Some("Dvořák s.r.o.")));
    assert_eq!(p["phone"], "+420 777111222", "the primary had no number: it takes the duplicate's");
    assert_eq!(p["partnerCustomerId"], "crm-7");
    assert_eq!(p["premium"], true);
    assert_eq!(p["creditBalance"], 13, "the ledgers add up");
    assert_eq!(p["meta"], json!({ "a": 1, "b": 2, "shared": "primary" }), "the primary's value wins");
    assert_eq!(p["groups"], json!([{ "name": "Gym", "slug": "gym" }, { "name": "VIP", "slug": "vip" }]));
    assert_eq!(strings(&p["alternateEmails"]), ["petra.d@example.com", "petra.work@example.com"]);
    assert_eq!(strings(&p["alternatePhones"]), ["+420 777333444"]);
    let addresses: Vec<(&str, bool)> = p["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["address1"].as_str().unwrap(), a["isDefault"].as_bool().unwrap()))
        .collect();
    assert_eq!(addresses, [("Primary street 1", true), ("Duplicate office 3", false)]);
    let running: Vec<&Value> =
        p["runningSubscriptionList"].as_array().unwrap().iter().map(|s| &s["externalId"]).collect();
    assert_eq!(running, [&json!("sub-p"), &json!("sub-d")]);

    // The duplicate's cuRefNo answers with the primary's wherever it is looked up.
    let detail = app.get(DETAIL, &app.keys.prod, &[("identityId", IDENTITY), ("cuRefNo", &duplicate)]).await;
    assert_merged(&detail, "cuRefNo", &primary);
    let credit =
        app.post("/api/v1/customer/credit-add", &app.keys.prod, json!({ "cuRefNo": duplicate, "amount": 1 })).await;
    assert_merged(&credit, "cuRefNo", &primary);
    assert_merged(
        &app.post(UPSERT, &app.keys.prod, json!({ "cuRefNo": duplicate, "firstName": "X" })).await,
        "cuRefNo",
        &primary,
    );
    assert_merged(&app.get(MATCHES, &app.keys.prod, &[("cuRefNo", &duplicate)]).await, "cuRefNo", &primary);
    let matched =
        app.post("/api/v1/customer/customer-match-customer", &app.keys.prod, relate(&duplicate, &coach, None)).await;
    assert_merged(&matched, "managerCuRefNo", &primary);
    assert_merged(
        &app.post("/api/v1/customer/delete", &app.keys.prod, json!({ "cuRefNo": duplicate })).await,
        "cuRefNo",
        &primary,
    );
    assert_merged(&merge(&app, &duplicate, &coach).await, "primaryCuRefNo", &primary);
    let referral = json!({ "email": "new@example.com", "referralCuRefNo": duplicate });
    assert_merged(&app.post(UPSERT, &app.keys.prod, referral.clone()).await, "referralCuRefNo", &primary);
    let items = json!([{ "cuRefNo": duplicate, "firstName": "X" }, referral, { "email": "new@example.com" }]);
    let imported = app.post("/api/v1/customer/import", &app.keys.prod, items).await;
    assert_eq!(imported.0, 200, "{}", imported.1);
    let results = imported.1["results"].as_array().unwrap();
    for (result, field) in results.iter().zip(["cuRefNo", "referralCuRefNo"]) {
        let error = &result["error"];
        assert_eq!(
            (error["code"].as_str(), error["field"].as_str()),
            (Some("CUSTOMER_MERGED"), Some(field)),
            "{result}"
        );
        assert_eq!(error["mergedInto"], primary.as_str(), "{result}");
    }
    assert_eq!(results[2]["ok"], true, "{}", results[2]);

    // Relations: moved, deduplicated with their notices, the pair's own gone; the rest
    // kept, as is every amount of the ledger.
    let after = app.db.scalar("select count(*) from customer_matches").await;
    assert_eq!(after, relations - 2, "one relation both had, and the pair's own, are gone");
    assert_eq!(app.db.scalar("select cast(sum(amount) as bigint) from credit_ledger").await, ledger);
    let coach_side = app.get(MATCHES, &app.keys.prod, &[("cuRefNo", &coach)]).await.1;
    let managed: Vec<(&str, &Value)> = coach_side["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["cuRefNo"].as_str().unwrap(), &c["notice"]))
        .collect();
    assert_eq!(managed, [(primary.as_str(), &json!("Tuesdays"))]);
    let mine = app.get(MATCHES, &app.keys.prod, &[("cuRefNo", &primary)]).await.1;
    let cus = |side: &str| -> Vec<String> {
        mine[side].as_array().unwrap().iter().map(|c| c["cuRefNo"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!((cus("managers"), cus("customers")), (vec![coach.clone()], vec![client.clone()]));
    // The customer the duplicate referred is the primary's referral now.
    let friend = app.get("/api/v1/customer/list", &app.keys.prod, &[("email", "friend@example.com")]).await.1;
    assert_eq!(friend["customers"][0]["cuRefNo"], referred.as_str());
    assert_eq!(friend["customers"][0]["referral"]["code"], primary.as_str());
    // The duplicate's address, number and partner id find the primary.
    assert_eq!(upsert(&app, json!({ "email": "Petra.D@example.com" })).await, primary);
    assert_eq!(upsert(&app, json!({ "phone": "+420 777 333 444" })).await, primary);
    assert_eq!(upsert(&app, json!({ "partnerCustomerId": "crm-7" })).await, primary);
    // The storefront account and its session are the primary's.
    let info = app.get("/contact/v1/get-account-info", &app.keys.prod, &[("identityId", &identity)]).await;
    assert_eq!((info.0, info.1["cuRefNo"].as_str()), (200, Some(primary.as_str())), "{}", info.1);
    let relogin =
        post_ok(&app, "/contact/v1/login", json!({ "email": "petra@example.com", "password": "Secret123" })).await;
    assert_eq!(relogin["success"], true, "{relogin}");
    // Stored: derived parts agree with their rows, the tombstone holds nothing personal.
    assert_eq!(app.db.profile_list_drift().await, Vec::<String>::new());
    assert_eq!(app.db.erased_leftovers().await, 0);
    assert_eq!(app.db.scalar("select count(*) from customers where merged_into is not null").await, 1);
    // Audited, once.
    let entries = merges_audited(&app).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["target"], duplicate.as_str());
    assert_eq!(entries[0]["detail"]["mergedInto"], primary.as_str());

    // A retry gives the same answer and changes nothing.
    let again = merge(&app, &primary, &duplicate).await;
    assert_eq!(again.0, 200, "{}", again.1);
    assert_eq!(again.1["creditBalance"], 13);
    assert_eq!(merges_audited(&app).await.len(), 1);

    // Merged again, the older tombstone names the newest primary.
    let newest = upsert(&app, json!({ "email": "newest@example.com" })).await;
    let (status, body) = merge(&app, &newest, &primary).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["creditBalance"], 13);
    let detail = app.get(DETAIL, &app.keys.prod, &[("identityId", IDENTITY), ("cuRefNo", &duplicate)]).await;
    assert_merged(&detail, "cuRefNo", &newest);
    assert_eq!(app.db.profile_list_drift().await, Vec::<String>::new());
}

per_backend!(a_merge_moves_everything_the_duplicate_owns, super::moves_everything);

backend_test!(a_refused_merge_says_why_and_changes_nothing, |app| {
    // Setup
    let space = app.store.space_of("acme", Mode::Live).await.unwrap();
    let a = upsert(&app, json!({ "email": "a@example.com", "meta": { "a": "x".repeat(9000) } })).await;
    let b = upsert(&app, json!({ "email": "b@example.com", "meta": { "b": "y".repeat(9000) } })).await;
    let alternates = |who: &str| -> Vec<String> { (0..12).map(|i| format!("{who}{i}@example.com")).collect() };
    let c = upsert(&app, json!({ "email": "c@example.com", "alternateEmails": alternates("c") })).await;
    let d = upsert(&app, json!({ "email": "d@example.com", "alternateEmails": alternates("d") })).await;
    let addresses = |n: usize| -> Vec<Value> { (0..n).map(|i| json!({ "address1": format!("Street {i}") })).collect() };
    let e = upsert(&app, json!({ "email": "e@example.com", "addresses": addresses(15) })).await;
    let f = upsert(&app, json!({ "email": "f@example.com", "addresses": addresses(10) })).await;
    let erased = upsert(&app, json!({ "email": "gone@example.com" })).await;
    post_ok(&app, "/api/v1/customer/delete", json!({ "cuRefNo": erased })).await;
    for email in ["g@example.com", "h@example.com"] {
        post_ok(&app, "/contact/v1/register-account", json!({ "email": email, "password": "Secret123" })).await;
    }
    let g = upsert(&app, json!({ "email": "g@example.com" })).await;
    let h = upsert(&app, json!({ "email": "h@example.com" })).await;
    let before = app.db.space_snapshot(space).await;

    // Exec and check: each refusal names its field
    let field = |got: &(u16, Value), status: u16, code: &str, field: &str| {
        assert_error(got, status, code);
        assert_eq!(got.1["error"]["field"], field, "{}", got.1);
    };
    field(&merge(&app, &a, &a).await, 400, "INVALID_REQUEST", "duplicateCuRefNo");
    field(&merge(&app, "short", &a).await, 400, "INVALID_CU_REF_NO", "primaryCuRefNo");
    field(
        &app.post(MERGE, &app.keys.prod, json!({ "primaryCuRefNo": a })).await,
        400,
        "INVALID_REQUEST",
        "duplicateCuRefNo",
    );
    field(&merge(&app, "ZZZZZZZZZZZZZZZZ", &a).await, 404, "CUSTOMER_NOT_FOUND", "primaryCuRefNo");
    field(&merge(&app, &a, &erased).await, 404, "CUSTOMER_NOT_FOUND", "duplicateCuRefNo");
    field(&merge(&app, &a, &b).await, 400, "VALUE_TOO_LONG", "meta");
    field(&merge(&app, &c, &d).await, 400, "VALUE_TOO_LONG", "alternateEmails");
    field(&merge(&app, &e, &f).await, 400, "VALUE_TOO_LONG", "addresses");
    field(&merge(&app, &g, &h).await, 400, "INVALID_REQUEST", "duplicateCuRefNo");
    let read_only = app.key_with_scopes(&["customer:read"]).await;
    let forbidden = app.post(MERGE, &read_only, json!({ "primaryCuRefNo": a, "duplicateCuRefNo": b })).await;
    assert_error(&forbidden, 403, "PUBLIC_API_KEY_FORBIDDEN");

    assert_eq!(app.db.space_snapshot(space).await, before, "a refused merge changes nothing");
    assert_eq!(app.db.scalar("select count(*) from customers where merged_into is not null").await, 0);
});

backend_test!(concurrent_merges_of_one_pair_make_one_result, |app| {
    for round in 0..8 {
        // Setup
        let a = upsert(&app, json!({ "email": format!("a{round}@example.com") })).await;
        let b = upsert(&app, json!({ "email": format!("b{round}@example.com"), "groups": ["G"] })).await;
        for cu in [&a, &b] {
            post_ok(&app, "/api/v1/customer/credit-add", json!({ "cuRefNo": cu, "amount": 7 })).await;
        }
        // Exec: the same merge twice and the opposite one, at once
        let (one, two, opposite) = tokio::join!(merge(&app, &a, &b), merge(&app, &a, &b), merge(&app, &b, &a));
        // Check: one of them live, holding both balances; the others said so
        let mut live = Vec::new();
        for cu in [&a, &b] {
            let sql = format!("select count(*) from customers where cu_ref_no = '{cu}' and erased_at is null");
            if app.db.scalar(&sql).await == 1 {
                live.push(cu.clone());
            }
        }
        assert_eq!(live.len(), 1, "round {round}: {one:?} {two:?} {opposite:?}");
        let winner = &live[0];
        for got in [&one, &two, &opposite] {
            match got.0 {
                200 => {
                    assert_eq!(&got.1["cuRefNo"], winner.as_str(), "{}", got.1);
                    assert_eq!(got.1["creditBalance"], 14, "{}", got.1);
                }
                _ => assert_merged(got, "primaryCuRefNo", winner),
            }
        }
    }
    assert_eq!(app.db.scalar("select count(*) from customers where merged_into is not null").await, 8);
    assert_eq!(app.db.profile_list_drift().await, Vec::<String>::new());
    assert_eq!(app.db.erased_leftovers().await, 0);
});
