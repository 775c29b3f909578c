-- bench/import.sh's reference: the rows an import of new contacts writes, without the server.
-- One transaction is one batch (:batch contacts, the server's default of 500): the customer
-- rows as bench/gen_contacts.py describes them, with their profile lists, and one group
-- membership each, in one statement (a data-modifying CTE), foreign keys checked as usual.
-- :base keeps every run's cuRefNos and addresses apart; :group is the 'Import test' group.
\set ctr :ctr + 1
\set first :base + (:client_id * 1000000 + :ctr) * :batch
begin;
with c as (insert into customers (space_id, cu_ref_no, email, email_canonical, email_rules_version, phone, first_name, last_name, premium, ban, meta, profile_groups, profile_subscriptions, registration_ip, last_ip, created_at, updated_at) select :space, (:first::bigint + i)::text, 'ref' || (:first::bigint + i) || '@example.com', 'ref' || (:first::bigint + i) || '@example.com', 1, '+4207' || (:first::bigint + i) % 100000000, 'Name' || i, 'Surname', false, false, jsonb_build_object('source', 'bench', 'n', i), '[{"name": "Import test", "slug": "import-test"}]', '[]', null, null, now(), now() from generate_series(0, :batch - 1) i returning id, created_at, premium, ban)
insert into customer_group_members (space_id, customer_id, group_id, created_at, premium, ban) select :space, id, :group, created_at, premium, ban from c;
commit;
