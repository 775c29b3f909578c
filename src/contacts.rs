//! Contacts as clients write them: the create-or-update body (also one import item),
//! validated into a `ContactWrite`, and how a store's refusals read to a client.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::http::error::ApiError;
use crate::normalize::{clean_text, slugify, ClientIp, CuRefNo, Email, Phone, Region, TextKind};
use crate::store::{ContactRefusal, ContactWrite, Group, Patch, SubscriptionStatus, SubscriptionWrite};

/// Longest accepted values and longest lists, after cleaning.
pub mod limits {
    pub const NAME: usize = 100;
    pub const COMPANY_NAME: usize = 255;
    pub const REGISTRATION_NUMBER: usize = 64;
    pub const TAX_ID: usize = 64;
    pub const GROUP_NAME: usize = 100;
    pub const GROUPS: usize = 50;
    pub const ALTERNATES: usize = 20;
    pub const SUBSCRIPTIONS: usize = 50;
    pub const SUBSCRIPTION_FIELD: usize = 255;
    /// A `meta` patch as sent, serialised, in bytes.
    pub const META_BYTES: usize = 16 * 1024;
}

/// How contacts are written; see the README's settings table.
#[derive(Debug, Clone, Copy)]
pub struct ContactSettings {
    /// The region of phone numbers given without a country prefix.
    pub phone_region: Region,
    /// Import items written per transaction.
    pub import_batch: usize,
}

impl Default for ContactSettings {
    fn default() -> Self {
        Self { phone_region: Region::CZ, import_batch: 500 }
    }
}

/// Absent stays `None`; `null` becomes `Some(None)`: the field is cleared.
fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /api/v1/customer/create-or-update`, and one item of an import. Names follow
/// API.md; the peer API's names (`phoneNumber`, `alternatePhoneNumbers`, `tags`, …) are
/// accepted as aliases.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactBody {
    cu_ref_no: Option<String>,
    email: Option<String>,
    #[serde(alias = "phoneNumber")]
    phone: Option<String>,
    #[serde(default, deserialize_with = "given")]
    first_name: Patch<String>,
    #[serde(default, deserialize_with = "given")]
    last_name: Patch<String>,
    #[serde(default, deserialize_with = "given")]
    company_name: Patch<String>,
    #[serde(default, deserialize_with = "given")]
    company_registration_number: Patch<String>,
    #[serde(default, deserialize_with = "given")]
    tax_identification_number: Patch<String>,
    premium: Option<bool>,
    ban: Option<bool>,
    #[serde(alias = "tags")]
    groups: Option<Vec<String>>,
    meta: Option<Map<String, Value>>,
    #[serde(alias = "secondaryEmails")]
    alternate_emails: Option<Vec<String>>,
    #[serde(alias = "alternatePhoneNumbers", alias = "secondaryPhoneNumbers")]
    alternate_phones: Option<Vec<String>>,
    #[serde(default, deserialize_with = "given")]
    referral_cu_ref_no: Patch<String>,
    subscriptions: Option<Vec<SubscriptionBody>>,
    customer_real_ip: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionBody {
    external_id: Option<String>,
    product_slug: Option<String>,
    product_code: Option<String>,
    order_number: Option<String>,
    order_hash: Option<String>,
    auto_renew: Option<bool>,
    status: Option<String>,
    #[serde(default, deserialize_with = "given")]
    valid_until: Patch<String>,
}

fn text_patch(value: &Patch<String>, field: &'static str, kind: TextKind, max: usize) -> Result<Patch<String>, ApiError> {
    value
        .as_ref()
        .map(|v| match v {
            None => Ok(None),
            Some(v) => clean_text(v, kind, max).map_err(ApiError::too_long(field)),
        })
        .transpose()
}

fn required_text(value: Option<&str>, field: &'static str, max: usize) -> Result<Option<String>, ApiError> {
    value.map(|v| clean_text(v, TextKind::Plain, max).map_err(ApiError::too_long(field))).transpose().map(Option::flatten)
}

fn at_most<T>(list: Option<Vec<T>>, field: &'static str, max: usize) -> Result<Option<Vec<T>>, ApiError> {
    match list {
        Some(l) if l.len() > max => Err(ApiError::invalid(format!("{field} may hold at most {max} items"), Some(field))),
        other => Ok(other),
    }
}

impl ContactBody {
    /// Validates every field; `region` reads phone numbers without a country prefix.
    pub fn into_write(self, region: Region) -> Result<ContactWrite, ApiError> {
        let cu_ref_no = self
            .cu_ref_no
            .map(|c| CuRefNo::parse(&c).map_err(|_| ApiError::InvalidCuRefNo { field: "cuRefNo" }))
            .transpose()?;
        let email = self.email.map(|e| Email::parse(&e).map_err(ApiError::email("email"))).transpose()?;
        let phone = self.phone.map(|p| Phone::parse(&p, region).map_err(ApiError::phone("phone"))).transpose()?;
        if cu_ref_no.is_none() && email.is_none() && phone.is_none() {
            return Err(ApiError::invalid("cuRefNo, email or phone is required", Some("email")));
        }
        let groups = at_most(self.groups, "groups", limits::GROUPS)?
            .map(|names| {
                let mut groups: Vec<Group> = Vec::with_capacity(names.len());
                for name in names {
                    let name = clean_text(&name, TextKind::Plain, limits::GROUP_NAME).map_err(ApiError::too_long("groups"))?;
                    let Some((name, slug)) = name.and_then(|n| slugify(&n).map(|s| (n, s))) else {
                        return Err(ApiError::invalid("a group name needs a letter or a digit", Some("groups")));
                    };
                    if !groups.iter().any(|g| g.slug == slug) {
                        groups.push(Group { name, slug });
                    }
                }
                Ok(groups)
            })
            .transpose()?;
        if let Some(meta) = &self.meta {
            if serde_json::to_vec(meta).map_or(true, |b| b.len() > limits::META_BYTES) {
                return Err(ApiError::ValueTooLong { field: "meta", max: limits::META_BYTES });
            }
        }
        let alternate_emails = at_most(self.alternate_emails, "alternateEmails", limits::ALTERNATES)?
            .map(|l| l.iter().map(|e| Email::parse(e).map_err(ApiError::email("alternateEmails"))).collect::<Result<Vec<_>, _>>())
            .transpose()?;
        let alternate_phones = at_most(self.alternate_phones, "alternatePhones", limits::ALTERNATES)?
            .map(|l| l.iter().map(|p| Phone::parse(p, region).map_err(ApiError::phone("alternatePhones"))).collect::<Result<Vec<_>, _>>())
            .transpose()?;
        let referral = self
            .referral_cu_ref_no
            .map(|r| r.map(|c| CuRefNo::parse(&c).map_err(|_| ApiError::InvalidCuRefNo { field: "referralCuRefNo" })).transpose())
            .transpose()?;
        let subscriptions = at_most(self.subscriptions, "subscriptions", limits::SUBSCRIPTIONS)?
            .unwrap_or_default()
            .into_iter()
            .map(SubscriptionBody::into_write)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ContactWrite {
            cu_ref_no,
            email,
            phone,
            first_name: text_patch(&self.first_name, "firstName", TextKind::Name, limits::NAME)?,
            last_name: text_patch(&self.last_name, "lastName", TextKind::Name, limits::NAME)?,
            company_name: text_patch(&self.company_name, "companyName", TextKind::Plain, limits::COMPANY_NAME)?,
            company_registration_number: text_patch(
                &self.company_registration_number,
                "companyRegistrationNumber",
                TextKind::Plain,
                limits::REGISTRATION_NUMBER,
            )?,
            tax_identification_number: text_patch(
                &self.tax_identification_number,
                "taxIdentificationNumber",
                TextKind::Plain,
                limits::TAX_ID,
            )?,
            premium: self.premium,
            ban: self.ban,
            groups,
            meta: self.meta,
            alternate_emails,
            alternate_phones,
            referral,
            subscriptions,
            ip: self
                .customer_real_ip
                .map(|ip| ClientIp::parse(Some(&ip)).map_err(ApiError::ip("customerRealIp")))
                .transpose()?,
            new_cu_ref_no: None,
        })
    }
}

impl SubscriptionBody {
    fn into_write(self) -> Result<SubscriptionWrite, ApiError> {
        const MAX: usize = limits::SUBSCRIPTION_FIELD;
        let field = |v: Option<String>, name: &'static str| required_text(v.as_deref(), name, MAX);
        let external_id = field(self.external_id, "subscriptions.externalId")?
            .ok_or_else(|| ApiError::missing("subscriptions.externalId"))?;
        let status = self
            .status
            .map(|s| {
                SubscriptionStatus::parse(s.trim()).ok_or_else(|| {
                    ApiError::invalid("status must be active, paused, cancelled or expired", Some("subscriptions.status"))
                })
            })
            .transpose()?;
        let valid_until = self
            .valid_until
            .map(|v| {
                v.map(|t| {
                    DateTime::parse_from_rfc3339(t.trim()).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                        ApiError::invalid("validUntil must be an RFC 3339 time", Some("subscriptions.validUntil"))
                    })
                })
                .transpose()
            })
            .transpose()?;
        Ok(SubscriptionWrite {
            external_id,
            product_slug: field(self.product_slug, "subscriptions.productSlug")?,
            product_code: field(self.product_code, "subscriptions.productCode")?,
            order_number: field(self.order_number, "subscriptions.orderNumber")?,
            order_hash: field(self.order_hash, "subscriptions.orderHash")?,
            auto_renew: self.auto_renew,
            status,
            valid_until,
        })
    }
}

/// How a store's refusal reads to a client.
pub fn refusal_error(refusal: ContactRefusal) -> ApiError {
    match refusal {
        ContactRefusal::NotFound => ApiError::CustomerNotFound { field: "cuRefNo" },
        ContactRefusal::ReferrerNotFound => ApiError::CustomerNotFound { field: "referralCuRefNo" },
        ContactRefusal::EmailTaken => {
            ApiError::InvalidEmail { field: "email", reason: "the address belongs to another contact".into() }
        }
        ContactRefusal::PhoneTaken => {
            ApiError::InvalidPhone { field: "phone", reason: "the number belongs to another contact without e-mail".into() }
        }
        ContactRefusal::SubscriptionTaken(id) => {
            ApiError::invalid(format!("subscription {id} belongs to another contact"), Some("subscriptions.externalId"))
        }
        ContactRefusal::NoContactPoint => ApiError::invalid("a new contact needs an email or a phone", Some("email")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(body: Value) -> Result<ContactWrite, ApiError> {
        crate::http::extract::from_value::<ContactBody>(body)?.into_write(Region::CZ)
    }

    #[test]
    fn absent_null_and_empty_fields_differ() {
        let w = write(json!({"email": "a@example.com", "firstName": null, "lastName": " novák ", "companyName": ""})).unwrap();
        assert_eq!(w.first_name, Some(None), "null clears");
        assert_eq!(w.last_name, Some(Some("Novák".into())), "names are cleaned and capitalised");
        assert_eq!(w.company_name, Some(None), "empty clears");
        assert_eq!(w.tax_identification_number, None, "absent keeps");
    }

    #[test]
    fn groups_get_slugs_once_each() {
        let w = write(json!({"email": "a@example.com", "groups": ["Osobní trenér", "osobni  trener", "VIP"]})).unwrap();
        let slugs: Vec<_> = w.groups.unwrap().into_iter().map(|g| (g.name, g.slug)).collect();
        assert_eq!(slugs, [("Osobní trenér".into(), "osobni-trener".into()), ("VIP".into(), "vip".into())]);
        assert_eq!(write(json!({"email": "a@example.com", "groups": ["!!"]})).unwrap_err().code(), "INVALID_REQUEST");
    }

    #[test]
    fn peer_aliases_are_accepted() {
        let w = write(json!({"phoneNumber": "777 123 456", "alternatePhoneNumbers": ["+421 905 123 456"], "tags": ["a"]})).unwrap();
        assert_eq!(w.phone.unwrap().as_str(), "+420 777123456");
        assert_eq!(w.alternate_phones.unwrap()[0].as_str(), "+421 905123456");
        assert_eq!(w.groups.unwrap()[0].slug, "a");
    }

    #[test]
    fn bad_input_names_its_field() {
        for (body, code, field) in [
            (json!({}), "INVALID_REQUEST", "email"),
            (json!({"phone": "777 ABC"}), "INVALID_PHONE", "phone"),
            (json!({"email": "a@b.c", "alternatePhones": ["1"]}), "INVALID_PHONE", "alternatePhones"),
            (json!({"email": "x"}), "INVALID_EMAIL", "email"),
            (json!({"cuRefNo": "short"}), "INVALID_CU_REF_NO", "cuRefNo"),
            (json!({"email": "a@example.com", "referralCuRefNo": "x"}), "INVALID_CU_REF_NO", "referralCuRefNo"),
            (json!({"email": "a@example.com", "firstName": "x".repeat(101)}), "VALUE_TOO_LONG", "firstName"),
            (json!({"email": "a@example.com", "meta": {"k": "x".repeat(20_000)}}), "VALUE_TOO_LONG", "meta"),
            (json!({"email": "a@example.com", "premium": "yes"}), "INVALID_REQUEST", "premium"),
            (json!({"email": "a@example.com", "subscriptions": [{}]}), "INVALID_REQUEST", "subscriptions.externalId"),
            (json!({"email": "a@example.com", "subscriptions": [{"externalId": "s", "status": "on"}]}), "INVALID_REQUEST", "subscriptions.status"),
            (json!({"email": "a@example.com", "subscriptions": [{"externalId": "s", "validUntil": "tomorrow"}]}), "INVALID_REQUEST", "subscriptions.validUntil"),
            (json!({"email": "a@example.com", "customerRealIp": "1.2.3"}), "INVALID_IP_ADDRESS", "customerRealIp"),
        ] {
            let err = write(body.clone()).unwrap_err();
            assert_eq!((err.code(), err.field()), (code, Some(field)), "{body}");
        }
    }

    #[test]
    fn subscriptions_parse_times_and_statuses() {
        let w = write(json!({"email": "a@example.com", "subscriptions": [
            {"externalId": "s1", "status": "cancelled", "validUntil": "2030-01-01T00:00:00+01:00"},
            {"externalId": "s2", "validUntil": null}
        ]}))
        .unwrap();
        assert_eq!(w.subscriptions[0].status, Some(SubscriptionStatus::Cancelled));
        assert_eq!(w.subscriptions[0].valid_until, Some(Some("2029-12-31T23:00:00Z".parse().unwrap())));
        assert_eq!(w.subscriptions[1].valid_until, Some(None));
    }
}
