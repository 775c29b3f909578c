//! BizKitHub's storefront account endpoints: register, confirm, login, account info,
//! logout. Register and login answer their domain outcomes in the documented
//! `{"success": false, "errorCode": "E00x", "message"}` shape with status 200; input and
//! key errors use the usual envelope.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::customer::{email, internal, ip, limits, text};
use super::error::ApiError;
use super::extract::{Endpoint, KeyedJson, KeyedQuery};
use super::AppState;
use crate::accounts::confirmation_message;
use crate::auth::Scope;
use crate::normalize::{clean_text, ConfirmationToken, Email, IdentityId, Password, TextKind};
use crate::store::{Confirmation, Registration, RegistrationGate, RegistrationOutcome, SpaceId};

/// A documented refusal: its code and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal(&'static str, &'static str);

const REGISTER_FAILED: Refusal = Refusal("E001", "registration failed; try again later");
const ALREADY_REGISTERED: Refusal = Refusal("E002", "this e-mail address is already registered");
const REGISTER_BANNED: Refusal = Refusal("E003", "this account is banned");
const REGISTER_TOO_SOON: Refusal = Refusal("E004", "too many attempts: one registration per address per 10 minutes");
const LOGIN_FAILED: Refusal = Refusal("E001", "login failed; try again later");
const NO_SUCH_EMAIL: Refusal = Refusal("E002", "no account with this e-mail address exists");
const NOT_REGISTERED: Refusal = Refusal("E003", "this e-mail address has no registered account");
const WRONG_PASSWORD: Refusal = Refusal("E004", "wrong e-mail or password");
const LOGIN_BANNED: Refusal = Refusal("E005", "this account is banned");
const TOO_MANY_LOGINS: Refusal = Refusal("E006", "too many failed attempts; try again later");
const NOT_CONFIRMED: Refusal = Refusal("E007", "the e-mail address has not been confirmed yet");

/// A domain call ends in an answer, a documented refusal, or a failure the user cannot
/// fix (storage or hashing), which is logged and answered as `failed`.
async fn answer<E: std::fmt::Display>(
    failed: Refusal,
    outcome: impl std::future::Future<Output = Result<Result<Value, Refusal>, E>>,
) -> Json<Value> {
    match outcome.await {
        Ok(Ok(value)) => Json(value),
        Ok(Err(Refusal(code, message))) => Json(json!({ "success": false, "errorCode": code, "message": message })),
        Err(e) => {
            tracing::warn!(error = %e, code = failed.0, "storefront account operation failed");
            let Refusal(code, message) = failed;
            Json(json!({ "success": false, "errorCode": code, "message": message }))
        }
    }
}

/// Storage and hashing failures alike; only ever logged.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Hash(#[from] crate::accounts::HashError),
}

fn password(value: Option<&str>, check: fn(&str) -> Result<Password, crate::normalize::PasswordError>) -> Result<Password, ApiError> {
    check(value.ok_or_else(|| ApiError::missing("password"))?).map_err(ApiError::password)
}

fn required_email(value: Option<&str>) -> Result<Email, ApiError> {
    email(value.ok_or_else(|| ApiError::missing("email"))?, "email")
}

fn name(value: Option<&str>, field: &'static str) -> Result<Option<String>, ApiError> {
    value.map(|v| clean_text(v, TextKind::Name, limits::NAME).map_err(ApiError::too_long(field))).transpose().map(Option::flatten)
}

fn identity(value: Option<&str>) -> Result<IdentityId, ApiError> {
    let value = value.ok_or_else(|| ApiError::missing("identityId"))?;
    IdentityId::parse(value).map_err(|_| ApiError::InvalidIdentityId { field: "identityId" })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBody {
    email: Option<String>,
    password: Option<String>,
    /// A full name, split at its first space when firstName / lastName are not given.
    name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    company_name: Option<String>,
    customer_real_ip: Option<String>,
}

impl Endpoint for RegisterBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

pub async fn register(State(state): State<AppState>, req: KeyedJson<RegisterBody>) -> Result<Json<Value>, ApiError> {
    let b = req.body;
    let email = required_email(b.email.as_deref())?;
    let password = password(b.password.as_deref(), Password::new_password)?;
    let full = name(b.name.as_deref(), "name")?;
    let (first, last) = match full.as_deref().map(|n| n.split_once(' ').unwrap_or((n, ""))) {
        Some((first, last)) => (Some(first.to_owned()), (!last.is_empty()).then(|| last.to_owned())),
        None => (None, None),
    };
    let first_name = name(b.first_name.as_deref(), "firstName")?.or(first);
    let last_name = name(b.last_name.as_deref(), "lastName")?.or(last.and_then(|l| name(Some(&l), "name").ok().flatten()));
    let company_name = text(b.company_name.as_deref(), "companyName", limits::COMPANY_NAME)?;
    let ip = ip(b.customer_real_ip.as_deref())?;
    let space = req.caller.space;
    let registration = |password_hash, confirmation| Registration {
        email: email.clone(),
        password_hash,
        first_name: first_name.clone(),
        last_name: last_name.clone(),
        company_name: company_name.clone(),
        ip: ip.clone(),
        confirmation,
    };
    Ok(answer(REGISTER_FAILED, async {
        let settings = &state.accounts.settings;
        match state.store.begin_registration(space, &email, settings.register_retry).await? {
            RegistrationGate::Open => {}
            RegistrationGate::Banned => return Ok(Err(REGISTER_BANNED)),
            RegistrationGate::AlreadyRegistered => return Ok(Err(ALREADY_REGISTERED)),
            RegistrationGate::Throttled => return Ok(Err(REGISTER_TOO_SOON)),
        }
        let hash = state.accounts.hasher.hash(password).await?;
        let confirmation = (!settings.auto_confirm).then(|| {
            let token = ConfirmationToken::generate();
            Confirmation {
                token_digest: token.digest(),
                expires_at: crate::store::now() + settings.confirm_token_lifetime,
                message: confirmation_message(&settings.confirm_url, &token, settings.confirm_token_lifetime),
            }
        });
        let queued = confirmation.as_ref().map(|c| c.message.kind);
        match state.store.complete_registration(space, &registration(hash, confirmation)).await? {
            RegistrationOutcome::Registered { .. } => {
                if let Some(kind) = queued {
                    tracing::info!(kind, "message queued in the mail outbox");
                }
                Ok::<_, Failure>(Ok(json!({ "success": true })))
            }
            RegistrationOutcome::AlreadyRegistered => Ok(Err(ALREADY_REGISTERED)),
            RegistrationOutcome::Banned => Ok(Err(REGISTER_BANNED)),
        }
    })
    .await)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmQuery {
    token: Option<String>,
}

impl Endpoint for ConfirmQuery {
    const SCOPE: Scope = Scope::CustomerWrite;
}

pub async fn confirm(State(state): State<AppState>, req: KeyedQuery<ConfirmQuery>) -> Result<Json<Value>, ApiError> {
    let unusable = || ApiError::invalid("the token is unknown, already used or expired", Some("token"));
    let token = req.query.token.as_deref().ok_or_else(|| ApiError::missing("token"))?;
    let token = ConfirmationToken::parse(token).map_err(|_| unusable())?;
    if !state.store.confirm_account(req.caller.space, &token.digest()).await? {
        return Err(unusable());
    }
    Ok(Json(json!({ "success": true })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginBody {
    email: Option<String>,
    password: Option<String>,
}

impl Endpoint for LoginBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

pub async fn login(State(state): State<AppState>, req: KeyedJson<LoginBody>) -> Result<Json<Value>, ApiError> {
    let b = req.body;
    let email = required_email(b.email.as_deref())?;
    let password = password(b.password.as_deref(), Password::typed)?;
    Ok(answer(LOGIN_FAILED, login_account(&state, req.caller.space, &email, password)).await)
}

async fn login_account(state: &AppState, space: SpaceId, email: &Email, password: Password) -> Result<Result<Value, Refusal>, Failure> {
    let settings = &state.accounts.settings;
    let Some(account) = state.store.login_account(space, email).await? else {
        return Ok(Err(NO_SUCH_EMAIL));
    };
    if account.ban {
        return Ok(Err(LOGIN_BANNED));
    }
    let Some(hash) = account.password_hash else {
        return Ok(Err(NOT_REGISTERED));
    };
    // Counted before verifying, so a burst of guesses cannot all pass the check before
    // any failure is recorded; a correct password clears the count.
    if state.store.count_login_attempt(space, email, settings.login_failure_window).await? > settings.login_max_failures {
        return Ok(Err(TOO_MANY_LOGINS));
    }
    if !state.accounts.hasher.verify(password, hash).await? {
        return Ok(Err(WRONG_PASSWORD));
    }
    if !account.confirmed {
        state.store.record_login(space, email, account.customer_id, None).await?;
        return Ok(Err(NOT_CONFIRMED));
    }
    let identity = IdentityId::generate();
    state.store.record_login(space, email, account.customer_id, Some(&identity.digest())).await?;
    Ok(Ok(json!({ "success": true, "identityId": identity.as_str() })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfoQuery {
    identity_id: Option<String>,
    customer_real_ip: Option<String>,
}

impl Endpoint for AccountInfoQuery {
    const SCOPE: Scope = Scope::CustomerRead;
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AccountInfo {
    logged_in: bool,
    identity_id: String,
    cu_ref_no: String,
    credit_balance: i64,
    email: Option<String>,
    phone: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    company_name: Option<String>,
    premium: bool,
    ban: bool,
}

pub async fn account_info(State(state): State<AppState>, req: KeyedQuery<AccountInfoQuery>) -> Result<Json<Value>, ApiError> {
    let q = req.query;
    let identity = identity(q.identity_id.as_deref())?;
    let ip = ip(q.customer_real_ip.as_deref())?;
    let Some(p) = state.store.account_info(req.caller.space, &identity.digest(), &ip).await? else {
        return Ok(Json(json!({ "loggedIn": false })));
    };
    let info = AccountInfo {
        logged_in: true,
        identity_id: identity.as_str().to_owned(),
        cu_ref_no: p.cu_ref_no,
        credit_balance: p.credit_balance,
        email: p.email,
        phone: p.phone,
        first_name: p.first_name,
        last_name: p.last_name,
        company_name: p.company_name,
        premium: p.premium,
        ban: p.ban,
    };
    Ok(Json(serde_json::to_value(info).map_err(internal)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogoutBody {
    identity_id: Option<String>,
}

impl Endpoint for LogoutBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

/// Idempotent: an unknown or already ended session is answered the same way.
pub async fn logout(State(state): State<AppState>, req: KeyedJson<LogoutBody>) -> Result<Json<Value>, ApiError> {
    let identity = identity(req.body.identity_id.as_deref())?;
    state.store.end_session(req.caller.space, &identity.digest()).await?;
    Ok(Json(json!({ "success": true })))
}
