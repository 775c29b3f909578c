//! Writing the demo data set (`crate::seed::DEMO`) into a store, for both backends.

/// The demo seed, in one transaction; every insert tolerates an earlier run.
macro_rules! apply_seed {
    ($self:ident, $seed:ident) => {{
        use $crate::normalize::{sha256_hex, ApiKey};
        $self.ensure_organisation($seed.organisation, $seed.organisation_name).await?;
        for k in $seed.keys {
            let key = ApiKey::parse(k.key).map_err(|e| $crate::store::StoreError::Other(e.to_string()))?;
            let new = $crate::store::NewKey {
                kind: k.kind,
                digest: key.digest(),
                prefix: key.prefix8().to_owned(),
                label: k.label.to_owned(),
                scopes: $crate::auth::Scope::all_names(),
                expires_at: None,
                rate_limit_per_minute: None,
            };
            $self.insert_key($seed.organisation, &new).await?;
        }
        let now = $crate::store::now();
        let mut tx = $self.pool.begin().await?;
        for mode in [$crate::store::Mode::Live, $crate::store::Mode::Sandbox] {
            let space: i64 = sqlx::query_scalar(
                "select s.id from spaces s join organisations o on o.id = s.organisation_id where o.slug = $1 and s.mode = $2",
            )
            .bind($seed.organisation)
            .bind(mode.as_str())
            .fetch_one(&mut *tx)
            .await?;
            for c in $seed.customers {
                let email = $crate::normalize::Email::parse(c.email).map_err(|e| $crate::store::StoreError::Other(e.to_string()))?;
                let inserted: Option<i64> = sqlx::query_scalar(
                    "insert into customers (space_id, cu_ref_no, email, email_canonical, email_rules_version, phone, \
                     first_name, last_name, company_name, premium, created_at, updated_at) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) on conflict do nothing returning id",
                )
                .bind(space)
                .bind(c.cu_ref_no)
                .bind(email.normalized())
                .bind(email.canonical())
                .bind($crate::normalize::EMAIL_RULES_VERSION as i64)
                .bind(c.phone)
                .bind(c.first_name)
                .bind(c.last_name)
                .bind(c.company_name)
                .bind(c.premium)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(id) = inserted else { continue };
                for (name, slug) in c.groups {
                    let group: i64 = sqlx::query_scalar(
                        "insert into customer_groups (space_id, name, slug) values ($1, $2, $3) \
                         on conflict (space_id, slug) do update set name = customer_groups.name returning id",
                    )
                    .bind(space)
                    .bind(*name)
                    .bind(*slug)
                    .fetch_one(&mut *tx)
                    .await?;
                    sqlx::query("insert into customer_group_members (space_id, customer_id, group_id) values ($1, $2, $3)")
                        .bind(space)
                        .bind(id)
                        .bind(group)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some((amount, reason)) = c.credit {
                    sqlx::query("insert into credit_ledger (space_id, customer_id, amount, reason, created_at) values ($1, $2, $3, $4, $5)")
                        .bind(space)
                        .bind(id)
                        .bind(amount)
                        .bind(reason)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                for s in c.subscriptions {
                    sqlx::query(
                        "insert into subscriptions (space_id, customer_id, external_id, product_slug, product_code, \
                         order_number, order_hash, auto_renew, status, created_at, updated_at) \
                         values ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $9) on conflict do nothing",
                    )
                    .bind(space)
                    .bind(id)
                    .bind(s.external_id)
                    .bind(s.product_slug)
                    .bind(s.product_code)
                    .bind(s.order_number)
                    .bind(s.order_hash)
                    .bind(s.auto_renew)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            for c in $seed.customers {
                if let Some(referrer) = c.referrer {
                    sqlx::query(
                        "update customers set referrer_id = (select id from customers where space_id = $1 and cu_ref_no = $3) \
                         where space_id = $1 and cu_ref_no = $2 and referrer_id is null",
                    )
                    .bind(space)
                    .bind(c.cu_ref_no)
                    .bind(referrer)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            // The demo session is renewed on every demo start, so the reference's example
            // identityId keeps working however long the demo database lives.
            for s in $seed.sessions {
                sqlx::query(
                    "insert into sessions (space_id, customer_id, identity_digest, created_at, expires_at, last_seen_at) \
                     select space_id, id, $3, $4, $5, $4 from customers where space_id = $1 and cu_ref_no = $2 \
                     on conflict (space_id, identity_digest) do update set expires_at = excluded.expires_at, revoked_at = null",
                )
                .bind(space)
                .bind(s.cu_ref_no)
                .bind(sha256_hex(s.identity_id))
                .bind(now)
                .bind(now + $crate::store::sql::SESSION_LIFETIME)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }};
}

pub(crate) use apply_seed;
