//! Customers listed and searched, and the search keys (`normalize::search`) they are
//! found by. Each filter is a clause of its own, added only when given, so every
//! combination is a plain statement served from the filters' indexes (see
//! `migrations/*/…_customer_search.sql` and `list_query`).

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{QueryBuilder, Row};

use super::batch::{bind_rows, rows};
use super::pool::Conn;
use super::{dialect, Db, ProfileRow, SqlStore, Tx, PROFILE_COLUMNS, REFERRER_JOIN};

use crate::normalize::search::{prefix_range, SearchKeys, SEARCH_RULES_VERSION};
use crate::store::{now, CustomerFilter, ListedCustomer, PagePos, SearchStore, SpaceId, StoreResult};

#[derive(sqlx::FromRow)]
struct ListedRow {
    #[sqlx(flatten)]
    profile: ProfileRow,
    id: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// The key columns a prefix is looked up in.
const KEY_COLUMNS: [&str; 4] = ["search_name", "search_last_name", "search_company_name", "search_email"];

/// A filter that names few customers of a space, found through its own index.
enum Hits<'f> {
    /// A contact point (`email` canonical, or `phone` stored form): the customer's own or
    /// an alternate.
    Point { kind: &'static str, own_column: &'static str, value: &'f str },
    /// A folded prefix of any search key.
    Prefix(&'f str),
    /// A group, by id.
    Group(i64),
    /// The client's own id of the customer.
    Partner(&'f str),
}

impl Hits<'_> {
    /// `select <customer id> …` of the customers it names, each once.
    fn push(&self, q: &mut QueryBuilder<'static, Db>, space: SpaceId) {
        match *self {
            Hits::Point { kind, own_column, value } => {
                q.push("select id from customers where space_id = ")
                    .push_bind(space.0)
                    .push(format_args!(" and {own_column} = "))
                    .push_bind(value.to_owned())
                    .push(format_args!(
                        " union select p.customer_id from {} where p.space_id = ",
                        dialect::CONTACT_POINTS_BY_VALUE
                    ))
                    .push_bind(space.0)
                    .push(format_args!(" and p.kind = '{kind}' and p.value = "))
                    .push_bind(value.to_owned());
            }
            Hits::Prefix(prefix) => {
                let (from, to) = prefix_range(prefix);
                for (i, column) in KEY_COLUMNS.iter().enumerate() {
                    if i > 0 {
                        q.push(" union ");
                    }
                    q.push("select id from customers where space_id = ")
                        .push_bind(space.0)
                        .push(format_args!(" and {column} >= "))
                        .push_bind(from.clone())
                        .push(format_args!(" and {column} < "))
                        .push_bind(to.clone());
                }
            }
            Hits::Partner(value) => {
                q.push("select id from customers where space_id = ")
                    .push_bind(space.0)
                    .push(" and partner_customer_id = ")
                    .push_bind(value.to_owned());
            }
            Hits::Group(id) => {
                // Beside a filter that drives: the id is written into the statement, not
                // bound, as where a group drives (`list_query`), so the planner knows how
                // many members the group has in whichever plan it keeps.
                q.push("select customer_id as id from customer_group_members where space_id = ")
                    .push_bind(space.0)
                    .push(format_args!(" and group_id = {id}"));
            }
        }
    }
}

/// The list's statement for `filter`, from `before`; prefixed with `explain`, the
/// statement that shows its plan.
///
/// The first filter that names few customers (partner id, e-mail, phone, prefix) drives the
/// statement: its customers are found through its index and joined to their rows (a
/// `cross join`, which SQLite, planning without statistics, keeps in this order; PostgreSQL
/// plans it as any join), then sorted. A group alone drives from its memberships, walked
/// newest first in their index (`customer_group_members_listed*`, flags included). Without
/// either, the list's own index by creation time is walked, newest first, and the flags
/// pick its partial indexes.
fn list_query(
    explain: &str,
    space: SpaceId,
    filter: &CustomerFilter,
    group: Option<i64>,
    before: PagePos,
    limit: i64,
) -> QueryBuilder<'static, Db> {
    let mut hits: Vec<Hits> = Vec::new();
    if let Some(value) = &filter.partner_customer_id {
        hits.push(Hits::Partner(value));
    }
    if let Some(value) = &filter.email {
        hits.push(Hits::Point { kind: "email", own_column: "email_canonical", value });
    }
    if let Some(value) = &filter.phone {
        hits.push(Hits::Point { kind: "phone", own_column: "phone", value });
    }
    if let Some(prefix) = &filter.prefix {
        hits.push(Hits::Prefix(prefix));
    }
    if let Some(id) = group {
        hits.push(Hits::Group(id));
    }
    let mut q = QueryBuilder::new(format!("{explain}select {PROFILE_COLUMNS}, c.id, c.created_at, c.updated_at from "));
    let mut rest = hits.iter();
    // The rows the list's order, flags and times are read from (`t`: the customers', or a
    // group's memberships, which carry them) and their customer id column.
    let (t, id) = match rest.next() {
        Some(&Hits::Group(group)) => {
            // A group drives alone (it is the last filter to be one): its members are
            // walked newest first in their own index, flags included, and only the page's
            // customers are read.
            q.push(format_args!("customer_group_members m cross join customers c {REFERRER_JOIN} where m.space_id = "))
                .push_bind(space.0)
                .push(format_args!(" and m.group_id = {group} and c.space_id = "))
                .push_bind(space.0)
                .push(" and c.id = m.customer_id");
            ("m", "customer_id")
        }
        Some(driver) => {
            q.push("(");
            driver.push(&mut q, space);
            q.push(format_args!(") h cross join customers c {REFERRER_JOIN} where c.space_id = "))
                .push_bind(space.0)
                .push(" and c.id = h.id");
            ("c", "id")
        }
        None => {
            q.push(format_args!("customers c {REFERRER_JOIN} where c.space_id = ")).push_bind(space.0);
            ("c", "id")
        }
    };
    q.push(" and c.erased_at is null");
    for more in rest {
        q.push(" and c.id in (");
        more.push(&mut q, space);
        q.push(")");
    }
    // Flags as literals, not parameters: the partial index of the rare value is then
    // chosen whatever plan the statement is cached with.
    for (column, value) in [("premium", filter.premium), ("ban", filter.ban)] {
        if let Some(value) = value {
            q.push(format_args!(" and {}{t}.{column}", if value { "" } else { "not " }));
        }
    }
    if let Some(from) = filter.created_from {
        q.push(format_args!(" and {t}.created_at >= ")).push_bind(from);
    }
    if let Some(to) = filter.created_to {
        q.push(format_args!(" and {t}.created_at < ")).push_bind(to);
    }
    // Strictly before `before` in (created_at, id) order; the first clause alone bounds
    // the index range.
    q.push(format_args!(" and {t}.created_at <= "))
        .push_bind(before.created_at)
        .push(format_args!(" and ({t}.created_at < "))
        .push_bind(before.created_at)
        .push(format_args!(" or {t}.{id} < "))
        .push_bind(before.id)
        .push(format_args!(") order by {t}.created_at desc, {t}.{id} desc limit "))
        .push_bind(limit);
    q
}

/// The id of the filter's group: `Ok(None)` without a group filter, `Err(())` when the
/// group does not exist (and the list is empty).
async fn group_id(conn: &mut Conn, space: SpaceId, filter: &CustomerFilter) -> StoreResult<Result<Option<i64>, ()>> {
    let Some(slug) = &filter.group else { return Ok(Ok(None)) };
    let id: Option<i64> = sqlx::query_scalar("select id from customer_groups where space_id = $1 and slug = $2")
        .bind(space.0)
        .bind(slug)
        .fetch_optional(&mut **conn)
        .await?;
    Ok(id.map(Some).ok_or(()))
}

/// The page size a plan is shown for: the default page, one more to learn whether there is a next.
const EXPLAINED_PAGE: i64 = 51;

/// What search keys are computed from (`StaleRow`).
const KEY_SOURCES: &str = "select space_id, id, first_name, last_name, company_name, email from customers";

/// The customers whose keys are to be computed, locked until they are written.
static STALE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{KEY_SOURCES} where search_version < {SEARCH_RULES_VERSION} order by space_id, id limit $1{}",
        dialect::LOCK_ROW
    )
});

#[derive(sqlx::FromRow)]
struct StaleRow {
    space_id: i64,
    id: i64,
    first_name: Option<String>,
    last_name: Option<String>,
    company_name: Option<String>,
    email: Option<String>,
}

/// One customer's keys, as `WRITE_KEYS` reads them.
#[derive(Serialize)]
struct KeysOut {
    space_id: i64,
    id: i64,
    search_name: Option<String>,
    search_last_name: Option<String>,
    search_company_name: Option<String>,
    search_email: Option<String>,
}

impl KeysOut {
    fn of(space_id: i64, id: i64, keys: SearchKeys) -> Self {
        KeysOut {
            space_id,
            id,
            search_name: keys.name,
            search_last_name: keys.last_name,
            search_company_name: keys.company_name,
            search_email: keys.email,
        }
    }
}

static WRITE_KEYS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "update customers set search_name = x.search_name, search_last_name = x.search_last_name, \
         search_company_name = x.search_company_name, search_email = x.search_email, \
         search_version = {SEARCH_RULES_VERSION} from {} \
         where customers.space_id = x.space_id and customers.id = x.id",
        rows(1, KEYS_FIELDS)
    )
});

const KEYS_FIELDS: &[(&str, &str)] = &[
    ("space_id", "bigint"),
    ("id", "bigint"),
    ("search_name", "text"),
    ("search_last_name", "text"),
    ("search_company_name", "text"),
    ("search_email", "text"),
];

/// Computes and writes the keys of `stale` in `tx`.
async fn write_keys(tx: &mut Tx, stale: Vec<StaleRow>) -> StoreResult<u64> {
    let out: Vec<KeysOut> = stale
        .into_iter()
        .map(|r| {
            let keys = SearchKeys::of(
                r.first_name.as_deref(),
                r.last_name.as_deref(),
                r.company_name.as_deref(),
                r.email.as_deref(),
            );
            KeysOut::of(r.space_id, r.id, keys)
        })
        .collect();
    if out.is_empty() {
        return Ok(0);
    }
    bind_rows(sqlx::query(&WRITE_KEYS), &out, KEYS_FIELDS)?.execute(&mut **tx).await?;
    Ok(out.len() as u64)
}

/// Computes again, in `tx`, the keys of customer `id`, whose names were just changed by a
/// statement that could not compute them (registration filling in a guest's names).
pub(super) async fn refresh_keys_of(tx: &mut Tx, space: SpaceId, id: i64) -> StoreResult<()> {
    static ONE: LazyLock<String> = LazyLock::new(|| format!("{KEY_SOURCES} where space_id = $1 and id = $2"));
    let stale: Vec<StaleRow> = sqlx::query_as(&ONE).bind(space.0).bind(id).fetch_all(&mut **tx).await?;
    write_keys(tx, stale).await?;
    Ok(())
}

#[async_trait]
impl SearchStore for SqlStore {
    async fn list_customers(
        &self,
        space: SpaceId,
        filter: &CustomerFilter,
        before: PagePos,
        limit: i64,
    ) -> StoreResult<Vec<ListedCustomer>> {
        let mut conn = self.conn().await?;
        let Ok(group) = group_id(&mut conn, space, filter).await? else { return Ok(Vec::new()) };
        let rows: Vec<ListedRow> =
            list_query("", space, filter, group, before, limit).build_query_as().fetch_all(&mut *conn).await?;
        let now = now();
        Ok(rows
            .into_iter()
            .map(|r| ListedCustomer {
                profile: r.profile.at(now),
                created_at: r.created_at,
                updated_at: r.updated_at,
                id: r.id,
            })
            .collect())
    }

    async fn explain_list_customers(&self, space: SpaceId, filter: &CustomerFilter) -> StoreResult<String> {
        let mut conn = self.conn().await?;
        // A group that does not exist: the plan of one that does, but has no members.
        let group = group_id(&mut conn, space, filter).await?.unwrap_or(Some(0));
        let rows = list_query(dialect::EXPLAIN, space, filter, group, PagePos::TOP, EXPLAINED_PAGE)
            .build()
            .fetch_all(&mut *conn)
            .await?;
        let lines =
            rows.iter().map(|r| r.try_get::<String, _>(dialect::EXPLAIN_COLUMN)).collect::<Result<Vec<_>, _>>()?;
        Ok(lines.join("\n"))
    }

    async fn refresh_search_keys(&self, limit: i64) -> StoreResult<u64> {
        let mut tx = self.begin_with(dialect::BEGIN_WRITE).await?;
        let stale: Vec<StaleRow> = sqlx::query_as(&STALE).bind(limit).fetch_all(&mut *tx).await?;
        let written = write_keys(&mut tx, stale).await?;
        tx.commit().await?;
        Ok(written)
    }
}
