-- Every server instance caches keys for a few seconds. A change to a key is announced on
-- the channel bizkit_key_changes, with the key's digest, as its transaction commits, so
-- every instance listening drops its copy at once: changes made through another
-- instance, the command line or plain SQL alike. `last_used_at` alone is no change.
create function announce_key_change() returns trigger language plpgsql as $$
begin
    perform pg_notify('bizkit_key_changes', new.digest);
    if tg_op = 'UPDATE' and old.digest <> new.digest then
        perform pg_notify('bizkit_key_changes', old.digest);
    end if;
    return null;
end
$$;

create trigger api_keys_created after insert on api_keys
    for each row execute function announce_key_change();

create trigger api_keys_changed after update on api_keys
    for each row
    when ((old.digest, old.organisation_id, old.kind, old.scopes, old.rate_limit_per_minute, old.expires_at,
           old.revoked_at)
          is distinct from
          (new.digest, new.organisation_id, new.kind, new.scopes, new.rate_limit_per_minute, new.expires_at,
           new.revoked_at))
    execute function announce_key_change();
