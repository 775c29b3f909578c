-- The server's create statement for a new address, as it sends it to PostgreSQL:
-- CREATE_WITH_PROFILE in src/store/sql/customers.rs (INSERT_CUSTOMER, OnEmailTaken::FillEmpty,
-- PROFILE_COLUMNS and REFERRER_JOIN from src/store/sql/mod.rs). Keep it in step with them. The placeholders the server binds to
-- NULL for a plain create are written null (pgbench has no NULL variable); the rest:
-- $1 :space, $2 :cu, $3 and $4 :email, $5 :rules, $12 and $13 :f, $14 :meta, $15 :ip,
-- $16 and $17 :now. cuRefNo and address are new every transaction: :base is this run's own,
-- :ctr counts this client's transactions (pgbench keeps variables across them).
-- The address is those 16 digits (pgbench has no strings): any text fits the columns, only
-- shorter than a real address.
\set ctr :ctr + 1
\set cu :base + :client_id * 100000000 + :ctr
\set email :cu
with c as (insert into customers (space_id, cu_ref_no, email, email_canonical, email_rules_version, phone, first_name, last_name, company_name, company_registration_number, tax_identification_number, premium, ban, meta, registration_ip, last_ip, last_seen_at, created_at, updated_at, password_hash, account_confirmed_at) values (:space, :cu, :email, :email, :rules, null, null, null, null, null, null, :f, :f, :meta, :ip, :ip, :now, :now, :now, null, null) on conflict (space_id, email_canonical) do update set company_name = coalesce(customers.company_name, excluded.company_name), company_registration_number = coalesce(customers.company_registration_number, excluded.company_registration_number), tax_identification_number = coalesce(customers.tax_identification_number, excluded.tax_identification_number), last_ip = excluded.last_ip, last_seen_at = excluded.last_seen_at, updated_at = excluded.updated_at returning *) select c.cu_ref_no, c.email, c.phone, c.first_name, c.last_name, c.company_name, c.premium, c.ban, c.meta, c.credit_balance, c.profile_groups, c.profile_subscriptions, c.partner_customer_id, c.addresses, c.profile_alternates, r.cu_ref_no as referrer_cu_ref_no, r.email as referrer_email, r.first_name as referrer_first_name, r.last_name as referrer_last_name, c.cu_ref_no = :cu as new_account from c left join customers r on r.space_id = c.space_id and r.id = c.referrer_id and r.erased_at is null;
