//! The admin endpoints (ROOT keys with the `admin` scope): organisations, API keys and the
//! audit log. Validation, the tenant rule and auditing live in `crate::admin`, shared with
//! the command line; this module only translates HTTP to it and back.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, REQUEST_ID};
use super::extract::{Endpoint, KeyedJson, KeyedQuery};
use super::AppState;
use crate::admin::{Admin, AdminError, KeyRequest};
use crate::auth::{Caller, Scope};

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::Invalid { field, message } => ApiError::invalid(message, Some(field)),
            AdminError::TooLong { field, max } => ApiError::ValueTooLong { field, max },
            AdminError::Forbidden(message) => ApiError::Forbidden(message),
            AdminError::Store(e) => e.into(),
        }
    }
}

/// The one gate every admin handler passes: a ROOT key, acting under this request's id.
fn admin<'a>(state: &'a AppState, caller: &Caller) -> Result<Admin<'a>, ApiError> {
    let request_id = REQUEST_ID.try_with(Clone::clone).ok();
    Ok(Admin::for_caller(&state.store, caller, request_id)?)
}

#[derive(Deserialize)]
pub struct CreateOrganisationBody {
    slug: Option<String>,
    name: Option<String>,
}

impl Endpoint for CreateOrganisationBody {
    const SCOPE: Scope = Scope::Admin;
}

pub async fn create_organisation(
    State(state): State<AppState>,
    req: KeyedJson<CreateOrganisationBody>,
) -> Result<Json<Value>, ApiError> {
    let b = req.body;
    let organisation = admin(&state, &req.caller)?.create_organisation(b.slug.as_deref(), b.name.as_deref()).await?;
    Ok(Json(json!({ "success": true, "organisation": organisation })))
}

#[derive(Deserialize)]
pub struct ListOrganisationsQuery {}

impl Endpoint for ListOrganisationsQuery {
    const SCOPE: Scope = Scope::Admin;
}

pub async fn list_organisations(
    State(state): State<AppState>,
    req: KeyedQuery<ListOrganisationsQuery>,
) -> Result<Json<Value>, ApiError> {
    let organisations = admin(&state, &req.caller)?.list_organisations().await?;
    Ok(Json(json!({ "success": true, "organisations": organisations })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateKeyBody {
    organisation: Option<String>,
    kind: Option<String>,
    label: Option<String>,
    scopes: Option<Vec<String>>,
    expires_at: Option<String>,
    rate_limit_per_minute: Option<i64>,
}

impl Endpoint for CreateKeyBody {
    const SCOPE: Scope = Scope::Admin;
}

pub async fn create_key(State(state): State<AppState>, req: KeyedJson<CreateKeyBody>) -> Result<Json<Value>, ApiError> {
    let b = req.body;
    let request = KeyRequest {
        organisation: b.organisation,
        kind: b.kind,
        label: b.label,
        scopes: b.scopes,
        expires_at: b.expires_at,
        rate_limit_per_minute: b.rate_limit_per_minute,
    };
    let created = admin(&state, &req.caller)?.create_key(request).await?;
    let i = &created.info;
    Ok(Json(json!({
        "success": true,
        "id": i.id,
        "key": created.key.expose(),
        "organisation": created.organisation,
        "prefix": i.prefix,
        "kind": i.kind.as_str(),
        "label": i.label,
        "scopes": i.scopes,
        "createdAt": i.created_at,
        "expiresAt": i.expires_at,
        "rateLimitPerMinute": i.rate_limit_per_minute,
    })))
}

#[derive(Deserialize)]
pub struct ListKeysQuery {
    organisation: Option<String>,
}

impl Endpoint for ListKeysQuery {
    const SCOPE: Scope = Scope::Admin;
}

pub async fn list_keys(State(state): State<AppState>, req: KeyedQuery<ListKeysQuery>) -> Result<Json<Value>, ApiError> {
    let keys = admin(&state, &req.caller)?.list_keys(req.query.organisation.as_deref()).await?;
    Ok(Json(json!({ "success": true, "keys": keys })))
}

#[derive(Deserialize)]
pub struct RevokeKeyBody {
    id: Option<i64>,
}

impl Endpoint for RevokeKeyBody {
    const SCOPE: Scope = Scope::Admin;
}

pub async fn revoke_key(State(state): State<AppState>, req: KeyedJson<RevokeKeyBody>) -> Result<Json<Value>, ApiError> {
    let (revoked, digest) = admin(&state, &req.caller)?.revoke_key(req.body.id).await?;
    // The key may sit in this server's cache; the next request must already be refused.
    state.keys.evict_digest(&digest).await;
    Ok(Json(json!({ "success": true, "revoked": revoked })))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    organisation: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

impl Endpoint for AuditQuery {
    const SCOPE: Scope = Scope::Admin;
}

pub async fn list_audit(State(state): State<AppState>, req: KeyedQuery<AuditQuery>) -> Result<Json<Value>, ApiError> {
    let q = req.query;
    let page = admin(&state, &req.caller)?
        .list_audit(q.organisation.as_deref(), q.limit.as_deref(), q.cursor.as_deref())
        .await?;
    Ok(Json(json!({ "success": true, "entries": page.entries, "nextCursor": page.next_cursor })))
}
