//! Keeps `openapi.yaml` in agreement with the server: the operations it lists are the
//! ones routed, the served document is the committed file, its error codes are the
//! contract's, and its documented shapes are what the server answers.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support;

const SPEC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");

const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The error codes of API.md §7, read from the table itself.
fn contract_error_codes() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/API.md");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let section = text.split("\n## 7.").nth(1).expect("API.md has §7").split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| cell.split(|c: char| !(c.is_ascii_uppercase() || c == '_')))
        .filter(|w| w.len() > 3 && w.contains('_'))
        .map(str::to_owned)
        .collect()
}

fn spec_text() -> String {
    std::fs::read_to_string(SPEC_PATH).unwrap_or_else(|e| panic!("read {SPEC_PATH}: {e}"))
}

fn spec() -> Value {
    serde_norway::from_str::<Value>(&spec_text()).unwrap_or_else(|e| panic!("parse {SPEC_PATH}: {e}"))
}

/// Every (METHOD, path) the document describes.
fn spec_operations(spec: &Value) -> BTreeSet<(String, String)> {
    let paths = spec["paths"].as_object().expect("`paths` is a mapping");
    let mut ops = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().unwrap_or_else(|| panic!("path item {path} is a mapping"));
        for method in item.keys().filter(|k| HTTP_METHODS.contains(&k.as_str())) {
            ops.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    ops
}

/// The operation object at `path` / `method` (lower case).
fn operation<'a>(spec: &'a Value, path: &str, method: &str) -> &'a Value {
    let op = &spec["paths"][path][method];
    assert!(op.is_object(), "no operation {} {path} in the document", method.to_ascii_uppercase());
    op
}

/// Follows a local `$ref` (`#/a/b/c`) to the schema it names.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("non-local $ref {reference}"));
            let target = spec.pointer(pointer).unwrap_or_else(|| panic!("dangling $ref {reference}"));
            resolve(spec, target)
        }
        None => schema,
    }
}

/// The required property names of a schema, through `$ref` and `allOf`.
fn required_of(spec: &Value, schema: &Value) -> BTreeSet<String> {
    let schema = resolve(spec, schema);
    let mut required: BTreeSet<String> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        required.extend(required_of(spec, part));
    }
    required
}

/// The schema of property `name`, through `$ref` and `allOf`.
fn property_of<'a>(spec: &'a Value, schema: &'a Value, name: &str) -> Option<&'a Value> {
    let schema = resolve(spec, schema);
    if let Some(prop) = schema["properties"].get(name) {
        return Some(resolve(spec, prop));
    }
    schema["allOf"].as_array().into_iter().flatten().find_map(|part| property_of(spec, part, name))
}

/// Whether `value` has one of the JSON Schema types `ty` (a name or a list of names).
fn has_type(value: &Value, ty: &Value) -> bool {
    let one = |name: &str| match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown schema type {other}"),
    };
    match ty {
        Value::String(name) => one(name),
        Value::Array(names) => names.iter().filter_map(Value::as_str).any(one),
        other => panic!("schema `type` is {other}"),
    }
}

/// Checks that `body` has exactly the schema's required keys, each of its declared type
/// or const; returns what is wrong.
fn shape_problems(spec: &Value, schema: &Value, body: &Value) -> Vec<String> {
    let Some(object) = body.as_object() else {
        return vec![format!("not an object: {body}")];
    };
    let required = required_of(spec, schema);
    let keys: BTreeSet<String> = object.keys().cloned().collect();
    let mut problems = Vec::new();
    let missing: Vec<_> = required.difference(&keys).collect();
    let extra: Vec<_> = keys.difference(&required).collect();
    if !missing.is_empty() {
        problems.push(format!("required but absent: {missing:?}"));
    }
    if !extra.is_empty() {
        problems.push(format!("present but not required: {extra:?}"));
    }
    for (name, value) in object {
        let Some(prop) = property_of(spec, schema, name) else { continue };
        if let Some(expected) = prop.get("const") {
            if value != expected {
                problems.push(format!("{name} is {value}, the schema says const {expected}"));
            }
        }
        if let Some(ty) = prop.get("type") {
            if !has_type(value, ty) {
                problems.push(format!("{name} is {value}, the schema says type {ty}"));
            }
        }
    }
    problems
}

/// The schema of an operation's JSON response for `status`.
fn response_schema<'a>(spec: &'a Value, op: &'a Value, status: &str) -> &'a Value {
    let response = resolve(spec, &op["responses"][status]);
    let schema = &response["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "no application/json schema for {status}");
    schema
}

#[test]
fn spec_lists_exactly_the_routed_operations() {
    let documented = spec_operations(&spec());
    let routed: BTreeSet<(String, String)> = bizkit_mirror::http::route_table()
        .into_iter()
        .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "openapi.yaml and the route table differ\n  routed but missing from openapi.yaml: {undocumented:?}\n  \
         in openapi.yaml but not routed: {unrouted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_spec_is_the_committed_file() {
    let app = support::spawn_app(support::Backend::Sqlite).await.unwrap();
    let res = app.client.get(app.url("/openapi.yaml")).send().await.expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(content_type.as_deref(), Some("application/yaml"));
    let served = res.bytes().await.expect("body");
    let committed = std::fs::read(SPEC_PATH).expect("read openapi.yaml");
    assert!(
        served.as_ref() == committed.as_slice(),
        "the served document ({} bytes) is not the committed openapi.yaml ({} bytes); rebuild the server",
        served.len(),
        committed.len()
    );
}

#[test]
fn every_error_code_in_the_spec_is_known() {
    let spec = spec();
    let codes = spec
        .pointer("/components/schemas/Error/properties/error/properties/code/enum")
        .and_then(Value::as_array)
        .expect("the Error schema has a `code` enum");
    let listed: Vec<&str> = codes.iter().map(|c| c.as_str().expect("codes are strings")).collect();
    let documented: BTreeSet<&str> = listed.iter().copied().collect();
    assert_eq!(documented.len(), listed.len(), "duplicate codes in the enum: {listed:?}");
    let contract = contract_error_codes();
    assert!(contract.len() >= 24, "read too few codes from API.md §7: {contract:?}");
    let contract: BTreeSet<&str> = contract.iter().map(String::as_str).collect();
    let unknown: Vec<_> = documented.difference(&contract).collect();
    let absent: Vec<_> = contract.difference(&documented).collect();
    assert!(
        unknown.is_empty() && absent.is_empty(),
        "the Error code enum differs from API.md §7\n  not in API.md: {unknown:?}\n  missing from the enum: {absent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_examples_conform() {
    let spec = spec();

    // Every documented status of every operation is a real HTTP status.
    for (method, path) in spec_operations(&spec) {
        let op = operation(&spec, &path, &method.to_ascii_lowercase());
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path} has no responses"));
        assert!(!responses.is_empty(), "{method} {path} documents no response");
        for status in responses.keys() {
            let code: u16 =
                status.parse().unwrap_or_else(|_| panic!("{method} {path}: status {status:?} is not a u16"));
            assert!((100..=599).contains(&code), "{method} {path}: status {code} is not an HTTP status");
        }
    }

    let app = support::spawn_app(support::Backend::Sqlite).await.unwrap();

    // create, with the documented request under a fresh address in the example's domain.
    let create = operation(&spec, "/api/v1/customer/create", "post");
    let mut request = create
        .pointer("/requestBody/content/application~1json/examples/seed/value")
        .cloned()
        .expect("create documents a request example");
    let example_email = request["email"].as_str().expect("the example has an email").to_owned();
    let (_, domain) = example_email.split_once('@').expect("the example email has a domain");
    let fresh = format!("spec{:016x}@{domain}", rand::random::<u64>());
    request["email"] = Value::String(fresh.clone());
    let res = app
        .client
        .post(app.url("/api/v1/customer/create"))
        .query(&[("apiKey", &app.keys.prod)])
        .json(&request)
        .send()
        .await
        .expect("request");
    assert!(res.headers().contains_key("x-request-id"), "create answered without X-Request-Id");
    let (status, body) = support::split(res).await;
    assert_eq!(status, 200, "create: {body}");
    assert_eq!(body["newAccount"], true, "{fresh} should be a new account: {body}");
    assert_eq!(body["email"], fresh.as_str(), "{body}");
    let problems = shape_problems(&spec, response_schema(&spec, create, "200"), &body);
    assert!(problems.is_empty(), "create's response does not match CreateCustomerResponse: {problems:#?}\n{body}");
    let cu_ref_no = body["cuRefNo"].as_str().expect("cuRefNo").to_owned();

    // detail, with the documented identityId, which is no session here: logged out.
    let detail = operation(&spec, "/api/v1/customer/detail", "get");
    let identity = detail["parameters"]
        .as_array()
        .and_then(|params| params.iter().find(|p| p["name"] == "identityId"))
        .and_then(|p| p["example"].as_str())
        .expect("detail documents an identityId example");
    let res = app
        .client
        .get(app.url("/api/v1/customer/detail"))
        .query(&[("apiKey", app.keys.prod.as_str()), ("identityId", identity), ("cuRefNo", cu_ref_no.as_str())])
        .send()
        .await
        .expect("request");
    let (status, body) = support::split(res).await;
    assert_eq!(status, 200, "detail: {body}");
    assert_eq!(body["loggedIn"], false, "{body}");
    let schema = resolve(&spec, response_schema(&spec, detail, "200"));
    let branches = schema["oneOf"].as_array().expect("CustomerDetailResponse is a oneOf");
    let fits: Vec<_> = branches.iter().filter(|b| shape_problems(&spec, b, &body).is_empty()).collect();
    assert_eq!(fits.len(), 1, "detail's response should fit exactly one branch of CustomerDetailResponse: {body}");

    // detail for a cuRefNo that does not exist: the documented 404 envelope.
    let res = app
        .client
        .get(app.url("/api/v1/customer/detail"))
        .query(&[("apiKey", app.keys.prod.as_str()), ("identityId", identity), ("cuRefNo", "0000000000000000")])
        .send()
        .await
        .expect("request");
    let got = support::split(res).await;
    support::assert_error(&got, 404, "CUSTOMER_NOT_FOUND");
    assert!(detail["responses"]["404"].is_object(), "detail does not document its 404");
    let problems = shape_problems(&spec, response_schema(&spec, detail, "404"), &got.1);
    assert!(problems.is_empty(), "detail's 404 does not match the Error schema: {problems:#?}\n{}", got.1);
}

#[test]
fn every_event_type_is_documented_as_a_webhook() {
    let spec = spec();
    let server: BTreeSet<&str> = bizkit_mirror::webhooks::EVENT_TYPES.into_iter().collect();
    let webhooks: BTreeSet<&str> =
        spec["webhooks"].as_object().expect("a `webhooks` section").keys().map(String::as_str).collect();
    assert_eq!(webhooks, server, "`webhooks` lists exactly the server's event types");
    let listed: BTreeSet<&str> = spec
        .pointer("/components/schemas/WebhookEventType/enum")
        .and_then(Value::as_array)
        .expect("WebhookEventType has an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(listed, server, "WebhookEventType lists exactly the server's event types");
    for (name, item) in spec["webhooks"].as_object().unwrap() {
        let body = &item["post"]["requestBody"]["content"]["application/json"]["schema"]["allOf"][1];
        assert_eq!(body["properties"]["type"]["const"], name.as_str(), "{name}'s payload names its type");
    }
}
