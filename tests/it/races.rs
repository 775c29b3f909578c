//! Writes racing an erasure of the same customer, on every backend: whatever the order
//! the database picks, an erased customer never regains personal data, contact points or
//! an e-mail mapping, and `create` with its old address makes a new, readable customer.

use serde_json::json;

use crate::support::TestApp;

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
