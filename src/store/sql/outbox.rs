//! The mail outbox as the SMTP sender reads and marks it.

use async_trait::async_trait;

use super::SqlStore;
use chrono::{DateTime, Utc};

use crate::store::{now, Mode, OutboxMessage, OutboxStore, SpaceId, StoreResult, Swept, IDEMPOTENCY_KEY_LIFETIME};

#[async_trait]
impl OutboxStore for SqlStore {
    async fn pending_outbox(&self, mode: Mode, max_attempts: i64, limit: i64) -> StoreResult<Vec<OutboxMessage>> {
        Ok(sqlx::query_as(
            "select m.id, m.space_id, m.recipient, m.kind, m.subject, m.body, m.created_at, m.sent_at, m.attempts \
             from mail_outbox m join spaces s on s.id = m.space_id \
             where m.sent_at is null and m.attempts < $1 and s.mode = $3 order by m.id limit $2",
        )
        .bind(max_attempts)
        .bind(limit)
        .bind(mode.as_str())
        .fetch_all(&mut *self.conn().await?)
        .await?)
    }

    async fn mark_outbox_sent(&self, space: SpaceId, id: i64) -> StoreResult<()> {
        sqlx::query(
            "update mail_outbox set sent_at = $3, body = '', attempts = attempts + 1, last_error = null \
             where space_id = $1 and id = $2",
        )
        .bind(space.0)
        .bind(id)
        .bind(now())
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    async fn sweep(&self, outbox_before: DateTime<Utc>, deliveries_before: DateTime<Utc>) -> StoreResult<Swept> {
        let keys = sqlx::query("delete from idempotency_keys where created_at <= $1")
            .bind(now() - IDEMPOTENCY_KEY_LIFETIME)
            .execute(&mut *self.conn().await?)
            .await?;
        let bodies =
            sqlx::query("update mail_outbox set body = '' where sent_at is null and body <> '' and created_at <= $1")
                .bind(outbox_before)
                .execute(&mut *self.conn().await?)
                .await?;
        // Attempts go with their deliveries (on delete cascade).
        let deliveries = sqlx::query("delete from webhook_deliveries where state <> 'pending' and finished_at <= $1")
            .bind(deliveries_before)
            .execute(&mut *self.conn().await?)
            .await?;
        sqlx::query(
            "delete from webhook_events where created_at <= $1 and not exists \
             (select 1 from webhook_deliveries d where d.space_id = webhook_events.space_id \
             and d.event_id = webhook_events.id)",
        )
        .bind(deliveries_before)
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(Swept {
            idempotency_keys: keys.rows_affected(),
            outbox_bodies: bodies.rows_affected(),
            webhook_deliveries: deliveries.rows_affected(),
        })
    }

    async fn mark_outbox_failed(&self, space: SpaceId, id: i64, error: &str) -> StoreResult<()> {
        sqlx::query("update mail_outbox set attempts = attempts + 1, last_error = $3 where space_id = $1 and id = $2")
            .bind(space.0)
            .bind(id)
            .bind(error)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }
}
