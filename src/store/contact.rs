//! The statements of one create-or-update inside a caller's transaction, shared by the
//! single write and the import batches (`impl_contact_writes!`, called by `impl_profiles!`).

/// Adds `write_contact` and `import_batch` to a store type; `$db` is its sqlx database.
macro_rules! impl_contact_writes {
    ($store:ident, $db:ty) => {
        impl $store {
            /// Writes one contact in `tx`: `(created, id, cuRefNo)`, or the refusal, decided
            /// before anything is written. `groups` caches group ids by slug for the
            /// transaction's lifetime.
            async fn write_contact(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                space: $crate::store::SpaceId,
                w: &$crate::store::profiles::ContactWrite,
                now: chrono::DateTime<chrono::Utc>,
                groups: &mut std::collections::HashMap<String, i64>,
            ) -> $crate::store::StoreResult<Result<(bool, i64, String), $crate::store::profiles::ContactRefusal>> {
                use $crate::store::profiles::{self as p, ContactRefusal as Refusal};
                // The contact, and whether it was found by an alternate: an alternate
                // address or number finds its contact but does not replace its own.
                let (found, by_alternate) = match &w.cu_ref_no {
                    Some(cu) => {
                        match self.customer_id_with(&mut **tx, space, cu.as_str()).await? {
                            Some(id) => (Some(id), None),
                            None => return Ok(Err(Refusal::NotFound)),
                        }
                    }
                    None => {
                        let mut found = None;
                        if let Some(email) = &w.email {
                            found = sqlx::query_as::<_, (i64, i32)>(p::FIND_BY_EMAIL)
                                .bind(space.0)
                                .bind(email.canonical())
                                .fetch_optional(&mut **tx)
                                .await?
                                .map(|(id, rank)| (id, (rank == 1).then_some("email")));
                        }
                        if let (None, Some(phone)) = (found, &w.phone) {
                            found = sqlx::query_as::<_, (i64, i32)>(p::FIND_BY_PHONE)
                                .bind(space.0)
                                .bind(phone.as_str())
                                .bind(w.email.is_none())
                                .fetch_optional(&mut **tx)
                                .await?
                                .map(|(id, rank)| (id, (rank == 1).then_some("phone")));
                        }
                        (found.map(|f| f.0), found.and_then(|f| f.1))
                    }
                };
                if let Some(refusal) = self.contact_refusal(tx, space, w, found).await? {
                    return Ok(Err(refusal));
                }
                let referrer = match &w.referral {
                    Some(Some(cu)) => match self.customer_id_with(&mut **tx, space, cu.as_str()).await? {
                        Some(id) => Some(Some(id)),
                        None => return Ok(Err(Refusal::ReferrerNotFound)),
                    },
                    Some(None) => Some(None),
                    None => None,
                };
                let patch = |f: &p::Patch<String>| (f.is_some(), f.clone().flatten());
                let (id, new, cu_ref_no) = match found {
                    Some(id) => {
                        let own_email = w.email.as_ref().filter(|_| by_alternate != Some("email"));
                        let own_phone = w.phone.as_ref().filter(|_| by_alternate != Some("phone"));
                        let (first, last, company, reg, tax) = (
                            patch(&w.first_name),
                            patch(&w.last_name),
                            patch(&w.company_name),
                            patch(&w.company_registration_number),
                            patch(&w.tax_identification_number),
                        );
                        let (cu, meta): (String, sqlx::types::Json<serde_json::Map<String, serde_json::Value>>) =
                            sqlx::query_as(p::UPDATE_CONTACT)
                                .bind(id)
                                .bind(own_email.map(|e| e.normalized()))
                                .bind(own_email.map(|e| e.canonical()))
                                .bind($crate::normalize::EMAIL_RULES_VERSION as i64)
                                .bind(own_phone.map(|p| p.as_str()))
                                .bind(first.0)
                                .bind(first.1)
                                .bind(last.0)
                                .bind(last.1)
                                .bind(company.0)
                                .bind(company.1)
                                .bind(reg.0)
                                .bind(reg.1)
                                .bind(tax.0)
                                .bind(tax.1)
                                .bind(w.premium)
                                .bind(w.ban)
                                .bind(w.ip.as_ref().map(|ip| ip.as_str()))
                                .bind(now)
                                .fetch_one(&mut **tx)
                                .await?;
                        if let Some(meta_patch) = &w.meta {
                            let mut merged = meta.0.clone();
                            p::merge_patch(&mut merged, meta_patch);
                            if merged != meta.0 {
                                sqlx::query("update customers set meta = $2 where id = $1")
                                    .bind(id)
                                    .bind(sqlx::types::Json(&merged))
                                    .execute(&mut **tx)
                                    .await?;
                            }
                        }
                        if w.ban == Some(true) {
                            sqlx::query($crate::store::accounts::END_CUSTOMER_SESSIONS)
                                .bind(space.0)
                                .bind(id)
                                .bind(now)
                                .execute(&mut **tx)
                                .await?;
                        }
                        (id, false, cu)
                    }
                    None => {
                        let cu = w.new_cu_ref_no.clone().unwrap_or_else($crate::normalize::CuRefNo::generate);
                        let mut meta = serde_json::Map::new();
                        if let Some(meta_patch) = &w.meta {
                            p::merge_patch(&mut meta, meta_patch);
                        }
                        let id: i64 = sqlx::query_scalar(p::INSERT_CONTACT)
                            .bind(space.0)
                            .bind(cu.as_str())
                            .bind(w.email.as_ref().map(|e| e.normalized()))
                            .bind(w.email.as_ref().map(|e| e.canonical()))
                            .bind($crate::normalize::EMAIL_RULES_VERSION as i64)
                            .bind(w.phone.as_ref().map(|p| p.as_str()))
                            .bind(w.first_name.clone().flatten())
                            .bind(w.last_name.clone().flatten())
                            .bind(w.company_name.clone().flatten())
                            .bind(w.company_registration_number.clone().flatten())
                            .bind(w.tax_identification_number.clone().flatten())
                            .bind(w.premium.unwrap_or(false))
                            .bind(w.ban.unwrap_or(false))
                            .bind(sqlx::types::Json(&meta))
                            .bind(w.ip.as_ref().map(|ip| ip.as_str()))
                            .bind(now)
                            .fetch_one(&mut **tx)
                            .await?;
                        (id, true, cu.as_str().to_owned())
                    }
                };
                if let Some(referrer) = referrer {
                    sqlx::query("update customers set referrer_id = $2 where id = $1")
                        .bind(id)
                        .bind(referrer)
                        .execute(&mut **tx)
                        .await?;
                }
                if let Some(list) = &w.groups {
                    self.write_groups(tx, space, id, new, list, groups).await?;
                }
                let points = [
                    ("email", w.alternate_emails.as_ref().map(|l| l.iter().map(|e| e.canonical()).collect::<Vec<_>>())),
                    ("phone", w.alternate_phones.as_ref().map(|l| l.iter().map(|p| p.as_str()).collect::<Vec<_>>())),
                ];
                for (kind, values) in points {
                    let Some(values) = values else { continue };
                    if !new {
                        sqlx::query("delete from contact_points where space_id = $1 and customer_id = $2 and kind = $3")
                            .bind(space.0)
                            .bind(id)
                            .bind(kind)
                            .execute(&mut **tx)
                            .await?;
                    }
                    for value in values {
                        sqlx::query(
                            "insert into contact_points (space_id, customer_id, kind, value) values ($1, $2, $3, $4) \
                             on conflict do nothing",
                        )
                        .bind(space.0)
                        .bind(id)
                        .bind(kind)
                        .bind(value)
                        .execute(&mut **tx)
                        .await?;
                    }
                }
                for s in &w.subscriptions {
                    let done = sqlx::query(p::UPSERT_SUBSCRIPTION)
                        .bind(space.0)
                        .bind(id)
                        .bind(&s.external_id)
                        .bind(s.product_slug.as_deref())
                        .bind(s.product_code.as_deref())
                        .bind(s.order_number.as_deref())
                        .bind(s.order_hash.as_deref())
                        .bind(s.auto_renew)
                        .bind(s.status.map(|s| s.as_str()))
                        .bind(s.valid_until.flatten())
                        .bind(s.valid_until.is_some())
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                    if done.rows_affected() == 0 {
                        // Checked free before writing: another writer took it since.
                        return Err($crate::store::StoreError::Conflict(format!("subscription {}", s.external_id)));
                    }
                }
                Ok(Ok((new, id, cu_ref_no)))
            }

            /// The refusals that need the database: an e-mail or a phone-only number that
            /// is another contact's, a subscription that is another contact's.
            async fn contact_refusal(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                space: $crate::store::SpaceId,
                w: &$crate::store::profiles::ContactWrite,
                found: Option<i64>,
            ) -> $crate::store::StoreResult<Option<$crate::store::profiles::ContactRefusal>> {
                use $crate::store::profiles::ContactRefusal as Refusal;
                let me = found.unwrap_or(0);
                if found.is_none() && w.email.is_none() && w.phone.is_none() {
                    return Ok(Some(Refusal::NoContactPoint));
                }
                if let (Some(email), Some(_)) = (&w.email, found) {
                    let owner = sqlx::query_scalar::<_, i64>(
                        "select id from customers where space_id = $1 and email_canonical = $2 and id <> $3 and erased_at is null",
                    )
                    .bind(space.0)
                    .bind(email.canonical())
                    .bind(me)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if owner.is_some() {
                        return Ok(Some(Refusal::EmailTaken));
                    }
                }
                if let (Some(phone), Some(_), None) = (&w.phone, found, &w.email) {
                    let clash = sqlx::query_scalar::<_, i64>(
                        "select o.id from customers o join customers me on me.id = $3 and me.email_canonical is null \
                         where o.space_id = $1 and o.phone = $2 and o.email_canonical is null and o.id <> $3 and o.erased_at is null",
                    )
                    .bind(space.0)
                    .bind(phone.as_str())
                    .bind(me)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if clash.is_some() {
                        return Ok(Some(Refusal::PhoneTaken));
                    }
                }
                for s in &w.subscriptions {
                    let owner = sqlx::query_scalar::<_, i64>(
                        "select customer_id from subscriptions where space_id = $1 and external_id = $2",
                    )
                    .bind(space.0)
                    .bind(&s.external_id)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if owner.is_some_and(|owner| Some(owner) != found) {
                        return Ok(Some(Refusal::SubscriptionTaken(s.external_id.clone())));
                    }
                }
                Ok(None)
            }

            /// Replaces the contact's group memberships, creating groups by slug.
            async fn write_groups(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
                space: $crate::store::SpaceId,
                id: i64,
                new: bool,
                list: &[$crate::store::Group],
                cache: &mut std::collections::HashMap<String, i64>,
            ) -> $crate::store::StoreResult<()> {
                if !new {
                    sqlx::query("delete from customer_group_members where space_id = $1 and customer_id = $2")
                        .bind(space.0)
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                }
                for group in list {
                    let group_id = match cache.get(&group.slug) {
                        Some(g) => *g,
                        None => {
                            // The first name given for a slug stays its display name.
                            let g: i64 = sqlx::query_scalar(
                                "insert into customer_groups (space_id, name, slug) values ($1, $2, $3) \
                                 on conflict (space_id, slug) do update set name = customer_groups.name returning id",
                            )
                            .bind(space.0)
                            .bind(&group.name)
                            .bind(&group.slug)
                            .fetch_one(&mut **tx)
                            .await?;
                            cache.insert(group.slug.clone(), g);
                            g
                        }
                    };
                    sqlx::query(
                        "insert into customer_group_members (space_id, customer_id, group_id) values ($1, $2, $3) \
                         on conflict do nothing",
                    )
                    .bind(space.0)
                    .bind(id)
                    .bind(group_id)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }

            /// One import batch in one transaction.
            async fn import_batch(
                &self,
                space: $crate::store::SpaceId,
                writes: &[$crate::store::profiles::ContactWrite],
            ) -> $crate::store::StoreResult<Vec<Result<$crate::store::profiles::Written, $crate::store::profiles::ContactRefusal>>> {
                let now = $crate::store::now();
                let mut tx = self.pool.begin_with(self.q.begin_write).await?;
                let mut groups = std::collections::HashMap::new();
                let mut out = Vec::with_capacity(writes.len());
                for w in writes {
                    let result = self.write_contact(&mut tx, space, w, now, &mut groups).await?;
                    out.push(result.map(|(new_account, _, cu_ref_no)| $crate::store::profiles::Written { new_account, cu_ref_no }));
                }
                tx.commit().await?;
                Ok(out)
            }
        }
    };
}

pub(crate) use impl_contact_writes;
