//! The rules of create-or-update, applied to a batch's `State` in memory: which contact
//! an item finds, whether it is refused, and what it changes.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::types::Json;

use super::super::OwnFields;

use crate::normalize::{new_address_id, CuRefNo, EMAIL_RULES_VERSION};
use crate::store::{
    merge_patch, profile_limits, Address, ContactRefusal, ContactWrite, Patch, ProfileLimit, StoreError, StoreResult,
    SubscriptionStatus,
};

/// An alternate address or number: what it is looked up by (an address's canonical
/// form) and how the profile shows it.
#[derive(Clone)]
pub(super) struct Alternate {
    pub(super) value: String,
    pub(super) shown: String,
}

/// How a contact was found: an alternate address or number finds its contact but does
/// not replace the contact's own.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum FoundBy {
    Own,
    AlternateEmail,
    AlternatePhone,
}

/// A customer as the batch sees it: as prefetched, or created by an earlier item, with
/// every accepted item applied. Its lists and what the items changed start empty.
#[derive(Default)]
pub(super) struct Customer {
    /// The row id; `None` until a new customer is inserted.
    pub(super) id: Option<i64>,
    /// Where it sorts among contacts sharing an alternate or a phone: existing ones by
    /// id, then the new ones in the order they were created (as their ids will be).
    pub(super) rank: i64,
    pub(super) new: bool,
    /// An accepted item wrote it.
    pub(super) changed: bool,
    pub(super) cu_ref_no: String,
    pub(super) email: Option<String>,
    pub(super) email_canonical: Option<String>,
    pub(super) email_rules_version: i32,
    pub(super) phone: Option<String>,
    pub(super) first_name: Option<String>,
    pub(super) last_name: Option<String>,
    pub(super) company_name: Option<String>,
    pub(super) company_registration_number: Option<String>,
    pub(super) tax_identification_number: Option<String>,
    pub(super) premium: bool,
    pub(super) ban: bool,
    pub(super) meta: Map<String, Value>,
    pub(super) registration_ip: Option<String>,
    pub(super) last_ip: Option<String>,
    pub(super) partner_customer_id: Option<String>,
    pub(super) addresses: Vec<Address>,
    /// An item gave its addresses.
    pub(super) addresses_changed: bool,
    pub(super) alternate_emails: Vec<Alternate>,
    pub(super) alternate_phones: Vec<Alternate>,
    /// Indexes into `State::subscriptions`.
    pub(super) subscriptions: Vec<usize>,
    /// The final memberships, when an item replaced them.
    pub(super) groups: Option<Vec<String>>,
    /// The ids of the groups it is stored as a member of (read when an item names groups).
    pub(super) stored_groups: Vec<i64>,
    /// An item wrote its alternate addresses / numbers.
    pub(super) emails_changed: bool,
    pub(super) phones_changed: bool,
    /// The final referrer (an index into `State::customers`), when an item set it.
    pub(super) referrer: Option<Option<usize>>,
    pub(super) end_sessions: bool,
    /// An item wrote one of its subscriptions.
    pub(super) subscriptions_changed: bool,
    /// Its own fields and last IP as prefetched (`None` for a new customer).
    pub(super) stored: Option<(OwnFields, Option<String>)>,
}

impl Customer {
    /// Its own fields as they stand.
    fn own_fields(&self) -> OwnFields {
        OwnFields {
            email: self.email.clone(),
            email_canonical: self.email_canonical.clone(),
            email_rules_version: self.email_rules_version,
            phone: self.phone.clone(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            company_name: self.company_name.clone(),
            company_registration_number: self.company_registration_number.clone(),
            tax_identification_number: self.tax_identification_number.clone(),
            premium: self.premium,
            ban: self.ban,
            meta: Json(self.meta.clone()),
            partner_customer_id: self.partner_customer_id.clone(),
            addresses: Json(self.addresses.clone()),
        }
    }

    /// Whether the items left its own fields as stored.
    pub(super) fn own_fields_kept(&self) -> bool {
        self.stored.as_ref().is_some_and(|(own, last_ip)| *last_ip == self.last_ip && *own == self.own_fields())
    }
}

/// Whose a subscription is: a customer of the batch, or another one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    Batch(usize),
    Other,
}

pub(super) struct Subscription {
    pub(super) owner: Owner,
    pub(super) external_id: String,
    pub(super) product_slug: String,
    pub(super) product_code: String,
    pub(super) order_number: String,
    pub(super) order_hash: String,
    pub(super) auto_renew: bool,
    pub(super) status: String,
    pub(super) valid_until: Option<DateTime<Utc>>,
    pub(super) changed: bool,
}

/// Everything the batch may touch, as of the items decided so far.
#[derive(Default)]
pub(super) struct State {
    pub(super) customers: Vec<Customer>,
    pub(super) by_cu_ref_no: HashMap<String, usize>,
    pub(super) by_partner_id: HashMap<String, usize>,
    pub(super) by_email: HashMap<String, usize>,
    pub(super) by_alternate_email: HashMap<String, Vec<usize>>,
    pub(super) by_phone: HashMap<String, Vec<usize>>,
    pub(super) by_alternate_phone: HashMap<String, Vec<usize>>,
    pub(super) subscriptions: Vec<Subscription>,
    pub(super) by_external_id: HashMap<String, usize>,
    /// Group slugs in the order first named, with the first name given.
    pub(super) groups: Vec<(String, String)>,
    pub(super) group_slugs: HashSet<String>,
    /// The stored groups the items name or their customers belong to, by slug: id and
    /// display name.
    pub(super) group_ids: HashMap<String, (i64, String)>,
    pub(super) created: usize,
}

/// The first-ranked customer of `list` that `accept` takes.
fn first_ranked(
    customers: &[Customer],
    list: Option<&Vec<usize>>,
    accept: impl Fn(&Customer) -> bool,
) -> Option<usize> {
    list?.iter().copied().filter(|&i| accept(&customers[i])).min_by_key(|&i| customers[i].rank)
}

fn remove(index: &mut HashMap<String, Vec<usize>>, key: &str, i: usize) {
    if let Some(list) = index.get_mut(key) {
        list.retain(|&j| j != i);
    }
}

/// A text field's value, where a write gives one.
fn given(field: &Patch<String>) -> Option<String> {
    field.as_ref().and_then(|v| v.clone())
}

/// Sets a text field the write gives (a cleared one to `None`).
fn set(target: &mut Option<String>, field: &Patch<String>) {
    if let Some(value) = field {
        target.clone_from(value);
    }
}

fn running(status: &str, until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    status == SubscriptionStatus::Active.as_str() && until.is_none_or(|t| t > now)
}

impl State {
    pub(super) fn add(&mut self, c: Customer) -> usize {
        let i = self.customers.len();
        self.by_cu_ref_no.insert(c.cu_ref_no.clone(), i);
        if let Some(p) = &c.partner_customer_id {
            self.by_partner_id.insert(p.clone(), i);
        }
        if let Some(e) = &c.email_canonical {
            self.by_email.insert(e.clone(), i);
        }
        if let Some(p) = &c.phone {
            self.by_phone.entry(p.clone()).or_default().push(i);
        }
        self.customers.push(c);
        i
    }

    /// The contact with the write's partnerCustomerId, else with its e-mail (own, then
    /// alternate), else with its phone (own, then alternate; only one without an e-mail
    /// when the write gives an e-mail).
    fn find(&self, w: &ContactWrite) -> Option<(usize, FoundBy)> {
        if let Some(Some(partner_id)) = &w.partner_customer_id {
            if let Some(&i) = self.by_partner_id.get(partner_id) {
                return Some((i, FoundBy::Own));
            }
        }
        if let Some(email) = &w.email {
            if let Some(&i) = self.by_email.get(email.canonical()) {
                return Some((i, FoundBy::Own));
            }
            if let Some(i) = first_ranked(&self.customers, self.by_alternate_email.get(email.canonical()), |_| true) {
                return Some((i, FoundBy::AlternateEmail));
            }
        }
        if let Some(phone) = &w.phone {
            let any = w.email.is_none();
            let accept = |c: &Customer| any || c.email_canonical.is_none();
            if let Some(i) = first_ranked(&self.customers, self.by_phone.get(phone.as_str()), accept) {
                return Some((i, FoundBy::Own));
            }
            if let Some(i) = first_ranked(&self.customers, self.by_alternate_phone.get(phone.as_str()), accept) {
                return Some((i, FoundBy::AlternatePhone));
            }
        }
        None
    }

    /// Why the write may not be applied to `found` (`None`: a new contact), if it may not.
    fn refusal(&self, w: &ContactWrite, found: Option<usize>, now: DateTime<Utc>) -> Option<ContactRefusal> {
        if found.is_none() && w.email.is_none() && w.phone.is_none() {
            return Some(ContactRefusal::NoContactPoint);
        }
        if let (Some(email), Some(me)) = (&w.email, found) {
            if self.by_email.get(email.canonical()).is_some_and(|&o| o != me) {
                return Some(ContactRefusal::EmailTaken);
            }
        }
        if let Some(Some(partner_id)) = &w.partner_customer_id {
            if self.by_partner_id.get(partner_id).is_some_and(|&o| Some(o) != found) {
                return Some(ContactRefusal::PartnerIdTaken);
            }
        }
        let stored = found.map_or(&[][..], |me| &self.customers[me].addresses[..]);
        for id in w.addresses.iter().flatten().filter_map(|a| a.address_id.as_ref()) {
            if !stored.iter().any(|s| s.address_id.as_ref() == Some(id)) {
                return Some(ContactRefusal::AddressNotFound(id.clone()));
            }
        }
        if let (Some(phone), Some(me), None) = (&w.phone, found, &w.email) {
            if self.customers[me].email_canonical.is_none() {
                let others = self.by_phone.get(phone.as_str()).into_iter().flatten();
                if others.copied().any(|o| o != me && self.customers[o].email_canonical.is_none()) {
                    return Some(ContactRefusal::PhoneTaken);
                }
            }
        }
        for s in &w.subscriptions {
            if let Some(&k) = self.by_external_id.get(&s.external_id) {
                if found.is_none_or(|me| self.subscriptions[k].owner != Owner::Batch(me)) {
                    return Some(ContactRefusal::SubscriptionTaken(s.external_id.clone()));
                }
            }
        }
        self.over_limit(w, found, now).map(ContactRefusal::OverLimit)
    }

    /// The limit of `profile_limits` the contact would pass once the write is applied.
    fn over_limit(&self, w: &ContactWrite, found: Option<usize>, now: DateTime<Utc>) -> Option<ProfileLimit> {
        let me = found.map(|i| &self.customers[i]);
        if let Some(patch) = &w.meta {
            let mut merged = me.map(|c| c.meta.clone()).unwrap_or_default();
            merge_patch(&mut merged, patch);
            if serde_json::to_vec(&merged).map_or(true, |b| b.len() > profile_limits::META_BYTES) {
                return Some(ProfileLimit::Meta);
            }
        }
        if w.alternate_emails.is_some() || w.alternate_phones.is_some() {
            // How many of a kind the contact keeps: those stored, unless replaced, and
            // those given, each once.
            let count = |given: Option<Vec<&str>>, stored: Option<&Vec<Alternate>>| {
                let stored = stored.into_iter().flatten().map(|a| a.value.as_str());
                match given {
                    None => stored.count(),
                    Some(given) if w.replace_alternates => given.into_iter().collect::<HashSet<_>>().len(),
                    Some(given) => stored.chain(given).collect::<HashSet<_>>().len(),
                }
            };
            let emails = count(
                w.alternate_emails.as_ref().map(|l| l.iter().map(|e| e.canonical()).collect()),
                me.map(|c| &c.alternate_emails),
            );
            let phones = count(
                w.alternate_phones.as_ref().map(|l| l.iter().map(|p| p.as_str()).collect()),
                me.map(|c| &c.alternate_phones),
            );
            if emails + phones > profile_limits::CONTACT_POINTS {
                return Some(ProfileLimit::ContactPoints);
            }
        }
        if !w.subscriptions.is_empty() {
            let stored: Vec<&Subscription> =
                me.map(|c| c.subscriptions.iter().map(|&k| &self.subscriptions[k]).collect()).unwrap_or_default();
            let kept = stored
                .iter()
                .filter(|x| !w.subscriptions.iter().any(|s| s.external_id == x.external_id))
                .filter(|x| running(&x.status, x.valid_until, now))
                .count();
            let written = w
                .subscriptions
                .iter()
                .filter(|s| {
                    let before = stored.iter().find(|x| x.external_id == s.external_id);
                    let status =
                        s.status.map(|st| st.as_str()).or(before.map(|b| b.status.as_str())).unwrap_or("active");
                    let until = match s.valid_until {
                        Some(until) => until,
                        None => before.and_then(|b| b.valid_until),
                    };
                    running(status, until, now)
                })
                .count();
            if kept + written > profile_limits::RUNNING_SUBSCRIPTIONS {
                return Some(ProfileLimit::RunningSubscriptions);
            }
        }
        None
    }

    /// Decides one write and applies it: the customer it wrote and whether it created it.
    pub(super) fn decide(&mut self, w: &ContactWrite, now: DateTime<Utc>) -> Result<(usize, bool), ContactRefusal> {
        let found = match &w.cu_ref_no {
            Some(cu) => match self.by_cu_ref_no.get(cu.as_str()) {
                Some(&i) => Some((i, FoundBy::Own)),
                None => return Err(ContactRefusal::NotFound),
            },
            None => self.find(w),
        };
        if let Some(refusal) = self.refusal(w, found.map(|f| f.0), now) {
            return Err(refusal);
        }
        let referrer = match &w.referral {
            Some(Some(cu)) => match self.by_cu_ref_no.get(cu.as_str()) {
                Some(&i) => Some(Some(i)),
                None => return Err(ContactRefusal::ReferrerNotFound),
            },
            Some(None) => Some(None),
            None => None,
        };
        let (i, new) = match found {
            Some((i, by)) => {
                self.update(i, w, by);
                (i, false)
            }
            None => (self.insert(w), true),
        };
        let c = &mut self.customers[i];
        c.changed = true;
        if referrer.is_some() {
            c.referrer = referrer;
        }
        if w.ban == Some(true) && !c.new {
            c.end_sessions = true;
        }
        if !w.subscriptions.is_empty() {
            c.subscriptions_changed = true;
        }
        if let Some(list) = &w.groups {
            c.groups = Some(list.iter().map(|g| g.slug.clone()).collect());
            for g in list {
                if self.group_slugs.insert(g.slug.clone()) {
                    self.groups.push((g.name.clone(), g.slug.clone()));
                }
            }
        }
        if let Some(list) = &w.alternate_emails {
            let given = list
                .iter()
                .map(|e| Alternate { value: e.canonical().to_owned(), shown: e.normalized().to_owned() })
                .collect();
            self.write_alternates(i, given, true, w.replace_alternates);
        }
        if let Some(list) = &w.alternate_phones {
            let given =
                list.iter().map(|p| Alternate { value: p.as_str().to_owned(), shown: p.as_str().to_owned() }).collect();
            self.write_alternates(i, given, false, w.replace_alternates);
        }
        if let Some(list) = &w.addresses {
            let c = &mut self.customers[i];
            let stored = std::mem::take(&mut c.addresses);
            c.addresses = list.iter().map(|a| keep_address_id(a, &stored)).collect();
            c.addresses_changed = true;
        }
        for s in &w.subscriptions {
            let k = match self.by_external_id.get(&s.external_id) {
                Some(&k) => {
                    let sub = &mut self.subscriptions[k];
                    let keep = |v: &Option<String>, old: &mut String| {
                        if let Some(v) = v {
                            old.clone_from(v);
                        }
                    };
                    keep(&s.product_slug, &mut sub.product_slug);
                    keep(&s.product_code, &mut sub.product_code);
                    keep(&s.order_number, &mut sub.order_number);
                    keep(&s.order_hash, &mut sub.order_hash);
                    sub.auto_renew = s.auto_renew.unwrap_or(sub.auto_renew);
                    if let Some(status) = s.status {
                        sub.status = status.as_str().to_owned();
                    }
                    if let Some(until) = s.valid_until {
                        sub.valid_until = until;
                    }
                    k
                }
                None => {
                    let k = self.subscriptions.len();
                    self.subscriptions.push(Subscription {
                        owner: Owner::Batch(i),
                        external_id: s.external_id.clone(),
                        product_slug: s.product_slug.clone().unwrap_or_default(),
                        product_code: s.product_code.clone().unwrap_or_default(),
                        order_number: s.order_number.clone().unwrap_or_default(),
                        order_hash: s.order_hash.clone().unwrap_or_default(),
                        auto_renew: s.auto_renew.unwrap_or(false),
                        status: s.status.unwrap_or(SubscriptionStatus::Active).as_str().to_owned(),
                        valid_until: s.valid_until.flatten(),
                        changed: false,
                    });
                    self.by_external_id.insert(s.external_id.clone(), k);
                    self.customers[i].subscriptions.push(k);
                    k
                }
            };
            self.subscriptions[k].changed = true;
        }
        Ok((i, new))
    }

    /// Adds `given` to customer `i`'s alternate addresses (`emails`) or numbers, or
    /// replaces them with it; each value once.
    fn write_alternates(&mut self, i: usize, given: Vec<Alternate>, emails: bool, replace: bool) {
        let index = if emails { &mut self.by_alternate_email } else { &mut self.by_alternate_phone };
        let c = &mut self.customers[i];
        let list = if emails { &mut c.alternate_emails } else { &mut c.alternate_phones };
        if replace {
            for a in list.drain(..) {
                remove(index, &a.value, i);
            }
        }
        for a in given {
            match list.iter_mut().find(|v| v.value == a.value) {
                // Given again: shown as given this time.
                Some(v) => v.shown = a.shown,
                None => {
                    index.entry(a.value.clone()).or_default().push(i);
                    list.push(a);
                }
            }
        }
        if emails {
            c.emails_changed = true;
        } else {
            c.phones_changed = true;
        }
    }

    /// Overwrites the given fields of customer `i` and merges its meta.
    fn update(&mut self, i: usize, w: &ContactWrite, by: FoundBy) {
        let State { customers, by_email, by_phone, by_partner_id, .. } = self;
        let c = &mut customers[i];
        if let Some(partner_id) = &w.partner_customer_id {
            if let Some(old) = c.partner_customer_id.take() {
                if by_partner_id.get(&old) == Some(&i) {
                    by_partner_id.remove(&old);
                }
            }
            c.partner_customer_id.clone_from(partner_id);
            if let Some(p) = partner_id {
                by_partner_id.insert(p.clone(), i);
            }
        }
        if let Some(email) = w.email.as_ref().filter(|_| by != FoundBy::AlternateEmail) {
            if let Some(old) = c.email_canonical.take() {
                if by_email.get(&old) == Some(&i) {
                    by_email.remove(&old);
                }
            }
            c.email = Some(email.normalized().to_owned());
            c.email_canonical = Some(email.canonical().to_owned());
            c.email_rules_version = EMAIL_RULES_VERSION as i32;
            by_email.insert(email.canonical().to_owned(), i);
        }
        if let Some(phone) = w.phone.as_ref().filter(|_| by != FoundBy::AlternatePhone) {
            if let Some(old) = c.phone.take() {
                remove(by_phone, &old, i);
            }
            c.phone = Some(phone.as_str().to_owned());
            by_phone.entry(phone.as_str().to_owned()).or_default().push(i);
        }
        set(&mut c.first_name, &w.first_name);
        set(&mut c.last_name, &w.last_name);
        set(&mut c.company_name, &w.company_name);
        set(&mut c.company_registration_number, &w.company_registration_number);
        set(&mut c.tax_identification_number, &w.tax_identification_number);
        c.premium = w.premium.unwrap_or(c.premium);
        c.ban = w.ban.unwrap_or(c.ban);
        if let Some(ip) = &w.ip {
            c.last_ip = Some(ip.as_str().to_owned());
        }
        if let Some(patch) = &w.meta {
            merge_patch(&mut c.meta, patch);
        }
    }

    /// A new customer from the write.
    fn insert(&mut self, w: &ContactWrite) -> usize {
        let mut meta = Map::new();
        if let Some(patch) = &w.meta {
            merge_patch(&mut meta, patch);
        }
        let ip = w.ip.as_ref().map(|ip| ip.as_str().to_owned());
        self.created += 1;
        self.add(Customer {
            id: None,
            rank: i64::MAX / 2 + self.created as i64,
            new: true,
            changed: true,
            cu_ref_no: w.new_cu_ref_no.clone().unwrap_or_else(CuRefNo::generate).as_str().to_owned(),
            email: w.email.as_ref().map(|e| e.normalized().to_owned()),
            email_canonical: w.email.as_ref().map(|e| e.canonical().to_owned()),
            email_rules_version: EMAIL_RULES_VERSION as i32,
            phone: w.phone.as_ref().map(|p| p.as_str().to_owned()),
            first_name: given(&w.first_name),
            last_name: given(&w.last_name),
            company_name: given(&w.company_name),
            company_registration_number: given(&w.company_registration_number),
            tax_identification_number: given(&w.tax_identification_number),
            premium: w.premium.unwrap_or(false),
            ban: w.ban.unwrap_or(false),
            meta,
            partner_customer_id: given(&w.partner_customer_id),
            registration_ip: ip.clone(),
            last_ip: ip,
            ..Customer::default()
        })
    }

    pub(super) fn id(&self, i: usize) -> StoreResult<i64> {
        self.customers[i].id.ok_or_else(|| StoreError::Other("a new customer was not inserted".into()))
    }
}

/// An address as given, with the id of the stored address it names (by `addressId`, else
/// by `partnerAddressId`), or a new one.
fn keep_address_id(given: &Address, stored: &[Address]) -> Address {
    let same = |s: &&Address| match (&given.address_id, &given.partner_address_id) {
        (Some(id), _) => s.address_id.as_ref() == Some(id),
        (None, Some(partner_id)) => s.partner_address_id.as_ref() == Some(partner_id),
        (None, None) => false,
    };
    let id = stored.iter().find(same).and_then(|s| s.address_id.clone()).unwrap_or_else(new_address_id);
    Address { address_id: Some(id), ..given.clone() }
}
