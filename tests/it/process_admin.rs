//! The admin command line as a child process, against a fresh database on each backend:
//! organisations and keys are made, listed and revoked, the key is printed once and only
//! on standard output, and every action is audited as `cli`.

use std::time::Duration;

use bizkit_mirror::normalize::ApiKey;
use bizkit_mirror::store::{self, PoolSettings};

use crate::support::child::{ChildServer, Finished};
use crate::support::{Backend, TestDb};

/// Runs the binary to completion with DATABASE_URL alone.
fn run(database_url: &str, args: &[&str]) -> Finished {
    ChildServer::new(args).database_url(database_url).run()
}

async fn story(db: TestDb) {
    let cli = |args: &[&str]| run(&db.url, args);

    // Organisations
    let out = cli(&["org", "create", "cli-co", "--name", "CLI Co"]).succeeded().to_owned();
    assert!(out.contains("cli-co"), "{out}");
    let dup = cli(&["org", "create", "cli-co", "--name", "Again"]);
    assert!(!dup.status.success());
    assert!(dup.stderr.contains("already exists"));
    assert!(!cli(&["org", "create", "Bad_Slug", "--name", "x"]).status.success());
    assert!(cli(&["org", "list"]).succeeded().contains("cli-co\t"));

    // A key: on standard output alone, once
    let created = cli(&[
        "key",
        "create",
        "--org",
        "cli-co",
        "--kind",
        "PROD",
        "--label",
        "from cli",
        "--scopes",
        "customer:read,customer:write",
        "--rate-limit-per-minute",
        "30",
    ]);
    let stdout = created.succeeded();
    let key = ApiKey::parse(stdout.trim()).unwrap_or_else(|_| panic!("stdout is the key alone: {stdout:?}"));
    let stderr = &created.stderr;
    assert!(!stderr.contains(key.expose()), "the key reached standard error: {stderr}");
    assert!(!cli(&["key", "create", "--org", "cli-co", "--kind", "TEST"]).status.success());
    assert!(!cli(&["key", "create", "--org", "nowhere", "--kind", "PROD"]).status.success());

    // Listed by prefix, never whole
    let table = cli(&["key", "list", "--org", "cli-co"]).succeeded().to_owned();
    assert!(table.contains(key.prefix8()), "{table}");
    assert!(!table.contains(key.expose()), "{table}");
    let row = table.lines().find(|l| l.contains(key.prefix8())).unwrap();
    assert!(row.contains("from cli") && row.contains("30"), "{row}");
    let id: i64 = row.split_whitespace().next().unwrap().parse().expect("the first column is the id");

    // Revoked, then revoked again (a no-op), then an unknown id
    let id_arg = id.to_string();
    assert!(cli(&["key", "revoke", &id_arg]).succeeded().contains("revoked"));
    let again = cli(&["key", "revoke", &id_arg]).succeeded().to_owned();
    assert!(again.contains("already"), "{again}");
    assert!(!cli(&["key", "revoke", "999999"]).status.success());

    // Check through the library: revoked, and audited as the command line
    let settings = PoolSettings { max_connections: 2, acquire_timeout: Duration::from_secs(3), ..Default::default() };
    let store = store::connect(&db.url, &settings).await.expect("connect");
    let record = store.resolve_key(&key.digest()).await.unwrap().expect("the key is registered");
    assert!(record.revoked_at.is_some());
    assert_eq!(record.rate_limit_per_minute, Some(30));
    let entries = store.list_audit(None, store::PagePos::TOP, 100).await.unwrap();
    let actions: Vec<&str> = entries.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "organisation.create",
            "organisation.list",
            "api_key.create",
            "api_key.list",
            "api_key.revoke",
            "api_key.revoke"
        ]
    );
    for e in &entries {
        assert_eq!(e.actor, "cli", "{e:?}");
        assert_eq!(e.request_id, None);
        assert!(!e.detail.to_string().contains(key.expose()));
    }
    let revoke = &entries[1];
    assert_eq!((revoke.organisation.as_deref(), revoke.target.as_str()), (Some("cli-co"), id.to_string().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_organisations_and_keys_sqlite() {
    story(TestDb::new(Backend::Sqlite).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_organisations_and_keys_postgres() {
    match TestDb::new(Backend::Postgres).await {
        Some(db) => story(db).await,
        None => eprintln!("skipped: TEST_DATABASE_URL is not set"),
    }
}
