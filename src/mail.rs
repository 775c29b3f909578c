//! The outbox sender: with `SMTP_URL` set, a background task sends the live spaces' queued
//! messages with lettre and marks them sent; sandbox (DEV_) messages go out only through
//! a `SANDBOX_SMTP_URL` of their own, so a test key never mails a real person. Without a
//! sender, messages stay queued in `mail_outbox`. Logs name a message by id and kind
//! only; its body carries a live token.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::store::{DynStore, Mode, OutboxMessage, SpaceId};

/// A message that failed this many times is left for an operator.
const MAX_ATTEMPTS: i64 = 10;
const BATCH: i64 = 50;
const POLL: Duration = Duration::from_secs(5);

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Whose messages this sender sends: the live spaces' or the sandboxes'.
    mode: Mode,
}

impl Mailer {
    /// `smtp://`, `smtps://` or `smtp://…?tls=required` as lettre reads it; `from` is a
    /// mailbox such as `Shop <no-reply@shop.example>`.
    pub fn new(smtp_url: &str, from: &str) -> anyhow::Result<Mailer> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)?.build();
        let from = from.parse().map_err(|e| anyhow::anyhow!("MAIL_FROM is not a mailbox: {e}"))?;
        Ok(Mailer { transport, from, mode: Mode::Live })
    }

    /// Sends the sandbox spaces' messages instead of the live ones'.
    pub fn for_sandbox(mut self) -> Mailer {
        self.mode = Mode::Sandbox;
        self
    }

    async fn send(&self, m: &OutboxMessage) -> anyhow::Result<()> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(m.recipient.parse()?)
            .subject(&m.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(m.body.clone())?;
        self.transport.send(message).await?;
        Ok(())
    }

    /// Sends every pending message once; returns how many were sent.
    pub async fn drain(&self, store: &DynStore) -> anyhow::Result<usize> {
        let mut sent = 0;
        for m in store.pending_outbox(self.mode, MAX_ATTEMPTS, BATCH).await? {
            match self.send(&m).await {
                Ok(()) => {
                    store.mark_outbox_sent(SpaceId(m.space_id), m.id).await?;
                    tracing::info!(outbox_id = m.id, kind = %m.kind, "message sent");
                    sent += 1;
                }
                Err(e) => {
                    store.mark_outbox_failed(SpaceId(m.space_id), m.id, &e.to_string()).await?;
                    tracing::warn!(outbox_id = m.id, kind = %m.kind, error = %e, "sending failed; will retry");
                }
            }
        }
        Ok(sent)
    }

    /// Polls the outbox until the process ends.
    pub fn spawn(self, store: DynStore) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.drain(&store).await {
                    tracing::warn!(error = %e, "outbox not readable; will retry");
                }
                tokio::time::sleep(POLL).await;
            }
        })
    }
}
