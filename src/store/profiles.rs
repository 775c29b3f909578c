//! Profiles written: create-or-update (one at a time, or in batches for imports), the
//! credit ledger with idempotent additions, and erasure. Written once for both backends
//! (`impl_profiles!`, called by `impl_store!`).
//!
//! Every refusal of a write is decided before its first statement, so a refused item
//! leaves nothing behind, even inside an import batch's transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Group, Profile, SpaceId, StoreResult};
use crate::normalize::{ClientIp, CuRefNo, Email, Phone};

/// A field of a write: not given (`None`, kept as stored) or given (`Some(None)` clears).
pub type Patch<T> = Option<Option<T>>;

/// One create-or-update, validated. The contact is the one named by `cu_ref_no`, else the
/// one with this canonical e-mail (own, then alternate), else the one with this phone
/// (own, then alternate; only a contact without e-mail when an e-mail is given).
#[derive(Debug, Clone, Default)]
pub struct ContactWrite {
    pub cu_ref_no: Option<CuRefNo>,
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
    /// Replace the contact's alternate addresses / numbers.
    pub alternate_emails: Option<Vec<Email>>,
    pub alternate_phones: Option<Vec<Phone>>,
    pub referral: Patch<CuRefNo>,
    /// Upserted by external id; subscriptions not named are kept.
    pub subscriptions: Vec<SubscriptionWrite>,
    /// Recorded as last seen (and as the registration address of a new contact).
    pub ip: Option<ClientIp>,
    /// The cuRefNo a created contact gets instead of a fresh one: the demo seed's
    /// published numbers. Never set from client input.
    pub new_cu_ref_no: Option<CuRefNo>,
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

/// Why a write was refused; nothing of it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactRefusal {
    /// No live contact has the given cuRefNo.
    NotFound,
    ReferrerNotFound,
    /// The e-mail is another contact's.
    EmailTaken,
    /// The phone is another phone-only contact's, and this contact has no e-mail either.
    PhoneTaken,
    /// This subscription external id belongs to another contact.
    SubscriptionTaken(String),
    /// A new contact needs an e-mail or a phone.
    NoContactPoint,
}

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

/// A client's Idempotency-Key and a digest of the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditOutcome {
    Added { balance: i64 },
    /// The same request was made before under this key; its result, unchanged.
    Replayed { balance: i64 },
    NotFound,
    /// The key was used before with a different request.
    KeyReused,
}

#[async_trait]
pub trait ProfileStore: Send + Sync {
    /// Writes one contact and returns whether it was created, and its profile.
    async fn upsert_contact(&self, space: SpaceId, write: &ContactWrite)
        -> StoreResult<Result<(bool, Profile), ContactRefusal>>;
    /// Writes many contacts in one transaction, one result per item in order. If the
    /// batch hits a conflicting concurrent write, it is redone one item per transaction.
    async fn import_contacts(&self, space: SpaceId, writes: &[ContactWrite])
        -> StoreResult<Vec<Result<Written, ContactRefusal>>>;
    /// Appends to the customer's credit ledger and returns the new balance.
    async fn add_credit(&self, space: SpaceId, credit: &CreditAdd) -> StoreResult<CreditOutcome>;
    /// Erases the customer's personal data everywhere and ends its sessions; the cuRefNo
    /// stays reserved. False if there is no such live customer.
    async fn erase_customer(&self, space: SpaceId, cu_ref_no: &CuRefNo) -> StoreResult<bool>;
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

pub(crate) const FIND_BY_EMAIL: &str = "select id, 0 as rank from customers \
     where space_id = $1 and email_canonical = $2 and erased_at is null \
     union all select p.customer_id, 1 from contact_points p join customers c on c.id = p.customer_id \
     where p.space_id = $1 and p.kind = 'email' and p.value = $2 and c.erased_at is null \
     order by 2, 1 limit 1";

/// `$3`: no e-mail was given, so any contact may be found by phone; otherwise only one
/// without an e-mail (two people sharing a phone are never merged by it).
pub(crate) const FIND_BY_PHONE: &str = "select id, 0 as rank from customers \
     where space_id = $1 and phone = $2 and erased_at is null and ($3 or email_canonical is null) \
     union all select p.customer_id, 1 from contact_points p join customers c on c.id = p.customer_id \
     where p.space_id = $1 and p.kind = 'phone' and p.value = $2 and c.erased_at is null \
     and ($3 or c.email_canonical is null) \
     order by 2, 1 limit 1";

pub(crate) const INSERT_CONTACT: &str = "insert into customers (space_id, cu_ref_no, email, email_canonical, \
     email_rules_version, phone, first_name, last_name, company_name, company_registration_number, \
     tax_identification_number, premium, ban, meta, registration_ip, last_ip, created_at, updated_at) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16, $16) returning id";

/// Given fields overwrite; `$n` flags tell a cleared text field from one not given.
pub(crate) const UPDATE_CONTACT: &str = "update customers set \
     email = coalesce($2, email), email_canonical = coalesce($3, email_canonical), \
     email_rules_version = case when $3 is null then email_rules_version else $4 end, \
     phone = coalesce($5, phone), \
     first_name = case when $6 then $7 else first_name end, \
     last_name = case when $8 then $9 else last_name end, \
     company_name = case when $10 then $11 else company_name end, \
     company_registration_number = case when $12 then $13 else company_registration_number end, \
     tax_identification_number = case when $14 then $15 else tax_identification_number end, \
     premium = coalesce($16, premium), ban = coalesce($17, ban), \
     last_ip = coalesce($18, last_ip), updated_at = $19 \
     where id = $1 returning cu_ref_no, meta";

pub(crate) const UPSERT_SUBSCRIPTION: &str = "insert into subscriptions (space_id, customer_id, external_id, \
     product_slug, product_code, order_number, order_hash, auto_renew, status, valid_until, created_at, updated_at) \
     values ($1, $2, $3, coalesce($4, ''), coalesce($5, ''), coalesce($6, ''), coalesce($7, ''), \
     coalesce($8, false), coalesce($9, 'active'), $10, $12, $12) \
     on conflict (space_id, external_id) do update set \
     product_slug = coalesce($4, subscriptions.product_slug), product_code = coalesce($5, subscriptions.product_code), \
     order_number = coalesce($6, subscriptions.order_number), order_hash = coalesce($7, subscriptions.order_hash), \
     auto_renew = coalesce($8, subscriptions.auto_renew), status = coalesce($9, subscriptions.status), \
     valid_until = case when $11 then $10 else subscriptions.valid_until end, updated_at = $12 \
     where subscriptions.customer_id = $2";

/// Every row holding the erased customer's personal data, by customer id (`$2`).
pub(crate) const ERASE_ROWS: [&str; 8] = [
    "delete from sessions where space_id = $1 and customer_id = $2",
    "delete from account_tokens where space_id = $1 and customer_id = $2",
    "delete from customer_matches where space_id = $1 and (manager_id = $2 or customer_id = $2)",
    "delete from contact_points where space_id = $1 and customer_id = $2",
    "delete from customer_group_members where space_id = $1 and customer_id = $2",
    "delete from subscriptions where space_id = $1 and customer_id = $2",
    "delete from credit_ledger where space_id = $1 and customer_id = $2",
    "update customers set referrer_id = null where space_id = $1 and referrer_id = $2",
];

pub(crate) const ERASE_CUSTOMER: &str = "update customers set email = null, email_canonical = null, phone = null, \
     first_name = null, last_name = null, company_name = null, company_registration_number = null, \
     tax_identification_number = null, premium = false, ban = false, meta = '{}', referrer_id = null, \
     registration_ip = null, last_ip = null, last_seen_at = null, password_hash = null, \
     account_confirmed_at = null, erased_at = $2, updated_at = $2 where id = $1";

/// Implements `ProfileStore` for a store type; `$db` is its sqlx database.
macro_rules! impl_profiles {
    ($store:ident, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::profiles::ProfileStore for $store {
            async fn upsert_contact(
                &self,
                space: $crate::store::SpaceId,
                write: &$crate::store::profiles::ContactWrite,
            ) -> $crate::store::StoreResult<Result<(bool, $crate::store::Profile), $crate::store::profiles::ContactRefusal>> {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let now = $crate::store::now();
                    let mut tx = self.pool.begin_with(self.q.begin_write).await?;
                    let written = match self.write_contact(&mut tx, space, write, now, &mut Default::default()).await {
                        Err($crate::store::StoreError::Conflict(_)) if attempt < $crate::store::sql::CU_REF_NO_ATTEMPTS => continue,
                        other => other?,
                    };
                    let (new_account, id) = match written {
                        Ok((new_account, id, _)) => (new_account, id),
                        Err(refusal) => return Ok(Err(refusal)),
                    };
                    let profile = sqlx::query_as::<_, $crate::store::sql::ProfileRow>(&self.q.profile_by_id)
                        .bind(id)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                    match tx.commit().await {
                        Err(e) => match $crate::store::StoreError::from(e) {
                            $crate::store::StoreError::Conflict(_) if attempt < $crate::store::sql::CU_REF_NO_ATTEMPTS => continue,
                            e => return Err(e),
                        },
                        Ok(()) => return Ok(Ok((new_account, profile.into()))),
                    }
                }
            }

            async fn import_contacts(
                &self,
                space: $crate::store::SpaceId,
                writes: &[$crate::store::profiles::ContactWrite],
            ) -> $crate::store::StoreResult<Vec<Result<$crate::store::profiles::Written, $crate::store::profiles::ContactRefusal>>> {
                match self.import_batch(space, writes).await {
                    Err($crate::store::StoreError::Conflict(_)) => {}
                    other => return other,
                }
                // A concurrent writer took an address or number the batch was creating:
                // redo the items one by one, each retrying on its own.
                let mut out = Vec::with_capacity(writes.len());
                for write in writes {
                    out.push(self.upsert_contact(space, write).await?.map(|(new_account, profile)| {
                        $crate::store::profiles::Written { new_account, cu_ref_no: profile.cu_ref_no }
                    }));
                }
                Ok(out)
            }

            async fn add_credit(
                &self,
                space: $crate::store::SpaceId,
                credit: &$crate::store::profiles::CreditAdd,
            ) -> $crate::store::StoreResult<$crate::store::profiles::CreditOutcome> {
                use $crate::store::profiles::CreditOutcome;
                let now = $crate::store::now();
                let mut tx = self.pool.begin_with(self.q.begin_write).await?;
                if let Some(idem) = &credit.idempotency {
                    let claimed = sqlx::query(
                        "insert into idempotency_keys (space_id, idempotency_key, fingerprint, response, created_at) \
                         values ($1, $2, $3, '', $4) on conflict (space_id, idempotency_key) do nothing",
                    )
                    .bind(space.0)
                    .bind(&idem.key)
                    .bind(&idem.fingerprint)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if claimed.rows_affected() == 0 {
                        let (fingerprint, response): (String, String) = sqlx::query_as(
                            "select fingerprint, response from idempotency_keys where space_id = $1 and idempotency_key = $2",
                        )
                        .bind(space.0)
                        .bind(&idem.key)
                        .fetch_one(&mut *tx)
                        .await?;
                        if fingerprint != idem.fingerprint {
                            return Ok(CreditOutcome::KeyReused);
                        }
                        let balance = response
                            .parse()
                            .map_err(|_| $crate::store::StoreError::Other(format!("stored idempotent response {response:?}")))?;
                        return Ok(CreditOutcome::Replayed { balance });
                    }
                }
                let Some(id) = self.customer_id_with(&mut *tx, space, credit.cu_ref_no.as_str()).await? else {
                    return Ok(CreditOutcome::NotFound);
                };
                sqlx::query("insert into credit_ledger (space_id, customer_id, amount, reason, created_at) values ($1, $2, $3, $4, $5)")
                    .bind(space.0)
                    .bind(id)
                    .bind(credit.amount)
                    .bind(&credit.reason)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let balance: i64 = sqlx::query_scalar(
                    "select cast(coalesce(sum(amount), 0) as bigint) from credit_ledger where space_id = $1 and customer_id = $2",
                )
                .bind(space.0)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                if let Some(idem) = &credit.idempotency {
                    sqlx::query("update idempotency_keys set response = $3 where space_id = $1 and idempotency_key = $2")
                        .bind(space.0)
                        .bind(&idem.key)
                        .bind(balance.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(CreditOutcome::Added { balance })
            }

            async fn erase_customer(&self, space: $crate::store::SpaceId, cu_ref_no: &$crate::normalize::CuRefNo) -> $crate::store::StoreResult<bool> {
                let now = $crate::store::now();
                let mut tx = self.pool.begin_with(self.q.begin_write).await?;
                let Some((id, email, canonical)) = sqlx::query_as::<_, (i64, Option<String>, Option<String>)>(
                    "select id, email, email_canonical from customers where space_id = $1 and cu_ref_no = $2 and erased_at is null",
                )
                .bind(space.0)
                .bind(cu_ref_no.as_str())
                .fetch_optional(&mut *tx)
                .await?
                else {
                    return Ok(false);
                };
                for sql in $crate::store::profiles::ERASE_ROWS {
                    sqlx::query(sql).bind(space.0).bind(id).execute(&mut *tx).await?;
                }
                sqlx::query("delete from mail_outbox where space_id = $1 and (customer_id = $2 or recipient = $3)")
                    .bind(space.0)
                    .bind(id)
                    .bind(email.as_deref())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("delete from account_throttle where space_id = $1 and email_canonical = $2")
                    .bind(space.0)
                    .bind(canonical.as_deref())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query($crate::store::profiles::ERASE_CUSTOMER).bind(id).bind(now).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(true)
            }
        }

        $crate::store::contact::impl_contact_writes!($store, $db);
    };
}

pub(crate) use impl_profiles;

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
