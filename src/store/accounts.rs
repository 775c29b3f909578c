//! Storefront accounts in storage: registration (queuing its confirmation message),
//! confirmation tokens, login throttling, sessions started and ended, and bans. The
//! trait's methods are written once for both backends (`impl_accounts!`, called by
//! `impl_store!`).

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::{Profile, SpaceId, StoreResult};
use crate::accounts::MailMessage;
use crate::normalize::{ClientIp, CuRefNo, Email};

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Refuses a banned or registered-and-confirmed address; otherwise counts the attempt
    /// in the address's retry window and tells whether it is the first there.
    async fn begin_registration(&self, space: SpaceId, email: &Email, retry: TimeDelta) -> StoreResult<RegistrationGate>;
    /// Sets the password on the guest with this canonical address (keeping its cuRefNo
    /// and relations) or creates a customer, and queues the confirmation, atomically.
    async fn complete_registration(&self, space: SpaceId, registration: &Registration)
        -> StoreResult<RegistrationOutcome>;
    /// Uses an unused, unexpired token and confirms its account; false for any other token.
    async fn confirm_account(&self, space: SpaceId, token_digest: &str) -> StoreResult<bool>;
    async fn login_account(&self, space: SpaceId, email: &Email) -> StoreResult<Option<LoginAccount>>;
    /// Counts a login attempt for the address; returns the attempts in its window.
    async fn count_login_attempt(&self, space: SpaceId, email: &Email, window: TimeDelta) -> StoreResult<i64>;
    /// After a correct password: clears the address's failures and, given a digest,
    /// starts a session of `SESSION_LIFETIME`.
    async fn record_login(&self, space: SpaceId, email: &Email, customer_id: i64, identity_digest: Option<&str>)
        -> StoreResult<()>;
    /// The profile behind a live session, sliding the session like `customer_detail`.
    async fn account_info(&self, space: SpaceId, identity_digest: &str, ip: &ClientIp) -> StoreResult<Option<Profile>>;
    /// Ends a session at once; false if it was not live.
    async fn end_session(&self, space: SpaceId, identity_digest: &str) -> StoreResult<bool>;
    /// Sets or lifts a ban; banning ends the customer's sessions in the same transaction.
    /// False if no such customer.
    async fn set_ban(&self, space: SpaceId, cu_ref_no: &CuRefNo, ban: bool) -> StoreResult<bool>;
}

/// Whether an address may register now; the attempt is counted when it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationGate {
    Open,
    Banned,
    /// Has a password and is confirmed.
    AlreadyRegistered,
    /// Another attempt for this address within the retry window.
    Throttled,
}

/// A registration to write; the password is already hashed.
#[derive(Clone)]
pub struct Registration {
    pub email: Email,
    pub password_hash: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    pub ip: ClientIp,
    /// None: confirmed at once (auto-confirm).
    pub confirmation: Option<Confirmation>,
}

/// The token to store (its digest) and the message that carries it.
#[derive(Clone)]
pub struct Confirmation {
    pub token_digest: String,
    pub expires_at: DateTime<Utc>,
    pub message: MailMessage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationOutcome {
    Registered { cu_ref_no: String },
    AlreadyRegistered,
    Banned,
}

/// What login needs to know about an address.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LoginAccount {
    pub customer_id: i64,
    pub password_hash: Option<String>,
    pub confirmed: bool,
    pub ban: bool,
}

/// Counts one attempt in the address's window, starting a new window when the old one
/// has passed; returns the attempts in the current window (this one included).
pub const COUNT_ATTEMPT: &str = "insert into account_throttle (space_id, email_canonical, action, attempts, window_started_at) \
     values ($1, $2, $3, 1, $4) \
     on conflict (space_id, email_canonical, action) do update set \
     attempts = case when account_throttle.window_started_at <= $5 then 1 else account_throttle.attempts + 1 end, \
     window_started_at = case when account_throttle.window_started_at <= $5 then excluded.window_started_at \
     else account_throttle.window_started_at end \
     returning attempts";

pub const ACCOUNT_STATE: &str = "select id as customer_id, password_hash, account_confirmed_at is not null as confirmed, ban \
     from customers where space_id = $1 and email_canonical = $2 and erased_at is null";

/// Registers a guest in place (keeping its cuRefNo and relations) or inserts a new
/// customer. A confirmed registration and a banned contact are left alone (no row).
pub const REGISTER: &str = "insert into customers (space_id, cu_ref_no, email, email_canonical, email_rules_version, \
     first_name, last_name, company_name, registration_ip, last_ip, last_seen_at, created_at, updated_at, \
     password_hash, account_confirmed_at) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $10, $10, $11, $12) \
     on conflict (space_id, email_canonical) do update set \
     password_hash = excluded.password_hash, account_confirmed_at = excluded.account_confirmed_at, \
     first_name = coalesce(customers.first_name, excluded.first_name), \
     last_name = coalesce(customers.last_name, excluded.last_name), \
     company_name = coalesce(customers.company_name, excluded.company_name), \
     last_ip = excluded.last_ip, last_seen_at = excluded.last_seen_at, updated_at = excluded.updated_at \
     where customers.ban = false and customers.erased_at is null \
     and (customers.password_hash is null or customers.account_confirmed_at is null) \
     returning id, cu_ref_no";

/// Ends every live session of a customer (`$2`) at `$3`: a ban, from either path.
pub(crate) const END_CUSTOMER_SESSIONS: &str =
    "update sessions set revoked_at = $3 where space_id = $1 and customer_id = $2 and revoked_at is null";

macro_rules! impl_accounts {
    ($store:ident) => {
        impl $store {
            async fn count_attempt(
                &self,
                space: $crate::store::SpaceId,
                email: &$crate::normalize::Email,
                action: &str,
                window: chrono::TimeDelta,
            ) -> $crate::store::StoreResult<i64> {
                let now = $crate::store::now();
                Ok(sqlx::query_scalar::<_, i64>($crate::store::accounts::COUNT_ATTEMPT)
                    .bind(space.0)
                    .bind(email.canonical())
                    .bind(action)
                    .bind(now)
                    .bind(now - window)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn account_state(
                &self,
                space: $crate::store::SpaceId,
                email: &$crate::normalize::Email,
            ) -> $crate::store::StoreResult<Option<$crate::store::LoginAccount>> {
                Ok(sqlx::query_as::<_, $crate::store::LoginAccount>($crate::store::accounts::ACCOUNT_STATE)
                    .bind(space.0)
                    .bind(email.canonical())
                    .fetch_optional(&self.pool)
                    .await?)
            }

            /// One transaction: the customer row, then (unless auto-confirmed) a new token
            /// replacing any unused one, and its message in the outbox.
            async fn register_once(
                &self,
                space: $crate::store::SpaceId,
                reg: &$crate::store::Registration,
                cu: &$crate::normalize::CuRefNo,
            ) -> $crate::store::StoreResult<$crate::store::RegistrationOutcome> {
                use $crate::store::RegistrationOutcome as Outcome;
                let now = $crate::store::now();
                let mut tx = self.pool.begin().await?;
                let row: Option<(i64, String)> = sqlx::query_as($crate::store::accounts::REGISTER)
                    .bind(space.0)
                    .bind(cu.as_str())
                    .bind(reg.email.normalized())
                    .bind(reg.email.canonical())
                    .bind($crate::normalize::EMAIL_RULES_VERSION as i64)
                    .bind(reg.first_name.as_deref())
                    .bind(reg.last_name.as_deref())
                    .bind(reg.company_name.as_deref())
                    .bind(reg.ip.as_str())
                    .bind(now)
                    .bind(&reg.password_hash)
                    .bind(reg.confirmation.is_none().then_some(now))
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some((customer, cu_ref_no)) = row else {
                    tx.rollback().await?;
                    let banned = self.account_state(space, &reg.email).await?.is_some_and(|a| a.ban);
                    return Ok(if banned { Outcome::Banned } else { Outcome::AlreadyRegistered });
                };
                if let Some(c) = &reg.confirmation {
                    sqlx::query("delete from account_tokens where space_id = $1 and customer_id = $2 and used_at is null")
                        .bind(space.0)
                        .bind(customer)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(
                        "insert into account_tokens (space_id, customer_id, digest, created_at, expires_at) values ($1, $2, $3, $4, $5)",
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
                Ok(Outcome::Registered { cu_ref_no })
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::AccountStore for $store {
            async fn login_account(
                &self,
                space: $crate::store::SpaceId,
                email: &$crate::normalize::Email,
            ) -> $crate::store::StoreResult<Option<$crate::store::LoginAccount>> {
                self.account_state(space, email).await
            }

            async fn count_login_attempt(
                &self,
                space: $crate::store::SpaceId,
                email: &$crate::normalize::Email,
                window: chrono::TimeDelta,
            ) -> $crate::store::StoreResult<i64> {
                self.count_attempt(space, email, "login", window).await
            }

            async fn begin_registration(
                &self,
                space: $crate::store::SpaceId,
                email: &$crate::normalize::Email,
                retry: chrono::TimeDelta,
            ) -> $crate::store::StoreResult<$crate::store::RegistrationGate> {
                use $crate::store::RegistrationGate as Gate;
                if let Some(account) = self.account_state(space, email).await? {
                    if account.ban {
                        return Ok(Gate::Banned);
                    }
                    if account.password_hash.is_some() && account.confirmed {
                        return Ok(Gate::AlreadyRegistered);
                    }
                }
                // The counter is the lock: of concurrent attempts for one address, only
                // the first in the window goes on to hash and write.
                let attempts = self.count_attempt(space, email, "register", retry).await?;
                Ok(if attempts > 1 { Gate::Throttled } else { Gate::Open })
            }

            async fn complete_registration(
                &self,
                space: $crate::store::SpaceId,
                registration: &$crate::store::Registration,
            ) -> $crate::store::StoreResult<$crate::store::RegistrationOutcome> {
                let reg = registration;
                $crate::store::sql::with_new_cu_ref_no(|cu| async move { self.register_once(space, reg, &cu).await }).await
            }

            async fn confirm_account(&self, space: $crate::store::SpaceId, token_digest: &str) -> $crate::store::StoreResult<bool> {
                let now = $crate::store::now();
                let mut tx = self.pool.begin().await?;
                // Marking the token used is the guard: of two concurrent confirmations
                // only one updates the row.
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
                    "update customers set account_confirmed_at = $2, updated_at = $2 where id = $1 and account_confirmed_at is null",
                )
                .bind(customer)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn record_login(
                &self,
                space: $crate::store::SpaceId,
                email: &$crate::normalize::Email,
                customer_id: i64,
                identity_digest: Option<&str>,
            ) -> $crate::store::StoreResult<()> {
                let now = $crate::store::now();
                let mut tx = self.pool.begin().await?;
                sqlx::query("delete from account_throttle where space_id = $1 and email_canonical = $2 and action = 'login'")
                    .bind(space.0)
                    .bind(email.canonical())
                    .execute(&mut *tx)
                    .await?;
                if let Some(digest) = identity_digest {
                    sqlx::query(
                        "insert into sessions (space_id, customer_id, identity_digest, created_at, expires_at, last_seen_at) \
                         values ($1, $2, $3, $4, $5, $4)",
                    )
                    .bind(space.0)
                    .bind(customer_id)
                    .bind(digest)
                    .bind(now)
                    .bind(now + $crate::store::sql::SESSION_LIFETIME)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn account_info(
                &self,
                space: $crate::store::SpaceId,
                identity_digest: &str,
                ip: &$crate::normalize::ClientIp,
            ) -> $crate::store::StoreResult<Option<$crate::store::Profile>> {
                let now = $crate::store::now();
                let Some(row) = sqlx::query_as::<_, $crate::store::sql::DetailRow>(&self.q.account_info)
                    .bind(space.0)
                    .bind(identity_digest)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                self.touch_session_if_stale(&row, now, ip).await?;
                Ok(Some(row.profile.into()))
            }

            async fn end_session(&self, space: $crate::store::SpaceId, identity_digest: &str) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "update sessions set revoked_at = $3 where space_id = $1 and identity_digest = $2 and revoked_at is null",
                )
                .bind(space.0)
                .bind(identity_digest)
                .bind($crate::store::now())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_ban(
                &self,
                space: $crate::store::SpaceId,
                cu_ref_no: &$crate::normalize::CuRefNo,
                ban: bool,
            ) -> $crate::store::StoreResult<bool> {
                let now = $crate::store::now();
                let mut tx = self.pool.begin().await?;
                let customer: Option<i64> = sqlx::query_scalar(
                    "update customers set ban = $3, updated_at = $4 where space_id = $1 and cu_ref_no = $2 and erased_at is null returning id",
                )
                .bind(space.0)
                .bind(cu_ref_no.as_str())
                .bind(ban)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(customer) = customer else {
                    tx.rollback().await?;
                    return Ok(false);
                };
                if ban {
                    sqlx::query($crate::store::accounts::END_CUSTOMER_SESSIONS)
                        .bind(space.0)
                        .bind(customer)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}

pub(crate) use impl_accounts;
