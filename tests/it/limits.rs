//! What one customer's profile may hold, whatever the writes that built it (API.md §8):
//! each limit at its edge is accepted, past it refused with VALUE_TOO_LONG naming the
//! field, and the stored profile is the same before and after the refusal.

use serde_json::{json, Value};

use crate::support::{assert_error, TestApp};

const UPSERT: &str = "/api/v1/customer/create-or-update";
const META_BYTES: usize = 16 * 1024;

async fn upsert(app: &TestApp, body: Value) -> (u16, Value) {
    app.post(UPSERT, &app.keys.prod, body).await
}

/// The stored profile, read through a write that changes nothing.
async fn profile(app: &TestApp, cu: &str) -> Value {
    let (status, mut body) = upsert(app, json!({ "cuRefNo": cu })).await;
    assert_eq!(status, 200, "{body}");
    body.as_object_mut().unwrap().remove("newAccount");
    body
}

/// A `meta` whose serialised form is exactly `bytes` long.
fn meta_of(key: &str, bytes: usize) -> Value {
    let overhead = json!({ key: "" }).to_string().len();
    json!({ key: "x".repeat(bytes - overhead) })
}

backend_test!(merged_meta_is_limited, |app| {
    // Setup: two keys, each under the per-patch limit
    let (_, created) = upsert(&app, json!({ "email": "meta@example.com", "meta": meta_of("a", 9_000) })).await;
    let cu = created["cuRefNo"].as_str().unwrap().to_owned();
    let before = profile(&app, &cu).await;

    // Exec: a second patch that would take the merged object past 16 KiB
    let got = upsert(&app, json!({ "cuRefNo": cu, "meta": meta_of("b", 9_000) })).await;

    // Check: refused, nothing changed
    assert_error(&got, 400, "VALUE_TOO_LONG");
    assert_eq!(got.1["error"]["field"], "meta");
    assert_eq!(profile(&app, &cu).await, before);

    // At the edge: exactly 16 KiB merged is accepted
    let a = meta_of("a", 9_000);
    let rest = META_BYTES - a.to_string().len() - 1; // the comma between the two members
    let b = meta_of("b", rest + 2); // its braces are shared with the first member's
    let (status, body) = upsert(&app, json!({ "cuRefNo": cu, "meta": b })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::to_vec(&body["meta"]).unwrap().len(), META_BYTES);
    // A patch that removes a key makes room again
    let (status, body) = upsert(&app, json!({ "cuRefNo": cu, "meta": { "a": null, "c": 1 } })).await;
    assert_eq!(status, 200, "{body}");
});

backend_test!(alternate_contact_points_are_limited, |app| {
    let emails = |n: usize| (0..n).map(|i| format!("alt{i}@example.com")).collect::<Vec<_>>();
    let phones = |n: usize| (0..n).map(|i| format!("+420 777 000 {i:03}")).collect::<Vec<_>>();
    let (status, created) = upsert(
        &app,
        json!({ "email": "points@example.com", "alternateEmails": emails(14), "alternatePhones": phones(6) }),
    )
    .await;
    assert_eq!(status, 200, "twenty is the limit: {created}");
    let cu = created["cuRefNo"].as_str().unwrap().to_owned();
    let before = profile(&app, &cu).await;

    let got = upsert(&app, json!({ "cuRefNo": cu, "alternatePhones": phones(7) })).await;
    assert_error(&got, 400, "VALUE_TOO_LONG");
    assert_eq!(profile(&app, &cu).await, before);
    // The new contact's own lists count too
    let got = upsert(
        &app,
        json!({ "email": "points2@example.com", "alternateEmails": emails(20), "alternatePhones": phones(1) }),
    )
    .await;
    assert_error(&got, 400, "VALUE_TOO_LONG");
    // Alternates given again count once
    let (status, body) = upsert(&app, json!({ "cuRefNo": cu, "alternatePhones": phones(6) })).await;
    assert_eq!(status, 200, "{body}");
    // Replacing a list frees its places
    let (status, body) = upsert(
        &app,
        json!({ "cuRefNo": cu, "alternateEmails": [], "alternatePhones": phones(20), "overWriteAssets": true }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
});

backend_test!(running_subscriptions_are_limited, |app| {
    let subs = |from: usize, n: usize, status: &str| {
        (from..from + n).map(|i| json!({ "externalId": format!("sub-{i}"), "status": status })).collect::<Vec<_>>()
    };
    let (_, created) =
        upsert(&app, json!({ "email": "subs@example.com", "subscriptions": subs(0, 50, "active") })).await;
    let cu = created["cuRefNo"].as_str().unwrap().to_owned();
    let (status, body) = upsert(&app, json!({ "cuRefNo": cu, "subscriptions": subs(50, 50, "active") })).await;
    assert_eq!(status, 200, "a hundred is the limit: {body}");
    assert_eq!(body["runningSubscriptionList"].as_array().unwrap().len(), 100);
    let before = profile(&app, &cu).await;

    // Past the edge: refused, nothing changed
    let got = upsert(&app, json!({ "cuRefNo": cu, "subscriptions": subs(100, 1, "active") })).await;
    assert_error(&got, 400, "VALUE_TOO_LONG");
    assert_eq!(got.1["error"]["field"], "subscriptions");
    assert_eq!(profile(&app, &cu).await, before);

    // Ended subscriptions do not count: cancel one, then one more may run
    let (status, _) = upsert(&app, json!({ "cuRefNo": cu, "subscriptions": subs(0, 1, "cancelled") })).await;
    assert_eq!(status, 200);
    let (status, body) = upsert(&app, json!({ "cuRefNo": cu, "subscriptions": subs(100, 1, "active") })).await;
    assert_eq!(status, 200, "{body}");
});
