//! Writing the demo data set (`crate::seed::DEMO`) into a store, for both backends.

/// The demo seed; every step tolerates an earlier run.
macro_rules! apply_seed {
    ($self:ident, $seed:ident) => {{
        use $crate::normalize::{sha256_hex, ApiKey};
        use $crate::store::ProfileStore as _;
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
        let other = |e: &dyn std::fmt::Display| $crate::store::StoreError::Other(format!("demo seed: {e}"));
        for mode in [$crate::store::Mode::Live, $crate::store::Mode::Sandbox] {
            let space = $self.space_of($seed.organisation, mode).await?;
            // Customers go through the same writes as the API; one that exists is left
            // as it is, so a demo database keeps what its users changed.
            for c in $seed.customers {
                let cu = $crate::normalize::CuRefNo::parse(c.cu_ref_no).map_err(|e| other(&e))?;
                if $self.customer_exists(space, &cu).await? {
                    continue;
                }
                let write = $crate::store::ContactWrite {
                    email: Some($crate::normalize::Email::parse(c.email).map_err(|e| other(&e))?),
                    phone: c
                        .phone
                        .map(|p| $crate::normalize::Phone::parse(p, $crate::normalize::Region::CZ))
                        .transpose()
                        .map_err(|e| other(&e))?,
                    first_name: Some(c.first_name.map(str::to_owned)),
                    last_name: Some(c.last_name.map(str::to_owned)),
                    company_name: Some(c.company_name.map(str::to_owned)),
                    premium: Some(c.premium),
                    groups: Some(
                        c.groups.iter().map(|(name, slug)| $crate::store::Group { name: (*name).into(), slug: (*slug).into() }).collect(),
                    ),
                    subscriptions: c
                        .subscriptions
                        .iter()
                        .map(|s| $crate::store::SubscriptionWrite {
                            external_id: s.external_id.into(),
                            product_slug: Some(s.product_slug.into()),
                            product_code: Some(s.product_code.into()),
                            order_number: Some(s.order_number.into()),
                            order_hash: Some(s.order_hash.into()),
                            auto_renew: Some(s.auto_renew),
                            status: Some($crate::store::SubscriptionStatus::Active),
                            valid_until: Some(None),
                        })
                        .collect(),
                    new_cu_ref_no: Some(cu.clone()),
                    ..Default::default()
                };
                $self.upsert_contact(space, &write).await?.map_err(|r| other(&format!("{r:?}")))?;
            }
            for c in $seed.customers {
                let cu = $crate::normalize::CuRefNo::parse(c.cu_ref_no).map_err(|e| other(&e))?;
                if let Some(referrer) = c.referrer {
                    let referrer = $crate::normalize::CuRefNo::parse(referrer).map_err(|e| other(&e))?;
                    let write = $crate::store::ContactWrite {
                        cu_ref_no: Some(cu.clone()),
                        referral: Some(Some(referrer)),
                        ..Default::default()
                    };
                    $self.upsert_contact(space, &write).await?.map_err(|r| other(&format!("{r:?}")))?;
                }
                // Keyed per customer: a later start replays the first addition instead
                // of adding again.
                if let Some((amount, reason)) = c.credit {
                    let credit = $crate::store::CreditAdd {
                        cu_ref_no: cu.clone(),
                        amount,
                        reason: reason.into(),
                        idempotency: Some($crate::store::Idempotency {
                            key: format!("demo-seed-credit-{}", c.cu_ref_no),
                            fingerprint: format!("{amount} {reason}"),
                        }),
                    };
                    $self.add_credit(space, &credit).await?;
                }
            }
        }
        let mut tx = $self.pool.begin().await?;
        for mode in [$crate::store::Mode::Live, $crate::store::Mode::Sandbox] {
            let space = $self.space_of($seed.organisation, mode).await?.0;
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
