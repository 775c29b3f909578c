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
