//! The manager → customer relations, written once for both backends: inherent methods
//! of a concrete store (`self.pool`, `self.q`), called by `impl_store!`.

macro_rules! impl_matches {
    ($store:ident) => {
        impl $store {
            async fn matches_upsert(
                &self,
                space: $crate::store::SpaceId,
                manager: &$crate::normalize::CuRefNo,
                target: &$crate::store::MatchTarget,
                notice: Option<&str>,
            ) -> $crate::store::StoreResult<$crate::store::MatchOutcome> {
                use $crate::store::{MatchOutcome, MatchTarget};
                let (customer, contact_email) = match target {
                    MatchTarget::CuRefNo(cu, email) => (cu.as_str().to_owned(), email.as_ref().map(|e| e.normalized().to_owned())),
                    MatchTarget::Email(email) => {
                        // The contact is created only once the manager is known to exist, so
                        // a call that fails leaves nothing behind.
                        if self.customer_id(space, manager.as_str()).await?.is_none() {
                            return Ok(MatchOutcome::ManagerNotFound);
                        }
                        let input = $crate::store::CreateCustomer {
                            email: email.clone(),
                            company_name: None,
                            company_registration_number: None,
                            tax_identification_number: None,
                            ip: $crate::normalize::ClientIp::parse(None).expect("the default address is valid"),
                        };
                        let (_, profile) = $crate::store::Store::find_or_create_by_email(self, space, &input).await?;
                        (profile.cu_ref_no, None)
                    }
                };
                let now = $crate::store::now();
                let done = sqlx::query(&self.q.upsert_match)
                    .bind(space.0)
                    .bind(manager.as_str())
                    .bind(&customer)
                    .bind(notice)
                    .bind(contact_email)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                if done.rows_affected() > 0 {
                    return Ok(MatchOutcome::Matched);
                }
                let (has_manager, has_customer) = self.which_exist(space, manager.as_str(), &customer).await?;
                Ok(if !has_manager {
                    MatchOutcome::ManagerNotFound
                } else if !has_customer {
                    MatchOutcome::CustomerNotFound
                } else {
                    MatchOutcome::SelfMatch
                })
            }

            async fn matches_list(
                &self,
                space: $crate::store::SpaceId,
                cu_ref_no: &$crate::normalize::CuRefNo,
                side: $crate::store::Side,
                after: Option<$crate::store::PagePos>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::MatchItem>> {
                let sql = match side {
                    $crate::store::Side::Customers => &self.q.list_customers,
                    $crate::store::Side::Managers => &self.q.list_managers,
                };
                let after = after.unwrap_or($crate::store::PagePos {
                    created_at: $crate::store::END_OF_TIME,
                    other_id: i64::MAX,
                });
                Ok(sqlx::query_as::<_, $crate::store::MatchItem>(sql)
                    .bind(space.0)
                    .bind(cu_ref_no.as_str())
                    .bind(after.created_at)
                    .bind(after.other_id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn matches_remove(
                &self,
                space: $crate::store::SpaceId,
                manager: &$crate::normalize::CuRefNo,
                customer: &$crate::normalize::CuRefNo,
            ) -> $crate::store::StoreResult<$crate::store::RemoveOutcome> {
                use $crate::store::RemoveOutcome;
                let done = sqlx::query(&self.q.remove_match)
                    .bind(space.0)
                    .bind(manager.as_str())
                    .bind(customer.as_str())
                    .execute(&self.pool)
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

            /// Which of two cuRefNos exist (live, not erased) in the space.
            async fn which_exist(&self, space: $crate::store::SpaceId, a: &str, b: &str) -> $crate::store::StoreResult<(bool, bool)> {
                let found: Vec<String> = sqlx::query_scalar(&self.q.existing_cu_ref_nos)
                    .bind(space.0)
                    .bind(a)
                    .bind(b)
                    .fetch_all(&self.pool)
                    .await?;
                Ok((found.iter().any(|c| c == a), found.iter().any(|c| c == b)))
            }
        }
    };
}

pub(crate) use impl_matches;
