-- bench/compare.sh's reference for create: the customer insert alone, no profile computed.
-- OnEmailTaken::FillEmpty.insert() of src/store/sql/mod.rs (the statement the SQLite path
-- runs before reading the profile separately), placeholders as in create.sql.
-- The address is the new cuRefNo's 16 digits, as there.
\set ctr :ctr + 1
\set cu :base + :client_id * 100000000 + :ctr
\set email :cu
insert into customers (space_id, cu_ref_no, email, email_canonical, email_rules_version, phone, first_name, last_name, company_name, company_registration_number, tax_identification_number, premium, ban, meta, registration_ip, last_ip, last_seen_at, created_at, updated_at, password_hash, account_confirmed_at) values (:space, :cu, :email, :email, :rules, null, null, null, null, null, null, :f, :f, :meta, :ip, :ip, :now, :now, :now, null, null) on conflict (space_id, email_canonical) do update set company_name = coalesce(customers.company_name, excluded.company_name), company_registration_number = coalesce(customers.company_registration_number, excluded.company_registration_number), tax_identification_number = coalesce(customers.tax_identification_number, excluded.tax_identification_number), last_ip = excluded.last_ip, last_seen_at = excluded.last_seen_at, updated_at = excluded.updated_at returning id, cu_ref_no;
