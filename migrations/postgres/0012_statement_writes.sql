-- A write of many customers at once (a batch of an import) pays per statement where it can,
-- not per row.

-- 1. A row that references its customer within its space, `(space_id, customer_id)`, names
--    an existing space through that customer's row: its own reference to the space only
--    repeated that check, once per row written.
alter table customer_group_members drop constraint customer_group_members_space_id_fkey;
alter table credit_ledger drop constraint credit_ledger_space_id_fkey;
alter table subscriptions drop constraint subscriptions_space_id_fkey;
alter table sessions drop constraint sessions_space_id_fkey;
alter table customer_matches drop constraint customer_matches_space_id_fkey;
alter table account_tokens drop constraint account_tokens_space_id_fkey;
alter table contact_points drop constraint contact_points_space_id_fkey;

-- 2. The customer events (0011's rules, unchanged) are recorded once per statement, from
--    the rows it wrote, in the order of their ids and, for one customer, in the order the
--    rules list them.
drop trigger customers_created_events on customers;
drop trigger customers_changed_events on customers;
drop function customer_webhook_events();

-- Events are written only where a live endpoint of the row's space wants their type; a
-- statement whose spaces have no live endpoint at all (an import, as a rule) stops at once.
create function customers_created_webhook_events() returns trigger language plpgsql as $$
begin
    if not exists (select 1 from webhook_endpoints w
                   where w.space_id in (select space_id from created) and w.disabled_at is null) then
        return null;
    end if;
    insert into webhook_events (space_id, type, customer_id, other_id, created_at)
    select n.space_id, e.type, n.id, null, n.created_at
    from created n
    cross join lateral (values (1, 'customer.created', true),
                               (2, 'account.registered', n.password_hash is not null),
                               (3, 'account.confirmed', n.account_confirmed_at is not null)) e (ord, type, due)
    where e.due and exists (select 1 from webhook_endpoints w where w.space_id = n.space_id
        and w.disabled_at is null and (w.events is null or strpos(w.events, ',' || e.type || ',') > 0))
    order by n.id, e.ord;
    return null;
end
$$;
create trigger customers_created_events after insert on customers
    referencing new table as created
    for each statement execute function customers_created_webhook_events();

-- Only a row that was live before the statement has events.
create function customers_changed_webhook_events() returns trigger language plpgsql as $$
begin
    if exists (select 1 from webhook_endpoints w
               where w.space_id in (select space_id from new_rows) and w.disabled_at is null) then
        insert into webhook_events (space_id, type, customer_id, other_id, created_at)
        select n.space_id, e.type, n.id, e.other, n.updated_at
        from old_rows o
        join new_rows n on n.space_id = o.space_id and n.id = o.id
        cross join lateral (values
            (1, 'customer.merged', n.merged_into, n.erased_at is not null and n.merged_into is not null),
            (2, 'customer.deleted', null, n.erased_at is not null and n.merged_into is null),
            -- A customer written again by the transaction that created it (its referrer set
            -- after the batch's insert, say) is still new: `customer.created` says it all.
            (3, 'customer.updated', null, n.erased_at is null and n.updated_at <> n.created_at and
                (o.email, o.phone, o.first_name, o.last_name, o.company_name, o.company_registration_number,
                 o.tax_identification_number, o.premium, o.ban, o.meta, o.referrer_id, o.profile_groups,
                 o.profile_subscriptions, o.partner_customer_id, o.addresses, o.profile_alternates)
                is distinct from
                (n.email, n.phone, n.first_name, n.last_name, n.company_name, n.company_registration_number,
                 n.tax_identification_number, n.premium, n.ban, n.meta, n.referrer_id, n.profile_groups,
                 n.profile_subscriptions, n.partner_customer_id, n.addresses, n.profile_alternates)),
            (4, 'account.registered', null,
                n.erased_at is null and o.password_hash is null and n.password_hash is not null),
            (5, 'account.confirmed', null,
                n.erased_at is null and o.account_confirmed_at is null and n.account_confirmed_at is not null)
        ) e (ord, type, other, due)
        where o.erased_at is null and e.due
          and exists (select 1 from webhook_endpoints w where w.space_id = n.space_id and w.disabled_at is null
                      and (w.events is null or strpos(w.events, ',' || e.type || ',') > 0))
        order by n.id, e.ord;
    end if;
    -- Bodies rendered before an erasure (waiting for a retry) are rendered again.
    if exists (select 1 from new_rows n where n.erased_at is not null and n.merged_into is null) then
        update webhook_deliveries d set body = null
        from old_rows o, new_rows n, webhook_events e
        where n.space_id = o.space_id and n.id = o.id and o.erased_at is null
          and n.erased_at is not null and n.merged_into is null
          and e.space_id = n.space_id and (e.customer_id = n.id or e.other_id = n.id)
          and d.space_id = e.space_id and d.event_id = e.id and d.state = 'pending' and d.body is not null;
    end if;
    return null;
end
$$;
create trigger customers_changed_events after update on customers
    referencing old table as old_rows new table as new_rows
    for each statement execute function customers_changed_webhook_events();
