//! Profile writes as the store takes them (create-or-update, credit) and what they come
//! to. Every refusal of a write is decided before its first statement, so a refused item
//! leaves nothing behind, even inside an import batch's transaction.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::{Address, Group, StoreResult};
use crate::normalize::{ClientIp, CuRefNo, Email, Phone};

/// A field of a write: not given (`None`, kept as stored) or given (`Some(None)` clears).
pub type Patch<T> = Option<Option<T>>;

/// One create-or-update, validated. The contact is the one named by `cu_ref_no`, else the
/// one with this `partner_customer_id`, else the one with this canonical e-mail (own,
/// then alternate), else the one with this phone (own, then alternate; only a contact
/// without e-mail when an e-mail is given).
#[derive(Debug, Clone, Default)]
pub struct ContactWrite {
    pub cu_ref_no: Option<CuRefNo>,
    /// The client's own id of the contact: finds it, and is stored on it.
    pub partner_customer_id: Patch<String>,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub first_name: Patch<String>,
    pub last_name: Patch<String>,
    pub company_name: Patch<String>,
    pub company_registration_number: Patch<String>,
    pub tax_identification_number: Patch<String>,
    pub premium: Option<bool>,
    pub ban: Option<bool>,
    /// Replaces the contact's groups; unique by slug.
    pub groups: Option<Vec<Group>>,
    /// A JSON merge patch (RFC 7396) for the stored `meta`: `null` deletes a key.
    pub meta: Option<Map<String, Value>>,
    /// Alternate addresses / numbers, added to the contact's (or replacing that kind of
    /// them, with `replace_alternates`).
    pub alternate_emails: Option<Vec<Email>>,
    pub alternate_phones: Option<Vec<Phone>>,
    pub replace_alternates: bool,
    /// Replaces the contact's addresses; one naming a stored address (by its id or the
    /// client's) updates it in place.
    pub addresses: Option<Vec<Address>>,
    pub referral: Patch<CuRefNo>,
    /// Upserted by external id; subscriptions not named are kept.
    pub subscriptions: Vec<SubscriptionWrite>,
    /// Recorded as last seen (and as the registration address of a new contact).
    pub ip: Option<ClientIp>,
    /// The cuRefNo a created contact gets instead of a fresh one: the demo seed's
    /// published numbers. Never set from client input.
    pub new_cu_ref_no: Option<CuRefNo>,
}

/// What a key of a contact names: rows are found and kept unique by these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    CuRefNo,
    /// A canonical address, own or alternate: a lookup by address finds both.
    Email,
    /// A number, own or alternate, likewise.
    Phone,
    PartnerId,
    /// A subscription's external id.
    Subscription,
    Group,
}

impl ContactWrite {
    /// Every key the write finds rows by (`lookup`: true) or writes rows under (false: its
    /// alternates, a cuRefNo it is given to create).
    pub fn keys<'a>(&'a self, mut key: impl FnMut(KeyKind, &'a str, bool)) {
        for cu in [&self.cu_ref_no, self.referral.as_ref().unwrap_or(&None)].into_iter().flatten() {
            key(KeyKind::CuRefNo, cu.as_str(), true);
        }
        if let Some(cu) = &self.new_cu_ref_no {
            key(KeyKind::CuRefNo, cu.as_str(), false);
        }
        if let Some(Some(p)) = &self.partner_customer_id {
            key(KeyKind::PartnerId, p, true);
        }
        if let Some(e) = &self.email {
            key(KeyKind::Email, e.canonical(), true);
        }
        for e in self.alternate_emails.iter().flatten() {
            key(KeyKind::Email, e.canonical(), false);
        }
        if let Some(p) = &self.phone {
            key(KeyKind::Phone, p.as_str(), true);
        }
        for p in self.alternate_phones.iter().flatten() {
            key(KeyKind::Phone, p.as_str(), false);
        }
        for s in &self.subscriptions {
            key(KeyKind::Subscription, &s.external_id, true);
        }
        for g in self.groups.iter().flatten() {
            key(KeyKind::Group, &g.slug, true);
        }
    }
}

/// A set of keys (`KeyKind`), of the items of an import batch or of the rows one holds.
/// Two batches are independent when the keys of one's items are none of the keys of the
/// other's rows: neither finds, locks or writes a row the other does, so they may be
/// written side by side and give what one after the other would.
///
/// A key is kept as its 64-bit hash: two keys sharing one only make two batches look
/// dependent, which writes them one after the other, as without the set.
#[derive(Debug, Default)]
pub struct BatchKeys(HashSet<u64>);

impl BatchKeys {
    /// The keys of `writes`' items.
    pub fn of<'a>(writes: impl IntoIterator<Item = &'a ContactWrite>) -> Self {
        let mut keys = Self::default();
        for w in writes {
            w.keys(|kind, value, _| keys.insert(kind, value));
        }
        keys
    }

    pub fn insert(&mut self, kind: KeyKind, value: &str) {
        let mut hasher = std::hash::DefaultHasher::new();
        (kind, value).hash(&mut hasher);
        self.0.insert(hasher.finish());
    }

    pub fn is_disjoint(&self, other: &BatchKeys) -> bool {
        self.0.is_disjoint(&other.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Active,
    Paused,
    Cancelled,
    Expired,
}

impl SubscriptionStatus {
    pub const ALL: [SubscriptionStatus; 4] = [Self::Active, Self::Paused, Self::Cancelled, Self::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Default)]
pub struct SubscriptionWrite {
    pub external_id: String,
    pub product_slug: Option<String>,
    pub product_code: Option<String>,
    pub order_number: Option<String>,
    pub order_hash: Option<String>,
    pub auto_renew: Option<bool>,
    pub status: Option<SubscriptionStatus>,
    /// `Some(None)`: runs with no end date.
    pub valid_until: Patch<DateTime<Utc>>,
}

/// What one customer's profile may hold, however many writes built it.
pub mod profile_limits {
    /// The merged `meta`, serialised, in bytes.
    pub const META_BYTES: usize = 16 * 1024;
    pub const RUNNING_SUBSCRIPTIONS: usize = 100;
    /// Alternate e-mail addresses and phone numbers together.
    pub const CONTACT_POINTS: usize = 20;
    pub const ADDRESSES: usize = 20;
    /// Groups a customer is a member of (a merge joins two customers' groups).
    pub const GROUPS: usize = 100;
}

/// Which of `profile_limits` a write would have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileLimit {
    Meta,
    RunningSubscriptions,
    ContactPoints,
    Addresses,
    Groups,
}

impl ProfileLimit {
    pub fn max(self) -> usize {
        match self {
            ProfileLimit::Meta => profile_limits::META_BYTES,
            ProfileLimit::RunningSubscriptions => profile_limits::RUNNING_SUBSCRIPTIONS,
            ProfileLimit::ContactPoints => profile_limits::CONTACT_POINTS,
            ProfileLimit::Addresses => profile_limits::ADDRESSES,
            ProfileLimit::Groups => profile_limits::GROUPS,
        }
    }
}

/// Why a write was refused; nothing of it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactRefusal {
    /// The profile would hold more than one of `profile_limits` allows.
    OverLimit(ProfileLimit),
    /// No live contact has the given cuRefNo.
    NotFound,
    /// The given cuRefNo was merged into the contact with this cuRefNo.
    Merged(String),
    ReferrerNotFound,
    /// The referral's cuRefNo was merged into the contact with this cuRefNo.
    ReferrerMerged(String),
    /// The e-mail is another contact's.
    EmailTaken,
    /// The phone is another phone-only contact's, and this contact has no e-mail either.
    PhoneTaken,
    /// This subscription external id belongs to another contact.
    SubscriptionTaken(String),
    /// The partnerCustomerId is another contact's.
    PartnerIdTaken,
    /// An address names an `addressId` the contact does not have.
    AddressNotFound(String),
    /// A new contact needs an e-mail or a phone.
    NoContactPoint,
}

/// Two customers of a space to merge: everything the duplicate owns moves to the primary.
#[derive(Debug, Clone)]
pub struct Merge {
    pub primary: CuRefNo,
    pub duplicate: CuRefNo,
    /// Recorded in the merge's transaction.
    pub audit: crate::store::NewAudit,
}

/// Which customer of a merge a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeSide {
    Primary,
    Duplicate,
}

/// Why a merge was refused; nothing of it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeRefusal {
    /// No live customer has this side's cuRefNo (never issued, erased, or merged into
    /// another than the primary).
    NotFound(MergeSide),
    /// Both have a storefront account with a password: the merge would have to drop one.
    BothRegistered,
    /// The merged profile would hold more than one of `profile_limits` allows.
    OverLimit(ProfileLimit),
}

/// An import batch begun by `ContactStore::start_import`. A task of its own reads,
/// decides and writes the batch in one transaction, then waits: `finish_import` commits
/// it, and dropping the ticket first rolls it back.
pub struct ImportTicket {
    pub(crate) writes: Arc<Vec<ContactWrite>>,
    pub(crate) keys: Option<oneshot::Receiver<BatchKeys>>,
    pub(crate) decided_keys: Option<BatchKeys>,
    pub(crate) commit: Option<oneshot::Sender<()>>,
    /// The results, or `None` if the ticket was dropped before the batch was written.
    pub(crate) done: oneshot::Receiver<StoreResult<Option<ImportResults>>>,
}

impl ImportTicket {
    /// The keys of every row the batch holds (`BatchKeys`), once its items are decided:
    /// a batch whose items name none of them may begin before this one is committed.
    /// `None` where the backend writes one transaction at a time, or the batch failed.
    pub async fn keys(&mut self) -> Option<&BatchKeys> {
        if let Some(rx) = self.keys.take() {
            self.decided_keys = rx.await.ok();
        }
        self.decided_keys.as_ref()
    }

    /// Lets the batch commit as soon as it is written, without waiting for
    /// `finish_import`.
    pub fn commit_when_written(&mut self) {
        if let Some(commit) = self.commit.take() {
            let _ = commit.send(());
        }
    }
}

/// An import batch's results, one per item in order.
pub type ImportResults = Vec<Result<Written, ContactRefusal>>;

/// A contact written by an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub new_account: bool,
    pub cu_ref_no: String,
}

#[derive(Debug, Clone)]
pub struct CreditAdd {
    pub cu_ref_no: CuRefNo,
    pub amount: i64,
    pub reason: String,
    pub idempotency: Option<Idempotency>,
}

/// How long an Idempotency-Key is remembered: a retry within it returns the first result;
/// after it the key is free again (as Stripe keeps them).
pub const IDEMPOTENCY_KEY_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// A client's Idempotency-Key and a digest of the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditOutcome {
    Added {
        balance: i64,
    },
    /// The same request was made before under this key; its result, unchanged.
    Replayed {
        balance: i64,
    },
    NotFound,
    /// The key was used before with a different request.
    KeyReused,
}

/// Applies a JSON merge patch (RFC 7396) to an object: `null` removes a key, objects merge
/// recursively, anything else replaces.
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let slot = target.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(existing) = slot {
                    merge_patch(existing, inner);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = obj(json!({"a": "b", "c": {"d": "e", "f": "g"}, "keep": 1}));
        merge_patch(&mut target, &obj(json!({"a": "z", "c": {"f": null, "h": [1]}, "new": true, "gone": null})));
        assert_eq!(Value::Object(target), json!({"a": "z", "c": {"d": "e", "h": [1]}, "keep": 1, "new": true}));

        let mut scalar_to_object = obj(json!({"a": 1}));
        merge_patch(&mut scalar_to_object, &obj(json!({"a": {"b": null, "c": 2}})));
        assert_eq!(Value::Object(scalar_to_object), json!({"a": {"c": 2}}));
    }

    #[test]
    fn subscription_statuses_round_trip() {
        for s in SubscriptionStatus::ALL {
            assert_eq!(SubscriptionStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(SubscriptionStatus::parse("Active"), None);
    }
}
