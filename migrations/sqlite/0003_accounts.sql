-- Storefront accounts. A customer is registered once it has a password (an Argon2id PHC
-- string) and confirmed once account_confirmed_at is set; guests have neither.
alter table customers add column password_hash text;
alter table customers add column account_confirmed_at text;

-- Confirmation tokens, stored as their SHA-256 only; single use (used_at) and expiring.
create table account_tokens (
    space_id bigint not null references spaces (id),
    id integer primary key,
    customer_id bigint not null references customers (id),
    digest text not null,
    created_at text not null,
    expires_at text not null,
    used_at text,
    unique (space_id, digest)
);
create index account_tokens_customer on account_tokens (space_id, customer_id);

-- Attempts per address and action ('login' counts failures, 'register' attempts) in a
-- fixed window from window_started_at. In the database so that limits hold across
-- restarts and instances; keyed by canonical address so one address never locks another.
create table account_throttle (
    space_id bigint not null references spaces (id),
    email_canonical text not null,
    action text not null check (action in ('login', 'register')),
    attempts bigint not null,
    window_started_at text not null,
    primary key (space_id, email_canonical, action)
);

-- Messages waiting for (or past) the SMTP sender.
create table mail_outbox (
    space_id bigint not null references spaces (id),
    id integer primary key,
    customer_id bigint references customers (id),
    recipient text not null,
    kind text not null,
    subject text not null,
    body text not null,
    created_at text not null,
    sent_at text,
    attempts bigint not null default 0,
    last_error text
);
create index mail_outbox_recipient on mail_outbox (space_id, recipient, id);
create index mail_outbox_pending on mail_outbox (id) where sent_at is null;
