//! The SQL both backends share, and the `Store` implementation written once for both
//! pools. Statements differ only where the dialects do (JSON aggregation, and PostgreSQL
//! folding create + profile into one statement with a data-modifying CTE).

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{Group, Profile, Referral, RunningSubscription};

/// Sessions slide: each refreshed use extends them by this much.
pub const SESSION_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::days(91);
/// Last-seen writes for one session happen at most this often.
pub const SESSION_TOUCH_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// A new cuRefNo colliding with an existing one is retried this many times.
pub const CU_REF_NO_ATTEMPTS: usize = 5;

/// Runs `insert` with a fresh cuRefNo, again with another while it hits a unique
/// violation (a cuRefNo collision), at most `CU_REF_NO_ATTEMPTS` times.
pub async fn with_new_cu_ref_no<T, F, Fut>(mut insert: F) -> super::StoreResult<T>
where
    F: FnMut(crate::normalize::CuRefNo) -> Fut,
    Fut: std::future::Future<Output = super::StoreResult<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match insert(crate::normalize::CuRefNo::generate()).await {
            Err(super::StoreError::Conflict(_)) if attempt < CU_REF_NO_ATTEMPTS => continue,
            other => return other,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// Every statement, built once per store.
pub struct Queries {
    /// Begins a transaction that will write: SQLite takes the write lock at once, so a
    /// read-then-write transaction never fails to upgrade under a concurrent writer.
    pub begin_write: &'static str,
    /// PostgreSQL only: upsert and profile in one statement.
    pub create_with_profile: Option<String>,
    pub create: String,
    pub profile_by_id: String,
    pub detail: String,
    pub touch_session: String,
    /// The profile of a live session's customer, by the session's identity digest.
    pub account_info: String,
    pub customer_id: String,
    pub upsert_match: String,
    pub existing_cu_ref_nos: String,
    pub list_customers: String,
    pub list_managers: String,
    pub remove_match: String,
}

/// The profile's columns, computed from the customer row aliased `c`; `{now}` is the
/// placeholder of the current time (subscriptions past `valid_until` are not running).
fn profile_columns(dialect: Dialect, now: &str) -> String {
    let (groups, referral, subs) = match dialect {
        Dialect::Postgres => (
            "(select coalesce(jsonb_agg(jsonb_build_object('name', g.name, 'slug', g.slug) order by g.name), '[]'::jsonb) \
             from customer_group_members gm join customer_groups g on g.id = gm.group_id \
             where gm.space_id = c.space_id and gm.customer_id = c.id)",
            "(select jsonb_build_object('code', r.cu_ref_no, 'email', r.email, 'firstName', r.first_name, 'lastName', r.last_name) \
             from customers r where r.id = c.referrer_id and r.erased_at is null)",
            format!(
                "(select coalesce(jsonb_agg(jsonb_build_object('externalId', s.external_id, 'productSlug', s.product_slug, \
                 'productCode', s.product_code, 'orderNumber', s.order_number, 'orderHash', s.order_hash, \
                 'autoRenew', s.auto_renew) order by s.id), '[]'::jsonb) \
                 from subscriptions s where s.space_id = c.space_id and s.customer_id = c.id \
                 and s.status = 'active' and (s.valid_until is null or s.valid_until > {now}))"
            ),
        ),
        Dialect::Sqlite => (
            "(select json_group_array(json_object('name', g.name, 'slug', g.slug)) from \
             (select g.name, g.slug from customer_group_members gm join customer_groups g on g.id = gm.group_id \
             where gm.space_id = c.space_id and gm.customer_id = c.id order by g.name) g)",
            "(select json_object('code', r.cu_ref_no, 'email', r.email, 'firstName', r.first_name, 'lastName', r.last_name) \
             from customers r where r.id = c.referrer_id and r.erased_at is null)",
            format!(
                "(select json_group_array(json_object('externalId', s.external_id, 'productSlug', s.product_slug, \
                 'productCode', s.product_code, 'orderNumber', s.order_number, 'orderHash', s.order_hash, \
                 'autoRenew', json(case when s.auto_renew then 'true' else 'false' end))) from \
                 (select * from subscriptions s where s.space_id = c.space_id and s.customer_id = c.id \
                 and s.status = 'active' and (s.valid_until is null or s.valid_until > {now}) order by s.id) s)"
            ),
        ),
    };
    let credit = match dialect {
        Dialect::Postgres => "(select coalesce(sum(l.amount), 0)::bigint from credit_ledger l where l.space_id = c.space_id and l.customer_id = c.id)",
        Dialect::Sqlite => "(select coalesce(sum(l.amount), 0) from credit_ledger l where l.space_id = c.space_id and l.customer_id = c.id)",
    };
    format!(
        "c.cu_ref_no, c.email, c.phone, c.first_name, c.last_name, c.company_name, c.premium, c.ban, c.meta, \
         {credit} as credit_balance, {groups} as groups, {referral} as referral, {subs} as subscriptions"
    )
}

const CREATE_UPSERT: &str = "insert into customers (space_id, cu_ref_no, email, email_canonical, email_rules_version, \
     company_name, company_registration_number, tax_identification_number, registration_ip, last_ip, \
     last_seen_at, created_at, updated_at) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $10, $10) \
     on conflict (space_id, email_canonical) do update set \
     company_name = coalesce(customers.company_name, excluded.company_name), \
     company_registration_number = coalesce(customers.company_registration_number, excluded.company_registration_number), \
     tax_identification_number = coalesce(customers.tax_identification_number, excluded.tax_identification_number), \
     last_ip = excluded.last_ip, last_seen_at = excluded.last_seen_at, updated_at = excluded.updated_at";

fn list_sql(me_column: &str, other_column: &str) -> String {
    format!(
        "select o.cu_ref_no, o.email, o.phone, o.first_name, o.last_name, o.company_name, m.notice, m.contact_email, \
         m.created_at, m.updated_at, o.id as other_id \
         from customers me join customer_matches m on m.space_id = me.space_id and m.{me_column} = me.id \
         join customers o on o.id = m.{other_column} \
         where me.space_id = $1 and me.cu_ref_no = $2 and me.erased_at is null \
         and (m.created_at < $3 or (m.created_at = $3 and o.id < $4)) \
         order by m.created_at desc, o.id desc limit $5"
    )
}

impl Queries {
    pub fn new(dialect: Dialect) -> Self {
        let profile = |now: &str| profile_columns(dialect, now);
        Queries {
            begin_write: match dialect {
                Dialect::Postgres => "begin",
                Dialect::Sqlite => "begin immediate",
            },
            create_with_profile: (dialect == Dialect::Postgres).then(|| {
                format!(
                    "with c as ({CREATE_UPSERT} returning *) select {}, c.cu_ref_no = $2 as new_account from c",
                    profile("$10")
                )
            }),
            create: format!("{CREATE_UPSERT} returning id, cu_ref_no"),
            profile_by_id: format!("select {} from customers c where c.id = $1", profile("$2")),
            detail: format!(
                "select {}, s.id as session_id, s.last_seen_at as session_seen_at \
                 from customers c left join sessions s on s.space_id = c.space_id and s.customer_id = c.id \
                 and s.identity_digest = $3 and s.revoked_at is null and s.expires_at > $4 \
                 where c.space_id = $1 and c.cu_ref_no = $2 and c.erased_at is null",
                profile("$4")
            ),
            account_info: format!(
                "select {}, s.id as session_id, s.last_seen_at as session_seen_at \
                 from sessions s join customers c on c.id = s.customer_id and c.space_id = s.space_id \
                 where s.space_id = $1 and s.identity_digest = $2 and s.revoked_at is null and s.expires_at > $3 \
                 and c.erased_at is null",
                profile("$3")
            ),
            touch_session: "update sessions set last_seen_at = $2, last_ip = $3, expires_at = $4 where id = $1".into(),
            customer_id: "select id from customers where space_id = $1 and cu_ref_no = $2 and erased_at is null".into(),
            upsert_match: "insert into customer_matches (space_id, manager_id, customer_id, notice, contact_email, created_at, updated_at) \
                 select $1, m.id, t.id, $4, $5, $6, $6 from customers m join customers t on t.space_id = m.space_id \
                 where m.space_id = $1 and m.cu_ref_no = $2 and t.cu_ref_no = $3 and m.id <> t.id \
                 and m.erased_at is null and t.erased_at is null \
                 on conflict (space_id, manager_id, customer_id) do update set \
                 notice = coalesce(excluded.notice, customer_matches.notice), \
                 contact_email = coalesce(excluded.contact_email, customer_matches.contact_email), \
                 updated_at = excluded.updated_at"
                .into(),
            existing_cu_ref_nos: "select cu_ref_no from customers where space_id = $1 and cu_ref_no in ($2, $3) and erased_at is null".into(),
            list_customers: list_sql("manager_id", "customer_id"),
            list_managers: list_sql("customer_id", "manager_id"),
            remove_match: "delete from customer_matches where space_id = $1 \
                 and manager_id = (select id from customers where space_id = $1 and cu_ref_no = $2) \
                 and customer_id = (select id from customers where space_id = $1 and cu_ref_no = $3)"
                .into(),
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct ProfileRow {
    pub cu_ref_no: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    pub premium: bool,
    pub ban: bool,
    pub meta: Json<serde_json::Map<String, serde_json::Value>>,
    pub credit_balance: i64,
    pub groups: Json<Vec<Group>>,
    pub referral: Option<Json<Referral>>,
    pub subscriptions: Json<Vec<RunningSubscription>>,
}

impl From<ProfileRow> for Profile {
    fn from(r: ProfileRow) -> Self {
        Profile {
            cu_ref_no: r.cu_ref_no,
            credit_balance: r.credit_balance,
            email: r.email,
            phone: r.phone,
            first_name: r.first_name,
            last_name: r.last_name,
            company_name: r.company_name,
            premium: r.premium,
            ban: r.ban,
            groups: r.groups.0,
            meta: r.meta.0,
            referral: r.referral.map(|j| j.0),
            running_subscription_list: r.subscriptions.0,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct CreatedRow {
    #[sqlx(flatten)]
    pub profile: ProfileRow,
    pub new_account: bool,
}

#[derive(sqlx::FromRow)]
pub struct DetailRow {
    #[sqlx(flatten)]
    pub profile: ProfileRow,
    pub session_id: Option<i64>,
    pub session_seen_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
pub struct KeyRow {
    pub id: i64,
    pub kind: String,
    pub scopes: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub rate_limit_per_minute: Option<i64>,
    pub organisation: String,
    pub space_id: i64,
}

pub const RESOLVE_KEY: &str = "select k.id, k.kind, k.scopes, k.expires_at, k.revoked_at, k.last_used_at, k.rate_limit_per_minute, o.slug as organisation, s.id as space_id \
     from api_keys k join organisations o on o.id = k.organisation_id \
     join spaces s on s.organisation_id = o.id and s.mode = (case when k.kind = 'DEV' then 'sandbox' else 'live' end) \
     where k.digest = $1";

/// Implements `Store` for a concrete sqlx pool type. The body is written once; `$db` is
/// the sqlx database, and the per-backend differences live in `Queries`.
macro_rules! impl_store {
    ($store:ident, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("select 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn ensure_organisation(&self, slug: &str, name: &str) -> $crate::store::StoreResult<bool> {
                self.insert_organisation(slug, name, $crate::store::now()).await
            }

            async fn organisation_count(&self) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar::<_, i64>("select count(*) from organisations").fetch_one(&self.pool).await?)
            }

            async fn insert_key(&self, organisation: &str, key: &$crate::store::NewKey) -> $crate::store::StoreResult<()> {
                let added = self.insert_key_row(organisation, key, $crate::store::now()).await?;
                if added.is_none() && self.organisation_count_by_slug(organisation).await? == 0 {
                    return Err($crate::store::StoreError::NotFound);
                }
                Ok(())
            }

            async fn resolve_key(&self, digest: &str) -> $crate::store::StoreResult<Option<$crate::store::KeyRecord>> {
                let row = sqlx::query_as::<_, $crate::store::sql::KeyRow>($crate::store::sql::RESOLVE_KEY)
                    .bind(digest)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| {
                    let kind = $crate::normalize::ApiKeyKind::from_str_db(&r.kind)
                        .ok_or_else(|| $crate::store::StoreError::Other(format!("unknown key kind {}", r.kind)))?;
                    Ok($crate::store::KeyRecord {
                        id: r.id,
                        kind,
                        scopes: r.scopes.split_whitespace().map(str::to_owned).collect(),
                        expires_at: r.expires_at,
                        revoked_at: r.revoked_at,
                        last_used_at: r.last_used_at,
                        rate_limit_per_minute: r.rate_limit_per_minute,
                        organisation: r.organisation,
                        space: $crate::store::SpaceId(r.space_id),
                        mode: $crate::store::Mode::for_kind(kind),
                    })
                })
                .transpose()
            }

            async fn revoke_key(&self, digest: &str) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("update api_keys set revoked_at = $2 where digest = $1 and revoked_at is null")
                    .bind(digest)
                    .bind($crate::store::now())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn space_of(&self, organisation: &str, mode: $crate::store::Mode) -> $crate::store::StoreResult<$crate::store::SpaceId> {
                let id = sqlx::query_scalar::<_, i64>(
                    "select s.id from spaces s join organisations o on o.id = s.organisation_id where o.slug = $1 and s.mode = $2",
                )
                .bind(organisation)
                .bind(mode.as_str())
                .fetch_one(&self.pool)
                .await?;
                Ok($crate::store::SpaceId(id))
            }

            async fn create_organisation(&self, slug: &str, name: &str) -> $crate::store::StoreResult<$crate::store::Organisation> {
                self.admin_create_organisation(slug, name).await
            }

            async fn list_organisations(&self) -> $crate::store::StoreResult<Vec<$crate::store::Organisation>> {
                self.admin_list_organisations().await
            }

            async fn create_key(&self, organisation: &str, key: &$crate::store::NewKey) -> $crate::store::StoreResult<$crate::store::KeyInfo> {
                self.admin_create_key(organisation, key).await
            }

            async fn list_keys(&self, organisation: &str) -> $crate::store::StoreResult<Vec<$crate::store::KeyInfo>> {
                self.admin_list_keys(organisation).await
            }

            async fn revoke_key_by_id(&self, id: i64, organisation: Option<&str>) -> $crate::store::StoreResult<$crate::store::KeyRevocation> {
                self.admin_revoke_key_by_id(id, organisation).await
            }

            async fn touch_key_last_used(&self, id: i64, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                self.admin_touch_key(id, at).await
            }

            async fn record_audit(&self, entry: &$crate::store::NewAudit) -> $crate::store::StoreResult<()> {
                self.admin_record_audit(entry).await
            }

            async fn list_audit(
                &self,
                organisation: Option<&str>,
                before: Option<$crate::store::AuditPos>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::AuditEntry>> {
                self.admin_list_audit(organisation, before, limit).await
            }

            async fn find_or_create_by_email(
                &self,
                space: $crate::store::SpaceId,
                input: &$crate::store::CreateCustomer,
            ) -> $crate::store::StoreResult<(bool, $crate::store::Profile)> {
                let now = $crate::store::now();
                $crate::store::sql::with_new_cu_ref_no(|cu| async move { self.create_once(space, input, &cu, now).await }).await
            }

            async fn customer_detail(
                &self,
                space: $crate::store::SpaceId,
                cu_ref_no: &$crate::normalize::CuRefNo,
                identity_digest: &str,
                ip: &$crate::normalize::ClientIp,
            ) -> $crate::store::StoreResult<Option<$crate::store::Detail>> {
                let now = $crate::store::now();
                let Some(row) = sqlx::query_as::<_, $crate::store::sql::DetailRow>(&self.q.detail)
                    .bind(space.0)
                    .bind(cu_ref_no.as_str())
                    .bind(identity_digest)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                self.touch_session_if_stale(&row, now, ip).await?;
                Ok(Some($crate::store::Detail { logged_in: row.session_id.is_some(), profile: row.profile.into() }))
            }

            async fn upsert_match(
                &self,
                space: $crate::store::SpaceId,
                manager: &$crate::normalize::CuRefNo,
                target: &$crate::store::MatchTarget,
                notice: Option<&str>,
            ) -> $crate::store::StoreResult<$crate::store::MatchOutcome> {
                self.matches_upsert(space, manager, target, notice).await
            }

            async fn customer_exists(&self, space: $crate::store::SpaceId, cu_ref_no: &$crate::normalize::CuRefNo) -> $crate::store::StoreResult<bool> {
                Ok(self.customer_id(space, cu_ref_no.as_str()).await?.is_some())
            }

            async fn list_matches(
                &self,
                space: $crate::store::SpaceId,
                cu_ref_no: &$crate::normalize::CuRefNo,
                side: $crate::store::Side,
                after: Option<$crate::store::PagePos>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::MatchItem>> {
                self.matches_list(space, cu_ref_no, side, after, limit).await
            }

            async fn remove_match(
                &self,
                space: $crate::store::SpaceId,
                manager: &$crate::normalize::CuRefNo,
                customer: &$crate::normalize::CuRefNo,
            ) -> $crate::store::StoreResult<$crate::store::RemoveOutcome> {
                self.matches_remove(space, manager, customer).await
            }

            async fn insert_session(&self, space: $crate::store::SpaceId, session: &$crate::store::NewSession) -> $crate::store::StoreResult<bool> {
                let now = $crate::store::now();
                let done = sqlx::query(
                    "insert into sessions (space_id, customer_id, identity_digest, created_at, expires_at, last_seen_at) \
                     select space_id, id, $3, $4, $5, $4 from customers where space_id = $1 and cu_ref_no = $2 and erased_at is null",
                )
                .bind(space.0)
                .bind(session.cu_ref_no.as_str())
                .bind(&session.identity_digest)
                .bind(now)
                .bind(session.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn apply_seed(&self, seed: &$crate::seed::Seed) -> $crate::store::StoreResult<()> {
                $crate::store::seed::apply_seed!(self, seed)
            }
        }

        $crate::store::admin::impl_admin!($store);

        $crate::store::matches::impl_matches!($store);

        $crate::store::accounts::impl_accounts!($store);

        $crate::store::outbox::impl_outbox!($store);

        $crate::store::profiles::impl_profiles!($store, $db);

        impl $store {
            /// Adds the organisation with its live and sandbox spaces, in one transaction;
            /// false (and nothing changed) if the slug is taken.
            async fn insert_organisation(
                &self,
                slug: &str,
                name: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let created = sqlx::query_scalar::<_, i64>(
                    "insert into organisations (slug, name, created_at) values ($1, $2, $3) on conflict (slug) do nothing returning id",
                )
                .bind(slug)
                .bind(name)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(id) = created {
                    for mode in ["live", "sandbox"] {
                        sqlx::query("insert into spaces (organisation_id, mode) values ($1, $2)")
                            .bind(id)
                            .bind(mode)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(created.is_some())
            }

            /// Slides a session found by a read, at most once per `SESSION_TOUCH_INTERVAL`.
            async fn touch_session_if_stale(
                &self,
                row: &$crate::store::sql::DetailRow,
                now: chrono::DateTime<chrono::Utc>,
                ip: &$crate::normalize::ClientIp,
            ) -> $crate::store::StoreResult<()> {
                let Some(session) = row.session_id else { return Ok(()) };
                let stale = row.session_seen_at.is_none_or(|seen| now - seen >= $crate::store::sql::SESSION_TOUCH_INTERVAL);
                // Time-throttled only: a client alternating addresses must not turn
                // every read into a write.
                if stale {
                    sqlx::query(&self.q.touch_session)
                        .bind(session)
                        .bind(now)
                        .bind(ip.as_str())
                        .bind(now + $crate::store::sql::SESSION_LIFETIME)
                        .execute(&self.pool)
                        .await?;
                }
                Ok(())
            }

            async fn organisation_count_by_slug(&self, slug: &str) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar::<_, i64>("select count(*) from organisations where slug = $1")
                    .bind(slug)
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn customer_id(&self, space: $crate::store::SpaceId, cu_ref_no: &str) -> $crate::store::StoreResult<Option<i64>> {
                self.customer_id_with(&self.pool, space, cu_ref_no).await
            }

            /// The live customer's id, read through `exec` (the pool, or a transaction).
            async fn customer_id_with<'e, E: sqlx::Executor<'e, Database = $db>>(
                &self,
                exec: E,
                space: $crate::store::SpaceId,
                cu_ref_no: &str,
            ) -> $crate::store::StoreResult<Option<i64>> {
                Ok(sqlx::query_scalar::<_, i64>(&self.q.customer_id)
                    .bind(space.0)
                    .bind(cu_ref_no)
                    .fetch_optional(exec)
                    .await?)
            }

            async fn create_once(
                &self,
                space: $crate::store::SpaceId,
                input: &$crate::store::CreateCustomer,
                cu: &$crate::normalize::CuRefNo,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<(bool, $crate::store::Profile)> {
                macro_rules! bind_create {
                    ($q:expr) => {
                        $q.bind(space.0)
                            .bind(cu.as_str())
                            .bind(input.email.normalized())
                            .bind(input.email.canonical())
                            .bind($crate::normalize::EMAIL_RULES_VERSION as i64)
                            .bind(input.company_name.as_deref())
                            .bind(input.company_registration_number.as_deref())
                            .bind(input.tax_identification_number.as_deref())
                            .bind(input.ip.as_str())
                            .bind(now)
                    };
                }
                if let Some(sql) = &self.q.create_with_profile {
                    let row = bind_create!(sqlx::query_as::<_, $crate::store::sql::CreatedRow>(sql))
                        .fetch_one(&self.pool)
                        .await?;
                    return Ok((row.new_account, row.profile.into()));
                }
                let (id, stored_cu): (i64, String) = bind_create!(sqlx::query_as(&self.q.create)).fetch_one(&self.pool).await?;
                let profile = sqlx::query_as::<_, $crate::store::sql::ProfileRow>(&self.q.profile_by_id)
                    .bind(id)
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?;
                Ok((stored_cu == cu.as_str(), profile.into()))
            }
        }
    };
}

pub(crate) use impl_store;
