-- The profile's derived parts live on the customer row, so a profile read touches that
-- row alone (and the referrer's, when there is one). Every write to the ledger, the
-- memberships or the subscriptions brings them up to date in its own transaction.
--   credit_balance: the sum of the customer's credit_ledger amounts.
--   profile_groups: [{name, slug}] ordered by name.
--   profile_subscriptions: the active subscriptions [{external_id, …, valid_until}]
--     ordered by id; one past its valid_until is left out when the profile is read.
alter table customers add column credit_balance bigint not null default 0;
alter table customers add column profile_groups text not null default '[]';
alter table customers add column profile_subscriptions text not null default '[]';

update customers set
    credit_balance = (select coalesce(sum(l.amount), 0) from credit_ledger l
        where l.space_id = customers.space_id and l.customer_id = customers.id),
    profile_groups = (select json_group_array(json_object('name', g.name, 'slug', g.slug)) from
        (select g.name, g.slug from customer_group_members gm join customer_groups g on g.id = gm.group_id
        where gm.space_id = customers.space_id and gm.customer_id = customers.id order by g.name) g),
    profile_subscriptions = (select json_group_array(json_object('external_id', s.external_id,
        'product_slug', s.product_slug, 'product_code', s.product_code, 'order_number', s.order_number,
        'order_hash', s.order_hash, 'auto_renew', json(case when s.auto_renew then 'true' else 'false' end),
        'valid_until', s.valid_until)) from
        (select * from subscriptions s where s.space_id = customers.space_id and s.customer_id = customers.id
        and s.status = 'active' order by s.id) s);

-- An erasure clears the erased customer as referrer of others: found by index, not by a
-- scan of the space.
create index customers_referrer on customers (space_id, referrer_id) where referrer_id is not null;
