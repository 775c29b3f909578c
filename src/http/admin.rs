//! The admin endpoints (ROOT keys with the `admin` scope): organisations, API keys and the
//! audit log. Validation, the tenant rule and auditing live in `crate::admin`, shared with
//! the command line; this module only translates HTTP to it and back.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, REQUEST_ID};
use super::extract::{Endpoint, KeyedJson, KeyedQuery};
use super::pagination::{decode_audit, encode_audit};
use super::wire::{self, success, Success};
use super::AppState;
use crate::admin::{Admin, KeyRequest, WebhookRequest};
use crate::auth::{Caller, Scope};
use crate::fields;
use crate::store::PagePos;

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

#[derive(Serialize)]
pub struct OrganisationCreated {
    organisation: wire::Organisation,
}

pub async fn create_organisation(
    State(state): State<AppState>,
    req: KeyedJson<CreateOrganisationBody>,
) -> Result<Json<Success<OrganisationCreated>>, ApiError> {
    let b = req.body;
    let organisation = admin(&state, &req.caller)?.create_organisation(b.slug.as_deref(), b.name.as_deref()).await?;
    Ok(Json(success(OrganisationCreated { organisation: organisation.into() })))
}

#[derive(Deserialize)]
pub struct ListOrganisationsQuery {}

impl Endpoint for ListOrganisationsQuery {
    const SCOPE: Scope = Scope::Admin;
}

#[derive(Serialize)]
pub struct Organisations {
    organisations: Vec<wire::Organisation>,
}

pub async fn list_organisations(
    State(state): State<AppState>,
    req: KeyedQuery<ListOrganisationsQuery>,
) -> Result<Json<Success<Organisations>>, ApiError> {
    let organisations = admin(&state, &req.caller)?.list_organisations().await?;
    Ok(Json(success(Organisations { organisations: wire::all(organisations) })))
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

/// A new key, shown this once, with what an administrator sees of it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyCreated {
    id: i64,
    key: String,
    organisation: String,
    prefix: String,
    kind: &'static str,
    label: String,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    rate_limit_per_minute: Option<i64>,
}

pub async fn create_key(
    State(state): State<AppState>,
    req: KeyedJson<CreateKeyBody>,
) -> Result<Json<Success<KeyCreated>>, ApiError> {
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
    let i = created.info;
    Ok(Json(success(KeyCreated {
        id: i.id,
        key: created.key.expose().to_owned(),
        organisation: created.organisation,
        prefix: i.prefix,
        kind: i.kind.as_str(),
        label: i.label,
        scopes: i.scopes,
        created_at: i.created_at,
        expires_at: i.expires_at,
        rate_limit_per_minute: i.rate_limit_per_minute,
    })))
}

#[derive(Deserialize)]
pub struct ListKeysQuery {
    organisation: Option<String>,
}

impl Endpoint for ListKeysQuery {
    const SCOPE: Scope = Scope::Admin;
}

#[derive(Serialize)]
pub struct Keys {
    keys: Vec<wire::KeyInfo>,
}

pub async fn list_keys(
    State(state): State<AppState>,
    req: KeyedQuery<ListKeysQuery>,
) -> Result<Json<Success<Keys>>, ApiError> {
    let keys = admin(&state, &req.caller)?.list_keys(req.query.organisation.as_deref()).await?;
    Ok(Json(success(Keys { keys: wire::all(keys) })))
}

#[derive(Deserialize)]
pub struct RevokeKeyBody {
    id: Option<i64>,
}

impl Endpoint for RevokeKeyBody {
    const SCOPE: Scope = Scope::Admin;
}

#[derive(Serialize)]
pub struct Revoked {
    revoked: bool,
}

pub async fn revoke_key(
    State(state): State<AppState>,
    req: KeyedJson<RevokeKeyBody>,
) -> Result<Json<Success<Revoked>>, ApiError> {
    let (revoked, digest) = admin(&state, &req.caller)?.revoke_key(req.body.id).await?;
    // The key may sit in this server's cache; the next request must already be refused.
    state.keys.evict_digest(&digest).await;
    Ok(Json(success(Revoked { revoked })))
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    entries: Vec<wire::AuditEntry>,
    next_cursor: Option<String>,
}

pub async fn list_audit(
    State(state): State<AppState>,
    req: KeyedQuery<AuditQuery>,
) -> Result<Json<Success<AuditPage>>, ApiError> {
    let q = req.query;
    let admin = admin(&state, &req.caller)?;
    let limit = fields::page_limit(q.limit.as_deref())?;
    let before = match q.cursor.as_deref() {
        None => PagePos::TOP,
        Some(c) => decode_audit(c).ok_or_else(|| fields::invalid("cursor", "cursor is not valid"))?,
    };
    let page = admin.list_audit(q.organisation.as_deref(), limit, before).await?;
    Ok(Json(success(AuditPage { entries: wire::all(page.entries), next_cursor: page.next.map(encode_audit) })))
}

#[derive(Deserialize)]
pub struct CreateWebhookBody {
    organisation: Option<String>,
    url: Option<String>,
    events: Option<Vec<String>>,
    mode: Option<String>,
}

impl Endpoint for CreateWebhookBody {
    const SCOPE: Scope = Scope::Admin;
}

/// A new endpoint with its signing key, shown this once.
#[derive(Serialize)]
pub struct WebhookCreated {
    #[serde(flatten)]
    endpoint: wire::WebhookEndpoint,
    secret: String,
}

pub async fn create_webhook(
    State(state): State<AppState>,
    req: KeyedJson<CreateWebhookBody>,
) -> Result<Json<Success<WebhookCreated>>, ApiError> {
    let b = req.body;
    let request = WebhookRequest { organisation: b.organisation, url: b.url, events: b.events, mode: b.mode };
    let created = admin(&state, &req.caller)?.create_webhook(request, state.webhook_reach).await?;
    Ok(Json(success(WebhookCreated { endpoint: created.endpoint.into(), secret: created.secret })))
}

#[derive(Deserialize)]
pub struct ListWebhooksQuery {
    organisation: Option<String>,
}

impl Endpoint for ListWebhooksQuery {
    const SCOPE: Scope = Scope::Admin;
}

#[derive(Serialize)]
pub struct Webhooks {
    webhooks: Vec<wire::WebhookEndpoint>,
}

pub async fn list_webhooks(
    State(state): State<AppState>,
    req: KeyedQuery<ListWebhooksQuery>,
) -> Result<Json<Success<Webhooks>>, ApiError> {
    let endpoints = admin(&state, &req.caller)?.list_webhooks(req.query.organisation.as_deref()).await?;
    Ok(Json(success(Webhooks { webhooks: wire::all(endpoints) })))
}

#[derive(Deserialize)]
pub struct DeleteWebhookBody {
    id: Option<i64>,
}

impl Endpoint for DeleteWebhookBody {
    const SCOPE: Scope = Scope::Admin;
}

#[derive(Serialize)]
pub struct Deleted {
    deleted: bool,
}

pub async fn delete_webhook(
    State(state): State<AppState>,
    req: KeyedJson<DeleteWebhookBody>,
) -> Result<Json<Success<Deleted>>, ApiError> {
    let deleted = admin(&state, &req.caller)?.delete_webhook(req.body.id).await?;
    Ok(Json(success(Deleted { deleted })))
}

#[derive(Deserialize)]
pub struct WebhookDeliveriesQuery {
    id: Option<String>,
}

impl Endpoint for WebhookDeliveriesQuery {
    const SCOPE: Scope = Scope::Admin;
}

#[derive(Serialize)]
pub struct Attempts {
    attempts: Vec<wire::DeliveryAttempt>,
}

pub async fn webhook_deliveries(
    State(state): State<AppState>,
    req: KeyedQuery<WebhookDeliveriesQuery>,
) -> Result<Json<Success<Attempts>>, ApiError> {
    let admin = admin(&state, &req.caller)?;
    let id = req.query.id.as_deref().map(|id| fields::id(id, "id")).transpose()?;
    let attempts = admin.webhook_attempts(id).await?;
    Ok(Json(success(Attempts { attempts: wire::all(attempts) })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayBody {
    event_id: Option<i64>,
}

impl Endpoint for ReplayBody {
    const SCOPE: Scope = Scope::Admin;
}

#[derive(Serialize)]
pub struct Replayed {
    deliveries: u64,
}

pub async fn replay_webhook_event(
    State(state): State<AppState>,
    req: KeyedJson<ReplayBody>,
) -> Result<Json<Success<Replayed>>, ApiError> {
    let deliveries = admin(&state, &req.caller)?.replay_event(req.body.event_id).await?;
    Ok(Json(success(Replayed { deliveries })))
}
