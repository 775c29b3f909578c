//! The customer endpoints of BizKitHub's API: create, detail, and the manager → customer
//! relations (match, list, remove).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::extract::{Endpoint, KeyedJson, KeyedQuery};
use super::AppState;
use crate::auth::Scope;
use crate::normalize::{clean_text, ClientIp, CuRefNo, Email, IdentityId, TextKind};
use crate::store::{CreateCustomer, MatchItem, MatchOutcome, MatchTarget, PagePos, Profile, RemoveOutcome, Side};

/// Longest accepted values, in characters, after cleaning.
pub mod limits {
    pub use crate::contacts::limits::{COMPANY_NAME, NAME, REGISTRATION_NUMBER, TAX_ID};
    pub const NOTICE: usize = 2000;
    pub const LIST_DEFAULT: i64 = 50;
    pub const LIST_MAX: i64 = 500;
}

pub(super) fn cu_ref_no(value: Option<&str>, field: &'static str) -> Result<CuRefNo, ApiError> {
    let value = value.ok_or_else(|| ApiError::missing(field))?;
    CuRefNo::parse(value).map_err(|_| ApiError::InvalidCuRefNo { field })
}

pub(super) fn email(value: &str, field: &'static str) -> Result<Email, ApiError> {
    Email::parse(value).map_err(ApiError::email(field))
}

pub(super) fn text(value: Option<&str>, field: &'static str, max: usize) -> Result<Option<String>, ApiError> {
    value.map(|v| clean_text(v, TextKind::Plain, max).map_err(ApiError::too_long(field))).transpose().map(Option::flatten)
}

pub(super) fn ip(value: Option<&str>) -> Result<ClientIp, ApiError> {
    ClientIp::parse(value).map_err(ApiError::ip("customerRealIp"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    email: Option<String>,
    company_name: Option<String>,
    company_registration_number: Option<String>,
    tax_identification_number: Option<String>,
    customer_real_ip: Option<String>,
}

impl Endpoint for CreateBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    success: bool,
    new_account: bool,
    #[serde(flatten)]
    profile: Profile,
}

pub async fn create(State(state): State<AppState>, req: KeyedJson<CreateBody>) -> Result<Json<Value>, ApiError> {
    let b = req.body;
    let input = CreateCustomer {
        email: email(b.email.as_deref().ok_or_else(|| ApiError::missing("email"))?, "email")?,
        company_name: text(b.company_name.as_deref(), "companyName", limits::COMPANY_NAME)?,
        company_registration_number: text(
            b.company_registration_number.as_deref(),
            "companyRegistrationNumber",
            limits::REGISTRATION_NUMBER,
        )?,
        tax_identification_number: text(b.tax_identification_number.as_deref(), "taxIdentificationNumber", limits::TAX_ID)?,
        ip: ip(b.customer_real_ip.as_deref())?,
    };
    let (new_account, profile) = state.store.find_or_create_by_email(req.caller.space, &input).await?;
    Ok(Json(serde_json::to_value(Created { success: true, new_account, profile }).map_err(internal)?))
}

pub(super) fn internal(e: serde_json::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetailQuery {
    identity_id: Option<String>,
    cu_ref_no: Option<String>,
    customer_real_ip: Option<String>,
}

impl Endpoint for DetailQuery {
    const SCOPE: Scope = Scope::CustomerRead;
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoggedIn {
    logged_in: bool,
    #[serde(flatten)]
    profile: Profile,
}

pub async fn detail(State(state): State<AppState>, req: KeyedQuery<DetailQuery>) -> Result<Json<Value>, ApiError> {
    let q = req.query;
    let identity = q.identity_id.as_deref().ok_or_else(|| ApiError::missing("identityId"))?;
    let identity = IdentityId::parse(identity).map_err(|_| ApiError::InvalidIdentityId { field: "identityId" })?;
    let cu = cu_ref_no(q.cu_ref_no.as_deref(), "cuRefNo")?;
    let ip = ip(q.customer_real_ip.as_deref())?;
    let detail = state
        .store
        .customer_detail(req.caller.space, &cu, &identity.digest(), &ip)
        .await?
        .ok_or(ApiError::CustomerNotFound { field: "cuRefNo" })?;
    if !detail.logged_in {
        return Ok(Json(serde_json::json!({ "loggedIn": false })));
    }
    Ok(Json(serde_json::to_value(LoggedIn { logged_in: true, profile: detail.profile }).map_err(internal)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchBody {
    manager_cu_ref_no: Option<String>,
    customer_cu_ref_no: Option<String>,
    customer_email: Option<String>,
    notice: Option<String>,
}

impl Endpoint for MatchBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

pub async fn match_customer(State(state): State<AppState>, req: KeyedJson<MatchBody>) -> Result<Json<Value>, ApiError> {
    let b = req.body;
    let manager = cu_ref_no(b.manager_cu_ref_no.as_deref(), "managerCuRefNo")?;
    let contact = b.customer_email.as_deref().map(|e| email(e, "customerEmail")).transpose()?;
    let target = match (b.customer_cu_ref_no.as_deref(), contact) {
        (Some(cu), contact) => MatchTarget::CuRefNo(cu_ref_no(Some(cu), "customerCuRefNo")?, contact),
        (None, Some(email)) => MatchTarget::Email(email),
        (None, None) => {
            return Err(ApiError::invalid("customerCuRefNo or customerEmail is required", Some("customerCuRefNo")))
        }
    };
    let notice = text(b.notice.as_deref(), "notice", limits::NOTICE)?;
    match state.store.upsert_match(req.caller.space, &manager, &target, notice.as_deref()).await? {
        MatchOutcome::Matched => Ok(Json(serde_json::json!({ "success": true }))),
        MatchOutcome::ManagerNotFound => Err(ApiError::ManagerNotFound),
        MatchOutcome::CustomerNotFound => Err(ApiError::CustomerNotFound { field: "customerCuRefNo" }),
        MatchOutcome::SelfMatch => Err(ApiError::SelfMatch),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    cu_ref_no: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

impl Endpoint for ListQuery {
    const SCOPE: Scope = Scope::CustomerRead;
}

/// Where each of the two lists stands; `None` for a list that is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    managers: Option<PagePos>,
    customers: Option<PagePos>,
}

impl Cursor {
    fn encode_pos(pos: Option<PagePos>) -> String {
        pos.map_or_else(|| "-".to_owned(), |p| format!("{}.{}", p.created_at.timestamp_micros(), p.other_id))
    }

    fn encode(&self) -> String {
        hex::encode(format!("v1|{}|{}", Self::encode_pos(self.managers), Self::encode_pos(self.customers)))
    }

    fn decode_pos(part: &str) -> Option<Option<PagePos>> {
        if part == "-" {
            return Some(None);
        }
        let (micros, id) = part.split_once('.')?;
        let created_at = chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        Some(Some(PagePos { created_at, other_id: id.parse().ok()? }))
    }

    fn decode(s: &str) -> Option<Cursor> {
        let text = String::from_utf8(hex::decode(s).ok()?).ok()?;
        let mut parts = text.split('|');
        if parts.next()? != "v1" {
            return None;
        }
        let managers = Self::decode_pos(parts.next()?)?;
        let customers = Self::decode_pos(parts.next()?)?;
        parts.next().is_none().then_some(Cursor { managers, customers })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MatchList {
    success: bool,
    managers: Vec<MatchItem>,
    customers: Vec<MatchItem>,
    next_cursor: Option<String>,
}

pub async fn match_list(State(state): State<AppState>, req: KeyedQuery<ListQuery>) -> Result<Json<Value>, ApiError> {
    let q = req.query;
    let space = req.caller.space;
    let cu = cu_ref_no(q.cu_ref_no.as_deref(), "cuRefNo")?;
    let limit = match q.limit.as_deref() {
        None => limits::LIST_DEFAULT,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=limits::LIST_MAX).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("limit must be 1 to {}", limits::LIST_MAX), Some("limit")))?,
    };
    // A first page starts both lists at the top; a later one resumes each where it stopped.
    let (from_managers, from_customers) = match q.cursor.as_deref() {
        None => (Some(None), Some(None)),
        Some(c) => {
            let c = Cursor::decode(c).ok_or_else(|| ApiError::invalid("cursor is not valid", Some("cursor")))?;
            (c.managers.map(Some), c.customers.map(Some))
        }
    };
    if !state.store.customer_exists(space, &cu).await? {
        return Err(ApiError::CustomerNotFound { field: "cuRefNo" });
    }
    let page = |items: &mut Vec<MatchItem>| -> Option<PagePos> {
        if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|i| PagePos { created_at: i.created_at, other_id: i.other_id })
        } else {
            None
        }
    };
    let mut managers = match from_managers {
        Some(after) => state.store.list_matches(space, &cu, Side::Managers, after, limit + 1).await?,
        None => Vec::new(),
    };
    let mut customers = match from_customers {
        Some(after) => state.store.list_matches(space, &cu, Side::Customers, after, limit + 1).await?,
        None => Vec::new(),
    };
    let next = Cursor { managers: page(&mut managers), customers: page(&mut customers) };
    let next_cursor = (next.managers.is_some() || next.customers.is_some()).then(|| next.encode());
    let body = MatchList { success: true, managers, customers, next_cursor };
    Ok(Json(serde_json::to_value(body).map_err(internal)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveBody {
    manager_cu_ref_no: Option<String>,
    customer_cu_ref_no: Option<String>,
}

impl Endpoint for RemoveBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

pub async fn match_remove(State(state): State<AppState>, req: KeyedJson<RemoveBody>) -> Result<Json<Value>, ApiError> {
    let b = req.body;
    let manager = cu_ref_no(b.manager_cu_ref_no.as_deref(), "managerCuRefNo")?;
    let customer = cu_ref_no(b.customer_cu_ref_no.as_deref(), "customerCuRefNo")?;
    match state.store.remove_match(req.caller.space, &manager, &customer).await? {
        RemoveOutcome::Removed(removed) => Ok(Json(serde_json::json!({ "success": true, "removed": removed }))),
        RemoveOutcome::ManagerNotFound => Err(ApiError::ManagerNotFound),
        RemoveOutcome::CustomerNotFound => Err(ApiError::CustomerNotFound { field: "customerCuRefNo" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_junk() {
        let pos = PagePos { created_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(), other_id: 42 };
        for c in [
            Cursor { managers: Some(pos), customers: None },
            Cursor { managers: None, customers: Some(pos) },
        ] {
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        for junk in ["", "zz", &hex::encode("v2|-|-"), &hex::encode("v1|-"), &hex::encode("v1|x.1|-"), &hex::encode("v1|-|-|-")] {
            assert_eq!(Cursor::decode(junk), None, "{junk}");
        }
    }
}
