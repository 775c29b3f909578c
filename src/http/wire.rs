//! The shapes the API answers with, named as API.md names them, built from the store's
//! rows. Every response body is one of these (or a small literal of its own handler).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::store;

/// `{"success": true, …}` around any answer.
#[derive(Serialize)]
pub struct Success<T> {
    pub success: bool,
    #[serde(flatten)]
    pub body: T,
}

pub fn success<T>(body: T) -> Success<T> {
    Success { success: true, body }
}

#[derive(Serialize)]
pub struct Group {
    pub name: String,
    pub slug: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Referral {
    pub code: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningSubscription {
    pub external_id: String,
    pub product_slug: String,
    pub product_code: String,
    pub order_number: String,
    pub order_hash: String,
    pub auto_renew: bool,
}

/// The customer profile, as detail, create and create-or-update return it; the extended
/// profile (this server's own endpoints, and BizKitHub's with `expand=extended`) adds
/// what the peers' model holds.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub cu_ref_no: String,
    pub credit_balance: i64,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    pub premium: bool,
    pub ban: bool,
    pub groups: Vec<Group>,
    pub meta: Map<String, Value>,
    pub referral: Option<Referral>,
    pub running_subscription_list: Vec<RunningSubscription>,
    /// The extended profile's fields, flattened beside the documented ones.
    #[serde(flatten)]
    pub extended: Option<store::Extension>,
}

/// Which shape of the profile an answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// BizKitHub's documented fields only.
    Documented,
    Extended,
}

impl Profile {
    pub fn new(p: store::Profile, shape: Shape) -> Self {
        let extended = (shape == Shape::Extended).then_some(p.extension);
        Profile {
            cu_ref_no: p.cu_ref_no,
            credit_balance: p.credit_balance,
            email: p.email,
            phone: p.phone,
            first_name: p.first_name,
            last_name: p.last_name,
            company_name: p.company_name,
            premium: p.premium,
            ban: p.ban,
            groups: p.groups.into_iter().map(|g| Group { name: g.name, slug: g.slug }).collect(),
            meta: p.meta,
            referral: p.referrer.map(|r| Referral {
                code: r.cu_ref_no,
                email: r.email,
                first_name: r.first_name,
                last_name: r.last_name,
            }),
            running_subscription_list: p
                .running_subscriptions
                .into_iter()
                .map(|s| RunningSubscription {
                    external_id: s.external_id,
                    product_slug: s.product_slug,
                    product_code: s.product_code,
                    order_number: s.order_number,
                    order_hash: s.order_hash,
                    auto_renew: s.auto_renew,
                })
                .collect(),
            extended,
        }
    }
}

/// A profile written: whether this call created the customer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    pub success: bool,
    pub new_account: bool,
    #[serde(flatten)]
    pub profile: Profile,
}

impl Written {
    pub fn new((new_account, profile): (bool, store::Profile), shape: Shape) -> Self {
        Written { success: true, new_account, profile: Profile::new(profile, shape) }
    }
}

/// A profile read for a session: `{"loggedIn": false}` unless the session is live.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedIn<T> {
    pub logged_in: bool,
    #[serde(flatten)]
    pub body: Option<T>,
}

impl<T> LoggedIn<T> {
    pub fn new(body: Option<T>) -> Self {
        LoggedIn { logged_in: body.is_some(), body }
    }
}

/// One relation as listed: the other customer and the relation's own fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchItem {
    pub cu_ref_no: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    pub notice: Option<String>,
    pub contact_email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<store::MatchItem> for MatchItem {
    fn from(m: store::MatchItem) -> Self {
        MatchItem {
            cu_ref_no: m.cu_ref_no,
            email: m.email,
            phone: m.phone,
            first_name: m.first_name,
            last_name: m.last_name,
            company_name: m.company_name,
            notice: m.notice,
            contact_email: m.contact_email,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Organisation {
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<store::Organisation> for Organisation {
    fn from(o: store::Organisation) -> Self {
        Organisation { slug: o.slug, name: o.name, created_at: o.created_at }
    }
}

/// A key as an administrator sees it: everything but the key and its digest.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub id: i64,
    pub prefix: String,
    pub kind: &'static str,
    pub label: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub rate_limit_per_minute: Option<i64>,
}

impl From<store::KeyInfo> for KeyInfo {
    fn from(k: store::KeyInfo) -> Self {
        KeyInfo {
            id: k.id,
            prefix: k.prefix,
            kind: k.kind.as_str(),
            label: k.label,
            scopes: k.scopes,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            rate_limit_per_minute: k.rate_limit_per_minute,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub organisation: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Value,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<store::AuditEntry> for AuditEntry {
    fn from(a: store::AuditEntry) -> Self {
        AuditEntry {
            id: a.id,
            organisation: a.organisation,
            actor: a.actor,
            action: a.action,
            target: a.target,
            detail: a.detail,
            request_id: a.request_id,
            created_at: a.created_at,
        }
    }
}

/// Converts each row of a list.
/// A webhook endpoint as administrators see it (never its secret).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    pub id: i64,
    pub organisation: String,
    pub mode: &'static str,
    pub url: String,
    /// `null`: every event type.
    pub events: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

impl From<store::Endpoint> for WebhookEndpoint {
    fn from(e: store::Endpoint) -> Self {
        WebhookEndpoint {
            id: e.id,
            organisation: e.organisation,
            mode: e.mode.as_str(),
            url: e.url,
            events: e.events,
            created_at: e.created_at,
            disabled_at: e.disabled_at,
            disabled_reason: e.disabled_reason,
        }
    }
}

/// One attempt to deliver an event.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    pub id: i64,
    pub delivery_id: i64,
    pub event_id: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub attempted_at: DateTime<Utc>,
    /// The HTTP status answered; `null` when there was none.
    pub status: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The delivery's state now: `pending`, `delivered` or `failed`.
    pub delivery_state: String,
}

impl From<store::DeliveryAttempt> for DeliveryAttempt {
    fn from(a: store::DeliveryAttempt) -> Self {
        DeliveryAttempt {
            id: a.id,
            delivery_id: a.delivery_id,
            event_id: a.event_id,
            event_type: a.event_type,
            attempted_at: a.attempted_at,
            status: a.status,
            latency_ms: a.latency_ms,
            error: a.error,
            delivery_state: a.delivery_state,
        }
    }
}

pub fn all<T, W: From<T>>(rows: Vec<T>) -> Vec<W> {
    rows.into_iter().map(W::from).collect()
}

/// `{"success": true}`: an operation with nothing more to say.
#[derive(Serialize)]
pub struct Done {
    pub success: bool,
}

pub const DONE: Done = Done { success: true };
