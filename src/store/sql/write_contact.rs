//! The statements of one create-or-update inside a caller's transaction, shared by the
//! single write and the import batches.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::types::Json;

use super::contact_lists::{over_limit, write_alternates, write_groups, write_subscriptions};
use super::{
    customer_id, dialect, lock_customer, lock_customer_id, refresh_profile_lists, NewCustomer, OnEmailTaken, SqlStore,
    Tx,
};
use crate::normalize::{CuRefNo, EMAIL_RULES_VERSION};
use crate::store::{merge_patch, now, ContactRefusal, ContactWrite, Patch, SpaceId, StoreResult, Written};

/// A contact by canonical e-mail: its own address (rank 0) before an alternate (rank 1).
const FIND_BY_EMAIL: &str = "select id, 0 as rank from customers \
     where space_id = $1 and email_canonical = $2 and erased_at is null \
     union all select p.customer_id, 1 from contact_points p join customers c on c.id = p.customer_id \
     where p.space_id = $1 and p.kind = 'email' and p.value = $2 and c.erased_at is null \
     order by 2, 1 limit 1";

/// As `FIND_BY_EMAIL`, by phone. `$3`: no e-mail was given, so any contact may be found;
/// otherwise only one without an e-mail (two people sharing a phone are never merged).
const FIND_BY_PHONE: &str = "select id, 0 as rank from customers \
     where space_id = $1 and phone = $2 and erased_at is null and ($3 or email_canonical is null) \
     union all select p.customer_id, 1 from contact_points p join customers c on c.id = p.customer_id \
     where p.space_id = $1 and p.kind = 'phone' and p.value = $2 and c.erased_at is null \
     and ($3 or c.email_canonical is null) \
     order by 2, 1 limit 1";

/// Given fields overwrite; `$n` flags tell a cleared text field from one not given.
const UPDATE_CONTACT: &str = "update customers set \
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

/// Ends every live session of a customer (`$2`) at `$3`: a ban.
const END_CUSTOMER_SESSIONS: &str =
    "update sessions set revoked_at = $3 where space_id = $1 and customer_id = $2 and revoked_at is null";

/// What the writes of one transaction share: group ids by slug, and the contacts whose
/// stored profile lists are refreshed once, before the commit.
#[derive(Default)]
pub(super) struct WriteBatch {
    group_ids: HashMap<String, i64>,
    lists_changed: Vec<i64>,
}

impl WriteBatch {
    pub(super) async fn finish(mut self, tx: &mut Tx) -> StoreResult<()> {
        self.lists_changed.sort_unstable();
        self.lists_changed.dedup();
        refresh_profile_lists(tx, &self.lists_changed).await
    }
}

/// How a contact was found: an alternate address or number finds its contact but does
/// not replace the contact's own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FoundBy {
    Own,
    AlternateEmail,
    AlternatePhone,
}

/// `(given, value)`: the pair of placeholders `UPDATE_CONTACT` takes for a text field.
fn patch(field: &Patch<String>) -> (bool, Option<&str>) {
    (field.is_some(), field.as_ref().and_then(|v| v.as_deref()))
}

impl SqlStore {
    /// One import batch in one transaction.
    pub(super) async fn import_batch(
        &self,
        space: SpaceId,
        writes: &[ContactWrite],
    ) -> StoreResult<Vec<Result<Written, ContactRefusal>>> {
        let now = now();
        let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await?;
        let mut batch = WriteBatch::default();
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            let result = self.write_contact(&mut tx, space, w, now, &mut batch).await?;
            out.push(result.map(|(new_account, _, cu_ref_no)| Written { new_account, cu_ref_no }));
        }
        batch.finish(&mut tx).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Writes one contact in `tx`: `(created, id, cuRefNo)`, or the refusal, decided
    /// before anything is written. `batch` must be finished before `tx` commits.
    pub(super) async fn write_contact(
        &self,
        tx: &mut Tx,
        space: SpaceId,
        w: &ContactWrite,
        now: DateTime<Utc>,
        batch: &mut WriteBatch,
    ) -> StoreResult<Result<(bool, i64, String), ContactRefusal>> {
        // The contact's row stays locked to the end of the transaction, so an erasure of
        // it runs wholly before this write or wholly after.
        let found = match &w.cu_ref_no {
            Some(cu) => match lock_customer(tx, space, cu.as_str()).await? {
                Some(id) => Some((id, FoundBy::Own)),
                None => return Ok(Err(ContactRefusal::NotFound)),
            },
            None => match find_contact(tx, space, w).await? {
                // Erased since it was found: a new contact is written instead.
                Some((id, by)) if lock_customer_id(tx, id).await? => Some((id, by)),
                _ => None,
            },
        };
        if let Some(refusal) = contact_refusal(tx, space, w, found.map(|f| f.0)).await? {
            return Ok(Err(refusal));
        }
        if let Some(limit) = over_limit(tx, space, w, found.map(|f| f.0), now).await? {
            return Ok(Err(ContactRefusal::OverLimit(limit)));
        }
        let referrer = match &w.referral {
            Some(Some(cu)) => match customer_id(&mut **tx, space, cu.as_str()).await? {
                Some(id) => Some(Some(id)),
                None => return Ok(Err(ContactRefusal::ReferrerNotFound)),
            },
            Some(None) => Some(None),
            None => None,
        };
        let (id, new, cu_ref_no) = match found {
            Some((id, by)) => {
                let cu = update_contact(tx, space, w, id, by, now).await?;
                (id, false, cu)
            }
            None => {
                let (id, cu) = insert_contact(tx, space, w, now).await?;
                (id, true, cu)
            }
        };
        if let Some(referrer) = referrer {
            sqlx::query("update customers set referrer_id = $2 where id = $1")
                .bind(id)
                .bind(referrer)
                .execute(&mut **tx)
                .await?;
        }
        if let Some(list) = &w.groups {
            write_groups(tx, space, id, new, list, &mut batch.group_ids).await?;
        }
        write_alternates(tx, space, id, new, w).await?;
        write_subscriptions(tx, space, id, w, now).await?;
        if w.groups.is_some() || !w.subscriptions.is_empty() {
            batch.lists_changed.push(id);
        }
        Ok(Ok((new, id, cu_ref_no)))
    }
}

/// The contact with the write's e-mail, else with its phone.
async fn find_contact(tx: &mut Tx, space: SpaceId, w: &ContactWrite) -> StoreResult<Option<(i64, FoundBy)>> {
    if let Some(email) = &w.email {
        let found: Option<(i64, i32)> =
            sqlx::query_as(FIND_BY_EMAIL).bind(space.0).bind(email.canonical()).fetch_optional(&mut **tx).await?;
        if let Some((id, rank)) = found {
            return Ok(Some((id, if rank == 1 { FoundBy::AlternateEmail } else { FoundBy::Own })));
        }
    }
    if let Some(phone) = &w.phone {
        let found: Option<(i64, i32)> = sqlx::query_as(FIND_BY_PHONE)
            .bind(space.0)
            .bind(phone.as_str())
            .bind(w.email.is_none())
            .fetch_optional(&mut **tx)
            .await?;
        if let Some((id, rank)) = found {
            return Ok(Some((id, if rank == 1 { FoundBy::AlternatePhone } else { FoundBy::Own })));
        }
    }
    Ok(None)
}

/// The refusals that need the database: an e-mail or a phone-only number that is
/// another contact's, a subscription that is another contact's.
async fn contact_refusal(
    tx: &mut Tx,
    space: SpaceId,
    w: &ContactWrite,
    found: Option<i64>,
) -> StoreResult<Option<ContactRefusal>> {
    let me = found.unwrap_or(0);
    if found.is_none() && w.email.is_none() && w.phone.is_none() {
        return Ok(Some(ContactRefusal::NoContactPoint));
    }
    if let (Some(email), Some(_)) = (&w.email, found) {
        let owner: Option<i64> = sqlx::query_scalar(
            "select id from customers where space_id = $1 and email_canonical = $2 and id <> $3 and erased_at is null",
        )
        .bind(space.0)
        .bind(email.canonical())
        .bind(me)
        .fetch_optional(&mut **tx)
        .await?;
        if owner.is_some() {
            return Ok(Some(ContactRefusal::EmailTaken));
        }
    }
    if let (Some(phone), Some(_), None) = (&w.phone, found, &w.email) {
        let clash: Option<i64> = sqlx::query_scalar(
            "select o.id from customers o join customers me on me.id = $3 and me.email_canonical is null \
             where o.space_id = $1 and o.phone = $2 and o.email_canonical is null and o.id <> $3 \
             and o.erased_at is null",
        )
        .bind(space.0)
        .bind(phone.as_str())
        .bind(me)
        .fetch_optional(&mut **tx)
        .await?;
        if clash.is_some() {
            return Ok(Some(ContactRefusal::PhoneTaken));
        }
    }
    for s in &w.subscriptions {
        let owner: Option<i64> =
            sqlx::query_scalar("select customer_id from subscriptions where space_id = $1 and external_id = $2")
                .bind(space.0)
                .bind(&s.external_id)
                .fetch_optional(&mut **tx)
                .await?;
        if owner.is_some_and(|owner| Some(owner) != found) {
            return Ok(Some(ContactRefusal::SubscriptionTaken(s.external_id.clone())));
        }
    }
    Ok(None)
}

/// Overwrites the given fields of contact `id`, merges its meta, and ends its sessions
/// when it is banned; returns its cuRefNo.
async fn update_contact(
    tx: &mut Tx,
    space: SpaceId,
    w: &ContactWrite,
    id: i64,
    by: FoundBy,
    now: DateTime<Utc>,
) -> StoreResult<String> {
    let own_email = w.email.as_ref().filter(|_| by != FoundBy::AlternateEmail);
    let own_phone = w.phone.as_ref().filter(|_| by != FoundBy::AlternatePhone);
    let (first, last, company) = (patch(&w.first_name), patch(&w.last_name), patch(&w.company_name));
    let (reg, tax) = (patch(&w.company_registration_number), patch(&w.tax_identification_number));
    let (cu, meta): (String, Json<Map<String, Value>>) = sqlx::query_as(UPDATE_CONTACT)
        .bind(id)
        .bind(own_email.map(|e| e.normalized()))
        .bind(own_email.map(|e| e.canonical()))
        .bind(EMAIL_RULES_VERSION as i64)
        .bind(own_phone.map(|p| p.as_str()))
        .bind(first.0)
        .bind(first.1)
        .bind(last.0)
        .bind(last.1)
        .bind(company.0)
        .bind(company.1)
        .bind(reg.0)
        .bind(reg.1)
        .bind(tax.0)
        .bind(tax.1)
        .bind(w.premium)
        .bind(w.ban)
        .bind(w.ip.as_ref().map(|ip| ip.as_str()))
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
    if let Some(meta_patch) = &w.meta {
        let mut merged = meta.0.clone();
        merge_patch(&mut merged, meta_patch);
        if merged != meta.0 {
            sqlx::query("update customers set meta = $2 where id = $1")
                .bind(id)
                .bind(Json(&merged))
                .execute(&mut **tx)
                .await?;
        }
    }
    if w.ban == Some(true) {
        sqlx::query(END_CUSTOMER_SESSIONS).bind(space.0).bind(id).bind(now).execute(&mut **tx).await?;
    }
    Ok(cu)
}

/// A text field's value, where a write gives one.
fn given(field: &Patch<String>) -> Option<&str> {
    field.as_ref().and_then(|v| v.as_deref())
}

/// Inserts a new contact; returns its id and cuRefNo. A taken cuRefNo or address is a
/// `Conflict`, which the caller retries.
async fn insert_contact(
    tx: &mut Tx,
    space: SpaceId,
    w: &ContactWrite,
    now: DateTime<Utc>,
) -> StoreResult<(i64, String)> {
    let cu = w.new_cu_ref_no.clone().unwrap_or_else(CuRefNo::generate);
    let mut meta = Map::new();
    if let Some(meta_patch) = &w.meta {
        merge_patch(&mut meta, meta_patch);
    }
    let row = NewCustomer {
        space: space.0,
        cu_ref_no: cu.as_str(),
        email: w.email.as_ref(),
        phone: w.phone.as_ref().map(|p| p.as_str()),
        first_name: given(&w.first_name),
        last_name: given(&w.last_name),
        company_name: given(&w.company_name),
        company_registration_number: given(&w.company_registration_number),
        tax_identification_number: given(&w.tax_identification_number),
        premium: w.premium.unwrap_or(false),
        ban: w.ban.unwrap_or(false),
        meta: Some(&meta),
        ip: w.ip.as_ref(),
        ..Default::default()
    };
    Ok(row.bind(sqlx::query_as(OnEmailTaken::Fail.insert()), now).fetch_one(&mut **tx).await?)
}
