//! Merging two customers of a space in one transaction: the primary's row takes what the
//! duplicate had (its own fields where the primary's are empty, its lists joined to the
//! primary's), every row the duplicate owns moves to the primary, and the duplicate is
//! left as a tombstone that names the primary. A statement per table, whatever either
//! customer holds.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::admin::insert_audit;
use super::batch::{bind_rows, rows};
use super::contacts::ERASE_CUSTOMER;
use super::{dialect, profile_by_id, OwnFields, SqlStore, StoredAlternates, StoredSubscription, Tx, OWN_COLUMNS};
use crate::normalize::{new_address_id, SearchKeys, SEARCH_RULES_VERSION};
use crate::store::{
    now, profile_limits, Address, Group, Merge, MergeRefusal, MergeSide, Profile, ProfileLimit, SpaceId, StoreResult,
};

/// Both customers, locked in the order of their ids (so two merges of the same pair wait
/// for each other instead of deadlocking), tombstones included.
static LOCK_BOTH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select id, cu_ref_no, erased_at is not null as erased, merged_into, {OWN_COLUMNS}, referrer_id, \
         password_hash, account_confirmed_at, credit_balance, last_seen_at \
         from customers where space_id = $1 and cu_ref_no in ($2, $3) order by id{}",
        dialect::LOCK_ROW
    )
});

/// One of the two customers as the merge reads it.
#[derive(sqlx::FromRow)]
struct Side {
    id: i64,
    cu_ref_no: String,
    erased: bool,
    merged_into: Option<i64>,
    #[sqlx(flatten)]
    own: OwnFields,
    #[sqlx(flatten)]
    rest: Rest,
}

/// The columns beside its own fields that a merge carries over to the primary.
#[derive(sqlx::FromRow)]
struct Rest {
    referrer_id: Option<i64>,
    password_hash: Option<String>,
    account_confirmed_at: Option<DateTime<Utc>>,
    credit_balance: i64,
    last_seen_at: Option<DateTime<Utc>>,
}

/// A contact point as `contact_points` holds it.
#[derive(sqlx::FromRow, serde::Serialize)]
struct Point {
    customer_id: i64,
    kind: String,
    value: String,
    shown: Option<String>,
}

/// The rows the duplicate (`$2`) owns that simply change hands to the primary (`$3`).
const MOVE_ROWS: [&str; 6] = [
    "update credit_ledger set customer_id = $3 where space_id = $1 and customer_id = $2",
    "update subscriptions set customer_id = $3 where space_id = $1 and customer_id = $2",
    "update sessions set customer_id = $3 where space_id = $1 and customer_id = $2",
    "update account_tokens set customer_id = $3 where space_id = $1 and customer_id = $2",
    "update mail_outbox set customer_id = $3 where space_id = $1 and customer_id = $2",
    // Tombstones of earlier merges into the duplicate name the primary from now on.
    "update customers set merged_into = $3 where space_id = $1 and merged_into = $2",
];

/// Group memberships: the primary joins the duplicate's groups (with its own creation
/// time, and its flags as `FLAG_MEMBERSHIPS` leaves them).
const MOVE_MEMBERSHIPS: [&str; 2] = [
    "insert into customer_group_members (space_id, customer_id, group_id, created_at, premium, ban) \
     select m.space_id, $3, m.group_id, p.created_at, p.premium, p.ban from customer_group_members m \
     cross join customers p where m.space_id = $1 and m.customer_id = $2 and p.space_id = $1 and p.id = $3 \
     on conflict do nothing",
    "delete from customer_group_members where space_id = $1 and customer_id = $2",
];

/// A relation between the two would relate the primary to itself: it goes.
const DROP_PAIR: &str = "delete from customer_matches where space_id = $1 \
     and ((manager_id = $2 and customer_id = $3) or (manager_id = $3 and customer_id = $2))";

/// One side of the duplicate's (`$2`) relations moved to the primary (`$3`) at `$4`: a
/// relation both have keeps the primary's notice and contact address, the duplicate's
/// filling an empty one, and the duplicate's copy goes; the rest change hands.
fn move_relations(me: &str, other: &str) -> [Statement; 3] {
    [
        Statement::new(format!(
            "update customer_matches as p set notice = coalesce(p.notice, d.notice), \
             contact_email = coalesce(p.contact_email, d.contact_email), updated_at = $4 \
             from customer_matches as d where p.space_id = $1 and p.{me} = $3 and d.space_id = $1 \
             and d.{me} = $2 and d.{other} = p.{other} \
             and ((p.notice is null and d.notice is not null) or (p.contact_email is null and d.contact_email is not null))"
        )),
        Statement::new(format!(
            "delete from customer_matches where space_id = $1 and {me} = $2 and {other} in \
             (select {other} from customer_matches where space_id = $1 and {me} = $3)"
        )),
        Statement::new(format!("update customer_matches set {me} = $3 where space_id = $1 and {me} = $2")),
    ]
}

/// A statement of the space (`$1`) and the duplicate (`$2`), and of the primary (`$3`)
/// and the time (`$4`) where its text names them. A statement is bound exactly the
/// parameters it names: PostgreSQL refuses more, and a connection that prepared the same
/// text for another caller (erasure shares some) holds it with that count.
struct Statement {
    sql: String,
}

impl Statement {
    fn new(sql: impl Into<String>) -> Self {
        Statement { sql: sql.into() }
    }

    async fn run(
        &self,
        tx: &mut Tx,
        space: SpaceId,
        duplicate: i64,
        primary: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut query = sqlx::query(&self.sql).bind(space.0).bind(duplicate);
        if self.sql.contains("$3") {
            query = query.bind(primary);
        }
        if self.sql.contains("$4") {
            query = query.bind(now);
        }
        query.execute(&mut **tx).await?;
        Ok(())
    }
}

/// Every move of rows from the duplicate to the primary, in order.
static MOVES: LazyLock<Vec<Statement>> = LazyLock::new(|| {
    let mut all: Vec<Statement> = MOVE_ROWS.iter().chain(&MOVE_MEMBERSHIPS).map(|&sql| Statement::new(sql)).collect();
    all.push(Statement::new(DROP_PAIR));
    all.extend(move_relations("manager_id", "customer_id"));
    all.extend(move_relations("customer_id", "manager_id"));
    all.push(Statement::new(MOVE_REFERRALS));
    all
});

/// Customers the duplicate referred are the primary's referrals now (the primary itself
/// takes its referrer in `UPDATE_PRIMARY`).
const MOVE_REFERRALS: &str =
    "update customers set referrer_id = $3, updated_at = $4 where space_id = $1 and referrer_id = $2 and id <> $3";

const POINT_FIELDS: &[(&str, &str)] =
    &[("customer_id", "bigint"), ("kind", "text"), ("value", "text"), ("shown", "text")];

static INSERT_POINTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "insert into contact_points (space_id, customer_id, kind, value, shown) \
         select $1, x.customer_id, x.kind, x.value, x.shown from {}",
        rows(2, POINT_FIELDS)
    )
});

const PRIMARY_GROUPS: &str = "select g.name, g.slug from customer_group_members m \
     join customer_groups g on g.space_id = m.space_id and g.id = m.group_id \
     where m.space_id = $1 and m.customer_id = $2 order by g.name";

const PRIMARY_SUBSCRIPTIONS: &str = "select external_id, product_slug, product_code, order_number, order_hash, \
     auto_renew, valid_until from subscriptions where space_id = $1 and customer_id = $2 and status = 'active' \
     order by id";

/// A ban ends every live session, the duplicate's moved ones included.
const END_SESSIONS: &str =
    "update sessions set revoked_at = $3 where space_id = $1 and customer_id = $2 and revoked_at is null";

/// The primary's (`$2`) memberships take its flags as merged.
const FLAG_MEMBERSHIPS: &str =
    "update customer_group_members set premium = $3, ban = $4 where space_id = $1 and customer_id = $2";

/// The primary as merged, every column a merge may change.
const UPDATE_PRIMARY: &str = "update customers set email = $3, email_canonical = $4, email_rules_version = $5, \
     phone = $6, first_name = $7, last_name = $8, company_name = $9, company_registration_number = $10, \
     tax_identification_number = $11, premium = $12, ban = $13, meta = $14, referrer_id = $15, \
     partner_customer_id = $16, addresses = $17, profile_alternates = $18, profile_groups = $19, \
     profile_subscriptions = $20, credit_balance = $21, password_hash = $22, account_confirmed_at = $23, \
     last_seen_at = $24, search_name = $25, search_last_name = $26, search_company_name = $27, \
     search_email = $28, search_version = $29, updated_at = $30 where space_id = $1 and id = $2";

/// What the merge came to, or why it stops before writing.
type Decided<T> = Result<T, MergeRefusal>;

impl SqlStore {
    pub(super) async fn merge_once(&self, space: SpaceId, merge: &Merge) -> StoreResult<Decided<Profile>> {
        let now = now();
        let mut tx = self.begin_with(dialect::BEGIN_WRITE).await?;
        let found: Vec<Side> = sqlx::query_as(&LOCK_BOTH)
            .bind(space.0)
            .bind(merge.primary.as_str())
            .bind(merge.duplicate.as_str())
            .fetch_all(&mut *tx)
            .await?;
        let mut primary = None;
        let mut duplicate = None;
        for side in found {
            if side.cu_ref_no == merge.primary.as_str() {
                primary = Some(side);
            } else {
                duplicate = Some(side);
            }
        }
        let Some(p) = primary.filter(|p| !p.erased) else {
            return Ok(Err(MergeRefusal::NotFound(MergeSide::Primary)));
        };
        let d = match duplicate {
            // Merged already (a retry, or the loser of two merges of the same pair).
            Some(d) if d.merged_into == Some(p.id) => return Ok(Ok(profile_by_id(&mut *tx, space, p.id, now).await?)),
            Some(d) if !d.erased => d,
            _ => return Ok(Err(MergeRefusal::NotFound(MergeSide::Duplicate))),
        };
        if p.rest.password_hash.is_some() && d.rest.password_hash.is_some() {
            return Ok(Err(MergeRefusal::BothRegistered));
        }
        let points: Vec<Point> = sqlx::query_as(
            "select customer_id, kind, value, shown from contact_points \
             where space_id = $1 and (customer_id = $2 or customer_id = $3)",
        )
        .bind(space.0)
        .bind(p.id)
        .bind(d.id)
        .fetch_all(&mut *tx)
        .await?;
        let merged = match Merged::of(&p, &d, points) {
            Ok(merged) => merged,
            Err(refusal) => return Ok(Err(refusal)),
        };

        // The tombstone first: it frees the duplicate's e-mail, number and partner id.
        sqlx::query(ERASE_CUSTOMER).bind(space.0).bind(d.id).bind(now).bind(Some(p.id)).execute(&mut *tx).await?;
        for statement in MOVES.iter() {
            statement.run(&mut tx, space, d.id, p.id, now).await?;
        }
        sqlx::query("delete from contact_points where space_id = $1 and (customer_id = $2 or customer_id = $3)")
            .bind(space.0)
            .bind(p.id)
            .bind(d.id)
            .execute(&mut *tx)
            .await?;
        if !merged.points.is_empty() {
            bind_rows(sqlx::query(&INSERT_POINTS).bind(space.0), &merged.points, POINT_FIELDS)?
                .execute(&mut *tx)
                .await?;
        }
        let groups: Vec<Group> = sqlx::query_as::<_, (String, String)>(PRIMARY_GROUPS)
            .bind(space.0)
            .bind(p.id)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|(name, slug)| Group { name, slug })
            .collect();
        let subscriptions: Vec<StoredSubscription> =
            sqlx::query_as(PRIMARY_SUBSCRIPTIONS).bind(space.0).bind(p.id).fetch_all(&mut *tx).await?;
        if groups.len() > profile_limits::GROUPS {
            return Ok(Err(MergeRefusal::OverLimit(ProfileLimit::Groups)));
        }
        let running = subscriptions.iter().filter(|s| s.valid_until.is_none_or(|until| until > now)).count();
        if running > profile_limits::RUNNING_SUBSCRIPTIONS {
            return Ok(Err(MergeRefusal::OverLimit(ProfileLimit::RunningSubscriptions)));
        }
        if merged.own.ban {
            sqlx::query(END_SESSIONS).bind(space.0).bind(p.id).bind(now).execute(&mut *tx).await?;
        }
        merged.write(&mut tx, space, p.id, &groups, &subscriptions, now).await?;
        insert_audit(&mut tx, &merge.audit, None, None, None, now).await?;
        let profile = profile_by_id(&mut *tx, space, p.id, now).await?;
        tx.commit().await?;
        Ok(Ok(profile))
    }
}

/// The primary's row as the merge leaves it.
struct Merged {
    own: OwnFields,
    rest: Rest,
    /// The primary's contact points: its own and the duplicate's, each once, none of them
    /// the primary's own e-mail or number.
    points: Vec<Point>,
}

impl Merged {
    /// The primary `p` with what the duplicate `d` brings: what `p` has set wins, lists
    /// are joined; refused where a joined list passes its limit.
    fn of(primary: &Side, duplicate: &Side, points: Vec<Point>) -> Decided<Merged> {
        let (p, d) = (&primary.own, &duplicate.own);
        let takes_email = p.email_canonical.is_none() && d.email_canonical.is_some();
        let (email, email_canonical, email_rules_version) = if takes_email {
            (d.email.clone(), d.email_canonical.clone(), d.email_rules_version)
        } else {
            (p.email.clone(), p.email_canonical.clone(), p.email_rules_version)
        };
        let phone = p.phone.clone().or_else(|| d.phone.clone());

        // The duplicate's own e-mail and number become the primary's alternates.
        let mut offered: Vec<Point> = Vec::with_capacity(points.len() + 2);
        let (mine, theirs): (Vec<Point>, Vec<Point>) = points.into_iter().partition(|pt| pt.customer_id == primary.id);
        offered.extend(mine);
        let point = |kind: &str, value: &String, shown: &String| Point {
            customer_id: primary.id,
            kind: kind.into(),
            value: value.clone(),
            shown: Some(shown.clone()),
        };
        if let (Some(canonical), Some(shown)) = (&d.email_canonical, &d.email) {
            offered.push(point("email", canonical, shown));
        }
        if let Some(number) = &d.phone {
            offered.push(point("phone", number, number));
        }
        offered.extend(theirs);
        let mut kept: Vec<Point> = Vec::with_capacity(offered.len());
        for mut pt in offered {
            let own = match pt.kind.as_str() {
                "email" => email_canonical.as_deref(),
                _ => phone.as_deref(),
            };
            if own == Some(pt.value.as_str()) || kept.iter().any(|k| k.kind == pt.kind && k.value == pt.value) {
                continue;
            }
            pt.customer_id = primary.id;
            kept.push(pt);
        }
        if kept.len() > profile_limits::CONTACT_POINTS {
            return Err(MergeRefusal::OverLimit(ProfileLimit::ContactPoints));
        }

        // Top-level keys of both; the primary's value wins where both have one.
        let mut meta = d.meta.0.clone();
        meta.extend(p.meta.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        if serde_json::to_vec(&meta).map_or(true, |b| b.len() > profile_limits::META_BYTES) {
            return Err(MergeRefusal::OverLimit(ProfileLimit::Meta));
        }

        let mut addresses = p.addresses.0.clone();
        let has_default = addresses.iter().any(|a| a.is_default);
        for a in &d.addresses.0 {
            let same_partner_id =
                |b: &Address| a.partner_address_id.is_some() && b.partner_address_id == a.partner_address_id;
            if addresses.iter().any(same_partner_id) {
                continue;
            }
            let mut a = a.clone();
            a.is_default &= !has_default;
            if a.address_id.is_none() || addresses.iter().any(|b| b.address_id == a.address_id) {
                a.address_id = Some(new_address_id());
            }
            addresses.push(a);
        }
        if addresses.len() > profile_limits::ADDRESSES {
            return Err(MergeRefusal::OverLimit(ProfileLimit::Addresses));
        }

        let (pr, dr) = (&primary.rest, &duplicate.rest);
        let (password_hash, account_confirmed_at) = match &pr.password_hash {
            Some(_) => (pr.password_hash.clone(), pr.account_confirmed_at),
            None => (dr.password_hash.clone(), dr.account_confirmed_at),
        };
        let fill = |mine: &Option<String>, theirs: &Option<String>| mine.clone().or_else(|| theirs.clone());
        let own = OwnFields {
            email,
            email_canonical,
            email_rules_version,
            phone,
            first_name: fill(&p.first_name, &d.first_name),
            last_name: fill(&p.last_name, &d.last_name),
            company_name: fill(&p.company_name, &d.company_name),
            company_registration_number: fill(&p.company_registration_number, &d.company_registration_number),
            tax_identification_number: fill(&p.tax_identification_number, &d.tax_identification_number),
            premium: p.premium || d.premium,
            ban: p.ban || d.ban,
            meta: Json(meta),
            partner_customer_id: fill(&p.partner_customer_id, &d.partner_customer_id),
            addresses: Json(addresses),
        };
        let rest = Rest {
            referrer_id: pr.referrer_id.filter(|&r| r != duplicate.id).or(dr.referrer_id.filter(|&r| r != primary.id)),
            password_hash,
            account_confirmed_at,
            credit_balance: pr.credit_balance.saturating_add(dr.credit_balance),
            last_seen_at: pr.last_seen_at.max(dr.last_seen_at),
        };
        Ok(Merged { own, rest, points: kept })
    }

    /// Writes the primary's row, with its lists as the moved rows left them.
    async fn write(
        &self,
        tx: &mut Tx,
        space: SpaceId,
        id: i64,
        groups: &[Group],
        subscriptions: &[StoredSubscription],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let shown = |kind: &str| {
            let mut list: Vec<String> = self
                .points
                .iter()
                .filter(|pt| pt.kind == kind)
                .map(|pt| pt.shown.clone().unwrap_or_else(|| pt.value.clone()))
                .collect();
            list.sort_unstable();
            list
        };
        let alternates = StoredAlternates { emails: shown("email"), phones: shown("phone") };
        let (own, rest) = (&self.own, &self.rest);
        let keys = SearchKeys::of(
            own.first_name.as_deref(),
            own.last_name.as_deref(),
            own.company_name.as_deref(),
            own.email.as_deref(),
        );
        sqlx::query(UPDATE_PRIMARY)
            .bind(space.0)
            .bind(id)
            .bind(&own.email)
            .bind(&own.email_canonical)
            .bind(own.email_rules_version)
            .bind(&own.phone)
            .bind(&own.first_name)
            .bind(&own.last_name)
            .bind(&own.company_name)
            .bind(&own.company_registration_number)
            .bind(&own.tax_identification_number)
            .bind(own.premium)
            .bind(own.ban)
            .bind(&own.meta)
            .bind(rest.referrer_id)
            .bind(&own.partner_customer_id)
            .bind(&own.addresses)
            .bind(Json(&alternates))
            .bind(Json(groups))
            .bind(Json(subscriptions))
            .bind(rest.credit_balance)
            .bind(&rest.password_hash)
            .bind(rest.account_confirmed_at)
            .bind(rest.last_seen_at)
            .bind(keys.name)
            .bind(keys.last_name)
            .bind(keys.company_name)
            .bind(keys.email)
            .bind(SEARCH_RULES_VERSION)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        sqlx::query(FLAG_MEMBERSHIPS).bind(space.0).bind(id).bind(own.premium).bind(own.ban).execute(&mut **tx).await?;
        Ok(())
    }
}
