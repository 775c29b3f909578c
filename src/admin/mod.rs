//! Administration of organisations, API keys and the audit log: the validation, the tenant
//! rule and the auditing shared by the admin endpoints and the command line, so that both
//! accept and record exactly the same things.
//!
//! Tenant rule: ROOT keys of the operator's organisation (`default`, made at first start)
//! and the command line administer every organisation; ROOT keys of any other organisation
//! only their own.

mod table;
mod webhooks;

pub use table::keys_table;
pub use webhooks::{CreatedWebhook, WebhookRequest, ATTEMPTS_SHOWN};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::auth::{Caller, Scope};
use crate::fields::{self, limits, InputError};
use crate::normalize::{ApiKey, ApiKeyKind};
use crate::store::{
    AuditActor, AuditEntry, AuditTarget, DynStore, KeyInfo, KeyRevocation, NewAudit, NewKey, Organisation, PagePos,
    StoreError,
};

/// The organisation whose ROOT keys administer every organisation.
pub const OPERATOR_ORGANISATION: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A value that cannot be accepted, naming its field.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The caller may not do this (wrong kind of key, or another organisation).
    #[error("{0}")]
    Forbidden(String),
    /// A webhook URL that is not http(s), or points where webhooks may not go.
    #[error("{0}")]
    Endpoint(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> AdminError {
    AdminError::Input(fields::invalid(field, message))
}

/// `^[a-z0-9][a-z0-9-]{0,62}$`: safe in URLs, logs and file names.
pub fn valid_slug(slug: &str) -> bool {
    let bytes = slug.as_bytes();
    (1..=63).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn slug(value: &str, field: &'static str) -> Result<String, AdminError> {
    if valid_slug(value) {
        Ok(value.to_owned())
    } else {
        Err(invalid(field, "must be 1 to 63 lower-case letters, digits or hyphens, not starting with a hyphen"))
    }
}

/// `PROD`, `DEV` (or `DEV_`, as keys begin) and `ROOT`.
pub fn parse_kind(value: &str) -> Result<ApiKeyKind, AdminError> {
    match value {
        "PROD" => Ok(ApiKeyKind::Prod),
        "DEV" | "DEV_" => Ok(ApiKeyKind::Dev),
        "ROOT" => Ok(ApiKeyKind::Root),
        _ => Err(invalid("kind", "must be PROD, DEV_ (or DEV) or ROOT")),
    }
}

/// Known scope names, each once, in the canonical order.
fn parse_scopes(names: &[String]) -> Result<Vec<String>, AdminError> {
    if let Some(unknown) = names.iter().find(|n| !Scope::ALL.iter().any(|s| s.as_str() == n.as_str())) {
        let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        return Err(invalid("scopes", format!("unknown scope {unknown:?}; known: {}", known.join(", "))));
    }
    if names.is_empty() {
        return Err(invalid("scopes", "a key needs at least one scope"));
    }
    Ok(Scope::ALL.iter().map(|s| s.as_str()).filter(|s| names.iter().any(|n| n == s)).map(str::to_owned).collect())
}

fn parse_expiry(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, AdminError> {
    use chrono::SubsecRound;
    let at = fields::time(value, "expiresAt", "2030-01-31T12:00:00Z")?.trunc_subsecs(6);
    if at <= now {
        return Err(invalid("expiresAt", "must be in the future"));
    }
    Ok(at)
}

/// A request for a new key, as raw as the client sent it.
#[derive(Debug, Clone, Default)]
pub struct KeyRequest {
    /// Defaults to the caller's own organisation (required from the command line).
    pub organisation: Option<String>,
    pub kind: Option<String>,
    pub label: Option<String>,
    /// Defaults to `Scope::defaults_for(kind)`.
    pub scopes: Option<Vec<String>>,
    pub expires_at: Option<String>,
    pub rate_limit_per_minute: Option<i64>,
}

/// A key just made: the key itself is shown this once and stored nowhere.
pub struct CreatedKey {
    pub key: ApiKey,
    pub organisation: String,
    pub info: KeyInfo,
}

/// One page of the audit log and where the next one starts.
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next: Option<PagePos>,
}

/// Who is administering, with what reach.
#[derive(Debug, Clone)]
enum Actor {
    Key { id: i64, organisation: String },
    Cli,
}

/// The admin operations, on behalf of one actor and (over HTTP) one request.
pub struct Admin<'a> {
    store: &'a DynStore,
    actor: Actor,
    request_id: Option<String>,
}

impl<'a> Admin<'a> {
    /// For an authorised HTTP caller. Only ROOT keys administer, whatever scopes another
    /// kind of key was given.
    pub fn for_caller(store: &'a DynStore, caller: &Caller, request_id: Option<String>) -> Result<Self, AdminError> {
        if caller.kind != ApiKeyKind::Root {
            return Err(AdminError::Forbidden("only ROOT keys may call the admin endpoints".into()));
        }
        Ok(Admin {
            store,
            actor: Actor::Key { id: caller.key_id, organisation: caller.organisation.clone() },
            request_id,
        })
    }

    /// For the command line, which reaches the database directly and so every organisation.
    pub fn cli(store: &'a DynStore) -> Self {
        Admin { store, actor: Actor::Cli, request_id: None }
    }

    /// The one organisation the actor is confined to; None for the operator.
    fn confined_to(&self) -> Option<&str> {
        match &self.actor {
            Actor::Key { organisation, .. } if organisation != OPERATOR_ORGANISATION => Some(organisation),
            _ => None,
        }
    }

    /// The organisation a request names (or the actor's own), once the actor may reach it.
    fn reach(&self, requested: Option<&str>) -> Result<String, AdminError> {
        let own = match &self.actor {
            Actor::Key { organisation, .. } => Some(organisation.as_str()),
            Actor::Cli => None,
        };
        let organisation = requested.or(own).ok_or_else(|| invalid("organisation", "organisation is required"))?;
        if let Some(confined) = self.confined_to() {
            if organisation != confined {
                return Err(AdminError::Forbidden(format!(
                    "this key administers only organisation {confined}; ask the operator for {organisation}"
                )));
            }
        }
        slug(organisation, "organisation")
    }

    /// The audit row of an action of this actor.
    fn entry(
        &self,
        organisation: Option<&str>,
        action: &'static str,
        target: AuditTarget,
        detail: serde_json::Value,
    ) -> NewAudit {
        let actor = match self.actor {
            Actor::Key { id, .. } => AuditActor::Key(id),
            Actor::Cli => AuditActor::Cli,
        };
        NewAudit {
            organisation: organisation.map(str::to_owned),
            actor,
            action,
            target,
            detail,
            request_id: self.request_id.clone(),
        }
    }

    /// Records a read; writes record theirs in their own transaction.
    async fn audit(
        &self,
        organisation: Option<&str>,
        action: &'static str,
        target: String,
        detail: serde_json::Value,
    ) -> Result<(), AdminError> {
        let entry = self.entry(organisation, action, AuditTarget::Named(target), detail);
        Ok(self.store.record_audit(&entry).await?)
    }

    pub async fn create_organisation(
        &self,
        slug_in: Option<&str>,
        name: Option<&str>,
    ) -> Result<Organisation, AdminError> {
        if self.confined_to().is_some() {
            return Err(AdminError::Forbidden(format!(
                "only ROOT keys of organisation {OPERATOR_ORGANISATION} may create organisations"
            )));
        }
        let slug = slug(slug_in.ok_or_else(|| invalid("slug", "slug is required"))?, "slug")?;
        let name = name.ok_or_else(|| invalid("name", "name is required"))?;
        let name = fields::text(Some(name), "name", limits::ORGANISATION_NAME)?
            .ok_or_else(|| invalid("name", "name must not be blank"))?;
        let audit =
            self.entry(Some(&slug), "organisation.create", AuditTarget::Named(slug.clone()), json!({ "name": name }));
        match self.store.create_organisation(&slug, &name, &audit).await {
            Err(StoreError::Conflict(_)) => Err(invalid("slug", format!("organisation {slug} already exists"))),
            other => Ok(other?),
        }
    }

    /// Every organisation for the operator; an organisation's own ROOT key sees itself.
    pub async fn list_organisations(&self) -> Result<Vec<Organisation>, AdminError> {
        let mut all = self.store.list_organisations().await?;
        if let Some(own) = self.confined_to() {
            all.retain(|o| o.slug == own);
        }
        let own = match &self.actor {
            Actor::Key { organisation, .. } => Some(organisation.as_str()),
            Actor::Cli => None,
        };
        self.audit(own, "organisation.list", "organisations".into(), json!({ "count": all.len() })).await?;
        Ok(all)
    }

    pub async fn create_key(&self, req: KeyRequest) -> Result<CreatedKey, AdminError> {
        let organisation = self.reach(req.organisation.as_deref())?;
        let kind = parse_kind(req.kind.as_deref().ok_or_else(|| invalid("kind", "kind is required"))?)?;
        let label = fields::text(req.label.as_deref(), "label", limits::KEY_LABEL)?.unwrap_or_default();
        let scopes = match &req.scopes {
            Some(names) => parse_scopes(names)?,
            None => Scope::defaults_for(kind),
        };
        let expires_at = req.expires_at.as_deref().map(|e| parse_expiry(e, crate::store::now())).transpose()?;
        if let Some(n) = req.rate_limit_per_minute {
            if !limits::RATE_LIMIT_PER_MINUTE.contains(&n) {
                let (lo, hi) = (limits::RATE_LIMIT_PER_MINUTE.start(), limits::RATE_LIMIT_PER_MINUTE.end());
                return Err(invalid("rateLimitPerMinute", format!("must be {lo} to {hi}")));
            }
        }
        let key = ApiKey::generate(kind);
        let new = NewKey {
            kind,
            digest: key.digest(),
            prefix: key.prefix8().to_owned(),
            label,
            scopes,
            expires_at,
            rate_limit_per_minute: req.rate_limit_per_minute,
        };
        let detail = json!({
            "prefix": new.prefix, "kind": kind.as_str(), "label": new.label, "scopes": new.scopes,
            "expiresAt": new.expires_at, "rateLimitPerMinute": new.rate_limit_per_minute,
        });
        let audit = self.entry(Some(&organisation), "api_key.create", AuditTarget::NewRow, detail);
        let info = match self.store.create_key(&organisation, &new, Some(&audit)).await {
            Err(StoreError::NotFound) => {
                return Err(invalid("organisation", format!("no organisation {organisation}")));
            }
            other => other?,
        };
        Ok(CreatedKey { key, organisation, info })
    }

    pub async fn list_keys(&self, organisation: Option<&str>) -> Result<Vec<KeyInfo>, AdminError> {
        let organisation = self.reach(organisation)?;
        let keys = match self.store.list_keys(&organisation).await {
            Err(StoreError::NotFound) => {
                return Err(invalid("organisation", format!("no organisation {organisation}")))
            }
            other => other?,
        };
        self.audit(Some(&organisation), "api_key.list", organisation.clone(), json!({ "count": keys.len() })).await?;
        Ok(keys)
    }

    /// Revokes a key by id. Returns whether this call revoked it (false: it already was)
    /// and its digest, so a server can drop it from its key cache at once.
    pub async fn revoke_key(&self, id: Option<i64>) -> Result<(bool, String), AdminError> {
        let id = id.ok_or_else(|| invalid("id", "id is required"))?;
        let audit = self.entry(None, "api_key.revoke", AuditTarget::Named(id.to_string()), serde_json::Value::Null);
        match self.store.revoke_key_by_id(id, self.confined_to(), Some(&audit)).await? {
            KeyRevocation::NotFound => Err(invalid("id", format!("no API key with id {id}"))),
            KeyRevocation::OutOfScope => Err(AdminError::Forbidden(format!(
                "API key {id} belongs to another organisation; this key administers only {}",
                self.confined_to().unwrap_or_default()
            ))),
            KeyRevocation::Done { digest, revoked, .. } => Ok((revoked, digest)),
        }
    }

    /// The audit log, newest first, `limit` entries before `before`. The operator sees
    /// every organisation's unless it names one; any other organisation's ROOT key sees
    /// its own.
    pub async fn list_audit(
        &self,
        organisation: Option<&str>,
        limit: i64,
        before: PagePos,
    ) -> Result<AuditPage, AdminError> {
        let organisation = match (organisation, self.confined_to()) {
            (None, None) => None,
            (requested, _) => Some(self.reach(requested)?),
        };
        if let Some(o) = &organisation {
            // An unknown organisation is a mistake worth naming, not an empty page.
            if !self.store.list_organisations().await?.iter().any(|org| &org.slug == o) {
                return Err(invalid("organisation", format!("no organisation {o}")));
            }
        }
        let entries = self.store.list_audit(organisation.as_deref(), before, limit + 1).await?;
        let (entries, next) =
            crate::store::split_page(entries, limit, |e| PagePos { created_at: e.created_at, id: e.id });
        let target = organisation.clone().unwrap_or_else(|| "all".into());
        self.audit(organisation.as_deref(), "audit.list", target, json!({ "count": entries.len() })).await?;
        Ok(AuditPage { entries, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for good in ["a", "acme", "0day", "acme-eu-2", &"a".repeat(63)] {
            assert!(valid_slug(good), "{good}");
        }
        for bad in ["", "-acme", "Acme", "acme_eu", "acme.eu", "ácme", "acme ", &"a".repeat(64)] {
            assert!(!valid_slug(bad), "{bad}");
        }
    }

    #[test]
    fn scopes_are_known_and_canonical() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_scopes(&names(&["admin", "customer:read", "admin"])).unwrap(),
            names(&["customer:read", "admin"])
        );
        assert!(matches!(
            parse_scopes(&names(&["customer:delete"])),
            Err(AdminError::Input(InputError::Field { field: "scopes", .. }))
        ));
        assert!(matches!(parse_scopes(&[]), Err(AdminError::Input(InputError::Field { field: "scopes", .. }))));
    }

    #[test]
    fn kinds_and_expiry() {
        assert_eq!(parse_kind("DEV_").unwrap(), ApiKeyKind::Dev);
        assert_eq!(parse_kind("DEV").unwrap(), ApiKeyKind::Dev);
        assert!(parse_kind("prod").is_err());
        let now = crate::store::now();
        assert!(parse_expiry("2999-01-01T00:00:00Z", now).is_ok());
        assert!(parse_expiry("2001-01-01T00:00:00Z", now).is_err());
        assert!(parse_expiry("tomorrow", now).is_err());
    }
}
