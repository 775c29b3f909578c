//! The demo data set (`--demo`): the reference's own example keys, customers and session,
//! so that every example in BizKitHub's documentation runs verbatim against this server.

use crate::normalize::ApiKeyKind;

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
    organisation: "default",
    organisation_name: "Default organisation",
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
