//! Profiles written: create-or-update, the credit ledger and erasure.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};

use serde_json::json;

use super::customer::or_merged;
use super::error::{ApiError, REQUEST_ID};
use super::extract::{Endpoint, KeyedJson};
use super::wire::{self, success, Success, Written};
use super::AppState;
use crate::auth::Scope;
use crate::contacts::{ContactBody, Contacts, CreditRequest};
use crate::fields::{self, limits};
use crate::store::{AuditActor, AuditTarget, Merge, NewAudit};

impl Endpoint for ContactBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

pub async fn create_or_update(
    State(state): State<AppState>,
    req: KeyedJson<ContactBody>,
) -> Result<Json<Written>, ApiError> {
    let write = req.body.into_write(state.contacts.phone_region)?;
    // A cuRefNo or referral merged into another is named by the store's refusal.
    let written = Contacts::new(&state.store, req.caller.space).upsert(&write).await?;
    Ok(Json(Written::new(written, wire::Shape::Extended)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditBody {
    cu_ref_no: Option<String>,
    amount: Option<i64>,
    reason: Option<String>,
}

impl Endpoint for CreditBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    credit_balance: i64,
}

pub async fn credit_add(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: KeyedJson<CreditBody>,
) -> Result<Json<Success<Balance>>, ApiError> {
    let b = req.body;
    let request = CreditRequest {
        cu_ref_no: fields::required_cu_ref_no(b.cu_ref_no.as_deref(), "cuRefNo")?,
        amount: fields::credit_amount(b.amount)?,
        reason: fields::text(b.reason.as_deref(), "reason", limits::CREDIT_REASON)?.unwrap_or_default(),
        idempotency_key: fields::idempotency_key(headers.get("idempotency-key").map(|v| v.as_bytes()))?,
    };
    let cu = request.cu_ref_no.clone();
    let space = req.caller.space;
    let credit_balance = Contacts::new(&state.store, space).add_credit(request).await.map_err(ApiError::from);
    let credit_balance = or_merged(credit_balance, &state, space, &[("cuRefNo", Some(&cu))]).await?;
    Ok(Json(success(Balance { credit_balance })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteBody {
    cu_ref_no: Option<String>,
}

impl Endpoint for DeleteBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

pub async fn delete(State(state): State<AppState>, req: KeyedJson<DeleteBody>) -> Result<Json<wire::Done>, ApiError> {
    let cu = fields::required_cu_ref_no(req.body.cu_ref_no.as_deref(), "cuRefNo")?;
    let space = req.caller.space;
    let erased = Contacts::new(&state.store, space).erase(&cu).await.map_err(ApiError::from);
    or_merged(erased, &state, space, &[("cuRefNo", Some(&cu))]).await?;
    Ok(Json(wire::DONE))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeBody {
    primary_cu_ref_no: Option<String>,
    duplicate_cu_ref_no: Option<String>,
}

impl Endpoint for MergeBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

pub async fn merge(
    State(state): State<AppState>,
    req: KeyedJson<MergeBody>,
) -> Result<Json<Success<wire::Profile>>, ApiError> {
    let b = req.body;
    let primary = fields::required_cu_ref_no(b.primary_cu_ref_no.as_deref(), "primaryCuRefNo")?;
    let duplicate = fields::required_cu_ref_no(b.duplicate_cu_ref_no.as_deref(), "duplicateCuRefNo")?;
    if primary == duplicate {
        return Err(fields::invalid("duplicateCuRefNo", "duplicateCuRefNo must differ from primaryCuRefNo").into());
    }
    let caller = &req.caller;
    let audit = NewAudit {
        organisation: Some(caller.organisation.clone()),
        actor: AuditActor::Key(caller.key_id),
        action: "customer.merge",
        target: AuditTarget::Named(duplicate.as_str().to_owned()),
        detail: json!({ "mode": caller.mode.as_str(), "mergedInto": primary.as_str() }),
        request_id: REQUEST_ID.try_with(Clone::clone).ok(),
    };
    let merge = Merge { primary, duplicate, audit };
    let merged = Contacts::new(&state.store, caller.space).merge(&merge).await.map_err(ApiError::from);
    let asked = [("primaryCuRefNo", Some(&merge.primary)), ("duplicateCuRefNo", Some(&merge.duplicate))];
    let profile = or_merged(merged, &state, caller.space, &asked).await?;
    Ok(Json(success(wire::Profile::new(profile, wire::Shape::Extended))))
}
