-- A group's members listed newest first, with or without a flag, from the membership rows
-- alone: each carries its customer's creation time and flags, kept equal to the customer
-- row's by every write to either, in the same transaction. A page of a group then reads
-- the page, however large the group and however few of its members have the flag; before,
-- a flag that none of a group's members had meant reading every member to find nothing.
-- SQLite adds a column that may not be null only with a default, so the table is built
-- again with them (no defaults: a write that does not give them fails instead of storing
-- a wrong flag). Nothing references it and no trigger is on it.
create table customer_group_members_new (
    space_id bigint not null references spaces (id),
    customer_id bigint not null references customers (id),
    group_id bigint not null references customer_groups (id),
    created_at text not null,
    premium integer not null,
    ban integer not null,
    primary key (space_id, customer_id, group_id)
);
insert into customer_group_members_new (space_id, customer_id, group_id, created_at, premium, ban)
select m.space_id, m.customer_id, m.group_id, c.created_at, c.premium, c.ban
from customer_group_members m join customers c on c.id = m.customer_id;
drop table customer_group_members;
alter table customer_group_members_new rename to customer_group_members;

-- The group's list and its two flags, as `customers_listed*` for the whole space. The
-- first also finds a group's members, which `customer_group_members_group` did.
create index customer_group_members_listed
    on customer_group_members (space_id, group_id, created_at desc, customer_id desc);
create index customer_group_members_listed_premium
    on customer_group_members (space_id, group_id, created_at desc, customer_id desc) where premium;
create index customer_group_members_listed_banned
    on customer_group_members (space_id, group_id, created_at desc, customer_id desc) where ban;
