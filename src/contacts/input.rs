//! The contact item as clients write it: the body of create-or-update and one item of an
//! import (over HTTP or from a file), read into a `ContactWrite`.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::fields::{self, limits, InputResult};
use crate::normalize::{slugify, Region, TextKind};
use crate::store::{Address, ContactWrite, Group, Patch, SubscriptionStatus, SubscriptionWrite};

/// Absent stays `None`; `null` becomes `Some(None)`: the field is cleared.
fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /api/v1/customer/create-or-update`, and one item of an import. Names follow
/// API.md; the peer API's names (`phoneNumber`, `alternatePhoneNumbers`, `tags`,
/// `externalId`, …) are accepted as aliases, and its single `secondaryEmail` and
/// `secondaryPhoneNumber` join the alternates.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactBody {
    cu_ref_no: Option<String>,
    #[serde(default, deserialize_with = "given", alias = "externalId")]
    partner_customer_id: Patch<String>,
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
    secondary_email: Option<String>,
    secondary_phone_number: Option<String>,
    /// The alternates given replace the stored ones of their kind instead of adding.
    over_write_assets: Option<bool>,
    addresses: Option<Vec<AddressBody>>,
    #[serde(default, deserialize_with = "given")]
    referral_cu_ref_no: Patch<String>,
    subscriptions: Option<Vec<SubscriptionBody>>,
    customer_real_ip: Option<String>,
}

/// A postal address as given (the peer's `BikPlatformAddress`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddressBody {
    address_id: Option<String>,
    partner_address_id: Option<String>,
    address1: Option<String>,
    address2: Option<String>,
    city: Option<String>,
    state: Option<String>,
    state_code: Option<String>,
    zip: Option<String>,
    country: Option<String>,
    country_code: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    timezone: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone_number: Option<String>,
    email: Option<String>,
    is_default: Option<bool>,
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
        let partner_customer_id =
            fields::text_patch(&self.partner_customer_id, "partnerCustomerId", TextKind::Plain, limits::EXTERNAL_ID)?;
        let names_partner = matches!(partner_customer_id, Some(Some(_)));
        if cu_ref_no.is_none() && email.is_none() && phone.is_none() && !names_partner {
            return Err(fields::invalid("email", "cuRefNo, partnerCustomerId, email or phone is required"));
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
        let alternate_emails =
            with_one(alternate_emails, self.secondary_email.map(|e| fields::email(&e, "secondaryEmail")).transpose()?);
        let alternate_phones = fields::at_most(self.alternate_phones, "alternatePhones", limits::ALTERNATES)?
            .map(|l| l.iter().map(|p| fields::phone(p, region, "alternatePhones")).collect::<InputResult<Vec<_>>>())
            .transpose()?;
        let alternate_phones = with_one(
            alternate_phones,
            self.secondary_phone_number.map(|p| fields::phone(&p, region, "secondaryPhoneNumber")).transpose()?,
        );
        let addresses = fields::at_most(self.addresses, "addresses", limits::ADDRESSES)?
            .map(|l| addresses(l, region))
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
            partner_customer_id,
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
            replace_alternates: self.over_write_assets.unwrap_or(false),
            addresses,
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

/// `list` with `one` added, where one is given.
fn with_one<T>(list: Option<Vec<T>>, one: Option<T>) -> Option<Vec<T>> {
    match (list, one) {
        (list, None) => list,
        (list, Some(one)) => {
            let mut list = list.unwrap_or_default();
            list.push(one);
            Some(list)
        }
    }
}

/// A contact's addresses: each valid, at most one the default, no id given twice.
fn addresses(list: Vec<AddressBody>, region: Region) -> InputResult<Vec<Address>> {
    let list = list.into_iter().map(|a| a.into_address(region)).collect::<InputResult<Vec<_>>>()?;
    if list.iter().filter(|a| a.is_default).count() > 1 {
        return Err(fields::invalid("addresses.isDefault", "at most one address may be the default"));
    }
    for (i, a) in list.iter().enumerate() {
        let earlier = &list[..i];
        if a.address_id.is_some() && earlier.iter().any(|b| b.address_id == a.address_id) {
            return Err(fields::invalid("addresses.addressId", "an addressId is given twice"));
        }
        if a.partner_address_id.is_some() && earlier.iter().any(|b| b.partner_address_id == a.partner_address_id) {
            return Err(fields::invalid("addresses.partnerAddressId", "a partnerAddressId is given twice"));
        }
    }
    Ok(list)
}

impl AddressBody {
    fn into_address(self, region: Region) -> InputResult<Address> {
        const MAX: usize = limits::ADDRESS_FIELD;
        let text = |v: Option<String>, name: &'static str| fields::text(v.as_deref(), name, MAX);
        let name =
            |v: Option<String>, field: &'static str| fields::text_as(v.as_deref(), field, TextKind::Name, limits::NAME);
        // Checked against the contact's addresses when the write is decided.
        let address_id = text(self.address_id, "addresses.addressId")?;
        let address1 = fields::required(text(self.address1, "addresses.address1")?, "addresses.address1")?;
        let country_code = text(self.country_code, "addresses.countryCode")?
            .map(|code| {
                celes::Country::from_alpha2(&code)
                    .ok()
                    .filter(|_| code.len() == 2)
                    .map(|c| c.alpha2.to_owned())
                    .ok_or_else(|| fields::invalid("addresses.countryCode", "not an ISO 3166-1 alpha-2 country code"))
            })
            .transpose()?;
        let coordinate = |v: Option<f64>, field: &'static str, max: f64| match v {
            Some(x) if !(-max..=max).contains(&x) => {
                Err(fields::invalid(field, format!("must be a number from -{max} to {max}")))
            }
            other => Ok(other),
        };
        let timezone = text(self.timezone, "addresses.timezone")?
            .map(|tz| {
                tz.parse::<chrono_tz::Tz>()
                    .map(|tz| tz.name().to_owned())
                    .map_err(|_| fields::invalid("addresses.timezone", "not an IANA time zone name"))
            })
            .transpose()?;
        Ok(Address {
            address_id,
            partner_address_id: text(self.partner_address_id, "addresses.partnerAddressId")?,
            address1,
            address2: text(self.address2, "addresses.address2")?,
            city: text(self.city, "addresses.city")?,
            state: text(self.state, "addresses.state")?,
            state_code: text(self.state_code, "addresses.stateCode")?,
            zip: text(self.zip, "addresses.zip")?,
            country: text(self.country, "addresses.country")?,
            country_code,
            latitude: coordinate(self.latitude, "addresses.latitude", 90.0)?,
            longitude: coordinate(self.longitude, "addresses.longitude", 180.0)?,
            timezone,
            first_name: name(self.first_name, "addresses.firstName")?,
            last_name: name(self.last_name, "addresses.lastName")?,
            phone_number: self
                .phone_number
                .map(|p| fields::phone(&p, region, "addresses.phoneNumber").map(|p| p.as_str().to_owned()))
                .transpose()?,
            email: self
                .email
                .map(|e| fields::email(&e, "addresses.email").map(|e| e.normalized().to_owned()))
                .transpose()?,
            is_default: self.is_default.unwrap_or(false),
        })
    }
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
