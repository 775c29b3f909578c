//! Storefront accounts: registration (queuing its confirmation message), confirmation
//! tokens, throttling counters, and sessions started, read and ended.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::reads::SessionRead;
use super::{customer_id, insert_session, with_new_cu_ref_no, NewCustomer, OnEmailTaken, SqlStore};
use crate::normalize::{ClientIp, CuRefNo, Email};
use crate::store::{
    now, AccountStore, Attempt, LoginAccount, Profile, Registration, RegistrationOutcome, SpaceId, StoreResult,
    SESSION_LIFETIME,
};

/// Counts one attempt in the address's window, starting a new window when the old one
/// has passed (`$5`: the oldest start still in the window); returns the attempts in the
/// current window (this one included).
const COUNT_ATTEMPT: &str = "insert into account_throttle \
     (space_id, email_canonical, action, attempts, window_started_at) values ($1, $2, $3, 1, $4) \
     on conflict (space_id, email_canonical, action) do update set \
     attempts = case when account_throttle.window_started_at <= $5 then 1 else account_throttle.attempts + 1 end, \
     window_started_at = case when account_throttle.window_started_at <= $5 then excluded.window_started_at \
     else account_throttle.window_started_at end \
     returning attempts";

const ACCOUNT_STATE: &str = "select id as customer_id, password_hash, account_confirmed_at is not null as confirmed, \
     ban from customers where space_id = $1 and email_canonical = $2 and erased_at is null";

impl SqlStore {
    /// One transaction: the customer row, then (unless auto-confirmed) a new token
    /// replacing any unused one, and its message in the outbox.
    async fn register_once(
        &self,
        space: SpaceId,
        reg: &Registration,
        cu: &CuRefNo,
    ) -> StoreResult<RegistrationOutcome> {
        let now = now();
        let mut tx = self.begin().await?;
        let row = NewCustomer {
            space: space.0,
            cu_ref_no: cu.as_str(),
            email: Some(&reg.email),
            first_name: reg.first_name.as_deref(),
            last_name: reg.last_name.as_deref(),
            company_name: reg.company_name.as_deref(),
            ip: Some(&reg.ip),
            last_seen_at: Some(now),
            password_hash: Some(&reg.password_hash),
            account_confirmed_at: reg.confirmation.is_none().then_some(now),
            ..Default::default()
        };
        let written: Option<(i64, String)> =
            row.bind(sqlx::query_as(OnEmailTaken::Register.insert()), now).fetch_optional(&mut *tx).await?;
        let (customer, outcome) = match written {
            Some((customer, cu_ref_no)) => {
                if cu_ref_no != cu.as_str() {
                    // A guest's empty names were filled in.
                    super::search::refresh_keys_of(&mut tx, space, customer).await?;
                }
                // A new password: tokens sent for an older one must not confirm it.
                sqlx::query("delete from account_tokens where space_id = $1 and customer_id = $2 and used_at is null")
                    .bind(space.0)
                    .bind(customer)
                    .execute(&mut *tx)
                    .await?;
                (customer, RegistrationOutcome::Registered { cu_ref_no })
            }
            None => {
                let account: Option<LoginAccount> = sqlx::query_as(ACCOUNT_STATE)
                    .bind(space.0)
                    .bind(reg.email.canonical())
                    .fetch_optional(&mut *tx)
                    .await?;
                match account {
                    Some(a) if a.ban => return Ok(RegistrationOutcome::Banned),
                    // Waiting for confirmation: the first password stays; the message goes
                    // out again, with a token of its own.
                    Some(a) if a.password_hash.is_some() && !a.confirmed && reg.confirmation.is_some() => {
                        (a.customer_id, RegistrationOutcome::Resent)
                    }
                    _ => return Ok(RegistrationOutcome::AlreadyRegistered),
                }
            }
        };
        if let Some(c) = &reg.confirmation {
            sqlx::query(
                "insert into account_tokens (space_id, customer_id, digest, created_at, expires_at) \
                 values ($1, $2, $3, $4, $5)",
            )
            .bind(space.0)
            .bind(customer)
            .bind(&c.token_digest)
            .bind(now)
            .bind(c.expires_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "insert into mail_outbox (space_id, customer_id, recipient, kind, subject, body, created_at) \
                 values ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(space.0)
            .bind(customer)
            .bind(reg.email.normalized())
            .bind(c.message.kind)
            .bind(&c.message.subject)
            .bind(&c.message.body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn login_account(&self, space: SpaceId, email: &Email) -> StoreResult<Option<LoginAccount>> {
        Ok(sqlx::query_as(ACCOUNT_STATE)
            .bind(space.0)
            .bind(email.canonical())
            .fetch_optional(&mut *self.conn().await?)
            .await?)
    }

    async fn count_attempt(&self, space: SpaceId, subject: &str, what: Attempt, window: TimeDelta) -> StoreResult<i64> {
        let now = now();
        Ok(sqlx::query_scalar(COUNT_ATTEMPT)
            .bind(space.0)
            .bind(subject)
            .bind(what.as_str())
            .bind(now)
            .bind(now - window)
            .fetch_one(&mut *self.conn().await?)
            .await?)
    }

    async fn attempts(&self, space: SpaceId, subject: &str, what: Attempt, window: TimeDelta) -> StoreResult<i64> {
        let count: Option<i64> = sqlx::query_scalar(
            "select attempts from account_throttle where space_id = $1 and email_canonical = $2 and action = $3 \
             and window_started_at > $4",
        )
        .bind(space.0)
        .bind(subject)
        .bind(what.as_str())
        .bind(now() - window)
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        Ok(count.unwrap_or(0))
    }

    async fn complete_registration(&self, space: SpaceId, reg: &Registration) -> StoreResult<RegistrationOutcome> {
        with_new_cu_ref_no(|cu| async move { self.register_once(space, reg, &cu).await }).await
    }

    async fn confirm_account(&self, space: SpaceId, token_digest: &str) -> StoreResult<bool> {
        let now = now();
        let mut tx = self.begin().await?;
        // Marking the token used is the guard: of two concurrent confirmations only one
        // updates the row.
        let customer: Option<i64> = sqlx::query_scalar(
            "update account_tokens set used_at = $3 where space_id = $1 and digest = $2 \
             and used_at is null and expires_at > $3 returning customer_id",
        )
        .bind(space.0)
        .bind(token_digest)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(customer) = customer else {
            tx.rollback().await?;
            return Ok(false);
        };
        sqlx::query(
            "update customers set account_confirmed_at = $3, updated_at = $3 \
             where space_id = $1 and id = $2 and account_confirmed_at is null",
        )
        .bind(space.0)
        .bind(customer)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_login(
        &self,
        space: SpaceId,
        subject: &str,
        customer_id: i64,
        identity_digest: Option<&str>,
    ) -> StoreResult<()> {
        let now = now();
        let mut tx = self.begin().await?;
        sqlx::query("delete from account_throttle where space_id = $1 and email_canonical = $2 and action = $3")
            .bind(space.0)
            .bind(subject)
            .bind(Attempt::Login.as_str())
            .execute(&mut *tx)
            .await?;
        if let Some(digest) = identity_digest {
            insert_session(&mut *tx, space, customer_id, digest, now, now + SESSION_LIFETIME).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn renew_session(
        &self,
        space: SpaceId,
        cu_ref_no: &CuRefNo,
        identity_digest: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let Some(customer) = customer_id(&mut *tx, space, cu_ref_no.as_str()).await? else {
            return Ok(false);
        };
        insert_session(&mut *tx, space, customer, identity_digest, now(), expires_at).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn account_info(&self, space: SpaceId, identity_digest: &str, ip: &ClientIp) -> StoreResult<Option<Profile>> {
        let read = SessionRead { space, identity_digest: identity_digest.to_owned() };
        let (row, now) = self.reads.sessions.read(read).await?;
        let Some(row) = row else { return Ok(None) };
        self.touch_session_if_stale(space, &row, now, ip).await?;
        Ok(Some(row.profile.at(now)))
    }

    async fn end_session(&self, space: SpaceId, identity_digest: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "update sessions set revoked_at = $3 where space_id = $1 and identity_digest = $2 and revoked_at is null",
        )
        .bind(space.0)
        .bind(identity_digest)
        .bind(now())
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
