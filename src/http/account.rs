//! BizKitHub's storefront account endpoints: register, confirm, login, account info,
//! logout. Register and login answer their refusals in the documented
//! `{"success": false, "errorCode": "E00x", "message"}` shape with status 200; input and
//! key errors use the usual envelope.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Endpoint, KeyedJson, KeyedQuery, Peer};
use super::wire::{self, LoggedIn};
use super::AppState;
use crate::accounts::{AccountError, AccountService, LoginRefusal, NewAccount, RegisterRefusal};
use crate::auth::Scope;
use crate::fields::{self, limits};
use crate::normalize::{ConfirmationToken, Password};

/// A documented answer of register or login: success with its fields, or a refusal.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Answer<T> {
    Done {
        success: bool,
        #[serde(flatten)]
        body: T,
    },
    Refused {
        success: bool,
        #[serde(rename = "errorCode")]
        error_code: &'static str,
        message: &'static str,
    },
}

impl<T> Answer<T> {
    fn refused((error_code, message): (&'static str, &'static str)) -> Self {
        Answer::Refused { success: false, error_code, message }
    }

    /// A failure the user cannot fix (storage or hashing) is logged and answered as
    /// `failed` (E001).
    fn from<R>(
        outcome: Result<Result<T, R>, AccountError>,
        refusal: fn(R) -> (&'static str, &'static str),
        failed: (&'static str, &'static str),
    ) -> Self {
        match outcome {
            Ok(Ok(body)) => Answer::Done { success: true, body },
            Ok(Err(r)) => Answer::refused(refusal(r)),
            Err(e) => {
                tracing::warn!(error = %e, code = failed.0, "storefront account operation failed");
                Answer::refused(failed)
            }
        }
    }
}

const REGISTER_FAILED: (&str, &str) = ("E001", "registration failed; try again later");
const LOGIN_FAILED: (&str, &str) = ("E001", "login failed; try again later");

fn register_refusal(r: RegisterRefusal) -> (&'static str, &'static str) {
    match r {
        RegisterRefusal::AlreadyRegistered => ("E002", "this e-mail address is already registered"),
        RegisterRefusal::Banned => ("E003", "this account is banned"),
        RegisterRefusal::TooSoon => ("E004", "too many attempts: one registration per address per 10 minutes"),
    }
}

fn login_refusal(r: LoginRefusal) -> (&'static str, &'static str) {
    match r {
        LoginRefusal::NoSuchEmail => ("E002", "no account with this e-mail address exists"),
        LoginRefusal::NotRegistered => ("E003", "this e-mail address has no registered account"),
        LoginRefusal::WrongPassword => ("E004", "wrong e-mail or password"),
        LoginRefusal::Banned => ("E005", "this account is banned"),
        LoginRefusal::TooManyFailures => ("E006", "too many failed attempts; try again later"),
        LoginRefusal::NotConfirmed => ("E007", "the e-mail address has not been confirmed yet"),
    }
}

#[derive(Serialize)]
pub struct Nothing {}

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

pub async fn register(
    State(state): State<AppState>,
    req: KeyedJson<RegisterBody>,
) -> Result<Json<Answer<Nothing>>, ApiError> {
    let b = req.body;
    let email = fields::required_email(b.email.as_deref(), "email")?;
    let password = fields::password(b.password.as_deref(), Password::new_password)?;
    let (first_name, last_name) =
        fields::person_name(b.name.as_deref(), b.first_name.as_deref(), b.last_name.as_deref())?;
    let account = NewAccount {
        email,
        password,
        first_name,
        last_name,
        company_name: fields::text(b.company_name.as_deref(), "companyName", limits::COMPANY_NAME)?,
        ip: fields::ip(b.customer_real_ip.as_deref(), "customerRealIp")?,
    };
    let service = AccountService::new(&state.store, &state.accounts, req.caller.space);
    let outcome = service.register(account).await.map(|r| r.map(|()| Nothing {}));
    Ok(Json(Answer::from(outcome, register_refusal, REGISTER_FAILED)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmQuery {
    token: Option<String>,
}

impl Endpoint for ConfirmQuery {
    const SCOPE: Scope = Scope::CustomerWrite;
}

pub async fn confirm(
    State(state): State<AppState>,
    req: KeyedQuery<ConfirmQuery>,
) -> Result<Json<wire::Done>, ApiError> {
    let unusable = || fields::invalid("token", "the token is unknown, already used or expired");
    let token = fields::required(req.query.token.as_deref(), "token")?;
    let token = ConfirmationToken::parse(token).map_err(|_| unusable())?;
    let service = AccountService::new(&state.store, &state.accounts, req.caller.space);
    if !service.confirm(&token).await? {
        return Err(unusable().into());
    }
    Ok(Json(wire::DONE))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginBody {
    email: Option<String>,
    password: Option<String>,
    /// The signing-in user's address, as the calling backend passes it; else the
    /// connection's peer is the client.
    customer_real_ip: Option<String>,
}

impl Endpoint for LoginBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    identity_id: String,
}

pub async fn login(
    State(state): State<AppState>,
    Peer(peer): Peer,
    req: KeyedJson<LoginBody>,
) -> Result<Json<Answer<SignedIn>>, ApiError> {
    let b = req.body;
    let email = fields::required_email(b.email.as_deref(), "email")?;
    let password = fields::password(b.password.as_deref(), Password::typed)?;
    let client = fields::client_ip(b.customer_real_ip.as_deref(), peer, "customerRealIp")?;
    let service = AccountService::new(&state.store, &state.accounts, req.caller.space);
    let outcome = service.login(&email, password, &client).await;
    let outcome = outcome.map(|r| r.map(|identity| SignedIn { identity_id: identity.as_str().to_owned() }));
    Ok(Json(Answer::from(outcome, login_refusal, LOGIN_FAILED)))
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

/// The account behind a session: the profile's own fields, without its lists.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfo {
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

pub async fn account_info(
    State(state): State<AppState>,
    req: KeyedQuery<AccountInfoQuery>,
) -> Result<Json<LoggedIn<AccountInfo>>, ApiError> {
    let q = req.query;
    let identity = fields::identity(q.identity_id.as_deref(), "identityId")?;
    let ip = fields::ip(q.customer_real_ip.as_deref(), "customerRealIp")?;
    let service = AccountService::new(&state.store, &state.accounts, req.caller.space);
    let info = service.account_info(&identity, &ip).await?.map(|p| AccountInfo {
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
    });
    Ok(Json(LoggedIn::new(info)))
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
pub async fn logout(State(state): State<AppState>, req: KeyedJson<LogoutBody>) -> Result<Json<wire::Done>, ApiError> {
    let identity = fields::identity(req.body.identity_id.as_deref(), "identityId")?;
    AccountService::new(&state.store, &state.accounts, req.caller.space).logout(&identity).await?;
    Ok(Json(wire::DONE))
}
