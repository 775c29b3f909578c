//! Profiles written: create-or-update, the credit ledger and erasure.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::customer::{cu_ref_no, internal, text};
use super::error::ApiError;
use super::extract::{Endpoint, KeyedJson};
use super::AppState;
use crate::auth::Scope;
use crate::contacts::{refusal_error, ContactBody};
use crate::normalize::sha256_hex;
use crate::store::{CreditAdd, CreditOutcome, Idempotency, Profile};

impl Endpoint for ContactBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Written {
    success: bool,
    new_account: bool,
    #[serde(flatten)]
    profile: Profile,
}

pub async fn create_or_update(State(state): State<AppState>, req: KeyedJson<ContactBody>) -> Result<Json<Value>, ApiError> {
    let write = req.body.into_write(state.contacts.phone_region)?;
    let (new_account, profile) = state.store.upsert_contact(req.caller.space, &write).await?.map_err(refusal_error)?;
    Ok(Json(serde_json::to_value(Written { success: true, new_account, profile }).map_err(internal)?))
}

/// Largest credit movement in one call, either way; keeps balances far from overflow.
pub const CREDIT_AMOUNT_MAX: i64 = 1_000_000_000_000;
const REASON_MAX: usize = 255;
const IDEMPOTENCY_KEY_MAX: usize = 255;

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

/// The `Idempotency-Key` header: printable ASCII, at most 255 characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().ok().map(str::trim).filter(|k| {
        !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_MAX && k.bytes().all(|b| b.is_ascii_graphic())
    });
    match key {
        Some(k) => Ok(Some(k.to_owned())),
        None => Err(ApiError::invalid(
            format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters"),
            Some("Idempotency-Key"),
        )),
    }
}

pub async fn credit_add(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: KeyedJson<CreditBody>,
) -> Result<Json<Value>, ApiError> {
    let b = req.body;
    let cu = cu_ref_no(b.cu_ref_no.as_deref(), "cuRefNo")?;
    let amount = b.amount.ok_or_else(|| ApiError::missing("amount"))?;
    if amount == 0 || amount.abs() > CREDIT_AMOUNT_MAX {
        return Err(ApiError::invalid(
            format!("amount must be a non-zero integer between -{CREDIT_AMOUNT_MAX} and {CREDIT_AMOUNT_MAX}"),
            Some("amount"),
        ));
    }
    let reason = text(b.reason.as_deref(), "reason", REASON_MAX)?.unwrap_or_default();
    // The request as stored: a retry matches whatever its JSON formatting.
    let fingerprint = sha256_hex(&format!("credit-add\n{}\n{amount}\n{reason}", cu.as_str()));
    let idempotency = idempotency_key(&headers)?.map(|key| Idempotency { key, fingerprint });
    let credit = CreditAdd { cu_ref_no: cu, amount, reason, idempotency };
    match state.store.add_credit(req.caller.space, &credit).await? {
        CreditOutcome::Added { balance } | CreditOutcome::Replayed { balance } => {
            Ok(Json(serde_json::json!({ "success": true, "creditBalance": balance })))
        }
        CreditOutcome::NotFound => Err(ApiError::CustomerNotFound { field: "cuRefNo" }),
        CreditOutcome::KeyReused => Err(ApiError::IdempotencyKeyReused),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteBody {
    cu_ref_no: Option<String>,
}

impl Endpoint for DeleteBody {
    const SCOPE: Scope = Scope::CustomerWrite;
}

pub async fn delete(State(state): State<AppState>, req: KeyedJson<DeleteBody>) -> Result<Json<Value>, ApiError> {
    let cu = cu_ref_no(req.body.cu_ref_no.as_deref(), "cuRefNo")?;
    if !state.store.erase_customer(req.caller.space, &cu).await? {
        return Err(ApiError::CustomerNotFound { field: "cuRefNo" });
    }
    Ok(Json(serde_json::json!({ "success": true })))
}
