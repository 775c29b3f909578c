-- Customers lo..hi of bench/compare.sh into the demo live space of a SQLite database: the
-- rules of bench/load.sql (PostgreSQL) in SQLite's dialect. Run by `bench/bench_data.py
-- sqlite`, which binds :space :lo :hi :sessions :now (unix seconds) and :base (the id of
-- customer lo), and provides md5() and sha256() (lower-case hex). Statements end with ";"
-- at the end of a line. Schema differences from PostgreSQL (migrations/sqlite): ids are
-- rowids (given here directly), booleans are 0/1, jsonb is text, and timestamps are text in
-- the form sqlx writes (RFC 3339 with +00:00), which the server compares as text.

create temp table if not exists bench_first (k integer primary key, name text, ascii text);
create temp table if not exists bench_last (k integer primary key, name text, ascii text);
create temp table if not exists bench_domain (k integer primary key, name text);
delete from bench_first;
delete from bench_last;
delete from bench_domain;
insert into bench_first values (0, 'Jan', 'jan'), (1, 'Petr', 'petr'), (2, 'Lucie', 'lucie'),
    (3, 'Tereza', 'tereza'), (4, 'Tomáš', 'tomas'), (5, 'Jiří', 'jiri'), (6, 'Eva', 'eva'), (7, 'Martin', 'martin'),
    (8, 'Kateřina', 'katerina'), (9, 'Pavel', 'pavel'), (10, 'Anna', 'anna'), (11, 'Jakub', 'jakub'),
    (12, 'Marie', 'marie'), (13, 'Lukáš', 'lukas'), (14, 'Veronika', 'veronika'), (15, 'David', 'david');
insert into bench_last values (0, 'Novák', 'novak'), (1, 'Svoboda', 'svoboda'), (2, 'Dvořák', 'dvorak'),
    (3, 'Černý', 'cerny'), (4, 'Procházka', 'prochazka'), (5, 'Kučera', 'kucera'), (6, 'Veselý', 'vesely'),
    (7, 'Horák', 'horak'), (8, 'Němec', 'nemec'), (9, 'Pokorný', 'pokorny'), (10, 'Marek', 'marek'),
    (11, 'Pospíšil', 'pospisil'), (12, 'Hájek', 'hajek'), (13, 'Král', 'kral'), (14, 'Jelínek', 'jelinek'),
    (15, 'Růžička', 'ruzicka'), (16, 'Beneš', 'benes'), (17, 'Fiala', 'fiala'), (18, 'Sedláček', 'sedlacek'),
    (19, 'Doležal', 'dolezal'), (20, 'Zeman', 'zeman'), (21, 'Kolář', 'kolar'), (22, 'Navrátil', 'navratil');
insert into bench_domain values (0, 'gmail.com'), (1, 'seznam.cz'), (2, 'email.cz'), (3, 'centrum.cz'),
    (4, 'example.com');
-- Times in whole minutes before :now, and days before :now, formatted once: strftime() per row
-- would cost more than the rest of a row.
create temp table if not exists bench_minute (k integer primary key, t text);
delete from bench_minute;
insert into bench_minute
with recursive m(k) as (select 0 union all select k + 1 from m where k < 43199)
select k, strftime('%Y-%m-%dT%H:%M:%S+00:00', :now - k * 60, 'unixepoch') from m;
-- meta depends on i % 4 and i % 3 alone, so on i % 12; the last two octets of the address on i % 65536.
create temp table if not exists bench_meta (k integer primary key, meta text);
delete from bench_meta;
insert into bench_meta
with recursive m(k) as (select 0 union all select k + 1 from m where k < 11)
select k, json_object('source', case k % 4 when 0 then 'web' when 1 then 'shop' when 2 then 'import' else 'pos' end,
                      'newsletter', json(case when k % 3 = 0 then 'true' else 'false' end),
                      'lang', case k % 3 when 0 then 'cs' when 1 then 'en' else 'sk' end) from m;
create temp table if not exists bench_ip (k integer primary key, ip text);
delete from bench_ip;
insert into bench_ip
with recursive m(k) as (select 0 union all select k + 1 from m where k < 65535)
select k, ((k >> 8) & 255) || '.' || (k & 255) from m;
create temp table if not exists bench_day (k integer primary key, day text);
delete from bench_day;
insert into bench_day
with recursive m(k) as (select 0 union all select k + 1 from m where k < 799)
select k, strftime('%Y-%m-%d', :now - k * 86400, 'unixepoch') from m;

insert or ignore into customer_groups (space_id, name, slug)
values (:space, 'VIP', 'bench-vip'), (:space, 'Newsletter', 'bench-newsletter'),
       (:space, 'Wholesale', 'bench-wholesale'), (:space, 'Students', 'bench-students'),
       (:space, 'Staff', 'bench-staff'), (:space, 'Loyalty', 'bench-loyalty');
create temp table if not exists bench_group (k integer primary key, id integer);
delete from bench_group;
insert into bench_group select row_number() over (order by slug) - 1, id from customer_groups
where space_id = :space and slug like 'bench-%';

insert into customers (space_id, id, cu_ref_no, email, email_canonical, email_rules_version, phone,
    first_name, last_name, company_name, premium, ban, meta, referrer_id, registration_ip, last_ip,
    last_seen_at, created_at, updated_at,
    search_name, search_last_name, search_company_name, search_email, search_version)
with recursive g(i) as (select :lo union all select i + 1 from g where i < :hi)
select :space, :base + i - :lo, cast(1000000000000000 + (i * 912345678901) % 1000000000000000 as text),
    case when i % 5 = 0 then f.ascii || '.' || l.ascii || '.' || i || '@gmail.com'
         else f.ascii || '.' || l.ascii || i || '@' || d.name end,
    case when i % 5 = 0 then f.ascii || l.ascii || i || '@gmail.com'
         else f.ascii || '.' || l.ascii || i || '@' || d.name end,
    1,
    case when i % 5 in (0, 2) then '+420 7' || substr('2379', 1 + i % 4, 1) || printf('%07d', (i * 7) % 10000000) end,
    f.name, l.name, case when i % 8 = 0 then l.name || ' s.r.o.' end,
    i % 15 = 0, i % 500 = 499,
    meta.meta,
    case when i % 20 = 7 and i > :lo then :base + i - 1 - :lo end,
    '84.' || ((i >> 16) & 255) || '.' || ip.ip,
    '84.' || ((i >> 16) & 255) || '.' || ip.ip,
    seen.t,
    (select day || 'T' || substr(t, 12, 5) || ':00+00:00' from bench_day, bench_minute
     where bench_day.k = 30 + (i * 7919) % 730 and bench_minute.k = (i * 13) % 1440),
    seen.t,
    -- The search keys (normalize::search::fold) of the ASCII names, as the server computes them.
    lower(f.ascii || ' ' || l.ascii), lower(l.ascii), case when i % 8 = 0 then lower(l.ascii) || ' s.r.o.' end,
    case when i % 5 = 0 then f.ascii || '.' || l.ascii || '.' || i || '@gmail.com'
         else f.ascii || '.' || l.ascii || i || '@' || d.name end,
    1
from g join bench_first f on f.k = i % 16 join bench_last l on l.k = (i / 16) % 23
join bench_domain d on d.k = i % 5 join bench_minute seen on seen.k = (i * 104729) % 43200
join bench_meta meta on meta.k = i % 12 join bench_ip ip on ip.k = i & 65535;

insert into credit_ledger (space_id, customer_id, amount, reason, created_at)
with recursive g(i) as (select :lo union all select i + 1 from g where i < :hi)
select :space, :base + i - :lo, i % 500 + 1, 'bench top-up',
    (select t from bench_minute where k = (i * 7919) % 43200)
from g where i % 10 < 3
union all
select :space, :base + i - :lo, -(i % 50 + 1), 'bench purchase',
    (select t from bench_minute where k = (i * 31) % 43200)
from g where i % 10 = 0;

insert into customer_group_members (space_id, customer_id, group_id, created_at, premium, ban)
with recursive g(i) as (select :lo union all select i + 1 from g where i < :hi),
m(space_id, customer_id, group_id) as (
    select :space, :base + i - :lo, (select id from bench_group where k = (i / 5) % 6) from g where i % 5 = 1
    union all
    select :space, :base + i - :lo, (select id from bench_group where k = (i / 5 + 1) % 6) from g where i % 25 = 1)
select m.space_id, m.customer_id, m.group_id, c.created_at, c.premium, c.ban
from m cross join customers c where c.id = m.customer_id;

insert into subscriptions (space_id, customer_id, external_id, product_slug, product_code, order_number,
    order_hash, auto_renew, status, valid_until, created_at, updated_at)
with recursive g(i) as (select :lo union all select i + 1 from g where i < :hi)
select :space, :base + i - :lo, 'bsub' || i || 'a', 'predplatne-rocni', 'predplatne-rocni', cast(25000000 + i as text),
    md5('order-' || i), i % 2 = 0, 'active',
    case when i % 20 = 3 then null else strftime('%Y-%m-%dT%H:%M:%S+00:00', :now + 365 * 86400, 'unixepoch') end,
    strftime('%Y-%m-%dT%H:%M:%S+00:00', :now - 30 * 86400, 'unixepoch'),
    strftime('%Y-%m-%dT%H:%M:%S+00:00', :now - 30 * 86400, 'unixepoch')
from g where i % 10 = 3
union all
select :space, :base + i - :lo, 'bsub' || i || 'b', 'predplatne-mesicni', 'predplatne-mesicni',
    cast(35000000 + i as text), md5('order-old-' || i), 0, 'active',
    strftime('%Y-%m-%dT%H:%M:%S+00:00', :now - 86400, 'unixepoch'),
    strftime('%Y-%m-%dT%H:%M:%S+00:00', :now - 60 * 86400, 'unixepoch'),
    strftime('%Y-%m-%dT%H:%M:%S+00:00', :now - 60 * 86400, 'unixepoch')
from g where i % 20 = 13;

-- The profile's stored parts (migrations/sqlite/0005_profile_lists.sql), as the server
-- keeps them on every write.
update customers set credit_balance = (select sum(amount) from credit_ledger l
    where l.space_id = :space and l.customer_id = customers.id)
where id in (select customer_id from credit_ledger
             where space_id = :space and customer_id between :base and :base + :hi - :lo);
update customers set profile_groups = (select json_group_array(json_object('name', g.name, 'slug', g.slug)) from
    (select g.name, g.slug from customer_group_members gm join customer_groups g on g.id = gm.group_id
     where gm.space_id = :space and gm.customer_id = customers.id order by g.name) g)
where id in (select customer_id from customer_group_members
             where space_id = :space and customer_id between :base and :base + :hi - :lo);
update customers set profile_subscriptions = (select json_group_array(json_object('external_id', s.external_id,
    'product_slug', s.product_slug, 'product_code', s.product_code, 'order_number', s.order_number,
    'order_hash', s.order_hash, 'auto_renew', json(case when s.auto_renew then 'true' else 'false' end),
    'valid_until', s.valid_until)) from
    (select * from subscriptions s where s.space_id = :space and s.customer_id = customers.id and s.status = 'active'
     order by s.id) s)
where id in (select customer_id from subscriptions where space_id = :space and status = 'active'
             and customer_id between :base and :base + :hi - :lo);

insert into customer_matches (space_id, manager_id, customer_id, notice, created_at, updated_at)
with recursive g(i) as (select :lo union all select i + 1 from g where i < :hi),
j(j) as (values (1), (2), (3))
select :space, :base + i - :lo, :base + i + j - :lo, case when j = 1 then 'bench relation' end, m.t, m.t
from g cross join j join bench_minute m on m.k = (i % 1000) * 4 + j where i % 50 = 25 and i + 3 <= :hi
union all
select :space, :base + i - 5 - :lo, :base + i - :lo, null, m.t, m.t
from g join bench_minute m on m.k = (i % 1000) * 4 where i % 50 = 25 and i - 5 >= :lo;

-- Sessions as in bench/load.sql: the real one and pgbench's, last seen over the past minute so
-- that the server's once-a-minute touches come spread out, not all in one burst.
insert or ignore into sessions (space_id, customer_id, identity_digest, created_at, expires_at, last_seen_at)
with recursive k(k) as (select 1 union all select k + 1 from k where k < min(:sessions, :hi)),
s(i) as (select k * :hi / min(:sessions, :hi) from k),
d(i, digest) as (select i, sha256(md5('bench-identity-' || i)) from s
                 union all select i, cast(5000000000000000 + i as text) from s)
select :space, c.id, d.digest, strftime('%Y-%m-%dT%H:%M:%S+00:00', :now - d.i % 60, 'unixepoch'),
    strftime('%Y-%m-%dT%H:%M:%S+00:00', :now + 90 * 86400, 'unixepoch'),
    strftime('%Y-%m-%dT%H:%M:%S+00:00', :now - d.i % 60, 'unixepoch')
from d join customers c on c.space_id = :space
    and c.cu_ref_no = cast(1000000000000000 + (d.i * 912345678901) % 1000000000000000 as text);
