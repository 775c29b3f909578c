//! The outbox sender against a minimal SMTP server on 127.0.0.1: a queued confirmation is
//! delivered with its link and marked sent (body cleared); an unreachable server leaves
//! the message queued with the error recorded.

use std::sync::{Arc, Mutex};

use bizkit_mirror::mail::Mailer;
use bizkit_mirror::store::Mode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Accepts SMTP sessions and records every line the client sends.
async fn smtp_server() -> (u16, Arc<Mutex<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(String::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 test ready\r\n").await.unwrap();
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                    let reply: &[u8] = if in_data {
                        if line != "." {
                            continue;
                        }
                        in_data = false;
                        b"250 queued\r\n"
                    } else if line.eq_ignore_ascii_case("DATA") {
                        in_data = true;
                        b"354 go ahead\r\n"
                    } else if line.eq_ignore_ascii_case("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, seen)
}

backend_test!(outbox_is_sent_over_smtp_and_marked, |app| {
    // Setup: a registration queues its confirmation
    let email = "mailme@example.com";
    let (status, body) = app
        .post("/contact/v1/register-account", &app.keys.prod, json!({ "email": email, "password": "Correct1Horse" }))
        .await;
    assert_eq!(status, 200, "{body}");
    let space = app.store.space_of("acme", Mode::Live).await.unwrap();
    let queued = app.db.latest_outbox_message(space, email).await.expect("queued");
    let (_, rest) = queued.body.split_once("token=").expect("a link");
    let token: String = rest.chars().take_while(char::is_ascii_alphanumeric).collect();

    // An unreachable server: still queued, the error kept
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("smtp://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let mailer = Mailer::new(&dead, "Shop <no-reply@shop.example>").unwrap();
    assert_eq!(mailer.drain(&app.store).await.unwrap(), 0);
    let after = app.db.latest_outbox_message(space, email).await.unwrap();
    assert_eq!((after.sent_at, after.attempts), (None, 1));

    // Exec: a working server
    let (port, seen) = smtp_server().await;
    let mailer = Mailer::new(&format!("smtp://127.0.0.1:{port}"), "Shop <no-reply@shop.example>").unwrap();
    assert_eq!(mailer.drain(&app.store).await.unwrap(), 1);

    // Check: delivered to the address with the token, then marked sent and emptied
    let transcript = seen.lock().unwrap().clone();
    assert!(transcript.contains(&format!("RCPT TO:<{email}>")), "{transcript}");
    // The body travels quoted-printable: undo its soft line breaks and `=3D` escapes.
    let decoded = transcript.replace("=\n", "").replace("=3D", "=");
    assert!(
        decoded.contains(&format!("/contact/v1/confirm-account?token={token}")),
        "the link reached the message: {transcript}"
    );
    let sent = app.db.latest_outbox_message(space, email).await.unwrap();
    assert!(sent.sent_at.is_some());
    assert_eq!(sent.body, "", "a sent message no longer holds the token");
    assert!(app.store.pending_outbox(bizkit_mirror::store::Mode::Live, 10, 50).await.unwrap().is_empty());
    assert_eq!(mailer.drain(&app.store).await.unwrap(), 0, "nothing is sent twice");
});

backend_test!(sandbox_mail_stays_queued_unless_it_has_its_own_sender, |app| {
    // Setup: a DEV_ key's registration queues its confirmation in the sandbox
    let email = "sandbox@example.com";
    let (status, body) = app
        .post("/contact/v1/register-account", &app.keys.dev, json!({ "email": email, "password": "Correct1Horse" }))
        .await;
    assert_eq!(status, 200, "{body}");
    let sandbox = app.store.space_of("acme", Mode::Sandbox).await.unwrap();
    assert!(app.db.latest_outbox_message(sandbox, email).await.is_some(), "queued");
    let (port, seen) = smtp_server().await;
    let url = format!("smtp://127.0.0.1:{port}");

    // Exec + Check: the production sender leaves it alone
    let live = Mailer::new(&url, "Shop <no-reply@shop.example>").unwrap();
    assert_eq!(live.drain(&app.store).await.unwrap(), 0);
    assert!(!seen.lock().unwrap().contains(email), "a sandbox message reached the live sender");
    let queued = app.db.latest_outbox_message(sandbox, email).await.unwrap();
    assert_eq!((queued.sent_at, queued.attempts), (None, 0));

    // Exec + Check: a sender for the sandbox sends it
    let sandbox_sender = Mailer::new(&url, "Shop <no-reply@shop.example>").unwrap().for_sandbox();
    assert_eq!(sandbox_sender.drain(&app.store).await.unwrap(), 1);
    assert!(seen.lock().unwrap().contains(&format!("RCPT TO:<{email}>")));
    assert!(app.db.latest_outbox_message(sandbox, email).await.unwrap().sent_at.is_some());
});
