//! Profiles written: create-or-update (one contact, or the items of an import), the
//! credit ledger with idempotent additions, and erasure.

pub mod input;

pub use input::ContactBody;

use crate::fields::InputError;
use crate::normalize::{sha256_hex, CuRefNo, Region};
use crate::store::{
    ContactRefusal, ContactWrite, CreditAdd, CreditOutcome, DynStore, Idempotency, Merge, MergeRefusal, Profile,
    SpaceId, StoreError,
};

/// How contacts are written; see the README's settings table.
#[derive(Debug, Clone, Copy)]
pub struct ContactSettings {
    /// The region of phone numbers given without a country prefix.
    pub phone_region: Region,
    /// Import items written per transaction.
    pub import_batch: usize,
    pub import_limits: crate::import::ImportLimits,
}

impl Default for ContactSettings {
    fn default() -> Self {
        Self { phone_region: Region::CZ, import_batch: 500, import_limits: Default::default() }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ContactError {
    #[error(transparent)]
    Input(#[from] InputError),
    /// The write was refused; nothing of it was stored.
    #[error("{0:?}")]
    Refused(ContactRefusal),
    /// The merge was refused; nothing of it was stored.
    #[error("{0:?}")]
    MergeRefused(MergeRefusal),
    /// An `Idempotency-Key` replayed with a different request.
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type ContactResult<T> = Result<T, ContactError>;

/// A credit movement as asked for, its fields already read.
pub struct CreditRequest {
    pub cu_ref_no: CuRefNo,
    pub amount: i64,
    pub reason: String,
    pub idempotency_key: Option<String>,
}

/// The contact operations in one data space.
pub struct Contacts<'a> {
    store: &'a DynStore,
    space: SpaceId,
}

impl<'a> Contacts<'a> {
    pub fn new(store: &'a DynStore, space: SpaceId) -> Self {
        Contacts { store, space }
    }

    /// Writes one contact; whether it was created, and its profile.
    pub async fn upsert(&self, write: &ContactWrite) -> ContactResult<(bool, Profile)> {
        self.store.upsert_contact(self.space, write).await?.map_err(ContactError::Refused)
    }

    /// Appends to the ledger and returns the balance. A retry under the same
    /// `Idempotency-Key` returns the first result; the key with another request is refused.
    pub async fn add_credit(&self, request: CreditRequest) -> ContactResult<i64> {
        let CreditRequest { cu_ref_no, amount, reason, idempotency_key } = request;
        // The request as stored: a retry matches whatever its JSON formatting.
        let fingerprint = sha256_hex(&format!("credit-add\n{}\n{amount}\n{reason}", cu_ref_no.as_str()));
        let idempotency = idempotency_key.map(|key| Idempotency { key, fingerprint });
        let credit = CreditAdd { cu_ref_no, amount, reason, idempotency };
        match self.store.add_credit(self.space, &credit).await? {
            CreditOutcome::Added { balance } | CreditOutcome::Replayed { balance } => Ok(balance),
            CreditOutcome::NotFound => Err(ContactError::Refused(ContactRefusal::NotFound)),
            CreditOutcome::KeyReused => Err(ContactError::IdempotencyKeyReused),
        }
    }

    /// Erases the customer's personal data; its cuRefNo is never reissued.
    pub async fn erase(&self, cu_ref_no: &CuRefNo) -> ContactResult<()> {
        if !self.store.erase_customer(self.space, cu_ref_no).await? {
            return Err(ContactError::Refused(ContactRefusal::NotFound));
        }
        Ok(())
    }

    /// Merges the duplicate into the primary; the primary's profile. A merge that already
    /// happened gives the same again and changes nothing.
    pub async fn merge(&self, merge: &Merge) -> ContactResult<Profile> {
        self.store.merge_customers(self.space, merge).await?.map_err(ContactError::MergeRefused)
    }
}
