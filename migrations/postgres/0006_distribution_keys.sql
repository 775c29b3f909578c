-- Distribution keys: every primary key of a tenant table starts with space_id, and every
-- foreign key from one tenant table to another goes through (space_id, …), so the
-- tables can be distributed by space_id and colocated on a sharded PostgreSQL (Citus),
-- where a key or a reference must include the distribution column. The foreign keys to
-- `spaces` stay: a global table is a reference table there.
--
-- The keys change on tables that already hold rows: the references to a primary key go
-- first (they depend on its index), then the primary keys are rebuilt as (space_id, id),
-- then the references come back as composite keys under their old names and with their
-- old behaviour on delete (none: NO ACTION). Adding them checks every stored row: a
-- child in another space than its parent would fail the migration, and the server would
-- not start on it.

-- 1. The references to customers (id) and customer_groups (id).
alter table customers drop constraint customers_referrer_id_fkey;
alter table customer_group_members drop constraint customer_group_members_customer_id_fkey;
alter table customer_group_members drop constraint customer_group_members_group_id_fkey;
alter table credit_ledger drop constraint credit_ledger_customer_id_fkey;
alter table subscriptions drop constraint subscriptions_customer_id_fkey;
alter table sessions drop constraint sessions_customer_id_fkey;
alter table customer_matches drop constraint customer_matches_manager_id_fkey;
alter table customer_matches drop constraint customer_matches_customer_id_fkey;
alter table account_tokens drop constraint account_tokens_customer_id_fkey;
alter table mail_outbox drop constraint mail_outbox_customer_id_fkey;
alter table contact_points drop constraint contact_points_customer_id_fkey;

-- 2. Primary keys on (space_id, id). The identity columns keep their sequences, so ids
-- stay unique across spaces as before; the key only leads with the space.
alter table customers drop constraint customers_pkey,
    add constraint customers_pkey primary key (space_id, id);
alter table customer_groups drop constraint customer_groups_pkey,
    add constraint customer_groups_pkey primary key (space_id, id);
alter table credit_ledger drop constraint credit_ledger_pkey,
    add constraint credit_ledger_pkey primary key (space_id, id);
alter table subscriptions drop constraint subscriptions_pkey,
    add constraint subscriptions_pkey primary key (space_id, id);
alter table sessions drop constraint sessions_pkey,
    add constraint sessions_pkey primary key (space_id, id);
alter table account_tokens drop constraint account_tokens_pkey,
    add constraint account_tokens_pkey primary key (space_id, id);
alter table mail_outbox drop constraint mail_outbox_pkey,
    add constraint mail_outbox_pkey primary key (space_id, id);

-- 3. The references again, each within its space.
alter table customers add constraint customers_referrer_id_fkey
    foreign key (space_id, referrer_id) references customers (space_id, id);
alter table customer_group_members add constraint customer_group_members_customer_id_fkey
    foreign key (space_id, customer_id) references customers (space_id, id);
alter table customer_group_members add constraint customer_group_members_group_id_fkey
    foreign key (space_id, group_id) references customer_groups (space_id, id);
alter table credit_ledger add constraint credit_ledger_customer_id_fkey
    foreign key (space_id, customer_id) references customers (space_id, id);
alter table subscriptions add constraint subscriptions_customer_id_fkey
    foreign key (space_id, customer_id) references customers (space_id, id);
alter table sessions add constraint sessions_customer_id_fkey
    foreign key (space_id, customer_id) references customers (space_id, id);
alter table customer_matches add constraint customer_matches_manager_id_fkey
    foreign key (space_id, manager_id) references customers (space_id, id);
alter table customer_matches add constraint customer_matches_customer_id_fkey
    foreign key (space_id, customer_id) references customers (space_id, id);
alter table account_tokens add constraint account_tokens_customer_id_fkey
    foreign key (space_id, customer_id) references customers (space_id, id);
alter table mail_outbox add constraint mail_outbox_customer_id_fkey
    foreign key (space_id, customer_id) references customers (space_id, id);
alter table contact_points add constraint contact_points_customer_id_fkey
    foreign key (space_id, customer_id) references customers (space_id, id);

