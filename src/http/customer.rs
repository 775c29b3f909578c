//! The customer endpoints of BizKitHub's API: create, detail, and the manager → customer
//! relations (match, list, remove).

use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{query_param, Endpoint, KeyedJson, KeyedQuery};
use super::pagination::{decode_customers, decode_matches, encode_customers, encode_matches};
use super::wire::{self, success, LoggedIn, Success, Written};
use super::AppState;
use crate::auth::Scope;
use crate::customers::{Customers, MatchCursor};
use crate::fields::{self, limits, InputError};
use crate::normalize::search::fold;
use crate::normalize::{slugify, CuRefNo, Region};
use crate::store::{CreateCustomer, CustomerFilter, MatchTarget, PagePos, SpaceId};

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

pub async fn create(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    req: KeyedJson<CreateBody>,
) -> Result<Json<Written>, ApiError> {
    let shape = shape(query_param(query.as_deref(), "expand").as_deref())?;
    let b = req.body;
    let input = CreateCustomer {
        email: fields::required_email(b.email.as_deref(), "email")?,
        company_name: fields::text(b.company_name.as_deref(), "companyName", limits::COMPANY_NAME)?,
        company_registration_number: fields::text(
            b.company_registration_number.as_deref(),
            "companyRegistrationNumber",
            limits::REGISTRATION_NUMBER,
        )?,
        tax_identification_number: fields::text(
            b.tax_identification_number.as_deref(),
            "taxIdentificationNumber",
            limits::TAX_ID,
        )?,
        ip: fields::ip(b.customer_real_ip.as_deref(), "customerRealIp")?,
    };
    let written = Customers::new(&state.store, req.caller.space).create(&input).await?;
    Ok(Json(Written::new(written, shape)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetailQuery {
    identity_id: Option<String>,
    cu_ref_no: Option<String>,
    customer_real_ip: Option<String>,
    expand: Option<String>,
}

impl Endpoint for DetailQuery {
    const SCOPE: Scope = Scope::CustomerRead;
}

pub async fn detail(
    State(state): State<AppState>,
    req: KeyedQuery<DetailQuery>,
) -> Result<Json<LoggedIn<wire::Profile>>, ApiError> {
    let q = req.query;
    let identity = fields::identity(q.identity_id.as_deref(), "identityId")?;
    let cu = fields::required_cu_ref_no(q.cu_ref_no.as_deref(), "cuRefNo")?;
    let ip = fields::ip(q.customer_real_ip.as_deref(), "customerRealIp")?;
    let shape = shape(q.expand.as_deref())?;
    let space = req.caller.space;
    let detail = Customers::new(&state.store, space).detail(&cu, &identity, &ip).await.map_err(ApiError::from);
    let detail = or_merged(detail, &state, space, &[("cuRefNo", Some(&cu))]).await?;
    Ok(Json(LoggedIn::new(detail.logged_in.then(|| wire::Profile::new(detail.profile, shape)))))
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

pub async fn match_customer(
    State(state): State<AppState>,
    req: KeyedJson<MatchBody>,
) -> Result<Json<wire::Done>, ApiError> {
    let b = req.body;
    let manager = fields::required_cu_ref_no(b.manager_cu_ref_no.as_deref(), "managerCuRefNo")?;
    let contact = b.customer_email.as_deref().map(|e| fields::email(e, "customerEmail")).transpose()?;
    let target = match (b.customer_cu_ref_no.as_deref(), contact) {
        (Some(cu), contact) => MatchTarget::CuRefNo(fields::cu_ref_no(cu, "customerCuRefNo")?, contact),
        (None, Some(email)) => MatchTarget::Email(email),
        (None, None) => {
            return Err(fields::invalid("customerCuRefNo", "customerCuRefNo or customerEmail is required").into())
        }
    };
    let notice = fields::text(b.notice.as_deref(), "notice", limits::NOTICE)?;
    let space = req.caller.space;
    let matched = Customers::new(&state.store, space).match_customer(&manager, &target, notice.as_deref()).await;
    let target_cu = match &target {
        MatchTarget::CuRefNo(cu, _) => Some(cu),
        MatchTarget::Email(_) => None,
    };
    let asked = [("managerCuRefNo", Some(&manager)), ("customerCuRefNo", target_cu)];
    or_merged(matched.map_err(ApiError::from), &state, space, &asked).await?;
    Ok(Json(wire::DONE))
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchList {
    managers: Vec<wire::MatchItem>,
    customers: Vec<wire::MatchItem>,
    next_cursor: Option<String>,
}

pub async fn match_list(
    State(state): State<AppState>,
    req: KeyedQuery<ListQuery>,
) -> Result<Json<Success<MatchList>>, ApiError> {
    let q = req.query;
    let cu = fields::required_cu_ref_no(q.cu_ref_no.as_deref(), "cuRefNo")?;
    let limit = fields::page_limit(q.limit.as_deref())?;
    let from = match q.cursor.as_deref() {
        None => MatchCursor::START,
        Some(c) => decode_matches(c).ok_or_else(|| fields::invalid("cursor", "cursor is not valid"))?,
    };
    let space = req.caller.space;
    let page = Customers::new(&state.store, space).match_list(&cu, limit, from).await.map_err(ApiError::from);
    let page = or_merged(page, &state, space, &[("cuRefNo", Some(&cu))]).await?;
    Ok(Json(success(MatchList {
        managers: wire::all(page.managers),
        customers: wire::all(page.customers),
        next_cursor: page.next.as_ref().map(encode_matches),
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchQuery {
    #[serde(alias = "externalId")]
    partner_customer_id: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    q: Option<String>,
    group: Option<String>,
    premium: Option<String>,
    ban: Option<String>,
    created_from: Option<String>,
    created_to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

impl Endpoint for SearchQuery {
    const SCOPE: Scope = Scope::CustomerRead;
}

impl SearchQuery {
    /// The filter the query names; each value is normalised as the stored one it is
    /// compared with.
    fn filter(&self, region: Region) -> Result<CustomerFilter, InputError> {
        const EXAMPLE: &str = "2026-01-31T00:00:00Z";
        let prefix = match fields::text(self.q.as_deref(), "q", limits::SEARCH_QUERY)? {
            Some(q) => Some(fold(&q).ok_or_else(|| fields::invalid("q", "q must contain a letter or a digit"))?),
            None => None,
        };
        let group = match self.group.as_deref() {
            Some(g) => Some(slugify(g).ok_or_else(|| fields::invalid("group", "group must name a group"))?),
            None => None,
        };
        Ok(CustomerFilter {
            partner_customer_id: fields::text(
                self.partner_customer_id.as_deref(),
                "partnerCustomerId",
                limits::EXTERNAL_ID,
            )?,
            email: self
                .email
                .as_deref()
                .map(|e| fields::email(e, "email"))
                .transpose()?
                .map(|e| e.canonical().to_owned()),
            phone: self
                .phone
                .as_deref()
                .map(|p| fields::phone(p, region, "phone"))
                .transpose()?
                .map(|p| p.as_str().to_owned()),
            prefix,
            group,
            premium: self.premium.as_deref().map(|v| fields::flag(v, "premium")).transpose()?,
            ban: self.ban.as_deref().map(|v| fields::flag(v, "ban")).transpose()?,
            created_from: self.created_from.as_deref().map(|t| fields::time(t, "createdFrom", EXAMPLE)).transpose()?,
            created_to: self.created_to.as_deref().map(|t| fields::time(t, "createdTo", EXAMPLE)).transpose()?,
        })
    }
}

/// A customer as the list gives it: the profile and when it was created and last changed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    #[serde(flatten)]
    profile: wire::Profile,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerList {
    customers: Vec<Listed>,
    next_cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    req: KeyedQuery<SearchQuery>,
) -> Result<Json<Success<CustomerList>>, ApiError> {
    let q = req.query;
    let filter = q.filter(state.contacts.phone_region)?;
    let limit = fields::page_limit(q.limit.as_deref())?;
    let from = match q.cursor.as_deref() {
        None => PagePos::TOP,
        Some(c) => decode_customers(c).ok_or_else(|| fields::invalid("cursor", "cursor is not valid"))?,
    };
    let (items, next) = Customers::new(&state.store, req.caller.space).list(&filter, limit, from).await?;
    Ok(Json(success(CustomerList {
        customers: items
            .into_iter()
            .map(|c| Listed {
                profile: wire::Profile::new(c.profile, wire::Shape::Extended),
                created_at: c.created_at,
                updated_at: c.updated_at,
            })
            .collect(),
        next_cursor: next.map(encode_customers),
    })))
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

#[derive(Serialize)]
pub struct Removed {
    removed: bool,
}

pub async fn match_remove(
    State(state): State<AppState>,
    req: KeyedJson<RemoveBody>,
) -> Result<Json<Success<Removed>>, ApiError> {
    let b = req.body;
    let manager = fields::required_cu_ref_no(b.manager_cu_ref_no.as_deref(), "managerCuRefNo")?;
    let customer = fields::required_cu_ref_no(b.customer_cu_ref_no.as_deref(), "customerCuRefNo")?;
    let space = req.caller.space;
    let removed = Customers::new(&state.store, space).match_remove(&manager, &customer).await.map_err(ApiError::from);
    let asked = [("managerCuRefNo", Some(&manager)), ("customerCuRefNo", Some(&customer))];
    let removed = or_merged(removed, &state, space, &asked).await?;
    Ok(Json(success(Removed { removed })))
}

/// A cuRefNo that finds no live customer may have been merged into another: then the
/// answer is `CUSTOMER_MERGED` naming that one. `asked` pairs each field with the cuRefNo
/// it gave; only a not-found answer costs the extra lookup.
pub(super) async fn or_merged<T>(
    result: Result<T, ApiError>,
    state: &AppState,
    space: SpaceId,
    asked: &[(&'static str, Option<&CuRefNo>)],
) -> Result<T, ApiError> {
    let err = match result {
        Ok(value) => return Ok(value),
        Err(err) => err,
    };
    let field = match &err {
        ApiError::CustomerNotFound { field } => *field,
        ApiError::ManagerNotFound => "managerCuRefNo",
        _ => return Err(err),
    };
    let Some(cu) = asked.iter().find(|(f, _)| *f == field).and_then(|(_, cu)| *cu) else { return Err(err) };
    match state.store.merged_into(space, cu).await? {
        Some(merged_into) => Err(ApiError::CustomerMerged { field, merged_into }),
        None => Err(err),
    }
}

/// `expand=extended` asks BizKitHub's endpoints for the extended profile.
fn shape(expand: Option<&str>) -> Result<wire::Shape, ApiError> {
    match expand {
        None | Some("") => Ok(wire::Shape::Documented),
        Some("extended") => Ok(wire::Shape::Extended),
        Some(_) => Err(fields::invalid("expand", "expand may only be `extended`").into()),
    }
}
