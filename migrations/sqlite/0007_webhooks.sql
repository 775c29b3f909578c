-- Change events and their webhooks (API.md §9).
--
-- The outbox: triggers on the tables behind each event write the event, in the same
-- transaction as the change, for every space with an endpoint that wants it, and queue
-- one delivery per such endpoint. Every writer (one customer, an import batch, erasure,
-- plain SQL) is covered by construction, and a space without endpoints pays one indexed
-- lookup of an empty range. An event holds ids only: the body is rendered from the
-- stored rows when it is first sent, so no personal data waits in the outbox.

create table webhook_endpoints (
    space_id bigint not null references spaces (id),
    id integer primary key autoincrement,
    url text not null,
    -- The event types sent, as ',a,b,' (null: every type).
    events text,
    -- Standard Webhooks signing key (`whsec_` and base64). A key that signs must be
    -- usable, so it is stored as issued; it is shown once and never logged.
    secret text not null,
    created_at text not null,
    disabled_at text,
    disabled_reason text
);
create index webhook_endpoints_live on webhook_endpoints (space_id) where disabled_at is null;

create table webhook_events (
    space_id bigint not null references spaces (id),
    id integer primary key autoincrement,
    type text not null,
    -- The customer the event is about (for relation events, the manager): deliveries of
    -- one customer go out in the order of their events.
    customer_id bigint not null,
    -- Relation events: the managed customer.
    other_id bigint,
    created_at text not null
);

-- The sweep forgets events older than the delivery history it keeps.
create index webhook_events_created on webhook_events (created_at);

create table webhook_deliveries (
    space_id bigint not null,
    id integer primary key autoincrement,
    endpoint_id bigint not null references webhook_endpoints (id) on delete cascade,
    event_id bigint not null references webhook_events (id) on delete cascade,
    customer_id bigint not null,
    state text not null default 'pending' check (state in ('pending', 'delivered', 'failed')),
    attempts integer not null default 0,
    -- When it is due; while an attempt runs, when its lease ends.
    next_attempt_at text not null,
    -- The body as first sent, so a retry sends the same bytes; cleared once finished.
    body text,
    created_at text not null,
    finished_at text
);
create index webhook_deliveries_due on webhook_deliveries (next_attempt_at) where state = 'pending';
create index webhook_deliveries_order on webhook_deliveries (space_id, endpoint_id, customer_id, id)
    where state = 'pending';
create index webhook_deliveries_event on webhook_deliveries (space_id, event_id);
create index webhook_deliveries_finished on webhook_deliveries (finished_at) where state <> 'pending';

create table webhook_attempts (
    space_id bigint not null,
    id integer primary key autoincrement,
    delivery_id bigint not null references webhook_deliveries (id) on delete cascade,
    endpoint_id bigint not null,
    attempted_at text not null,
    status integer,
    latency_ms bigint not null,
    error text
);
create index webhook_attempts_endpoint on webhook_attempts (space_id, endpoint_id, id);
create index webhook_attempts_delivery on webhook_attempts (delivery_id);

-- Inserting here records an event, only when an endpoint of its space wants its type.
create view webhook_event_requests (space_id, type, customer_id, other_id, created_at) as
    select space_id, type, customer_id, other_id, created_at from webhook_events where false;

create trigger webhook_event_requested instead of insert on webhook_event_requests
begin
    insert into webhook_events (space_id, type, customer_id, other_id, created_at)
    select new.space_id, new.type, new.customer_id, new.other_id, new.created_at
    where exists (select 1 from webhook_endpoints w where w.space_id = new.space_id and w.disabled_at is null
                  and (w.events is null or instr(w.events, ',' || new.type || ',') > 0));
end;

-- Each event is queued for every endpoint of its space that wants it.
create trigger webhook_events_queued after insert on webhook_events
begin
    insert into webhook_deliveries (space_id, endpoint_id, event_id, customer_id, next_attempt_at, created_at)
    select new.space_id, w.id, new.id, new.customer_id, new.created_at, new.created_at
    from webhook_endpoints w
    where w.space_id = new.space_id and w.disabled_at is null
      and (w.events is null or instr(w.events, ',' || new.type || ',') > 0);
end;

-- Customers: created (and registered, confirmed when it starts so), updated (a field of
-- its profile changed; every writer of one sets updated_at), deleted (erased),
-- registered, confirmed. Credit has its own event; last visits, search keys and the like
-- are no change of the profile.
create trigger customers_created_events after insert on customers
begin
    insert into webhook_event_requests values (new.space_id, 'customer.created', new.id, null, new.created_at);
    insert into webhook_event_requests
    select new.space_id, 'account.registered', new.id, null, new.created_at where new.password_hash is not null;
    insert into webhook_event_requests
    select new.space_id, 'account.confirmed', new.id, null, new.created_at where new.account_confirmed_at is not null;
end;

create trigger customers_erased_events after update on customers
    when old.erased_at is null and new.erased_at is not null
begin
    insert into webhook_event_requests values (new.space_id, 'customer.deleted', new.id, null, new.updated_at);
    -- Bodies rendered before the erasure (waiting for a retry) are rendered again.
    update webhook_deliveries set body = null
    where state = 'pending' and body is not null and space_id = new.space_id
      and event_id in (select e.id from webhook_events e
                       where e.space_id = new.space_id and (e.customer_id = new.id or e.other_id = new.id));
end;

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
           or old.profile_subscriptions is not new.profile_subscriptions);
    insert into webhook_event_requests
    select new.space_id, 'account.registered', new.id, null, new.updated_at
    where old.password_hash is null and new.password_hash is not null;
    insert into webhook_event_requests
    select new.space_id, 'account.confirmed', new.id, null, new.updated_at
    where old.account_confirmed_at is null and new.account_confirmed_at is not null;
end;

create trigger credit_ledger_events after insert on credit_ledger
begin
    insert into webhook_event_requests
    values (new.space_id, 'customer.credit_added', new.customer_id, null, new.created_at);
end;

-- Relations, keyed by their manager. A relation removed by an erasure is announced too.
create trigger customer_matches_created_events after insert on customer_matches
begin
    insert into webhook_event_requests
    values (new.space_id, 'match.created', new.manager_id, new.customer_id, new.created_at);
end;

create trigger customer_matches_changed_events after update on customer_matches
    when old.notice is not new.notice or old.contact_email is not new.contact_email
begin
    insert into webhook_event_requests
    values (new.space_id, 'match.updated', new.manager_id, new.customer_id, new.updated_at);
end;

create trigger customer_matches_removed_events after delete on customer_matches
begin
    insert into webhook_event_requests
    values (old.space_id, 'match.removed', old.manager_id, old.customer_id,
            strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'));
end;
