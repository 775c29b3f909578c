//! The rules of storefront accounts: who may register and when, how a sign-in is
//! checked and throttled, and sessions read and ended.

use super::{confirmation_message, Accounts, HashError};
use crate::normalize::{ClientIp, ConfirmationToken, Email, IdentityId, Password};
use crate::store::{
    now, Attempt, Confirmation, DynStore, Profile, Registration, RegistrationOutcome, SpaceId, StoreError,
};

/// A failure the user cannot fix (storage or hashing); logged, never detailed to clients.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// Why a registration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterRefusal {
    /// The address has a confirmed account.
    AlreadyRegistered,
    Banned,
    /// Another attempt for this address within the retry window.
    TooSoon,
}

/// Why a sign-in was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    NoSuchEmail,
    /// The address belongs to a contact without a password.
    NotRegistered,
    WrongPassword,
    Banned,
    /// Too many failures within the window; the right password waits too.
    TooManyFailures,
    /// The password is right but the address has not been confirmed.
    NotConfirmed,
}

/// A registration as asked for, its fields already read.
pub struct NewAccount {
    pub email: Email,
    pub password: Password,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    pub ip: ClientIp,
}

type Outcome<T, R> = Result<Result<T, R>, AccountError>;

/// The account operations in one data space.
pub struct AccountService<'a> {
    store: &'a DynStore,
    accounts: &'a Accounts,
    space: SpaceId,
}

impl<'a> AccountService<'a> {
    pub fn new(store: &'a DynStore, accounts: &'a Accounts, space: SpaceId) -> Self {
        AccountService { store, accounts, space }
    }

    /// Registers the address (a guest with it keeps its cuRefNo and relations) and, unless
    /// registrations are confirmed at once, queues the confirmation message.
    pub async fn register(&self, account: NewAccount) -> Outcome<(), RegisterRefusal> {
        let settings = &self.accounts.settings;
        if let Some(existing) = self.store.login_account(self.space, &account.email).await? {
            if existing.ban {
                return Ok(Err(RegisterRefusal::Banned));
            }
            if existing.password_hash.is_some() && existing.confirmed {
                return Ok(Err(RegisterRefusal::AlreadyRegistered));
            }
        }
        // The counter is the lock: of concurrent attempts for one address, only the first
        // in the window goes on to hash and write.
        let attempts = self
            .store
            .count_attempt(self.space, account.email.canonical(), Attempt::Register, settings.register_retry)
            .await?;
        if attempts > 1 {
            return Ok(Err(RegisterRefusal::TooSoon));
        }
        let password_hash = self.accounts.hasher.hash(account.password).await?;
        let confirmation = (!settings.auto_confirm).then(|| {
            let token = ConfirmationToken::generate();
            Confirmation {
                token_digest: token.digest(),
                expires_at: now() + settings.confirm_token_lifetime,
                message: confirmation_message(&settings.confirm_url, &token, settings.confirm_token_lifetime),
            }
        });
        let queued = confirmation.as_ref().map(|c| c.message.kind);
        let registration = Registration {
            email: account.email,
            password_hash,
            first_name: account.first_name,
            last_name: account.last_name,
            company_name: account.company_name,
            ip: account.ip,
            confirmation,
        };
        match self.store.complete_registration(self.space, &registration).await? {
            RegistrationOutcome::Registered { .. } | RegistrationOutcome::Resent => {
                if let Some(kind) = queued {
                    tracing::info!(kind, "message queued in the mail outbox");
                }
                Ok(Ok(()))
            }
            RegistrationOutcome::AlreadyRegistered => Ok(Err(RegisterRefusal::AlreadyRegistered)),
            RegistrationOutcome::Banned => Ok(Err(RegisterRefusal::Banned)),
        }
    }

    /// Confirms the account a mailed token was made for; false for an unknown, used or
    /// expired token.
    pub async fn confirm(&self, token: &ConfirmationToken) -> Result<bool, AccountError> {
        Ok(self.store.confirm_account(self.space, &token.digest()).await?)
    }

    /// Checks the password and starts a session; its identityId is shown this once.
    ///
    /// Failures are counted per (account, client address) and per client address across
    /// accounts, never per account alone: a stranger's wrong passwords slow the stranger,
    /// not the owner signing in from elsewhere, and one address trying many accounts is
    /// slowed as a whole.
    pub async fn login(
        &self,
        email: &Email,
        password: Password,
        client: &ClientIp,
    ) -> Outcome<IdentityId, LoginRefusal> {
        let settings = &self.accounts.settings;
        let Some(account) = self.store.login_account(self.space, email).await? else {
            return Ok(Err(LoginRefusal::NoSuchEmail));
        };
        if account.ban {
            return Ok(Err(LoginRefusal::Banned));
        }
        let Some(hash) = account.password_hash else {
            return Ok(Err(LoginRefusal::NotRegistered));
        };
        // The pair's attempts are counted before verifying, so a burst of guesses cannot
        // all pass the check before any failure is recorded; a correct password clears
        // them. The client's own count holds failures only: a backend that signs in many
        // users from one address is not slowed by their successes.
        let pair = format!("{} {}", email.canonical(), client.as_str());
        let window = settings.login_failure_window;
        let client_failures = self.store.attempts(self.space, client.as_str(), Attempt::Login, window).await?;
        if client_failures >= settings.login_max_failures_per_client {
            return Ok(Err(LoginRefusal::TooManyFailures));
        }
        if self.store.count_attempt(self.space, &pair, Attempt::Login, window).await? > settings.login_max_failures {
            return Ok(Err(LoginRefusal::TooManyFailures));
        }
        if !self.accounts.hasher.verify(password, hash).await? {
            self.store.count_attempt(self.space, client.as_str(), Attempt::Login, window).await?;
            return Ok(Err(LoginRefusal::WrongPassword));
        }
        if !account.confirmed {
            self.store.record_login(self.space, &pair, account.customer_id, None).await?;
            return Ok(Err(LoginRefusal::NotConfirmed));
        }
        let identity = IdentityId::generate();
        self.store.record_login(self.space, &pair, account.customer_id, Some(&identity.digest())).await?;
        Ok(Ok(identity))
    }

    /// The profile behind a live session.
    pub async fn account_info(&self, identity: &IdentityId, ip: &ClientIp) -> Result<Option<Profile>, AccountError> {
        Ok(self.store.account_info(self.space, &identity.digest(), ip).await?)
    }

    /// Ends the session; an unknown or ended one is no error.
    pub async fn logout(&self, identity: &IdentityId) -> Result<(), AccountError> {
        self.store.end_session(self.space, &identity.digest()).await?;
        Ok(())
    }
}
