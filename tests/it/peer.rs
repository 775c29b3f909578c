//! The peers' customer model on create-or-update, on every backend: seed 004's own
//! request stored field by field, the client's id as a lookup key and a list filter,
//! alternates added or overwritten, addresses kept by id, every field checked, and the
//! extended profile on BizKitHub's endpoints only when asked for.

use serde_json::{json, Map, Value};

use crate::seed_examples::{seed_pages, shared_dir};
use crate::support::{assert_error, TestApp};

const UPSERT: &str = "/api/v1/customer/create-or-update";
const LIST: &str = "/api/v1/customer/list";

/// The body of seed 004's sample request, as the page prints it.
fn seed_004_body() -> Option<Value> {
    let shared = shared_dir()?;
    let page = std::fs::read_to_string(&seed_pages(&shared, &["004_"])[0]).expect("read seed 004");
    let start = page.find("--data-raw '").expect("the sample request") + "--data-raw '".len();
    let end = start + page[start..].find('\'').expect("the end of the sample body");
    Some(serde_json::from_str(&page[start..end]).expect("the sample body is JSON"))
}

/// The one stored customer with this partnerCustomerId, read back through the list.
async fn stored(app: &TestApp, partner_id: &str) -> Value {
    let (status, body) = app.get(LIST, &app.keys.prod, &[("partnerCustomerId", partner_id)]).await;
    assert_eq!(status, 200, "{body}");
    let customers = body["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 1, "{body}");
    let mut c = customers[0].clone();
    let c = c.as_object_mut().unwrap();
    c.remove("createdAt");
    c.remove("updatedAt");
    Value::Object(c.clone())
}

async fn upsert(app: &TestApp, body: Value) -> Value {
    let (status, res) = app.post(UPSERT, &app.keys.prod, body.clone()).await;
    assert_eq!(status, 200, "{body} → {res}");
    res
}

fn sorted(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = values.into_iter().collect();
    v.sort();
    v
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

/// `+919090909090` as this server writes numbers: `+91 9090909090`.
fn phone(n: &str) -> String {
    format!("{} {}", &n[..3], &n[3..])
}

/// Checks the stored profile against the seed request, field by field.
fn assert_stored_as_sent(profile: &Value, sent: &Value) {
    assert_eq!(profile["partnerCustomerId"], sent["partnerCustomerId"]);
    assert_eq!(profile["firstName"], sent["firstName"]);
    assert_eq!(profile["lastName"], sent["lastName"]);
    assert_eq!(profile["email"], sent["email"]);
    assert_eq!(profile["phone"], phone(sent["phoneNumber"].as_str().unwrap()));
    let mut emails = strings(&sent["alternateEmails"]);
    emails.push(sent["secondaryEmail"].as_str().unwrap().to_owned());
    assert_eq!(strings(&profile["alternateEmails"]), sorted(emails));
    let mut phones = strings(&sent["alternatePhoneNumbers"]);
    phones.push(sent["secondaryPhoneNumber"].as_str().unwrap().to_owned());
    assert_eq!(strings(&profile["alternatePhones"]), sorted(phones.iter().map(|p| phone(p))));
    let groups: Vec<&Value> = profile["groups"].as_array().unwrap().iter().map(|g| &g["name"]).collect();
    assert_eq!(groups, sent["tags"].as_array().unwrap().iter().collect::<Vec<_>>());
    let addresses = profile["addresses"].as_array().unwrap();
    let sent_addresses = sent["addresses"].as_array().unwrap();
    assert_eq!(addresses.len(), sent_addresses.len());
    for (got, want) in addresses.iter().zip(sent_addresses) {
        for (field, value) in want.as_object().unwrap() {
            assert_eq!(&got[field], value, "address field {field}");
        }
        assert!(got["addressId"].as_str().is_some_and(|id| id.len() == 16), "{got}");
    }
}

backend_test!(seed_004_sample_request_is_stored_field_by_field, |app| {
    let Some(sent) = seed_004_body() else { return };

    // Exec: the page's body, verbatim
    let created = upsert(&app, sent.clone()).await;

    // Check: the answer and the stored profile hold every field
    assert_eq!(created["newAccount"], true);
    let partner_id = sent["partnerCustomerId"].as_str().unwrap();
    let profile = stored(&app, partner_id).await;
    assert_stored_as_sent(&profile, &sent);
    let mut answered = created.as_object().unwrap().clone();
    answered.remove("success");
    answered.remove("newAccount");
    assert_eq!(Value::Object(answered), profile, "the answer is the stored profile");

    // Exec: the same contact again with changed values
    let mut changed = sent.clone();
    let c = changed.as_object_mut().unwrap();
    c.insert("firstName".into(), json!("Changed"));
    c.insert("email".into(), json!("test.9@bik.ai"));
    c.insert("tags".into(), json!(["gold"]));
    c.insert("secondaryEmail".into(), json!("test5@bik.ai"));
    c["addresses"][0]["city"] = json!("mysore");
    c["addresses"][0]["addressId"] = profile["addresses"][0]["addressId"].clone();
    let updated = upsert(&app, changed.clone()).await;

    // Check: the same customer, updated; alternates added to; the address kept its id
    assert_eq!(updated["newAccount"], false);
    assert_eq!(updated["cuRefNo"], profile["cuRefNo"]);
    let after = stored(&app, partner_id).await;
    assert_eq!(after["firstName"], "Changed");
    assert_eq!(after["email"], "test.9@bik.ai");
    assert_eq!(after["groups"], json!([{ "name": "gold", "slug": "gold" }]));
    assert_eq!(after["addresses"][0]["city"], "mysore");
    assert_eq!(after["addresses"][0]["addressId"], profile["addresses"][0]["addressId"]);
    let emails = strings(&after["alternateEmails"]);
    assert!(emails.contains(&"test5@bik.ai".to_owned()) && emails.contains(&"test3@bik.ai".to_owned()), "{emails:?}");

    // Exec: overWriteAssets replaces the alternates of the kinds given
    upsert(
        &app,
        json!({ "partnerCustomerId": partner_id, "alternateEmails": ["only@bik.ai"], "overWriteAssets": true }),
    )
    .await;
    let replaced = stored(&app, partner_id).await;
    assert_eq!(strings(&replaced["alternateEmails"]), ["only@bik.ai"]);
    assert_eq!(replaced["alternatePhones"], after["alternatePhones"], "a kind not given is kept");
    // The replaced address no longer finds the contact; the new one does
    let (_, by_old) = app.get(LIST, &app.keys.prod, &[("email", "test3@bik.ai")]).await;
    assert_eq!(by_old["customers"], json!([]));
    let (_, by_new) = app.get(LIST, &app.keys.prod, &[("email", "only@bik.ai")]).await;
    assert_eq!(by_new["customers"][0]["cuRefNo"], profile["cuRefNo"]);
});

backend_test!(the_partner_id_finds_the_contact_first_and_is_its_own, |app| {
    // Setup: two contacts, one with a partner id
    let first = upsert(&app, json!({ "email": "first@example.com", "externalId": "crm-1" })).await;
    let second = upsert(&app, json!({ "email": "second@example.com" })).await;
    assert_eq!(first["partnerCustomerId"], "crm-1", "externalId is an alias");

    // Exec: the partner id wins over an e-mail that is new
    let moved = upsert(&app, json!({ "partnerCustomerId": "crm-1", "email": "first.new@example.com" })).await;
    assert_eq!(moved["cuRefNo"], first["cuRefNo"]);
    assert_eq!(moved["email"], "first.new@example.com");
    // … the partner id alone finds it
    let by_id = upsert(&app, json!({ "partnerCustomerId": "crm-1", "lastName": "Alone" })).await;
    assert_eq!(by_id["cuRefNo"], first["cuRefNo"]);
    // … an e-mail that is another contact's is refused
    let got =
        app.post(UPSERT, &app.keys.prod, json!({ "partnerCustomerId": "crm-1", "email": "second@example.com" })).await;
    assert_error(&got, 400, "INVALID_EMAIL");
    // … and another contact may not take the partner id
    let got =
        app.post(UPSERT, &app.keys.prod, json!({ "cuRefNo": second["cuRefNo"], "partnerCustomerId": "crm-1" })).await;
    assert_error(&got, 400, "INVALID_REQUEST");
    assert_eq!(got.1["error"]["field"], "partnerCustomerId");
    // … nor does an import item
    let (status, imported) = app
        .post(
            "/api/v1/customer/import",
            &app.keys.prod,
            json!([
                { "cuRefNo": second["cuRefNo"], "partnerCustomerId": "crm-1" },
                { "email": "third@example.com", "partnerCustomerId": "crm-3",
                  "addresses": [{ "address1": "Na Příkopě 1", "countryCode": "cz", "isDefault": true }] }
            ]),
        )
        .await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["results"][0]["ok"], false, "{imported}");
    assert_eq!(imported["results"][1]["ok"], true, "{imported}");
    let third = stored(&app, "crm-3").await;
    assert_eq!(third["addresses"][0]["countryCode"], "CZ");
    assert_eq!(third["addresses"][0]["isDefault"], true);
    // A partner id alone does not make a contact
    let got = app.post(UPSERT, &app.keys.prod, json!({ "partnerCustomerId": "crm-none" })).await;
    assert_error(&got, 400, "INVALID_REQUEST");

    // Exec: erasure frees the partner id
    let (status, _) = app.post("/api/v1/customer/delete", &app.keys.prod, json!({ "cuRefNo": first["cuRefNo"] })).await;
    assert_eq!(status, 200);
    let (_, listed) = app.get(LIST, &app.keys.prod, &[("partnerCustomerId", "crm-1")]).await;
    assert_eq!(listed["customers"], json!([]));
    let again = upsert(&app, json!({ "partnerCustomerId": "crm-1", "email": "again@example.com" })).await;
    assert_eq!(again["newAccount"], true);
    assert_ne!(again["cuRefNo"], first["cuRefNo"]);
});

backend_test!(bad_address_fields_are_refused_by_name_and_change_nothing, |app| {
    // Setup
    let address = |extra: Value| {
        let mut a: Map<String, Value> =
            json!({ "address1": "Main 1", "countryCode": "CZ" }).as_object().unwrap().clone();
        a.extend(extra.as_object().unwrap().clone());
        Value::Object(a)
    };
    upsert(
        &app,
        json!({ "email": "addr@example.com", "partnerCustomerId": "addr", "addresses": [address(json!({}))] }),
    )
    .await;
    let before = stored(&app, "addr").await;

    // Exec + check: each bad field names itself, and nothing changes
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!([address(json!({ "countryCode": "XX" }))]), "INVALID_REQUEST", "addresses.countryCode"),
        (json!([address(json!({ "countryCode": "IND" }))]), "INVALID_REQUEST", "addresses.countryCode"),
        (json!([address(json!({ "latitude": 90.5 }))]), "INVALID_REQUEST", "addresses.latitude"),
        (json!([address(json!({ "longitude": -180.01 }))]), "INVALID_REQUEST", "addresses.longitude"),
        (json!([address(json!({ "timezone": "Mars/Olympus" }))]), "INVALID_REQUEST", "addresses.timezone"),
        (json!([address(json!({ "address1": null }))]), "INVALID_REQUEST", "addresses.address1"),
        (json!([address(json!({ "phoneNumber": "12" }))]), "INVALID_PHONE", "addresses.phoneNumber"),
        (json!([address(json!({ "email": "not-an-address" }))]), "INVALID_EMAIL", "addresses.email"),
        (json!([address(json!({ "city": "x".repeat(256) }))]), "VALUE_TOO_LONG", "addresses.city"),
        (
            json!([address(json!({ "isDefault": true })), address(json!({ "isDefault": true }))]),
            "INVALID_REQUEST",
            "addresses.isDefault",
        ),
        (json!((0..21).map(|_| address(json!({}))).collect::<Vec<_>>()), "INVALID_REQUEST", "addresses"),
        (json!([address(json!({ "addressId": "NoSuchAddress123" }))]), "INVALID_REQUEST", "addresses.addressId"),
        (
            json!([address(json!({ "partnerAddressId": "a" })), address(json!({ "partnerAddressId": "a" }))]),
            "INVALID_REQUEST",
            "addresses.partnerAddressId",
        ),
    ];
    for (addresses, code, field) in cases {
        let got = app
            .post(
                UPSERT,
                &app.keys.prod,
                json!({ "partnerCustomerId": "addr", "firstName": "Never", "addresses": addresses }),
            )
            .await;
        assert_error(&got, 400, code);
        assert_eq!(got.1["error"]["field"], field, "{}", got.1);
        assert_eq!(stored(&app, "addr").await, before, "{field}: nothing changed");
    }

    // A good write of every field, then the same address by its partner id keeps its id
    let full = json!({
        "partnerAddressId": "home", "address1": "Václavské náměstí 1", "address2": "3. patro", "city": "Praha",
        "state": "Praha", "stateCode": "10", "zip": "110 00", "country": "Česko", "countryCode": "cz",
        "latitude": 50.08, "longitude": 14.43, "timezone": "Europe/Prague", "firstName": "jana", "lastName": "Nová",
        "phoneNumber": "777 123 456", "email": "Jana@Example.com", "isDefault": true
    });
    let written = upsert(&app, json!({ "partnerCustomerId": "addr", "addresses": [full] })).await;
    let a = &written["addresses"][0];
    assert_eq!(a["countryCode"], "CZ");
    assert_eq!(a["phoneNumber"], "+420 777123456");
    assert_eq!(a["firstName"], "Jana");
    assert_eq!(a["timezone"], "Europe/Prague");
    assert_eq!(a["latitude"], 50.08);
    let id = a["addressId"].clone();
    let again = upsert(
        &app,
        json!({ "partnerCustomerId": "addr", "addresses": [{ "partnerAddressId": "home", "address1": "Jiná 2" }] }),
    )
    .await;
    assert_eq!(again["addresses"][0]["addressId"], id);
    assert_eq!(again["addresses"][0]["address1"], "Jiná 2");
    assert_eq!(again["addresses"][0]["city"], Value::Null, "the address is replaced as given");
    let cleared = upsert(&app, json!({ "partnerCustomerId": "addr", "addresses": [] })).await;
    assert_eq!(cleared["addresses"], json!([]));
});

backend_test!(bizkithubs_endpoints_extend_the_profile_only_when_asked, |app| {
    // Setup
    upsert(
        &app,
        json!({ "email": "ext@example.com", "partnerCustomerId": "ext", "alternateEmails": ["alt@example.com"] }),
    )
    .await;

    // Exec: create as documented, and with expand=extended
    let plain = app.create(&app.keys.prod, "ext@example.com").await;
    let (status, extended) = app
        .post("/api/v1/customer/create?expand=extended", &app.keys.prod, json!({ "email": "ext@example.com" }))
        .await;

    // Check
    assert!(plain.get("partnerCustomerId").is_none() && plain.get("addresses").is_none(), "{plain}");
    assert_eq!(status, 200, "{extended}");
    assert_eq!(extended["partnerCustomerId"], "ext");
    assert_eq!(extended["alternateEmails"], json!(["alt@example.com"]));
    assert_eq!(extended["addresses"], json!([]));
    let got =
        app.post("/api/v1/customer/create?expand=all", &app.keys.prod, json!({ "email": "ext@example.com" })).await;
    assert_error(&got, 400, "INVALID_REQUEST");
    assert_eq!(got.1["error"]["field"], "expand");
});

backend_test!(the_peer_fields_past_their_edges_are_refused_and_change_nothing, |app| {
    // Setup
    upsert(&app, json!({ "email": "edge@example.com", "partnerCustomerId": "edge" })).await;
    let before = stored(&app, "edge").await;

    // Exec + check: each field past its edge names itself, and nothing changes
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({ "partnerCustomerId": "p".repeat(256) }), "VALUE_TOO_LONG", "partnerCustomerId"),
        (json!({ "secondaryEmail": "not-an-address" }), "INVALID_EMAIL", "secondaryEmail"),
        (json!({ "secondaryPhoneNumber": "12" }), "INVALID_PHONE", "secondaryPhoneNumber"),
        (json!({ "overWriteAssets": "yes" }), "INVALID_REQUEST", "overWriteAssets"),
    ];
    for (extra, code, field) in cases {
        let mut body = json!({ "email": "edge@example.com", "firstName": "Never" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let got = app.post(UPSERT, &app.keys.prod, body).await;
        assert_error(&got, 400, code);
        assert_eq!(got.1["error"]["field"], field, "{}", got.1);
        assert_eq!(stored(&app, "edge").await, before, "{field}: nothing changed");
    }
    // The list's filter has the same bound
    let got = app.get(LIST, &app.keys.prod, &[("partnerCustomerId", &"p".repeat(256))]).await;
    assert_error(&got, 400, "VALUE_TOO_LONG");
    assert_eq!(got.1["error"]["field"], "partnerCustomerId");
});
