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
    id bigint generated always as identity,
    url text not null,
    -- The event types sent, as ',a,b,' (null: every type).
    events text,
    -- Standard Webhooks signing key (`whsec_` and base64). A key that signs must be
    -- usable, so it is stored as issued; it is shown once and never logged.
    secret text not null,
    created_at timestamptz not null,
    disabled_at timestamptz,
    disabled_reason text,
    primary key (space_id, id)
);
create index webhook_endpoints_live on webhook_endpoints (space_id) where disabled_at is null;

create table webhook_events (
    space_id bigint not null references spaces (id),
    id bigint generated always as identity,
    type text not null,
    -- The customer the event is about (for relation events, the manager): deliveries of
    -- one customer go out in the order of their events.
    customer_id bigint not null,
    -- Relation events: the managed customer.
    other_id bigint,
    created_at timestamptz not null,
    primary key (space_id, id)
);

-- The sweep forgets events older than the delivery history it keeps.
create index webhook_events_created on webhook_events (created_at);

create table webhook_deliveries (
    space_id bigint not null,
    id bigint generated always as identity,
    endpoint_id bigint not null,
    event_id bigint not null,
    customer_id bigint not null,
    state text not null default 'pending' check (state in ('pending', 'delivered', 'failed')),
    attempts integer not null default 0,
    -- When it is due; while an attempt runs, when its lease ends (a worker that dies
    -- mid-attempt leaves it to be taken again then).
    next_attempt_at timestamptz not null,
    -- The body as first sent, so a retry sends the same bytes; cleared once finished.
    body text,
    created_at timestamptz not null,
    finished_at timestamptz,
    primary key (space_id, id),
    foreign key (space_id, endpoint_id) references webhook_endpoints (space_id, id) on delete cascade,
    foreign key (space_id, event_id) references webhook_events (space_id, id) on delete cascade
);
create index webhook_deliveries_due on webhook_deliveries (next_attempt_at) where state = 'pending';
-- The older deliveries of the same customer to the same endpoint, which go first.
create index webhook_deliveries_order on webhook_deliveries (space_id, endpoint_id, customer_id, id)
    where state = 'pending';
create index webhook_deliveries_event on webhook_deliveries (space_id, event_id);
create index webhook_deliveries_finished on webhook_deliveries (finished_at) where state <> 'pending';

create table webhook_attempts (
    space_id bigint not null,
    id bigint generated always as identity,
    delivery_id bigint not null,
    endpoint_id bigint not null,
    attempted_at timestamptz not null,
    -- The HTTP status answered, if any.
    status integer,
    latency_ms bigint not null,
    -- What went wrong, in a few words (never the response body).
    error text,
    primary key (space_id, id),
    foreign key (space_id, delivery_id) references webhook_deliveries (space_id, id) on delete cascade
);
create index webhook_attempts_endpoint on webhook_attempts (space_id, endpoint_id, id);

-- An event of `space`, written only when an endpoint of the space wants its type.
create function record_webhook_event(space bigint, event_type text, customer bigint, other bigint,
                                     at timestamptz) returns void language plpgsql as $$
begin
    if exists (select 1 from webhook_endpoints w where w.space_id = space and w.disabled_at is null
               and (w.events is null or strpos(w.events, ',' || event_type || ',') > 0)) then
        insert into webhook_events (space_id, type, customer_id, other_id, created_at)
        values (space, event_type, customer, other, at);
    end if;
end
$$;

-- Each event is queued for every endpoint of its space that wants it.
create function queue_webhook_deliveries() returns trigger language plpgsql as $$
begin
    insert into webhook_deliveries (space_id, endpoint_id, event_id, customer_id, next_attempt_at, created_at)
    select new.space_id, w.id, new.id, new.customer_id, new.created_at, new.created_at
    from webhook_endpoints w
    where w.space_id = new.space_id and w.disabled_at is null
      and (w.events is null or strpos(w.events, ',' || new.type || ',') > 0);
    return null;
end
$$;
create trigger webhook_events_queued after insert on webhook_events
    for each row execute function queue_webhook_deliveries();

-- Customers: created (and registered, confirmed when it starts so), updated (a field of
-- its profile changed; every writer of one sets updated_at), deleted (erased),
-- registered, confirmed. Credit has its own event;
-- last visits, search keys and the like are no change of the profile.
create function customer_webhook_events() returns trigger language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        perform record_webhook_event(new.space_id, 'customer.created', new.id, null, new.created_at);
        if new.password_hash is not null then
            perform record_webhook_event(new.space_id, 'account.registered', new.id, null, new.created_at);
        end if;
        if new.account_confirmed_at is not null then
            perform record_webhook_event(new.space_id, 'account.confirmed', new.id, null, new.created_at);
        end if;
        return null;
    end if;
    if new.erased_at is not null then
        perform record_webhook_event(new.space_id, 'customer.deleted', new.id, null, new.updated_at);
        -- Bodies rendered before the erasure (waiting for a retry) are rendered again.
        update webhook_deliveries d set body = null
        from webhook_events e
        where e.space_id = new.space_id and (e.customer_id = new.id or e.other_id = new.id)
          and d.space_id = e.space_id and d.event_id = e.id and d.state = 'pending' and d.body is not null;
        return null;
    end if;
    if (old.email, old.phone, old.first_name, old.last_name, old.company_name, old.company_registration_number,
        old.tax_identification_number, old.premium, old.ban, old.meta, old.referrer_id, old.profile_groups,
        old.profile_subscriptions)
       is distinct from
       (new.email, new.phone, new.first_name, new.last_name, new.company_name, new.company_registration_number,
        new.tax_identification_number, new.premium, new.ban, new.meta, new.referrer_id, new.profile_groups,
        new.profile_subscriptions)
       -- A customer written again by the transaction that created it (its referrer set
       -- after the batch's insert, say) is still new: `customer.created` says it all.
       and new.updated_at <> new.created_at then
        perform record_webhook_event(new.space_id, 'customer.updated', new.id, null, new.updated_at);
    end if;
    if old.password_hash is null and new.password_hash is not null then
        perform record_webhook_event(new.space_id, 'account.registered', new.id, null, new.updated_at);
    end if;
    if old.account_confirmed_at is null and new.account_confirmed_at is not null then
        perform record_webhook_event(new.space_id, 'account.confirmed', new.id, null, new.updated_at);
    end if;
    return null;
end
$$;
create trigger customers_created_events after insert on customers
    for each row execute function customer_webhook_events();
create trigger customers_changed_events after update on customers
    for each row when (old.erased_at is null)
    execute function customer_webhook_events();

create function credit_webhook_event() returns trigger language plpgsql as $$
begin
    perform record_webhook_event(new.space_id, 'customer.credit_added', new.customer_id, null, new.created_at);
    return null;
end
$$;
create trigger credit_ledger_events after insert on credit_ledger
    for each row execute function credit_webhook_event();

-- Relations, keyed by their manager. A relation removed by an erasure is announced too.
create function match_webhook_events() returns trigger language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        perform record_webhook_event(new.space_id, 'match.created', new.manager_id, new.customer_id, new.created_at);
    elsif tg_op = 'UPDATE' then
        perform record_webhook_event(new.space_id, 'match.updated', new.manager_id, new.customer_id, new.updated_at);
    else
        perform record_webhook_event(old.space_id, 'match.removed', old.manager_id, old.customer_id,
                                     statement_timestamp());
    end if;
    return null;
end
$$;
create trigger customer_matches_created_events after insert on customer_matches
    for each row execute function match_webhook_events();
create trigger customer_matches_changed_events after update on customer_matches
    for each row when ((old.notice, old.contact_email) is distinct from (new.notice, new.contact_email))
    execute function match_webhook_events();
create trigger customer_matches_removed_events after delete on customer_matches
    for each row execute function match_webhook_events();
