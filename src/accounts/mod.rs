//! Storefront accounts: their settings, the bounded pool that hashes and verifies
//! passwords, the confirmation message, and the rules of registering and signing in
//! (`service`).

mod service;

pub use service::{AccountError, AccountService, LoginRefusal, NewAccount, RegisterRefusal};

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::TimeDelta;
use tokio::sync::Semaphore;

use crate::normalize::{ConfirmationToken, Password};
use crate::store::MailMessage;

/// How registration, confirmation and login behave; see the README's settings table.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// Registrations are confirmed at once, without a token (always on under `--demo`).
    pub auto_confirm: bool,
    /// Failed logins of one address from one client allowed within
    /// `login_failure_window`; the next is E006.
    pub login_max_failures: i64,
    /// Failed logins one client may have within the window, whatever the addresses
    /// (password spraying); the next attempt is E006.
    pub login_max_failures_per_client: i64,
    pub login_failure_window: TimeDelta,
    /// One registration attempt per address within this time; another is E004.
    pub register_retry: TimeDelta,
    /// How long a confirmation token is valid.
    pub confirm_token_lifetime: TimeDelta,
    /// The page the confirmation link points to; `?token=…` is appended. A storefront
    /// points it at its own page, which calls confirm-account with its key.
    pub confirm_url: String,
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            auto_confirm: false,
            login_max_failures: 5,
            login_max_failures_per_client: 50,
            login_failure_window: TimeDelta::minutes(15),
            register_retry: TimeDelta::minutes(10),
            confirm_token_lifetime: TimeDelta::hours(48),
            confirm_url: "http://127.0.0.1:8080/contact/v1/confirm-account".into(),
        }
    }
}

/// Hashing or verification could not run; the caller answers E001.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane). Each hash runs
/// on tokio's blocking pool, and at most one per core at a time: a burst of logins
/// queues here instead of taking every blocking thread and every core from the requests
/// that do not hash.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
}

impl Default for PasswordHasher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { permits: Arc::new(Semaphore::new(cores)) }
    }
}

fn argon2id() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| HashError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

impl PasswordHasher {
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self.permits.acquire().await.map_err(|e| HashError(e.to_string()))?;
        tokio::task::spawn_blocking(work).await.map_err(|e| HashError(e.to_string()))?
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) with a fresh salt.
    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        self.run(move || {
            let hash = argon2id()?.hash_password(password.expose().as_bytes()).map_err(|e| HashError(e.to_string()))?;
            Ok(hash.to_string())
        })
        .await
    }

    /// Whether `password` matches the stored PHC string (whose own parameters are used).
    pub async fn verify(&self, password: Password, stored: String) -> Result<bool, HashError> {
        self.run(move || {
            let parsed = PasswordHash::new(&stored).map_err(|e| HashError(e.to_string()))?;
            Ok(argon2id()?.verify_password(password.expose().as_bytes(), &parsed).is_ok())
        })
        .await
    }
}

/// Settings and the hashing pool, shared by the account handlers; cheap to clone.
#[derive(Clone, Default)]
pub struct Accounts {
    pub settings: Arc<AccountSettings>,
    pub hasher: PasswordHasher,
}

impl Accounts {
    pub fn new(settings: AccountSettings) -> Self {
        Self { settings: Arc::new(settings), hasher: PasswordHasher::default() }
    }
}

pub const CONFIRMATION_KIND: &str = "account-confirmation";

/// The confirmation e-mail: a link to `confirm_url` carrying the token.
pub fn confirmation_message(confirm_url: &str, token: &ConfirmationToken, valid_for: TimeDelta) -> MailMessage {
    let separator = if confirm_url.contains('?') { '&' } else { '?' };
    MailMessage {
        kind: CONFIRMATION_KIND,
        subject: "Confirm your account".into(),
        body: format!(
            "Welcome!\n\nPlease confirm your account by opening this link:\n\n{confirm_url}{separator}token={}\n\n\
             The link works once and expires in {} hours. If you did not sign up, ignore this message.\n",
            token.as_str(),
            valid_for.num_hours()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_is_argon2id_phc_salted_and_verifies() {
        let hasher = PasswordHasher::default();
        let password = Password::new_password("Secret123").unwrap();
        let a = hasher.hash(password.clone()).await.unwrap();
        let b = hasher.hash(password.clone()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(hasher.verify(password, a.clone()).await.unwrap());
        assert!(!hasher.verify(Password::typed("Secret124").unwrap(), a).await.unwrap());
        assert!(hasher.verify(Password::typed("x").unwrap(), "not a phc string".into()).await.is_err());
    }

    #[test]
    fn confirmation_link_carries_the_token() {
        let token = ConfirmationToken::generate();
        let m = confirmation_message("https://shop.example/confirm", &token, TimeDelta::hours(48));
        assert!(m.body.contains(&format!("https://shop.example/confirm?token={}", token.as_str())), "{}", m.body);
        let m = confirmation_message("https://shop.example/c?lang=cs", &token, TimeDelta::hours(48));
        assert!(m.body.contains(&format!("?lang=cs&token={}", token.as_str())), "{}", m.body);
    }
}
