//! Organisations, their spaces, API keys and the audit log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::admin_rows::{kind, scopes, AuditRow, KeyInfoRow, KeyRow};
use super::SqlStore;
use crate::store::{
    now, AdminStore, AuditActor, AuditEntry, AuditTarget, KeyChanges, KeyInfo, KeyRecord, KeyRevocation, Mode,
    NewAudit, NewKey, Organisation, PagePos, PoolStats, SpaceId, StoreError, StoreResult,
};

/// A key of organisation `$1`; what happens to a digest registered before is the suffix's.
const INSERT_KEY: &str = "insert into api_keys (organisation_id, kind, digest, prefix, label, scopes, \
     rate_limit_per_minute, created_at, expires_at) \
     select id, $2, $3, $4, $5, $6, $7, $8, $9 from organisations where slug = $1 ";

/// Leaves a digest registered before as it is.
const KEEP_EXISTING: &str = "on conflict (digest) do nothing returning id";

/// Takes over a digest registered before: into this organisation, with these scopes, and
/// no longer revoked.
const TAKE_OVER: &str = "on conflict (digest) do update set organisation_id = excluded.organisation_id, \
     scopes = excluded.scopes, revoked_at = null returning id";

const RESOLVE_KEY: &str = "select k.id, k.kind, k.scopes, k.expires_at, k.revoked_at, k.last_used_at, \
     k.rate_limit_per_minute, o.slug as organisation, s.id as space_id \
     from api_keys k join organisations o on o.id = k.organisation_id \
     join spaces s on s.organisation_id = o.id and s.mode = (case when k.kind = 'DEV' then 'sandbox' else 'live' end) \
     where k.digest = $1";

const LIST_KEYS: &str = "select k.id, k.prefix, k.kind, k.label, k.scopes, k.created_at, k.last_used_at, \
     k.expires_at, k.revoked_at, k.rate_limit_per_minute \
     from api_keys k join organisations o on o.id = k.organisation_id where o.slug = $1 order by k.id";

/// The actor's name is taken from the key row, so a caller can never record a whole key.
const RECORD_AUDIT: &str = "insert into audit_log \
     (organisation_id, actor_key_id, actor, action, target, detail, request_id, created_at) \
     values ((select id from organisations where slug = $1), $2, \
     case when $2 is null then 'cli' else (select prefix from api_keys where id = $2) end, $3, $4, $5, $6, $7)";

/// Newest first, strictly before (`$1`, `$2`), `$3` rows; of organisation `$4` unless null.
const LIST_AUDIT: &str = "select a.id, o.slug as organisation, a.actor, a.action, a.target, a.detail, \
     a.request_id, a.created_at \
     from audit_log a left join organisations o on o.id = a.organisation_id \
     where ($4 is null or a.organisation_id = (select id from organisations where slug = $4)) \
     and (a.created_at < $1 or (a.created_at = $1 and a.id < $2)) \
     order by a.created_at desc, a.id desc limit $3";

impl SqlStore {
    /// Adds the organisation with its live and sandbox spaces, in one transaction;
    /// false (and nothing changed) if the slug is taken.
    async fn insert_organisation(&self, slug: &str, name: &str, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.begin_with(super::dialect::BEGIN_WRITE).await?;
        let created = insert_organisation(&mut tx, slug, name, now).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn organisation_exists(&self, slug: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar("select count(*) from organisations where slug = $1")
            .bind(slug)
            .fetch_one(&mut *self.conn().await?)
            .await?;
        Ok(n > 0)
    }

    /// Adds a key row unless its digest is already registered; its id when added.
    async fn insert_key_row(&self, organisation: &str, key: &NewKey, now: DateTime<Utc>) -> StoreResult<Option<i64>> {
        insert_key(&mut *self.conn().await?, KEEP_EXISTING, organisation, key, now).await
    }
}

/// Inserts a key of `organisation` through `exec`, `on_conflict` deciding about a digest
/// registered before; the row's id, if one was written.
async fn insert_key<'e>(
    exec: impl sqlx::Executor<'e, Database = super::Db>,
    on_conflict: &str,
    organisation: &str,
    key: &NewKey,
    now: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar(&format!("{INSERT_KEY}{on_conflict}"))
        .bind(organisation)
        .bind(key.kind.as_str())
        .bind(&key.digest)
        .bind(&key.prefix)
        .bind(&key.label)
        .bind(key.scopes.join(" "))
        .bind(key.rate_limit_per_minute)
        .bind(now)
        .bind(key.expires_at)
        .fetch_optional(exec)
        .await?)
}

#[async_trait]
impl AdminStore for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&mut *self.conn().await?).await?;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        let status = self.connections.pool.status();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        PoolStats {
            size: count(status.size),
            idle: count(status.available),
            max: count(status.max_size),
            waiting: self.connections.waiting.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    async fn key_changes(&self) -> StoreResult<Option<Box<dyn KeyChanges>>> {
        super::dialect::key_changes(&self.connections.pool.manager().options).await
    }

    async fn ensure_organisation(&self, slug: &str, name: &str) -> StoreResult<bool> {
        self.insert_organisation(slug, name, now()).await
    }

    async fn organisation_count(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("select count(*) from organisations").fetch_one(&mut *self.conn().await?).await?)
    }

    async fn bootstrap(&self, slug: &str, name: &str, keys: &[NewKey]) -> StoreResult<bool> {
        let now = now();
        let mut tx = self.begin_with(super::dialect::BEGIN_WRITE).await?;
        let existing: i64 = sqlx::query_scalar("select count(*) from organisations").fetch_one(&mut *tx).await?;
        if existing > 0 {
            return Ok(false);
        }
        // Another instance starting at once may create it first: the slug is taken, and
        // that one prints the keys.
        match insert_organisation(&mut tx, slug, name, now).await {
            Ok(true) => {}
            Ok(false) | Err(StoreError::Conflict(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        for key in keys {
            insert_key(&mut *tx, KEEP_EXISTING, slug, key, now).await?;
        }
        match tx.commit().await.map_err(StoreError::from) {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create_organisation(&self, slug: &str, name: &str, audit: &NewAudit) -> StoreResult<Organisation> {
        let now = now();
        let mut tx = self.begin_with(super::dialect::BEGIN_WRITE).await?;
        if !insert_organisation(&mut tx, slug, name, now).await? {
            return Err(StoreError::Conflict(format!("organisation {slug} exists")));
        }
        insert_audit(&mut tx, audit, None, None, None, now).await?;
        tx.commit().await?;
        Ok(Organisation { slug: slug.to_owned(), name: name.to_owned(), created_at: now })
    }

    async fn list_organisations(&self) -> StoreResult<Vec<Organisation>> {
        Ok(sqlx::query_as("select slug, name, created_at from organisations order by slug")
            .fetch_all(&mut *self.conn().await?)
            .await?)
    }

    async fn space_of(&self, organisation: &str, mode: Mode) -> StoreResult<SpaceId> {
        let id: i64 = sqlx::query_scalar(
            "select s.id from spaces s join organisations o on o.id = s.organisation_id \
             where o.slug = $1 and s.mode = $2",
        )
        .bind(organisation)
        .bind(mode.as_str())
        .fetch_one(&mut *self.conn().await?)
        .await?;
        Ok(SpaceId(id))
    }

    async fn insert_key(&self, organisation: &str, key: &NewKey) -> StoreResult<()> {
        let added = self.insert_key_row(organisation, key, now()).await?;
        if added.is_none() && !self.organisation_exists(organisation).await? {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn claim_keys(&self, organisation: &str, keys: &[NewKey]) -> StoreResult<()> {
        let now = now();
        let mut tx = self.begin_with(super::dialect::BEGIN_WRITE).await?;
        for key in keys {
            if insert_key(&mut *tx, TAKE_OVER, organisation, key, now).await?.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_keys(&self, digests: &[String]) -> StoreResult<u64> {
        let now = now();
        let mut revoked = 0;
        for digest in digests {
            let done = sqlx::query("update api_keys set revoked_at = $2 where digest = $1 and revoked_at is null")
                .bind(digest)
                .bind(now)
                .execute(&mut *self.conn().await?)
                .await?;
            revoked += done.rows_affected();
        }
        Ok(revoked)
    }

    async fn create_key(&self, organisation: &str, key: &NewKey, audit: Option<&NewAudit>) -> StoreResult<KeyInfo> {
        let now = now();
        let mut tx = self.begin_with(super::dialect::BEGIN_WRITE).await?;
        let Some(id) = insert_key(&mut *tx, KEEP_EXISTING, organisation, key, now).await? else {
            tx.rollback().await?;
            return Err(if self.organisation_exists(organisation).await? {
                StoreError::Conflict("a key with this digest exists".into())
            } else {
                StoreError::NotFound
            });
        };
        if let Some(audit) = audit {
            insert_audit(&mut tx, audit, Some(&id.to_string()), None, None, now).await?;
        }
        tx.commit().await?;
        Ok(KeyInfo {
            id,
            prefix: key.prefix.clone(),
            kind: key.kind,
            label: key.label.clone(),
            scopes: key.scopes.clone(),
            created_at: now,
            last_used_at: None,
            expires_at: key.expires_at,
            revoked_at: None,
            rate_limit_per_minute: key.rate_limit_per_minute,
        })
    }

    async fn list_keys(&self, organisation: &str) -> StoreResult<Vec<KeyInfo>> {
        let rows: Vec<KeyInfoRow> =
            sqlx::query_as(LIST_KEYS).bind(organisation).fetch_all(&mut *self.conn().await?).await?;
        if rows.is_empty() && !self.organisation_exists(organisation).await? {
            return Err(StoreError::NotFound);
        }
        rows.into_iter().map(KeyInfo::try_from).collect()
    }

    async fn resolve_key(&self, digest: &str) -> StoreResult<Option<KeyRecord>> {
        let row: Option<KeyRow> =
            sqlx::query_as(RESOLVE_KEY).bind(digest).fetch_optional(&mut *self.conn().await?).await?;
        row.map(|r| {
            let kind = kind(&r.kind)?;
            Ok(KeyRecord {
                id: r.id,
                kind,
                scopes: scopes(&r.scopes),
                expires_at: r.expires_at,
                revoked_at: r.revoked_at,
                last_used_at: r.last_used_at,
                rate_limit_per_minute: r.rate_limit_per_minute,
                organisation: r.organisation,
                space: SpaceId(r.space_id),
                mode: Mode::for_kind(kind),
            })
        })
        .transpose()
    }

    async fn revoke_key_by_id(
        &self,
        id: i64,
        organisation: Option<&str>,
        audit: Option<&NewAudit>,
    ) -> StoreResult<KeyRevocation> {
        let now = now();
        let mut tx = self.begin_with(super::dialect::BEGIN_WRITE).await?;
        let owner: Option<(String, String)> = sqlx::query_as(
            "select k.digest, o.slug from api_keys k join organisations o on o.id = k.organisation_id where k.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((digest, owner)) = owner else { return Ok(KeyRevocation::NotFound) };
        if organisation.is_some_and(|o| o != owner) {
            return Ok(KeyRevocation::OutOfScope);
        }
        // Guarded by `revoked_at is null`, so of two concurrent revokes one reports it.
        let done = sqlx::query("update api_keys set revoked_at = $2 where id = $1 and revoked_at is null")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let revoked = done.rows_affected() > 0;
        if let Some(audit) = audit {
            let detail = serde_json::json!({ "revoked": revoked });
            insert_audit(&mut tx, audit, None, Some(&owner), Some(&detail), now).await?;
        }
        tx.commit().await?;
        Ok(KeyRevocation::Done { digest, organisation: owner, revoked })
    }

    async fn touch_key_last_used(&self, id: i64, at: DateTime<Utc>) -> StoreResult<()> {
        // Out-of-order writes from concurrent requests never move the time backwards.
        sqlx::query(
            "update api_keys set last_used_at = $2 where id = $1 and (last_used_at is null or last_used_at < $2)",
        )
        .bind(id)
        .bind(at)
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    async fn record_audit(&self, entry: &NewAudit) -> StoreResult<()> {
        let mut tx = self.begin_with(super::dialect::BEGIN_WRITE).await?;
        insert_audit(&mut tx, entry, None, None, None, now()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        organisation: Option<&str>,
        before: PagePos,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = sqlx::query_as(LIST_AUDIT)
            .bind(before.created_at)
            .bind(before.id)
            .bind(limit)
            .bind(organisation)
            .fetch_all(&mut *self.conn().await?)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                organisation: r.organisation,
                actor: r.actor,
                action: r.action,
                target: r.target,
                detail: r.detail.0,
                request_id: r.request_id,
                created_at: r.created_at,
            })
            .collect())
    }
}

/// Adds the organisation with its live and sandbox spaces in `tx`; false if the slug is
/// taken.
async fn insert_organisation(tx: &mut super::Tx, slug: &str, name: &str, now: DateTime<Utc>) -> StoreResult<bool> {
    let created: Option<i64> = sqlx::query_scalar(
        "insert into organisations (slug, name, created_at) values ($1, $2, $3) \
         on conflict (slug) do nothing returning id",
    )
    .bind(slug)
    .bind(name)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = created {
        for mode in [Mode::Live, Mode::Sandbox] {
            sqlx::query("insert into spaces (organisation_id, mode) values ($1, $2)")
                .bind(id)
                .bind(mode.as_str())
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(created.is_some())
}

/// Adds an audit row in `tx`. `new_row` names the row the audited write created (for
/// `AuditTarget::NewRow`); `organisation` and `detail` replace the entry's where the write
/// learned them.
pub(super) async fn insert_audit(
    tx: &mut super::Tx,
    entry: &NewAudit,
    new_row: Option<&str>,
    organisation: Option<&str>,
    detail: Option<&serde_json::Value>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let key_id = match entry.actor {
        AuditActor::Key(id) => Some(id),
        AuditActor::Cli => None,
    };
    let target = match &entry.target {
        AuditTarget::Named(target) => target.as_str(),
        AuditTarget::NewRow => new_row.unwrap_or_default(),
    };
    sqlx::query(RECORD_AUDIT)
        .bind(organisation.or(entry.organisation.as_deref()))
        .bind(key_id)
        .bind(entry.action)
        .bind(target)
        .bind(Json(detail.unwrap_or(&entry.detail)))
        .bind(entry.request_id.as_deref())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
