//! `bizkit-mirror import` as a child process, against a fresh database on each backend:
//! a file of several batches with a bad item, standard input, the sandbox, and refusals.

use bizkit_mirror::normalize::Email;
use bizkit_mirror::store::{self, ContactWrite, Mode, PoolSettings};

use crate::support::child::{ChildServer, Finished};
use crate::support::{Backend, TestDb};

/// Runs the binary to completion with DATABASE_URL alone, feeding `stdin`.
fn run(database_url: &str, args: &[&str], stdin: &[u8]) -> Finished {
    ChildServer::new(args).database_url(database_url).stdin(stdin).run()
}

async fn story(db: TestDb) {
    let cli = |args: &[&str], stdin: &[u8]| run(&db.url, args, stdin);
    // Setup: an organisation, and a file of 1,200 contacts (three batches) with one bad item
    assert!(cli(&["org", "create", "shop", "--name", "Shop"], b"").status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contacts.ndjson");
    let mut file = String::new();
    for i in 0..1200 {
        if i == 7 {
            file.push_str("{\"email\": \"not an address\"}\n");
        } else {
            file.push_str(&format!(
                "{{\"email\": \"cli{i}@example.com\", \"phone\": \"777 {i:06}\", \"groups\": [\"CLI\"]}}\n"
            ));
        }
    }
    std::fs::write(&path, file).unwrap();
    let path = path.to_str().unwrap();

    // Exec: the file, into the live data
    let out = cli(&["import", "--org", "shop", path], b"");
    // Check: one failure, listed; the rest written; exit 1 because an item failed
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("imported 1200 items into shop (live): 1199 written, 1199 created, 1 failed"), "{stdout}");
    assert!(stderr.contains("item 7:") && stderr.contains("INVALID_EMAIL"), "{stderr}");
    let settings = PoolSettings::default();
    let store = store::connect(&db.url, &settings).await.unwrap();
    let live = store.space_of("shop", Mode::Live).await.unwrap();
    let probe = ContactWrite { email: Some(Email::parse("cli1199@example.com").unwrap()), ..Default::default() };
    let (created, profile) = store.upsert_contact(live, &probe).await.unwrap().unwrap();
    assert!(!created);
    assert_eq!(profile.phone.as_deref(), Some("+420 777001199"));
    assert_eq!(profile.groups[0].slug, "cli");

    // Exec: a JSON array on standard input, into the sandbox
    let array = br#"[{"email": "sandbox@example.com"}, {"phone": "+44 7400 123456"}]"#;
    let out = cli(&["import", "--org", "shop", "--sandbox", "-"], array);
    let stdout = &out.stdout;
    assert!(out.status.success(), "{stdout} {}", out.stderr);
    assert!(stdout.contains("imported 2 items into shop (sandbox): 2 written, 2 created, 0 failed"), "{stdout}");

    // Refusals: no such organisation or file, a bad region, a broken array
    for (args, input, says) in [
        (vec!["import", "--org", "nobody", path], &b""[..], "nobody"),
        (vec!["import", "--org", "shop", "/no/such/file"], b"", "/no/such/file"),
        (vec!["import", "--org", "shop", "--phone-region", "XX", path], b"", "XX"),
        (vec!["import", "--org", "shop", "-"], b"[{\"email\": \"x@example.com\"}, {", "stopped early"),
    ] {
        let out = cli(&args, input);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_imports_sqlite() {
    story(TestDb::new(Backend::Sqlite).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_imports_postgres() {
    match TestDb::new(Backend::Postgres).await {
        Some(db) => story(db).await,
        None => eprintln!("skipped: TEST_DATABASE_URL is not set"),
    }
}
