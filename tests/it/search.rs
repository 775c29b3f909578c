//! The customer list, on every backend: each filter finds exactly its customers, pages
//! walk the whole list once, the search keys follow every write, and each filter is
//! served by its index (the plans, on a space of 100,000 customers on PostgreSQL).

use bizkit_mirror::store::{CustomerFilter, Mode, SpaceId};
use serde_json::{json, Value};

use crate::support::{self, assert_error, Backend, TestApp};

const SEARCH: &str = "/api/v1/customer/list";
const UPSERT: &str = "/api/v1/customer/create-or-update";

async fn upsert(app: &TestApp, body: Value) -> String {
    let (status, res) = app.post(UPSERT, &app.keys.prod, body.clone()).await;
    assert_eq!(status, 200, "{body} → {res}");
    res["cuRefNo"].as_str().expect("cuRefNo").to_owned()
}

async fn search_page(app: &TestApp, params: &[(&str, &str)]) -> Value {
    let (status, body) = app.get(SEARCH, &app.keys.prod, params).await;
    assert_eq!(status, 200, "{params:?} → {body}");
    body
}

/// The cuRefNos the first page of `params` lists, in order.
async fn found(app: &TestApp, params: &[(&str, &str)]) -> Vec<String> {
    let page = search_page(app, params).await;
    page["customers"].as_array().unwrap().iter().map(|c| c["cuRefNo"].as_str().unwrap().to_owned()).collect()
}

/// A list request's query parameters.
type Params<'a> = Vec<(&'a str, &'a str)>;

async fn acme_live(app: &TestApp) -> SpaceId {
    app.store.space_of("acme", Mode::Live).await.unwrap()
}

backend_test!(every_filter_finds_exactly_its_customers, |app| {
    // Setup: three customers, created in order, and an erased one that would match much
    let jana = upsert(
        &app,
        json!({
            "email": "Jana.Novakova@gmail.com", "firstName": "Jana", "lastName": "Nováková",
            "companyName": "Zelená zahrada s.r.o.", "phone": "777 111 222", "premium": true, "groups": ["VIP"],
            "alternateEmails": ["jana@work.example"], "alternatePhones": ["+421 905 123 456"]
        }),
    )
    .await;
    let petr = upsert(
        &app,
        json!({
            "email": "petr.mueller@example.com", "firstName": "Petr", "lastName": "Müller", "companyName": "ACME",
            "ban": true, "groups": ["Osobní trenér"]
        }),
    )
    .await;
    let zhukov =
        upsert(&app, json!({ "email": "zhukov@example.com", "lastName": "Жуков", "phone": "777 333 444" })).await;
    let erased = upsert(
        &app,
        json!({ "email": "nova.erased@example.com", "firstName": "Nová", "lastName": "Novák", "groups": ["VIP"],
                "premium": true, "phone": "777 999 000" }),
    )
    .await;
    let (status, _) = app.post("/api/v1/customer/delete", &app.keys.prod, json!({ "cuRefNo": erased })).await;
    assert_eq!(status, 200);
    let all = [zhukov.clone(), petr.clone(), jana.clone()];

    // Exec and check: each filter alone, then combined
    let cases: Vec<(Params, Vec<&String>)> = vec![
        (vec![], all.iter().collect()),
        // E-mail: canonical form, own or alternate.
        (vec![("email", "jana.novakova+shop@gmail.com")], vec![&jana]),
        (vec![("email", "JANA@work.example")], vec![&jana]),
        (vec![("email", "nova.erased@example.com")], vec![]),
        (vec![("email", "nobody@example.com")], vec![]),
        // Phone: normalised, own or alternate.
        (vec![("phone", "+420 777 111 222")], vec![&jana]),
        (vec![("phone", "777111222")], vec![&jana]),
        (vec![("phone", "+421905123456")], vec![&jana]),
        (vec![("phone", "777 999 000")], vec![]),
        // A prefix of the full name, last name, company or e-mail, folded.
        (vec![("q", "nov")], vec![&jana]),
        (vec![("q", "NOVÁ")], vec![&jana]),
        (vec![("q", "jana n")], vec![&jana]),
        (vec![("q", "zelena")], vec![&jana]),
        (vec![("q", "mül")], vec![&petr]),
        (vec![("q", "MUL")], vec![&petr]),
        (vec![("q", "acm")], vec![&petr]),
        (vec![("q", "petr.m")], vec![&petr]),
        (vec![("q", "Жу")], vec![&zhukov]),
        (vec![("q", "zhu")], vec![&zhukov]),
        (vec![("q", "ueller")], vec![]),
        // Group by slug, or by a name that makes the slug.
        (vec![("group", "vip")], vec![&jana]),
        (vec![("group", "Osobní trenér")], vec![&petr]),
        (vec![("group", "nobody")], vec![]),
        (vec![("group", "vip"), ("premium", "true")], vec![&jana]),
        (vec![("group", "vip"), ("premium", "false")], vec![]),
        (vec![("group", "Osobní trenér"), ("ban", "true")], vec![&petr]),
        (vec![("group", "Osobní trenér"), ("ban", "false")], vec![]),
        // Flags.
        (vec![("premium", "true")], vec![&jana]),
        (vec![("premium", "false")], vec![&zhukov, &petr]),
        (vec![("ban", "true")], vec![&petr]),
        (vec![("ban", "false")], vec![&zhukov, &jana]),
        // Combined: every filter must hold.
        (vec![("q", "nov"), ("premium", "true"), ("group", "vip")], vec![&jana]),
        (vec![("q", "nov"), ("ban", "true")], vec![]),
        (vec![("email", "zhukov@example.com"), ("phone", "777 333 444")], vec![&zhukov]),
    ];
    for (params, want) in cases {
        let want: Vec<String> = want.into_iter().cloned().collect();
        assert_eq!(found(&app, &params).await, want, "{params:?}");
    }

    // Creation time: from (inclusive) and to (exclusive), as the list reports it.
    let listed = search_page(&app, &[]).await;
    let created: Vec<&str> =
        listed["customers"].as_array().unwrap().iter().map(|c| c["createdAt"].as_str().unwrap()).collect();
    let (zhukov_at, jana_at) = (created[0], created[2]);
    assert_eq!(
        found(&app, &[("createdFrom", jana_at), ("createdTo", zhukov_at)]).await,
        vec![petr.clone(), jana.clone()]
    );
    assert_eq!(found(&app, &[("createdFrom", zhukov_at)]).await, vec![zhukov.clone()]);
    assert_eq!(found(&app, &[("createdTo", jana_at)]).await, Vec::<String>::new());

    // An item is the extended profile with its times.
    let item = &listed["customers"][2];
    assert_eq!(item["email"], "jana.novakova@gmail.com");
    assert_eq!(item["lastName"], "Nováková");
    assert_eq!(item["groups"], json!([{ "name": "VIP", "slug": "vip" }]));
    assert_eq!(item["premium"], true);
    assert!(item["updatedAt"].is_string() && item["meta"].is_object() && item["runningSubscriptionList"].is_array());
    assert_eq!(listed["nextCursor"], Value::Null);
});

backend_test!(a_groups_list_follows_its_members_flags, |app| {
    // Setup: four members of one group, none premium or banned, and one who is not a member
    let mut members = Vec::new();
    for i in 0..4 {
        members.push(upsert(&app, json!({ "email": format!("member{i}@example.com"), "groups": ["Club"] })).await);
    }
    let outsider = upsert(&app, json!({ "email": "outsider@example.com", "premium": true })).await;
    let club = |flag: &'static str, value: &'static str| vec![("group", "club"), (flag, value)];
    assert!(found(&app, &club("premium", "true")).await.is_empty());

    // Exec: flags set by writes that do not name the groups (create-or-update, an import),
    // a new membership of a customer who has a flag, and flags joined by a merge
    upsert(&app, json!({ "email": "member1@example.com", "premium": true })).await;
    let imported = app
        .client
        .post(app.url("/api/v1/customer/import"))
        .bearer_auth(&app.keys.prod)
        .json(&json!([{ "email": "member2@example.com", "ban": true }, { "email": "member3@example.com", "premium": true }]))
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 200);
    let results = imported.text().await.unwrap();
    assert_eq!(results.matches("\"ok\":true").count(), 2, "{results}");
    upsert(&app, json!({ "email": "member3@example.com", "premium": false })).await;
    upsert(&app, json!({ "email": "outsider@example.com", "groups": ["Club"] })).await;
    let twin = upsert(&app, json!({ "email": "twin@example.com", "premium": true, "ban": true })).await;
    let merged = app
        .post(
            "/api/v1/customer/merge",
            &app.keys.prod,
            json!({ "primaryCuRefNo": members[0], "duplicateCuRefNo": twin }),
        )
        .await;
    assert_eq!(merged.0, 200, "{}", merged.1);

    // Check: each flag's list of the group, newest first, and no membership left unlike its customer
    let [m0, m1, m2, m3] = &members[..] else { unreachable!() };
    assert_eq!(found(&app, &club("premium", "true")).await, vec![outsider.clone(), m1.clone(), m0.clone()]);
    assert_eq!(found(&app, &club("ban", "true")).await, vec![m2.clone(), m0.clone()]);
    assert_eq!(found(&app, &club("ban", "false")).await, vec![outsider.clone(), m3.clone(), m1.clone()]);
    assert_eq!(app.db.profile_list_drift().await, Vec::<String>::new());
});

backend_test!(bad_filters_are_refused_naming_the_field, |app| {
    let long = "a".repeat(201);
    for (params, status, code, field) in [
        (vec![("email", "not-an-email")], 400, "INVALID_EMAIL", "email"),
        (vec![("phone", "call me")], 400, "INVALID_PHONE", "phone"),
        (vec![("q", long.as_str())], 400, "VALUE_TOO_LONG", "q"),
        (vec![("q", "\u{E000}")], 400, "INVALID_REQUEST", "q"),
        (vec![("group", "!!!")], 400, "INVALID_REQUEST", "group"),
        (vec![("premium", "yes")], 400, "INVALID_REQUEST", "premium"),
        (vec![("ban", "1")], 400, "INVALID_REQUEST", "ban"),
        (vec![("createdFrom", "yesterday")], 400, "INVALID_REQUEST", "createdFrom"),
        (vec![("createdTo", "2026-13-01T00:00:00Z")], 400, "INVALID_REQUEST", "createdTo"),
        (vec![("limit", "0")], 400, "INVALID_REQUEST", "limit"),
        (vec![("limit", "501")], 400, "INVALID_REQUEST", "limit"),
        (vec![("cursor", "zz")], 400, "INVALID_REQUEST", "cursor"),
    ] {
        let got = app.get(SEARCH, &app.keys.prod, &params).await;
        assert_error(&got, status, code);
        assert_eq!(got.1["error"]["field"], field, "{params:?}: {}", got.1);
    }
    // The scope: a key without customer:read may not list.
    let writer = app.key_with_scopes(&["customer:write"]).await;
    assert_error(&app.get(SEARCH, &writer, &[]).await, 403, "PUBLIC_API_KEY_FORBIDDEN");
    // Another space's customers never show.
    upsert(&app, json!({ "email": "live@example.com" })).await;
    let (status, page) = app.get(SEARCH, &app.keys.dev, &[]).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["customers"], json!([]));
});

backend_test!(pages_walk_the_whole_list_once, |app| {
    // Setup: eleven customers, three of them sharing a name prefix, all created in the
    // same microsecond (their row ids then decide the order)
    let mut made = Vec::new();
    for i in 0..11 {
        let last = if i % 4 == 0 { format!("Dvořák{i}") } else { format!("Other{i}") };
        made.push(
            upsert(&app, json!({ "email": format!("page{i}@example.com"), "lastName": last, "groups": ["Pages"] }))
                .await,
        );
    }
    for table in ["customers", "customer_group_members"] {
        app.db.execute(&format!("update {table} set created_at = (select min(created_at) from customers)")).await;
    }
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    let dvorak = vec![made[8].clone(), made[4].clone(), made[0].clone()];

    for (params, want) in
        [(vec![], newest_first.clone()), (vec![("q", "dvo")], dvorak), (vec![("group", "pages")], newest_first)]
    {
        // Exec: pages of three, following nextCursor
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10 {
            let mut p: Vec<(&str, &str)> = params.clone();
            p.push(("limit", "3"));
            if let Some(c) = cursor.as_deref() {
                p.push(("cursor", c));
            }
            let page = search_page(&app, &p).await;
            let items = page["customers"].as_array().unwrap();
            assert!(items.len() <= 3);
            seen.extend(items.iter().map(|c| c["cuRefNo"].as_str().unwrap().to_owned()));
            match page["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        // Check: every customer once, in the list's order
        assert_eq!(seen, want, "{params:?}");
    }
});

backend_test!(search_keys_follow_every_write, |app| {
    let q = |s: &'static str| [("q", s)];
    // create-or-update: a new name is found, the old one no longer
    let cu = upsert(&app, json!({ "email": "keys@example.com", "firstName": "Karel", "lastName": "Čapek" })).await;
    assert_eq!(found(&app, &q("cape")).await, vec![cu.clone()]);
    upsert(&app, json!({ "cuRefNo": cu, "lastName": "Hašek", "companyName": "Švejk a spol." })).await;
    assert!(found(&app, &q("cape")).await.is_empty());
    assert_eq!(found(&app, &q("karel has")).await, vec![cu.clone()]);
    assert_eq!(found(&app, &q("svejk")).await, vec![cu.clone()]);
    // Clearing a field clears its key.
    upsert(&app, json!({ "cuRefNo": cu, "companyName": null })).await;
    assert!(found(&app, &q("svejk")).await.is_empty());

    // create: an existing customer's empty company is filled, and found
    let created = app.create(&app.keys.prod, "guest@example.com").await;
    let guest = created["cuRefNo"].as_str().unwrap().to_owned();
    let (status, _) = app
        .post(
            "/api/v1/customer/create",
            &app.keys.prod,
            json!({ "email": "guest@example.com", "companyName": "Łódź Trading" }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(found(&app, &q("lodz")).await, vec![guest.clone()]);

    // registration: a guest's names are filled in, and found
    let (status, body) = app
        .post(
            "/contact/v1/register-account",
            &app.keys.prod,
            json!({ "email": "guest@example.com", "password": "Correct horse 42", "firstName": "Zoë", "lastName": "Ångström" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(found(&app, &q("zoe ang")).await, vec![guest.clone()]);
    assert_eq!(found(&app, &q("angs")).await, vec![guest.clone()]);

    // import: each item's keys
    let res = app
        .client
        .post(app.url("/api/v1/customer/import"))
        .bearer_auth(&app.keys.prod)
        .json(&json!([{ "email": "imported@example.com", "firstName": "Ödön", "companyName": "Import Ltd" },
                      { "cuRefNo": cu, "firstName": "Jaroslav" }]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(found(&app, &q("odon")).await.len(), 1);
    assert_eq!(found(&app, &q("import l")).await.len(), 1);
    assert_eq!(found(&app, &q("jaroslav hasek")).await, vec![cu.clone()]);

    // erasure: nothing of the customer is found, and no key is left behind
    let (status, _) = app.post("/api/v1/customer/delete", &app.keys.prod, json!({ "cuRefNo": guest })).await;
    assert_eq!(status, 200);
    assert!(found(&app, &q("zoe")).await.is_empty());
    assert_eq!(app.db.erased_leftovers().await, 0);
});

backend_test!(customers_stored_without_keys_get_them, |app| {
    // Setup: customers whose keys are missing, as rows written before search existed
    let a = upsert(&app, json!({ "email": "old1@example.com", "lastName": "Šťastný" })).await;
    let b = upsert(&app, json!({ "email": "old2@example.com", "companyName": "Stará firma" })).await;
    let stale = "update customers set search_name = null, search_last_name = null, search_company_name = null, \
                 search_email = null, search_version = 0";
    assert_eq!(app.db.execute(stale).await, 2);
    assert!(found(&app, &[("q", "stast")]).await.is_empty());
    // Exec: refresh, a batch of one at a time
    assert_eq!(app.store.refresh_search_keys(1).await.unwrap(), 1);
    assert_eq!(app.store.refresh_search_keys(10).await.unwrap(), 1);
    assert_eq!(app.store.refresh_search_keys(10).await.unwrap(), 0);
    // Check
    assert_eq!(found(&app, &[("q", "stast")]).await, vec![a]);
    assert_eq!(found(&app, &[("q", "stara f")]).await, vec![b]);
    assert_eq!(found(&app, &[("q", "old")]).await.len(), 2);
});

/// The filters, each with the index that must serve it.
fn filters() -> Vec<(CustomerFilter, &'static [&'static str])> {
    let f = CustomerFilter::default;
    vec![
        (f(), &["customers_listed"]),
        (
            CustomerFilter { email: Some("user77777@example.com".into()), ..f() },
            &["customers_space_id_email_canonical_key", "contact_points_lookup"],
        ),
        (CustomerFilter { phone: Some("+420 600077777".into()), ..f() }, &["customers_phone", "contact_points_lookup"]),
        (
            CustomerFilter { prefix: Some("first7777".into()), ..f() },
            &[
                "customers_search_name",
                "customers_search_last_name",
                "customers_search_company_name",
                "customers_search_email",
            ],
        ),
        (CustomerFilter { group: Some("rare".into()), ..f() }, &["customer_group_members_listed"]),
        (
            CustomerFilter { group: Some("common".into()), premium: Some(true), ..f() },
            &["customer_group_members_listed_premium"],
        ),
        (
            CustomerFilter { group: Some("common".into()), ban: Some(true), premium: Some(false), ..f() },
            &["customer_group_members_listed_banned"],
        ),
        (
            CustomerFilter { group: Some("common".into()), prefix: Some("first7777".into()), ..f() },
            &["customers_search_name"],
        ),
        (CustomerFilter { partner_customer_id: Some("crm-77777".into()), ..f() }, &["customers_partner_customer_id"]),
        (CustomerFilter { premium: Some(true), ..f() }, &["customers_listed_premium"]),
        (CustomerFilter { ban: Some(true), ..f() }, &["customers_listed_banned"]),
        (CustomerFilter { premium: Some(false), ban: Some(false), ..f() }, &["customers_listed"]),
        (
            CustomerFilter {
                created_from: Some(chrono::Utc::now() - chrono::TimeDelta::days(400)),
                created_to: Some(chrono::Utc::now() - chrono::TimeDelta::days(399)),
                ..f()
            },
            &["customers_listed"],
        ),
    ]
}

/// PostgreSQL: on a space of 100,000 customers, every filter's plan uses its index and
/// no plan reads the customers table whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_is_served_by_its_index_at_100k() {
    let Some(app) = support::spawn_app(Backend::Postgres).await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    // Setup: 100,000 customers (2 % premium, 1 % banned, 0.1 % in a rare group and half in
    // a common one, 10 % with an alternate e-mail), created over a year; fresh statistics
    let space = acme_live(&app).await.0;
    let load = format!(
        "insert into customers (space_id, cu_ref_no, email, email_canonical, phone, first_name, last_name, \
         company_name, premium, ban, created_at, updated_at, search_name, search_last_name, search_company_name, \
         search_email, search_version) \
         select {space}, 'bulk' || i, 'user' || i || '@example.com', 'user' || i || '@example.com', \
         '+420 6' || lpad(i::text, 8, '0'), 'First' || i, 'Last' || i, 'Company ' || (i % 5000), \
         i % 50 = 0, i % 100 = 1, now() - i * interval '5 minutes', now(), 'first' || i || ' last' || i, \
         'last' || i, 'company ' || (i % 5000), 'user' || i || '@example.com', 1 \
         from generate_series(1, 100000) i"
    );
    assert_eq!(app.db.execute(&load).await, 100_000);
    app.db.execute(&format!("insert into customer_groups (space_id, name, slug) values ({space}, 'Common', 'common'), ({space}, 'Rare', 'rare')")).await;
    app.db
        .execute(&format!(
            "insert into customer_group_members (space_id, customer_id, group_id, created_at, premium, ban) \
             select c.space_id, c.id, g.id, c.created_at, c.premium, c.ban from customers c \
             join customer_groups g on g.space_id = c.space_id \
             where c.space_id = {space} and ((g.slug = 'rare' and c.id % 1000 = 3) or (g.slug = 'common' and c.id % 2 = 0))"
        ))
        .await;
    app.db
        .execute(&format!(
            "insert into contact_points (space_id, customer_id, kind, value) \
             select space_id, id, 'email', 'alt' || id || '@example.com' from customers \
             where space_id = {space} and id % 10 = 5"
        ))
        .await;
    app.db.execute("analyze").await;

    for (filter, indexes) in filters() {
        // Exec
        let plan = app.store.explain_list_customers(SpaceId(space), &filter).await.unwrap();
        // Check
        assert!(!plan.contains("Seq Scan on customers"), "{filter:?} reads the table whole:\n{plan}");
        for index in indexes {
            assert!(plan.contains(index), "{filter:?} does not use {index}:\n{plan}");
        }
    }
    // A group of half the space is walked in its own order too, not read whole and sorted.
    let common = CustomerFilter { group: Some("common".into()), ..Default::default() };
    let plan = app.store.explain_list_customers(SpaceId(space), &common).await.unwrap();
    assert!(!plan.contains("Sort") && plan.contains("customer_group_members_listed"), "{plan}");
    // The plans find what they describe.
    for (filter, want) in [
        (CustomerFilter { email: Some("user77777@example.com".into()), ..Default::default() }, 1),
        (CustomerFilter { email: Some("alt5005@example.com".into()), ..Default::default() }, 1),
        (CustomerFilter { group: Some("rare".into()), ..Default::default() }, 100),
        (CustomerFilter { prefix: Some("first7777".into()), ..Default::default() }, 11),
    ] {
        let page =
            app.store.list_customers(SpaceId(space), &filter, bizkit_mirror::store::PagePos::TOP, 500).await.unwrap();
        assert_eq!(page.len(), want, "{filter:?}");
    }
}

/// SQLite: every filter's plan searches an index too, with no statistics to go by; the
/// only table read whole is the handful of ids a filter found (`h`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_is_served_by_an_index_on_sqlite() {
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    let space = acme_live(&app).await;
    for (filter, indexes) in filters() {
        let plan = app.store.explain_list_customers(space, &filter).await.unwrap();
        let scans: Vec<&str> = plan.lines().filter(|l| l.starts_with("SCAN") && *l != "SCAN h").collect();
        assert!(scans.is_empty(), "{filter:?} reads a table whole:\n{plan}");
        for index in indexes.iter().filter(|i| !i.ends_with("_key")) {
            assert!(plan.contains(index), "{filter:?} does not use {index}:\n{plan}");
        }
    }
}
