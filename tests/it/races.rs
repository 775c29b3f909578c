//! Writes racing an erasure of the same customer, on every backend: whatever the order
//! the database picks, an erased customer never regains personal data, contact points or
//! an e-mail mapping, and `create` with its old address makes a new, readable customer.

use serde_json::json;

use crate::support::{Backend, TestApp};

const CREATE: &str = "/api/v1/customer/create";
const UPSERT: &str = "/api/v1/customer/create-or-update";
const DELETE: &str = "/api/v1/customer/delete";
const DETAIL: &str = "/api/v1/customer/detail";
const ROUNDS: usize = 40;

async fn create(app: &TestApp, email: &str) -> String {
    let (status, body) = app.post(CREATE, &app.keys.prod, json!({ "email": email })).await;
    assert_eq!(status, 200, "{body}");
    body["cuRefNo"].as_str().unwrap().to_owned()
}

backend_test!(erasure_serialises_with_writes_of_the_same_customer, |app| {
    let unknown_session = "A".repeat(32);
    for round in 0..ROUNDS {
        // Setup: a customer with an address
        let email = format!("race{round}@example.com");
        let cu = create(&app, &email).await;

        // Exec: its erasure, a write by cuRefNo and a create by address, at once
        let write = json!({
            "cuRefNo": cu, "email": email, "firstName": "Back", "phone": format!("+420 777 100 {round:03}"),
            "alternateEmails": [format!("alt{round}@example.com")], "groups": ["Racers"],
            "subscriptions": [{ "externalId": format!("race-{round}") }], "meta": { "round": round }
        });
        let (erased, written, created) = tokio::join!(
            app.post(DELETE, &app.keys.prod, json!({ "cuRefNo": cu })),
            app.post(UPSERT, &app.keys.prod, write),
            app.post(CREATE, &app.keys.prod, json!({ "email": email })),
        );

        // Check: each answered as one of its possible orders allows
        assert_eq!(erased.0, 200, "round {round}: {}", erased.1);
        assert!(matches!(written.0, 200 | 404), "round {round}: {}", written.1);
        assert_eq!(created.0, 200, "round {round}: {}", created.1);
        assert_eq!(app.db.erased_leftovers().await, 0, "round {round}: an erased customer holds personal data");
        // The address is free again or belongs to a live customer: create finds one that reads
        let again = create(&app, &email).await;
        let (status, body) =
            app.get(DETAIL, &app.keys.prod, &[("cuRefNo", again.as_str()), ("identityId", &unknown_session)]).await;
        assert_eq!(status, 200, "round {round}: create returned {again}, which does not read: {body}");
        assert_ne!(again, cu, "round {round}: the erased cuRefNo came back");
    }
});

/// Calls abandoned part-way (a client that went away, a timeout), on a pool of one
/// connection, so every call reuses the one the abandoned ones left behind: reads and
/// write transactions stopped at every point leave it answering correctly, and no write
/// is half-applied.
async fn abandoned_calls_leave_their_connection_usable(backend: Backend) {
    use bizkit_mirror::normalize::{ClientIp, CuRefNo, Email};
    use bizkit_mirror::store::{connect, CreateCustomer, CreditAdd, Mode, PoolSettings};
    use std::time::Duration;

    let Some(db) = crate::support::TestDb::new(backend).await else { return };
    let settings = PoolSettings { max_connections: 1, ..PoolSettings::default() };
    let store = connect(&db.url, &settings).await.expect("connect");
    // Setup: a customer
    store.ensure_organisation("acme", "Acme").await.unwrap();
    let space = store.space_of("acme", Mode::Live).await.unwrap();
    let ip = ClientIp::parse(None).unwrap();
    let input = CreateCustomer {
        email: Email::parse("abandoned@example.com").unwrap(),
        company_name: None,
        company_registration_number: None,
        tax_identification_number: None,
        ip: ip.clone(),
    };
    let (_, profile) = store.find_or_create_by_email(space, &input).await.unwrap();
    let cu = CuRefNo::parse(&profile.cu_ref_no).unwrap();
    let credit = CreditAdd { cu_ref_no: cu.clone(), amount: 1, reason: "abandoned".into(), idempotency: None };

    // Exec: reads and credit writes, each given from no time at all to half a millisecond
    let mut abandoned = 0;
    let mut credited = 0;
    for round in 0..200u64 {
        let budget = Duration::from_micros(10 * (round % 50));
        match tokio::time::timeout(budget, store.customer_detail(space, &cu, "none", &ip)).await {
            Ok(read) => assert!(read.expect("a read after abandoned ones").is_some()),
            Err(_) => abandoned += 1,
        }
        match tokio::time::timeout(budget, store.add_credit(space, &credit)).await {
            Ok(written) => {
                written.expect("a write after abandoned ones");
                credited += 1;
            }
            Err(_) => abandoned += 1,
        }
    }
    assert!(abandoned > 0, "no call was abandoned: the test did not test");

    // Check: the connection answers, and the balance is the sum of the ledger rows written
    // whole (at least the calls that finished, at most every call)
    for _ in 0..5 {
        let detail = store.customer_detail(space, &cu, "none", &ip).await.unwrap().expect("the customer");
        assert_eq!(detail.profile.cu_ref_no, cu.as_str());
    }
    let balance = store.customer_detail(space, &cu, "none", &ip).await.unwrap().unwrap().profile.credit_balance;
    assert!((credited..=200).contains(&balance), "balance {balance}, {credited} calls finished");
    let ledger = db.execute("update credit_ledger set reason = reason").await;
    assert_eq!(ledger as i64, balance, "a ledger row without its balance, or the reverse");
}

per_backend!(abandoned_calls, super::abandoned_calls_leave_their_connection_usable);

/// Detail and account-info read together from many calls at once (gathered into shared
/// statements under load): each call gets its own customer and session, never another
/// call's, across two spaces, erased customers, unknown cuRefNos and sessions that are
/// someone else's, ended or unknown.
async fn concurrent_reads_each_get_their_own_answer(backend: Backend) {
    use bizkit_mirror::normalize::{ClientIp, CuRefNo, Email};
    use bizkit_mirror::store::{connect, CreateCustomer, Mode, PoolSettings};

    let Some(db) = crate::support::TestDb::new(backend).await else { return };
    let store = std::sync::Arc::new(connect(&db.url, &PoolSettings::default()).await.expect("connect"));
    // Setup: 30 customers in each of two spaces, each with a session; some erased, some
    // sessions ended
    store.ensure_organisation("acme", "Acme").await.unwrap();
    store.ensure_organisation("other", "Other").await.unwrap();
    let spaces =
        [store.space_of("acme", Mode::Live).await.unwrap(), store.space_of("other", Mode::Live).await.unwrap()];
    let ip = ClientIp::parse(None).unwrap();
    let far = chrono::Utc::now() + chrono::TimeDelta::days(30);
    let mut customers = Vec::new(); // (space index, cuRefNo, e-mail, session digest, erased, session ended)
    for (s, space) in spaces.iter().enumerate() {
        for n in 0..30 {
            let email = format!("reader{n}@space{s}.example.com");
            let input = CreateCustomer {
                email: Email::parse(&email).unwrap(),
                company_name: None,
                company_registration_number: None,
                tax_identification_number: None,
                ip: ip.clone(),
            };
            let (_, profile) = store.find_or_create_by_email(*space, &input).await.unwrap();
            let cu = CuRefNo::parse(&profile.cu_ref_no).unwrap();
            let digest = format!("{s:02}{n:062}");
            assert!(store.renew_session(*space, &cu, &digest, far).await.unwrap());
            let (erased, ended) = (n % 7 == 3, n % 5 == 1);
            if erased {
                assert!(store.erase_customer(*space, &cu).await.unwrap());
            }
            if ended {
                assert!(store.end_session(*space, &digest).await.unwrap());
            }
            customers.push((s, cu, email, digest, erased, ended));
        }
    }

    // Exec: every way to ask, all at once, three times over
    let mut calls = Vec::new();
    for round in 0..3 {
        for (i, (s, cu, email, digest, erased, ended)) in customers.iter().cloned().enumerate() {
            let other_digest = customers[(i + 1) % customers.len()].3.clone();
            let cases = [
                // (space, cuRefNo, digest, expected customer, expected logged in)
                (s, cu.clone(), digest.clone(), (!erased).then(|| email.clone()), !erased && !ended),
                (s, cu.clone(), other_digest, (!erased).then(|| email.clone()), false),
                (1 - s, cu.clone(), digest.clone(), None, false),
            ];
            for (space, cu, digest, expected, logged_in) in cases {
                let (store, ip) = (store.clone(), ip.clone());
                calls.push(tokio::spawn(async move {
                    let detail = store.customer_detail(spaces[space], &cu, &digest, &ip).await.unwrap();
                    let found = detail.as_ref().map(|d| (d.profile.email.clone(), d.logged_in));
                    let want = expected.map(|e| (Some(e), logged_in));
                    assert_eq!(found, want, "round {round}: detail of {} in space {space}", cu.as_str());
                }));
            }
            let (store, ip) = (store.clone(), ip.clone());
            let unknown = format!("{:064}", i + 1000);
            calls.push(tokio::spawn(async move {
                let mine = store.account_info(spaces[s], &digest, &ip).await.unwrap();
                let want = (!erased && !ended).then(|| email.clone());
                assert_eq!(mine.map(|p| p.email), want.map(Some), "round {round}: account-info of {email}");
                let elsewhere = store.account_info(spaces[1 - s], &digest, &ip).await.unwrap();
                assert!(elsewhere.is_none(), "round {round}: {email}'s session read in another space");
                assert!(store.account_info(spaces[s], &unknown, &ip).await.unwrap().is_none());
            }));
        }
    }

    // Check: every call answered as it would alone
    for call in calls {
        call.await.expect("a read answered as it would alone");
    }
    let unknown = CuRefNo::generate();
    assert!(store.customer_detail(spaces[0], &unknown, "none", &ip).await.unwrap().is_none());
}

per_backend!(concurrent_reads, super::concurrent_reads_each_get_their_own_answer);
