//! The customer endpoints' statements: create (find by canonical e-mail or insert),
//! detail with its session, and the manager → customer relations.

use std::collections::HashMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::batch::{at, to_json};
use super::reads::DetailRead;
use super::{
    customer_id, dialect, profile_by_id, with_new_cu_ref_no, NewCustomer, OnEmailTaken, ProfileRow, SqlStore,
    PROFILE_COLUMNS, REFERRER_JOIN, SESSION_TOUCH_INTERVAL,
};
use crate::normalize::{ClientIp, CuRefNo};
use crate::store::{
    now, CreateCustomer, CustomerStore, Detail, MatchItem, MatchOutcome, MatchTarget, PagePos, Profile, RemoveOutcome,
    Side, SpaceId, StoreResult, SESSION_LIFETIME,
};

/// `create` in one statement where the dialect allows: the upsert and the profile.
static CREATE_WITH_PROFILE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "with c as ({}{} returning *) select {PROFILE_COLUMNS}, c.cu_ref_no = $2 as new_account from c {REFERRER_JOIN}",
        super::INSERT_CUSTOMER,
        OnEmailTaken::FillEmpty.clause(),
    )
});

const UPSERT_MATCH: &str = "insert into customer_matches \
     (space_id, manager_id, customer_id, notice, contact_email, created_at, updated_at) \
     select $1, m.id, t.id, $4, $5, $6, $6 from customers m join customers t on t.space_id = m.space_id \
     where m.space_id = $1 and m.cu_ref_no = $2 and t.cu_ref_no = $3 and m.id <> t.id \
     and m.erased_at is null and t.erased_at is null \
     on conflict (space_id, manager_id, customer_id) do update set \
     notice = coalesce(excluded.notice, customer_matches.notice), \
     contact_email = coalesce(excluded.contact_email, customer_matches.contact_email), \
     updated_at = excluded.updated_at";

const REMOVE_MATCH: &str = "delete from customer_matches where space_id = $1 \
     and manager_id = (select id from customers where space_id = $1 and cu_ref_no = $2) \
     and customer_id = (select id from customers where space_id = $1 and cu_ref_no = $3)";

/// One side of a customer's relations, newest first, strictly before (`$3`, `$4`). The
/// customer is found on its own, first: joined as a third row sharing `space_id`, it
/// could be paired with every customer of the space by a merge join the planner expects
/// to stop early.
fn list_sql(me_column: &str, other_column: &str) -> String {
    format!(
        "select o.cu_ref_no, o.email, o.phone, o.first_name, o.last_name, o.company_name, m.notice, m.contact_email, \
         m.created_at, m.updated_at, o.id as other_id \
         from customer_matches m join customers o on o.space_id = m.space_id and o.id = m.{other_column} \
         where m.space_id = $1 and m.{me_column} = \
         (select id from customers where space_id = $1 and cu_ref_no = $2 and erased_at is null) \
         and (m.created_at < $3 or (m.created_at = $3 and o.id < $4)) \
         order by m.created_at desc, o.id desc limit $5"
    )
}

static LIST_CUSTOMERS: LazyLock<String> = LazyLock::new(|| list_sql("manager_id", "customer_id"));
static LIST_MANAGERS: LazyLock<String> = LazyLock::new(|| list_sql("customer_id", "manager_id"));

#[derive(sqlx::FromRow)]
pub(super) struct SessionProfileRow {
    #[sqlx(flatten)]
    pub profile: ProfileRow,
    pub session_id: Option<i64>,
    pub session_seen_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct CreatedRow {
    #[sqlx(flatten)]
    profile: ProfileRow,
    new_account: bool,
}

impl SqlStore {
    /// Slides a session found by a read, at most once per `SESSION_TOUCH_INTERVAL`.
    /// Time-throttled only: a client alternating addresses must not turn every read
    /// into a write.
    pub(super) async fn touch_session_if_stale(
        &self,
        space: SpaceId,
        row: &SessionProfileRow,
        now: DateTime<Utc>,
        ip: &ClientIp,
    ) -> StoreResult<()> {
        let Some(session) = row.session_id else { return Ok(()) };
        if row.session_seen_at.is_some_and(|seen| now - seen < SESSION_TOUCH_INTERVAL) {
            return Ok(());
        }
        sqlx::query(
            "update sessions set last_seen_at = $3, last_ip = $4, expires_at = $5 where space_id = $1 and id = $2",
        )
        .bind(space.0)
        .bind(session)
        .bind(now)
        .bind(ip.as_str())
        .bind(now + SESSION_LIFETIME)
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    async fn create_once(
        &self,
        space: SpaceId,
        input: &CreateCustomer,
        cu: &CuRefNo,
        now: DateTime<Utc>,
    ) -> StoreResult<(bool, Profile)> {
        let row = NewCustomer {
            space: space.0,
            cu_ref_no: cu.as_str(),
            email: Some(&input.email),
            company_name: input.company_name.as_deref(),
            company_registration_number: input.company_registration_number.as_deref(),
            tax_identification_number: input.tax_identification_number.as_deref(),
            ip: Some(&input.ip),
            last_seen_at: Some(now),
            ..Default::default()
        };
        if dialect::CREATE_RETURNS_PROFILE {
            let created: CreatedRow =
                row.bind(sqlx::query_as(&CREATE_WITH_PROFILE), now).fetch_one(&mut *self.conn().await?).await?;
            return Ok((created.new_account, created.profile.at(now)));
        }
        let (id, stored_cu): (i64, String) =
            row.bind(sqlx::query_as(OnEmailTaken::FillEmpty.insert()), now).fetch_one(&mut *self.conn().await?).await?;
        let profile = profile_by_id(&mut *self.conn().await?, space, id, now).await?;
        Ok((stored_cu == cu.as_str(), profile))
    }

    /// Of `cu_ref_nos`, those merged into a live customer, each with that customer's
    /// cuRefNo: one statement however many are asked about.
    pub(super) async fn merged_into_any(
        &self,
        space: SpaceId,
        cu_ref_nos: &[String],
    ) -> StoreResult<HashMap<String, String>> {
        static MERGED_INTO: LazyLock<String> = LazyLock::new(|| {
            format!(
                "select d.cu_ref_no, p.cu_ref_no from ({}) k \
                 join customers d on d.space_id = $1 and d.cu_ref_no = k.value \
                 join customers p on p.space_id = d.space_id and p.id = d.merged_into where p.erased_at is null",
                at(dialect::TEXT_LIST, 2)
            )
        });
        let found: Vec<(String, String)> = sqlx::query_as(&MERGED_INTO)
            .bind(space.0)
            .bind(to_json(cu_ref_nos)?)
            .fetch_all(&mut *self.conn().await?)
            .await?;
        Ok(found.into_iter().collect())
    }

    /// Which of two cuRefNos exist (live, not erased) in the space.
    async fn which_exist(&self, space: SpaceId, a: &str, b: &str) -> StoreResult<(bool, bool)> {
        let found: Vec<String> = sqlx::query_scalar(
            "select cu_ref_no from customers where space_id = $1 and cu_ref_no in ($2, $3) and erased_at is null",
        )
        .bind(space.0)
        .bind(a)
        .bind(b)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        Ok((found.iter().any(|c| c == a), found.iter().any(|c| c == b)))
    }
}

#[async_trait]
impl CustomerStore for SqlStore {
    async fn find_or_create_by_email(&self, space: SpaceId, input: &CreateCustomer) -> StoreResult<(bool, Profile)> {
        let now = now();
        with_new_cu_ref_no(|cu| async move { self.create_once(space, input, &cu, now).await }).await
    }

    async fn customer_detail(
        &self,
        space: SpaceId,
        cu_ref_no: &CuRefNo,
        identity_digest: &str,
        ip: &ClientIp,
    ) -> StoreResult<Option<Detail>> {
        let read =
            DetailRead { space, cu_ref_no: cu_ref_no.as_str().to_owned(), identity_digest: identity_digest.to_owned() };
        let (row, now) = self.reads.details.read(read).await?;
        let Some(row) = row else { return Ok(None) };
        self.touch_session_if_stale(space, &row, now, ip).await?;
        Ok(Some(Detail { logged_in: row.session_id.is_some(), profile: row.profile.at(now) }))
    }

    async fn customer_exists(&self, space: SpaceId, cu_ref_no: &CuRefNo) -> StoreResult<bool> {
        Ok(customer_id(&mut *self.conn().await?, space, cu_ref_no.as_str()).await?.is_some())
    }

    async fn merged_into(&self, space: SpaceId, cu_ref_no: &CuRefNo) -> StoreResult<Option<String>> {
        let mut merged = self.merged_into_any(space, &[cu_ref_no.as_str().to_owned()]).await?;
        Ok(merged.remove(cu_ref_no.as_str()))
    }

    async fn upsert_match(
        &self,
        space: SpaceId,
        manager: &CuRefNo,
        target: &MatchTarget,
        notice: Option<&str>,
    ) -> StoreResult<MatchOutcome> {
        let (customer, contact_email) = match target {
            MatchTarget::CuRefNo(cu, email) => (cu.as_str().to_owned(), email.as_ref().map(|e| e.normalized())),
            MatchTarget::Email(email) => {
                // The contact is created only once the manager is known to exist, so
                // a call that fails leaves nothing behind.
                if customer_id(&mut *self.conn().await?, space, manager.as_str()).await?.is_none() {
                    return Ok(MatchOutcome::ManagerNotFound);
                }
                let input = CreateCustomer {
                    email: email.clone(),
                    company_name: None,
                    company_registration_number: None,
                    tax_identification_number: None,
                    ip: ClientIp::parse(None).expect("the default address is valid"),
                };
                let (_, profile) = self.find_or_create_by_email(space, &input).await?;
                (profile.cu_ref_no, None)
            }
        };
        let done = sqlx::query(UPSERT_MATCH)
            .bind(space.0)
            .bind(manager.as_str())
            .bind(&customer)
            .bind(notice)
            .bind(contact_email)
            .bind(now())
            .execute(&mut *self.conn().await?)
            .await?;
        if done.rows_affected() > 0 {
            return Ok(MatchOutcome::Matched);
        }
        Ok(match self.which_exist(space, manager.as_str(), &customer).await? {
            (false, _) => MatchOutcome::ManagerNotFound,
            (true, false) => MatchOutcome::CustomerNotFound,
            (true, true) => MatchOutcome::SelfMatch,
        })
    }

    async fn list_matches(
        &self,
        space: SpaceId,
        cu_ref_no: &CuRefNo,
        side: Side,
        before: PagePos,
        limit: i64,
    ) -> StoreResult<Vec<MatchItem>> {
        let sql = match side {
            Side::Customers => &LIST_CUSTOMERS,
            Side::Managers => &LIST_MANAGERS,
        };
        Ok(sqlx::query_as(sql)
            .bind(space.0)
            .bind(cu_ref_no.as_str())
            .bind(before.created_at)
            .bind(before.id)
            .bind(limit)
            .fetch_all(&mut *self.conn().await?)
            .await?)
    }

    async fn remove_match(&self, space: SpaceId, manager: &CuRefNo, customer: &CuRefNo) -> StoreResult<RemoveOutcome> {
        let done = sqlx::query(REMOVE_MATCH)
            .bind(space.0)
            .bind(manager.as_str())
            .bind(customer.as_str())
            .execute(&mut *self.conn().await?)
            .await?;
        if done.rows_affected() > 0 {
            return Ok(RemoveOutcome::Removed(true));
        }
        Ok(match self.which_exist(space, manager.as_str(), customer.as_str()).await? {
            (false, _) => RemoveOutcome::ManagerNotFound,
            (true, false) => RemoveOutcome::CustomerNotFound,
            (true, true) => RemoveOutcome::Removed(false),
        })
    }
}
