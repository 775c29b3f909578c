-- Customers listed and searched. Each filter of the list is served by an index, so a
-- page costs the same in a space of a thousand customers or of millions.
--
-- Search keys: the folded form (lower-case ASCII transliteration, `normalize::search`)
-- of the full name ("first last"), the last name, the company and the e-mail as written.
-- A query matches a prefix of any of them. They are computed by the server, which sets
-- search_version to the rules it used; a row with an older version (every row written
-- before this migration) has its keys recomputed by the server in the background.
-- The "C" collation orders them byte by byte, so a prefix is one range of the index.
alter table customers add column search_name text collate "C";
alter table customers add column search_last_name text collate "C";
alter table customers add column search_company_name text collate "C";
alter table customers add column search_email text collate "C";
alter table customers add column search_version smallint not null default 0;

create index customers_search_name on customers (space_id, search_name) where search_name is not null;
create index customers_search_last_name on customers (space_id, search_last_name) where search_last_name is not null;
create index customers_search_company_name on customers (space_id, search_company_name)
    where search_company_name is not null;
create index customers_search_email on customers (space_id, search_email) where search_email is not null;
-- The rows whose keys are still to be computed; empty once they are.
create index customers_search_pending on customers (space_id, id) where search_version < 1;

-- The list itself, newest first, and its two flags (rare values: a scan of the whole list
-- filtered by them would grow with the space).
create index customers_listed on customers (space_id, created_at desc, id desc) where erased_at is null;
create index customers_listed_premium on customers (space_id, created_at desc, id desc)
    where premium and erased_at is null;
create index customers_listed_banned on customers (space_id, created_at desc, id desc)
    where ban and erased_at is null;

-- A group's members, found from the group.
create index customer_group_members_group on customer_group_members (space_id, group_id, customer_id);
