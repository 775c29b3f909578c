//! Webhook endpoints administered (API.md §9): registered, listed, removed, their recent
//! attempts, and an event sent again. Same tenant rule and auditing as keys.

use serde_json::json;

use super::{invalid, Admin, AdminError};
use crate::store::{AuditTarget, DeliveryAttempt, Endpoint, Mode, NewEndpoint, StoreError};
use crate::webhooks::{self, target, Reach, EVENT_TYPES};

/// A request for a new endpoint, as raw as the client sent it.
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    /// Defaults to the caller's own organisation (required from the command line).
    pub organisation: Option<String>,
    pub url: Option<String>,
    /// Event types; every type when not given.
    pub events: Option<Vec<String>>,
    /// `live` (the default) or `sandbox`.
    pub mode: Option<String>,
}

/// A new endpoint and its signing key, shown this once.
pub struct CreatedWebhook {
    pub endpoint: Endpoint,
    pub secret: String,
}

/// The most attempts one listing shows.
pub const ATTEMPTS_SHOWN: i64 = 100;

fn parse_mode(value: Option<&str>) -> Result<Mode, AdminError> {
    match value {
        None | Some("live") => Ok(Mode::Live),
        Some("sandbox") => Ok(Mode::Sandbox),
        Some(_) => Err(invalid("mode", "must be live or sandbox")),
    }
}

/// Known event types, each once, in the canonical order.
fn parse_events(names: &[String]) -> Result<Vec<String>, AdminError> {
    if let Some(unknown) = names.iter().find(|n| !EVENT_TYPES.contains(&n.as_str())) {
        return Err(invalid("events", format!("unknown event type {unknown:?}; known: {}", EVENT_TYPES.join(", "))));
    }
    if names.is_empty() {
        return Err(invalid("events", "name at least one event type, or leave events out for all of them"));
    }
    Ok(EVENT_TYPES.iter().filter(|t| names.iter().any(|n| n == *t)).map(|t| (*t).to_owned()).collect())
}

impl Admin<'_> {
    pub async fn create_webhook(&self, req: WebhookRequest, reach: Reach) -> Result<CreatedWebhook, AdminError> {
        let organisation = self.reach(req.organisation.as_deref())?;
        let mode = parse_mode(req.mode.as_deref())?;
        let url = req.url.as_deref().ok_or_else(|| invalid("url", "url is required"))?;
        let url = target::check_target(url, reach).await.map_err(|refused| AdminError::Endpoint(refused.0))?;
        let events = req.events.as_deref().map(parse_events).transpose()?;
        let secret = webhooks::new_secret();
        let new = NewEndpoint { url: url.to_string(), events, secret: secret.clone() };
        let detail = json!({ "url": new.url, "mode": mode.as_str(), "events": new.events });
        let audit = self.entry(Some(&organisation), "webhook.create", AuditTarget::NewRow, detail);
        let endpoint = match self.store.create_endpoint(&organisation, mode, &new, &audit).await {
            Err(StoreError::NotFound) => {
                return Err(invalid("organisation", format!("no organisation {organisation}")))
            }
            other => other?,
        };
        Ok(CreatedWebhook { endpoint, secret })
    }

    /// The endpoints of one organisation, or (for the operator, naming none) of all.
    pub async fn list_webhooks(&self, organisation: Option<&str>) -> Result<Vec<Endpoint>, AdminError> {
        let organisation = match (organisation, self.confined_to()) {
            (None, None) => None,
            (requested, _) => Some(self.reach(requested)?),
        };
        let endpoints = self.store.list_endpoints(organisation.as_deref()).await?;
        let target = organisation.clone().unwrap_or_else(|| "all".into());
        self.audit(organisation.as_deref(), "webhook.list", target, json!({ "count": endpoints.len() })).await?;
        Ok(endpoints)
    }

    /// The endpoint `id`, once the actor may reach its organisation.
    async fn endpoint_in_reach(&self, id: Option<i64>) -> Result<Endpoint, AdminError> {
        let id = id.ok_or_else(|| invalid("id", "id is required"))?;
        let endpoint =
            self.store.endpoint(id).await?.ok_or_else(|| invalid("id", format!("no webhook endpoint with id {id}")))?;
        self.reach(Some(&endpoint.organisation))?;
        Ok(endpoint)
    }

    /// Removes an endpoint and its queued deliveries; false if it was removed meanwhile.
    pub async fn delete_webhook(&self, id: Option<i64>) -> Result<bool, AdminError> {
        let endpoint = self.endpoint_in_reach(id).await?;
        let detail = json!({ "url": endpoint.url });
        let audit = self.entry(
            Some(&endpoint.organisation),
            "webhook.delete",
            AuditTarget::Named(endpoint.id.to_string()),
            detail,
        );
        Ok(self.store.delete_endpoint(endpoint.id, &audit).await?)
    }

    /// The latest attempts to deliver to an endpoint, newest first.
    pub async fn webhook_attempts(&self, id: Option<i64>) -> Result<Vec<DeliveryAttempt>, AdminError> {
        let endpoint = self.endpoint_in_reach(id).await?;
        let attempts = self.store.list_attempts(endpoint.id, ATTEMPTS_SHOWN).await?;
        let (organisation, target) = (Some(endpoint.organisation.as_str()), endpoint.id.to_string());
        self.audit(organisation, "webhook.deliveries", target, json!({ "count": attempts.len() })).await?;
        Ok(attempts)
    }

    /// Sends an event again to every live endpoint of its space that wants it; how many
    /// deliveries were queued.
    pub async fn replay_event(&self, event_id: Option<i64>) -> Result<u64, AdminError> {
        let id = event_id.ok_or_else(|| invalid("eventId", "eventId is required"))?;
        let (organisation, space) =
            self.store.event_space(id).await?.ok_or_else(|| invalid("eventId", format!("no event with id {id}")))?;
        self.reach(Some(&organisation))?;
        let audit = self.entry(Some(&organisation), "webhook.replay", AuditTarget::Named(id.to_string()), json!({}));
        Ok(self.store.replay_event(space, id, &audit).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_known_and_canonical() {
        let got = parse_events(&["match.created".into(), "customer.created".into(), "match.created".into()]).unwrap();
        assert_eq!(got, ["customer.created", "match.created"]);
        assert!(parse_events(&["customer.exploded".into()]).is_err());
        assert!(parse_events(&[]).is_err());
        assert_eq!(parse_mode(None).unwrap(), Mode::Live);
        assert_eq!(parse_mode(Some("sandbox")).unwrap(), Mode::Sandbox);
        assert!(parse_mode(Some("test")).is_err());
    }
}
