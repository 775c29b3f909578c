-- Merging duplicates: the duplicate stays as a tombstone (erased, so no lookup finds it
-- live) that names the customer it was merged into, so its cuRefNo answers with the
-- primary's and is never handed out again.
alter table customers add column merged_into bigint;
alter table customers add constraint customers_merged_into_fkey
    foreign key (space_id, merged_into) references customers (space_id, id);
-- A later merge of the primary makes the earlier tombstones name the new primary.
create index customers_merged_into on customers (space_id, merged_into) where merged_into is not null;

-- A merge is announced as `customer.merged` (about the duplicate, the primary beside it);
-- an erasure as `customer.deleted`. The trigger runs only while the row is live.
create or replace function customer_webhook_events() returns trigger language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        perform record_webhook_event(new.space_id, 'customer.created', new.id, null, new.created_at);
        if new.password_hash is not null then
            perform record_webhook_event(new.space_id, 'account.registered', new.id, null, new.created_at);
        end if;
        if new.account_confirmed_at is not null then
            perform record_webhook_event(new.space_id, 'account.confirmed', new.id, null, new.created_at);
        end if;
        return null;
    end if;
    if new.erased_at is not null and new.merged_into is not null then
        perform record_webhook_event(new.space_id, 'customer.merged', new.id, new.merged_into, new.updated_at);
        return null;
    end if;
    if new.erased_at is not null then
        perform record_webhook_event(new.space_id, 'customer.deleted', new.id, null, new.updated_at);
        -- Bodies rendered before the erasure (waiting for a retry) are rendered again.
        update webhook_deliveries d set body = null
        from webhook_events e
        where e.space_id = new.space_id and (e.customer_id = new.id or e.other_id = new.id)
          and d.space_id = e.space_id and d.event_id = e.id and d.state = 'pending' and d.body is not null;
        return null;
    end if;
    if (old.email, old.phone, old.first_name, old.last_name, old.company_name, old.company_registration_number,
        old.tax_identification_number, old.premium, old.ban, old.meta, old.referrer_id, old.profile_groups,
        old.profile_subscriptions, old.partner_customer_id, old.addresses, old.profile_alternates)
       is distinct from
       (new.email, new.phone, new.first_name, new.last_name, new.company_name, new.company_registration_number,
        new.tax_identification_number, new.premium, new.ban, new.meta, new.referrer_id, new.profile_groups,
        new.profile_subscriptions, new.partner_customer_id, new.addresses, new.profile_alternates)
       -- A customer written again by the transaction that created it (its referrer set
       -- after the batch's insert, say) is still new: `customer.created` says it all.
       and new.updated_at <> new.created_at then
        perform record_webhook_event(new.space_id, 'customer.updated', new.id, null, new.updated_at);
    end if;
    if old.password_hash is null and new.password_hash is not null then
        perform record_webhook_event(new.space_id, 'account.registered', new.id, null, new.updated_at);
    end if;
    if old.account_confirmed_at is null and new.account_confirmed_at is not null then
        perform record_webhook_event(new.space_id, 'account.confirmed', new.id, null, new.updated_at);
    end if;
    return null;
end
$$;
