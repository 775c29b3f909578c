//! A fresh database per test, on either backend, and SQL of the tests' own: for rows
//! the API does not show (the mail outbox) or cannot make (a session without a login).

use bizkit_mirror::store::SpaceId;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::Connection;

use super::TestApp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server to create test databases on, if any. With REQUIRE_POSTGRES=1 its
/// absence is a failure, not a skip.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set");
            }
            None
        }
    }
}

/// A fresh, empty database; removed when dropped.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    /// None when the backend is PostgreSQL and none is configured (the test then skips).
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite:{}", dir.path().join("test.db").display());
                Some(TestDb { url, _dir: Some(dir), pg: None })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url()?;
                let name = format!("bizkit_test_{:016x}", rand::random::<u64>());
                let mut conn = connect_admin(&admin).await;
                sqlx::query(&format!("create database {name}")).execute(&mut conn).await.expect("create database");
                let mut url = url::Url::parse(&admin).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                Some(TestDb { url: url.to_string(), _dir: None, pg: Some((admin, name)) })
            }
        }
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(url).await.expect("connect to TEST_DATABASE_URL")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            // Dropped from a thread of its own: Drop cannot await, and the test's runtime
            // may be shutting down.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    let mut conn = connect_admin(&admin).await;
                    let _ =
                        sqlx::query(&format!("drop database if exists {name} with (force)")).execute(&mut conn).await;
                });
            })
            .join();
        }
    }
}

/// The PostgreSQL test database taken away: no new connections, the open ones ended.
pub struct Outage {
    conn: sqlx::PgConnection,
    name: String,
}

impl Outage {
    pub async fn start(app: &TestApp) -> Outage {
        let name = url::Url::parse(&app.db.url).unwrap().path().trim_start_matches('/').to_owned();
        let admin = postgres_admin_url().expect("an outage needs PostgreSQL");
        let mut outage = Outage { conn: connect_admin(&admin).await, name };
        outage.allow_connections(false).await;
        sqlx::query(&format!(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = '{}'",
            outage.name
        ))
        .execute(&mut outage.conn)
        .await
        .unwrap();
        outage
    }

    async fn allow_connections(&mut self, allow: bool) {
        sqlx::query(&format!("alter database {} allow_connections {allow}", self.name))
            .execute(&mut self.conn)
            .await
            .unwrap();
    }

    /// The database is back; the pool reconnects by itself.
    pub async fn end(mut self) {
        self.allow_connections(true).await;
    }
}

/// A connection of the test's own to its database.
enum Conn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// Runs the same statement on whichever backend `conn` is: the SQL is written once, in
/// the dialect both accept (`$n` placeholders, timestamps bound from Rust).
macro_rules! on_either {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            Conn::Sqlite(mut $c) => $body,
            Conn::Postgres(mut $c) => $body,
        }
    };
}

/// What the tests read of a message in the mail outbox.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub kind: String,
    pub body: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub attempts: i64,
}

/// What the store writes: microseconds, which both backends keep exactly.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

impl TestDb {
    async fn connect(&self) -> Conn {
        if self.pg.is_some() {
            Conn::Postgres(sqlx::PgConnection::connect(&self.url).await.expect("connect"))
        } else {
            Conn::Sqlite(sqlx::SqliteConnection::connect(&self.url).await.expect("connect"))
        }
    }

    /// Starts a session of customer `cu_ref_no` in `space`, as a login would, under an
    /// identityId whose digest is `identity_digest`; false if there is no such customer.
    pub async fn insert_session(
        &self,
        space: SpaceId,
        cu_ref_no: &str,
        identity_digest: &str,
        expires_at: DateTime<Utc>,
    ) -> bool {
        let sql =
            "insert into sessions (space_id, customer_id, identity_digest, created_at, expires_at, last_seen_at) \
                   select space_id, id, $3, $4, $5, $4 from customers \
                   where space_id = $1 and cu_ref_no = $2 and erased_at is null";
        let now = micros(Utc::now());
        let inserted = on_either!(self.connect().await, |c| sqlx::query(sql)
            .bind(space.0)
            .bind(cu_ref_no)
            .bind(identity_digest)
            .bind(now)
            .bind(micros(expires_at))
            .execute(&mut c)
            .await
            .expect("insert a session")
            .rows_affected());
        inserted > 0
    }

    /// The newest message queued for `recipient` (a normalised address) in `space`.
    pub async fn latest_outbox_message(&self, space: SpaceId, recipient: &str) -> Option<OutboxRow> {
        let sql = "select kind, body, sent_at, attempts from mail_outbox \
                   where space_id = $1 and recipient = $2 order by id desc limit 1";
        on_either!(self.connect().await, |c| sqlx::query_as(sql)
            .bind(space.0)
            .bind(recipient)
            .fetch_optional(&mut c)
            .await
            .expect("read the outbox"))
    }
}

impl TestDb {
    /// One number read by the test's own SQL.
    pub async fn scalar(&self, sql: &str) -> i64 {
        on_either!(self.connect().await, |c| sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut c)
            .await
            .expect("read a number"))
    }

    /// Runs one statement of the test's own.
    pub async fn execute(&self, sql: &str) -> u64 {
        on_either!(self.connect().await, |c| sqlx::query(sql)
            .execute(&mut c)
            .await
            .expect("run a statement")
            .rows_affected())
    }

    /// Moves every row of `table` back to having been created at `at`.
    pub async fn set_created_at(&self, table: &str, at: DateTime<Utc>) {
        let sql = format!("update {table} set created_at = $1");
        on_either!(self.connect().await, |c| sqlx::query(&sql)
            .bind(micros(at))
            .execute(&mut c)
            .await
            .expect("set created_at")
            .rows_affected());
    }

    /// Rows that still tie an erased customer to a person: its own personal fields, and
    /// its contact points, groups, subscriptions, sessions and relations.
    pub async fn erased_leftovers(&self) -> i64 {
        let sql = "select \
            (select count(*) from customers where erased_at is not null and (email is not null \
             or email_canonical is not null or phone is not null or first_name is not null \
             or last_name is not null or company_name is not null or meta <> '{}' or search_name is not null \
             or search_last_name is not null or search_company_name is not null or search_email is not null)) \
          + (select count(*) from contact_points p join customers c on c.id = p.customer_id where c.erased_at is not null) \
          + (select count(*) from customer_group_members m join customers c on c.id = m.customer_id where c.erased_at is not null) \
          + (select count(*) from subscriptions s join customers c on c.id = s.customer_id where c.erased_at is not null) \
          + (select count(*) from sessions s join customers c on c.id = s.customer_id where c.erased_at is not null) \
          + (select count(*) from customer_matches m join customers c on c.id in (m.manager_id, m.customer_id) \
             where c.erased_at is not null)";
        on_either!(self.connect().await, |c| sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut c)
            .await
            .expect("count leftovers"))
    }
}

impl TestDb {
    /// Customers whose stored profile parts (credit balance, groups, active subscriptions)
    /// disagree with the rows they are derived from, or whose memberships with the
    /// customer's own row, each described on one line.
    pub async fn profile_list_drift(&self) -> Vec<String> {
        type Stored = (i64, i64, String, String);
        type PerCustomer<T> = Vec<(i64, T)>;
        let customers = "select id, credit_balance, cast(profile_groups as text), \
                         cast(profile_subscriptions as text) from customers order by id";
        let ledger = "select customer_id, cast(sum(amount) as bigint) from credit_ledger group by customer_id";
        let groups = "select gm.customer_id, g.slug from customer_group_members gm \
                      join customer_groups g on g.id = gm.group_id order by gm.customer_id, g.name";
        let subscriptions =
            "select customer_id, external_id from subscriptions where status = 'active' order by customer_id, id";
        // A membership carries its customer's creation time and flags.
        let unlike = "select m.customer_id, g.slug from customer_group_members m \
                      join customer_groups g on g.id = m.group_id join customers c on c.id = m.customer_id \
                      where m.created_at <> c.created_at or m.premium <> c.premium or m.ban <> c.ban";
        /// The customers, the ledger's sums, the memberships, the active subscriptions, and
        /// the memberships unlike their customer.
        type Read = (Vec<Stored>, PerCustomer<i64>, PerCustomer<String>, PerCustomer<String>, PerCustomer<String>);
        let (stored, sums, members, running, unlike): Read = on_either!(self.connect().await, |c| (
            sqlx::query_as(customers).fetch_all(&mut c).await.expect("customers"),
            sqlx::query_as(ledger).fetch_all(&mut c).await.expect("ledger"),
            sqlx::query_as(groups).fetch_all(&mut c).await.expect("groups"),
            sqlx::query_as(subscriptions).fetch_all(&mut c).await.expect("subscriptions"),
            sqlx::query_as(unlike).fetch_all(&mut c).await.expect("memberships"),
        ));
        let of = |rows: &[(i64, String)], id: i64| -> Vec<String> {
            rows.iter().filter(|(c, _)| *c == id).map(|(_, v)| v.clone()).collect()
        };
        let field = |json: &str, key: &str| -> Vec<String> {
            let list: Vec<serde_json::Value> = serde_json::from_str(json).expect("a stored list is a JSON array");
            list.iter().map(|v| v[key].as_str().expect("a stored list item has its key").to_owned()).collect()
        };
        let mut drift: Vec<String> = unlike
            .iter()
            .map(|(id, slug)| format!("customer {id}: membership of {slug} with other times or flags"))
            .collect();
        for (id, balance, stored_groups, stored_subscriptions) in stored {
            let sum = sums.iter().find(|(c, _)| *c == id).map_or(0, |(_, s)| *s);
            if balance != sum {
                drift.push(format!("customer {id}: credit balance {balance}, ledger {sum}"));
            }
            if field(&stored_groups, "slug") != of(&members, id) {
                drift.push(format!("customer {id}: groups {stored_groups}, members {:?}", of(&members, id)));
            }
            if field(&stored_subscriptions, "external_id") != of(&running, id) {
                drift.push(format!("customer {id}: subscriptions {stored_subscriptions}, rows {:?}", of(&running, id)));
            }
        }
        drift
    }
}

/// Every row of every table of the test database, as text, one row a line: for checking
/// that a value is gone from storage, not only from the API.
pub async fn dump_rows(db: &TestDb) -> String {
    let mut out = String::new();
    if db.pg.is_some() {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        let tables: Vec<String> = sqlx::query_scalar(
            "select table_name::text from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'",
        )
        .fetch_all(&mut conn)
        .await
        .expect("tables");
        for table in tables {
            let rows: Vec<String> = sqlx::query_scalar(&format!("select t::text from \"{table}\" t"))
                .fetch_all(&mut conn)
                .await
                .expect("rows");
            for row in rows {
                out.push_str(&format!("{table}: {row}\n"));
            }
        }
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.expect("connect");
        let tables: Vec<String> =
            sqlx::query_scalar("select name from sqlite_master where type = 'table' and name not like 'sqlite_%'")
                .fetch_all(&mut conn)
                .await
                .expect("tables");
        for table in tables {
            let columns: Vec<String> = sqlx::query_scalar(&format!("select name from pragma_table_info('{table}')"))
                .fetch_all(&mut conn)
                .await
                .expect("columns");
            let row = columns.iter().map(|c| format!("coalesce(case when typeof(\"{c}\") = 'blob' then hex(\"{c}\") else cast(\"{c}\" as text) end, 'NULL')")).collect::<Vec<_>>().join(" || '|' || ");
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("select {row} from \"{table}\"")).fetch_all(&mut conn).await.expect("rows");
            for row in rows {
                out.push_str(&format!("{table}: {row}\n"));
            }
        }
    }
    out
}

impl TestDb {
    /// Every customer of `space` with what its writes leave behind (fields, meta, stored
    /// profile lists, referrer, addresses and numbers, memberships, subscriptions), one
    /// line each in the order they were created: two spaces written alike compare equal.
    pub async fn space_snapshot(&self, space: SpaceId) -> Vec<String> {
        let customers = "select c.id, c.email, c.email_canonical, c.phone, c.first_name, c.last_name, \
             c.company_name, c.company_registration_number, c.tax_identification_number, c.premium, c.ban, \
             cast(c.meta as text) as meta, cast(c.profile_groups as text) as profile_groups, \
             cast(c.profile_subscriptions as text) as profile_subscriptions, \
             r.email as referrer_email, c.registration_ip, c.last_ip \
             from customers c left join customers r on r.id = c.referrer_id where c.space_id = $1 order by c.id";
        let points = "select customer_id, kind || ':' || value from contact_points where space_id = $1 \
             order by customer_id, kind, value";
        let members = "select m.customer_id, g.slug || '=' || g.name from customer_group_members m \
             join customer_groups g on g.id = m.group_id where m.space_id = $1 order by m.customer_id, g.slug";
        let subscriptions = "select customer_id, external_id || ' ' || product_slug || ' ' || product_code || ' ' \
             || order_number || ' ' || order_hash || ' ' || case when auto_renew then 'renew' else 'once' end \
             || ' ' || status || ' ' || coalesce(cast(valid_until as text), '-') \
             from subscriptions where space_id = $1 order by customer_id, id";
        let (rows, lists): (Vec<SnapshotRow>, Vec<Vec<(i64, String)>>) = on_either!(self.connect().await, |c| {
            let rows = sqlx::query_as(customers).bind(space.0).fetch_all(&mut c).await.expect("customers");
            let mut lists = Vec::new();
            for sql in [points, members, subscriptions] {
                lists.push(sqlx::query_as(sql).bind(space.0).fetch_all(&mut c).await.expect("lists"));
            }
            (rows, lists)
        });
        rows.into_iter()
            .map(|row| {
                let id = row.id;
                let of = |list: &Vec<(i64, String)>| {
                    list.iter().filter(|(c, _)| *c == id).map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(", ")
                };
                let meta: serde_json::Value = serde_json::from_str(&row.meta).expect("meta is JSON");
                format!(
                    "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} premium={} ban={} meta={meta} groups={} subs={} \
                     referrer={:?} ip={:?}/{:?} points=[{}] members=[{}] subscriptions=[{}]",
                    row.email,
                    row.email_canonical,
                    row.phone,
                    row.first_name,
                    row.last_name,
                    row.company_name,
                    row.company_registration_number,
                    row.tax_identification_number,
                    row.premium,
                    row.ban,
                    row.profile_groups,
                    row.profile_subscriptions,
                    row.referrer_email,
                    row.registration_ip,
                    row.last_ip,
                    of(&lists[0]),
                    of(&lists[1]),
                    of(&lists[2]),
                )
            })
            .collect()
    }
}

/// A customer row as `space_snapshot` reads it.
#[derive(sqlx::FromRow)]
struct SnapshotRow {
    id: i64,
    email: Option<String>,
    email_canonical: Option<String>,
    phone: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    company_name: Option<String>,
    company_registration_number: Option<String>,
    tax_identification_number: Option<String>,
    premium: bool,
    ban: bool,
    meta: String,
    profile_groups: String,
    profile_subscriptions: String,
    referrer_email: Option<String>,
    registration_ip: Option<String>,
    last_ip: Option<String>,
}
