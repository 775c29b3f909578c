//! The reads of a batch: every row its items could touch, customers locked.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};

use super::super::{OwnFields, OWN_COLUMNS};
use super::decide::{Alternate, Customer, Owner, State, Subscription};
use super::{at, dialect, to_json, Tx};
use crate::store::{ContactWrite, KeyKind, SpaceId, StoreResult};

/// The customer columns a batch decides on and writes back.
static CUSTOMER_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    let own: Vec<String> = OWN_COLUMNS.split(", ").map(|c| format!("c.{}", c.trim())).collect();
    format!("c.id, c.cu_ref_no, c.last_ip, {}", own.join(", "))
});

/// Every live customer the batch could touch, locked: by cuRefNo (`$2`: the items' and
/// their referrals'), by canonical e-mail (`$3`), by phone (`$4`), own or alternate, by
/// partnerCustomerId (`$5`). Each lookup is driven from its list (`cross join` keeps that
/// order on SQLite).
static PREFETCH_CUSTOMERS: LazyLock<String> = LazyLock::new(|| {
    let list = |n| format!("({}) k cross join", at(dialect::TEXT_LIST, n));
    let points = dialect::CONTACT_POINTS_BY_VALUE;
    let ids = format!(
        "select o.id from {} customers o where o.space_id = $1 and o.cu_ref_no = k.value \
         union select o.id from {} customers o where o.space_id = $1 and o.email_canonical = k.value \
         union select p.customer_id from {} {points} where p.space_id = $1 and p.kind = 'email' and p.value = k.value \
         union select o.id from {} customers o where o.space_id = $1 and o.phone = k.value \
         union select p.customer_id from {} {points} where p.space_id = $1 and p.kind = 'phone' and p.value = k.value \
         union select o.id from {} customers o where o.space_id = $1 and o.partner_customer_id = k.value",
        list(2),
        list(3),
        list(3),
        list(4),
        list(4),
        list(5),
    );
    format!(
        "select {} from customers c where c.space_id = $1 and c.erased_at is null and {} order by c.id{}",
        *CUSTOMER_COLUMNS,
        dialect::ID_IN_SUBQUERY.replace("{column}", "c.id").replace("{ids}", &ids),
        dialect::LOCK_ROW
    )
});

/// The alternate addresses and numbers of the customers `$2`.
static PREFETCH_POINTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select p.customer_id, p.kind, p.value, coalesce(p.shown, p.value) from ({}) k cross join contact_points p \
         where p.space_id = $1 and p.customer_id = k.value",
        at(dialect::ID_LIST, 2)
    )
});

/// The subscriptions of the customers `$2`, and those with the external ids `$3`.
static PREFETCH_SUBSCRIPTIONS: LazyLock<String> = LazyLock::new(|| {
    let columns = "s.id, s.customer_id, s.external_id, s.product_slug, s.product_code, s.order_number, \
         s.order_hash, s.auto_renew, s.status, s.valid_until";
    format!(
        "select {columns} from ({}) k cross join subscriptions s where s.space_id = $1 and s.customer_id = k.value \
         union select {columns} from ({}) k cross join subscriptions s \
         where s.space_id = $1 and s.external_id = k.value order by 1",
        at(dialect::ID_LIST, 2),
        at(dialect::TEXT_LIST, 3)
    )
});

/// The groups with the slugs `$2`: their ids and display names.
static GROUPS_BY_SLUG: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select g.slug, g.id, g.name from ({}) k cross join customer_groups g where g.space_id = $1 and g.slug = k.value",
        at(dialect::TEXT_LIST, 2)
    )
});

/// The memberships of the customers `$2`, with their groups.
static PREFETCH_MEMBERSHIPS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select gm.customer_id, g.slug, g.id, g.name from ({}) k cross join customer_group_members gm \
         join customer_groups g on g.space_id = gm.space_id and g.id = gm.group_id \
         where gm.space_id = $1 and gm.customer_id = k.value",
        at(dialect::ID_LIST, 2)
    )
});

#[derive(sqlx::FromRow)]
struct CustomerRow {
    id: i64,
    cu_ref_no: String,
    last_ip: Option<String>,
    #[sqlx(flatten)]
    own: OwnFields,
}

/// Reads and locks everything the items could touch.
pub(super) async fn prefetch(tx: &mut Tx, space: SpaceId, writes: &[ContactWrite]) -> StoreResult<State> {
    let mut cu_ref_nos = HashSet::new();
    let mut emails = HashSet::new();
    let mut phones = HashSet::new();
    let mut partner_ids = HashSet::new();
    let mut external_ids = HashSet::new();
    let mut slugs = HashSet::new();
    for w in writes {
        w.keys(|kind, value, lookup| {
            let set = match kind {
                _ if !lookup => return,
                KeyKind::CuRefNo => &mut cu_ref_nos,
                KeyKind::Email => &mut emails,
                KeyKind::Phone => &mut phones,
                KeyKind::PartnerId => &mut partner_ids,
                KeyKind::Subscription => &mut external_ids,
                KeyKind::Group => &mut slugs,
            };
            set.insert(value);
        });
    }
    let mut state = State::default();
    let rows: Vec<CustomerRow> =
        if cu_ref_nos.is_empty() && emails.is_empty() && phones.is_empty() && partner_ids.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(&PREFETCH_CUSTOMERS)
                .bind(space.0)
                .bind(to_json(&cu_ref_nos)?)
                .bind(to_json(&emails)?)
                .bind(to_json(&phones)?)
                .bind(to_json(&partner_ids)?)
                .fetch_all(&mut **tx)
                .await?
        };
    let mut by_id = HashMap::with_capacity(rows.len());
    for r in rows {
        let own = r.own;
        let stored = Some((own.clone(), r.last_ip.clone()));
        let i = state.add(Customer {
            id: Some(r.id),
            rank: r.id,
            new: false,
            changed: false,
            cu_ref_no: r.cu_ref_no,
            email: own.email,
            email_canonical: own.email_canonical,
            email_rules_version: own.email_rules_version,
            phone: own.phone,
            first_name: own.first_name,
            last_name: own.last_name,
            company_name: own.company_name,
            company_registration_number: own.company_registration_number,
            tax_identification_number: own.tax_identification_number,
            premium: own.premium,
            ban: own.ban,
            meta: own.meta.0,
            registration_ip: None,
            last_ip: r.last_ip,
            partner_customer_id: own.partner_customer_id,
            addresses: own.addresses.0,
            stored,
            ..Customer::default()
        });
        by_id.insert(r.id, i);
    }
    let ids = to_json(&by_id.keys().collect::<Vec<_>>())?;
    if !by_id.is_empty() {
        let points: Vec<(i64, String, String, String)> =
            sqlx::query_as(&PREFETCH_POINTS).bind(space.0).bind(&ids).fetch_all(&mut **tx).await?;
        for (id, kind, value, shown) in points {
            let i = by_id[&id];
            let (list, index) = if kind == "email" {
                (&mut state.customers[i].alternate_emails, &mut state.by_alternate_email)
            } else {
                (&mut state.customers[i].alternate_phones, &mut state.by_alternate_phone)
            };
            index.entry(value.clone()).or_default().push(i);
            list.push(Alternate { value, shown });
        }
    }
    if !by_id.is_empty() || !external_ids.is_empty() {
        type Row = (i64, i64, String, String, String, String, String, bool, String, Option<DateTime<Utc>>);
        let subscriptions: Vec<Row> = sqlx::query_as(&PREFETCH_SUBSCRIPTIONS)
            .bind(space.0)
            .bind(&ids)
            .bind(to_json(&external_ids)?)
            .fetch_all(&mut **tx)
            .await?;
        for (_, customer_id, external_id, slug, code, number, hash, auto_renew, status, valid_until) in subscriptions {
            let owner = by_id.get(&customer_id).map_or(Owner::Other, |&i| Owner::Batch(i));
            let k = state.subscriptions.len();
            if let Owner::Batch(i) = owner {
                state.customers[i].subscriptions.push(k);
            }
            state.by_external_id.insert(external_id.clone(), k);
            state.subscriptions.push(Subscription {
                owner,
                external_id,
                product_slug: slug,
                product_code: code,
                order_number: number,
                order_hash: hash,
                auto_renew,
                status,
                valid_until,
                changed: false,
            });
        }
    }
    // Whose memberships an item's list of groups (even an empty one) replaces.
    if writes.iter().any(|w| w.groups.is_some()) && !by_id.is_empty() {
        let memberships: Vec<(i64, String, i64, String)> =
            sqlx::query_as(&PREFETCH_MEMBERSHIPS).bind(space.0).bind(&ids).fetch_all(&mut **tx).await?;
        for (customer_id, slug, id, name) in memberships {
            state.customers[by_id[&customer_id]].stored_groups.push(id);
            state.group_ids.insert(slug, (id, name));
        }
    }
    if !slugs.is_empty() {
        read_groups(tx, space, &slugs, &mut state).await?;
    }
    Ok(state)
}

/// Learns the ids and display names of the stored groups `slugs`.
pub(super) async fn read_groups(
    tx: &mut Tx,
    space: SpaceId,
    slugs: &(impl serde::Serialize + ?Sized),
    state: &mut State,
) -> StoreResult<()> {
    let groups: Vec<(String, i64, String)> =
        sqlx::query_as(&GROUPS_BY_SLUG).bind(space.0).bind(to_json(slugs)?).fetch_all(&mut **tx).await?;
    state.group_ids.extend(groups.into_iter().map(|(slug, id, name)| (slug, (id, name))));
    Ok(())
}
