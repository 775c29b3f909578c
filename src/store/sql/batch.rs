//! Create-or-update of a whole batch of contacts in a constant number of statements: one
//! prefetch of every customer an item could touch (locked), the items decided one by one
//! in memory, in order, each seeing the ones before it, and one write of the outcome.
//! The single create-or-update is a batch of one, so every rule lives here once.
//!
//! Lists go to the database as one JSON parameter each, so the statements are static
//! text and no batch size reaches a parameter limit.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use sqlx::types::Json;

use super::{dialect, refresh_profile_lists, Tx};
use crate::normalize::{CuRefNo, EMAIL_RULES_VERSION};
use crate::store::{
    merge_patch, profile_limits, ContactRefusal, ContactWrite, Patch, ProfileLimit, SpaceId, StoreError, StoreResult,
    SubscriptionStatus,
};

/// `$n` in a dialect template (`$?`) becomes the placeholder `n`.
fn at(template: &str, n: usize) -> String {
    template.replace("$?", &format!("${n}"))
}

/// The rows of the JSON array of objects bound to `$n` as a derived table `x`, with the
/// given `(field, type)` columns and `x.ord`, the position in the array.
fn rows(n: usize, columns: &[(&str, &str)]) -> String {
    let fields: Vec<String> = columns
        .iter()
        .map(|(name, ty)| format!("{} as {name}", dialect::JSON_FIELD.replace("{name}", name).replace("{type}", ty)))
        .collect();
    format!("(select {}, {} as ord from {}) as x", fields.join(", "), dialect::JSON_ORD, at(dialect::JSON_ROWS, n))
}

/// The customer columns a batch decides on and writes back.
const CUSTOMER_COLUMNS: &str = "c.id, c.cu_ref_no, c.email, c.email_canonical, c.email_rules_version, c.phone, \
     c.first_name, c.last_name, c.company_name, c.company_registration_number, c.tax_identification_number, \
     c.premium, c.ban, c.meta, c.last_ip";

/// Every live customer the batch could touch, locked: by cuRefNo (`$2`: the items' and
/// their referrals'), by canonical e-mail (`$3`), by phone (`$4`), own or alternate. Each
/// lookup is driven from its list (`cross join` keeps that order on SQLite).
static PREFETCH_CUSTOMERS: LazyLock<String> = LazyLock::new(|| {
    let list = |n| format!("({}) k cross join", at(dialect::TEXT_LIST, n));
    let points = dialect::CONTACT_POINTS_BY_VALUE;
    format!(
        "select {CUSTOMER_COLUMNS} from customers c where c.erased_at is null and c.id in (\
         select o.id from {} customers o where o.space_id = $1 and o.cu_ref_no = k.value \
         union select o.id from {} customers o where o.space_id = $1 and o.email_canonical = k.value \
         union select p.customer_id from {} {points} where p.space_id = $1 and p.kind = 'email' and p.value = k.value \
         union select o.id from {} customers o where o.space_id = $1 and o.phone = k.value \
         union select p.customer_id from {} {points} where p.space_id = $1 and p.kind = 'phone' and p.value = k.value\
         ) order by c.id{}",
        list(2),
        list(3),
        list(3),
        list(4),
        list(4),
        dialect::LOCK_ROW
    )
});

/// The alternate addresses and numbers of the customers `$2`.
static PREFETCH_POINTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select p.customer_id, p.kind, p.value from ({}) k cross join contact_points p \
         where p.space_id = $1 and p.customer_id = k.value",
        at(dialect::ID_LIST_AT, 2)
    )
});

/// The subscriptions of the customers `$2`, and those with the external ids `$3`.
static PREFETCH_SUBSCRIPTIONS: LazyLock<String> = LazyLock::new(|| {
    let columns = "s.id, s.customer_id, s.external_id, s.product_slug, s.product_code, s.order_number, \
         s.order_hash, s.auto_renew, s.status, s.valid_until";
    format!(
        "select {columns} from ({}) k cross join subscriptions s where s.space_id = $1 and s.customer_id = k.value \
         union select {columns} from ({}) k cross join subscriptions s \
         where s.space_id = $1 and s.external_id = k.value order by 1",
        at(dialect::ID_LIST_AT, 2),
        at(dialect::TEXT_LIST, 3)
    )
});

/// The new customers, in the order they were created; `$3` is the time.
static INSERT_CUSTOMERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "insert into customers (space_id, cu_ref_no, email, email_canonical, email_rules_version, phone, \
         first_name, last_name, company_name, company_registration_number, tax_identification_number, premium, ban, \
         meta, registration_ip, last_ip, created_at, updated_at) \
         select $1, x.cu_ref_no, x.email, x.email_canonical, x.email_rules_version, x.phone, x.first_name, \
         x.last_name, x.company_name, x.company_registration_number, x.tax_identification_number, x.premium, x.ban, \
         {}, x.registration_ip, x.last_ip, $3, $3 from {} order by x.ord returning id, cu_ref_no",
        dialect::JSON_META.replace("{meta}", "x.meta"),
        rows(2, CUSTOMER_FIELDS)
    )
});

/// The changed existing customers, with their final values; `$3` is the time.
static UPDATE_CUSTOMERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "update customers set email = x.email, email_canonical = x.email_canonical, \
         email_rules_version = x.email_rules_version, phone = x.phone, first_name = x.first_name, \
         last_name = x.last_name, company_name = x.company_name, \
         company_registration_number = x.company_registration_number, \
         tax_identification_number = x.tax_identification_number, premium = x.premium, ban = x.ban, meta = {}, \
         last_ip = x.last_ip, updated_at = $3 from {} where customers.id = x.id",
        dialect::JSON_META.replace("{meta}", "x.meta"),
        rows(2, &[CUSTOMER_FIELDS, &[("id", "bigint")]].concat())
    )
});

/// The fields of a customer row as `CustomerRow::json` gives them.
const CUSTOMER_FIELDS: &[(&str, &str)] = &[
    ("cu_ref_no", "text"),
    ("email", "text"),
    ("email_canonical", "text"),
    ("email_rules_version", "integer"),
    ("phone", "text"),
    ("first_name", "text"),
    ("last_name", "text"),
    ("company_name", "text"),
    ("company_registration_number", "text"),
    ("tax_identification_number", "text"),
    ("premium", "boolean"),
    ("ban", "boolean"),
    ("meta", "text"),
    ("registration_ip", "text"),
    ("last_ip", "text"),
];

static SET_REFERRERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "update customers set referrer_id = x.referrer_id from {} where customers.id = x.id",
        rows(2, &[("id", "bigint"), ("referrer_id", "bigint")])
    )
});

/// Groups by slug; the first name given for a slug stays its display name.
static INSERT_GROUPS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "insert into customer_groups (space_id, name, slug) select $1, x.name, x.slug from {} where true \
         order by x.ord on conflict (space_id, slug) do nothing",
        rows(2, &[("name", "text"), ("slug", "text")])
    )
});

static DELETE_MEMBERSHIPS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "delete from customer_group_members where space_id = $1 and customer_id in ({})",
        at(dialect::ID_LIST_AT, 2)
    )
});

static INSERT_MEMBERSHIPS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "insert into customer_group_members (space_id, customer_id, group_id) select $1, x.id, g.id from {} \
         cross join customer_groups g where g.space_id = $1 and g.slug = x.slug on conflict do nothing",
        rows(2, &[("id", "bigint"), ("slug", "text")])
    )
});

/// The contact points of one kind (`$3`) of the customers `$2`.
static DELETE_POINTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "delete from contact_points where space_id = $1 and kind = $3 and customer_id in ({})",
        at(dialect::ID_LIST_AT, 2)
    )
});

static INSERT_POINTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "insert into contact_points (space_id, customer_id, kind, value) select $1, x.id, x.kind, x.value from {} \
         where true on conflict do nothing",
        rows(2, &[("id", "bigint"), ("kind", "text"), ("value", "text")])
    )
});

/// Each written subscription once, with its final values; one owned by another customer
/// (taken since the prefetch) is left alone, and the batch is a `Conflict`.
static UPSERT_SUBSCRIPTIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "insert into subscriptions (space_id, customer_id, external_id, product_slug, product_code, order_number, \
         order_hash, auto_renew, status, valid_until, created_at, updated_at) \
         select $1, x.customer_id, x.external_id, x.product_slug, x.product_code, x.order_number, x.order_hash, \
         x.auto_renew, x.status, x.valid_until, $3, $3 from {} where true order by x.ord \
         on conflict (space_id, external_id) do update set product_slug = excluded.product_slug, \
         product_code = excluded.product_code, order_number = excluded.order_number, \
         order_hash = excluded.order_hash, auto_renew = excluded.auto_renew, status = excluded.status, \
         valid_until = excluded.valid_until, updated_at = excluded.updated_at \
         where subscriptions.customer_id = excluded.customer_id",
        rows(
            2,
            &[
                ("customer_id", "bigint"),
                ("external_id", "text"),
                ("product_slug", "text"),
                ("product_code", "text"),
                ("order_number", "text"),
                ("order_hash", "text"),
                ("auto_renew", "boolean"),
                ("status", "text"),
                ("valid_until", "timestamptz"),
            ]
        )
    )
});

/// A ban ends every live session of the customers `$2` at `$3`.
static END_SESSIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "update sessions set revoked_at = $3 where space_id = $1 and customer_id in ({}) and revoked_at is null",
        at(dialect::ID_LIST_AT, 2)
    )
});

/// How a contact was found: an alternate address or number finds its contact but does
/// not replace the contact's own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FoundBy {
    Own,
    AlternateEmail,
    AlternatePhone,
}

#[derive(sqlx::FromRow)]
struct CustomerRow {
    id: i64,
    cu_ref_no: String,
    email: Option<String>,
    email_canonical: Option<String>,
    email_rules_version: i32,
    phone: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    company_name: Option<String>,
    company_registration_number: Option<String>,
    tax_identification_number: Option<String>,
    premium: bool,
    ban: bool,
    meta: Json<Map<String, Value>>,
    last_ip: Option<String>,
}

/// A customer as the batch sees it: as prefetched, or created by an earlier item, with
/// every accepted item applied.
struct Customer {
    /// The row id; `None` until a new customer is inserted.
    id: Option<i64>,
    /// Where it sorts among contacts sharing an alternate or a phone: existing ones by
    /// id, then the new ones in the order they were created (as their ids will be).
    rank: i64,
    new: bool,
    /// An accepted item wrote it.
    changed: bool,
    cu_ref_no: String,
    email: Option<String>,
    email_canonical: Option<String>,
    email_rules_version: i32,
    phone: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    company_name: Option<String>,
    company_registration_number: Option<String>,
    tax_identification_number: Option<String>,
    premium: bool,
    ban: bool,
    meta: Map<String, Value>,
    registration_ip: Option<String>,
    last_ip: Option<String>,
    alternate_emails: Vec<String>,
    alternate_phones: Vec<String>,
    /// Indexes into `State::subscriptions`.
    subscriptions: Vec<usize>,
    /// The final memberships, when an item replaced them.
    groups: Option<Vec<String>>,
    emails_replaced: bool,
    phones_replaced: bool,
    /// The final referrer (an index into `State::customers`), when an item set it.
    referrer: Option<Option<usize>>,
    end_sessions: bool,
    lists_changed: bool,
}

impl Customer {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "cu_ref_no": self.cu_ref_no,
            "email": self.email,
            "email_canonical": self.email_canonical,
            "email_rules_version": self.email_rules_version,
            "phone": self.phone,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "company_name": self.company_name,
            "company_registration_number": self.company_registration_number,
            "tax_identification_number": self.tax_identification_number,
            "premium": self.premium,
            "ban": self.ban,
            "meta": Value::Object(self.meta.clone()).to_string(),
            "registration_ip": self.registration_ip,
            "last_ip": self.last_ip,
        })
    }
}

/// Whose a subscription is: a customer of the batch, or another one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    Batch(usize),
    Other,
}

struct Subscription {
    owner: Owner,
    external_id: String,
    product_slug: String,
    product_code: String,
    order_number: String,
    order_hash: String,
    auto_renew: bool,
    status: String,
    valid_until: Option<DateTime<Utc>>,
    changed: bool,
}

/// Everything the batch may touch, as of the items decided so far.
#[derive(Default)]
struct State {
    customers: Vec<Customer>,
    by_cu_ref_no: HashMap<String, usize>,
    by_email: HashMap<String, usize>,
    by_alternate_email: HashMap<String, Vec<usize>>,
    by_phone: HashMap<String, Vec<usize>>,
    by_alternate_phone: HashMap<String, Vec<usize>>,
    subscriptions: Vec<Subscription>,
    by_external_id: HashMap<String, usize>,
    /// Group slugs in the order first named, with the first name given.
    groups: Vec<(String, String)>,
    group_slugs: HashSet<String>,
    created: usize,
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

/// A time as sqlx writes it to either backend.
fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn running(status: &str, until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    status == SubscriptionStatus::Active.as_str() && until.is_none_or(|t| t > now)
}

impl State {
    fn add(&mut self, c: Customer) -> usize {
        let i = self.customers.len();
        self.by_cu_ref_no.insert(c.cu_ref_no.clone(), i);
        if let Some(e) = &c.email_canonical {
            self.by_email.insert(e.clone(), i);
        }
        if let Some(p) = &c.phone {
            self.by_phone.entry(p.clone()).or_default().push(i);
        }
        self.customers.push(c);
        i
    }

    /// The contact with the write's e-mail (own, then alternate), else with its phone
    /// (own, then alternate; only one without an e-mail when the write gives an e-mail).
    fn find(&self, w: &ContactWrite) -> Option<(usize, FoundBy)> {
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
            let emails =
                w.alternate_emails.as_ref().map_or_else(|| me.map_or(0, |c| c.alternate_emails.len()), Vec::len);
            let phones =
                w.alternate_phones.as_ref().map_or_else(|| me.map_or(0, |c| c.alternate_phones.len()), Vec::len);
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
    fn decide(&mut self, w: &ContactWrite, now: DateTime<Utc>) -> Result<(usize, bool), ContactRefusal> {
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
        if w.groups.is_some() || !w.subscriptions.is_empty() {
            c.lists_changed = true;
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
            let values = list.iter().map(|e| e.canonical().to_owned()).collect();
            let old = std::mem::take(&mut self.customers[i].alternate_emails);
            self.customers[i].emails_replaced = true;
            self.replace_alternates(i, old, values, true);
        }
        if let Some(list) = &w.alternate_phones {
            let values = list.iter().map(|p| p.as_str().to_owned()).collect();
            let old = std::mem::take(&mut self.customers[i].alternate_phones);
            self.customers[i].phones_replaced = true;
            self.replace_alternates(i, old, values, false);
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

    /// Replaces customer `i`'s alternate addresses (`emails`) or numbers.
    fn replace_alternates(&mut self, i: usize, old: Vec<String>, mut values: Vec<String>, emails: bool) {
        let index = if emails { &mut self.by_alternate_email } else { &mut self.by_alternate_phone };
        for v in &old {
            remove(index, v, i);
        }
        let mut seen = HashSet::new();
        values.retain(|v| seen.insert(v.clone()));
        for v in &values {
            index.entry(v.clone()).or_default().push(i);
        }
        let c = &mut self.customers[i];
        if emails {
            c.alternate_emails = values;
        } else {
            c.alternate_phones = values;
        }
    }

    /// Overwrites the given fields of customer `i` and merges its meta.
    fn update(&mut self, i: usize, w: &ContactWrite, by: FoundBy) {
        let State { customers, by_email, by_phone, .. } = self;
        let c = &mut customers[i];
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
            registration_ip: ip.clone(),
            last_ip: ip,
            alternate_emails: Vec::new(),
            alternate_phones: Vec::new(),
            subscriptions: Vec::new(),
            groups: None,
            emails_replaced: false,
            phones_replaced: false,
            referrer: None,
            end_sessions: false,
            lists_changed: false,
        })
    }

    fn id(&self, i: usize) -> StoreResult<i64> {
        self.customers[i].id.ok_or_else(|| StoreError::Other("a new customer was not inserted".into()))
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Other(e.to_string()))
}

/// What one write of a batch came to: `(created, id, cuRefNo)`, or its refusal.
pub(super) type BatchResult = Result<(bool, i64, String), ContactRefusal>;

/// Writes the batch in `tx` at `now`, deciding the items in order; a refused item writes
/// nothing. A concurrent writer's address, number or subscription is a `Conflict`.
pub(super) async fn write_batch(
    tx: &mut Tx,
    space: SpaceId,
    writes: &[ContactWrite],
    now: DateTime<Utc>,
) -> StoreResult<Vec<BatchResult>> {
    let mut state = prefetch(tx, space, writes).await?;
    let decided: Vec<Result<(usize, bool), ContactRefusal>> = writes.iter().map(|w| state.decide(w, now)).collect();
    write(tx, space, &mut state, now).await?;
    decided
        .into_iter()
        .map(|d| match d {
            Ok((i, new)) => Ok(Ok((new, state.id(i)?, state.customers[i].cu_ref_no.clone()))),
            Err(refusal) => Ok(Err(refusal)),
        })
        .collect()
}

/// Reads and locks everything the items could touch.
async fn prefetch(tx: &mut Tx, space: SpaceId, writes: &[ContactWrite]) -> StoreResult<State> {
    let mut cu_ref_nos = HashSet::new();
    let mut emails = HashSet::new();
    let mut phones = HashSet::new();
    let mut external_ids = HashSet::new();
    for w in writes {
        cu_ref_nos.extend(w.cu_ref_no.as_ref().map(|c| c.as_str()));
        if let Some(Some(cu)) = &w.referral {
            cu_ref_nos.insert(cu.as_str());
        }
        emails.extend(w.email.as_ref().map(|e| e.canonical()));
        phones.extend(w.phone.as_ref().map(|p| p.as_str()));
        external_ids.extend(w.subscriptions.iter().map(|s| s.external_id.as_str()));
    }
    let mut state = State::default();
    let rows: Vec<CustomerRow> = if cu_ref_nos.is_empty() && emails.is_empty() && phones.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(&PREFETCH_CUSTOMERS)
            .bind(space.0)
            .bind(to_json(&cu_ref_nos)?)
            .bind(to_json(&emails)?)
            .bind(to_json(&phones)?)
            .fetch_all(&mut **tx)
            .await?
    };
    let mut by_id = HashMap::with_capacity(rows.len());
    for r in rows {
        let i = state.add(Customer {
            id: Some(r.id),
            rank: r.id,
            new: false,
            changed: false,
            cu_ref_no: r.cu_ref_no,
            email: r.email,
            email_canonical: r.email_canonical,
            email_rules_version: r.email_rules_version,
            phone: r.phone,
            first_name: r.first_name,
            last_name: r.last_name,
            company_name: r.company_name,
            company_registration_number: r.company_registration_number,
            tax_identification_number: r.tax_identification_number,
            premium: r.premium,
            ban: r.ban,
            meta: r.meta.0,
            registration_ip: None,
            last_ip: r.last_ip,
            alternate_emails: Vec::new(),
            alternate_phones: Vec::new(),
            subscriptions: Vec::new(),
            groups: None,
            emails_replaced: false,
            phones_replaced: false,
            referrer: None,
            end_sessions: false,
            lists_changed: false,
        });
        by_id.insert(r.id, i);
    }
    let ids = to_json(&by_id.keys().collect::<Vec<_>>())?;
    if !by_id.is_empty() {
        let points: Vec<(i64, String, String)> =
            sqlx::query_as(&PREFETCH_POINTS).bind(space.0).bind(&ids).fetch_all(&mut **tx).await?;
        for (id, kind, value) in points {
            let i = by_id[&id];
            let (list, index) = if kind == "email" {
                (&mut state.customers[i].alternate_emails, &mut state.by_alternate_email)
            } else {
                (&mut state.customers[i].alternate_phones, &mut state.by_alternate_phone)
            };
            index.entry(value.clone()).or_default().push(i);
            list.push(value);
        }
    }
    if !by_id.is_empty() || !external_ids.is_empty() {
        type Row = (i64, i64, String, String, String, String, String, bool, String, Option<DateTime<Utc>>);
        let subscriptions: Vec<Row> = sqlx::query_as(&PREFETCH_SUBSCRIPTIONS)
            .bind(space.0)
            .bind(&ids)
            .bind(to_json(&external_ids)?)
            .fetch_all(&mut **tx)
            .await?;
        for (_, customer_id, external_id, slug, code, number, hash, auto_renew, status, valid_until) in subscriptions {
            let owner = by_id.get(&customer_id).map_or(Owner::Other, |&i| Owner::Batch(i));
            let k = state.subscriptions.len();
            if let Owner::Batch(i) = owner {
                state.customers[i].subscriptions.push(k);
            }
            state.by_external_id.insert(external_id.clone(), k);
            state.subscriptions.push(Subscription {
                owner,
                external_id,
                product_slug: slug,
                product_code: code,
                order_number: number,
                order_hash: hash,
                auto_renew,
                status,
                valid_until,
                changed: false,
            });
        }
    }
    Ok(state)
}

/// Writes what the accepted items came to, a statement per kind of change.
async fn write(tx: &mut Tx, space: SpaceId, state: &mut State, now: DateTime<Utc>) -> StoreResult<()> {
    let new: Vec<Value> = state.customers.iter().filter(|c| c.new).map(Customer::json).collect();
    if !new.is_empty() {
        let inserted: Vec<(i64, String)> =
            sqlx::query_as(&INSERT_CUSTOMERS).bind(space.0).bind(to_json(&new)?).bind(now).fetch_all(&mut **tx).await?;
        let ids: HashMap<String, i64> = inserted.into_iter().map(|(id, cu)| (cu, id)).collect();
        for c in state.customers.iter_mut().filter(|c| c.new) {
            c.id = ids.get(&c.cu_ref_no).copied();
        }
    }
    let changed: Vec<Value> = state.customers.iter().filter(|c| c.changed && !c.new).map(Customer::json).collect();
    if !changed.is_empty() {
        sqlx::query(&UPDATE_CUSTOMERS).bind(space.0).bind(to_json(&changed)?).bind(now).execute(&mut **tx).await?;
    }
    let mut referrers = Vec::new();
    let mut ended = Vec::new();
    let mut memberships_cleared = Vec::new();
    let mut memberships = Vec::new();
    let mut points_cleared = [Vec::new(), Vec::new()];
    let mut points = Vec::new();
    let mut lists_changed = Vec::new();
    for (i, c) in state.customers.iter().enumerate() {
        let id = state.id(i)?;
        if let Some(referrer) = c.referrer {
            let referrer = referrer.map(|r| state.id(r)).transpose()?;
            referrers.push(json!({ "id": id, "referrer_id": referrer }));
        }
        if c.end_sessions {
            ended.push(id);
        }
        if let Some(slugs) = &c.groups {
            if !c.new {
                memberships_cleared.push(id);
            }
            memberships.extend(slugs.iter().map(|slug| json!({ "id": id, "slug": slug })));
        }
        for (k, (replaced, kind, values)) in
            [(c.emails_replaced, "email", &c.alternate_emails), (c.phones_replaced, "phone", &c.alternate_phones)]
                .into_iter()
                .enumerate()
        {
            if replaced {
                if !c.new {
                    points_cleared[k].push(id);
                }
                points.extend(values.iter().map(|v| json!({ "id": id, "kind": kind, "value": v })));
            }
        }
        if c.lists_changed {
            lists_changed.push(id);
        }
    }
    if !referrers.is_empty() {
        sqlx::query(&SET_REFERRERS).bind(space.0).bind(to_json(&referrers)?).execute(&mut **tx).await?;
    }
    if !state.groups.is_empty() {
        let groups: Vec<Value> =
            state.groups.iter().map(|(name, slug)| json!({ "name": name, "slug": slug })).collect();
        sqlx::query(&INSERT_GROUPS).bind(space.0).bind(to_json(&groups)?).execute(&mut **tx).await?;
    }
    if !memberships_cleared.is_empty() {
        sqlx::query(&DELETE_MEMBERSHIPS).bind(space.0).bind(to_json(&memberships_cleared)?).execute(&mut **tx).await?;
    }
    if !memberships.is_empty() {
        sqlx::query(&INSERT_MEMBERSHIPS).bind(space.0).bind(to_json(&memberships)?).execute(&mut **tx).await?;
    }
    for (ids, kind) in points_cleared.iter().zip(["email", "phone"]) {
        if !ids.is_empty() {
            sqlx::query(&DELETE_POINTS).bind(space.0).bind(to_json(ids)?).bind(kind).execute(&mut **tx).await?;
        }
    }
    if !points.is_empty() {
        sqlx::query(&INSERT_POINTS).bind(space.0).bind(to_json(&points)?).execute(&mut **tx).await?;
    }
    let mut subscriptions = Vec::new();
    for s in state.subscriptions.iter().filter(|s| s.changed) {
        let Owner::Batch(owner) = s.owner else { continue };
        subscriptions.push(json!({
            "customer_id": state.id(owner)?,
            "external_id": s.external_id,
            "product_slug": s.product_slug,
            "product_code": s.product_code,
            "order_number": s.order_number,
            "order_hash": s.order_hash,
            "auto_renew": s.auto_renew,
            "status": s.status,
            "valid_until": s.valid_until.map(time_text),
        }));
    }
    if !subscriptions.is_empty() {
        let done = sqlx::query(&UPSERT_SUBSCRIPTIONS)
            .bind(space.0)
            .bind(to_json(&subscriptions)?)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() != subscriptions.len() as u64 {
            // Checked free before writing: another writer took one since.
            return Err(StoreError::Conflict("a subscription was taken meanwhile".into()));
        }
    }
    if !ended.is_empty() {
        sqlx::query(&END_SESSIONS).bind(space.0).bind(to_json(&ended)?).bind(now).execute(&mut **tx).await?;
    }
    lists_changed.sort_unstable();
    refresh_profile_lists(tx, &lists_changed).await
}
