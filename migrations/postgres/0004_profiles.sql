-- Written profiles: extra contact points, phone lookups, idempotent credit.

-- Alternate e-mail addresses (canonical form) and phone numbers (stored form) that also
-- find their contact. Not unique across contacts: a contact's own e-mail or phone wins
-- over another's alternate, and among alternates the oldest contact wins.
create table contact_points (
    space_id bigint not null references spaces (id),
    customer_id bigint not null references customers (id),
    kind text not null check (kind in ('email', 'phone')),
    value text not null,
    primary key (space_id, customer_id, kind, value)
);
create index contact_points_lookup on contact_points (space_id, kind, value);

create index customers_phone on customers (space_id, phone);
-- A phone-only contact is found by its phone, so two of them may not share one; the
-- losing side of a race retries and finds the winner.
create unique index customers_phone_only on customers (space_id, phone) where email_canonical is null and phone is not null;

-- Requests made with an Idempotency-Key: the first result is replayed for a retry with
-- the same request (fingerprint), and a different request under the key is refused.
create table idempotency_keys (
    space_id bigint not null references spaces (id),
    idempotency_key text not null,
    fingerprint text not null,
    response text not null,
    created_at timestamptz not null,
    primary key (space_id, idempotency_key)
);
