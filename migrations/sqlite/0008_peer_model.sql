-- The peers' customer model (the extended profile): an external id that finds the
-- contact, postal addresses, and the alternate addresses and numbers as they were given.
--   partner_customer_id: the client's own id of the contact, unique in its space.
--   addresses: [{addressId, partnerAddressId, address1, …, isDefault}] in the order given;
--     the contact's own list (no other table holds it), at most 20.
--   profile_alternates: {emails: [...], phones: [...]}, the contact points as shown in the
--     profile (sorted); contact_points stays what they are looked up by, and its `shown`
--     keeps the form an address was given in beside its canonical form.
alter table customers add column partner_customer_id text;
alter table customers add column addresses text not null default '[]';
alter table customers add column profile_alternates text not null default '{"emails":[],"phones":[]}';
alter table contact_points add column shown text;
create unique index customers_partner_customer_id on customers (space_id, partner_customer_id)
    where partner_customer_id is not null;

update customers set profile_alternates = json_object(
        'emails', (select json_group_array(value) from (select p.value from contact_points p
            where p.space_id = customers.space_id and p.customer_id = customers.id and p.kind = 'email'
            order by p.value)),
        'phones', (select json_group_array(value) from (select p.value from contact_points p
            where p.space_id = customers.space_id and p.customer_id = customers.id and p.kind = 'phone'
            order by p.value)))
    where exists (select 1 from contact_points p where p.space_id = customers.space_id and p.customer_id = customers.id);

-- A change of the new parts is a change of the profile.
drop trigger customers_changed_events;
create trigger customers_changed_events after update on customers
    when old.erased_at is null and new.erased_at is null
begin
    -- A customer written again by the transaction that created it (its referrer set after
    -- the batch's insert, say) is still new: `customer.created` says it all.
    insert into webhook_event_requests
    select new.space_id, 'customer.updated', new.id, null, new.updated_at
    where new.updated_at <> new.created_at
      and (old.email is not new.email or old.phone is not new.phone or old.first_name is not new.first_name
           or old.last_name is not new.last_name or old.company_name is not new.company_name
           or old.company_registration_number is not new.company_registration_number
           or old.tax_identification_number is not new.tax_identification_number
           or old.premium is not new.premium or old.ban is not new.ban or old.meta is not new.meta
           or old.referrer_id is not new.referrer_id or old.profile_groups is not new.profile_groups
           or old.profile_subscriptions is not new.profile_subscriptions
           or old.partner_customer_id is not new.partner_customer_id or old.addresses is not new.addresses
           or old.profile_alternates is not new.profile_alternates);
    insert into webhook_event_requests
    select new.space_id, 'account.registered', new.id, null, new.updated_at
    where old.password_hash is null and new.password_hash is not null;
    insert into webhook_event_requests
    select new.space_id, 'account.confirmed', new.id, null, new.updated_at
    where old.account_confirmed_at is null and new.account_confirmed_at is not null;
end;
