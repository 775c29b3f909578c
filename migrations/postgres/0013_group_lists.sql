-- A group's members listed newest first, with or without a flag, from the membership rows
-- alone: each carries its customer's creation time and flags, kept equal to the customer
-- row's by every write to either, in the same transaction. A page of a group then reads
-- the page, however large the group and however few of its members have the flag; before,
-- a flag that none of a group's members had meant reading every member to find nothing.
alter table customer_group_members add column created_at timestamptz,
    add column premium boolean, add column ban boolean;
update customer_group_members m set created_at = c.created_at, premium = c.premium, ban = c.ban
    from customers c where c.space_id = m.space_id and c.id = m.customer_id;
-- No defaults: a write that does not give them fails instead of storing a wrong flag.
alter table customer_group_members alter column created_at set not null,
    alter column premium set not null, alter column ban set not null;

-- The group's list and its two flags, as `customers_listed*` for the whole space. The
-- first also finds a group's members, which `customer_group_members_group` did.
drop index customer_group_members_group;
create index customer_group_members_listed
    on customer_group_members (space_id, group_id, created_at desc, customer_id desc);
create index customer_group_members_listed_premium
    on customer_group_members (space_id, group_id, created_at desc, customer_id desc) where premium;
create index customer_group_members_listed_banned
    on customer_group_members (space_id, group_id, created_at desc, customer_id desc) where ban;
