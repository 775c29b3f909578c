//! A contact's lists, written inside a create-or-update: groups, alternate addresses and
//! numbers, subscriptions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::Tx;
use serde_json::{Map, Value};
use sqlx::types::Json;

use crate::store::{
    merge_patch, profile_limits, ContactWrite, Group, ProfileLimit, SpaceId, StoreError, StoreResult,
    SubscriptionStatus,
};

const UPSERT_SUBSCRIPTION: &str = "insert into subscriptions (space_id, customer_id, external_id, \
     product_slug, product_code, order_number, order_hash, auto_renew, status, valid_until, created_at, updated_at) \
     values ($1, $2, $3, coalesce($4, ''), coalesce($5, ''), coalesce($6, ''), coalesce($7, ''), \
     coalesce($8, false), coalesce($9, 'active'), $10, $12, $12) \
     on conflict (space_id, external_id) do update set \
     product_slug = coalesce($4, subscriptions.product_slug), product_code = coalesce($5, subscriptions.product_code), \
     order_number = coalesce($6, subscriptions.order_number), order_hash = coalesce($7, subscriptions.order_hash), \
     auto_renew = coalesce($8, subscriptions.auto_renew), status = coalesce($9, subscriptions.status), \
     valid_until = case when $11 then $10 else subscriptions.valid_until end, updated_at = $12 \
     where subscriptions.customer_id = $2";

/// Replaces the contact's group memberships, creating groups by slug.
pub(super) async fn write_groups(
    tx: &mut Tx,
    space: SpaceId,
    id: i64,
    new: bool,
    list: &[Group],
    cache: &mut HashMap<String, i64>,
) -> StoreResult<()> {
    if !new {
        sqlx::query("delete from customer_group_members where space_id = $1 and customer_id = $2")
            .bind(space.0)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    for group in list {
        let group_id = match cache.get(&group.slug) {
            Some(g) => *g,
            None => {
                // The first name given for a slug stays its display name.
                let g: i64 = sqlx::query_scalar(
                    "insert into customer_groups (space_id, name, slug) values ($1, $2, $3) \
                     on conflict (space_id, slug) do update set name = customer_groups.name returning id",
                )
                .bind(space.0)
                .bind(&group.name)
                .bind(&group.slug)
                .fetch_one(&mut **tx)
                .await?;
                cache.insert(group.slug.clone(), g);
                g
            }
        };
        sqlx::query(
            "insert into customer_group_members (space_id, customer_id, group_id) values ($1, $2, $3) \
             on conflict do nothing",
        )
        .bind(space.0)
        .bind(id)
        .bind(group_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Replaces the contact's alternate addresses and numbers, where the write gives them.
pub(super) async fn write_alternates(
    tx: &mut Tx,
    space: SpaceId,
    id: i64,
    new: bool,
    w: &ContactWrite,
) -> StoreResult<()> {
    let points = [
        ("email", w.alternate_emails.as_ref().map(|l| l.iter().map(|e| e.canonical()).collect::<Vec<_>>())),
        ("phone", w.alternate_phones.as_ref().map(|l| l.iter().map(|p| p.as_str()).collect::<Vec<_>>())),
    ];
    for (kind, values) in points {
        let Some(values) = values else { continue };
        if !new {
            sqlx::query("delete from contact_points where space_id = $1 and customer_id = $2 and kind = $3")
                .bind(space.0)
                .bind(id)
                .bind(kind)
                .execute(&mut **tx)
                .await?;
        }
        for value in values {
            sqlx::query(
                "insert into contact_points (space_id, customer_id, kind, value) values ($1, $2, $3, $4) \
                 on conflict do nothing",
            )
            .bind(space.0)
            .bind(id)
            .bind(kind)
            .bind(value)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Upserts the write's subscriptions by external id.
pub(super) async fn write_subscriptions(
    tx: &mut Tx,
    space: SpaceId,
    id: i64,
    w: &ContactWrite,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for s in &w.subscriptions {
        let done = sqlx::query(UPSERT_SUBSCRIPTION)
            .bind(space.0)
            .bind(id)
            .bind(&s.external_id)
            .bind(s.product_slug.as_deref())
            .bind(s.product_code.as_deref())
            .bind(s.order_number.as_deref())
            .bind(s.order_hash.as_deref())
            .bind(s.auto_renew)
            .bind(s.status.map(|s| s.as_str()))
            .bind(s.valid_until.flatten())
            .bind(s.valid_until.is_some())
            .bind(now)
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() == 0 {
            // Checked free before writing: another writer took it since.
            return Err(StoreError::Conflict(format!("subscription {}", s.external_id)));
        }
    }
    Ok(())
}

/// The limit of `profile_limits` that contact `id` (`None`: a new one) would pass once the
/// write is applied, if any. Read before anything is written, so a refusal changes nothing.
pub(super) async fn over_limit(
    tx: &mut Tx,
    space: SpaceId,
    w: &ContactWrite,
    id: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<Option<ProfileLimit>> {
    let id = id.unwrap_or(0);
    if let Some(patch) = &w.meta {
        let stored: Option<Json<Map<String, Value>>> =
            sqlx::query_scalar("select meta from customers where id = $1").bind(id).fetch_optional(&mut **tx).await?;
        let mut merged = stored.map(|m| m.0).unwrap_or_default();
        merge_patch(&mut merged, patch);
        if serde_json::to_vec(&merged).map_or(true, |b| b.len() > profile_limits::META_BYTES) {
            return Ok(Some(ProfileLimit::Meta));
        }
    }
    if w.alternate_emails.is_some() || w.alternate_phones.is_some() {
        let stored: Vec<(String, i64)> = sqlx::query_as(
            "select kind, count(*) from contact_points where space_id = $1 and customer_id = $2 group by kind",
        )
        .bind(space.0)
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
        let stored = |kind: &str| stored.iter().find(|(k, _)| k == kind).map_or(0, |(_, n)| *n as usize);
        let emails = w.alternate_emails.as_ref().map_or_else(|| stored("email"), Vec::len);
        let phones = w.alternate_phones.as_ref().map_or_else(|| stored("phone"), Vec::len);
        if emails + phones > profile_limits::CONTACT_POINTS {
            return Ok(Some(ProfileLimit::ContactPoints));
        }
    }
    if !w.subscriptions.is_empty() {
        let stored: Vec<(String, String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "select external_id, status, valid_until from subscriptions where space_id = $1 and customer_id = $2",
        )
        .bind(space.0)
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
        let running = |status: &str, until: Option<DateTime<Utc>>| {
            status == SubscriptionStatus::Active.as_str() && until.is_none_or(|t| t > now)
        };
        let kept = stored
            .iter()
            .filter(|(external_id, ..)| !w.subscriptions.iter().any(|s| &s.external_id == external_id))
            .filter(|(_, status, until)| running(status, *until))
            .count();
        let written = w
            .subscriptions
            .iter()
            .filter(|s| {
                let before = stored.iter().find(|(external_id, ..)| external_id == &s.external_id);
                let status = s.status.map(|st| st.as_str()).or(before.map(|b| b.1.as_str())).unwrap_or("active");
                let until = match s.valid_until {
                    Some(until) => until,
                    None => before.and_then(|b| b.2),
                };
                running(status, until)
            })
            .count();
        if kept + written > profile_limits::RUNNING_SUBSCRIPTIONS {
            return Ok(Some(ProfileLimit::RunningSubscriptions));
        }
    }
    Ok(None)
}
