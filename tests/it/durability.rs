//! No acknowledged write is lost to `kill -9`: the real binary under mixed write load
//! (creates and credits) is killed ten times per backend, and after each run every
//! create it answered 200 still reads and every acknowledged credit is in the balance.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::child::{ChildServer, DEMO_PROD};
use crate::support::{Backend, TestDb};

const TRIALS: usize = 10;
const WRITERS: usize = 4;
/// The demo customer the credits go to; it starts with 123.
const CREDITED: &str = "1cGIHvFoQDGLAbcA";
const SEED_CREDIT: i64 = 123;

/// Writes until `stop`, recording what the server acknowledged.
async fn write(
    base: String,
    writer: usize,
    trial: usize,
    stop: Arc<AtomicBool>,
    created: Arc<Mutex<Vec<String>>>,
    credited: Arc<AtomicU64>,
) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        if n % 2 == 0 {
            let email = format!("kill-{trial}-{writer}-{n}@example.com");
            let res = client
                .post(format!("{base}/api/v1/customer/create"))
                .bearer_auth(DEMO_PROD)
                .json(&json!({ "email": email }))
                .send()
                .await;
            if let Ok(res) = res {
                if res.status() == 200 {
                    if let Ok(body) = res.json::<Value>().await {
                        created.lock().unwrap().push(body["cuRefNo"].as_str().unwrap_or_default().to_owned());
                    }
                }
            }
        } else {
            let res = client
                .post(format!("{base}/api/v1/customer/credit-add"))
                .bearer_auth(DEMO_PROD)
                .header("idempotency-key", format!("kill-{trial}-{writer}-{n}"))
                .json(&json!({ "cuRefNo": CREDITED, "amount": 1, "reason": "kill -9" }))
                .send()
                .await;
            if res.is_ok_and(|r| r.status() == 200) {
                credited.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn kill_nine_loses_no_acknowledged_write(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        eprintln!("skipped: no TEST_DATABASE_URL for {backend:?}");
        return;
    };
    let created = Arc::new(Mutex::new(Vec::new()));
    let credited = Arc::new(AtomicU64::new(0));
    for trial in 0..TRIALS {
        // Setup: a server under load
        let server = ChildServer::new(["serve", "--demo"]).database_url(&db.url).unlimited_rates().start();
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(write(server.base.clone(), w, trial, stop.clone(), created.clone(), credited.clone()))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;

        // Exec: kill -9 in the middle of it (dropping the child kills it)
        drop(server);
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
    }

    // Check: every acknowledged write is there
    let server = ChildServer::new(["serve", "--demo"]).database_url(&db.url).unlimited_rates().start();
    let client = reqwest::Client::new();
    let created = created.lock().unwrap().clone();
    assert!(!created.is_empty(), "no create was acknowledged");
    for cu in &created {
        let res = client
            .get(server.url("/api/v1/customer/detail"))
            .bearer_auth(DEMO_PROD)
            .query(&[("cuRefNo", cu.as_str()), ("identityId", &"A".repeat(32))])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "acknowledged customer {cu} is gone");
    }
    let res = client
        .post(server.url("/api/v1/customer/create-or-update"))
        .bearer_auth(DEMO_PROD)
        .json(&json!({ "cuRefNo": CREDITED }))
        .send()
        .await
        .unwrap();
    let balance = res.json::<Value>().await.unwrap()["creditBalance"].as_i64().unwrap();
    let acknowledged = credited.load(Ordering::Relaxed) as i64;
    assert!(acknowledged > 0, "no credit was acknowledged");
    assert!(
        balance >= SEED_CREDIT + acknowledged,
        "balance {balance} lacks acknowledged credits: {SEED_CREDIT} + {acknowledged}"
    );
    println!(
        "{backend:?}: {} creates and {acknowledged} credits acknowledged over {TRIALS} kills, all present",
        created.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_loses_no_acknowledged_write_sqlite() {
    kill_nine_loses_no_acknowledged_write(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_loses_no_acknowledged_write_postgres() {
    kill_nine_loses_no_acknowledged_write(Backend::Postgres).await;
}
