//! The admin tables' rows as they are read, and how they become records.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::normalize::ApiKeyKind;
use crate::store::{KeyInfo, StoreError, StoreResult};

#[derive(sqlx::FromRow)]
pub(super) struct KeyRow {
    pub id: i64,
    pub kind: String,
    pub scopes: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub rate_limit_per_minute: Option<i64>,
    pub organisation: String,
    pub space_id: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct KeyInfoRow {
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

#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    pub id: i64,
    pub organisation: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Json<serde_json::Value>,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub(super) fn kind(stored: &str) -> StoreResult<ApiKeyKind> {
    ApiKeyKind::from_str_db(stored).ok_or_else(|| StoreError::Other(format!("unknown key kind {stored}")))
}

/// Scopes are stored as one space-separated column.
pub(super) fn scopes(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_owned).collect()
}

impl TryFrom<KeyInfoRow> for KeyInfo {
    type Error = StoreError;
    fn try_from(r: KeyInfoRow) -> StoreResult<Self> {
        Ok(KeyInfo {
            id: r.id,
            prefix: r.prefix,
            kind: kind(&r.kind)?,
            label: r.label,
            scopes: scopes(&r.scopes),
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            rate_limit_per_minute: r.rate_limit_per_minute,
        })
    }
}
