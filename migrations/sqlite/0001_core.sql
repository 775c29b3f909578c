-- Organisations own keys and two data spaces (live, sandbox). Every tenant table carries
-- space_id, and every unique key and hot index starts with it, so a space's rows can be
-- co-located (for example distributed by space_id) without a redesign.
create table organisations (
    id integer primary key,
    slug text not null unique,
    name text not null,
    created_at text not null
);

create table spaces (
    id integer primary key,
    organisation_id bigint not null references organisations (id),
    mode text not null check (mode in ('live', 'sandbox')),
    unique (organisation_id, mode)
);

create table api_keys (
    id integer primary key,
    organisation_id bigint not null references organisations (id),
    kind text not null check (kind in ('PROD', 'DEV', 'ROOT')),
    digest text not null unique,
    prefix text not null,
    label text not null default '',
    scopes text not null,
    rate_limit_per_minute bigint,
    created_at text not null,
    last_used_at text,
    expires_at text,
    revoked_at text
);

create table customers (
    space_id bigint not null references spaces (id),
    id integer primary key,
    cu_ref_no text not null,
    email text,
    email_canonical text,
    email_rules_version integer not null default 1,
    phone text,
    first_name text,
    last_name text,
    company_name text,
    company_registration_number text,
    tax_identification_number text,
    premium integer not null default false,
    ban integer not null default false,
    meta text not null default '{}',
    referrer_id bigint references customers (id),
    registration_ip text,
    last_ip text,
    last_seen_at text,
    created_at text not null,
    updated_at text not null,
    erased_at text,
    unique (space_id, cu_ref_no),
    unique (space_id, email_canonical)
);

create table customer_groups (
    space_id bigint not null references spaces (id),
    id integer primary key,
    name text not null,
    slug text not null,
    unique (space_id, slug)
);

create table customer_group_members (
    space_id bigint not null references spaces (id),
    customer_id bigint not null references customers (id),
    group_id bigint not null references customer_groups (id),
    primary key (space_id, customer_id, group_id)
);

create table credit_ledger (
    space_id bigint not null references spaces (id),
    id integer primary key,
    customer_id bigint not null references customers (id),
    amount bigint not null,
    reason text not null default '',
    created_at text not null
);
create index credit_ledger_customer on credit_ledger (space_id, customer_id);

create table subscriptions (
    space_id bigint not null references spaces (id),
    id integer primary key,
    customer_id bigint not null references customers (id),
    external_id text not null,
    product_slug text not null,
    product_code text not null,
    order_number text not null,
    order_hash text not null,
    auto_renew integer not null default false,
    status text not null default 'active',
    valid_until text,
    created_at text not null,
    updated_at text not null,
    unique (space_id, external_id)
);
create index subscriptions_customer on subscriptions (space_id, customer_id);

create table sessions (
    space_id bigint not null references spaces (id),
    id integer primary key,
    customer_id bigint not null references customers (id),
    identity_digest text not null,
    created_at text not null,
    expires_at text not null,
    last_seen_at text not null,
    last_ip text,
    revoked_at text,
    unique (space_id, identity_digest)
);
create index sessions_customer on sessions (space_id, customer_id);

create table customer_matches (
    space_id bigint not null references spaces (id),
    manager_id bigint not null references customers (id),
    customer_id bigint not null references customers (id),
    notice text,
    contact_email text,
    created_at text not null,
    updated_at text not null,
    primary key (space_id, manager_id, customer_id),
    check (manager_id <> customer_id)
);
create index customer_matches_customer on customer_matches (space_id, customer_id, created_at);
create index customer_matches_manager on customer_matches (space_id, manager_id, created_at);
