-- The peers' customer model (the extended profile): an external id that finds the
-- contact, postal addresses, and the alternate addresses and numbers as they were given.
--   partner_customer_id: the client's own id of the contact, unique in its space.
--   addresses: [{addressId, partnerAddressId, address1, …, isDefault}] in the order given;
--     the contact's own list (no other table holds it), at most 20.
--   profile_alternates: {emails: [...], phones: [...]}, the contact points as shown in the
--     profile (sorted); contact_points stays what they are looked up by, and its `shown`
--     keeps the form an address was given in beside its canonical form.
alter table customers add column partner_customer_id text;
alter table customers add column addresses jsonb not null default '[]';
alter table customers add column profile_alternates jsonb not null default '{"emails": [], "phones": []}';
alter table contact_points add column shown text;
create unique index customers_partner_customer_id on customers (space_id, partner_customer_id)
    where partner_customer_id is not null;

update customers c set profile_alternates = jsonb_build_object(
        'emails', coalesce((select jsonb_agg(p.value order by p.value) from contact_points p
            where p.space_id = c.space_id and p.customer_id = c.id and p.kind = 'email'), '[]'::jsonb),
        'phones', coalesce((select jsonb_agg(p.value order by p.value) from contact_points p
            where p.space_id = c.space_id and p.customer_id = c.id and p.kind = 'phone'), '[]'::jsonb))
    where exists (select 1 from contact_points p where p.space_id = c.space_id and p.customer_id = c.id);

-- A change of the new parts is a change of the profile.
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
