//! The contact item as clients write it: the body of create-or-update and one item of an
//! import (over HTTP or from a file), read into a `ContactWrite`.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::fields::{self, limits, InputResult};
use crate::normalize::{slugify, Region, TextKind};
use crate::store::{ContactWrite, Group, Patch, SubscriptionStatus, SubscriptionWrite};

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

impl ContactBody {
    /// Reads one item from JSON: an object of the documented fields.
    pub fn from_json(value: Value) -> InputResult<ContactBody> {
        match value {
            value @ Value::Object(_) => fields::from_value(value),
            _ => Err(fields::malformed("an item must be a JSON object")),
        }
    }

    /// Validates every field; `region` reads phone numbers without a country prefix.
    pub fn into_write(self, region: Region) -> InputResult<ContactWrite> {
        let cu_ref_no = self.cu_ref_no.map(|c| fields::cu_ref_no(&c, "cuRefNo")).transpose()?;
        let email = self.email.map(|e| fields::email(&e, "email")).transpose()?;
        let phone = self.phone.map(|p| fields::phone(&p, region, "phone")).transpose()?;
        if cu_ref_no.is_none() && email.is_none() && phone.is_none() {
            return Err(fields::invalid("email", "cuRefNo, email or phone is required"));
        }
        let groups = fields::at_most(self.groups, "groups", limits::GROUPS)?.map(groups).transpose()?;
        if let Some(meta) = &self.meta {
            if serde_json::to_vec(meta).map_or(true, |b| b.len() > limits::META_BYTES) {
                return Err(fields::refuse("meta", fields::Problem::TooLong { max: limits::META_BYTES }));
            }
        }
        let alternate_emails = fields::at_most(self.alternate_emails, "alternateEmails", limits::ALTERNATES)?
            .map(|l| l.iter().map(|e| fields::email(e, "alternateEmails")).collect::<InputResult<Vec<_>>>())
            .transpose()?;
        let alternate_phones = fields::at_most(self.alternate_phones, "alternatePhones", limits::ALTERNATES)?
            .map(|l| l.iter().map(|p| fields::phone(p, region, "alternatePhones")).collect::<InputResult<Vec<_>>>())
            .transpose()?;
        let referral = self
            .referral_cu_ref_no
            .map(|r| r.map(|c| fields::cu_ref_no(&c, "referralCuRefNo")).transpose())
            .transpose()?;
        let subscriptions = fields::at_most(self.subscriptions, "subscriptions", limits::SUBSCRIPTIONS)?
            .unwrap_or_default()
            .into_iter()
            .map(SubscriptionBody::into_write)
            .collect::<InputResult<Vec<_>>>()?;
        let ip = match self.customer_real_ip {
            Some(ip) => Some(fields::ip(Some(&ip), "customerRealIp")?),
            None => None,
        };
        Ok(ContactWrite {
            cu_ref_no,
            email,
            phone,
            first_name: fields::text_patch(&self.first_name, "firstName", TextKind::Name, limits::NAME)?,
            last_name: fields::text_patch(&self.last_name, "lastName", TextKind::Name, limits::NAME)?,
            company_name: fields::text_patch(&self.company_name, "companyName", TextKind::Plain, limits::COMPANY_NAME)?,
            company_registration_number: fields::text_patch(
                &self.company_registration_number,
                "companyRegistrationNumber",
                TextKind::Plain,
                limits::REGISTRATION_NUMBER,
            )?,
            tax_identification_number: fields::text_patch(
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
            ip,
            new_cu_ref_no: None,
        })
    }
}

/// Group names, each given its slug once; a name without a letter or digit is refused.
fn groups(names: Vec<String>) -> InputResult<Vec<Group>> {
    let mut groups: Vec<Group> = Vec::with_capacity(names.len());
    for name in names {
        let name = fields::text(Some(&name), "groups", limits::GROUP_NAME)?;
        let Some((name, slug)) = name.and_then(|n| slugify(&n).map(|s| (n, s))) else {
            return Err(fields::invalid("groups", "a group name needs a letter or a digit"));
        };
        if !groups.iter().any(|g| g.slug == slug) {
            groups.push(Group { name, slug });
        }
    }
    Ok(groups)
}

impl SubscriptionBody {
    fn into_write(self) -> InputResult<SubscriptionWrite> {
        const MAX: usize = limits::SUBSCRIPTION_FIELD;
        let field = |v: Option<String>, name: &'static str| fields::text(v.as_deref(), name, MAX);
        let external_id = field(self.external_id, "subscriptions.externalId")?;
        let external_id = fields::required(external_id, "subscriptions.externalId")?;
        let status = self
            .status
            .map(|s| {
                SubscriptionStatus::parse(s.trim()).ok_or_else(|| {
                    fields::invalid("subscriptions.status", "status must be active, paused, cancelled or expired")
                })
            })
            .transpose()?;
        let valid_until = self
            .valid_until
            .map(|v| v.map(|t| fields::time(&t, "subscriptions.validUntil", "2030-01-31T12:00:00Z")).transpose())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(body: Value) -> InputResult<ContactWrite> {
        ContactBody::from_json(body)?.into_write(Region::CZ)
    }

    #[test]
    fn absent_null_and_empty_fields_differ() {
        let w = write(json!({"email": "a@example.com", "firstName": null, "lastName": " novák ", "companyName": ""}))
            .unwrap();
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
        let err = write(json!({"email": "a@example.com", "groups": ["!!"]})).unwrap_err();
        assert!(matches!(err, fields::InputError::Field { field: "groups", problem: fields::Problem::Invalid(_) }));
    }

    #[test]
    fn peer_aliases_are_accepted() {
        let w =
            write(json!({"phoneNumber": "777 123 456", "alternatePhoneNumbers": ["+421 905 123 456"], "tags": ["a"]}))
                .unwrap();
        assert_eq!(w.phone.unwrap().as_str(), "+420 777123456");
        assert_eq!(w.alternate_phones.unwrap()[0].as_str(), "+421 905123456");
        assert_eq!(w.groups.unwrap()[0].slug, "a");
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
