//! The admin side of storage: organisations, key listings, revocation by id and the audit
//! log. `impl_admin!` writes these statements once for both pools, as inherent methods the
//! `Store` implementation in `sql.rs` delegates to.

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use sqlx::types::Json;

use crate::normalize::ApiKeyKind;

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Organisation {
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A key as an administrator sees it: everything but the key and its digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub id: i64,
    /// The key's first 8 characters.
    pub prefix: String,
    #[serde(serialize_with = "kind_name")]
    pub kind: ApiKeyKind,
    pub label: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub rate_limit_per_minute: Option<i64>,
}

fn kind_name<S: Serializer>(kind: &ApiKeyKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
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
    Done { digest: String, organisation: String, revoked: bool },
}

/// Who acted: a key (recorded by its id and first 8 characters) or the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditActor {
    Key(i64),
    Cli,
}

/// One audit row to add.
#[derive(Debug, Clone)]
pub struct NewAudit {
    /// The organisation acted on (by slug), if any.
    pub organisation: Option<String>,
    pub actor: AuditActor,
    pub action: &'static str,
    pub target: String,
    pub detail: serde_json::Value,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
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

/// Where a page of the audit log starts: strictly older than this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPos {
    pub created_at: DateTime<Utc>,
    pub id: i64,
}

#[derive(sqlx::FromRow)]
pub struct KeyInfoRow {
    pub id: i64,
    pub prefix: String,
    pub kind: String,
    pub label: String,
    pub scopes: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub rate_limit_per_minute: Option<i64>,
}

impl TryFrom<KeyInfoRow> for KeyInfo {
    type Error = super::StoreError;
    fn try_from(r: KeyInfoRow) -> Result<Self, Self::Error> {
        let kind = ApiKeyKind::from_str_db(&r.kind)
            .ok_or_else(|| super::StoreError::Other(format!("unknown key kind {}", r.kind)))?;
        Ok(KeyInfo {
            id: r.id,
            prefix: r.prefix,
            kind,
            label: r.label,
            scopes: r.scopes.split_whitespace().map(str::to_owned).collect(),
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            rate_limit_per_minute: r.rate_limit_per_minute,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub organisation: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Json<serde_json::Value>,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            id: r.id,
            organisation: r.organisation,
            actor: r.actor,
            action: r.action,
            target: r.target,
            detail: r.detail.0,
            request_id: r.request_id,
            created_at: r.created_at,
        }
    }
}

pub const LIST_ORGANISATIONS: &str = "select slug, name, created_at from organisations order by slug";

pub const CREATE_KEY: &str = "insert into api_keys (organisation_id, kind, digest, prefix, label, scopes, \
     rate_limit_per_minute, created_at, expires_at) \
     select id, $2, $3, $4, $5, $6, $7, $8, $9 from organisations where slug = $1 \
     on conflict (digest) do nothing returning id";

pub const LIST_KEYS: &str = "select k.id, k.prefix, k.kind, k.label, k.scopes, k.created_at, k.last_used_at, \
     k.expires_at, k.revoked_at, k.rate_limit_per_minute \
     from api_keys k join organisations o on o.id = k.organisation_id where o.slug = $1 order by k.id";

pub const KEY_OWNER: &str = "select k.digest, o.slug from api_keys k join organisations o on o.id = k.organisation_id where k.id = $1";

pub const REVOKE_KEY_BY_ID: &str = "update api_keys set revoked_at = $2 where id = $1 and revoked_at is null";

/// Out-of-order writes from concurrent requests never move the time backwards.
pub const TOUCH_KEY: &str =
    "update api_keys set last_used_at = $2 where id = $1 and (last_used_at is null or last_used_at < $2)";

/// The actor's name is taken from the key row, so a caller can never record a whole key.
pub const RECORD_AUDIT: &str = "insert into audit_log (organisation_id, actor_key_id, actor, action, target, detail, request_id, created_at) \
     values ((select id from organisations where slug = $1), $2, \
     case when $2 is null then 'cli' else (select prefix from api_keys where id = $2) end, $3, $4, $5, $6, $7)";

/// Newest first; `$1`, `$2` are where the page starts (exclusive), `$3` the page size.
pub const LIST_AUDIT: &str = "select a.id, o.slug as organisation, a.actor, a.action, a.target, a.detail, a.request_id, a.created_at \
     from audit_log a left join organisations o on o.id = a.organisation_id \
     where (a.created_at < $1 or (a.created_at = $1 and a.id < $2)) \
     order by a.created_at desc, a.id desc limit $3";

/// As `LIST_AUDIT`, for the organisation `$4`.
pub const LIST_AUDIT_OF_ORGANISATION: &str = "select a.id, o.slug as organisation, a.actor, a.action, a.target, a.detail, a.request_id, a.created_at \
     from audit_log a left join organisations o on o.id = a.organisation_id \
     where a.organisation_id = (select id from organisations where slug = $4) \
     and (a.created_at < $1 or (a.created_at = $1 and a.id < $2)) \
     order by a.created_at desc, a.id desc limit $3";

/// Inherent admin methods for a concrete store (`self.pool`), called by `impl_store!`.
macro_rules! impl_admin {
    ($store:ident) => {
        impl $store {
            async fn admin_create_organisation(&self, slug: &str, name: &str) -> $crate::store::StoreResult<$crate::store::Organisation> {
                let now = $crate::store::now();
                if !self.insert_organisation(slug, name, now).await? {
                    return Err($crate::store::StoreError::Conflict(format!("organisation {slug} exists")));
                }
                Ok($crate::store::Organisation { slug: slug.to_owned(), name: name.to_owned(), created_at: now })
            }

            async fn admin_list_organisations(&self) -> $crate::store::StoreResult<Vec<$crate::store::Organisation>> {
                Ok(sqlx::query_as($crate::store::admin::LIST_ORGANISATIONS).fetch_all(&self.pool).await?)
            }

            async fn admin_create_key(&self, organisation: &str, key: &$crate::store::NewKey) -> $crate::store::StoreResult<$crate::store::KeyInfo> {
                let now = $crate::store::now();
                let Some(id) = self.insert_key_row(organisation, key, now).await? else {
                    return Err(if self.organisation_count_by_slug(organisation).await? == 0 {
                        $crate::store::StoreError::NotFound
                    } else {
                        $crate::store::StoreError::Conflict("a key with this digest exists".into())
                    });
                };
                Ok($crate::store::KeyInfo {
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

            /// Adds a key row unless its digest is already registered; its id when added.
            async fn insert_key_row(
                &self,
                organisation: &str,
                key: &$crate::store::NewKey,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<i64>> {
                Ok(sqlx::query_scalar($crate::store::admin::CREATE_KEY)
                    .bind(organisation)
                    .bind(key.kind.as_str())
                    .bind(&key.digest)
                    .bind(&key.prefix)
                    .bind(&key.label)
                    .bind(key.scopes.join(" "))
                    .bind(key.rate_limit_per_minute)
                    .bind(now)
                    .bind(key.expires_at)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn admin_list_keys(&self, organisation: &str) -> $crate::store::StoreResult<Vec<$crate::store::KeyInfo>> {
                let rows: Vec<$crate::store::admin::KeyInfoRow> =
                    sqlx::query_as($crate::store::admin::LIST_KEYS).bind(organisation).fetch_all(&self.pool).await?;
                if rows.is_empty() && self.organisation_count_by_slug(organisation).await? == 0 {
                    return Err($crate::store::StoreError::NotFound);
                }
                rows.into_iter().map($crate::store::KeyInfo::try_from).collect()
            }

            async fn admin_revoke_key_by_id(
                &self,
                id: i64,
                organisation: Option<&str>,
            ) -> $crate::store::StoreResult<$crate::store::KeyRevocation> {
                use $crate::store::KeyRevocation;
                let owner: Option<(String, String)> =
                    sqlx::query_as($crate::store::admin::KEY_OWNER).bind(id).fetch_optional(&self.pool).await?;
                let Some((digest, owner)) = owner else { return Ok(KeyRevocation::NotFound) };
                if organisation.is_some_and(|o| o != owner) {
                    return Ok(KeyRevocation::OutOfScope);
                }
                // Guarded by `revoked_at is null`, so of two concurrent revokes one reports it.
                let done = sqlx::query($crate::store::admin::REVOKE_KEY_BY_ID)
                    .bind(id)
                    .bind($crate::store::now())
                    .execute(&self.pool)
                    .await?;
                Ok(KeyRevocation::Done { digest, organisation: owner, revoked: done.rows_affected() > 0 })
            }

            async fn admin_touch_key(&self, id: i64, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                sqlx::query($crate::store::admin::TOUCH_KEY).bind(id).bind(at).execute(&self.pool).await?;
                Ok(())
            }

            async fn admin_record_audit(&self, entry: &$crate::store::NewAudit) -> $crate::store::StoreResult<()> {
                let key_id = match entry.actor {
                    $crate::store::AuditActor::Key(id) => Some(id),
                    $crate::store::AuditActor::Cli => None,
                };
                sqlx::query($crate::store::admin::RECORD_AUDIT)
                    .bind(entry.organisation.as_deref())
                    .bind(key_id)
                    .bind(entry.action)
                    .bind(&entry.target)
                    .bind(sqlx::types::Json(&entry.detail))
                    .bind(entry.request_id.as_deref())
                    .bind($crate::store::now())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn admin_list_audit(
                &self,
                organisation: Option<&str>,
                before: Option<$crate::store::AuditPos>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::AuditEntry>> {
                let before = before.unwrap_or($crate::store::AuditPos { created_at: $crate::store::END_OF_TIME, id: i64::MAX });
                let sql = match organisation {
                    Some(_) => $crate::store::admin::LIST_AUDIT_OF_ORGANISATION,
                    None => $crate::store::admin::LIST_AUDIT,
                };
                let mut query = sqlx::query_as::<_, $crate::store::admin::AuditRow>(sql)
                    .bind(before.created_at)
                    .bind(before.id)
                    .bind(limit);
                if let Some(organisation) = organisation {
                    query = query.bind(organisation);
                }
                Ok(query.fetch_all(&self.pool).await?.into_iter().map(Into::into).collect())
            }
        }
    };
}

pub(crate) use impl_admin;
