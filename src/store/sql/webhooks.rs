//! Webhook endpoints, deliveries and attempts. The events themselves are written by the
//! database's triggers (migration `webhooks`); this is the delivery worker's queue.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::admin::insert_audit;
use super::batch::{bind_rows, rows};
use super::{dialect, profile_by_id, SqlStore};
use crate::store::{
    now, AttemptOutcome, AttemptRecord, DeliveryAttempt, DueDelivery, Endpoint, Mode, NewAudit, NewEndpoint, Profile,
    RelationNow, SpaceId, StoreError, StoreResult, WebhookStore,
};

/// An endpoint's event types as stored: `,a,b,` so that one is found by `,a,`.
fn stored_events(events: &Option<Vec<String>>) -> Option<String> {
    events.as_ref().map(|list| format!(",{},", list.join(",")))
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: i64,
    organisation: String,
    mode: String,
    url: String,
    events: Option<String>,
    created_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
    disabled_reason: Option<String>,
}

impl From<EndpointRow> for Endpoint {
    fn from(r: EndpointRow) -> Self {
        Endpoint {
            id: r.id,
            organisation: r.organisation,
            mode: if r.mode == "sandbox" { Mode::Sandbox } else { Mode::Live },
            url: r.url,
            events: r.events.map(|e| e.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect()),
            created_at: r.created_at,
            disabled_at: r.disabled_at,
            disabled_reason: r.disabled_reason,
        }
    }
}

const ENDPOINT_COLUMNS: &str = "w.id, o.slug as organisation, s.mode, w.url, w.events, w.created_at, w.disabled_at, \
     w.disabled_reason from webhook_endpoints w join spaces s on s.id = w.space_id \
     join organisations o on o.id = s.organisation_id";

/// Takes the due deliveries (`$1` now, `$2` the lease's end, `$3` how many): each the
/// oldest pending one of its endpoint and customer, so a customer's events go out in
/// order. On PostgreSQL rows another process is claiming are skipped, not waited for.
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "with due as (select d.space_id, d.id from webhook_deliveries d \
         where d.state = 'pending' and d.next_attempt_at <= $1 \
         and not exists (select 1 from webhook_deliveries p where p.space_id = d.space_id \
         and p.endpoint_id = d.endpoint_id and p.customer_id = d.customer_id and p.state = 'pending' and p.id < d.id) \
         order by d.next_attempt_at limit $3{}) \
         update webhook_deliveries set next_attempt_at = $2, attempts = webhook_deliveries.attempts + 1 from due \
         where webhook_deliveries.space_id = due.space_id and webhook_deliveries.id = due.id \
         returning webhook_deliveries.space_id, webhook_deliveries.id",
        dialect::SKIP_LOCKED
    )
});

const CLAIMED_FIELDS: &[(&str, &str)] = &[("space_id", "bigint"), ("id", "bigint")];

/// An event's customer `c`, or its other customer `o` (absent: null columns), erased
/// outright rather than merged: what the erasure's trigger drops kept bodies for. Never
/// null, and parenthesised, so it can be negated or joined to other conditions as it is.
const ERASED_OUTRIGHT: &str =
    "(c.erased_at is not null and c.merged_into is null or o.erased_at is not null and o.merged_into is null)";

/// The claimed deliveries (rows of `{space_id, id}`, each found by its primary key), with
/// what sending them needs. A body kept from an earlier attempt is not sent once either
/// customer of the event is erased: an attempt recorded while the erasure was still
/// uncommitted kept it after the erasure's trigger had dropped the bodies it could see.
/// A merge leaves the duplicate erased too, but naming its primary, and keeps the bodies
/// as the trigger does: its retries send what was sent.
static CLAIMED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select d.space_id, d.id, d.endpoint_id, w.url, w.secret, d.event_id, e.type as event_type, \
         e.created_at as event_at, s.mode, e.customer_id, c.cu_ref_no, c.erased_at is not null as erased, \
         e.other_id, o.cu_ref_no as other_cu_ref_no, \
         case when not {} then d.body end as body, d.attempts, d.created_at \
         from {} cross join webhook_deliveries d \
         join webhook_endpoints w on w.space_id = d.space_id and w.id = d.endpoint_id \
         join webhook_events e on e.space_id = d.space_id and e.id = d.event_id \
         join spaces s on s.id = d.space_id \
         join customers c on c.space_id = e.space_id and c.id = e.customer_id \
         left join customers o on o.space_id = e.space_id and o.id = e.other_id \
         where d.space_id = x.space_id and d.id = x.id order by d.next_attempt_at, d.id",
        ERASED_OUTRIGHT,
        rows(1, CLAIMED_FIELDS)
    )
});

/// A failed attempt of delivery `$2` waits until `$3`, keeping the body it sent (`$4`) so
/// the retry sends the same bytes; but no body is kept for an event (`$5`) whose customer
/// was erased while the attempt was in flight, and a body an earlier attempt kept past
/// an erasure (see `CLAIMED`) is dropped.
static RETRY_LATER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "update webhook_deliveries set next_attempt_at = $3, \
         body = case when exists (select 1 from webhook_events e \
         join customers c on c.space_id = e.space_id and c.id = e.customer_id \
         left join customers o on o.space_id = e.space_id and o.id = e.other_id \
         where e.space_id = $1 and e.id = $5 and {ERASED_OUTRIGHT}) \
         then null else coalesce(body, $4) end \
         where space_id = $1 and id = $2"
    )
});

#[derive(sqlx::FromRow)]
struct DueRow {
    space_id: i64,
    id: i64,
    endpoint_id: i64,
    url: String,
    secret: String,
    event_id: i64,
    event_type: String,
    event_at: DateTime<Utc>,
    mode: String,
    customer_id: i64,
    cu_ref_no: String,
    erased: bool,
    other_id: Option<i64>,
    other_cu_ref_no: Option<String>,
    body: Option<String>,
    attempts: i32,
    created_at: DateTime<Utc>,
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn create_endpoint(
        &self,
        organisation: &str,
        mode: Mode,
        endpoint: &NewEndpoint,
        audit: &NewAudit,
    ) -> StoreResult<Endpoint> {
        let now = now();
        let mut tx = self.begin_with(dialect::BEGIN_WRITE).await?;
        let space: Option<i64> = sqlx::query_scalar(
            "select s.id from spaces s join organisations o on o.id = s.organisation_id \
             where o.slug = $1 and s.mode = $2",
        )
        .bind(organisation)
        .bind(mode.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(space) = space else { return Err(StoreError::NotFound) };
        let id: i64 = sqlx::query_scalar(
            "insert into webhook_endpoints (space_id, url, events, secret, created_at) \
             values ($1, $2, $3, $4, $5) returning id",
        )
        .bind(space)
        .bind(&endpoint.url)
        .bind(stored_events(&endpoint.events))
        .bind(&endpoint.secret)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit, Some(&id.to_string()), None, None, now).await?;
        tx.commit().await?;
        Ok(Endpoint {
            id,
            organisation: organisation.to_owned(),
            mode,
            url: endpoint.url.clone(),
            events: endpoint.events.clone(),
            created_at: now,
            disabled_at: None,
            disabled_reason: None,
        })
    }

    async fn list_endpoints(&self, organisation: Option<&str>) -> StoreResult<Vec<Endpoint>> {
        static SQL: LazyLock<String> =
            LazyLock::new(|| format!("select {ENDPOINT_COLUMNS} where $1 is null or o.slug = $1 order by w.id"));
        let rows: Vec<EndpointRow> =
            sqlx::query_as(&SQL).bind(organisation).fetch_all(&mut *self.conn().await?).await?;
        Ok(rows.into_iter().map(Endpoint::from).collect())
    }

    async fn endpoint(&self, id: i64) -> StoreResult<Option<Endpoint>> {
        static SQL: LazyLock<String> = LazyLock::new(|| format!("select {ENDPOINT_COLUMNS} where w.id = $1"));
        let row: Option<EndpointRow> = sqlx::query_as(&SQL).bind(id).fetch_optional(&mut *self.conn().await?).await?;
        Ok(row.map(Endpoint::from))
    }

    async fn delete_endpoint(&self, id: i64, audit: &NewAudit) -> StoreResult<bool> {
        let now = now();
        let mut tx = self.begin_with(dialect::BEGIN_WRITE).await?;
        let deleted = sqlx::query("delete from webhook_endpoints where id = $1").bind(id).execute(&mut *tx).await?;
        insert_audit(&mut tx, audit, None, None, None, now).await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn list_attempts(&self, endpoint_id: i64, limit: i64) -> StoreResult<Vec<DeliveryAttempt>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: i64,
            delivery_id: i64,
            event_id: i64,
            event_type: String,
            attempted_at: DateTime<Utc>,
            status: Option<i32>,
            latency_ms: i64,
            error: Option<String>,
            state: String,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "select a.id, a.delivery_id, d.event_id, e.type as event_type, a.attempted_at, a.status, a.latency_ms, \
             a.error, d.state from webhook_attempts a \
             join webhook_deliveries d on d.space_id = a.space_id and d.id = a.delivery_id \
             join webhook_events e on e.space_id = d.space_id and e.id = d.event_id \
             where a.space_id = (select space_id from webhook_endpoints where id = $1) and a.endpoint_id = $1 \
             order by a.id desc limit $2",
        )
        .bind(endpoint_id)
        .bind(limit)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DeliveryAttempt {
                id: r.id,
                delivery_id: r.delivery_id,
                event_id: r.event_id,
                event_type: r.event_type,
                attempted_at: r.attempted_at,
                status: r.status,
                latency_ms: r.latency_ms,
                error: r.error,
                delivery_state: r.state,
            })
            .collect())
    }

    async fn event_space(&self, event_id: i64) -> StoreResult<Option<(String, SpaceId)>> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "select o.slug, e.space_id from webhook_events e join spaces s on s.id = e.space_id \
             join organisations o on o.id = s.organisation_id where e.id = $1",
        )
        .bind(event_id)
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        Ok(row.map(|(slug, space)| (slug, SpaceId(space))))
    }

    async fn replay_event(&self, space: SpaceId, event_id: i64, audit: &NewAudit) -> StoreResult<u64> {
        let now = now();
        let mut tx = self.begin_with(dialect::BEGIN_WRITE).await?;
        let queued = sqlx::query(&format!(
            "insert into webhook_deliveries (space_id, endpoint_id, event_id, customer_id, next_attempt_at, created_at) \
             select e.space_id, w.id, e.id, e.customer_id, $3, $3 from webhook_events e \
             join webhook_endpoints w on w.space_id = e.space_id and w.disabled_at is null \
             and (w.events is null or {}(w.events, ',' || e.type || ',') > 0) \
             where e.space_id = $1 and e.id = $2",
            dialect::FIND_TEXT
        ))
        .bind(space.0)
        .bind(event_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({ "deliveries": queued.rows_affected() });
        insert_audit(&mut tx, audit, None, None, Some(&detail), now).await?;
        tx.commit().await?;
        Ok(queued.rows_affected())
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<DueDelivery>> {
        let mut conn = self.conn().await?;
        #[derive(sqlx::FromRow, serde::Serialize)]
        struct Claimed {
            space_id: i64,
            id: i64,
        }
        let claimed: Vec<Claimed> =
            sqlx::query_as(&CLAIM).bind(now).bind(lease_until).bind(limit).fetch_all(&mut *conn).await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<DueRow> =
            bind_rows(sqlx::query_as(&CLAIMED), &claimed, CLAIMED_FIELDS)?.fetch_all(&mut *conn).await?;
        Ok(rows
            .into_iter()
            .map(|r| DueDelivery {
                space: SpaceId(r.space_id),
                id: r.id,
                endpoint_id: r.endpoint_id,
                url: r.url,
                secret: r.secret,
                event_id: r.event_id,
                event_type: r.event_type,
                event_at: r.event_at,
                mode: if r.mode == "sandbox" { Mode::Sandbox } else { Mode::Live },
                customer_id: r.customer_id,
                cu_ref_no: r.cu_ref_no,
                erased: r.erased,
                other_id: r.other_id,
                other_cu_ref_no: r.other_cu_ref_no,
                body: r.body,
                attempts: r.attempts,
                created_at: r.created_at,
            })
            .collect())
    }

    async fn finish_attempt(
        &self,
        delivery: &DueDelivery,
        record: &AttemptRecord,
        outcome: &AttemptOutcome,
        body: &str,
    ) -> StoreResult<()> {
        let (space, id) = (delivery.space.0, delivery.id);
        let mut tx = self.begin_with(dialect::BEGIN_WRITE).await?;
        sqlx::query(
            "insert into webhook_attempts (space_id, delivery_id, endpoint_id, attempted_at, status, latency_ms, error) \
             select $1, $2, $3, $4, $5, $6, $7 \
             where exists (select 1 from webhook_deliveries where space_id = $1 and id = $2)",
        )
        .bind(space)
        .bind(id)
        .bind(delivery.endpoint_id)
        .bind(record.at)
        .bind(record.status)
        .bind(record.latency_ms)
        .bind(record.error.as_deref())
        .execute(&mut *tx)
        .await?;
        let finished = now();
        match outcome {
            AttemptOutcome::Delivered | AttemptOutcome::Failed => {
                let state = if *outcome == AttemptOutcome::Delivered { "delivered" } else { "failed" };
                sqlx::query(
                    "update webhook_deliveries set state = $3, finished_at = $4, body = null \
                     where space_id = $1 and id = $2",
                )
                .bind(space)
                .bind(id)
                .bind(state)
                .bind(finished)
                .execute(&mut *tx)
                .await?;
            }
            AttemptOutcome::Retry(at) => {
                sqlx::query(&RETRY_LATER)
                    .bind(space)
                    .bind(id)
                    .bind(*at)
                    .bind(body)
                    .bind(delivery.event_id)
                    .execute(&mut *tx)
                    .await?;
            }
            AttemptOutcome::Disable(reason) => {
                sqlx::query(
                    "update webhook_endpoints set disabled_at = $3, disabled_reason = $4 \
                     where space_id = $1 and id = $2 and disabled_at is null",
                )
                .bind(space)
                .bind(delivery.endpoint_id)
                .bind(finished)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "update webhook_deliveries set state = 'failed', finished_at = $3, body = null \
                     where space_id = $1 and endpoint_id = $2 and state = 'pending'",
                )
                .bind(space)
                .bind(delivery.endpoint_id)
                .bind(finished)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn event_profile(&self, space: SpaceId, id: i64) -> StoreResult<Profile> {
        profile_by_id(&mut *self.conn().await?, space, id, now()).await
    }

    async fn event_relation(&self, space: SpaceId, manager: i64, customer: i64) -> StoreResult<Option<RelationNow>> {
        let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "select notice, contact_email from customer_matches \
             where space_id = $1 and manager_id = $2 and customer_id = $3",
        )
        .bind(space.0)
        .bind(manager)
        .bind(customer)
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        Ok(row.map(|(notice, contact_email)| RelationNow { notice, contact_email }))
    }
}
