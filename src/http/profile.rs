//! Profiles written: create-or-update, the credit ledger and erasure.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Endpoint, KeyedJson};
use super::wire::{self, success, Success, Written};
use super::AppState;
use crate::auth::Scope;
use crate::contacts::{ContactBody, Contacts, CreditRequest};
use crate::fields::{self, limits};

impl Endpoint for ContactBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

pub async fn create_or_update(
    State(state): State<AppState>,
    req: KeyedJson<ContactBody>,
) -> Result<Json<Written>, ApiError> {
    let write = req.body.into_write(state.contacts.phone_region)?;
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
    let credit_balance = Contacts::new(&state.store, req.caller.space).add_credit(request).await?;
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
    Contacts::new(&state.store, req.caller.space).erase(&cu).await?;
    Ok(Json(wire::DONE))
}
