-- The profile's derived parts live on the customer row, so a profile read touches that
-- row alone (and the referrer's, when there is one). Every write to the ledger, the
-- memberships or the subscriptions brings them up to date in its own transaction.
--   credit_balance: the sum of the customer's credit_ledger amounts.
--   profile_groups: [{name, slug}] ordered by name.
--   profile_subscriptions: the active subscriptions [{external_id, …, valid_until}]
--     ordered by id; one past its valid_until is left out when the profile is read.
alter table customers add column credit_balance bigint not null default 0;
alter table customers add column profile_groups jsonb not null default '[]';
alter table customers add column profile_subscriptions jsonb not null default '[]';

update customers c set
    credit_balance = (select coalesce(sum(l.amount), 0)::bigint from credit_ledger l
        where l.space_id = c.space_id and l.customer_id = c.id),
    profile_groups = (select coalesce(jsonb_agg(jsonb_build_object('name', g.name, 'slug', g.slug)
        order by g.name), '[]'::jsonb)
        from customer_group_members gm join customer_groups g on g.id = gm.group_id
        where gm.space_id = c.space_id and gm.customer_id = c.id),
    profile_subscriptions = (select coalesce(jsonb_agg(jsonb_build_object('external_id', s.external_id,
        'product_slug', s.product_slug, 'product_code', s.product_code, 'order_number', s.order_number,
        'order_hash', s.order_hash, 'auto_renew', s.auto_renew, 'valid_until', s.valid_until) order by s.id),
        '[]'::jsonb)
        from subscriptions s where s.space_id = c.space_id and s.customer_id = c.id and s.status = 'active');

-- An erasure clears the erased customer as referrer of others: found by index, not by a
-- scan of the space.
create index customers_referrer on customers (space_id, referrer_id) where referrer_id is not null;
