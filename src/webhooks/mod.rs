//! Change events sent as signed webhooks (API.md §9).
//!
//! The database writes each event, and a delivery per endpoint that wants it, in the
//! transaction of the change (the outbox; see migration `webhooks`). The worker here takes
//! due deliveries, renders each body from the stored rows when it is first sent, signs it
//! as the Standard Webhooks specification says, and posts it: 2xx delivers, 410 disables
//! the endpoint, anything else is retried with exponential backoff and jitter (or after
//! the endpoint's `Retry-After`) until `retry_for` has passed since the event. A failed
//! attempt's body is kept with its outcome, so every retry sends what the first attempt
//! sent (an attempt cut off before its outcome is recorded renders anew); a delivered
//! one costs no write of its body. Once a customer of the event is erased (not merged), no
//! kept body is sent or kept: the next attempt renders the cuRefNo alone.
//!
//! At least once, in order per customer: a customer's next event to an endpoint waits
//! until the previous one is delivered or given up. Several processes may run workers on
//! one PostgreSQL database: a delivery is claimed by one of them (`for update skip
//! locked`) and leased for longer than an attempt may take, so a worker that dies
//! mid-attempt leaves it to be taken again when the lease ends.

pub mod target;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng as _;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

pub use target::Reach;

use crate::http::wire::{Profile, Shape};
use crate::store::{now, AttemptOutcome, AttemptRecord, DueDelivery, DynStore, StoreResult};

/// Every event type, as endpoints subscribe to them.
pub const EVENT_TYPES: [&str; 10] = [
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.merged",
    "customer.credit_added",
    "match.created",
    "match.updated",
    "match.removed",
    "account.registered",
    "account.confirmed",
];

/// How the worker sends.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Which addresses endpoints may have.
    pub reach: Reach,
    /// One attempt's limit, from connecting to the end of the answer.
    pub timeout: Duration,
    /// The first retry's delay; each further one doubles it, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long after an event its delivery is retried.
    pub retry_for: TimeDelta,
    /// How often the queue is looked at when it was found empty.
    pub poll: Duration,
    /// Attempts in flight at once.
    pub concurrency: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            reach: Reach::Public,
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(6 * 3600),
            retry_for: TimeDelta::days(3),
            poll: Duration::from_millis(250),
            concurrency: 32,
        }
    }
}

/// A new endpoint's signing key: `whsec_` and 24 random bytes in base64.
pub fn new_secret() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The `webhook-signature` header of a body (`v1,<base64 HMAC-SHA256>`).
pub fn sign(secret: &str, message_id: &str, timestamp: i64, body: &str) -> anyhow::Result<String> {
    let webhook = standardwebhooks::Webhook::new(secret).map_err(|e| anyhow::anyhow!("bad signing key: {e}"))?;
    webhook.sign(message_id, timestamp, body.as_bytes()).map_err(|e| anyhow::anyhow!("cannot sign: {e}"))
}

/// The `webhook-id` of an event: the same on every attempt and on a replay, so a receiver
/// can tell a message it has seen.
pub fn message_id(event_id: i64) -> String {
    format!("evt_{event_id}")
}

/// The delivery worker of this process.
#[derive(Clone)]
pub struct Worker {
    store: DynStore,
    settings: Arc<WebhookSettings>,
    client: reqwest::Client,
}

impl Worker {
    pub fn new(store: DynStore, settings: WebhookSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .dns_resolver(target::GuardedResolver::shared(settings.reach))
            .user_agent(concat!("bizkit-mirror/", env!("CARGO_PKG_VERSION"), " webhooks"))
            .build()?;
        Ok(Worker { store, settings: Arc::new(settings), client })
    }

    /// Delivers for as long as the process runs.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move { self.run().await })
    }

    async fn run(self) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        loop {
            // At least one slot is free before claiming, so nothing claimed waits long.
            let first = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
            let free = slots.available_permits() + 1;
            let due = match self.claim(free).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the webhook queue; will retry");
                    drop(first);
                    tokio::time::sleep(self.settings.poll * 4).await;
                    continue;
                }
            };
            let idle = due.len() < free;
            let mut first = Some(first);
            for delivery in due {
                let permit = match first.take() {
                    Some(p) => p,
                    None => slots.clone().acquire_owned().await.expect("the semaphore is never closed"),
                };
                let worker = self.clone();
                tokio::spawn(async move {
                    worker.deliver(delivery).await;
                    drop(permit);
                });
            }
            drop(first);
            if idle {
                tokio::time::sleep(self.settings.poll).await;
            }
        }
    }

    /// Claims up to `limit` due deliveries, leased for longer than an attempt may take.
    async fn claim(&self, limit: usize) -> StoreResult<Vec<DueDelivery>> {
        let now = now();
        let lease = TimeDelta::from_std(self.settings.timeout * 3).unwrap_or(TimeDelta::seconds(30));
        self.store.claim_deliveries(now, now + lease, limit as i64).await
    }

    /// Claims what is due and delivers it, one attempt each; how many were attempted.
    /// The worker's loop in one step, for tests and benchmarks that drive it themselves.
    pub async fn run_once(&self, limit: usize) -> StoreResult<usize> {
        let due = self.claim(limit).await?;
        let n = due.len();
        futures_util::future::join_all(due.into_iter().map(|d| self.deliver(d))).await;
        Ok(n)
    }

    /// One attempt of one claimed delivery, recorded. A failure to record it leaves the
    /// delivery leased: it is attempted again when the lease ends.
    async fn deliver(&self, delivery: DueDelivery) {
        let body = match &delivery.body {
            Some(body) => body.clone(),
            None => match self.render(&delivery).await {
                Ok(body) => body,
                Err(e) => {
                    tracing::warn!(error = %e, delivery = delivery.id, "cannot render a webhook body; will retry");
                    return;
                }
            },
        };
        let at = now();
        let started = Instant::now();
        let answer = self.post(&delivery, &body, at).await;
        let record = AttemptRecord {
            at,
            status: answer.status.map(i32::from),
            latency_ms: started.elapsed().as_millis() as i64,
            error: answer.error.clone(),
        };
        let outcome = self.outcome(&delivery, &answer, now());
        crate::telemetry::webhook_attempt(match outcome {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry(_) => "retry",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Disable(_) => "disabled",
        });
        if let AttemptOutcome::Disable(reason) = &outcome {
            tracing::warn!(endpoint = delivery.endpoint_id, %reason, "webhook endpoint disabled");
        }
        if let Err(e) = self.store.finish_attempt(&delivery, &record, &outcome, &body).await {
            tracing::warn!(error = %e, delivery = delivery.id, "cannot record a webhook attempt; will retry");
        }
    }

    /// Sends the signed body; what came back.
    async fn post(&self, delivery: &DueDelivery, body: &str, at: DateTime<Utc>) -> Answer {
        // An address in the URL itself never reaches the resolver: checked here.
        let url = match target::check_url(&delivery.url, self.settings.reach) {
            Ok(url) => url,
            Err(refused) => return Answer::failed(refused.to_string()),
        };
        let id = message_id(delivery.event_id);
        let timestamp = at.timestamp();
        let signature = match sign(&delivery.secret, &id, timestamp, body) {
            Ok(s) => s,
            Err(e) => return Answer::failed(e.to_string()),
        };
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, &id)
            .header(standardwebhooks::HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string())
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, at));
                let error = (!response.status().is_success()).then(|| format!("answered {status}"));
                Answer { status: Some(status), retry_after, error }
            }
            Err(e) => Answer::failed(if e.is_timeout() {
                format!("no answer within {} s", self.settings.timeout.as_secs())
            } else if e.is_connect() {
                "could not connect".to_owned()
            } else {
                "the request failed".to_owned()
            }),
        }
    }

    /// What an answer means for the delivery, at `now`.
    fn outcome(&self, delivery: &DueDelivery, answer: &Answer, now: DateTime<Utc>) -> AttemptOutcome {
        match answer.status {
            Some(s) if (200..300).contains(&s) => return AttemptOutcome::Delivered,
            Some(410) => return AttemptOutcome::Disable("the endpoint answered 410 Gone".to_owned()),
            _ => {}
        }
        let delay = backoff(&self.settings, delivery.attempts).max(answer.retry_after.unwrap_or_default());
        let next = now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX);
        if next > delivery.created_at + self.settings.retry_for {
            AttemptOutcome::Failed
        } else {
            AttemptOutcome::Retry(next)
        }
    }

    /// The body of a delivery, from the rows as they are now.
    async fn render(&self, d: &DueDelivery) -> StoreResult<String> {
        let data = match d.event_type.as_str() {
            "match.created" | "match.updated" | "match.removed" => {
                let relation = match (d.other_id, d.event_type.as_str()) {
                    (Some(other), "match.created" | "match.updated") => {
                        self.store.event_relation(d.space, d.customer_id, other).await?
                    }
                    _ => None,
                };
                let (notice, contact_email) = relation.map(|r| (r.notice, r.contact_email)).unwrap_or_default();
                json!({
                    "managerCuRefNo": d.cu_ref_no,
                    "customerCuRefNo": d.other_cu_ref_no,
                    "notice": notice,
                    "contactEmail": contact_email,
                })
            }
            // Erasure reaches the outbox too: nothing but the cuRefNo is sent.
            "customer.deleted" => json!({ "cuRefNo": d.cu_ref_no }),
            "customer.merged" => json!({ "cuRefNo": d.cu_ref_no, "mergedInto": d.other_cu_ref_no }),
            _ if d.erased => json!({ "cuRefNo": d.cu_ref_no }),
            _ => {
                let profile = self.store.event_profile(d.space, d.customer_id).await?;
                serde_json::to_value(Profile::new(profile, Shape::Extended)).unwrap_or(Value::Null)
            }
        };
        let payload = json!({
            "type": d.event_type,
            "timestamp": d.event_at,
            "space": d.mode.as_str(),
            "data": data,
        });
        Ok(payload.to_string())
    }
}

/// What one attempt came back with.
struct Answer {
    status: Option<u16>,
    retry_after: Option<Duration>,
    error: Option<String>,
}

impl Answer {
    fn failed(error: String) -> Answer {
        Answer { status: None, retry_after: None, error: Some(error) }
    }
}

/// The delay after the `attempts`-th attempt failed: `retry_base` doubled per attempt,
/// at most `retry_max`, drawn from its upper half so retries of many deliveries spread.
fn backoff(settings: &WebhookSettings, attempts: i32) -> Duration {
    let exponent = attempts.clamp(1, 30) as u32 - 1;
    let full = settings.retry_base.saturating_mul(2u32.saturating_pow(exponent)).min(settings.retry_max);
    let half = full / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

/// The longest `Retry-After` honoured; a longer one is waited for this long.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(24 * 3600);

/// A `Retry-After` value (seconds, or an HTTP date) as a delay from `now`.
fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
            (at - now).to_std().unwrap_or_default()
        }
    };
    Some(delay.min(RETRY_AFTER_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_test_vector() {
        let signature = sign(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn secrets_are_fresh_keys() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_"));
        assert!(standardwebhooks::Webhook::new(&a).is_ok());
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        let settings = WebhookSettings::default();
        for attempts in 1..=40 {
            let full = settings.retry_base.saturating_mul(2u32.saturating_pow(attempts.min(30) as u32 - 1));
            let full = full.min(settings.retry_max);
            let got = backoff(&settings, attempts);
            assert!(got >= full / 2 && got <= full, "attempt {attempts}: {got:?} outside {full:?}");
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("Tue, 01 Dec 2026 10:01:00 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(retry_after("Tue, 01 Dec 2026 09:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(retry_after("99999999", now), Some(RETRY_AFTER_MAX));
        assert_eq!(retry_after("soon", now), None);
    }
}
