//! The PostgreSQL schema distributes by data space on a sharded PostgreSQL (Citus) as it
//! is: read from the catalogue of a migrated database, every table is either a reference
//! table (named below) or a tenant table with `space_id`, and every primary key, unique
//! key, unique index and foreign key between tenant tables starts with `space_id`. Also:
//! the migration that made it so applies to a database that already holds rows.

use bizkit_mirror::normalize::Email;
use bizkit_mirror::store::{self, ContactWrite, Group, Mode, PoolSettings};
use sqlx::{Connection, PgConnection};

use crate::support::{Backend, TestDb};

/// The global tables: replicated whole to every node (Citus reference tables), never
/// distributed. Every other table in `public` is a tenant table.
const REFERENCE_TABLES: &[&str] = &["organisations", "spaces", "api_keys", "audit_log", "_sqlx_migrations"];

/// The column tenant tables are distributed by.
const DISTRIBUTION_COLUMN: &str = "space_id";

/// The tables in `public`, each with its `space_id` column's type and nullability if it
/// has one.
const TABLES: &str = "select t.table_name::text, c.data_type::text, c.is_nullable::text \
     from information_schema.tables t left join information_schema.columns c \
     on c.table_schema = t.table_schema and c.table_name = t.table_name and c.column_name = 'space_id' \
     where t.table_schema = 'public' and t.table_type = 'BASE TABLE' order by 1";

/// Every primary key, unique, exclusion and foreign key constraint in `public`: its
/// table, name, kind, first column, and for a foreign key the referenced table and the
/// column its first column refers to.
const CONSTRAINTS: &str = "select t.relname::text, k.conname::text, k.contype::text, \
     (select a.attname::text from pg_attribute a where a.attrelid = k.conrelid and a.attnum = k.conkey[1]), \
     f.relname::text, \
     (select a.attname::text from pg_attribute a where a.attrelid = k.confrelid and a.attnum = k.confkey[1]), \
     pg_get_constraintdef(k.oid) \
     from pg_constraint k join pg_class t on t.oid = k.conrelid left join pg_class f on f.oid = k.confrelid \
     where k.connamespace = 'public'::regnamespace and k.contype in ('p', 'u', 'x', 'f') order by 1, 2";

/// Every unique index in `public` that no constraint owns (`create unique index`, partial
/// ones included): its table, name and first column (none for an expression).
const UNIQUE_INDEXES: &str = "select t.relname::text, i.relname::text, \
     (select a.attname::text from pg_attribute a where a.attrelid = x.indrelid and a.attnum = x.indkey[0]), \
     pg_get_indexdef(x.indexrelid) \
     from pg_index x join pg_class i on i.oid = x.indexrelid join pg_class t on t.oid = x.indrelid \
     where t.relnamespace = 'public'::regnamespace and x.indisunique \
     and not exists (select 1 from pg_constraint k where k.conindid = x.indexrelid and k.contype in ('p', 'u', 'x')) \
     order by 1, 2";

/// What keeps the schema of the database at `conn` from being distributed by space, one
/// offender a line, each named; empty when nothing does.
async fn distribution_offenders(conn: &mut PgConnection) -> Vec<String> {
    let mut offenders = Vec::new();
    let tables: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as(TABLES).fetch_all(&mut *conn).await.expect("read the tables");
    for reference in REFERENCE_TABLES {
        if !tables.iter().any(|(t, _, _)| t == reference) {
            offenders.push(format!("reference table {reference} does not exist: the list is out of date"));
        }
    }
    let is_reference = |table: &str| REFERENCE_TABLES.contains(&table);
    let is_tenant = |table: &str| tables.iter().any(|(t, ty, _)| t == table && ty.is_some()) && !is_reference(table);
    for (table, ty, nullable) in &tables {
        match (is_reference(table), ty.as_deref(), nullable.as_deref()) {
            (true, _, _) => {}
            (false, None, _) => offenders.push(format!("table {table} is not a reference table and has no space_id")),
            // Colocated tables share the distribution column's type, and a row without a
            // space could not be placed.
            (false, Some(ty), _) if ty != "bigint" => offenders.push(format!("table {table}: space_id is {ty}")),
            (false, _, Some("YES")) => offenders.push(format!("table {table}: space_id is nullable")),
            _ => {}
        }
    }

    type Constraint = (String, String, String, Option<String>, Option<String>, Option<String>, String);
    let constraints: Vec<Constraint> =
        sqlx::query_as(CONSTRAINTS).fetch_all(&mut *conn).await.expect("read the constraints");
    for (table, name, kind, first, referenced, referenced_first, definition) in constraints {
        let what = match kind.as_str() {
            "p" => "primary key",
            "u" => "unique constraint",
            "x" => "exclusion constraint",
            _ => "foreign key",
        };
        let leads = first.as_deref() == Some(DISTRIBUTION_COLUMN);
        match (kind.as_str(), referenced) {
            ("f", Some(referenced)) => {
                if is_reference(&table) && is_tenant(&referenced) {
                    offenders.push(format!(
                        "{table}: {what} {name} ({definition}) goes from a reference table to tenant table {referenced}"
                    ));
                } else if is_tenant(&table)
                    && is_tenant(&referenced)
                    && !(leads && referenced_first.as_deref() == Some(DISTRIBUTION_COLUMN))
                {
                    offenders.push(format!(
                        "{table}: {what} {name} ({definition}) does not go from space_id to space_id, first"
                    ));
                }
            }
            _ if is_tenant(&table) && !leads => {
                offenders.push(format!("{table}: {what} {name} ({definition}) does not start with space_id"));
            }
            _ => {}
        }
    }

    let indexes: Vec<(String, String, Option<String>, String)> =
        sqlx::query_as(UNIQUE_INDEXES).fetch_all(&mut *conn).await.expect("read the unique indexes");
    for (table, name, first, definition) in indexes {
        if is_tenant(&table) && first.as_deref() != Some(DISTRIBUTION_COLUMN) {
            offenders.push(format!("{table}: unique index {name} ({definition}) does not start with space_id"));
        }
    }
    offenders
}

async fn connect(db: &TestDb) -> PgConnection {
    PgConnection::connect(&db.url).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_of_a_tenant_table_leads_with_space_id_postgres() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    // Exec: every migration, as a start does
    store::connect(&db.url, &PoolSettings::default()).await.expect("migrate");

    // Check: nothing in the catalogue stands in the way of distributing by space
    let offenders = distribution_offenders(&mut connect(&db).await).await;
    assert!(offenders.is_empty(), "not distributable by space_id:\n{}", offenders.join("\n"));
}

/// Two spaces of one organisation, each with customers (one referred by another), a
/// group with members, credit, a subscription, a session, a confirmation token, a queued
/// message, an alternate address and a relation: rows for every key 0006 rebuilds.
const ROWS: &str = "
insert into organisations (slug, name, created_at) values ('shop', 'Shop', now());
insert into spaces (organisation_id, mode) select id, m from organisations, (values ('live'), ('sandbox')) v(m);
insert into customers (space_id, cu_ref_no, email, email_canonical, created_at, updated_at)
    select s.id, upper(substr(md5(s.id || '-' || n), 1, 16)), 'c' || n || '@' || s.mode || '.example',
    'c' || n || '@' || s.mode || '.example', now(), now()
    from spaces s, generate_series(1, 3) n order by s.id, n;
update customers c set referrer_id = r.id from customers r
    where r.space_id = c.space_id and r.email like 'c1@%' and c.email like 'c2@%';
insert into customer_groups (space_id, name, slug) select id, 'VIP', 'vip' from spaces;
insert into customer_group_members (space_id, customer_id, group_id)
    select c.space_id, c.id, g.id from customers c join customer_groups g on g.space_id = c.space_id;
update customers set profile_groups = '[{\"name\": \"VIP\", \"slug\": \"vip\"}]';
insert into credit_ledger (space_id, customer_id, amount, created_at) select space_id, id, 5, now() from customers;
update customers set credit_balance = 5;
insert into subscriptions (space_id, customer_id, external_id, product_slug, product_code, order_number,
    order_hash, created_at, updated_at)
    select space_id, id, 'sub-' || id, 'p', 'P', 'o', 'h', now(), now() from customers;
insert into sessions (space_id, customer_id, identity_digest, created_at, expires_at, last_seen_at)
    select space_id, id, 'digest-' || id, now(), now() + interval '1 day', now() from customers;
insert into account_tokens (space_id, customer_id, digest, created_at, expires_at)
    select space_id, id, 'token-' || id, now(), now() + interval '1 day' from customers;
insert into mail_outbox (space_id, customer_id, recipient, kind, subject, body, created_at)
    select space_id, id, email, 'confirm', 's', 'b', now() from customers;
insert into contact_points (space_id, customer_id, kind, value)
    select space_id, id, 'email', 'alt-' || email_canonical from customers;
insert into customer_matches (space_id, manager_id, customer_id, created_at, updated_at)
    select m.space_id, m.id, c.id, now(), now() from customers m join customers c
    on c.space_id = m.space_id and c.id <> m.id;
";

/// The rows of every tenant table, by table.
const COUNTS: &str = "select 'customers', count(*) from customers union all \
     select 'customer_groups', count(*) from customer_groups union all \
     select 'customer_group_members', count(*) from customer_group_members union all \
     select 'credit_ledger', count(*) from credit_ledger union all \
     select 'subscriptions', count(*) from subscriptions union all \
     select 'sessions', count(*) from sessions union all \
     select 'account_tokens', count(*) from account_tokens union all \
     select 'mail_outbox', count(*) from mail_outbox union all \
     select 'contact_points', count(*) from contact_points union all \
     select 'customer_matches', count(*) from customer_matches order by 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_distribution_keys_migrate_a_database_holding_rows_postgres() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    // Setup: the schema as it was before 0006, holding rows in two spaces
    let mut before = sqlx::migrate!("migrations/postgres");
    before.migrations = before.migrations.iter().filter(|m| m.version < 6).cloned().collect::<Vec<_>>().into();
    let mut conn = connect(&db).await;
    before.run(&mut conn).await.expect("migrate to 0005");
    let offenders = distribution_offenders(&mut conn).await;
    for named in ["customers_pkey", "customers_referrer_id_fkey", "customer_group_members_group_id_fkey"] {
        assert!(offenders.iter().any(|o| o.contains(named)), "{named} not found in:\n{}", offenders.join("\n"));
    }
    sqlx::raw_sql(ROWS).execute(&mut conn).await.expect("rows");
    let counts: Vec<(String, i64)> = sqlx::query_as(COUNTS).fetch_all(&mut conn).await.unwrap();

    // Exec: a start on the new version migrates it
    let store = store::connect(&db.url, &PoolSettings::default()).await.expect("migrate the rows");

    // Check: every row kept, nothing left in the way of distributing by space
    assert_eq!(sqlx::query_as::<_, (String, i64)>(COUNTS).fetch_all(&mut conn).await.unwrap(), counts);
    let offenders = distribution_offenders(&mut conn).await;
    assert!(offenders.is_empty(), "not distributable by space_id:\n{}", offenders.join("\n"));

    // Check: the rows read and write through the store as before
    let live = store.space_of("shop", Mode::Live).await.unwrap();
    let write = ContactWrite {
        email: Some(Email::parse("c2@live.example").unwrap()),
        groups: Some(vec![Group { name: "New".into(), slug: "new".into() }]),
        ..Default::default()
    };
    let (created, profile) = store.upsert_contact(live, &write).await.unwrap().unwrap();
    assert!(!created);
    assert_eq!(profile.credit_balance, 5);
    assert_eq!(profile.referrer.map(|r| r.email), Some(Some("c1@live.example".to_owned())));
    assert_eq!(profile.groups, vec![Group { name: "New".into(), slug: "new".into() }]);

    // Check: a row can no longer refer to a row of another space
    let crossed = sqlx::query(
        "insert into customer_group_members (space_id, customer_id, group_id, created_at, premium, ban) \
         select c.space_id, c.id, g.id, c.created_at, c.premium, c.ban from customers c \
         join customer_groups g on g.space_id <> c.space_id limit 1",
    )
    .execute(&mut conn)
    .await
    .expect_err("a member of another space's group");
    assert!(crossed.to_string().contains("customer_group_members_group_id_fkey"), "{crossed}");
}
