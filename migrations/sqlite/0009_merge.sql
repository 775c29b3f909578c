-- Merging duplicates: the duplicate stays as a tombstone (erased, so no lookup finds it
-- live) that names the customer it was merged into, so its cuRefNo answers with the
-- primary's and is never handed out again.
alter table customers add column merged_into bigint references customers (id);
-- A later merge of the primary makes the earlier tombstones name the new primary.
create index customers_merged_into on customers (space_id, merged_into) where merged_into is not null;

-- A merge is announced as `customer.merged` (about the duplicate, the primary beside it);
-- an erasure as `customer.deleted`.
drop trigger customers_erased_events;
create trigger customers_erased_events after update on customers
    when old.erased_at is null and new.erased_at is not null and new.merged_into is null
begin
    insert into webhook_event_requests values (new.space_id, 'customer.deleted', new.id, null, new.updated_at);
    -- Bodies rendered before the erasure (waiting for a retry) are rendered again.
    update webhook_deliveries set body = null
    where state = 'pending' and body is not null and space_id = new.space_id
      and event_id in (select e.id from webhook_events e
                       where e.space_id = new.space_id and (e.customer_id = new.id or e.other_id = new.id));
end;

create trigger customers_merged_events after update on customers
    when old.erased_at is null and new.erased_at is not null and new.merged_into is not null
begin
    insert into webhook_event_requests
    values (new.space_id, 'customer.merged', new.id, new.merged_into, new.updated_at);
end;
