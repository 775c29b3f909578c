-- The server's detail statement, as it sends it to PostgreSQL: DETAIL in src/store/sql/customers.rs,
-- with PROFILE_COLUMNS and REFERRER_JOIN from src/store/sql/mod.rs. Keep it in step with them;
-- only the placeholders differ: $1 :space, $2 :cu, $3 :digest, $4 :now.
-- A random customer of the session sample (bench/bench_data.py session_sample), with the
-- session whose digest pgbench can compute (it cannot hash an identityId): a live session of
-- that customer, found through the same index, so the row comes back logged in as in wrk.
\set k random(1, :s)
\set i :k * :n / :s
\set cu 1000000000000000 + (:i * 912345678901) % 1000000000000000
\set digest 5000000000000000 + :i
select c.cu_ref_no, c.email, c.phone, c.first_name, c.last_name, c.company_name, c.premium, c.ban, c.meta, c.credit_balance, c.profile_groups, c.profile_subscriptions, c.partner_customer_id, c.addresses, c.profile_alternates, r.cu_ref_no as referrer_cu_ref_no, r.email as referrer_email, r.first_name as referrer_first_name, r.last_name as referrer_last_name, s.id as session_id, s.last_seen_at as session_seen_at from customers c left join customers r on r.space_id = c.space_id and r.id = c.referrer_id and r.erased_at is null left join sessions s on s.space_id = c.space_id and s.customer_id = c.id and s.identity_digest = :digest and s.revoked_at is null and s.expires_at > :now where c.space_id = :space and c.cu_ref_no = :cu and c.erased_at is null;
