//! Profiles written: create-or-update one contact or an import batch, the credit ledger
//! with idempotent additions, and erasure.

use async_trait::async_trait;

use std::sync::atomic::Ordering;

use std::sync::Arc;

use tokio::sync::oneshot;

use super::batch::{decide_batch, write_batch, write_decided};
use super::{dialect, lock_customer, profile_by_id, retrying, SqlStore, CU_REF_NO_ATTEMPTS};
use crate::normalize::CuRefNo;
use crate::store::{
    now, BatchKeys, ContactRefusal, ContactStore, ContactWrite, CreditAdd, CreditOutcome, ImportResults, ImportTicket,
    Merge, MergeRefusal, Profile, SpaceId, StoreError, StoreResult, Written, IDEMPOTENCY_KEY_LIFETIME,
};

/// Every row holding the erased customer's personal data, by customer id (`$2`), removed
/// after the customer row itself is erased (so the events of the relations it removes
/// know that one side is gone).
const ERASE_ROWS: [&str; 7] = [
    "delete from sessions where space_id = $1 and customer_id = $2",
    "delete from account_tokens where space_id = $1 and customer_id = $2",
    "delete from customer_matches where space_id = $1 and (manager_id = $2 or customer_id = $2)",
    "delete from contact_points where space_id = $1 and customer_id = $2",
    "delete from customer_group_members where space_id = $1 and customer_id = $2",
    "delete from subscriptions where space_id = $1 and customer_id = $2",
    "delete from credit_ledger where space_id = $1 and customer_id = $2",
];

/// Customers the erased one referred lose their referrer: a change of their profiles.
const ERASE_REFERRALS: &str =
    "update customers set referrer_id = null, updated_at = $3 where space_id = $1 and referrer_id = $2";

/// The customer `$2` erased at `$3`: merged into `$4`, or erased outright (null). Merge
/// leaves the same tombstone.
pub(super) const ERASE_CUSTOMER: &str = "update customers set email = null, email_canonical = null, phone = null, \
     first_name = null, last_name = null, company_name = null, company_registration_number = null, \
     tax_identification_number = null, premium = false, ban = false, meta = '{}', referrer_id = null, \
     credit_balance = 0, profile_groups = '[]', profile_subscriptions = '[]', partner_customer_id = null, \
     addresses = '[]', profile_alternates = '{\"emails\":[],\"phones\":[]}', \
     registration_ip = null, last_ip = null, last_seen_at = null, password_hash = null, \
     account_confirmed_at = null, search_name = null, search_last_name = null, search_company_name = null, \
     search_email = null, erased_at = $3, updated_at = $3, merged_into = $4 where space_id = $1 and id = $2";

#[async_trait]
impl ContactStore for SqlStore {
    async fn upsert_contact(
        &self,
        space: SpaceId,
        write: &ContactWrite,
    ) -> StoreResult<Result<(bool, Profile), ContactRefusal>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = now();
            let mut tx = self.begin_with(dialect::BEGIN_WRITE).await?;
            // A batch of one: the rules of a write live once, in `batch`.
            let written = match write_batch(&mut tx, space, std::slice::from_ref(write), now).await {
                Err(StoreError::Conflict(_) | StoreError::Aborted(_)) if attempt < CU_REF_NO_ATTEMPTS => continue,
                other => other?,
            };
            let (new_account, id) = match written.into_iter().next() {
                Some(Ok((new_account, id, _))) => (new_account, id),
                Some(Err(refusal)) => {
                    drop(tx);
                    let mut refused = [Err(refusal)];
                    self.name_merged(space, std::slice::from_ref(write), &mut refused).await?;
                    let [refused] = refused;
                    return Ok(refused);
                }
                None => return Err(StoreError::Other("a batch of one wrote nothing".into())),
            };
            let profile = profile_by_id(&mut *tx, space, id, now).await?;
            match tx.commit().await.map_err(StoreError::from) {
                Err(StoreError::Conflict(_) | StoreError::Aborted(_)) if attempt < CU_REF_NO_ATTEMPTS => continue,
                Err(e) => return Err(e),
                Ok(()) => return Ok(Ok((new_account, profile))),
            }
        }
    }

    async fn import_contacts(&self, space: SpaceId, writes: &[ContactWrite]) -> StoreResult<ImportResults> {
        let ticket = self.start_import(space, writes.to_vec());
        self.finish_import(space, ticket).await
    }

    fn start_import(&self, space: SpaceId, writes: Vec<ContactWrite>) -> ImportTicket {
        let writes = Arc::new(writes);
        let (keys_tx, keys) = oneshot::channel();
        let (commit, commit_rx) = oneshot::channel::<()>();
        let (done_tx, done) = oneshot::channel();
        let (connections, batch) = (self.connections.clone(), writes.clone());
        tokio::spawn(async move {
            let outcome = async {
                let now = now();
                let mut tx = connections.begin_with(dialect::BEGIN_WRITE).await?;
                let mut keys = dialect::CONCURRENT_IMPORTS.then(BatchKeys::default);
                let decided = decide_batch(&mut tx, space, &batch, now, keys.as_mut()).await?;
                // Told now, so the next batch may begin while this one writes; or never.
                match keys {
                    Some(keys) => drop(keys_tx.send(keys)),
                    None => drop(keys_tx),
                }
                let written = write_decided(&mut tx, space, decided, now).await?;
                if commit_rx.await.is_err() {
                    // The ticket was dropped: the transaction rolls back with `tx`.
                    return Ok(None);
                }
                tx.commit().await?;
                Ok(Some(written.into_iter().map(|r| r.map(written_of)).collect()))
            };
            drop(done_tx.send(outcome.await));
        });
        ImportTicket { writes, keys: Some(keys), decided_keys: None, commit: Some(commit), done }
    }

    async fn finish_import(&self, space: SpaceId, mut ticket: ImportTicket) -> StoreResult<ImportResults> {
        ticket.commit_when_written();
        let ImportTicket { writes, done, .. } = ticket;
        let written = match done.await {
            Ok(Ok(Some(written))) => Some(written),
            Ok(Err(StoreError::Conflict(_) | StoreError::Aborted(_))) => None,
            Ok(Err(e)) => return Err(e),
            Ok(Ok(None)) | Err(_) => return Err(StoreError::Other("an import batch ended uncommitted".into())),
        };
        self.settle_import(space, &writes, written).await
    }

    async fn add_credit(&self, space: SpaceId, credit: &CreditAdd) -> StoreResult<CreditOutcome> {
        retrying(|| self.add_credit_once(space, credit)).await
    }

    async fn erase_customer(&self, space: SpaceId, cu_ref_no: &CuRefNo) -> StoreResult<bool> {
        retrying(|| self.erase_once(space, cu_ref_no)).await
    }

    async fn merge_customers(&self, space: SpaceId, merge: &Merge) -> StoreResult<Result<Profile, MergeRefusal>> {
        retrying(|| self.merge_once(space, merge)).await
    }
}

impl SqlStore {
    /// Turns the refusals of items whose cuRefNo or referral was merged into another
    /// customer into refusals naming that customer: one lookup for the whole batch, made
    /// only when an item was refused as not found.
    async fn name_merged<T>(
        &self,
        space: SpaceId,
        writes: &[ContactWrite],
        results: &mut [Result<T, ContactRefusal>],
    ) -> StoreResult<()> {
        let asked = |w: &'_ ContactWrite, r: &Result<T, ContactRefusal>| -> Option<String> {
            match r {
                Err(ContactRefusal::NotFound) => w.cu_ref_no.as_ref().map(|c| c.as_str().to_owned()),
                Err(ContactRefusal::ReferrerNotFound) => {
                    w.referral.as_ref().and_then(Option::as_ref).map(|c| c.as_str().to_owned())
                }
                _ => None,
            }
        };
        let cu_ref_nos: Vec<String> = writes.iter().zip(results.iter()).filter_map(|(w, r)| asked(w, r)).collect();
        if cu_ref_nos.is_empty() {
            return Ok(());
        }
        let merged = self.merged_into_any(space, &cu_ref_nos).await?;
        for (w, r) in writes.iter().zip(results.iter_mut()) {
            let Some(into) = asked(w, r).and_then(|cu| merged.get(&cu)) else { continue };
            *r = match r {
                Err(ContactRefusal::ReferrerNotFound) => Err(ContactRefusal::ReferrerMerged(into.clone())),
                _ => Err(ContactRefusal::Merged(into.clone())),
            };
        }
        Ok(())
    }

    /// The results of an import batch: as `written`, or, where it met a conflicting
    /// concurrent write (`None`: an address, number or subscription taken meanwhile, or
    /// the database aborted it), its items redone one by one, each a batch of one
    /// retrying on its own.
    async fn settle_import(
        &self,
        space: SpaceId,
        writes: &[ContactWrite],
        written: Option<ImportResults>,
    ) -> StoreResult<ImportResults> {
        let mut out = match written {
            Some(written) => written,
            None => {
                let mut out = Vec::with_capacity(writes.len());
                for write in writes {
                    let written = self.upsert_contact(space, write).await?;
                    out.push(
                        written.map(|(new_account, profile)| Written { new_account, cu_ref_no: profile.cu_ref_no }),
                    );
                }
                out
            }
        };
        self.name_merged(space, writes, &mut out).await?;
        let created = out.iter().filter(|r| r.as_ref().is_ok_and(|w| w.new_account)).count() as u64;
        self.imported_grew(created);
        Ok(out)
    }

    /// Counts `created` customers more as imported, and refreshes the statistics of the
    /// tables an import grows each time the count passes a doubling: plans made for a new
    /// space's empty tables would otherwise scan them as they grow.
    ///
    /// The refresh runs beside the import, on a connection of its own: `ANALYZE` of the
    /// grown tables takes as long as a dozen batches, and the batches written meanwhile
    /// are planned with the statistics of half as many rows, which choose the same plans.
    /// The batch is committed by then: a failed refresh is logged, not the batch's error.
    fn imported_grew(&self, created: u64) {
        let Some(analyze) = dialect::ANALYZE_IMPORTED else { return };
        let total = self.imported.fetch_add(created, Ordering::Relaxed) + created;
        let next = self.next_analyze.load(Ordering::Relaxed);
        if total < next
            || self
                .next_analyze
                .compare_exchange(next, total.max(next) * 2, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let connections = self.connections.clone();
        tokio::spawn(async move {
            let analyzed = match connections.conn().await {
                Ok(mut conn) => sqlx::query(analyze).execute(&mut *conn).await.map(drop),
                Err(e) => Err(e),
            };
            if let Err(e) = analyzed {
                tracing::warn!(error = %e, "refreshing the statistics of imported tables failed");
            }
        });
    }

    async fn add_credit_once(&self, space: SpaceId, credit: &CreditAdd) -> StoreResult<CreditOutcome> {
        let now = now();
        let mut tx = self.begin_with(dialect::BEGIN_WRITE).await?;
        if let Some(idem) = &credit.idempotency {
            // A key past its lifetime is claimed afresh, as if never used.
            let claimed = sqlx::query(
                "insert into idempotency_keys (space_id, idempotency_key, fingerprint, response, created_at) \
                 values ($1, $2, $3, '', $4) on conflict (space_id, idempotency_key) do update set \
                 fingerprint = excluded.fingerprint, response = '', created_at = excluded.created_at \
                 where idempotency_keys.created_at <= $5",
            )
            .bind(space.0)
            .bind(&idem.key)
            .bind(&idem.fingerprint)
            .bind(now)
            .bind(now - IDEMPOTENCY_KEY_LIFETIME)
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
                    .map_err(|_| StoreError::Other(format!("stored idempotent response {response:?}")))?;
                return Ok(CreditOutcome::Replayed { balance });
            }
        }
        let Some(id) = lock_customer(&mut tx, space, credit.cu_ref_no.as_str()).await? else {
            return Ok(CreditOutcome::NotFound);
        };
        sqlx::query(
            "insert into credit_ledger (space_id, customer_id, amount, reason, created_at) values ($1, $2, $3, $4, $5)",
        )
        .bind(space.0)
        .bind(id)
        .bind(credit.amount)
        .bind(&credit.reason)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // The balance kept on the row moves with the ledger, in the same transaction.
        let balance: i64 = sqlx::query_scalar(
            "update customers set credit_balance = credit_balance + $3 where space_id = $1 and id = $2 \
             returning credit_balance",
        )
        .bind(space.0)
        .bind(id)
        .bind(credit.amount)
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

    async fn erase_once(&self, space: SpaceId, cu_ref_no: &CuRefNo) -> StoreResult<bool> {
        let now = now();
        let mut tx = self.begin_with(dialect::BEGIN_WRITE).await?;
        // Locked: a write of this customer in flight finishes first, and the erasure then
        // removes what it wrote.
        let sql = format!(
            "select id, email, email_canonical from customers \
             where space_id = $1 and cu_ref_no = $2 and erased_at is null{}",
            dialect::LOCK_ROW
        );
        let found: Option<(i64, Option<String>, Option<String>)> =
            sqlx::query_as(&sql).bind(space.0).bind(cu_ref_no.as_str()).fetch_optional(&mut *tx).await?;
        let Some((id, email, canonical)) = found else { return Ok(false) };
        sqlx::query(ERASE_CUSTOMER).bind(space.0).bind(id).bind(now).bind(None::<i64>).execute(&mut *tx).await?;
        for sql in ERASE_ROWS {
            sqlx::query(sql).bind(space.0).bind(id).execute(&mut *tx).await?;
        }
        sqlx::query(ERASE_REFERRALS).bind(space.0).bind(id).bind(now).execute(&mut *tx).await?;
        sqlx::query("delete from mail_outbox where space_id = $1 and (customer_id = $2 or recipient = $3)")
            .bind(space.0)
            .bind(id)
            .bind(email.as_deref())
            .execute(&mut *tx)
            .await?;
        // Counters name the address alone, or the address and a client after a space.
        sqlx::query(
            "delete from account_throttle where space_id = $1 \
             and (email_canonical = $2 or substr(email_canonical, 1, length($2) + 1) = $2 || ' ')",
        )
        .bind(space.0)
        .bind(canonical.as_deref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// An import's written contact: whether it was created, and its cuRefNo.
fn written_of((new_account, _, cu_ref_no): (bool, i64, String)) -> Written {
    Written { new_account, cu_ref_no }
}
