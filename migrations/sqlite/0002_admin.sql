-- The admin side: who did what, when, and under which request. Rows are only ever added.
-- `actor` is the acting key's first 8 characters (never the key) or 'cli' for the command
-- line, whose rows have no actor_key_id.
create table audit_log (
    id integer primary key,
    organisation_id bigint references organisations (id),
    actor_key_id bigint references api_keys (id),
    actor text not null,
    action text not null,
    target text not null default '',
    detail text not null default '{}',
    request_id text,
    created_at text not null
);
create index audit_log_organisation on audit_log (organisation_id, created_at);
-- The operator's unfiltered, newest-first listing.
create index audit_log_created on audit_log (created_at);

-- Listing an organisation's keys.
create index api_keys_organisation on api_keys (organisation_id, id);
