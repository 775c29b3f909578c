//! What the store takes and returns: plain rows and task inputs, named after the
//! database's columns. How they read on the wire is `http`'s business.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::normalize::{ApiKeyKind, ClientIp, CuRefNo, Email};

/// A data space: an organisation's live or sandbox data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpaceId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Sandbox,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Sandbox => "sandbox",
        }
    }

    pub fn for_kind(kind: ApiKeyKind) -> Mode {
        match kind {
            ApiKeyKind::Dev => Mode::Sandbox,
            ApiKeyKind::Prod | ApiKeyKind::Root => Mode::Live,
        }
    }
}

/// A key as the registry knows it, with the space its kind works on.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: i64,
    pub kind: ApiKeyKind,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Overrides the kind's default rate limit when set.
    pub rate_limit_per_minute: Option<i64>,
    pub organisation: String,
    pub space: SpaceId,
    pub mode: Mode,
}

/// A key to register; only its digest and first 8 characters are stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub kind: ApiKeyKind,
    pub digest: String,
    pub prefix: String,
    pub label: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Overrides the kind's default rate limit when set.
    pub rate_limit_per_minute: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Organisation {
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A key as an administrator sees it: everything but the key and its digest.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    pub id: i64,
    /// The key's first 8 characters.
    pub prefix: String,
    pub kind: ApiKeyKind,
    pub label: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub rate_limit_per_minute: Option<i64>,
}

/// What revoking a key by id came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRevocation {
    NotFound,
    /// The key belongs to another organisation than the one the caller is confined to;
    /// nothing changed.
    OutOfScope,
    /// `revoked` is false when the key had been revoked before. The digest lets the
    /// caller evict the key from its cache.
    Done {
        digest: String,
        organisation: String,
        revoked: bool,
    },
}

/// Who acted: a key (recorded by its id and first 8 characters) or the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditActor {
    Key(i64),
    Cli,
}

/// What an audit row names as acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Named(String),
    /// The row the audited write creates, by its id (a new key).
    NewRow,
}

/// One audit row to add.
#[derive(Debug, Clone)]
pub struct NewAudit {
    /// The organisation acted on (by slug), if any.
    pub organisation: Option<String>,
    pub actor: AuditActor,
    pub action: &'static str,
    pub target: AuditTarget,
    pub detail: serde_json::Value,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub organisation: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Where a newest-first page starts: strictly older than this row. Every list the
/// server pages (relations, the audit log) orders by creation time, then row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePos {
    pub created_at: DateTime<Utc>,
    pub id: i64,
}

impl PagePos {
    /// Later than any stored row: the first page.
    pub const TOP: PagePos = PagePos { created_at: END_OF_TIME, id: i64::MAX };
}

/// A page of at most `limit` of `rows` (read with `limit + 1`, one more than a page), and
/// where the next page starts when the read found more: after the page's last row.
pub fn split_page<T>(mut rows: Vec<T>, limit: i64, pos: impl Fn(&T) -> PagePos) -> (Vec<T>, Option<PagePos>) {
    if rows.len() as i64 <= limit {
        return (rows, None);
    }
    rows.truncate(limit as usize);
    let next = rows.last().map(pos);
    (rows, next)
}

/// Later than any stored time.
pub const END_OF_TIME: DateTime<Utc> = match DateTime::from_timestamp(253_402_300_799, 0) {
    Some(t) => t,
    None => panic!("9999-12-31 is representable"),
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub slug: String,
}

/// The customer who referred another; the referred customer's profile lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Referrer {
    pub cu_ref_no: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RunningSubscription {
    pub external_id: String,
    pub product_slug: String,
    pub product_code: String,
    pub order_number: String,
    pub order_hash: String,
    pub auto_renew: bool,
}

/// A customer and everything its profile shows, computed from storage.
#[derive(Debug, Clone, PartialEq)]
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
    pub meta: serde_json::Map<String, serde_json::Value>,
    pub referrer: Option<Referrer>,
    pub running_subscriptions: Vec<RunningSubscription>,
    /// What the peers' model adds (the extended profile).
    pub extension: Extension,
}

/// The parts of a profile beyond BizKitHub's documented shape: the client's own id of the
/// contact, the alternate addresses and numbers that also find it, and its addresses.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    pub partner_customer_id: Option<String>,
    pub alternate_emails: Vec<String>,
    pub alternate_phones: Vec<String>,
    pub addresses: Vec<Address>,
}

/// A postal address of a contact, as stored and shown (the peer's `BikPlatformAddress`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// This server's id of the address; set when it is first stored.
    pub address_id: Option<String>,
    /// The client's own id of the address, unique among the contact's.
    pub partner_address_id: Option<String>,
    pub address1: String,
    pub address2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub state_code: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    pub country_code: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// An IANA time zone name.
    pub timezone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone_number: Option<String>,
    pub email: Option<String>,
    pub is_default: bool,
}

/// What `create` may fill in; empty fields of an existing customer are filled, set ones kept.
#[derive(Debug, Clone)]
pub struct CreateCustomer {
    pub email: Email,
    pub company_name: Option<String>,
    pub company_registration_number: Option<String>,
    pub tax_identification_number: Option<String>,
    pub ip: ClientIp,
}

#[derive(Debug, Clone)]
pub struct Detail {
    pub logged_in: bool,
    pub profile: Profile,
}

/// How the customer side of a relation is named.
#[derive(Debug, Clone)]
pub enum MatchTarget {
    /// By cuRefNo; the optional address is kept on the relation as its contact e-mail.
    CuRefNo(CuRefNo, Option<Email>),
    /// By canonical e-mail, creating a contact if there is none.
    Email(Email),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOutcome {
    Matched,
    ManagerNotFound,
    CustomerNotFound,
    SelfMatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOutcome {
    Removed(bool),
    ManagerNotFound,
    CustomerNotFound,
}

/// One relation as listed: the other customer and the relation's own fields.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
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
    /// The other customer's row id: the tie-breaker of the page order.
    pub other_id: i64,
}

impl MatchItem {
    pub fn page_pos(&self) -> PagePos {
        PagePos { created_at: self.created_at, id: self.other_id }
    }
}

/// What the customer list is narrowed to; every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerFilter {
    /// The client's own id of the customer (`partnerCustomerId`).
    pub partner_customer_id: Option<String>,
    /// A canonical address: the customer's own or one of its alternates.
    pub email: Option<String>,
    /// A phone number in its stored form: the customer's own or one of its alternates.
    pub phone: Option<String>,
    /// A folded prefix (`normalize::search`) of the full name, last name, company or e-mail.
    pub prefix: Option<String>,
    /// A group's slug.
    pub group: Option<String>,
    pub premium: Option<bool>,
    pub ban: Option<bool>,
    /// Created at or after.
    pub created_from: Option<DateTime<Utc>>,
    /// Created before.
    pub created_to: Option<DateTime<Utc>>,
}

/// One customer as the list gives it.
#[derive(Debug, Clone)]
pub struct ListedCustomer {
    pub profile: Profile,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The row id: the tie-breaker of the page order.
    pub id: i64,
}

impl ListedCustomer {
    pub fn page_pos(&self) -> PagePos {
        PagePos { created_at: self.created_at, id: self.id }
    }
}

/// Which side of a relation a list is of, as seen from the customer asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Those who manage the customer.
    Managers,
    /// Those the customer manages.
    Customers,
}

/// What login needs to know about an address.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LoginAccount {
    pub customer_id: i64,
    pub password_hash: Option<String>,
    pub confirmed: bool,
    pub ban: bool,
}

/// A message to queue in the outbox.
#[derive(Debug, Clone)]
pub struct MailMessage {
    pub kind: &'static str,
    pub subject: String,
    pub body: String,
}

/// A registration to write; the password is already hashed.
#[derive(Clone)]
pub struct Registration {
    pub email: Email,
    pub password_hash: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    pub ip: ClientIp,
    /// None: confirmed at once (auto-confirm).
    pub confirmation: Option<Confirmation>,
}

/// The token to store (its digest) and the message that carries it.
#[derive(Clone)]
pub struct Confirmation {
    pub token_digest: String,
    pub expires_at: DateTime<Utc>,
    pub message: MailMessage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationOutcome {
    Registered {
        cu_ref_no: String,
    },
    /// A registration of the address waits for confirmation: its password stays, and
    /// the confirmation was sent again (with a token of its own).
    Resent,
    AlreadyRegistered,
    Banned,
}

/// What a throttle counts, per address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Login,
    Register,
}

impl Attempt {
    pub fn as_str(self) -> &'static str {
        match self {
            Attempt::Login => "login",
            Attempt::Register => "register",
        }
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OutboxMessage {
    pub id: i64,
    pub space_id: i64,
    pub recipient: String,
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub attempts: i64,
}
