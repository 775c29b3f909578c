//! The write of a batch: what its accepted items came to, a statement per kind of change.
//! The profile's stored lists (groups, subscriptions) are computed here from the batch's
//! state, which holds every row they are made of, and written with the customer rows.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::super::{StoredAlternates, StoredSubscription};
use super::decide::{Alternate, Customer, Owner, State, Subscription};
use super::prefetch::read_groups;
use super::{at, bind_rows, dialect, rows, to_json, Tx};
use crate::normalize::{SearchKeys, SEARCH_RULES_VERSION};
use crate::store::{Group, RunningSubscription, SpaceId, StoreError, StoreResult, SubscriptionStatus};

/// A JSON text parameter (`x.{name}`) as its column stores it.
fn json_value(name: &str) -> String {
    dialect::JSON_VALUE.replace("{json}", &format!("x.{name}"))
}

/// The new customers, in the order they were created; `$2` is the time.
static INSERT_CUSTOMERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "insert into customers (id, space_id, cu_ref_no, email, email_canonical, email_rules_version, phone, \
         first_name, last_name, company_name, company_registration_number, tax_identification_number, premium, ban, \
         meta, profile_groups, profile_subscriptions, partner_customer_id, addresses, profile_alternates, \
         registration_ip, last_ip, created_at, updated_at, \
         search_name, search_last_name, search_company_name, search_email, search_version){} \
         select {}, $1, x.cu_ref_no, x.email, x.email_canonical, x.email_rules_version, x.phone, x.first_name, \
         x.last_name, x.company_name, x.company_registration_number, x.tax_identification_number, x.premium, x.ban, \
         {}, {}, {}, x.partner_customer_id, {}, {}, x.registration_ip, x.last_ip, $2, $2, x.search_name, \
         x.search_last_name, x.search_company_name, x.search_email, {SEARCH_RULES_VERSION} from {} \
         order by x.ord returning id, cu_ref_no",
        dialect::GIVEN_IDS,
        dialect::NEW_CUSTOMER_ID,
        json_value("meta"),
        json_value("profile_groups"),
        json_value("profile_subscriptions"),
        json_value("addresses"),
        json_value("profile_alternates"),
        rows(3, &FIELDS_WITH_ID)
    )
});

/// The changed existing customers, with their final values; `$2` is the time. A stored
/// list is replaced where the batch gives one.
static UPDATE_CUSTOMERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "update customers set email = x.email, email_canonical = x.email_canonical, \
         email_rules_version = x.email_rules_version, phone = x.phone, first_name = x.first_name, \
         last_name = x.last_name, company_name = x.company_name, \
         company_registration_number = x.company_registration_number, \
         tax_identification_number = x.tax_identification_number, premium = x.premium, ban = x.ban, meta = {}, \
         profile_groups = coalesce({}, customers.profile_groups), \
         profile_subscriptions = coalesce({}, customers.profile_subscriptions), \
         partner_customer_id = x.partner_customer_id, addresses = coalesce({}, customers.addresses), \
         profile_alternates = coalesce({}, customers.profile_alternates), \
         search_name = x.search_name, search_last_name = x.search_last_name, \
         search_company_name = x.search_company_name, search_email = x.search_email, \
         search_version = {SEARCH_RULES_VERSION}, \
         last_ip = x.last_ip, updated_at = $2 from {} where {}",
        json_value("meta"),
        json_value("profile_groups"),
        json_value("profile_subscriptions"),
        json_value("addresses"),
        json_value("profile_alternates"),
        rows(3, &FIELDS_WITH_ID),
        dialect::CUSTOMER_OF_ROW
    )
});

/// The fields of a customer row as `CustomerOut` gives them.
const CUSTOMER_FIELDS: &[(&str, &str)] = &[
    ("cu_ref_no", "text"),
    ("email", "text"),
    ("email_canonical", "text"),
    ("email_rules_version", "integer"),
    ("phone", "text"),
    ("first_name", "text"),
    ("last_name", "text"),
    ("company_name", "text"),
    ("company_registration_number", "text"),
    ("tax_identification_number", "text"),
    ("premium", "boolean"),
    ("ban", "boolean"),
    ("meta", "text"),
    ("profile_groups", "text"),
    ("profile_subscriptions", "text"),
    ("partner_customer_id", "text"),
    ("addresses", "text"),
    ("profile_alternates", "text"),
    ("registration_ip", "text"),
    ("last_ip", "text"),
    ("search_name", "text"),
    ("search_last_name", "text"),
    ("search_company_name", "text"),
    ("search_email", "text"),
];

/// The customer fields and its id: a changed customer, or a new one (its id drawn by the
/// insert where null).
static FIELDS_WITH_ID: LazyLock<Vec<(&str, &str)>> = LazyLock::new(|| [CUSTOMER_FIELDS, &[("id", "bigint")]].concat());

const REFERRAL_FIELDS: &[(&str, &str)] = &[("id", "bigint"), ("referrer_id", "bigint")];

static SET_REFERRERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "update customers set referrer_id = x.referrer_id from {} where {}",
        rows(2, REFERRAL_FIELDS),
        dialect::CUSTOMER_OF_ROW
    )
});

/// The groups the items name that are not stored yet; one a concurrent writer stored
/// first is not returned, and is read by `read_groups`.
static INSERT_GROUPS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "insert into customer_groups (space_id, name, slug) select $1, x.name, x.slug from {} where true \
         order by x.ord on conflict (space_id, slug) do nothing returning slug, id, name",
        rows(2, GROUP_FIELDS)
    )
});

const GROUP_FIELDS: &[(&str, &str)] = &[("name", "text"), ("slug", "text")];

const MEMBER_FIELDS: &[(&str, &str)] = &[("id", "bigint"), ("group_id", "bigint")];

/// Memberships that an item's list of groups no longer holds.
static DELETE_MEMBERSHIPS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "delete from customer_group_members where space_id = $1 and (customer_id, group_id) in \
         (select x.id, x.group_id from {})",
        rows(2, MEMBER_FIELDS)
    )
});

/// New memberships, with their customer's creation time and flags as the batch leaves its
/// row: a customer the batch creates was created at `$2`, and only an existing one's row
/// is read for it.
static INSERT_MEMBERSHIPS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "insert into customer_group_members (space_id, customer_id, group_id, created_at, premium, ban) \
         select $1, x.id, x.group_id, \
         case when x.new then $2 else (select customers.created_at from customers where {}) end, x.premium, x.ban \
         from {} where true on conflict do nothing",
        dialect::CUSTOMER_OF_ROW,
        rows(3, NEW_MEMBER_FIELDS)
    )
});

const NEW_MEMBER_FIELDS: &[(&str, &str)] =
    &[("id", "bigint"), ("group_id", "bigint"), ("new", "boolean"), ("premium", "boolean"), ("ban", "boolean")];

const FLAG_FIELDS: &[(&str, &str)] = &[("id", "bigint"), ("premium", "boolean"), ("ban", "boolean")];

/// The memberships of customers whose flags the batch changed take the new flags.
static FLAG_MEMBERSHIPS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "update customer_group_members set premium = x.premium, ban = x.ban from {} \
         where customer_group_members.space_id = $1 and customer_group_members.customer_id = x.id",
        rows(2, FLAG_FIELDS)
    )
});

/// The contact points of one kind (`$3`) of the customers `$2`.
static DELETE_POINTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "delete from contact_points where space_id = $1 and kind = $3 and customer_id in ({})",
        at(dialect::ID_LIST, 2)
    )
});

const POINT_FIELDS: &[(&str, &str)] = &[("id", "bigint"), ("kind", "text"), ("value", "text"), ("shown", "text")];

static INSERT_POINTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "insert into contact_points (space_id, customer_id, kind, value, shown) \
         select $1, x.id, x.kind, x.value, x.shown from {} where true on conflict do nothing",
        rows(2, POINT_FIELDS)
    )
});

/// Each written subscription once, with its final values; one owned by another customer
/// (taken since the prefetch) is left alone, and the batch is a `Conflict`.
static UPSERT_SUBSCRIPTIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "insert into subscriptions (space_id, customer_id, external_id, product_slug, product_code, order_number, \
         order_hash, auto_renew, status, valid_until, created_at, updated_at) \
         select $1, x.customer_id, x.external_id, x.product_slug, x.product_code, x.order_number, x.order_hash, \
         x.auto_renew, x.status, x.valid_until, $2, $2 from {} where true order by x.ord \
         on conflict (space_id, external_id) do update set product_slug = excluded.product_slug, \
         product_code = excluded.product_code, order_number = excluded.order_number, \
         order_hash = excluded.order_hash, auto_renew = excluded.auto_renew, status = excluded.status, \
         valid_until = excluded.valid_until, updated_at = excluded.updated_at \
         where subscriptions.customer_id = excluded.customer_id",
        rows(3, SUBSCRIPTION_FIELDS)
    )
});

const SUBSCRIPTION_FIELDS: &[(&str, &str)] = &[
    ("customer_id", "bigint"),
    ("external_id", "text"),
    ("product_slug", "text"),
    ("product_code", "text"),
    ("order_number", "text"),
    ("order_hash", "text"),
    ("auto_renew", "boolean"),
    ("status", "text"),
    ("valid_until", "timestamptz"),
];

/// A ban ends every live session of the customers `$2` at `$3`.
static END_SESSIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "update sessions set revoked_at = $3 where space_id = $1 and customer_id in ({}) and revoked_at is null",
        at(dialect::ID_LIST, 2)
    )
});

/// A customer row as `INSERT_CUSTOMERS` and `UPDATE_CUSTOMERS` read it; JSON columns go
/// as JSON text, and a list left out (`None`) is kept as stored.
#[derive(Serialize)]
struct CustomerOut<'a> {
    id: Option<i64>,
    cu_ref_no: &'a str,
    email: Option<&'a str>,
    email_canonical: Option<&'a str>,
    email_rules_version: i32,
    phone: Option<&'a str>,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    company_name: Option<&'a str>,
    company_registration_number: Option<&'a str>,
    tax_identification_number: Option<&'a str>,
    premium: bool,
    ban: bool,
    meta: String,
    profile_groups: Option<String>,
    profile_subscriptions: Option<String>,
    partner_customer_id: Option<&'a str>,
    addresses: Option<String>,
    profile_alternates: Option<String>,
    registration_ip: Option<&'a str>,
    last_ip: Option<&'a str>,
    search_name: Option<String>,
    search_last_name: Option<String>,
    search_company_name: Option<String>,
    search_email: Option<String>,
}

#[derive(Serialize)]
struct SubscriptionOut<'a> {
    customer_id: i64,
    external_id: &'a str,
    product_slug: &'a str,
    product_code: &'a str,
    order_number: &'a str,
    order_hash: &'a str,
    auto_renew: bool,
    status: &'a str,
    valid_until: Option<String>,
}

/// A time as sqlx writes it to either backend.
fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

impl State {
    /// Customer `c`'s row, with the stored lists it changed.
    fn row<'a>(&'a self, c: &'a Customer) -> StoreResult<CustomerOut<'a>> {
        let meta = to_json(&c.meta)?;
        let profile_groups = match &c.groups {
            Some(slugs) if c.new || self.memberships_change(c, slugs)? => Some(self.profile_groups(slugs)?),
            _ => None,
        };
        let profile_subscriptions =
            if c.new || c.subscriptions_changed { Some(self.profile_subscriptions(c)?) } else { None };
        let addresses = if c.new || c.addresses_changed { Some(to_json(&c.addresses)?) } else { None };
        let profile_alternates =
            if c.new || c.emails_changed || c.phones_changed { Some(profile_alternates(c)?) } else { None };
        let keys = SearchKeys::of(
            c.first_name.as_deref(),
            c.last_name.as_deref(),
            c.company_name.as_deref(),
            c.email.as_deref(),
        );
        Ok(CustomerOut {
            id: c.id,
            cu_ref_no: &c.cu_ref_no,
            email: c.email.as_deref(),
            email_canonical: c.email_canonical.as_deref(),
            email_rules_version: c.email_rules_version,
            phone: c.phone.as_deref(),
            first_name: c.first_name.as_deref(),
            last_name: c.last_name.as_deref(),
            company_name: c.company_name.as_deref(),
            company_registration_number: c.company_registration_number.as_deref(),
            tax_identification_number: c.tax_identification_number.as_deref(),
            premium: c.premium,
            ban: c.ban,
            meta,
            // A new customer stores both lists, empty where no item gave one.
            profile_groups: profile_groups.or_else(|| c.new.then(|| "[]".to_owned())),
            profile_subscriptions,
            partner_customer_id: c.partner_customer_id.as_deref(),
            addresses,
            profile_alternates,
            registration_ip: c.registration_ip.as_deref(),
            last_ip: c.last_ip.as_deref(),
            search_name: keys.name,
            search_last_name: keys.last_name,
            search_company_name: keys.company_name,
            search_email: keys.email,
        })
    }

    /// The stored group `slug`: its id and display name.
    fn group(&self, slug: &str) -> StoreResult<&(i64, String)> {
        self.group_ids.get(slug).ok_or_else(|| StoreError::Other(format!("group {slug} not stored")))
    }

    /// The ids of the groups `slugs`, each once.
    fn group_ids_of(&self, slugs: &[String]) -> StoreResult<Vec<i64>> {
        let mut ids = Vec::with_capacity(slugs.len());
        for slug in slugs {
            let (id, _) = self.group(slug)?;
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        Ok(ids)
    }

    /// Whether the groups `slugs` differ from those `c` is stored as a member of.
    fn memberships_change(&self, c: &Customer, slugs: &[String]) -> StoreResult<bool> {
        let ids = self.group_ids_of(slugs)?;
        Ok(ids.len() != c.stored_groups.len() || ids.iter().any(|id| !c.stored_groups.contains(id)))
    }

    /// The profile's groups for the memberships `slugs`: each group once, by name.
    fn profile_groups(&self, slugs: &[String]) -> StoreResult<String> {
        let mut groups: Vec<Group> = Vec::with_capacity(slugs.len());
        for slug in slugs {
            if groups.iter().any(|g| &g.slug == slug) {
                continue;
            }
            let (_, name) = self.group(slug)?;
            groups.push(Group { name: name.clone(), slug: slug.clone() });
        }
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        to_json(&groups)
    }

    /// The profile's subscriptions of `c`: the active ones, oldest first (as their ids
    /// run); whether one is still running is decided when the profile is read.
    fn profile_subscriptions(&self, c: &Customer) -> StoreResult<String> {
        let stored: Vec<StoredSubscription> = c
            .subscriptions
            .iter()
            .map(|&k| &self.subscriptions[k])
            .filter(|s| s.status == SubscriptionStatus::Active.as_str())
            .map(|s| StoredSubscription {
                subscription: RunningSubscription {
                    external_id: s.external_id.clone(),
                    product_slug: s.product_slug.clone(),
                    product_code: s.product_code.clone(),
                    order_number: s.order_number.clone(),
                    order_hash: s.order_hash.clone(),
                    auto_renew: s.auto_renew,
                },
                valid_until: s.valid_until,
            })
            .collect();
        to_json(&stored)
    }

    fn subscription_out<'a>(&self, s: &'a Subscription, owner: usize) -> StoreResult<SubscriptionOut<'a>> {
        Ok(SubscriptionOut {
            customer_id: self.id(owner)?,
            external_id: &s.external_id,
            product_slug: &s.product_slug,
            product_code: &s.product_code,
            order_number: &s.order_number,
            order_hash: &s.order_hash,
            auto_renew: s.auto_renew,
            status: &s.status,
            valid_until: s.valid_until.map(time_text),
        })
    }
}

/// The profile's alternates of `c`, as shown, sorted.
fn profile_alternates(c: &Customer) -> StoreResult<String> {
    fn shown(list: &[Alternate]) -> Vec<String> {
        let mut shown: Vec<String> = list.iter().map(|a| a.shown.clone()).collect();
        shown.sort_unstable();
        shown
    }
    to_json(&StoredAlternates { emails: shown(&c.alternate_emails), phones: shown(&c.alternate_phones) })
}

/// Stores the groups the items name that are not stored yet, and learns their ids.
async fn store_groups(tx: &mut Tx, space: SpaceId, state: &mut State) -> StoreResult<()> {
    #[derive(Serialize)]
    struct GroupOut<'a> {
        name: &'a str,
        slug: &'a str,
    }
    let missing: Vec<GroupOut> = state
        .groups
        .iter()
        .filter(|(_, slug)| !state.group_ids.contains_key(slug))
        .map(|(name, slug)| GroupOut { name, slug })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let inserted: Vec<(String, i64, String)> =
        bind_rows(sqlx::query_as(&INSERT_GROUPS).bind(space.0), &missing, GROUP_FIELDS)?.fetch_all(&mut **tx).await?;
    let stored_meanwhile: Vec<String> =
        missing.iter().filter(|g| !inserted.iter().any(|(s, _, _)| s == g.slug)).map(|g| g.slug.to_owned()).collect();
    if !stored_meanwhile.is_empty() {
        read_groups(tx, space, &stored_meanwhile, state).await?;
    }
    state.group_ids.extend(inserted.into_iter().map(|(slug, id, name)| (slug, (id, name))));
    Ok(())
}

/// Writes what the accepted items came to, a statement per kind of change.
pub(super) async fn write(tx: &mut Tx, space: SpaceId, state: &mut State, now: DateTime<Utc>) -> StoreResult<()> {
    store_groups(tx, space, state).await?;
    let new = state.customers.iter().filter(|c| c.new).map(|c| state.row(c)).collect::<StoreResult<Vec<_>>>()?;
    if !new.is_empty() {
        let inserted: Vec<(i64, String)> =
            bind_rows(sqlx::query_as(&INSERT_CUSTOMERS).bind(space.0).bind(now), &new, &FIELDS_WITH_ID)?
                .fetch_all(&mut **tx)
                .await?;
        drop(new);
        let ids: HashMap<String, i64> = inserted.into_iter().map(|(id, cu)| (cu, id)).collect();
        for c in state.customers.iter_mut().filter(|c| c.new) {
            c.id = ids.get(&c.cu_ref_no).copied();
        }
    }
    // An existing customer the items left as stored (the same list imported again) is
    // not written: its row, its `updatedAt` and its events stay as they were.
    let mut changed = Vec::new();
    for c in state.customers.iter().filter(|c| c.changed && !c.new) {
        let row = state.row(c)?;
        let lists_kept = row.profile_groups.is_none()
            && row.profile_subscriptions.is_none()
            && row.addresses.is_none()
            && row.profile_alternates.is_none();
        if !(lists_kept && c.referrer.is_none() && c.own_fields_kept()) {
            changed.push(row);
        }
    }
    if !changed.is_empty() {
        bind_rows(sqlx::query(&UPDATE_CUSTOMERS).bind(space.0).bind(now), &changed, &FIELDS_WITH_ID)?
            .execute(&mut **tx)
            .await?;
    }
    #[derive(Serialize)]
    struct Point<'a> {
        id: i64,
        kind: &'a str,
        value: &'a str,
        shown: &'a str,
    }
    #[derive(Serialize)]
    struct Member {
        id: i64,
        group_id: i64,
    }
    #[derive(Serialize)]
    struct NewMember {
        id: i64,
        group_id: i64,
        new: bool,
        premium: bool,
        ban: bool,
    }
    #[derive(Serialize)]
    struct Flags {
        id: i64,
        premium: bool,
        ban: bool,
    }
    #[derive(Serialize)]
    struct Referral {
        id: i64,
        referrer_id: Option<i64>,
    }
    let mut referrers = Vec::new();
    let mut ended = Vec::new();
    let mut memberships_ended = Vec::new();
    let mut memberships = Vec::new();
    let mut flagged = Vec::new();
    let mut points_cleared = [Vec::new(), Vec::new()];
    let mut points = Vec::new();
    for (i, c) in state.customers.iter().enumerate() {
        let id = state.id(i)?;
        if let Some(referrer) = c.referrer {
            referrers.push(Referral { id, referrer_id: referrer.map(|r| state.id(r)).transpose()? });
        }
        if c.end_sessions {
            ended.push(id);
        }
        if c.stored.as_ref().is_some_and(|(own, _)| (own.premium, own.ban) != (c.premium, c.ban)) {
            flagged.push(Flags { id, premium: c.premium, ban: c.ban });
        }
        if let Some(slugs) = &c.groups {
            let ids = state.group_ids_of(slugs)?;
            let ended = c.stored_groups.iter().filter(|g| !ids.contains(g));
            memberships_ended.extend(ended.map(|&group_id| Member { id, group_id }));
            let added = ids.iter().filter(|g| !c.stored_groups.contains(g));
            let (new, premium, ban) = (c.new, c.premium, c.ban);
            memberships.extend(added.map(|&group_id| NewMember { id, group_id, new, premium, ban }));
        }
        for (k, (changed, kind, values)) in
            [(c.emails_changed, "email", &c.alternate_emails), (c.phones_changed, "phone", &c.alternate_phones)]
                .into_iter()
                .enumerate()
        {
            if changed {
                if !c.new {
                    points_cleared[k].push(id);
                }
                points.extend(values.iter().map(|v| Point { id, kind, value: &v.value, shown: &v.shown }));
            }
        }
    }
    if !referrers.is_empty() {
        bind_rows(sqlx::query(&SET_REFERRERS).bind(space.0), &referrers, REFERRAL_FIELDS)?.execute(&mut **tx).await?;
    }
    if !memberships_ended.is_empty() {
        bind_rows(sqlx::query(&DELETE_MEMBERSHIPS).bind(space.0), &memberships_ended, MEMBER_FIELDS)?
            .execute(&mut **tx)
            .await?;
    }
    if !flagged.is_empty() {
        bind_rows(sqlx::query(&FLAG_MEMBERSHIPS).bind(space.0), &flagged, FLAG_FIELDS)?.execute(&mut **tx).await?;
    }
    if !memberships.is_empty() {
        bind_rows(sqlx::query(&INSERT_MEMBERSHIPS).bind(space.0).bind(now), &memberships, NEW_MEMBER_FIELDS)?
            .execute(&mut **tx)
            .await?;
    }
    for (ids, kind) in points_cleared.iter().zip(["email", "phone"]) {
        if !ids.is_empty() {
            sqlx::query(&DELETE_POINTS).bind(space.0).bind(to_json(ids)?).bind(kind).execute(&mut **tx).await?;
        }
    }
    if !points.is_empty() {
        bind_rows(sqlx::query(&INSERT_POINTS).bind(space.0), &points, POINT_FIELDS)?.execute(&mut **tx).await?;
    }
    let subscriptions = state
        .subscriptions
        .iter()
        .filter(|s| s.changed)
        .filter_map(|s| match s.owner {
            Owner::Batch(owner) => Some(state.subscription_out(s, owner)),
            Owner::Other => None,
        })
        .collect::<StoreResult<Vec<_>>>()?;
    if !subscriptions.is_empty() {
        let done =
            bind_rows(sqlx::query(&UPSERT_SUBSCRIPTIONS).bind(space.0).bind(now), &subscriptions, SUBSCRIPTION_FIELDS)?
                .execute(&mut **tx)
                .await?;
        if done.rows_affected() != subscriptions.len() as u64 {
            // Checked free before writing: another writer took one since.
            return Err(StoreError::Conflict("a subscription was taken meanwhile".into()));
        }
    }
    if !ended.is_empty() {
        sqlx::query(&END_SESSIONS).bind(space.0).bind(to_json(&ended)?).bind(now).execute(&mut **tx).await?;
    }
    Ok(())
}
