//! The demo data set (`--demo`): the reference's own example keys, customers and session,
//! so that every example in BizKitHub's documentation runs verbatim against this server.

use anyhow::Context;

use crate::auth::Scope;
use crate::normalize::{sha256_hex, ApiKey, ApiKeyKind, CuRefNo, Email, Phone, Region};
use crate::store::{
    now, ContactWrite, CreditAdd, DynStore, Group, Idempotency, Mode, NewKey, SubscriptionStatus, SubscriptionWrite,
    SESSION_LIFETIME,
};

pub struct SeedKey {
    pub kind: ApiKeyKind,
    pub key: &'static str,
    pub label: &'static str,
}

pub struct SeedSubscription {
    pub external_id: &'static str,
    pub product_slug: &'static str,
    pub product_code: &'static str,
    pub order_number: &'static str,
    pub order_hash: &'static str,
    pub auto_renew: bool,
}

pub struct SeedCustomer {
    pub cu_ref_no: &'static str,
    pub email: &'static str,
    pub phone: Option<&'static str>,
    pub first_name: Option<&'static str>,
    pub last_name: Option<&'static str>,
    pub company_name: Option<&'static str>,
    pub premium: bool,
    /// (name, slug)
    pub groups: &'static [(&'static str, &'static str)],
    pub credit: Option<(i64, &'static str)>,
    /// cuRefNo of the customer who referred this one.
    pub referrer: Option<&'static str>,
    pub subscriptions: &'static [SeedSubscription],
}

pub struct SeedSession {
    pub cu_ref_no: &'static str,
    pub identity_id: &'static str,
}

pub struct Seed {
    pub organisation: &'static str,
    pub organisation_name: &'static str,
    pub keys: &'static [SeedKey],
    /// Applied to both the live and the sandbox space, so DEV_ examples work too.
    pub customers: &'static [SeedCustomer],
    pub sessions: &'static [SeedSession],
}

pub const DEMO: Seed = Seed {
    organisation: "demo",
    organisation_name: "Demo organisation (public example keys)",
    keys: &[
        SeedKey { kind: ApiKeyKind::Prod, key: "PRODPGrFxpGEtrOZfuWhnoJohUYBXuOE", label: "demo (public)" },
        SeedKey { kind: ApiKeyKind::Dev, key: "DEV_PGrFxpGEtrOZfuWhnoJohUYBXuOE", label: "demo (public)" },
        SeedKey { kind: ApiKeyKind::Root, key: "ROOTPGrFxpGEtrOZfuWhnoJohUYBXuOE", label: "demo (public)" },
    ],
    customers: &[
        SeedCustomer {
            cu_ref_no: "1cGIHvFoQDGLAbcA",
            email: "jan@barasek.com",
            phone: Some("+420 777123456"),
            first_name: Some("Jan"),
            last_name: Some("Barášek"),
            company_name: Some("BizKitHub"),
            premium: true,
            groups: &[("Personal Trainer", "trainer")],
            credit: Some((123, "demo seed")),
            referrer: Some("1cGIHvFoQDGLAbcA"),
            subscriptions: &[SeedSubscription {
                external_id: "d9DfQL3ZF01t7Ykk",
                product_slug: "predplatne-rocni",
                product_code: "predplatne-rocni",
                order_number: "25000001",
                order_hash: "CuS08iXV3cOwweQsQB3TwYXtDr67K4kW",
                auto_renew: true,
            }],
        },
        SeedCustomer {
            cu_ref_no: "5CmsaVNgAQqRqoen",
            email: "klient@example.com",
            phone: None,
            first_name: None,
            last_name: None,
            company_name: None,
            premium: false,
            groups: &[],
            credit: None,
            referrer: None,
            subscriptions: &[],
        },
    ],
    sessions: &[SeedSession { cu_ref_no: "1cGIHvFoQDGLAbcA", identity_id: "Z9CPkS2o3UV163VQn5OUv0T8BQi8Fvdg" }],
};

impl Seed {
    /// Writes the data set idempotently: what exists is left as it is (a demo database
    /// keeps what its users changed), except the sessions, whose expiry is renewed so the
    /// reference's example identityId keeps working however long the database lives.
    /// Customers and credit go through the same writes as the API.
    pub async fn apply(&self, store: &DynStore) -> anyhow::Result<()> {
        store.ensure_organisation(self.organisation, self.organisation_name).await?;
        // Claimed, not only added: a key left revoked by a start without --demo, or left in
        // another organisation by an older version, is enabled again here, in this one.
        store.claim_keys(self.organisation, &self.new_keys()?).await?;
        for mode in [Mode::Live, Mode::Sandbox] {
            let space = store.space_of(self.organisation, mode).await?;
            for c in self.customers {
                let cu = CuRefNo::parse(c.cu_ref_no).context("demo cuRefNo")?;
                if store.customer_exists(space, &cu).await? {
                    continue;
                }
                let refused = |r| anyhow::anyhow!("demo customer {} refused: {r:?}", c.cu_ref_no);
                store.upsert_contact(space, &c.write(cu)?).await?.map_err(refused)?;
            }
            for c in self.customers {
                let cu = CuRefNo::parse(c.cu_ref_no).context("demo cuRefNo")?;
                if let Some(referrer) = c.referrer {
                    let write = ContactWrite {
                        cu_ref_no: Some(cu.clone()),
                        referral: Some(Some(CuRefNo::parse(referrer).context("demo referrer")?)),
                        ..Default::default()
                    };
                    let refused = |r| anyhow::anyhow!("demo referral of {} refused: {r:?}", c.cu_ref_no);
                    store.upsert_contact(space, &write).await?.map_err(refused)?;
                }
                // Keyed per customer: a later start replays the first addition instead of
                // adding again.
                if let Some((amount, reason)) = c.credit {
                    let credit = CreditAdd {
                        cu_ref_no: cu.clone(),
                        amount,
                        reason: reason.into(),
                        idempotency: Some(Idempotency {
                            key: format!("demo-seed-credit-{}", c.cu_ref_no),
                            fingerprint: format!("{amount} {reason}"),
                        }),
                    };
                    store.add_credit(space, &credit).await?;
                }
            }
            for s in self.sessions {
                let cu = CuRefNo::parse(s.cu_ref_no).context("demo session cuRefNo")?;
                store.renew_session(space, &cu, &sha256_hex(s.identity_id), now() + SESSION_LIFETIME).await?;
            }
        }
        Ok(())
    }
}

impl Seed {
    fn new_keys(&self) -> anyhow::Result<Vec<NewKey>> {
        self.keys
            .iter()
            .map(|k| {
                let key = ApiKey::parse(k.key).context("demo key")?;
                Ok(NewKey {
                    kind: k.kind,
                    digest: key.digest(),
                    prefix: key.prefix8().to_owned(),
                    label: k.label.to_owned(),
                    scopes: Scope::all_names(),
                    expires_at: None,
                    rate_limit_per_minute: None,
                })
            })
            .collect()
    }

    /// Revokes the public keys, wherever they are; how many were live. A server started
    /// without `--demo` must not answer to keys anyone can read in BizKitHub's documents.
    pub async fn disable_keys(&self, store: &DynStore) -> anyhow::Result<u64> {
        let digests: Vec<String> = self.new_keys()?.into_iter().map(|k| k.digest).collect();
        Ok(store.revoke_keys(&digests).await?)
    }
}

impl SeedCustomer {
    /// The customer as a create-or-update with its published cuRefNo.
    fn write(&self, cu: CuRefNo) -> anyhow::Result<ContactWrite> {
        let subscription = |s: &SeedSubscription| SubscriptionWrite {
            external_id: s.external_id.into(),
            product_slug: Some(s.product_slug.into()),
            product_code: Some(s.product_code.into()),
            order_number: Some(s.order_number.into()),
            order_hash: Some(s.order_hash.into()),
            auto_renew: Some(s.auto_renew),
            status: Some(SubscriptionStatus::Active),
            valid_until: Some(None),
        };
        Ok(ContactWrite {
            email: Some(Email::parse(self.email).context("demo e-mail")?),
            phone: self.phone.map(|p| Phone::parse(p, Region::CZ)).transpose().context("demo phone")?,
            first_name: Some(self.first_name.map(str::to_owned)),
            last_name: Some(self.last_name.map(str::to_owned)),
            company_name: Some(self.company_name.map(str::to_owned)),
            premium: Some(self.premium),
            groups: Some(
                self.groups.iter().map(|(name, slug)| Group { name: (*name).into(), slug: (*slug).into() }).collect(),
            ),
            subscriptions: self.subscriptions.iter().map(subscription).collect(),
            new_cu_ref_no: Some(cu),
            ..Default::default()
        })
    }
}
