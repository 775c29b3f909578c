-- Customers lo..hi of bench/compare.sh into the demo live space, by SQL alone.
--   psql -v space=ID -v lo=1 -v hi=10000 -v sessions=10000 -f bench/load.sql
-- Customer i is a pure function of i: keep these rules in step with bench/bench_data.py
-- (the SQLite loader and the samples wrk picks from). compare.sh checks a few samples
-- over HTTP after loading, so a drift shows at once.
\set ON_ERROR_STOP on
begin;

-- Fast path, all undone by a failure (DDL is transactional): foreign-key checks are skipped
-- where allowed (superuser; the rows are consistent by construction), and the customers'
-- secondary indexes are dropped and rebuilt from their own definitions after the insert,
-- a sorted build instead of a million random insertions.
do $$
begin
    set local session_replication_role = replica;
exception when insufficient_privilege then
    null;
end $$;
set local maintenance_work_mem = '256MB';
create temp table bench_rebuild on commit drop as
select format('alter table customers drop constraint %I', conname) as undo,
    format('alter table customers add constraint %I %s', conname, pg_get_constraintdef(oid)) as redo
from pg_constraint where conrelid = 'customers'::regclass and contype = 'u'
union all
select format('drop index %s', indexrelid::regclass), pg_get_indexdef(indexrelid)
from pg_index where indrelid = 'customers'::regclass and not indisprimary
    and indexrelid not in (select conindid from pg_constraint where conrelid = 'customers'::regclass);
select undo from bench_rebuild \gexec

-- The server is idle while loading: ids base..base+(hi-lo) are taken from the identity
-- sequence in one step, so every table below can name customer i's id without a lookup.
select nextval(pg_get_serial_sequence('customers', 'id')) as base \gset
select setval(pg_get_serial_sequence('customers', 'id'), :base + :hi - :lo);

insert into customer_groups (space_id, name, slug)
values (:space, 'VIP', 'bench-vip'), (:space, 'Newsletter', 'bench-newsletter'),
       (:space, 'Wholesale', 'bench-wholesale'), (:space, 'Students', 'bench-students'),
       (:space, 'Staff', 'bench-staff'), (:space, 'Loyalty', 'bench-loyalty')
on conflict (space_id, slug) do nothing;
select array_agg(id order by slug) as gids from customer_groups
where space_id = :space and slug like 'bench-%' \gset

insert into customers (space_id, id, cu_ref_no, email, email_canonical, email_rules_version, phone,
    first_name, last_name, company_name, premium, ban, meta, referrer_id, registration_ip, last_ip,
    last_seen_at, created_at, updated_at,
    search_name, search_last_name, search_company_name, search_email, search_version)
overriding system value
select :space, :base + i - :lo, (1000000000000000 + (i * 912345678901) % 1000000000000000)::text,
    case when i % 5 = 0 then fa || '.' || la || '.' || i || '@gmail.com' else fa || '.' || la || i || '@' || dom end,
    case when i % 5 = 0 then fa || la || i || '@gmail.com' else fa || '.' || la || i || '@' || dom end,
    1,
    case when i % 5 in (0, 2) then '+420 7' || (array[2, 3, 7, 9])[1 + i % 4] || lpad(((i * 7) % 10000000)::text, 7, '0') end,
    fn, ln, case when i % 8 = 0 then ln || ' s.r.o.' end,
    i % 15 = 0, i % 500 = 499,
    jsonb_build_object('source', (array['web', 'shop', 'import', 'pos'])[1 + i % 4],
                       'newsletter', i % 3 = 0, 'lang', (array['cs', 'en', 'sk'])[1 + i % 3]),
    case when i % 20 = 7 and i > :lo then :base + i - 1 - :lo end,
    ip, ip,
    now() - ((i * 104729) % 43200) * interval '1 minute',
    date_trunc('day', now()) - (30 + (i * 7919) % 730) * interval '1 day' + ((i * 13) % 1440) * interval '1 minute',
    now() - ((i * 104729) % 43200) * interval '1 minute',
    -- The search keys (normalize::search::fold) of the ASCII names, as the server computes them.
    fa || ' ' || la, la, case when i % 8 = 0 then la || ' s.r.o.' end,
    case when i % 5 = 0 then fa || '.' || la || '.' || i || '@gmail.com' else fa || '.' || la || i || '@' || dom end,
    1
from (
    select i,
        (array['Jan', 'Petr', 'Lucie', 'Tereza', 'Tomáš', 'Jiří', 'Eva', 'Martin', 'Kateřina', 'Pavel', 'Anna',
               'Jakub', 'Marie', 'Lukáš', 'Veronika', 'David'])[1 + i % 16] as fn,
        (array['jan', 'petr', 'lucie', 'tereza', 'tomas', 'jiri', 'eva', 'martin', 'katerina', 'pavel', 'anna',
               'jakub', 'marie', 'lukas', 'veronika', 'david'])[1 + i % 16] as fa,
        (array['Novák', 'Svoboda', 'Dvořák', 'Černý', 'Procházka', 'Kučera', 'Veselý', 'Horák', 'Němec', 'Pokorný',
               'Marek', 'Pospíšil', 'Hájek', 'Král', 'Jelínek', 'Růžička', 'Beneš', 'Fiala', 'Sedláček', 'Doležal',
               'Zeman', 'Kolář', 'Navrátil'])[1 + (i / 16) % 23] as ln,
        (array['novak', 'svoboda', 'dvorak', 'cerny', 'prochazka', 'kucera', 'vesely', 'horak', 'nemec', 'pokorny',
               'marek', 'pospisil', 'hajek', 'kral', 'jelinek', 'ruzicka', 'benes', 'fiala', 'sedlacek', 'dolezal',
               'zeman', 'kolar', 'navratil'])[1 + (i / 16) % 23] as la,
        (array['gmail.com', 'seznam.cz', 'email.cz', 'centrum.cz', 'example.com'])[1 + i % 5] as dom,
        '84.' || ((i >> 16) & 255) || '.' || ((i >> 8) & 255) || '.' || (i & 255) as ip
    from generate_series(:lo::bigint, :hi::bigint) i
) g;

select redo from bench_rebuild \gexec

insert into credit_ledger (space_id, customer_id, amount, reason, created_at)
select :space, :base + i - :lo, i % 500 + 1, 'bench top-up', now() - ((i * 7919) % 43200) * interval '1 minute'
from generate_series(:lo::bigint, :hi::bigint) i where i % 10 < 3
union all
select :space, :base + i - :lo, -(i % 50 + 1), 'bench purchase', now() - ((i * 31) % 43200) * interval '1 minute'
from generate_series(:lo::bigint, :hi::bigint) i where i % 10 = 0;

insert into customer_group_members (space_id, customer_id, group_id, created_at, premium, ban)
select m.space_id, m.customer_id, m.group_id, c.created_at, c.premium, c.ban
from (select :space as space_id, :base + i - :lo as customer_id, (:'gids'::bigint[])[1 + (i / 5) % 6] as group_id
      from generate_series(:lo::bigint, :hi::bigint) i where i % 5 = 1
      union all
      select :space, :base + i - :lo, (:'gids'::bigint[])[1 + (i / 5 + 1) % 6]
      from generate_series(:lo::bigint, :hi::bigint) i where i % 25 = 1) m
join customers c on c.space_id = m.space_id and c.id = m.customer_id;

insert into subscriptions (space_id, customer_id, external_id, product_slug, product_code, order_number,
    order_hash, auto_renew, status, valid_until, created_at, updated_at)
select :space, :base + i - :lo, 'bsub' || i || 'a', 'predplatne-rocni', 'predplatne-rocni', (25000000 + i)::text,
    md5('order-' || i), i % 2 = 0, 'active',
    case when i % 20 = 3 then null else now() + interval '365 days' end,
    now() - interval '30 days', now() - interval '30 days'
from generate_series(:lo::bigint, :hi::bigint) i where i % 10 = 3
union all
-- Expired: present but not running, so the filter on valid_until has work to do.
select :space, :base + i - :lo, 'bsub' || i || 'b', 'predplatne-mesicni', 'predplatne-mesicni',
    (35000000 + i)::text, md5('order-old-' || i), false, 'active', now() - interval '1 day',
    now() - interval '60 days', now() - interval '60 days'
from generate_series(:lo::bigint, :hi::bigint) i where i % 20 = 13;

-- The profile's stored parts (migrations/postgres/0005_profile_lists.sql), as the server
-- keeps them on every write. Each join names the space, so the primary key serves it
-- whatever the (not yet refreshed) statistics say; by id alone, a million customers
-- could be scanned once per ledger group.
update customers c set credit_balance = l.total
from (select customer_id, sum(amount)::bigint as total from credit_ledger
      where space_id = :space and customer_id between :base and :base + :hi - :lo group by customer_id) l
where c.space_id = :space and c.id = l.customer_id;
update customers c set profile_groups = m.list
from (select gm.customer_id, jsonb_agg(jsonb_build_object('name', g.name, 'slug', g.slug) order by g.name) as list
      from customer_group_members gm join customer_groups g on g.id = gm.group_id
      where gm.space_id = :space and gm.customer_id between :base and :base + :hi - :lo group by gm.customer_id) m
where c.space_id = :space and c.id = m.customer_id;
update customers c set profile_subscriptions = s.list
from (select customer_id, jsonb_agg(jsonb_build_object('external_id', external_id, 'product_slug', product_slug,
          'product_code', product_code, 'order_number', order_number, 'order_hash', order_hash,
          'auto_renew', auto_renew, 'valid_until', valid_until) order by id) as list
      from subscriptions where space_id = :space and status = 'active'
      and customer_id between :base and :base + :hi - :lo group by customer_id) s
where c.space_id = :space and c.id = s.customer_id;

-- Every 50th customer manages the next three and is managed by the one five before.
insert into customer_matches (space_id, manager_id, customer_id, notice, created_at, updated_at)
select :space, :base + i - :lo, :base + i + j - :lo, case when j = 1 then 'bench relation' end,
    now() - ((i % 1000) * 4 + j) * interval '1 minute',
    now() - ((i % 1000) * 4 + j) * interval '1 minute'
from generate_series(:lo::bigint, :hi::bigint) i cross join generate_series(1, 3) j
where i % 50 = 25 and i + 3 <= :hi
union all
select :space, :base + i - 5 - :lo, :base + i - :lo, null,
    now() - (i % 1000) * 4 * interval '1 minute',
    now() - (i % 1000) * 4 * interval '1 minute'
from generate_series(:lo::bigint, :hi::bigint) i where i % 50 = 25 and i - 5 >= :lo;

-- Sessions: `sessions` customers spread evenly over all of 1..hi (earlier batches' too, found
-- by cuRefNo), each with its real session (the SHA-256 of its identityId, as the server
-- stores it) and one whose digest pgbench can compute. Last seen over the minute before the
-- end of the load (clock time, not the transaction's start), so that the server's
-- once-a-minute touches come spread out rather than in one burst.
insert into sessions (space_id, customer_id, identity_digest, created_at, expires_at, last_seen_at)
select :space, c.id, d.digest, clock_timestamp() - (s.i % 60) * interval '1 second',
    clock_timestamp() + interval '90 days', clock_timestamp() - (s.i % 60) * interval '1 second'
from (select k * :hi / least(:sessions, :hi) as i from generate_series(1::bigint, least(:sessions, :hi)) k) s
cross join lateral (values
    (encode(sha256(convert_to(md5('bench-identity-' || s.i), 'UTF8')), 'hex')),
    ((5000000000000000 + s.i)::text)) d (digest)
join customers c on c.space_id = :space
    and c.cu_ref_no = (1000000000000000 + (s.i * 912345678901) % 1000000000000000)::text
on conflict (space_id, identity_digest) do nothing;

commit;
analyze;
