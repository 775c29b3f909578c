//! The mail outbox: messages queued by other tasks (registration queues its confirmation
//! in its own transaction), read by the SMTP sender and by tests.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{SpaceId, StoreResult};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OutboxMessage {
    pub id: i64,
    pub space_id: i64,
    pub recipient: String,
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub attempts: i64,
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// The newest message queued for `recipient` (a normalised address).
    async fn latest_outbox_message(&self, space: SpaceId, recipient: &str) -> StoreResult<Option<OutboxMessage>>;
    /// Unsent messages tried fewer than `max_attempts` times, oldest first.
    async fn pending_outbox(&self, max_attempts: i64, limit: i64) -> StoreResult<Vec<OutboxMessage>>;
    /// Marks a message sent and clears its body, which carried a live token.
    async fn mark_outbox_sent(&self, id: i64) -> StoreResult<()>;
    async fn mark_outbox_failed(&self, id: i64, error: &str) -> StoreResult<()>;
}

pub const LATEST: &str = "select id, space_id, recipient, kind, subject, body, created_at, sent_at, attempts \
     from mail_outbox where space_id = $1 and recipient = $2 order by id desc limit 1";
pub const PENDING: &str = "select id, space_id, recipient, kind, subject, body, created_at, sent_at, attempts \
     from mail_outbox where sent_at is null and attempts < $1 order by id limit $2";

macro_rules! impl_outbox {
    ($store:ident) => {
        #[async_trait::async_trait]
        impl $crate::store::OutboxStore for $store {
            async fn latest_outbox_message(
                &self,
                space: $crate::store::SpaceId,
                recipient: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::OutboxMessage>> {
                Ok(sqlx::query_as($crate::store::outbox::LATEST).bind(space.0).bind(recipient).fetch_optional(&self.pool).await?)
            }

            async fn pending_outbox(&self, max_attempts: i64, limit: i64) -> $crate::store::StoreResult<Vec<$crate::store::OutboxMessage>> {
                Ok(sqlx::query_as($crate::store::outbox::PENDING).bind(max_attempts).bind(limit).fetch_all(&self.pool).await?)
            }

            async fn mark_outbox_sent(&self, id: i64) -> $crate::store::StoreResult<()> {
                sqlx::query("update mail_outbox set sent_at = $2, body = '', attempts = attempts + 1, last_error = null where id = $1")
                    .bind(id)
                    .bind($crate::store::now())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn mark_outbox_failed(&self, id: i64, error: &str) -> $crate::store::StoreResult<()> {
                sqlx::query("update mail_outbox set attempts = attempts + 1, last_error = $2 where id = $1")
                    .bind(id)
                    .bind(error)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_outbox;
