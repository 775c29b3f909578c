//! Webhook endpoints, their deliveries and attempts, as the store keeps them. Events are
//! written by the database itself (triggers of migration `webhooks`), in the transaction
//! of the change they announce; the store reads them back as due deliveries.

use chrono::{DateTime, Utc};

use super::{Mode, SpaceId};

/// An endpoint to register.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    /// The event types it receives; `None`: every type.
    pub events: Option<Vec<String>>,
    /// The signing key, `whsec_…`.
    pub secret: String,
}

/// An endpoint as an administrator sees it (never its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: i64,
    pub organisation: String,
    pub mode: Mode,
    pub url: String,
    pub events: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

/// One attempt to deliver an event to an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    pub id: i64,
    pub delivery_id: i64,
    pub event_id: i64,
    pub event_type: String,
    pub attempted_at: DateTime<Utc>,
    /// The HTTP status answered; `None` when there was no answer.
    pub status: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// Where the delivery stands now: `pending`, `delivered` or `failed`.
    pub delivery_state: String,
}

/// A delivery taken by a worker: its lease runs until the time the claim gave.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub space: SpaceId,
    pub id: i64,
    pub endpoint_id: i64,
    pub url: String,
    pub secret: String,
    pub event_id: i64,
    pub event_type: String,
    pub event_at: DateTime<Utc>,
    pub mode: Mode,
    /// The customer the event is about (the manager, for relation events).
    pub customer_id: i64,
    pub cu_ref_no: String,
    /// Whether that customer has been erased since.
    pub erased: bool,
    /// Relation events: the managed customer.
    pub other_id: Option<i64>,
    pub other_cu_ref_no: Option<String>,
    /// The body of an earlier attempt, sent again as it was.
    pub body: Option<String>,
    /// Attempts so far, this one included.
    pub attempts: i32,
    /// When the event was queued: retries stop some time after it.
    pub created_at: DateTime<Utc>,
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    /// Tried again at this time.
    Retry(DateTime<Utc>),
    /// No more attempts (retried for as long as retries last).
    Failed,
    /// The endpoint asked not to be called again (410): it is disabled with this reason,
    /// and its pending deliveries fail.
    Disable(String),
}

/// The record of one attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub at: DateTime<Utc>,
    pub status: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// A relation as its events show it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationNow {
    pub notice: Option<String>,
    pub contact_email: Option<String>,
}
